"""Native POGEMA engine: step-exactness with pogema 1.4.0, soft rule, generators, observations, errors."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

import memarl.envs as E
from memarl.envs import grid as G
from memarl.envs.pogema_env import PogemaEnv
from memarl.errors import MemarlError
from memarl.registry import ENVS

from .test_grid import ref_path_window

pogema = pytest.importorskip("pogema")

MODES = ("finish", "nothing", "restart")

pytestmark = pytest.mark.filterwarnings("ignore:Agent .* cycling back:UserWarning")


# ------------------------------------------------------------------------------------ helpers


def _text(obstacles) -> str:
    return G.map_to_text(np.asarray(obstacles, dtype=bool))


def _pogema(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = pogema.pogema_v0(pogema.GridConfig(observation_type="POMAPF", **kw))
        env.reset()
    return env


def _actions(rng, pos, tgt, follow):
    """Random actions [N, A], biased towards the targets (so that agents arrive and meet)."""
    n, a = pos.shape[:2]
    act = rng.integers(0, 5, size=(n, a))
    d = tgt - pos
    greedy = np.where(d[..., 0] < 0, 1, np.where(d[..., 0] > 0, 2, np.where(d[..., 1] < 0, 3,
                                                                             np.where(d[..., 1] > 0, 4, 0))))
    alt = np.where(d[..., 1] < 0, 3, np.where(d[..., 1] > 0, 4, greedy))
    greedy = np.where(rng.random((n, a)) < 0.5, greedy, alt)
    return np.where(rng.random((n, a)) < follow, greedy, act)


def _occupancy_ok(pe) -> bool:
    """pogema's occupancy grid equals the true occupancy (its soft bug has not triggered)."""
    g = pe.grid
    true = np.zeros_like(g.positions)
    for j, (x, y) in enumerate(g.positions_xy):
        if g.is_active[j]:
            true[x, y] = 1
    return bool((true == g.positions).all())


def compare(env: PogemaEnv, pes: list, rng, steps: int, follow: float, soft: bool = False) -> dict:
    """Step ``env`` (N envs) and one pogema env per env with the same actions; assert equality.

    Each env is compared for one episode (until it ends). For ``soft`` positions are compared
    only until pogema lets a rotation of >= 3 agents through (we block it), and observations
    only while pogema's occupancy grid is consistent (its bug, reference/pogema.md section 6).
    Returns counters.
    """
    n, a = env.num_envs, env.num_agents
    live = np.ones(n, dtype=bool)
    obs_ok = np.ones(n, dtype=bool)
    stats = {"steps": 0, "arrivals": 0, "ended": 0, "soft_bug": 0, "rotations": 0}

    def check_obs(i):
        raw = env.pogema_observation()
        pobs = pes[i].env_obs
        for j in range(a):
            assert (raw["obstacles"][i, j] == pobs[j]["obstacles"]).all()
            if obs_ok[i]:
                assert (raw["agents"][i, j] == pobs[j]["agents"]).all(), (i, j)
            assert tuple(raw["xy"][i, j]) == tuple(pobs[j]["xy"])
            assert tuple(raw["target_xy"][i, j]) == tuple(pobs[j]["target_xy"])

    for i, pe in enumerate(pes):
        pe.env_obs = pe.last_obs
        check_obs(i)
    for _ in range(steps):
        if not live.any():
            break
        act = _actions(rng, env.positions, env.targets, follow)
        before = env.positions.copy()
        _, rew, term, trunc, info = env.step(act)
        stats["steps"] += int(live.sum())
        for i in np.flatnonzero(live):
            pe = pes[i]
            prev = [tuple(p) for p in pe.grid.positions_xy]
            pobs, prew, pterm, ptrunc, pinfo = pe.step([int(x) for x in act[i]])
            pe.env_obs = pobs
            ppos = np.array(pe.get_agents_xy(ignore_borders=True))
            if soft:
                obs_ok[i] &= _occupancy_ok(pe)
            ended = bool(info["episode_end"][i])
            if not ended:
                mine = env.positions[i]
                if soft and not (mine == ppos).all():
                    now = [tuple(p) for p in pe.grid.positions_xy]
                    moved = {prev[j]: now[j] for j in range(a) if prev[j] != now[j]}
                    assert _has_cycle(moved), "soft: positions differ without a rotation in pogema"
                    stats["rotations"] += 1
                    live[i] = False
                    continue
                assert (mine == ppos).all(), (i, before[i], act[i], mine, ppos)
                assert (env.targets[i] == np.array(pe.get_targets_xy(ignore_borders=True))).all()
                check_obs(i)
            assert (rew[i] == np.array(prew, dtype=np.float32)).all(), (rew[i], prew)
            assert (term[i] == np.array(pterm)).all(), (term[i], pterm)
            assert (trunc[i] == np.array(ptrunc)).all()
            stats["arrivals"] += int(np.sum(prew))
            p_end = all(pterm) or all(ptrunc)
            assert ended == p_end
            if ended:
                pm = pinfo[0]["metrics"]
                m = info["episode_metrics"][i]
                for key, val in pm.items():
                    assert m[key] == pytest.approx(val), (key, m[key], val)
                live[i] = False
                stats["ended"] += 1
        stats["soft_bug"] += int((~obs_ok).sum())
    return stats


def _has_cycle(moved: dict) -> bool:
    for startp in moved:
        seen, p = set(), startp
        while p in moved and p not in seen:
            seen.add(p)
            p = moved[p]
        if p == startp:
            return True
    return False


def _random_instance(rng, h, w, density, a):
    """A random map with ``a`` distinct starts and ``a`` targets (our generator, arbitrary seed)."""
    while True:
        obst = rng.random((h, w)) < density
        free = np.flatnonzero(~obst.reshape(-1))
        if free.size >= a + 1:
            break
    starts = rng.choice(free, a, replace=False)
    targets = rng.choice(free, a, replace=True)
    return obst, np.stack(np.divmod(starts, w), -1), np.stack(np.divmod(targets, w), -1)


def _custom_pair(rng, mode, collision, radius, steps, h, w, density, a, seq_len=4):
    obst, starts, targets = _random_instance(rng, h, w, density, a)
    text = _text(obst)
    s_xy = [tuple(map(int, s)) for s in starts]
    if mode == "restart":
        free = np.flatnonzero(~obst.reshape(-1))
        seqs = [[tuple(map(int, np.divmod(c, w))) for c in rng.choice(free, seq_len)] for _ in range(a)]
        t_xy = [[list(p) for p in s] for s in seqs]
    else:
        t_xy = [tuple(map(int, t)) for t in targets]
    kw = dict(map=text, agents_xy=[list(s) for s in s_xy],
              targets_xy=t_xy if mode == "restart" else [list(t) for t in t_xy], num_agents=a,
              on_target=mode, collision_system=collision, obs_radius=radius, max_episode_steps=steps,
              seed=int(rng.integers(1000)))
    env = PogemaEnv(**kw)
    env.reset()
    pe = _pogema(**kw)
    return env, pe


def _pe_obs(pe):
    obj = pe
    while not hasattr(obj, "_pomapf_obs"):
        obj = obj.env
    return obj._pomapf_obs()


# ------------------------------------------------------------------------------------ step-exactness


@pytest.mark.parametrize("collision", ["priority", "block_both"])
def test_step_exact_custom_instances(collision):
    """~300 random custom configurations per collision system: sizes, densities, agents, modes, radii."""
    rng = np.random.default_rng({"priority": 1, "block_both": 2}[collision])
    total = {"steps": 0, "arrivals": 0, "ended": 0}
    for c in range(300):
        mode = MODES[c % 3]
        h, w = int(rng.integers(2, 12)), int(rng.integers(2, 12))
        density = float(rng.choice([0.0, 0.1, 0.2, 0.35]))
        free_max = max(1, int(h * w * (1 - density) * 0.6))
        a = int(rng.integers(1, min(free_max, 16) + 1))
        radius = int(rng.choice([1, 2, 3, 5]))
        steps = int(rng.choice([8, 20, 40]))
        env, pe = _custom_pair(rng, mode, collision, radius, steps, h, w, density, a)
        pe.last_obs = _pe_obs(pe)
        st = compare(env, [pe], rng, steps + 1, follow=float(rng.choice([0.3, 0.7, 0.9])))
        for k in total:
            total[k] += st[k]
    assert total["ended"] == 300
    assert total["arrivals"] > 300


@pytest.mark.parametrize("mode", MODES)
def test_step_exact_generated_instances(mode):
    """pogema's own random instances (map, starts, targets, restart targets) from seeds, batched."""
    rng = np.random.default_rng(10 + MODES.index(mode))
    for group in range(8):
        size = int(rng.integers(4, 16))
        density = float(rng.choice([0.1, 0.2, 0.3]))
        a = int(rng.integers(1, 12))
        collision = ["priority", "block_both"][group % 2]
        radius = int(rng.choice([1, 2, 4]))
        steps = int(rng.choice([16, 48]))
        seeds = [int(s) for s in rng.integers(0, 10_000, size=4)]
        kw = dict(size=size, density=density, num_agents=a, on_target=mode, collision_system=collision,
                  obs_radius=radius, max_episode_steps=steps)
        pes, ok_seeds = [], []
        for s in seeds:
            try:
                pe = _pogema(seed=s, **kw)
            except OverflowError:
                with pytest.raises(MemarlError, match="cannot place"):
                    PogemaEnv(seed=s, **kw).reset()
                continue
            pe.last_obs = _pe_obs(pe)
            pes.append(pe)
            ok_seeds.append(s)
        if not pes:
            continue
        # a fixed stream seed: the instances drawn on autoreset after an episode ends would
        # otherwise come from fresh entropy, and now and then be one no agent placement fits
        env = PogemaEnv(num_envs=len(pes), seed=group, **kw)
        env.reset(options={"seeds": ok_seeds})
        for i, pe in enumerate(pes):
            assert (env.obstacles(i) == pe.grid.get_obstacles(ignore_borders=True).astype(bool)).all()
        compare(env, pes, rng, steps + 1, follow=0.8)


def test_step_exact_empty_outside_false():
    """``empty_outside=False``: pogema's random obstacles beyond the ring, in every window."""
    rng = np.random.default_rng(33)
    seen_outside = 0
    for c in range(24):
        mode = MODES[c % 3]
        radius = int(rng.choice([1, 2, 4]))
        kw = dict(size=int(rng.integers(4, 10)), density=float(rng.choice([0.2, 0.4])), num_agents=3,
                  on_target=mode, collision_system=["priority", "block_both"][c % 2], obs_radius=radius,
                  max_episode_steps=24, seed=c, empty_outside=False, auto_reset=False)
        if c % 4 == 3:  # a custom map: the outside density is the config's
            kw.update(map=_text(rng.random((5, 6)) < 0.2), size=8)
            kw.pop("size")
        try:
            pe = _pogema(**kw)
        except OverflowError:
            continue
        env = PogemaEnv(**kw)
        env.reset()
        raw = env.pogema_observation()["obstacles"]
        seen_outside += int(raw.sum() > PogemaEnv(**{**kw, "empty_outside": True}).reset()[:, :, 0].sum())
        pe.last_obs = _pe_obs(pe)
        compare(env, [pe], rng, 25, follow=0.8)
    assert seen_outside >= 12  # the outside obstacles show up in the windows


def test_step_exact_random_map_with_custom_positions():
    """A generated map with custom starts/targets: pogema frees the cells under them; so do we."""
    rng = np.random.default_rng(21)
    for c in range(12):
        mode = MODES[c % 3]
        size = int(rng.integers(4, 9))
        starts = [[int(x), int(y)] for x, y in zip(rng.permutation(size)[:3], rng.permutation(size)[:3])]
        targets = [[int(x), int(y)] for x, y in rng.integers(0, size, (3, 2))]
        if mode == "restart":
            targets = [[t, [int(x) for x in rng.integers(0, size, 2)]] for t in targets]
        kw = dict(size=size, density=0.4, agents_xy=starts, targets_xy=targets, on_target=mode,
                  collision_system="block_both", obs_radius=2, max_episode_steps=30, seed=c)
        pe = _pogema(**kw)
        env = PogemaEnv(**kw)
        env.reset()
        assert (env.obstacles(0) == pe.grid.get_obstacles(ignore_borders=True).astype(bool)).all()
        pe.last_obs = _pe_obs(pe)
        compare(env, [pe], rng, 31, follow=0.8)


def test_restart_lonely_agent_is_an_error():
    env = PogemaEnv(map=".#..", agents_xy=[[0, 0]], targets_xy=[[0, 0]], on_target="restart")
    with pytest.raises(MemarlError, match="one-cell component"):
        env.reset()


def test_path_tables_have_fixed_size_and_follow_new_targets():
    """Lifelong runs keep one first-move row per agent (memory does not grow with new maps and
    targets) and the path channel follows every new target and new map."""
    env = PogemaEnv(num_envs=2, size=12, num_agents=6, on_target="restart", observation_type="follower",
                    obs_radius=2, seed=0, max_episode_steps=30)
    obs = env.reset()
    shape = env._moves.shape
    assert shape == (2 * 6, env._cap)
    rng = np.random.default_rng(0)
    arrivals = 0
    for t in range(70):  # more than two episodes: new maps too
        obs, rew, *_ = env.step(_actions(rng, env.positions, env.targets, 0.9))
        arrivals += int(rew.sum())
        assert env._moves.shape == shape
        if t % 7 == 0 or rew.any():
            walls = env.pogema_observation()["obstacles"]
            for i in range(2):
                obst = env.obstacles(i)
                for j in range(6):
                    path = ref_path_window(obst, tuple(env.targets[i, j]), tuple(env.positions[i, j]), 2)
                    assert np.array_equal(obs[i, j, 0], path - walls[i, j])
    assert arrivals > 5


# ------------------------------------------------------------------------------------ generators


def test_generators_reproduce_pogema_instances():
    from pogema.generator import generate_obstacles, generate_positions_and_targets_fast

    failed = 0
    for s in range(200):
        rng = np.random.default_rng(s)
        size, d, a = int(rng.integers(2, 20)), float(rng.uniform(0, 0.6)), int(rng.integers(1, 40))
        gc = pogema.GridConfig(size=size, density=d, num_agents=a, seed=s)
        obst = generate_obstacles(gc)
        mine = G.generate_obstacles(size, size, d, s)
        assert (obst.astype(bool) == mine).all()
        ps, pt = generate_positions_and_targets_fast(obst.astype(np.int32), gc)
        placed = G.generate_starts_targets(mine, a, s)
        if len(ps) < a:
            assert placed is None
            failed += 1
            continue
        assert placed[0].tolist() == [list(map(int, p)) for p in ps]
        assert placed[1].tolist() == [list(map(int, p)) for p in pt]
    assert 0 < failed < 150


def test_label_components():
    obst = G.parse_map("..#.\n###.\n.#..")
    labels, sizes = G.label_components(obst)
    assert labels.tolist() == [[0, 0, -1, 1], [-1, -1, -1, 1], [2, -1, 1, 1]]
    assert sizes.tolist() == [2, 4, 1]


# ------------------------------------------------------------------------------------ soft collisions


def _soft(cells, proposed, passable=None, active=None):
    cells, proposed = np.array([cells]), np.array([proposed])
    active = np.ones_like(cells, dtype=bool) if active is None else np.array([active])
    passable = np.ones_like(cells, dtype=bool) if passable is None else np.array([passable])
    return G.resolve_soft(cells, proposed, active, passable)[0].tolist()


def test_soft_rule_cases():
    # vertex conflict: the lower index moves
    assert _soft([0, 2], [1, 1]) == [1, 2]
    # following allowed, in both index orders; a chain behind a free cell moves
    assert _soft([0, 1, 2], [1, 2, 3]) == [1, 2, 3]
    assert _soft([2, 1, 0], [3, 2, 1]) == [3, 2, 1]
    # chain behind a waiting / blocked leader is blocked
    assert _soft([0, 1, 2], [1, 2, 2]) == [0, 1, 2]
    assert _soft([0, 1, 2], [1, 2, 3], passable=[True, True, False]) == [0, 1, 2]
    # swap blocked; rotation of 3 and 4 blocked (decision, pogema 1.4.0 lets rotations through)
    assert _soft([0, 1], [1, 0]) == [0, 1]
    assert _soft([0, 1, 2], [1, 2, 0]) == [0, 1, 2]
    assert _soft([0, 1, 2, 3], [1, 2, 3, 0]) == [0, 1, 2, 3]
    # a follower of a vertex-conflict loser is blocked, of the winner allowed
    assert _soft([0, 2, 5, 3], [1, 1, 2, 0]) == [1, 2, 5, 0]
    # inactive agents neither move nor block
    assert _soft([0, 1], [1, 2], active=[True, False]) == [1, 1]


def test_soft_pogema_rotation_differs():
    """pogema 1.4.0 lets a 2x2 rotation through; we block it (documented decision)."""
    kw = dict(map="..\n..", agents_xy=[[0, 0], [0, 1], [1, 1], [1, 0]],
              targets_xy=[[1, 1], [1, 0], [0, 0], [0, 1]], on_target="nothing",
              collision_system="soft", obs_radius=1, max_episode_steps=8, seed=0)
    pe = _pogema(**kw)
    pe.step([4, 2, 3, 1])  # clockwise
    assert [tuple(p) for p in pe.get_agents_xy(ignore_borders=True)] == [(0, 1), (1, 1), (1, 0), (0, 0)]
    env = PogemaEnv(**kw)
    env.reset()
    env.step(np.array([[4, 2, 3, 1]]))
    assert env.positions[0].tolist() == [[0, 0], [0, 1], [1, 1], [1, 0]]


def test_soft_bug_chain_fixed():
    """3 agents in a row all moving right: pogema's occupancy loses 2 agents, ours keeps all."""
    kw = dict(map="....", agents_xy=[[0, 0], [0, 1], [0, 2]], targets_xy=[[0, 3], [0, 3], [0, 3]],
              on_target="nothing", collision_system="soft", obs_radius=2, max_episode_steps=8, seed=0)
    pe = _pogema(**kw)
    pe.step([4, 4, 4])
    assert pe.grid.positions.sum() == 1.0
    env = PogemaEnv(**kw)
    env.reset()
    env.step(np.array([[4, 4, 4]]))
    assert env.positions[0].tolist() == [[0, 1], [0, 2], [0, 3]]
    raw = env.pogema_observation()
    assert raw["agents"][0].sum() == 9  # windows of R=2: every agent sees all three


def test_soft_agrees_with_pogema_and_invariants():
    rng = np.random.default_rng(7)
    totals = {"steps": 0, "soft_bug": 0, "rotations": 0}
    for c in range(90):
        mode = MODES[c % 3]
        h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        a = int(rng.integers(2, max(3, h * w // 2)))
        env, pe = _custom_pair(rng, mode, "soft", int(rng.choice([1, 2, 3])), 24, h, w, 0.1, min(a, 12))
        pe.last_obs = _pe_obs(pe)
        st = compare(env, [pe], rng, 25, follow=0.6, soft=True)
        for k in totals:
            totals[k] += st[k]
    assert totals["steps"] > 500
    assert totals["soft_bug"] > 0  # the bug did trigger somewhere, and positions still agreed


@pytest.mark.parametrize("mode", MODES)
def test_soft_invariants(mode):
    env = PogemaEnv(num_envs=6, size=8, density=0.2, num_agents=20, on_target=mode, collision_system="soft",
                    obs_radius=2, max_episode_steps=20, seed=3)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        env.step(_actions(rng, env.positions, env.targets, 0.7))
        raw = env.pogema_observation()
        r = env.radius
        for i in range(env.num_envs):
            live = env.alive[i]
            pos = env.positions[i][live]
            assert len({tuple(p) for p in pos}) == len(pos)  # no two agents share a cell
            assert not env.obstacles(i)[pos[:, 0], pos[:, 1]].any()
            for j in range(env.num_agents):
                d = pos - env.positions[i, j]
                inside = (np.abs(d) <= r).all(1)
                assert raw["agents"][i, j].sum() == inside.sum()  # every agent in the window appears
                assert (raw["agents"][i, j][d[inside, 0] + r, d[inside, 1] + r] == 1).all()


# ------------------------------------------------------------------------------------ observations


def test_default_observation_matches_pogema():
    rng = np.random.default_rng(5)
    for c in range(30):
        mode = MODES[c % 3]
        kw = dict(size=int(rng.integers(4, 12)), density=0.2, num_agents=int(rng.integers(1, 6)), on_target=mode,
                  collision_system="priority", obs_radius=int(rng.choice([1, 3])), max_episode_steps=30,
                  seed=int(rng.integers(1000)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pe = pogema.pogema_v0(pogema.GridConfig(observation_type="default", **kw))
                pobs, _ = pe.reset()
        except OverflowError:
            continue
        env = PogemaEnv(observation_type="default", **kw)
        obs = env.reset()
        for _ in range(15):
            assert np.array_equal(obs[0], np.stack(pobs)), c
            act = _actions(rng, env.positions, env.targets, 0.8)
            obs, _, term, trunc, info = env.step(act)
            pobs, _, pterm, ptrunc, _ = pe.step([int(x) for x in act[0]])
            if info["episode_end"][0]:
                break


@pytest.mark.parametrize("kind", ["POMAPF", "MAPF"])
def test_pomapf_dense_observation(kind):
    env = PogemaEnv(num_envs=2, size=6, num_agents=3, observation_type=kind, obs_radius=2, seed=1)
    obs = env.reset()
    raw = env.pogema_observation()
    assert obs.shape == (2, 3, 2, 5, 5) and env.obs_shape == (2, 5, 5)
    assert np.array_equal(obs[:, :, 0], raw["obstacles"]) and np.array_equal(obs[:, :, 1], raw["agents"])
    assert (raw["xy"] == 0).all()


def test_follower_observation():
    text = "......\n.##...\n......\n...#..\n......"
    env = PogemaEnv(map=text, agents_xy=[[0, 0], [2, 2], [4, 5]], targets_xy=[[4, 4], [0, 5], [2, 3]],
                    on_target="finish", obs_radius=2, observation_type="follower", collision_system="block_both")
    obs = env.reset()
    assert obs.shape == (1, 3, 3, 5, 5) and env.obs_shape == (3, 5, 5)
    obst = G.parse_map(text)
    walls = env.pogema_observation()["obstacles"][0]
    for j in range(3):
        path = ref_path_window(obst, tuple(env.targets[0, j]), tuple(env.positions[0, j]), 2)
        assert np.array_equal(obs[0, j, 0], path - walls[j])
        assert np.array_equal(obs[0, j, 1], env.pogema_observation()["agents"][0, j])
        expect = np.zeros((5, 5), np.float32)
        for k in range(3):
            if k != j:
                d = env.targets[0, k] - env.positions[0, j]
                if (np.abs(d) <= 2).all():
                    expect[d[0] + 2, d[1] + 2] = 1
        assert np.array_equal(obs[0, j, 2], expect)


def test_follower_lifelong_runs_and_zeroes_finished():
    env = E.make("pogema-lmapf-v0", num_envs=3, seed=0)
    obs = env.reset()
    assert obs.shape == (3, 8, 3, 11, 11)
    rng = np.random.default_rng(0)
    got = 0
    for _ in range(40):
        obs, rew, term, trunc, info = env.step(_actions(rng, env.positions, env.targets, 0.9))
        got += rew.sum()
        assert obs[:, :, 1, 5, 5].all()
    assert got > 0
    env = PogemaEnv(map="...", agents_xy=[[0, 0], [0, 2]], targets_xy=[[0, 1], [0, 0]], observation_type="follower",
                    obs_radius=1, max_episode_steps=5)
    env.reset()
    obs, *_ = env.step(np.array([[4, 0]]))
    assert not env.alive[0, 0] and (obs[0, 0] == 0).all() and obs[0, 1].any()


# ------------------------------------------------------------------------------------ metrics, API


def test_metrics_and_autoreset():
    env = PogemaEnv(num_envs=2, map="....", agents_xy=[[0, 0], [0, 3]], targets_xy=[[0, 1], [0, 2]],
                    on_target="nothing", collision_system="block_both", obs_radius=1, max_episode_steps=5, seed=0)
    env.reset()
    obs, rew, term, trunc, info = env.step(np.array([[4, 0], [4, 3]]))
    assert info["episode_end"].tolist() == [False, True] and rew[1].tolist() == [1, 1] and term[1].all()
    m = info["episode_metrics"][1]
    assert m["CSR"] == 1 and m["ISR"] == 1 and m["SoC"] == 2 and m["makespan"] == 1 and m["episode_length"] == 1
    assert m["return"] == 1.0 and info["first"][1].all() and env.positions[1].tolist() == [[0, 0], [0, 3]]
    # finish mode: correct SoC and pogema's ep_length
    env = PogemaEnv(map=".....", agents_xy=[[0, 0], [0, 4]], targets_xy=[[0, 1], [0, 0]], on_target="finish",
                    collision_system="priority", obs_radius=1, max_episode_steps=3)
    env.reset()
    for t in range(3):
        _, _, _, trunc, info = env.step(np.array([[4, 3]]))
    m = info["episode_metrics"][0]
    assert trunc.all() and m["ISR"] == 0.5 and m["CSR"] == 0 and m["SoC"] == 4 and m["makespan"] == 3
    assert m["ep_length"] == 2.0 and m["return"] == 0.5
    # collisions: agent 1 is refused twice... then blocked by the ring (obstacle collision)
    env = PogemaEnv(map="...", agents_xy=[[0, 0], [0, 1]], targets_xy=[[0, 2], [0, 2]], on_target="restart",
                    collision_system="block_both", obs_radius=1, max_episode_steps=2)
    env.reset()
    env.step(np.array([[4, 3]]))
    _, _, _, _, info = env.step(np.array([[3, 0]]))
    m = info["episode_metrics"][0]
    assert m["collisions"] == 2 and m["obstacle_collisions"] == 1 and m["avg_throughput"] == 0


def test_no_autoreset_freezes():
    env = PogemaEnv(map="...", agents_xy=[[0, 0]], targets_xy=[[0, 1]], auto_reset=False, max_episode_steps=4)
    env.reset()
    _, rew, term, _, info = env.step(np.array([[4]]))
    assert info["episode_end"][0] and rew[0, 0] == 1
    _, rew, term, trunc, info = env.step(np.array([[4]]))
    assert rew.sum() == 0 and not term.any() and not trunc.any() and not info["episode_end"].any()


def test_seeds_and_determinism():
    kw = dict(num_envs=3, size=10, num_agents=6, on_target="restart", max_episode_steps=10, seed=4)
    a, b = PogemaEnv(**kw), PogemaEnv(**kw)
    oa, ob = a.reset(), b.reset()
    assert np.array_equal(oa, ob)
    assert a.instance_seeds == [4, 5, 6]
    rng = np.random.default_rng(1)
    for _ in range(25):
        act = rng.integers(0, 5, (3, 6))
        ra, rb = a.step(act), b.step(act)
        assert all(np.array_equal(x, y) for x, y in zip(ra[:4], rb[:4]))
    assert a.instance_seeds == [10, 11, 12]  # episode k=2 of env n: seed + n + k * N


def test_registry_and_throughput():
    assert "pogema-mapf-v0" in ENVS and "pogema-lmapf-v0" in ENVS
    env = E.make("pogema-mapf", num_envs=4, seed=0)
    assert isinstance(env, PogemaEnv) and env.config.on_target == "nothing"
    env.reset()
    act = np.random.default_rng(0).integers(0, 5, (50, 4, 8))
    t0 = time.perf_counter()
    for x in act:
        env.step(x)
    assert time.perf_counter() - t0 < 10


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("kw, word", [
    ({"map": "..?\n..."}, "unknown character"),
    ({"map": "...\n.."}, "ragged"),
    ({"map": [[0, 1], [0]]}, "ragged"),
    ({"map": "##\n##"}, "no free cell"),
    ({"map": "..\n.#", "num_agents": 4}, "do not fit"),
    ({"size": 3, "num_agents": 10}, "do not fit"),
    ({"map": "..\n.#", "agents_xy": [[0, 0]], "targets_xy": [[1, 1]]}, "obstacle"),
    ({"map": "..\n.#", "agents_xy": [[1, 1]], "targets_xy": [[0, 0]]}, "obstacle"),
    ({"map": "..\n..", "agents_xy": [[0, 0]], "targets_xy": [[5, 0]]}, "outside"),
    ({"map": "..\n..", "agents_xy": [[0, 0], [0, 0]], "targets_xy": [[1, 0], [1, 1]]}, "share"),
    ({"agents_xy": [[0, 0]]}, "together"),
    ({"obs_radius": 0}, "obs_radius"),
    ({"obs_radius": 129}, "obs_radius"),
    ({"on_target": "stay"}, "on_target"),
    ({"collision_system": "none"}, "collision_system"),
    ({"observation_type": "rgb"}, "observation_type"),
    ({"density": 1.5}, "density"),
    ({"map": "@..", "num_agents": 3}, "possible start cells"),
    ({"map_name": "x"}, "matches no map"),
    ({"num_agents": 0}, "num_agents"),
    ({"seed": -1}, "seed"),
])
def test_bad_input(kw, word):
    with pytest.raises(MemarlError, match=word):
        PogemaEnv(**kw)


def test_bad_actions_and_overflow():
    env = PogemaEnv(size=4, num_agents=2, seed=0)
    with pytest.raises(MemarlError, match="reset"):
        env.step(np.zeros((1, 2), dtype=int))
    env.reset()
    for bad in (np.zeros((1, 3), dtype=int), np.full((1, 2), 5), np.zeros((1, 2))):
        with pytest.raises(MemarlError):
            env.step(bad)
    with pytest.raises(MemarlError, match="cannot place"):
        PogemaEnv(size=4, density=0.9, num_agents=8, seed=1).reset()
