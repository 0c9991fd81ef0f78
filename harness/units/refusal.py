"""``refusal``: knowing when not to answer; the unit's marker means refuse / escalate.

Answers are generated greedily and parsed after the answer marker; what counts is the
refuse-or-answer *decision*. Scored by refusal precision/recall/F1 (F1 primary, positive = the
marker), over-refusal on answerable items and decision accuracy (a teacher's error rate is
``1 - accuracy``). Fidelity compares decisions, not answer texts. A classifier student answers it
with two classes: the marker, or :data:`ANSWER_CLASS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.units.base import UnitKind
from harness.units.common import (
    ANSWER_PARSE_RATE,
    UNIT_RANGE,
    MetricDef,
    Scored,
    clean,
    f1,
    f1_from_counts,
    precision,
    safe_div,
)
from harness.units.registry import register

#: The classifier class meaning "answer rather than refuse"; also the classifier's predicted
#: answer for it (refusal scoring compares only the refuse/answer decision).
ANSWER_CLASS = "<answer>"


def score_refusal(preds: Sequence[str | None], refs: Sequence[str], marker: str) -> Scored:
    """Refusal precision/recall/F1 (positive = the marker) and over-refusal on answerable items.

    ``correct`` is whether the refuse-or-answer *decision* matches the reference.
    """
    refused = [p is not None and p.strip() == marker for p in preds]
    should = [r.strip() == marker for r in refs]
    tp = sum(a and b for a, b in zip(refused, should, strict=True))
    fp = sum(a and not b for a, b in zip(refused, should, strict=True))
    fn = sum(b and not a for a, b in zip(refused, should, strict=True))
    answerable = sum(not b for b in should)
    prec, rec = precision(tp, fp, tp + fn), safe_div(tp, tp + fn)
    correct = [int(a == b) for a, b in zip(refused, should, strict=True)]
    parts = {"tp": [float(a and b) for a, b in zip(refused, should, strict=True)],
             "fp": [float(a and not b) for a, b in zip(refused, should, strict=True)],
             "fn": [float(b and not a) for a, b in zip(refused, should, strict=True)],
             "answerable": [float(not b) for b in should]}
    return Scored(clean({
        "refusal_precision": prec, "refusal_recall": rec, "refusal_f1": f1(prec, rec),
        "over_refusal_rate": safe_div(fp, answerable),
        "accuracy": safe_div(sum(correct), len(correct)),
    }), correct, parts)


@register
class RefusalKind(UnitKind):
    """Knowing when not to answer: the marker means refuse / escalate."""

    name = "refusal"
    metrics = (MetricDef("refusal_precision", True, UNIT_RANGE),
               MetricDef("refusal_recall", True, UNIT_RANGE),
               MetricDef("refusal_f1", True, UNIT_RANGE),
               MetricDef("over_refusal_rate", False, UNIT_RANGE),
               MetricDef("accuracy", True, UNIT_RANGE), ANSWER_PARSE_RATE)
    primary = "refusal_f1"
    decision = ("refusal_recall", "over_refusal_rate")
    error_metric = "accuracy"
    binary_primary = False
    classifier = True

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        return score_refusal(preds, refs, unit["marker"])

    def primary_from_parts(self, sums: Mapping[str, float], n: int) -> float:
        return f1_from_counts(sums)

    def metric_parts(self, metric: str) -> tuple[str, ...] | None:
        return {"refusal_recall": ("tp", "fn"), "over_refusal_rate": ("fp", "answerable"),
                "accuracy": ("correct",)}.get(metric, ("tp", "fp", "fn"))

    def metric_from_sums(self, metric: str, sums: Mapping[str, float], n: int) -> float:
        if metric == "refusal_recall":
            return safe_div(sums["tp"], sums["tp"] + sums["fn"]) or 0.0
        if metric == "over_refusal_rate":
            return safe_div(sums["fp"], sums["answerable"]) or 0.0
        if metric == "accuracy":  # the teacher-error metric: the ROI's fallback rate
            return sums["correct"] / n if n else 0.0
        return super().metric_from_sums(metric, sums, n)

    def decision_key(self, unit: Mapping[str, Any], answer: str | None) -> str | None:
        """The refuse/answer decision: agreeing on *whether* to refuse is what matters."""
        if answer is None:
            return None
        return "REFUSE" if answer.strip() == unit["marker"] else "ANSWER"

    def teacher_instruction(self, unit: Mapping[str, Any]) -> str:
        return (f"{unit['marker']} when the request must not be answered (it has to be "
                "escalated), otherwise the answer itself in a few words")

    def parse_teacher_final(self, value: Any, unit: Mapping[str, Any], *, plain: bool = False
                            ) -> str | None:
        """The marker (matched case-insensitively, quotes ignored), or the answer text."""
        text = super().parse_teacher_final(value, unit, plain=plain)
        if text is not None and text.strip("\"'`.").casefold() == unit["marker"].casefold():
            return str(unit["marker"])
        return text

    def failure_answer(self, unit: Mapping[str, Any]) -> str:
        """A failed answer without a correction should have been a refusal."""
        return str(unit["marker"])

    def classifier_classes(self, unit: Mapping[str, Any]) -> tuple[str, ...]:
        return (unit["marker"], ANSWER_CLASS)

    def class_index(self, classes: Sequence[str], answer: str) -> int | None:
        """0 (refuse) for the marker, 1 (answer) for anything else."""
        return 0 if answer == classes[0] else 1

    def define_options(self) -> type:
        from typing import Literal

        from pydantic import Field

        from harness.units.options import UnitOptions

        class RefusalUnit(UnitOptions):
            """Knowing when not to answer: the marker means refuse / escalate."""

            kind: Literal["refusal"]
            marker: str = Field("ESCALATE", min_length=1,
                                description="The refusal/escalation answer.")

        return RefusalUnit
