"""Checks on the files and folders a command will write, made before anything is written.

Every command that writes (train, eval, render, bench) calls these while it validates its
config, so a bad path fails in one line (:class:`MemarlError`, exit code 2 from the CLI) before
any work is done or any file is touched: an output that exists is never replaced without
``--force``, a folder is never created under a file, and an unwritable place is named.
"""
from __future__ import annotations

import os
from pathlib import Path

from memarl.errors import MemarlError


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_creatable_dir(path: str | Path, label: str) -> Path:
    """A folder that is there or can be made: not a file, not under a file, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MemarlError(f"{label} {path} is a file, not a folder")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise MemarlError(f"{label} {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MemarlError(f"{label} {path} cannot be written: no write permission on {existing}")
    return path


def check_output_file(path: str | Path, label: str, force: bool, suffixes: tuple[str, ...] = ()
                      ) -> Path:
    """A file the command will write: right suffix, not a folder, not replaced without ``force``."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise MemarlError(f"{label} must end in {' or '.join(suffixes)}, got {path.name!r}")
    if path.is_dir():
        raise MemarlError(f"{label} {path} is a folder, not a file")
    if path.exists() and not force:
        raise MemarlError(f"{label} {path} exists; pass --force to replace it")
    if path.exists() and not os.access(path, os.W_OK):
        raise MemarlError(f"{label} {path} cannot be written: no write permission")
    check_creatable_dir(path.parent, f"the folder of {label}")
    return path
