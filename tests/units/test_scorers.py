"""Scorers of the built-in unit kinds, checked on hand-computed cases (and scikit-learn)."""

from __future__ import annotations

import pytest
from sklearn.metrics import accuracy_score, f1_score

from harness.units import canonical, names, primary_metric
from harness.units import metric_direction as direction
from harness.units.json_fields import score_json_fields
from harness.units.label import score_label
from harness.units.refusal import score_refusal
from harness.units.text import score_text
from harness.units.tool_call import score_tool_call


def test_label_matches_sklearn():
    refs = ["a", "b", "c", "a", "b", "a"]
    preds = ["a", "b", "a", "a", "c", None]
    s = score_label(preds, refs, ["a", "b", "c"])
    assert s.correct == [1, 1, 0, 1, 0, 0]
    assert s.metrics["accuracy"] == pytest.approx(accuracy_score(refs, [p or "?" for p in preds]))
    assert s.metrics["macro_f1"] == pytest.approx(
        f1_score(refs, [p or "?" for p in preds], labels=["a", "b", "c"], average="macro"))


def test_json_fields_per_field_and_exact():
    refs = ['{"order_id":"1","amount":"2.00","currency":"USD"}',
            '{"order_id":"3","amount":"4.00","currency":"EUR"}']
    preds = ['{"currency": "USD", "amount": "2.00", "order_id": "1"}',  # same, other order
             '{"order_id":"3","amount":"40.00"}']  # one wrong, one missing
    s = score_json_fields(preds, refs, ["order_id", "amount", "currency"])
    assert s.correct == [1, 0]
    # tp = 3 + 1, fp = 1 (amount), fn = 2 (amount, currency)
    assert s.metrics["field_precision"] == pytest.approx(4 / 5)
    assert s.metrics["field_recall"] == pytest.approx(4 / 6)
    assert s.metrics["f1.currency"] == pytest.approx(2 / 3)
    assert s.metrics["json_valid"] == 1.0
    assert score_json_fields(["not json"], refs[:1], ["order_id"]).metrics["json_valid"] == 0.0


def test_tool_call_decisions_names_arguments():
    call = '{"name":"lookup_order","arguments":{"order_id":"1"}}'
    refund = '{"name":"issue_refund","arguments":{"order_id":"1"}}'
    refs = [call, call, "null", refund]
    preds = [call, '{"name":"lookup_order","arguments":{"order_id":"2"}}', call, "garbage"]
    s = score_tool_call(preds, refs)
    assert s.correct == [1, 0, 0, 0]
    assert s.metrics["call_accuracy"] == pytest.approx(2 / 4)
    assert s.metrics["tool_name_accuracy"] == pytest.approx(2 / 3)
    assert s.metrics["argument_exact_match"] == pytest.approx(1 / 3)


def test_refusal_precision_recall_over_refusal():
    refs = ["ESCALATE", "ESCALATE", "REPLY: a", "REPLY: b", "REPLY: c"]
    preds = ["ESCALATE", "REPLY: a", "ESCALATE", "REPLY: b", None]
    s = score_refusal(preds, refs, "ESCALATE")
    assert s.metrics["refusal_precision"] == 0.5 and s.metrics["refusal_recall"] == 0.5
    assert s.metrics["over_refusal_rate"] == pytest.approx(1 / 3)
    assert s.correct == [1, 0, 0, 1, 1]


def test_text_exact_and_rouge_l():
    s = score_text(["the cat sat", "a b c d"], ["the cat sat", "a x c d"])
    assert s.correct == [1, 0]
    assert s.metrics["rouge_l"] == pytest.approx((1 + 0.75) / 2)


def test_directions_and_primary_metrics():
    assert direction("ece_15") is False and direction("f1.order_id") is True
    assert direction("over_refusal_rate") is False
    assert set(names()) == {"label", "json_fields", "tool_call", "refusal", "text"}
    assert {k: primary_metric(k) for k in names()} == {
        "label": "accuracy", "json_fields": "field_f1", "tool_call": "exact_match",
        "refusal": "refusal_f1", "text": "rouge_l"}
    assert canonical('{"b": 1, "a": 2}') == canonical('{"a":2,"b":1}')
