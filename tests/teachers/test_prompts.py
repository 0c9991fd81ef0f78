"""The request a teacher gets: the unit kind's instruction, the asked fields, label choices."""

from __future__ import annotations

import json

import pytest

from harness.teachers.prompts import answer_instruction, asked_fields, build_request

LABEL = {"kind": "label", "labels": ["card_arrival", "exchange_rate"], "answer_marker": "Answer:"}
TOOL = {"kind": "tool_call", "tools": ["lookup_order"], "answer_marker": "Answer:"}
FIELDS = {"kind": "json_fields", "fields": ["order_id", "amount"], "answer_marker": "Answer:"}
REFUSAL = {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"}
TEXT = {"kind": "text", "answer_marker": "Answer:"}


def test_label_request_lists_labels_and_passes_them_as_choices() -> None:
    req = build_request("Where is my card?", LABEL, ["rationale", "confidence"], max_tokens=64)
    (role, text), = req.messages
    assert role == "user" and text.startswith("Where is my card?\n\n")
    assert "card_arrival, exchange_rate" in text
    assert '"rationale"' in text and '"confidence"' in text and '"limits"' not in text
    assert req.choices == ("card_arrival", "exchange_rate")
    assert req.max_tokens == 64 and req.temperature == 0.0


@pytest.mark.parametrize("unit, needle", [
    (TOOL, "lookup_order"), (FIELDS, "order_id, amount"), (REFUSAL, "ESCALATE"),
    (TEXT, "in a few words")])
def test_each_kind_states_its_answer_shape_and_has_no_choices(unit: dict, needle: str) -> None:
    req = build_request("p", unit, [], max_tokens=32)
    assert needle in req.messages[0][1]
    assert req.choices is None


def test_trajectory_is_asked_for_tool_calls_only() -> None:
    asked = ["rationale", "trajectory"]
    assert asked_fields("tool_call", asked) == asked
    assert asked_fields("label", asked) == ["rationale"]
    assert '"trajectory"' in build_request("p", TOOL, asked, max_tokens=8).messages[0][1]
    assert '"trajectory"' not in build_request("p", LABEL, asked, max_tokens=8).messages[0][1]


def test_the_example_object_is_valid_json_with_every_asked_key() -> None:
    text = answer_instruction(LABEL, ["rationale", "limits", "confidence"])
    example = json.loads(text.rsplit("For example: ", 1)[1])
    assert list(example) == ["answer", "rationale", "limits", "confidence"]


def test_the_request_is_a_stable_cache_key() -> None:
    a = build_request("p", LABEL, ["rationale"], max_tokens=16, seed=3)
    b = build_request("p", LABEL, ["rationale"], max_tokens=16, seed=3)
    assert a.key_data() == b.key_data()
    assert a.key_data() != build_request("p", LABEL, ["limits"], max_tokens=16).key_data()
