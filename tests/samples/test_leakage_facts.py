"""Leakage travels: the train-eval overlap validation found and the policy go into run.json."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from harness.checks import load_experiment
from harness.samples import load_data
from harness.samples.leakage import leakage_facts
from harness.store.contracts import ContractError, LeakageFacts, RunRecord
from tests.helpers import tiny_eval

#: A run.json as written before leakage was recorded.
RUN = {
    "schema_version": 1, "experiment": "tiny", "experiment_file": "tiny.yaml",
    "spec": {"units": {}, "stop": {}, "gate": {}, "costs": {}, "buckets": {}},
    "teachers": {"n_records": 5, "usage": {}, "disagreement": {}}, "baseline": {},
    "cells": [], "inputs": {"samples": "ab", "eval": "cd"}, "python": "3.11.7", "pid": 42,
}


def _leaky(tiny, policy: str):
    ev = tiny_eval()
    ev.append({"id": "e3", "unit": "route", "prompt": "Parcel  Late", "reference": "shipping"})
    loaded = load_experiment(tiny(spec={"data": {"samples": "samples.jsonl",
                                                 "eval": "eval.jsonl", "leakage": policy}},
                                  eval=ev))
    return loaded, load_data(loaded)


@pytest.mark.parametrize("policy", ["warn", "drop"])
def test_the_run_records_the_overlap_and_its_policy(tiny, policy):
    loaded, data = _leaky(tiny, policy)
    facts = leakage_facts(loaded.spec.data.leakage, data.leaks)
    assert facts == LeakageFacts(policy=policy, overlaps=1, eval_items=1, train_records=1)


def test_no_overlap_is_recorded_as_zero_not_left_out(tiny):
    loaded = load_experiment(tiny())
    facts = leakage_facts(loaded.spec.data.leakage, load_data(loaded).leaks)
    assert facts == LeakageFacts(policy="error", overlaps=0, eval_items=0, train_records=0)


def test_run_json_without_leakage_still_reads_and_writes_unchanged():
    # a run folder from before leakage was recorded: None ("not recorded"), and not written back
    old = RunRecord.from_json(json.loads(json.dumps(RUN)), "run.json")
    assert old.leakage is None and "leakage" not in old.to_json()
    new = replace(old, leakage=LeakageFacts("warn", 3, 2, 2))
    data = new.to_json()
    assert list(data)[-1] == "leakage"
    assert data["leakage"] == {"policy": "warn", "overlaps": 3, "eval_items": 2,
                               "train_records": 2}
    assert RunRecord.from_json(json.loads(json.dumps(data)), "run.json") == new


def test_a_malformed_leakage_record_is_a_located_error():
    with pytest.raises(ContractError) as info:
        RunRecord.from_json({**RUN, "leakage": {"policy": "warn", "overlaps": "3",
                                                "eval_items": 2, "train_records": 2}},
                            "run.json")
    assert info.value.key == "leakage.overlaps"
