"""Config dataclasses: field docstrings (for ``--help``), declared ranges, typed overrides, validation.

Every config in memarl is a dataclass with a docstring under every field, CleanRL style, and a
declared range for every number::

    num_envs: Annotated[int, Range(1, 65_536)] = 64
    \"\"\"envs stepped together in one batch\"\"\"

Python drops those strings at run time, so :func:`field_docs` reads them back from the source.
:func:`validate_fields` is the one validation layer: it checks every field of a config against
its type and range (types, finiteness, bounds; cross-field rules stay in each config) and raises
a one-line :class:`MemarlError` naming the option and the allowed values. :func:`parse_value`
turns command-line strings into typed values. The fuzz harness (``tests/fuzz.py``) reads the same
declarations to generate bad values for every option, so new options are covered for free.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import reprlib
import textwrap
import types
import typing
from typing import Any, Callable

import numpy as np

from memarl.errors import MemarlError

INT_LIMIT = 2 ** 63 - 1
"""no integer option may exceed this (torch and numpy keep integers in int64)"""


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field, attached as ``Annotated[float, Range(0, 1)]``.

    ``low`` / ``high`` are inclusive bounds (None = unbounded on that side); ``low_exclusive`` /
    ``high_exclusive`` exclude the bound itself (``Range(0, low_exclusive=True)``: strictly
    positive). Every number must also be finite.
    """

    low: float | None = None
    high: float | None = None
    low_exclusive: bool = False
    high_exclusive: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_exclusive else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_exclusive else value <= self.high)

    def describe(self, integer: bool) -> str:
        """``"an integer in 1..64"``, ``"a number > 0"``, ``"a finite number"``, ..."""
        what = "an integer" if integer else "a number"
        if self.low is not None and self.high is not None \
                and not self.low_exclusive and not self.high_exclusive:
            return f"{what} in {_fmt(self.low)}..{_fmt(self.high)}"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_exclusive else '>='} {_fmt(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_exclusive else '<='} {_fmt(self.high)}")
        return f"{what} {' and '.join(parts)}" if parts else f"a finite {what[2:] if integer else 'number'}"


def _fmt(x: float) -> str:
    """``1e+15`` for round powers of ten, ``4_294_967_295`` for other large integers."""
    if not float(x).is_integer():
        return f"{x:g}"
    digits = str(abs(int(x)))
    if len(digits) > 6 and digits.rstrip("0") == "1":
        return f"{'-' if x < 0 else ''}1e{len(digits) - 1}"
    return f"{int(x):_}" if len(digits) > 5 else str(int(x))


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """What :func:`field_specs` knows of one field: its base type, range and whether None is allowed."""

    name: str
    kind: Any
    """the base type: bool, int, float, str, a ``Literal[...]``, a ``tuple[int, ...]``, a
    dataclass, dict or Any"""
    range: Range | None
    optional: bool
    """None is a valid value"""

    @property
    def choices(self) -> tuple | None:
        return typing.get_args(self.kind) if typing.get_origin(self.kind) is typing.Literal else None

    @property
    def element(self) -> Any:
        """The element type of a tuple/list field (None for other fields)."""
        origin = typing.get_origin(self.kind)
        if origin in (tuple, list):
            return typing.get_args(self.kind)[0] if typing.get_args(self.kind) else Any
        return None


def _unwrap(hint: Any) -> tuple[Any, Range | None, bool]:
    """``Optional[Annotated[int, Range]]`` and friends -> (int, Range, optional)."""
    optional = False
    range_ = None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(inner) < len(typing.get_args(hint))
        hint = inner[0] if len(inner) == 1 else Any
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extras = typing.get_args(hint)
        range_ = next((e for e in extras if isinstance(e, Range)), None)
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            inner, _, inner_optional = _unwrap(hint)
            hint, optional = inner, optional or inner_optional
    return hint, range_, optional


@functools.lru_cache(maxsize=None)
def field_specs(cls: type) -> dict[str, FieldSpec]:
    """``{field name: FieldSpec}`` of a config dataclass, from its annotations."""
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no checks for this class
        hints = {}
    specs = {}
    for field in dataclasses.fields(cls):
        kind, range_, optional = _unwrap(hints.get(field.name, Any))
        specs[field.name] = FieldSpec(field.name, kind, range_, optional)
    return specs


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return _is_integer(value) or isinstance(value, (float, np.floating))


def _show(value: Any) -> str:
    """A short repr for an error line (a huge list or string is cut)."""
    return reprlib.repr(value)


def check_value(value: Any, spec: FieldSpec, label: str) -> None:
    """Raise a one-line MemarlError when ``value`` does not fit ``spec`` (``label`` names it)."""
    if value is None:
        if spec.optional or spec.kind is Any:
            return
        raise MemarlError(f"{label} may not be None")
    kind = spec.kind
    choices = spec.choices
    if choices is not None:
        if not isinstance(value, (str, int, float)) or value not in choices \
                or isinstance(value, bool) != isinstance(choices[0], bool):
            raise MemarlError(f"{label} must be one of {', '.join(map(str, choices))}; got {_show(value)}")
        return
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise MemarlError(f"{label} must be true or false, got {_show(value)}")
        return
    if kind in (int, float):
        integer = kind is int
        allowed = spec.range or Range()
        if not (_is_integer(value) if integer else _is_number(value)):
            raise MemarlError(f"{label} must be {allowed.describe(integer)}, got {_show(value)}")
        if integer and abs(int(value)) > INT_LIMIT or not integer and not math.isfinite(float(value)) \
                or not allowed.contains(value):
            raise MemarlError(f"{label} must be {allowed.describe(integer)}, got {_show(value)}")
        return
    if kind is str:
        if not isinstance(value, str):
            raise MemarlError(f"{label} must be a string, got {_show(value)}")
        if "\x00" in value:
            raise MemarlError(f"{label} may not contain a NUL character")
        return
    element = spec.element
    if element is not None:
        if not isinstance(value, (list, tuple)):
            raise MemarlError(f"{label} must be a list, got {_show(value)}")
        item = FieldSpec(spec.name, element, spec.range, False)
        for entry in value:
            check_value(entry, item, f"{label} entry")
        return
    if dataclasses.is_dataclass(kind):  # a nested config validates its own fields
        if not isinstance(value, kind):
            raise MemarlError(f"{label} must be a {kind.__name__}, got {type(value).__name__}")
        return
    if kind in (dict, list, tuple) and not isinstance(value, kind):
        raise MemarlError(f"{label} must be a {kind.__name__}, got {_show(value)}")


def validate_fields(config: Any, label: Callable[[str], str] | None = None) -> None:
    """Check every field of the dataclass instance ``config`` against its declared type and range.

    ``label(name)`` is how an error names a field (default: ``TypeName.field``); the first problem
    raises a one-line :class:`MemarlError`. Cross-field rules are the config's own business.
    """
    label = label or (lambda name: f"{type(config).__name__}.{name}")
    for name, spec in field_specs(type(config)).items():
        check_value(getattr(config, name), spec, label(name))


def option_label(name: str) -> str:
    """How the CLI spells a config field: ``total_steps`` -> ``--total-steps``; a field named
    after a Python keyword drops its trailing underscore (``async_`` -> ``--async``)."""
    return "--" + name.rstrip("_").replace("_", "-")


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


def parse_value(text: str, kind: Any, name: str) -> Any:
    """Convert a command-line string to ``kind`` (bool, int, float, str, Optional, Literal, tuple).

    Integers may be written ``20000000``, ``2e7`` or ``20_000_000``; a non-integral or
    non-finite number for an integer option is an error here. Floats keep ``nan``/``inf`` so that
    :func:`validate_fields` names them against the option's range.
    """
    kind, _, optional = _unwrap(kind)
    if optional and text.strip().lower() in ("none", "null"):
        return None
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
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
    if kind is int:
        return _parse_int(text, name)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise MemarlError(f"{name}: expected a number, got {text!r}") from None
    if origin in (list, tuple) or kind in (list, tuple):
        inner = args[0] if args else str
        items = [parse_value(t.strip(), inner, name) for t in text.split(",") if t.strip()]
        return tuple(items) if (origin is tuple or kind is tuple) else items
    return text


def _parse_int(text: str, name: str) -> int:
    cleaned = text.strip()
    try:
        return int(cleaned)
    except ValueError:
        pass
    try:
        number = float(cleaned)
    except ValueError:
        raise MemarlError(f"{name}: expected an integer, got {text!r}") from None
    if not math.isfinite(number) or not number.is_integer():
        raise MemarlError(f"{name}: expected an integer, got {text!r}")
    return int(number)


def parse_options(config_class: type, options: dict[str, Any], what: str) -> dict[str, Any]:
    """Typed values for the string entries of ``options`` by the field types of ``config_class``.

    Non-string values pass through; unknown keys raise a one-line error listing the valid ones.
    """
    specs = field_specs(config_class)
    valid = list(specs)
    parsed = {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name not in valid:
            raise MemarlError(f"unknown {what} option {key!r}; valid options: {', '.join(valid)}")
        spec = specs[name]
        kind = spec.kind if not spec.optional else typing.Optional[spec.kind]
        parsed[name] = parse_value(value, kind, f"{what} option {key}") \
            if isinstance(value, str) else value
    return parsed


def parse_key_values(items: list[str] | None, flag: str) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a malformed or repeated key is a one-line error."""
    result = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MemarlError(f"{flag} expects KEY=VALUE, got {item!r}")
        if key in result:
            raise MemarlError(f"{flag} {key} is given twice ({result[key]!r} and {value.strip()!r})")
        result[key] = value.strip()
    return result
