"""The run folder's owner: paths, markers, failure records and contract files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.store.contracts import CellMetrics, ContractError, FailureRecord, RunRecord
from harness.store.folder import CellFolder, RunFolder, is_done, read_jsonl

REPO = Path(__file__).resolve().parents[2]
AXES = {"bucket": "b", "fields": "f", "scale": 1.0, "seed": 0}
METRICS = {
    "metrics_version": 1, "cell_id": "c", "label": "b/f/x1/s0", "axes": AXES,
    "units": {"route": {"n": 1, "metrics": {"accuracy": 1.0}, "slices": {},
                        "calibration": None, "fidelity": {}, "eval_seconds": 0.1}},
    "train": {"train_seconds": 1.5}, "eval_seconds": 0.3, "latency": {}, "environment": {},
}
RUN = {
    "schema_version": 1, "experiment": "tiny", "experiment_file": "tiny.yaml",
    "spec": {"units": {}, "stop": {}, "gate": {}, "costs": {}, "buckets": {}},
    "teachers": {"n_records": 0, "usage": {}, "disagreement": {}}, "baseline": {},
    "cells": [{"cell_id": "c", "label": "b/f/x1/s0", "is_baseline": True, "status": "missing",
               "error": None}],
    "inputs": {}, "python": "3.11", "pid": 1,
}


def test_the_layout(tmp_path):
    run = RunFolder(tmp_path / "demo")
    cell = run.cell("0123456789ab")
    assert cell.path == tmp_path / "demo" / "cells" / "0123456789ab"
    names = {p.name for p in (cell.spec, cell.manifest, cell.train, cell.eval, cell.train_log,
                              cell.model, cell.predictions, cell.predictions_table,
                              cell.metrics, cell.done, cell.failed)}
    assert names == {"spec.yaml", "manifest.json", "train.jsonl", "eval.jsonl",
                     "train_log.jsonl", "model", "predictions.jsonl", "predictions.parquet",
                     "metrics.json", "DONE", "FAILED.json"}
    assert {p.name for p in (run.run_json, run.results, run.latency, run.teacher_audit,
                             run.analysis)} == {"run.json", "results.parquet",
                                                "latency.parquet", "teacher_audit.json",
                                                "analysis.json"}


def test_done_is_the_cell_id_written_last(tmp_path):
    cell = CellFolder(tmp_path / "c")
    assert not cell.is_done("c")
    cell.mark_done("c")
    assert cell.done.read_text() == "c\n"
    assert cell.is_done("c") and is_done(cell.path, "c")
    assert not cell.is_done("other")  # a DONE of another cell id is not this cell's result
    cell.clear_done()
    assert not cell.done.exists()
    cell.clear_done()  # idempotent


def test_failure_record_round_trip(tmp_path):
    cell = CellFolder(tmp_path / "c")
    assert cell.read_failure() is None
    record = FailureRecord(cell_id="c", kind="disk_full", error="OSError: full",
                           hint="free disk space", traceback="tb")
    cell.write_failure(record)
    assert cell.read_failure() == record
    assert json.loads(cell.failed.read_text())["kind"] == "disk_full"
    cell.clear_failure()
    assert cell.read_failure() is None


def test_metrics_and_run_records_are_written_and_read_through_their_contract(tmp_path):
    cell = CellFolder(tmp_path / "c")
    metrics = CellMetrics.from_json(METRICS, "m")
    cell.write_metrics(metrics)
    assert cell.read_metrics() == metrics
    run = RunFolder(tmp_path)
    record = RunRecord.from_json(RUN, "r")
    run.write_run(record)
    assert run.read_run() == record
    assert run.read_teacher_audit() == {}


def test_a_record_that_drifted_from_its_contract_is_not_written(tmp_path):
    cell = CellFolder(tmp_path / "c")
    drifted = CellMetrics(**{**CellMetrics.from_json(METRICS, "m").__dict__,
                             "train": {"steps": 3}})
    with pytest.raises(ContractError, match="train.train_seconds"):
        cell.write_metrics(drifted)
    assert not cell.metrics.exists()


@pytest.mark.parametrize(("text", "message"), [
    (None, "missing"), ("{not json", "not valid JSON"), (b"\xff\xfe", "not valid JSON")])
def test_unreadable_contract_files_are_located(tmp_path, text, message):
    cell = CellFolder(tmp_path / "c")
    if text is not None:
        cell.path.mkdir()
        data = text if isinstance(text, bytes) else text.encode()
        cell.metrics.write_bytes(data)
    with pytest.raises(ContractError) as info:
        cell.read_metrics()
    assert str(cell.metrics) in str(info.value) and message in str(info.value)


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    with pytest.raises(ContractError, match=r"p\.jsonl:4"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_predictions_round_trip_keeps_unicode(tmp_path):
    cell = CellFolder(tmp_path / "c")
    rows = [{"id": "e1", "answer": "café ✓"}, {"id": "e2", "answer": None}]
    cell.write_predictions(rows)
    assert "café ✓" in cell.predictions.read_text(encoding="utf-8")
    assert cell.read_predictions() == rows


def test_train_log_is_renamed_on_success_and_removed_on_failure(tmp_path):
    cell = CellFolder(tmp_path / "c")
    cell.path.mkdir()
    with cell.train_log_writer() as log:
        log({"step": 1, "loss": 2.5})
        log({"step": 2, "loss": 2.0})
    assert read_jsonl(cell.train_log) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]
    cell.train_log.unlink()
    with pytest.raises(RuntimeError), cell.train_log_writer() as log:
        log({"step": 1})
        raise RuntimeError("nan")
    assert list(cell.path.iterdir()) == []  # no partial log, no temporary file


def test_the_folder_module_imports_only_the_standard_library():
    code = ("import sys, harness.store.folder; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'numpy', 'torch', 'polars', 'pydantic', 'pandera', 'msgspec', 'yaml'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.strip()
    assert out == "[]"
