"""Checkpoints: atomic writes, keep-last-N pruning, and loading that survives a broken file.

Writing: the payload goes to a temp file ``.NAME.<random>.tmp`` in the same folder, is fsynced,
renamed over NAME, and the folder is fsynced, so a crash mid-write never leaves a truncated
``ckpt_*.pt``, only a temp file that the next holder of the run's lock removes
(:mod:`memarl.train.run_dir`). Old checkpoints are pruned only after a new one is written, and
only those older than it, so pruning never removes the last good checkpoint.

Loading names the problem in one line (missing file, not a memarl checkpoint, corrupted file).
``latest`` passes over unreadable newer files to the newest checkpoint that loads; ``best``
falls back to latest when best.pt is missing or unreadable; each fallback prints one warning
line naming what it skipped. A file path is loaded as it is, without fallback.

Self-description: a checkpoint records the resolved env config (``env_config``: every field of
the training env's config, after defaults), the registry id it resolved to (``env_id``) and the
env's ``score_metric``, so that evaluation and rendering rebuild the training observation from
the file alone (:func:`checkpoint_env_config`). Checkpoints written before these keys existed
still load: their env config is resolved from the registry defaults of today and the user's
``env_options``, as their trainer built it.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memarl.errors import MemarlError

CHECKPOINT_FORMAT = 1
_NAME = re.compile(r"^ckpt_(\d{9})_(\d+)\.pt$")
BEST_NAME = "best.pt"
BROKEN_SUFFIX = ".broken"
"""appended to unreadable checkpoints that a resumed run moves out of its way"""
CHOICES = ("latest", "best")
ENV_CONFIG_FROM_CHECKPOINT = "checkpoint"
ENV_CONFIG_RESOLVED = "resolved from env_options and today's defaults"
"""``env_config_source`` of a checkpoint written before checkpoints recorded their env config"""


class UnreadableCheckpoint(MemarlError):
    """A checkpoint file that is missing, unreadable, corrupted or not a memarl checkpoint."""

    def __init__(self, path: Path, message: str, reason: str):
        super().__init__(message)
        self.path = path
        self.reason = reason
        """the problem in a few words, for listing several skipped files on one line"""


class CheckpointWriteFailed(MemarlError):
    """The final checkpoint of a run could not be written; the work since the last good one is
    lost. A MemarlError so that it reads as one line; the CLI exits with code 1 for it (the disk
    failed, not the input)."""


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"memarl: warning: {message}", file=sys.stderr, flush=True)


def os_error_reason(error: OSError) -> str:
    """An OSError in a few words ("No space left on device")."""
    return error.strerror or str(error) or type(error).__name__


def load_error_summary(error: Exception, limit: int = 200) -> str:
    """The telling line of a ``load_state_dict`` error ("size mismatch for ..."), shortened."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading"):
        lines = lines[1:]  # the first line only names the module class
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; some filesystems cannot, which costs only durability."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(payload: Any, path: Path) -> None:
    """``torch.save`` that either replaces ``path`` whole or leaves it as it was.

    Raises OSError (disk full, no permission) after removing its temp file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # os.open rather than mkstemp: the file gets the umask's permissions, like any other output
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def checkpoint_path(checkpoint_dir: Path, update: int, agent_steps: int) -> Path:
    return checkpoint_dir / f"ckpt_{update:09d}_{agent_steps}.pt"


def checkpoint_update(path: Path) -> int:
    """The update count in a regular checkpoint's file name."""
    return int(_NAME.match(path.name).group(1))


def list_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Regular checkpoints of a run, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted((p for p in checkpoint_dir.iterdir() if _NAME.match(p.name)),
                  key=checkpoint_update)


def prune_checkpoints(checkpoint_dir: Path, newest: Path, keep_last: int) -> list[Path]:
    """Delete regular checkpoints older than ``newest`` beyond the last ``keep_last``.

    Files numbered above ``newest`` are left alone: they are not this run's past.
    """
    older = [p for p in list_checkpoints(checkpoint_dir)
             if checkpoint_update(p) < checkpoint_update(newest)]
    doomed = older[:max(len(older) - (keep_last - 1), 0)]
    for old in doomed:
        old.unlink(missing_ok=True)
    return doomed


def save_checkpoint(payload: dict, checkpoint_dir: Path, update: int, agent_steps: int,
                    keep_last: int) -> Path:
    """Write a regular checkpoint, then prune; a failed write (OSError) deletes nothing."""
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    path = checkpoint_path(checkpoint_dir, update, agent_steps)
    atomic_torch_save(payload, path)
    prune_checkpoints(checkpoint_dir, path, keep_last)
    return path


class CheckpointWriter:
    """The checkpoints of one training run: regular ones, and ``best.pt`` whenever the score
    improves.

    A failed write keeps the last good files: during training a warning, and the next checkpoint
    time retries; at the end (``final``) a :class:`CheckpointWriteFailed`, since the work since the
    last good checkpoint is then lost.
    """

    def __init__(self, checkpoint_dir: Path, keep_last: int, best_score: float = -1.0,
                 last_good: Path | None = None, last_good_steps: int = 0):
        self.checkpoint_dir = checkpoint_dir
        self.keep_last = keep_last
        self.best_score = best_score
        """the best score a checkpoint was written for (-1: none yet)"""
        self.last_good = last_good
        """the newest checkpoint written (or resumed from)"""
        self.last_good_steps = last_good_steps

    def write(self, payload: dict, score: float | None, update: int, agent_steps: int,
              final: bool) -> None:
        """Write a regular checkpoint, then best.pt when ``score`` improved (in this order, so
        that the newest regular checkpoint is never older than best.pt)."""
        improved = score is not None and score > self.best_score
        # recorded in the regular checkpoint too, so that a resumed run never replaces best.pt
        # by a worse policy
        payload = {**payload, "best_score": score if improved else self.best_score}
        try:
            self.last_good = save_checkpoint(payload, self.checkpoint_dir, update, agent_steps,
                                             self.keep_last)
            self.last_good_steps = agent_steps
        except OSError as error:
            if not final:
                kept = (f"keeping {self.last_good.name}" if self.last_good is not None
                        else "no good checkpoint yet")
                warn(f"checkpoint write failed ({os_error_reason(error)}); {kept}, training "
                     f"goes on")
                return
            since = self.last_good.name if self.last_good is not None else "the start"
            raise CheckpointWriteFailed(
                f"final checkpoint write failed ({os_error_reason(error)}); the "
                f"{agent_steps - self.last_good_steps:,} agent-steps trained since {since} are "
                f"lost; continue with --resume {self.checkpoint_dir.parent} once the problem is fixed") from None
        if improved:
            self.best_score = score
            try:
                atomic_torch_save({"format": CHECKPOINT_FORMAT, **payload},
                                  self.checkpoint_dir / BEST_NAME)
            except OSError as error:
                warn(f"{BEST_NAME} write failed ({os_error_reason(error)}); keeping the previous "
                     f"{BEST_NAME}, training goes on")


def load_checkpoint(path: Path | str) -> dict:
    """A checkpoint's payload, or :class:`UnreadableCheckpoint` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableCheckpoint(path, f"checkpoint not found: {path}", "missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except OSError as error:
        raise UnreadableCheckpoint(path, f"cannot read checkpoint {path} ({error.strerror})",
                                   error.strerror or "unreadable") from None
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a broken file
        raise UnreadableCheckpoint(
            path, f"checkpoint {path} is corrupted or not a torch file ({type(error).__name__})",
            "corrupted") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT \
            or "model" not in payload or "agent" not in payload:
        raise UnreadableCheckpoint(path, f"{path} is not a memarl checkpoint",
                                   "not a memarl checkpoint")
    return payload


@dataclasses.dataclass
class LatestCheckpoint:
    """The newest regular checkpoint that loads, and the newer ones that did not."""

    path: Path | None
    """the checkpoint file; None when no checkpoint loads"""
    payload: dict | None
    """its contents"""
    skipped: list[UnreadableCheckpoint]
    """unreadable checkpoints newer than ``path``, newest first"""

    def skipped_text(self) -> str:
        return ", ".join(f"{e.path.name} ({e.reason})" for e in self.skipped)


def newest_readable_checkpoint(checkpoint_dir: Path) -> LatestCheckpoint:
    skipped = []
    for path in reversed(list_checkpoints(checkpoint_dir)):
        try:
            return LatestCheckpoint(path, load_checkpoint(path), skipped)
        except UnreadableCheckpoint as error:
            skipped.append(error)
    return LatestCheckpoint(None, None, skipped)


def newest_resumable_checkpoint(checkpoint_dir: Path) -> LatestCheckpoint:
    """Where a resumed run starts: the newest regular checkpoint that loads, else best.pt when
    it loads (it is a complete checkpoint too, and starting from step 0 would later replace it
    by a worse policy). A best.pt that does not load is left for the run to replace."""
    latest = newest_readable_checkpoint(checkpoint_dir)
    if latest.path is None and (checkpoint_dir / BEST_NAME).is_file():
        try:
            best = checkpoint_dir / BEST_NAME
            return LatestCheckpoint(best, load_checkpoint(best), latest.skipped)
        except UnreadableCheckpoint:
            pass
    return latest


def move_aside(paths: list[Path]) -> list[Path]:
    """Rename unreadable checkpoints to ``NAME.broken`` so that a resumed run neither picks nor
    prunes around them; they are kept for inspection, not deleted."""
    moved = []
    for path in paths:
        target = path.with_name(path.name + BROKEN_SUFFIX)
        try:
            os.replace(path, target)
            moved.append(target)
        except FileNotFoundError:
            pass
    return moved


def _checkpoint_dir(run: Path) -> Path:
    return run / "checkpoints" if (run / "checkpoints").is_dir() else run


def _named_file(run: Path, which: str) -> Path:
    """``--checkpoint FILE``: a path as given, else a file name inside the run's checkpoints."""
    for candidate in (Path(which), _checkpoint_dir(run) / which):
        if candidate.is_file():
            return candidate
    if which.endswith(".pt") or os.sep in which:
        raise MemarlError(f"checkpoint file {which} not found (looked in the current folder and "
                          f"in {_checkpoint_dir(run)})")
    raise MemarlError(f"unknown checkpoint choice {which!r}; use latest, best or a checkpoint "
                      f"file")


def resolve_checkpoint(path: Path | str, which: str = "latest") -> Path:
    """A checkpoint file from a file path or a run directory, without loading it.

    ``which``: latest | best (best.pt, else latest) | a checkpoint file. See
    :func:`load_run_checkpoint` for loading that passes over broken files.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise MemarlError(f"no such run directory or checkpoint: {path}")
    if which not in CHOICES:
        return _named_file(path, which)
    checkpoint_dir = _checkpoint_dir(path)
    if which == "best" and (checkpoint_dir / BEST_NAME).is_file():
        return checkpoint_dir / BEST_NAME
    found = list_checkpoints(checkpoint_dir)
    if not found:
        raise MemarlError(f"no checkpoint in {checkpoint_dir}")
    return found[-1]


def load_run_checkpoint(path: Path | str, which: str = "latest") -> tuple[Path, dict]:
    """Load a checkpoint of a run (or a file): the file used and its payload.

    ``latest`` passes over unreadable newer checkpoints, ``best`` falls back to latest when
    best.pt is missing (silently) or unreadable; skipping anything prints one warning line.
    """
    path = Path(path)
    if path.is_file():
        return path, load_checkpoint(path)
    if not path.exists():
        raise MemarlError(f"no such run directory or checkpoint: {path}")
    if which not in CHOICES:
        file = _named_file(path, which)
        return file, load_checkpoint(file)
    checkpoint_dir = _checkpoint_dir(path)
    broken_best = None
    if which == "best" and (checkpoint_dir / BEST_NAME).exists():
        try:
            return checkpoint_dir / BEST_NAME, load_checkpoint(checkpoint_dir / BEST_NAME)
        except UnreadableCheckpoint as error:
            broken_best = error
    latest = newest_readable_checkpoint(checkpoint_dir)
    skipped = ([broken_best] if broken_best else []) + latest.skipped
    if latest.path is None:
        if skipped:
            raise MemarlError(f"no readable checkpoint in {checkpoint_dir}: "
                              + ", ".join(f"{e.path.name} ({e.reason})" for e in skipped))
        raise MemarlError(f"no checkpoint in {checkpoint_dir}")
    if skipped:
        warn(f"skipped unreadable checkpoint(s) "
             + ", ".join(f"{e.path.name} ({e.reason})" for e in skipped)
             + f" in {checkpoint_dir}; using {latest.path.name}")
    return latest.path, latest.payload


# --- the env a checkpoint was trained on --------------------------------------------------------

def jsonable(value: Any) -> Any:
    """``value`` with tuples and numpy arrays/scalars as lists and Python scalars, so that an env
    config reads the same after a trip through JSON (evaluation results record it)."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    return value


def env_config_fields(config: Any) -> dict[str, Any]:
    """Every dataclass field of an env config, JSON-able. Only declared fields: state a config
    derives in ``__post_init__`` is derived again when the config is rebuilt from them."""
    return {field.name: jsonable(getattr(config, field.name))
            for field in dataclasses.fields(config)}


def _env_config_class(env_id: str, file: Path | str) -> type:
    from memarl.registry import ENVS
    config_class = getattr(ENVS.get(env_id).load(), "config_class", None)
    if config_class is None:
        raise MemarlError(f"{file}: env {env_id!r} declares no config_class, so a checkpoint "
                          f"cannot describe it")
    return config_class


def complete_env_config(env_id: str, given: Any, file: Path | str,
                        entry: str = "env_config") -> dict[str, Any]:
    """Every field of env ``env_id``'s config: ``given`` over the field defaults, JSON-able.

    Each value is checked against its field's declared type and range, so a malformed entry is
    one line naming ``file``; rules between fields are left to the config, which runs them when
    the env is built (building it here would read the map files of a named map, which loading a
    policy does not need).
    """
    from memarl.configs import check_value, field_specs
    config_class = _env_config_class(env_id, file)
    what = f"{file}: malformed {entry} for {config_class.__name__}"
    if not isinstance(given, dict):
        raise MemarlError(f"{what} (a {type(given).__name__}, not a dict)")
    fields = [field for field in dataclasses.fields(config_class) if field.init]
    names = {field.name for field in fields}
    unknown = sorted(str(key) for key in given if key not in names)
    if unknown:
        raise MemarlError(f"{what} (unknown field(s) {', '.join(unknown)})")
    specs = field_specs(config_class)
    config = {}
    for field in fields:
        if field.name in given:
            value = given[field.name]
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        elif field.default is not dataclasses.MISSING:
            value = field.default
        else:
            raise MemarlError(f"{what} (no value for {field.name})")
        try:
            check_value(value, specs[field.name], field.name)
        except MemarlError as error:
            raise MemarlError(f"{what} ({error})") from None
        config[field.name] = jsonable(value)
    return config


def checkpoint_env_config(payload: dict, file: Path | str) -> tuple[str, dict[str, Any], str]:
    """``(env_id, env_config, source)`` of a loaded checkpoint: the registered env id, every
    field of the training env's config (JSON-able; ``config_class(**env_config)`` rebuilds it)
    and where the config came from (:data:`ENV_CONFIG_FROM_CHECKPOINT` or
    :data:`ENV_CONFIG_RESOLVED`).

    A checkpoint without ``env_config`` (written before checkpoints recorded it) is resolved as
    its trainer built the env: today's registry defaults of its env under its ``env_options``,
    with the run's ``num_envs`` and ``seed``. A default changed since then changes that result,
    which ``source`` admits. Raises a one-line MemarlError naming ``file`` for a malformed entry.
    """
    from memarl.registry import ENVS
    name = payload.get("env_id", payload.get("env"))
    if not isinstance(name, str):
        raise MemarlError(f"{file}: malformed env id {jsonable(name)!r}")
    try:
        env_id = ENVS.resolve(name)
    except MemarlError as error:
        raise MemarlError(f"{file}: {error}") from None
    if "env_config" in payload:
        return (env_id, complete_env_config(env_id, payload["env_config"], file),
                ENV_CONFIG_FROM_CHECKPOINT)
    options = payload.get("env_options") or {}
    run = payload.get("config") or {}
    if not isinstance(options, dict) or not isinstance(run, dict):
        raise MemarlError(f"{file}: malformed env_options or config")
    given = {**ENVS.get(env_id).kwargs, **options}
    given.update({key: run[key] for key in ("num_envs", "seed") if key in run})
    return env_id, complete_env_config(env_id, given, file, "env_options"), ENV_CONFIG_RESOLVED
