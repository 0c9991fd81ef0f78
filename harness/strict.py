"""The strict pydantic base of every YAML model (the experiment's sections, unit kinds' options).

Every model forbids unknown keys (a typo is an error, never a silent default) and is frozen so a
loaded experiment cannot drift while the harness runs. It also refuses what pydantic's lax mode
would quietly convert: NaN and infinity in any float (a NaN threshold compares false with every
value, so it is never met nor missed), a boolean where a number is expected (``layers: true``
would read as 1) and anything but ``true``/``false`` where a boolean is expected
(``trust_remote_code: "yes"`` would read as true). A leaf: it imports nothing of the harness, so
unit kinds (:mod:`harness.units.options`) and the experiment model (:mod:`harness.experiment`)
both build on it.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError, core_schema


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors, instances are immutable, floats are
    finite, and booleans and numbers are not converted into each other (see the module
    docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_lax_booleans(cls, data: Any) -> Any:
        # A model-level check (a "*" field validator is not allowed on discriminator fields);
        # each error is located at its key, as pydantic's own would be.
        if not isinstance(data, dict):
            return data
        errors: list[InitErrorDetails] = []
        for key, value in data.items():
            kind = _bool_policy(cls, key) if isinstance(key, str) else None
            if kind == "bool" and value is not None and not isinstance(value, bool):
                errors.append(InitErrorDetails(type=PydanticCustomError(
                    "strict_bool", "Input should be a valid boolean, true or false (got {got})",
                    {"got": f"{value!r:.60}"}), loc=(key,), input=value))
            elif kind == "number" and _holds_bool(value):
                errors.append(InitErrorDetails(type=PydanticCustomError(
                    "bool_as_number", "a boolean (true/false) is not a number here"),
                    loc=(key,), input=value))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


#: The scalar types a field may be built of for :func:`_bool_policy` to judge it.
_SCALARS = (bool, int, float, str, Path, type(None))


def _leaf_types(tp: Any) -> set[type] | None:
    """The scalar types annotation ``tp`` is built of (through ``Annotated``, unions, ``Literal``,
    lists, tuples, sets and dicts), or None when it holds anything else (a model, which checks
    its own fields, ``Any`` or a custom type)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return _leaf_types(typing.get_args(tp)[0])
    if origin is Literal:
        return {type(a) for a in typing.get_args(tp)}
    if origin in (types.UnionType, typing.Union, list, tuple, set, frozenset, dict):
        out: set[type] = set()
        for arg in typing.get_args(tp):
            if arg is Ellipsis:
                continue
            leaves = _leaf_types(arg)
            if leaves is None:
                return None
            out |= leaves
        return out
    if isinstance(tp, type) and issubclass(tp, _SCALARS):
        return {next(s for s in _SCALARS if issubclass(tp, s))}
    return None


@functools.cache
def _bool_policy(model: type[BaseModel], name: str) -> Literal["bool", "number"] | None:
    """How field ``name`` of ``model`` treats booleans: ``bool`` (only true, false or null),
    ``number`` (numbers with no boolean anywhere in the value), or None (pydantic decides)."""
    field = model.model_fields.get(name)
    leaves = _leaf_types(field.annotation) if field is not None else None
    if not leaves:
        return None
    if bool in leaves:
        return "bool" if leaves <= {bool, type(None)} else None
    return "number" if leaves & {int, float} else None


def _holds_bool(value: Any) -> bool:
    """Whether ``value`` is, or (in a list, tuple or mapping) contains, a boolean."""
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(_holds_bool(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_bool(v) for v in value.values())
    return False


#: The error types pydantic-core rebuilds by name; any other (a ``PydanticCustomError`` such as
#: this module's ``bool_as_number``) is rebuilt as a custom error with its rendered message.
_KNOWN_ERRORS = frozenset(typing.get_args(core_schema.ErrorType))


def relocated(exc: ValidationError, prefix: tuple[str | int, ...],
              instead: Callable[[ErrorDetails], InitErrorDetails | None] | None = None
              ) -> ValidationError:
    """``exc`` with ``prefix`` put before every error's location: a model validated inside a
    plain validator function (a kind's options, found in a registry) reports its errors under
    the kind, as a pydantic tagged union would, whatever their type. ``instead`` may say an
    error in other words (its detail, located already), or return None to keep it."""
    details: list[InitErrorDetails] = []
    for e in exc.errors(include_url=False):
        other = instead(e) if instead is not None else None
        if other is not None:
            details.append(other)
            continue
        kind: Any = e["type"]
        if kind not in _KNOWN_ERRORS:
            # Rebuilt from the rendered message: without a context it is not formatted again.
            kind = PydanticCustomError(kind, e["msg"])
        details.append(InitErrorDetails(
            type=kind, loc=(*prefix, *e["loc"]), input=e["input"],
            **({"ctx": e["ctx"]} if "ctx" in e and kind is e["type"] else {})))  # type: ignore[typeddict-item]
    return ValidationError.from_exception_data(exc.title, details)
