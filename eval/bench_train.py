"""``memarl bench train``: training speed of our engines side by side, in one invocation.

Each engine trains the same agent on the same env from the same seed for the same number of
agent-steps (``memarl train`` in this process, one engine after the other, so the machine and its
load are the same). For each: agent-steps/s over the whole run and in steady state, the ratio to
the first engine, the score the env declares (CSR on Bottleneck) over the last training
episodes at the same step count, the policy lag, and where the time went per update.

The sample-factory backend is the third engine of issue 11; until it exists this benchmark
names it as not measured rather than printing a number for it.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from memarl.configs import Range, option_label, validate_fields
from memarl.errors import MemarlError
from memarl.files import check_creatable_dir, check_output_file

ENGINES = ("sync", "async")
"""engines this benchmark can run (the sample-factory backend is not built yet)"""
PROFILE = (("env_s", "env.step"), ("policy_s", "acting forward"),
           ("learn_forward_s", "learner forward + loss"),
           ("learn_backward_s", "learner backward + step"), ("transport_s", "transport"),
           ("learner_wait_s", "learner idle (waiting for segments)"))
"""the time profile's rows: TensorBoard scalar under perf/ (per update) and its label"""


@dataclasses.dataclass
class BenchTrainConfig:
    """``memarl bench train``: agent-steps/s and score of our training engines, side by side."""

    env: str = "bottleneck"
    """env id"""
    agent: str = "srmt"
    """agent name (its preset for the env)"""
    total_steps: Annotated[int, Range(1, 10**12)] = 1_000_000
    """agent-steps each engine trains for"""
    engines: tuple[str, ...] = ENGINES
    """comma-separated engines to run, the first is the reference of the ratios: sync, async"""
    num_envs: Annotated[int, Range(1, 1_000_000)] = 512
    """envs per batch (the train default)"""
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    """seed of every engine's run"""
    out: str | None = None
    """write bench_train_<env>_<agent>.json and .md into this folder"""
    force: bool = False
    """let --out replace earlier results"""

    def validate(self) -> list[Path]:
        """Check every option and output before anything runs; returns the files to write."""
        from memarl.agents import agent_config_class
        from memarl.registry import AGENTS, ENVS

        validate_fields(self, label=option_label)
        ENVS.resolve(self.env)
        AGENTS.get(self.agent)
        agent_config_class(self.agent)
        unknown = [name for name in self.engines if name not in ENGINES]
        if unknown or not self.engines:
            raise MemarlError(f"--engines must name some of {', '.join(ENGINES)}, got "
                              f"{','.join(self.engines) or 'nothing'}"
                              + (" (the sample-factory backend is not built yet)"
                                 if "sample-factory" in unknown else ""))
        if len(set(self.engines)) != len(self.engines):
            raise MemarlError(f"--engines names an engine twice: {','.join(self.engines)}")
        if self.out is None:
            return []
        check_creatable_dir(self.out, "--out")
        stem = Path(self.out) / f"bench_train_{self.env.replace('-', '_')}_{self.agent}"
        files = [stem.with_suffix(".json"), stem.with_suffix(".md")]
        for path in files:
            check_output_file(path, "--out", self.force)
        return files


def _scalars(run_dir: Path) -> dict[str, list[tuple[float, int, float]]]:
    """Every scalar of a run's TensorBoard log: tag -> [(wall time, step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.wall_time, e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def _steady_sps(sps_events: list[tuple[float, int, float]]) -> float:
    """Agent-steps/s between the update at 20% of the run and the last one (start-up, imports
    and the first updates left out)."""
    if len(sps_events) < 3:
        return float("nan")
    first = sps_events[len(sps_events) // 5]
    last = sps_events[-1]
    return (last[1] - first[1]) / max(last[0] - first[0], 1e-9)


def run_engine(cfg: BenchTrainConfig, engine: str, run_dir: Path) -> dict[str, Any]:
    """Train with ``engine`` into ``run_dir``; the measured numbers of that run."""
    from memarl.train.trainer import TrainConfig, train

    train_cfg = TrainConfig(env=cfg.env, agent=cfg.agent, total_steps=cfg.total_steps,
                            run_dir=str(run_dir), seed=cfg.seed, num_envs=cfg.num_envs,
                            async_=engine == "async", print_every_s=1e9,
                            checkpoint_every_s=1e9)
    start = time.perf_counter()
    train(train_cfg, quiet=True)
    wall_s = time.perf_counter() - start
    scalars = _scalars(run_dir)
    steps = scalars["perf/SPS"][-1][1]

    def mean(tag: str) -> float:
        values = [value for _, _, value in scalars.get(tag, [])]
        return float(np.mean(values[len(values) // 5:])) if values else float("nan")

    from memarl.train.checkpoint import load_checkpoint, newest_readable_checkpoint
    payload = load_checkpoint(newest_readable_checkpoint(run_dir / "checkpoints").path)
    metric = payload.get("score_metric")
    score_events = scalars.get(f"charts/{metric}", [])
    update_s = wall_s / max(len(scalars["perf/SPS"]), 1)
    profile = {key: mean(f"perf/{key}") for key, _ in PROFILE if key != "learner_wait_s"}
    if engine == "async":
        profile["learner_wait_s"] = mean("perf/learner_wait_fraction") * update_s
    return {
        "engine": engine, "agent_steps": steps, "updates": len(scalars["perf/SPS"]),
        "wall_s": wall_s, "sps": steps / wall_s, "steady_sps": _steady_sps(scalars["perf/SPS"]),
        "score_metric": metric,
        "score": score_events[-1][2] if score_events else None,
        "policy_lag_avg": mean("async/policy_lag_avg"),
        "policy_lag_max": max((v for _, _, v in scalars.get("async/policy_lag_max", [])),
                              default=float("nan")),
        "dropped_segments": scalars.get("async/dropped_segments", [(0, 0, 0.0)])[-1][2],
        "torch_threads": mean("perf/torch_threads"),
        "profile_s_per_update": profile,
    }


def bench_train(cfg: BenchTrainConfig, keep_runs: Path | None = None) -> dict[str, Any]:
    """Run every engine of ``cfg``; the runs go to a temporary folder (or ``keep_runs``)."""
    from memarl.train.threads import available_cores

    results = []
    with tempfile.TemporaryDirectory(prefix="memarl-bench-train-") as scratch:
        base = keep_runs or Path(scratch)
        for engine in cfg.engines:
            results.append(run_engine(cfg, engine, base / engine))
    reference = results[0]
    for result in results:
        result["sps_ratio"] = result["sps"] / reference["sps"]
        result["steady_sps_ratio"] = result["steady_sps"] / reference["steady_sps"]
    return {"benchmark": "train", "env": cfg.env, "agent": cfg.agent,
            "total_steps": cfg.total_steps, "num_envs": cfg.num_envs, "seed": cfg.seed,
            "cores": available_cores(), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
            "reference": reference["engine"], "results": results,
            "not_measured": {"sample-factory": "the sample-factory backend (issue 11, item 5) "
                                               "is not built yet"}}


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def format_bench_train(result: dict[str, Any]) -> str:
    """The Markdown report: speed and score per engine, then the time profile."""
    rows = result["results"]
    metric = rows[0]["score_metric"] or "score"
    lines = [f"# memarl bench train: {result['agent']} on {result['env']}", "",
             f"{result['total_steps']:,} agent-steps per engine, {result['num_envs']} envs, seed "
             f"{result['seed']}, {result['cores']} cores ({result['machine']}), "
             f"{result['date']}. Ratios against `{result['reference']}` in the same invocation.",
             "",
             f"| engine | wall s | agent-steps/s | ratio | steady agent-steps/s | ratio | "
             f"{metric} (last training episodes) | policy lag avg / max | torch threads |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['engine']} | {_number(row['wall_s'], 1)} | {_number(row['sps'])} | "
                     f"{_number(row['sps_ratio'], 2)} | {_number(row['steady_sps'])} | "
                     f"{_number(row['steady_sps_ratio'], 2)} | {_number(row['score'], 3)} | "
                     f"{_number(row['policy_lag_avg'], 2)} / {_number(row['policy_lag_max'])} | "
                     f"{_number(row['torch_threads'])} |")
    for name, why in result["not_measured"].items():
        lines.append(f"| {name} | not measured: {why} | | | | | | | |")
    lines += ["", "Where the time goes, seconds per update (mean after the first 20% of updates; "
              "async: env and acting forward run in the actor processes, beside the learner):",
              "", "| | " + " | ".join(row["engine"] for row in rows) + " |",
              "|---|" + "---:|" * len(rows)]
    for key, label in PROFILE:
        lines.append(f"| {label} | " + " | ".join(
            _number(row["profile_s_per_update"].get(key), 4) for row in rows) + " |")
    lines.append("| whole update (wall / updates) | " + " | ".join(
        _number(row["wall_s"] / max(row["updates"], 1), 4) for row in rows) + " |")
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], files: list[Path]) -> None:
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (json.dumps(result, indent=2) if path.suffix == ".json"
                else format_bench_train(result)) + "\n"
        path.write_text(text)
        print(f"wrote {path}")
