"""The sample-factory backend (train/sf_backend.py): tiny training runs end to end (in a
subprocess with a timeout, since sample-factory can hang on an error), resume from a checkpoint
holding a numpy scalar, the env and model adapters against memarl's own stepping, and the
refusals: one line, nothing written."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from memarl.errors import MemarlError
from memarl.train.ppo import PPOConfig
from memarl.train.trainer import TrainConfig, config_to_dict, train

sf_backend = pytest.importorskip("memarl.train.sf_backend")

RUN_TIMEOUT_S = 120


def run_training(script: str, cwd: Path) -> None:
    """Run a training script in a fresh interpreter, bounded by a timeout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def train_script(run_dir: Path, env: str, agent: str, total_steps: int, num_envs: int,
                 resume: bool = False) -> str:
    if resume:
        build = (f"cfg = load_resume_config(Path({str(run_dir)!r}), "
                 f"{{'total_steps': {total_steps}}})")
    else:
        build = (f"cfg = TrainConfig(env={env!r}, agent={agent!r}, backend='sample-factory', "
                 f"total_steps={total_steps}, num_envs={num_envs}, rollout_len=8, "
                 f"run_dir={str(run_dir)!r}, device='cpu', torch_threads=1, "
                 f"ppo=PPOConfig(num_minibatches=2))")
    return f"""
        from pathlib import Path
        from memarl.train.ppo import PPOConfig
        from memarl.train.trainer import TrainConfig, load_resume_config, train
        {build}
        train(cfg, resume={resume}, quiet=True)
    """


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / sf_backend.SUMMARY_FILE).read_text())


def checkpoints(run_dir: Path) -> list[Path]:
    return sorted((run_dir / sf_backend.SF_EXPERIMENT / "checkpoint_p0").glob("checkpoint_*.pth"))


def test_gru_on_tmaze_trains_and_resumes_from_a_checkpoint_with_a_numpy_scalar(tmp_path):
    run_dir = tmp_path / "run"
    run_training(train_script(run_dir, "tmaze", "gru", 3000, 8), tmp_path)
    first = summary(run_dir)
    assert first["agent_steps"] >= 3000 and first["sps"] > 0
    assert first["score_metric"] == "success" and first["score"] is not None
    assert first["policy_lag_avg"] is not None
    assert json.loads((run_dir / "config.json").read_text())["config"]["backend"] == \
        "sample-factory"
    saved = checkpoints(run_dir)
    assert saved

    # a checkpoint whose best_performance is a numpy scalar: torch >= 2.6 refused it and
    # sample-factory 2.1.1 then silently trained from scratch (trap 3)
    payload = torch.load(saved[-1], weights_only=False)
    payload["best_performance"] = np.float64(0.25)
    torch.save(payload, saved[-1])
    run_training(train_script(run_dir, "tmaze", "gru", 5000, 8, resume=True), tmp_path)
    second = summary(run_dir)
    assert second["agent_steps"] >= 5000
    assert second["agent_steps_this_run"] < second["agent_steps"]  # it continued
    newest = sf_backend.read_sf_checkpoint(checkpoints(run_dir)[-1])
    # a run that silently started anew reaches the same step count; the best score it carried
    # over tells the two apart
    assert newest["train_step"] > payload["train_step"]
    assert newest["best_performance"] == 0.25

    # the trained agent loads as a memarl policy with the checkpoint's weights
    policy = sf_backend.load_sf_policy(run_dir)
    for name, value in policy.state_dict().items():
        assert torch.equal(value, newest["model"][f"policy.{name}"]), name


def test_empty_on_bottleneck_trains_two_agents_per_env(tmp_path):
    run_dir = tmp_path / "run"
    run_training(train_script(run_dir, "bottleneck", "empty", 3000, 4), tmp_path)
    result = summary(run_dir)
    assert result["agent_steps"] >= 3000
    assert result["score_metric"] == "CSR"
    assert result["sample_factory"]["rnn_size"] == 0  # memory-less: use_rnn=False
    assert checkpoints(run_dir)


def assert_refused(cfg: TrainConfig, *words: str, resume: bool = False) -> str:
    with pytest.raises(MemarlError) as info:
        train(cfg, resume=resume, quiet=True)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def tiny(run_dir: Path, **fields) -> TrainConfig:
    settings = dict(env="bottleneck", agent="gru", backend="sample-factory", total_steps=1000,
                    num_envs=4, rollout_len=8, run_dir=str(run_dir), device="cpu")
    settings.update(fields)
    return TrainConfig(**settings)


@pytest.mark.parametrize("fields, words", [
    ({"agent": "srmt"}, ("shared memory", "share_memory=false")),
    ({"agent": "gru", "agent_options": {"share_memory": "true"}}, ("shared memory",)),
    ({"rollout_len": 1}, ("--rollout-len >= 2",)),
    ({"num_envs": 5, "async_": False, "ppo": PPOConfig(num_minibatches=4)},
     ("--num-minibatches (4)", "(10)")),
])
def test_what_sample_factory_cannot_run_is_refused_before_anything_is_written(tmp_path, fields,
                                                                              words):
    run_dir = tmp_path / "run"
    assert_refused(tiny(run_dir, **fields), *words)
    assert not run_dir.exists()


def test_a_non_empty_run_directory_is_refused_without_resume(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("keep me")
    assert_refused(tiny(run_dir), "already exists", "--resume")
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]

    # a run of memarl's own backend has no sample-factory experiment to continue
    (run_dir / "config.json").write_text(json.dumps({"config": config_to_dict(tiny(run_dir))}))
    assert_refused(tiny(run_dir), "no sample-factory experiment", resume=True)
    assert not (run_dir / sf_backend.SF_EXPERIMENT).exists()


def test_the_env_reports_arrivals_inactive_agents_and_one_episode_report_per_env_episode():
    env = sf_backend.MultiAgentEnvForSF("bottleneck", {"max_episode_steps": 40}, seed=3)
    obs, _ = env.reset()
    assert len(obs) == env.num_agents == 2
    rng = np.random.default_rng(0)
    active = np.ones(2, dtype=bool)
    reports, env_episodes = 0, 0
    for _ in range(400):
        was_active = active.copy()
        obs, reward, terminated, truncated, infos = env.step(rng.integers(0, 5, size=2))
        done = terminated | truncated
        assert not (done & ~was_active).any()  # an inactive agent never ends an episode again
        active = np.array([info["is_active"] for info in infos])
        # an agent that arrived stays inactive until its env's episode ends
        assert not (terminated & active).any() or env.env.elapsed_steps[0] == 0
        reports += sum("episode_extra_stats" in info for info in infos)
        env_episodes += int(env.env.elapsed_steps[0] == 0)
        for info in infos:
            stats = info.get("episode_extra_stats")
            if stats:
                assert "env_CSR" in stats and all(isinstance(v, float) for v in stats.values())
                # sample-factory puts the best-checkpoint metric into a file name
                assert not any("/" in name for name in stats)
    assert env_episodes >= 9 and reports == env_episodes


def test_the_learner_pass_over_packed_sequences_replays_the_acting_steps():
    """sample-factory's learner cuts trajectories at episode ends into a PackedSequence; the
    core walked over it must give the features the acting steps gave."""
    from gymnasium import spaces
    from sample_factory.algo.learning.rnn_utils import build_core_out_from_seq, build_rnn_inputs

    torch.manual_seed(0)
    policy = sf_backend.build_agent("gru", {"preset": "tmaze"}, (4,), 4, seed=0)
    layout = sf_backend.check_agent_supported(policy, "gru")
    sf_cfg = sf_backend.parse_sample_factory_cfg(
        ["--algo=APPO", "--env=test", "--experiment=test", "--normalize_input=False",
         "--normalize_returns=False", "--use_rnn=True", "--device=cpu"])
    model = sf_backend.MemarlActorCritic(sf_cfg, spaces.Dict(obs=spaces.Box(-1, 1, (4,))),
                                         spaces.Discrete(4), policy, layout)
    trajectories, steps = 3, 5
    obs = torch.randn(trajectories, steps, 4)
    dones = torch.zeros(trajectories, steps)
    dones[1, 1] = dones[2, 3] = 1.0  # episode ends inside two trajectories
    with torch.no_grad():
        # acting: step by step, the state zeroed after a done (what the rollout worker does);
        # trajectories 1 and 2 start mid-episode, from a state of earlier steps
        states = torch.zeros(trajectories, steps, layout.size)
        features = torch.zeros(trajectories, steps, policy.core.feature_dim)
        for i in range(trajectories):
            state = torch.zeros(1, layout.size)
            for _ in range(i):
                _, state = model._core_step(model.forward_head({"obs": torch.randn(1, 4)}), state)
            for t in range(steps):
                states[i, t] = state[0]
                feature, state = model._core_step(model.forward_head({"obs": obs[i, t:t + 1]}),
                                                  state)
                features[i, t] = feature[0]
                if dones[i, t]:
                    state = torch.zeros_like(state)
        # the learner: every trajectory at once, packed
        head = model.forward_head({"obs": obs.reshape(-1, 4)})
        packed, start_states, inverse = build_rnn_inputs(head, dones.reshape(-1),
                                                         states.reshape(-1, layout.size), steps)
        out, _ = model.forward_core(packed, start_states)
        replayed = build_core_out_from_seq(out, inverse).reshape(trajectories, steps, -1)
    torch.testing.assert_close(replayed, features)

    # and the first acting step is memarl's own policy step from its initial state
    with torch.no_grad():
        result = model(dict(obs=obs[:, 0]), torch.zeros(trajectories, layout.size))
        logits, values, _ = policy.step(obs[:, None, 0], policy.initial_state(trajectories, 1),
                                        torch.ones(trajectories, 1, dtype=torch.bool))
    torch.testing.assert_close(result["action_logits"], logits[:, 0])
    torch.testing.assert_close(result["values"], values[:, 0])


def test_state_layout_round_trips_float_int_and_bool_entries():
    state = {"hidden": torch.randn(3, 1, 2, 4), "count": torch.tensor([[5], [0], [70000]]),
             "valid": torch.tensor([[True], [False], [True]])}
    layout = sf_backend.StateLayout({k: v[:1] for k, v in state.items()})
    flat = layout.pack(state)
    assert flat.shape == (3, 1 + 8 + 1 + 1)
    started, back = layout.unpack(flat)
    assert started.all()
    for key, value in state.items():
        assert back[key].dtype == value.dtype
        torch.testing.assert_close(back[key], value)
    started, _ = layout.unpack(torch.zeros_like(flat))  # what sample-factory zeroes: a new episode
    assert not started.any()
