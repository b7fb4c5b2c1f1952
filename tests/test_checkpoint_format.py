"""Self-describing checkpoints: the resolved env config, the env id and the score metric travel
with the weights; checkpoints of the previous format still load.

tests/data/old_format_*.pt were written by the previous code (commit 5351b40, before checkpoints
recorded ``env_config``) with the ``command`` stored beside them in old_format_expected.json,
which also holds what that code meant: the training env's config as its trainer built it, and
the policy's output on a fixed observation.
"""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from memarl.envs import make
from memarl.errors import MemarlError
from memarl.eval.policy_io import load_policy, observation_fields, training_env_config
from memarl.train.checkpoint import (ENV_CONFIG_FROM_CHECKPOINT, ENV_CONFIG_RESOLVED,
                                     list_checkpoints, load_checkpoint)
from memarl.train.logger import RunLogger
from memarl.train.ppo import PPOConfig
from memarl.train.trainer import TrainConfig, train

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "old_format_expected.json").read_text())
OLD_FILES = ["old_format_bottleneck_gru.pt", "old_format_lmapf_gru.pt"]
TINY_AGENT = {"d_model": 4, "filters": 2, "res_blocks": 0, "gru_hidden": 4}
DERIVED = ("width", "height")
"""fields the previous PogemaConfig filled in from ``size``; resolving leaves that to the config"""


def fixed_obs(num_agents, obs_shape):
    generator = torch.Generator().manual_seed(0)
    return (torch.rand((1, num_agents, *obs_shape), generator=generator) < 0.3).float()


def tiny_run(tmp_path, env, env_options, total_steps=16, name="run", **overrides):
    cfg = TrainConfig(env=env, agent="gru", total_steps=total_steps, num_envs=2, rollout_len=2,
                      seed=3, run_dir=str(tmp_path / name), print_every_s=1e9,
                      env_options=dict(env_options), agent_options=dict(TINY_AGENT),
                      ppo=PPOConfig(num_minibatches=1), **overrides)
    return train(cfg, quiet=True), cfg


# --- checkpoints written by the previous code ----------------------------------------------------

@pytest.mark.parametrize("name", OLD_FILES)
def test_old_format_checkpoint_loads_with_the_env_config_it_meant(name):
    expected = EXPECTED[name]
    policy = load_policy(DATA / name)
    info = policy.checkpoint_info
    assert info["env_config_source"] == ENV_CONFIG_RESOLVED and info["format"] == 1
    assert info["env"] == expected["env"] and info["env_id"] == expected["env"] + "-v0"
    assert info["score_metric"] is None  # not recorded then
    assert info["obs_shape"] == expected["obs_shape"]
    assert info["num_actions"] == expected["num_actions"]
    assert info["agent_config"] == {**TINY_AGENT, "bptt": True}
    resolved = info["env_config"]
    assert set(resolved) == set(expected["env_config"])
    for key, value in expected["env_config"].items():
        if key in DERIVED and resolved[key] is None:
            continue
        assert resolved[key] == value, key
    # the rebuilt env is the training env: same observation shape, same observations
    rebuilt = make(info["env_id"], num_envs=1, seed=0, **training_env_config(info))
    meant = make(info["env_id"], num_envs=1, seed=0,
                 **{k: v for k, v in expected["env_config"].items()
                    if k not in ("num_envs", "seed")})
    assert list(rebuilt.obs_shape) == expected["obs_shape"]
    assert rebuilt.num_agents == expected["num_agents"]
    assert type(rebuilt.config)(**resolved).obs_radius == expected["env_options"]["obs_radius"]
    assert (rebuilt.reset(seed=5) == meant.reset(seed=5)).all()


@pytest.mark.parametrize("name", OLD_FILES)
def test_old_format_policy_acts_as_it_did(name):
    expected = EXPECTED[name]
    policy = load_policy(DATA / name)
    info = policy.checkpoint_info
    agents = expected["num_agents"]
    state = policy.initial_state(1, agents)
    alive = torch.ones(1, agents, dtype=torch.bool)
    with torch.no_grad():
        logits, value, _ = policy.step(fixed_obs(agents, expected["obs_shape"]), state, alive,
                                       alive)
    assert logits.flatten().tolist() == pytest.approx(expected["logits"], abs=1e-5)
    assert value.flatten().tolist() == pytest.approx(expected["value"], abs=1e-5)
    # and it plays the rebuilt training env
    env = make(info["env_id"], num_envs=2, seed=1, **training_env_config(info))
    obs = env.reset()
    state = policy.initial_state(2, env.num_agents)
    first = torch.ones(2, env.num_agents, dtype=torch.bool)
    for _ in range(3):
        with torch.no_grad():
            logits, _, state = policy.step(torch.as_tensor(obs), state, first, first)
        actions = logits.argmax(-1).numpy()
        assert ((0 <= actions) & (actions < env.num_actions)).all()
        obs, *_ = env.step(actions)
        first = torch.zeros_like(first)


# --- checkpoints written now ---------------------------------------------------------------------

@pytest.mark.parametrize("env, options", [
    ("bottleneck", {"obs_radius": 3, "corridor_lengths": (3, 5), "hide_finished_targets": True,
                    "max_episode_steps": 20}),
    ("pogema-lmapf", {"obs_radius": 2, "num_agents": 2, "observation_type": "default",
                      "map": ["....", ".#..", "....", "..#."], "max_episode_steps": 8}),
])
def test_new_checkpoint_round_trips_the_env_config(tmp_path, env, options):
    run, cfg = tiny_run(tmp_path, env, options)
    file = list_checkpoints(run / "checkpoints")[-1]
    payload = load_checkpoint(file)
    training = make(env, num_envs=cfg.num_envs, seed=cfg.seed, **options).config
    assert type(training)(**payload["env_config"]) == training
    assert json.loads(json.dumps(payload["env_config"])) == payload["env_config"]
    assert set(payload["env_config"]) == {f.name for f in dataclasses.fields(training)}
    assert payload["env_id"] == env + "-v0" and payload["env"] == env
    assert payload["env_options"] == options
    info = load_policy(run, which="latest").checkpoint_info
    assert info["env_config_source"] == ENV_CONFIG_FROM_CHECKPOINT
    assert info["env_config"] == payload["env_config"]
    assert info["score_metric"] == ("CSR" if env == "bottleneck" else "avg_throughput")
    rebuilt = make(info["env_id"], num_envs=1, seed=0, **training_env_config(info))
    assert list(rebuilt.obs_shape) == info["obs_shape"]
    for key in observation_fields(env):
        assert getattr(rebuilt.config, key) == getattr(training, key), key


def test_observation_fields_and_training_env_config_leave_the_run_fields_out():
    assert observation_fields("bottleneck") == ("obs_radius", "hide_finished_targets")
    assert observation_fields("pogema-mapf-v0") == ("obs_radius", "observation_type", "empty_outside")
    info = load_policy(DATA / OLD_FILES[0]).checkpoint_info
    kwargs = training_env_config(info)
    assert "num_envs" not in kwargs and "seed" not in kwargs
    assert set(kwargs) | {"num_envs", "seed"} == set(info["env_config"])


def _forged(tmp_path, **changes):
    payload = torch.load(DATA / OLD_FILES[0], weights_only=False)
    payload.update(changes)
    path = tmp_path / "forged.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("changes, words", [
    ({"env_config": ["obs_radius", 3]}, "not a dict"),
    ({"env_config": {"obs_radius": 3, "radius": 3}}, "unknown field(s) radius"),
    ({"env_config": {"obs_radius": "big"}}, "obs_radius"),
    ({"env_config": {"corridor_lengths": [3, -1]}}, "corridor_lengths"),
    ({"env_config": {}, "env_id": "nowhere-v0"}, "unknown env"),
    ({"env_options": {"obs_radius": 0}}, "malformed env_options"),
])
def test_malformed_env_config_is_one_line_naming_the_file(tmp_path, changes, words):
    path = _forged(tmp_path, **changes)
    with pytest.raises(MemarlError) as error:
        load_policy(path)
    message = str(error.value)
    assert "\n" not in message and str(path) in message and words in message, message


# --- best.pt follows the env's score metric ------------------------------------------------------

def test_logger_scores_by_the_declared_metric():
    episodes = [{"CSR": 1.0, "avg_throughput": 0.25}] * 20
    for metric, score in (("CSR", 1.0), ("avg_throughput", 0.25), (None, None)):
        logger = RunLogger(None, 100, score_metric=metric)
        logger.episodes(episodes[:19], 0)
        assert logger.score() is None  # too few episodes yet
        logger.episodes(episodes[19:], 0)
        assert logger.score() == score
    logger = RunLogger(None, 100, score_metric="delivered")  # a metric the charts do not list
    logger.episodes([{"delivered": 2.0}] * 20, 0)
    assert logger.score() == 2.0


def test_progress_prints_the_closing_line_once():
    """The forced closing report is skipped when that very update was just printed, and shows
    the curriculum's unlocked length when episodes report one."""
    import io
    stream = io.StringIO()
    logger = RunLogger(None, 100, print_every_s=0.0, stream=stream)
    logger.episodes([{"success": 1.0, "unlocked_length": 28}], 64)
    logger.progress(64, 1)
    logger.progress(64, 1, force=True)
    logger.progress(128, 2, force=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "unlocked_length 28" in lines[0] and "success 1.000" in lines[0]


def test_lmapf_best_is_by_average_throughput(tmp_path, monkeypatch):
    scored = []
    score = RunLogger.score

    def recording_score(self, *args):
        scored.append((self.score_metric, score(self, *args)))
        return scored[-1][1]

    monkeypatch.setattr(RunLogger, "score", recording_score)
    # 4-step episodes: 2 envs x 2 agents x 4 steps x 20 episodes / 2 envs = 320 agent-steps
    run, _ = tiny_run(tmp_path, "pogema-lmapf", {"num_agents": 2, "size": 6,
                                                 "max_episode_steps": 4}, total_steps=400)
    assert scored and all(metric == "avg_throughput" for metric, _ in scored)
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["score_metric"] == "avg_throughput"
    assert best["best_score"] == scored[-1][1] and 0.0 <= best["best_score"] <= 2.0


def test_resume_keeps_the_best_score_of_the_same_metric_only(tmp_path):
    options = {"corridor_lengths": (3,)}
    run, cfg = tiny_run(tmp_path, "bottleneck", options)
    file = list_checkpoints(run / "checkpoints")[-1]
    payload = load_checkpoint(file)
    assert payload["score_metric"] == "CSR" and payload["best_score"] == -1.0
    for metric, total, kept in (("CSR", 24, 0.9), ("avg_throughput", 32, -1.0), (None, 40, 0.9)):
        latest = list_checkpoints(run / "checkpoints")[-1]
        payload = load_checkpoint(latest)
        payload["best_score"] = 0.9
        if metric is None:  # the previous format: no metric recorded
            del payload["score_metric"]
        else:
            payload["score_metric"] = metric
        torch.save(payload, latest)
        train(dataclasses.replace(cfg, total_steps=total), resume=True, quiet=True)
        # the episodes of a tiny run are too few for a score: only the kept best remains
        assert load_checkpoint(list_checkpoints(run / "checkpoints")[-1])["best_score"] == kept
