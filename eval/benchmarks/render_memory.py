"""Peak memory and speed of ``memarl render``: long episodes must render in bounded memory.

Run as a plain file (eval/benchmarks is data, not a package)::

    .venv/bin/python eval/benchmarks/render_memory.py [--out eval/benchmarks/render_memory.json]

Trains two tiny checkpoints (rendering speed does not depend on training), then renders each
case in a fresh subprocess and records its wall time, frames per second, the peak RSS of the
Python process and that of its ffmpeg child (both ``VmHWM`` from ``/proc``: the ``ru_maxrss`` of
a process started by vfork + exec includes its parent's peak before the exec):

* a baseline without frames: torch, the policy and the L = 1000 env after its reset;
* Bottleneck, the L = 1000 test corridor (frames 144 x 16082 px, the cell lowered to 16 px),
  the full 2L+100 = 2100-step episode and a 300-step one, GIF + MP4;
* pogema-lmapf, 64 agents on a generated 32 x 32 map, 1000 steps and 100 steps, GIF + MP4;
* GIF only, Bottleneck L = 100 and L = 200 (301 / 501 frames at the default 24 px cell), with
  the streaming writer and with the list-based renderer of commit ``OLD_COMMIT`` (if git can
  show it), whose memory grows with the episode.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

OLD_COMMIT = "34fb79f"
"""the last commit whose eval/render.py kept every frame in a list"""
REPO_ROOT = Path(__file__).resolve().parents[2]


def train_tiny(run_dir: Path, env: str, *env_options: str) -> str:
    # in a subprocess, so that this process stays small (see peak_rss_mb)
    argv = [sys.executable, "-m", "memarl", "train", "--env", env, "--agent", "srmt", "--total-steps", "64", "--num-envs", "2",
            "--rollout-len", "4", "--num-minibatches", "1", "--print-every-s", "1000", "--run-dir", str(run_dir)]
    for option in env_options:
        argv += ["--env-opt", option]
    if subprocess.run(argv, stdout=subprocess.DEVNULL).returncode != 0:
        raise SystemExit(f"training the {env} checkpoint failed")
    return str(run_dir)


def peak_rss_mb() -> float:
    """Peak RSS of this process in MB: ``VmHWM``, which starts afresh at exec. (``ru_maxrss`` of
    a process started with vfork + exec also counts its parent's peak before the exec.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class ChildPeak:
    """Samples the peak RSS (VmHWM) of this process's ffmpeg children while rendering runs."""

    def __init__(self, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    # a child not yet past its exec still shares this process's memory
                    if not Path(f"/proc/{child.pid}/comm").read_text().startswith("ffmpeg"):
                        continue
                    for line in Path(f"/proc/{child.pid}/status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:  # the child exited between listing and reading
                    pass
            self._stop.wait(self.interval_s)

    def __enter__(self) -> "ChildPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def load_old_renderer(work: Path):
    """The list-based eval/render.py of OLD_COMMIT as a module, or None if git cannot show it."""
    try:
        source = subprocess.run(["git", "show", f"{OLD_COMMIT}:eval/render.py"], cwd=REPO_ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = work / "old_render.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_render", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_case(case: dict) -> dict:
    """Render one case in this process; returns its measurements."""
    import torch

    from memarl.eval.render import render_run

    out = Path(case["out"])
    # before sampling children starts: git's child would count this process's memory until its exec
    old_renderer = load_old_renderer(out.parent) if case["kind"] == "gif-list" else None
    start = time.perf_counter()
    with ChildPeak() as ffmpeg_peak:
        if case["kind"] == "render":
            written = render_run(case["run"], str(out), **case["options"])
            frames = _gif_frames(out)
        elif case["kind"] == "baseline":
            frames = _baseline(case)
            written = []
        elif case["kind"] == "gif-streaming":
            frames = _gif_streaming(case)
            written = [out]
        else:  # gif-list: the old renderer
            frames = _gif_old(old_renderer, case)
            written = [out]
    seconds = time.perf_counter() - start
    return {"frames": frames, "seconds": round(seconds, 2), "frames_per_s": round(frames / seconds, 1) if frames else None,
            "python_peak_rss_mb": peak_rss_mb(),
            "ffmpeg_peak_rss_mb": round(ffmpeg_peak.peak_kb / 1024, 1),
            "files": {path.name: path.stat().st_size for path in written},
            "torch_threads_after": torch.get_num_threads()}


def _gif_frames(path: Path) -> int:
    from PIL import Image

    with Image.open(path) as gif:
        return gif.n_frames


def _bottleneck_env(length: int):
    from memarl.envs import make
    return make("bottleneck", num_envs=1, corridor_lengths=(length,), autoreset=False)


def _baseline(case: dict) -> int:
    """Everything but the frames: torch, the policy and the env after its reset."""
    from memarl.eval.policy_io import load_policy

    load_policy(case["run"])
    _bottleneck_env(case["corridor_length"]).reset()
    return 0


def _gif_streaming(case: dict) -> int:
    import torch

    from memarl.envs.bottleneck import eval_episode_steps
    from memarl.eval.policy_io import load_policy
    from memarl.eval.render import record_episode, write_videos

    torch.set_num_threads(1)
    length = case["corridor_length"]
    steps = eval_episode_steps(length)
    policy = load_policy(case["run"])
    recording = record_episode(policy, _bottleneck_env(length), max_steps=steps, cell=24, reset_options={
        "corridor_lengths": [length], "episode_seeds": [0], "max_episode_steps": [steps]})
    return write_videos(recording, [Path(case["out"])], fps=6)


def _gif_old(old, case: dict) -> int:
    import torch

    from memarl.envs.bottleneck import eval_episode_steps
    from memarl.eval.policy_io import load_policy

    torch.set_num_threads(1)
    length = case["corridor_length"]
    policy = load_policy(case["run"])
    frames, _ = old.record_episode(policy, "bottleneck", length, 0, eval_episode_steps(length), False, 24, {})
    old.write_gif(frames, Path(case["out"]), 6)
    return len(frames)


def measure(case: dict) -> dict:
    """``case`` rendered in a fresh Python process (so that peaks do not mix)."""
    result = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"case {case['name']} failed:\n{result.stderr[-2000:]}")
    lines = result.stdout.strip().splitlines()
    measured = json.loads(lines[-1])
    measured["printed"] = [line for line in lines[:-1] if line.startswith("episode")]
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("render_memory.json")))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    with tempfile.TemporaryDirectory(prefix="render-memory-") as work_dir:
        work = Path(work_dir)
        bottleneck = train_tiny(work / "btl", "bottleneck")
        lmapf = train_tiny(work / "lmapf64", "pogema-lmapf", "size=32", "num_agents=64")
        cases = [
            {"name": "baseline: torch, policy and the L=1000 env, no frames", "kind": "baseline",
             "run": bottleneck, "corridor_length": 1000},
            {"name": "bottleneck L=1000, full 2100-step episode, GIF + MP4", "kind": "render", "run": bottleneck,
             "options": {"corridor_length": 1000}},
            {"name": "bottleneck L=1000, 300 steps, GIF + MP4", "kind": "render", "run": bottleneck,
             "options": {"corridor_length": 1000, "max_steps": 300}},
            {"name": "pogema-lmapf 64 agents, 32x32 generated map, 1000 steps, GIF + MP4", "kind": "render",
             "run": lmapf, "options": {"max_steps": 1000}},
            {"name": "pogema-lmapf 64 agents, 32x32 generated map, 100 steps, GIF + MP4", "kind": "render",
             "run": lmapf, "options": {"max_steps": 100}},
        ]
        for length in (100, 200):
            cases.append({"name": f"bottleneck L={length}, GIF only, streaming (this renderer)",
                          "kind": "gif-streaming", "run": bottleneck, "corridor_length": length})
            if load_old_renderer(work) is not None:
                cases.append({"name": f"bottleneck L={length}, GIF only, frame list (renderer of {OLD_COMMIT})",
                              "kind": "gif-list", "run": bottleneck, "corridor_length": length})
        results = []
        for number, case in enumerate(cases):
            case_dir = work / f"case{number}"
            case_dir.mkdir()
            case["out"] = str(case_dir / "ep.gif")
            measured = measure(case)
            speed = f"{measured['frames']} frames in {measured['seconds']} s ({measured['frames_per_s']} frames/s), "
            print(f"{case['name']}: {speed if measured['frames'] else ''}python peak {measured['python_peak_rss_mb']} "
                  f"MB, ffmpeg peak {measured['ffmpeg_peak_rss_mb']} MB", flush=True)
            results.append({"case": case["name"], "options": case.get("options"), **measured})
    report = {
        "command": "python eval/benchmarks/render_memory.py",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "platform": platform.platform()},
        "note": "peak RSS (VmHWM) per process: the Python process and its ffmpeg child; the baseline "
                "case is the Python process without any frame (torch, policy, env)",
        "results": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
