"""``harness run`` end to end on the tiny experiment: store layout, resume, failures, lm-eval."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from harness.cli import main
from harness.store.results import ResultsSchema
from tests.helpers import TINY_STUDENT, route_data


@pytest.fixture
def tiny_run(tiny, tmp_path):
    train, ev = route_data()
    path = tiny(spec={"student": TINY_STUDENT, "evaluation": {
        "slices": ["source"], "latency_runs": 3, "latency_batch_size": 4, "max_new_tokens": 24}},
        samples=train, eval=ev)
    return path, tmp_path / "runs"


def cells_of(out: Path) -> list[Path]:
    return sorted((out / "tiny" / "cells").iterdir())


def test_run_writes_the_store_and_resumes(tiny_run, capsys):
    path, out = tiny_run
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    cells = cells_of(out)
    assert len(cells) == 4
    for c in cells:
        for name in ("spec.yaml", "manifest.json", "train.jsonl", "eval.jsonl",
                     "train_log.jsonl", "metrics.json", "predictions.jsonl", "DONE"):
            assert (c / name).is_file(), (c, name)
        assert (c / "DONE").read_text().strip() == c.name
        assert (c / "model" / "config.json").is_file()
        preds = pl.read_parquet(c / "predictions.parquet")
        assert preds.height == 30 and {"id", "answer", "correct"} <= set(preds.columns)
    results = pl.read_parquet(out / "tiny" / "results.parquet")
    ResultsSchema.validate(results)
    route = results.filter((pl.col("unit") == "route") & (pl.col("slice") == "all"))
    assert set(route["metric"]) >= {"accuracy", "macro_f1", "ece_15", "ece_10_mass", "brier",
                                    "nll", "agreement.a", "agree_wrong.b"}
    assert {"source=real", "source=synthetic"} <= set(results["slice"])
    lat = pl.read_parquet(out / "tiny" / "latency.parquet")
    assert {"latency_p95_ms", "ttft_p50_ms", "parameters"} <= set(lat["metric"])
    audit = json.loads((out / "tiny" / "teacher_audit.json").read_text())
    assert audit["route"]["a"]["metrics"]["accuracy"] == 1.0
    assert "stated_confidence" in audit["route"]["b"]
    first = results

    stamps = {c.name: (c / "metrics.json").stat().st_mtime_ns for c in cells}
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert "0 cell(s) run, 4 already done" in capsys.readouterr().out
    assert stamps == {c.name: (c / "metrics.json").stat().st_mtime_ns for c in cells}
    # CPU runs are deterministic: the results table is byte-identical after --force
    before = (out / "tiny" / "results.parquet").read_bytes()
    only = cells[0].name[:6]
    assert main(["run", str(path), "--out", str(out), "--quiet", "--only", only, "--force"]) == 0
    assert (out / "tiny" / "results.parquet").read_bytes() == before
    assert first.equals(pl.read_parquet(out / "tiny" / "results.parquet"))


def test_a_failing_cell_is_recorded_and_the_others_go_on(tiny_run, monkeypatch, capsys):
    import harness.worker as worker

    path, out = tiny_run
    real = worker.run_cell
    calls = []

    def flaky(cell_dir, **kw):
        calls.append(cell_dir)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(cell_dir, **kw)

    monkeypatch.setattr(worker, "run_cell", flaky)
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 1
    failed = [c for c in cells_of(out) if (c / "FAILED.json").is_file()]
    assert len(failed) == 1 and not (failed[0] / "DONE").exists()
    record = json.loads((failed[0] / "FAILED.json").read_text())
    assert record["kind"] == "out_of_memory" and "batch_size" in record["hint"]
    assert sum((c / "DONE").is_file() for c in cells_of(out)) == 3
    run = json.loads((out / "tiny" / "run.json").read_text())
    assert sorted(c["status"] for c in run["cells"]) == ["done", "done", "done", "failed"]
    assert "FAILED" in capsys.readouterr().err
    monkeypatch.setattr(worker, "run_cell", real)
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0  # only the failed one runs


def test_isolated_workers_give_the_same_results(tiny_run, tmp_path):
    path, out = tiny_run
    label = "judged/answer_only/x1/s0"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--only", label]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / "iso"), "--quiet", "--only", label,
                 "--isolate"]) == 0
    a = pl.read_parquet(out / "tiny" / "results.parquet")
    b = pl.read_parquet(tmp_path / "iso" / "tiny" / "results.parquet")
    assert a.equals(b)


def test_worker_and_lm_eval_reject_unfinished_folders(tmp_path, capsys):
    assert main(["worker", str(tmp_path)]) == 2
    assert main(["lm-eval", str(tmp_path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_lm_eval_accuracy_equals_the_harness(tiny_run):
    from harness.lmeval import run_lm_eval

    path, out = tiny_run
    assert main(["run", str(path), "--out", str(out), "--quiet", "--only",
                 "judged/answer_only/x1/s0"]) == 0
    cell = next(c for c in cells_of(out) if (c / "DONE").is_file())
    ours = json.loads((cell / "metrics.json").read_text())["units"]["route"]["metrics"]
    theirs = run_lm_eval(cell, batch_size=8, device="cpu", units=["route"])
    assert abs(theirs["route"]["acc"] - ours["accuracy"]) <= 1e-9
    assert 0.0 < ours["accuracy"] < 1.0 or ours["accuracy"] == 1.0


def test_export_lm_eval_writes_one_task_per_unit(tiny, tmp_path, capsys):
    path = tiny()
    assert main(["export-lm-eval", str(path), "--out", str(tmp_path / "tasks")]) == 0
    import yaml

    route = yaml.safe_load((tmp_path / "tasks" / "route.yaml").read_text())
    assert route["output_type"] == "multiple_choice"
    assert route["doc_to_choice"] == ["billing", "shipping"]
    esc = yaml.safe_load((tmp_path / "tasks" / "esc.yaml").read_text())
    assert esc["output_type"] == "generate_until"
