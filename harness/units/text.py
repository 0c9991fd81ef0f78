"""``text``: free text, generated greedily and parsed after the marker.

Scored by exact match (whitespace-normalised) and ROUGE-L F1 over whitespace tokens (primary,
recomputed from per-item values). Any final is valid.
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
    safe_div,
)
from harness.units.registry import register


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
        rouge.append(f1(safe_div(lcs, len(pt)), safe_div(lcs, len(rt))) or 0.0)
    n = len(correct)
    return Scored(clean({"exact_match": safe_div(sum(correct), n),
                         "rouge_l": safe_div(sum(rouge), n)}), correct,
                  {"value": [float(x) for x in rouge]})


@register
class TextKind(UnitKind):
    """Free text, scored by exact match and ROUGE-L."""

    name = "text"
    metrics = (MetricDef("exact_match", True, UNIT_RANGE), MetricDef("rouge_l", True, UNIT_RANGE),
               ANSWER_PARSE_RATE)
    primary = "rouge_l"
    decision = ("exact_match",)
    binary_primary = False
    reference_judged = False  # exact match would call most good free-text answers wrong

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        return score_text(preds, refs)

    def primary_from_parts(self, sums: Mapping[str, float], n: int) -> float:
        return sums["value"] / n if n else 0.0

    def metric_parts(self, metric: str) -> tuple[str, ...] | None:
        return ("correct",) if metric == "exact_match" else ("value",)

    def metric_from_sums(self, metric: str, sums: Mapping[str, float], n: int) -> float:
        if metric == "exact_match":
            return sums["correct"] / n if n else 0.0
        return super().metric_from_sums(metric, sums, n)

    def define_options(self) -> type:
        from typing import Literal

        from harness.units.options import UnitOptions

        class TextUnit(UnitOptions):
            """Free text, scored by exact match and ROUGE-L."""

            kind: Literal["text"]

        return TextUnit
