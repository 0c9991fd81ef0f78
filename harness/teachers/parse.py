"""A teacher's completion -> one candidate of the data contract (SAMPLE_REPOSITORY.md).

Teachers are asked for one JSON object (:mod:`harness.teachers.prompts`). The first JSON object
in the text is read (inside a code fence or not); without one, the answer is salvaged from plain
text (a truncated ``"answer": "..."``, an ``Answer:`` line, or the first line). Either way the
unit kind decides what the answer means (``parse_teacher_final``). A completion without a
parseable answer, and a failed call, still become a candidate: ``final`` is
:data:`~harness.units.base.NO_ANSWER`, the pool is ``failure`` and the failure says why
(``unparseable`` or the call's error kind), so one bad answer costs one candidate, not the run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import harness.units as unit_kinds
from harness.answers import parse_answer
from harness.teachers.base import AnswerSource, Completion
from harness.units.base import NO_ANSWER

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_ANSWER_VALUE = re.compile(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)
#: Braces tried per text when looking for a JSON object (bounds the work on long garbage).
_MAX_STARTS = 64
#: Characters of an unparseable completion kept in the failure note.
NOTE_CHARS = 200


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``: fenced blocks first, then the text itself."""
    decoder = json.JSONDecoder()
    for block in [*_FENCE.findall(text), text]:
        for k, m in enumerate(re.finditer(r"\{", block)):
            if k >= _MAX_STARTS:
                break
            try:
                value, _ = decoder.raw_decode(block, m.start())
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                return value
    return None


def plain_answer(text: str) -> str:
    """The answer text of a completion without a JSON object: a (possibly truncated)
    ``"answer": "..."`` value, else the text after ``Answer:``, else the first non-empty line."""
    m = _ANSWER_VALUE.search(text)
    if m:
        try:
            return str(json.loads(f'"{m.group(1)}"'))
        except ValueError:
            return m.group(1)
    marked = parse_answer(text, "Answer:")
    if marked:
        return marked
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _text_field(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _confidence(value: Any) -> float | None:
    """A self-reported confidence in [0, 1]; percentages (1 < x <= 100) are divided by 100."""
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if 1 < value <= 100:
        value = value / 100
    return float(value) if 0 <= value <= 1 else None


def _trajectory(value: Any) -> list[dict[str, Any]] | None:
    """Tool steps of the contract's shape; anything else (or an empty list) is dropped."""
    if not isinstance(value, list) or not value:
        return None
    steps = []
    for step in value:
        if not (isinstance(step, dict) and isinstance(step.get("tool"), str)
                and isinstance(step.get("arguments", {}), dict)):
            return None
        obs = step.get("observation")
        steps.append({"tool": step["tool"], "arguments": step.get("arguments", {}),
                      "observation": obs if isinstance(obs, str) else None})
    return steps


@dataclass(frozen=True)
class Parsed:
    """What a completion's text says. ``final`` is None when no answer could be parsed."""

    final: str | None
    rationale: str | None = None
    limits: str | None = None
    confidence: float | None = None
    trajectory: list[dict[str, Any]] | None = None


def parse_text(text: str, unit: Mapping[str, Any], fields: Sequence[str]) -> Parsed:
    """Parse a completion's text for ``unit`` (its options), keeping only the ``fields`` asked."""
    kind = unit_kinds.get(unit["kind"])
    obj = first_json_object(text)
    if obj is None or "answer" not in obj:
        return Parsed(final=kind.parse_teacher_final(plain_answer(text), unit, plain=True))
    return Parsed(
        final=kind.parse_teacher_final(obj["answer"], unit),
        rationale=_text_field(obj, "rationale") if "rationale" in fields else None,
        limits=_text_field(obj, "limits") if "limits" in fields else None,
        confidence=_confidence(obj.get("confidence")) if "confidence" in fields else None,
        trajectory=_trajectory(obj.get("trajectory")) if "trajectory" in fields else None,
    )


@dataclass
class Outcome:
    """One teacher's candidate for a record, its pool and (in the failure pool) why."""

    candidate: dict[str, Any]
    pool: str = "train"
    failure: dict[str, Any] | None = None

    @property
    def answered(self) -> bool:
        """Whether the candidate holds a parseable answer."""
        return self.candidate["final"] != NO_ANSWER


def scored_answer(label_probs: Mapping[str, float] | None) -> tuple[str, float] | None:
    """The label with the highest probability and that probability (ties: the first label in
    the unit's order), or None without probabilities."""
    if not label_probs:
        return None
    best = max(label_probs, key=lambda k: label_probs[k])  # max keeps the first of a tie
    return best, min(1.0, max(0.0, float(label_probs[best])))


def candidate_from(teacher: str, completion: Completion, unit: Mapping[str, Any],
                   fields: Sequence[str], reference: str | None,
                   answer_from: AnswerSource = "generation") -> Outcome:
    """The candidate a completion becomes (see the module docstring).

    With ``answer_from="label_scores"`` and label probabilities measured, the answer is the most
    probable label and its probability the confidence (``label_probabilities`` or
    ``top_logprobs``); generated text, if any, only gives the free-text fields. Otherwise the
    answer is parsed from the text and the confidence is, for label units, the provider's
    probability of the parsed label when it measured one, else the self-reported number when
    the YAML asked for it (``self_reported``), else null. ``answer_source`` records which way
    was taken (``label_scores`` falls back to ``generation`` when an endpoint returned no
    probabilities). A failed or unparseable answer keeps the reference (when known) as its
    correction.
    """
    usage = {"prompt_tokens": int(completion.prompt_tokens),
             "completion_tokens": int(completion.completion_tokens)}
    cand: dict[str, Any] = {"teacher": teacher, "final": NO_ANSWER, "rationale": None,
                            "limits": None, "confidence": None, "confidence_source": None,
                            "trajectory": None, "usage": usage, "answer_source": "generation"}
    if completion.error is not None or completion.text is None:
        detail = completion.error_detail or "the call failed"
        return Outcome(cand, "failure", {"kind": completion.error or "error",
                                         "correction": reference, "note": detail[:NOTE_CHARS]})
    scored = scored_answer(completion.label_probs) if answer_from == "label_scores" else None
    if scored is not None:
        parsed = parse_text(completion.text, unit, fields) if completion.text.strip() else None
        cand.update(final=scored[0], confidence=scored[1], answer_source="label_scores",
                    confidence_source=completion.confidence_source or "label_probabilities")
        if parsed is not None:
            cand.update(rationale=parsed.rationale, limits=parsed.limits,
                        trajectory=parsed.trajectory)
        return Outcome(cand)
    parsed = parse_text(completion.text, unit, fields)
    if parsed.final is None:
        note = "no parseable answer in: " + " ".join(completion.text.split())[:NOTE_CHARS]
        return Outcome(cand, "failure", {"kind": "unparseable", "correction": reference,
                                         "note": note})
    cand.update(final=parsed.final, rationale=parsed.rationale, limits=parsed.limits,
                trajectory=parsed.trajectory)
    probs = completion.label_probs or {}
    if parsed.final in probs:
        cand["confidence"] = min(1.0, max(0.0, float(probs[parsed.final])))
        cand["confidence_source"] = completion.confidence_source or "label_probabilities"
    elif parsed.confidence is not None:
        cand["confidence"] = parsed.confidence
        cand["confidence_source"] = "self_reported"
    return Outcome(cand)
