"""The stage-boundary records: a missing, unknown or mistyped key is a located error, never a
default; a read-then-write round trip gives back the same bytes."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from harness.fsutil import atomic_write_json
from harness.store.contracts import (
    AnalysisRecord,
    CellManifest,
    CellMetrics,
    ContractError,
    FailureRecord,
    RunRecord,
)

AXES = {"bucket": "judged", "fields": "answer_only", "scale": 0.5, "seed": 0}
UNIT_REPORT = {"n": 3, "metrics": {"accuracy": 2 / 3}, "slices": {}, "calibration": None,
               "fidelity": {"a": {"n": 3, "agreement": 1.0}}, "eval_seconds": 0.25}

CELL_SPEC = {
    "compose_version": 1, "experiment": "tiny", "bucket": {"name": "judged"},
    "fields": {"name": "answer_only"}, "scale": 0.5, "seed": 0,
    "units": {"route": {"kind": "label"}},
    "student": {"kind": "causal_lm", "model": None, "config": {"layers": 1}, "distill": None,
                "train": {"epochs": 1.0, "batch_size": 4, "grad_accum": 1, "lr": 0.001,
                          "weight_decay": 0.0, "warmup_ratio": 0.0, "clip": 1.0,
                          "max_len": 64}},
    "sampling": {"seed": 0}, "evaluation": {"slices": ["source"]},
    "data": {"samples_sha256": "ab", "eval_sha256": "cd"},
}
MANIFEST = {
    "manifest_version": 1, "harness_version": "0.1.0", "cell_id": "0123456789ab",
    "label": "judged/answer_only/x0.5/s0", "is_baseline": False, "axes": AXES,
    "spec": CELL_SPEC, "n_samples": 10,
    "n_records": 5, "counts": {"unit": {"route": 10}}, "tokens": {"prompt": 100},
    "inputs": {"samples": {"file": "s.jsonl", "sha256": "ab"}}, "files": {"train.jsonl": "cd"},
    "eval_items": 3, "paths": {},
}
METRICS = {
    "metrics_version": 1, "cell_id": "0123456789ab", "label": "judged/answer_only/x0.5/s0",
    "axes": AXES, "units": {"route": UNIT_REPORT},
    "train": {"train_seconds": 1.5, "steps": 4, "wall_seconds": 2.0}, "eval_seconds": 0.3,
    "latency": {"latency_p95_ms": 3.2}, "environment": {"device": "cpu"},
}
SPEC = {"units": {}, "stop": {}, "gate": {}, "costs": {}, "buckets": {}}
RUN = {
    "schema_version": 1, "experiment": "tiny", "experiment_file": "tiny.yaml", "spec": SPEC,
    "teachers": {"n_records": 5, "usage": {"a": {"prompt_tokens": 1, "completion_tokens": 2}},
                 "disagreement": {"route": {"rate": 0.5, "unjudged_rate": 0.25}}},
    "baseline": {"bucket": "judged"},
    "cells": [
        {"cell_id": "0123456789ab", "label": "x", "is_baseline": True, "status": "done",
         "train_seconds": 1.5, "eval_seconds": 0.3},
        {"cell_id": "ba9876543210", "label": "y", "is_baseline": False, "status": "failed",
         "error": {"kind": "error", "error": "boom", "hint": "h", "traceback": "tb"}},
        {"cell_id": "aaaaaaaaaaaa", "label": "z", "is_baseline": False, "status": "missing",
         "error": None},
    ],
    "inputs": {"samples": "ab", "eval": "cd"}, "python": "3.11.7", "pid": 42,
}
ANALYSIS = {
    "analysis_version": 1, "experiment": "tiny", "date": "2026-11-23T00:00:00+00:00",
    "gate": {"decision": "CONTINUE", "exit_status": 0, "cell": {}, "reasons": []},
    "signals": [], "attribution": {}, "learning_curves": [], "fidelity": [],
    "fidelity_flags": [], "roi": [], "history": [],
}
FAILED = {"cell_id": "0123456789ab", "kind": "error", "error": "boom", "hint": "h",
          "traceback": "tb"}
CASES = [(CellManifest, MANIFEST), (CellMetrics, METRICS), (RunRecord, RUN),
         (AnalysisRecord, ANALYSIS), (FailureRecord, FAILED)]


def _error(record: type, data: Any) -> ContractError:
    with pytest.raises(ContractError) as info:
        record.from_json(data, "cell/x.json")
    return info.value


@pytest.mark.parametrize(("record", "data"), CASES)
def test_round_trip_gives_identical_bytes(record, data, tmp_path):
    atomic_write_json(tmp_path / "a.json", data)
    parsed = record.from_json(json.loads((tmp_path / "a.json").read_text()), "a.json")
    atomic_write_json(tmp_path / "b.json", parsed.to_json())
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert list(parsed.to_json()) == list(data)  # the same keys in the same order


@pytest.mark.parametrize(("record", "data"), CASES)
def test_every_missing_top_level_key_is_a_located_error(record, data):
    for key in data:
        broken = {k: v for k, v in data.items() if k != key}
        err = _error(record, broken)
        assert err.where == "cell/x.json" and err.key == key, (record, key)
        assert "cell/x.json" in str(err) and key in str(err)


@pytest.mark.parametrize(("record", "data"), CASES)
def test_an_unknown_key_is_an_error(record, data):
    err = _error(record, {**data, "acurracy": 1})
    assert err.key == "acurracy" and "unknown key" in str(err)


def test_nested_keys_are_located():
    broken = copy.deepcopy(METRICS)
    del broken["train"]["train_seconds"]
    assert _error(CellMetrics, broken).key == "train.train_seconds"
    broken = copy.deepcopy(METRICS)
    del broken["units"]["route"]["fidelity"]
    assert _error(CellMetrics, broken).key == "units.route.fidelity"
    broken = copy.deepcopy(METRICS)
    broken["axes"]["sead"] = broken["axes"].pop("seed")
    assert _error(CellMetrics, broken).key == "axes.sead"
    broken = copy.deepcopy(MANIFEST)
    del broken["spec"]["student"]["train"]["max_len"]
    assert _error(CellManifest, broken).key == "spec.student.train.max_len"
    broken = copy.deepcopy(MANIFEST)
    broken["spec"]["student"]["train"]["max_len"] = "64"
    assert _error(CellManifest, broken).key == "spec.student.train.max_len"
    broken = copy.deepcopy(RUN)
    del broken["cells"][0]["eval_seconds"]
    assert _error(RunRecord, broken).key == "cells[0].eval_seconds"
    broken = copy.deepcopy(RUN)
    broken["cells"][2]["status"] = "lost"
    err = _error(RunRecord, broken)
    assert err.key == "cells[2].status" and "'lost'" in str(err)


def test_a_failed_cell_entry_may_not_carry_seconds():
    broken = copy.deepcopy(RUN)
    broken["cells"][1]["train_seconds"] = 1.0
    assert _error(RunRecord, broken).key == "cells[1].train_seconds"


def test_wrong_types_are_errors_and_nothing_is_coerced():
    assert "expected a number" in str(_error(CellMetrics, {**METRICS, "eval_seconds": "0.3"}))
    assert "expected an integer" in str(_error(CellManifest, {**MANIFEST, "n_samples": 1.5}))
    assert "expected true/false" in str(_error(CellManifest, {**MANIFEST, "is_baseline": 1}))
    assert "expected a JSON object" in str(_error(RunRecord, [RUN]))
    ints = CellMetrics.from_json({**METRICS, "eval_seconds": 1}, "m.json")
    assert ints.eval_seconds == 1 and isinstance(ints.eval_seconds, int)  # kept as written


@pytest.mark.parametrize("version", [None, 2, "1"])
def test_an_unknown_or_missing_schema_version_is_refused_first(version):
    data = {k: v for k, v in RUN.items() if k not in ("schema_version", "spec")}
    if version is not None:
        data["schema_version"] = version
    err = _error(RunRecord, data)
    assert err.key == "schema_version" and "schema version 1" in str(err)


def test_computed_from_is_the_one_optional_key_of_the_analysis():
    plain = AnalysisRecord.from_json(ANALYSIS, "a.json")
    assert plain.computed_from is None and "computed_from" not in plain.to_json()
    hashed = AnalysisRecord.from_json({**ANALYSIS, "computed_from": "ab12"}, "a.json")
    assert hashed.to_json()["computed_from"] == "ab12"


def test_a_contract_error_is_an_input_error():
    from harness.errors import InputError

    assert isinstance(_error(CellMetrics, {}), InputError)  # the CLI's exit status 2
