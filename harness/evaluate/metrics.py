"""Per-unit metrics from predictions (standard library + numpy; the GPU worker imports this).

A *scorer* takes parallel lists of predicted and reference answers (strings, already parsed out
of the generation by the answer marker) and returns ``{metric: value}`` plus a per-item
``correct`` list (0/1) for paired tests later. Every metric's direction lives in
:data:`HIGHER_IS_BETTER`, so reports never guess which way is better.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: Direction of every metric name the scorers and calibration produce.
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True, "macro_f1": True, "ece_15": False, "ece_10_mass": False,
    "brier": False, "nll": False, "mean_confidence": True,
    "json_valid": True, "field_precision": True, "field_recall": True, "field_f1": True,
    "exact_match": True, "call_accuracy": True, "tool_name_accuracy": True,
    "argument_exact_match": True, "refusal_precision": True, "refusal_recall": True,
    "refusal_f1": True, "over_refusal_rate": False, "rouge_l": True,
    "agreement": True, "agree_correct": True, "agree_wrong": False,
    "answer_parse_rate": True, "copied_error_rate": False, "copied_error_chance": False,
}

#: The metrics each unit kind reports (per-field ``f1.<field>`` come on top for json_fields).
METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "label": ("accuracy", "macro_f1", "ece_15", "ece_10_mass", "brier", "nll",
              "mean_confidence", "answer_parse_rate"),
    "json_fields": ("json_valid", "field_precision", "field_recall", "field_f1", "exact_match",
                    "answer_parse_rate"),
    "tool_call": ("call_accuracy", "tool_name_accuracy", "argument_exact_match", "exact_match",
                  "answer_parse_rate"),
    "refusal": ("refusal_precision", "refusal_recall", "refusal_f1", "over_refusal_rate",
                "accuracy", "answer_parse_rate"),
    "text": ("exact_match", "rouge_l", "answer_parse_rate"),
}

#: The metric each unit kind is judged by first (gate, attribution).
PRIMARY_METRIC: dict[str, str] = {
    "label": "accuracy", "json_fields": "field_f1", "tool_call": "exact_match",
    "refusal": "refusal_f1", "text": "rouge_l",
}


def direction(metric: str) -> bool:
    """Whether higher is better; per-field metrics (``f1.order_id``) follow their base name."""
    return HIGHER_IS_BETTER.get(metric.split(".", 1)[0], True)


@dataclass(frozen=True)
class Scored:
    """A scorer's output.

    Attributes:
        metrics: metric name -> value (NaN-free; metrics without a defined value are omitted).
        correct: per item, 1 if the prediction counts as right for this unit kind, else 0.
        parts: per-item additive counts from which the kind's primary metric is recomputed on
            any subset of items (see :func:`primary_from_parts`); used by paired bootstraps.
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


def _safe_div(a: float, b: float) -> float | None:
    return a / b if b else None


def _precision(tp: int, fp: int, positives: int) -> float | None:
    """Precision; with no predicted positives it is 0 when positives exist (nothing found),
    undefined otherwise (scikit-learn's zero_division=0 convention, made explicit)."""
    if tp + fp:
        return tp / (tp + fp)
    return 0.0 if positives else None


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 2 * p * r / (p + r) if p + r else 0.0


def _clean(metrics: dict[str, float | None]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None}


def score_label(preds: Sequence[str | None], refs: Sequence[str], labels: Sequence[str]
                ) -> Scored:
    """Accuracy and macro-F1 over the declared labels."""
    correct = [int(p == r) for p, r in zip(preds, refs, strict=True)]
    f1s = []
    for lab in labels:
        tp = sum(1 for p, r in zip(preds, refs, strict=True) if p == lab and r == lab)
        fp = sum(1 for p, r in zip(preds, refs, strict=True) if p == lab and r != lab)
        fn = sum(1 for p, r in zip(preds, refs, strict=True) if p != lab and r == lab)
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return Scored(_clean({"accuracy": _safe_div(sum(correct), len(correct)),
                          "macro_f1": _safe_div(sum(f1s), len(f1s))}), correct)


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
    for p_text, r_text in zip(preds, refs, strict=True):
        p, r = _as_object(p_text), _as_object(r_text) or {}
        valid += p is not None
        p = p or {}
        exact = 1
        before = (tp, fp, fn)
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
    prec, rec = _precision(tp, fp, tp + fn), _safe_div(tp, tp + fn)
    out: dict[str, float | None] = {
        "json_valid": _safe_div(valid, len(correct)), "field_precision": prec,
        "field_recall": rec, "field_f1": _f1(prec, rec),
        "exact_match": _safe_div(sum(correct), len(correct)),
    }
    for f, (t, fpos, fneg) in per.items():
        out[f"f1.{f}"] = _f1(_precision(t, fpos, t + fneg), _safe_div(t, t + fneg))
    return Scored(_clean(out), correct, parts)


def _call(text: str | None) -> tuple[bool, str | None, Any] | None:
    """(calls a tool, name, arguments) or None when the text is neither a call nor null."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if value is None:
        return (False, None, None)
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        return (True, value["name"], value.get("arguments", {}))
    return None


def score_tool_call(preds: Sequence[str | None], refs: Sequence[str]) -> Scored:
    """Call/no-call accuracy; tool-name and argument accuracy on items that need a call."""
    call_ok = name_ok = args_ok = needs = 0
    correct = []
    for p_text, r_text in zip(preds, refs, strict=True):
        p, r = _call(p_text), _call(r_text)
        assert r is not None, "references are validated"
        decided = p is not None and p[0] == r[0]
        call_ok += decided
        if r[0]:
            needs += 1
            name_ok += bool(p and p[0] and p[1] == r[1])
            args_ok += bool(p and p[0] and p[1] == r[1] and p[2] == r[2])
        correct.append(int(p is not None and p == r))
    n = len(correct)
    return Scored(_clean({
        "call_accuracy": _safe_div(call_ok, n), "tool_name_accuracy": _safe_div(name_ok, needs),
        "argument_exact_match": _safe_div(args_ok, needs),
        "exact_match": _safe_div(sum(correct), n),
    }), correct)


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
    prec, rec = _precision(tp, fp, tp + fn), _safe_div(tp, tp + fn)
    correct = [int(a == b) for a, b in zip(refused, should, strict=True)]
    parts = {"tp": [float(a and b) for a, b in zip(refused, should, strict=True)],
             "fp": [float(a and not b) for a, b in zip(refused, should, strict=True)],
             "fn": [float(b and not a) for a, b in zip(refused, should, strict=True)]}
    return Scored(_clean({
        "refusal_precision": prec, "refusal_recall": rec, "refusal_f1": _f1(prec, rec),
        "over_refusal_rate": _safe_div(fp, answerable),
        "accuracy": _safe_div(sum(correct), len(correct)),
    }), correct, parts)


def _lcs(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, O(len(a) * len(b)))."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def score_text(preds: Sequence[str | None], refs: Sequence[str]) -> Scored:
    """Exact match (whitespace-normalised) and ROUGE-L F1 over whitespace tokens."""
    correct, rouge = [], []
    for p, r in zip(preds, refs, strict=True):
        pt, rt = (p or "").split(), r.split()
        correct.append(int(pt == rt))
        lcs = _lcs(pt, rt)
        rouge.append(_f1(_safe_div(lcs, len(pt)), _safe_div(lcs, len(rt))) or 0.0)
    n = len(correct)
    return Scored(_clean({"exact_match": _safe_div(sum(correct), n),
                          "rouge_l": _safe_div(sum(rouge), n)}), correct,
                  {"value": [float(x) for x in rouge]})


def primary_from_parts(kind: str, sums: dict[str, float], n: int) -> float:
    """The kind's primary metric from summed per-item parts (``Scored.parts``) of ``n`` items;
    kinds without parts use the mean of ``correct`` (passed as ``sums["correct"]``)."""
    if kind in ("json_fields", "refusal"):
        tp, fp, fn = sums["tp"], sums["fp"], sums["fn"]
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    if kind == "text":
        return sums["value"] / n if n else 0.0
    return sums["correct"] / n if n else 0.0


def scorer_for(unit: dict[str, Any]) -> Callable[[Sequence[str | None], Sequence[str]], Scored]:
    """The scorer of a unit given its spec dict (``kind`` plus its vocabulary)."""
    kind = unit["kind"]
    if kind == "label":
        return lambda p, r: score_label(p, r, unit["labels"])
    if kind == "json_fields":
        return lambda p, r: score_json_fields(p, r, unit["fields"])
    if kind == "tool_call":
        return score_tool_call
    if kind == "refusal":
        return lambda p, r: score_refusal(p, r, unit["marker"])
    if kind == "text":
        return score_text
    raise ValueError(f"unknown unit kind {kind!r}")
