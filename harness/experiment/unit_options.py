"""The ``units:`` section: options every unit has, and one entry validated by its kind's model.

Each kind's own model (``LabelUnit``, ...) lives with the kind (``harness/units/<kind>.py``) and
is found in the unit-kind registry when an entry is validated, so a kind registered at run time
validates like a built-in one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

import harness.units as unit_kinds
from harness.errors import did_you_mean
from harness.experiment.kinds import kind_dispatched
from harness.strict import relocated
from harness.units.options import UnitOptions


def unit_model(kind: str) -> type[UnitOptions]:
    """The pydantic model of a registered kind's options.

    Raises:
        harness.units.UnknownUnitKind: no kind of that name is registered.
    """
    model: type[UnitOptions] = unit_kinds.get(kind).options_model()
    return model


def _validate_unit(value: Any) -> UnitOptions:
    """Validate one ``units:`` entry with its kind's model.

    Errors inside the entry carry the kind in their location (``units.x.label.labels``), as a
    pydantic discriminated union's would, so the loader can find the model for did-you-mean.
    """
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from")
    if "kind" not in value:
        raise ValueError(f"'kind' must be one of {', '.join(unit_kinds.names())}")
    kind = value["kind"]
    if not isinstance(kind, str) or kind not in unit_kinds.names():
        raise ValueError(f"unknown kind {kind!r}"
                         + did_you_mean(str(kind), unit_kinds.names()))
    model = unit_model(kind)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise relocated(exc, (kind,)) from None


#: The type of one ``units:`` entry: any registered kind's options model (validated by
#: :func:`_validate_unit`; in the JSON Schema a ``oneOf`` over the kinds' models).
_UnitEntry = kind_dispatched("Unit", _validate_unit,
                             lambda: {k: unit_model(k) for k in unit_kinds.names()})


if TYPE_CHECKING:
    Unit = UnitOptions  # what a validated entry is, for type checkers
else:
    Unit = _UnitEntry
