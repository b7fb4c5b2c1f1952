"""Threads for torch, so that trainings side by side share the machine's cores fairly.

torch's default gives each process every core, and its OpenMP threads spin while they wait for
work. Two trainings on a 2-core machine then fight over the cores: each fell from ~31k to under
1k agent-steps/s (issue 8). :class:`ThreadShare` (``--torch-threads 0``, the default) gives
torch ``cores // live trainings`` threads (at least 1): every training registers itself in a
per-user folder under the temp directory with a file it holds locked (the kernel releases the
lock when the process dies, so a killed run stops counting at once), and the count is renewed
every few seconds, so a run gives up threads when a neighbour starts and takes them back when it
ends. A run alone keeps torch's full thread count, so its speed does not change.

Passive OpenMP waiting (``OMP_WAIT_POLICY=PASSIVE``) would also stop the spinning, but it halved
the speed of a run alone here (6.4k against 12.7k agent-steps/s: every small parallel op then
wakes a sleeping thread), so memarl leaves the wait policy alone.

An explicit ``--torch-threads K`` is taken as it is.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

RECOUNT_EVERY_S = 5.0
"""seconds between two counts of the live trainings"""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def registry_dir() -> Path:
    """Where live trainings of this user register (one locked file each)."""
    return Path(tempfile.gettempdir()) / f"memarl-{os.getuid()}" / "trainings"


def _held_by_another(path: Path) -> bool:
    """Whether another live process holds the lock on ``path`` (a stale file is removed)."""
    try:
        with open(path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
    except FileNotFoundError:
        return False
    path.unlink(missing_ok=True)  # its process is gone
    return False


class ThreadShare:
    """This training's entry in the registry and the torch thread count that follows from it.

    ``requested`` > 0 fixes the count; 0 shares the cores among the live trainings, less
    ``reserved`` cores of the share for the training's actor processes. Use as a
    context manager around the training loop and call :meth:`update` now and then.
    """

    def __init__(self, requested: int, reserved: int = 0):
        self.requested = requested
        self.reserved = reserved
        """cores of this training's share left to its other processes (async actors)"""
        self.threads = 0
        self._caller_threads = 0
        self._entry = None
        self._entry_path: Path | None = None
        self._last_count = 0.0

    def __enter__(self) -> "ThreadShare":
        import torch

        self._caller_threads = torch.get_num_threads()
        if self.requested == 0:
            folder = registry_dir()
            try:
                folder.mkdir(parents=True, exist_ok=True)
                # locked under a name nobody counts, then renamed: a counted file is always locked
                unlocked = folder / f"{os.getpid()}.new"
                self._entry = open(unlocked, "wb")
                fcntl.flock(self._entry, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._entry_path = folder / f"{os.getpid()}.lock"
                os.replace(unlocked, self._entry_path)
            except OSError:  # no shared temp folder: fall back to this process alone
                self._close()
        self.update(force=True)
        return self

    def live_trainings(self) -> int:
        """Trainings of this user running now, this one included."""
        if self._entry is None:
            return 1
        others = sum(_held_by_another(path) for path in registry_dir().glob("*.lock")
                     if path != self._entry_path)
        return 1 + others

    def update(self, force: bool = False) -> int:
        """Re-count the live trainings (at most every few seconds) and set torch's threads."""
        import torch

        now = time.monotonic()
        if not force and now - self._last_count < RECOUNT_EVERY_S:
            return self.threads
        self._last_count = now
        threads = self.requested or max(1, available_cores() // self.live_trainings()
                                        - self.reserved)
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
        return threads

    def _close(self) -> None:
        if self._entry is not None:
            self._entry.close()
            self._entry = None
        if self._entry_path is not None:
            self._entry_path.unlink(missing_ok=True)
            self._entry_path = None

    def __exit__(self, *exc) -> None:
        import torch

        self._close()
        torch.set_num_threads(self._caller_threads)  # the caller's process is left as it was
