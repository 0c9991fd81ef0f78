"""``json_fields``: structured extraction into a JSON object with declared fields.

Answers are generated greedily and parsed after the marker. Scored by JSON validity, micro field
precision/recall/F1 (F1 primary, recomputed from per-item counts), F1 per declared field
(``f1.<field>``) and exact-record match. Teacher finals that are not a JSON object are errors, as
are references naming a field the unit does not declare.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.units.base import JsonAnswerKind
from harness.units.common import (
    ANSWER_PARSE_RATE,
    UNIT_RANGE,
    MetricDef,
    Scored,
    clean,
    decode_json_strictly,
    f1,
    f1_from_counts,
    precision,
    safe_div,
)
from harness.units.registry import register


def _as_object(text: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def score_json_fields(preds: Sequence[str | None], refs: Sequence[str], fields: Sequence[str]
                      ) -> Scored:
    """JSON validity, micro field precision/recall/F1, per-field F1, exact-record match.

    A field counts as predicted when the key is present; it is right when its value equals the
    reference's (compared as strings, whitespace-trimmed).
    """
    tp = fp = fn = 0
    per = {f: [0, 0, 0] for f in fields}  # tp, fp, fn
    valid = 0
    correct = []
    parts: dict[str, list[float]] = {"tp": [], "fp": [], "fn": []}
    for f in fields:  # per-field counts: f1.<field> is a decision metric too
        for name in ("tp", "fp", "fn"):
            parts[f"{name}.{f}"] = []
    for p_text, r_text in zip(preds, refs, strict=True):
        p, r = _as_object(p_text), _as_object(r_text) or {}
        valid += p is not None
        p = p or {}
        exact = 1
        before = (tp, fp, fn)
        per_before = {f: tuple(v) for f, v in per.items()}
        for key in set(p) | set(r):
            pv = str(p[key]).strip() if key in p else None
            rv = str(r[key]).strip() if key in r else None
            hit = pv is not None and pv == rv
            tp += hit
            fp += pv is not None and not hit
            fn += rv is not None and not hit
            exact &= int(pv == rv)
            if key in per:
                per[key][0] += hit
                per[key][1] += pv is not None and not hit
                per[key][2] += rv is not None and not hit
        correct.append(exact)
        for name, now, then in zip(("tp", "fp", "fn"), (tp, fp, fn), before, strict=True):
            parts[name].append(now - then)
        for f in fields:
            for k, name in enumerate(("tp", "fp", "fn")):
                parts[f"{name}.{f}"].append(per[f][k] - per_before[f][k])
    prec, rec = precision(tp, fp, tp + fn), safe_div(tp, tp + fn)
    out: dict[str, float | None] = {
        "json_valid": safe_div(valid, len(correct)), "field_precision": prec,
        "field_recall": rec, "field_f1": f1(prec, rec),
        "exact_match": safe_div(sum(correct), len(correct)),
    }
    for f, (t, fpos, fneg) in per.items():
        out[f"f1.{f}"] = f1(precision(t, fpos, t + fneg), safe_div(t, t + fneg))
    return Scored(clean(out), correct, parts)


@register
class JsonFieldsKind(JsonAnswerKind):
    """Structured extraction into a JSON object with declared fields."""

    name = "json_fields"
    metrics = (MetricDef("json_valid", True, UNIT_RANGE),
               MetricDef("field_precision", True, UNIT_RANGE),
               MetricDef("field_recall", True, UNIT_RANGE), MetricDef("field_f1", True, UNIT_RANGE),
               MetricDef("exact_match", True, UNIT_RANGE), ANSWER_PARSE_RATE)
    field_metrics = (MetricDef("f1", True, UNIT_RANGE),)
    primary = "field_f1"
    decision = ("exact_match",)
    decision_fields = ("f1",)
    binary_primary = False

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        return score_json_fields(preds, refs, unit["fields"])

    def primary_from_parts(self, sums: Mapping[str, float], n: int) -> float:
        return f1_from_counts(sums)

    def metric_parts(self, metric: str) -> tuple[str, ...] | None:
        if metric == "exact_match":
            return ("correct",)
        suffix = metric[len("f1"):] if metric.startswith("f1.") else ""  # "" or ".<field>"
        return ("tp" + suffix, "fp" + suffix, "fn" + suffix)

    def metric_from_sums(self, metric: str, sums: Mapping[str, float], n: int) -> float:
        if metric == "exact_match":
            return sums["correct"] / n if n else 0.0
        if metric == "field_f1" or metric.startswith("f1."):
            return f1_from_counts({k.partition(".")[0]: v for k, v in sums.items()})
        return super().metric_from_sums(metric, sums, n)

    def metric_fields(self, unit: Mapping[str, Any]) -> Sequence[str]:
        return list(unit["fields"])

    def teacher_instruction(self, unit: Mapping[str, Any]) -> str:
        return ("a JSON object with these keys, each value a string, a key left out when the "
                "text does not give it: " + ", ".join(unit["fields"]))

    def answer_value_schema(self, unit: Mapping[str, Any]) -> dict[str, Any]:
        """An object with every declared field, each a string or null (null: the text does not
        give it). Strict structured outputs cannot leave a key out, so "absent" is null, and
        :meth:`parse_teacher_final` drops null fields."""
        fields = list(unit["fields"])
        return {"type": "object",
                "properties": {f: {"type": ["string", "null"]} for f in fields},
                "required": fields, "additionalProperties": False,
                "description": self.teacher_instruction(unit)}

    def parse_teacher_final(self, value: Any, unit: Mapping[str, Any], *, plain: bool = False
                            ) -> str | None:
        """The answer object compacted, without its null fields (a field the text does not
        give, as a schema-decoded answer writes it); None when it is not an object."""
        if isinstance(value, str):
            ok, decoded = decode_json_strictly(value.strip())
            value = decoded if ok else value
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        return super().parse_teacher_final(value, unit, plain=plain)

    def vocabulary_problem(self, unit: Mapping[str, Any], value: Any) -> str | None:
        extra = sorted(set(value) - set(unit["fields"]))
        return f"fields {extra} are not declared" if extra else None

    def shape_problem(self, text: str) -> str | None:
        ok, value = decode_json_strictly(text)
        if not ok:
            return "is not valid JSON"
        return None if isinstance(value, dict) else "must be a JSON object"

    def define_options(self) -> type:
        from typing import Literal

        from pydantic import Field

        from harness.units.options import UnitOptions

        class JsonFieldsUnit(UnitOptions):
            """Structured extraction into a JSON object with declared fields."""

            kind: Literal["json_fields"]
            fields: list[str] = Field(min_length=1, description="The fields to extract.")

        return JsonFieldsUnit
