"""Numpy grid mechanics under the grid engine (:mod:`memarl.envs.engine`: POGEMA and Bottleneck).

Everything here is plain numpy and follows pogema 1.4.0's conventions, measured against the
library itself (``tests/test_pogema_env.py``, ``tests/test_bottleneck.py``):

* **Maps** are ASCII: ``.`` free, ``#`` obstacle; pogema's other free-cell markers (``@ $ !``,
  ``a``..``z``, ``A``..``Z``) read as free. Rows are separated by whitespace (pogema splits with
  ``str.split()``). Coordinates are ``(row, col)``, 0-based from the top-left corner, which is
  pogema's ``(x, y)``.
* **Padding** (:func:`pad_obstacles`): the map is padded by ``R`` (the observation radius) on
  every side; a 1-cell obstacle ring surrounds the real map (at padded index ``R - 1`` and
  ``H + R`` / ``W + R``), and the cells beyond the ring read as free (pogema's
  ``empty_outside=True``). Windows are cropped from this padded grid, so an agent on a map edge
  sees the ring at distance 1 and "free" cells at distance 2..R.
* **Cells** are flat indices into the padded grid of one map (``row_p * Wp + col_p`` with
  ``row_p = row + R``). Moves never leave the padded grid because the ring blocks them.
* **Moves** are pogema's ``MOVES``: 0 wait, 1 up (row - 1), 2 down (row + 1), 3 left (col - 1),
  4 right (col + 1).
* **Collisions**: :func:`resolve_block_both` (both agents that claim the same cell wait; moving
  into any cell occupied at the start of the step, including one being vacated, is refused;
  swaps are therefore refused too) and :func:`resolve_priority` (agents move one after the other
  in index order into cells that are free at that moment), both as in pogema 1.4.0;
  :func:`resolve_soft` is pogema's ``soft`` without its occupancy bug (rotations blocked),
  O(NA) through a dense per-cell scratch array.
* **Random instances**: :func:`generate_obstacles` and :func:`generate_starts_targets` are
  pogema 1.4.0's map and start/target generators (same seed -> same instance);
  :func:`label_components` numbers connected components in pogema's order.
* **Shortest paths**: BFS distances to a target on the static map and a next-hop tree with a
  fixed tie-break, the first neighbour in ``MOVES`` order (up, down, left, right) whose
  distance is one less (:func:`bfs_distances`, :func:`next_hops`: the plain per-target
  reference). Because the next hops form a tree, the path from the next cell is the suffix of
  the current path: the plan is consistent from step to step.
* **First-move tables** (:func:`bfs_first_moves`, :class:`PathWalker`): the same next hops as
  one byte per cell (the action toward the target), for many targets in one bit-parallel BFS;
  the Follower path window (path cells marked from the agent's own cell, through the target,
  stopping at the first path cell outside the window) is walked per agent when needed.

Shape letters follow DESIGN.md: ``N`` envs, ``A`` agents, ``R`` radius, ``K = (2R+1)**2`` window
cells.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from memarl.errors import MemarlError

MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.int64)
"""pogema's action table: (d_row, d_col) for actions 0 wait, 1 up, 2 down, 3 left, 4 right"""

NUM_ACTIONS = len(MOVES)

_FREE_CHARS = set(".@$!") | set("abcdefghijklmnopqrstuvwxyz") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


# --------------------------------------------------------------------------------------------
# maps and padding


def parse_map(text: str) -> np.ndarray:
    """ASCII map -> obstacle grid ``[H, W]`` bool (True = obstacle), pogema's reading."""
    rows = text.split()
    if not rows:
        raise MemarlError("map is empty")
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise MemarlError(f"map row {i} has {len(row)} cells, row 0 has {width}")
        bad = set(row) - _FREE_CHARS - {"#"}
        if bad:
            raise MemarlError(f"map row {i} has unknown characters {''.join(sorted(bad))!r}")
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


def map_to_text(obstacles: np.ndarray) -> str:
    """Obstacle grid ``[H, W]`` -> ASCII map (``#`` / ``.``), one row per line."""
    obstacles = np.asarray(obstacles, dtype=bool)
    chars = np.full((obstacles.shape[0], obstacles.shape[1] + 1), ord("\n"), dtype=np.uint8)
    chars[:, :-1] = np.where(obstacles, ord("#"), ord("."))
    return chars.tobytes()[:-1].decode("ascii")


def pad_obstacles(obstacles: np.ndarray, radius: int) -> np.ndarray:
    """Pad ``[H, W]`` obstacles as pogema does: ``[H + 2R, W + 2R]`` uint8, 1 = obstacle.

    The real map sits at ``[R:R+H, R:R+W]``; a 1-cell obstacle ring surrounds it; cells beyond
    the ring are free (``empty_outside=True``).
    """
    if radius < 1:
        raise MemarlError(f"observation radius must be >= 1, got {radius}")
    obstacles = np.asarray(obstacles, dtype=bool)
    h, w = obstacles.shape
    r = radius
    padded = np.zeros((h + 2 * r, w + 2 * r), dtype=np.uint8)
    padded[r - 1, r - 1:r + w + 1] = 1
    padded[r + h, r - 1:r + w + 1] = 1
    padded[r - 1:r + h + 1, r - 1] = 1
    padded[r - 1:r + h + 1, r + w] = 1
    padded[r:r + h, r:r + w] = obstacles
    return padded


def window_offsets(radius: int, padded_width: int) -> np.ndarray:
    """Flat offsets ``[K]`` of the window cells around a cell, row-major from the top-left."""
    d = np.arange(-radius, radius + 1, dtype=np.int64)
    return (d[:, None] * padded_width + d[None, :]).reshape(-1)


def window_index(d_row: np.ndarray, d_col: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Window slot of a relative offset and whether it is inside the window.

    Returns ``(index, inside)``; ``index`` is only meaningful where ``inside``.
    """
    inside = (np.abs(d_row) <= radius) & (np.abs(d_col) <= radius)
    side = 2 * radius + 1
    return (d_row + radius) * side + (d_col + radius), inside


@dataclass(eq=False)
class GridMap:
    """One static map, padded for observation radius ``radius``.

    Build with :meth:`from_text` or :meth:`from_obstacles`. ``key`` identifies the map in caches.
    """

    obstacles: np.ndarray
    """``[H, W]`` bool, True = obstacle (unpadded)"""
    radius: int
    """observation radius R the padding was made for"""
    key: str = ""
    """cache key (defaults to the ASCII text of the map)"""
    padded: np.ndarray = field(init=False)
    """``[H + 2R, W + 2R]`` uint8, pogema's padded obstacle grid (ring + empty outside)"""
    passable: np.ndarray = field(init=False)
    """``[(H + 2R) * (W + 2R)]`` bool, flat: free cells of the real map (not the ring, not outside)"""
    free_cells: np.ndarray = field(init=False)
    """``[F]`` int64: the passable cells in increasing order"""

    def __post_init__(self) -> None:
        self.obstacles = np.asarray(self.obstacles, dtype=bool)
        self.padded = pad_obstacles(self.obstacles, self.radius)
        inside = np.zeros(self.padded.shape, dtype=bool)
        r, (h, w) = self.radius, self.obstacles.shape
        inside[r:r + h, r:r + w] = ~self.obstacles
        self.passable = inside.reshape(-1)
        self.free_cells = np.flatnonzero(self.passable)
        if not self.key:
            self.key = map_to_text(self.obstacles)

    @classmethod
    def from_text(cls, text: str, radius: int, key: str = "") -> "GridMap":
        return cls(parse_map(text), radius, key)

    @property
    def height(self) -> int:
        return self.obstacles.shape[0]

    @property
    def width(self) -> int:
        return self.obstacles.shape[1]

    @property
    def padded_height(self) -> int:
        return self.padded.shape[0]

    @property
    def padded_width(self) -> int:
        return self.padded.shape[1]

    @property
    def num_cells(self) -> int:
        """cells of the padded grid"""
        return self.padded.size

    def cell(self, row, col):
        """map (row, col) -> flat padded cell (works on arrays)"""
        return (np.asarray(row) + self.radius) * self.padded_width + (np.asarray(col) + self.radius)

    def row_col(self, cell):
        """flat padded cell -> map (row, col) (works on arrays)"""
        row, col = np.divmod(np.asarray(cell), self.padded_width)
        return row - self.radius, col - self.radius

    def obstacle_window(self, cell: int) -> np.ndarray:
        """pogema's ``obstacles`` observation ``[2R+1, 2R+1]`` at one cell (float32)."""
        r = self.radius
        row, col = divmod(int(cell), self.padded_width)
        return self.padded[row - r:row + r + 1, col - r:col + r + 1].astype(np.float32)

# --------------------------------------------------------------------------------------------
# shortest paths


def bfs_distances(grid: GridMap, target: int) -> np.ndarray:
    """Unit-cost 4-connected BFS distances ``[cells]`` int32 to ``target`` (-1 unreachable)."""
    passable = grid.passable
    dist = np.full(grid.num_cells, -1, dtype=np.int32)
    if not passable[target]:
        raise MemarlError(f"target cell {grid.row_col(target)} is not a free cell of the map")
    steps = np.array([-grid.padded_width, grid.padded_width, -1, 1], dtype=np.int64)
    frontier = np.array([target], dtype=np.int64)
    dist[target] = 0
    d = 0
    while frontier.size:
        d += 1
        nbr = (frontier[:, None] + steps[None, :]).reshape(-1)
        nbr = nbr[passable[nbr] & (dist[nbr] < 0)]
        frontier = np.unique(nbr)
        dist[frontier] = d
    return dist


def next_hops(grid: GridMap, dist: np.ndarray) -> np.ndarray:
    """Next cell on the shortest path ``[cells]`` int64, for the distance field ``dist``.

    Tie-break: the first neighbour in ``MOVES`` order (up, down, left, right) whose distance is
    one less. The target maps to itself; unreachable / blocked cells map to -1.
    """
    wp = grid.padded_width
    nxt = np.full(grid.num_cells, -1, dtype=np.int64)
    cells = np.flatnonzero(dist > 0)  # int64
    chosen = np.zeros(cells.size, dtype=bool)
    for step in (-wp, wp, -1, 1):  # MOVES[1:] order
        nbr = cells + step
        ok = ~chosen & (dist[nbr] == dist[cells] - 1)
        nxt[cells[ok]] = nbr[ok]
        chosen |= ok
    nxt[dist == 0] = np.flatnonzero(dist == 0)
    return nxt


FIRST_MOVE_TARGET = 0
"""first-move code of a target cell (pogema's action 0, wait)"""
FIRST_MOVE_NONE = 5
"""first-move code of a blocked cell or of one from which the target cannot be reached"""
_DENSE_BFS_MAX = 1  # a single target: the dense BFS needs fewer ops per level than the bit-parallel one
_LEVEL_CHECK = 4  # test for an empty frontier every few levels: the test costs about one level op
_BFS_CHUNK = 512  # targets per bit-parallel BFS: 8 words per cell, a level's arrays stay in cache


def bfs_first_moves(passable: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """First move along a shortest path to each of many targets: ``uint8 [P, H, W]``.

    ``passable`` ``[P, H, W]`` bool: the grid of each target (a broadcast view works when they
    share a map); its border rows and columns must be blocked (the obstacle ring does that).
    ``targets`` ``[P]``: flat cells ``row * W + col``. Codes are pogema's actions: 1 up, 2 down,
    3 left, 4 right -- the first neighbour in MOVES order whose BFS distance is one less, the
    tie-break of :func:`next_hops` -- :data:`FIRST_MOVE_TARGET` (0) on the target and
    :data:`FIRST_MOVE_NONE` (5) on blocked and unreachable cells.

    All targets advance one BFS level per vectorised step, so the cost is about (levels x ops)
    whatever P is: with many targets the 64 targets of a word share each bitwise op; with a few,
    plain bool arrays need fewer ops per level.
    """
    passable = np.asarray(passable, dtype=bool)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    if passable.ndim != 3 or passable.shape[0] != targets.size:
        raise MemarlError(f"passable must be [P, H, W] with P = {targets.size} targets, got {passable.shape}")
    p, h, w = passable.shape
    if p == 0:
        return np.zeros((0, h, w), dtype=np.uint8)
    if h < 3 or w < 3 or passable[:, [0, -1], :].any() or passable[:, :, [0, -1]].any():
        raise MemarlError("bfs_first_moves needs a blocked border around each grid")
    flat = passable.reshape(p, h * w)
    if not flat[np.arange(p), targets].all():
        raise MemarlError("a target is not a passable cell")
    if p <= _DENSE_BFS_MAX:
        return _first_moves_dense(flat, targets, w).reshape(p, h, w)
    out = np.empty((p, h * w), dtype=np.uint8)
    for s in range(0, p, _BFS_CHUNK):  # chunks keep each level's arrays in cache
        out[s:s + _BFS_CHUNK] = _first_moves_bits(flat[s:s + _BFS_CHUNK], targets[s:s + _BFS_CHUNK], w)
    return out.reshape(p, h, w)


def _first_moves_dense(passable: np.ndarray, targets: np.ndarray, w: int) -> np.ndarray:
    """bool-array BFS of :func:`bfs_first_moves`: ``passable`` ``[P, HW]`` -> codes ``[P, HW]``."""
    p, n = passable.shape
    rows = np.arange(p)
    # the grid is handled flat: the neighbours of cell x are x -+ w and x -+ 1; a step that wraps
    # across a row end lands on a border cell, which is blocked, so it is masked like an obstacle
    lo, hi = w, n - w  # interior rows (flat); the first and last row are border
    inner = slice(lo, hi)
    unvisited = passable.copy()
    unvisited[rows, targets] = False
    front = np.zeros((p, n), dtype=bool)
    front[rows, targets] = True
    nxt = np.zeros_like(front)
    # dist = 1 + the number of levels after which the cell was still unvisited; blocked cells
    # are far away so that no cell takes a first move into them
    dist = np.where(passable, np.int32(1), np.int32(1 << 30))
    dist[rows, targets] = 0
    ui, di = unvisited[:, inner], dist[:, inner]
    tmp = np.empty(ui.shape, dtype=bool)
    level = 0
    while True:
        ni = nxt[:, inner]
        np.bitwise_or(front[:, lo - w:hi - w], front[:, lo + w:hi + w], out=tmp)
        np.bitwise_or(tmp, front[:, lo - 1:hi - 1], out=tmp)
        np.bitwise_or(tmp, front[:, lo + 1:hi + 1], out=tmp)
        np.bitwise_and(tmp, ui, out=ni)
        np.bitwise_xor(ui, ni, out=ui)
        np.add(di, ui, out=di)
        level += 1
        if level % _LEVEL_CHECK == 0 and not ni.any():
            break
        front, nxt = nxt, front
    # first move: the first neighbour in MOVES order one step closer (assigned in reverse order
    # so that earlier moves overwrite later ones)
    closer = di - 1
    code = np.full((p, n), FIRST_MOVE_NONE, dtype=np.uint8)
    ci = code[:, inner]
    ci[...] = 4
    np.copyto(ci, 3, where=dist[:, lo - 1:hi - 1] == closer)
    np.copyto(ci, 2, where=dist[:, lo + w:hi + w] == closer)
    np.copyto(ci, 1, where=dist[:, lo - w:hi - w] == closer)
    np.copyto(ci, FIRST_MOVE_NONE, where=ui | ~passable[:, inner])  # unreachable or blocked
    code[rows, targets] = FIRST_MOVE_TARGET
    return code


def _first_moves_bits(passable: np.ndarray, targets: np.ndarray, w: int) -> np.ndarray:
    """Bit-parallel BFS of :func:`bfs_first_moves`: target p is bit p % B of word p // B.

    The word has B = 8, 16, 32 or 64 bits, the fewest that hold P targets (or 64 with several
    words): few targets then stream fewer bytes per level. Arrays are ``[HW, Wd]`` (the words of
    a cell side by side), so a range of cells is one contiguous block for any number of words.

    A level costs six whole-array ops: the new frontier (four neighbour shifts), the visited
    update and one bit plane of the distance mod 3. First moves are derived once at the end:
    the BFS distances of two neighbours differ by at most one, so the neighbour one step closer
    is the one whose distance mod 3 is one less than the cell's.
    """
    p, n = passable.shape
    bits = 8 if p <= 8 else 16 if p <= 16 else 32 if p <= 32 else 64
    dtype = np.dtype(f"<u{bits // 8}")
    words = (p + bits - 1) // bits
    packed = np.zeros((n, words * bits // 8), dtype=np.uint8)
    packed[:, :(p + 7) // 8] = np.packbits(passable.T, axis=1, bitorder="little")
    free = packed.view(dtype)  # [HW, Wd]: bit set = passable for that target
    seed = np.zeros((n, words), dtype=dtype)
    ids = np.arange(p)
    np.bitwise_or.at(seed, (targets, ids // bits), np.left_shift(1, ids % bits).astype(dtype))
    if words == 1:  # [HW] instead of [HW, 1]: a ufunc call on 1-D slices costs a quarter less
        free, seed = free.reshape(n), seed.reshape(n)
    unvisited = free & ~seed
    front, nxt = seed, np.zeros_like(seed)
    # distance mod 3 as two bit planes: 0 = (0, 0), 1 = (1, 0), 2 = (0, 1)
    mod1, mod2 = np.zeros_like(seed), np.zeros_like(seed)
    lo, hi = w, n - w  # interior rows (flat), as in _first_moves_dense
    inner = slice(lo, hi)
    ui, m1i, m2i = unvisited[inner], mod1[inner], mod2[inner]
    tmp = np.empty(ui.shape, dtype=dtype)
    level = 0
    while True:
        ni = nxt[inner]
        np.bitwise_or(front[lo - w:hi - w], front[lo + w:hi + w], out=tmp)
        np.bitwise_or(tmp, front[lo - 1:hi - 1], out=tmp)
        np.bitwise_or(tmp, front[lo + 1:hi + 1], out=tmp)
        np.bitwise_and(tmp, ui, out=ni)  # the new frontier: unvisited cells next to the old one
        level += 1
        if level % _LEVEL_CHECK == 0 and not ni.any():
            break
        np.bitwise_xor(ui, ni, out=ui)
        if level % 3 == 1:
            np.bitwise_or(m1i, ni, out=m1i)
        elif level % 3 == 2:
            np.bitwise_or(m2i, ni, out=m2i)
        front, nxt = nxt, front
    reached = free & ~unvisited  # targets included
    # per cell, the planes a neighbour one step closer has: (mod - 1) mod 3 maps 0 -> 2, 1 -> 0, 2 -> 1
    want1, want2 = m2i, ~(m1i | m2i)
    none = ~reached[inner]  # blocked or never reached: code 5 = b0 + b2
    taken = seed[inner] | none  # cells whose first move is decided (the target's is 0)
    b0, b1, b2 = (np.zeros_like(ui) for _ in range(3))  # code = b0 + 2 b1 + 4 b2
    for bit_planes, shift in (((b0,), -w), ((b1,), w), ((b0, b1), -1), ((b2,), 1)):  # MOVES order
        s = slice(lo + shift, hi + shift)
        np.bitwise_xor(mod1[s], want1, out=tmp)
        tmp |= mod2[s] ^ want2
        np.bitwise_not(tmp, out=tmp)
        tmp &= reached[s]  # the neighbour in this direction is one step closer ...
        tmp &= ~taken  # ... and no earlier direction was
        taken |= tmp
        for plane in bit_planes:
            plane |= tmp
    b0 |= none
    b2 |= none

    def unpack(plane: np.ndarray) -> np.ndarray:  # [HW', Wd] -> [HW', P] uint8 0/1
        return np.unpackbits(plane.reshape(plane.shape[0], -1).view(np.uint8), axis=1, count=p, bitorder="little")

    code = np.full((n, p), FIRST_MOVE_NONE, dtype=np.uint8)  # the border rows stay 5
    code[inner] = unpack(b0)
    code[inner] |= unpack(b1) << 1
    code[inner] |= unpack(b2) << 2
    return np.ascontiguousarray(code.T)


class PathWalker:
    """Marks the Follower path window of many agents at once, from first-move tables.

    The path of an agent starts at its cell and follows the first moves (:func:`bfs_first_moves`)
    to the target; its cells are marked in the agent's ``(2R+1)``-window until the first cell
    outside the window (or the target, included). All agents advance one path cell per
    vectorised step; the state of an agent is the window slot of its current path cell, advanced
    with one table lookup. A path never returns to its first cell (the distance to the target
    drops at every move), so after the first move the centre slot means "stopped" (left the
    window, reached the target, or no path) and stopped agents keep re-marking the centre.
    """

    def __init__(self, radius: int):
        self.radius = r = radius
        self.side = side = 2 * r + 1
        self.k = k = side * side
        self.center = c = r * side + r
        slot = np.arange(k)
        row, col = np.divmod(slot, side)
        # _next[s * 6 + code]: slot after moving from slot s by first-move code (0..5)
        nxt = np.full((k, 6), c, dtype=np.intp)
        for code in range(1, NUM_ACTIONS):
            r2, c2 = row + MOVES[code, 0], col + MOVES[code, 1]
            ok = (r2 >= 0) & (r2 < side) & (c2 >= 0) & (c2 < side)
            nxt[ok, code] = (r2 * side + c2)[ok]
        self._first = nxt[c].copy()  # [6] the first move, from the centre (never leaves the window)
        nxt[c] = c  # afterwards the centre is the stopped state
        self._next = nxt.reshape(-1)
        self._dr = np.array([0, -1, 1, 0, 0, 0], dtype=np.intp)  # row step of each code
        self._dc = np.array([0, 0, 0, -1, 1, 0], dtype=np.intp)

    def walk(self, moves: np.ndarray, start: np.ndarray, width, out: np.ndarray,
             rows: np.ndarray | None = None) -> None:
        """Set ``out[rows[m], slot] = 1`` on the path window of every agent ``m``.

        ``moves`` flat first-move codes (uint8, e.g. a ``[table rows, cells]`` table raveled);
        ``start`` ``[M]`` flat index of each agent's (table row, cell) in it; ``width`` the row
        length of the grid the cells index (an int, or ``[M]`` per agent); ``out`` ``[*, K]``
        uint8 whose rows ``rows`` (default ``0..M-1``) the caller has zeroed. An agent whose own
        cell has no path (code 5) gets no marks.
        """
        k, c = self.k, self.center
        if start.size == 0:
            return
        flat = out.reshape(-1)
        if rows is None:
            rows = np.arange(start.size)
        row_base = np.asarray(rows, dtype=np.intp) * k  # [M] start of each agent's out row
        idx = start.astype(np.intp, copy=True)
        per_agent = np.ndim(width) > 0
        if per_agent:
            width = np.asarray(width, dtype=np.intp).reshape(-1)
            step = None
        else:
            step = self._dr * int(width) + self._dc  # [6] flat step of each code
        code = moves[idx]
        no_path = row_base[code == FIRST_MOVE_NONE]
        flat[row_base + c] = 1
        state = self._first[code]
        while True:
            flat[row_base + state] = 1
            live = state != c
            left = np.count_nonzero(live)
            if left == 0:
                break
            if 2 * left < state.size:  # drop the stopped agents once they are the majority
                state, idx, code, row_base = state[live], idx[live], code[live], row_base[live]
                if per_agent:
                    width = width[live]
            idx += step[code] if step is not None else self._dr[code] * width + self._dc[code]
            code = moves[idx]
            state = self._next[state * 6 + code]
        flat[no_path + c] = 0


# --------------------------------------------------------------------------------------------
# collisions (vectorised over envs; block_both/priority compare agents pairwise, fine for small A)


@functools.lru_cache(maxsize=None)
def _off_diagonal(a: int) -> np.ndarray:
    return ~np.eye(a, dtype=bool)[None]  # [1, A, A]


def resolve_block_both(cells: np.ndarray, proposed: np.ndarray, active: np.ndarray,
                       passable: np.ndarray) -> np.ndarray:
    """pogema 1.4.0 ``block_both``: new cells ``[N, A]``.

    ``cells``/``proposed`` ``[N, A]`` current and requested cells; ``active`` ``[N, A]`` agents
    on the grid; ``passable`` ``[N, A]`` whether the requested cell is free of static obstacles.
    An active agent moves iff its requested cell is passable, is nobody's current cell (an
    occupant that leaves this step still blocks it) and is requested by no other active agent.
    Inactive agents neither move nor block.
    """
    occ = active[:, None, :] & _off_diagonal(cells.shape[1])  # agent j counts for agent i
    blocked = (((proposed[:, :, None] == cells[:, None, :]) | (proposed[:, :, None] == proposed[:, None, :]))
               & occ).any(-1)
    move = active & passable & ~blocked
    return np.where(move, proposed, cells)


def resolve_priority(cells: np.ndarray, proposed: np.ndarray, active: np.ndarray,
                     passable: np.ndarray) -> np.ndarray:
    """pogema 1.4.0 ``priority``: agents move in index order into cells free at that moment."""
    new = cells.copy()
    a = cells.shape[1]
    for i in range(a):
        others = np.delete(np.arange(a), i)
        taken = ((new[:, others] == proposed[:, i:i + 1]) & active[:, others]).any(-1)
        move = active[:, i] & passable[:, i] & ~taken
        new[:, i] = np.where(move, proposed[:, i], new[:, i])
    return new


def resolve_soft(cells: np.ndarray, proposed: np.ndarray, active: np.ndarray,
                 passable: np.ndarray) -> np.ndarray:
    """``soft`` collisions, pogema 1.4.0's semantics made order-independent: new cells ``[N, A]``.

    Arguments as :func:`resolve_block_both`. The rule (``shared/reference/pogema.md`` section 6):

    1. an active agent requesting a move (action != wait) into a passable cell is a *mover*;
       a move into an obstacle (or the ring) becomes "stay";
    2./3. vertex conflicts: of several movers requesting the same cell, only the lowest-index
       one stays a mover (pogema: "lower-index agent moves, the other waits");
    4. following: a mover whose requested cell is some active agent's current cell may move only
       if that occupant really moves. This is the *least* fixpoint: movers into empty cells move,
       then movers into cells vacated by moving agents, transitively. Chains behind a blocked
       leader are blocked; swaps (2-cycles) and rotations of 3 or more agents (longer cycles)
       never reach an empty cell, so they are all blocked (a deliberate choice: pogema 1.4.0
       blocks swaps but lets rotations of >= 3 agents through).
    5. moves are applied simultaneously; occupancy is rebuilt from the final cells by the caller,
       so no agent ever disappears from the occupancy grid (pogema 1.4.0's bug, section 6).

    Inactive agents neither move nor block. Cost O(NA): conflicts and occupants are found through
    a dense per-cell scratch array (``env * span + cell``), no sorting and no pairwise compare.
    """
    n, a = cells.shape
    m = n * a
    if m == 0:
        return cells.copy()
    span = int(max(cells.max(), proposed.max())) + 1
    env_key = np.arange(0, n * span, span, dtype=np.int64)[:, None]  # [N, 1]: cells of env n get n * span
    want = (proposed + env_key).reshape(-1)  # [NA] requested cell, unique over envs
    have = (cells + env_key).reshape(-1)  # [NA] current cell
    mover = (active & passable & (proposed != cells)).reshape(-1)
    slots = _cell_scratch(n * span)  # [n * span] all _NOBODY; restored before returning
    try:
        # 2./3. vertex conflicts: the lowest index of the movers asking for a cell wins it
        movers = np.flatnonzero(mover)  # [V]
        key = want[movers]
        np.minimum.at(slots, key, movers)
        won = slots[key] == movers
        slots[key] = _NOBODY
        movers, key = movers[won], key[won]
        # 4. occupant of each requested cell (active agents stand on distinct cells)
        on_grid = np.flatnonzero(active.reshape(-1))  # [G]
        slots[have[on_grid]] = on_grid
        occupant = slots[key]  # [V'] agent index, _NOBODY = empty
        slots[have[on_grid]] = _NOBODY
        waits = occupant != _NOBODY
    except BaseException:  # an interrupt between a write and its restore must not leave marks
        slots.fill(_NOBODY)
        raise
    allowed = np.zeros(m, dtype=bool)
    allowed[movers[~waits]] = True  # moves into empty cells
    follower = movers[waits]  # [W] movers behind an occupant
    if follower.size:
        # a follower moves iff its chain of occupants ends at a mover into an empty cell: pointer
        # jumping walks all chains in O(log A) rounds; chains that end at an agent that stays
        # (allowed False) or close a cycle (never reach an end) stay blocked
        leader = occupant[waits]  # [W] the occupant each follower waits for
        ptr = np.arange(m)
        ptr[follower] = leader
        hop = leader
        for _ in range(m.bit_length()):
            further = ptr[hop]
            if np.array_equal(further, hop):
                break
            ptr[follower] = further
            hop = further
        allowed[follower] = allowed[hop]
    return np.where(allowed.reshape(n, a), proposed, cells)


_NOBODY = np.iinfo(np.int64).max
_SCRATCH = threading.local()


def _cell_scratch(size: int) -> np.ndarray:
    """A reused int64 array of ``size`` entries, all :data:`_NOBODY` (callers restore what they write).

    One per thread, reallocated (at double size) only when too small, so a step allocates no
    env-sized array.
    """
    arr = getattr(_SCRATCH, "slots", None)
    if arr is None or arr.size < size:
        arr = _SCRATCH.slots = np.full(max(size, 2 * (0 if arr is None else arr.size)), _NOBODY, dtype=np.int64)
    return arr[:size]


COLLISION_SYSTEMS = {"block_both": resolve_block_both, "priority": resolve_priority}
"""the collision systems that are step-exact with pogema 1.4.0 (Bottleneck accepts only these)"""
ALL_COLLISION_SYSTEMS = {**COLLISION_SYSTEMS, "soft": resolve_soft}
CollisionSystem = Literal["block_both", "priority", "soft"]
"""the keys of :data:`ALL_COLLISION_SYSTEMS`, as a type for config fields"""
"""plus the corrected ``soft`` rule (:func:`resolve_soft`)"""


# --------------------------------------------------------------------------------------------
# random instances (pogema 1.4.0's generators, reimplemented; same seeds -> same instances)


def generate_obstacles(height: int, width: int, density: float, seed: int | None) -> np.ndarray:
    """Random obstacle grid ``[height, width]`` bool: each cell an obstacle with probability ``density``.

    Same draw as pogema's generator (one ``binomial(1, density, (height, width))`` from
    ``np.random.default_rng(seed)``), so a seed gives pogema's map.
    """
    return np.random.default_rng(seed).binomial(1, density, (height, width)).astype(bool)


_COMPONENTS_CACHE: dict[tuple[tuple[int, int], bytes], tuple[np.ndarray, np.ndarray]] = {}
_COMPONENTS_CACHE_SIZE = 512


def label_components(obstacles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected components of the free cells: ``(labels [H, W] int32, sizes [C] int64)``.

    Components are numbered 0, 1, ... in the row-major order of their first cell (pogema's BFS
    numbering, shifted to start at 0); obstacles are labelled -1. The result of a map is kept
    (read-only) for later calls with the same map: a reset labels its map for the placement
    and again for restart targets, and suite maps repeat.
    """
    obstacles = np.asarray(obstacles, dtype=bool)
    key = (obstacles.shape, np.packbits(obstacles).tobytes())
    got = _COMPONENTS_CACHE.get(key)
    if got is None:
        if len(_COMPONENTS_CACHE) >= _COMPONENTS_CACHE_SIZE:
            _COMPONENTS_CACHE.clear()
        got = _label_components(obstacles)
        for arr in got:
            arr.setflags(write=False)
        _COMPONENTS_CACHE[key] = got
    return got


def _label_components(obstacles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`label_components` without the cache: union-find by hooking and pointer jumping.

    Every free cell starts as its own root. Each round hooks, over every edge between two free
    neighbours in different trees, the larger root under the smaller one, then compresses all
    paths (``parent = parent[parent]`` until stable). The root of a component ends as its
    smallest flat index, i.e. its first cell in row-major order, so sorting the roots gives
    pogema's numbering. A few rounds suffice (each at least halves the trees of a component).
    """
    h, w = obstacles.shape
    free = ~obstacles.reshape(-1)
    cells = np.arange(h * w, dtype=np.int64)
    horizontal = (free[:-1] & free[1:]) & ((cells[:-1] + 1) % w != 0)  # (x, x+1) in one row
    vertical = free[:-w] & free[w:]  # (x, x+w)
    u = np.concatenate([np.flatnonzero(horizontal), np.flatnonzero(vertical)])
    v = np.concatenate([np.flatnonzero(horizontal) + 1, np.flatnonzero(vertical) + w])
    parent = cells.copy()
    while u.size:
        ru, rv = parent[u], parent[v]
        split = ru != rv
        if not split.any():
            break
        u, v, ru, rv = u[split], v[split], ru[split], rv[split]
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    roots = parent[free]
    first = np.unique(roots)  # sorted: row-major order of each component's first cell
    labels = np.full(h * w, -1, dtype=np.int32)
    labels[free] = np.searchsorted(first, roots)
    sizes = np.bincount(labels[free], minlength=first.size).astype(np.int64)
    return labels.reshape(h, w), sizes


def generate_starts_targets(obstacles: np.ndarray, num_agents: int,
                            seed: int | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Random starts and targets ``([A, 2], [A, 2])`` (row, col) on a map, or None if impossible.

    pogema 1.4.0's placement, reimplemented: the free cells are taken in the row-major order
    shuffled by ``np.random.default_rng(seed)``; a cell first fills the most recent open request
    of its component (it becomes the target of the latest agent placed there that still lacks
    one); otherwise, while fewer than ``num_agents`` agents are placed and the component still
    has two unreserved cells, it becomes a new agent's start (reserving a second cell for its
    target). None when fewer than ``num_agents`` agents fit (pogema raises OverflowError).
    """
    obstacles = np.asarray(obstacles, dtype=bool)
    labels, sizes = label_components(obstacles)
    h, w = obstacles.shape
    free = np.flatnonzero(~obstacles.reshape(-1))
    order = free[np.random.default_rng(seed).permutation(free.size)]
    lab = labels.reshape(-1).tolist()  # Python ints: the loop below reads one per cell
    budget = sizes.tolist()
    requests: list[list[int]] = [[] for _ in budget]
    starts: list[int] = []
    targets = [-1] * num_agents
    done = 0
    for c in order.tolist():
        comp = lab[c]
        if requests[comp]:
            targets[requests[comp].pop()] = c
            done += 1
            continue
        if len(starts) >= num_agents:
            if done >= num_agents:
                break
            continue
        if budget[comp] >= 2:
            budget[comp] -= 2
            requests[comp].append(len(starts))
            starts.append(c)
    if len(starts) < num_agents:
        return None
    s = np.array(starts, dtype=np.int64)
    t = np.array(targets, dtype=np.int64)
    return np.stack(np.divmod(s, w), axis=-1), np.stack(np.divmod(t, w), axis=-1)


# --------------------------------------------------------------------------------------------
# metrics


def finish_mode_metrics(arrival_steps: np.ndarray, episode_length: int) -> dict[str, float | int]:
    """Episode metrics of pogema's ``finish`` mode, with a correct sum of costs.

    ``arrival_steps`` ``[A]``: 1-based step at which each agent reached its goal, 0 if it did not.
    Returns ``CSR`` (all arrived), ``ISR`` (fraction arrived), ``SoC`` (sum over agents of the
    arrival step, ``episode_length`` for an agent that did not arrive), ``makespan`` (the largest
    such cost) and ``episode_length``. pogema's own finish-mode SoC would be ``A * makespan``.
    """
    arrival = np.asarray(arrival_steps, dtype=np.int64)
    done = arrival > 0
    cost = np.where(done, arrival, int(episode_length))
    return {"CSR": float(done.all()), "ISR": float(done.mean()), "SoC": int(cost.sum()),
            "makespan": int(cost.max()), "episode_length": int(episode_length)}
