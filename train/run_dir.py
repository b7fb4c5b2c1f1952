"""Run directories: create one safely, lock it for the life of a training process, clean up.

A training process holds ``RUN/.lock`` with ``flock(LOCK_EX | LOCK_NB)`` from before it writes
anything into the run until it exits. The kernel drops the lock when the process dies, however
it dies (kill -9 included), so a stale lock is noticed and taken over without user action. The
holder writes its pid, host and start time into the file, so that a refused process can say who
holds it, and clears the file when it releases the lock normally: content found in an unlocked
file therefore means its writer died without releasing.

Network filesystems: do not rely on flock across hosts. It is a lock of one kernel; Linux NFS
clients do pass it on to the server as a POSIX lock, but not when the share is mounted with
``local_lock=flock`` or ``nolock``, and other shared filesystems (some FUSE, Lustre without
``-o flock``) keep it per host, so two hosts can both "hold" it. As a second line of defence, a
lock file that still names a holder on *another* host is refused even when flock succeeds,
because this host cannot tell whether that process is alive; the message says to delete
``RUN/.lock`` once that run is known to be dead. A run that ended normally cleared the file, so
this only asks for a hand after a crash on another host (or a host name that changed).

Processes forked by the trainer share its open lock file, so the lock lasts until the last of
them exits. The lock file itself is never deleted by memarl: deleting it while a second process
has it open would let two processes hold locks on two different files of the same name.

Temp files of atomic writes (``.NAME.tmp``, ``.NAME.<random>.tmp``) that a kill mid-write left
behind are removed by :meth:`RunDirLock.remove_orphan_temp_files`, which only the lock holder can
call, because outside the lock such a file may be another process's write in progress.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import socket
import time
from pathlib import Path

from memarl.errors import MemarlError

LOCK_FILE = ".lock"
"""name of the lock file inside a run directory"""
CONFIG_FILE = "config.json"
"""the resolved config of a run; its presence makes a directory resumable"""
CHECKPOINT_DIR = "checkpoints"
"""sub-folder of the checkpoints; it holds atomic-write temp files too"""
_TEMP_FILE = re.compile(r"^\..+\.tmp$")


@dataclasses.dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) the lock of a run directory, as written into its lock file."""

    pid: int
    """process id of the holder"""
    host: str
    """host name of the holder (pids of other hosts cannot be checked)"""
    since: str
    """when the holder took the lock (local time, ISO 8601, seconds)"""

    def is_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def describe(self) -> str:
        where = "" if self.is_this_host() else f" on host {self.host}"
        return f"pid {self.pid}{where} (since {self.since})"


def is_orphan_temp_name(name: str) -> bool:
    """Whether ``name`` is a temp file of an atomic write (``.config.json.tmp`` and the like)."""
    return bool(_TEMP_FILE.match(name))


def _read_holder(fd: int) -> LockHolder | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "null")
        return LockHolder(pid=int(data["pid"]), host=str(data["host"]), since=str(data["since"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None  # empty (released normally) or not ours: nobody to name


def in_use_message(run_dir: Path, holder: LockHolder | None) -> str:
    who = holder.describe() if holder else "another process"
    return f"run directory {run_dir} is in use by {who}; wait for it or choose another --run-dir"


class RunDirLock:
    """The exclusive lock of one run directory, held by this process until :meth:`release`.

    ``stale`` names the previous holder when it died without releasing the lock (kill -9, a
    crash): the lock was taken over from it.
    """

    def __init__(self, run_dir: Path, fd: int, stale: LockHolder | None):
        self.run_dir = run_dir
        self.stale = stale
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def remove_orphan_temp_files(self) -> list[Path]:
        """Delete temp files of atomic writes that a killed process left in RUN and
        RUN/checkpoints; returns what was removed."""
        if not self.held:
            raise RuntimeError("orphan temp files may only be removed under the run's lock")
        removed = []
        for folder in (self.run_dir, self.run_dir / CHECKPOINT_DIR):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if is_orphan_temp_name(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def release(self) -> None:
        """Clear the holder record and drop the lock; calling it again does nothing."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty file tells the next holder we ended normally
        except OSError:
            pass  # the lock still goes with the close; the next holder just sees a stale record
        os.close(fd)

    def __enter__(self) -> "RunDirLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def probe_lock(run_dir: Path) -> tuple[bool, LockHolder | None]:
    """Whether another process holds ``run_dir``'s lock now, and who; changes nothing.

    The holder is None when it has not written its record yet.
    """
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False, None  # no lock file: nobody ever locked it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True, _read_holder(fd)
        except OSError:
            return False, None  # a filesystem without locks: lock_run_dir will say so
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False, None
    finally:
        os.close(fd)


def lock_run_dir(run_dir: Path) -> RunDirLock:
    """Take the lock of an existing run directory or raise a one-line MemarlError."""
    run_dir = Path(run_dir)
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise MemarlError(f"cannot lock run directory {run_dir} ({error.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise MemarlError(in_use_message(run_dir, holder)) from None
    except OSError as error:
        os.close(fd)
        hint = " (a filesystem without file locks?)" if error.errno == errno.ENOLCK else ""
        raise MemarlError(f"cannot lock run directory {run_dir} ({error.strerror}){hint}") from None
    previous = _read_holder(fd)
    if previous is not None and not previous.is_this_host():
        os.close(fd)
        raise MemarlError(f"run directory {run_dir} is locked by {previous.describe()}, which "
                          f"this host cannot check; delete {run_dir / LOCK_FILE} if that run "
                          f"is no longer alive")
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError as error:
        os.close(fd)
        raise MemarlError(f"cannot write the lock file {run_dir / LOCK_FILE} "
                          f"({error.strerror})") from None
    return RunDirLock(run_dir, fd, stale=previous)


def _content(run_dir: Path) -> list[str]:
    """Entries that make a directory a run: everything but the lock file and orphan temp files."""
    return sorted(p.name for p in run_dir.iterdir()
                  if p.name != LOCK_FILE and not is_orphan_temp_name(p.name))


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse, changing nothing, a path that cannot become a new run directory."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise MemarlError(f"run directory {run_dir} is a file; choose another --run-dir")
    if run_dir.is_dir():
        if _content(run_dir):
            locked, holder = probe_lock(run_dir)
            if locked:
                raise MemarlError(in_use_message(run_dir, holder))
            raise MemarlError(f"run directory {run_dir} already exists; pass --resume {run_dir} "
                              f"to continue it or choose another --run-dir")
        if not os.access(run_dir, os.W_OK | os.X_OK):
            raise MemarlError(f"run directory {run_dir} is not writable")
        return
    ancestor = run_dir.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise MemarlError(f"cannot create run directory {run_dir}: {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise MemarlError(f"cannot create run directory {run_dir}: {ancestor} is not writable")


def create_run_dir(run_dir: Path) -> RunDirLock:
    """Create a new run directory (or take an empty one) and lock it, before anything is written.

    A directory holding only a lock file and temp files counts as empty: a run that stopped
    before writing its config left nothing worth keeping.
    """
    run_dir = Path(run_dir)
    check_new_run_dir(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MemarlError(f"cannot create run directory {run_dir} ({error.strerror})") from None
    lock = lock_run_dir(run_dir)
    # another process may have filled the directory between the check and the lock
    if _content(run_dir):
        lock.release()
        raise MemarlError(f"run directory {run_dir} already exists; pass --resume {run_dir} "
                          f"to continue it or choose another --run-dir")
    return lock


def open_run_dir(run_dir: Path) -> RunDirLock:
    """Lock an existing run directory for resuming; it must hold a config.json."""
    run_dir = Path(run_dir)
    check_resumable(run_dir)
    lock = lock_run_dir(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():  # gone between the check and the lock
        lock.release()
        check_resumable(run_dir)
    return lock


def check_resumable(run_dir: Path) -> None:
    """Refuse, in one line, a path that is not a run directory that can be resumed."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise MemarlError(f"cannot resume: no run directory {run_dir}")
    if not run_dir.is_dir():
        raise MemarlError(f"cannot resume: {run_dir} is a file, not a run directory")
    if not (run_dir / CONFIG_FILE).is_file():
        raise MemarlError(f"cannot resume: {run_dir} has no {CONFIG_FILE} (it never started; "
                          f"start it with memarl train --run-dir {run_dir})")
