"""POGEMA benchmark suites, the Follower training mazes, and the map library behind them.

* **Map library** (:func:`library_names`, :func:`map_text`, :func:`resolve_map_name`): every
  map of the suites below under its benchmark name. Random and Mazes maps are generated
  (:mod:`memarl.envs.mapgen`, byte-exact); the MovingAI tiles are 64x64 slices of the
  pathfinding city maps; the warehouse (the results version: PB
  ``raw_data_MAPF/03-warehouse/maps.yaml``), puzzles, cities and Follower training mazes are
  read from the data directory (:func:`data_dir`), filled by ``memarl suites fetch``
  (:func:`fetch_data`).
* **Suites** (:class:`PogemaSuite`, registered in :data:`memarl.registry.SUITES`): agent counts
  x maps x seeds with the benchmark's episode lengths and environment settings.
* **Scenario check** (:func:`check_scenarios`): our engine's seeded instances against the
  explicit ``scenarios:`` blocks of the benchmark configs.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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
TRAINING_MAZES_MAPS = tuple(f"training-mazes-seed-{s:03d}" for s in range(128, 2176))
"""pogema-toolbox's training set of mazes (seeds 128..2175, the Mazes suite's generator; no
published copy, generated here): disjoint from the 128 validation mazes of the Mazes suite"""


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
    return lib


def library_names() -> tuple[str, ...]:
    """Every map name of the library, in library order (Random, Mazes, warehouse, MovingAI
    tiles, puzzles, cities, Follower mazes, then the generated training sets of random maps
    and mazes)."""
    return tuple(_library())


def map_source(name: str) -> str | None:
    """The :data:`DATA_FILES` key map ``name`` is read from (None: generated, needs no data)."""
    source = _lookup(name)[0]
    return {"random": None, "mazes": None, "tile": "pathfinding"}.get(source, source)


def _lookup(name: str) -> tuple[str, Any]:
    lib = _library()
    if name not in lib:
        raise MemarlError(f"unknown map {name!r}; known maps include {_examples()} "
                          f"({len(lib)} in all, see memarl.envs.suites.library_names())")
    return lib[name]


def _examples() -> str:
    return ", ".join([RANDOM_MAPS[0], MAZES_MAPS[0], WAREHOUSE_MAPS[0], MOVINGAI_MAPS[0], PUZZLE_MAPS[0],
                      CITIES[0], FOLLOWER_MAZES[0]])


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
    return mapgen.random_map(seed) if kind == "random" else mapgen.maze_map(seed)


def map_text(name: str) -> str:
    """The text of library map ``name`` (rows of ``.``/``#``, the warehouse also ``@``/``$``).

    Raises :class:`MemarlError` for an unknown name, and for a map whose data file is missing
    (naming the file and ``memarl suites fetch``).
    """
    source, arg = _lookup(name)
    if source in ("random", "mazes"):
        return _generated(source, arg)
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


# --------------------------------------------------------------------------------------------
# suites


@dataclass(frozen=True)
class SuiteEpisode:
    """One episode of a suite: a map, an agent count and an instance seed."""

    map_name: str
    """library map name"""
    num_agents: int
    """agents in the episode"""
    seed: int
    """pogema instance seed (fixes starts, targets and restart targets)"""
    max_episode_steps: int
    """episode length"""


MAPF_OPTIONS = {"on_target": "nothing", "collision_system": "soft", "obs_radius": 5, "observation_type": "MAPF"}
"""the benchmark's MAPF environment settings (obs_radius unset there: pogema's default 5)"""
LMAPF_OPTIONS = {"on_target": "restart", "collision_system": "soft", "obs_radius": 5, "observation_type": "POMAPF"}
"""the benchmark's LMAPF environment settings (POMAPF as in the PB scenario configs)"""


@dataclass(frozen=True)
class PogemaSuite:
    """A POGEMA map suite: agent counts x maps x seeds, with one episode length and env settings."""

    name: str
    """registered name, e.g. 'pogema-random-lmapf'"""
    mode: str
    """'mapf' (on_target nothing: solved when all stand on their targets) or 'lmapf' (restart)"""
    map_names: tuple[str, ...]
    """library map names, in the benchmark's order"""
    num_agents: tuple[int, ...]
    """agent counts, ascending"""
    seeds: tuple[int, ...]
    """instance seeds per map"""
    max_episode_steps: int
    """episode length"""
    env_options: dict = dataclasses.field(default_factory=dict)
    """PogemaConfig settings of every episode: on_target, collision_system, obs_radius, observation_type"""
    description: str = ""
    """one line for `memarl list suites`"""
    source: str = ""
    """folder of the suite's maps and configs in the data layout (e.g. '03-warehouse'); its
    ``<source>-<mode>.yaml`` holds the scenarios that :func:`check_scenarios` compares with"""

    def episodes(self) -> list[SuiteEpisode]:
        """Every episode: agent-count-major, then maps, then seeds."""
        return [SuiteEpisode(m, n, s, self.max_episode_steps)
                for n in self.num_agents for m in self.map_names for s in self.seeds]

    def map_text(self, name: str) -> str:
        """The text of the suite's map ``name``."""
        if name not in self.map_names:
            raise MemarlError(f"suite {self.name} has no map {name!r}; its maps: {self.map_names[0]} ... "
                              f"{self.map_names[-1]} ({len(self.map_names)})")
        return map_text(name)

    def env_config(self, episode: SuiteEpisode, **overrides: Any):
        """The :class:`~memarl.envs.pogema_env.PogemaConfig` of ``episode`` (one env whose first
        episode is pogema's instance ``episode.seed``); ``overrides`` replace any setting."""
        from memarl.envs.pogema_env import PogemaConfig
        kwargs = {"map": self.map_text(episode.map_name), "num_agents": episode.num_agents,
                  "seed": episode.seed, "max_episode_steps": episode.max_episode_steps, **self.env_options}
        kwargs.update(overrides)
        return PogemaConfig(**kwargs)

    def data_files(self) -> tuple[str, ...]:
        """The :data:`DATA_FILES` keys the suite's maps are read from (empty: all generated)."""
        keys = {map_source(m) for m in self.map_names}
        return tuple(k for k in DATA_FILES if k in keys)

    def data_present(self) -> bool:
        """Whether every data file the suite needs is in the data directory."""
        return all(data_present(k) for k in self.data_files())


def _pb_suite(short: str, mode: str, source: str, maps: tuple[str, ...], agents: tuple[int, ...], steps: int,
              seeds: tuple[int, ...], what: str) -> PogemaSuite:
    options = MAPF_OPTIONS if mode == "mapf" else LMAPF_OPTIONS
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}..{seeds[-1]}"
    agent_text = ",".join(map(str, agents))
    return PogemaSuite(
        f"pogema-{short}-{mode}", mode, maps, agents, seeds, steps, dict(options),
        f"POGEMA {source} {mode.upper()}: {what}, {agent_text} agents, episode {steps}, {seed_text}", source)


_SEEDS_128 = tuple(range(128))
_SEEDS_10 = tuple(range(10))
_RANDOM_AGENTS = (8, 16, 24, 32, 48, 64)
_WAREHOUSE_AGENTS = (32, 64, 96, 128, 160, 192)
_MOVINGAI_AGENTS = (64, 128, 192, 256)

SUITES: dict[str, PogemaSuite] = {s.name: s for s in [
    _pb_suite("random", "mapf", "01-random", RANDOM_MAPS, _RANDOM_AGENTS, 128, (0,), "128 random maps 17-21"),
    _pb_suite("random", "lmapf", "01-random", RANDOM_MAPS, _RANDOM_AGENTS, 256, (0,), "128 random maps 17-21"),
    _pb_suite("mazes", "mapf", "02-mazes", MAZES_MAPS, _RANDOM_AGENTS, 128, (0,), "128 mazes 17-21"),
    _pb_suite("mazes", "lmapf", "02-mazes", MAZES_MAPS, _RANDOM_AGENTS, 128, (0,), "128 mazes 17-21"),
    _pb_suite("warehouse", "mapf", "03-warehouse", WAREHOUSE_MAPS, _WAREHOUSE_AGENTS, 128, _SEEDS_128,
              "wfi_warehouse 33x46"),
    _pb_suite("warehouse", "lmapf", "03-warehouse", WAREHOUSE_MAPS, _WAREHOUSE_AGENTS, 256, _SEEDS_128,
              "wfi_warehouse 33x46"),
    _pb_suite("movingai", "mapf", "04-movingai", MOVINGAI_MAPS, _MOVINGAI_AGENTS, 256, (0,),
              "128 city tiles 64x64"),
    _pb_suite("movingai", "lmapf", "04-movingai", MOVINGAI_MAPS, _MOVINGAI_AGENTS, 256, (0,),
              "128 city tiles 64x64"),
    _pb_suite("puzzles", "mapf", "05-puzzles", PUZZLE_MAPS, (2, 3, 4), 128, _SEEDS_10, "16 puzzles 5x5"),
    _pb_suite("puzzles", "lmapf", "05-puzzles", PUZZLE_MAPS, (2, 3, 4), 256, _SEEDS_10, "16 puzzles 5x5"),
    _pb_suite("pathfinding", "mapf", "06-pathfinding", CITIES, (1,), 2048, _SEEDS_10, "8 cities 256x256"),
    # Follower trains on these with 'soft' as its code default (its released config.json says
    # 'priority'); the seeds are ours, for evaluating on the training maps
    PogemaSuite("follower-mazes", "lmapf", FOLLOWER_MAZES, (64,), _SEEDS_10, 512, dict(LMAPF_OPTIONS),
                "Follower's 40 training mazes 65x65 (map_name 'mazes-.+'), restart, 64 agents, episode 512, "
                "seeds 0..9", "follower-training"),
]}
"""the POGEMA suites by name (the benchmark's tables; README of the pogema-maps data)"""


def get_suite(suite_name: str) -> PogemaSuite:
    """The suite called ``suite_name`` (the SUITES registry entry point)."""
    if suite_name not in SUITES:
        raise MemarlError(f"unknown pogema suite {suite_name!r}; known: {', '.join(SUITES)}")
    return SUITES[suite_name]


# --------------------------------------------------------------------------------------------
# scenario check


def _split_scenarios(text: str) -> tuple[str, list[str]]:
    """A pogema-toolbox config -> (text without ``scenarios:``, one YAML text per scenario).

    Parsing a 3 MB LMAPF config whole takes seconds; cutting it at the scenario keys lets a
    subset be parsed alone.
    """
    head, sep, tail = text.partition("\nscenarios:\n")
    if not sep:
        return text, []
    end = re.search(r"^\S", tail, flags=re.M)  # a later top-level key ends the block
    if end is not None:
        head += "\n" + tail[end.start():]
        tail = tail[:end.start()]
    starts = [m.start() for m in re.finditer(r"^  \S", tail, flags=re.M)]
    return head, [tail[a:b] for a, b in zip(starts, starts[1:] + [len(tail)])]


def _lifelong_targets(env: Any) -> list[list[list[int]]]:
    """Each agent's target sequence in env 0 after reset, pogema's ``get_lifelong_targets_xy``:
    the initial target, then the targets our env draws when the agent arrives, until their summed
    Manhattan length (from the start) reaches ``max_episode_steps``.

    Drives :meth:`PogemaEnv._new_target` itself (same per-agent generators and pools), moving
    the agent onto its target before each draw; the env is spent afterwards.
    """
    import numpy as np

    limit = env.config.max_episode_steps
    r, wp = env.radius, int(env._wp[0])
    out = []
    for j in range(env.num_agents):
        start = np.array(divmod(int(env._cell[0, j]), wp)) - r
        cur = np.array(divmod(int(env._tcell[0, j]), wp)) - r
        seq = [cur.tolist()]
        total = int(np.abs(start - cur).sum())
        while total < limit:
            env._cell[0, j] = env._tcell[0, j]
            env._tcell[0, j] = env._new_target(0, j)
            new = np.array(divmod(int(env._tcell[0, j]), wp)) - r
            seq.append(new.tolist())
            total += int(np.abs(cur - new).sum())
            cur = new
        out.append(seq)
    return out


def check_scenarios(suite_dir: str | os.PathLike, suite: PogemaSuite | str, limit: int | None = None,
                    agent_counts: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Compare our seeded instances with the stored scenarios of ``<source>-<mode>.yaml``.

    ``suite_dir`` is the suite's folder (or the data root holding it). For every scenario
    (``limit``: that many, evenly spaced in file order) and agent count N (default the smallest
    and the largest) it builds ``PogemaConfig(map=..., num_agents=N, seed=<scenario seed>,
    on_target=...)`` and compares the starts and first targets of ``instance(seed)`` with
    ``agents_xy[:N]`` / ``targets_xy[:N]``; for LMAPF it resets a PogemaEnv and compares every
    agent's lifelong target sequence (:func:`_lifelong_targets`) with the stored one. Also checks
    the config's environment block against the suite. Returns counts and the first mismatches.
    """
    import numpy as np
    from memarl.envs.pogema_env import PogemaConfig, PogemaEnv

    if isinstance(suite, str):
        suite = get_suite(suite)
    if not suite.source.startswith("0"):
        raise MemarlError(f"suite {suite.name} has no benchmark scenarios")
    folder = Path(suite_dir)
    if (folder / suite.source).is_dir():
        folder = folder / suite.source
    path = folder / f"{suite.source}-{suite.mode}.yaml"
    if not path.is_file():
        raise MemarlError(f"scenario file {path} is missing")
    head, chunks = _split_scenarios(path.read_text())
    env_block = (_yaml_load(head) or {}).get("environment", {})
    if limit is not None and limit < len(chunks):
        chunks = [chunks[int(k)] for k in np.linspace(0, len(chunks) - 1, max(limit, 1)).round()]
    counts = tuple(agent_counts) if agent_counts else tuple(sorted({min(suite.num_agents), max(suite.num_agents)}))

    def grid(key: str) -> list:
        v = env_block.get(key)
        return list(v["grid_search"]) if isinstance(v, dict) else [v]

    config_diffs = [key for key, ours in [
        ("num_agents", list(suite.num_agents)), ("map_name", list(suite.map_names)), ("seed", list(suite.seeds)),
        ("max_episode_steps", [suite.max_episode_steps]), ("on_target", [suite.env_options["on_target"]]),
        ("collision_system", [suite.env_options["collision_system"]]),
        ("observation_type", [suite.env_options["observation_type"]])] if grid(key) != ours]
    report: dict[str, Any] = {"suite": suite.name, "file": str(path), "config_ok": not config_diffs,
                              "config_diffs": config_diffs, "scenarios": 0, "instances": 0, "starts_ok": 0,
                              "targets_ok": 0, "mismatches": []}
    if suite.mode == "lmapf":
        report["sequences_ok"] = 0
    options = {k: v for k, v in suite.env_options.items() if k != "observation_type"}
    for chunk in chunks:
        scenario = next(iter(_yaml_load("scenarios:\n" + chunk)["scenarios"].values()))
        report["scenarios"] += 1
        text, seed = suite.map_text(scenario["map_name"]), int(scenario["seed"])
        for n in counts:
            report["instances"] += 1
            cfg = PogemaConfig(map=text, num_agents=n, seed=seed, max_episode_steps=suite.max_episode_steps,
                               observation_type="POMAPF", **options)
            where = f"{scenario['map_name']} seed {seed} N={n}"
            if suite.mode == "mapf":
                _, starts, seqs = cfg.instance(seed)
                firsts = [q[0].tolist() for q in seqs]
                want_first = scenario["targets_xy"][:n]
                sequences = None
            else:
                env = PogemaEnv(cfg)
                env.reset()
                starts = env.positions[0]
                firsts = env.targets[0].tolist()
                want_first = [q[0] for q in scenario["targets_xy"][:n]]
                sequences = _lifelong_targets(env)
            ok_starts = starts.tolist() == scenario["agents_xy"][:n]
            ok_targets = firsts == want_first
            report["starts_ok"] += ok_starts
            report["targets_ok"] += ok_targets
            problems = [] if ok_starts else ["starts"]
            problems += [] if ok_targets else ["first targets"]
            if sequences is not None:
                ok_seq = sequences == scenario["targets_xy"][:n]
                report["sequences_ok"] += ok_seq
                problems += [] if ok_seq else ["target sequences"]
            if problems and len(report["mismatches"]) < 10:
                report["mismatches"].append(f"{where}: {', '.join(problems)} differ")
    report["all_match"] = report["config_ok"] and report["starts_ok"] == report["targets_ok"] \
        == report.get("sequences_ok", report["instances"]) == report["instances"]
    return report


__all__ = ["DATA_FILES", "PogemaSuite", "SUITES", "SuiteEpisode", "check_scenarios", "data_dir", "fetch_data",
           "get_suite", "library_names", "map_text", "resolve_map_name"]
