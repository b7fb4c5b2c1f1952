"""Atomic checkpoints: write to a temp file in the same folder, fsync, then rename.

A crash mid-write never leaves a truncated ``ckpt_*.pt`` behind; ``keep_last`` old checkpoints
are kept plus ``best.pt``. Loading names the problem in one line (missing file, not a memarl
checkpoint, corrupted file) instead of a stack trace.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from memarl.errors import MemarlError

CHECKPOINT_FORMAT = 1
_NAME = re.compile(r"^ckpt_(\d{9})_(\d+)\.pt$")


def atomic_torch_save(payload: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_path(checkpoint_dir: Path, update: int, agent_steps: int) -> Path:
    return checkpoint_dir / f"ckpt_{update:09d}_{agent_steps}.pt"


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Regular checkpoints of a run, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [p for p in checkpoint_dir.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def save_checkpoint(payload: dict, checkpoint_dir: Path, update: int, agent_steps: int,
                    keep_last: int) -> Path:
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    path = checkpoint_path(checkpoint_dir, update, agent_steps)
    atomic_torch_save(payload, path)
    for old in list_checkpoints(checkpoint_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path | str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MemarlError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a broken file
        raise MemarlError(f"checkpoint {path} is corrupted or not a torch file "
                          f"({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT \
            or "model" not in payload or "agent" not in payload:
        raise MemarlError(f"{path} is not a memarl checkpoint")
    return payload


def resolve_checkpoint(path: Path | str, which: str = "latest") -> Path:
    """A checkpoint file from a file path or a run directory (``which``: latest | best)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise MemarlError(f"no such run directory or checkpoint: {path}")
    checkpoint_dir = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    if which == "best":
        best = checkpoint_dir / "best.pt"
        if best.is_file():
            return best
    elif which != "latest":
        raise MemarlError(f"unknown checkpoint choice {which!r}; use latest, best or a file path")
    found = list_checkpoints(checkpoint_dir)
    if not found:
        raise MemarlError(f"no checkpoint in {checkpoint_dir}")
    return found[-1]
