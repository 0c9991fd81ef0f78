"""Completion text -> candidate: JSON first (fenced or not), plain-text fallback per unit kind,
confidence with its source, unparseable answers and failed calls kept in the failure pool."""

from __future__ import annotations

import pytest

from harness.teachers.base import Completion
from harness.teachers.parse import candidate_from, first_json_object, parse_text, plain_answer

LABEL = {"kind": "label", "labels": ["card_arrival", "exchange_rate"], "answer_marker": "Answer:"}
TOOL = {"kind": "tool_call", "tools": ["lookup_order"], "answer_marker": "Answer:"}
FIELDS = {"kind": "json_fields", "fields": ["order_id"], "answer_marker": "Answer:"}
REFUSAL = {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"}
ALL = ["rationale", "limits", "confidence", "trajectory"]


def test_first_json_object_prefers_a_fenced_block_and_skips_broken_braces() -> None:
    text = 'Sure {not json} here:\n```json\n{"answer": "a", "x": {"y": 1}}\n```\n{"answer": "b"}'
    assert first_json_object(text) == {"answer": "a", "x": {"y": 1}}
    assert first_json_object('noise {"answer": "b"} {"answer": "c"}') == {"answer": "b"}
    assert first_json_object("no object [1, 2]") is None
    assert first_json_object("{" * 10_000) is None  # bounded work on garbage


def test_plain_answer_salvages_truncated_json_then_marker_then_first_line() -> None:
    assert plain_answer('{"answer": "card_arr') == "card_arr"
    assert plain_answer('{"answer": "say \\"hi\\"", "rationale": "cut') == 'say "hi"'
    assert plain_answer("I think so.\nAnswer: exchange_rate\nmore") == "exchange_rate"
    assert plain_answer("\n  first line  \nsecond") == "first line"


def test_label_answers_match_case_insensitively_and_off_label_is_unparseable() -> None:
    assert parse_text('{"answer": "Card_Arrival"}', LABEL, []).final == "card_arrival"
    assert parse_text('{"answer": "card arrival"}', LABEL, []).final is None
    assert parse_text("The intent is exchange_rate, clearly.", LABEL, []).final == "exchange_rate"
    # plain text naming two labels decides nothing
    assert parse_text("card_arrival or exchange_rate", LABEL, []).final is None


def test_fields_are_kept_only_when_asked_and_well_typed() -> None:
    text = ('{"answer": "card_arrival", "rationale": " waits for card ", "limits": 3, '
            '"confidence": "85%"}')
    full = parse_text(text, LABEL, ALL)
    assert (full.rationale, full.limits, full.confidence) == ("waits for card", None, 0.85)
    bare = parse_text(text, LABEL, [])
    assert (bare.rationale, bare.confidence) == (None, None)
    assert parse_text('{"answer": "card_arrival", "confidence": 7e9}', LABEL, ALL).confidence \
        is None
    assert parse_text('{"answer": "card_arrival", "confidence": true}', LABEL, ALL).confidence \
        is None


def test_json_kinds_compact_their_answers() -> None:
    assert parse_text('{"answer": {"order_id": "7"}}', FIELDS, []).final == '{"order_id":"7"}'
    assert parse_text('{"answer": "{\\"order_id\\": \\"7\\"}"}', FIELDS, []).final \
        == '{"order_id":"7"}'
    assert parse_text('{"answer": ["7"]}', FIELDS, []).final is None
    assert parse_text('{"answer": null}', TOOL, []).final == "null"
    call = '{"answer": {"name": "lookup_order", "arguments": {"id": 1}}, "trajectory": ' \
           '[{"tool": "lookup_order", "arguments": {"id": 1}, "observation": "ok"}]}'
    parsed = parse_text(call, TOOL, ALL)
    assert parsed.final == '{"name":"lookup_order","arguments":{"id":1}}'
    assert parsed.trajectory == [{"tool": "lookup_order", "arguments": {"id": 1},
                                  "observation": "ok"}]
    assert parse_text('{"answer": null, "trajectory": [{"x": 1}]}', TOOL, ALL).trajectory is None


def test_refusal_marker_is_normalised() -> None:
    assert parse_text('{"answer": "escalate."}', REFUSAL, []).final == "ESCALATE"
    assert parse_text('{"answer": "We can refund  it"}', REFUSAL, []).final == "We can refund it"


def test_label_confidence_comes_from_label_probabilities_first() -> None:
    c = Completion(text='{"answer": "exchange_rate", "confidence": 0.99}', prompt_tokens=30,
                   completion_tokens=12, label_probs={"card_arrival": 0.3, "exchange_rate": 0.7},
                   confidence_source="label_probabilities")
    out = candidate_from("t", c, LABEL, ALL, "exchange_rate")
    assert out.pool == "train" and out.failure is None and out.answered
    cand = out.candidate
    assert cand["final"] == "exchange_rate"
    assert (cand["confidence"], cand["confidence_source"]) == (0.7, "label_probabilities")
    assert cand["usage"] == {"prompt_tokens": 30, "completion_tokens": 12}


def test_self_reported_confidence_and_none() -> None:
    c = Completion(text='{"answer": "card_arrival", "confidence": 0.6}')
    cand = candidate_from("t", c, LABEL, ["confidence"], None).candidate
    assert (cand["confidence"], cand["confidence_source"]) == (0.6, "self_reported")
    cand = candidate_from("t", c, LABEL, [], None).candidate
    assert (cand["confidence"], cand["confidence_source"]) == (None, None)


def test_unparseable_output_is_a_failure_candidate_with_the_reference_as_correction() -> None:
    c = Completion(text="I cannot decide " + "x" * 500, prompt_tokens=5, completion_tokens=90)
    out = candidate_from("t", c, LABEL, ALL, "card_arrival")
    assert not out.answered and out.pool == "failure"
    assert out.candidate["final"] == "" and out.candidate["usage"]["completion_tokens"] == 90
    assert out.failure is not None
    assert out.failure["kind"] == "unparseable" and out.failure["correction"] == "card_arrival"
    assert out.failure["note"].startswith("no parseable answer in: I cannot decide")
    assert len(out.failure["note"]) < 260


@pytest.mark.parametrize("error", ["timeout", "rate_limited", "server_error", "bad_response"])
def test_a_failed_call_is_not_a_candidate(error: str) -> None:
    # the prompt stays unanswered (tests/teachers/test_unanswered.py), never a failure record
    c = Completion(text=None, error=error, error_detail=f"{error} after 3 attempts", attempts=3)
    with pytest.raises(ValueError, match=f"failed call \\({error}\\) is not an answer"):
        candidate_from("t", c, TOOL, ALL, None)
