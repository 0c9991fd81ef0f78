"""Each composition rule on the tiny repository, checked against hand-derived answers."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from harness.checks import load_experiment
from harness.compose import build_context, compose_cell
from harness.matrix import build_cells
from harness.samples import load_data
from tests.helpers import BASE_SPEC, label_record, tiny_samples


def compose(path, label: str) -> pl.DataFrame:
    loaded = load_experiment(path)
    data = load_data(loaded)
    cells = {c.label: c for c in build_cells(loaded.spec, {"samples": data.train.sha256,
                                                           "eval": data.eval.sha256})}
    return compose_cell(build_context(loaded.spec, data), cells[label]).frame


def buckets(**extra: Any) -> dict[str, Any]:
    return {"buckets": {"single_a": {"teachers": ["a"], "select": "all"}, **extra}}


def rows(df: pl.DataFrame) -> dict[str, dict[str, Any]]:
    return {r["record_id"]: r for r in df.iter_rows(named=True)}


def test_single_teacher_all_takes_train_pool_only(tiny):
    df = compose(tiny(), "single_a/answer_only/x1/s0")
    assert set(df["record_id"]) == {"r1", "r4", "r5"}  # a's answers to r2, r3 are failures
    assert set(df["teacher"]) == {"a"} and set(df["origin"]) == {"teacher"}


def test_judge_winner_picks_highest_score(tiny):
    got = rows(compose(tiny(), "judged/answer_only/x1/s0"))
    assert {k: v["teacher"] for k, v in got.items()} == {
        "r1": "a", "r2": "b", "r3": "b", "r4": "a", "r5": "a"}
    assert got["r2"]["target"] == "Answer: shipping"


def test_min_score_filters_on_judge_scale(tiny):
    path = tiny(spec=buckets(judged={"select": "judge_winner", "min_score": 5}))
    assert set(compose(path, "judged/answer_only/x1/s0")["record_id"]) == {"r1", "r3", "r4"}


def test_judge_winner_restricted_to_bucket_teachers(tiny):
    path = tiny(spec=buckets(judged={"teachers": ["b"], "select": "judge_winner"}))
    got = rows(compose(path, "judged/answer_only/x1/s0"))
    # b is in the train pool for r2, r3 and (no pools entry) r5
    assert set(got) == {"r2", "r3", "r5"} and {v["teacher"] for v in got.values()} == {"b"}


def test_best_confidence(tiny):
    samples = tiny_samples()
    samples[0] = label_record(1, "charged twice", "billing", {"a": "billing", "b": "billing"},
                              scores={"a": 5, "b": 5}, winner="a",
                              confidences={"a": 0.6, "b": 0.95})
    path = tiny(spec=buckets(judged={"select": "best_confidence"}), samples=samples)
    got = rows(compose(path, "judged/answer_only/x1/s0"))
    assert got["r1"]["teacher"] == "b"


def test_failures_refusal_uses_correction_or_marker(tiny):
    path = tiny(spec={"buckets": {"single_a": {"teachers": ["a"], "select": "all",
                                                "failures": "refusal"}, "judged": {}}})
    got = rows(compose(path, "single_a/answer_only/x1/s0"))
    assert set(got) == {"r1", "r2", "r3", "r4", "r5"}
    assert got["r2"]["target"] == "Answer: shipping" and got["r2"]["origin"] == "failure"
    assert got["r3"]["target"] == "Answer: ESCALATE" and got["r3"]["pool"] == "failure"


def test_failures_refusal_never_trains_the_marker_on_a_candidate_that_gave_no_answer(tiny):
    # `harness generate` keeps an unparseable reply or a failed call as a failure candidate with
    # final "" and, without a reference, no correction: that says nothing about refusing
    samples = tiny_samples()
    samples[2] = label_record(3, "i will sue you", "ESCALATE", {"a": "", "b": "ESCALATE"},
                              scores={"a": 2, "b": 5}, winner="b",
                              pools={"a": "failure", "b": "train"},
                              failure={"a": {"kind": "unparseable", "correction": None,
                                             "note": "raw reply: I think"}}, unit="esc")
    path = tiny(spec={"buckets": {"single_a": {"teachers": ["a"], "select": "all",
                                                "failures": "refusal"}, "judged": {}}},
                samples=samples)
    got = rows(compose(path, "single_a/answer_only/x1/s0"))
    assert "r3" not in got
    assert got["r2"]["target"] == "Answer: shipping"  # a corrected wrong answer still trains


def test_failures_contrastive_states_wrong_answer_and_note(tiny):
    path = tiny(spec={"buckets": {"single_a": {"teachers": ["a"], "select": "all",
                                                "failures": "contrastive"}, "judged": {}}})
    got = rows(compose(path, "single_a/answer_only/x1/s0"))
    assert got["r2"]["target"] == "Answer: shipping\nNot: billing"
    assert got["r3"]["target"] == "Answer: ESCALATE\nNot: REPLY: sorry (legal threat)"


def test_failures_exclude_is_default(tiny):
    df = compose(tiny(), "single_a/answer_only/x1/s0")
    assert "failure" not in set(df["origin"])


def test_same_record_and_target_are_merged(tiny):
    path = tiny(spec=buckets(judged={"select": "judge_winner", "failures": "refusal"}))
    df = compose(path, "judged/answer_only/x1/s0")
    # every failure correction repeats the judge winner's answer: no extra rows
    assert df.height == 5 and df.select(pl.struct("record_id", "target").n_unique()).item() == 5


def test_confidence_weight_and_tiers(tiny):
    samples = [label_record(i, f"p{i}", "billing", {"a": "billing"}, confidences={"a": c})
               for i, c in enumerate([0.95, 0.7, 0.3], start=1)]
    spec = {"fields": {"answer_only": {}, "w": {"confidence": "weight"},
                       "t": {"confidence": "tiers", "tiers": {"high": 0.9, "low": 0.5,
                                                              "mid_weight": 0.25}}}}
    path = tiny(spec=spec, samples=samples)
    w = rows(compose(path, "single_a/w/x1/s0"))
    assert [w[f"r{i}"]["weight"] for i in (1, 2, 3)] == pytest.approx([0.95, 0.7, 0.3])
    t = rows(compose(path, "single_a/t/x1/s0"))
    assert {k: v["weight"] for k, v in t.items()} == {"r1": 1.0, "r2": 0.25}


def test_field_ablation_controls_target(tiny):
    path = tiny()
    plain = rows(compose(path, "single_a/answer_only/x1/s0"))
    full = rows(compose(path, "single_a/full/x1/s0"))
    assert plain["r1"]["target"] == "Answer: billing"
    assert full["r1"]["target"] == (
        "Answer: billing\nReason: because billing\nLimits: unless unclear")


def test_trajectory_is_rendered_when_enabled(tiny):
    traj = [{"tool": "lookup_order", "arguments": {"order_id": "88"}, "observation": "shipped"}]
    rec = {"id": "t1", "unit": "tool", "prompt": "where is 88",
           "reference": '{"name":"lookup_order","arguments":{"order_id":"88"}}',
           "candidates": [{"teacher": "a", "final":
                           '{"name": "lookup_order", "arguments": {"order_id": "88"}}',
                           "trajectory": traj}]}
    spec = {"fields": {"answer_only": {}, "traj": {"trajectory": True}}}
    path = tiny(spec=spec, samples=[rec])
    got = rows(compose(path, "single_a/traj/x1/s0"))["t1"]["target"]
    assert got == ('Answer: {"name":"lookup_order","arguments":{"order_id":"88"}}\n'
                   'Steps: lookup_order {"order_id":"88"} -> shipped')
    assert json.loads(got.split("\n")[0].removeprefix("Answer: "))["name"] == "lookup_order"


def test_hard_pool_only_when_bucket_asks(tiny):
    samples = tiny_samples()
    samples[0]["pools"] = {"a": "hard", "b": "failure"}
    path = tiny(spec=buckets(judged={"teachers": ["a"], "select": "all",
                                     "pools": ["train", "hard"]}), samples=samples)
    assert "r1" not in set(compose(path, "single_a/answer_only/x1/s0")["record_id"])
    assert "r1" in set(compose(path, "judged/answer_only/x1/s0")["record_id"])


def test_custom_template(tiny):
    units = json.loads(json.dumps(BASE_SPEC["units"]))
    units["route"]["template"] = "{% if rationale %}Why: {{ rationale }}\n{% endif %}=> {{ final }}"
    units["route"]["answer_marker"] = "=>"
    path = tiny(spec={"units": units})
    full = rows(compose(path, "single_a/full/x1/s0"))
    assert full["r1"]["target"] == "Why: because billing\n=> billing"
