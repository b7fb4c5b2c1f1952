"""Kill -9 at random moments: a run resumed after every kill never fails and never loses work.

Starts a small real training (``python -m memarl train``, 8 envs x 8 steps, a checkpoint every
0.2 s so that writes are frequent) and SIGKILLs it at chosen moments; after every kill it runs
``memarl train --resume`` on the same directory, which is killed in turn, and at the end one
resume runs to completion. The moments, in the order of the rounds:

- ``before-first-checkpoint``: as soon as the process has started training (config.json
  written, or the resume line printed), before it writes any checkpoint of its own;
- ``during-write``: after a random delay (0-1.5 s) from the process's first update, the instant
  the next checkpoint temp file appears in RUN/checkpoints, i.e. inside ``torch.save`` + fsync +
  rename;
- ``random``: a uniform random delay (0-3 s) after the process's first update.

The first four rounds are before-first-checkpoint, during-write, before-first-checkpoint,
during-write; the rest are drawn at random (seeded). Checked after every kill and resume:

- every resume starts training (exit code 0 at the end, or killed by us; never an error);
- it resumes from the newest good checkpoint left by the kill, or from step 0 when none exists,
  so agent-steps never go back past the last good checkpoint, and that checkpoint never regresses;
- a resume from a checkpoint continues the checkpoint's episodes (its envs, memory and RNG
  states: the resume line says "its episodes continued");
- the temp files that a kill left behind are gone once the resume has started;
- the final resume completes with exit code 0 and a checkpoint at its total steps.

Reported: the training time each kill threw away (``training_lost_s``: from the newest
checkpoint, or the start of that process's training, to the kill) and the most of it.

Run: ``.venv/bin/python eval/benchmarks/kill_resume.py [--kills 10] [--seed 0]``; it prints
and writes a JSON summary (default eval/benchmarks/kill_resume.json). tests/test_kill_resume.py
runs the same function (a fast variant in CI, the full 10 kills marked slow).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TRAIN_OPTIONS = ["--num-envs", "8", "--rollout-len", "8", "--checkpoint-every-s", "0.2",
                 "--keep-checkpoints", "2", "--print-every-s", "1000", "--torch-threads", "1"]
"""a tiny config: an update takes a few milliseconds, a checkpoint is written every 0.2 s"""
ENDLESS_STEPS = 10 ** 9
"""total-steps of the killed runs: they never finish by themselves"""
FINAL_EXTRA_STEPS = 2048
"""agent-steps the final resume trains beyond the last good checkpoint"""
FIRST_KINDS = ["before-first-checkpoint", "during-write", "before-first-checkpoint",
               "during-write"]
KINDS = ("before-first-checkpoint", "during-write", "random")
START_TIMEOUT_S = 180.0
"""how long a process may take to start training (imports on a loaded 2-core machine)"""
_RESUMED = re.compile(r"^resuming .+ from (\S+) \(([\d,]+) agent-steps(?:, ([^)]*))?\)")
_FROM_ZERO = "starting at step 0"


class TrainProcess:
    """One ``memarl train`` subprocess whose output is read line by line in the background."""

    def __init__(self, args: list[str], run_dir: Path):
        self.run_dir = run_dir
        self.started_at = time.time()
        self.process = subprocess.Popen([sys.executable, "-m", "memarl", "train", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.resumed_from: tuple[str, int] | None = None
        """(checkpoint name, agent-steps) from the resume line; ("", 0) for a start at step 0"""
        self.episodes: str | None = None
        """what the resume line says of the episodes ("its episodes continued")"""
        self.training = threading.Event()
        self.updated = threading.Event()
        """set once the process has done an update (with the async engine its actors take a
        second or two to start after the resume line)"""
        self.readers = [threading.Thread(target=self._read, args=(self.process.stdout, self.stdout),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr),
                                         daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            match = _RESUMED.match(line)
            if match:
                self.resumed_from = (match[1], int(match[2].replace(",", "")))
                self.episodes = match[3]
                self.training.set()
            elif _FROM_ZERO in line:
                self.resumed_from = ("", 0)
                self.training.set()
            elif line.startswith("steps "):  # the progress line, printed after every update
                self.updated.set()

    def wait_training(self, new_run: bool) -> bool:
        """Wait until the process trains: a new run has written config.json, a resume has
        printed where it starts. False when it exited or timed out first."""
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline and self.process.poll() is None:
            if new_run:
                if (self.run_dir / "config.json").is_file():
                    return True
                time.sleep(0.002)
            elif self.training.wait(0.005):
                return True
        return False

    def kill(self) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        return self.finish(timeout=60)

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=10)
        return code

    def error_text(self) -> str:
        return " | ".join(self.stderr[-3:])


def temp_files(run_dir: Path) -> set[str]:
    """Atomic-write temp files in RUN and RUN/checkpoints (relative names)."""
    found = set()
    for folder in (run_dir, run_dir / "checkpoints"):
        if folder.is_dir():
            found |= {str(p.relative_to(run_dir)) for p in folder.iterdir()
                      if p.name.startswith(".") and p.name.endswith(".tmp")}
    return found


def checkpoint_names(run_dir: Path) -> set[str]:
    folder = run_dir / "checkpoints"
    return {p.name for p in folder.glob("ckpt_*.pt")} if folder.is_dir() else set()


def last_good_steps(run_dir: Path) -> tuple[str, int]:
    """The newest checkpoint that loads: (name, agent-steps), ("", 0) when there is none."""
    from memarl.train.checkpoint import newest_readable_checkpoint
    latest = newest_readable_checkpoint(run_dir / "checkpoints")
    if latest.path is None:
        return "", 0
    return latest.path.name, int(latest.payload["agent_steps"])


def kill_at(process: TrainProcess, kind: str, rng: random.Random, orphans: set[str]) -> dict:
    """Kill ``process`` at a moment of ``kind``; what was on disk at that moment."""
    run_dir = process.run_dir
    before = checkpoint_names(run_dir)
    caught_write = None
    if kind in ("during-write", "random"):
        process.updated.wait(START_TIMEOUT_S)  # the random delays count from the first update
    if kind == "during-write":
        time.sleep(rng.uniform(0.0, 1.5))  # not always the first write of the process
        deadline = time.time() + 60
        while time.time() < deadline and process.process.poll() is None:
            writing = temp_files(run_dir) - orphans
            if writing:
                caught_write = sorted(writing)
                break
            time.sleep(0.0002)
    elif kind == "random":
        time.sleep(rng.uniform(0.0, 3.0))
    moment_s = time.time() - process.started_at
    code = process.kill()
    return {
        "kind": kind,
        "kill_after_start_s": round(moment_s, 3),
        "exit_code": code,
        "killed_by_us": code == -signal.SIGKILL,
        "new_checkpoints_at_kill": sorted(checkpoint_names(run_dir) - before),
        "temp_file_at_kill": caught_write,
        "killed_mid_write": bool(caught_write and set(caught_write) & temp_files(run_dir)),
        "temp_files_left": sorted(temp_files(run_dir)),
    }


def run_kill_resume(run_dir: Path, kills: int = 10, seed: int = 0) -> dict:
    """Train in ``run_dir`` (which must not exist), kill -9 ``kills`` times, resume after each,
    then complete; returns the summary (``ok`` says whether every check passed)."""
    rng = random.Random(seed)
    kinds = (FIRST_KINDS + [rng.choice(KINDS) for _ in range(kills)])[:kills]
    run_dir = Path(run_dir)
    t0 = time.time()
    problems: list[str] = []
    rounds = []
    good_name, good_steps = "", 0
    orphans: set[str] = set()
    resumes_started = 0
    for index, kind in enumerate(kinds):
        new_run = index == 0
        args = (["--run-dir", str(run_dir), "--total-steps", str(ENDLESS_STEPS), *TRAIN_OPTIONS]
                if new_run else ["--resume", str(run_dir)])
        process = TrainProcess(args, run_dir)
        entry: dict = {"round": index, "command": "train" if new_run else "resume"}
        started = process.wait_training(new_run)
        training_from = time.time()
        if not started:
            code = process.kill()
            problems.append(f"round {index}: did not start training (exit {code}): "
                            f"{process.error_text()}")
            entry.update(exit_code=code, stderr=process.stderr[-5:])
            rounds.append(entry)
            break
        if not new_run:
            resumes_started += 1
            entry["resumed_from"] = process.resumed_from
            entry["episodes"] = process.episodes
            if good_steps and process.episodes != "its episodes continued":
                problems.append(f"round {index}: the resume from {good_name} did not continue "
                                f"its episodes ({process.episodes})")
            entry["expected_from"] = [good_name, good_steps]
            if process.resumed_from is None or process.resumed_from[1] != good_steps:
                problems.append(f"round {index}: resumed from {process.resumed_from}, the last "
                                f"good checkpoint was {good_name or 'none'} ({good_steps})")
            leftover = orphans & temp_files(run_dir)
            entry["orphans_removed"] = sorted(orphans - leftover)
            if leftover:
                problems.append(f"round {index}: temp files {sorted(leftover)} survived the "
                                f"resume's start")
        entry.update(kill_at(process, kind, rng, orphans))
        if not entry["killed_by_us"]:
            problems.append(f"round {index}: exited with {entry['exit_code']} before the kill: "
                            f"{process.error_text()}")
        if kind == "before-first-checkpoint" and entry["new_checkpoints_at_kill"]:
            problems.append(f"round {index}: meant to kill before the first checkpoint, but "
                            f"{entry['new_checkpoints_at_kill']} were written")
        new_name, new_steps = last_good_steps(run_dir)
        if new_steps < good_steps:
            problems.append(f"round {index}: last good checkpoint went back from {good_steps} "
                            f"to {new_steps} agent-steps")
        good_name, good_steps = new_name, new_steps
        entry["last_good_after_kill"] = [good_name, good_steps]
        # training time the kill threw away: since the newest checkpoint or since this process
        # began training, whichever is later
        saved_at = (run_dir / "checkpoints" / good_name).stat().st_mtime if good_name else 0.0
        killed_at = process.started_at + entry["kill_after_start_s"]
        entry["training_lost_s"] = round(max(0.0, killed_at - max(saved_at, training_from)), 3)
        orphans = set(entry["temp_files_left"])
        entry["stderr"] = [line for line in process.stderr if line.strip()][-3:]
        rounds.append(entry)

    final: dict = {}
    if not problems:
        total = good_steps + FINAL_EXTRA_STEPS
        process = TrainProcess(["--resume", str(run_dir), "--total-steps", str(total)], run_dir)
        started = process.wait_training(new_run=False)
        resumes_started += started
        leftover = orphans & temp_files(run_dir)
        code = process.finish(timeout=600)
        name, steps = last_good_steps(run_dir)
        final = {"total_steps": total, "resumed_from": process.resumed_from, "exit_code": code,
                 "final_checkpoint": name, "final_agent_steps": steps,
                 "orphans_removed": sorted(orphans - leftover),
                 "stderr": [line for line in process.stderr if line.strip()][-3:]}
        if code != 0:
            problems.append(f"final resume exited with {code}: {process.error_text()}")
        if not process.resumed_from or process.resumed_from[1] != good_steps:
            problems.append(f"final resume started from {process.resumed_from}, expected "
                            f"{good_steps}")
        if leftover:
            problems.append(f"final resume left temp files {sorted(leftover)}")
        if steps < total:
            problems.append(f"final checkpoint at {steps} agent-steps, below {total}")
    resumes_ok = sum(1 for r in rounds[1:] if r.get("killed_by_us") and "resumed_from" in r) \
        + (final.get("exit_code") == 0)
    return {
        "commands": {
            "start": f"python -m memarl train --run-dir RUN --total-steps {ENDLESS_STEPS} "
                     + " ".join(TRAIN_OPTIONS),
            "after_each_kill": "python -m memarl train --resume RUN",
            "final": f"python -m memarl train --resume RUN --total-steps "
                     f"<last good + {FINAL_EXTRA_STEPS}>",
        },
        "kills": sum(1 for r in rounds if r.get("killed_by_us")),
        "kinds": kinds,
        "seed": seed,
        "resumes_started": resumes_started,
        "resumes_succeeded": resumes_ok,
        "most_training_lost_s": max((r.get("training_lost_s", 0.0) for r in rounds), default=0.0),
        "rounds": rounds,
        "final": final,
        "wall_s": round(time.time() - t0, 1),
        "problems": problems,
        "ok": not problems,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kill -9 rounds (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random moments")
    parser.add_argument("--out", default=str(Path(__file__).with_name("kill_resume.json")),
                        help="JSON summary to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="memarl-kill-resume-") as folder:
        summary = run_kill_resume(Path(folder) / "run", kills=args.kills, seed=args.seed)
    text = json.dumps(summary, indent=2)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
