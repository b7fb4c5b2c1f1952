"""Fast grid mechanics against simple references: batched BFS first moves, the path-window walk,
the sort-based soft collision rule."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from memarl.envs import grid as G
from memarl.errors import MemarlError

from .test_grid import _random_map, ref_path_window


def _reference_first_moves(g: G.GridMap, target: int) -> np.ndarray:
    """First-move codes ``[cells]`` from the per-target reference (bfs_distances + next_hops)."""
    nxt = G.next_hops(g, G.bfs_distances(g, target))
    code = np.full(g.num_cells, G.FIRST_MOVE_NONE, dtype=np.uint8)
    step = nxt - np.arange(g.num_cells)
    for k, (dr, dc) in enumerate(G.MOVES):
        code[(nxt >= 0) & (step == dr * g.padded_width + dc)] = k
    return code


@pytest.mark.parametrize("num_targets", [1, 2, 3, 8, 9, 16, 17, 32, 33, 64, 65, 150, 600])
def test_bfs_first_moves_equal_reference(num_targets):
    """Both BFS variants (a few targets: bool arrays; more: 64 targets per word) on random maps,
    several maps in one call, unreachable targets' components included."""
    rng = np.random.default_rng(num_targets)
    for _ in range(3):
        h, w = int(rng.integers(2, 14)), int(rng.integers(2, 14))
        grids = [G.GridMap.from_text(_random_map(rng, h, w, 0.35), 1) for _ in range(3)]
        grids = [g for g in grids if g.free_cells.size] or [G.GridMap.from_text("." * w, 1)]
        which = rng.integers(len(grids), size=num_targets)
        targets = np.array([rng.choice(grids[i].free_cells) for i in which])
        passable = np.stack([grids[i].passable.reshape(grids[i].padded_height, -1) for i in which])
        codes = G.bfs_first_moves(passable, targets)
        assert codes.dtype == np.uint8 and codes.shape == passable.shape
        for p, i in enumerate(which):
            assert (codes[p].reshape(-1) == _reference_first_moves(grids[i], int(targets[p]))).all()


def test_bfs_first_moves_broadcast_and_errors():
    g = G.GridMap.from_text("...\n.#.\n...", 1)
    grid = g.passable.reshape(g.padded_height, g.padded_width)
    targets = g.cell(np.array([0, 2]), np.array([0, 2]))
    codes = G.bfs_first_moves(np.broadcast_to(grid, (2,) + grid.shape), targets)
    assert codes[0].reshape(-1)[g.cell(0, 1)] == 3 and codes[1].reshape(-1)[g.cell(0, 2)] == 2
    assert codes[0].reshape(-1)[g.cell(0, 0)] == G.FIRST_MOVE_TARGET
    assert codes[0].reshape(-1)[g.cell(1, 1)] == G.FIRST_MOVE_NONE
    with pytest.raises(MemarlError, match="blocked border"):
        G.bfs_first_moves(np.ones((1, 3, 3), bool), [4])
    with pytest.raises(MemarlError, match="not a passable"):
        G.bfs_first_moves(grid[None], [g.cell(1, 1)])
    assert G.bfs_first_moves(np.zeros((0, 3, 3), bool), []).shape == (0, 3, 3)


@pytest.mark.parametrize("radius", [1, 2, 5])
def test_path_walker_equals_reference_window(radius):
    """The walked window equals the reference path channel (tie-break in MOVES order, path from
    the agent's cell through the target, cut at the first cell outside the window)."""
    rng = np.random.default_rng(radius)
    walker = G.PathWalker(radius)
    k = (2 * radius + 1) ** 2
    for _ in range(4):
        g = G.GridMap.from_text(_random_map(rng, int(rng.integers(3, 16)), int(rng.integers(3, 16)), 0.3), radius)
        if g.free_cells.size < 2:
            continue
        hp, wp = g.padded_height, g.padded_width
        targets = rng.choice(g.free_cells, size=6)
        table = G.bfs_first_moves(np.broadcast_to(g.passable.reshape(hp, wp), (6, hp, wp)), targets).reshape(6, -1)
        rows = rng.integers(6, size=40)
        cells = rng.choice(g.free_cells, size=40)
        for width in (wp, np.full(40, wp)):  # shared or per-agent row length
            out = np.zeros((40, k), np.uint8)
            walker.walk(table.reshape(-1), rows * table.shape[1] + cells, width, out)
            for m in range(40):
                ref = ref_path_window(g.obstacles, tuple(int(x) for x in g.row_col(targets[rows[m]])),
                                      tuple(int(x) for x in g.row_col(cells[m])), radius)
                assert (out[m].reshape(ref.shape) == ref).all()


# ------------------------------------------------------------------------------------ soft rule


@functools.lru_cache(maxsize=None)
def _off_diagonal(a: int) -> np.ndarray:
    return ~np.eye(a, dtype=bool)[None]  # [1, A, A]


def _soft_pairwise(cells, proposed, active, passable):
    """The former resolve_soft: agents compared pairwise ([N, A, A]), fixpoint by iteration."""
    a = cells.shape[1]
    idx = np.arange(a)
    mover = active & passable & (proposed != cells)
    earlier = idx[None, None, :] < idx[None, :, None]  # [1, A, A]: j < i
    beaten = ((proposed[:, :, None] == proposed[:, None, :]) & mover[:, None, :] & earlier).any(-1)
    mover &= ~beaten
    occ = (proposed[:, :, None] == cells[:, None, :]) & active[:, None, :] & _off_diagonal(a)  # [N, A, A]
    has_occ = occ.any(-1)
    occ_j = occ.argmax(-1)
    allowed = mover & ~has_occ
    while True:
        grown = mover & (~has_occ | np.take_along_axis(allowed, occ_j, axis=1))
        if (grown == allowed).all():
            break
        allowed = grown
    return np.where(allowed, proposed, cells)


def test_soft_equals_pairwise_reference_random():
    """Dense random cases (many conflicts, chains, swaps, rotations, inactive agents)."""
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n, a = int(rng.integers(1, 4)), int(rng.integers(1, 14))
        width = int(rng.integers(2, 6))
        span = int(rng.integers(a, 3 * a + 4))
        cells = np.stack([rng.permutation(span)[:a] for _ in range(n)])
        proposed = cells + rng.choice([0, -1, 1, -width, width], size=(n, a))
        proposed = np.clip(proposed, 0, span)
        active = rng.random((n, a)) < 0.9
        passable = rng.random((n, a)) < 0.85
        expect = _soft_pairwise(cells, proposed, active, passable)
        assert np.array_equal(G.resolve_soft(cells, proposed, active, passable), expect)


def test_soft_long_chains_and_cycles():
    # a chain of 40 agents behind a free leader all move; closing it into a rotation blocks all
    a = 40
    cells = np.arange(a)[None]
    proposed = cells + 1
    active = np.ones((1, a), bool)
    passable = np.ones((1, a), bool)
    assert np.array_equal(G.resolve_soft(cells, proposed, active, passable), proposed)
    rotate = proposed % a
    assert np.array_equal(G.resolve_soft(cells, rotate, active, passable), cells)
    blocked = passable.copy()
    blocked[0, -1] = False  # the leader hits a wall: the whole chain stays
    assert np.array_equal(G.resolve_soft(cells, proposed, active, blocked), cells)
    assert np.array_equal(_soft_pairwise(cells, proposed, active, blocked), cells)


# ------------------------------------------------------------------------------------ the env


def _expected_follower(env) -> np.ndarray:
    """Follower observation built agent by agent from the references (slow, independent)."""
    n, a, r = env.num_envs, env.num_agents, env.radius
    side = 2 * r + 1
    raw = env.pogema_observation()
    out = np.zeros((n, a, 3, side, side), np.float32)
    for i in range(n):
        obst = env.obstacles(i)
        for j in range(a):
            if not env.alive[i, j]:
                continue
            pos = env.positions[i, j]
            path = ref_path_window(obst, tuple(env.targets[i, j]), tuple(pos), r)
            out[i, j, 0] = path - raw["obstacles"][i, j]
            out[i, j, 1] = raw["agents"][i, j]
            for k in range(a):
                d = env.targets[i, k] - pos
                if k != j and (np.abs(d) <= r).all():
                    out[i, j, 2, d[0] + r, d[1] + r] = 1
    return out


@pytest.mark.parametrize("kw", [
    dict(size=10, num_agents=12, on_target="restart", collision_system="soft", obs_radius=2),
    dict(size=9, num_agents=10, on_target="finish", collision_system="block_both", obs_radius=3),
    dict(map_name="validation-random-seed-00[0-3]", num_agents=8, on_target="restart",
         collision_system="soft", obs_radius=3),  # maps of different shapes in one batch
])
def test_follower_observation_equals_reference_over_episodes(kw):
    """Batched follower observations (path tables rebuilt on new targets and maps, kept path
    marks for agents that stay, targets shared by two agents) equal the agent-by-agent reference."""
    from memarl.envs.pogema_env import PogemaEnv

    env = PogemaEnv(num_envs=3, seed=1, observation_type="follower", max_episode_steps=12, **kw)
    obs = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(30):  # two episodes and a half: resets to new maps inside step()
        assert np.array_equal(obs, _expected_follower(env))
        d = env.targets - env.positions
        greedy = np.where(d[..., 0] < 0, 1, np.where(d[..., 0] > 0, 2, np.where(d[..., 1] < 0, 3, 4)))
        act = np.where(rng.random(greedy.shape) < 0.7, greedy, rng.integers(0, 5, greedy.shape))
        obs = env.step(act)[0]
    assert np.array_equal(obs, _expected_follower(env))


def test_follower_observation_shared_target():
    from memarl.envs.pogema_env import PogemaEnv

    env = PogemaEnv(map=".....\n.....", agents_xy=[[0, 0], [0, 4], [1, 2]], targets_xy=[[0, 2], [0, 2], [1, 0]],
                    observation_type="follower", obs_radius=2, collision_system="soft")
    obs = env.reset()
    assert obs[0, 0, 2, 2, 4] == 1 and obs[0, 1, 2, 2, 0] == 1  # the shared target shows for both
    assert obs[0, 2, 2, 1, 2] == 1 and obs[0, 2, 2, 2, 0] == 0  # agent 2 sees it, not its own target
    assert np.array_equal(obs, _expected_follower(env))


def test_shortest_path_actions_and_planned_cells_follow_next_hops():
    """The first-move tables give the next hops of the per-target reference (next_hops)."""
    from memarl.envs.pogema_env import PogemaEnv

    env = PogemaEnv(num_envs=2, size=12, num_agents=10, on_target="restart", seed=3, max_episode_steps=40,
                    collision_system="soft")
    env.reset()
    rng = np.random.default_rng(1)
    for _ in range(25):
        actions = env.shortest_path_actions()
        planned = env._planned_cells(env._cell)
        for i in range(2):
            g = env._grids[i]
            for j in range(10):
                nxt = G.next_hops(g, G.bfs_distances(g, int(env._tcell[i, j])))[env._cell[i, j]]
                assert planned[i, j] == nxt
                step = nxt - env._cell[i, j]
                expect = 0 if nxt < 0 else [0, -g.padded_width, g.padded_width, -1, 1].index(step)
                assert actions[i, j] == expect
        env.step(np.where(rng.random((2, 10)) < 0.8, actions, rng.integers(0, 5, (2, 10))))


def _reference_components(obst: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Row-major scan with a BFS from every unlabelled free cell (pogema's numbering)."""
    h, w = obst.shape
    labels = -np.ones((h, w), dtype=np.int64)
    sizes: list[int] = []
    for r in range(h):
        for c in range(w):
            if obst[r, c] or labels[r, c] >= 0:
                continue
            labels[r, c] = len(sizes)
            todo, count = [(r, c)], 0
            while todo:
                x, y = todo.pop()
                count += 1
                for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    u, v = x + dx, y + dy
                    if 0 <= u < h and 0 <= v < w and not obst[u, v] and labels[u, v] < 0:
                        labels[u, v] = len(sizes)
                        todo.append((u, v))
            sizes.append(count)
    return labels, sizes


def test_label_components_equal_reference():
    """Union-find labels equal a BFS labelling on random maps and on long snakes (deep trees)."""
    rng = np.random.default_rng(7)
    maps = [rng.random((int(rng.integers(1, 25)), int(rng.integers(1, 25)))) < rng.uniform(0, 0.9)
            for _ in range(400)]
    snake = np.ones((21, 21), dtype=bool)
    snake[::2] = False
    snake[1::4, -1] = False
    snake[3::4, 0] = False
    maps += [snake, snake.T.copy(), np.zeros((1, 40), bool), np.ones((3, 3), bool)]
    for obst in maps:
        labels, sizes = G.label_components(obst)
        ref, ref_sizes = _reference_components(obst)
        assert (labels == ref).all() and sizes.tolist() == ref_sizes
    assert G.label_components(snake)[1].tolist() == [int((~snake).sum())]  # one winding component
    again = G.label_components(snake.copy())
    assert again[0] is G.label_components(snake)[0] and not again[0].flags.writeable  # kept per map


def test_path_cache_rows_equal_a_fresh_search(monkeypatch):
    """Repeated (map, target) pairs are copied from the cache and their path marks read from
    per-cell tables; rows and observations equal a fresh BFS and walk, also after the cache and
    the tables were cleared for their byte bounds."""
    from memarl.envs import engine
    from memarl.envs.pogema_env import PogemaEnv

    text = "........\n.##..#..\n........\n..#.##..\n........"
    kw = dict(map=text, num_agents=6, on_target="restart", max_episode_steps=30, seed=4, obs_radius=2,
              observation_type="follower", collision_system="soft", num_envs=3)
    cached = PogemaEnv(**kw)
    assert cached._path_cache is not None and cached._mark_tables is None  # PogemaEnv walks
    cached._mark_tables = {}  # as Bottleneck: marks tables too
    monkeypatch.setattr(engine, "PATH_CACHE_BYTES", 40 * cached.radius * 100)  # a few rows: cleared often
    monkeypatch.setattr(engine, "MARK_TABLE_BYTES", 3 * 108 * 25)  # three tables (5+4 x 8+4 cells, K=25)
    fresh = PogemaEnv(**kw)
    fresh._path_cache = fresh._mark_tables = None  # searches and walks everything
    rng = np.random.default_rng(0)
    obs_c, obs_f = cached.reset(), fresh.reset()
    for _ in range(90):
        assert np.array_equal(obs_c, obs_f)
        assert np.array_equal(cached._moves, fresh._moves)
        act = np.where(rng.random((3, 6)) < 0.8, cached.shortest_path_actions(), rng.integers(0, 5, (3, 6)))
        obs_c, rew_c = cached.step(act)[:2]
        obs_f, rew_f = fresh.step(act)[:2]
        assert np.array_equal(rew_c, rew_f)
    assert 0 < cached._path_cache_bytes <= engine.PATH_CACHE_BYTES
    assert cached._mark_tables and (cached._mark_off >= 0).any()
    generated = PogemaEnv(size=8, num_agents=2, seed=0)
    assert generated._path_cache is None  # a new map every episode: nothing to reuse


def test_soft_scratch_is_restored(monkeypatch):
    """The reused per-cell scratch of resolve_soft is all 'nobody' again after every call, also
    after one interrupted between a write and its restore (KeyboardInterrupt)."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        n, a = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        cells = np.stack([rng.choice(30, a, replace=False) for _ in range(n)])
        proposed = cells + rng.choice([-6, -1, 0, 1, 6], (n, a))
        G.resolve_soft(cells, proposed, rng.random((n, a)) < 0.9, rng.random((n, a)) < 0.9)
        assert (G._SCRATCH.slots == G._NOBODY).all()

    class Interrupting(np.ndarray):
        def __eq__(self, other):  # the winners' check runs right after the scratch was written
            raise KeyboardInterrupt

    real = np.flatnonzero
    monkeypatch.setattr(np, "flatnonzero", lambda x: real(x).view(Interrupting))
    with pytest.raises(KeyboardInterrupt):
        G.resolve_soft(np.array([[1, 2, 3]]), np.array([[2, 3, 4]]), np.ones((1, 3), bool), np.ones((1, 3), bool))
    monkeypatch.undo()
    assert (G._SCRATCH.slots == G._NOBODY).all()
