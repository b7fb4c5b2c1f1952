"""Generators of the POGEMA benchmark's ``01-random`` and ``02-mazes`` map suites.

What is reproduced exactly
    The 128 Random maps ``validation-random-seed-000 .. -127`` and the 128 Mazes maps
    ``validation-mazes-seed-000 .. -127`` of the POGEMA benchmark (Skrynnik et al., ICLR 2025),
    byte for byte. Those maps were made by the generators of pogema-toolbox 0.1.1
    (``pogema_toolbox/generators/random_generator.py`` and ``maze_generator.py``, the latter a
    PRIMAL2-style maze). This module is an independent implementation of the same algorithms: it
    draws the same numbers from ``numpy.random.default_rng(seed)`` in the same order, so it
    yields the same grids. The numpy ``Generator`` streams are stable across numpy versions, so
    the maps do not depend on the numpy release.

How it was verified
    ``tests/test_mapgen.py`` compares :func:`generate_maps` with the published
    ``01-random/maps.yaml`` and ``02-mazes/maps.yaml`` (pogema-benchmark commit ``c5dd4fd``, see
    ``shared/data/pogema-maps/README.md``): random 128/128 and mazes 128/128 identical strings.

The algorithms, in words
    Random map: settings ``width``, ``height`` (uniform integers) and ``density`` (uniform float)
    are drawn from ``default_rng(seed)``; then a *fresh* ``default_rng(seed)`` draws cells
    (column, then row) and turns each free one into an obstacle until
    ``int(width * height * density)`` obstacles stand.

    Maze: settings ``width``, ``height``, ``obstacle_density``, ``wall_components`` and
    ``go_straight`` are drawn from ``default_rng(seed)``; a fresh ``default_rng(seed)`` then grows
    walls on a grid with a one-cell border. Each wall starts at a random even cell and takes
    ``wall_components`` steps of two cells, preferring to keep its direction (see
    :func:`build_maze`). The border is cut off at the end, so a maze is
    ``2 * (height // 2) + 1`` rows by ``2 * (width // 2) + 1`` columns.

Maps are text: rows top to bottom of ``.`` (free) and ``#`` (obstacle) joined by ``"\\n"``, with
no trailing newline, as in the published YAML files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from memarl.errors import MemarlError

RANDOM_SUITE_SEEDS = range(128)
"""seeds of the benchmark's 128 Random maps (``validation-random-seed-000 .. -127``)"""
MAZES_SUITE_SEEDS = range(128)
"""seeds of the benchmark's 128 Mazes maps (``validation-mazes-seed-000 .. -127``)"""

MAP_KINDS = ("random", "mazes")
"""the suites :func:`generate_maps` knows"""

FREE, OBSTACLE = ".", "#"

# Defaults of the toolbox's range settings that the benchmark used. For the mazes, the toolbox's
# own defaults are sizes 5..9; the benchmark maps need 17..21 (0/128 match otherwise).
DEFAULT_SIZE_RANGE = (17, 21)
DEFAULT_RANDOM_DENSITY_RANGE = (0.1, 0.3)
DEFAULT_MAZE_DENSITY_RANGE = (0.0, 1.0)
DEFAULT_WALL_COMPONENTS_RANGE = (1, 8)
DEFAULT_GO_STRAIGHT_RANGE = (0.75, 0.85)

# Two-cell wall steps as (d_row, d_col), in the order the candidates are offered to the random
# choice: left, right, up, down. The order matters because it fixes which index each draw picks.
_WALL_STEPS = ((0, -2), (0, 2), (-2, 0), (2, 0))
_NO_STEP = (0, 0)


# --------------------------------------------------------------------------------------------
# input checks (every failure is a one-line MemarlError)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise MemarlError(f"seed must be an integer, got {seed!r}")
    if seed < 0:
        raise MemarlError(f"seed must be >= 0, got {seed}")
    return int(seed)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MemarlError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise MemarlError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise MemarlError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
        raise MemarlError(f"{name} must be in [0, 1], got {value}")
    return float(value)


def _range_pair(name: str, bounds: Any) -> tuple[Any, Any]:
    try:
        low, high = bounds
    except (TypeError, ValueError):
        raise MemarlError(f"{name} must be a (low, high) pair, got {bounds!r}") from None
    return low, high


def _check_int_range(name: str, bounds: Any, minimum: int) -> tuple[int, int]:
    low, high = _range_pair(name, bounds)
    low, high = _check_int(f"{name} low", low, minimum), _check_int(f"{name} high", high, minimum)
    if low > high:
        raise MemarlError(f"{name} is empty: low {low} > high {high}")
    return low, high


def _check_fraction_range(name: str, bounds: Any) -> tuple[float, float]:
    low, high = _range_pair(name, bounds)
    low, high = _check_fraction(f"{name} low", low), _check_fraction(f"{name} high", high)
    if low > high:
        raise MemarlError(f"{name} is inverted: low {low} > high {high}")
    return low, high


def _rows_to_text(is_obstacle: np.ndarray) -> str:
    return "\n".join("".join(OBSTACLE if cell else FREE for cell in row) for row in is_obstacle)


# --------------------------------------------------------------------------------------------
# Random maps


@dataclass(frozen=True)
class RandomMapSettings:
    """Sampled settings of one Random map (what the toolbox's ``MapRangeSettings.sample`` gives)."""

    width: int
    """columns"""
    height: int
    """rows"""
    density: float
    """target obstacle fraction; the map gets ``int(width * height * density)`` obstacles"""
    seed: int
    """seed of the obstacle placement (the same seed the settings were drawn with)"""


def sample_random_settings(seed: int, width_range: Sequence[int] = DEFAULT_SIZE_RANGE,
                           height_range: Sequence[int] = DEFAULT_SIZE_RANGE,
                           density_range: Sequence[float] = DEFAULT_RANDOM_DENSITY_RANGE) -> RandomMapSettings:
    """Draw a Random map's settings from ``numpy.random.default_rng(seed)``.

    Args:
        seed: non-negative integer seed.
        width_range: inclusive ``(low, high)`` of the width, drawn first as a uniform integer.
        height_range: inclusive ``(low, high)`` of the height, drawn second.
        density_range: ``(low, high)`` of the obstacle fraction, drawn third as ``uniform(low, high)``;
            both ends in ``[0, 1]``.
    """
    seed = _check_seed(seed)
    width_low, width_high = _check_int_range("width_range", width_range, 1)
    height_low, height_high = _check_int_range("height_range", height_range, 1)
    density_low, density_high = _check_fraction_range("density_range", density_range)
    rng = np.random.default_rng(seed)
    # The draw order (width, height, density) is part of what makes the published maps come out.
    width = int(rng.integers(width_low, width_high + 1))
    height = int(rng.integers(height_low, height_high + 1))
    density = float(rng.uniform(density_low, density_high))
    return RandomMapSettings(width=width, height=height, density=density, seed=seed)


def place_random_obstacles(width: int, height: int, density: float, seed: int) -> str:
    """Scatter ``int(width * height * density)`` obstacles on an empty ``height`` x ``width`` grid.

    A ``numpy.random.default_rng(seed)`` draws a column ``integers(0, width)`` and then a row
    ``integers(0, height)``, over and over; each drawn cell that is still free becomes an
    obstacle, and drawing stops once the count is reached (cells drawn twice are simply redrawn).

    Args:
        width: number of columns, >= 1.
        height: number of rows, >= 1.
        density: obstacle fraction in ``[0, 1]``; the count is rounded down.
        seed: non-negative integer seed of the placement.

    Returns:
        The map as text, rows joined by ``"\\n"``.
    """
    width = _check_int("width", width, 1)
    height = _check_int("height", height, 1)
    density = _check_fraction("density", density)
    seed = _check_seed(seed)
    rng = np.random.default_rng(seed)
    is_obstacle = np.zeros((height, width), dtype=bool)
    obstacles_wanted = int(width * height * density)
    obstacles_placed = 0
    # One scalar draw per coordinate, column first: batching the draws would consume the stream
    # differently and give other maps.
    while obstacles_placed < obstacles_wanted:
        col = rng.integers(0, width)
        row = rng.integers(0, height)
        if not is_obstacle[row, col]:
            is_obstacle[row, col] = True
            obstacles_placed += 1
    return _rows_to_text(is_obstacle)


def random_map(seed: int, width_range: Sequence[int] = DEFAULT_SIZE_RANGE,
               height_range: Sequence[int] = DEFAULT_SIZE_RANGE,
               density_range: Sequence[float] = DEFAULT_RANDOM_DENSITY_RANGE) -> str:
    """The POGEMA benchmark Random map of ``seed`` (with the default ranges).

    Settings come from :func:`sample_random_settings` and obstacles from
    :func:`place_random_obstacles`, both seeded with ``seed`` (two independent streams).

    Args:
        seed: non-negative integer; 0..127 give ``validation-random-seed-000 .. -127``.
        width_range: inclusive ``(low, high)`` width range.
        height_range: inclusive ``(low, high)`` height range.
        density_range: ``(low, high)`` obstacle-fraction range within ``[0, 1]``.

    Returns:
        The map as text: rows of ``.``/``#`` joined by ``"\\n"``.
    """
    settings = sample_random_settings(seed, width_range, height_range, density_range)
    return place_random_obstacles(settings.width, settings.height, settings.density, settings.seed)


# --------------------------------------------------------------------------------------------
# Mazes


@dataclass(frozen=True)
class MazeSettings:
    """Sampled settings of one maze (what the toolbox's ``MazeRangeSettings.sample`` gives)."""

    width: int
    """requested columns; the maze gets ``2 * (width // 2) + 1``"""
    height: int
    """requested rows; the maze gets ``2 * (height // 2) + 1``"""
    obstacle_density: float
    """sets the number of walls, see :func:`build_maze`"""
    wall_components: int
    """two-cell steps per wall"""
    go_straight: float
    """weight of keeping a wall's direction"""
    seed: int
    """seed of the wall growth (the same seed the settings were drawn with)"""


def sample_maze_settings(seed: int, width_range: Sequence[int] = DEFAULT_SIZE_RANGE,
                         height_range: Sequence[int] = DEFAULT_SIZE_RANGE,
                         density_range: Sequence[float] = DEFAULT_MAZE_DENSITY_RANGE,
                         wall_components_range: Sequence[int] = DEFAULT_WALL_COMPONENTS_RANGE,
                         go_straight_range: Sequence[float] = DEFAULT_GO_STRAIGHT_RANGE) -> MazeSettings:
    """Draw a maze's settings from ``numpy.random.default_rng(seed)``.

    Draw order: width, height (uniform integers), obstacle density (uniform float), wall
    components (uniform integer), go-straight weight (uniform float).

    Args:
        seed: non-negative integer seed.
        width_range: inclusive ``(low, high)`` requested width, >= 1.
        height_range: inclusive ``(low, high)`` requested height, >= 1.
        density_range: ``(low, high)`` obstacle density within ``[0, 1]``.
        wall_components_range: inclusive ``(low, high)`` steps per wall, >= 0.
        go_straight_range: ``(low, high)`` go-straight weight within ``[0, 1]``.
    """
    seed = _check_seed(seed)
    width_low, width_high = _check_int_range("width_range", width_range, 1)
    height_low, height_high = _check_int_range("height_range", height_range, 1)
    density_low, density_high = _check_fraction_range("density_range", density_range)
    components_low, components_high = _check_int_range("wall_components_range", wall_components_range, 0)
    straight_low, straight_high = _check_fraction_range("go_straight_range", go_straight_range)
    rng = np.random.default_rng(seed)
    width = int(rng.integers(width_low, width_high + 1))
    height = int(rng.integers(height_low, height_high + 1))
    obstacle_density = float(rng.uniform(density_low, density_high))
    wall_components = int(rng.integers(components_low, components_high + 1))
    go_straight = float(rng.uniform(straight_low, straight_high))
    return MazeSettings(width=width, height=height, obstacle_density=obstacle_density,
                        wall_components=wall_components, go_straight=go_straight, seed=seed)


def maze_wall_count(width: int, height: int, obstacle_density: float, wall_components: int) -> int:
    """How many walls :func:`build_maze` grows: ``floor(H * W * obstacle_density / wall_components)``.

    ``H`` x ``W`` is the bordered working grid, ``(2 * (height // 2) + 3) x (2 * (width // 2) + 3)``.
    Zero wall components means zero walls. A maze with zero walls has no obstacles at all, which
    is why two benchmark mazes (seeds 25 and 72) are empty.

    Args:
        width: requested columns, >= 1.
        height: requested rows, >= 1.
        obstacle_density: in ``[0, 1]``.
        wall_components: steps per wall, >= 0.
    """
    if wall_components == 0:
        return 0
    padded_rows, padded_cols = 2 * (height // 2) + 3, 2 * (width // 2) + 3
    # Float floor division, evaluated as float64 ((cells * density) // components) so that
    # borderline products round exactly as in the toolbox.
    return int(np.float64(padded_rows * padded_cols) * np.float64(obstacle_density) // wall_components)


def _pick_wall_step(rng: np.random.Generator, row: int, col: int, padded_shape: tuple[int, int],
                    previous_step: tuple[int, int], go_straight: float) -> tuple[int, int] | None:
    """Choose the next two-cell step of a growing wall, or ``None`` when no step fits the grid."""
    padded_rows, padded_cols = padded_shape
    fits = (col > 1, col < padded_cols - 2, row > 1, row < padded_rows - 2)
    candidates = [step for step, ok in zip(_WALL_STEPS, fits) if ok]
    if not candidates:
        return None  # no draw is made in this case
    weights = [go_straight if step == previous_step else 1.0 - go_straight for step in candidates]
    total = 0.0
    for weight in weights:  # sequential sum: the normalised floats must match the toolbox's bits
        total += weight
    if all(weight == go_straight for weight in weights) or total == 0.0:
        # Only one candidate and it continues straight (or, with go_straight == 1, none does;
        # the toolbox would fail there): choose uniformly.
        probabilities = [1.0 / len(candidates)] * len(candidates)
    else:
        probabilities = [weight / total for weight in weights]
    # Generator.choice with p draws exactly one double (inverse CDF), whatever the length.
    return candidates[int(rng.choice(len(candidates), p=probabilities))]


def build_maze(width: int, height: int, obstacle_density: float, wall_components: int,
               go_straight: float, seed: int) -> str:
    """Grow a PRIMAL2-style maze (pogema-toolbox 0.1.1's ``MazeGenerator.generate_maze``).

    The work happens on a bordered grid of ``(2 * (height // 2) + 3)`` rows by
    ``(2 * (width // 2) + 3)`` columns whose outer ring is wall. A
    ``numpy.random.default_rng(seed)`` then grows :func:`maze_wall_count` walls, one after the
    other. Each wall:

    1. starts at ``(row, col) = (2 * integers(0, rows // 2), 2 * integers(0, cols // 2))`` (the
       column is drawn first), a cell that becomes wall even if it already was;
    2. takes ``wall_components`` steps of two cells. The candidate steps are left, right, up and
       down (in this order), each only if it stays on the bordered grid. A step weighs
       ``go_straight`` if it repeats the wall's previous step and ``1 - go_straight`` otherwise
       (the first step of a wall has no previous step). The weights are normalised and one step
       is drawn with ``Generator.choice``. If the target cell is free, it and the cell in between
       become wall and the wall moves there; if it is already wall the wall stays put, but the
       drawn step still counts as the previous step.

    The border is cut off at the end.

    Args:
        width: requested columns, >= 1; the maze has ``2 * (width // 2) + 1`` (odd) columns.
        height: requested rows, >= 1; the maze has ``2 * (height // 2) + 1`` (odd) rows.
        obstacle_density: in ``[0, 1]``; sets the number of walls, not the exact obstacle fraction.
        wall_components: number of two-cell steps of each wall, >= 0 (0 gives an empty maze).
        go_straight: in ``[0, 1]``; weight of continuing in the same direction.
        seed: non-negative integer seed of the wall growth.

    Returns:
        The maze as text: rows of ``.``/``#`` joined by ``"\\n"``.
    """
    width = _check_int("width", width, 1)
    height = _check_int("height", height, 1)
    obstacle_density = _check_fraction("obstacle_density", obstacle_density)
    wall_components = _check_int("wall_components", wall_components, 0)
    go_straight = _check_fraction("go_straight", go_straight)
    seed = _check_seed(seed)

    rng = np.random.default_rng(seed)
    padded_shape = (2 * (height // 2) + 3, 2 * (width // 2) + 3)
    is_wall = np.zeros(padded_shape, dtype=bool)
    is_wall[[0, -1], :] = True
    is_wall[:, [0, -1]] = True

    for _ in range(maze_wall_count(width, height, obstacle_density, wall_components)):
        col = 2 * int(rng.integers(0, padded_shape[1] // 2))
        row = 2 * int(rng.integers(0, padded_shape[0] // 2))
        is_wall[row, col] = True
        previous_step = _NO_STEP
        for _ in range(wall_components):
            step = _pick_wall_step(rng, row, col, padded_shape, previous_step, go_straight)
            if step is None:
                continue  # the toolbox keeps the previous direction here
            previous_step = step
            next_row, next_col = row + step[0], col + step[1]
            if not is_wall[next_row, next_col]:
                is_wall[next_row, next_col] = True
                is_wall[row + step[0] // 2, col + step[1] // 2] = True
                row, col = next_row, next_col
    return _rows_to_text(is_wall[1:-1, 1:-1])


def maze_map(seed: int, width_range: Sequence[int] = DEFAULT_SIZE_RANGE,
             height_range: Sequence[int] = DEFAULT_SIZE_RANGE,
             density_range: Sequence[float] = DEFAULT_MAZE_DENSITY_RANGE,
             wall_components_range: Sequence[int] = DEFAULT_WALL_COMPONENTS_RANGE,
             go_straight_range: Sequence[float] = DEFAULT_GO_STRAIGHT_RANGE) -> str:
    """The POGEMA benchmark Mazes map of ``seed`` (with the default ranges).

    Settings come from :func:`sample_maze_settings` and the walls from :func:`build_maze`, both
    seeded with ``seed`` (two independent streams).

    Args:
        seed: non-negative integer; 0..127 give ``validation-mazes-seed-000 .. -127``.
        width_range: inclusive ``(low, high)`` requested width (the maze width is made odd).
        height_range: inclusive ``(low, high)`` requested height (made odd likewise).
        density_range: ``(low, high)`` obstacle density within ``[0, 1]``.
        wall_components_range: inclusive ``(low, high)`` steps per wall, >= 0.
        go_straight_range: ``(low, high)`` go-straight weight within ``[0, 1]``.

    Returns:
        The maze as text: rows of ``.``/``#`` joined by ``"\\n"``.
    """
    settings = sample_maze_settings(seed, width_range, height_range, density_range,
                                    wall_components_range, go_straight_range)
    return build_maze(settings.width, settings.height, settings.obstacle_density,
                      settings.wall_components, settings.go_straight, settings.seed)


# --------------------------------------------------------------------------------------------
# suites


def random_map_name(seed: int) -> str:
    """Benchmark name of a Random map: ``validation-random-seed-000`` (at least three digits)."""
    return f"validation-random-seed-{_check_seed(seed):03d}"


def maze_map_name(seed: int) -> str:
    """Benchmark name of a Mazes map: ``validation-mazes-seed-000`` (at least three digits)."""
    return f"validation-mazes-seed-{_check_seed(seed):03d}"


def generate_maps(kind: str, seeds: Iterable[int]) -> dict[str, str]:
    """Generate a suite: ``{benchmark name: map text}`` in the order of ``seeds``.

    Args:
        kind: ``"random"`` (:func:`random_map`) or ``"mazes"`` (:func:`maze_map`), with the
            benchmark's default ranges.
        seeds: non-negative integer seeds, e.g. :data:`RANDOM_SUITE_SEEDS`.
    """
    if kind == "random":
        make_map, make_name = random_map, random_map_name
    elif kind == "mazes":
        make_map, make_name = maze_map, maze_map_name
    else:
        raise MemarlError(f"unknown map kind {kind!r}; expected one of {', '.join(MAP_KINDS)}")
    return {make_name(seed): make_map(seed) for seed in seeds}


# --------------------------------------------------------------------------------------------
# Bottleneck corridors (SRMT's two-room maps)

ROOM_ROWS = 2
"""rows of each room"""
MAP_WIDTH = 9
"""columns of every Bottleneck map"""
CORRIDOR_COL = 4
"""0-based column of the one-cell-wide corridor"""
MAX_CORRIDOR_LENGTH = 10_000
"""longest corridor (the test suite goes to 1000; a map is L + 4 rows)"""


def check_corridor_length(corridor_length: Any) -> int:
    """``corridor_length`` as an int in 1..MAX_CORRIDOR_LENGTH, or a one-line MemarlError."""
    if isinstance(corridor_length, bool) or not isinstance(corridor_length, (int, np.integer)):
        raise MemarlError(f"corridor length must be an integer, got {corridor_length!r}")
    if not 1 <= corridor_length <= MAX_CORRIDOR_LENGTH:
        raise MemarlError(f"corridor length must be in 1..{MAX_CORRIDOR_LENGTH}, got {corridor_length}")
    return int(corridor_length)


def bottleneck_map(corridor_length: int) -> str:
    """ASCII map of corridor length ``L``: ``(L + 4)`` rows x 9 columns.

    Rows 0-1 are the top room, rows ``2 .. L+1`` are ``####.####`` (corridor in column 4), rows
    ``L+2, L+3`` are the bottom room.
    """
    length = check_corridor_length(corridor_length)
    room = "." * MAP_WIDTH
    corridor = "#" * CORRIDOR_COL + "." + "#" * (MAP_WIDTH - CORRIDOR_COL - 1)
    return "\n".join([room] * ROOM_ROWS + [corridor] * length + [room] * ROOM_ROWS)
