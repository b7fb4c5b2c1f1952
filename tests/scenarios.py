"""Scenario verification (test code): our seeded instances against the benchmark's stored scenarios.

The POGEMA benchmark configs list every instance explicitly (``scenarios:`` blocks of
``<folder>-<mode>.yaml``); :func:`check_scenarios` compares our engine's seeded starts, first
targets and (LMAPF) lifelong target sequences with them. It drives the engine's private state
to draw target sequences, which is why it lives with the tests.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from memarl.envs.maps import map_text
from memarl.envs.pogema_env import PogemaConfig, PogemaEnv
from memarl.envs.pogema_instances import PogemaInstances
from memarl.errors import MemarlError
from memarl.eval.suites import Suite, get_suite


def _yaml_load(text: str) -> Any:
    import yaml
    # the C loader is ~10x faster on the multi-megabyte scenario files
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


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
    limit = env.config.max_episode_steps
    r, wp = env.radius, int(env._wp[0])  # test code: drives the engine's own state
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


def check_scenarios(suite_dir: str | os.PathLike, suite: Suite | str, limit: int | None = None,
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
    if isinstance(suite, str):
        suite = get_suite(suite)
    if suite.scenarios is None:
        raise MemarlError(f"suite {suite.name} has no benchmark scenarios")
    mode = "lmapf" if suite.settings.get("on_target") == "restart" else "mapf"
    folder = Path(suite_dir)
    if (folder / suite.scenarios).is_dir():
        folder = folder / suite.scenarios
    path = folder / f"{suite.scenarios}-{mode}.yaml"
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
        ("max_episode_steps", [suite.episode_steps]), ("on_target", [suite.settings["on_target"]]),
        ("collision_system", [suite.settings["collision_system"]])] if grid(key) != ours]
    report: dict[str, Any] = {"suite": suite.name, "file": str(path), "config_ok": not config_diffs,
                              "config_diffs": config_diffs, "scenarios": 0, "instances": 0, "starts_ok": 0,
                              "targets_ok": 0, "mismatches": []}
    if mode == "lmapf":
        report["sequences_ok"] = 0
    options = dict(suite.settings)
    for chunk in chunks:
        scenario = next(iter(_yaml_load("scenarios:\n" + chunk)["scenarios"].values()))
        report["scenarios"] += 1
        text, seed = map_text(scenario["map_name"]), int(scenario["seed"])
        for n in counts:
            report["instances"] += 1
            cfg = PogemaConfig(map=text, num_agents=n, seed=seed, max_episode_steps=suite.episode_steps,
                               observation_type="POMAPF", **options)
            where = f"{scenario['map_name']} seed {seed} N={n}"
            if mode == "mapf":
                _, starts, seqs = PogemaInstances(cfg).instance(seed)
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
