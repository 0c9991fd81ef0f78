"""What every unit kind shares: the scorer's output, metric definitions and counting helpers.

Standard library only (the GPU worker imports it). The metric definitions here are the ones a
unit reports whatever its kind — the parse rate, calibration of scored answers, agreement with
the teachers — so each metric name has exactly one home and one direction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricDef:
    """One metric a unit reports.

    Attributes:
        name: the metric's name in ``metrics.json`` and ``results.parquet``; for a per-field
            family (``f1``) the base of ``f1.<field>``.
        higher_is_better: the direction reports, the gate and the store use.
        bounds: the metric's range ``(low, high)`` when it has one (rates, F1s: ``(0, 1)``);
            a difference of two values then lies in ``[low - high, high - low]``, and
            attribution clips or refuses intervals that do not fit (None: unbounded).
    """

    name: str
    higher_is_better: bool
    bounds: tuple[float, float] | None = None


#: The range of rates, accuracies, precisions, recalls and F1s.
UNIT_RANGE: tuple[float, float] = (0.0, 1.0)


#: Share of items whose generation held a parseable answer (every kind reports it).
ANSWER_PARSE_RATE = MetricDef("answer_parse_rate", True, UNIT_RANGE)

#: Calibration of scored answers' probabilities (:mod:`harness.evaluate.calibration`); also the
#: teacher audit's stated-confidence calibration.
CALIBRATION_METRICS: tuple[MetricDef, ...] = (
    MetricDef("ece_15", False, UNIT_RANGE), MetricDef("ece_10_mass", False, UNIT_RANGE),
    MetricDef("brier", False, UNIT_RANGE), MetricDef("nll", False),
    MetricDef("mean_confidence", True, UNIT_RANGE),
)

#: Agreement with each teacher (``<metric>.<teacher>`` rows of the results table).
FIDELITY_METRICS: tuple[MetricDef, ...] = (
    MetricDef("agreement", True, UNIT_RANGE), MetricDef("agree_correct", True, UNIT_RANGE),
    MetricDef("agree_wrong", False, UNIT_RANGE), MetricDef("copied_error_rate", False, UNIT_RANGE),
    MetricDef("copied_error_chance", False, UNIT_RANGE),
)


@dataclass(frozen=True)
class Scored:
    """A scorer's output.

    Attributes:
        metrics: metric name -> value (NaN-free; metrics without a defined value are omitted).
        correct: per item, 1 if the prediction counts as right for this unit kind, else 0.
        parts: per-item values from which the kind's decision metrics are recomputed on any
            subset of items (see ``UnitKind.metric_from_items``): additive counts (``tp``,
            ``fp``, ...) or per-item values (ROUGE-L, class indexes); used by paired
            bootstraps.
    """

    metrics: dict[str, float]
    correct: list[int]
    parts: dict[str, list[float]] | None = None


def canonical(answer: str | None) -> str | None:
    """Comparable form: JSON re-dumped with sorted keys, other text whitespace-collapsed."""
    if answer is None:
        return None
    text = answer.strip()
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except (ValueError, RecursionError):
        return " ".join(text.split())


def safe_div(a: float, b: float) -> float | None:
    """``a / b``, or None when ``b`` is 0 (the metric is undefined, not 0)."""
    return a / b if b else None


def precision(tp: int, fp: int, positives: int) -> float | None:
    """Precision; with no predicted positives it is 0 when positives exist (nothing found),
    undefined otherwise (scikit-learn's zero_division=0 convention, made explicit)."""
    if tp + fp:
        return tp / (tp + fp)
    return 0.0 if positives else None


def f1(p: float | None, r: float | None) -> float | None:
    """Harmonic mean of precision and recall (None when either is undefined)."""
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def clean(metrics: dict[str, float | None]) -> dict[str, float]:
    """Drop undefined metrics and make the rest floats."""
    return {k: float(v) for k, v in metrics.items() if v is not None}


def f1_from_counts(sums: Mapping[str, float]) -> float:
    """F1 from summed ``tp``/``fp``/``fn`` parts (0 when there is nothing to count)."""
    tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def decode_json_strictly(text: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is valid JSON under the data contract's decoder, else
    ``(False, None)``.

    Validation uses msgspec (stricter than :mod:`json`: no NaN literals), imported here lazily
    because this runs in ``validate`` only, never on the worker's path.
    """
    import msgspec

    try:
        return True, msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return False, None
