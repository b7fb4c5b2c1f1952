"""Thread sharing: trainings count each other through locked registry files and split the cores."""
import os
import signal
import subprocess
import sys
import tempfile

import pytest
import torch

from memarl.train import threads
from memarl.train.threads import ThreadShare

HOLD = ("import sys, time\n"
        "from memarl.train.threads import ThreadShare\n"
        "with ThreadShare(0):\n"
        "    print('registered', flush=True)\n"
        "    time.sleep(120)\n")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A private registry folder for this test and the processes it starts."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    saved = torch.get_num_threads()
    yield tmp_path
    torch.set_num_threads(saved)


def start_neighbour() -> subprocess.Popen:
    neighbour = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True)
    assert neighbour.stdout.readline().strip() == "registered"
    return neighbour


def test_alone_a_training_keeps_every_core(registry, monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    with ThreadShare(0) as share:
        assert share.live_trainings() == 1
        assert share.threads == 4 and torch.get_num_threads() == 4
    assert not list(threads.registry_dir().glob("*")), "the entry is removed at the end"


def test_a_neighbour_halves_the_threads_and_its_death_restores_them(registry, monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    with ThreadShare(0) as share:
        assert share.threads == 4
        neighbour = start_neighbour()
        try:
            assert share.update() == 4, "counted again only every few seconds"
            assert share.update(force=True) == 2 and torch.get_num_threads() == 2
        finally:
            neighbour.send_signal(signal.SIGKILL)  # no cleanup: its file stays, unlocked
            neighbour.wait()
        assert share.update(force=True) == 4
        assert [p.name for p in threads.registry_dir().glob("*.lock")] == [f"{os.getpid()}.lock"]


def test_at_least_one_thread(registry, monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 1)
    with ThreadShare(0) as share:
        neighbour = start_neighbour()
        try:
            assert share.update(force=True) == 1
        finally:
            neighbour.kill()
            neighbour.wait()


def test_an_explicit_count_is_kept(registry):
    neighbour = start_neighbour()
    try:
        with ThreadShare(3) as share:
            assert share.threads == 3 and torch.get_num_threads() == 3
            assert share.update(force=True) == 3
        assert len(list(threads.registry_dir().glob("*.lock"))) == 1  # only the neighbour
    finally:
        neighbour.kill()
        neighbour.wait()
