"""Where a problem is in the experiment YAML: YAML path -> ``file:line``; pydantic errors.

The loader composes the YAML node tree once (:mod:`harness.experiment.safe_yaml`);
:func:`line_index` maps every YAML path (a tuple of keys and list indices, as strings) to its
1-based line, and :class:`Locator` answers ``demo.yaml:23`` for a path, falling back to the
nearest ancestor that is written in the file (a defaulted key is reported at its section).
:func:`pydantic_problems` turns a :class:`~pydantic.ValidationError` into located problems with
a did-you-mean for unknown keys.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import Problem, ProblemLog, did_you_mean
from harness.experiment.models import Experiment, StudentSpec, Unit, student_model, unit_model

#: Errors whose message does not show the value, which is then added: "Input should be a
#: finite number (got nan)", "... less than or equal to 32768 (got 1000000000)".
_SHOW_INPUT = frozenset({"finite_number", "less_than", "less_than_equal", "greater_than",
                         "greater_than_equal"})


def line_index(node: yaml.Node | None, prefix: tuple[str, ...] = (),
               _active: frozenset[int] = frozenset()) -> dict[tuple[str, ...], int]:
    """Map each YAML path (tuple of keys / list indices as str) to its 1-based line.

    An alias that refers back to a node being walked (a recursive alias) is not followed.
    """
    out: dict[tuple[str, ...], int] = {}
    if node is None or id(node) in _active:
        return out
    active = _active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            out[path] = key_node.start_mark.line + 1
            out.update(line_index(value_node, path, active))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            out[path] = item.start_mark.line + 1
            out.update(line_index(item, path, active))
    return out


class Locator:
    """Turns a YAML path into ``file:line`` using the composed node tree."""

    def __init__(self, file: Path, lines: dict[tuple[str, ...], int]) -> None:
        self.file = file
        self.lines = lines

    def where(self, path: tuple[str, ...]) -> str:
        """``file:line`` of ``path`` or of its nearest written ancestor; ``file`` if none is."""
        p = tuple(str(x) for x in path)
        while p:
            if p in self.lines:
                return f"{self.file.name}:{self.lines[p]}"
            p = p[:-1]
        return self.file.name

    def locate(self, field: str, message: str) -> Problem:
        """A problem at the dotted YAML path ``field``."""
        return Problem(self.where(tuple(field.split("."))), field, message)


def line_of(p: Problem) -> tuple[int, str]:
    """Sort key of the report: the line number in ``where`` (``file:12``), then the field."""
    tail = p.where.rsplit(":", 1)[-1]
    return (int(tail) if tail.isdigit() else 0, p.field)


def _model_fields_at(loc: tuple[Any, ...]) -> tuple[list[str], tuple[str, ...]]:
    """Walk the model tree along a pydantic error location.

    Returns the field names allowed at the parent of the last element (for did-you-mean) and
    the display path with union tags (e.g. ``label`` in ``units.x.label.labels``) removed.
    """
    current: Any = Experiment
    shown: list[str] = []
    allowed: list[str] = []
    for i, part in enumerate(loc):
        current = _unwrap(current)
        last = i == len(loc) - 1
        if isinstance(current, type) and issubclass(current, BaseModel):
            allowed = list(current.model_fields)
            shown.append(str(part))
            if last:
                break
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if current is Unit or current is StudentSpec:
            # A unit entry or the student section: its validator puts the kind into the
            # location, like a tagged union.
            try:
                current = (unit_model if current is Unit else student_model)(str(part))
            except LookupError:
                shown.append(str(part))
                current = None
            continue
        if origin is dict:
            shown.append(str(part))
            current = args[1] if args else None
            continue
        if origin in (types.UnionType, typing.Union):
            # A tagged union of models (``teachers.x``): pydantic puts the tag into the
            # location; it is not a YAML key, so it is dropped from the path.
            current = _tagged(args, str(part))
            continue
        if origin in (list, tuple):
            shown.append(str(part))
            current = args[0] if args else None
            continue
        shown.append(str(part))
        current = None
    return allowed, tuple(shown)


def _tagged(members: tuple[Any, ...], tag: str) -> Any:
    """The model of a tagged union whose discriminator (a one-value ``Literal`` field) is
    ``tag``, or None."""
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            for field in member.model_fields.values():
                if typing.get_origin(field.annotation) is typing.Literal and typing.get_args(
                        field.annotation) == (tag,):
                    return member
    return None


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` so the walker sees the model or container."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (types.UnionType, typing.Union):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def pydantic_problems(exc: ValidationError, log: ProblemLog, loc: Locator) -> None:
    """Add one located problem per pydantic error to ``log``."""
    for err in exc.errors(include_url=False):
        if log.full:  # 100,000 unknown keys: count the rest without a did-you-mean each
            log.count()
            continue
        raw_loc = tuple(err["loc"])
        allowed, shown = _model_fields_at(raw_loc)
        path = ".".join(shown)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(raw_loc[-1]) if raw_loc else ""
            msg = f"unknown key{did_you_mean(key, allowed)}"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and (kind.endswith("_type") or kind in _SHOW_INPUT):
                msg += f" (got {err['input']!r:.60})"
        log.add(loc.where(shown), path, msg)
