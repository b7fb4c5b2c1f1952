"""``memarl bench train``: training speed of our engines side by side, in one invocation.

Each engine trains the same agent on the same env from the same seed for the same number of
agent-steps (``memarl train`` in this process, one engine after the other, so the machine and its
load are the same). For each: agent-steps/s over the whole run and in steady state, the ratio to
the first engine, the score the env declares (CSR on Bottleneck) over the last training
episodes at the same step count, the policy lag, and where the time went per update.

The third engine is sample-factory 2.1.1's APPO through our backend (``--backend
sample-factory``, train/sf_backend.py), the anchor we measure ourselves against. Where that
backend cannot train the agent (it refuses what sample-factory cannot express), the table says
so instead of a number.
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

ENGINES = ("sync", "async", "sample-factory")
"""engines this benchmark can run"""
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
    """comma-separated engines to run, the first is the reference of the ratios: sync, async,
    sample-factory"""
    num_envs: Annotated[int, Range(1, 1_000_000)] = 512
    """envs per batch (the train default)"""
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    """seed of every engine's run"""
    suite: str | None = "auto"
    """evaluate every engine's final policy on this suite ('auto': the env's test suite,
    bottleneck-test for bottleneck, none for other envs; 'none': no evaluation)"""
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
        if self.suite not in (None, "auto", "none"):
            from memarl.eval.suites import get_suite
            get_suite(self.suite)
        AGENTS.get(self.agent)
        agent_config_class(self.agent)
        unknown = [name for name in self.engines if name not in ENGINES]
        if unknown or not self.engines:
            raise MemarlError(f"--engines must name some of {', '.join(ENGINES)}, got "
                              f"{','.join(self.engines) or 'nothing'}")
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


TEST_SUITES = {"bottleneck": "bottleneck-test"}
"""the suite ``--suite auto`` evaluates on, per env"""


def evaluation_suite(cfg: BenchTrainConfig) -> str | None:
    if cfg.suite in (None, "none"):
        return None
    if cfg.suite == "auto":
        from memarl.registry import ENVS
        return TEST_SUITES.get(ENVS.resolve(cfg.env).removesuffix("-v0"))
    return cfg.suite


def evaluate_final_policy(engine: str, run_dir: Path, suite: str) -> dict[str, Any]:
    """Mean of every metric over the suite's episodes, for the engine's final policy."""
    import memarl
    from memarl.eval.evaluate import evaluate_policy
    if engine == "sample-factory":
        from memarl.train.sf_backend import load_sf_policy
        policy = load_sf_policy(run_dir)
    else:
        policy = memarl.load_policy(str(run_dir), which="latest")
    rows = evaluate_policy(policy, suite)
    numeric = [key for key, value in rows[0].items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)]
    return {"suite": suite, "episodes": len(rows),
            **{key: float(np.mean([row[key] for row in rows])) for key in numeric}}


def run_engine(cfg: BenchTrainConfig, engine: str, run_dir: Path) -> dict[str, Any]:
    """Train with ``engine`` into ``run_dir``; the measured numbers of that run."""
    from memarl.train.trainer import TrainConfig, train

    train_cfg = TrainConfig(env=cfg.env, agent=cfg.agent, total_steps=cfg.total_steps,
                            run_dir=str(run_dir), seed=cfg.seed, num_envs=cfg.num_envs,
                            async_=engine in ("async", "sample-factory"), print_every_s=1e9,
                            checkpoint_every_s=1e9,
                            backend="sample-factory" if engine == "sample-factory" else "memarl")
    start = time.perf_counter()
    train(train_cfg, quiet=True)
    wall_s = time.perf_counter() - start
    if engine == "sample-factory":
        return _sample_factory_result(run_dir, wall_s)
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


def _sample_factory_result(run_dir: Path, wall_s: float) -> dict[str, Any]:
    """The numbers of a sample-factory run, from the summary its backend writes (no time
    profile: its components are sample-factory's own)."""
    summary = json.loads((run_dir / "sf_summary.json").read_text())
    steps = int(summary["agent_steps"])
    nan = float("nan")
    lag_avg, lag_max = summary.get("policy_lag_avg"), summary.get("policy_lag_max")
    return {"engine": "sample-factory", "agent_steps": steps, "updates": None, "wall_s": wall_s,
            "sps": steps / wall_s,
            "steady_sps": summary.get("sps", nan),
            "score_metric": summary.get("score_metric"), "score": summary.get("score"),
            "policy_lag_avg": nan if lag_avg is None else lag_avg,
            "policy_lag_max": nan if lag_max is None else lag_max,
            "dropped_segments": None, "torch_threads": nan, "profile_s_per_update": {}}


def bench_train(cfg: BenchTrainConfig, keep_runs: Path | None = None) -> dict[str, Any]:
    """Run every engine of ``cfg``; the runs go to a temporary folder (or ``keep_runs``)."""
    from memarl.train.threads import available_cores

    results, not_measured = [], {}
    with tempfile.TemporaryDirectory(prefix="memarl-bench-train-") as scratch:
        base = keep_runs or Path(scratch)
        for engine in cfg.engines:
            try:
                result = run_engine(cfg, engine, base / engine)
                suite = evaluation_suite(cfg)
                result["test"] = (evaluate_final_policy(engine, base / engine, suite)
                                  if suite else None)
                results.append(result)
            except MemarlError as error:  # e.g. an agent sample-factory cannot express
                if engine == cfg.engines[0]:
                    raise
                not_measured[engine] = str(error)
    reference = results[0]
    for result in results:
        result["sps_ratio"] = result["sps"] / reference["sps"]
        result["steady_sps_ratio"] = result["steady_sps"] / reference["steady_sps"]
    return {"benchmark": "train", "env": cfg.env, "agent": cfg.agent,
            "total_steps": cfg.total_steps, "num_envs": cfg.num_envs, "seed": cfg.seed,
            "cores": available_cores(), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
            "reference": reference["engine"], "results": results,
            "not_measured": not_measured}


def _number(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def format_bench_train(result: dict[str, Any]) -> str:
    """The Markdown report: speed and score per engine, then the time profile."""
    rows = result["results"]
    metric = rows[0]["score_metric"] or "score"
    tests = [row.get("test") for row in rows]
    suite = next((test["suite"] for test in tests if test), "the test suite")
    lines = [f"# memarl bench train: {result['agent']} on {result['env']}", "",
             f"{result['total_steps']:,} agent-steps per engine, {result['num_envs']} envs, seed "
             f"{result['seed']}, {result['cores']} cores ({result['machine']}), "
             f"{result['date']}. Ratios against `{result['reference']}` in the same invocation.",
             "",
             f"| engine | wall s | agent-steps/s | ratio | steady agent-steps/s | ratio | "
             f"{metric} (last training episodes) | {metric} on {suite} | policy lag avg / max "
             f"| torch threads |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['engine']} | {_number(row['wall_s'], 1)} | {_number(row['sps'])} | "
                     f"{_number(row['sps_ratio'], 2)} | {_number(row['steady_sps'])} | "
                     f"{_number(row['steady_sps_ratio'], 2)} | {_number(row['score'], 3)} | "
                     f"{_number((row.get('test') or {}).get(metric), 3)} | "
                     f"{_number(row['policy_lag_avg'], 2)} / {_number(row['policy_lag_max'])} | "
                     f"{_number(row['torch_threads'])} |")
    for name, why in result["not_measured"].items():
        lines.append(f"| {name} | not measured: {why} | | | | | | | | |")
    lines += ["", "Where the time goes, seconds per update (mean after the first 20% of updates; "
              "async: env and acting forward run in the actor processes, beside the learner; "
              "sample-factory: its own components, not profiled here):",
              "", "| | " + " | ".join(row["engine"] for row in rows) + " |",
              "|---|" + "---:|" * len(rows)]
    for key, label in PROFILE:
        lines.append(f"| {label} | " + " | ".join(
            _number(row["profile_s_per_update"].get(key), 4) for row in rows) + " |")
    lines.append("| whole update (wall / updates) | " + " | ".join(
        _number(row["wall_s"] / row["updates"], 4) if row["updates"] else "-" for row in rows)
        + " |")
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], files: list[Path]) -> None:
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (json.dumps(result, indent=2) if path.suffix == ".json"
                else format_bench_train(result)) + "\n"
        path.write_text(text)
        print(f"wrote {path}")
