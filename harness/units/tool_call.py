"""``tool_call``: whether to call a tool, which one, and with what arguments.

The answer is JSON: ``null`` (no call) or ``{"name": str, "arguments": object}``, generated
greedily and parsed after the marker. Scored by call/no-call accuracy, tool-name and argument
accuracy on the items that need a call, and exact match (primary). Finals of another shape are
errors, as are references naming a tool the unit does not declare.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import did_you_mean
from harness.units.base import JsonAnswerKind
from harness.units.common import (
    ANSWER_PARSE_RATE,
    UNIT_RANGE,
    MetricDef,
    Scored,
    clean,
    decode_json_strictly,
    safe_div,
)
from harness.units.registry import register


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
    decided_per_item: list[float] = []  # part of call_accuracy, a decision metric
    for p_text, r_text in zip(preds, refs, strict=True):
        p, r = _call(p_text), _call(r_text)
        assert r is not None, "references are validated"
        decided = p is not None and p[0] == r[0]
        call_ok += decided
        decided_per_item.append(float(decided))
        if r[0]:
            needs += 1
            name_ok += bool(p and p[0] and p[1] == r[1])
            args_ok += bool(p and p[0] and p[1] == r[1] and p[2] == r[2])
        correct.append(int(p is not None and p == r))
    n = len(correct)
    return Scored(clean({
        "call_accuracy": safe_div(call_ok, n), "tool_name_accuracy": safe_div(name_ok, needs),
        "argument_exact_match": safe_div(args_ok, needs),
        "exact_match": safe_div(sum(correct), n),
    }), correct, {"call_ok": decided_per_item})


@register
class ToolCallKind(JsonAnswerKind):
    """Whether to call a tool, which one, and with what arguments."""

    name = "tool_call"
    metrics = (MetricDef("call_accuracy", True, UNIT_RANGE),
               MetricDef("tool_name_accuracy", True, UNIT_RANGE),
               MetricDef("argument_exact_match", True, UNIT_RANGE),
               MetricDef("exact_match", True, UNIT_RANGE), ANSWER_PARSE_RATE)
    primary = "exact_match"
    decision = ("call_accuracy",)

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        return score_tool_call(preds, refs)

    def metric_parts(self, metric: str) -> tuple[str, ...] | None:
        return ("call_ok",) if metric == "call_accuracy" else ("correct",)

    def metric_from_sums(self, metric: str, sums: Mapping[str, float], n: int) -> float:
        if metric == "call_accuracy":
            return sums["call_ok"] / n if n else 0.0
        return super().metric_from_sums(metric, sums, n)

    def teacher_instruction(self, unit: Mapping[str, Any]) -> str:
        return ('null when no tool is needed, else {"name": <one of ' + ", ".join(unit["tools"])
                + '>, "arguments": {<argument>: <value>}}')

    def answer_value_schema(self, unit: Mapping[str, Any]) -> dict[str, Any]:
        """null, or a call of one of the declared tools. Its arguments are a free-form object
        (the unit declares no argument schemas), which strict structured outputs cannot
        express: the schema is sent as a non-strict guide."""
        call = {"type": "object",
                "properties": {"name": {"type": "string", "enum": list(unit["tools"])},
                               "arguments": {"type": "object"}},
                "required": ["name", "arguments"], "additionalProperties": False}
        return {"anyOf": [{"type": "null"}, call], "description": self.teacher_instruction(unit)}

    def parse_teacher_final(self, value: Any, unit: Mapping[str, Any], *, plain: bool = False
                            ) -> str | None:
        """``null`` (also the words "null"/"none" in plain text) or a call, compacted."""
        if isinstance(value, str) and value.strip().strip("\"'`.").casefold() in ("null", "none"):
            return "null"
        return super().parse_teacher_final(value, unit, plain=plain)

    def vocabulary_problem(self, unit: Mapping[str, Any], value: Any) -> str | None:
        tools = list(unit["tools"])
        if isinstance(value, dict) and value["name"] not in tools:
            return f"tool {value['name']!r} is not declared{did_you_mean(value['name'], tools)}"
        return None

    def shape_problem(self, text: str) -> str | None:
        ok, value = decode_json_strictly(text)
        if not ok:
            return "is not valid JSON"
        if value is None:
            return None
        if (not isinstance(value, dict) or not isinstance(value.get("name"), str)
                or not isinstance(value.get("arguments", {}), dict)):
            return 'must be null or {"name": str, "arguments": object}'
        return None

    def define_options(self) -> type:
        from typing import Literal

        from pydantic import Field

        from harness.units.options import UnitOptions

        class ToolCallUnit(UnitOptions):
            """Whether to call a tool, which one, and with what arguments."""

            kind: Literal["tool_call"]
            tools: list[str] = Field(min_length=1, description="The tools the student may call.")

        return ToolCallUnit
