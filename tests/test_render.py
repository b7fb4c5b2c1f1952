"""Episode frames and video files."""
import shutil

import numpy as np
import pytest

from memarl.eval.render import draw_frame, write_gif, write_mp4


def frames(count=3):
    obstacles = np.zeros((7, 9), dtype=bool)
    obstacles[2:5, :4] = obstacles[2:5, 5:] = True
    targets = np.array([[6, 1], [0, 7]])
    out = []
    for step in range(count):
        positions = np.array([[min(step, 6), 4], [6 - min(step, 6), 4]])
        alive = np.array([True, step < 2])
        out.append(draw_frame(obstacles, positions, targets, alive, step, cell=10))
    return out


def test_frame_shows_walls_and_agents():
    image = np.asarray(frames(1)[0])
    assert image.shape == (18 + 70, 90, 3)
    wall = image[18 + 3 * 10 + 5, 5]     # row 3, col 0 is a wall
    free = image[18 + 0 * 10 + 5, 15]    # row 0, col 1 is free and empty
    agent = image[18 + 0 * 10 + 5, 45]   # agent 0 starts at row 0, col 4
    assert tuple(wall) == (70, 70, 80) and tuple(free) == (255, 255, 255)
    assert tuple(agent) == (220, 60, 50)


def test_gif_round_trip(tmp_path):
    from PIL import Image
    path = tmp_path / "ep.gif"
    write_gif(frames(4), path, fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 4


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg on PATH")
def test_mp4_written_with_ffmpeg(tmp_path):
    path = tmp_path / "ep.mp4"
    assert write_mp4(frames(5), path, fps=5)
    assert path.read_bytes()[4:8] == b"ftyp"
