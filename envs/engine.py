"""The batched grid engine under the grid tasks: POGEMA (MAPF / lifelong MAPF) and Bottleneck.

:class:`GridEngine` holds ``N`` envs x ``A`` agents on padded grids and steps them with numpy:
pogema 1.4.0's moves and collision systems, the three ``on_target`` modes, time limits,
autoreset, the observations (pogema's ``default`` / ``POMAPF`` windows and the Follower/SRMT
``follower`` observation with its BFS shortest-path channel) and the per-episode counters.
A task is a subclass that says where episodes come from (``_reset_env``, which calls
:meth:`GridEngine._install`), which rewards beyond the goal's +1 it pays (``_step_reward``)
and which metrics an episode reports (``_episode_metrics``): :class:`~memarl.envs.pogema_env.PogemaEnv`
and :class:`~memarl.envs.bottleneck.BottleneckEnv`.

Shortest paths: per agent, one row of first moves toward its target over its map
(:func:`~memarl.envs.grid.bfs_first_moves`), rebuilt in one batched BFS for all agents whose
target changed. Tasks whose maps repeat (Bottleneck, named or fixed maps) keep the rows of
each (map, target) in a bounded cache, so a repeated target costs a copy instead of a BFS;
Bottleneck, whose goals are the few room cells, also keeps the path marks of every cell per
(map, target), so its path channel is a row read instead of a walk.
"""
from __future__ import annotations

import typing
from typing import Any, Literal, Sequence

import gymnasium
import numpy as np

from memarl.envs import grid as G
from memarl.envs.base import EpisodeEnds, PinnedEpisode
from memarl.errors import MemarlError

OnTarget = Literal["finish", "nothing", "restart"]
ObservationType = Literal["default", "POMAPF", "MAPF", "follower"]
ON_TARGET = typing.get_args(OnTarget)
OBSERVATION_TYPES = typing.get_args(ObservationType)
INT32_MAX = np.iinfo(np.int32).max
PATH_CACHE_BYTES = 64 << 20
"""bound of an engine's (map, target) -> first-move row cache; cleared whole when full"""
MARK_TABLE_BYTES = 64 << 20
"""bound of an engine's (map, target) -> per-cell path marks tables; cleared whole when full"""
MARK_TABLE_MAX_K = 49
"""per-cell path marks tables (``mark_tables``) are kept for windows up to 7 x 7 (R <= 3)"""

_GRID_CACHE: dict[tuple[str, int], G.GridMap] = {}


def grid_map(obstacles: np.ndarray, radius: int) -> G.GridMap:
    """The padded :class:`~memarl.envs.grid.GridMap` of ``obstacles`` (kept for maps that repeat)."""
    key = G.map_to_text(obstacles)
    g = _GRID_CACHE.get((key, radius))
    if g is None:
        if len(_GRID_CACHE) > 256:
            _GRID_CACHE.clear()
        g = _GRID_CACHE[(key, radius)] = G.GridMap(obstacles, radius, key)
    return g


def draw_cell(rng: np.random.Generator, cells: np.ndarray, forbidden: int) -> int:
    """``cells[rng.integers(K)]``, redrawn while it equals ``forbidden``; ``forbidden`` when
    every cell does (pogema loops forever there).

    One draw is exactly pogema's ``rng.choice(cells, 1)`` (same stream).
    """
    new, tries = forbidden, 0
    while new == forbidden:
        new = int(cells[int(rng.integers(0, cells.size))])
        tries += 1
        if tries == 64 and not (cells != forbidden).any():
            return forbidden
    return new


class GridEngine(EpisodeEnds):
    """``N`` envs x ``A`` agents on grids, stepped together (see the module docstring).

    Subclasses set ``config`` and implement ``_reset_env(i)`` (draw env ``i``'s next episode and
    :meth:`_install` it), ``_episode_metrics(i)`` and, for rewards beyond the goal's,
    ``_step_reward``. State views: ``positions``, ``targets``, ``alive``, ``elapsed_steps``,
    ``done``.
    """

    def __init__(self, *, num_envs: int, num_agents: int, radius: int, observation_type: str,
                 collision_system: str, on_target: str, autoreset: bool, plan_moves: bool = False,
                 cache_paths: bool = False, mark_tables: bool = False, hide_finished_targets: bool = False):
        """``plan_moves``: ``step`` passes each agent's next shortest-path cell (planned before the
        move) to ``_step_reward``; ``cache_paths``: keep first-move rows per (map, target) (for
        maps that repeat); ``mark_tables`` (with ``cache_paths``, windows up to 7 x 7): also keep
        the path marks of every cell per (map, target), worth it when few targets repeat often
        (Bottleneck's room cells; a table costs a walk from every cell of the map);
        ``hide_finished_targets``: the follower target channel drops the targets of agents that
        left the grid (``finish`` mode)."""
        if on_target not in ON_TARGET:
            raise MemarlError(f"unknown on_target {on_target!r}; known: {', '.join(ON_TARGET)}")
        if observation_type not in OBSERVATION_TYPES:
            raise MemarlError(f"unknown observation_type {observation_type!r}; known: {', '.join(OBSERVATION_TYPES)}")
        self.num_envs = n = num_envs
        self.num_agents = a = num_agents
        self.num_actions = G.NUM_ACTIONS
        self.radius = r = radius
        self._side = s = 2 * r + 1
        self._k = s * s
        self._mode = on_target
        self._observation_type = observation_type
        chans = 2 if observation_type in ("POMAPF", "MAPF") else 3
        self.obs_shape = (chans, s, s)
        low = -1.0 if observation_type == "follower" else 0.0
        self.single_observation_space = gymnasium.spaces.Box(low, 1.0, self.obs_shape, dtype=np.float32)
        self.single_action_space = gymnasium.spaces.Discrete(self.num_actions)
        self._resolve = G.ALL_COLLISION_SYSTEMS[collision_system]
        self._autoreset = autoreset
        self._plan_moves = plan_moves
        self._hide_finished_targets = hide_finished_targets
        self._path_cache: dict[tuple[str, int], np.ndarray] | None = {} if cache_paths else None
        self._path_cache_bytes = 0
        # with cached paths and small windows, also the path marks of every cell per (map, target),
        # so that an agent's marks are one row read instead of a walk (Bottleneck: R = 2)
        tabled = mark_tables and cache_paths and self._k <= MARK_TABLE_MAX_K
        self._mark_tables: dict[tuple[str, int], int] | None = {} if tabled else None
        self._mark_pool = np.zeros((0, self._k), dtype=np.uint8)  # [rows, K] all tables, one after another
        self._mark_pool_used = 0
        self._mark_off = np.full(n * a, -1, dtype=np.int64)  # [N*A] pool row of cell 0 of the agent's table; -1: walk
        # per agent, the first move toward its target from every cell of its map ([N*A, cap] uint8,
        # G.bfs_first_moves codes); rows of agents whose target changed are rebuilt together,
        # in one batched BFS, the next time a path is needed (_refresh_paths)
        self._moves = np.zeros((0, 0), dtype=np.uint8)
        self._stale = np.ones((n, a), dtype=bool)  # [N, A] target changed since the last rebuild
        self._walker = G.PathWalker(r)
        self._targets_changed = True  # the follower observation's target layer needs a rebuild
        self._target_layer = np.zeros(0, dtype=np.uint8)
        self._width: int | None | bool = False  # _common_width cache (False: unknown)
        self._marks = np.zeros((0, 0), dtype=np.uint8)  # [M, K] last path marks of each agent
        self._marks_key = np.zeros(0, dtype=np.int64)  # [M] (table row, cell) they were walked for
        self._layer = np.zeros(0, dtype=np.uint8)  # [N * cap] per-cell bytes the windows are cut from
        self._layer_views: tuple | None = None  # (layer, its view as (2R+1)-byte records), reused

        self._grids: list[G.GridMap | None] = [None] * n
        self._cap = 0
        self._pass = np.zeros(0, dtype=bool)
        self._obst = np.zeros(0, dtype=np.uint8)
        self._comp = np.zeros(0, dtype=np.int32)
        self._wp = np.ones(n, dtype=np.int64)
        self._delta = np.zeros((n, G.NUM_ACTIONS + 1), dtype=np.int64)  # [N, 6] flat step per action / first-move code
        self._delta_base = (np.arange(n, dtype=np.int64) * (G.NUM_ACTIONS + 1))[:, None]  # [N, 1] rows of _delta, flat
        self._env_base = np.zeros((n, 1), dtype=np.int64)  # [N, 1] env * cap: the envs' slices of the flat arrays
        self._row_base = np.zeros((n, a), dtype=np.int64)  # [N, A] (env * A + agent) * cap: rows of _moves
        self._row_offs = np.zeros((n, s), dtype=np.int64)  # [N, 2R+1] flat offset of each window row
        self._cell = np.zeros((n, a), dtype=np.int64)
        self._start = np.zeros((n, a), dtype=np.int64)
        self._tcell = np.zeros((n, a), dtype=np.int64)
        self.alive = np.zeros((n, a), dtype=bool)
        self._t = np.zeros(n, dtype=np.int64)
        self._max_steps = np.ones(n, dtype=np.int64)  # [N] time limit of each env's episode
        self._done = np.zeros(n, dtype=bool)
        self._seqs: list[list[np.ndarray]] = [[] for _ in range(n)]  # padded target cells per agent
        self._seq_idx = np.zeros((n, a), dtype=np.int64)
        self._target_rngs: list[list[np.random.Generator | None] | None] = [None] * n
        self._target_seeds: list[list[int] | None] = [None] * n
        self._comp_cells: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._pools: list[np.ndarray | None] = [None] * n  # restart targets from possible cells
        # episode statistics
        self._return = np.zeros((n, a), dtype=np.float64)
        self._arrival = np.zeros((n, a), dtype=np.int64)  # finish: 1-based arrival step, 0 = not yet
        self._solve = np.zeros((n, a), dtype=np.int64)  # nothing: 1-based step since on target, 0 = off
        self._solve_prev = np.zeros((n, a), dtype=np.int64)
        self._throughput = np.zeros(n, dtype=np.int64)
        self._collisions = np.zeros(n, dtype=np.int64)
        self._bumps = np.zeros(n, dtype=np.int64)
        self._env_idx = np.arange(n)
        self._pinned_once = np.zeros(n, dtype=bool)  # [N] playing a start_episodes episode: freeze at its end
        self._needs_reset = True

    # ---------------------------------------------------------------- episodes

    def _reset_all(self, seeds: list | None = None) -> np.ndarray:
        """Start a new episode in every env (``_reset_env``); the first observations.

        ``seeds``: per env, an instance seed passed on to ``_reset_env(i, seed)`` (PogemaEnv's).
        """
        for i in range(self.num_envs):
            if seeds is None:
                self._reset_env(i)
            else:
                self._reset_env(i, seeds[i])
        self._done[:] = False
        self._pinned_once[:] = False
        self._needs_reset = False
        return self._observe()

    def start_episodes(self, episodes: Sequence[PinnedEpisode], env_ids: Sequence[int] | None = None) -> np.ndarray:
        """Start ``episodes[k]`` in env ``env_ids[k]`` (default: env k) now; the others go on.

        Each such env plays exactly that episode (a library map, an instance seed, a time limit)
        and then freezes (``alive`` all False, no autoreset) until it is given another episode
        or ``reset()`` is called: the evaluator's way to run a queue of fixed episodes on one
        batch. Returns the observations of all envs ``[N, A, C, H, W]``; every env must have
        been started once (by ``reset`` or here) before the first step.
        """
        ids = list(range(len(episodes))) if env_ids is None else [int(i) for i in env_ids]
        if len(ids) != len(episodes):
            raise MemarlError(f"start_episodes got {len(episodes)} episodes for {len(ids)} env ids")
        for i in ids:
            if not 0 <= i < self.num_envs:
                raise MemarlError(f"env id must be in 0..{self.num_envs - 1}, got {i}")
        for i, episode in zip(ids, episodes):
            self._start_pinned(i, episode)
            self._done[i] = False
            self._pinned_once[i] = True
        missing = [i for i, grid in enumerate(self._grids) if grid is None]
        if missing:
            raise MemarlError(f"env {missing[0]} has no episode: start an episode in every env of the batch "
                              f"(or reset()) before stepping")
        self._needs_reset = False
        return self._observe()

    def _start_pinned(self, i: int, episode: PinnedEpisode) -> None:
        raise MemarlError(f"{type(self).__name__} cannot play pinned episodes")

    def _reset_env(self, i: int) -> None:
        raise NotImplementedError

    def _install(self, i: int, grid: G.GridMap, starts: np.ndarray, seqs: tuple[np.ndarray, ...],
                 max_steps: int, seed: int | None = None, pool: np.ndarray | None = None,
                 outside: np.ndarray | None = None) -> None:
        """Make env ``i`` play a new episode.

        ``grid`` the map; ``starts`` ``[A, 2]`` and each agent's target sequence ``[L, 2]``
        (row, col; the first is the initial target); ``max_steps`` the time limit. ``restart``
        mode: ``seed`` seeds the agents' target generators (pogema's rule), ``pool`` ``[K, 2]``
        the cells new targets are drawn from (None: the agent's connected component).
        ``outside``: the padded obstacle grid the windows show (pogema's ``empty_outside=False``
        obstacles beyond the ring; default ``grid.padded``).
        """
        r, a = self.radius, self.num_agents
        self._ensure_cap(grid.num_cells)
        wp = grid.padded_width
        base = i * self._cap
        self._grids[i] = grid
        self._pass[base:base + self._cap] = False
        self._pass[base:base + grid.num_cells] = grid.passable
        self._obst[base:base + self._cap] = 0
        self._obst[base:base + grid.num_cells] = (grid.padded if outside is None else outside).reshape(-1)
        self._wp[i] = wp
        self._delta[i, :G.NUM_ACTIONS] = G.MOVES[:, 0] * wp + G.MOVES[:, 1]
        self._row_offs[i] = np.arange(self._side) * wp
        cells = grid.cell(starts[:, 0], starts[:, 1])
        self._cell[i] = cells
        self._start[i] = cells
        if all(q.shape[0] == 1 for q in seqs):  # one target each (generated instances): one call
            firsts = np.concatenate(seqs)
            self._seqs[i] = list(grid.cell(firsts[:, 0], firsts[:, 1])[:, None])
        else:
            self._seqs[i] = [grid.cell(q[:, 0], q[:, 1]) for q in seqs]
        self._tcell[i] = [q[0] for q in self._seqs[i]]
        self._seq_idx[i] = 0
        if self._mode == "restart":
            main = np.random.default_rng(seed)
            # made on an agent's first arrival: a generator costs ~20 us and many agents of a
            # short or early-training episode never arrive
            self._target_seeds[i] = main.integers(INT32_MAX, size=a).tolist()
            self._target_rngs[i] = [None] * a
            # possible target cells (map markers): new targets come from this pool, not the component
            self._pools[i] = None if pool is None else grid.cell(pool[:, 0], pool[:, 1])
        if self._mode == "restart" and pool is None:
            labels, _ = G.label_components(grid.obstacles)
            padded_labels = np.full((grid.padded_height, wp), -1, dtype=np.int32)
            padded_labels[r:r + grid.height, r:r + grid.width] = labels
            flat = padded_labels.reshape(-1)
            self._comp[base:base + self._cap] = -1
            self._comp[base:base + grid.num_cells] = flat
            order = np.argsort(flat, kind="stable")
            counts = np.bincount(flat[flat >= 0])
            first = int(np.searchsorted(flat[order], 0))
            bounds = np.concatenate([[0], np.cumsum(counts)]) + first
            self._comp_cells[i] = [order[bounds[c]:bounds[c + 1]] for c in range(counts.size)]
            if self._seqs[i] and max(q.size for q in self._seqs[i]) == 1:
                lonely = counts[flat[cells]] < 2
                if lonely.any():
                    j = int(np.flatnonzero(lonely)[0])
                    raise MemarlError(f"restart mode: agent {j} starts in a one-cell component, no new target "
                                      "can be drawn (pogema would loop forever); give target sequences")
        self._stale[i] = True
        self._targets_changed = True
        self._width = False
        self.alive[i] = True
        self._t[i] = 0
        self._max_steps[i] = max_steps
        self._return[i] = 0.0
        self._arrival[i] = 0
        self._solve[i] = 0
        self._throughput[i] = 0
        self._collisions[i] = 0
        self._bumps[i] = 0

    def _ensure_cap(self, cells: int) -> None:
        if cells <= self._cap:
            return
        old, n = self._cap, self.num_envs
        new = max(cells, 2 * old)

        def grow(arr: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((n, new), fill, dtype=arr.dtype)
            if old:
                out[:, :old] = arr.reshape(n, old)
            return out.reshape(-1)

        self._pass = grow(self._pass, False)
        self._obst = grow(self._obst, 0)
        self._comp = grow(self._comp, -1)
        self._cap = new
        self._env_base = (np.arange(n, dtype=np.int64) * new)[:, None]
        self._row_base = np.arange(n * self.num_agents, dtype=np.int64).reshape(n, self.num_agents) * new

    # ---------------------------------------------------------------- step

    def _refresh_paths(self) -> None:
        """Rebuild the first-move rows of the agents whose target changed: one batched BFS.

        Memory is fixed (one row of ``cap`` bytes per agent), plus, with ``cache_paths``, at most
        :data:`PATH_CACHE_BYTES` of rows kept per (map, target): a row found there is copied
        instead of searched.
        """
        n, a, r, cap = self.num_envs, self.num_agents, self.radius, self._cap
        if self._moves.shape != (n * a, cap):  # first use, or the maps grew (_ensure_cap)
            self._moves = np.full((n * a, cap), G.FIRST_MOVE_NONE, dtype=np.uint8)
            self._stale[:] = True
            self._marks_key = np.zeros(0, dtype=np.int64)
        if not self._stale.any():
            return
        rows = np.flatnonzero(self._stale)  # [P] env * A + agent
        self._stale[:] = False
        if self._marks_key.size:
            self._marks_key[rows] = -1  # their kept path marks are for the old target
        refreshed = rows
        cache = self._path_cache
        if cache is not None:
            targets = self._tcell.reshape(-1)
            missed = []
            for row in rows.tolist():
                got = cache.get((self._grids[row // a].key, int(targets[row])))
                if got is None:
                    missed.append(row)
                else:
                    self._moves[row, :got.size] = got
                    self._moves[row, got.size:] = G.FIRST_MOVE_NONE
            rows = np.array(missed, dtype=np.int64)
        envs = rows // a  # (no rows: every refreshed agent's row came from the cache)
        # targets of maps with one shape share one BFS (all of them unless map_name names several)
        shape_of = {}
        for i in np.unique(envs).tolist():
            shape_of.setdefault(self._grids[i].obstacles.shape, []).append(i)
        for (h, w), group in shape_of.items():
            hp, wp = h + 2 * r, w + 2 * r
            group = np.array(group)
            sel = np.isin(envs, group) if len(shape_of) > 1 else slice(None)
            g_rows, g_envs = rows[sel], envs[sel]
            ring = np.stack([self._ring(self._pass[i * cap:i * cap + hp * wp], h, w)
                             for i in group.tolist()])  # [E, h+2, w+2]
            where = np.searchsorted(group, g_envs)  # [P] which of the group's maps
            g_targets = self._tcell.reshape(-1)[g_rows]
            full = self._bfs_rows(ring[where], g_targets, h, w)  # [P, hp * wp]
            self._moves[g_rows, :hp * wp] = full
            if hp * wp < cap:
                self._moves[g_rows, hp * wp:] = G.FIRST_MOVE_NONE
            if cache is not None:
                keys = [(self._grids[row // a].key, int(t)) for row, t in zip(g_rows.tolist(), g_targets.tolist())]
                self._remember_paths(keys, full)
        if self._mark_tables is not None:
            self._attach_mark_tables(refreshed)

    def _attach_mark_tables(self, rows: np.ndarray) -> None:
        """Point agents ``rows`` at the path marks table of their (map, target), made if missing."""
        a, targets, tables = self.num_agents, self._tcell.reshape(-1), self._mark_tables
        for row in rows.tolist():
            grid = self._grids[row // a]
            key = (grid.key, int(targets[row]))
            off = tables.get(key)
            if off is None:
                size = grid.num_cells
                if (self._mark_pool_used + size) * self._k > MARK_TABLE_BYTES:  # full: start over
                    tables.clear()
                    self._mark_pool_used = 0
                    self._mark_off[:] = -1  # agents attached earlier walk until their next refresh
                off = self._mark_pool_used
                if off + size > self._mark_pool.shape[0]:
                    grown = np.zeros((max(off + size, 2 * self._mark_pool.shape[0]), self._k), dtype=np.uint8)
                    grown[:off] = self._mark_pool[:off]
                    self._mark_pool = grown
                self._mark_pool[off:off + size] = 0
                cells = grid.free_cells
                self._walker.walk(self._moves[row], cells, grid.padded_width, self._mark_pool, rows=off + cells)
                tables[key] = off
                self._mark_pool_used = off + size
            self._mark_off[row] = off

    def _remember_paths(self, keys: list[tuple[str, int]], moves: np.ndarray) -> None:
        """Keep the first-move rows ``moves`` ``[P, cells]`` under their (map key, target cell)."""
        cache = self._path_cache
        if self._path_cache_bytes + moves.nbytes > PATH_CACHE_BYTES:
            cache.clear()
            self._path_cache_bytes = 0
        for key, codes in zip(keys, moves):
            if key not in cache:
                cache[key] = codes.copy()
                self._path_cache_bytes += codes.nbytes

    def _cache_paths(self, grid: G.GridMap, targets: np.ndarray) -> None:
        """Search the first-move rows of ``targets`` (padded cells of ``grid``) into the path cache now."""
        if self._path_cache is None:
            return
        todo = [int(t) for t in np.asarray(targets).reshape(-1) if (grid.key, int(t)) not in self._path_cache]
        if not todo:
            return
        h, w = grid.obstacles.shape
        ring = self._ring(grid.passable, h, w)
        full = self._bfs_rows(np.broadcast_to(ring, (len(todo),) + ring.shape), np.array(todo), h, w)
        self._remember_paths([(grid.key, t) for t in todo], full)

    def _ring(self, passable: np.ndarray, h: int, w: int) -> np.ndarray:
        """The map and its obstacle ring ``[h+2, w+2]`` (padded rows/cols R-1 .. R+h / R+w) of a
        flat padded ``passable`` grid: the BFS never reaches the cells beyond the ring."""
        r = self.radius
        return passable.reshape(h + 2 * r, w + 2 * r)[r - 1:r + h + 1, r - 1:r + w + 1]

    def _bfs_rows(self, rings: np.ndarray, targets: np.ndarray, h: int, w: int) -> np.ndarray:
        """First-move rows ``[P, (h+2R) * (w+2R)]`` over the padded grid for ``targets`` (padded
        cells), searched on ``rings`` ``[P, h+2, w+2]`` (:meth:`_ring`); cells beyond the ring: none."""
        r = self.radius
        hp, wp = h + 2 * r, w + 2 * r
        trow, tcol = np.divmod(targets, wp)
        codes = G.bfs_first_moves(rings, (trow - r + 1) * (w + 2) + (tcol - r + 1))  # [P, h+2, w+2]
        full = np.full((len(targets), hp, wp), G.FIRST_MOVE_NONE, dtype=np.uint8)
        full[:, r - 1:r + h + 1, r - 1:r + w + 1] = codes
        return full.reshape(len(targets), hp * wp)

    def _first_moves(self, cells: np.ndarray) -> np.ndarray:
        """``[N, A]`` first-move code (G.bfs_first_moves) of each agent at ``cells`` toward its target."""
        self._refresh_paths()
        return self._moves.reshape(-1)[self._row_base + cells]

    def _planned_cells(self, cells: np.ndarray) -> np.ndarray:
        """``[N, A]`` next cell on each agent's shortest path (its own cell on the target, -1 if unreachable)."""
        code = self._first_moves(cells)
        nxt = cells + self._delta.reshape(-1)[self._delta_base + code]  # code 5 (no path) reads the 6th column, 0
        return np.where(code == G.FIRST_MOVE_NONE, -1, nxt)

    def _new_target(self, i: int, j: int) -> int:
        """Next target (padded cell) of agent ``j`` of env ``i`` after an arrival (restart mode)."""
        seq = self._seqs[i][j]
        if seq.size > 1:
            k = (int(self._seq_idx[i, j]) + 1) % seq.size
            self._seq_idx[i, j] = k
            return int(seq[k])
        cell = int(self._cell[i, j])
        rng = self._target_rngs[i][j]
        if rng is None:
            rng = self._target_rngs[i][j] = np.random.default_rng(self._target_seeds[i][j])
        pool = self._pools[i]
        if pool is not None:
            # pogema redraws while the drawn cell (map coordinates) equals the agent's position in
            # padded coordinates, i.e. the cell R rows down and R columns right of the agent
            forbidden = cell + self.radius * (int(self._wp[i]) + 1)
            new = draw_cell(rng, pool, forbidden)
            return cell if new == forbidden else new
        comp = self._comp_cells[i][int(self._comp[i * self._cap + cell])]
        if comp.size < 2:
            return cell
        return draw_cell(rng, comp, cell)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all envs with ``actions [N, A]``; see the task's docstring for the outputs."""
        if self._needs_reset:
            raise MemarlError("call reset() before step()")
        act = self._check_actions(actions)
        mode = self._mode
        running = ~self._done
        active = self.alive
        cells = self._cell
        base = self._env_base
        proposed = cells + self._delta.reshape(-1)[self._delta_base + act]
        # the next path cell as planned before the move  # [N, A]
        planned = self._planned_cells(cells) if self._plan_moves else None
        passable = self._pass[base + proposed]
        new = self._resolve(cells, proposed, active, passable)
        asked = active & (act != 0)
        self._collisions += (asked & passable & (new == cells)).sum(1)
        self._bumps += (asked & ~passable).sum(1)
        self._cell = new
        self._t += running
        t = self._t
        on_goal = new == self._tcell
        arrived = active & on_goal
        if mode == "finish":
            reward = arrived.astype(np.float32)
            self._arrival = np.where(arrived, t[:, None], self._arrival)
            self.alive = active & ~arrived
            terminated = on_goal & running[:, None]
            if self._hide_finished_targets and arrived.any():
                self._targets_changed = True
        elif mode == "nothing":
            self._solve_prev = self._solve
            self._solve = np.where(on_goal, np.where(self._solve > 0, self._solve, t[:, None]), 0)
            solved = on_goal.all(1) & running
            reward = np.repeat(solved[:, None].astype(np.float32), self.num_agents, axis=1)
            terminated = np.repeat(solved[:, None], self.num_agents, axis=1)
        else:  # restart
            reward = arrived.astype(np.float32)
            self._throughput += arrived.sum(1)
            for i, j in zip(*np.nonzero(arrived)):
                self._tcell[i, j] = self._new_target(int(i), int(j))
            if arrived.any():
                self._stale |= arrived
                self._targets_changed = True
            terminated = np.zeros_like(arrived)
        reward = self._step_reward(reward, act, cells, new, planned, active, arrived)
        self._return += reward
        trunc_env = running & (t >= self._max_steps)
        truncated = np.repeat(trunc_env[:, None], self.num_agents, axis=1)
        ended = running & (terminated.all(1) | trunc_env)

        # ended envs return the first observation of their next episode (autoreset), or freeze
        # (no autoreset, or a start_episodes episode) while this step still shows their final state
        freeze = ended & self._pinned_once if self._autoreset else ended
        if not freeze.any():
            metrics, first = self._end_episodes(ended, True)
            obs = self._observe()
        elif not self._autoreset:
            obs = self._observe()
            metrics, first = self._end_episodes(ended, False)
        else:
            metrics, first = self._end_episodes(ended & ~freeze, True)
            obs = self._observe()
            frozen, _ = self._end_episodes(freeze, False)
            metrics = [m if m is not None else f for m, f in zip(metrics, frozen)]
        info = {"episode_end": ended, "episode_metrics": metrics, "first": first, "arrived": arrived}
        return obs, reward, terminated, truncated, info

    def _step_reward(self, goal: np.ndarray, act: np.ndarray, cells: np.ndarray, new: np.ndarray,
                     planned: np.ndarray | None, active: np.ndarray, arrived: np.ndarray) -> np.ndarray:
        """The step's reward ``[N, A]`` float32 from the goal reward of the mode (``goal``).

        ``act`` the actions, ``cells`` / ``new`` the cells before / after the move, ``planned``
        the next path cells planned before it (with ``plan_moves``), ``active`` the agents that
        were on the grid, ``arrived`` those that reached their target. Default: ``goal``.
        """
        return goal

    def _mode_metrics(self, i: int) -> dict[str, Any]:
        """pogema's metrics of env ``i``'s ending episode for the mode, plus memarl's counters."""
        a, t = self.num_agents, int(self._t[i])
        if self._mode == "finish":
            m: dict[str, Any] = G.finish_mode_metrics(self._arrival[i], t)
            m["ep_length"] = float(np.where(self._arrival[i] > 0, self._arrival[i], t).sum() / a)
            m["throughput_count"] = int((self._arrival[i] > 0).sum())
        elif self._mode == "nothing":
            # pogema's rule: an agent on its target since step s < t counts s even if it steps off
            # on the final step t; every other agent counts t
            prev = self._solve_prev[i]
            cost = np.where(prev > 0, prev, t)
            on = self._solve[i] > 0
            m = {"ISR": float(on.sum()) / a, "CSR": float(on.all()), "ep_length": t,
                 "SoC": int(cost.sum()), "makespan": int(cost.max()), "episode_length": t,
                 "throughput_count": int(on.sum())}
        else:
            m = {"avg_throughput": int(self._throughput[i]) / int(self._max_steps[i]),
                 "throughput_count": int(self._throughput[i]), "episode_length": t}
        m.update({"collisions": int(self._collisions[i]), "obstacle_collisions": int(self._bumps[i]),
                  "return": float(self._return[i].mean())})
        return m

    # ---------------------------------------------------------------- observations

    def _windows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(obstacles, agents)`` windows ``[N, A, K]`` uint8 (pogema's, for every agent)."""
        n, a, k = self.num_envs, self.num_agents, self._k
        layer = self._layer_buffer()  # [N * cap] bit 0: obstacle, bit 1: agent (one gather for both)
        np.copyto(layer, self._obst)
        layer[(self._env_base + self._cell)[self.alive]] |= 2
        win = self._window_bytes(layer).reshape(n, a, k)
        return win & 1, win >> 1

    def __getstate__(self) -> dict:
        """The env for pickling (a run's checkpoint keeps its envs mid-episode): the cached record
        view of the layer is left out, since pickling would turn it into a copy that no longer
        sees the layer's bytes; it is rebuilt at the next observation."""
        state = self.__dict__.copy()
        state["_layer_views"] = None
        return state

    def _window_bytes(self, layer: np.ndarray) -> np.ndarray:
        """``[N*A, K]`` uint8: every agent's window of ``layer`` (``[N * cap]``, one byte per cell).

        The layer is viewed as overlapping records of ``2R+1`` bytes, one starting at every
        byte, so a window is ``2R+1`` record reads (one per window row) instead of ``K`` byte
        reads; maps of different widths only change the row offsets.
        """
        n, a, r, side = self.num_envs, self.num_agents, self.radius, self._side
        cached = self._layer_views
        if cached is not None and cached[0] is layer:
            rows = cached[1]
        else:
            rows = np.ndarray(buffer=layer, dtype=np.dtype((np.void, side)), shape=(layer.size - side + 1,),
                              strides=(1,))
            self._layer_views = (layer, rows)
        top_left = self._env_base + self._cell - r * (self._wp[:, None] + 1)  # [N, A]
        idx = top_left[:, :, None] + self._row_offs[:, None, :]  # [N, A, 2R+1] start of each window row
        return rows[idx].view(np.uint8).reshape(n * a, self._k)

    def _layer_buffer(self) -> np.ndarray:
        """The reused ``[N * cap]`` uint8 buffer of per-cell bytes (new when the maps grew)."""
        if self._layer.size != self._obst.size:
            self._layer = np.zeros(self._obst.size, dtype=np.uint8)
        return self._layer

    def _common_width(self) -> int | None:
        """Padded width shared by all envs' current maps, None if they differ."""
        if self._width is False:  # unknown after a reset
            widths = set(self._wp.tolist())
            self._width = widths.pop() if len(widths) == 1 else None
        return self._width

    def _rc(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        row, col = np.divmod(cells, self._wp[:, None])
        return row, col

    def _observe(self) -> np.ndarray:
        n, a, r, side, k = self.num_envs, self.num_agents, self.radius, self._side, self._k
        kind = self._observation_type
        if kind == "follower":
            return self._follower_observation()
        walls, agents = self._windows()
        if kind in ("POMAPF", "MAPF"):
            return np.stack([walls, agents], axis=2).astype(np.float32).reshape(n, a, 2, side, side)
        obs = np.zeros((n, a, 3, k), dtype=np.float32)
        obs[:, :, 1] = agents
        row, col = self._rc(self._cell)
        trow, tcol = self._rc(self._tcell)
        if kind == "default":
            obs[:, :, 0] = walls
            dr = np.clip(trow - row, -r, r)
            dc = np.clip(tcol - col, -r, r)
            slot = (dr + r) * side + (dc + r)
            ni, ai = np.nonzero(np.ones((n, a), dtype=bool))
            obs[ni, ai, 2, slot.reshape(-1)] = 1.0
            return obs.reshape(n, a, 3, side, side)
        raise MemarlError(f"unknown observation_type {kind!r}")  # the constructor rejects it first

    def _follower_observation(self) -> np.ndarray:
        """The ``follower`` observation ``float32 [N, A, 3, 2R+1, 2R+1]`` (see the class docstring).

        One byte per cell carries the obstacle, agent and target bits, so one window copy per
        agent serves all three channels; the path marks come from the agents' first-move tables
        (:class:`~memarl.envs.grid.PathWalker`) and are kept for agents that stay on the same
        cell with the same target. Channels are built as contiguous uint8 planes and converted
        to float32 once.
        """
        n, a, r, side, k, cap = self.num_envs, self.num_agents, self.radius, self._side, self._k, self._cap
        m = n * a
        base = self._env_base  # [N, 1]
        if self._targets_changed:
            # bit 2: the target of some agent (finished ones included), bit 3: of two or more,
            # so that a cell stays marked for an observer whose own target it also is
            shown = self.alive if self._hide_finished_targets else slice(None)
            t = (base + self._tcell)[shown].reshape(-1)
            self._target_layer = np.zeros(n * cap, dtype=np.uint8)
            self._target_layer[t] = 4
            t = np.sort(t)
            self._target_layer[t[1:][t[1:] == t[:-1]]] = 12
            self._targets_changed = False
        layer = self._layer_buffer()  # [N * cap] bit 0 obstacle, 1 agent, 2-3 targets
        np.bitwise_or(self._obst, self._target_layer, out=layer)
        layer[(base + self._cell)[self.alive]] |= 2
        win = self._window_bytes(layer)  # [M, K]
        self._refresh_paths()
        # path marks [M, K]: walked again only for agents whose (table row, cell) changed
        key = (np.arange(0, m * cap, cap).reshape(n, a) + self._cell).reshape(-1)  # [M]
        if self._marks.shape != (m, k) or self._marks_key.size != m:  # first use, or tables rebuilt
            self._marks = np.zeros((m, k), dtype=np.uint8)
            self._marks_key = np.full(m, -1, dtype=np.int64)
        todo = np.flatnonzero(key != self._marks_key)
        if todo.size:
            self._marks_key = key
            if self._mark_tables is not None:  # agents with a marks table read their row
                off = self._mark_off[todo]
                tabled = off >= 0
                self._marks[todo[tabled]] = self._mark_pool[off[tabled] + self._cell.reshape(-1)[todo[tabled]]]
                todo = todo[~tabled]
        if todo.size:
            self._marks[todo] = 0
            width = self._common_width()
            if width is None:
                width = np.repeat(self._wp, a)[todo]
            self._walker.walk(self._moves.reshape(-1), key[todo], width, self._marks, rows=todo)
        planes = np.empty((3, m, k), dtype=np.uint8)  # [C, M, K]; channel 0 holds -1 as 255
        np.bitwise_and(win, 1, out=planes[0])
        np.subtract(self._marks, planes[0], out=planes[0])  # path +1, obstacle -1 (never both)
        tmp = np.bitwise_and(win, 2)
        np.not_equal(tmp, 0, out=planes[1].view(bool))
        np.bitwise_and(win, 4, out=tmp)
        np.not_equal(tmp, 0, out=planes[2].view(bool))
        # the observer's own target is excluded: there only bit 3 (another agent's too) counts
        row, col = self._rc(self._cell)
        trow, tcol = self._rc(self._tcell)
        slot, inside = G.window_index(trow - row, tcol - col, r)
        own = np.flatnonzero(inside)  # [M'] flat agent index
        own_slot = slot.reshape(-1)[own]
        own_flat = own * k + own_slot
        planes[2].reshape(-1)[own_flat] = win.reshape(-1)[own_flat] >> 3
        alive = self.alive.reshape(-1)
        if not alive.all():
            planes[:, ~alive] = 0
        obs = np.empty((m, 3, k), dtype=np.float32)
        np.copyto(obs.transpose(1, 0, 2), planes.view(np.int8), casting="unsafe")
        return obs.reshape(n, a, 3, side, side)

    def shortest_path_actions(self) -> np.ndarray:
        """``int64 [N, A]``: each agent's action toward the next cell of its BFS shortest path.

        The path of the ``follower`` observation (static map, other agents ignored; tie-break
        in MOVES order). 0 (wait) on the target, for unreachable targets and off-grid agents.
        The greedy baseline (``memarl.eval.baselines``) plays these actions.
        """
        if self._needs_reset:
            raise MemarlError("call reset() before shortest_path_actions()")
        # the first-move codes are pogema's actions; 0 on the target, 5 (no path) -> wait
        code = self._first_moves(self._cell).astype(np.int64)
        code[(code == G.FIRST_MOVE_NONE) | ~self.alive] = 0
        return code

    def pogema_observation(self) -> dict[str, np.ndarray]:
        """pogema's POMAPF observation for every agent (finished ones included).

        ``obstacles``/``agents`` ``[N, A, 2R+1, 2R+1]`` float32 and ``xy``/``target_xy``
        ``[N, A, 2]`` int64 (position / target minus the agent's start, pogema's relative
        coordinates).
        """
        n, a, side = self.num_envs, self.num_agents, self._side
        walls, agents = self._windows()
        row, col = self._rc(self._cell)
        srow, scol = self._rc(self._start)
        trow, tcol = self._rc(self._tcell)
        return {"obstacles": walls.astype(np.float32).reshape(n, a, side, side),
                "agents": agents.astype(np.float32).reshape(n, a, side, side),
                "xy": np.stack([row - srow, col - scol], axis=-1),
                "target_xy": np.stack([trow - srow, tcol - scol], axis=-1)}

    # ---------------------------------------------------------------- state views

    @property
    def positions(self) -> np.ndarray:
        """``[N, A, 2]`` (row, col) in map coordinates (finished agents stay on their target)."""
        row, col = self._rc(self._cell)
        return np.stack([row, col], axis=-1) - self.radius

    @property
    def targets(self) -> np.ndarray:
        """``[N, A, 2]`` (row, col) current targets in map coordinates."""
        row, col = self._rc(self._tcell)
        return np.stack([row, col], axis=-1) - self.radius

    def obstacles(self, i: int = 0) -> np.ndarray:
        """``[H, W]`` bool obstacles of env ``i``'s current map."""
        return self._grids[i].obstacles.copy()

    def render(self, i: int = 0) -> str:
        """Text picture of env ``i``: ``#`` obstacle, agents as digits/letters (index mod 62)."""
        chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        rows = [list(line) for line in G.map_to_text(self._grids[i].obstacles).split("\n")]
        for j, (pr, pc) in enumerate(self.positions[i]):
            if self.alive[i, j]:
                rows[pr][pc] = chars[j % len(chars)]
        return "\n".join("".join(x) for x in rows)

    def close(self) -> None:
        pass
