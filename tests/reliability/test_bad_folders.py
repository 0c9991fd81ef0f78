"""Run folders given to ``report`` and ``gate``: missing, foreign or corrupt -> exit 2, located."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from tests.helpers.synth import spec_dict, write_run


@pytest.fixture
def run_dir(tmp_path):
    import numpy as np

    spec = spec_dict(["a", "b"], ["plain"], [1.0])
    cells = {(b, "plain", 1.0): {"route": (np.arange(60) % 3 > 0).astype(int)} for b in "ab"}
    return write_run(tmp_path, spec, cells)


@pytest.mark.parametrize("command", ["report", "gate"])
def test_missing_folder(command, tmp_path, capsys):
    assert main([command, str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such run folder" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["results", "run_json", "metrics", "no_results"])
@pytest.mark.parametrize("command", ["report", "gate"])
def test_corrupt_folder(command, damage, run_dir, tmp_path, capsys):
    if damage == "results":
        (run_dir / "results.parquet").write_bytes(b"PAR1 broken")
    elif damage == "run_json":
        (run_dir / "run.json").write_text("{not json")
    elif damage == "metrics":
        cell = next((run_dir / "cells").iterdir())
        (cell / "metrics.json").write_text('{"units": ')
    else:
        (run_dir / "results.parquet").unlink()
    args = [command, str(run_dir)] + (["--out", str(tmp_path / "r.html")]
                                      if command == "report" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(run_dir) in err
    assert not (tmp_path / "r.html").exists()  # never a half-written output


def test_results_of_another_schema_version(run_dir, capsys):
    import polars as pl

    df = pl.read_parquet(run_dir / "results.parquet").with_columns(pl.lit(99).alias(
        "schema_version"))
    df.write_parquet(run_dir / "results.parquet")
    assert main(["gate", str(run_dir)]) == 2
    assert "schema version" in capsys.readouterr().err


def test_a_ten_megabyte_prompt_is_handled(tiny, capsys):
    from tests.helpers import tiny_samples

    samples = tiny_samples()
    samples[0]["prompt"] = "charged twice " * 750_000  # ~10 MB
    path = tiny(samples=samples)
    assert main(["validate", str(path)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_run_json_of_an_older_version_is_refused(run_dir, capsys):
    run = json.loads((run_dir / "run.json").read_text())
    run.pop("spec")
    (run_dir / "run.json").write_text(json.dumps(run))
    assert main(["gate", str(run_dir)]) == 2
    assert "not written by this version" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["report", "gate"])
def test_metrics_with_a_missing_key_is_located(command, run_dir, tmp_path, capsys):
    cell = sorted((run_dir / "cells").iterdir())[0]
    metrics = json.loads((cell / "metrics.json").read_text())
    del metrics["train"]["train_seconds"]  # e.g. renamed by a newer worker
    (cell / "metrics.json").write_text(json.dumps(metrics))
    out = tmp_path / "r.html"
    args = [command, str(run_dir)] + (["--out", str(out)] if command == "report" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert str(cell / "metrics.json") in err and "train.train_seconds" in err
    assert not out.exists() and not (run_dir / "analysis.json").exists()


@pytest.mark.parametrize("command", ["report", "gate"])
def test_run_json_of_an_unknown_schema_version_is_refused(command, run_dir, tmp_path, capsys):
    run = json.loads((run_dir / "run.json").read_text())
    run["schema_version"] = 99
    (run_dir / "run.json").write_text(json.dumps(run))
    out = tmp_path / "r.html"
    args = [command, str(run_dir)] + (["--out", str(out)] if command == "report" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(run_dir / "run.json") in err
    assert "schema_version" in err and "99" in err
    assert not out.exists() and not (run_dir / "analysis.json").exists()
