"""Attribution beyond the primary metric, bounded intervals and honest p-value texts."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.attribution import attribution
from harness.analysis.load import load_run
from harness.analysis.stats import format_p
from harness.units import get
from tests.helpers.synth import spec_dict, write_run

CASES = [
    ({"kind": "label", "labels": ["a", "b", "c"]},
     ["a", "b", None, "c", "a", "x"], ["a", "c", "b", "c", "b", "a"]),
    ({"kind": "json_fields", "fields": ["id", "amount"]},
     ['{"id": "1", "amount": "2"}', '{"id": "3"}', None, '{"id": "4", "amount": "9"}'],
     ['{"id": "1", "amount": "2"}', '{"id": "3", "amount": "5"}', '{"id": "7"}',
      '{"id": "4", "amount": "8"}']),
    ({"kind": "tool_call", "tools": ["f"]},
     ['{"name": "f", "arguments": {"x": 1}}', "null", None, '{"name": "f", "arguments": {}}'],
     ['{"name": "f", "arguments": {"x": 1}}', '{"name": "f", "arguments": {}}', "null",
      '{"name": "f", "arguments": {"x": 2}}']),
    ({"kind": "refusal", "marker": "ESC"},
     ["ESC", "ok", "ESC", None, "ok", "ESC"], ["ESC", "ESC", "ok", "ok", "ok", "ESC"]),
    ({"kind": "text"}, ["the cat sat", "a dog", None], ["the cat sat", "a big dog", "hi"]),
]


@pytest.mark.parametrize(("unit", "preds", "refs"), CASES, ids=[c[0]["kind"] for c in CASES])
def test_every_decision_metric_is_recomputed_from_parts(unit, preds, refs):
    kind = get(unit["kind"])
    scored = kind.score(unit, preds, refs)
    parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
    parts["correct"] = np.asarray(scored.correct, dtype=float)
    decision = kind.decision_metrics(unit)
    assert decision[0] == kind.primary and len(decision) >= 2
    idx = np.arange(len(preds))
    for metric in decision:
        assert kind.metric_def(metric).bounds == (0.0, 1.0)
        want = scored.metrics.get(metric, 0.0)
        assert kind.metric_from_items(metric, parts, idx) == pytest.approx(want), metric


def test_json_fields_declares_exact_match_and_each_field():
    unit = {"kind": "json_fields", "fields": ["order_id", "amount"]}
    assert get("json_fields").decision_metrics(unit) == [
        "field_f1", "exact_match", "f1.order_id", "f1.amount"]
    assert get("refusal").decision_metrics({"kind": "refusal"}) == [
        "refusal_f1", "refusal_recall", "over_refusal_rate"]


def test_p_values_print_below_the_bootstrap_resolution():
    assert format_p(0.0, 1 / 1000) == "< 0.001"
    assert format_p(0.0123, 1 / 1000) == "0.0123"
    assert format_p(3e-7) == "3.0e-07"


def test_a_lower_is_better_metric_and_the_family_record(tmp_path):
    # esc: the "other" arm escalates answerable items (over-refusal up) while catching the same
    # escalations; its over_refusal_rate delta is positive, which is *worse*.
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    spec["design"]["noise_seeds"] = []
    n = 400
    base = np.ones(n, dtype=int)
    other = np.ones(n, dtype=int)
    other[1::2][:120] = 0  # 120 answerable items wrongly escalated
    out = attribution(load_run(write_run(tmp_path, spec, {
        ("base", "plain", 1.0): {"esc": base}, ("other", "plain", 1.0): {"esc": other}})),
        n_boot=400)
    got = {c["metric"]: c for c in out["vs_baseline"]}
    assert set(got) == {"refusal_f1", "refusal_recall", "over_refusal_rate"}
    over = got["over_refusal_rate"]
    assert over["delta"] == pytest.approx(120 / 200) and not over["higher_is_better"]
    assert over["verdict"] == "worse" and over["p"] < 1e-10
    recall = got["refusal_recall"]  # every escalation caught by both arms, on every item
    assert recall["delta"] == 0 and recall["verdict"].startswith("no difference")
    fam = out["families"]["vs_baseline"]
    assert fam["metrics"] == {"esc": ["refusal_f1", "refusal_recall", "over_refusal_rate"]}
    assert fam["size"] + fam["not_estimable"] == 3 and fam["correction"] == "holm"
