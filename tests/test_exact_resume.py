"""A resumed synchronous run continues exactly: its updates equal the uninterrupted run's, bit
for bit (the checkpoint holds the learner, the envs mid-episode, the memory state and the RNG
states). Also: what falls back to fresh episodes, and the learner's DDP route."""
import pickle

import numpy as np
import pytest
import torch

from memarl.envs import make
from memarl.train.checkpoint import atomic_torch_save, newest_readable_checkpoint
from memarl.train.trainer import TrainConfig, load_resume_config, train

NUM_ENVS, ROLLOUT = 4, 8


def run_config(run_dir, env, agent, agents_per_env, updates, **ppo):
    cfg = TrainConfig(env=env, agent=agent, run_dir=str(run_dir), num_envs=NUM_ENVS,
                      rollout_len=ROLLOUT, torch_threads=1, seed=3, async_=False,
                      total_steps=updates * NUM_ENVS * ROLLOUT * agents_per_env,
                      checkpoint_every_s=1e9, print_every_s=1e9)
    cfg.ppo.num_minibatches = 2
    for key, value in ppo.items():
        setattr(cfg.ppo, key, value)
    return cfg


def resume(run_dir, total_steps):
    train(load_resume_config(run_dir, {"total_steps": total_steps}), resume=True, quiet=True)


def latest(run_dir):
    return newest_readable_checkpoint(run_dir / "checkpoints").payload


def assert_same_run_state(a, b):
    assert a["update"] == b["update"] and a["agent_steps"] == b["agent_steps"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    moments_a, moments_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert moments_a.keys() == moments_b.keys()
    for index in moments_a:
        for key in moments_a[index]:
            assert torch.equal(moments_a[index][key], moments_b[index][key]), (index, key)
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"]
    assert a["sampler_rng"] == b["sampler_rng"]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    np.testing.assert_array_equal(a["collector"]["obs"], b["collector"]["obs"])
    for key, value in a["collector"]["policy_state"].items():
        assert torch.equal(value, b["collector"]["policy_state"][key]), key


CASES = [("bottleneck", "srmt", 2, {}),
         ("bottleneck", "gru", 2, {"normalize_returns": True}),
         ("tmaze", "rate", 1, {}),
         ("pogema-lmapf", "gru", 64, {})]


@pytest.mark.parametrize("env, agent, agents_per_env, ppo", CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_resumed_run_equals_the_uninterrupted_one(tmp_path, env, agent, agents_per_env, ppo):
    whole = run_config(tmp_path / "whole", env, agent, agents_per_env, updates=3, **ppo)
    train(whole, quiet=True)
    split = run_config(tmp_path / "split", env, agent, agents_per_env, updates=2, **ppo)
    train(split, quiet=True)
    resume(tmp_path / "split", whole.total_steps)
    assert_same_run_state(latest(tmp_path / "whole"), latest(tmp_path / "split"))


def test_without_the_saved_episodes_the_resume_differs_and_says_so(tmp_path, capsys):
    """The check above can fail: a checkpoint without its collector state (one written before
    it was saved) resumes with fresh episodes, and then the runs differ."""
    whole = run_config(tmp_path / "whole", "bottleneck", "gru", 2, updates=3)
    train(whole, quiet=True)
    split = run_config(tmp_path / "split", "bottleneck", "gru", 2, updates=2)
    train(split, quiet=True)
    path = newest_readable_checkpoint(tmp_path / "split" / "checkpoints").path
    payload = torch.load(path, weights_only=False)
    del payload["collector"], payload["rng"]
    atomic_torch_save(payload, path)
    train(load_resume_config(tmp_path / "split", {"total_steps": whole.total_steps}),
          resume=True)
    assert "fresh episodes" in capsys.readouterr().out
    a, b = latest(tmp_path / "whole"), latest(tmp_path / "split")
    assert any(not torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_saved_episodes_of_other_settings_are_not_restored(tmp_path, capsys):
    split = run_config(tmp_path / "split", "tmaze", "gru", 1, updates=1)
    train(split, quiet=True)
    path = newest_readable_checkpoint(tmp_path / "split" / "checkpoints").path
    payload = torch.load(path, weights_only=False)
    payload["config_hash"] = "0" * 16
    atomic_torch_save(payload, path)
    train(load_resume_config(tmp_path / "split", {"total_steps": split.total_steps * 2}),
          resume=True)
    captured = capsys.readouterr()
    assert "written under other settings" in captured.err and "fresh episodes" in captured.out


def test_unloadable_saved_envs_fall_back_with_a_warning(tmp_path, capsys):
    split = run_config(tmp_path / "split", "tmaze", "gru", 1, updates=1)
    train(split, quiet=True)
    path = newest_readable_checkpoint(tmp_path / "split" / "checkpoints").path
    payload = torch.load(path, weights_only=False)
    payload["collector"]["env_zlib"] = b"not a compressed pickle"
    atomic_torch_save(payload, path)
    train(load_resume_config(tmp_path / "split", {"total_steps": split.total_steps * 2}),
          resume=True, quiet=True)
    assert "cannot continue the episodes saved in" in capsys.readouterr().err
    assert latest(tmp_path / "split")["update"] == 2


@pytest.mark.parametrize("env", ["bottleneck", "tmaze", "pogema-mapf", "pogema-lmapf"])
def test_a_pickled_env_steps_like_the_original(env):
    """What the collector state relies on: an env pickled mid-episode continues identically
    (through autoresets: 600 steps cover Bottleneck's 512-step episodes)."""
    original = make(env, num_envs=3, seed=5)
    original.reset()
    rng = np.random.default_rng(0)
    for _ in range(7):
        original.step(rng.integers(0, original.num_actions, (3, original.num_agents)))
    copy = pickle.loads(pickle.dumps(original))
    for _ in range(600):
        actions = rng.integers(0, original.num_actions, (3, original.num_agents))
        a, b = original.step(actions), copy.step(actions)
        for x, y in zip(a[:4], b[:4]):
            np.testing.assert_array_equal(x, y)
        assert a[4]["episode_metrics"] == b[4]["episode_metrics"]
