"""The map library: every named map the envs and suites use, below the envs.

* **Names** (:func:`library_names`, :func:`resolve_map_name`, :func:`map_text`): the POGEMA
  benchmark maps under their benchmark names, the Follower training mazes, pogema-toolbox's
  generated training sets, the Bottleneck corridors ``bottleneck-L`` and the T-Maze corridors
  ``tmaze-L`` (L = 1..10000 each). :func:`map_family` tells them apart (``grid``,
  ``bottleneck``, ``tmaze``); :func:`corridor_length` reads L from a corridor's name.
* **Generated maps** (no data needed): Random and Mazes (:mod:`memarl.envs.mapgen`,
  byte-exact with the published ones), the Bottleneck and T-Maze corridors, and the MovingAI
  tiles (64x64 slices of the city maps, which are data).
* **Data files** (:data:`DATA_FILES`): the warehouse (the results version: PB
  ``raw_data_MAPF/03-warehouse/maps.yaml``), puzzles, cities and Follower training mazes, read
  from the data directory (:func:`data_dir`) that :func:`fetch_data` (``memarl suites fetch``)
  fills from pinned upstream commits, checked by SHA-256.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from memarl.envs.mapgen import MAX_CORRIDOR_LENGTH
from memarl.errors import MemarlError

# --------------------------------------------------------------------------------------------
# data files

PB_REPO = "Cognitive-AI-Systems/pogema-benchmark"
PB_COMMIT = "c5dd4fd55499de9fefec4d2033f4c027aece86fd"
"""pogema-benchmark HEAD (2025-06-23) the map files are pinned to"""
LTF_REPO = "AIRI-Institute/learn-to-follow"
LTF_COMMIT = "7463ad24d0c50ca6ca20d627c04931b43c66a4b7"
"""learn-to-follow HEAD (2024-07-18) the Follower training maps are pinned to"""
RAW_BASE = "https://raw.githubusercontent.com"
DATA_DIR_ENV = "MEMARL_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/memarl/pogema-maps")


@dataclass(frozen=True)
class DataFile:
    """One map file of the data directory and where it comes from upstream."""

    path: str
    """path inside the data directory (the layout of the shared pogema-maps copy)"""
    repo: str
    """GitHub owner/name of the upstream repository"""
    commit: str
    """pinned upstream commit"""
    upstream: str
    """path of the file in the upstream repository"""
    sha256: str
    """SHA-256 of the file's bytes (a download must match it)"""

    @property
    def url(self) -> str:
        return f"{RAW_BASE}/{self.repo}/{self.commit}/{self.upstream}"


DATA_FILES: dict[str, DataFile] = {
    "warehouse": DataFile("03-warehouse/maps.results-version.yaml", PB_REPO, PB_COMMIT,
                          "raw_data_MAPF/03-warehouse/maps.yaml",
                          "28b937bf6303feaf665cfd100dda17de64f8ff82f197900ab9b8ded2436b0ae9"),
    "puzzles": DataFile("05-puzzles/maps.yaml", PB_REPO, PB_COMMIT, "algorithms/experiments/05-puzzles/maps.yaml",
                        "325bc21984f6884e35e49c38f9b2d126f2c3f2f3d626935d4d6321674cf7ebdf"),
    "pathfinding": DataFile("06-pathfinding/maps.yaml", PB_REPO, PB_COMMIT,
                            "algorithms/experiments/06-pathfinding/maps.yaml",
                            "c8ee8d43c3bc7bfb659f75b1c65fd605ab11493745a4dfec8925bdc69cca91db"),
    "follower": DataFile("follower-training/training-maps.yaml", LTF_REPO, LTF_COMMIT, "env/training-maps.yaml",
                         "8fef68e52917685ef858921d77538fca3d654fdeba902a1a490ec21d2daf6d68"),
}
"""the files ``memarl suites fetch`` downloads; everything else is generated or derived"""


def data_dir() -> Path:
    """The map data directory: ``$MEMARL_DATA_DIR``, else ``~/.cache/memarl/pogema-maps``."""
    given = os.environ.get(DATA_DIR_ENV)
    return Path(given).expanduser() if given else DEFAULT_DATA_DIR.expanduser()


def _yaml_load(text: str) -> Any:
    import yaml
    # the C loader is ~10x faster on the multi-megabyte scenario files
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@functools.lru_cache(maxsize=16)
def _read_maps(path: str, mtime_ns: int) -> dict[str, str]:
    maps = _yaml_load(Path(path).read_text())
    if not isinstance(maps, dict) or not all(isinstance(v, str) for v in maps.values()):
        raise MemarlError(f"{path} is not a map file (a mapping of names to map text); "
                          "run `memarl suites fetch` to replace it")
    return maps


def _data_maps(key: str) -> dict[str, str]:
    """The maps of data file ``key`` (read once per file version)."""
    path = data_dir() / DATA_FILES[key].path
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise MemarlError(f"map data file {path} is missing: run `memarl suites fetch` "
                          f"(or set {DATA_DIR_ENV} to a folder holding {DATA_FILES[key].path})") from None
    return _read_maps(str(path), mtime)


def data_present(key: str) -> bool:
    """Whether data file ``key`` of :data:`DATA_FILES` is in the data directory."""
    return (data_dir() / DATA_FILES[key].path).is_file()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(url: str, timeout: float) -> bytes:
    import urllib.request  # imported here: it pulls in http/ssl, unneeded to list suites
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def fetch_data(dest: str | os.PathLike | None = None, base_url: str = RAW_BASE, timeout: float = 60.0,
               log: Callable[[str], None] = print, opener: Callable[[str, float], bytes] | None = None) -> Path:
    """Download the map files of :data:`DATA_FILES` into ``dest`` (default :func:`data_dir`).

    Each file comes from ``base_url/<repo>/<commit>/<path>`` at its pinned commit, must match
    its SHA-256, and is written atomically (a temporary file in the same folder, renamed).
    Files already present with the right hash are skipped; a present file with another hash
    is replaced. Raises a one-line :class:`MemarlError` when a download fails or does not match.
    ``opener(url, timeout) -> bytes`` replaces urllib (tests).
    """
    import urllib.error

    from memarl.files import check_creatable_dir

    root = check_creatable_dir(Path(dest).expanduser() if dest is not None else data_dir(), "--dir")
    opener = opener or _download
    for key, spec in DATA_FILES.items():
        target = root / spec.path
        if target.is_file() and _sha256(target.read_bytes()) == spec.sha256:
            log(f"{spec.path}: present")
            continue
        url = f"{base_url.rstrip('/')}/{spec.repo}/{spec.commit}/{spec.upstream}"
        try:
            data = opener(url, timeout)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise MemarlError(f"cannot download {url} ({reason}); without network, copy the map files "
                              f"into a folder and set {DATA_DIR_ENV} to it") from None
        digest = _sha256(data)
        if digest != spec.sha256:
            raise MemarlError(f"{url} has SHA-256 {digest[:16]}..., expected {spec.sha256[:16]}...; "
                              f"{spec.path} not written")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as error:
            raise MemarlError(f"cannot write {target}: {error.strerror or error}") from None
        log(f"{spec.path}: downloaded ({len(data):,} bytes)")
    return root


# --------------------------------------------------------------------------------------------
# the map library

CITIES = ("Berlin_1_256", "Boston_0_256", "London_2_256", "Milan_0_256", "Moscow_0_256", "NewYork_1_256",
          "Paris_1_256", "Paris_2_256")
"""the 8 MovingAI street maps of 06-pathfinding, in file order"""
TILE = 64
"""side of a 04-movingai tile: tile NN of a 256x256 city covers rows 64*(NN//4).. and cols 64*(NN%4).."""
FOLLOWER_MAZES = (
    "mazes-s0_wc8_od55", "mazes-s1_wc3_od70", "mazes-s2_wc8_od25", "mazes-s3_wc6_od35", "mazes-s4_wc3_od45",
    "mazes-s5_wc6_od45", "mazes-s6_wc8_od70", "mazes-s7_wc4_od35", "mazes-s8_wc3_od50", "mazes-s9_wc5_od70",
    "mazes-s10_wc6_od25", "mazes-s11_wc5_od65", "mazes-s12_wc5_od45", "mazes-s13_wc4_od45", "mazes-s14_wc2_od70",
    "mazes-s15_wc3_od25", "mazes-s16_wc4_od60", "mazes-s17_wc6_od55", "mazes-s18_wc3_od30", "mazes-s19_wc7_od25",
    "mazes-s20_wc7_od75", "mazes-s21_wc3_od55", "mazes-s22_wc3_od40", "mazes-s23_wc8_od45", "mazes-s24_wc7_od55",
    "mazes-s25_wc5_od25", "mazes-s26_wc7_od40", "mazes-s27_wc7_od60", "mazes-s28_wc2_od35", "mazes-s29_wc6_od30",
    "mazes-s30_wc6_od75", "mazes-s31_wc2_od60", "mazes-s32_wc2_od40", "mazes-s33_wc5_od75", "mazes-s34_wc6_od50",
    "mazes-s35_wc8_od35", "mazes-s36_wc4_od25", "mazes-s37_wc7_od70", "mazes-s38_wc5_od30", "mazes-s39_wc2_od75")
"""the 40 Follower training mazes (learn-to-follow ``env/training-maps.yaml``), in file order;
listed here so that names resolve without the data"""

RANDOM_MAPS = tuple(f"validation-random-seed-{s:03d}" for s in range(128))
MAZES_MAPS = tuple(f"validation-mazes-seed-{s:03d}" for s in range(128))
WAREHOUSE_MAPS = ("wfi_warehouse",)
MOVINGAI_MAPS = tuple(f"{city}_{k:02d}" for city in CITIES for k in range(16))
PUZZLE_MAPS = tuple(f"puzzle-{k:02d}" for k in range(16))
TRAINING_RANDOM_MAPS = tuple(f"training-random-seed-{s:03d}" for s in range(128, 640))
"""pogema-toolbox's training set of random maps (seeds 128..639, the Random suite's generator;
no published copy, generated here)"""
BOTTLENECK_MAPS = tuple(f"bottleneck-{length}" for length in range(1, MAX_CORRIDOR_LENGTH + 1))
"""the Bottleneck corridors: ``bottleneck-L`` is :func:`memarl.envs.mapgen.bottleneck_map` (L)"""
TRAINING_MAZES_MAPS = tuple(f"training-mazes-seed-{s:03d}" for s in range(128, 2176))
"""pogema-toolbox's training set of mazes (seeds 128..2175, the Mazes suite's generator; no
published copy, generated here): disjoint from the 128 validation mazes of the Mazes suite"""
TMAZE_MAPS = tuple(f"tmaze-{length}" for length in range(1, MAX_CORRIDOR_LENGTH + 1))
"""the T-Maze corridors: ``tmaze-L`` is a T-Maze of corridor length L (:func:`tmaze_map`; what
L means in each preset: :class:`memarl.envs.tmaze.TMazeEnv`)"""
MAP_FAMILIES = ("grid", "bottleneck", "tmaze")
"""kinds of library maps: grid maps any POGEMA env plays, and the corridors of the Bottleneck and
T-Maze envs (each env plays only its own family)"""


@functools.lru_cache(maxsize=1)
def _library() -> dict[str, tuple[str, Any]]:
    """name -> (source, argument), in library order."""
    lib: dict[str, tuple[str, Any]] = {}
    lib.update({name: ("random", s) for s, name in enumerate(RANDOM_MAPS)})
    lib.update({name: ("mazes", s) for s, name in enumerate(MAZES_MAPS)})
    lib.update({name: ("warehouse", name) for name in WAREHOUSE_MAPS})
    lib.update({name: ("tile", (name[:-3], int(name[-2:]))) for name in MOVINGAI_MAPS})
    lib.update({name: ("puzzles", name) for name in PUZZLE_MAPS})
    lib.update({name: ("pathfinding", name) for name in CITIES})
    lib.update({name: ("follower", name) for name in FOLLOWER_MAZES})
    lib.update({name: ("random", s) for s, name in zip(range(128, 640), TRAINING_RANDOM_MAPS)})
    lib.update({name: ("mazes", s) for s, name in zip(range(128, 2176), TRAINING_MAZES_MAPS)})
    lib.update({name: ("bottleneck", length) for length, name in enumerate(BOTTLENECK_MAPS, start=1)})
    lib.update({name: ("tmaze", length) for length, name in enumerate(TMAZE_MAPS, start=1)})
    return lib


def library_names() -> tuple[str, ...]:
    """Every map name of the library, in library order (Random, Mazes, warehouse, MovingAI
    tiles, puzzles, cities, Follower mazes, the generated training sets of random maps and
    mazes, then the Bottleneck corridors and the T-Maze corridors)."""
    return tuple(_library())


def map_source(name: str) -> str | None:
    """The :data:`DATA_FILES` key map ``name`` is read from (None: generated, needs no data)."""
    source = _lookup(name)[0]
    return {"random": None, "mazes": None, "bottleneck": None, "tmaze": None, "tile": "pathfinding"}.get(source, source)


def _lookup(name: str) -> tuple[str, Any]:
    lib = _library()
    if name not in lib:
        raise MemarlError(f"unknown map {name!r}; known maps include {_examples()} "
                          f"({len(lib)} in all, see memarl.envs.maps.library_names())")
    return lib[name]


def _examples() -> str:
    return ", ".join([RANDOM_MAPS[0], MAZES_MAPS[0], WAREHOUSE_MAPS[0], MOVINGAI_MAPS[0], PUZZLE_MAPS[0],
                      CITIES[0], FOLLOWER_MAZES[0], BOTTLENECK_MAPS[0], TMAZE_MAPS[0]])


def resolve_map_name(pattern: str) -> tuple[str, ...]:
    """The library names ``pattern`` means: itself if it is a name, else those it fully
    matches as a regular expression (``re.fullmatch``), in library order."""
    lib = _library()
    if pattern in lib:
        return (pattern,)
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise MemarlError(f"map_name {pattern!r} is no known map and no valid regular expression ({error})") from None
    names = tuple(name for name in lib if regex.fullmatch(name))
    if not names:
        raise MemarlError(f"map_name {pattern!r} matches no map of the library; known maps include "
                          f"{_examples()} ({len(lib)} in all)")
    return names


@functools.lru_cache(maxsize=512)
def _generated(kind: str, seed: int) -> str:
    from memarl.envs import mapgen
    return {"random": mapgen.random_map, "mazes": mapgen.maze_map, "bottleneck": mapgen.bottleneck_map}[kind](seed)


def map_text(name: str) -> str:
    """The text of library map ``name`` (rows of ``.``/``#``, the warehouse also ``@``/``$``).

    Raises :class:`MemarlError` for an unknown name, and for a map whose data file is missing
    (naming the file and ``memarl suites fetch``).
    """
    source, arg = _lookup(name)
    if source in ("random", "mazes", "bottleneck"):
        return _generated(source, arg)
    if source == "tmaze":
        return tmaze_map(arg)
    if source == "tile":
        city, k = arg
        rows = map_text(city).split()
        r0, c0 = TILE * (k // 4), TILE * (k % 4)
        return "\n".join(row[c0:c0 + TILE] for row in rows[r0:r0 + TILE])
    maps = _data_maps(source)
    if arg not in maps:
        raise MemarlError(f"{data_dir() / DATA_FILES[source].path} has no map {arg!r}: "
                          "run `memarl suites fetch` to replace it")
    return maps[arg]


def tmaze_map(length: int) -> str:
    """The text of T-Maze ``tmaze-L``: the corridor (row 1, columns 0..L) and the two goal cells
    above and below its end (the junction, column L); rows of ``.`` free / ``#`` wall."""
    length = int(length)
    if not 1 <= length <= MAX_CORRIDOR_LENGTH:
        raise MemarlError(f"T-Maze corridor length must be in 1..{MAX_CORRIDOR_LENGTH}, got {length}")
    arm = "#" * length + "."
    return "\n".join([arm, "." * (length + 1), arm])


def map_family(name: str) -> str:
    """The family of library map ``name``: ``bottleneck`` (``bottleneck-L``), ``tmaze``
    (``tmaze-L``) or ``grid`` (every other map)."""
    source = _lookup(name)[0]
    return source if source in ("bottleneck", "tmaze") else "grid"


def corridor_length(name: str, family: str | None = "bottleneck") -> int | None:
    """The corridor length L of corridor map ``<family>-L`` (None for any other map).

    ``family`` is ``bottleneck`` (the default: ``bottleneck-L`` only), ``tmaze``, or None for a
    corridor of either family.
    """
    source, arg = _lookup(name)
    if source not in ("bottleneck", "tmaze") or (family is not None and source != family):
        return None
    return int(arg)


__all__ = ["DATA_FILES", "DataFile", "MAP_FAMILIES", "corridor_length", "data_dir", "data_present", "fetch_data",
           "library_names", "map_family", "map_source", "map_text", "resolve_map_name", "tmaze_map"]
