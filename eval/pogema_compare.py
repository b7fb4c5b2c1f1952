"""POGEMA's six high-level metrics for our policy among the published baselines.

The POGEMA paper (Skrynnik et al., ICLR 2025) summarises each algorithm by six numbers in 0..1
(plotted x100 on a radar chart). They are computed from the per-instance benchmark results by
``raw_data_LMAPF/build_web_plot.py`` and ``raw_data_MAPF/build_web_plot.py`` of
github.com/Cognitive-AI-Systems/pogema-benchmark at commit
c5dd4fd55499de9fefec4d2033f4c027aece86fd (read, not copied; reimplemented here). What they do:

* **Instances.** In each suite folder the records of all algorithms are inner-joined on the
  instance key ``(map_name, num_agents, seed)``, so every metric of every algorithm is taken over
  the instances that *all* algorithms have. (LMAPF: MATS-LP covers 256 of 512 MovingAI and 300 of
  768 Warehouse instances, so those metrics use that subset for everyone.)
* **Performance** (01-random + 02-mazes pooled), **Out-of-Distribution** (04-movingai) and
  **Cooperation** (05-puzzles): per instance, the best over the algorithms of the figure;

  - LMAPF: best = max ``avg_throughput``; instances with best = 0 are left out; score = throughput / best.
  - MAPF: best = min ``SoC`` among algorithms with ``CSR > 0``; instances nobody solved are left
    out; score = best / SoC if the algorithm solved it, else 0.

  The metric is the mean score over the instances (pooled, not a mean of suite means).
* **Pathfinding** (06-pathfinding, one agent on a 256x256 city, ``on_target: nothing``): per
  instance best = min over the algorithms of ``ep_length`` (LMAPF figure) or ``makespan`` (MAPF
  figure); score = best / value (0 if value <= 0); mean over instances. The "optimal path cost"
  of the paper's text is thus the best cost any algorithm of the figure found.
* **Scalability** (03-warehouse, 32..192 agents): per agent count n, r(n) = mean ``runtime``
  (LMAPF) or mean ``runtime / makespan`` (MAPF) over the instances; s(n) = r(n) / n; for every
  pair n_i < n_j the ratio s(n_i) / s(n_j) (= agent-count ratio / runtime ratio); the metric is
  min(1, mean of the ratios). 1 means runtime grows at most linearly with the agents.
* **Coordination** (01-random + 02-mazes pooled): per episode c = (a_collisions + o_collisions) /
  (T x num_agents) with T = 256 for LMAPF (a constant in the script, also for Mazes, whose LMAPF
  episodes are 128 steps) and T = ``ep_length`` for MAPF; the metric is 1 - mean c. An algorithm
  whose records have no collision counters gets 1.0 (the script's default; RHCR, LaCAM, SCRIMP);
  our table marks those values. ``a_collisions`` counts non-wait actions refused because of
  another agent, ``o_collisions`` moves into an obstacle (pogema-benchmark
  ``algorithms/create_env.py``, CollisionsMetricWrapper).

The LMAPF figure has RHCR, Follower, MATS-LP, IQL, VDN, QMIX, QPLEX, MAMBA, ASwitcher and
LSwitcher; the MAPF figure LaCAM, SCRIMP, DCC, IQL, VDN, QMIX, QPLEX and MAMBA.

**Our policy.** Its rows are matched to the published instances by ``(map_name, num_agents,
seed)``. For the relative metrics the per-instance best is the published best *and ours*
(``best_value([published_best, ours])``), as if our policy were one more algorithm of the figure;
the baselines keep their published values (recomputing them would need every baseline's
per-instance results; on instances where ours beats the published best they would drop a
little -- the count is reported). Scalability uses our Warehouse rows (any seeds), Coordination
our matched Random/Mazes rows, with ``collisions`` (agent-agent, like ``a_collisions``) plus
``obstacle_collisions`` (like ``o_collisions``) when a row has it.

The carried table ``eval/data/pogema_published.json`` holds the baselines' six metrics and the
per-instance bests, derived from the raw data by :func:`published_table` (``python -m
memarl.eval.pogema_compare --regenerate DATA_DIR OUT``); the tests recompute it from the data.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from memarl.errors import MemarlError

MODES = ("lmapf", "mapf")
METRICS = ("Performance", "Out-of-Distribution", "Cooperation", "Scalability", "Coordination", "Pathfinding")

METRIC_FOLDERS = {
    "Performance": ("01-random", "02-mazes"),
    "Out-of-Distribution": ("04-movingai",),
    "Cooperation": ("05-puzzles",),
    "Scalability": ("03-warehouse",),
    "Coordination": ("01-random", "02-mazes"),
    "Pathfinding": ("06-pathfinding",),
}
"""the benchmark suite folders each metric is computed on"""

RELATIVE_METRICS = ("Performance", "Out-of-Distribution", "Cooperation", "Pathfinding")
"""metrics scored against the per-instance best of all algorithms"""

PAPER_ALGORITHMS = {
    "lmapf": ("RHCR", "Follower", "MATS-LP", "IQL", "VDN", "QMIX", "QPLEX", "MAMBA",
              "ASwitcher", "LSwitcher"),
    "mapf": ("LaCAM", "SCRIMP", "DCC", "IQL", "VDN", "QMIX", "QPLEX", "MAMBA"),
}
"""the algorithms of the paper's radar charts (build_web_plot.py), in its order"""

OUR_SUITES = {
    "pogema-random-lmapf": ("lmapf", "01-random"),
    "pogema-mazes-lmapf": ("lmapf", "02-mazes"),
    "pogema-warehouse-lmapf": ("lmapf", "03-warehouse"),
    "pogema-movingai-lmapf": ("lmapf", "04-movingai"),
    "pogema-puzzles-lmapf": ("lmapf", "05-puzzles"),
    "pogema-random-mapf": ("mapf", "01-random"),
    "pogema-mazes-mapf": ("mapf", "02-mazes"),
    "pogema-warehouse-mapf": ("mapf", "03-warehouse"),
    "pogema-movingai-mapf": ("mapf", "04-movingai"),
    "pogema-puzzles-mapf": ("mapf", "05-puzzles"),
    "pogema-pathfinding-mapf": ("both", "06-pathfinding"),
}
"""our suite name -> (mode it serves, benchmark folder); single-agent pathfinding serves both"""

WAREHOUSE_AGENTS = (32, 64, 96, 128, 160, 192)
"""the agent counts of the Warehouse suite (Scalability)"""

LMAPF_COORDINATION_STEPS = 256
"""the episode length build_web_plot.py divides LMAPF collisions by (also for 128-step Mazes)"""

SOURCE = {
    "repository": "github.com/Cognitive-AI-Systems/pogema-benchmark",
    "commit": "c5dd4fd55499de9fefec4d2033f4c027aece86fd",
    "data": "raw_data_LMAPF/<suite>/*.json, raw_data_MAPF/<suite>/*.json",
    "formulas": "raw_data_LMAPF/build_web_plot.py, raw_data_MAPF/build_web_plot.py",
    "paper": "Skrynnik et al., POGEMA: A Benchmark Platform for Cooperative Multi-Agent Pathfinding, "
             "ICLR 2025",
}

TABLE_PATH = Path(__file__).resolve().parent / "data" / "pogema_published.json"

Key = tuple[str, int, int]
"""an instance: (map_name, num_agents, seed)"""


# --------------------------------------------------------------------------------------------
# per-episode quantities and the metric formulas (pure functions on rows)

def _number(row: dict, key: str) -> float:
    """``row[key]`` as a float; rows read from a CSV carry strings."""
    if key not in row or row[key] is None or row[key] == "":
        raise MemarlError(f"an episode row has no {key!r} (keys: {', '.join(sorted(row))})")
    try:
        return float(row[key])
    except (TypeError, ValueError):
        raise MemarlError(f"an episode row has a non-numeric {key!r}: {row[key]!r}") from None


def instance_key(row: dict, folder: str) -> Key:
    """The published instance a row is (warehouse rows may omit the map, any row a seed of 0)."""
    map_name = row.get("map_name") or ("wfi_warehouse" if folder == "03-warehouse" else None)
    if map_name is None:
        raise MemarlError(f"an episode row of {folder} has no 'map_name'")
    seed = int(_number(row, "seed")) if row.get("seed") not in (None, "") else 0
    return str(map_name), int(_number(row, "num_agents")), seed


def quality_kind(metric: str, mode: str) -> str:
    """What a relative metric compares per instance: 'throughput', 'soc' or 'length'."""
    if metric == "Pathfinding":
        return "length"
    return "throughput" if mode == "lmapf" else "soc"


def episode_quality(row: dict, kind: str, mode: str) -> float | None:
    """The per-instance quantity of ``kind``; None for an unsolved MAPF episode (kind 'soc')."""
    if kind == "throughput":
        return _number(row, "avg_throughput")
    if kind == "soc":
        return _number(row, "SoC") if _number(row, "CSR") > 0 else None
    # Pathfinding: the LMAPF figure compares episode lengths, the MAPF figure makespans
    return _number(row, "episode_length" if mode == "lmapf" else "makespan")


def best_value(values: Iterable[float | None], kind: str) -> float | None:
    """The best of one instance's values: max throughput, min solved SoC, min length (None: none)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if kind == "throughput" else min(present)


def instance_ratio(value: float | None, best: float | None, kind: str) -> float | None:
    """One instance's score in 0..1 against ``best``; None when the paper leaves the instance out."""
    if kind == "throughput":
        if best is None or best <= 0:  # nobody reached a goal: not counted
            return None
        return float(value) / best
    if kind == "soc":
        if best is None:  # nobody solved it: not counted
            return None
        return 0.0 if value is None else best / value
    return best / value if value is not None and value > 0 else 0.0


def relative_metric(values: dict[Key, float | None], bests: dict[Key, float | None],
                    kind: str) -> tuple[float | None, int]:
    """Mean score over the instances that have a best and a value, and how many there were."""
    scores = [instance_ratio(values[k], bests[k], kind) for k in values if k in bests]
    scores = [s for s in scores if s is not None]
    return (float(np.mean(scores)) if scores else None), len(scores)


def scalability(rows: list[dict], mode: str) -> float | None:
    """min(1, mean over agent-count pairs n_i < n_j of s(n_i) / s(n_j)), s(n) = mean runtime / n.

    MAPF divides each episode's runtime by its makespan first. None with fewer than two agent
    counts or a non-positive mean runtime (no ratio can be formed).
    """
    per_count: dict[int, list[float]] = {}
    for row in rows:
        runtime = _number(row, "runtime")
        if mode == "mapf":
            runtime /= _number(row, "makespan")
        per_count.setdefault(int(_number(row, "num_agents")), []).append(runtime)
    scaled = [float(np.mean(per_count[n])) / n for n in sorted(per_count)]
    if len(scaled) < 2 or min(scaled) <= 0:
        return None
    ratios = [small / large for small, large in itertools.combinations(scaled, 2)]
    return min(1.0, float(np.mean(ratios)))


def collision_rate(row: dict, mode: str) -> float:
    """Collisions per agent-step of one episode (agent-agent plus agent-obstacle when recorded:
    ``o_collisions`` in the published records, ``obstacle_collisions`` in our rows)."""
    key = "o_collisions" if row.get("o_collisions") not in (None, "") else "obstacle_collisions"
    obstacle = 0.0 if row.get(key) in (None, "") else _number(row, key)
    collisions = _number(row, "collisions") + obstacle
    steps = LMAPF_COORDINATION_STEPS if mode == "lmapf" else _number(row, "episode_length")
    return collisions / (steps * _number(row, "num_agents"))


def coordination(rows: list[dict], mode: str) -> float | None:
    """1 - mean collisions per agent-step over the episodes (None without episodes)."""
    if not rows:
        return None
    return 1.0 - float(np.mean([collision_rate(r, mode) for r in rows]))


# --------------------------------------------------------------------------------------------
# the published results: raw records -> our row format -> metrics and per-instance bests

def record_row(record: dict) -> dict:
    """A pogema-benchmark record as one of our episode rows (collisions = a + o when recorded)."""
    grid, metrics = record["env_grid_search"], record["metrics"]
    row: dict[str, Any] = {"map_name": grid.get("map_name", "wfi_warehouse"),
                           "num_agents": grid.get("num_agents", 1), "seed": grid.get("seed", 0)}
    for ours, theirs in (("avg_throughput", "avg_throughput"), ("CSR", "CSR"), ("SoC", "SoC"),
                         ("makespan", "makespan"), ("episode_length", "ep_length"), ("runtime", "runtime")):
        if theirs in metrics:
            row[ours] = metrics[theirs]
    if "a_collisions" in metrics:
        row["collisions"] = metrics["a_collisions"] + metrics.get("o_collisions", 0)
    return row


def load_published(data_dir: Path, mode: str, folder: str) -> dict[str, dict[Key, dict]]:
    """algorithm -> instance -> row, restricted (like the paper's inner join) to the common instances."""
    paths = sorted((Path(data_dir) / mode.upper() / folder).glob("*.json"))
    if not paths:
        raise MemarlError(f"no published results in {Path(data_dir) / mode.upper() / folder}")
    by_algo: dict[str, dict[Key, dict]] = {}
    for path in paths:
        records = json.loads(path.read_text())
        algo = records[0]["algorithm"].replace("-tuned", "")
        rows = [record_row(r) for r in records]
        by_algo[algo] = {instance_key(r, folder): r for r in rows}
    common = set.intersection(*(set(rows) for rows in by_algo.values()))
    return {algo: {k: rows[k] for k in sorted(common)} for algo, rows in by_algo.items()}


def _pooled(data_dir: Path, mode: str, metric: str) -> dict[str, dict[tuple[str, Key], dict]]:
    """The metric's folders pooled: algorithm -> (folder, instance) -> row."""
    pooled: dict[str, dict[tuple[str, Key], dict]] = {}
    for folder in METRIC_FOLDERS[metric]:
        for algo, rows in load_published(data_dir, mode, folder).items():
            pooled.setdefault(algo, {}).update({(folder, k): r for k, r in rows.items()})
    return pooled


def published_metrics(data_dir: Path, mode: str) -> tuple[dict[str, dict[str, float | None]],
                                                          dict[str, dict[Key, float | None]], list[str]]:
    """The paper's six metrics of every published algorithm of ``mode``, the per-instance bests
    (folder -> instance -> best) and the algorithms without collision counters."""
    algos = PAPER_ALGORITHMS[mode]
    table: dict[str, dict[str, float]] = {a: {} for a in algos}
    bests: dict[str, dict[Key, float | None]] = {}
    no_counters: list[str] = []
    for metric in METRICS:
        pooled = _pooled(data_dir, mode, metric)
        missing = [a for a in algos if a not in pooled]
        if missing:
            raise MemarlError(f"published {mode} results lack {', '.join(missing)} for {metric}")
        if metric in RELATIVE_METRICS:
            kind = quality_kind(metric, mode)
            values = {a: {k: episode_quality(r, kind, mode) for k, r in pooled[a].items()} for a in algos}
            best = {k: best_value([values[a][k] for a in algos], kind) for k in values[algos[0]]}
            for algo in algos:
                table[algo][metric] = relative_metric(values[algo], best, kind)[0]
            for (folder, key), value in best.items():
                bests.setdefault(folder, {})[key] = value
        elif metric == "Scalability":
            for algo in algos:
                table[algo][metric] = scalability(list(pooled[algo].values()), mode)
        else:  # Coordination
            for algo in algos:
                rows = list(pooled[algo].values())
                if all("collisions" in r for r in rows):
                    table[algo][metric] = coordination(rows, mode)
                else:  # the script's default for records without collision counters
                    table[algo][metric] = 1.0
                    no_counters.append(algo)
    return table, bests, no_counters


def _encode_bests(bests: dict[Key, float | None], folder: str) -> dict:
    """Per-instance bests as {map: {seed: [best per agent count]}} (small, and readable)."""
    counts = sorted({k[1] for k in bests})
    maps: dict[str, dict[str, list]] = {}
    for map_name, seed in sorted({(k[0], k[2]) for k in bests}):
        keys = [(map_name, n, seed) for n in counts]
        if any(k not in bests for k in keys):  # the dense layout needs every agent count per map/seed
            raise MemarlError(f"published {folder} instances are not a full grid at {map_name} seed {seed}")
        # whole numbers (SoC, lengths) without the ".0" keep the file small
        maps.setdefault(map_name, {})[str(seed)] = [
            int(bests[k]) if bests[k] is not None and float(bests[k]).is_integer() else bests[k] for k in keys]
    return {"num_agents": counts, "maps": maps}


def decode_bests(encoded: dict) -> dict[Key, float | None]:
    """The inverse of the carried layout: instance -> best."""
    return {(map_name, n, int(seed)): value
            for map_name, seeds in encoded["maps"].items() for seed, values in seeds.items()
            for n, value in zip(encoded["num_agents"], values)}


def published_table(data_dir: str | Path) -> dict:
    """The carried table, derived from the raw published records in ``data_dir`` (MAPF/, LMAPF/)."""
    out: dict[str, Any] = {
        "source": SOURCE,
        "derivation": "python -m memarl.eval.pogema_compare --regenerate DATA_DIR OUT; metrics in 0..1 "
                      "rounded to 6 digits; best = per-instance best over the figure's algorithms "
                      "(LMAPF: max avg_throughput; MAPF: min SoC of solved, null if none solved; "
                      "06-pathfinding: min ep_length (LMAPF) or makespan (MAPF)) on the instances all "
                      "of them have",
    }
    for mode in MODES:
        metrics, bests, no_counters = published_metrics(Path(data_dir), mode)
        out[mode] = {
            "algorithms": list(PAPER_ALGORITHMS[mode]),
            "metrics": {a: {m: None if v is None else round(v, 6) for m, v in row.items()}
                        for a, row in metrics.items()},
            "coordination_default": no_counters,
            "instances": {folder: len(b) for folder, b in sorted(bests.items())},
            "best": {folder: _encode_bests(b, folder) for folder, b in sorted(bests.items())},
        }
    return out


def dump_table(table: dict) -> str:
    """JSON with nested objects indented and each list of numbers on one line (small, diffable)."""
    def fmt(obj: Any, depth: int) -> str:
        if isinstance(obj, dict) and obj:
            pad = " " * (depth + 1)
            items = [f"{pad}{json.dumps(k)}: {fmt(v, depth + 1)}" for k, v in obj.items()]
            return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
        return json.dumps(obj, separators=(", ", ": "), allow_nan=False)
    return fmt(table, 0) + "\n"


def load_table(path: Path = TABLE_PATH) -> dict:
    """The carried table (``eval/data/pogema_published.json``)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MemarlError(f"the published POGEMA table {path} is missing (regenerate it with "
                          "python -m memarl.eval.pogema_compare --regenerate DATA_DIR OUT)") from None


# --------------------------------------------------------------------------------------------
# our results among the published ones

def _required_keys(folder: str, mode: str) -> tuple[str, ...]:
    """The row keys the metrics of ``mode`` read from a suite of ``folder``."""
    if folder == "03-warehouse":
        return ("num_agents", "runtime") + (("makespan",) if mode == "mapf" else ())
    if folder == "06-pathfinding":
        return ("map_name", "num_agents", "seed", "episode_length" if mode == "lmapf" else "makespan")
    keys = ("map_name", "num_agents", "seed") + (("avg_throughput",) if mode == "lmapf" else ("CSR", "SoC"))
    if folder in ("01-random", "02-mazes"):
        keys += ("collisions",) + (("episode_length",) if mode == "mapf" else ())
    return keys


def _has(row: dict, key: str) -> bool:
    """Whether ``row`` has ``key`` (a number, or a non-empty map name)."""
    if key == "map_name":
        return bool(row.get(key))
    try:
        _number(row, key)
    except MemarlError:
        return False
    return True


def _checked_rows(results: dict[str, list[dict]], mode: str) -> dict[str, list[dict]]:
    """folder -> our rows for ``mode``; one-line errors for unknown suites and incomplete rows."""
    by_folder: dict[str, list[dict]] = {}
    for suite, rows in results.items():
        if suite not in OUR_SUITES:
            raise MemarlError(f"unknown POGEMA suite {suite!r} for the comparison; "
                              f"known: {', '.join(OUR_SUITES)}")
        suite_mode, folder = OUR_SUITES[suite]
        if suite_mode not in (mode, "both"):
            continue  # the other mode's suites do not enter this comparison
        for i, row in enumerate(rows):
            for key in _required_keys(folder, mode):
                if not _has(row, key):
                    raise MemarlError(f"{suite} row {i}: missing or non-numeric {key!r} "
                                      f"(needed for the {mode.upper()} comparison)")
        by_folder.setdefault(folder, []).extend(rows)
    return by_folder


def our_metrics(results: dict[str, list[dict]], mode: str, table: dict) -> dict[str, Any]:
    """Our six metrics against the carried bests, with coverage and where we beat the best.

    Returns {"metrics": {metric: value or None}, "coverage": {metric: [used, of]},
    "beats_best": {metric: instances where ours is strictly better than every published algorithm}}.
    """
    by_folder = _checked_rows(results, mode)
    carried = table[mode]
    bests = {folder: decode_bests(enc) for folder, enc in carried["best"].items()}
    values: dict[str, float | None] = {}
    coverage: dict[str, list[int]] = {}
    beats: dict[str, int] = {}
    for metric in METRICS:
        folders = [f for f in METRIC_FOLDERS[metric] if f in by_folder]
        if metric == "Scalability":
            rows = by_folder.get("03-warehouse", [])
            values[metric] = scalability(rows, mode) if rows else None
            counts = {int(_number(r, "num_agents")) for r in rows}
            coverage[metric] = [len(counts & set(WAREHOUSE_AGENTS)), len(WAREHOUSE_AGENTS)]
            continue
        total = sum(len(bests[f]) for f in METRIC_FOLDERS[metric])
        matched: dict[tuple[str, Key], dict] = {}
        for folder in folders:
            for row in by_folder[folder]:
                key = instance_key(row, folder)
                if key not in bests[folder]:
                    continue  # not one of the paper's instances
                if (folder, key) in matched:
                    raise MemarlError(f"two episode rows for {folder} instance {key}")
                matched[(folder, key)] = row
        coverage[metric] = [len(matched), total]
        if metric == "Coordination":
            values[metric] = coordination(list(matched.values()), mode)
            continue
        kind = quality_kind(metric, mode)
        scores, better = [], 0
        for (folder, key), row in matched.items():
            ours, published = episode_quality(row, kind, mode), bests[folder][key]
            best = best_value([published, ours], kind)  # our policy joins the figure's algorithms
            score = instance_ratio(ours, best, kind)
            if score is not None:
                scores.append(score)
            if ours is not None and best != published and best == ours:
                better += 1
        values[metric] = float(np.mean(scores)) if scores else None
        beats[metric] = better
    return {"metrics": values, "coverage": coverage, "beats_best": beats}


def _cell(value: float | None, mark: str = "") -> str:
    return "–" if value is None else f"{100 * value:.1f}{mark}"


def comparison_markdown(label: str, mode: str, ours: dict, carried: dict) -> str:
    """The comparison table: our policy first, then the paper's algorithms, metrics in percent."""
    lines = [f"# {label} among the published POGEMA {mode.upper()} baselines", "",
             "High-level metrics of the POGEMA paper (percent; 100 = best on every instance / linear "
             "scaling / no collisions). Baselines: raw results of "
             f"{SOURCE['repository']}@{SOURCE['commit'][:7]}, formulas of its build_web_plot.py "
             "(see memarl/eval/pogema_compare.py).", "",
             "| algorithm | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    cells = []
    for metric in METRICS:
        used, of = ours["coverage"][metric]
        partial = ours["metrics"][metric] is not None and used < of
        cells.append(_cell(ours["metrics"][metric], "†" if partial else ""))
    lines.append(f"| **{label}** | " + " | ".join(cells) + " |")
    for algo in carried["algorithms"]:
        row = carried["metrics"][algo]
        default = algo in carried["coordination_default"]
        lines.append(f"| {algo} | " + " | ".join(
            _cell(row[m], "*" if default and m == "Coordination" else "") for m in METRICS) + " |")
    beats = [f"{m} {n}" for m, n in ours["beats_best"].items() if ours["metrics"][m] is not None]
    lines += ["", "- –: not computed (suite not evaluated, or no episode matched a published instance).",
              "- †: computed on part of the paper's instances. Coverage (ours / the paper's): " + "; ".join(
                  f"{m} {u}/{o}" + (" agent counts" if m == "Scalability" else " instances")
                  for m, (u, o) in ours["coverage"].items()) + ".",
              "- *: no collision counters in the published records; 1.0 is the paper script's default.",
              "- Our per-instance best includes our own result, so our scores are <= 100. Instances where ours "
              "beats every published algorithm: " + (", ".join(beats) or "none") + "; the baselines' "
              "published values are not lowered for them.",
              "- Coordination: collisions per agent-step, divided by " +
              (f"{LMAPF_COORDINATION_STEPS} x agents (the paper script's constant, also for 128-step Mazes)"
               if mode == "lmapf" else "episode length x agents") +
              "; ours count agent-agent plus agent-obstacle collisions (`collisions` + `obstacle_collisions`), "
              "as the published `a_collisions` + `o_collisions`."]
    return "\n".join(lines) + "\n"


def plot_comparison(label: str, mode: str, ours: dict[str, float | None], carried: dict, path: Path) -> None:
    """Radar chart over the metrics ours has (all six if none); a bar chart below three."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    available = [m for m in METRICS if ours[m] is not None] or list(METRICS)
    series = {label: [ours[m] for m in available]}
    series.update({a: [carried["metrics"][a][m] for m in available] for a in carried["algorithms"]})
    colors = plt.get_cmap("tab10")

    def style(i: int, name: str) -> dict:
        # ours: thick black on top; the baselines: one tab10 colour each (ours takes no colour)
        if name == label:
            return {"color": "black", "linewidth": 3.5, "zorder": 5}
        return {"color": colors((i - 1) % 10), "linewidth": 1.5, "zorder": 2}

    if len(available) >= 3:
        angles = np.linspace(0, 2 * np.pi, len(available), endpoint=False).tolist()
        fig, ax = plt.subplots(figsize=(8, 8), subplot_kw={"polar": True})
        for i, (name, vals) in enumerate(series.items()):
            if any(v is None for v in vals):
                continue  # a polygon with a hole would mislead
            ys = [100 * v for v in vals]
            ax.plot(angles + angles[:1], ys + ys[:1], label=name, **style(i, name))
        ax.set_xticks(angles)
        ax.set_xticklabels(available)
        ax.tick_params(axis="x", pad=14)
        ax.set_ylim(0, 100)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=4, fontsize=9)
    else:
        fig, ax = plt.subplots(figsize=(3 + 3 * len(available), 4.5))
        width = 0.8 / len(series)
        for i, (name, vals) in enumerate(series.items()):
            xs = np.arange(len(available)) + (i - (len(series) - 1) / 2) * width
            ax.bar(xs, [0 if v is None else 100 * v for v in vals], width, label=name,
                   color=style(i, name)["color"])
        ax.set_xticks(np.arange(len(available)))
        ax.set_xticklabels(available)
        ax.set_ylabel("percent")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{label} vs published POGEMA {mode.upper()} baselines")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_comparison(results: dict[str, list[dict]], label: str, out_dir: Path, mode: str,
                     table: dict | None = None) -> Path:
    """``memarl eval --compare published``: comparison.md, comparison.json and comparison.png.

    ``results`` maps our suite names (``OUR_SUITES``) to their per-episode rows; suites of the
    other mode are ignored. Returns ``out_dir``.
    """
    mode = str(mode).lower()
    if mode not in MODES:
        raise MemarlError(f"comparison mode must be lmapf or mapf, got {mode!r}")
    table = load_table() if table is None else table
    ours = our_metrics(results, mode, table)
    carried = table[mode]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "comparison.md").write_text(comparison_markdown(label, mode, ours, carried))
    summary = {"mode": mode, "label": label, "source": table["source"], "metrics_order": list(METRICS),
               "ours": ours, "published": carried["metrics"],
               "coordination_default": carried["coordination_default"]}
    (out_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_comparison(label, mode, ours["metrics"], carried, out_dir / "comparison.png")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m memarl.eval.pogema_compare",
                                     description="regenerate the carried POGEMA baseline table")
    parser.add_argument("--regenerate", nargs=2, metavar=("DATA_DIR", "OUT"), required=True,
                        help="raw results folder (with MAPF/ and LMAPF/) and the JSON file to write")
    args = parser.parse_args(argv)
    data_dir, out = args.regenerate
    Path(out).write_text(dump_table(published_table(data_dir)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
