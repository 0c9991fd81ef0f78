"""The LLM judge (seeded, recorded candidate order; letters back to teachers; scores on the
scale only) and the reference judge (wrong answers to the failure pool with the correction)."""

from __future__ import annotations

import json

import pytest

from harness.errors import InputError
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.judge import (
    JudgeItem,
    LLMJudge,
    apply_reference,
    reference_verdict,
)
from harness.teachers.parse import candidate_from
from tests.helpers.scripted_teacher import ScriptedTeacher, user_text

LABEL = {"kind": "label", "labels": ["card_arrival", "exchange_rate"], "answer_marker": "Answer:"}
TEXT = {"kind": "text", "answer_marker": "Answer:"}
TEACHERS = ["t1", "t2", "t3"]


def _item(rid: str, finals: dict[str, str]) -> JudgeItem:
    return JudgeItem(rid, "intent", LABEL, "Where is my card?", "card_arrival",
                     [{"teacher": t, "final": f, "rationale": f"r-{t}"} for t, f in finals.items()])


def _judge(script: object = None, **kw: object) -> LLMJudge:
    teacher = ScriptedTeacher("j", script or (lambda r: '{"scores": {}}'))  # type: ignore[arg-type]
    return LLMJudge("judge_v1", teacher, (1.0, 5.0), seed=7, **kw)  # type: ignore[arg-type]


def test_order_is_seeded_per_record_stable_and_varies() -> None:
    j = _judge()
    assert j.order("r1", TEACHERS) == j.order("r1", TEACHERS)
    orders = {tuple(j.order(f"r{i}", TEACHERS)) for i in range(40)}
    assert len(orders) == 6  # every permutation of three shows up: the position is shuffled
    firsts = [j.order(f"r{i}", TEACHERS)[0] for i in range(300)]
    assert all(60 <= firsts.count(t) <= 140 for t in TEACHERS)
    other = LLMJudge("judge_v1", j.teacher, (1.0, 5.0), seed=8)
    assert [other.order(f"r{i}", TEACHERS) for i in range(10)] != \
        [j.order(f"r{i}", TEACHERS) for i in range(10)]


def test_verdict_maps_letters_back_and_records_the_order() -> None:
    def script(req: ChatRequest) -> str:
        text = user_text(req)
        # give 5 to whichever letter shows card_arrival, 2 to the other
        right = "A" if "[A] card_arrival" in text else "B"
        wrong = "B" if right == "A" else "A"
        return json.dumps({"scores": {right: 5, wrong: 2}, "winner": right,
                           "reason_tags": ["correct intent", 7, ""]})

    j = _judge(script)
    items = [_item(f"r{i}", {"t1": "card_arrival", "t2": "exchange_rate"}) for i in range(8)]
    verdicts = j.judge_all(items)
    for it, v in zip(items, verdicts, strict=True):
        assert v is not None
        assert v["order"] == j.order(it.record_id, ["t1", "t2"])
        assert v["scores"] == {"t1": 5.0, "t2": 2.0} and v["winner"] == "t1"
        assert v["reason_tags"] == ["correct intent"] and v["judge"] == "judge_v1"
    assert {v["order"][0] for v in verdicts if v} == {"t1", "t2"}  # both positions were used


def test_the_rubric_shows_prompt_reference_candidates_and_scale() -> None:
    j = _judge()
    req = j.request(_item("r1", {"t1": "card_arrival"}), ["t1"])
    text = user_text(req)
    assert "Where is my card?" in text and "Reference answer: card_arrival" in text
    assert "[A] card_arrival (reason: r-t1)" in text and "from 1 (" in text and "to 5 (" in text


@pytest.mark.parametrize("reply, scores, winner, tags", [
    ('{"scores": {"A": 9, "B": 3}}', {"t2": 3.0}, "t2", []),          # off the scale: dropped
    ('{"scores": {"a": 4, "[B]": 4}}', {"t1": 4.0, "t2": 4.0}, None, []),  # a tie: no winner
    ('{"scores": {"A": true, "Z": 3}}', {}, None, []),
    ("I like A best", {}, None, ["judge_unparseable"]),
])
def test_verdict_tolerates_bad_replies(reply: str, scores: dict, winner: str | None,
                                       tags: list[str]) -> None:
    v = _judge().verdict(Completion(text=reply), ["t1", "t2"])
    assert (v["scores"], v["winner"], v["reason_tags"]) == (scores, winner, tags)


def test_a_failed_judge_call_gives_no_scores_and_says_why() -> None:
    v = _judge().verdict(Completion(text=None, error="timeout"), ["t1"])
    assert v["scores"] == {} and v["reason_tags"] == ["judge_error:timeout"]


def test_records_without_answers_are_not_sent_to_the_judge() -> None:
    j = _judge(lambda r: '{"scores": {"A": 3}}')
    out = j.judge_all([_item("r1", {}), _item("r2", {"t1": "card_arrival"})])
    assert out[0] is None and out[1] is not None and out[1]["scores"] == {"t1": 3.0}
    assert len(j.teacher.seen) == 1  # type: ignore[attr-defined]


def test_custom_rubric_and_a_broken_one() -> None:
    j = _judge(rubric="{{ prompt }}|{% for c in candidates %}{{ c.label }}={{ c.final }};"
                      "{% endfor %}{{ low }}-{{ high }}")
    assert user_text(j.request(_item("r", {"t1": "x"}), ["t1"])) == "Where is my card?|A=x;1-5"
    with pytest.raises(InputError, match="judge.rubric"):
        _judge(rubric="{% for c in %}")


@pytest.mark.parametrize("rubric", ["{{ nope }}", "{{ 1 / 0 }}", "{{ candidates[3].final }}",
                                    "{{ reference.upper() }}"])
def test_a_rubric_that_cannot_render_is_refused_before_any_call(rubric: str) -> None:
    # it parses, so only a render finds it: check() renders an example with and without a
    # reference; a record that still breaks it is named, as an InputError, not a traceback
    j = _judge(rubric=rubric)
    with pytest.raises(InputError, match="judge.rubric: the rubric cannot be rendered for an "
                                         "example record, before any call"):
        j.check(teachers=3)
    if rubric in ("{{ nope }}", "{{ 1 / 0 }}"):  # the others break on some records only
        with pytest.raises(InputError, match="for record 'r7'"):
            j.judge_all([_item("r7", {"t1": "x"})])
    assert not j.teacher.seen  # type: ignore[attr-defined]
    _judge().check(teachers=3)  # the built-in rubric renders


def _outcomes(finals: dict[str, str]) -> dict:
    return {t: candidate_from(t, Completion(text=json.dumps({"answer": f, "confidence": c})),
                              LABEL, ["confidence"], "card_arrival")
            for (t, f), c in zip(finals.items(), (0.6, 0.9, 0.8), strict=False)}


def test_reference_judge_routes_wrong_answers_with_the_correction() -> None:
    outs = _outcomes({"t1": "card_arrival", "t2": "exchange_rate", "t3": "nonsense"})
    right = apply_reference(outs, LABEL, "card_arrival")
    assert right == {"t1": True, "t2": False}  # t3 was unparseable: not judged here
    assert outs["t1"].pool == "train"
    assert outs["t2"].pool == "failure" and outs["t2"].failure == {
        "kind": "wrong_answer", "correction": "card_arrival",
        "note": "answered 'exchange_rate'; the reference is 'card_arrival'"}
    assert outs["t3"].failure is not None and outs["t3"].failure["kind"] == "unparseable"
    v = reference_verdict(right, outs, (1.0, 5.0))
    assert v["scores"] == {"t1": 5.0, "t2": 1.0, "t3": 1.0} and v["winner"] == "t1"


def test_reference_judge_prefers_confident_right_answers_and_skips_text_units() -> None:
    outs = _outcomes({"t1": "card_arrival", "t2": "card_arrival"})
    right = apply_reference(outs, LABEL, "card_arrival")
    assert right is not None and reference_verdict(right, outs, (0, 10))["winner"] == "t2"
    assert apply_reference(outs, LABEL, None) is None
    assert apply_reference(outs, TEXT, "anything") is None
