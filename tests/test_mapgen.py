"""Tests of :mod:`memarl.envs.mapgen`: byte-equality with the published POGEMA Random and Mazes
maps (when the data is present) and data-independent properties of the generators."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from memarl.envs import mapgen
from memarl.errors import MemarlError

SUITE_FILES = {"random": "01-random/maps.yaml", "mazes": "02-mazes/maps.yaml"}

# sha256 of the generated suites (see _suite_digest). Pinned after both suites matched the
# published maps.yaml files 128/128, so that machines without the data still catch regressions.
SUITE_DIGESTS = {
    "random": "58a77e3e22887bc96858240a38e16a8c7f5b688215386584372ff033d30cbd9b",
    "mazes": "e22fb9ecdf4705343b95b48739bacfbed0ee5a3d04f4c91aa4c38100cbfbd823",
}


def _find_data_dir() -> Path | None:
    """``$MEMARL_DATA_DIR`` if set, else the shared checkout next to the repo, else ``None``."""
    from_env = os.environ.get("MEMARL_DATA_DIR")
    if from_env:
        return Path(from_env) if Path(from_env).is_dir() else None
    shared = Path("/work/main/../shared/data/pogema-maps")
    return shared if shared.is_dir() else None


DATA_DIR = _find_data_dir()
needs_data = pytest.mark.skipif(
    DATA_DIR is None, reason="POGEMA map data not found: set MEMARL_DATA_DIR to the pogema-maps directory")


@pytest.fixture(scope="module")
def generated_suites() -> dict[str, dict[str, str]]:
    """Both benchmark suites, generated once for the whole module (about a second)."""
    return {"random": mapgen.generate_maps("random", mapgen.RANDOM_SUITE_SEEDS),
            "mazes": mapgen.generate_maps("mazes", mapgen.MAZES_SUITE_SEEDS)}


def _suite_digest(suite: dict[str, str]) -> str:
    return hashlib.sha256("\n\n".join(f"{name}\n{text}" for name, text in suite.items()).encode()).hexdigest()


def _grid(text: str) -> np.ndarray:
    return np.array([[cell == "#" for cell in row] for row in text.split("\n")], dtype=bool)


# --------------------------------------------------------------------------------------------
# against the published maps


@needs_data
@pytest.mark.parametrize("kind", ["random", "mazes"])
def test_matches_published_maps_byte_for_byte(kind, generated_suites):
    path = DATA_DIR / SUITE_FILES[kind]
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    published = yaml.safe_load(path.read_text())
    generated = generated_suites[kind]
    assert list(published) == list(generated)  # same 128 names in the same order
    # The published block scalars are stripped ("|-"), so they hold no trailing newline; a copy
    # written with YAML's default chomping would add one, which is not part of the map.
    mismatched = [name for name, text in published.items() if text.removesuffix("\n") != generated[name]]
    assert mismatched == [], f"{len(mismatched)}/128 {kind} maps differ, e.g. {mismatched[:3]}"
    assert all(set(text) <= {".", "#", "\n"} for text in published.values())


# --------------------------------------------------------------------------------------------
# data-independent


@pytest.mark.parametrize("kind", ["random", "mazes"])
def test_suite_digest_is_pinned(kind, generated_suites):
    assert _suite_digest(generated_suites[kind]) == SUITE_DIGESTS[kind]


def test_generation_is_deterministic(generated_suites):
    assert mapgen.random_map(7) == mapgen.random_map(7) == generated_suites["random"]["validation-random-seed-007"]
    assert mapgen.maze_map(7) == mapgen.maze_map(7) == generated_suites["mazes"]["validation-mazes-seed-007"]
    assert mapgen.random_map(7) != mapgen.random_map(8)
    # numpy integer seeds behave like Python ints
    assert mapgen.maze_map(np.int64(7)) == mapgen.maze_map(7)


def test_random_maps_sizes_and_obstacle_counts(generated_suites):
    for seed in mapgen.RANDOM_SUITE_SEEDS:
        grid = _grid(generated_suites["random"][mapgen.random_map_name(seed)])
        settings = mapgen.sample_random_settings(seed)
        assert grid.shape == (settings.height, settings.width)
        assert 17 <= settings.width <= 21 and 17 <= settings.height <= 21
        assert 0.1 <= settings.density <= 0.3
        assert grid.sum() == int(settings.width * settings.height * settings.density)


def test_random_map_custom_ranges():
    grid = _grid(mapgen.random_map(3, width_range=(5, 5), height_range=(4, 4), density_range=(0.5, 0.5)))
    assert grid.shape == (4, 5) and grid.sum() == 10
    assert "#" not in mapgen.random_map(3, density_range=(0.0, 0.0))
    assert set(mapgen.random_map(3, width_range=(3, 3), height_range=(3, 3), density_range=(1.0, 1.0))) == {"#", "\n"}


def test_maze_sizes_are_odd_and_settings_in_range(generated_suites):
    for seed in mapgen.MAZES_SUITE_SEEDS:
        grid = _grid(generated_suites["mazes"][mapgen.maze_map_name(seed)])
        settings = mapgen.sample_maze_settings(seed)
        assert grid.shape == (2 * (settings.height // 2) + 1, 2 * (settings.width // 2) + 1)
        assert grid.shape[0] in (17, 19, 21) and grid.shape[1] in (17, 19, 21)
        assert 1 <= settings.wall_components <= 8
        assert 0.75 <= settings.go_straight <= 0.85
        assert 0.0 <= settings.obstacle_density <= 1.0


def test_obstacle_free_mazes_are_exactly_seeds_25_and_72(generated_suites):
    # An empty maze means the wall count floor(H*W*density / components) is zero; in the suite
    # that happens only where the sampled density is tiny.
    empty = [seed for seed in mapgen.MAZES_SUITE_SEEDS
             if "#" not in generated_suites["mazes"][mapgen.maze_map_name(seed)]]
    assert empty == [25, 72]
    for seed in empty:
        settings = mapgen.sample_maze_settings(seed)
        assert mapgen.maze_wall_count(settings.width, settings.height, settings.obstacle_density,
                                      settings.wall_components) == 0


def test_build_maze_small_example_and_edge_cases():
    # Pinned small example: walls only ever cover cells with an even coordinate in the bordered
    # grid, i.e. odd cropped rows/columns stay free wherever both coordinates are even.
    assert mapgen.build_maze(5, 5, 0.5, 2, 0.8, seed=3) == ".....\n.###.\n.....\n.#.#.\n....."
    maze = _grid(mapgen.build_maze(21, 21, 1.0, 8, 0.8, seed=0))
    assert not maze[::2, ::2].any()  # cropped even/even cells were odd/odd in the bordered grid
    assert "#" not in mapgen.build_maze(9, 9, 0.9, 0, 0.8, seed=1)  # zero components: no walls
    assert mapgen.build_maze(8, 6, 0.3, 3, 0.8, seed=1).count("\n") == 6  # 7 rows of 9
    # go_straight == 1 makes the toolbox divide by zero; here it falls back to a uniform choice
    assert _grid(mapgen.build_maze(9, 9, 0.5, 3, 1.0, seed=2)).shape == (9, 9)


def test_map_names():
    assert mapgen.random_map_name(0) == "validation-random-seed-000"
    assert mapgen.maze_map_name(127) == "validation-mazes-seed-127"
    assert mapgen.maze_map_name(1234) == "validation-mazes-seed-1234"
    assert list(mapgen.generate_maps("mazes", [5, 1])) == ["validation-mazes-seed-005", "validation-mazes-seed-001"]


@pytest.mark.parametrize("call, message", [
    (lambda: mapgen.random_map(-1), "seed must be >= 0"),
    (lambda: mapgen.maze_map(-5), "seed must be >= 0"),
    (lambda: mapgen.random_map(1.5), "seed must be an integer"),
    (lambda: mapgen.random_map(True), "seed must be an integer"),
    (lambda: mapgen.random_map(0, width_range=(21, 17)), "width_range is empty"),
    (lambda: mapgen.random_map(0, height_range=(0, 3)), "height_range low must be >= 1"),
    (lambda: mapgen.random_map(0, width_range=()), "width_range must be a (low, high) pair"),
    (lambda: mapgen.random_map(0, density_range=(0.3, 0.1)), "density_range is inverted"),
    (lambda: mapgen.random_map(0, density_range=(0.1, 1.5)), "density_range high must be in [0, 1]"),
    (lambda: mapgen.random_map(0, density_range=(-0.1, 0.2)), "density_range low must be in [0, 1]"),
    (lambda: mapgen.maze_map(0, wall_components_range=(3, 2)), "wall_components_range is empty"),
    (lambda: mapgen.maze_map(0, go_straight_range=(0.9, 1.2)), "go_straight_range high must be in [0, 1]"),
    (lambda: mapgen.build_maze(0, 5, 0.5, 2, 0.8, 0), "width must be >= 1"),
    (lambda: mapgen.build_maze(5, 5, float("nan"), 2, 0.8, 0), "obstacle_density must be in [0, 1]"),
    (lambda: mapgen.build_maze(5, 5, 0.5, -1, 0.8, 0), "wall_components must be >= 0"),
    (lambda: mapgen.place_random_obstacles(5, 5, 2.0, 0), "density must be in [0, 1]"),
    (lambda: mapgen.generate_maps("warehouse", [0]), "unknown map kind 'warehouse'"),
    (lambda: mapgen.generate_maps("random", [3, -2]), "seed must be >= 0"),
])
def test_bad_input_raises_one_line_memarl_error(call, message):
    with pytest.raises(MemarlError) as caught:
        call()
    text = str(caught.value)
    assert message in text and "\n" not in text
