"""The ``student:`` section: validated by the options model of the student kind it names.

Each kind's model (:class:`~harness.students.options.CausalLMOptions`, ...) lives with the
student kinds (:mod:`harness.students.options`; a kind names its own through
:meth:`~harness.students.base.StudentKind.options_model`) and is found in the student-kind
registry when the section is validated, so a kind registered at run time validates like a
built-in one, and this package never names a kind or its options. A section without ``kind``
is a :data:`~harness.students.base.DEFAULT_KIND` student.

A key another kind owns is refused with which kinds take it and why this one does not
(``student.pooling: a causal_lm student does not take pooling (...); remove it, or use kind:
classifier``) — unless it holds that kind's unset value: a run record written when one flat
model carried every kind's options holds them all at their defaults, and it must read back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

import harness.students.base as student_kinds
from harness.errors import did_you_mean
from harness.experiment.kinds import kind_dispatched
from harness.strict import relocated
from harness.students.options import (
    MAX_PARAMETERS,
    AdapterSpec,
    DistillSpec,
    StudentConfig,
    StudentOptions,
    TrainSpec,
)

__all__ = ["MAX_PARAMETERS", "AdapterSpec", "DistillSpec", "StudentConfig", "StudentOptions",
           "StudentSpec", "TrainSpec", "checkpoint_fields", "student_model"]


def student_model(kind: str) -> type[StudentOptions]:
    """The pydantic model of a registered student kind's options.

    Raises:
        KeyError: no kind of that name is registered (with a did-you-mean).
    """
    return student_kinds.get(kind).options_model()


def checkpoint_fields(kind: Any) -> list[tuple[str, ...]]:
    """Where checkpoint folders are written in a ``student:`` section of ``kind`` (every
    registered kind's, when ``kind`` names none), for the loader to make them absolute."""
    kinds = [kind] if isinstance(kind, str) and kind in student_kinds.names() else (
        student_kinds.names())
    fields: list[tuple[str, ...]] = []
    for name in kinds:
        for field, _ in student_model(name).CHECKPOINTS.values():
            if field not in fields:
                fields.append(field)
    return fields


def _owners(key: str, kind: str) -> list[str]:
    """The registered kinds other than ``kind`` whose options include ``key``."""
    return [n for n in student_kinds.names()
            if n != kind and key in student_model(n).model_fields]


def _unset_elsewhere(key: str, value: Any, owners: list[str]) -> bool:
    """Whether ``value`` is the unset (default) value of ``key`` in every kind that owns it."""
    for name in owners:
        field = student_model(name).model_fields[key]
        if field.is_required() or field.get_default(call_default_factory=True) != value:
            return False
    return True


def _validate_student(value: Any) -> StudentOptions:
    """Validate a ``student:`` section with its kind's model.

    Errors inside the section carry the kind in their location (``student.classifier.pooling``),
    as a pydantic discriminated union's would, so the loader finds the model for did-you-mean
    and drops the tag from the shown path.
    """
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from")
    kind = value.get("kind", student_kinds.DEFAULT_KIND)
    if not isinstance(kind, str) or kind not in student_kinds.names():
        raise ValidationError.from_exception_data("student", [InitErrorDetails(
            type=PydanticCustomError(
                "student_kind", "unknown student kind {kind}{hint} (known: {known})",
                {"kind": repr(kind), "hint": did_you_mean(str(kind), student_kinds.names()),
                 "known": ", ".join(student_kinds.names())}),
            loc=("kind",), input=kind)])
    model = student_model(kind)
    foreign = {k: _owners(k, kind) for k in value if k not in model.model_fields}
    data = {k: v for k, v in value.items()
            if not (foreign.get(k) and _unset_elsewhere(k, v, foreign[k]))}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise relocated(exc, (kind,), lambda e: _foreign_key(e, kind, foreign)) from None


def _foreign_key(error: ErrorDetails, kind: str, foreign: dict[str, list[str]]
                 ) -> InitErrorDetails | None:
    """An unknown-key error for a key other kinds own, said as such (None: another error)."""
    loc = tuple(error["loc"])
    if error["type"] != "extra_forbidden" or len(loc) != 1 or not foreign.get(str(loc[0])):
        return None
    key, owners = str(loc[0]), foreign[str(loc[0])]
    why = student_kinds.get(kind).why_not.get(key, f"it is an option of {' and '.join(owners)} "
                                              "students")
    return InitErrorDetails(
        type=PydanticCustomError(
            "student_option", "a {kind} student does not take {key} ({why}); remove it, or use "
            "kind: {owners}", {"kind": kind, "key": key, "why": why,
                               "owners": " or ".join(owners)}),
        loc=(kind, key), input=error["input"])


#: The type of the ``student:`` section: any registered kind's options model (validated by
#: :func:`_validate_student`; in the JSON Schema a ``oneOf`` over the kinds' models).
_StudentEntry = kind_dispatched(
    "StudentSpec", _validate_student,
    lambda: {k: student_model(k) for k in student_kinds.names()})


if TYPE_CHECKING:
    StudentSpec = StudentOptions  # what a validated section is, for type checkers
else:
    StudentSpec = _StudentEntry
