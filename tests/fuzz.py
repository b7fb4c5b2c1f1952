"""Bad values for every option of every command and every config field, generated from the code.

The options are discovered, not listed: :func:`memarl.cli.command_configs` names the config
dataclasses the parser is built from, and :func:`memarl.configs.field_specs` gives each field's
type and declared range. From those this module derives values that no valid configuration can
hold (below the range, above it, NaN, infinities, overflowing numbers, wrong types, unknown
choices). A new field of an existing config is covered without touching this file; a new string
option needs an entry in :data:`STRING_VALUES` (the harness fails until it has one), because
only the option knows what a bad name or path is.

Placeholders in values: ``{file}`` an existing file, ``{missing}`` a path that does not exist,
``{run}`` a trained run directory, ``{eval_out}`` a folder holding earlier eval results,
``{gif}`` an existing GIF, ``{summary}`` an evaluation folder, ``{report_old}`` an earlier
report (OUT without suffix); they are filled in by the test's workspace.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from hypothesis import strategies as st

from memarl.configs import INT_LIMIT, FieldSpec, Range, field_specs, option_label

NOT_NUMBERS = ("nan", "inf", "-inf", "1e400", "-1e400", "abc", "", "1,2", "0x", "--")
"""command-line text that is no finite number"""
NOT_INTEGERS = NOT_NUMBERS + ("1.5", "1e-3", str(10**30), "9" * 40)

STRING_VALUES: dict[str, tuple[str, ...]] = {
    # train
    "train env": ("nope", "", "bottleneck-v9"),
    "train agent": ("nope", ""),
    "train run_dir": ("{file}", "{file}/sub", "{run}"),
    "train device": ("meta", "cuda:99", "tpu", "cpu:0", "", "cuda:x"),
    # eval
    "eval run": ("{missing}", "{file}"),
    "eval suite": ("nope", ""),
    "eval baseline": ("nope",),
    "eval checkpoint": ("newest", "{missing}.pt", "{file}"),
    "eval out": ("{file}", "{file}/sub", "{eval_out}"),
    "eval device": ("meta", "cuda:99", "tpu", ""),
    # render
    "render run": ("{missing}", "{file}"),
    "render out": ("{file}", "{gif}", "{missing}/ep.png", "{file}/ep.gif", "{file}/ep.svg", "{missing}/ep.svgz",
                   "{run}"),
    "render map_name": ("nope", "random-.+"),
    "render checkpoint": ("newest", "{missing}.pt", "{file}"),
    # report
    "report suite": ("nope", ""),
    "report out": ("", "{file}/sub", "{report_old}"),
    "report metric": ("nope", ""),
    "report title": ("", "  "),
    # bench env
    "bench env env": ("nope", "pogema-mapf", ""),
    "bench env out": ("{file}", "{file}/sub"),
    "bench env json": ("{file}", "{file}/sub/x.json", "{run}"),
    "bench env markdown": ("{file}", "{file}/sub/x.md", "{run}"),
    "bench env configs": ("nope", "64a-32x32,nope"),
    # bench train
    "bench train env": ("nope", "", "bottleneck-v9"),
    "bench train agent": ("nope", ""),
    "bench train engines": ("nope", "sync,sync", "", "sync,nope", "sf"),
    "bench train out": ("{file}", "{file}/sub"),
    "bench train suite": ("nope", "{missing}.yaml"),
}
"""bad values of string options, by ``"<command> <field>"``"""


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of one command, with what is known of its values."""

    command: str
    """``"train"``, ``"eval"``, ``"render"`` or ``"bench env"``"""
    spec: FieldSpec
    positional: bool

    @property
    def flag(self) -> str:
        return self.spec.name if self.positional else option_label(self.spec.name)

    @property
    def key(self) -> str:
        return f"{self.command} {self.spec.name}"


def discover_options() -> list[Option]:
    """Every value-taking option of every command, from the configs the parser is built from."""
    from memarl.cli import POSITIONAL, command_configs

    options = []
    for command, classes in command_configs().items():
        for cls, skip in classes:
            for name, spec in field_specs(cls).items():
                if name in skip or (spec.kind is bool and _default(cls, name) is False):
                    continue  # not an option, or a flag (no value to get wrong)
                options.append(Option(command, spec, name in POSITIONAL.get(command, ())))
    return options


def _default(cls: type, name: str) -> Any:
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return field.default


def _outside(range_: Range | None, integer: bool) -> list[float]:
    """Numbers just outside ``range_`` (and far outside), as the CLI would see them."""
    if range_ is None:
        return []
    values = []
    step = 1 if integer else max(abs(range_.low or 0), abs(range_.high or 0), 1) * 1e-3
    if range_.low is not None:
        values += [range_.low if range_.low_exclusive else range_.low - step, -1e12]
    if range_.high is not None:
        values += [range_.high if range_.high_exclusive else range_.high + step,
                   range_.high * 1000 + 1]
    return [v for v in values if not range_.contains(v)]


def _text(number: float, integer: bool) -> str:
    return str(int(number)) if integer and float(number).is_integer() else repr(float(number))


def bad_texts(spec: FieldSpec, key: str) -> list[str]:
    """Fixed bad command-line texts for one option (every edge the spec implies)."""
    kind = spec.kind
    element = spec.element
    if spec.choices is not None:
        return ["nope", "", str(spec.choices[0]).upper() + "X"]
    if kind is bool:
        return ["maybe", "", "2", "yes please"]
    if kind in (int, float):
        integer = kind is int
        values = list(NOT_INTEGERS if integer else NOT_NUMBERS)
        values += [_text(v, integer) for v in _outside(spec.range, integer)]
        if integer and (spec.range is None or spec.range.high is None):
            values.append(str(INT_LIMIT + 1))
        if spec.optional:
            values = [v for v in values if v.strip().lower() not in ("none", "null")]
        return values
    if element in (int, float):
        item = FieldSpec(spec.name, element, spec.range, False)
        return [f"1,{v}" if v else "," for v in bad_texts(item, key) if "," not in v]
    if key in STRING_VALUES:
        return list(STRING_VALUES[key])
    raise LookupError(f"no bad-value generator for the {kind} option {key!r}: add one to "
                      f"tests/fuzz.py STRING_VALUES")


def bad_text_strategy(spec: FieldSpec, key: str) -> st.SearchStrategy[str]:
    """Random bad texts beyond the fixed edges: numbers far outside the range, garbage words."""
    garbage = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Po")),
                      min_size=1, max_size=12).filter(lambda t: _no_number(t) and t.lower() not in
                                                      ("none", "null", "nan", "inf"))
    if spec.kind in (int, float) and spec.range is not None:
        integer = spec.kind is int
        below = above = st.nothing()
        if spec.range.low is not None:
            low = spec.range.low
            below = (st.integers(max_value=int(math.ceil(low)) - 1, min_value=-10**30)
                     if integer else st.floats(max_value=low, min_value=-1e300,
                                               exclude_max=not spec.range.low_exclusive))
        if spec.range.high is not None:
            high = spec.range.high
            above = (st.integers(min_value=int(high) + 1, max_value=10**30) if integer
                     else st.floats(min_value=high, max_value=1e300,
                                    exclude_min=not spec.range.high_exclusive))
        numbers = st.one_of(below, above).map(lambda v: _text(v, integer))
        return st.one_of(numbers, garbage)
    if spec.kind in (int, float):
        return garbage
    if spec.choices is not None:
        return garbage.filter(lambda t: t not in map(str, spec.choices))
    return st.sampled_from(bad_texts(spec, key))


def _no_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def bad_python_values(spec: FieldSpec) -> list[Any]:
    """Bad Python values for a config field given through the API (``memarl.make(**kwargs)``)."""
    kind = spec.kind
    values: list[Any] = [object()]
    if not spec.optional:
        values.append(None)
    if spec.choices is not None:
        return values + ["nope", 1]
    if kind is bool:
        return values + ["false", 1, 0.0]
    if kind in (int, float):
        integer = kind is int
        values += [float("nan"), float("inf"), "1", [1]]
        values += [int(v) if integer and float(v).is_integer() else v
                   for v in _outside(spec.range, integer)]
        if integer:
            values += [True, 1.5, 10**30]
        return values
    if spec.element is not None:
        return values + ["1,2", [None], [float("nan")]]
    if kind is str:
        return values + [1, b"bytes"]
    return []


def config_fields(cls: type) -> list[FieldSpec]:
    """The fields of a config the API fuzz can judge (typed, not free-form ``Any``)."""
    return [spec for spec in field_specs(cls).values() if spec.kind is not typing.Any]
