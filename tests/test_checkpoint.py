"""Atomic checkpoints: keep-last-N, no temp files left behind, clear errors on bad files."""
import pytest
import torch

from memarl.errors import MemarlError
from memarl.train.checkpoint import (atomic_torch_save, list_checkpoints, load_checkpoint,
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
