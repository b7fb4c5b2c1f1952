"""Episode frames, streaming GIF / MP4 writers and ``render_run`` on Bottleneck and POGEMA runs."""
import weakref

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from memarl.errors import MemarlError
from memarl.eval.render import (AGENT_COLOURS, HEADER, MAX_FRAME_SIDE, FrameDrawer, RenderConfig,
                                draw_frame, frame_cell, render_run, write_gif, write_mp4, write_videos)

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
        assert gif.size == (9 * 8, HEADER + 7 * 8)
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
    assert tuple(meta["size"]) == (16 * 6, HEADER + 16 * 6)  # the registered 16 x 16 generated map
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
