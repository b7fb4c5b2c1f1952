"""Episode videos: draw grid frames with PIL and write a GIF (or an MP4 through ffmpeg).

Frame content: obstacles dark, free cells light, each agent a coloured disc with its goal a
square outline of the same colour; finished agents disappear (pogema ``finish`` mode). The
header shows the step and how many agents have arrived.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from memarl.errors import MemarlError
from memarl.train.rollout import sample_actions

AGENT_COLOURS = [(220, 60, 50), (40, 110, 220), (40, 170, 80), (230, 160, 20), (150, 70, 200),
                 (20, 170, 180), (200, 80, 150), (120, 120, 40)]
HEADER = 18


def draw_frame(obstacles: np.ndarray, positions: np.ndarray, targets: np.ndarray,
               alive: np.ndarray, step: int, cell: int = 24) -> Image.Image:
    """One frame: ``obstacles [H, W]`` bool, ``positions / targets [A, 2]`` (row, col)."""
    height, width = obstacles.shape
    image = Image.new("RGB", (width * cell, height * cell + HEADER), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for r, c in zip(*np.nonzero(obstacles)):
        draw.rectangle([c * cell, HEADER + r * cell, (c + 1) * cell - 1,
                        HEADER + (r + 1) * cell - 1], fill=(70, 70, 80))
    for r in range(height + 1):
        draw.line([0, HEADER + r * cell, width * cell, HEADER + r * cell], fill=(225, 225, 230))
    for c in range(width + 1):
        draw.line([c * cell, HEADER, c * cell, HEADER + height * cell], fill=(225, 225, 230))
    for agent, ((tr, tc), (pr, pc)) in enumerate(zip(targets, positions)):
        colour = AGENT_COLOURS[agent % len(AGENT_COLOURS)]
        if alive[agent]:
            pad = cell // 6
            draw.rectangle([tc * cell + pad, HEADER + tr * cell + pad, (tc + 1) * cell - pad,
                            HEADER + (tr + 1) * cell - pad], outline=colour, width=2)
            draw.ellipse([pc * cell + pad, HEADER + pr * cell + pad, (pc + 1) * cell - pad,
                          HEADER + (pr + 1) * cell - pad], fill=colour)
    arrived = int((~alive).sum())
    draw.text((4, 3), f"step {step}  arrived {arrived}/{len(alive)}", fill=(0, 0, 0))
    return image


def write_gif(frames: list[Image.Image], path: Path, fps: int) -> None:
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps),
                   loop=0, optimize=False)


def write_mp4(frames: list[Image.Image], path: Path, fps: int) -> bool:
    """MP4 through ffmpeg on PATH; returns False (and writes nothing) when there is none."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return False
    width, height = frames[0].size
    width, height = width + width % 2, height + height % 2  # yuv420p needs even sizes
    command = [ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-pix_fmt", "yuv420p",
               "-vcodec", "libx264", str(path)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE)
    for frame in frames:
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        canvas.paste(frame)
        process.stdin.write(canvas.tobytes())
    process.stdin.close()
    if process.wait() != 0:
        raise MemarlError(f"ffmpeg failed to write {path}")
    return True


@torch.no_grad()
def record_episode(policy: torch.nn.Module, env_id: str, corridor_length: int, seed: int,
                   max_steps: int, deterministic: bool, cell: int,
                   env_options: dict | None = None) -> tuple[list[Image.Image], dict]:
    """Frames of one episode (memory reset at its start) and its metrics."""
    from memarl.envs import make
    env = make(env_id, num_envs=1, corridor_lengths=[corridor_length], **(env_options or {}))
    obs = env.reset(options={"corridor_lengths": [corridor_length], "episode_seeds": [seed],
                             "max_episode_steps": [max_steps]})
    obstacles = np.array([[ch == "#" for ch in row] for row in env.map_text(0).splitlines()])
    state = policy.initial_state(1, env.num_agents)
    first = np.ones((1, env.num_agents), dtype=bool)
    targets = env.targets[0].copy()
    frames = [draw_frame(obstacles, env.positions[0], targets, env.alive[0], 0, cell)]
    for step in range(1, max_steps + 1):
        logits, _, state = policy.step(torch.as_tensor(obs), state, torch.as_tensor(first),
                                       torch.as_tensor(env.alive))
        actions, _ = sample_actions(logits, deterministic)
        before = (env.positions[0].copy(), env.alive[0].copy())
        obs, _, terminated, truncated, info = env.step(actions.numpy())
        first = info["first"]
        if info["episode_end"][0]:
            # autoreset already moved the env on: draw the arrival step from what we know
            positions, alive_before = before
            finished = terminated[0]
            frames.append(draw_frame(obstacles, positions, targets, alive_before & ~finished,
                                     step, cell))
            return frames, dict(info["episode_metrics"][0])
        frames.append(draw_frame(obstacles, env.positions[0], targets, env.alive[0], step, cell))
    raise MemarlError("episode did not end within max_steps")  # the env's time limit prevents it


def render_run(run: str, out: str, corridor_length: int = 5, seed: int = 0,
               max_steps: int | None = None, which: str = "best", deterministic: bool = False,
               fps: int = 6, cell: int = 24, force: bool = False) -> list[Path]:
    """``memarl render``: one episode of a trained policy as GIF (and MP4 if asked and possible)."""
    from memarl.eval.policy_io import load_policy

    out_path = Path(out)
    if out_path.suffix.lower() not in (".gif", ".mp4"):
        raise MemarlError(f"--out must end in .gif or .mp4, got {out_path.name!r}")
    if out_path.exists() and not force:
        raise MemarlError(f"{out_path} exists; pass --force to overwrite it")
    if corridor_length < 1:
        raise MemarlError(f"--corridor-length must be >= 1, got {corridor_length}")
    if fps < 1 or cell < 4:
        raise MemarlError("--fps must be >= 1 and --cell >= 4")
    if max_steps is not None and max_steps < 1:
        raise MemarlError(f"--max-steps must be >= 1, got {max_steps}")
    policy = load_policy(run, which=which)
    info = policy.checkpoint_info
    steps = max_steps or 2 * corridor_length + 100
    frames, metrics = record_episode(policy, info["env"], corridor_length, seed, steps,
                                     deterministic, cell, {})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    if out_path.suffix.lower() == ".gif":
        write_gif(frames, out_path, fps)
        written.append(out_path)
        mp4 = out_path.with_suffix(".mp4")
        if (force or not mp4.exists()) and write_mp4(frames, mp4, fps):
            written.append(mp4)
    else:
        if not write_mp4(frames, out_path, fps):
            raise MemarlError("writing MP4 needs ffmpeg on PATH; use a .gif output instead")
        written.append(out_path)
    print(f"episode: L={corridor_length} seed={seed} CSR={metrics.get('CSR')} "
          f"ISR={metrics.get('ISR')} SoC={metrics.get('SoC')} steps={len(frames) - 1}")
    return written
