"""A native numpy POGEMA engine: MAPF / lifelong MAPF on grids, ``N`` envs x ``A`` agents at once.

Configured like pogema 1.4.0 (:class:`PogemaConfig` has ``GridConfig``'s field names) and
step-exact with it for ``priority`` and ``block_both``; ``soft`` uses the corrected rule of
:func:`memarl.envs.grid.resolve_soft`. See :class:`PogemaEnv`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from memarl.envs import grid as G
from memarl.envs.base import EpisodeEnds
from memarl.errors import MemarlError

ON_TARGET = ("finish", "nothing", "restart")
OBSERVATION_TYPES = ("default", "POMAPF", "MAPF", "follower")
REWARDS = ("goal", "follower", "follower+goal")
_INT32_MAX = np.iinfo(np.int32).max
_LETTERS_LOW = set("abcdefghijklmnopqrstuvwxyz")
_LETTERS_UP = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_int(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def _parse_map(value: Any) -> tuple[np.ndarray, dict[str, tuple[int, int]], dict[str, tuple[int, int]],
                                    np.ndarray | None, np.ndarray | None]:
    """``map`` (str, list of str, or 2-D 0/1 array-like) -> (obstacles [H, W], agents, targets by
    letter, possible starts [K, 2], possible targets [K', 2]).

    The possible cells follow pogema 1.4.0's ``str_map_to_list``: only when the text has one of
    the markers ``@`` (start only), ``$`` (target only), ``!`` (neither) they are listed, in
    row-major order: ``.`` and ``@`` cells may hold starts, ``.`` and ``$`` cells targets.
    Without markers both are None (any free cell may hold either).
    """
    agents: dict[str, tuple[int, int]] = {}
    targets: dict[str, tuple[int, int]] = {}
    possible_a: list[tuple[int, int]] = []
    possible_t: list[tuple[int, int]] = []
    marker = None
    if isinstance(value, (list, tuple)) and value and all(isinstance(r, str) for r in value):
        value = "\n".join(value)
    if isinstance(value, str):
        rows = value.split()
        if not rows:
            raise MemarlError("map is empty")
        width = len(rows[0])
        for i, row in enumerate(rows):
            if len(row) != width:
                raise MemarlError(f"map row {i} has {len(row)} cells, row 0 has {width} (ragged rows)")
            for j, ch in enumerate(row):
                if ch == ".":
                    possible_a.append((i, j))
                    possible_t.append((i, j))
                elif ch in "@$!":
                    marker = marker or (i, j, ch)
                    if ch == "@":
                        possible_a.append((i, j))
                    elif ch == "$":
                        possible_t.append((i, j))
                elif ch in _LETTERS_LOW:
                    agents[ch] = (i, j)
                elif ch in _LETTERS_UP:
                    targets[ch.lower()] = (i, j)
                elif ch != "#":
                    raise MemarlError(f"map row {i} has unknown character {ch!r} at column {j}")
        if marker is not None and (agents or targets):
            # pogema refuses this too ("Mark either possible locations or precise ones")
            i, j, ch = marker
            raise MemarlError(f"map mixes agent/target letters with possible-cell markers (@ $ !; {ch!r} at "
                              f"({i}, {j})): mark either exact positions or possible cells")
        obstacles = np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)
    else:
        try:
            arr = np.asarray(value)
        except ValueError:
            raise MemarlError("map rows have different lengths (ragged rows)") from None
        if arr.dtype == object or arr.ndim != 2 or arr.size == 0:
            raise MemarlError(f"map must be an ASCII string or a non-empty 2-D 0/1 array, got shape {arr.shape}")
        if not np.isin(arr, (0, 1)).all():
            raise MemarlError("map array may only contain 0 (free) and 1 (obstacle)")
        obstacles = arr.astype(bool)
    if obstacles.all():
        raise MemarlError("map has no free cell")
    if sorted(agents) != sorted(targets):
        raise MemarlError(f"map letters: agents {''.join(sorted(agents))!r} and targets "
                          f"{''.join(sorted(targets)).upper()!r} do not match")
    if marker is None:
        return obstacles, agents, targets, None, None
    return (obstacles, agents, targets, np.array(possible_a, dtype=np.int64).reshape(-1, 2),
            np.array(possible_t, dtype=np.int64).reshape(-1, 2))


def _possible_cells(name: str, value: Any, obstacles: np.ndarray) -> np.ndarray:
    """``possible_agents_xy`` / ``possible_targets_xy`` -> [K, 2] int64, checked against the map."""
    cells = np.array(_as_xy_list(name, value), dtype=np.int64).reshape(-1, 2)
    h, w = obstacles.shape
    for x, y in cells.tolist():
        if not (0 <= x < h and 0 <= y < w):
            raise MemarlError(f"{name}: {(x, y)} is outside the {h}x{w} map")
        if obstacles[x, y]:
            raise MemarlError(f"{name}: {(x, y)} is on an obstacle")
    return cells


def _check_possible(possible: tuple[np.ndarray, np.ndarray], num_agents: int, where: str) -> None:
    pa, pt = possible
    if len(pa) < num_agents or len(pt) < num_agents:
        raise MemarlError(f"{num_agents} agents need {num_agents} possible start cells and {num_agents} possible "
                          f"target cells; {where} has {len(pa)} and {len(pt)} (start: '.' '@', target: '.' '$')")
    if len({(int(x), int(y)) for x, y in pa}) != len(pa):
        raise MemarlError(f"{where}: a possible start cell is listed twice (two agents could share it)")


def draw_from_possible(possible: tuple[np.ndarray, np.ndarray], num_agents: int,
                       seed: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Starts ``[A, 2]``, targets ``[A, 2]`` and the target pool ``[K, 2]`` from possible cells.

    pogema 1.4.0's ``generate_from_possible_positions``: one ``default_rng(seed)`` shuffles the
    possible starts, then the possible targets; agent ``i`` gets the ``i``-th of each (a start
    may equal its own target, and they need not be connected, as in pogema). The shuffled
    targets are the pool that restart mode draws new targets from (pogema shuffles its list in
    place and draws from it).
    """
    pa, pt = possible
    rng = np.random.default_rng(seed)
    # Generator.shuffle of a list swaps exactly as permutation() does, so indexing by two
    # permutations drawn in the same order reproduces pogema's two in-place shuffles
    pa = pa[rng.permutation(len(pa))]
    pt = pt[rng.permutation(len(pt))]
    return pa[:num_agents], pt[:num_agents], pt


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


def _as_xy_list(name: str, value: Any) -> list[tuple[int, int]]:
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) == 0:
        raise MemarlError(f"{name} must be a non-empty list of (row, col) pairs")
    out = []
    for p in value:
        if not isinstance(p, (list, tuple, np.ndarray)) or len(p) != 2 or not all(_is_int(v) for v in p):
            raise MemarlError(f"{name}: every position must be a (row, col) pair of integers, got {p!r}")
        out.append((int(p[0]), int(p[1])))
    return out


@dataclass(frozen=True)
class PogemaConfig:
    """Settings of :class:`PogemaEnv`: pogema 1.4.0 ``GridConfig``'s fields plus ``num_envs``.

    Coordinates are pogema's ``(x, y)`` = (row, col), 0-based from the top-left corner.
    """

    on_target: str = "finish"
    """'finish' (agents vanish on arrival), 'nothing' (classical MAPF: solved when all stand on
    their targets) or 'restart' (lifelong: a new target on arrival)"""
    seed: int | None = None
    """instance seed: map, starts/targets and restart targets follow pogema's generators with it
    (env n's k-th episode uses seed + n + k * num_envs); None = fresh entropy"""
    width: int | None = None
    """width of a generated map (None = size); taken from ``map`` when given"""
    height: int | None = None
    """height of a generated map (None = size); taken from ``map`` when given"""
    size: int = 8
    """side of a generated square map (2..4096)"""
    density: float = 0.3
    """obstacle probability of a generated map (0..1)"""
    obs_radius: int = 5
    """observation radius R (1..128): windows are (2R+1) x (2R+1)"""
    agents_xy: Any = None
    """custom starts, list of (row, col); given together with ``targets_xy``"""
    targets_xy: Any = None
    """custom targets: list of (row, col), or per-agent target sequences (the first is the initial
    target; 'restart' cycles them as pogema). With single targets in 'restart' (pogema refuses
    them) later targets are drawn as for a generated instance"""
    num_agents: int | None = None
    """agents per env (default len(agents_xy), else 1); only the first num_agents custom
    positions are used"""
    possible_agents_xy: Any = None
    """cells that may hold starts, list of (row, col); given together with
    ``possible_targets_xy`` and a map without markers. As pogema: ``default_rng(seed)`` shuffles
    this list, then the targets' list, and agent i takes the i-th of each"""
    possible_targets_xy: Any = None
    """cells that may hold targets, list of (row, col) (see ``possible_agents_xy``); in 'restart'
    mode new targets are drawn from the shuffled list with the agent's generator (redrawn while
    the cell equals the agent's position shifted by (R, R): pogema compares map coordinates with
    padded ones)"""
    collision_system: str = "priority"
    """'priority' and 'block_both' (exactly pogema 1.4.0) or 'soft' (corrected, see resolve_soft)"""
    persistent: bool = False
    """not supported (must stay False)"""
    observation_type: str = "default"
    """'default' (pogema's 3 channels: obstacles, agents, target projected on the window border),
    'POMAPF' / 'MAPF' (2 channels: obstacles, agents; the coordinates are in
    pogema_observation()) or 'follower' (Follower/SRMT preprocessing: path-and-obstacles,
    agents, other agents' targets)"""
    map: Any = None
    """ASCII map ('.' free, '#' obstacle, a..z starts with A..Z their targets; '@' start only,
    '$' target only, '!' free but neither: with one of these markers starts and targets are
    drawn from the marked cells as pogema does), a list of row strings, or a 2-D 0/1 array;
    None = a random map from size/density/seed"""
    map_name: str | None = None
    """a map of the memarl library (``memarl.envs.suites.library_names()``: the POGEMA benchmark
    and Follower maps, e.g. 'wfi_warehouse') or a regular expression fully matching several
    (e.g. 'mazes-.+'); with several, each episode plays
    ``names[default_rng(instance_seed).integers(len(names))]`` (names in library order) and
    height/width/density describe the largest / average map. Not together with ``map``"""
    integration: str | None = None
    """not supported (must stay None): this env is already batched"""
    max_episode_steps: int = 64
    """time limit: all agents are truncated when the elapsed steps reach it"""
    auto_reset: bool | None = None
    """None/True: an env that ends an episode is reset inside step(); False: it freezes until reset()"""
    num_envs: int = 1
    """number of envs N stepped together"""
    reward: str = "goal"
    """'goal' (pogema's: +1 on arrival, or to all on solving in 'nothing' mode), 'follower'
    (Follower/SRMT LMAPF training: ``path_reward`` each time an agent steps onto the next cell of
    its shortest path as planned before the move, the goal's +1 dropped) or 'follower+goal'"""
    path_reward: float = 0.01
    """reward per reached next path cell in the 'follower' rewards"""

    def __post_init__(self) -> None:  # noqa: C901 (one check per field)
        """Validate every field (MemarlError) and derive the parsed map and custom positions.

        Derived attributes (not dataclass fields): ``_obstacles`` ([H, W] bool or None for a
        random map or several named maps), ``_possible`` ((possible starts, possible targets)
        [K, 2] or None), ``_maps`` ((name, obstacles, possible) per map when ``map_name``
        matches several, else None), ``_map_names`` (the matched names or None), ``_starts``
        ([A, 2] or None) and ``_sequences`` (per-agent [L, 2] target sequences or None).
        """
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("_starts", None)
        put("_sequences", None)

        if self.on_target not in ON_TARGET:
            raise MemarlError(f"unknown on_target {self.on_target!r}; known: {', '.join(ON_TARGET)}")
        if self.collision_system not in G.ALL_COLLISION_SYSTEMS:
            raise MemarlError(f"unknown collision_system {self.collision_system!r}; "
                              f"known: {', '.join(G.ALL_COLLISION_SYSTEMS)}")
        if self.observation_type not in OBSERVATION_TYPES:
            raise MemarlError(f"unknown observation_type {self.observation_type!r}; "
                              f"known: {', '.join(OBSERVATION_TYPES)}")
        if not _is_int(self.obs_radius) or not 1 <= self.obs_radius <= 128:
            raise MemarlError(f"obs_radius must be an integer in 1..128, got {self.obs_radius!r}")
        if self.seed is not None and (not _is_int(self.seed) or self.seed < 0):
            raise MemarlError(f"seed must be a non-negative integer or None, got {self.seed!r}")
        if not _is_int(self.max_episode_steps) or self.max_episode_steps < 1:
            raise MemarlError(f"max_episode_steps must be an integer >= 1, got {self.max_episode_steps!r}")
        if not _is_int(self.num_envs) or self.num_envs < 1:
            raise MemarlError(f"num_envs must be an integer >= 1, got {self.num_envs!r}")
        if not _is_int(self.size) or not 2 <= self.size <= 4096:
            raise MemarlError(f"size must be an integer in 2..4096, got {self.size!r}")
        if isinstance(self.density, bool) or not isinstance(self.density, (int, float, np.floating)) \
                or not 0.0 <= float(self.density) <= 1.0:
            raise MemarlError(f"density must be a number in 0..1, got {self.density!r}")
        if self.integration is not None:
            raise MemarlError("integration is not supported by the native pogema engine")
        if self.reward not in REWARDS:
            raise MemarlError(f"unknown reward {self.reward!r}; known: {', '.join(REWARDS)}")
        if isinstance(self.path_reward, bool) or not isinstance(self.path_reward, (int, float)) \
                or not np.isfinite(self.path_reward):
            raise MemarlError(f"path_reward must be a finite number, got {self.path_reward!r}")
        if self.persistent:
            raise MemarlError("persistent is not supported by the native pogema engine")
        if self.auto_reset not in (None, True, False):
            raise MemarlError(f"auto_reset must be None, True or False, got {self.auto_reset!r}")
        if (self.width is None) != (self.height is None):
            raise MemarlError("give both width and height, or neither (then size is used)")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or not 1 <= v <= 4096):
                raise MemarlError(f"{name} must be an integer in 1..4096, got {v!r}")

        agents_xy, targets_xy = self.agents_xy, self.targets_xy
        obstacles = None
        possible = None
        maps = None
        names = None
        map_value = self.map
        if self.map_name is not None:
            if self.map is not None:
                raise MemarlError("give either map or map_name, not both")
            if not isinstance(self.map_name, str):
                raise MemarlError(f"map_name must be a string, got {self.map_name!r}")
            from memarl.envs.suites import resolve_map_name
            names = resolve_map_name(self.map_name)
            if len(names) == 1:
                map_value = names[0]
            else:
                if agents_xy is not None or targets_xy is not None \
                        or self.possible_agents_xy is not None or self.possible_targets_xy is not None:
                    raise MemarlError(f"map_name {self.map_name!r} matches {len(names)} maps: agents_xy/targets_xy "
                                      "and possible_*_xy need a single map")
                maps = tuple((name, *_library_map(name)) for name in names)
        if maps is not None:
            h = max(m[1].shape[0] for m in maps)
            w = max(m[1].shape[1] for m in maps)
            put("height", h)
            put("width", w)
            put("size", max(h, w))
            put("density", float(np.mean([m[1].mean() for m in maps])))
        elif map_value is not None:
            if isinstance(map_value, str) and self.map_name is not None:
                obstacles, possible = _library_map(map_value)
                letters_a = letters_t = {}
            else:
                obstacles, letters_a, letters_t, pa, pt = _parse_map(map_value)
                possible = None if pa is None else (pa, pt)
            if letters_a:
                if agents_xy is not None or targets_xy is not None:
                    raise MemarlError("agents/targets are given both in the map (letters) "
                                      "and as agents_xy/targets_xy")
                agents_xy = [letters_a[k] for k in sorted(letters_a)]
                targets_xy = [letters_t[k] for k in sorted(letters_t)]
            h, w = obstacles.shape
            put("height", h)
            put("width", w)
            put("size", max(h, w))
            put("density", float(obstacles.mean()))
        else:
            if self.width is None:
                put("width", self.size)
                put("height", self.size)
            else:
                put("size", max(self.width, self.height))
        h, w = self.height, self.width
        if (agents_xy is None) != (targets_xy is None):
            raise MemarlError("agents_xy and targets_xy must be given together")
        if (self.possible_agents_xy is None) != (self.possible_targets_xy is None):
            raise MemarlError("possible_agents_xy and possible_targets_xy must be given together")
        if self.possible_agents_xy is not None:
            if agents_xy is not None:
                raise MemarlError("give either agents_xy/targets_xy or possible_agents_xy/possible_targets_xy")
            if obstacles is None:
                # pogema would not free the cells of a generated map under them
                raise MemarlError("possible_agents_xy/possible_targets_xy need a map")
            if possible is not None:
                raise MemarlError("possible cells are given both as map markers (@ $ !) and as "
                                  "possible_agents_xy/possible_targets_xy")
            possible = (_possible_cells("possible_agents_xy", self.possible_agents_xy, obstacles),
                        _possible_cells("possible_targets_xy", self.possible_targets_xy, obstacles))
        if agents_xy is not None:
            possible = None  # exact positions win over the markers, as in pogema
        num_agents = self.num_agents
        if num_agents is None:
            num_agents = len(agents_xy) if agents_xy is not None else 1
        if not _is_int(num_agents) or not 1 <= num_agents <= 10_000_000:
            raise MemarlError(f"num_agents must be an integer in 1..10000000, got {num_agents!r}")
        put("num_agents", int(num_agents))
        for name, obst, poss in (maps or ((None, obstacles, possible),)):
            where = "the map" if name is None else f"map {name!r}"
            if obst is not None and num_agents > int((~obst).sum()):
                raise MemarlError(f"{num_agents} agents do not fit on {where}'s {int((~obst).sum())} free cells")
            if poss is not None:
                _check_possible(poss, num_agents, where)
        if obstacles is None and maps is None and num_agents > h * w:
            raise MemarlError(f"{num_agents} agents do not fit on a {h}x{w} map")
        if agents_xy is not None:
            starts = _as_xy_list("agents_xy", agents_xy)
            tx = list(targets_xy) if isinstance(targets_xy, (list, tuple, np.ndarray)) else targets_xy
            if not isinstance(tx, list) or not tx:
                raise MemarlError("targets_xy must be a non-empty list")
            is_seq = isinstance(tx[0], (list, tuple, np.ndarray)) and len(tx[0]) > 0 \
                and isinstance(tx[0][0], (list, tuple, np.ndarray))
            if is_seq:
                seqs = [_as_xy_list("targets_xy", s) for s in tx]
            else:
                seqs = [[p] for p in _as_xy_list("targets_xy", tx)]
            if len(starts) != len(seqs):
                raise MemarlError(f"agents_xy has {len(starts)} positions, targets_xy {len(seqs)}")
            if num_agents > len(starts):
                raise MemarlError(f"num_agents={num_agents} but only {len(starts)} agents_xy/targets_xy given")
            starts, seqs = starts[:num_agents], seqs[:num_agents]
            for what, pts in [("start", starts)] + [("target", s) for s in seqs]:
                for (x, y) in pts:
                    if not (0 <= x < h and 0 <= y < w):
                        raise MemarlError(f"{what} {(x, y)} is outside the {h}x{w} map")
                    if obstacles is not None and obstacles[x, y]:
                        raise MemarlError(f"{what} {(x, y)} is on an obstacle")
            if len(set(starts)) != len(starts):
                raise MemarlError("two agents share a start cell in agents_xy")
            put("_starts", np.array(starts, dtype=np.int64).reshape(-1, 2))
            put("_sequences", tuple(np.array(s, dtype=np.int64).reshape(-1, 2) for s in seqs))
        put("_obstacles", obstacles)
        put("_possible", possible)
        put("_maps", maps)
        put("_map_names", names)

    def episode_map_name(self, seed: int | None) -> str | None:
        """Name of the library map instance ``seed`` plays (None without ``map_name``)."""
        if self._maps is not None:
            return self._maps[self._map_index(seed)][0]
        return None if self._map_names is None else self._map_names[0]

    def _map_index(self, seed: int | None) -> int:
        # a generator of its own (not the placement's): the map draw is documented under map_name
        return int(np.random.default_rng(seed).integers(len(self._maps)))

    def instance(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        """One episode's ``(obstacles [H, W], starts [A, 2], target sequences)`` for instance ``seed``.

        Exactly pogema 1.4.0's instance for ``GridConfig(..., seed=seed)``: the map (given, one
        of the ``map_name`` maps, or :func:`~memarl.envs.grid.generate_obstacles`), then the
        custom starts/targets, the possible cells (:func:`draw_from_possible`) or
        :func:`~memarl.envs.grid.generate_starts_targets` on that map. Each target sequence has
        at least one target (the first is the initial target).
        """
        return self._instance(seed)[:3]

    def _instance(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...],
                                                   np.ndarray | None]:
        """:meth:`instance` plus the restart-mode target pool ``[K, 2]`` (None: the agent's component)."""
        obstacles, possible = self._obstacles, self._possible
        if self._maps is not None:
            _, obstacles, possible = self._maps[self._map_index(seed)]
        if obstacles is None:
            obstacles = G.generate_obstacles(self.height, self.width, float(self.density), seed)
            if obstacles.all():
                raise MemarlError(f"the generated map (seed {seed}) has no free cell")
        if self._starts is not None:
            if self._obstacles is None:  # a random map: pogema frees the cells under custom positions
                obstacles = obstacles.copy()
                obstacles[self._starts[:, 0], self._starts[:, 1]] = False
                for s in self._sequences:
                    obstacles[s[0, 0], s[0, 1]] = False
            return obstacles, self._starts, self._sequences, None
        if possible is not None:
            starts, targets, pool = draw_from_possible(possible, self.num_agents, seed)
            return obstacles, starts, tuple(t[None] for t in targets), pool
        placed = G.generate_starts_targets(obstacles, self.num_agents, seed)
        if placed is None:
            raise MemarlError(f"cannot place {self.num_agents} agents with distinct starts and targets "
                              f"on the map (seed {seed}); lower num_agents or density")
        starts, targets = placed
        return obstacles, starts, tuple(t[None] for t in targets), None


_LIBRARY_MAPS: dict[str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]] = {}


def _library_map(name: str) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """``(obstacles, possible cells or None)`` of library map ``name``, parsed once per process."""
    got = _LIBRARY_MAPS.get(name)
    if got is None:
        from memarl.envs.suites import map_text
        obstacles, letters, _, pa, pt = _parse_map(map_text(name))
        if letters:
            raise MemarlError(f"library map {name!r} has agent letters; library maps may not")
        obstacles.setflags(write=False)  # shared by every config that names it
        got = _LIBRARY_MAPS[name] = (obstacles, None if pa is None else (pa, pt))
    return got


_GRID_CACHE: dict[tuple[str, int], G.GridMap] = {}


def _grid_map(obstacles: np.ndarray, radius: int) -> G.GridMap:
    key = G.map_to_text(obstacles)
    g = _GRID_CACHE.get((key, radius))
    if g is None:
        if len(_GRID_CACHE) > 256:
            _GRID_CACHE.clear()
        g = _GRID_CACHE[(key, radius)] = G.GridMap(obstacles, radius, key)
    return g


class PogemaEnv(EpisodeEnds):
    """POGEMA (MAPF / lifelong MAPF), ``N`` envs x ``A`` agents stepped together with numpy.

    Description
        pogema 1.4.0's mechanics, reimplemented: agents on a 4-connected grid move to their
        targets. The map is padded by R with a 1-cell obstacle ring around it; cells beyond the
        ring read as free (``empty_outside``). ``on_target`` picks the mode: ``finish`` (an
        agent that reaches its target gets +1 once and leaves the grid: it neither moves nor
        blocks; the episode ends when all arrived), ``nothing`` (classical MAPF: agents stay;
        +1 to all and all terminated on the first step where every agent stands on its target)
        and ``restart`` (lifelong MAPF: +1 per arrival and a new target at once; never
        terminates). For ``priority`` and ``block_both`` positions, rewards, terminated,
        truncated, metrics and pogema's ``obstacles``/``agents``/``xy``/``target_xy``
        observations equal pogema 1.4.0's step for step (``tests/test_pogema_env.py``).
        Collisions: ``priority`` = agents move one after the other in index order into cells
        free at that moment (following only behind a lower index); ``block_both`` = an agent
        moves iff its cell is no agent's current cell and requested by nobody else; ``soft`` =
        :func:`memarl.envs.grid.resolve_soft` (pogema's soft semantics without its occupancy
        bug; rotations of >= 3 agents are blocked, pogema 1.4.0 lets them through).

    Observation
        ``float32 [N, A, C, 2R+1, 2R+1]`` centred on each agent, by ``observation_type``:
        ``default`` (C=3, exactly pogema's): obstacles (1, the ring included), agents on the grid
        (1, the observer included while on the grid), the target clipped onto the window
        (``[R + clip(dr), R + clip(dc)]``); ``POMAPF``/``MAPF`` (C=2): obstacles, agents (the
        coordinate parts are in :meth:`pogema_observation`); ``follower`` (C=3, Follower/SRMT
        preprocessing): channel 0 = obstacles as -1 plus the agent's BFS shortest path to its
        target as +1 (from its own cell, stopping at the first path cell outside the window; ties
        broken in MOVES order, as in Bottleneck), channel 1 = agents on the grid (self
        included), channel 2 = the targets of the other agents (anonymous, own excluded); all
        zeros for an agent that left the grid. In ``finish`` mode the ``default``/``POMAPF``
        observation of a finished agent is pogema's (its window, itself absent).

    Action
        ``int [N, A]`` in ``0..4``: 0 wait, 1 up (row-1), 2 down (row+1), 3 left (col-1),
        4 right (col+1). Actions of agents off the grid are ignored.

    Reward
        ``float32 [N, A]``, by ``reward``: ``goal`` (pogema's) +1 on arrival (``finish``,
        ``restart``), +1 to every agent on the solving step (``nothing``), 0 otherwise;
        ``follower`` (Follower/SRMT LMAPF training) ``path_reward`` (0.01) when an agent moves onto
        the next cell of its shortest path (the path of the observation's channel 0, planned
        before the move; arriving on the target counts), nothing for the goal itself;
        ``follower+goal`` both.

    Starting State
        From :meth:`PogemaConfig.instance`: pogema's generators with the instance seed (env
        ``n``'s ``k``-th episode: ``seed + n + k * N``, so with one env the first episode is
        pogema's instance for ``seed``), or the custom map/starts/targets. In ``restart`` mode
        new targets follow pogema: agent ``i``'s generator is
        ``default_rng(default_rng(seed).integers(2**31 - 1, size=A)[i])``, a new target is a
        uniformly drawn cell of the agent's connected component different from its cell
        (redrawn while equal); custom target sequences are cycled instead. An agent alone in a
        one-cell component keeps its target (pogema would loop forever). With possible cells
        (map markers ``@ $ !`` or ``possible_*_xy``) starts and targets are the first A of
        the shuffled lists (:func:`draw_from_possible`) and a new target is a uniformly drawn
        cell of the shuffled possible targets, redrawn while it equals the agent's cell shifted
        by (R, R) (pogema compares map with padded coordinates; so the new target may be the
        agent's own cell or lie in another component, as in pogema).

    Episode End
        ``truncated[n, :]`` is True when the elapsed steps reach ``max_episode_steps``.
        ``terminated``: ``finish`` = the agent stands on its target (stays True after it left
        the grid); ``nothing`` = all True on the solving step; ``restart`` = never. The episode
        ends when all agents are terminated or at truncation. ``info["episode_metrics"][n]``
        holds pogema's metrics (``finish``: ISR, CSR, ep_length; ``nothing``: ISR, CSR,
        ep_length, SoC, makespan; ``restart``: avg_throughput) plus ``SoC``/``makespan`` in
        ``finish`` mode (the correct sum of arrival steps, see ``grid.finish_mode_metrics``),
        ``collisions`` (agent-steps where an agent asked to move into a free cell and was refused
        because of other agents), ``obstacle_collisions`` (moves into obstacles),
        ``throughput_count`` (arrivals), ``return`` and ``episode_length``.

    Arguments
        See :class:`PogemaConfig` (pogema's ``GridConfig`` names): ``PogemaEnv(num_envs=8,
        size=16, num_agents=8, on_target="restart", seed=0)``.

    Version History
        * v0: first version; pogema 1.4.0 mechanics, corrected soft collisions.
    """

    metadata = {"render_modes": ["ansi"], "name": "pogema-v0"}
    config_class = PogemaConfig

    def __init__(self, config: PogemaConfig | None = None, **overrides: Any):
        if config is None:
            config = PogemaConfig(**overrides) if overrides else PogemaConfig()
        elif not isinstance(config, PogemaConfig):
            raise MemarlError(f"config must be a PogemaConfig, got {type(config).__name__}")
        elif overrides:
            known = {f.name for f in dataclasses.fields(PogemaConfig) if f.init}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise MemarlError(f"unknown pogema option(s) {', '.join(unknown)}")
            config = dataclasses.replace(config, **overrides)
        self.config = cfg = config
        self.num_envs = n = cfg.num_envs
        self.num_agents = a = cfg.num_agents
        self.num_actions = G.NUM_ACTIONS
        self.radius = r = cfg.obs_radius
        self._side = s = 2 * r + 1
        self._k = s * s
        chans = 2 if cfg.observation_type in ("POMAPF", "MAPF") else 3
        self.obs_shape = (chans, s, s)
        low = -1.0 if cfg.observation_type == "follower" else 0.0
        self.single_observation_space = gymnasium.spaces.Box(low, 1.0, self.obs_shape, dtype=np.float32)
        self.single_action_space = gymnasium.spaces.Discrete(self.num_actions)
        self._resolve = G.ALL_COLLISION_SYSTEMS[cfg.collision_system]
        self._autoreset = cfg.auto_reset is not False
        # BFS path tables: for the follower observation and the follower reward
        self._path_reward = cfg.reward != "goal"
        self._goal_reward = cfg.reward != "follower"
        # per agent, the first move toward its target from every cell of its map ([N*A, cap] uint8,
        # G.bfs_first_moves codes); rows of agents whose target changed are rebuilt together,
        # in one batched BFS, the next time a path is needed (_refresh_paths)
        self._moves = np.zeros((0, 0), dtype=np.uint8)
        self._stale = np.ones((n, a), dtype=bool)  # [N, A] target changed since the last rebuild
        self._walker = G.PathWalker(r)
        self._targets_changed = True  # the follower observation's target layer needs a rebuild
        self._target_layer = np.zeros(0, dtype=np.uint8)
        self._shape: tuple[int, int] | None | bool = False  # _common_shape cache (False: unknown)
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
        self._delta = np.zeros((n, G.NUM_ACTIONS), dtype=np.int64)
        self._row_offs = np.zeros((n, s), dtype=np.int64)  # [N, 2R+1] flat offset of each window row
        self._cell = np.zeros((n, a), dtype=np.int64)
        self._start = np.zeros((n, a), dtype=np.int64)
        self._tcell = np.zeros((n, a), dtype=np.int64)
        self.alive = np.zeros((n, a), dtype=bool)
        self._t = np.zeros(n, dtype=np.int64)
        self._done = np.zeros(n, dtype=bool)
        self._episode = np.zeros(n, dtype=np.int64)
        self._instance_seed: list[int | None] = [None] * n
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
        self._entropy = np.random.default_rng()
        self._seed = cfg.seed
        self._env_idx = np.arange(n)
        self._needs_reset = True

    # ---------------------------------------------------------------- reset

    def reset(self, seed: int | None = None, options: dict | None = None) -> np.ndarray:
        """Reset every env; returns the first observations ``[N, A, C, 2R+1, 2R+1]``.

        ``seed`` replaces the config's seed (env ``n``'s episodes then use ``seed + n + k*N``).
        ``options={"seeds": [s_0, ..., s_{N-1}]}`` plays exactly pogema's instance ``s_n`` in env
        ``n`` for this reset.
        """
        if seed is not None:
            if not _is_int(seed) or seed < 0:
                raise MemarlError(f"seed must be a non-negative integer, got {seed!r}")
            self._seed = int(seed)
            self._episode[:] = 0
        seeds = None
        if options:
            unknown = sorted(set(options) - {"seeds"})
            if unknown:
                raise MemarlError(f"unknown reset option(s) {', '.join(unknown)}; known: seeds")
            seeds = list(options["seeds"])
            if len(seeds) != self.num_envs or not all(s is None or (_is_int(s) and s >= 0) for s in seeds):
                raise MemarlError(f"options['seeds'] must be {self.num_envs} non-negative integers (or None)")
        for i in range(self.num_envs):
            self._reset_env(i, None if seeds is None else seeds[i])
        self._done[:] = False
        self._needs_reset = False
        return self._observe()

    def _next_seed(self, i: int) -> int:
        if self._seed is None:
            return int(self._entropy.integers(_INT32_MAX))
        return int(self._seed) + i + int(self._episode[i]) * self.num_envs

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

    def _reset_env(self, i: int, seed: int | None = None) -> None:
        cfg, r, a = self.config, self.radius, self.num_agents
        if seed is None:
            seed = self._next_seed(i)
            self._episode[i] += 1
        obstacles, starts, seqs, pool = cfg._instance(seed)
        grid = _grid_map(obstacles, r)
        self._ensure_cap(grid.num_cells)
        wp = grid.padded_width
        base = i * self._cap
        self._grids[i] = grid
        self._pass[base:base + self._cap] = False
        self._pass[base:base + grid.num_cells] = grid.passable
        self._obst[base:base + self._cap] = 0
        self._obst[base:base + grid.num_cells] = grid.padded.reshape(-1)
        self._wp[i] = wp
        self._delta[i] = G.MOVES[:, 0] * wp + G.MOVES[:, 1]
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
        if cfg.on_target == "restart":
            main = np.random.default_rng(seed)
            # made on an agent's first arrival: a generator costs ~20 us and many agents of a
            # short or early-training episode never arrive
            self._target_seeds[i] = main.integers(_INT32_MAX, size=a).tolist()
            self._target_rngs[i] = [None] * a
            # possible target cells (map markers): new targets come from this pool, not the component
            self._pools[i] = None if pool is None else grid.cell(pool[:, 0], pool[:, 1])
        if cfg.on_target == "restart" and pool is None:
            labels, _ = G.label_components(obstacles)
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
        self._shape = False
        self.alive[i] = True
        self._t[i] = 0
        self._instance_seed[i] = seed
        self._return[i] = 0.0
        self._arrival[i] = 0
        self._solve[i] = 0
        self._throughput[i] = 0
        self._collisions[i] = 0
        self._bumps[i] = 0

    # ---------------------------------------------------------------- step

    def _refresh_paths(self) -> None:
        """Rebuild the first-move rows of the agents whose target changed: one batched BFS.

        Memory is fixed (one row of ``cap`` bytes per agent), so nothing is cached across targets:
        a lifelong run with new maps and targets never grows the tables.
        """
        n, a, r, cap = self.num_envs, self.num_agents, self.radius, self._cap
        if self._moves.shape != (n * a, cap):  # first use, or the maps grew (_ensure_cap)
            self._moves = np.full((n * a, cap), G.FIRST_MOVE_NONE, dtype=np.uint8)
            self._stale[:] = True
            self._marks_key = np.zeros(0, dtype=np.int64)
        if not self._stale.any():
            return
        rows = np.flatnonzero(self._stale)  # [P] env * A + agent
        envs = rows // a
        # targets of maps with one shape share one BFS (all of them unless map_name names several)
        shape_of = {}
        for i in np.unique(envs).tolist():
            shape_of.setdefault(self._grids[i].obstacles.shape, []).append(i)
        for (h, w), group in shape_of.items():
            hp, wp = h + 2 * r, w + 2 * r
            group = np.array(group)
            sel = np.isin(envs, group) if len(shape_of) > 1 else slice(None)
            g_rows, g_envs = rows[sel], envs[sel]
            # the BFS runs on the map and its obstacle ring (padded rows/cols r-1 .. r+h / r+w):
            # the cells beyond the ring are never reached
            ring = np.stack([self._pass[i * cap:i * cap + hp * wp].reshape(hp, wp)[r - 1:r + h + 1, r - 1:r + w + 1]
                             for i in group.tolist()])  # [E, h+2, w+2]
            where = np.searchsorted(group, g_envs)  # [P] which of the group's maps
            trow, tcol = np.divmod(self._tcell.reshape(-1)[g_rows], wp)
            targets = (trow - r + 1) * (w + 2) + (tcol - r + 1)
            codes = G.bfs_first_moves(ring[where], targets)  # [P, h+2, w+2]
            full = np.full((g_rows.size, hp, wp), G.FIRST_MOVE_NONE, dtype=np.uint8)
            full[:, r - 1:r + h + 1, r - 1:r + w + 1] = codes
            self._moves[g_rows, :hp * wp] = full.reshape(g_rows.size, hp * wp)
            if self._marks_key.size:
                self._marks_key[g_rows] = -1  # their kept path marks are for the old target
            if hp * wp < cap:
                self._moves[g_rows, hp * wp:] = G.FIRST_MOVE_NONE
        self._stale[:] = False

    def _first_moves(self, cells: np.ndarray) -> np.ndarray:
        """``[N, A]`` first-move code (G.bfs_first_moves) of each agent at ``cells`` toward its target."""
        self._refresh_paths()
        rows = np.arange(self.num_envs * self.num_agents).reshape(cells.shape)
        return self._moves[rows, cells]

    def _planned_cells(self, cells: np.ndarray) -> np.ndarray:
        """``[N, A]`` next cell on each agent's shortest path (its own cell on the target, -1 if unreachable)."""
        code = self._first_moves(cells).astype(np.int64)
        nxt = cells + np.take_along_axis(self._delta, np.minimum(code, G.NUM_ACTIONS - 1), axis=1)
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
        """Step all envs with ``actions [N, A]``; see the class docstring for the outputs."""
        if self._needs_reset:
            raise MemarlError("call reset() before step()")
        act = self._check_actions(actions)
        mode = self.config.on_target
        running = ~self._done
        active = self.alive
        cells = self._cell
        base = (self._env_idx * self._cap)[:, None]
        proposed = cells + np.take_along_axis(self._delta, act, axis=1)
        if self._path_reward:  # the next path cell as planned before the move  # [N, A]
            planned = self._planned_cells(cells)
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
        if not self._goal_reward:
            reward = np.zeros_like(reward)
        if self._path_reward:
            reward = reward + np.float32(self.config.path_reward) * (active & (new == planned) & (new != cells))
        self._return += reward
        trunc_env = running & (t >= self.config.max_episode_steps)
        truncated = np.repeat(trunc_env[:, None], self.num_agents, axis=1)
        ended = running & (terminated.all(1) | trunc_env)

        if self._autoreset:  # ended envs return the first observation of their next episode
            metrics, first = self._end_episodes(ended, True)
            obs = self._observe()
        else:  # ended envs freeze, but this step still shows their final state
            obs = self._observe()
            metrics, first = self._end_episodes(ended, False)
        info = {"episode_end": ended, "episode_metrics": metrics, "first": first, "arrived": arrived}
        return obs, reward, terminated, truncated, info

    def _episode_metrics(self, i: int) -> dict[str, Any]:
        cfg, a, t = self.config, self.num_agents, int(self._t[i])
        if cfg.on_target == "finish":
            m: dict[str, Any] = G.finish_mode_metrics(self._arrival[i], t)
            m["ep_length"] = float(np.where(self._arrival[i] > 0, self._arrival[i], t).sum() / a)
            m["throughput_count"] = int((self._arrival[i] > 0).sum())
        elif cfg.on_target == "nothing":
            # pogema's rule: an agent on its target since step s < t counts s even if it steps off
            # on the final step t; every other agent counts t
            prev = self._solve_prev[i]
            cost = np.where(prev > 0, prev, t)
            on = self._solve[i] > 0
            m = {"ISR": float(on.sum()) / a, "CSR": float(on.all()), "ep_length": t,
                 "SoC": int(cost.sum()), "makespan": int(cost.max()), "episode_length": t,
                 "throughput_count": int(on.sum())}
        else:
            m = {"avg_throughput": int(self._throughput[i]) / cfg.max_episode_steps,
                 "throughput_count": int(self._throughput[i]), "episode_length": t}
        m.update({"collisions": int(self._collisions[i]), "obstacle_collisions": int(self._bumps[i]),
                  "return": float(self._return[i].mean()), "instance_seed": self._instance_seed[i]})
        return m

    # ---------------------------------------------------------------- observations

    def _windows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(obstacles, agents)`` windows ``[N, A, K]`` uint8 (pogema's, for every agent)."""
        n, a, k = self.num_envs, self.num_agents, self._k
        layer = self._layer_buffer()  # [N * cap] bit 0: obstacle, bit 1: agent (one gather for both)
        np.copyto(layer, self._obst)
        layer[(self._env_idx[:, None] * self._cap + self._cell)[self.alive]] |= 2
        win = self._window_bytes(layer).reshape(n, a, k)
        return win & 1, win >> 1

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
        top_left = (self._env_idx * self._cap)[:, None] + self._cell - r * (self._wp[:, None] + 1)  # [N, A]
        idx = top_left[:, :, None] + self._row_offs[:, None, :]  # [N, A, 2R+1] start of each window row
        return rows[idx].view(np.uint8).reshape(n * a, self._k)

    def _layer_buffer(self) -> np.ndarray:
        """The reused ``[N * cap]`` uint8 buffer of per-cell bytes (new when the maps grew)."""
        if self._layer.size != self._obst.size:
            self._layer = np.zeros(self._obst.size, dtype=np.uint8)
        return self._layer

    def _common_shape(self) -> tuple[int, int] | None:
        """Padded ``(height, width)`` shared by all envs' current maps, None if they differ."""
        if self._shape is False:  # unknown after a reset
            shapes = {g.padded.shape for g in self._grids}
            self._shape = shapes.pop() if len(shapes) == 1 else None
        return self._shape

    def _rc(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        row, col = np.divmod(cells, self._wp[:, None])
        return row, col

    def _observe(self) -> np.ndarray:
        n, a, r, side, k = self.num_envs, self.num_agents, self.radius, self._side, self._k
        kind = self.config.observation_type
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
        raise MemarlError(f"unknown observation_type {kind!r}")  # PogemaConfig rejects it first

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
        base = (self._env_idx * cap)[:, None]  # [N, 1]
        if self._targets_changed:
            # bit 2: the target of some agent (finished ones included), bit 3: of two or more,
            # so that a cell stays marked for an observer whose own target it also is
            t = (base + self._tcell).reshape(-1)
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
            self._marks[todo] = 0
            shape = self._common_shape()
            width = shape[1] if shape is not None else np.repeat(self._wp, a)[todo]
            self._walker.walk(self._moves.reshape(-1), key[todo], width, self._marks, rows=todo)
            self._marks_key = key
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
        planes[2, own, own_slot] = win[own, own_slot] >> 3
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

    @property
    def elapsed_steps(self) -> np.ndarray:
        """``[N]`` steps taken in the current episode."""
        return self._t.copy()

    @property
    def instance_seeds(self) -> list[int | None]:
        """instance seed of each env's current episode"""
        return list(self._instance_seed)

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
