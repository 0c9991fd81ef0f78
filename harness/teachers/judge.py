"""Judging the candidates of a record: an LLM judge with a rubric, and a reference judge.

**LLM judge.** A Jinja2 rubric (rendered in the bounded sandbox of :mod:`harness.compose.sandbox`)
shows the prompt and the answered candidates under the letters A, B, ... and asks for one JSON
object ``{"scores": {"A": 4, ...}, "winner": "A", "reason_tags": [...]}``. The candidates' order
is shuffled per record with a seeded RNG (``seed`` and the record id, so a rerun asks the same
question and hits the cache) and recorded in the verdict as ``order`` (teacher names, A first),
so position bias can be measured afterwards. Scores off the scale are dropped, never clipped.

**Reference judge.** Where a record has a gold ``reference`` and the unit kind can check answers
(``reference_judged``), every answer the kind's scorer calls wrong moves to the failure pool with
the reference as its correction. Without an LLM judge it also gives the verdict: the top of the
scale for a right answer, the bottom for a wrong one.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError

import harness.units as unit_kinds
from harness.compose.sandbox import BoundedSandbox, budget
from harness.errors import InputError
from harness.teachers.base import ChatRequest, Completion, Teacher
from harness.teachers.parse import Outcome, first_json_object

#: The rubric used when the YAML gives none. Variables: prompt, unit, kind, reference (or
#: None), candidates (each: label, final, rationale, limits), low, high.
DEFAULT_RUBRIC = """\
You are grading answers to a request. Unit: {{ unit }} ({{ kind }}).
Request:
{{ prompt }}
{% if reference is not none %}Reference answer: {{ reference }}
{% endif %}
Answers:
{% for c in candidates %}[{{ c.label }}] {{ c.final }}
{%- if c.rationale %} (reason: {{ c.rationale }}){% endif %}
{% endfor %}
Score every answer from {{ low }} (wrong or useless) to {{ high }} (correct and well supported).
Reply with one JSON object and nothing else:
{"scores": {"A": <score>, ...}, "winner": "<best letter>", "reason_tags": ["<short reason>"]}
"""

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_EXAMPLE = "\x00example"  #: the record id of :meth:`LLMJudge.check`'s trial render
_MAX_TAGS, _TAG_CHARS = 8, 60


def compile_rubric(source: str, where: str = "judge.rubric") -> Any:
    """The rubric as a bounded-sandbox Jinja2 template.

    Raises:
        InputError: the template does not parse (located at ``where``).
    """
    env = BoundedSandbox(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise InputError(f"{where}: the rubric template does not parse: {exc}") from None


@dataclass(frozen=True)
class JudgeItem:
    """One record to judge: its id, unit options, prompt, reference and answered candidates."""

    record_id: str
    unit_name: str
    unit: Mapping[str, Any]
    prompt: str
    reference: str | None
    candidates: Sequence[Mapping[str, Any]]


class LLMJudge:
    """A judge model behind the :class:`~harness.teachers.base.Teacher` interface.

    Args:
        name: the judge id written in each verdict.
        teacher: the model that judges (usually a cached teacher).
        scale: the lowest and highest score (``data.judge_scale``).
        seed: seeds each record's candidate order.
        rubric: a Jinja2 template (:data:`DEFAULT_RUBRIC` when None).
        max_tokens: the judge's completion budget.
        when: ``always``, or ``disagreement`` (the generate stage skips records whose
            teachers agree; see :func:`agreement`).
    """

    def __init__(self, name: str, teacher: Teacher, scale: tuple[float, float], seed: int,
                 rubric: str | None = None, max_tokens: int = 96, when: str = "always",
                 where: str = "judge.rubric") -> None:
        self.name, self.teacher, self.scale, self.seed = name, teacher, scale, seed
        self.when = when  # "always" or "disagreement" (see agreement())
        self.where = where  # the rubric's place in the YAML, for error messages
        self.template = compile_rubric(rubric if rubric is not None else DEFAULT_RUBRIC, where)
        self.max_tokens = max_tokens

    def check(self, teachers: int = 2) -> None:
        """Render the rubric for an example record with ``teachers`` answers, with and
        without a reference, before any call: a rubric that names a variable it is not given
        would otherwise fail after every teacher was paid.

        Raises:
            InputError: the rubric cannot be rendered (located at ``where``).
        """
        names = [f"t{k}" for k in range(max(1, min(teachers, len(_LETTERS))))]
        cands = [{"teacher": t, "final": "an answer", "rationale": "a reason", "limits": "a limit"}
                 for t in names]
        for ref in ("the reference", None):
            self.request(JudgeItem(_EXAMPLE, "unit", {"kind": "text"}, "an example request",
                                   ref, cands), names)

    def order(self, record_id: str, teachers: Sequence[str]) -> list[str]:
        """The teachers in the order the judge sees them (seeded per record, stable across
        runs: :class:`random.Random` hashes a string seed with SHA-512)."""
        out = list(teachers)
        random.Random(f"{self.seed}:{record_id}").shuffle(out)
        return out

    def request(self, item: JudgeItem, order: Sequence[str]) -> ChatRequest:
        """The judge's chat request for one record, candidates in ``order``."""
        by_teacher = {c["teacher"]: c for c in item.candidates}
        shown = [{"label": _LETTERS[k], "final": by_teacher[t]["final"],
                  "rationale": by_teacher[t].get("rationale"),
                  "limits": by_teacher[t].get("limits")} for k, t in enumerate(order)]
        low, high = self.scale
        size = len(item.prompt) + sum(len(str(c)) for c in shown)
        try:
            with budget(size):
                text = self.template.render(prompt=item.prompt, unit=item.unit_name,
                                            kind=item.unit["kind"], reference=item.reference,
                                            candidates=shown, low=_num(low), high=_num(high))
        except Exception as exc:  # noqa: BLE001 - the rubric is user code: {{ 1/0 }}, {{ x + 1 }}
            # the teachers' answers are in the call cache: a fixed rubric pays only the judge
            what = ("an example record, before any call" if item.record_id == _EXAMPLE
                    else f"record {item.record_id!r}")
            raise InputError(f"{self.where}: the rubric cannot be rendered for {what} "
                             f"({type(exc).__name__}: {exc})") from None
        return ChatRequest(messages=(("user", text),), max_tokens=self.max_tokens)

    def verdict(self, completion: Completion, order: Sequence[str]) -> dict[str, Any]:
        """The ``judge`` object of a record from the judge's completion (see module docstring).

        An error or an unreadable reply gives no scores and a reason tag saying why.
        """
        out: dict[str, Any] = {"judge": self.name, "winner": None, "scores": {},
                               "reason_tags": [], "order": list(order)}
        if completion.error is not None or completion.text is None:
            out["reason_tags"] = [f"judge_error:{completion.error or 'error'}"]
            return out
        obj = first_json_object(completion.text)
        if obj is None or not isinstance(obj.get("scores"), dict):
            out["reason_tags"] = ["judge_unparseable"]
            return out
        by_letter = {_LETTERS[k]: t for k, t in enumerate(order)}
        low, high = self.scale
        for letter, score in obj["scores"].items():
            teacher = by_letter.get(str(letter).strip().strip("[]").upper())
            if (teacher is not None and isinstance(score, int | float)
                    and not isinstance(score, bool) and low <= score <= high):
                out["scores"][teacher] = float(score)
        winner = by_letter.get(str(obj.get("winner", "")).strip().strip("[]").upper())
        if winner is None and out["scores"]:
            best = max(out["scores"].values())
            top = [t for t in order if out["scores"].get(t) == best]
            winner = top[0] if len(top) == 1 else None
        out["winner"] = winner
        tags = obj.get("reason_tags")
        if isinstance(tags, list):
            out["reason_tags"] = [str(t)[:_TAG_CHARS] for t in tags
                                  if isinstance(t, str) and t.strip()][:_MAX_TAGS]
        return out

    def judge_all(self, items: Sequence[JudgeItem]) -> list[dict[str, Any] | None]:
        """A verdict per item (None for an item without answered candidates: nothing to
        judge, no call), all requests sent in one :meth:`Teacher.complete_many`."""
        orders = [self.order(it.record_id, [c["teacher"] for c in it.candidates])
                  for it in items]
        todo = [k for k, it in enumerate(items) if it.candidates]
        requests = [self.request(items[k], orders[k]) for k in todo]
        done: dict[int, Completion] = {}
        self.teacher.complete_many(requests, lambda i, c: done.__setitem__(i, c))
        out: list[dict[str, Any] | None] = [None] * len(items)
        for j, k in enumerate(todo):
            out[k] = self.verdict(done[j], orders[k])
        return out


def agreement(outcomes: Mapping[str, Outcome], unit: Mapping[str, Any]) -> bool:
    """Whether the teachers agree on a record (``judge.when: disagreement`` skips the LLM
    judge there): every candidate is parseable (no failed call, no unparseable answer) and
    their finals are the same answer (the unit kind's :meth:`decision_key`)."""
    if not outcomes or any(not o.answered for o in outcomes.values()):
        return False
    kind = unit_kinds.get(unit["kind"])
    return len({kind.decision_key(unit, o.candidate["final"]) for o in outcomes.values()}) == 1


#: What a verdict of a record the LLM judge skipped says (``skipped``) and its reason tag.
SKIPPED_AGREE = "teachers agree (judge.when: disagreement)"


def agreement_verdict(outcomes: Mapping[str, Outcome]) -> dict[str, Any]:
    """The verdict of a record whose teachers agree and which has no reference: no scores, the
    winner is the candidate with the highest stated confidence (ties: the first teacher)."""
    winner = sorted(outcomes, key=lambda t: -(outcomes[t].candidate.get("confidence") or 0.0))[0]
    return {"judge": "agreement", "winner": winner, "scores": {},
            "reason_tags": ["teachers agree"], "skipped": SKIPPED_AGREE}


def _num(x: float) -> int | float:
    """A scale bound as the judge should read it (``5``, not ``5.0``)."""
    return int(x) if float(x).is_integer() else x


def apply_reference(outcomes: Mapping[str, Outcome], unit: Mapping[str, Any],
                    reference: str | None) -> dict[str, bool] | None:
    """Route answers the unit kind scores wrong against ``reference`` to the failure pool.

    Returns:
        teacher -> whether its answer is right, for answered candidates; None when the record
        has no reference or the kind is not checked against one (nothing changed).
    """
    kind = unit_kinds.get(unit["kind"])
    if reference is None or not kind.reference_judged:
        return None
    right: dict[str, bool] = {}
    for teacher, out in outcomes.items():
        if not out.answered:
            continue
        final = out.candidate["final"]
        ok = bool(kind.score(unit, [final], [reference]).correct[0])
        right[teacher] = ok
        if not ok:
            out.pool = "failure"
            out.failure = {"kind": "wrong_answer", "correction": reference,
                           "note": f"answered {final!r}; the reference is {reference!r}"}
    return right


def reference_verdict(right: Mapping[str, bool], outcomes: Mapping[str, Outcome],
                      scale: tuple[float, float]) -> dict[str, Any]:
    """The verdict of the reference judge alone: right answers score the top of the scale,
    wrong or missing ones the bottom; the winner is the right answer with the highest stated
    confidence (ties: the first teacher), or None when no answer is right."""
    low, high = scale
    scores = {t: float(high if right.get(t) else low) for t in outcomes}
    winners = sorted((t for t in outcomes if right.get(t)),
                     key=lambda t: -(outcomes[t].candidate.get("confidence") or 0.0))
    tags = ["matches the reference"] if winners else ["no answer matches the reference"]
    return {"judge": "reference", "winner": winners[0] if winners else None, "scores": scores,
            "reason_tags": tags}
