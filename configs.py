"""Helpers for config dataclasses: field docstrings (for ``--help``) and typed overrides.

Every config in memarl is a dataclass with a docstring under every field, CleanRL style::

    num_envs: int = 64
    \"\"\"envs stepped together in one batch\"\"\"

Python drops those strings at run time, so :func:`field_docs` reads them back from the source.
:func:`parse_options` turns ``KEY=VALUE`` strings from the command line into typed values and
rejects unknown keys with a one-line error that lists the valid ones.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap
import types
import typing
from typing import Any

from memarl.errors import MemarlError


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """``{field name: the docstring written under it}`` for a dataclass (and its bases)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # the class body
        for node, following in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _resolved_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - fall back to the raw annotations
        return {f.name: f.type for f in dataclasses.fields(cls)}


def parse_value(text: str, kind: Any, name: str) -> Any:
    """Convert a command-line string to ``kind`` (bool, int, float, str, Optional, Literal)."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null"):
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(text, inner[0], name)
    if origin is typing.Literal:
        if text not in [str(a) for a in args]:
            raise MemarlError(f"{name}: {text!r} is not one of {', '.join(map(str, args))}")
        return next(a for a in args if str(a) == text)
    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise MemarlError(f"{name}: expected true/false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(float(text)) if kind is int and "e" in text.lower() else kind(text)
        except ValueError:
            raise MemarlError(f"{name}: expected {kind.__name__}, got {text!r}") from None
    if origin in (list, tuple) or kind in (list, tuple):
        inner = args[0] if args else str
        items = [parse_value(t.strip(), inner, name) for t in text.split(",") if t.strip()]
        return tuple(items) if (origin is tuple or kind is tuple) else items
    return text


def parse_options(config_class: type, options: dict[str, Any], what: str) -> dict[str, Any]:
    """Typed values for the string entries of ``options`` by the field types of ``config_class``.

    Non-string values pass through; unknown keys raise a one-line error listing the valid ones.
    """
    types_by_name = _resolved_types(config_class)
    valid = [f.name for f in dataclasses.fields(config_class)]
    parsed = {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name not in valid:
            raise MemarlError(f"unknown {what} option {key!r}; valid options: {', '.join(valid)}")
        parsed[name] = parse_value(value, types_by_name[name], f"{what} option {key}") \
            if isinstance(value, str) else value
    return parsed


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed item is a one-line error."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MemarlError(f"{flag} expects KEY=VALUE, got {item!r}")
        result[key.strip()] = value.strip()
    return result
