"""The ``units:`` section: options every unit has, and one entry validated by its kind's model.

Each kind's own model (``LabelUnit``, ...) lives with the kind (``harness/units/<kind>.py``) and
is found in the unit-kind registry when an entry is validated, so a kind registered at run time
validates like a built-in one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import (
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

import harness.units as unit_kinds
from harness.errors import did_you_mean
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


class _UnitEntry:
    """The type of one ``units:`` entry: any registered kind's options model.

    Validation dispatches on ``kind`` through the unit-kind registry at validation time (not a
    union fixed when this module was imported); the JSON Schema lists every registered kind as
    a ``oneOf`` with ``kind`` as the discriminator.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(_validate_unit)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        choices = {k: unit_model(k).__pydantic_core_schema__ for k in unit_kinds.names()}
        return handler(core_schema.tagged_union_schema(choices, discriminator="kind"))


if TYPE_CHECKING:
    Unit = UnitOptions  # what a validated entry is, for type checkers
else:
    Unit = _UnitEntry
