"""Where PogemaEnv's episodes come from: parsed maps, starts, targets and restart-target pools.

:class:`PogemaInstances` turns a :class:`~memarl.envs.pogema_env.PogemaConfig` (plain settings)
into instances: the map (given as text or array, a library map or several, or generated), the
custom or drawn starts and targets, and the pool restart targets are drawn from, exactly as
pogema 1.4.0's ``GridConfig`` does for a seed. The config keeps only what the user set; the
parsed map and the derived sizes live here.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from memarl.envs import grid as G
from memarl.envs.maps import map_text, resolve_map_name
from memarl.errors import MemarlError

if TYPE_CHECKING:
    from memarl.envs.pogema_env import PogemaConfig

_LETTERS_LOW = set("abcdefghijklmnopqrstuvwxyz")
_LETTERS_UP = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def is_int(v: Any) -> bool:
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
        if not isinstance(p, (list, tuple, np.ndarray)) or len(p) != 2 or not all(is_int(v) for v in p):
            raise MemarlError(f"{name}: every position must be a (row, col) pair of integers, got {p!r}")
        out.append((int(p[0]), int(p[1])))
    return out


_LIBRARY_MAPS: dict[str, tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]] = {}


def library_map(name: str) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """``(obstacles, possible cells or None)`` of library map ``name``, parsed once per process."""
    got = _LIBRARY_MAPS.get(name)
    if got is None:
        obstacles, letters, _, pa, pt = _parse_map(map_text(name))
        if letters:
            raise MemarlError(f"library map {name!r} has agent letters; library maps may not")
        obstacles.setflags(write=False)  # shared by every config that names it
        got = _LIBRARY_MAPS[name] = (obstacles, None if pa is None else (pa, pt))
    return got


class PogemaInstances:
    """The instances of a :class:`~memarl.envs.pogema_env.PogemaConfig` (validated on build).

    Attributes: ``num_agents`` (agents per episode), ``height``/``width``/``density`` (of the
    map; the largest / average map when ``map_name`` matches several), ``obstacles`` ([H, W]
    bool, None for a generated map or several named maps), ``possible`` ((possible starts,
    possible targets) [K, 2] or None), ``maps`` ((name, obstacles, possible) per map when
    ``map_name`` matches several, else None), ``map_names`` (the matched names or None),
    ``starts`` ([A, 2] custom starts or None) and ``sequences`` (per-agent [L, 2] custom target
    sequences or None).
    """

    def __init__(self, config: "PogemaConfig"):  # noqa: C901 (one check per rule)
        self.config = config
        self.starts: np.ndarray | None = None
        self.sequences: tuple[np.ndarray, ...] | None = None
        agents_xy, targets_xy = config.agents_xy, config.targets_xy
        obstacles = None
        possible = None
        maps = None
        names = None
        map_value = config.map
        if config.map_name is not None:
            if config.map is not None:
                raise MemarlError("give either map or map_name, not both")
            if not isinstance(config.map_name, str):
                raise MemarlError(f"map_name must be a string, got {config.map_name!r}")
            names = resolve_map_name(config.map_name)
            if len(names) == 1:
                map_value = names[0]
            else:
                if agents_xy is not None or targets_xy is not None \
                        or config.possible_agents_xy is not None or config.possible_targets_xy is not None:
                    raise MemarlError(f"map_name {config.map_name!r} matches {len(names)} maps: agents_xy/targets_xy "
                                      "and possible_*_xy need a single map")
                maps = tuple((name, *library_map(name)) for name in names)
        if maps is not None:
            h = max(m[1].shape[0] for m in maps)
            w = max(m[1].shape[1] for m in maps)
            density = float(np.mean([m[1].mean() for m in maps]))
        elif map_value is not None:
            if isinstance(map_value, str) and config.map_name is not None:
                obstacles, possible = library_map(map_value)
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
            density = float(obstacles.mean())
        else:
            h, w = (config.size, config.size) if config.width is None else (config.height, config.width)
            density = float(config.density)
        if (agents_xy is None) != (targets_xy is None):
            raise MemarlError("agents_xy and targets_xy must be given together")
        if (config.possible_agents_xy is None) != (config.possible_targets_xy is None):
            raise MemarlError("possible_agents_xy and possible_targets_xy must be given together")
        if config.possible_agents_xy is not None:
            if agents_xy is not None:
                raise MemarlError("give either agents_xy/targets_xy or possible_agents_xy/possible_targets_xy")
            if obstacles is None:
                # pogema would not free the cells of a generated map under them
                raise MemarlError("possible_agents_xy/possible_targets_xy need a map")
            if possible is not None:
                raise MemarlError("possible cells are given both as map markers (@ $ !) and as "
                                  "possible_agents_xy/possible_targets_xy")
            possible = (_possible_cells("possible_agents_xy", config.possible_agents_xy, obstacles),
                        _possible_cells("possible_targets_xy", config.possible_targets_xy, obstacles))
        if agents_xy is not None:
            possible = None  # exact positions win over the markers, as in pogema
        num_agents = config.num_agents
        if num_agents is None:
            num_agents = len(agents_xy) if agents_xy is not None else 1
        if not is_int(num_agents) or not 1 <= num_agents <= 10_000_000:
            raise MemarlError(f"num_agents must be an integer in 1..10000000, got {num_agents!r}")
        self.num_agents = int(num_agents)
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
            self.starts = np.array(starts, dtype=np.int64).reshape(-1, 2)
            self.sequences = tuple(np.array(s, dtype=np.int64).reshape(-1, 2) for s in seqs)
        self.obstacles = obstacles
        self.possible = possible
        self.maps = maps
        self.map_names = names
        self.height, self.width, self.density = h, w, density

    def episode_map_name(self, seed: int | None) -> str | None:
        """Name of the library map instance ``seed`` plays (None without ``map_name``)."""
        if self.maps is not None:
            return self.maps[self._map_index(seed)][0]
        return None if self.map_names is None else self.map_names[0]

    def _map_index(self, seed: int | None) -> int:
        # a generator of its own (not the placement's): the map draw is documented under map_name
        return int(np.random.default_rng(seed).integers(len(self.maps)))

    def instance(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        """One episode's ``(obstacles [H, W], starts [A, 2], target sequences)`` for instance ``seed``.

        Exactly pogema 1.4.0's instance for ``GridConfig(..., seed=seed)``: the map (given, one
        of the ``map_name`` maps, or :func:`~memarl.envs.grid.generate_obstacles`), then the
        custom starts/targets, the possible cells (:func:`draw_from_possible`) or
        :func:`~memarl.envs.grid.generate_starts_targets` on that map. Each target sequence has
        at least one target (the first is the initial target).
        """
        return self.draw(seed)[:3]

    def on_map(self, map_name: str, seed: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...],
                                                        np.ndarray | None]:
        """Pogema's instance ``seed`` of library map ``map_name`` with this config's agent count
        (a pinned episode: the config's own map and custom positions do not apply); as :meth:`draw`."""
        obstacles, possible = library_map(map_name)
        free = int((~obstacles).sum())
        if self.num_agents > free:
            raise MemarlError(f"{self.num_agents} agents do not fit on map {map_name!r}'s {free} free cells")
        if possible is not None:
            _check_possible(possible, self.num_agents, f"map {map_name!r}")
        return self._place(obstacles, possible, seed)

    def draw(self, seed: int | None) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...],
                                                   np.ndarray | None]:
        """:meth:`instance` plus the restart-mode target pool ``[K, 2]`` (None: the agent's component)."""
        obstacles, possible = self.obstacles, self.possible
        if self.maps is not None:
            _, obstacles, possible = self.maps[self._map_index(seed)]
        if obstacles is None:
            obstacles = G.generate_obstacles(self.height, self.width, self.density, seed)
            if obstacles.all():
                raise MemarlError(f"the generated map (seed {seed}) has no free cell")
        if self.starts is not None:
            if self.obstacles is None:  # a random map: pogema frees the cells under custom positions
                obstacles = obstacles.copy()
                obstacles[self.starts[:, 0], self.starts[:, 1]] = False
                for s in self.sequences:
                    obstacles[s[0, 0], s[0, 1]] = False
            return obstacles, self.starts, self.sequences, None
        return self._place(obstacles, possible, seed)

    def _place(self, obstacles: np.ndarray, possible: tuple[np.ndarray, np.ndarray] | None,
               seed: int | None) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...], np.ndarray | None]:
        """Starts and targets on ``obstacles``: from the possible cells, else pogema's generator."""
        if possible is not None:
            starts, targets, pool = draw_from_possible(possible, self.num_agents, seed)
            return obstacles, starts, tuple(t[None] for t in targets), pool
        placed = G.generate_starts_targets(obstacles, self.num_agents, seed)
        if placed is None:
            raise MemarlError(f"cannot place {self.num_agents} agents with distinct starts and targets "
                              f"on the map (seed {seed}); lower num_agents or density")
        starts, targets = placed
        return obstacles, starts, tuple(t[None] for t in targets), None
