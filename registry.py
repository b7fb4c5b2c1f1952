"""Name -> factory registries for envs, agents and suites.

Entries are registered with a versioned name (``bottleneck-v0``) or a plain one (``srmt``).
Looking up an unversioned name that was registered with versions resolves to the newest
version, Gymnasium style. Registering a name twice raises; an unknown name raises a
:class:`~memarl.errors.MemarlError` that lists the known names.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Callable, Iterator

from memarl.errors import MemarlError

_VERSIONED = re.compile(r"^(?P<base>.+)-v(?P<version>\d+)$")


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    """registered name, e.g. ``bottleneck-v0``"""
    entry_point: str | Callable[..., Any]
    """``"module:attr"`` imported lazily on first use, or a callable"""
    kwargs: dict
    """default keyword arguments passed to the factory (call-site kwargs override them)"""
    description: str
    """one line shown by ``memarl list``"""

    def load(self) -> Callable[..., Any]:
        if callable(self.entry_point):
            return self.entry_point
        module_name, _, attr = self.entry_point.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def make(self, **kwargs: Any) -> Any:
        return self.load()(**{**self.kwargs, **kwargs})


class Registry:
    """A registry of one kind of thing (``"env"``, ``"agent"``, ``"suite"``)."""

    def __init__(self, kind: str, home: str | None = None):
        self.kind = kind
        self.home = home
        """module whose import registers the built-in entries (imported on first lookup)"""
        self._entries: dict[str, Entry] = {}

    def _load_home(self) -> None:
        if self.home is not None:
            home, self.home = self.home, None
            importlib.import_module(home)

    def register(self, name: str, entry_point: str | Callable[..., Any], description: str = "",
                 **kwargs: Any) -> Entry:
        if name in self._entries:
            raise MemarlError(f"{self.kind} {name!r} is already registered")
        entry = Entry(name, entry_point, dict(kwargs), description)
        self._entries[name] = entry
        return entry

    def resolve(self, name: str) -> str:
        """The registered name ``name`` refers to (the newest version for an unversioned name)."""
        self._load_home()
        if name in self._entries:
            return name
        versions = []
        for registered in self._entries:
            match = _VERSIONED.match(registered)
            if match and match["base"] == name:
                versions.append((int(match["version"]), registered))
        if versions:
            return max(versions)[1]
        known = ", ".join(self.names()) or "(none)"
        raise MemarlError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")

    def get(self, name: str) -> Entry:
        return self._entries[self.resolve(name)]

    def make(self, name: str, **kwargs: Any) -> Any:
        return self.get(name).make(**kwargs)

    def names(self) -> list[str]:
        self._load_home()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        try:
            self.resolve(name)
        except MemarlError:
            return False
        return True

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries[name] for name in self.names())


ENVS = Registry("env", home="memarl.envs")
AGENTS = Registry("agent", home="memarl.agents")
SUITES = Registry("suite", home="memarl.eval.suites")
