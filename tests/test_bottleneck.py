"""Bottleneck: maps, sampling, step-exactness with pogema 1.4.0, observations, rewards, metrics, API."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

import memarl.envs as E
from memarl.envs import grid as G
from memarl.envs.bottleneck import (
    REWARD_SCHEMES,
    TEST_CORRIDOR_LENGTHS,
    TRAIN_CORRIDOR_LENGTHS,
    BottleneckConfig,
    BottleneckEnv,
    bottleneck_map,
    eval_episode_steps,
    sample_start_goal,
)
from memarl.errors import MemarlError
from memarl.registry import ENVS, SUITES

from .test_grid import ref_path_window

pogema = pytest.importorskip("pogema")

MAPS_DIR = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "pogema-maps" / "bottleneck"
MOVE_OF = {(-1, 0): 1, (1, 0): 2, (0, -1): 3, (0, 1): 4}


# ------------------------------------------------------------------------------------ maps, sampling


def test_map_builder():
    assert bottleneck_map(3) == "\n".join([".........", ".........", "####.####", "####.####", "####.####",
                                           ".........", "........."])
    obst = G.parse_map(bottleneck_map(1000))
    assert obst.shape == (1004, 9)
    assert not obst[2:1002, 4].any() and obst[2:1002, [0, 1, 2, 3, 5, 6, 7, 8]].all()
    assert not obst[[0, 1, 1002, 1003]].any()


@pytest.mark.parametrize("fname, prefix, lengths", [
    ("bottlenecks-9-330.yaml", "bottlenecks9-v-train-330-{}", TRAIN_CORRIDOR_LENGTHS),
    ("test-bottlenecks-9-31000.yaml", "bottlenecks9-v_corr-{}_len", TEST_CORRIDOR_LENGTHS),
])
def test_maps_equal_original_files(fname, prefix, lengths):
    yaml = pytest.importorskip("yaml")
    path = MAPS_DIR / fname
    if not path.exists():
        pytest.skip(f"{path} not available")
    maps = yaml.safe_load(path.read_text())
    assert len(maps) == len(lengths)
    for L in lengths:
        assert maps[prefix.format(L)].split() == bottleneck_map(L).split()


@pytest.mark.parametrize("L", [1, 3, 27, 1000])
def test_sampling_rooms_and_original_draw_order(L):
    for seed in range(10):
        starts, goals = sample_start_goal(L, np.random.default_rng(seed))
        assert starts[0, 0] in (0, 1) and goals[1, 0] in (0, 1)
        assert starts[1, 0] in (L + 2, L + 3) and goals[0, 0] in (L + 2, L + 3)
        assert ((0 <= starts[:, 1]) & (starts[:, 1] < 9)).all() and ((0 <= goals[:, 1]) & (goals[:, 1] < 9)).all()
        # the original MultiMapWrapper's eight rng.choice draws, in its order
        rng = np.random.default_rng(seed)
        top, bottom = range(0, 2), range(L + 2, L + 4)
        expected = [rng.choice(rr, 1)[0] for rr in (top, range(9), bottom, range(9), bottom, range(9), top, range(9))]
        assert [*starts.reshape(-1), *goals.reshape(-1)] == expected
        s2, g2 = sample_start_goal(L, np.random.default_rng(seed))
        assert (s2 == starts).all() and (g2 == goals).all()


def test_distinct_cells_option():
    L, seen_same = 1, 0
    for seed in range(400):
        s, g = sample_start_goal(L, np.random.default_rng(seed))
        seen_same += int((s[1] == g[0]).all() or (s[0] == g[1]).all())
        s, g = sample_start_goal(L, np.random.default_rng(seed), distinct_cells=True)
        assert not ((s[1] == g[0]).all() or (s[0] == g[1]).all())
    assert seen_same > 0  # by default coincidences are kept (D9)


# ------------------------------------------------------------------------------------ pogema step-exactness


def pogema_env(L, starts, goals, max_steps, collision="block_both"):
    """pogema 1.4.0 env for the same map and start/goal configuration as one of ours."""
    gc = pogema.GridConfig(map=bottleneck_map(L), agents_xy=[tuple(int(x) for x in s) for s in starts],
                           targets_xy=[tuple(int(x) for x in g) for g in goals], num_agents=2,
                           on_target="finish", collision_system=collision, obs_radius=2,
                           observation_type="POMAPF", max_episode_steps=int(max_steps), seed=0)
    return pogema.pogema_v0(gc)


def _biased_actions(env, rng, follow=0.8):
    """Random actions, mostly following the plan; in even envs agent 1 mostly waits for agent 0."""
    act = rng.integers(0, 5, (env.num_envs, 2))
    sub, pos = env.subgoals, env.positions
    for n in range(env.num_envs):
        for a in range(2):
            if a == 1 and n % 2 == 0 and env.alive[n, 0] and rng.random() < 0.9:
                act[n, a] = 0
            elif rng.random() < follow:
                act[n, a] = MOVE_OF.get(tuple(int(x) for x in sub[n, a] - pos[n, a]), 0)
    return act


def compare_with_pogema(lengths, seeds, steps=None, collision="block_both", action_seed=0, follow=0.8):
    """Step our batch and one pogema env per (L, seed) with the same actions; assert equality.

    Checks, every step: positions (pogema ``get_agents_xy(ignore_borders=True)``, finished agents
    included), ``obstacles`` and ``agents`` windows of both agents (finished agents included),
    terminated, truncated, pogema's reward (= our arrival flag) and the episode end.
    Returns (steps, arrivals, ended episodes).
    """
    n = len(lengths)
    limits = [eval_episode_steps(L) for L in lengths]
    env = BottleneckEnv(num_envs=n, autoreset=False, collision_system=collision)
    env.reset(options={"corridor_lengths": lengths, "episode_seeds": seeds, "max_episode_steps": limits})
    ref, ref_obs = [], []
    for i in range(n):
        pe = pogema_env(lengths[i], env.positions[i], env.targets[i], limits[i], collision)
        ref.append(pe)
        ref_obs.append(pe.reset()[0])
    rng = np.random.default_rng(action_seed)
    ended = np.zeros(n, bool)
    arrivals = 0
    total = max(limits) if steps is None else steps
    for t in range(total):
        raw = env.pogema_observation()
        for i in np.flatnonzero(~ended):
            xy = np.array(ref[i].get_agents_xy(ignore_borders=True))
            assert (xy == env.positions[i]).all(), (lengths[i], t, xy, env.positions[i])
            for a in range(2):
                assert (ref_obs[i][a]["obstacles"] == raw["obstacles"][i, a]).all(), (lengths[i], t, a)
                assert (ref_obs[i][a]["agents"] == raw["agents"][i, a]).all(), (lengths[i], t, a)
        act = _biased_actions(env, rng, follow)
        _, _, term, trunc, info = env.step(act)
        for i in np.flatnonzero(~ended):
            obs, rew, pterm, ptrunc, _ = ref[i].step([int(x) for x in act[i]])
            ref_obs[i] = obs
            assert term[i].tolist() == list(pterm), (lengths[i], t)
            assert trunc[i].tolist() == list(ptrunc), (lengths[i], t)
            assert info["arrived"][i].astype(float).tolist() == rew, (lengths[i], t)
            arrivals += int(sum(rew))
            assert info["episode_end"][i] == (all(pterm) or all(ptrunc))
            ended[i] = info["episode_end"][i]
        if ended.all():
            break
    return t + 1, arrivals, int(ended.sum())


def test_step_exact_short_test_maps():
    lengths = [L for L in TEST_CORRIDOR_LENGTHS if L <= 50]  # 48 maps, one batch (mixed heights)
    _, arrivals, ended = compare_with_pogema(lengths, list(range(len(lengths))), action_seed=0)
    assert ended == len(lengths) and arrivals >= 10  # full episodes, incl. after an agent finished
    _, arrivals, ended = compare_with_pogema(lengths[:16], [100 + s for s in range(16)], action_seed=1, follow=0.95)
    assert ended == 16 and arrivals >= 8


def test_step_exact_long_test_maps_briefly():
    lengths = [L for L in TEST_CORRIDOR_LENGTHS if L > 50]
    steps, _, _ = compare_with_pogema(lengths, list(range(len(lengths))), steps=150, action_seed=2)
    assert steps == 150


def test_step_exact_truncation_and_priority():
    # short limit: truncation step and the terminated-and-truncated case match pogema
    compare_with_pogema([3, 4, 5, 3], [0, 1, 2, 3], action_seed=3, follow=0.0)
    _, arrivals, ended = compare_with_pogema([3] * 20, list(range(20)), collision="priority", action_seed=4)
    assert ended == 20 and arrivals >= 30


# ------------------------------------------------------------------------------------ observations


def reference_obs(env):
    """Independent observation: reference BFS path, padded walls, agents, others' targets."""
    out = np.zeros((env.num_envs, 2, 3, 5, 5), np.float32)
    for n in range(env.num_envs):
        L = int(env.corridor_lengths[n])
        obst = G.parse_map(bottleneck_map(L))
        padded = G.pad_obstacles(obst, 2)
        pos, tgt = env.positions[n], env.targets[n]
        for a in range(2):
            if not env.alive[n, a]:
                continue
            r, c = (int(x) for x in pos[a])
            walls = padded[r:r + 5, c:c + 5]
            path = ref_path_window(obst, tuple(int(x) for x in tgt[a]), (r, c), 2)
            out[n, a, 0] = path.astype(np.float32) - walls
            for b in range(2):
                dr, dc = pos[b] - pos[a]
                if env.alive[n, b] and abs(dr) <= 2 and abs(dc) <= 2:
                    out[n, a, 1, dr + 2, dc + 2] = 1
                dr, dc = tgt[b] - pos[a]
                if b != a and abs(dr) <= 2 and abs(dc) <= 2:
                    out[n, a, 2, dr + 2, dc + 2] = 1
    return out


def test_observation_matches_reference():
    env = BottleneckEnv(num_envs=6, seed=3, corridor_lengths=(1, 2, 3, 7), max_episode_steps=60)
    obs = env.reset()
    rng = np.random.default_rng(0)
    finished_seen = 0
    for _ in range(300):
        assert obs.shape == (6, 2, 3, 5, 5) and obs.dtype == np.float32
        assert (obs == reference_obs(env)).all()
        finished_seen += int((~env.alive).sum())
        obs, *_ = env.step(_biased_actions(env, rng, follow=0.9))
    assert finished_seen > 0


def test_finished_agent_obs_and_targets():
    # L=1, seed 1: agent 0 (0,4) -> (3,1); agent 1 (4,8) -> (1,8); agent 1 waits until agent 0 is done
    for hide in (False, True):
        env = BottleneckEnv(num_envs=1, corridor_lengths=(1,), hide_finished_targets=hide)
        env.reset(options={"corridor_lengths": [1], "episode_seeds": [1]})
        for a0 in [2, 2, 2, 3, 3, 3]:
            obs, *_ = env.step(np.array([[a0, 0]]))
        assert env.alive.tolist() == [[False, True]]
        assert (obs[0, 0] == 0).all()
        for a1 in [3, 3, 3]:  # walk agent 1 to (4, 5): agent 0's goal (3, 1) is 1 row up, 4 cols left
            obs, *_ = env.step(np.array([[0, a1]]))
        for a1 in [3, 3]:
            obs, *_ = env.step(np.array([[0, a1]]))
        # agent 1 at (4, 3); agent 0's target (3, 1) is at relative (-1, -2)
        assert tuple(env.positions[0, 1]) == (4, 3)
        assert obs[0, 1, 2, 1, 0] == (0.0 if hide else 1.0)
        assert obs[0, 1, 1].sum() == 1 and obs[0, 1, 1, 2, 2] == 1  # only itself


# ------------------------------------------------------------------------------------ rewards, metrics

# L=1, seed 1: agent 0 (0,4) -> (3,1), path down x3, left x3; agent 1 (4,8) -> (1,8).
SCRIPT_A0 = [2, 2, 2, 3, 3, 3] + [0] * 10
SCRIPT_A1 = [0, 3, 1, 3, 4, 0, 1, 3, 3, 3, 1, 1, 4, 4, 4, 4]
# per step: wait / move, towards (reached the previous plan's next cell), arrival
GOLDEN = {
    "directional": ([.005] * 5 + [1] + [0] * 10, [0, 0, .005, .005, 0, 0, 0] + [.005] * 8 + [1]),
    "sparse": ([0] * 5 + [1] + [0] * 10, [0] * 15 + [1]),
    "dense": ([-.01] * 5 + [1] + [0] * 10, [-.01] * 15 + [1]),
    "directional_negative": ([-.005] * 5 + [1] + [0] * 10,
                             [-.01, -.01, -.005, -.005, -.01, -.01, -.01] + [-.005] * 8 + [1]),
    "moving_negative": ([-.01] * 5 + [1] + [0] * 10,
                        [-.005, -.01, -.01, -.01, -.01, -.005, -.01] + [-.01] * 8 + [1]),
}


@pytest.mark.parametrize("scheme", sorted(REWARD_SCHEMES))
def test_reward_golden(scheme):
    env = BottleneckEnv(num_envs=1, reward=scheme, corridor_lengths=(1,))
    env.reset(options={"corridor_lengths": [1], "episode_seeds": [1]})
    assert env.positions[0].tolist() == [[0, 4], [4, 8]] and env.targets[0].tolist() == [[3, 1], [1, 8]]
    rewards, metrics = [], None
    for t, (a0, a1) in enumerate(zip(SCRIPT_A0, SCRIPT_A1)):
        _, rew, term, trunc, info = env.step(np.array([[a0, a1]]))
        assert rew.dtype == np.float32
        rewards.append(rew[0].tolist())
        assert not trunc.any()
        assert term[0].tolist() == [t >= 5, t >= 15]
        if info["episode_end"][0]:
            metrics = info["episode_metrics"][0]
            assert info["first"][0].all()
    np.testing.assert_allclose(np.array(rewards).T, np.array(GOLDEN[scheme]), atol=1e-7)
    assert metrics["CSR"] == 1.0 and metrics["ISR"] == 1.0
    assert metrics["SoC"] == 6 + 16 and metrics["makespan"] == 16 and metrics["episode_length"] == 16
    assert metrics["corridor_length"] == 1 and metrics["episode_seed"] == 1
    np.testing.assert_allclose(metrics["return"], np.mean(np.sum(GOLDEN[scheme], axis=1)), atol=1e-5)


def test_metrics_on_truncation_and_function():
    assert G.finish_mode_metrics(np.array([1, 4]), 4) == {
        "CSR": 1.0, "ISR": 1.0, "SoC": 5, "makespan": 4, "episode_length": 4}
    env = BottleneckEnv(num_envs=1, corridor_lengths=(1,), reward="sparse")
    env.reset(options={"corridor_lengths": [1], "episode_seeds": [1], "max_episode_steps": [10]})
    for t in range(10):
        _, _, term, trunc, info = env.step(np.array([[SCRIPT_A0[t], 0]]))
    assert trunc[0].tolist() == [True, True] and term[0].tolist() == [True, False]
    m = info["episode_metrics"][0]
    assert (m["CSR"], m["ISR"], m["SoC"], m["makespan"], m["episode_length"]) == (0.0, 0.5, 16, 10, 10)
    assert m["max_episode_steps"] == 10


# ------------------------------------------------------------------------------------ resets, seeding


def _rollout(env, actions, seed=None):
    out = [env.reset(seed=seed)]
    for act in actions:
        obs, rew, term, trunc, info = env.step(act)
        out += [obs, rew, term, trunc, info["first"], env.positions.copy(), env.targets.copy()]
    return out


def _same(a, b):
    return all((x == y).all() for x, y in zip(a, b))


def test_seeded_determinism():
    acts = np.random.default_rng(0).integers(0, 5, (300, 4, 2))
    a = _rollout(BottleneckEnv(num_envs=4, seed=11, max_episode_steps=25), acts)
    assert _same(a, _rollout(BottleneckEnv(num_envs=4, seed=11, max_episode_steps=25), acts))
    assert not _same(a, _rollout(BottleneckEnv(num_envs=4, seed=12, max_episode_steps=25), acts))
    # reset(seed=...) reseeds the env streams, also on an env that was made without a seed
    env = BottleneckEnv(num_envs=4, max_episode_steps=25)
    assert _same(a, _rollout(env, acts, seed=11))
    assert _same(a, _rollout(env, acts, seed=11))


def test_batched_equals_separate_envs():
    n, steps = 3, 400
    acts = np.random.default_rng(1).integers(0, 5, (steps, n, 2))
    batched = BottleneckEnv(num_envs=n, seed=7, max_episode_steps=30, reward="dense")
    singles = [BottleneckEnv(num_envs=1, seed=7 + i, max_episode_steps=30, reward="dense") for i in range(n)]
    obs = batched.reset()
    for i, s in enumerate(singles):
        assert (s.reset()[0] == obs[i]).all()
    resets = 0
    for t in range(steps):
        obs, rew, term, trunc, info = batched.step(acts[t])
        resets += int(info["episode_end"].sum())
        for i, s in enumerate(singles):
            o1, r1, te1, tr1, info1 = s.step(acts[t, i:i + 1])
            assert (o1[0] == obs[i]).all() and (r1[0] == rew[i]).all()
            assert (te1[0] == term[i]).all() and (tr1[0] == trunc[i]).all()
            assert info1["episode_metrics"][0] == info["episode_metrics"][i]
            assert (s.positions[0] == batched.positions[i]).all()
    assert resets >= 3 * n


def test_autoreset_and_first_flags():
    env = BottleneckEnv(num_envs=2, seed=0, max_episode_steps=5)
    env.reset()
    for t in range(1, 11):
        obs, _, _, trunc, info = env.step(np.zeros((2, 2), np.int64))
        end = t % 5 == 0
        assert info["episode_end"].tolist() == [end, end] and trunc.all() == end
        assert info["first"].all() == end
        if end:
            assert env.alive.all() and (env.elapsed_steps == 0).all()
            assert info["episode_metrics"][0]["episode_length"] == 5


def test_no_autoreset_freezes_until_reset():
    env = BottleneckEnv(num_envs=2, autoreset=False)
    env.reset(options={"corridor_lengths": [3, 5], "episode_seeds": [0, 1], "max_episode_steps": [4, 8]})
    for _ in range(8):
        env.step(np.ones((2, 2), np.int64))
    assert env.done.tolist() == [True, True]
    pos = env.positions.copy()
    obs, rew, term, trunc, info = env.step(np.full((2, 2), 2))
    assert (env.positions == pos).all() and not rew.any() and not term.any() and not trunc.any()
    assert not info["episode_end"].any() and (obs == 0).all() and not env.alive.any()
    env.reset()
    assert env.alive.all() and not env.done.any()


def test_pinned_episodes_and_per_env_limits():
    env = BottleneckEnv(num_envs=3, seed=5)
    env.reset(options={"corridor_lengths": [3, 1000, 7], "episode_seeds": [4, 5, 6]})
    for i, (L, s) in enumerate([(3, 4), (1000, 5), (7, 6)]):
        starts, goals = sample_start_goal(L, np.random.default_rng(s))
        assert (env.positions[i] == starts).all() and (env.targets[i] == goals).all()
    assert env.corridor_lengths.tolist() == [3, 1000, 7]
    assert env.max_episode_steps.tolist() == [512, 512, 512]
    env.set_episodes([9], [2], [eval_episode_steps(9)], env_ids=[1])
    env.reset()
    assert env.corridor_lengths.tolist() == [3, 9, 7] and env.max_episode_steps[1] == 118
    env.set_episodes(None)
    env.reset()
    assert set(env.corridor_lengths.tolist()) <= set(TRAIN_CORRIDOR_LENGTHS)
    test_env = BottleneckEnv(num_envs=2, corridor_lengths=(5, 300), max_episode_steps=None, seed=0)
    test_env.reset()
    assert (test_env.max_episode_steps == 2 * test_env.corridor_lengths + 100).all()


def test_fixed_positions_per_instance():
    env = BottleneckEnv(num_envs=2, seed=3, corridor_lengths=(3, 4), fixed_positions_per_instance=True,
                        max_episode_steps=2)
    env.reset()
    seen = {}
    for _ in range(40):
        for i in range(2):
            key = (i, int(env.corridor_lengths[i]))
            conf = (env.positions[i].tolist(), env.targets[i].tolist())
            assert seen.setdefault(key, conf) == conf
        env.step(np.zeros((2, 2), np.int64))
        env.step(np.zeros((2, 2), np.int64))
    assert len(seen) == 4


def test_map_choice_uniform_over_lengths():
    env = BottleneckEnv(num_envs=8, seed=0, max_episode_steps=1)
    env.reset()
    counts = {}
    for _ in range(100):
        env.step(np.zeros((8, 2), np.int64))
        for L in env.corridor_lengths:
            counts[int(L)] = counts.get(int(L), 0) + 1
    assert set(counts) == set(TRAIN_CORRIDOR_LENGTHS) and min(counts.values()) > 20


# ------------------------------------------------------------------------------------ API, errors


def test_spaces_and_attributes():
    env = BottleneckEnv(num_envs=2, seed=0)
    obs = env.reset()
    assert env.num_envs == 2 and env.num_agents == 2 and env.num_actions == 5
    assert env.obs_shape == (3, 5, 5) and env.single_observation_space.shape == (3, 5, 5)
    assert env.single_action_space.n == 5
    assert all(env.single_observation_space.contains(o) for o in obs.reshape(-1, 3, 5, 5))
    assert env.positions.shape == (2, 2, 2) and env.targets.shape == (2, 2, 2) and env.alive.shape == (2, 2)
    assert isinstance(env.render(0), str)


def test_registry_and_parallel_env():
    env = ENVS.make("bottleneck", num_envs=4)
    assert isinstance(env, BottleneckEnv) and env.num_envs == 4
    assert isinstance(E.make("bottleneck-v0", num_envs=2, reward="sparse"), BottleneckEnv)
    from memarl.envs.maps import corridor_length
    test = SUITES.make("bottleneck-test")
    assert tuple(map(corridor_length, test.map_names)) == TEST_CORRIDOR_LENGTHS and test.seeds == tuple(range(10))
    assert test.episode_steps is None and len(test.episodes()) == 580  # the env's rule: 2L + 100
    train = SUITES.make("bottleneck-train")
    assert tuple(map(corridor_length, train.map_names)) == TRAIN_CORRIDOR_LENGTHS and train.episode_steps == 512
    with pytest.raises(MemarlError):
        E.make_parallel("bottleneck", num_envs=2)


def test_pettingzoo_parallel_api():
    from pettingzoo.test import parallel_api_test

    parallel_api_test(E.make_parallel("bottleneck", seed=1, corridor_lengths=(3,), max_episode_steps=300),
                      num_cycles=1000)
    penv = E.make_parallel("bottleneck", corridor_lengths=(1,))
    obs, _ = penv.reset(options={"corridor_lengths": [1], "episode_seeds": [1]})
    assert set(obs) == {"agent_0", "agent_1"} and obs["agent_0"].shape == (3, 5, 5)
    for t, (a0, a1) in enumerate(zip(SCRIPT_A0, SCRIPT_A1)):
        acts = {"agent_0": a0, "agent_1": a1} if t < 6 else {"agent_1": a1}
        obs, rew, term, trunc, info = penv.step(acts)
        if t == 5:
            assert term["agent_0"] and rew["agent_0"] == 1.0 and penv.agents == ["agent_1"]
    assert penv.agents == [] and info["agent_1"]["episode_metrics"]["SoC"] == 22
    assert penv.state().shape == (5, 9)


@pytest.mark.parametrize("kwargs, word", [
    ({"corridor_lengths": (3, 0)}, "corridor_lengths entry must be an integer in 1..10000"),
    ({"corridor_lengths": ()}, "corridor_lengths"),
    ({"num_envs": 0}, "num_envs"),
    ({"reward": "shaped"}, "reward must be one of directional"),
    ({"max_episode_steps": 0}, "max_episode_steps"),
    ({"obs_radius": 0}, "obs_radius"),
    ({"collision_system": "soft"}, "collision_system"),
    ({"seed": -1}, "seed"),
    ({"colour": 1}, "unknown bottleneck option"),
])
def test_bad_config(kwargs, word):
    with pytest.raises(MemarlError, match=word):
        BottleneckEnv(**kwargs)


def test_bad_step_and_reset_input():
    env = BottleneckEnv(num_envs=2, seed=0)
    with pytest.raises(MemarlError, match="reset"):
        env.step(np.zeros((2, 2), np.int64))
    env.reset()
    for bad, word in [(np.zeros((2,), np.int64), "shape"), (np.zeros((3, 2), np.int64), "shape"),
                      (np.full((2, 2), 5), "0..4"), (np.full((2, 2), -1), "0..4"),
                      (np.zeros((2, 2), np.float32), "integers")]:
        with pytest.raises(MemarlError, match=word):
            env.step(bad)
    with pytest.raises(MemarlError, match="unknown reset option"):
        env.reset(options={"maps": [3, 3]})
    with pytest.raises(MemarlError, match="corridor length"):
        env.reset(options={"corridor_lengths": [3, 0]})
    with pytest.raises(MemarlError, match="2 entries"):
        env.set_episodes([3, 4, 5])
    with pytest.raises(MemarlError, match="env id"):
        env.set_episodes([3], env_ids=[2])
    with pytest.raises(MemarlError):
        bottleneck_map(0)
    with pytest.raises(MemarlError):
        BottleneckConfig(corridor_lengths=(2.5,))


def test_bench_smoke():
    from memarl.eval.bench import bench_env, format_bench

    result = bench_env("bottleneck", num_envs=4, steps=30, seed=0)
    for key in ("ours_agent_steps_per_s", "ours_n1_agent_steps_per_s", "pogema_agent_steps_per_s", "ratio"):
        assert result[key] > 0
    assert "pogema" in format_bench(result)
