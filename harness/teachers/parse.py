"""A teacher's completion -> one candidate of the data contract (SAMPLE_REPOSITORY.md).

Teachers are asked for one JSON object (:mod:`harness.teachers.prompts`). The first JSON object
in the text is read (inside a code fence or not); without one, the answer is salvaged from plain
text (a truncated ``"answer": "..."``, an ``Answer:`` line, or the first line). Either way the
unit kind decides what the answer means (``parse_teacher_final``). A completion without a
parseable answer still becomes a candidate: ``final`` is :data:`~harness.units.base.NO_ANSWER`,
the pool is ``failure`` and the failure says why (``unparseable``), so one bad answer costs one
candidate, not the run. A failed call is not an answer at all and makes no candidate (the
generate stage leaves its prompt unanswered).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import harness.units as unit_kinds
from harness.answers import find_json_object, parse_answer
from harness.teachers.base import AnswerSource, Completion
from harness.units.base import NO_ANSWER

_ANSWER_VALUE = re.compile(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)
#: Characters of an unparseable completion kept in the failure note.
NOTE_CHARS = 200


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (:func:`find_json_object`'s value)."""
    found = find_json_object(text)
    return found.value if found is not None else None


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


#: Relative difference under which two label probabilities count as a tie.
TIE_REL_TOL = 1e-6


def top_labels(label_probs: Mapping[str, float]) -> list[str]:
    """The labels sharing the highest probability (more than one: a tie)."""
    top = max(label_probs.values(), default=0.0)
    return [k for k, p in label_probs.items() if math.isclose(p, top, rel_tol=TIE_REL_TOL)]


def scored_answer(label_probs: Mapping[str, float] | None, written: str | None = None
                  ) -> tuple[str, float] | None:
    """The label with the highest probability and that probability, or None without
    probabilities.

    A tie is never broken by the labels' order: it goes to ``written`` (the label the teacher's
    text gave) when that is among the tied labels, else there is no scored answer (None).
    """
    if not label_probs:
        return None
    tied = top_labels(label_probs)
    if len(tied) > 1 and written not in tied:
        return None
    best = tied[0] if len(tied) == 1 else str(written)
    return best, min(1.0, max(0.0, float(label_probs[best])))


def _with_reasoning(cand: dict[str, Any], completion: Completion, reasoning_as: str | None
                    ) -> dict[str, Any]:
    """``cand`` with the completion's reasoning trace as its rationale, where the teacher says
    so (``reasoning_as: rationale``) and the answer gave none. Only the rationale: a
    trajectory must be tool steps, which a free-text trace is not."""
    trace = completion.extra.get("reasoning")
    if (reasoning_as == "rationale" and cand["rationale"] is None and isinstance(trace, str)
            and trace.strip()):
        cand["rationale"] = trace.strip()
    return cand


def candidate_from(teacher: str, completion: Completion, unit: Mapping[str, Any],
                   fields: Sequence[str], reference: str | None,
                   answer_from: AnswerSource = "generation",
                   reasoning_as: str | None = None, soft_top_k: int | None = None) -> Outcome:
    """The candidate a completion becomes (see the module docstring).

    With ``reasoning_as="rationale"`` (the teacher's ``reasoning_as``), an answered
    candidate whose JSON gave no rationale takes the reasoning trace the endpoint returned
    (``completion.extra["reasoning"]``) as its rationale.

    With ``answer_from="label_scores"`` and label probabilities measured, the answer is the most
    probable label and its probability the confidence (``label_probabilities`` or
    ``top_logprobs``); generated text, if any, only gives the free-text fields. Otherwise the
    answer is parsed from the text and the confidence is, for label units, the provider's
    probability of the parsed label when it measured one, else the self-reported number when
    the YAML asked for it (``self_reported``), else null. ``answer_source`` records which way
    was taken (``label_scores`` falls back to ``generation`` when an endpoint returned no
    probabilities, or when labels tie for the top and the text names none of them: a tie is
    never decided by the labels' order). A label without a measured probability (an endpoint
    measures only what its top log-probabilities show) gets the self-reported figure or none,
    never 0. An unparseable answer keeps the reference (when known) as its correction.

    With ``soft_top_k`` set (``generate.soft_labels``), the candidate gets an
    ``answer_logprobs`` key: the tokens that wrote the answer's value with their top
    ``soft_top_k`` alternatives (:func:`harness.teachers.soft_labels.answer_logprobs`; for a
    ``label_scores`` answer of the local ``hf`` teacher, the winning label's constrained tokens:
    :func:`~harness.teachers.soft_labels.bare_answer_logprobs`), or null where the teacher
    returned none, the answer is plain-text salvage or is unparseable. Without it the key is
    absent, as before.

    Raises:
        ValueError: ``completion`` is a failed call (``error`` set): not an answer.
    """
    usage = {"prompt_tokens": int(completion.prompt_tokens),
             "completion_tokens": int(completion.completion_tokens)}
    cand: dict[str, Any] = {"teacher": teacher, "final": NO_ANSWER, "rationale": None,
                            "limits": None, "confidence": None, "confidence_source": None,
                            "trajectory": None, "usage": usage, "answer_source": "generation"}
    if soft_top_k is not None:  # only when asked: files without soft labels stay byte-identical
        cand["answer_logprobs"] = None
    if completion.error is not None or completion.text is None:
        # a failed call is no answer (its prompt stays unanswered, see
        # harness.teachers.unanswered): never a candidate, a failure record or a correction
        raise ValueError(f"teacher {teacher!r}: a failed call ({completion.error or 'no text'}) "
                         "is not an answer and makes no candidate")
    tie = ""
    if answer_from == "label_scores" and completion.label_probs:
        parsed = parse_text(completion.text, unit, fields) if completion.text.strip() else None
        scored = scored_answer(completion.label_probs, parsed.final if parsed else None)
        if scored is not None:
            cand.update(final=scored[0], confidence=scored[1], answer_source="label_scores",
                        confidence_source=completion.confidence_source or "label_probabilities")
            if parsed is not None:
                cand.update(rationale=parsed.rationale, limits=parsed.limits,
                            trajectory=parsed.trajectory)
            if soft_top_k is not None:
                from harness.teachers.soft_labels import SCORED_KEY, bare_answer_logprobs

                # the scored label's tokens with the constrained distribution (local hf
                # teacher); the label must be the one they spell, else none (an endpoint's
                # scores have no tokens)
                soft = bare_answer_logprobs(completion.extra.get(SCORED_KEY), soft_top_k)
                cand["answer_logprobs"] = (soft if soft is not None and soft["text"] == scored[0]
                                           else None)
            return Outcome(_with_reasoning(cand, completion, reasoning_as))
        # tied label scores: the generated text decides, as in generation mode
        tie = "the label scores tie (" + ", ".join(top_labels(completion.label_probs)) + "); "
    parsed = parse_text(completion.text, unit, fields)
    if parsed.final is None:
        note = tie + "no parseable answer in: " + " ".join(completion.text.split())[:NOTE_CHARS]
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
    if soft_top_k is not None:
        # imported here: soft_labels reads answers with this module's JSON finder
        from harness.teachers.soft_labels import TOKENS_KEY, answer_logprobs

        cand["answer_logprobs"] = answer_logprobs(completion.extra.get(TOKENS_KEY), soft_top_k)
    return Outcome(_with_reasoning(cand, completion, reasoning_as))
