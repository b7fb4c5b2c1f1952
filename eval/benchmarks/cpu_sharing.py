"""Two trainings side by side on one machine: does each keep a fair share of its solo speed?

For each thread setting, a default training (``memarl train`` with its defaults: Bottleneck,
SRMT, 512 envs) runs alone for ``--seconds``, then two identical ones run at the same time. Each
run's speed is its own measured agent-steps/s (the progress line's SPS, counted from the first
update, so start-up is not in it), read from the last progress line before it is stopped.
The ratio side-by-side / solo is the fair-sharing figure: with ``C`` cores and two runs, 0.5 is a
perfect split of the machine; the issue asks for at least 0.4, with the solo speed unchanged.

Settings compared (``--settings``):

* ``torch-default``: torch's own default, the behaviour before issue 8: every run takes all
  cores (``--torch-threads`` = the core count), OpenMP threads spin while waiting;
* ``auto``: memarl's default (``--torch-threads 0``: the cores shared among the live
  trainings, see :mod:`memarl.train.threads`);
* ``one-thread``: ``--torch-threads 1``.

Run: ``.venv/bin/python eval/benchmarks/cpu_sharing.py --out eval/benchmarks/cpu_sharing.json``
(on an otherwise idle machine: about 2 x 3 x ``--seconds``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "torch-default": {"args": ["--torch-threads", str(os.cpu_count())], "env": {}},
    "auto": {"args": [], "env": {}},
    "one-thread": {"args": ["--torch-threads", "1"], "env": {}},
}
"""what each compared setting adds to the command line and the environment"""
_SPS = re.compile(r"SPS ([\d,]+)")


def _start(run_dir: Path, setting: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "memarl", "train", "--total-steps", "1000000000000",
               "--print-every-s", "2", "--checkpoint-every-s", "100000", "--run-dir", str(run_dir),
               *setting["args"]]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **setting["env"]}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


def _stop(process: subprocess.Popen) -> float:
    """Stop a run (Ctrl+C: it checkpoints and exits) and return its last reported SPS."""
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=300)
    speeds = [float(m.replace(",", "")) for m in _SPS.findall(output)]
    if not speeds:
        raise RuntimeError(f"no progress line from the run:\n{output[-2000:]}")
    return speeds[-1]


def measure(setting: dict, seconds: float, copies: int, workdir: Path) -> list[float]:
    """SPS of ``copies`` runs of ``setting`` started together and stopped after ``seconds``."""
    stamp = f"{time.time_ns()}"
    processes = [_start(workdir / f"run-{stamp}-{i}", setting) for i in range(copies)]
    time.sleep(seconds)
    return [_stop(p) for p in processes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each measurement")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--repeats", type=int, default=1, help="solo/pair rounds per setting")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()

    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
               "seconds": args.seconds, "settings": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.settings:
            rounds = []
            for _ in range(args.repeats):
                solo = measure(SETTINGS[name], args.seconds, 1, Path(workdir))[0]
                pair = measure(SETTINGS[name], args.seconds, 2, Path(workdir))
                rounds.append({"solo_sps": solo, "pair_sps": pair,
                               "pair_over_solo": [round(p / solo, 3) for p in pair]})
                print(f"{name:14s} solo {solo:9,.0f}  side by side {pair[0]:9,.0f} "
                      f"{pair[1]:9,.0f}  ratio {min(pair) / solo:.2f}", flush=True)
            results["settings"][name] = rounds
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
