"""POGEMA (LMAPF) training pieces: Follower reward, greedy baseline, SRMT presets on pogema envs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from memarl.envs.pogema_env import PogemaEnv
from memarl.errors import MemarlError
from memarl.eval.baselines import GreedyPathPolicy, make_baseline

MAZE = """
.........
.###.###.
.#.....#.
.#.###.#.
...#.#...
.#.###.#.
.#.....#.
.###.###.
.........
"""


def _env(**kw):
    base = dict(num_envs=3, num_agents=6, map=MAZE, on_target="restart", collision_system="soft",
                observation_type="follower", seed=3, max_episode_steps=64)
    return PogemaEnv(**{**base, **kw})


def _run(env, policy, steps):
    env.reset()
    total = np.zeros(env.num_envs)
    for _ in range(steps):
        actions = policy(env)
        _, reward, _, _, info = env.step(actions)
        total += reward.sum(1)
        done = [m for m in info["episode_metrics"] if m]
    return total, done


def test_follower_reward_pays_each_planned_step_and_drops_the_goal():
    env = _env(num_agents=1, reward="follower", path_reward=0.01)
    env.reset()
    paid, moves, arrivals = 0.0, 0, 0
    for _ in range(40):
        actions = env.shortest_path_actions()
        before = env.positions.copy()
        _, reward, _, _, info = env.step(actions)
        moved = (env.positions != before).any(-1) | info["arrived"]
        moves += int(moved.sum())
        arrivals += int(info["arrived"].sum())
        paid += float(reward.sum())
    assert arrivals > 0  # targets were reached, and they paid no +1
    assert paid == pytest.approx(0.01 * moves, abs=1e-4)


def test_follower_plus_goal_and_goal_rewards():
    for reward, expect in (("goal", lambda moves, arr: arr), ("follower+goal", lambda m, a: a + 0.01 * m)):
        env = _env(num_agents=1, reward=reward)
        env.reset()
        paid, moves, arrivals = 0.0, 0, 0
        for _ in range(40):
            before = env.positions.copy()
            _, r, _, _, info = env.step(env.shortest_path_actions())
            moves += int(((env.positions != before).any(-1) | info["arrived"]).sum())
            arrivals += int(info["arrived"].sum())
            paid += float(r.sum())
        assert paid == pytest.approx(expect(moves, arrivals), abs=1e-4)


def test_wrong_moves_earn_no_path_reward():
    env = _env(num_agents=4, reward="follower")
    env.reset()
    for _ in range(20):
        planned = env.shortest_path_actions()
        wrong = np.where(planned == 0, 1, (planned % 4) + 1)  # some other direction than planned
        wrong = np.where(wrong == planned, 0, wrong)
        _, reward, _, _, _ = env.step(wrong)
        assert (reward == 0).all()


def test_bad_reward_options():
    with pytest.raises(MemarlError, match="reward must be one of goal, follower"):
        _env(reward="dense")
    with pytest.raises(MemarlError, match="path_reward"):
        _env(reward="follower", path_reward=float("nan"))


def test_shortest_path_actions_reach_the_target_alone():
    env = _env(num_envs=1, num_agents=1, on_target="finish", max_episode_steps=200)
    env.reset()
    start, target = env.positions[0, 0].copy(), env.targets[0, 0].copy()
    for steps in range(1, 200):
        _, _, terminated, _, info = env.step(env.shortest_path_actions())
        if info["episode_end"][0]:
            break
    assert terminated[0, 0]
    assert steps >= abs(start - target).sum()


def test_greedy_baseline_beats_random_actions():
    env = _env(num_envs=4, num_agents=4)
    rng = np.random.default_rng(0)
    greedy = GreedyPathPolicy()
    greedy_total, _ = _run(env, greedy.act, 64)
    random_total, _ = _run(env, lambda e: rng.integers(0, 5, (e.num_envs, e.num_agents)), 64)
    assert greedy_total.sum() > 3 * max(random_total.sum(), 1)


def test_greedy_random_moves_only_blocked_agents():
    env = _env(num_envs=2, num_agents=6)
    policy = make_baseline("greedy-random")
    env.reset()
    changed = 0
    for _ in range(30):
        planned = env.shortest_path_actions()
        actions = policy.act(env)
        changed += int((actions != planned).sum())
        env.step(actions)
    assert changed > 0
    with pytest.raises(MemarlError, match="unknown baseline"):
        make_baseline("astar9000")


def test_srmt_lmapf_preset_takes_a_ppo_step_on_pogema():
    from memarl.agents import make_agent
    from memarl.train.ppo import PPOConfig, ppo_update
    from memarl.train.rollout import RolloutCollector

    torch.manual_seed(0)
    env = _env(num_envs=2, num_agents=3, reward="follower")
    policy = make_agent("srmt", env.obs_shape, env.num_actions, preset="lmapf")
    assert policy.config.d_model == 512
    collector = RolloutCollector(env, policy, rollout_len=2, device=torch.device("cpu"), seed=0)
    segment, next_value = collector.collect(policy_version=0)
    before = [p.detach().clone() for p in policy.parameters()]
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4)
    stats = ppo_update(policy, optimizer, segment, next_value, PPOConfig(num_minibatches=1),
                       np.random.default_rng(0))
    assert np.isfinite(stats["policy_loss"])
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters()))


def test_train_on_lmapf_keeps_best_by_throughput(tmp_path):
    from memarl.train.checkpoint import load_checkpoint
    from memarl.train.trainer import TrainConfig, train

    cfg = TrainConfig(env="pogema-lmapf", agent="srmt", total_steps=6_000, num_envs=4,
                      rollout_len=8, seed=0, run_dir=str(tmp_path / "run"), print_every_s=1e9,
                      env_options={"num_agents": 4, "size": 8, "max_episode_steps": 16,
                                   "reward": "follower"})
    run = train(cfg, quiet=True)
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert 0.0 <= best["best_score"] <= 4.0  # an average throughput, arrivals per step
