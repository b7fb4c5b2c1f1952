"""Evaluation suites as data: small YAML files, one per suite, shipped in ``eval/suites/``.

A suite is what pogema-toolbox's evaluation configs describe: an env, the task settings of every
episode, maps (library names or patterns, :mod:`memarl.envs.maps`), agent counts, instance seeds
and an episode length; plus the metrics to aggregate and the axis to plot them against::

    name: pogema-random-lmapf
    description: POGEMA 01-random, lifelong MAPF ...
    env: pogema-lmapf-v0
    settings: {on_target: restart, collision_system: soft}
    maps: ['validation-random-seed-\\d{3}']
    agents: [8, 16, 24, 32, 48, 64]
    seeds: [0]                  # or "0..127"
    episode_steps: 256          # null: the env's rule (Bottleneck: 2L + 100; T-Maze: the preset's)
    metrics: [avg_throughput, collisions]
    axis: num_agents            # or corridor_length (Bottleneck, T-Maze), map_name
    bands: {}                   # optional named ranges of the axis, averaged in the table
    scenarios: 01-random        # optional: the benchmark folder whose scenarios tests compare

``settings`` are the task's (collisions, on-target behaviour): a learned policy is evaluated
with the observation settings it was trained with (from its checkpoint); a suite that names an
observation setting (``obs_radius``, ``observation_type``, T-Maze's ``preset``) pins it, and a
checkpoint trained otherwise is refused. Each env plays one family of library maps
(:func:`memarl.envs.maps.map_family`): POGEMA envs the grid maps, Bottleneck its corridors
``bottleneck-L``, T-Maze its corridors ``tmaze-L`` (the corridor length of the episode).
:func:`load_suite` validates a file completely (unknown keys, env, maps,
settings, agent counts, seeds, metrics) with one-line errors naming the file; the registered
suites are the files of ``eval/suites/`` (:data:`memarl.registry.SUITES`), and a path to a
user's own file works wherever a suite name does.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memarl.envs import maps as M
from memarl.errors import MemarlError

SUITE_DIR = Path(__file__).resolve().parent / "suites"
"""the suite files shipped with memarl"""
KNOWN_KEYS = ("name", "description", "env", "settings", "maps", "agents", "seeds", "episode_steps",
              "metrics", "axis", "bands", "scenarios")
REQUIRED_KEYS = ("name", "env", "maps", "agents", "seeds", "metrics", "axis")
AXES = ("num_agents", "corridor_length", "map_name")
"""what a suite's plot can put on its x axis"""
EPISODE_METRICS = ("CSR", "ISR", "SoC", "makespan", "avg_throughput", "throughput_count", "collisions",
                   "obstacle_collisions", "return", "episode_length", "success", "turned")
"""per-episode metrics the envs report (which ones depend on the env and its mode; success and
turned are T-Maze's)"""
MAX_SEEDS = 100_000
MAX_EPISODE_STEPS = 10_000_000


@dataclass(frozen=True)
class SuiteEpisode:
    """One episode of a suite."""

    map_name: str
    """library map name"""
    num_agents: int
    """agents in the episode"""
    seed: int
    """instance seed (fixes starts, targets and restart targets on the map)"""
    max_episode_steps: int | None
    """time limit; None = the env's rule for the map"""

    @property
    def key(self) -> tuple[str, int, int]:
        """what identifies the episode in a result table"""
        return self.map_name, self.num_agents, self.seed


@dataclass(frozen=True)
class Suite:
    """A validated suite file (see the module docstring for the fields' meaning)."""

    name: str
    """suite name ('pogema-random-lmapf')"""
    env_id: str
    """registered env the episodes run on ('pogema-lmapf-v0')"""
    settings: dict
    """config fields of the env set for every episode (task settings)"""
    map_names: tuple[str, ...]
    """library map names, in suite order"""
    num_agents: tuple[int, ...]
    """agent counts, ascending"""
    seeds: tuple[int, ...]
    """instance seeds per (map, agent count)"""
    episode_steps: int | None
    """time limit of every episode; None = the env's rule per map"""
    metrics: tuple[str, ...]
    """per-episode metrics aggregated in the tables and plots"""
    axis: str
    """x axis of the plot and the grouping of the table: num_agents, corridor_length, map_name"""
    description: str = ""
    """one line for `memarl list suites`"""
    bands: tuple[tuple[str, float, float], ...] = ()
    """named axis ranges [low, high] whose means the table also shows"""
    scenarios: str | None = None
    """benchmark folder whose ``<folder>-<mode>.yaml`` lists the suite's instances (tests)"""
    path: str = ""
    """the file the suite was read from"""

    def episodes(self) -> list[SuiteEpisode]:
        """Every episode: agent-count-major, then maps, then seeds."""
        return [SuiteEpisode(m, n, s, self.episode_steps)
                for n in self.num_agents for m in self.map_names for s in self.seeds]

    def data_files(self) -> tuple[str, ...]:
        """The :data:`~memarl.envs.maps.DATA_FILES` keys the suite's maps are read from."""
        keys = {M.map_source(m) for m in self.map_names}
        return tuple(k for k in M.DATA_FILES if k in keys)

    def data_present(self) -> bool:
        """Whether every map data file the suite needs is in the data directory."""
        return all(M.data_present(k) for k in self.data_files())

    def check_maps(self, num_agents: tuple[int, ...] | None = None, map_names: tuple[str, ...] | None = None) -> None:
        """Every map loads and has room for the largest agent count (reads map data; one line)."""
        from memarl.envs.pogema_instances import library_map

        most = max(num_agents or self.num_agents)
        for name in map_names or self.map_names:
            obstacles, possible = library_map(name)
            free = int((~obstacles).sum()) if possible is None else min(len(possible[0]), len(possible[1]))
            if most > free:
                raise MemarlError(f"suite {self.name}: {most} agents do not fit on map {name!r} "
                                  f"({free} free cells)")

    def axis_value(self, episode: SuiteEpisode) -> Any:
        """The episode's value on the suite's axis."""
        if self.axis == "corridor_length":
            return M.corridor_length(episode.map_name, None)
        return getattr(episode, self.axis)


def _fail(where: str, message: str) -> MemarlError:
    return MemarlError(f"{where}: {message}")


def env_map_family(config_fields: set[str]) -> str:
    """The map family an env plays, from its config's fields: ``tmaze`` (a ``corridor_length``,
    and maybe ``corridor_lengths`` to train on), ``bottleneck`` (only ``corridor_lengths``, its
    training maps), else ``grid``."""
    if "corridor_length" in config_fields:
        return "tmaze"
    return "bottleneck" if "corridor_lengths" in config_fields else "grid"


def _int_list(where: str, key: str, value: Any, low: int, high: int) -> tuple[int, ...]:
    if isinstance(value, str):  # "a..b", inclusive
        match = re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", value)
        if not match or int(match[1]) > int(match[2]):
            raise _fail(where, f"{key} must be a list of integers or a range 'a..b', got {value!r}")
        value = list(range(int(match[1]), int(match[2]) + 1))
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise _fail(where, f"{key} must be a non-empty list of integers, got {value!r}")
    bad = [v for v in value if not low <= v <= high]
    if bad:
        raise _fail(where, f"{key} must lie in {low}..{high}, got {bad[0]}")
    if len(set(value)) != len(value):
        raise _fail(where, f"{key} lists a value twice")
    if len(value) > MAX_SEEDS:
        raise _fail(where, f"{key} has {len(value)} entries, at most {MAX_SEEDS}")
    return tuple(value)


def parse_suite(data: Any, where: str) -> Suite:
    """A :class:`Suite` from a suite file's parsed YAML ``data`` (``where`` names it in errors)."""
    from memarl.registry import ENVS

    if not isinstance(data, dict):
        raise _fail(where, "a suite file must be a mapping of keys (name, env, maps, agents, ...)")
    unknown = sorted(set(map(str, data)) - set(KNOWN_KEYS))
    if unknown:
        raise _fail(where, f"unknown key {unknown[0]!r}; known keys: {', '.join(KNOWN_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise _fail(where, f"missing key {missing[0]!r}")
    name = data["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise _fail(where, f"name must be a word of letters, digits, '-', '_', '.', got {name!r}")
    env_id = data["env"]
    if not isinstance(env_id, str) or env_id not in ENVS:
        raise _fail(where, f"unknown env {env_id!r}; known: {', '.join(ENVS.names())}")
    env_id = ENVS.resolve(env_id)
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise _fail(where, f"settings must be a mapping of env options, got {settings!r}")
    config_class = ENVS.get(env_id).load().config_class
    fields = {f.name for f in dataclasses.fields(config_class)}
    reserved = {"num_envs", "num_agents", "map", "map_name", "seed", "max_episode_steps", "corridor_lengths",
                "corridor_length"}
    for key in settings:
        if key not in fields:
            raise _fail(where, f"setting {key!r} is no option of env {env_id}; known: {', '.join(sorted(fields - reserved))}")
        if key in reserved:
            raise _fail(where, f"setting {key!r} is set per episode by the suite (maps, agents, seeds, episode_steps)")
    patterns = data["maps"]
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise _fail(where, "maps must be a non-empty list of map names or patterns")
    map_names: list[str] = []
    for pattern in patterns:
        try:
            found = M.resolve_map_name(pattern)
        except MemarlError as error:
            raise _fail(where, str(error)) from None
        map_names += [m for m in found if m not in map_names]
    family = env_map_family(fields)
    corridors = family != "grid"  # an env that plays corridors of one length per map
    for m in map_names:
        if M.map_family(m) == family:
            continue
        if family == "grid":
            owner = {"bottleneck": "a Bottleneck corridor; use env bottleneck-v0",
                     "tmaze": "a T-Maze corridor; use env tmaze-v0"}[M.map_family(m)]
            raise _fail(where, f"map {m!r} is {owner}")
        wanted = {"bottleneck": "Bottleneck corridors (bottleneck-L)", "tmaze": "T-Maze corridors (tmaze-L)"}[family]
        raise _fail(where, f"env {env_id} plays {wanted}, not {m!r}")
    probe = _probe_config(where, config_class, settings, map_names, family)
    agents = tuple(sorted(_int_list(where, "agents", data["agents"], 1, 10_000_000)))
    if family == "bottleneck" and agents != (2,):
        raise _fail(where, f"Bottleneck episodes have 2 agents, got agents {list(agents)}")
    if family == "tmaze" and agents != (probe.num_agents,):
        raise _fail(where, f"T-Maze preset {probe.preset} has {probe.num_agents} agent(s) per episode, "
                           f"got agents {list(agents)}")
    seeds = _int_list(where, "seeds", data["seeds"], 0, 2**32 - 1)
    steps = data.get("episode_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or not 1 <= steps <= MAX_EPISODE_STEPS):
        raise _fail(where, f"episode_steps must be an integer in 1..{MAX_EPISODE_STEPS} or null, got {steps!r}")
    if steps is None and not corridors:
        raise _fail(where, "episode_steps is required (null, the env's rule, exists for Bottleneck and T-Maze only)")
    metrics = data["metrics"]
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _fail(where, "metrics must be a non-empty list of metric names")
    bad = [m for m in metrics if m not in EPISODE_METRICS]
    if bad:
        raise _fail(where, f"unknown metric {bad[0]!r}; known: {', '.join(EPISODE_METRICS)}")
    axis = data["axis"]
    if axis not in AXES:
        raise _fail(where, f"axis must be one of {', '.join(AXES)}, got {axis!r}")
    if axis == "corridor_length" and not corridors:
        raise _fail(where, "axis corridor_length needs Bottleneck maps or T-Maze maps (corridors)")
    bands_data = data.get("bands") or {}
    if not isinstance(bands_data, dict):
        raise _fail(where, "bands must map a name to [low, high]")
    bands = []
    for band, bounds in bands_data.items():
        if not (isinstance(bounds, list) and len(bounds) == 2
                and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
                and bounds[0] <= bounds[1]):
            raise _fail(where, f"band {band!r} must be [low, high] with low <= high, got {bounds!r}")
        bands.append((str(band), float(bounds[0]), float(bounds[1])))
    description = data.get("description") or ""
    scenarios = data.get("scenarios")
    if not isinstance(description, str) or (scenarios is not None and not isinstance(scenarios, str)):
        raise _fail(where, "description and scenarios must be text")
    return Suite(name, env_id, dict(settings), tuple(map_names), agents, seeds, steps, tuple(metrics), axis,
                 description, tuple(bands), scenarios, where)


def _probe_config(where: str, config_class: type, settings: dict, map_names: list[str], family: str) -> Any:
    """The env config of the settings (validated by the config class itself): on a tiny stand-in
    map for a grid env (the suite's own maps may need data that is fetched later), on the
    longest corridor for T-Maze (a preset may limit the length)."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    probe: dict[str, Any] = {"map": "..", "num_agents": 1} if {"map", "num_agents"} <= fields else {}
    if family == "tmaze":
        probe["corridor_length"] = max(M.corridor_length(m, "tmaze") for m in map_names)
    try:
        return config_class(**settings, **probe)
    except MemarlError as error:
        raise _fail(where, str(error)) from None
    except TypeError as error:
        raise _fail(where, f"bad settings ({error})") from None


def load_suite_file(path: str | Path) -> Suite:
    """Read and validate the suite file at ``path``."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise MemarlError(f"cannot read suite file {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise MemarlError(f"{path}: not valid YAML{where}") from None
    return parse_suite(data, str(path))


def shipped_suite_files() -> dict[str, Path]:
    """name -> file of every suite shipped in ``eval/suites/`` (the file name is the suite name)."""
    return {p.stem: p for p in sorted(SUITE_DIR.glob("*.yaml"))}


def get_suite(name: str) -> Suite:
    """A registered suite by name, or a suite file by path (``.yaml`` / ``.yml``)."""
    from memarl.registry import SUITES

    if name.endswith((".yaml", ".yml")) or "/" in name:
        return load_suite_file(name)
    return SUITES.make(name)


def _register() -> None:
    from memarl.registry import SUITES

    for name, path in shipped_suite_files().items():
        SUITES.register(name, "memarl.eval.suites:load_suite_file", path=str(path))


_register()

__all__ = ["Suite", "SuiteEpisode", "env_map_family", "get_suite", "load_suite_file", "parse_suite",
           "shipped_suite_files"]
