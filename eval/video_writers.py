"""Streaming video writers of :mod:`memarl.eval.render`: GIF, MP4 and an SVG animation.

* Colours: one fixed 256-entry palette (:data:`PALETTE`): free cells white, obstacles dark,
  grid lines light grey, text black, observation ``+1`` blue; agent ``i`` the colour
  :func:`agent_colour` (8 hand-picked colours, then golden-ratio spaced HSV hues). Raster frames
  are palette images over it; the SVG uses the same colours.
* GIF (:class:`GifWriter`): the GIF89a blocks are written here, frame by frame, with the fixed
  palette as the global colour table, looping forever; PIL's LZW encoder compresses each frame
  (``GifImagePlugin.getdata``). After the first frame only the bounding box of the changed
  pixels is stored, unchanged pixels in it transparent (disposal "leave in place").
* MP4 (:class:`Mp4Writer`): H.264 / yuv420p (BT.709) through the ffmpeg binary that ships with
  the pip package ``imageio-ffmpeg``, fed raw YUV frames made here by palette lookups; odd frame
  sizes are padded to even ones.
* SVG (:class:`SvgWriter`): a SMIL animation (no script) drawn after pogema's animations: the
  map as one static path, agents as circles and their targets as squares whose positions change
  through discrete ``<animate>`` elements, one keyTime per change (so a waiting agent costs
  nothing), finished agents hidden by animated ``visibility``, one header text per step, and
  optionally the planned paths and the egocentric panels. Positions go into compact per-step
  int16 records while the episode runs and the file is written at the end. Without SMIL
  support a viewer shows the final frame (the static attributes hold the last values).
* Every output is written to a hidden temporary file in its folder and renamed at the end
  (:class:`TempOutput`), so a failure or Ctrl+C never leaves a half-written file or destroys an
  existing one.

Raster writers take frames as PIL palette images (``add(image)``); the SVG writer takes the
episode snapshots of :mod:`memarl.eval.render` (``add(snapshot)``), which carry the scene
(map, cell size, layout) and the state of one step.
"""
from __future__ import annotations

import colorsys
import os
import struct
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import GifImagePlugin, Image

from memarl.errors import MemarlError

HEADER = 18
"""pixels of the header band above the map"""
MP4_QUALITY = 7
"""imageio-ffmpeg quality 0..10 (7: libx264 crf 15, sharp edges on flat colours)"""
X264_OPTIONS = ["-preset", "veryfast", "-threads", "1", "-x264-params", "rc-lookahead=5:bframes=0"]
"""x264 settings: fast, and few frames in flight so that ffmpeg's memory stays small for large
frames (a 144 x 16082 px frame: about 330 MB instead of 960 MB with the defaults); one thread,
since Python draws on another core"""

# palette indices of the fixed palette; agent colours start at FIRST_AGENT_INDEX
BACKGROUND, WALL, GRID_LINE, TEXT, TRANSPARENT, POSITIVE = range(6)
FIRST_AGENT_INDEX = 8
BASE_COLOURS = [(255, 255, 255), (70, 70, 80), (225, 225, 230), (0, 0, 0), (255, 0, 255), (30, 90, 200)]
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


def hex_colour(colour: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % colour


# --------------------------------------------------------------------------------------------
# temporary outputs


class TempOutput:
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


# --------------------------------------------------------------------------------------------
# raster writers


class GifWriter:
    """Writes a looping GIF89a frame by frame; memory holds one frame's palette indices.

    Frames must be palette images over :data:`PALETTE` of the same size. The delay of frame
    ``k`` is ``round((k + 1) * 100 / fps) - round(k * 100 / fps)`` centiseconds, so the frame
    rate is exact on average (browsers play delays under 2 cs, i.e. fps above 50, slower).
    """

    takes_snapshots = False

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


def _bt709_tables() -> tuple[list[int], list[int], list[int]]:
    """Y, Cb, Cr (BT.709, limited range) of each palette entry: the palette indices of a frame
    become its YUV planes through three 256-entry lookups."""
    rgb = np.frombuffer(PALETTE, dtype=np.uint8).reshape(256, 3).astype(np.float64)
    luma = rgb @ np.array([0.2126, 0.7152, 0.0722])  # 0..255
    y = 16 + luma * 219 / 255
    cb = 128 + (rgb[:, 2] - luma) / 1.8556 * 224 / 255
    cr = 128 + (rgb[:, 0] - luma) / 1.5748 * 224 / 255
    return tuple(np.clip(np.round(plane), 0, 255).astype(np.uint8).tolist() for plane in (y, cb, cr))


YUV_TABLES = _bt709_tables()
"""per palette index: Y, Cb, Cr lists (PIL ``point`` tables)"""
COLOUR_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
"""the MP4 says which YUV it holds, so that players show the palette's colours"""


class Mp4Writer:
    """Streams frames to the ffmpeg of ``imageio-ffmpeg`` (H.264, yuv420p, BT.709).

    Frames must be palette images over :data:`PALETTE` (as :class:`GifWriter`'s). They are
    turned into yuv420p here, by table lookups on the palette indices (chroma from the top-left
    pixel of each 2 x 2 block; the frames are flat colours), because ffmpeg's RGB to YUV
    conversion took about half of its time, and raw YUV is half the bytes of RGB through the
    pipe. Odd frame sides are padded with background to even ones (yuv420p, H.264).
    """

    takes_snapshots = False

    def __init__(self, path: Path, size: tuple[int, int], fps: int):
        import imageio_ffmpeg

        self.path = path
        self.size = size
        width, height = size
        self.even = (width + width % 2, height + height % 2)
        self.canvas = None if self.even == size else np.full(self.even[::-1], BACKGROUND, dtype=np.uint8)
        # macro_block_size=1: no rescaling by imageio; the frames are already even-sized YUV
        self.encoder = imageio_ffmpeg.write_frames(
            str(path), self.even, pix_fmt_in="yuv420p", fps=fps, codec="libx264", quality=MP4_QUALITY,
            macro_block_size=1, ffmpeg_log_level="error", output_params=["-f", "mp4", *COLOUR_TAGS, *X264_OPTIONS])
        self.encoder.send(None)

    def add(self, frame: Image.Image) -> None:
        if frame.size != self.size or frame.mode != "P":
            raise MemarlError(f"MP4 frames must be {self.size} palette images, got {frame.size} {frame.mode}")
        indices = np.asarray(frame)  # [height, width] uint8
        if self.canvas is not None:
            self.canvas[:indices.shape[0], :indices.shape[1]] = indices
            indices = self.canvas
        y_table, cb_table, cr_table = YUV_TABLES
        corners = Image.fromarray(np.ascontiguousarray(indices[::2, ::2]))  # [height/2, width/2]
        data = (Image.fromarray(indices).point(y_table).tobytes() + corners.point(cb_table).tobytes()
                + corners.point(cr_table).tobytes())
        try:
            self.encoder.send(data)
        except OSError as error:
            raise MemarlError(f"ffmpeg stopped while writing {self.path}: {str(error).splitlines()[0]}") from None

    def close(self) -> None:
        self.encoder.close()  # waits for ffmpeg to finish the file
        # imageio-ffmpeg does not report ffmpeg's exit status: check that a file came out
        if not self.path.exists() or self.path.stat().st_size == 0:
            raise MemarlError(f"ffmpeg wrote nothing to {self.path} (its messages are above)")

    def abort(self) -> None:
        try:
            self.encoder.close()
        except Exception:  # noqa: BLE001 (ffmpeg may already be gone; the file is discarded anyway)
            pass


# --------------------------------------------------------------------------------------------
# SVG


def _number(value: float) -> str:
    return f"{value:.6g}"


def path_data(cells: np.ndarray) -> str:
    """SVG path data of a grid path ``[L, 2]`` (row, col), L >= 2: a moveto to the first cell,
    then one H or V per straight run (x = column, y = row)."""
    points = cells.tolist()  # plain Python: paths are short, numpy's per-call cost would dominate
    parts = [f"M{points[0][1]} {points[0][0]}"]
    last = len(points) - 1
    for k in range(1, last + 1):
        row, col = points[k]
        before_row, before_col = points[k - 1]
        if k < last:
            next_row, next_col = points[k + 1]
            if next_row - row == row - before_row and next_col - col == col - before_col:
                continue  # the run goes on
        parts.append(f"V{row}" if row != before_row else f"H{col}")
    return "".join(parts)


def _changes(values: np.ndarray) -> np.ndarray:
    """Indices ``[K]`` where ``values [T, ...]`` differs from the step before (always 0)."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    differs = (values[1:] != values[:-1]).reshape(len(values) - 1, -1).any(axis=1)
    return np.concatenate([[0], np.flatnonzero(differs) + 1])


class SvgWriter:
    """Writes an SMIL-animated SVG of an episode from its snapshots (see the module docstring).

    Memory: per step one int16 record of the agents' positions, targets and visibility
    (``5 x A`` values), the header text, the egocentric window (``C x (2R+1)^2`` int8) if shown,
    and the planned paths of agents whose path changed (as path strings, only on change).
    """

    takes_snapshots = True

    def __init__(self, path: Path, first: Any, fps: int):
        if not hasattr(first, "scene"):
            raise MemarlError("an SVG output needs episode snapshots (record_episode), not raster images")
        scene = first.scene
        self.path = path
        self.scene = scene
        self.fps = fps
        self.records: list[bytes] = []  # per step: int16 [5, A] rows, cols, target rows, target cols, shown
        self.texts: list[str] = []
        self.windows: list[bytes] = []  # per step: int8 [C, S, S] -1 / 0 / 1
        num_agents = scene.num_agents
        # per agent: (step, path string) at each change of the planned path
        self.path_changes: list[list[tuple[int, str]]] = [[] for _ in range(num_agents)]
        self.last_paths: list[str | None] = [None] * num_agents
        self.duration = ""  # of the animation, set when it is written
        self.file = open(path, "w", encoding="utf-8")  # the temporary file: written in close()

    def add(self, snapshot: Any) -> None:
        step = len(self.texts)
        record = np.empty((5, self.scene.num_agents), dtype=np.int16)
        record[0:2] = snapshot.positions.T
        record[2:4] = snapshot.targets.T
        record[4] = snapshot.shown
        self.records.append(record.tobytes())
        self.texts.append(snapshot.text)
        if self.scene.panels is not None:
            self.windows.append(snapshot.window_levels().tobytes())
        if snapshot.paths is not None:
            for agent, cells in enumerate(snapshot.paths):
                text = "" if cells is None or len(cells) < 2 else path_data(cells)
                if text != self.last_paths[agent]:
                    self.path_changes[agent].append((step, text))
                    self.last_paths[agent] = text

    # ---------------------------------------------------------------- writing

    def _animate(self, attribute: str, steps: np.ndarray, values: list[str]) -> str:
        """A discrete ``<animate>`` over the episode: ``values[k]`` from step ``steps[k]`` on."""
        if len(values) < 2:
            return ""
        total = len(self.texts)
        key_times = ";".join(_number(step / total) for step in steps.tolist())
        return (f'<animate attributeName="{attribute}" calcMode="discrete" dur="{self.duration}" '
                f'repeatCount="indefinite" keyTimes="{key_times}" values="{";".join(values)}"/>')

    def _animated(self, name: str, attributes: dict[str, np.ndarray], static: str = "",
                  visible: np.ndarray | None = None) -> str:
        """An element ``name`` whose integer ``attributes`` (``[T]`` each) change over the episode;
        the static values are the final step's, for viewers without SMIL."""
        parts = [f"<{name} {static}"]
        children = []
        for attribute, values in attributes.items():
            parts.append(f' {attribute}="{values[-1]}"')
            steps = _changes(values)
            children.append(self._animate(attribute, steps, [str(v) for v in values[steps].tolist()]))
        if visible is not None:
            steps = _changes(visible)
            shown = ["visible" if v else "hidden" for v in visible[steps].tolist()]
            parts.append(f' visibility="{shown[-1]}"')
            children.append(self._animate("visibility", steps, shown))
        body = "".join(children)
        return "".join(parts) + (f">{body}</{name}>" if body else "/>")

    def close(self) -> None:
        scene = self.scene
        total = len(self.texts)
        self.duration = f"{_number(total / self.fps)}s"
        num_agents = scene.num_agents
        data = np.frombuffer(b"".join(self.records), dtype=np.int16).reshape(total, 5, num_agents)
        self.records = []
        width, height = scene.size
        map_height, map_width = scene.obstacles.shape
        cell = scene.cell
        out = self.file
        out.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">\n')
        out.write(f'<rect width="{width}" height="{height}" fill="{hex_colour(BASE_COLOURS[BACKGROUND])}"/>\n')
        # header: one text per step, shown during its step only
        out.write(f'<g fill="{hex_colour(BASE_COLOURS[TEXT])}">\n')
        for step, text in enumerate(self.texts):
            out.write(self._header_text(step, text, total))
        out.write("</g>\n")
        # the map in cell units: obstacles, grid lines, paths, targets, windows, agents
        out.write(f'<clipPath id="map"><rect width="{map_width}" height="{map_height}"/></clipPath>\n')
        out.write(f'<g transform="translate(0 {HEADER}) scale({cell})" clip-path="url(#map)">\n')
        if cell >= 4:  # as the raster frames: below that, lines would cover most of a cell
            lines = "".join(f"M0 {row}H{map_width}" for row in range(map_height + 1))
            lines += "".join(f"M{col} 0V{map_height}" for col in range(map_width + 1))
            out.write(f'<path d="{lines}" stroke="{hex_colour(BASE_COLOURS[GRID_LINE])}" '
                      f'stroke-width="{_number(1 / cell)}"/>\n')
        out.write(f'<path d="{_obstacle_path(scene.obstacles)}" fill="{hex_colour(BASE_COLOURS[WALL])}"/>\n')
        rows, cols, target_rows, target_cols = data[:, 0], data[:, 1], data[:, 2], data[:, 3]
        shown = data[:, 4].astype(bool)
        if any(self.path_changes):
            out.write('<g transform="translate(.5 .5)" fill="none" stroke-width=".12" '
                      'stroke-linejoin="round" stroke-linecap="round">\n')
            for agent, changes in enumerate(self.path_changes):
                if not changes or all(text == "" for _, text in changes):
                    continue
                steps = np.array([step for step, _ in changes])
                values = [text or "M0 0" for _, text in changes]  # a lone moveto draws nothing
                out.write(f'<path stroke="{hex_colour(agent_colour(agent))}" stroke-opacity=".7" '
                          f'd="{values[-1]}">{self._animate("d", steps, values)}</path>\n')
            out.write("</g>\n")
        out.write('<g transform="translate(.2 .2)" fill="none" stroke-width=".08">\n')
        for agent in range(num_agents):
            out.write(self._animated("rect", {"x": target_cols[:, agent], "y": target_rows[:, agent]},
                                     f'width=".6" height=".6" stroke="{hex_colour(agent_colour(agent))}"',
                                     visible=shown[:, agent]) + "\n")
        out.write("</g>\n")
        panels = scene.panels
        if panels is not None:
            radius, agent = scene.radius, panels.agent
            out.write(f'<g transform="translate({-radius} {-radius})" fill="none" '
                      f'stroke-width="{_number(2 / cell)}">\n')
            out.write(self._animated("rect", {"x": cols[:, agent], "y": rows[:, agent]},
                                     f'width="{2 * radius + 1}" height="{2 * radius + 1}" '
                                     f'stroke="{hex_colour(agent_colour(agent))}"', visible=shown[:, agent]) + "\n")
            out.write("</g>\n")
        out.write('<g transform="translate(.5 .5)">\n')
        for agent in range(num_agents):
            out.write(self._animated("circle", {"cx": cols[:, agent], "cy": rows[:, agent]},
                                     f'r=".34" fill="{hex_colour(agent_colour(agent))}"',
                                     visible=shown[:, agent]) + "\n")
        out.write("</g>\n</g>\n")
        if panels is not None:
            self._write_panels(panels, total)
        out.write("</svg>\n")
        out.close()

    def _header_text(self, step: int, text: str, total: int) -> str:
        """The header of step ``step``: hidden except during that step (the last one stays
        visible without SMIL)."""
        visible = "visible" if step == total - 1 else "hidden"
        if total == 1:
            return f'<text x="4" y="13">{escape(text)}</text>\n'
        key_times = [0.0] if step == 0 else [0.0, step / total]
        values = ["visible"] if step == 0 else ["hidden", "visible"]
        if step < total - 1:
            key_times.append((step + 1) / total)
            values.append("hidden")
        animate = (f'<animate attributeName="visibility" calcMode="discrete" dur="{self.duration}" '
                   f'repeatCount="indefinite" keyTimes="{";".join(map(_number, key_times))}" '
                   f'values="{";".join(values)}"/>')
        return f'<text x="4" y="13" visibility="{visible}">{escape(text)}{animate}</text>\n'

    def _write_panels(self, panels: Any, total: int) -> None:
        """The egocentric observation panels: one rect per window cell with an animated fill."""
        out = self.file
        channels, side = len(panels.names), panels.side
        levels = np.frombuffer(b"".join(self.windows), dtype=np.int8).reshape(total, channels, side, side)
        self.windows = []
        size = panels.cell
        out.write(f'<text x="{panels.title[0]}" y="13">{escape(panels.title[1])}</text>\n')
        for channel, (name, (x0, y0)) in enumerate(zip(panels.names, panels.origins)):
            fills = {-1: hex_colour(BASE_COLOURS[WALL]), 0: hex_colour(BASE_COLOURS[BACKGROUND]),
                     1: hex_colour(BASE_COLOURS[panels.positive[channel]])}
            out.write(f'<text x="{x0}" y="{y0 - 3}">{escape(name)}</text>\n')
            out.write(f'<g transform="translate({x0} {y0})">\n')
            for row in range(side):
                for col in range(side):
                    values = levels[:, channel, row, col]
                    steps = _changes(values)
                    colours = [fills[int(v)] for v in values[steps].tolist()]
                    animate = self._animate("fill", steps, colours)
                    rect = (f'<rect x="{col * size}" y="{row * size}" width="{size}" height="{size}" '
                            f'fill="{colours[-1]}"')
                    out.write(rect + (f">{animate}</rect>\n" if animate else "/>\n"))
            if size >= 4:
                extent = side * size
                lines = "".join(f"M0 {k * size}H{extent}M{k * size} 0V{extent}" for k in range(side + 1))
                out.write(f'<path d="{lines}" stroke="{hex_colour(BASE_COLOURS[GRID_LINE])}" stroke-width="1"/>\n')
            centre = (side // 2) * size
            out.write(f'<rect x="{centre}" y="{centre}" width="{size}" height="{size}" fill="none" '
                      f'stroke="{hex_colour(agent_colour(panels.agent))}" stroke-width="2"/>\n')
            out.write("</g>\n")

    def abort(self) -> None:
        self.file.close()
        self.records, self.windows = [], []


def _obstacle_path(obstacles: np.ndarray) -> str:
    """One SVG path of the obstacle cells: a rectangle per horizontal run of obstacles."""
    parts = []
    for row, line in enumerate(obstacles):
        padded = np.concatenate([[False], line, [False]]).astype(np.int8)
        edges = np.flatnonzero(np.diff(padded))  # run starts and ends, alternating
        for start, end in zip(edges[0::2].tolist(), edges[1::2].tolist()):
            parts.append(f"M{start} {row}h{end - start}v1h{start - end}z")
    return "".join(parts)


WRITERS = {".gif": GifWriter, ".mp4": Mp4Writer, ".svg": SvgWriter}
"""writer class by output suffix"""


def open_writer(path: Path, suffix: str, first: Any, fps: int) -> Any:
    """The writer of ``suffix`` writing to ``path``, sized by the first frame or snapshot."""
    cls = WRITERS[suffix]
    if cls.takes_snapshots:
        return cls(path, first, fps)
    size = first.size if isinstance(first, Image.Image) else first.scene.size
    return cls(path, size, fps)
