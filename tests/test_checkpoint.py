"""Atomic checkpoints: keep-last-N, no temp files left behind, clear errors on bad files,
failed writes that keep the last good checkpoint, loading that passes over broken files."""
import os

import pytest
import torch

from memarl.errors import MemarlError
from memarl.train.checkpoint import (atomic_torch_save, list_checkpoints, load_checkpoint,
                                     load_run_checkpoint, move_aside, newest_readable_checkpoint,
                                     resolve_checkpoint, save_checkpoint)


def payload(value):
    return {"agent": "srmt", "model": {"w": torch.full((2,), float(value))}}


def test_keep_last_n_and_latest(tmp_path):
    for update in range(1, 6):
        save_checkpoint(payload(update), tmp_path, update, update * 100, keep_last=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt_000000004_400.pt", "ckpt_000000005_500.pt"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    latest = load_checkpoint(resolve_checkpoint(tmp_path, "latest"))
    assert latest["model"]["w"][0].item() == 5.0


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "best.pt"
    atomic_torch_save({"format": 1, **payload(1)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_torch_save({"bad": Unpicklable()}, path)
    assert load_checkpoint(path)["model"]["w"][0].item() == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_resolve_errors(tmp_path):
    with pytest.raises(MemarlError, match="no checkpoint"):
        resolve_checkpoint(tmp_path, "latest")
    with pytest.raises(MemarlError, match="no such run directory"):
        resolve_checkpoint(tmp_path / "missing", "latest")
    save_checkpoint(payload(1), tmp_path, 1, 10, keep_last=1)
    with pytest.raises(MemarlError, match="unknown checkpoint choice"):
        resolve_checkpoint(tmp_path, "newest")
    truncated = tmp_path / "ckpt_000000002_20.pt"
    truncated.write_bytes(list_checkpoints(tmp_path)[0].read_bytes()[:50])
    with pytest.raises(MemarlError, match="corrupted"):
        load_checkpoint(truncated)


# --- failures while writing, pruning, and loading past broken files ------------------------------

def truncate(path, keep=50):
    path.write_bytes(path.read_bytes()[:keep])


def test_failed_save_prunes_nothing_and_leaves_no_temp(tmp_path, monkeypatch):
    for update in (1, 2):
        save_checkpoint(payload(update), tmp_path, update, update * 10, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000000002_20.pt"]

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(payload(3), tmp_path, 3, 30, keep_last=1)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_000000002_20.pt"]
    assert load_checkpoint(tmp_path / "ckpt_000000002_20.pt")["model"]["w"][0].item() == 2.0


def test_pruning_never_removes_the_checkpoint_just_written(tmp_path):
    # a file numbered above the new one (left by an older timeline) must not push it out
    save_checkpoint(payload(9), tmp_path, 9, 90, keep_last=1)
    save_checkpoint(payload(1), tmp_path, 1, 10, keep_last=1)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert "ckpt_000000001_10.pt" in names
    save_checkpoint(payload(2), tmp_path, 2, 20, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000000002_20.pt",
                                                            "ckpt_000000009_90.pt"]


def test_written_files_follow_the_umask(tmp_path):
    path = save_checkpoint(payload(1), tmp_path, 1, 10, keep_last=1)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_latest_falls_back_past_a_truncated_file_with_one_warning(tmp_path, capsys):
    for update in (1, 2, 3):
        save_checkpoint(payload(update), tmp_path, update, update * 10, keep_last=3)
    truncate(tmp_path / "ckpt_000000003_30.pt")
    (tmp_path / "ckpt_000000002_20.pt").write_bytes(b"")
    file, loaded = load_run_checkpoint(tmp_path, "latest")
    assert file.name == "ckpt_000000001_10.pt" and loaded["model"]["w"][0].item() == 1.0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "ckpt_000000003_30.pt" in err[0] and "ckpt_000000002_20.pt" in err[0]
    assert "using ckpt_000000001_10.pt" in err[0]
    latest = newest_readable_checkpoint(tmp_path)
    assert [e.path.name for e in latest.skipped] == ["ckpt_000000003_30.pt",
                                                     "ckpt_000000002_20.pt"]


def test_no_readable_checkpoint_names_the_broken_files(tmp_path):
    save_checkpoint(payload(1), tmp_path, 1, 10, keep_last=1)
    truncate(tmp_path / "ckpt_000000001_10.pt")
    with pytest.raises(MemarlError, match="no readable checkpoint.*ckpt_000000001_10.pt"):
        load_run_checkpoint(tmp_path, "latest")


def test_best_falls_back_to_latest(tmp_path, capsys):
    save_checkpoint(payload(1), tmp_path, 1, 10, keep_last=1)
    assert load_run_checkpoint(tmp_path, "best")[0].name == "ckpt_000000001_10.pt"
    assert capsys.readouterr().err == ""  # no best.pt yet is normal: no warning
    atomic_torch_save({"format": 1, **payload(7)}, tmp_path / "best.pt")
    assert load_run_checkpoint(tmp_path, "best")[1]["model"]["w"][0].item() == 7.0
    truncate(tmp_path / "best.pt")
    file, _ = load_run_checkpoint(tmp_path, "best")
    assert file.name == "ckpt_000000001_10.pt"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt" in err[0], err


def test_a_named_file_loads_as_it_is(tmp_path, monkeypatch):
    run = tmp_path / "run"
    for update in (1, 2):
        save_checkpoint(payload(update), run / "checkpoints", update, update * 10, keep_last=2)
    older = run / "checkpoints" / "ckpt_000000001_10.pt"
    assert resolve_checkpoint(run, str(older)) == older
    assert load_run_checkpoint(run, str(older))[1]["model"]["w"][0].item() == 1.0
    # a bare file name is looked up in RUN/checkpoints, a relative path from the current folder
    assert load_run_checkpoint(run, "ckpt_000000001_10.pt")[0] == older
    monkeypatch.chdir(tmp_path)
    assert load_run_checkpoint(run, "run/checkpoints/ckpt_000000002_20.pt")[0].name \
        == "ckpt_000000002_20.pt"
    with pytest.raises(MemarlError, match="checkpoint file nope.pt not found"):
        load_run_checkpoint(run, "nope.pt")
    truncate(older)  # a file asked for by name is never swapped for another
    with pytest.raises(MemarlError, match="corrupted"):
        load_run_checkpoint(run, str(older))


def test_move_aside_keeps_broken_files_out_of_the_way(tmp_path):
    save_checkpoint(payload(1), tmp_path, 1, 10, keep_last=2)
    save_checkpoint(payload(2), tmp_path, 2, 20, keep_last=2)
    broken = tmp_path / "ckpt_000000002_20.pt"
    truncate(broken)
    moved = move_aside([broken])
    assert moved == [tmp_path / "ckpt_000000002_20.pt.broken"] and moved[0].exists()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt_000000001_10.pt"]
