"""Frames per second of the episode videos: GIF, MP4 and SVG of a 64-agent, 1000-step LMAPF episode.

Run as a plain file (eval/benchmarks is data, not a package)::

    .venv/bin/python eval/benchmarks/render_speed.py [--repeats 3] [--out eval/benchmarks/render_speed.json]

One lifelong MAPF episode (``pogema-lmapf`` mechanics: ``on_target="restart"``), 64 agents on
a generated 32 x 32 map (density 0.3, instance seed 0), 1000 steps, played by the greedy
baseline (:class:`memarl.eval.baselines.GreedyPathPolicy`: no torch, so the numbers are the
renderer's and the env's), drawn at the default 24 px per cell (768 x 786 px frames). Every
case plays the whole episode in this process through the same code as ``memarl render`` and
``memarl eval --videos`` (:func:`memarl.eval.render.record_episode` +
:func:`~memarl.eval.render.write_videos`):

* ``env only``: the env and the policy, nothing recorded: the in-process reference;
* ``draw only``: plus the snapshots and the raster frames, nothing encoded;
* one output each: ``.gif``, ``.mp4``, ``.svg`` (draw + encode + write);
* ``.gif + .mp4``: what ``memarl render --out ep.gif`` writes;
* the options: ``.svg --paths`` and ``.gif --paths --egocentric 0``.

frames/s counts the 1001 frames (the start and one per step) over the wall time of the whole
case, env included; ``vs env`` divides by the env-only rate. Each case runs ``--repeats``
times; the best run is reported (the others are slowed by whatever else shares the CPUs, see
the load average in the JSON) with the median beside it. Writes the JSON and a Markdown table
of the same name.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

STEPS = 1000
AGENTS = 64
MAP_SIZE = 32
CELL = 24
CASES = [
    ("env only", None, {}),
    ("draw only", "draw", {}),
    (".gif", [".gif"], {}),
    (".mp4", [".mp4"], {}),
    (".svg", [".svg"], {}),
    (".gif + .mp4", [".gif", ".mp4"], {}),
    (".svg --paths", [".svg"], {"paths": True}),
    (".gif --paths --egocentric 0", [".gif"], {"paths": True, "egocentric": 0}),
]
"""(name, outputs, record options): outputs None = env only, "draw" = frames drawn, not written"""


def make_env():
    from memarl.envs.pogema_env import PogemaConfig, PogemaEnv

    return PogemaEnv(PogemaConfig(size=MAP_SIZE, density=0.3, num_agents=AGENTS, on_target="restart",
                                  max_episode_steps=STEPS, auto_reset=False, seed=0))


def run_case(env, outputs, options: dict, work: Path) -> dict:
    """One episode of the case; its wall time, frames and output sizes."""
    from memarl.eval.baselines import GreedyPathPolicy
    from memarl.eval.render import record_episode, write_videos

    policy = GreedyPathPolicy()
    start = time.perf_counter()
    if outputs is None:
        env.reset(options={"seeds": [0]})
        for _ in range(STEPS):
            env.step(policy.act(env))
        frames, sizes = STEPS + 1, {}
    else:
        recording = record_episode(policy, env, max_steps=STEPS, cell=CELL, reset_options={"seeds": [0]}, **options)
        if outputs == "draw":
            frames, sizes = sum(1 for snapshot in recording if snapshot.image() is not None), {}
        else:
            paths = [work / f"ep{suffix}" for suffix in outputs]
            frames = write_videos(recording, paths, fps=30, force=True)
            sizes = {path.name: path.stat().st_size for path in paths}
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "frames": frames, "files": sizes}


def markdown(report: dict) -> str:
    lines = [f"# Render speed: {report['episode']}", "",
             f"`{report['command']}` on {report['date']}: {report['machine']['cpus']} CPUs, load average "
             f"{report['machine']['load_avg_1m_at_start']} at the start and {report['machine']['load_avg_1m_at_end']} "
             f"at the end; frames {report['frame_size'][0]} x {report['frame_size'][1]} px. Best of "
             f"{report['repeats']} runs (median beside it); frames/s counts all {STEPS + 1} frames over the whole "
             "episode, env included.", "",
             "| case | frames/s (best) | frames/s (median) | vs env only | files |",
             "|---|---:|---:|---:|---|"]
    for row in report["results"]:
        files = ", ".join(f"{name} {size / 1e6:.2f} MB" for name, size in row["files"].items())
        lines.append(f"| {row['case']} | {row['frames_per_s']:.0f} | {row['frames_per_s_median']:.0f} | "
                     f"{row['vs_env_only']:.2f} | {files} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("render_speed.json")),
                        help="JSON report; the Markdown table goes beside it (.md)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (the best is reported)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    from memarl.eval.baselines import GreedyPathPolicy
    from memarl.eval.render import record_episode

    env = make_env()
    frame_size = next(iter(record_episode(GreedyPathPolicy(), env, max_steps=1, cell=CELL))).scene.size
    load_at_start = round(os.getloadavg()[0], 2)
    results = []
    with tempfile.TemporaryDirectory(prefix="render-speed-") as work_dir:
        for name, outputs, options in CASES:
            runs = [run_case(env, outputs, options, Path(work_dir)) for _ in range(args.repeats)]
            rates = [run["frames"] / run["seconds"] for run in runs]
            results.append({"case": name, "frames": runs[0]["frames"], "frames_per_s": round(max(rates), 1),
                            "frames_per_s_median": round(statistics.median(rates), 1),
                            "seconds_best": round(min(run["seconds"] for run in runs), 2), "files": runs[-1]["files"]})
            print(f"{name}: {max(rates):.0f} frames/s (median {statistics.median(rates):.0f})", flush=True)
    env_rate = results[0]["frames_per_s"]
    for row in results:
        row["vs_env_only"] = round(row["frames_per_s"] / env_rate, 3)
    report = {
        "command": "python eval/benchmarks/render_speed.py"
                   + (f" --repeats {args.repeats}" if args.repeats != 3 else ""),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "episode": f"pogema LMAPF, {AGENTS} agents, {MAP_SIZE}x{MAP_SIZE} generated map (density 0.3, seed 0), "
                   f"{STEPS} steps, greedy baseline, {CELL} px cells",
        "frame_size": list(frame_size),
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_start": load_at_start,
                    "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(), "platform": platform.platform()},
        "note": "frames/s = (steps + 1) / wall time of the whole episode (env, policy, drawing, encoding, "
                "writing); vs_env_only = frames/s / env-only steps/s",
        "results": results,
    }
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
