"""The unit-kind registry: kinds by name, and the direction of every metric name.

Built-in kinds register themselves when :mod:`harness.units` is imported; a project (or a test)
adds its own with :func:`register` before loading an experiment that uses it. Standard library
only (the GPU worker imports it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from harness.errors import did_you_mean
from harness.units.base import UnitKind
from harness.units.common import ANSWER_PARSE_RATE, CALIBRATION_METRICS, FIDELITY_METRICS

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_KINDS: dict[str, UnitKind] = {}
_table: dict[str, tuple[bool, str]] | None = None  # metric directions, rebuilt on (un)register

#: Metrics every unit may carry whatever its kind: parse rate, calibration, teacher fidelity.
COMMON_METRICS: dict[str, bool] = {
    m.name: m.higher_is_better for m in (ANSWER_PARSE_RATE, *CALIBRATION_METRICS,
                                         *FIDELITY_METRICS)}

K = TypeVar("K", bound=type[UnitKind])


class UnknownUnitKind(LookupError):
    """A unit kind name nobody registered."""


class UnknownMetric(LookupError):
    """A metric name no registered kind (nor the common table) reports."""


def _directions(kinds: Mapping[str, UnitKind]) -> dict[str, tuple[bool, str]]:
    """``{metric base name: (higher_is_better, who declares it)}`` over the common table and
    ``kinds``; raises ValueError when two declare one name with opposite directions."""
    out: dict[str, tuple[bool, str]] = {m: (d, "common metrics") for m, d in
                                        COMMON_METRICS.items()}
    for kind in kinds.values():
        for m in (*kind.metrics, *kind.field_metrics):
            seen = out.get(m.name)
            if seen is not None and seen[0] != m.higher_is_better:
                raise ValueError(f"unit kind {kind.name!r} declares metric {m.name!r} with "
                                 f"higher_is_better={m.higher_is_better}, but {seen[1]} "
                                 f"declares {seen[0]}")
            out.setdefault(m.name, (m.higher_is_better, f"unit kind {kind.name!r}"))
    return out


def register(cls: K) -> K:
    """Register a :class:`UnitKind` subclass under its ``name`` (usable as a class decorator).

    Raises:
        ValueError: a bad or taken name, no primary metric among its metrics, or a metric
            whose direction contradicts another kind's.
    """
    kind = cls()
    name = kind.name
    if not _NAME.match(name):
        raise ValueError(f"unit kind name {name!r}: use lowercase letters, digits and '_'")
    if name in _KINDS and type(_KINDS[name]) is not cls:
        raise ValueError(f"unit kind {name!r} is already registered")
    if kind.primary not in {m.name for m in kind.metrics}:
        raise ValueError(f"unit kind {name!r}: primary metric {kind.primary!r} is not among "
                         "its metrics")
    if kind.teacher_error_metric not in {m.name for m in kind.metrics}:
        raise ValueError(f"unit kind {name!r}: error metric {kind.error_metric!r} is not "
                         "among its metrics")
    global _table
    _directions({**_KINDS, name: kind})  # refuse contradictory directions before registering
    _KINDS[name] = kind
    _table = None
    return cls


def unregister(name: str) -> None:
    """Remove a kind (tests that register a toy kind clean up with this)."""
    global _table
    _KINDS.pop(name, None)
    _table = None


def get(name: str) -> UnitKind:
    """The kind registered as ``name``.

    Raises:
        UnknownUnitKind: with a did-you-mean among the registered names.
    """
    try:
        return _KINDS[name]
    except (KeyError, TypeError):
        raise UnknownUnitKind(f"unknown unit kind {name!r}"
                              f"{did_you_mean(str(name), _KINDS)}") from None


def names() -> tuple[str, ...]:
    """Registered kind names, in registration order (built-ins first)."""
    return tuple(_KINDS)


def classifier_kinds() -> tuple[str, ...]:
    """Names of the kinds a classifier student can answer."""
    return tuple(n for n, k in _KINDS.items() if k.classifier)


def _options(unit: Any) -> Mapping[str, Any]:
    """A unit's options as a mapping (a spec model is dumped; a dict passes through)."""
    dump = getattr(unit, "model_dump", None)
    return dump(mode="json") if callable(dump) else unit


def kind_of(unit: Any) -> UnitKind:
    """The kind of a unit given as a spec dict or a validated spec model."""
    return get(_options(unit)["kind"])


def known_metrics(unit: Any) -> list[str]:
    """Every metric name a unit (spec dict or model) can report, in report order."""
    opts = _options(unit)
    return get(opts["kind"]).known_metrics(opts)


def metric_direction(metric: str) -> bool:
    """Whether higher is better for ``metric``.

    Per-field and per-teacher names (``f1.order_id``, ``agreement.teacher_a``) follow their
    base name.

    Raises:
        UnknownMetric: no registered kind nor the common table declares the base name (a typo
            or a kind that was never registered must not silently count as higher-is-better).
    """
    global _table
    base = metric.split(".", 1)[0]
    if _table is None:
        _table = _directions(_KINDS)
    table = _table
    if base not in table:
        raise UnknownMetric(f"unknown metric {metric!r}{did_you_mean(base, table)}")
    return table[base][0]


def primary_metric(kind: str) -> str:
    """The primary metric of the kind named ``kind``."""
    return get(kind).primary
