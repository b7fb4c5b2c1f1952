"""memarl.envs.grid: maps, padding, shortest paths, collisions, against pogema 1.4.0 and references."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from memarl.envs import grid as G
from memarl.errors import MemarlError

pogema = pytest.importorskip("pogema")

OPEN_MAP = """
.......
..#....
.......
....#..
.#.....
"""


def _random_map(rng: np.random.Generator, h: int, w: int, density: float = 0.2) -> str:
    cells = rng.random((h, w)) < density
    return "\n".join("".join("#" if c else "." for c in row) for row in cells)


def _pogema_env(text, starts, goals, radius=2, collision="block_both", on_target="nothing", steps=64):
    gc = pogema.GridConfig(map=text, agents_xy=[tuple(map(int, s)) for s in starts],
                           targets_xy=[tuple(map(int, g)) for g in goals], num_agents=len(starts),
                           on_target=on_target, collision_system=collision, obs_radius=radius,
                           observation_type="POMAPF", max_episode_steps=steps, seed=0)
    return pogema.pogema_v0(gc)


# ------------------------------------------------------------------------------------ maps


def test_parse_map_and_back():
    obst = G.parse_map("..#\n#..\n")
    assert obst.tolist() == [[False, False, True], [True, False, False]]
    assert G.map_to_text(obst) == "..#\n#.."
    # pogema's other free markers read as free
    assert not G.parse_map("@$!aA").any()


@pytest.mark.parametrize("text, word", [("", "empty"), ("...\n..", "row 1"), ("..?", "unknown")])
def test_parse_map_errors(text, word):
    with pytest.raises(MemarlError, match=word):
        G.parse_map(text)


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_padding_matches_pogema(radius):
    rng = np.random.default_rng(radius)
    for _ in range(3):
        text = _random_map(rng, int(rng.integers(2, 9)), int(rng.integers(2, 9)), 0.0)
        env = _pogema_env(text, [(0, 0)], [(0, 1)], radius=radius)
        env.reset()
        assert (G.pad_obstacles(G.parse_map(text), radius) == env.grid.obstacles).all()


def test_gridmap_coordinates_and_windows():
    g = G.GridMap.from_text(OPEN_MAP, 2)
    assert (g.height, g.width, g.padded_height, g.padded_width) == (5, 7, 9, 11)
    c = g.cell(1, 2)
    assert tuple(int(x) for x in g.row_col(c)) == (1, 2)
    assert not g.passable[c]  # (1, 2) is '#'
    win = g.obstacle_window(g.cell(0, 0))
    # top-left corner: ring at distance 1, free outside at distance 2
    assert win[0].tolist() == [0, 0, 0, 0, 0] and win[1].tolist() == [0, 1, 1, 1, 1]
    assert win[2, 2] == 0 and win[:, 1].tolist() == [0, 1, 1, 1, 1]


def test_pad_rejects_zero_radius():
    with pytest.raises(MemarlError):
        G.pad_obstacles(np.zeros((2, 2), bool), 0)


# ------------------------------------------------------------------------------------ paths


def _ref_bfs(obst: np.ndarray, target):
    h, w = obst.shape
    dist = -np.ones((h, w), int)
    dist[target] = 0
    q = deque([target])
    while q:
        r, c = q.popleft()
        for dr, dc in G.MOVES[1:]:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and not obst[rr, cc] and dist[rr, cc] < 0:
                dist[rr, cc] = dist[r, c] + 1
                q.append((rr, cc))
    return dist


def _ref_path(obst, dist, start):
    """Shortest path with the documented tie-break (first neighbour in MOVES order one closer)."""
    path = [start]
    while dist[path[-1]] > 0:
        r, c = path[-1]
        for dr, dc in G.MOVES[1:]:
            rr, cc = r + dr, c + dc
            if 0 <= rr < obst.shape[0] and 0 <= cc < obst.shape[1] and dist[rr, cc] == dist[r, c] - 1:
                path.append((rr, cc))
                break
    return path


def ref_path_window(obst, target, start, radius):
    """Reference path channel: path cells from start through target, cut at the first exit."""
    dist = _ref_bfs(obst, target)
    win = np.zeros((2 * radius + 1,) * 2, np.uint8)
    if dist[start] < 0:
        return win
    for r, c in _ref_path(obst, dist, start):
        dr, dc = r - start[0], c - start[1]
        if abs(dr) > radius or abs(dc) > radius:
            break
        win[dr + radius, dc + radius] = 1
    return win


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_bfs_next_hop_match_reference(radius):
    rng = np.random.default_rng(10 + radius)
    for _ in range(4):
        text = _random_map(rng, int(rng.integers(3, 12)), int(rng.integers(3, 12)), 0.3)
        g = G.GridMap.from_text(text, radius)
        free = np.argwhere(~g.obstacles)
        if len(free) < 2:
            continue
        target = tuple(int(x) for x in free[rng.integers(len(free))])
        dist = G.bfs_distances(g, g.cell(*target))
        ref = _ref_bfs(g.obstacles, target)
        rows, cols = np.meshgrid(np.arange(g.height), np.arange(g.width), indexing="ij")
        assert (dist[g.cell(rows, cols)] == ref).all()
        nxt = G.next_hops(g, dist)
        for r, c in free:
            start = (int(r), int(c))
            if ref[start] > 0:  # the tree's path from the next cell is the suffix of this path
                path = _ref_path(g.obstacles, ref, start)
                assert tuple(int(x) for x in g.row_col(nxt[g.cell(*start)])) == path[1]


def test_tie_break_prefers_moves_order():
    # open 3x3, target bottom-right: from the top-left corner both "down" and "right" are shortest;
    # MOVES order (up, down, left, right) picks down.
    g = G.GridMap.from_text("...\n...\n...", 2)
    nxt = G.next_hops(g, G.bfs_distances(g, g.cell(2, 2)))
    assert tuple(int(x) for x in g.row_col(nxt[g.cell(0, 0)])) == (1, 0)
    assert nxt[g.cell(2, 2)] == g.cell(2, 2)


def test_unreachable_cells_have_no_path():
    g = G.GridMap.from_text("..#..\n..#..", 2)
    dist = G.bfs_distances(g, g.cell(0, 0))
    assert dist[g.cell(0, 4)] == -1
    nxt = G.next_hops(g, dist)
    assert nxt[g.cell(0, 4)] == -1
    with pytest.raises(MemarlError, match="not a free cell"):
        G.bfs_distances(g, g.cell(0, 2))


# ------------------------------------------------------------------------------------ collisions


def _step_ours(g, cells, actions, collision):
    proposed = cells + G.MOVES[actions, 0] * g.padded_width + G.MOVES[actions, 1]
    active = np.ones_like(cells, dtype=bool)
    return G.COLLISION_SYSTEMS[collision](cells[None], proposed[None], active[None], g.passable[proposed][None])[0]


@pytest.mark.parametrize("collision", ["block_both", "priority"])
def test_collisions_match_pogema_random(collision):
    """Many agents on small maps, random actions: positions equal pogema's after every step."""
    rng = np.random.default_rng(0 if collision == "block_both" else 1)
    for _ in range(6):
        h, w = int(rng.integers(3, 7)), int(rng.integers(3, 7))
        text = _random_map(rng, h, w, 0.15)
        g = G.GridMap.from_text(text, 2)
        free = np.argwhere(~g.obstacles)
        k = min(len(free) - 1, int(rng.integers(2, 9)))
        if k < 2:
            continue
        pick = free[rng.permutation(len(free))[:k]]
        goals = free[rng.permutation(len(free))[:k]]
        env = _pogema_env(text, pick, goals, collision=collision, steps=1000)
        env.reset()
        cells = g.cell(pick[:, 0], pick[:, 1])
        for _ in range(60):
            act = rng.integers(0, 5, k)
            cells = _step_ours(g, cells, act, collision)
            _, _, term, _, _ = env.step([int(a) for a in act])
            xy = np.array(env.get_agents_xy(ignore_borders=True))
            assert (np.stack(g.row_col(cells), -1) == xy).all()
            if all(term):
                break


def test_block_both_semantics():
    g = G.GridMap.from_text(".....\n.....\n.....", 2)
    c = g.cell
    # vertex conflict: both want (1, 2) -> both wait
    new = _step_ours(g, np.array([c(1, 1), c(1, 3)]), np.array([4, 3]), "block_both")
    assert list(new) == [c(1, 1), c(1, 3)]
    # following: agent 0 moves into the cell agent 1 vacates -> refused
    new = _step_ours(g, np.array([c(1, 1), c(1, 2)]), np.array([4, 4]), "block_both")
    assert list(new) == [c(1, 1), c(1, 3)]
    # swap -> refused
    new = _step_ours(g, np.array([c(1, 1), c(1, 2)]), np.array([4, 3]), "block_both")
    assert list(new) == [c(1, 1), c(1, 2)]
    # priority: following allowed when the leader has the lower index
    new = _step_ours(g, np.array([c(1, 2), c(1, 1)]), np.array([4, 4]), "priority")
    assert list(new) == [c(1, 3), c(1, 2)]
    # inactive agents neither move nor block
    cells = np.array([[c(1, 1), c(1, 2)]])
    new = G.resolve_block_both(cells, cells + 1, np.array([[True, False]]), np.array([[True, True]]))
    assert new.tolist() == [[c(1, 2), c(1, 2)]]


# ------------------------------------------------------------------------------------ misc


def test_finish_mode_metrics():
    m = G.finish_mode_metrics(np.array([1, 4]), 4)
    assert m == {"CSR": 1.0, "ISR": 1.0, "SoC": 5, "makespan": 4, "episode_length": 4}
    m = G.finish_mode_metrics(np.array([6, 0]), 10)
    assert m == {"CSR": 0.0, "ISR": 0.5, "SoC": 16, "makespan": 10, "episode_length": 10}
