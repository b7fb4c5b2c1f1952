"""Wall time of ``memarl eval`` before and after the one-evaluator rewrite (issue 9), same machine.

Runs each evaluation as a fresh ``memarl eval`` process, alternating the two code versions so
that machine noise hits both alike: ``--before`` is a folder whose ``memarl`` package is the old
code (e.g. a git worktree of the commit before, importable as ``memarl`` from that folder's
parent via PYTHONPATH), the after side is the installed package. Writes JSON and Markdown::

    python eval/benchmarks/eval_wall.py --before /tmp/beforepkg --out eval/benchmarks/eval_wall \\
        --case greedy:pogema-random-lmapf --case greedy:pogema-mazes-lmapf \\
        --case runs/srmt-lmapf:pogema-random-lmapf --case runs/srmt-btl:bottleneck-test
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_eval(policy: str, suite: str, pythonpath: str | None, out: Path, extra: list[str]) -> float:
    """Seconds of one ``memarl eval`` process (exit 0 required)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    who = ["--baseline", policy] if not Path(policy).exists() else [policy, "--checkpoint", "latest"]
    argv = [sys.executable, "-m", "memarl.cli", "eval", *who, "--suite", suite, "--out", str(out), *extra]
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip()[-400:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="PYTHONPATH entry whose memarl is the old code")
    parser.add_argument("--case", action="append", required=True, help="POLICY:SUITE (a baseline name or a run)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--after-args", default="--quiet", help="extra options of the new eval")
    parser.add_argument("--out", required=True, help="output path without suffix (.json and .md are written)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.case:
            policy, suite = case.rsplit(":", 1)
            times = {"before": [], "after": []}
            for k in range(args.repeats):
                times["before"].append(run_eval(policy, suite, args.before, Path(tmp) / f"b{k}{suite}", []))
                times["after"].append(run_eval(policy, suite, None, Path(tmp) / f"a{k}{suite}",
                                               args.after_args.split()))
            best = {side: min(values) for side, values in times.items()}
            results.append({"policy": policy, "suite": suite, "seconds": times, "best": best,
                            "speedup": best["before"] / best["after"]})
            print(f"{policy} on {suite}: before {best['before']:.1f} s, after {best['after']:.1f} s "
                  f"({best['before'] / best['after']:.2f}x)", flush=True)
    report = {"cpu_count": os.cpu_count(), "repeats": args.repeats, "results": results,
              "command": " ".join(sys.argv)}
    Path(args.out + ".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# `memarl eval` wall time, before and after the one evaluator (issue 9)", "",
             f"`{report['command']}` on {os.cpu_count()} CPU cores; best of {args.repeats}; each run a "
             "fresh process (imports and policy loading included).", "",
             "| policy | suite | before (s) | after (s) | speed-up |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['policy']} | {r['suite']} | {r['best']['before']:.1f} | {r['best']['after']:.1f} | "
                     f"{r['speedup']:.2f}x |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
