"""``label``: classification into declared labels.

Answers are scored, not generated: the log-likelihood of ``" " + label`` after
``prompt + "\\n" + marker``, softmax over the labels as the confidence — so the unit also reports
calibration. Scored by accuracy (primary) and macro-F1. A classifier student answers it with one
class per label. Teacher finals outside the labels are real teacher errors: a warning, not an
error; a reference outside them is an error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import did_you_mean
from harness.units.base import UnitKind
from harness.units.common import (
    ANSWER_PARSE_RATE,
    CALIBRATION_METRICS,
    UNIT_RANGE,
    MetricDef,
    Scored,
    clean,
    safe_div,
)
from harness.units.registry import register


def score_label(preds: Sequence[str | None], refs: Sequence[str], labels: Sequence[str]
                ) -> Scored:
    """Accuracy and macro-F1 over the declared labels.

    Parts: ``pred_class`` / ``ref_class``, each item's label index (-1: none of the labels), from
    which :meth:`LabelKind.metric_from_items` recomputes macro-F1 on any subset of items.
    """
    correct = [int(p == r) for p, r in zip(preds, refs, strict=True)]
    f1s = []
    for lab in labels:
        tp = sum(1 for p, r in zip(preds, refs, strict=True) if p == lab and r == lab)
        fp = sum(1 for p, r in zip(preds, refs, strict=True) if p == lab and r != lab)
        fn = sum(1 for p, r in zip(preds, refs, strict=True) if p != lab and r == lab)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    index = {lab: k for k, lab in enumerate(labels)}
    parts = {"pred_class": [float(index.get(p, -1)) if p is not None else -1.0 for p in preds],
             "ref_class": [float(index.get(r, -1)) for r in refs]}
    return Scored(clean({"accuracy": safe_div(sum(correct), len(correct)),
                         "macro_f1": safe_div(sum(f1s), len(f1s))}), correct, parts)


def _jinja_literal(text: str) -> str:
    """A string literal safe inside a Jinja2 template (``{{ '...' }}``)."""
    return "{{ " + json.dumps(text) + " }}"


@register
class LabelKind(UnitKind):
    """Classification into declared labels."""

    name = "label"
    metrics = (MetricDef("accuracy", True, UNIT_RANGE), MetricDef("macro_f1", True, UNIT_RANGE),
               *CALIBRATION_METRICS, ANSWER_PARSE_RATE)
    primary = "accuracy"
    decision = ("macro_f1",)
    answers_by = "loglik"
    classifier = True
    bad_final = "warning"

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        return score_label(preds, refs, unit["labels"])

    def metric_parts(self, metric: str) -> tuple[str, ...] | None:
        return ("correct",) if metric == "accuracy" else None

    def metric_is_of_sums(self, metric: str) -> bool:
        return metric != "macro_f1"

    def metric_from_items(self, metric: str, parts: Mapping[str, Any], idx: Any) -> float:
        """Accuracy from ``correct``; macro-F1 from the class indexes (labels that neither a
        prediction nor a reference names among ``idx`` do not count, as in the scorer)."""
        if metric != "macro_f1":
            return super().metric_from_items(metric, parts, idx)
        import numpy as np  # the worker never calls this; numpy is allowed there anyway

        pred = np.asarray(parts["pred_class"])[idx].astype(int) + 1  # 0: no label
        ref = np.asarray(parts["ref_class"])[idx].astype(int) + 1
        size = int(max(pred.max(initial=0), ref.max(initial=0))) + 1
        tp = np.bincount(ref[pred == ref], minlength=size)[1:]
        fp = np.bincount(pred, minlength=size)[1:] - tp
        fn = np.bincount(ref, minlength=size)[1:] - tp
        denom = 2 * tp + fp + fn
        seen = denom > 0
        return float(np.mean(2 * tp[seen] / denom[seen])) if seen.any() else 0.0

    def choices(self, unit: Mapping[str, Any]) -> list[str]:
        return list(unit["labels"])

    def teacher_instruction(self, unit: Mapping[str, Any]) -> str:
        return "exactly one of these labels, copied verbatim: " + ", ".join(unit["labels"])

    def answer_value_schema(self, unit: Mapping[str, Any]) -> dict[str, Any]:
        """One of the labels (an enum: a schema-decoding endpoint can write no other)."""
        return {"type": "string", "enum": list(unit["labels"])}

    def parse_teacher_final(self, value: Any, unit: Mapping[str, Any], *, plain: bool = False
                            ) -> str | None:
        """One of the labels, matched case-insensitively (quotes and a final full stop
        ignored); in plain text also the one label the text names as a whole word."""
        if not isinstance(value, str):
            return None
        folded = {lab.casefold(): lab for lab in unit["labels"]}
        exact = folded.get(value.strip().strip("\"'`").rstrip(".").strip().casefold())
        if exact is not None or not plain:
            return exact
        named = {lab for lab in unit["labels"]
                 if re.search(r"(?<![\w])" + re.escape(lab) + r"(?![\w])", value, re.IGNORECASE)}
        return named.pop() if len(named) == 1 else None

    def classifier_classes(self, unit: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(unit["labels"])

    def reference_problem(self, unit: Mapping[str, Any], unit_name: str, value: str
                          ) -> str | None:
        labels = list(unit["labels"])
        if value in labels:
            return None
        return f"{value!r} is not a label of unit {unit_name!r}{did_you_mean(value, labels)}"

    def correction_problem(self, unit: Mapping[str, Any], unit_name: str, value: str
                           ) -> str | None:
        if value in unit["labels"]:
            return None
        return f"correction {value!r} is not a label of unit {unit_name!r}"

    def final_problem(self, unit: Mapping[str, Any], unit_name: str, value: str) -> str | None:
        return None if value in unit["labels"] else "is not among its labels"

    def finals_warning(self, unit_name: str, count: int) -> str:
        return (f"{count} answer(s) of unit {unit_name!r} are not among its labels (kept as "
                "teacher errors)")

    def lm_eval_task(self, unit: Mapping[str, Any]) -> dict[str, Any]:
        """``multiple_choice`` over the labels after ``prompt + "\\n" + marker`` with
        ``target_delimiter: " "``: the harness's own scoring, so the accuracies agree."""
        return {
            "output_type": "multiple_choice",
            "doc_to_text": "{{prompt}}\n" + _jinja_literal(unit["answer_marker"]),
            "doc_to_choice": list(unit["labels"]),
            "doc_to_target": "{{gold}}",
            "target_delimiter": " ",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        }

    def lm_eval_row(self, unit: Mapping[str, Any], item: Mapping[str, Any]) -> dict[str, Any]:
        return {"gold": list(unit["labels"]).index(item["reference"])}

    def define_options(self) -> type:
        from typing import Literal

        from pydantic import Field, field_validator

        from harness.units.options import UnitOptions

        class LabelUnit(UnitOptions):
            """Classification into declared labels; scored by accuracy, macro-F1 and calibration."""  # noqa: E501

            kind: Literal["label"]
            labels: list[str] = Field(min_length=2, description="The allowed labels.")

            @field_validator("labels")
            @classmethod
            def _unique(cls, v: list[str]) -> list[str]:
                dup = sorted({x for x in v if v.count(x) > 1})
                if dup:
                    raise ValueError(f"labels must be unique; repeated: {dup}")
                if any(not x.strip() or "\n" in x for x in v):
                    raise ValueError("labels must be non-empty single-line strings")
                return v

        return LabelUnit
