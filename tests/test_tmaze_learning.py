"""Real learning on CPU: memory on T-Maze (about five minutes on 2 cores, in CI).

* ``rate`` preset at L = 7 (T = 9): the cue is seen at step 0 only; a GRU learns to carry it to
  the junction, the memory-less Empty agent cannot (it can only guess at the junction).
* ``rate`` preset with a curriculum up to L = 28: a corridor a random walk never completes in
  time is unlocked step by step, and the GRU succeeds on all of it (measured: seeds 0..3 all
  1.00 at L = 7 and 28, best checkpoint after 130k-370k agent-steps).
* ``relay`` preset at L = 1: only agent 0 sees the cue; with shared memory agent 1 reads it
  from agent 0's memory, without it agent 1 guesses (success 0.5 at best).

The relay check trains without advantage normalisation and with the adaptive learning rate
bounded at 3e-4: at first no episode is paid (both agents must reach the junction in time), and
per-minibatch normalisation then scales the value function's noise to unit size, so the policy
collapses to a deterministic one before it finds the reward (measured: success 0.0 with and
without sharing); at the default bound 1e-3 the shared-memory GRU reached success 0.7 and then
collapsed to 0.0 (see eval/results/bottleneck.md, "Diagnosis"). The rate check keeps the
defaults: there a GRU finds the reward early, and without normalisation the tiny advantages make
learning too slow for a CI budget (success 0.0 after 1M steps). Even so the shared-memory GRU's
training success dips now and then (0.92 -> 0.26 -> 0.80 -> 0.26 in one run, each dip with a
KL and gradient-norm spike), so the relay check evaluates the best checkpoint (by training
success) on held-out seeds; the dips are an open item of the diagnosis.
"""
from pathlib import Path

import numpy as np

import memarl
from memarl.eval.evaluate import evaluate_policy
from memarl.train.ppo import PPOConfig
from memarl.train.trainer import TrainConfig, train

RELAY_SUITE = str(Path(__file__).parent / "data" / "tmaze-relay-short.yaml")


def train_tmaze(agent: str, preset: str, corridor_length: int, total_steps: int, run_dir,
                ppo: PPOConfig | None = None, which: str = "latest", seed: int = 0,
                **agent_options):
    cfg = TrainConfig(env="tmaze", agent=agent, total_steps=total_steps, run_dir=str(run_dir),
                      num_envs=64, rollout_len=2 * (corridor_length + 2), seed=seed,
                      torch_threads=1, print_every_s=1e9, checkpoint_every_s=5.0, async_=False,
                      env_options={"preset": preset, "corridor_length": corridor_length},
                      agent_options=agent_options, ppo=ppo or PPOConfig())
    train(cfg, quiet=True)
    return memarl.load_policy(str(run_dir), which=which)


def success(policy, suite: str, **selection) -> float:
    rows = evaluate_policy(policy, suite, **selection)
    assert len(rows) == 100
    return float(np.mean([row["success"] for row in rows]))


def train_rate(agent: str, seed: int, run_dir) -> float:
    policy = train_tmaze(agent, "rate", 7, 1_000_000, run_dir, seed=seed)
    return success(policy, "tmaze-rate", max_corridor_length=7)


def test_memory_agent_solves_rate_tmaze_where_memoryless_guesses(tmp_path):
    """Two of three GRU seeds must solve it: a seed whose policy collapses before it first
    reaches the junction in time never sees a reward (measured: seeds 0, 1, 2 -> 1.00, 0.00,
    1.00; the collapse is the one diagnosed in eval/results/bottleneck.md)."""
    gru = [train_rate("gru", seed, tmp_path / f"gru-{seed}") for seed in (0, 1, 2)]
    empty = train_rate("empty", 0, tmp_path / "empty")
    print(f"tmaze-rate L=7 after 1M steps: GRU seeds 0..2 {gru}, Empty {empty}")
    assert sum(score >= 0.9 for score in gru) >= 2
    assert empty <= 0.6


def test_curriculum_reaches_corridors_no_random_walk_finds(tmp_path):
    """The rate preset pays only at the junction, which a random walk along L = 28 never reaches
    in its L + 2 steps; a curriculum over 1, 2, 4, ..., 28 unlocks every length and the GRU
    carries the cue to the end of all of them (argmax actions: the horizon leaves no spare step)."""
    cfg = TrainConfig(env="tmaze", agent="gru", total_steps=400_000, run_dir=str(tmp_path / "r"), num_envs=64,
                      rollout_len=30, seed=0, torch_threads=1, print_every_s=1e9, checkpoint_every_s=5.0,
                      env_options={"preset": "rate", "corridor_lengths": (1, 2, 4, 8, 16, 28),
                                   "curriculum_success": 0.9, "corridor_length": 28})
    train(cfg, quiet=True)
    policy = memarl.load_policy(str(tmp_path / "r"), which="best")
    rows = evaluate_policy(policy, "tmaze-rate", max_corridor_length=28, deterministic=True)
    scores = {L: float(np.mean([r["success"] for r in rows if r["corridor_length"] == L])) for L in (7, 28)}
    print(f"tmaze-rate curriculum to L=28 after 400k steps, GRU, argmax success by length: {scores}")
    assert policy.checkpoint_info["score_metric"] == "curriculum_success"
    assert scores[7] >= 0.9 and scores[28] >= 0.9


def test_shared_memory_solves_relay_where_private_memory_guesses(tmp_path):
    ppo = PPOConfig(advantage_normalization="off", max_learning_rate=3e-4)
    scores = {share: success(train_tmaze("gru", "relay", 1, 800_000, tmp_path / f"share-{share}",
                                         ppo, "best", share_memory=share), RELAY_SUITE)
              for share in (True, False)}
    print(f"tmaze relay L=1 after 800k agent-steps, GRU with / without share_memory: {scores}")
    assert scores[True] >= 0.75
    assert scores[False] <= 0.65
