"""Episode videos with bounded memory: GIF, MP4 and SVG animations of grid episodes.

An episode is recorded lazily (:func:`record_episode`): one :class:`Snapshot` per step (the
agents' positions, targets and visibility, the header text, optionally the planned paths and
one agent's observation), handed to every writer before the next step is played, so an episode
of any length renders within a fixed memory budget (the SVG keeps a few small ints per agent and
step, see :class:`~memarl.eval.video_writers.SvgWriter`).

* Frames (:class:`FrameDrawer`) are palette images over the fixed palette of
  :mod:`memarl.eval.video_writers`: free cells white, obstacles dark, grid lines light grey,
  agent ``i`` a disc of colour :func:`agent_colour` and its current target a square outline of
  the same colour. Agents that left the grid (``finish`` mode) disappear with their target. The
  header shows the step and the arrivals (``finish``: agents arrived; ``nothing``: agents on
  their target; ``restart``: cumulative arrivals). Walls, grid lines and captions are drawn
  once per map; a frame is drawn only when a raster output needs it, once for all of them.
* Planned paths (``paths=True``, :class:`PathPlanner`): each agent's BFS shortest path to its
  target on the static map, with the engine's tie-break (first neighbour in MOVES order), i.e.
  the path of the ``follower`` observation and of the greedy baseline; drawn as a thin line.
* Egocentric view (``egocentric=AGENT``): that agent's observation ``[C, 2R+1, 2R+1]`` beside
  the map, one captioned panel per channel (-1 dark, 0 white, +1 blue; the agent's own cell
  outlined), and its window outlined on the map.
* Writers (:mod:`memarl.eval.video_writers`): ``.gif``, ``.mp4`` (imageio-ffmpeg) and ``.svg``
  (SMIL animation), each written to a temporary file and renamed at the end.

:func:`render_run` is ``memarl render``: it loads a checkpoint, rebuilds the env from the run's
saved training env options plus the render overrides (Bottleneck corridor length; POGEMA map
and agent count) and writes one episode. :func:`render_episode_video` is the entry point of
``memarl eval --videos``: one episode of a learned or scripted policy in a given env.
:class:`RenderConfig` holds the command's options and validates every one before anything is
loaded or created (``render_run`` runs it too).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from memarl.configs import Range, option_label, validate_fields
from memarl.envs.base import agent_positions
from memarl.envs.bottleneck import MAX_CORRIDOR_LENGTH
from memarl.envs.grid import FIRST_MOVE_NONE, FIRST_MOVE_TARGET, bfs_first_moves
from memarl.errors import MemarlError
from memarl.eval.video_writers import (AGENT_COLOURS, BACKGROUND, FIRST_AGENT_INDEX, GRID_LINE, HEADER,
                                       PALETTE, POSITIVE, TEXT, WALL, WRITERS, GifWriter, Mp4Writer, SvgWriter,
                                       TempOutput, agent_colour, agent_index, open_writer)
from memarl.files import check_output_file

__all__ = ["AGENT_COLOURS", "HEADER", "PALETTE", "FrameDrawer", "GifWriter", "Mp4Writer", "PathPlanner",
           "RenderConfig", "Scene", "Snapshot", "SvgWriter", "agent_colour", "draw_frame", "frame_cell",
           "record_episode", "render_episode_video", "render_run", "write_gif", "write_mp4", "write_svg",
           "write_videos"]

MAX_FRAME_SIDE = 16384
"""largest frame width or height in pixels (H.264's largest level allows about 16880)"""
MAX_FRAME_PIXELS = 1 << 25
"""largest frame area (32 Mpx): fits H.264 level 6.2 and bounds the memory of one frame"""
MIN_AUTO_CELL = 4
"""a cell size lowered to make a large map fit goes no lower than this (or the asked size)"""
DEFAULT_CELL = 24
"""pixels per grid cell unless told otherwise"""
AUTO_MAP_SIDE = 768
"""``cell=0`` (automatic): the cell size that draws the longer map side in about this many
pixels (a 32 x 32 map at the default 24 px), between :data:`MIN_AUTO_CELL` and :data:`DEFAULT_CELL`"""
FPS_RANGE = (1, 120)
CELL_RANGE = (1, 256)
MAX_STEPS_RANGE = (1, 100_000)
SEED_RANGE = (0, 2**32 - 1)
DEFAULT_CORRIDOR_LENGTH = 5
"""Bottleneck corridor length rendered when none is given"""
PANEL_GAP = 8
"""pixels between the map and the observation panels, between panels, and after them"""
CAPTION = 14
"""pixels of the caption line above each observation panel"""
MIN_PANEL_CELL = 6
"""smallest pixels per window cell of an observation panel (a small map cell is scaled up)"""
MAX_PANEL_SIDE = 264
"""largest side of an observation panel in pixels (a large window gets smaller cells)"""
TEXT_SLACK = 1.3
"""panel column width per pixel of caption measured with PIL's default font"""
PATH_TABLE_BYTES = 64 << 20
"""bound of the first-move tables :class:`PathPlanner` keeps per target (cleared when full)"""
CHANNELS = {
    "follower": (("obstacles -1, path +1", POSITIVE), ("agents", POSITIVE), ("others' targets", POSITIVE)),
    "default": (("obstacles", WALL), ("agents", POSITIVE), ("own target (clipped)", POSITIVE)),
    "POMAPF": (("obstacles", WALL), ("agents", POSITIVE)),
    "MAPF": (("obstacles", WALL), ("agents", POSITIVE)),
}
"""panel caption and colour of +1 (palette index) of each channel, by observation type (the
env's ``observation_type``; Bottleneck: follower); -1 is always drawn as an obstacle"""


# --------------------------------------------------------------------------------------------
# scenes and snapshots


@dataclasses.dataclass(frozen=True)
class PanelLayout:
    """Where the egocentric observation panels go, to the right of the map."""

    agent: int
    names: tuple[str, ...]
    """one caption per observation channel"""
    positive: tuple[int, ...]
    """palette index of +1 in each channel"""
    side: int
    """window side 2R+1 in cells"""
    cell: int
    """pixels per window cell"""
    origins: tuple[tuple[int, int], ...]
    """top-left pixel (x, y) of each channel's panel"""
    title: tuple[int, str]
    """x and text of the title in the header band"""
    width: int
    """frame width the panels need"""
    height: int
    """frame height the panels need"""


@functools.lru_cache(maxsize=1)
def _font() -> Any:
    return ImageFont.load_default()


def panel_layout(left_width: int, side: int, cell: int, channels: Sequence[tuple[str, int]],
                 agent: int) -> PanelLayout:
    """The panels of a ``side x side`` window right of the first ``left_width`` pixels (the map
    and header), for a map drawn with ``cell`` pixels per cell: stacked in one column, each
    under its caption; ``channels``: (caption, palette index of +1) per channel."""
    names = tuple(name for name, _ in channels)
    size = max(1, min(max(cell, MIN_PANEL_CELL), MAX_PANEL_SIDE // side))
    extent = side * size
    left = left_width + PANEL_GAP
    origins, top = [], HEADER
    for _ in names:
        top += CAPTION
        origins.append((left, top))
        top += extent + PANEL_GAP
    title = f"agent {agent} observes"
    # room for wider fonts than PIL's default: an SVG viewer picks its own sans-serif
    text_width = math.ceil(TEXT_SLACK * max(_font().getlength(text) for text in (*names, title)))
    return PanelLayout(agent, names, tuple(index for _, index in channels), side, size, tuple(origins), (left, title),
                       left + max(extent, text_width) + PANEL_GAP, top)


def frame_size(map_shape: tuple[int, int], cell: int, panels: PanelLayout | None = None,
               header_width: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of the frames of a ``map_shape`` (H, W) map whose header text
    needs ``header_width`` pixels."""
    height, width = map_shape
    size = (max(width * cell, header_width), height * cell + HEADER)
    if panels is None:
        return size
    return max(size[0], panels.width), max(size[1], panels.height)


def text_width(text: str) -> int:
    """Pixels ``text`` needs in the header, margins included."""
    return math.ceil(_font().getlength(text)) + 8


class Scene:
    """What stays fixed over an episode: the map, the cell size, the agent count, the
    observation radius, the panels and the header width. Builds its :class:`FrameDrawer` on
    first use (only a raster output needs it)."""

    def __init__(self, obstacles: np.ndarray, cell: int, num_agents: int, *, radius: int = 0,
                 panels: PanelLayout | None = None, header_width: int = 0):
        self.obstacles = obstacles
        self.header_width = header_width
        self.cell = cell
        self.num_agents = num_agents
        self.radius = radius
        self.panels = panels
        self.size = frame_size(obstacles.shape, cell, panels, header_width)
        self._drawer: FrameDrawer | None = None

    @property
    def drawer(self) -> "FrameDrawer":
        if self._drawer is None:
            self._drawer = FrameDrawer(self.obstacles, self.cell, panels=self.panels, radius=self.radius,
                                       header_width=self.header_width)
        return self._drawer


@dataclasses.dataclass
class Snapshot:
    """The state of one step of an episode, as the writers need it."""

    scene: Scene
    step: int
    positions: np.ndarray
    """[A, 2] (row, col)"""
    targets: np.ndarray
    """[A, 2] (row, col)"""
    shown: np.ndarray
    """[A] bool: agents on the grid"""
    text: str
    """the header"""
    window: np.ndarray | None = None
    """[C, 2R+1, 2R+1] observation of the egocentric agent (None without panels)"""
    paths: list[np.ndarray | None] | None = None
    """per agent its planned path [L, 2] (row, col) from its cell to its target (None: none)"""
    _image: Image.Image | None = dataclasses.field(default=None, repr=False)

    def window_levels(self) -> np.ndarray:
        """``int8 [C, S, S]``: the window quantised to -1 / 0 / +1 (what the panels show)."""
        window = np.asarray(self.window, dtype=np.float32)
        return ((window >= 0.5).astype(np.int8) - (window <= -0.5).astype(np.int8))

    def image(self) -> Image.Image:
        """The frame (drawn once, shared by the raster writers)."""
        if self._image is None:
            levels = self.window_levels() if self.scene.panels is not None else None
            self._image = self.scene.drawer.draw(self.positions, self.targets, self.shown, self.text,
                                                 paths=self.paths, window=levels)
        return self._image


# --------------------------------------------------------------------------------------------
# drawing


class FrameDrawer:
    """Draws the frames of one map.

    The static background (walls, grid lines, header band, panel captions) is built once. A
    frame is a copy of its pixels (palette indices) on which the per-agent shapes are stamped
    with numpy: every shape (target outline, agent disc, path segment) is drawn once with PIL
    into a cell-sized scratch image at construction, kept as flat pixel offsets, and each frame
    writes all agents' shapes of a kind in one indexed assignment, instead of one PIL call per
    agent (about 1 ms a frame for 64 agents). Only the header text and the window outline are
    drawn with PIL on the finished pixels.
    """

    def __init__(self, obstacles: np.ndarray, cell: int, *, panels: PanelLayout | None = None, radius: int = 0,
                 header_width: int = 0):
        """``obstacles [H, W]`` bool; ``cell`` pixels per grid cell; ``panels`` the egocentric
        panels (then ``radius`` is the observation radius, for the window outline);
        ``header_width`` the pixels the header text needs (a narrow map gets a wider frame)."""
        height, width = obstacles.shape
        self.cell = cell
        self.map_size = (width * cell, height * cell)
        self.size = frame_size(obstacles.shape, cell, panels, header_width)
        self.panels = panels
        self.radius = radius
        walls = np.repeat(np.repeat(obstacles, cell, axis=0), cell, axis=1)  # [H*cell, W*cell]
        pixels = np.where(walls, WALL, BACKGROUND).astype(np.uint8)
        if cell >= 4:  # below that, lines would cover most of a cell
            lines = np.zeros_like(walls)
            lines[::cell, :] = True
            lines[:, ::cell] = True
            pixels[lines & ~walls] = GRID_LINE
        canvas = np.full((self.size[1], self.size[0]), BACKGROUND, dtype=np.uint8)  # [frame height, width]
        canvas[HEADER:HEADER + height * cell, :width * cell] = pixels
        self.font = _font()
        if panels is not None:
            self._init_panels(canvas)
        self.background = canvas  # [frame height, frame width] palette indices
        frame_width = self.size[0]
        pad, outline = cell // 6, max(1, cell // 12)
        box = [pad, pad, cell - 1 - pad, cell - 1 - pad]
        self.target_offsets = _stamp(cell, frame_width, lambda draw: draw.rectangle(box, outline=1, width=outline))
        self.agent_offsets = _stamp(cell, frame_width, lambda draw: (draw.ellipse if cell >= 3 else draw.rectangle)(
            box, fill=1))
        # a path segment from a cell centre to the next cell's centre, right or down, thickness w
        thickness, half = max(1, cell // 8), cell // 2
        start = half - thickness // 2
        rows, cols = np.mgrid[start:start + thickness, start:start + cell + thickness]  # [w, cell + w]
        self.right_offsets = (rows * frame_width + cols).reshape(-1)
        self.down_offsets = (cols * frame_width + rows).reshape(-1)
        self.window_width = max(1, cell // 8)

    def _init_panels(self, canvas: np.ndarray) -> None:
        panels = self.panels
        image = Image.fromarray(canvas)  # shares canvas' memory: the captions land in it
        draw = ImageDraw.Draw(image)
        draw.fontmode = "1"
        draw.text((panels.title[0], 3), panels.title[1], fill=TEXT, font=self.font)
        for name, (x, y) in zip(panels.names, panels.origins):
            draw.text((x, y - CAPTION + 2), name, fill=TEXT, font=self.font)
        canvas[...] = np.asarray(image)
        size, side = panels.cell, panels.side
        grid = np.zeros((side * size, side * size), dtype=bool)  # [S*size, S*size] panel grid lines
        if size >= 4:
            grid[::size, :] = grid[:, ::size] = True
            grid[-1, :] = grid[:, -1] = True
        # the agent's own cell, outlined in its colour in every panel
        centre, line = (side // 2) * size, max(1, size // 6)
        own = np.zeros_like(grid)
        own[centre:centre + size, centre:centre + size] = True
        own[centre + line:centre + size - line, centre + line:centre + size - line] = False
        self.panel_grid, self.panel_own = grid, own
        # per channel, the colour of each level -1 / 0 / +1, indexed by level + 1
        self.level_colours = [np.array([WALL, BACKGROUND, positive], dtype=np.uint8) for positive in panels.positive]

    def draw(self, positions: np.ndarray, targets: np.ndarray, shown: np.ndarray, text: str, *,
             paths: Sequence[np.ndarray | None] | None = None, window: np.ndarray | None = None) -> Image.Image:
        """``positions / targets [A, 2]`` (row, col); ``shown [A]`` bool: agents still on the grid;
        ``paths``: per agent its planned cells ``[L, 2]``; ``window [C, S, S]`` int8 -1 / 0 / +1:
        the egocentric agent's observation (with panels). Returns a palette image."""
        pixels = self.background.copy()
        flat = pixels.reshape(-1)
        agents = np.flatnonzero(shown)
        colours = (FIRST_AGENT_INDEX + agents % len(AGENT_COLOURS)).astype(np.uint8)  # [A'] palette indices
        if paths is not None:  # under everything else
            self._stamp_paths(flat, [paths[agent] for agent in agents.tolist()], colours)
        # all targets first, so that no outline is drawn over another agent's disc
        _put(flat, self._origins(targets[agents]), self.target_offsets, colours)
        _put(flat, self._origins(positions[agents]), self.agent_offsets, colours)
        if self.panels is not None and window is not None:
            self._draw_panels(pixels, window)
        frame = Image.fromarray(pixels)
        frame.putpalette(PALETTE)  # mode L becomes P
        draw = ImageDraw.Draw(frame)
        draw.fontmode = "1"  # aliased text: anti-aliasing would blend palette indices
        if self.panels is not None and shown[self.panels.agent]:
            self._draw_window(draw, positions[self.panels.agent])
        draw.text((4, 3), text, fill=TEXT, font=self.font)
        return frame

    def _origins(self, cells: np.ndarray) -> np.ndarray:
        """Flat pixel index ``[K]`` of the top-left corner of each (row, col) in ``cells [K, 2]``."""
        return (HEADER + cells[:, 0] * self.cell) * self.size[0] + cells[:, 1] * self.cell

    def _stamp_paths(self, flat: np.ndarray, paths: list[np.ndarray | None], colours: np.ndarray) -> None:
        drawn = [(cells, colour) for cells, colour in zip(paths, colours.tolist())
                 if cells is not None and len(cells) > 1]
        if not drawn:
            return
        starts = np.concatenate([cells[:-1] for cells, _ in drawn])  # [S, 2] segment ends
        ends = np.concatenate([cells[1:] for cells, _ in drawn])
        segment_colours = np.repeat(np.array([c for _, c in drawn], dtype=np.uint8), [len(c) - 1 for c, _ in drawn])
        anchors = self._origins(np.minimum(starts, ends))  # a left or up segment is the other one's
        across = starts[:, 0] == ends[:, 0]  # same row: a horizontal segment
        _put(flat, anchors[across], self.right_offsets, segment_colours[across])
        _put(flat, anchors[~across], self.down_offsets, segment_colours[~across])

    def _draw_window(self, draw: ImageDraw.ImageDraw, position: np.ndarray) -> None:
        """Outline the egocentric agent's observation window, clipped to the map."""
        cell, radius = self.cell, self.radius
        row, col = int(position[0]), int(position[1])
        width, height = self.map_size
        box = [max(0, (col - radius) * cell), HEADER + max(0, (row - radius) * cell),
               min(width, (col + radius + 1) * cell) - 1, HEADER + min(height, (row + radius + 1) * cell) - 1]
        draw.rectangle(box, outline=agent_index(self.panels.agent), width=self.window_width)

    def _draw_panels(self, pixels: np.ndarray, window: np.ndarray) -> None:
        panels = self.panels
        size, extent = panels.cell, panels.side * panels.cell
        for channel, (x, y) in enumerate(panels.origins):
            levels = window[channel].astype(np.int64) + 1  # [S, S] 0..2
            block = self.level_colours[channel][np.repeat(np.repeat(levels, size, axis=0), size, axis=1)]
            block[self.panel_grid] = GRID_LINE
            block[self.panel_own] = agent_index(panels.agent)
            pixels[y:y + extent, x:x + extent] = block


def _stamp(cell: int, frame_width: int, draw_shape: Any) -> np.ndarray:
    """Flat pixel offsets (in a frame ``frame_width`` wide) of the shape ``draw_shape(draw)``
    draws with PIL in a ``cell x cell`` scratch image."""
    scratch = Image.new("L", (cell, cell), 0)
    draw_shape(ImageDraw.Draw(scratch))
    rows, cols = np.nonzero(np.asarray(scratch))
    return rows * frame_width + cols


def _put(flat: np.ndarray, origins: np.ndarray, offsets: np.ndarray, colours: np.ndarray) -> None:
    """Stamp the shape ``offsets`` at each of ``origins [K]`` in colour ``colours [K]`` (later ones on top)."""
    if origins.size and offsets.size:
        flat[(origins[:, None] + offsets[None, :]).reshape(-1)] = np.repeat(colours, offsets.size)


def draw_frame(obstacles: np.ndarray, positions: np.ndarray, targets: np.ndarray, alive: np.ndarray,
               step: int, cell: int = 24) -> Image.Image:
    """One frame (palette image): ``obstacles [H, W]`` bool, ``positions / targets [A, 2]``
    (row, col), ``alive [A]``; the header counts the agents not alive as arrived. For many frames
    of one map, use a :class:`FrameDrawer` (it draws the background once)."""
    text = f"step {step}  arrived {int((~alive).sum())}/{len(alive)}"
    return FrameDrawer(obstacles, cell).draw(positions, targets, alive, text)


# --------------------------------------------------------------------------------------------
# planned paths


class PathPlanner:
    """Each agent's BFS shortest path to its target on a static map.

    The tie-break is the engine's (:func:`memarl.envs.grid.bfs_first_moves`: the first
    neighbour in MOVES order one step closer), so the drawn path is the one of the ``follower``
    observation and the one the greedy baseline follows. A first-move table per target is
    searched once (all new targets of a step in one batched BFS) and kept up to
    :data:`PATH_TABLE_BYTES`; the paths of all agents are walked together with numpy.
    """

    def __init__(self, obstacles: np.ndarray):
        height, width = obstacles.shape
        ring = np.zeros((height + 2, width + 2), dtype=bool)  # the map inside a blocked border
        ring[1:-1, 1:-1] = ~obstacles
        self.passable = ring
        self.width = width + 2
        self.max_length = int(ring.sum())
        # flat step of each first-move code (pogema's actions); on the target and without a path: none
        self.delta = np.array([0, -self.width, self.width, -1, 1, 0], dtype=np.int64)
        self.rows: dict[int, int] = {}  # target cell -> row of self.pool
        self.pool = np.zeros((0, ring.size), dtype=np.uint8)  # [rows, (H+2)(W+2)] first-move codes

    def _table_rows(self, targets: np.ndarray) -> np.ndarray:
        """Pool rows ``[A']`` of the tables of ``targets`` (flat ring cells), searching new ones."""
        new = sorted({int(t) for t in targets.tolist()} - set(self.rows))
        if new:
            if (len(self.rows) + len(new)) * self.pool.shape[1] > PATH_TABLE_BYTES:
                self.rows, new = {}, sorted({int(t) for t in targets.tolist()})
                self.pool = self.pool[:0]
            codes = bfs_first_moves(np.broadcast_to(self.passable, (len(new),) + self.passable.shape),
                                    np.array(new)).reshape(len(new), -1)
            start = len(self.rows)
            if start + len(new) > len(self.pool):  # grow by doubling
                grown = np.zeros((max(2 * len(self.pool), start + len(new)), self.pool.shape[1]), dtype=np.uint8)
                grown[:start] = self.pool[:start]
                self.pool = grown
            self.pool[start:start + len(new)] = codes
            self.rows.update({target: start + k for k, target in enumerate(new)})
        return np.array([self.rows[int(t)] for t in targets.tolist()], dtype=np.int64)

    def paths(self, positions: np.ndarray, targets: np.ndarray, shown: np.ndarray) -> list[np.ndarray | None]:
        """Per agent its path ``[L, 2]`` (row, col) from its cell through its target, or None
        (not shown, on its target, or the target cannot be reached)."""
        out: list[np.ndarray | None] = [None] * len(positions)
        agents = np.flatnonzero(shown)
        if agents.size == 0:
            return out
        cells = (positions[agents, 0] + 1) * self.width + positions[agents, 1] + 1  # [A'] flat ring cells
        goals = (targets[agents, 0] + 1) * self.width + targets[agents, 1] + 1
        reachable = self.passable.reshape(-1)[goals]  # a target on an obstacle has no table
        agents, cells, goals = agents[reachable], cells[reachable], goals[reachable]
        if agents.size == 0:
            return out
        rows = self._table_rows(goals)
        trail = [cells]
        lengths = np.zeros(agents.size, dtype=np.int64)
        current = cells
        for _ in range(self.max_length):
            code = self.pool[rows, current]
            moving = (code != FIRST_MOVE_TARGET) & (code != FIRST_MOVE_NONE)
            if not moving.any():
                break
            current = current + self.delta[code]
            lengths += moving
            trail.append(current)
        row, col = np.divmod(np.stack(trail), self.width)  # [L+1, A'] each
        cells = np.stack([row - 1, col - 1], axis=-1)  # [L+1, A', 2] map (row, col)
        for k, (agent, length) in enumerate(zip(agents.tolist(), lengths.tolist())):
            if length:
                out[agent] = cells[:length + 1, k]
        return out


# --------------------------------------------------------------------------------------------
# writing


def write_videos(frames: Iterable[Any], paths: Sequence[Path | str], fps: int, force: bool = False) -> int:
    """Write the frames (or snapshots) to every output in ``paths`` (by suffix: .gif, .mp4,
    .svg); returns the frame count.

    Frames are taken one at a time and handed to all writers before the next is drawn, so
    memory does not grow with the number of frames (a snapshot is drawn once, only if a raster
    output needs it; an SVG output needs snapshots, not images). Each output goes to a
    temporary file beside it, renamed at the end; on any error or interrupt the temporary files
    are removed and existing outputs stay untouched. Without ``force`` an existing output is
    never replaced.
    """
    outputs = [TempOutput(Path(path)) for path in paths]
    for output in outputs:
        if output.path.suffix.lower() not in WRITERS:
            raise MemarlError(f"video output must end in {', '.join(WRITERS)}, got {output.path.name!r}")
    writers: list[Any] = []
    count = 0
    try:
        for frame in frames:
            if not writers:
                for output in outputs:
                    writers.append(open_writer(output.temp, output.path.suffix.lower(), frame, fps))
            for writer in writers:
                if writer.takes_snapshots:
                    writer.add(frame)
                else:
                    writer.add(frame if isinstance(frame, Image.Image) else frame.image())
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


def write_gif(frames: Iterable[Any], path: Path | str, fps: int, force: bool = False) -> int:
    return write_videos(frames, [path], fps, force)


def write_mp4(frames: Iterable[Any], path: Path | str, fps: int, force: bool = False) -> int:
    return write_videos(frames, [path], fps, force)


def write_svg(snapshots: Iterable[Snapshot], path: Path | str, fps: int, force: bool = False) -> int:
    return write_videos(snapshots, [path], fps, force)


# --------------------------------------------------------------------------------------------
# episodes


def _on_target_mode(env: Any) -> str:
    """The env's ``on_target`` mode (Bottleneck has no such option: its agents finish)."""
    return getattr(env.config, "on_target", "finish")


def _header(mode: str, step: int, max_steps: int, count: int, num_agents: int) -> str:
    """The header text: the step and, by ``on_target`` mode, the agents arrived (``finish``), on
    their target (``nothing``) or the cumulative arrivals (``restart``), which is ``count``."""
    if mode == "finish":
        return f"step {step}/{max_steps}  arrived {count}/{num_agents}"
    if mode == "nothing":
        return f"step {step}/{max_steps}  on target {count}/{num_agents}"
    return f"step {step}/{max_steps}  arrivals {count}"


def observation_channels(env: Any) -> tuple[tuple[str, int], ...]:
    """Caption and palette index of +1 of each of the env's observation channels (generic ones
    for an unknown layout)."""
    kind = getattr(env.config, "observation_type", None)
    if kind is None:  # Bottleneck: the follower observation (obstacles -1, path +1)
        kind = "follower" if float(np.min(env.single_observation_space.low)) < 0 else "default"
    channels = CHANNELS.get(kind, ())
    count = env.obs_shape[0]
    return tuple(channels) if len(channels) == count else tuple((f"channel {k}", POSITIVE) for k in range(count))


def check_egocentric(agent: int | None, num_agents: int, option: str = "--egocentric") -> None:
    """A one-line MemarlError unless ``agent`` is None or an agent index of the episode."""
    if agent is None:
        return
    if isinstance(agent, bool) or not isinstance(agent, (int, np.integer)) or not 0 <= agent < num_agents:
        raise MemarlError(f"{option} {agent}: the agent index must be in 0..{num_agents - 1} "
                          f"(the episode has {num_agents} agents)")


def _is_scripted(policy: Any) -> bool:
    """A scripted baseline acts on the env (``act(env)``); a learned policy on observations."""
    return callable(getattr(policy, "act", None)) and not callable(getattr(policy, "step", None))


class EpisodeRecording:
    """The snapshots of one episode of ``policy`` in ``env``, produced lazily as it is iterated.

    ``env`` must be a grid env with one env (``num_envs=1``) and autoreset off, so that the
    ending step still shows the final positions and targets. ``policy`` is a learned policy
    (``initial_state(n, a, device)`` and ``step(obs, state, first, alive) -> (logits, value,
    state)``) or a scripted baseline (``act(env) -> int [1, A]``, :mod:`memarl.eval.baselines`).
    Iterating starts the episode (``start()``, which returns the first observations, or else
    ``env.reset(options=reset_options)``), then yields the first snapshot and one per step,
    until the episode ends or after ``max_steps`` steps; afterwards ``steps`` holds the steps
    taken and ``metrics`` the env's episode metrics (None if the episode did not end). A learned
    policy's memory is reset at the episode start; its actions are sampled from a generator
    seeded with ``seed`` (argmax with ``deterministic``). ``cell`` 0 picks the cell size from
    the map (:func:`auto_cell`); a cell size whose frame would be too large is lowered
    (``cell`` holds the size used once the episode started).
    """

    def __init__(self, policy: Any, env: Any, *, max_steps: int, deterministic: bool = False, cell: int = DEFAULT_CELL,
                 seed: int = 0, reset_options: dict | None = None, paths: bool = False,
                 egocentric: int | None = None, start: Callable[[], np.ndarray] | None = None):
        if env.num_envs != 1:
            raise MemarlError(f"rendering needs an env with num_envs=1, got {env.num_envs}")
        check_egocentric(egocentric, env.num_agents)
        self.policy = policy
        self.env = env
        self.max_steps = max_steps
        self.deterministic = deterministic
        self.cell = cell
        self.seed = seed
        self.reset_options = reset_options
        self.start = start
        self.paths = paths
        self.egocentric = egocentric
        self.mode = _on_target_mode(env)
        self.steps = 0
        self.metrics: dict | None = None

    def _scene(self, obstacles: np.ndarray) -> Scene:
        env = self.env
        names = observation_channels(env) if self.egocentric is not None else None
        side = env.obs_shape[-1]
        if self.cell <= 0:
            self.cell = auto_cell(obstacles.shape)
        self.cell = frame_cell(*obstacles.shape, self.cell, "the map", panels=(side, names, self.egocentric))
        panels = None
        # the widest header of the episode, so that no header is cut off on a narrow map
        most = env.num_agents * (self.max_steps if self.mode == "restart" else 1)  # the largest count
        header_width = text_width(_header(self.mode, self.max_steps, self.max_steps, most, env.num_agents))
        if names is not None:
            panels = panel_layout(max(obstacles.shape[1] * self.cell, header_width), side, self.cell, names,
                                  self.egocentric)
        return Scene(obstacles, self.cell, env.num_agents, radius=env.radius, panels=panels,
                     header_width=header_width)

    def __iter__(self) -> Iterator[Snapshot]:
        env, policy = self.env, self.policy
        mode = self.mode
        num_agents = env.num_agents
        scripted = _is_scripted(policy)
        if self.start is not None:
            obs = self.start()  # [1, A, C, 2R+1, 2R+1]
        else:
            obs = env.reset(options=self.reset_options)
        scene = self._scene(env.obstacles(0))
        planner = PathPlanner(scene.obstacles) if self.paths else None
        act = self._scripted_actions() if scripted else self._learned_actions()
        next(act)  # the policy's memory and sampler, set up after the reset
        arrivals = 0  # cumulative arrivals (restart mode)
        on_target = int((env.positions[0] == env.targets[0]).all(axis=1).sum())

        def header(step: int, shown: np.ndarray) -> str:
            count = {"finish": int(num_agents - shown.sum()), "nothing": on_target}.get(mode, arrivals)
            return _header(mode, step, self.max_steps, count, num_agents)

        def snapshot(step: int, shown: np.ndarray) -> Snapshot:
            positions, targets = env.positions[0], env.targets[0]
            return Snapshot(scene, step, positions, targets, shown, header(step, shown),
                            window=None if self.egocentric is None else obs[0, self.egocentric].copy(),
                            paths=None if planner is None else planner.paths(positions, targets, shown))

        alive = env.alive[0].copy()  # [A]
        first = np.ones((1, num_agents), dtype=bool)  # [1, A]
        self.steps, self.metrics = 0, None
        yield snapshot(0, alive)
        for step in range(1, self.max_steps + 1):
            actions = act.send((obs, first))
            alive_before = env.alive[0].copy()  # [A]
            obs, _, _, _, info = env.step(actions)
            first = info["first"]
            arrived = info["arrived"][0]  # [A]
            arrivals += int(arrived.sum())
            on_target = int((env.positions[0] == env.targets[0]).all(axis=1).sum())
            # without autoreset, an ending env shows its final state but marks everybody not
            # alive: keep the agents that were on the grid and did not just finish
            shown = alive_before & ~arrived if mode == "finish" else alive_before
            self.steps = step
            yield snapshot(step, shown)
            if info["episode_end"][0]:
                self.metrics = dict(info["episode_metrics"][0])
                return

    def _scripted_actions(self) -> Iterator[np.ndarray]:
        """Receives (obs, first), yields ``int64 [1, A]`` actions of the scripted policy."""
        yield np.zeros(0)
        while True:
            yield np.asarray(self.policy.act(self.env), dtype=np.int64)

    def _learned_actions(self) -> Iterator[np.ndarray]:
        """Receives (obs, first), yields ``int64 [1, A]`` actions of the learned policy."""
        import torch

        policy, num_agents = self.policy, self.env.num_agents
        parameter = next(iter(policy.parameters()), None) if hasattr(policy, "parameters") else None
        device = parameter.device if parameter is not None else torch.device("cpu")
        sampler = torch.Generator().manual_seed(self.seed)
        state = policy.initial_state(1, num_agents, device)
        obs, first = yield np.zeros(0)
        while True:
            with torch.no_grad():  # only around the step: a generator suspended inside it would leak the mode
                positions = agent_positions(self.env)
                logits, _, state = policy.step(
                    torch.as_tensor(obs, device=device), state, torch.as_tensor(first, device=device),
                    torch.as_tensor(self.env.alive, device=device),
                    None if positions is None else torch.as_tensor(positions, device=device))  # [1, A, actions]
                if self.deterministic:
                    actions = logits.argmax(-1)  # [1, A]
                else:
                    probs = torch.softmax(logits.reshape(num_agents, -1).float().cpu(), dim=-1)  # [A, actions]
                    actions = torch.multinomial(probs, 1, generator=sampler).reshape(1, num_agents)
            obs, first = yield actions.cpu().numpy()


def record_episode(policy: Any, env: Any, *, max_steps: int, deterministic: bool = False, cell: int = DEFAULT_CELL,
                   seed: int = 0, reset_options: dict | None = None, paths: bool = False,
                   egocentric: int | None = None, start: Callable[[], np.ndarray] | None = None) -> EpisodeRecording:
    """The snapshots of one episode, produced lazily (see :class:`EpisodeRecording`)."""
    return EpisodeRecording(policy, env, max_steps=max_steps, deterministic=deterministic, cell=cell,
                            seed=seed, reset_options=reset_options, paths=paths, egocentric=egocentric,
                            start=start)


def auto_cell(map_shape: tuple[int, int]) -> int:
    """The cell size ``cell=0`` stands for: the longer map side in about :data:`AUTO_MAP_SIDE`
    pixels, between :data:`MIN_AUTO_CELL` and :data:`DEFAULT_CELL`."""
    return max(MIN_AUTO_CELL, min(DEFAULT_CELL, AUTO_MAP_SIDE // max(map_shape)))


def current_observation(env: Any) -> np.ndarray:
    """The observations ``[1, A, C, 2R+1, 2R+1]`` of the episode the caller started in ``env``."""
    return env.observe()


def render_episode_video(policy: Any, env: Any, path: Path | str, *, max_steps: int, deterministic: bool = False,
                         fps: int = 6, cell: int = DEFAULT_CELL, paths: bool = False, egocentric: int | None = None,
                         seed: int = 0, episode: Any = None, reset_options: dict | None = None,
                         force: bool = False) -> Path:
    """One episode of ``policy`` in ``env`` written to ``path`` (``.gif``, ``.mp4`` or ``.svg``);
    the entry point of ``memarl eval --videos``.

    ``env``: a built grid env with ``num_envs=1`` and autoreset off. Which episode: with
    ``episode`` (a :class:`~memarl.envs.base.PinnedEpisode`) it is started here by
    ``env.start_episodes([episode])``; with ``reset_options`` by ``env.reset(options=...)``
    (POGEMA: ``{"seeds": [instance_seed]}``; Bottleneck: ``{"corridor_lengths": [L],
    "episode_seeds": [s], "max_episode_steps": [T]}``); with neither, the caller has started
    it and it is recorded from its current state. ``policy``: a learned policy or a scripted
    baseline (see :class:`EpisodeRecording`). At most ``max_steps`` steps are played. ``cell``
    0 picks the cell size from the map (:func:`auto_cell`); a cell size too large for a frame
    is lowered. An existing ``path`` is replaced only with ``force``. Returns ``path``.
    """
    path = Path(path)
    if path.suffix.lower() not in WRITERS:
        raise MemarlError(f"video output must end in {', '.join(WRITERS)}, got {path.name!r}")
    if episode is not None and reset_options is not None:
        raise MemarlError("give render_episode_video an episode or reset options, not both")
    start = None
    if episode is not None:
        start = lambda: env.start_episodes([episode])  # noqa: E731
    elif reset_options is None:
        start = lambda: current_observation(env)  # noqa: E731
    recording = record_episode(policy, env, max_steps=max_steps, deterministic=deterministic, cell=cell,
                               seed=seed, reset_options=reset_options, paths=paths, egocentric=egocentric,
                               start=start)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_videos(recording, [path], fps, force)
    return path


# --------------------------------------------------------------------------------------------
# validation and the render command


def frame_cell(map_height: int, map_width: int, cell: int, option: str,
               panels: tuple[int, Sequence[tuple[str, int]] | None, int | None] | None = None) -> int:
    """The cell size to draw a ``map_height x map_width`` map with: ``cell``, or the largest
    smaller size (down to ``min(cell, MIN_AUTO_CELL)``) whose frame fits :data:`MAX_FRAME_SIDE`
    per side and :data:`MAX_FRAME_PIXELS` in all. ``panels`` = (window side,
    :func:`observation_channels` or None, agent) counts the egocentric panels in. ``option``
    names what set the map size, for the error when even the smallest cell does not fit."""
    def fits(size: int) -> bool:
        layout = None
        if panels is not None and panels[1] is not None:
            layout = panel_layout(map_width * size, panels[0], size, panels[1], int(panels[2] or 0))
        width, height = frame_size((map_height, map_width), size, layout)
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
    """Build the env of the run (its resolved training env config plus the render overrides)."""
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
        maps = getattr(env, "instances", cfg)  # the derived map sizes (on the env's instances, else the config)
        where = f"map {maps.episode_map_name(seed)}" if cfg.map_name else f"{maps.height}x{maps.width} map"
        size_option = f"--map-name {map_name}" if map_name is not None else f"the run's {maps.height}x{maps.width} map"
        return _EpisodeSetup(env, {"seeds": [seed]}, int(cfg.max_episode_steps), (maps.height, maps.width),
                             f"{env_id} {where} agents={env.num_agents} seed={seed}", size_option)
    raise MemarlError(f"render supports the grid envs (bottleneck, pogema-mapf, pogema-lmapf); {run} is a {env_id} run")


def render_run(run: str, out: str, *, corridor_length: int | None = None, map_name: str | None = None,
               num_agents: int | None = None, seed: int = 0, max_steps: int | None = None,
               which: str = "best", deterministic: bool = False, fps: int = 6, cell: int = DEFAULT_CELL,
               force: bool = False, paths: bool = False, egocentric: int | None = None) -> list[Path]:
    """``memarl render``: one episode of a trained policy as a GIF (plus an MP4 beside it), an
    MP4 or an SVG animation.

    ``corridor_length`` applies to Bottleneck runs (default 5), ``map_name`` / ``num_agents`` to
    POGEMA runs (default: the training options); an option that does not apply is an error.
    ``max_steps`` defaults to 2L+100 (Bottleneck) or the env's ``max_episode_steps``
    (POGEMA). A cell size whose frame would exceed :data:`MAX_FRAME_SIDE` is lowered to fit
    (said in the printed line). A ``.gif`` output also writes the ``.mp4`` beside it unless that
    exists and ``force`` is off. ``paths`` draws the planned paths, ``egocentric`` the
    observation of that agent beside the map (an index of the episode's agents). Returns the
    paths written.
    """
    import torch

    from memarl.eval.policy_io import load_policy, training_env_config

    RenderConfig(run=run, out=out, corridor_length=corridor_length, map_name=map_name,
                 num_agents=num_agents, seed=seed, max_steps=max_steps, checkpoint=which,
                 deterministic=deterministic, fps=fps, cell=cell, force=force, paths=paths,
                 egocentric=egocentric).validate()
    out_path = Path(out)
    policy = load_policy(run, which=which)
    info = policy.checkpoint_info
    # the training env exactly (every config field the checkpoint resolved), then the overrides
    setup = _setup_episode(info["env_id"], training_env_config(info), str(run), corridor_length=corridor_length,
                           map_name=map_name, num_agents=num_agents, seed=seed, max_steps=max_steps)
    check_egocentric(egocentric, setup.env.num_agents)
    names = observation_channels(setup.env) if egocentric is not None else None
    used_cell = frame_cell(*setup.map_shape, cell, setup.size_option,
                           panels=(setup.env.obs_shape[-1], names, egocentric))
    outputs = [out_path]
    notes = []
    if used_cell != cell:
        notes.append(f"cell lowered from {cell} to {used_cell} px to fit {MAX_FRAME_SIDE} px")
    if out_path.suffix.lower() == ".gif":
        mp4 = out_path.with_suffix(".mp4")
        if force or not mp4.exists():
            outputs.append(mp4)
        else:
            notes.append(f"kept the existing {mp4.name} (pass --force to replace it)")
    recording = record_episode(policy, setup.env, max_steps=setup.max_steps, deterministic=deterministic,
                               cell=used_cell, seed=seed, reset_options=setup.reset_options, paths=paths,
                               egocentric=egocentric)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # one env's policy step is too small to gain from threads, and ffmpeg encodes on another core
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        frames = write_videos(recording, outputs, fps, force)
    finally:
        torch.set_num_threads(torch_threads)
    seconds = time.perf_counter() - start
    metrics = recording.metrics or {}
    shown = ", ".join(f"{key}={metrics[key]:.3g}" if isinstance(metrics[key], float) else f"{key}={metrics[key]}"
                      for key in ("CSR", "ISR", "SoC", "avg_throughput", "throughput_count") if key in metrics)
    print(f"episode {setup.label}: {recording.steps} steps, {shown or 'did not end'}; {frames} frames "
          f"in {seconds:.1f} s ({frames / max(seconds, 1e-9):.1f} frames/s)" + "".join(f"; {n}" for n in notes))
    return outputs


@dataclasses.dataclass
class RenderConfig:
    """``memarl render``: one episode of a trained policy as a GIF (and an MP4 beside it), an MP4
    or an SVG animation."""

    run: str | None = None
    """run directory or checkpoint file (or --checkpoint FILE instead)"""
    out: str = ""
    """output file: .gif (an .mp4 is written beside it), .mp4 or .svg (an animation); required"""
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
    cell: Annotated[int, Range(*CELL_RANGE)] = DEFAULT_CELL
    """pixels per grid cell (lowered to fit when a frame would exceed the size limit)"""
    force: bool = False
    """overwrite --out (and the .mp4 beside a .gif) if it exists"""
    paths: bool = False
    """draw each agent's planned path: its BFS shortest path to its target on the static map
    (the path of the follower observation and of the greedy baseline)"""
    egocentric: Annotated[int | None, Range(0, 10_000_000)] = None
    """show this agent's observation channels beside the map and outline its window (an agent
    index, 0 to agents - 1)"""

    def validate(self) -> None:
        """Every option before anything is loaded or written (one-line MemarlError)."""
        from memarl.eval.evaluate import check_checkpoint_choice

        validate_fields(self, label=option_label)
        if not self.out:
            raise MemarlError("--out is required: a .gif, .mp4 or .svg file")
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
