"""A native numpy POGEMA engine: MAPF / lifelong MAPF on grids, ``N`` envs x ``A`` agents at once.

Configured like pogema 1.4.0 (:class:`PogemaConfig` has ``GridConfig``'s field names) and
step-exact with it for ``priority`` and ``block_both``; ``soft`` uses the corrected rule of
:func:`memarl.envs.grid.resolve_soft`. See :class:`PogemaEnv`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np

from memarl.envs import grid as G
from memarl.configs import Range, validate_fields
from memarl.envs.engine import INT32_MAX, GridEngine, ObservationType, OnTarget, grid_map
from memarl.envs.grid import CollisionSystem
from memarl.errors import MemarlError

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

    on_target: OnTarget = "finish"
    """'finish' (agents vanish on arrival), 'nothing' (classical MAPF: solved when all stand on
    their targets) or 'restart' (lifelong: a new target on arrival)"""
    seed: Annotated[int | None, Range(0, 2**32 - 1)] = None
    """instance seed: map, starts/targets and restart targets follow pogema's generators with it
    (env n's k-th episode uses seed + n + k * num_envs); None = fresh entropy"""
    width: Annotated[int | None, Range(1, 4096)] = None
    """width of a generated map (None = size); taken from ``map`` when given"""
    height: Annotated[int | None, Range(1, 4096)] = None
    """height of a generated map (None = size); taken from ``map`` when given"""
    size: Annotated[int, Range(2, 4096)] = 8
    """side of a generated square map"""
    density: Annotated[float, Range(0, 1)] = 0.3
    """obstacle probability of a generated map"""
    obs_radius: Annotated[int, Range(1, 128)] = 5
    """observation radius R: windows are (2R+1) x (2R+1)"""
    agents_xy: Any = None
    """custom starts, list of (row, col); given together with ``targets_xy``"""
    targets_xy: Any = None
    """custom targets: list of (row, col), or per-agent target sequences (the first is the initial
    target; 'restart' cycles them as pogema). With single targets in 'restart' (pogema refuses
    them) later targets are drawn as for a generated instance"""
    num_agents: Annotated[int | None, Range(1, 10_000_000)] = None
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
    collision_system: CollisionSystem = "priority"
    """'priority' and 'block_both' (exactly pogema 1.4.0) or 'soft' (corrected, see resolve_soft)"""
    persistent: bool = False
    """not supported (must stay False)"""
    empty_outside: bool = True
    """pogema's: the cells beyond the obstacle ring read as free; False = random obstacles there
    (density ``density``, drawn as pogema's ``Grid`` does), visible in the windows only"""
    observation_type: ObservationType = "default"
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
    max_episode_steps: Annotated[int, Range(1, 10_000_000)] = 64
    """time limit: all agents are truncated when the elapsed steps reach it"""
    auto_reset: bool | None = None
    """None/True: an env that ends an episode is reset inside step(); False: it freezes until reset()"""
    num_envs: Annotated[int, Range(1, 1_000_000)] = 1
    """number of envs N stepped together"""
    reward: Literal["goal", "follower", "follower+goal"] = "goal"
    """'goal' (pogema's: +1 on arrival, or to all on solving in 'nothing' mode), 'follower'
    (Follower/SRMT LMAPF training: ``path_reward`` each time an agent steps onto the next cell of
    its shortest path as planned before the move, the goal's +1 dropped) or 'follower+goal'"""
    path_reward: Annotated[float, Range(-1e6, 1e6)] = 0.01
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

        validate_fields(self, label=lambda name: f"env option {name}")
        if self.integration is not None:
            raise MemarlError("integration is not supported by the native pogema engine")
        if self.persistent:
            raise MemarlError("persistent is not supported by the native pogema engine")
        if (self.width is None) != (self.height is None):
            raise MemarlError("give both width and height, or neither (then size is used)")

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


class PogemaEnv(GridEngine):
    """POGEMA (MAPF / lifelong MAPF), ``N`` envs x ``A`` agents stepped together with numpy.

    Description
        pogema 1.4.0's mechanics, reimplemented: agents on a 4-connected grid move to their
        targets. The map is padded by R with a 1-cell obstacle ring around it; cells beyond the
        ring read as free (``empty_outside=True``) or hold pogema's random obstacles
        (``empty_outside=False``: ``default_rng(seed).binomial(1, density)`` over the padded
        grid, seen in the windows only, since nobody passes the ring). ``on_target`` picks the
        mode: ``finish`` (an agent that reaches its target gets +1 once and leaves the grid: it
        neither moves nor blocks; the episode ends when all arrived), ``nothing`` (classical MAPF: agents stay;
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
        * v0: first version; pogema 1.4.0 mechanics, corrected soft collisions. The mechanics
          live in :class:`~memarl.envs.engine.GridEngine`, shared with Bottleneck.
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
        # maps repeat unless every episode generates one: then keep the BFS rows per (map, target)
        repeated_maps = cfg.map is not None or cfg.map_name is not None
        super().__init__(num_envs=cfg.num_envs, num_agents=cfg.num_agents, radius=cfg.obs_radius,
                         observation_type=cfg.observation_type, collision_system=cfg.collision_system,
                         on_target=cfg.on_target, autoreset=cfg.auto_reset is not False,
                         plan_moves=cfg.reward != "goal", cache_paths=repeated_maps)
        self._path_reward = np.float32(cfg.path_reward) if cfg.reward != "goal" else None
        self._goal_reward = cfg.reward != "follower"
        self._episode = np.zeros(self.num_envs, dtype=np.int64)
        self._instance_seed: list[int | None] = [None] * self.num_envs
        self._entropy = np.random.default_rng()
        self._seed = cfg.seed

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
        return self._reset_all(seeds)

    def _next_seed(self, i: int) -> int:
        if self._seed is None:
            return int(self._entropy.integers(INT32_MAX))
        return int(self._seed) + i + int(self._episode[i]) * self.num_envs

    def _reset_env(self, i: int, seed: int | None = None) -> None:
        cfg = self.config
        if seed is None:
            seed = self._next_seed(i)
            self._episode[i] += 1
        obstacles, starts, seqs, pool = cfg._instance(seed)
        grid = grid_map(obstacles, self.radius)
        outside = None
        if not cfg.empty_outside:  # pogema's Grid draws these with a fresh default_rng(seed)
            outside = np.random.default_rng(seed).binomial(1, cfg.density, grid.padded.shape).astype(np.uint8)
            r, (hp, wp) = self.radius, grid.padded.shape
            ring_and_map = (slice(r - 1, hp - r + 1), slice(r - 1, wp - r + 1))
            outside[ring_and_map] = grid.padded[ring_and_map]
        self._install(i, grid, starts, seqs, cfg.max_episode_steps, seed=seed, pool=pool, outside=outside)
        self._instance_seed[i] = seed

    # ---------------------------------------------------------------- rewards and metrics

    def _step_reward(self, goal: np.ndarray, act: np.ndarray, cells: np.ndarray, new: np.ndarray,
                     planned: np.ndarray | None, active: np.ndarray, arrived: np.ndarray) -> np.ndarray:
        reward = goal if self._goal_reward else np.zeros_like(goal)
        if self._path_reward is not None:
            reward = reward + self._path_reward * (active & (new == planned) & (new != cells))
        return reward

    def _episode_metrics(self, i: int) -> dict[str, Any]:
        m = self._mode_metrics(i)
        m["instance_seed"] = self._instance_seed[i]
        return m

    @property
    def instance_seeds(self) -> list[int | None]:
        """instance seed of each env's current episode"""
        return list(self._instance_seed)
