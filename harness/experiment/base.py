"""What every spec model shares: the strict base model, safe names, seeds and the sample pools.

Every model forbids unknown keys (a typo is an error, never a silent default) and is frozen so a
loaded experiment cannot drift while the harness runs. It also refuses what pydantic's lax mode
would quietly convert: NaN and infinity in any float (a NaN threshold compares false with every
value, so it is never met nor missed), a boolean where a number is expected (``layers: true``
would read as 1) and anything but ``true``/``false`` where a boolean is expected
(``trust_remote_code: "yes"`` would read as true).
"""

from __future__ import annotations

import functools
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

#: Names users give to experiments, units, buckets and field sets end up in folder names and
#: cell labels, so they are restricted to a safe alphabet (no ``/``, no ``..``). The whole name
#: must match (:func:`check_name` uses ``fullmatch``: with ``re.match`` the ``$`` would also
#: match before a final newline, and ``"demo\n"`` would become a folder name).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

PoolName = Literal["train", "failure", "hard", "review", "discard"]
POOLS: tuple[str, ...] = ("train", "failure", "hard", "review", "discard")

#: Largest seed: numpy's and scikit-learn's seeds are unsigned 32-bit integers (sampling and
#: clustering use them), and a negative seed fails there too.
MAX_SEED = 2**32 - 1
#: A random seed: a whole number from 0 to :data:`MAX_SEED`.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
#: A float that may be NaN or infinite when it reaches the model's own validator, which refuses
#: it in its own words (a scale's "must be two finite numbers").
SelfCheckedFloat = Annotated[float, Field(allow_inf_nan=True)]


def check_name(value: str) -> str:
    """Reject names that could escape a folder or break a label."""
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '_', '-', '.' (max 64, "
            "starting with a letter or digit, no '..')"
        )
    return value


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
