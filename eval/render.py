"""Episode videos with bounded memory: draw grid frames one at a time and stream them to GIF / MP4.

Frames are drawn and written one at a time, so an episode of any length renders within a fixed
memory budget: :func:`record_episode` yields the frames of one episode lazily, and
:func:`write_videos` hands each frame to every writer before the next one is drawn.

* Frames are palette images (PIL mode ``P``) over one fixed palette (:data:`PALETTE`): free
  cells white, obstacles dark, grid lines light grey, header text black, agent ``i`` the
  colour :func:`agent_colour` (8 hand-picked colours, then golden-ratio spaced HSV hues) as a
  disc, its current target a square outline of the same colour. Agents that left the grid
  (``finish`` mode) disappear with their target. The header shows the step and the arrivals
  (``finish``: agents arrived; ``nothing``: agents on their target; ``restart``: cumulative
  arrivals). Walls and grid lines are drawn once per map (:class:`FrameDrawer`).
* GIF (:class:`GifWriter`): the GIF89a blocks are written here, frame by frame, with the fixed
  palette as the global colour table, looping forever; PIL's LZW encoder compresses each frame
  (``GifImagePlugin.getdata``). After the first frame only the bounding box of the changed
  pixels is stored, unchanged pixels in it transparent (disposal "leave in place").
* MP4 (:class:`Mp4Writer`): H.264 / yuv420p through the ffmpeg binary that ships with the pip
  package ``imageio-ffmpeg``, fed raw RGB frames; ffmpeg pads odd frame sizes to even ones.
* Every output is written to a hidden temporary file in its folder and renamed at the end, so a
  failure or Ctrl+C never leaves a half-written file or destroys an existing one.

:func:`render_run` is ``memarl render``: it loads a checkpoint, rebuilds the env from the run's
saved training env options plus the render overrides (Bottleneck corridor length; POGEMA map
and agent count) and writes one episode. :class:`RenderConfig` holds the command's options and
validates every one before anything is loaded or created (``render_run`` runs it too).
"""
from __future__ import annotations

import colorsys
import dataclasses
import os
import struct
import time
from pathlib import Path
from typing import Annotated, Any, Iterable, Iterator, Sequence

import numpy as np
from PIL import GifImagePlugin, Image, ImageDraw, ImageFont

from memarl.configs import Range, option_label, validate_fields
from memarl.envs.bottleneck import MAX_CORRIDOR_LENGTH
from memarl.errors import MemarlError
from memarl.files import check_output_file

HEADER = 18
"""pixels of the header band above the map"""
MAX_FRAME_SIDE = 16384
"""largest frame width or height in pixels (H.264's largest level allows about 16880)"""
MAX_FRAME_PIXELS = 1 << 25
"""largest frame area (32 Mpx): fits H.264 level 6.2 and bounds the memory of one frame"""
MIN_AUTO_CELL = 4
"""a cell size lowered to make a large map fit goes no lower than this (or the asked size)"""
FPS_RANGE = (1, 120)
CELL_RANGE = (1, 256)
MAX_STEPS_RANGE = (1, 100_000)
SEED_RANGE = (0, 2**32 - 1)
DEFAULT_CORRIDOR_LENGTH = 5
"""Bottleneck corridor length rendered when none is given"""
MP4_QUALITY = 7
"""imageio-ffmpeg quality 0..10 (7: libx264 crf 15, sharp edges on flat colours)"""
X264_OPTIONS = ["-preset", "veryfast", "-threads", "1", "-x264-params", "rc-lookahead=5:bframes=0"]
"""x264 settings: fast, and few frames in flight so that ffmpeg's memory stays small for large
frames (a 144 x 16082 px frame: about 330 MB instead of 960 MB with the defaults); one thread,
since Python draws on another core"""

# palette indices of the fixed palette; agent colours start at FIRST_AGENT_INDEX
BACKGROUND, WALL, GRID_LINE, TEXT, TRANSPARENT = range(5)
FIRST_AGENT_INDEX = 8
BASE_COLOURS = [(255, 255, 255), (70, 70, 80), (225, 225, 230), (0, 0, 0), (255, 0, 255)]
HAND_PICKED_AGENT_COLOURS = [(220, 60, 50), (40, 110, 220), (40, 170, 80), (230, 160, 20),
                             (150, 70, 200), (20, 170, 180), (200, 80, 150), (120, 120, 40)]
GOLDEN_RATIO_FRACTION = 0.6180339887498949


def agent_palette(count: int) -> list[tuple[int, int, int]]:
    """``count`` agent colours: the 8 hand-picked ones, then HSV colours whose hues step by the
    golden ratio (so consecutive agents differ strongly) and whose saturation and value cycle,
    so that agents with similar hues still differ in shade."""
    colours = HAND_PICKED_AGENT_COLOURS[:count]
    for k in range(len(colours), count):
        hue = (k * GOLDEN_RATIO_FRACTION) % 1.0
        saturation = (0.85, 0.55)[k % 2]
        value = (0.9, 0.7, 0.5)[(k // 2) % 3]
        red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
        colours.append((round(red * 255), round(green * 255), round(blue * 255)))
    return colours


AGENT_COLOURS = agent_palette(256 - FIRST_AGENT_INDEX)
"""colours of agents 0..247; agent ``i`` uses ``AGENT_COLOURS[i % 248]``"""
PALETTE = bytes(channel for colour in BASE_COLOURS + [(0, 0, 0)] * (FIRST_AGENT_INDEX - len(BASE_COLOURS))
                + AGENT_COLOURS for channel in colour)
"""the 256-entry RGB palette of every frame (768 bytes)"""


def agent_index(agent: int) -> int:
    """Palette index of agent ``agent`` (colours repeat after 248 agents)."""
    return FIRST_AGENT_INDEX + agent % len(AGENT_COLOURS)


def agent_colour(agent: int) -> tuple[int, int, int]:
    return AGENT_COLOURS[agent % len(AGENT_COLOURS)]


# --------------------------------------------------------------------------------------------
# drawing


class FrameDrawer:
    """Draws the frames of one map: the static background (walls, grid lines, header band) is
    built once with numpy; each frame copies it and draws the targets, agents and header text."""

    def __init__(self, obstacles: np.ndarray, cell: int):
        """``obstacles [H, W]`` bool; ``cell`` pixels per grid cell."""
        height, width = obstacles.shape
        self.cell = cell
        self.size = (width * cell, height * cell + HEADER)
        walls = np.repeat(np.repeat(obstacles, cell, axis=0), cell, axis=1)  # [H*cell, W*cell]
        pixels = np.where(walls, WALL, BACKGROUND).astype(np.uint8)
        if cell >= 4:  # below that, lines would cover most of a cell
            lines = np.zeros_like(walls)
            lines[::cell, :] = True
            lines[:, ::cell] = True
            pixels[lines & ~walls] = GRID_LINE
        canvas = np.full((self.size[1], self.size[0]), BACKGROUND, dtype=np.uint8)  # [HEADER + H*cell, W*cell]
        canvas[HEADER:] = pixels
        self.background = Image.fromarray(canvas)  # mode L; the palette turns it into mode P
        self.background.putpalette(PALETTE)
        self.font = ImageFont.load_default()
        self.pad = cell // 6
        self.outline = max(1, cell // 12)

    def draw(self, positions: np.ndarray, targets: np.ndarray, shown: np.ndarray, text: str) -> Image.Image:
        """``positions / targets [A, 2]`` (row, col); ``shown [A]`` bool: agents still on the grid."""
        frame = self.background.copy()
        draw = ImageDraw.Draw(frame)
        draw.fontmode = "1"  # aliased text: anti-aliasing would blend palette indices
        cell, pad = self.cell, self.pad
        agents = [int(agent) for agent in np.flatnonzero(shown)]
        # all targets first, so that no outline is drawn over another agent's disc
        for agent in agents:
            row, col = targets[agent]
            draw.rectangle([col * cell + pad, HEADER + row * cell + pad, (col + 1) * cell - 1 - pad,
                            HEADER + (row + 1) * cell - 1 - pad], outline=agent_index(agent), width=self.outline)
        for agent in agents:
            row, col = positions[agent]
            box = [col * cell + pad, HEADER + row * cell + pad, (col + 1) * cell - 1 - pad,
                   HEADER + (row + 1) * cell - 1 - pad]
            if cell >= 3:
                draw.ellipse(box, fill=agent_index(agent))
            else:
                draw.rectangle(box, fill=agent_index(agent))
        draw.text((4, 3), text, fill=TEXT, font=self.font)
        return frame


def draw_frame(obstacles: np.ndarray, positions: np.ndarray, targets: np.ndarray, alive: np.ndarray,
               step: int, cell: int = 24) -> Image.Image:
    """One frame (palette image): ``obstacles [H, W]`` bool, ``positions / targets [A, 2]``
    (row, col), ``alive [A]``; the header counts the agents not alive as arrived. For many frames
    of one map, use a :class:`FrameDrawer` (it draws the background once)."""
    text = f"step {step}  arrived {int((~alive).sum())}/{len(alive)}"
    return FrameDrawer(obstacles, cell).draw(positions, targets, alive, text)


# --------------------------------------------------------------------------------------------
# writers


class _TempOutput:
    """A hidden temporary file beside ``path`` that replaces ``path`` on :meth:`commit`."""

    def __init__(self, path: Path):
        self.path = path
        self.temp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")

    def commit(self, force: bool) -> None:
        if force:
            os.replace(self.temp, self.path)
            return
        try:  # a hard link refuses an existing target atomically
            os.link(self.temp, self.path)
        except FileExistsError:
            self.discard()
            raise MemarlError(f"{self.path} exists; pass --force to overwrite it") from None
        except OSError:  # a file system without hard links
            if self.path.exists():
                self.discard()
                raise MemarlError(f"{self.path} exists; pass --force to overwrite it") from None
            os.replace(self.temp, self.path)
            return
        self.temp.unlink()

    def discard(self) -> None:
        self.temp.unlink(missing_ok=True)


class GifWriter:
    """Writes a looping GIF89a frame by frame; memory holds one frame's palette indices.

    Frames must be palette images over :data:`PALETTE` (as :class:`FrameDrawer` draws them) of
    the same size. The delay of frame ``k`` is ``round((k + 1) * 100 / fps) - round(k * 100 / fps)``
    centiseconds, so the frame rate is exact on average (browsers play delays under 2 cs, i.e.
    fps above 50, slower).
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: int):
        self.size = size
        self.fps = fps
        self.frames = 0
        self.previous: np.ndarray | None = None  # [height, width] palette indices of the last frame
        self.file = open(path, "wb")
        width, height = size
        global_table_of_256 = 0x80 | 0x70 | 0x07  # table present, 8-bit colour resolution, 2**(7+1) entries
        self.file.write(b"GIF89a" + struct.pack("<HHBBB", width, height, global_table_of_256, BACKGROUND, 0))
        self.file.write(PALETTE)
        loop_forever = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"
        self.file.write(loop_forever)

    def add(self, frame: Image.Image) -> None:
        if frame.size != self.size or frame.mode != "P":
            raise MemarlError(f"GIF frames must be {self.size} palette images, got {frame.size} {frame.mode}")
        indices = np.asarray(frame)  # [height, width] uint8
        if self.previous is None:
            part, offset, transparent = indices, (0, 0), False
        else:
            changed = indices != self.previous  # [height, width]
            rows = np.flatnonzero(changed.any(axis=1))
            if rows.size == 0:  # identical frame: a 1-pixel transparent patch keeps the timing
                part, offset = np.full((1, 1), TRANSPARENT, dtype=np.uint8), (0, 0)
            else:
                cols = np.flatnonzero(changed[rows[0]:rows[-1] + 1].any(axis=0))
                box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
                part = np.where(changed[box], indices[box], TRANSPARENT).astype(np.uint8)
                offset = (int(cols[0]), int(rows[0]))
            transparent = True
        delay = round((self.frames + 1) * 100 / self.fps) - round(self.frames * 100 / self.fps)
        leave_in_place = 1 << 2
        packed = leave_in_place | int(transparent)
        self.file.write(b"!\xf9\x04" + struct.pack("<BHBB", packed, delay, TRANSPARENT, 0))
        # image descriptor and LZW data from PIL's encoder; mode L writes the indices as they are
        for chunk in GifImagePlugin.getdata(Image.fromarray(np.ascontiguousarray(part)), offset):
            self.file.write(chunk)
        self.previous = indices
        self.frames += 1

    def close(self) -> None:
        self.file.write(b";")
        self.file.close()
        self.previous = None

    def abort(self) -> None:
        self.file.close()
        self.previous = None


class Mp4Writer:
    """Streams RGB frames to the ffmpeg of ``imageio-ffmpeg`` (H.264, yuv420p, padded to even sizes)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: int):
        import imageio_ffmpeg

        self.path = path
        self.size = size
        # macro_block_size=1: no rescaling by imageio; the pad filter makes odd sides even (yuv420p)
        self.encoder = imageio_ffmpeg.write_frames(
            str(path), size, fps=fps, codec="libx264", quality=MP4_QUALITY, macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2:0:0:white", "-f", "mp4", *X264_OPTIONS])
        self.encoder.send(None)

    def add(self, frame: Image.Image) -> None:
        if frame.size != self.size:
            raise MemarlError(f"MP4 frames must be {self.size}, got {frame.size}")
        try:
            self.encoder.send(frame.convert("RGB").tobytes())
        except OSError as error:
            raise MemarlError(f"ffmpeg stopped while writing {self.path}: {str(error).splitlines()[0]}") from None

    def close(self) -> None:
        self.encoder.close()  # waits for ffmpeg to finish the file
        # imageio-ffmpeg does not report ffmpeg's exit status: check that a file came out
        if not self.path.exists() or self.path.stat().st_size == 0:
            raise MemarlError(f"ffmpeg wrote nothing to {self.path} (its messages are above)")

    def abort(self) -> None:
        try:
            self.encoder.throw(KeyboardInterrupt)  # imageio-ffmpeg kills ffmpeg instead of waiting
        except KeyboardInterrupt:
            pass


WRITERS = {".gif": GifWriter, ".mp4": Mp4Writer}


def write_videos(frames: Iterable[Image.Image], paths: Sequence[Path | str], fps: int,
                 force: bool = False) -> int:
    """Stream ``frames`` into every path (GIF or MP4 by suffix); returns the number of frames.

    Frames are taken one at a time and handed to all writers before the next is drawn, so
    memory does not grow with the number of frames. Each output goes to a temporary file
    beside it, renamed at the end; on any error or interrupt the temporary files are removed and
    existing outputs stay untouched. Without ``force`` an existing output is never replaced.
    """
    outputs = [_TempOutput(Path(path)) for path in paths]
    for output in outputs:
        if output.path.suffix.lower() not in WRITERS:
            raise MemarlError(f"video output must end in .gif or .mp4, got {output.path.name!r}")
    writers: list[Any] = []
    count = 0
    try:
        for frame in frames:
            if not writers:
                for output in outputs:
                    writers.append(WRITERS[output.path.suffix.lower()](output.temp, frame.size, fps))
            for writer in writers:
                writer.add(frame)
            count += 1
        if count == 0:
            raise MemarlError("no frames to write")
        for writer in writers:
            writer.close()
        for output in outputs:
            output.commit(force)
    except BaseException:
        for writer in writers:
            writer.abort()
        for output in outputs:
            output.discard()
        raise
    return count


def write_gif(frames: Iterable[Image.Image], path: Path | str, fps: int, force: bool = False) -> int:
    return write_videos(frames, [path], fps, force)


def write_mp4(frames: Iterable[Image.Image], path: Path | str, fps: int, force: bool = False) -> int:
    return write_videos(frames, [path], fps, force)


# --------------------------------------------------------------------------------------------
# episodes


def _on_target_mode(env: Any) -> str:
    """The env's ``on_target`` mode (Bottleneck has no such option: its agents finish)."""
    return getattr(env.config, "on_target", "finish")


class EpisodeRecording:
    """The frames of one episode of ``policy`` in ``env``, drawn lazily as it is iterated.

    ``env`` must be a grid env with one env (``num_envs=1``) and autoreset off, so that the
    ending step still shows the final positions and targets. Iterating resets the env (with
    ``reset_options``), then yields the first frame and one frame per step, until the episode
    ends or after ``max_steps`` steps; afterwards ``steps`` holds the steps taken and
    ``metrics`` the env's episode metrics (None if the episode did not end). Memory state is
    reset at the episode start; actions are sampled from a generator seeded with ``seed``
    (argmax with ``deterministic``).
    """

    def __init__(self, policy: Any, env: Any, *, max_steps: int, deterministic: bool = False, cell: int = 24,
                 seed: int = 0, reset_options: dict | None = None):
        if env.num_envs != 1:
            raise MemarlError(f"rendering needs an env with num_envs=1, got {env.num_envs}")
        self.policy = policy
        self.env = env
        self.max_steps = max_steps
        self.deterministic = deterministic
        self.cell = cell
        self.seed = seed
        self.reset_options = reset_options
        self.steps = 0
        self.metrics: dict | None = None

    def __iter__(self) -> Iterator[Image.Image]:
        import torch

        env, policy = self.env, self.policy
        mode = _on_target_mode(env)
        num_agents = env.num_agents
        sampler = torch.Generator().manual_seed(self.seed)
        obs = env.reset(options=self.reset_options)  # [1, A, C, 2R+1, 2R+1]
        drawer = FrameDrawer(env.obstacles(0), self.cell)
        state = policy.initial_state(1, num_agents)
        first = np.ones((1, num_agents), dtype=bool)  # [1, A]
        arrivals = 0  # cumulative arrivals (restart mode)
        on_target = int((env.positions[0] == env.targets[0]).all(axis=1).sum())

        def header(step: int, shown: np.ndarray) -> str:
            if mode == "finish":
                return f"step {step}/{self.max_steps}  arrived {int(num_agents - shown.sum())}/{num_agents}"
            if mode == "nothing":
                return f"step {step}/{self.max_steps}  on target {on_target}/{num_agents}"
            return f"step {step}/{self.max_steps}  arrivals {arrivals}"

        alive = env.alive[0].copy()  # [A]
        yield drawer.draw(env.positions[0], env.targets[0], alive, header(0, alive))
        self.steps, self.metrics = 0, None
        for step in range(1, self.max_steps + 1):
            with torch.no_grad():  # only around the step: a generator suspended inside it would leak the mode
                logits, _, state = policy.step(torch.as_tensor(obs), state, torch.as_tensor(first),
                                               torch.as_tensor(env.alive))  # logits [1, A, num_actions]
            if self.deterministic:
                actions = logits.argmax(-1)  # [1, A]
            else:
                probs = torch.softmax(logits.reshape(num_agents, -1).float(), dim=-1)  # [A, num_actions]
                actions = torch.multinomial(probs, 1, generator=sampler).reshape(1, num_agents)
            alive_before = env.alive[0].copy()  # [A]
            obs, _, _, _, info = env.step(actions.numpy())
            first = info["first"]
            arrived = info["arrived"][0]  # [A]
            arrivals += int(arrived.sum())
            on_target = int((env.positions[0] == env.targets[0]).all(axis=1).sum())
            # without autoreset, an ending env shows its final state but marks everybody not
            # alive: keep the agents that were on the grid and did not just finish
            shown = alive_before & ~arrived if mode == "finish" else alive_before
            self.steps = step
            yield drawer.draw(env.positions[0], env.targets[0], shown, header(step, shown))
            if info["episode_end"][0]:
                self.metrics = dict(info["episode_metrics"][0])
                return


def record_episode(policy: Any, env: Any, *, max_steps: int, deterministic: bool = False, cell: int = 24,
                   seed: int = 0, reset_options: dict | None = None) -> EpisodeRecording:
    """The frames of one episode, drawn lazily (see :class:`EpisodeRecording`)."""
    return EpisodeRecording(policy, env, max_steps=max_steps, deterministic=deterministic, cell=cell,
                            seed=seed, reset_options=reset_options)


# --------------------------------------------------------------------------------------------
# validation and the render command


def frame_cell(map_height: int, map_width: int, cell: int, option: str) -> int:
    """The cell size to draw a ``map_height x map_width`` map with: ``cell``, or the largest
    smaller size (down to ``min(cell, MIN_AUTO_CELL)``) whose frame fits :data:`MAX_FRAME_SIDE`
    per side and :data:`MAX_FRAME_PIXELS` in all. ``option`` names what set the map size, for
    the error when even the smallest cell does not fit."""
    def fits(size: int) -> bool:
        width, height = map_width * size, map_height * size + HEADER
        return width <= MAX_FRAME_SIDE and height <= MAX_FRAME_SIDE and width * height <= MAX_FRAME_PIXELS

    smallest = min(cell, MIN_AUTO_CELL)
    for size in range(cell, smallest - 1, -1):
        if fits(size):
            return size
    raise MemarlError(f"{option}: a {map_height}x{map_width}-cell map does not fit a frame of at most "
                      f"{MAX_FRAME_SIDE} px per side and {MAX_FRAME_PIXELS // 2**20} Mpx even with --cell {smallest}")


def check_corridor_fits(corridor_length: int, cell: int) -> None:
    """A one-line MemarlError when the Bottleneck map of ``corridor_length`` cannot fit a frame
    even at the smallest cell size (checked before anything is loaded)."""
    longest = (MAX_FRAME_SIDE - HEADER) // min(cell, MIN_AUTO_CELL) - _bottleneck_rows(0)
    frame_cell(_bottleneck_rows(corridor_length), _bottleneck_width(), cell,
               f"--corridor-length {corridor_length} (at most {longest} fits)")


def _bottleneck_rows(corridor_length: int) -> int:
    from memarl.envs.bottleneck import ROOM_ROWS
    return corridor_length + 2 * ROOM_ROWS


def _bottleneck_width() -> int:
    from memarl.envs.bottleneck import MAP_WIDTH
    return MAP_WIDTH


@dataclasses.dataclass
class _EpisodeSetup:
    env: Any
    reset_options: dict | None
    max_steps: int
    map_shape: tuple[int, int]  # (H, W) in cells, the largest map the env can play
    label: str  # what the summary line says about the episode
    size_option: str  # the option that set the map size, for frame-size errors


def _setup_episode(env_id: str, env_options: dict, run: str, *, corridor_length: int | None,
                   map_name: str | None, num_agents: int | None, seed: int,
                   max_steps: int | None) -> _EpisodeSetup:
    """Build the env of the run (its training env options plus the render overrides)."""
    from memarl.envs import make
    from memarl.envs.bottleneck import BottleneckConfig, eval_episode_steps
    from memarl.envs.pogema_env import PogemaConfig
    from memarl.registry import ENVS

    config_class = getattr(ENVS.get(env_id).load(), "config_class", None)
    options = dict(env_options)
    if config_class is BottleneckConfig:
        for option, value in (("--map-name", map_name), ("--num-agents", num_agents)):
            if value is not None:
                raise MemarlError(f"{option} applies to POGEMA runs only; {run} is a {env_id} run")
        length = DEFAULT_CORRIDOR_LENGTH if corridor_length is None else corridor_length
        steps = eval_episode_steps(length) if max_steps is None else max_steps
        options.update(corridor_lengths=(length,), autoreset=False)
        env = make(env_id, num_envs=1, **options)
        reset_options = {"corridor_lengths": [length], "episode_seeds": [seed], "max_episode_steps": [steps]}
        return _EpisodeSetup(env, reset_options, steps, (_bottleneck_rows(length), _bottleneck_width()),
                             f"{env_id} L={length} seed={seed}", f"--corridor-length {length}")
    if config_class is PogemaConfig:
        if corridor_length is not None:
            raise MemarlError(f"--corridor-length applies to Bottleneck runs only; {run} is a {env_id} run")
        if map_name is not None:
            # the named map replaces whatever map and placements the run trained on
            for key in ("map", "agents_xy", "targets_xy", "possible_agents_xy", "possible_targets_xy"):
                options.pop(key, None)
            options["map_name"] = map_name
        if num_agents is not None:
            options["num_agents"] = num_agents
        if max_steps is not None:
            options["max_episode_steps"] = max_steps
        options["auto_reset"] = False
        env = make(env_id, num_envs=1, **options)
        cfg = env.config
        where = f"map {cfg.episode_map_name(seed)}" if cfg.map_name else f"{cfg.height}x{cfg.width} map"
        size_option = f"--map-name {map_name}" if map_name is not None else f"the run's {cfg.height}x{cfg.width} map"
        return _EpisodeSetup(env, {"seeds": [seed]}, int(cfg.max_episode_steps), (cfg.height, cfg.width),
                             f"{env_id} {where} agents={cfg.num_agents} seed={seed}", size_option)
    raise MemarlError(f"render supports the grid envs (bottleneck, pogema-mapf, pogema-lmapf); {run} is a {env_id} run")


def render_run(run: str, out: str, *, corridor_length: int | None = None, map_name: str | None = None,
               num_agents: int | None = None, seed: int = 0, max_steps: int | None = None,
               which: str = "best", deterministic: bool = False, fps: int = 6, cell: int = 24,
               force: bool = False) -> list[Path]:
    """``memarl render``: one episode of a trained policy as a GIF (plus an MP4 beside it) or an MP4.

    ``corridor_length`` applies to Bottleneck runs (default 5), ``map_name`` / ``num_agents`` to
    POGEMA runs (default: the training options); an option that does not apply is an error.
    ``max_steps`` defaults to 2L+100 (Bottleneck) or the env's ``max_episode_steps``
    (POGEMA). A cell size whose frame would exceed :data:`MAX_FRAME_SIDE` is lowered to fit
    (said in the printed line). A ``.gif`` output also writes the ``.mp4`` beside it unless that
    exists and ``force`` is off. Returns the paths written.
    """
    import torch

    from memarl.eval.policy_io import load_policy

    RenderConfig(run=run, out=out, corridor_length=corridor_length, map_name=map_name,
                 num_agents=num_agents, seed=seed, max_steps=max_steps, checkpoint=which,
                 deterministic=deterministic, fps=fps, cell=cell, force=force).validate()
    out_path = Path(out)
    policy = load_policy(run, which=which)
    info = policy.checkpoint_info
    setup = _setup_episode(info["env"], info["env_options"], str(run), corridor_length=corridor_length,
                           map_name=map_name, num_agents=num_agents, seed=seed, max_steps=max_steps)
    used_cell = frame_cell(*setup.map_shape, cell, setup.size_option)
    paths = [out_path]
    notes = []
    if used_cell != cell:
        notes.append(f"cell lowered from {cell} to {used_cell} px to fit {MAX_FRAME_SIDE} px")
    if out_path.suffix.lower() == ".gif":
        mp4 = out_path.with_suffix(".mp4")
        if force or not mp4.exists():
            paths.append(mp4)
        else:
            notes.append(f"kept the existing {mp4.name} (pass --force to replace it)")
    recording = record_episode(policy, setup.env, max_steps=setup.max_steps, deterministic=deterministic,
                               cell=used_cell, seed=seed, reset_options=setup.reset_options)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # one env's policy step is too small to gain from threads, and ffmpeg encodes on another core
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        frames = write_videos(recording, paths, fps, force)
    finally:
        torch.set_num_threads(torch_threads)
    seconds = time.perf_counter() - start
    metrics = recording.metrics or {}
    shown = ", ".join(f"{key}={metrics[key]:.3g}" if isinstance(metrics[key], float) else f"{key}={metrics[key]}"
                      for key in ("CSR", "ISR", "SoC", "avg_throughput", "throughput_count") if key in metrics)
    print(f"episode {setup.label}: {recording.steps} steps, {shown or 'did not end'}; {frames} frames "
          f"in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s)" + "".join(f"; {n}" for n in notes))
    return paths


@dataclasses.dataclass
class RenderConfig:
    """``memarl render``: one episode of a trained policy as a GIF (and an MP4 beside it)."""

    run: str | None = None
    """run directory or checkpoint file (or --checkpoint FILE instead)"""
    out: str = ""
    """output file: .gif (an .mp4 is written beside it) or .mp4; required"""
    corridor_length: Annotated[int | None, Range(1, MAX_CORRIDOR_LENGTH)] = None
    """Bottleneck runs: corridor length L (default 5)"""
    map_name: str | None = None
    """POGEMA runs: a map of the library or a pattern (default: the training maps)"""
    num_agents: Annotated[int | None, Range(1, 10_000_000)] = None
    """POGEMA runs: agents on the map (default: the training count)"""
    seed: Annotated[int, Range(*SEED_RANGE)] = 0
    """episode seed (fixes map, start and goal)"""
    max_steps: Annotated[int | None, Range(*MAX_STEPS_RANGE)] = None
    """episode length (default Bottleneck 2L+100, POGEMA the training episode length)"""
    checkpoint: str = "best"
    """best (falls back to latest), latest, or a checkpoint file (then RUN may be left out)"""
    deterministic: bool = False
    """act by argmax instead of sampling"""
    fps: Annotated[int, Range(*FPS_RANGE)] = 6
    """frames per second"""
    cell: Annotated[int, Range(*CELL_RANGE)] = 24
    """pixels per grid cell (lowered to fit when a frame would exceed the size limit)"""
    force: bool = False
    """overwrite --out (and the .mp4 beside a .gif) if it exists"""

    def validate(self) -> None:
        """Every option before anything is loaded or written (one-line MemarlError)."""
        from memarl.eval.evaluate import check_checkpoint_choice

        validate_fields(self, label=option_label)
        if not self.out:
            raise MemarlError("--out is required: a .gif or .mp4 file")
        check_output_file(self.out, "--out", self.force, suffixes=tuple(WRITERS))
        if self.map_name == "":
            raise MemarlError("--map-name must name a map of the library or a pattern")
        if self.corridor_length is not None:
            check_corridor_fits(self.corridor_length, self.cell)
        if self.run is None and self.checkpoint not in ("best", "latest"):
            self.run = self.checkpoint  # `memarl render --checkpoint FILE`: the file is the run
        if not self.run:
            raise MemarlError("give the run directory or checkpoint file to render")
        check_checkpoint_choice(self.run, self.checkpoint)
        if not Path(self.run).exists():
            raise MemarlError(f"no such run directory or checkpoint: {self.run}")
