"""Episode frames, streaming GIF / MP4 / SVG writers, planned paths, the egocentric view,
``render_run`` on Bottleneck and POGEMA runs and ``render_episode_video`` (``eval --videos``).

Golden frames: tests/golden/render_*.png; ``MEMARL_REGENERATE_GOLDEN=1`` rewrites them from the
current drawing (look at them before committing).
"""
import os
import re
import weakref
import xml.etree.ElementTree as ET
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from memarl.envs.pogema_env import PogemaConfig, PogemaEnv
from memarl.errors import MemarlError
from memarl.eval.render import (AGENT_COLOURS, HEADER, MAX_FRAME_SIDE, FrameDrawer, PathPlanner, RenderConfig,
                                draw_frame, frame_cell, record_episode, render_episode_video, render_run,
                                text_width, write_gif, write_mp4, write_svg, write_videos)

OBSTACLES = np.zeros((7, 9), dtype=bool)
OBSTACLES[2:5, :4] = OBSTACLES[2:5, 5:] = True
TARGETS = np.array([[6, 1], [0, 7]])


def frames(count=3, cell=10):
    """A two-agent crossing, drawn lazily: agent 1 finishes after step 1."""
    drawer = FrameDrawer(OBSTACLES, cell)
    for step in range(count):
        positions = np.array([[min(step, 6), 4], [6 - min(step, 6), 4]])  # [A, 2]
        alive = np.array([True, step < 2])
        yield drawer.draw(positions, TARGETS, alive, f"step {step}")


def test_frame_shows_walls_and_agents():
    image = np.asarray(draw_frame(OBSTACLES, np.array([[0, 4], [6, 4]]), TARGETS, np.array([True, True]),
                                  0, cell=10).convert("RGB"))
    assert image.shape == (HEADER + 70, 90, 3)
    wall = image[HEADER + 3 * 10 + 5, 5]     # row 3, col 0 is a wall
    free = image[HEADER + 0 * 10 + 5, 15]    # row 0, col 1 is free and empty
    agent = image[HEADER + 0 * 10 + 5, 45]   # agent 0 starts at row 0, col 4
    assert tuple(wall) == (70, 70, 80) and tuple(free) == (255, 255, 255)
    assert tuple(agent) == AGENT_COLOURS[0] == (220, 60, 50)


def test_many_agents_get_distinct_colours():
    colours = AGENT_COLOURS[:200]
    assert len(set(colours)) == 200
    assert not {(255, 255, 255), (70, 70, 80), (225, 225, 230), (0, 0, 0)} & set(colours)


def test_gif_round_trip_is_pixel_exact(tmp_path):
    path = tmp_path / "ep.gif"
    assert write_gif(frames(6), path, fps=5) == 6
    expected = [np.asarray(frame.convert("RGB")) for frame in frames(6)]
    with Image.open(path) as gif:
        assert gif.n_frames == 6 and gif.size == (90, HEADER + 70) and gif.info["loop"] == 0
        for k in range(6):
            gif.seek(k)
            assert gif.info["duration"] == 200
            assert np.array_equal(np.asarray(gif.convert("RGB")), expected[k])
    assert [p.name for p in tmp_path.iterdir()] == ["ep.gif"]  # the temporary file is gone


def test_mp4_through_imageio_ffmpeg_pads_odd_sizes(tmp_path):
    path = tmp_path / "ep.mp4"
    assert write_mp4(frames(5, cell=9), path, fps=5) == 5  # 81 x 81 px: odd
    assert path.read_bytes()[4:8] == b"ftyp"
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert tuple(meta["size"]) == (82, 82)
    assert sum(1 for _ in reader) == 5


def test_writers_consume_frames_one_at_a_time(tmp_path):
    alive_frames, most_alive = [0], [0]

    def released():
        alive_frames[0] -= 1

    def counted_frames():
        for frame in frames(300, cell=4):
            alive_frames[0] += 1
            most_alive[0] = max(most_alive[0], alive_frames[0])
            weakref.finalize(frame, released)
            yield frame
            del frame

    count = write_videos(counted_frames(), [tmp_path / "ep.gif", tmp_path / "ep.mp4"], fps=30)
    assert count == 300 and most_alive[0] <= 2
    with Image.open(tmp_path / "ep.gif") as gif:
        assert gif.n_frames == 300


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_failure_midway_leaves_existing_outputs_untouched(tmp_path, failure):
    gif, mp4 = tmp_path / "ep.gif", tmp_path / "ep.mp4"
    gif.write_bytes(b"old gif")

    def failing():
        yield from frames(3)
        raise failure("policy crashed or Ctrl+C")

    with pytest.raises(failure):
        write_videos(failing(), [gif, mp4], fps=5, force=True)
    assert gif.read_bytes() == b"old gif" and not mp4.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.gif"]
    with pytest.raises(MemarlError, match="exists"):
        write_videos(frames(2), [gif], fps=5, force=False)
    assert gif.read_bytes() == b"old gif"


def test_frame_cell_shrinks_large_maps_and_refuses_huge_ones():
    assert frame_cell(9, 9, 24, "x") == 24
    assert frame_cell(1004, 9, 24, "--corridor-length 1000") == 16  # the L = 1000 test corridor
    with pytest.raises(MemarlError, match="--corridor-length 1000000"):
        frame_cell(1_000_004, 9, 24, "--corridor-length 1000000")
    assert (1004 * 16 + HEADER) <= MAX_FRAME_SIDE


@pytest.mark.parametrize("options, option", [
    ({"fps": 0}, "--fps"), ({"fps": 121}, "--fps"), ({"cell": 100000}, "--cell"), ({"cell": 0}, "--cell"),
    ({"max_steps": 0}, "--max-steps"), ({"max_steps": 100_001}, "--max-steps"), ({"seed": -1}, "--seed"),
    ({"corridor_length": 1_000_000}, "--corridor-length"), ({"corridor_length": 0}, "--corridor-length"),
    ({"num_agents": 0}, "--num-agents"), ({"out_name": "ep.png"}, "--out"),
])
def test_bad_options_fail_before_anything_is_loaded_or_created(tmp_path, options, option):
    options = dict(options)
    out = tmp_path / "videos" / options.pop("out_name", "ep.gif")
    with pytest.raises(MemarlError, match=option) as error:
        render_run(str(tmp_path / "no-such-run"), str(out), **options)  # the run is never looked at
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_the_l1000_test_map_is_a_valid_render(tmp_path):
    (tmp_path / "run").mkdir()
    RenderConfig(run=str(tmp_path / "run"), out=str(tmp_path / "ep.gif"), corridor_length=1000).validate()


# ---------------------------------------------------------------- rendering trained runs


def train_tiny(run_dir, env, *env_options):
    from memarl.cli import main
    argv = ["train", "--env", env, "--agent", "srmt", "--total-steps", "64", "--num-envs", "2",
            "--rollout-len", "4", "--num-minibatches", "1", "--print-every-s", "1000", "--run-dir", str(run_dir)]
    for option in env_options:
        argv += ["--env-opt", option]
    assert main(argv) == 0
    return str(run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {"bottleneck": train_tiny(root / "btl", "bottleneck"),
            "pogema-lmapf": train_tiny(root / "lmapf", "pogema-lmapf", "num_agents=4", "obs_radius=3"),
            "pogema-mapf": train_tiny(root / "mapf", "pogema-mapf", "num_agents=3", "max_episode_steps=20")}


def test_render_bottleneck_run(runs, tmp_path, capsys):
    out = tmp_path / "ep.gif"
    written = render_run(runs["bottleneck"], str(out), corridor_length=3, max_steps=15, cell=8)
    assert written == [out, out.with_suffix(".mp4")]
    with Image.open(out) as gif:
        frame_count = gif.n_frames
        # the frame is wide enough for the longest header (the 9-cell map is narrower)
        assert gif.size == (text_width("step 15/15  arrived 2/2"), HEADER + 7 * 8) and gif.size[0] > 9 * 8
    assert 2 <= frame_count <= 16  # the first frame and one per step, until both arrived
    line = capsys.readouterr().out
    assert "bottleneck" in line and "L=3" in line and "frames/s" in line


def test_render_refuses_an_existing_out_and_keeps_an_existing_mp4(runs, tmp_path):
    out = tmp_path / "ep.gif"
    out.write_bytes(b"keep me")
    with pytest.raises(MemarlError, match="exists"):
        render_run(runs["bottleneck"], str(out), max_steps=4)
    assert out.read_bytes() == b"keep me"
    out.unlink()
    out.with_suffix(".mp4").write_bytes(b"keep me too")
    assert render_run(runs["bottleneck"], str(out), max_steps=4) == [out]
    assert out.with_suffix(".mp4").read_bytes() == b"keep me too"
    assert render_run(runs["bottleneck"], str(out), max_steps=4, force=True) == [out, out.with_suffix(".mp4")]
    assert out.with_suffix(".mp4").read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize("env, option", [("bottleneck", {"map_name": "validation-random-seed-000"}),
                                         ("bottleneck", {"num_agents": 3}),
                                         ("pogema-lmapf", {"corridor_length": 7})])
def test_option_of_another_env_is_an_error(runs, tmp_path, env, option):
    name = "--" + next(iter(option)).replace("_", "-")
    with pytest.raises(MemarlError, match=name):
        render_run(runs[env], str(tmp_path / "ep.mp4"), **option)
    assert list(tmp_path.iterdir()) == []


def test_render_lmapf_run_with_its_training_options(runs, tmp_path, capsys):
    out = tmp_path / "ep.mp4"
    assert render_run(runs["pogema-lmapf"], str(out), max_steps=12, num_agents=6, cell=6) == [out]
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    width = max(16 * 6, text_width("step 12/12  arrivals 72"))  # the registered 16 x 16 generated map
    assert tuple(meta["size"]) == (width + width % 2, HEADER + 16 * 6)
    assert sum(1 for _ in reader) == 13
    line = capsys.readouterr().out
    assert "agents=6" in line and "12 steps" in line


def test_render_builds_the_env_from_the_checkpoint_options(runs):
    from memarl.eval.policy_io import load_policy
    from memarl.eval.render import _setup_episode

    info = load_policy(runs["pogema-lmapf"]).checkpoint_info
    setup = _setup_episode(info["env"], info["env_options"], "run", corridor_length=None, map_name=None,
                           num_agents=None, seed=0, max_steps=None)
    assert setup.env.radius == 3 and setup.env.num_agents == 4 and setup.max_steps == 256


def test_memarl_render_command(runs, tmp_path, capsys):
    from memarl.cli import main
    out = tmp_path / "ep.gif"
    assert main(["render", runs["pogema-lmapf"], "--out", str(out), "--max-steps", "3", "--cell", "5"]) == 0
    assert out.exists() and out.with_suffix(".mp4").exists()
    assert main(["render", runs["bottleneck"], "--out", str(tmp_path / "x.gif"), "--corridor-length", "5000"]) == 2
    assert "--corridor-length 5000" in capsys.readouterr().err
    assert not (tmp_path / "x.gif").exists()


def test_render_mapf_run_on_a_library_map(runs, tmp_path):
    out = tmp_path / "ep.gif"
    render_run(runs["pogema-mapf"], str(out), map_name="validation-random-seed-000", cell=4)
    with Image.open(out) as gif:
        assert gif.n_frames <= 21  # the run's max_episode_steps=20 is the default episode length


# ---------------------------------------------------------------- scripted tiny episodes

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("MEMARL_REGENERATE_GOLDEN") == "1"
"""MEMARL_REGENERATE_GOLDEN=1 rewrites the golden PNGs from the current drawing (then check them by eye)"""
TINY_MAP = """
...#.
.#...
...#.
#....
..#..
"""
TINY_ACTIONS = [[2, 1], [2, 1], [4, 1], [2, 3], [4, 3], [4, 1], [2, 2], [1, 0]]
"""fixed actions of the two agents, step by step (0 wait, 1 up, 2 down, 3 left, 4 right)"""
SVG = "{http://www.w3.org/2000/svg}"


class FixedActions:
    """A scripted policy (``act(env)``) that plays :data:`TINY_ACTIONS`, then waits."""

    def __init__(self, actions=TINY_ACTIONS):
        self.actions = list(actions)
        self.step = None  # not a learned policy: no step()

    def act(self, env):
        row = self.actions.pop(0) if self.actions else [0] * env.num_agents
        return np.array([row], dtype=np.int64)


def tiny_env(on_target="restart", observation_type="follower", steps=8):
    """Two agents on :data:`TINY_MAP` with fixed targets (cycled in restart mode)."""
    return PogemaEnv(PogemaConfig(map=TINY_MAP, agents_xy=[(0, 0), (4, 4)],
                                  targets_xy=[[(4, 3), (0, 4)], [(0, 2), (2, 0)]], on_target=on_target,
                                  observation_type=observation_type, obs_radius=2, max_episode_steps=steps,
                                  auto_reset=False, seed=0))


def snapshots(env, policy=None, **options):
    return list(record_episode(policy or FixedActions(), env, max_steps=8, cell=16, **options))


def rgb(image):
    return np.asarray(image.convert("RGB"))


def golden_difference(image, name):
    """None if ``image`` equals the stored golden PNG ``name`` pixel for pixel, else what differs."""
    path = GOLDEN / name
    assert path.exists(), f"no golden {path}; run with MEMARL_REGENERATE_GOLDEN=1 to create it"
    assert path.stat().st_size < 20_000
    with Image.open(path) as golden:
        expected = rgb(golden)
    actual = rgb(image)
    if actual.shape != expected.shape:
        return f"{name}: frame size {actual.shape} != golden {expected.shape}"
    differ = np.argwhere((actual != expected).any(axis=-1))
    if differ.size:
        return f"{name}: {len(differ)} pixels differ from the golden, first at (y, x) {tuple(differ[0])}"
    return None


def assert_matches_golden(image, name):
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        image.save(GOLDEN / name, optimize=True)
    difference = golden_difference(image, name)
    assert difference is None, difference


def test_tiny_episode_frame_equals_golden_png():
    frames = snapshots(tiny_env(), paths=True, egocentric=1)
    assert_matches_golden(frames[3].image(), "render_tiny_paths_egocentric.png")


def test_tiny_finish_episode_frame_equals_golden_png():
    frames = snapshots(tiny_env(on_target="finish"))
    assert frames[6].shown.tolist() == [True, False]  # agent 1 arrived at (0, 2) on step 6
    assert len(frames) == 8 and "arrived 2/2" in frames[-1].text  # agent 0 on step 7: the end
    assert_matches_golden(frames[6].image(), "render_tiny_finish.png")


def test_golden_comparison_fails_on_one_pixel():
    image = snapshots(tiny_env(), paths=True, egocentric=1)[3].image()
    assert golden_difference(image, "render_tiny_paths_egocentric.png") is None
    for x, y in ((7, 30), (0, 0), (image.size[0] - 1, image.size[1] - 1)):
        changed = image.copy()
        changed.putpixel((x, y), (changed.getpixel((x, y)) + 1) % 256)
        difference = golden_difference(changed, "render_tiny_paths_egocentric.png")
        assert difference.split(": ")[1].startswith("1 pixels differ")
    assert "frame size" in golden_difference(image.crop((0, 0, 10, 10)), "render_tiny_paths_egocentric.png")


def test_frames_follow_the_scripted_actions():
    frames = snapshots(tiny_env())
    assert [f.step for f in frames] == list(range(9))
    assert frames[0].positions.tolist() == [[0, 0], [4, 4]]
    assert frames[1].positions.tolist() == [[1, 0], [3, 4]]
    assert frames[7].positions.tolist() == [[4, 3], [1, 2]]
    assert frames[7].targets.tolist() == [[0, 4], [2, 0]]  # the next targets of the sequences
    assert frames[-1].text == "step 8/8  arrivals 2"


# ---------------------------------------------------------------- SVG


def svg_value(element, attribute, step, total):
    """The value of ``attribute`` of ``element`` during ``step`` of ``total`` (SMIL discrete)."""
    for animate in element.findall(f"{SVG}animate"):
        if animate.get("attributeName") == attribute:
            times = [float(t) for t in animate.get("keyTimes").split(";")]
            values = animate.get("values").split(";")
            assert times[0] == 0 and times == sorted(times) and len(times) == len(values)
            now = (step + 0.5) / total
            return values[max(k for k, t in enumerate(times) if t <= now)]
    return element.get(attribute)


def test_svg_animation_is_well_formed_and_replays_the_episode(tmp_path):
    frames = snapshots(tiny_env(on_target="finish"), paths=True)
    path = tmp_path / "ep.svg"
    assert write_svg(iter(frames), path, fps=4) == len(frames)
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg" and root.get("width") == str(frames[0].scene.size[0])
    circles = root.findall(f".//{SVG}circle")
    squares = [r for r in root.findall(f".//{SVG}rect") if r.get("width") == ".6"]
    assert len(circles) == len(squares) == 2
    total = len(frames)
    for agent, (circle, square) in enumerate(zip(circles, squares)):
        assert circle.get("fill") == "#%02x%02x%02x" % AGENT_COLOURS[agent]
        for step, frame in enumerate(frames):
            row, col = frame.positions[agent]
            assert (svg_value(circle, "cx", step, total), svg_value(circle, "cy", step, total)) == (str(col), str(row))
            target = frame.targets[agent]
            assert (svg_value(square, "x", step, total), svg_value(square, "y", step, total)) == \
                (str(target[1]), str(target[0]))
            visible = "visible" if frame.shown[agent] else "hidden"
            assert svg_value(circle, "visibility", step, total) == visible
        # the static attributes are the final step's (what a viewer without SMIL shows)
        assert (circle.get("cx"), circle.get("cy")) == tuple(str(v) for v in frames[-1].positions[agent][::-1])
    for animate in root.iter(f"{SVG}animate"):
        assert animate.get("calcMode") == "discrete" and animate.get("dur") == f"{total / 4:g}s"
    texts = [t for t in root.findall(f".//{SVG}text") if t.text and t.text.startswith("step")]
    assert len(texts) == total
    for step, frame in enumerate(frames):
        shown = [t.text for t in texts if svg_value(t, "visibility", step, total) != "hidden"]
        assert shown == [frame.text]
    assert len(root.findall(f".//{SVG}path")) >= 2  # the grid lines and the obstacles (and paths)
    assert [p.name for p in tmp_path.iterdir()] == ["ep.svg"]


def test_svg_obstacles_and_paths(tmp_path):
    frames = snapshots(tiny_env(), paths=True)
    path = tmp_path / "ep.svg"
    write_svg(iter(frames), path, fps=4)
    root = ET.parse(path).getroot()
    walls = [p for p in root.iter(f"{SVG}path") if p.get("fill") == "#464650"]
    assert len(walls) == 1 and walls[0].get("d").count("z") == 5  # five obstacle runs on TINY_MAP
    planned = [p for p in root.iter(f"{SVG}path") if p.get("stroke-opacity")]
    assert len(planned) == 2
    total = len(frames)
    for agent, element in enumerate(planned):
        for step, frame in enumerate(frames):
            cells = frame.paths[agent]
            expected = [] if cells is None else cells.tolist()
            assert path_cells(svg_value(element, "d", step, total)) == expected


def path_cells(data):
    """The (row, col) cells of an SVG path "Mx yH..V.." of unit steps ([] for a lone moveto)."""
    tokens = re.findall(r"([MHV])(-?\d+)(?: (-?\d+))?", data)
    (_, x, y), cells = tokens[0], []
    row, col = int(y), int(x)
    for command, value, _ in tokens[1:]:
        if not cells:
            cells.append([row, col])
        while (col if command == "H" else row) != int(value):
            if command == "H":
                col += 1 if int(value) > col else -1
            else:
                row += 1 if int(value) > row else -1
            cells.append([row, col])
    return cells


def test_svg_path_data_is_one_command_per_straight_run():
    from memarl.eval.video_writers import path_data

    cells = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [2, 2], [1, 2], [1, 3]])
    assert path_data(cells) == "M0 0V2H2V1H3"
    assert path_cells(path_data(cells)) == cells.tolist()
    assert path_data(np.array([[3, 4], [3, 3]])) == "M4 3H3"


def test_svg_egocentric_panels_replay_the_observation(tmp_path):
    frames = snapshots(tiny_env(), egocentric=0)
    path = tmp_path / "ep.svg"
    write_svg(iter(frames), path, fps=4)
    root = ET.parse(path).getroot()
    panels = frames[0].scene.panels
    cells = [r for r in root.iter(f"{SVG}rect") if r.get("width") == str(panels.cell) and r.get("fill") != "none"]
    assert len(cells) == 3 * 5 * 5
    colours = {"#464650": -1, "#ffffff": 0, "#1e5ac8": 1}
    total = len(frames)
    for step in (0, 4, total - 1):
        levels = np.array([colours[svg_value(r, "fill", step, total)] for r in cells]).reshape(3, 5, 5)
        assert np.array_equal(levels, frames[step].window_levels())
    windows = [r for r in root.iter(f"{SVG}rect") if r.get("width") == "5" and r.get("stroke")]
    assert len(windows) == 1 and svg_value(windows[0], "x", 1, total) == str(frames[1].positions[0][1])


def test_svg_needs_snapshots_not_images(tmp_path):
    with pytest.raises(MemarlError, match="SVG"):
        write_videos(frames(3), [tmp_path / "ep.svg"], fps=5)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- paths and egocentric view


def test_planned_paths_are_the_greedy_shortest_paths():
    env = PogemaEnv(PogemaConfig(size=16, density=0.3, num_agents=12, on_target="restart", max_episode_steps=30,
                                 auto_reset=False, seed=3))
    env.reset()
    obstacles = env.obstacles(0)
    planner = PathPlanner(obstacles)
    moves = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])
    for _ in range(30):
        positions, targets = env.positions[0], env.targets[0]
        paths = planner.paths(positions, targets, env.alive[0])
        actions = env.shortest_path_actions()[0]
        for agent, cells in enumerate(paths):
            if cells is None:
                assert actions[agent] == 0
                continue
            assert cells[0].tolist() == positions[agent].tolist() and cells[-1].tolist() == targets[agent].tolist()
            assert (np.abs(np.diff(cells, axis=0)).sum(axis=1) == 1).all() and not obstacles[tuple(cells.T)].any()
            assert cells[1].tolist() == (positions[agent] + moves[actions[agent]]).tolist()
        env.step(env.shortest_path_actions())


def test_path_lengths_are_bfs_distances():
    from memarl.envs import grid as G

    obstacles = G.parse_map(TINY_MAP)
    planner = PathPlanner(obstacles)
    grid = G.GridMap(obstacles, 1)
    free = np.argwhere(~obstacles)
    for target in free:
        dist = G.bfs_distances(grid, grid.cell(*target))
        paths = planner.paths(free, np.repeat(target[None], len(free), 0), np.ones(len(free), dtype=bool))
        for start, cells in zip(free, paths):
            expected = dist[grid.cell(*start)]
            assert (0 if cells is None else len(cells) - 1) == expected


def test_paths_are_drawn_in_the_agent_colour():
    frame = snapshots(tiny_env(), paths=True)[0]
    image = rgb(frame.image())
    cells = frame.paths[0]
    (r0, c0), (r1, c1) = cells[0], cells[1]
    y, x = HEADER + (r0 + r1 + 1) * 8, (c0 + c1 + 1) * 8  # between the first two cell centres (cell 16)
    assert tuple(image[y, x]) == AGENT_COLOURS[0]
    plain = rgb(snapshots(tiny_env())[0].image())
    assert tuple(plain[y, x]) != AGENT_COLOURS[0]


@pytest.mark.parametrize("observation_type, channels", [("follower", 3), ("default", 3), ("POMAPF", 2),
                                                        ("MAPF", 2)])
def test_egocentric_panels_show_the_agents_observation(observation_type, channels):
    env = tiny_env(observation_type=observation_type)
    frames = snapshots(env, egocentric=1)
    panels = frames[0].scene.panels
    assert len(panels.names) == channels and panels.side == 5 and panels.agent == 1
    plain = snapshots(tiny_env(observation_type=observation_type))[0].image()
    for frame in (frames[0], frames[4]):
        image = rgb(frame.image())
        assert image.shape[1] > plain.size[0]  # the panels are beside the map
        levels = frame.window_levels()
        assert levels.shape == (channels, 5, 5) and frame.window.shape == (channels, 5, 5)
        for channel, (x0, y0) in enumerate(panels.origins):
            for row in range(5):
                for col in (0, 1, 3, 4):  # the centre column holds the agent's outline
                    y, x = y0 + row * panels.cell + panels.cell // 2, x0 + col * panels.cell + panels.cell // 2
                    level = levels[channel, row, col]
                    expected = {-1: (70, 70, 80), 0: (255, 255, 255)}.get(level)
                    if level == 1:
                        expected = (70, 70, 80) if panels.positive[channel] == 1 else (30, 90, 200)
                    assert tuple(image[y, x]) == expected, (channel, row, col)
    # the window outline on the map, in the agent's colour
    row, col = frames[0].positions[1]
    image = rgb(frames[0].image())
    assert tuple(image[HEADER + (row - 2) * 16 + 8, (col - 2) * 16 + 0]) == AGENT_COLOURS[1]


def test_egocentric_follower_channels_are_captioned():
    scene = snapshots(tiny_env(), egocentric=0)[0].scene
    assert scene.panels.names == ("obstacles -1, path +1", "agents", "others' targets")


@pytest.mark.parametrize("agent", [2, -1, 100])
def test_bad_egocentric_agent_is_one_line_error(agent):
    with pytest.raises(MemarlError, match=r"--egocentric .*0\.\.1") as error:
        record_episode(FixedActions(), tiny_env(), max_steps=3, egocentric=agent)
    assert "\n" not in str(error.value)


def test_egocentric_out_of_range_in_render_config(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(MemarlError, match="--egocentric"):
        RenderConfig(run=str(tmp_path / "run"), out=str(tmp_path / "ep.gif"), egocentric=-1).validate()
    RenderConfig(run=str(tmp_path / "run"), out=str(tmp_path / "ep.svg"), egocentric=3, paths=True).validate()


# ---------------------------------------------------------------- render_episode_video (eval --videos)


@pytest.mark.parametrize("suffix", [".gif", ".mp4", ".svg"])
def test_render_episode_video_with_a_scripted_baseline(tmp_path, suffix):
    from memarl.eval.baselines import GreedyPathPolicy

    env = PogemaEnv(PogemaConfig(size=10, density=0.2, num_agents=5, on_target="finish", max_episode_steps=30,
                                 auto_reset=False, seed=0))
    path = tmp_path / "videos" / f"ep{suffix}"
    assert render_episode_video(GreedyPathPolicy(), env, path, max_steps=30, fps=8, cell=8, paths=True,
                                egocentric=4, reset_options={"seeds": [7]}) == path
    assert path.exists() and sorted(p.name for p in path.parent.iterdir()) == [path.name]
    if suffix == ".svg":
        assert len(ET.parse(path).getroot().findall(f".//{SVG}circle")) == 5
    with pytest.raises(MemarlError, match="exists"):
        render_episode_video(GreedyPathPolicy(), env, path, max_steps=3)
    render_episode_video(GreedyPathPolicy(), env, path, max_steps=3, force=True)


def test_render_episode_video_refuses_bad_outputs_and_batched_envs(tmp_path):
    with pytest.raises(MemarlError, match="ep.png"):
        render_episode_video(FixedActions(), tiny_env(), tmp_path / "ep.png", max_steps=3)
    with pytest.raises(MemarlError, match="num_envs=1"):
        render_episode_video(FixedActions(), PogemaEnv(PogemaConfig(num_envs=2, auto_reset=False)),
                             tmp_path / "ep.gif", max_steps=3)
    assert list(tmp_path.iterdir()) == []


def test_render_episode_video_with_a_learned_policy(runs, tmp_path):
    from memarl.envs import make
    from memarl.eval.policy_io import load_policy

    policy = load_policy(runs["pogema-lmapf"])
    env = make("pogema-lmapf", num_envs=1, num_agents=4, obs_radius=3, max_episode_steps=6, auto_reset=False)
    with pytest.raises(MemarlError, match="no episode"):
        render_episode_video(policy, env, tmp_path / "ep.svg", max_steps=6)
    env.reset()  # the caller starts the episode
    path = render_episode_video(policy, env, tmp_path / "ep.svg", max_steps=6, deterministic=True, fps=6,
                                cell=6, paths=True, egocentric=0)
    root = ET.parse(path).getroot()
    assert len([t for t in root.iter(f"{SVG}text") if (t.text or "").startswith("step")]) == 7


def test_render_run_writes_svg_with_paths_and_egocentric(runs, tmp_path, capsys):
    out = tmp_path / "ep.svg"
    assert render_run(runs["bottleneck"], str(out), corridor_length=3, max_steps=10, paths=True,
                      egocentric=1) == [out]
    root = ET.parse(out).getroot()
    assert len(root.findall(f".//{SVG}circle")) == 2
    with pytest.raises(MemarlError, match=r"--egocentric 2: .*0\.\.1"):
        render_run(runs["bottleneck"], str(tmp_path / "x.gif"), egocentric=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.svg"]


def svg_positions(path, step):
    root = ET.parse(path).getroot()
    texts = [t for t in root.iter(f"{SVG}text") if (t.text or "").startswith("step")]
    return [(int(svg_value(c, "cy", step, len(texts))), int(svg_value(c, "cx", step, len(texts))))
            for c in root.iter(f"{SVG}circle")]


def test_render_episode_video_records_the_episode_the_caller_started(tmp_path):
    from memarl.eval.baselines import GreedyPathPolicy

    env = PogemaEnv(PogemaConfig(size=12, density=0.2, num_agents=6, on_target="restart", max_episode_steps=10,
                                 auto_reset=False, seed=0))
    env.reset(options={"seeds": [11]})
    started = [tuple(p) for p in env.positions[0].tolist()]
    path = render_episode_video(GreedyPathPolicy(), env, tmp_path / "ep.svg", max_steps=10, egocentric=2)
    assert svg_positions(path, 0) == started
    # the same instance through reset options: the same video
    again = render_episode_video(GreedyPathPolicy(), env, tmp_path / "again.svg", max_steps=10, egocentric=2,
                                 reset_options={"seeds": [11]})
    assert again.read_text() == path.read_text()


def test_render_episode_video_plays_a_pinned_episode(tmp_path):
    from memarl.envs.base import PinnedEpisode
    from memarl.eval.baselines import GreedyPathPolicy

    env = PogemaEnv(PogemaConfig(map_name="validation-random-seed-000", num_agents=8, on_target="finish",
                                 auto_reset=False, seed=0))
    episode = PinnedEpisode("validation-random-seed-000", 5, 12)
    pinned = render_episode_video(GreedyPathPolicy(), env, tmp_path / "pinned.svg", max_steps=12, cell=0,
                                  episode=episode)
    env.start_episodes([episode])  # as the evaluator does, then record what it started
    started = render_episode_video(GreedyPathPolicy(), env, tmp_path / "started.svg", max_steps=12, cell=0)
    assert pinned.read_text() == started.read_text()
    with pytest.raises(MemarlError, match="not both"):
        render_episode_video(GreedyPathPolicy(), env, tmp_path / "x.svg", max_steps=2, episode=episode,
                             reset_options={"seeds": [1]})


def test_cell_zero_picks_the_cell_from_the_map(tmp_path):
    from memarl.eval.render import AUTO_MAP_SIDE, DEFAULT_CELL, MIN_AUTO_CELL, auto_cell

    assert auto_cell((5, 5)) == DEFAULT_CELL and auto_cell((32, 32)) == AUTO_MAP_SIDE // 32 == 24
    assert auto_cell((64, 48)) == 12 and auto_cell((1004, 9)) == MIN_AUTO_CELL
    frames = list(record_episode(FixedActions(), tiny_env(), max_steps=2, cell=0))
    assert frames[0].scene.cell == DEFAULT_CELL
    env = PogemaEnv(PogemaConfig(size=64, density=0.2, num_agents=3, auto_reset=False, seed=0))
    path = render_episode_video(FixedActions([]), env, tmp_path / "ep.gif", max_steps=2, cell=0,
                                reset_options={"seeds": [0]})
    with Image.open(path) as gif:
        assert gif.size[0] == 64 * 12
