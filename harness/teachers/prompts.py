"""The request a teacher gets for one prompt: the task, and the JSON object to answer with.

The teacher's own style (its system prompt) belongs to the teacher's configuration and is added
by its provider; this module writes the user turn only. What the ``answer`` must hold comes from
the unit kind (:meth:`harness.units.base.UnitKind.teacher_instruction`), so each kind's prompt
and its parser (:mod:`harness.teachers.parse`) live in one place. For a teacher that decodes to a
schema (``structured_output: true``) the request also carries the kind's JSON Schema of that
object (:func:`response_schema`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import harness.units as unit_kinds
from harness.teachers.base import ChatRequest

#: How each requested field is described to the teacher (the JSON key is the field's name).
FIELD_INSTRUCTIONS: dict[str, str] = {
    "rationale": "one or two sentences: the evidence in the request that decides the answer",
    "limits": "one sentence: when this answer would be wrong or need a human",
    "confidence": "a number from 0 to 1: how likely your answer is right",
    "trajectory": 'the tool steps you would take, a list of {"tool": <name>, "arguments": '
                  '{...}, "observation": <what it returned, or null>}',
}


def asked_fields(kind_name: str, fields: Sequence[str]) -> list[str]:
    """The requested fields that apply to a unit kind (a trajectory only for tool calls)."""
    return [f for f in fields if f != "trajectory" or kind_name == "tool_call"]


def answer_instruction(unit: Mapping[str, Any], fields: Sequence[str]) -> str:
    """The instruction block appended to a prompt: the JSON keys and what each must hold.

    Args:
        unit: the unit's options (``kind``, its vocabulary, ...), e.g. ``Unit.model_dump()``.
        fields: the extra fields to ask for (:data:`FIELD_INSTRUCTIONS` keys), already filtered
            by :func:`asked_fields`.
    """
    kind = unit_kinds.get(unit["kind"])
    lines = ["Reply with one JSON object and nothing else, with these keys:",
             f'- "answer": {kind.teacher_instruction(unit)}']
    lines += [f'- "{f}": {FIELD_INSTRUCTIONS[f]}' for f in fields]
    example: dict[str, Any] = {"answer": "..."}
    for f in fields:
        example[f] = 0.8 if f == "confidence" else ([] if f == "trajectory" else "...")
    lines.append("For example: " + json.dumps(example))
    return "\n".join(lines)


#: What a JSON answer starts with before its value, and ends the value with: a scored label is
#: written between them, so its probability is that of the answer the instruction asks for.
ANSWER_PREFIX, ANSWER_SUFFIX = '{"answer": "', '"'
#: The asked fields that only generated text can give (a label score gives the confidence).
TEXT_FIELDS = ("rationale", "limits", "trajectory")


def strict_compatible(schema: Any) -> bool:
    """Whether a JSON Schema fits OpenAI's strict structured outputs: every object lists its
    properties, requires all of them and allows no other
    (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas). A free-form
    object (no ``properties``) does not."""
    if not isinstance(schema, dict):
        return True
    types = schema.get("type")
    if types == "object" or (isinstance(types, list) and "object" in types):
        props = schema.get("properties")
        if (not isinstance(props, dict) or schema.get("additionalProperties") is not False
                or sorted(schema.get("required", [])) != sorted(props)):
            return False
    children = [*(schema.get("properties") or {}).values(), *schema.get("anyOf", []),
                *(schema.get("$defs") or {}).values()]
    if "items" in schema:
        children.append(schema["items"])
    return all(strict_compatible(c) for c in children)


def response_schema(unit: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """The ``json_schema`` of an OpenAI ``response_format`` for one unit's answers:
    ``{"name": "<kind>_answer", "schema": ..., "strict": ...}`` with the unit kind's answer
    schema (:meth:`harness.units.base.UnitKind.answer_schema`); strict where the schema allows
    it (:func:`strict_compatible`), else a non-strict guide.

    Args:
        unit: the unit's options.
        fields: the asked fields, already filtered by :func:`asked_fields`.
    """
    kind = unit_kinds.get(unit["kind"])
    schema = kind.answer_schema(unit, fields)
    return {"name": f"{kind.name}_answer", "schema": schema,
            "strict": strict_compatible(schema)}


def build_request(prompt: str, unit: Mapping[str, Any], fields: Sequence[str], *,
                  max_tokens: int, temperature: float | None = 0.0, seed: int | None = None,
                  answer_from: str = "generation", structured_output: bool = False,
                  soft_top_k: int | None = None) -> ChatRequest:
    """The chat request asking one teacher to answer one prompt of ``unit``.

    Label units also pass their labels as ``choices``, so a provider that can measure them
    returns the probability of each label (the candidate's confidence). With
    ``answer_from="label_scores"`` a local teacher scores each label as the bare answer to the
    prompt alone (``score_messages``: without the JSON instruction, whose listed labels a small
    model copies; the rule the student's own evaluation uses), an endpoint reads the label's
    log-probabilities at the JSON answer's value (after :data:`ANSWER_PREFIX`), and no text is
    generated unless a free-text field (:data:`TEXT_FIELDS`) is asked for.

    Args:
        prompt: the record's prompt, exactly as the student will see it.
        unit: the unit's options (a ``Unit.model_dump(mode="json")``).
        fields: the extra fields the YAML asks for (``generate.fields``).
        max_tokens: the completion budget (the teacher's own setting).
        temperature: sampling temperature (0: greedy; None: the endpoint's default, none
            sent).
        seed: the sampling seed, when sampling.
        answer_from: the teacher's ``answer_from`` (``generation`` or ``label_scores``).
        structured_output: the teacher decodes to a schema (``structured_output: true``): the
            request carries the unit's answer schema (:func:`response_schema`), which then
            also enters the call's cache key.
        soft_top_k: ``generate.soft_labels.top_k`` where asked: the provider also returns
            every generated token's log-probabilities (it enters the call's cache key).
    """
    kind = unit_kinds.get(unit["kind"])
    asked = asked_fields(kind.name, fields)
    text = f"{prompt}\n\n{answer_instruction(unit, asked)}"
    choices = kind.choices(unit)
    scored = answer_from == "label_scores" and bool(choices)
    return ChatRequest(messages=(("user", text),), max_tokens=max_tokens,
                       temperature=temperature, seed=seed,
                       choices=tuple(choices) if choices else None,
                       answer_prefix=ANSWER_PREFIX if scored else "",
                       answer_suffix=ANSWER_SUFFIX if scored else "",
                       generate_text=not scored or any(f in TEXT_FIELDS for f in asked),
                       score_messages=(("user", prompt),) if scored else None,
                       # not key-sorted: the endpoint writes the properties in this order
                       answer_schema=(json.dumps(response_schema(unit, asked),
                                                 separators=(",", ":"), ensure_ascii=False)
                                      if structured_output else None),
                       soft_top_k=soft_top_k)
