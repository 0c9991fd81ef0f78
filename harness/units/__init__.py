"""Unit kinds: one module per kind, registered by name.

Importing this package registers the built-in kinds (label, json_fields, tool_call, refusal,
text). Everything else in the harness asks :func:`get` for a unit's kind instead of branching on
its name; a new kind is one module with a :class:`UnitKind` subclass decorated by
:func:`register`. Standard library only at import time (the GPU worker imports it).
"""

# The built-ins register on import, in the order messages and the JSON Schema list them.
# isort: off
from harness.units import label  # noqa: F401
from harness.units import json_fields  # noqa: F401
from harness.units import tool_call  # noqa: F401
from harness.units import refusal  # noqa: F401
from harness.units import text  # noqa: F401
# isort: on
from harness.units.base import AnswersBy, UnitKind
from harness.units.common import MetricDef, Scored, canonical
from harness.units.registry import (
    COMMON_METRICS,
    UnknownMetric,
    UnknownUnitKind,
    classifier_kinds,
    get,
    kind_of,
    known_metrics,
    metric_direction,
    names,
    primary_metric,
    register,
    unregister,
)

__all__ = [
    "COMMON_METRICS",
    "AnswersBy",
    "MetricDef",
    "Scored",
    "UnitKind",
    "UnknownMetric",
    "UnknownUnitKind",
    "canonical",
    "classifier_kinds",
    "get",
    "kind_of",
    "known_metrics",
    "metric_direction",
    "names",
    "primary_metric",
    "register",
    "unregister",
]
