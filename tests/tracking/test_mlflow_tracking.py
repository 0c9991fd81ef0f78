"""MLflow tracking against the embedded store (``tracking: {mlflow: {}}``), read back through
MLflow's own client: what ``harness run`` logs per cell, that a resumed run logs nothing twice,
that ``gate`` and ``report`` reach the parent run, that an unreachable tracker or a logging
error never breaks a run, and that ``tracking:`` stays out of cell ids."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from harness.cli import main
from harness.store.contracts import FailureRecord
from harness.store.folder import RunFolder
from tests.helpers import REPO

BASELINE = "single_a/answer_only/x1/s0"


def store_of(run_dir: Path) -> MlflowClient:
    """A client of the run folder's embedded store."""
    return MlflowClient(f"sqlite:///{run_dir.resolve() / 'mlflow.db'}")


def tracked(client: MlflowClient, experiment: str = "tiny") -> tuple[list[Run], list[Run]]:
    """(parent runs, nested runs) of ``experiment``, not deleted."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r}"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    nested = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return [r for r in runs if r not in nested], nested


def test_embedded_store_holds_the_run_its_cells_gate_and_report(finished, tmp_path, capsys,
                                                                monkeypatch):
    path, out = finished(tracking={"mlflow": {}})
    monkeypatch.chdir(tmp_path)  # where MLflow's default ./mlruns would appear
    run_dir = out / "tiny"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    client = store_of(run_dir)
    (parent,), nested = tracked(client)
    assert parent.info.status == "FINISHED" and parent.info.run_name == "tiny"
    assert parent.data.metrics == {"cells_done": 4.0, "cells_failed": 0.0, "cells_missing": 0.0}
    assert parent.data.tags["harness.run_dir"] == str(run_dir.resolve())
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["run.json"]
    record = json.loads((run_dir / "tracking.json").read_text())
    assert record["current"] == "embedded"
    assert record["stores"]["embedded"]["parent_run_id"] == parent.info.run_id
    # artifacts beside the store, not in the working directory's ./mlruns
    assert (run_dir / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()

    # one nested run per cell, named by its label, with the cell's axes as params
    assert sorted(r.data.params["cell_id"] for r in nested) == sorted(
        p.name for p in (run_dir / "cells").iterdir())
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in nested)
    assert all(r.info.status == "FINISHED" for r in nested)
    base = next(r for r in nested if r.info.run_name == BASELINE)
    params = base.data.params
    assert {k: params[k] for k in ("bucket", "fields", "scale", "seed", "is_baseline",
                                   "label")} == {
        "bucket": "single_a", "fields": "answer_only", "scale": "1.0", "seed": "0",
        "is_baseline": "true", "label": BASELINE}
    assert params["student"].startswith("causal_lm config(") and "layers=1" in params["student"]
    assert params["student.train.lr"] == "0.005" and params["bucket.select"] == "all"

    # every results row of the cell (unit x metric x slice), with its value
    cell_id = params["cell_id"]
    rows = pl.read_parquet(run_dir / "results.parquet").filter(pl.col("cell_id") == cell_id)
    metrics = base.data.metrics
    assert len([k for k in metrics if k.startswith("route/")]) == rows.height
    for row in rows.iter_rows(named=True):
        key = f"route/{row['metric']}" + (
            "" if row["slice"] == "all" else "/" + row["slice"].replace("=", "/"))
        assert metrics[key] == pytest.approx(row["value"]), key
    assert "route/accuracy/source/real" in metrics
    lat = pl.read_parquet(run_dir / "latency.parquet").filter(pl.col("cell_id") == cell_id)
    for row in lat.iter_rows(named=True):
        assert metrics[f"latency/{row['metric']}"] == pytest.approx(row["value"])
    cell = RunFolder(run_dir).cell(cell_id)
    train = cell.read_metrics().train
    assert metrics["train_summary/train_seconds"] == pytest.approx(train["train_seconds"])
    # the training curve, one point per logged optimizer step
    log = [json.loads(line) for line in cell.train_log.read_text().splitlines()]
    history = client.get_metric_history(base.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(r["step"], r["loss"]) for r in log]
    # the cell's files as artifacts, byte for byte
    assert {a.path for a in client.list_artifacts(base.info.run_id)} == {
        "metrics.json", "train_log.jsonl", "spec.yaml"}
    got = client.download_artifacts(base.info.run_id, "metrics.json", str(tmp_path))
    assert Path(got).read_bytes() == cell.metrics.read_bytes()

    # a resumed run logs nothing twice and reopens the same parent
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    (again,), nested_again = tracked(client)
    assert again.info.run_id == parent.info.run_id
    assert sorted(r.info.run_id for r in nested_again) == sorted(r.info.run_id for r in nested)

    # gate and report add the decision, its reasons and the HTML to the parent
    capsys.readouterr()
    status = main(["gate", str(run_dir)])
    printed = capsys.readouterr().out.splitlines()
    tags = client.get_run(parent.info.run_id).data.tags
    assert printed[0] == f"DECISION: {tags['harness.gate.decision']}"
    assert tags["harness.gate.exit_status"] == str(status)
    assert tags["harness.gate.reasons"].splitlines()[0] in "\n".join(printed)
    # the report's first screen in two tags, as `harness gate` prints it
    assert printed[1] == f"  why: {tags['harness.gate.why']}"
    assert printed[2] == f"  next: {tags['harness.gate.next']}"
    assert tags["mlflow.note.content"].startswith(f"**DECISION: {tags['harness.gate.decision']}")
    got = client.download_artifacts(parent.info.run_id, "gate/decision.json", str(tmp_path))
    assert json.loads(Path(got).read_text())["decision"] == tags["harness.gate.decision"]
    html = tmp_path / "report" / "index.html"
    assert main(["report", str(run_dir), "--out", str(html)]) == 0
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "report")] == [
        "report/index.html"]
    assert "warning" not in capsys.readouterr().err


def test_a_failed_cell_is_a_failed_nested_run(finished):
    path, out = finished(tracking={"mlflow": {"experiment": "kd tiny"}})
    run = RunFolder(out / "tiny")
    victim = next(p.name for p in run.cells.iterdir())
    folder = run.cell(victim)
    folder.clear_done()
    folder.write_failure(FailureRecord(cell_id=victim, kind="out_of_memory",
                                       error="CUDA out of memory", hint="lower batch_size",
                                       traceback="..."))
    others = [p.name for p in run.cells.iterdir() if p.name != victim]
    # --only the others: the failed cell is not run again, but it is in the matrix
    assert main(["run", str(path), "--out", str(out), "--quiet",
                 *[a for o in others for a in ("--only", o)]]) == 0
    (parent,), nested = tracked(store_of(run.root), "kd tiny")
    assert parent.info.status == "FAILED" and parent.data.metrics["cells_failed"] == 1.0
    failed = [r for r in nested if r.info.status == "FAILED"]
    assert [r.data.params["cell_id"] for r in failed] == [victim]
    assert failed[0].data.tags["harness.error"] == "CUDA out of memory"
    assert failed[0].data.tags["harness.failure_kind"] == "out_of_memory"
    assert not failed[0].data.metrics
    assert [a.path for a in store_of(run.root).list_artifacts(failed[0].info.run_id)] == [
        "FAILED.json"]


def test_a_logging_error_is_a_warning_and_the_next_run_logs_the_rest(
        finished: Callable[..., tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path, out = finished(tracking={"mlflow": {}})
    calls: list[str] = []

    def full_disk(self: MlflowClient, run_id: str, local_path: str, *a: object) -> None:
        calls.append(local_path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MlflowClient, "log_artifact", full_disk)
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: tracking: logging into the embedded store " in err
    assert "No space left on device" in err and "next `harness run` logs the rest" in err
    (parent,), nested = tracked(store_of(out / "tiny"))
    assert len(nested) == 1 and "harness.logged" not in nested[0].data.tags  # half-logged
    assert parent.info.status == "RUNNING"

    monkeypatch.undo()
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    (again,), nested = tracked(store_of(out / "tiny"))
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert len(nested) == 4 and len({r.data.params["cell_id"] for r in nested}) == 4
    assert all(r.data.tags["harness.logged"] == "complete" for r in nested)


def test_an_unreachable_tracker_warns_and_the_run_completes(finished, free_port, capsys):
    path, out = finished()
    uri = f"http://127.0.0.1:{free_port}"
    t0 = time.perf_counter()
    assert main(["run", str(path), "--out", str(out), "--quiet", "--track", uri]) == 0
    seconds = time.perf_counter() - t0
    captured = capsys.readouterr()
    assert f"warning: tracking: {uri} cannot be reached" in captured.err
    assert "4 already done" in captured.out
    assert not (out / "tiny" / "tracking.json").exists()
    assert seconds < 60  # MLflow's own retries would wait minutes


def test_an_unreachable_required_tracker_stops_the_run_before_any_cell(tiny, tmp_path,
                                                                       free_port, capsys):
    uri = f"http://127.0.0.1:{free_port}"
    path = tiny(spec={"tracking": {"mlflow": {"uri": uri, "required": True}}})
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the MLflow tracker {uri} cannot be reached" in err
    assert "tracking.mlflow.required is true: nothing was run" in err
    assert f"{path}: tracking.mlflow.uri: " in err and "Traceback" not in err
    assert not (out / "tiny" / "cells").exists()


def test_tracking_stays_out_of_cell_ids(tiny, capsys):
    def ids(spec: dict[str, object]) -> list[str]:
        capsys.readouterr()
        assert main(["plan", str(tiny(spec=spec)), "--json"]) == 0
        return [c["cell_id"] for c in json.loads(capsys.readouterr().out)["cells"]]

    plain = ids({})
    assert len(plain) == 4
    assert ids({"tracking": {"mlflow": {}}}) == plain
    assert ids({"tracking": {"mlflow": {"uri": "http://mlflow:5000", "experiment": "x",
                                        "required": True}}}) == plain


@pytest.mark.parametrize(("section", "message"), [
    ({"mlflow": {"experimnt": "x"}}, "tracking.mlflow.experimnt: unknown key, did you mean "
                                     "'experiment'?"),
    ({"mlflow": {"uri": ""}}, "tracking.mlflow.uri: "),
    ({"mlflow": {"required": "yes"}}, "tracking.mlflow.required: "),
    ({"wandb": {}}, "tracking.wandb: unknown key"),
    ({"mlflow": {"uri": "https://kd:s3cret@mlflow.internal"}}, "MLFLOW_TRACKING_PASSWORD"),
])
def test_a_bad_tracking_section_is_a_located_error(tiny, capsys, section, message):
    path = tiny(spec={"tracking": section})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_plain_commands_do_not_import_mlflow(finished):
    path, out = finished()
    script = ("import sys\nfrom harness.cli import main\n"
              f"assert main(['validate', {str(path)!r}]) == 0\n"
              f"assert main(['run', {str(path)!r}, '--out', {str(out)!r}, '--quiet']) == 0\n"
              "print('MLFLOW=' + str('mlflow' in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "MLFLOW=False" in proc.stdout
    assert not (out / "tiny" / "mlflow.db").exists()
    assert not (out / "tiny" / "tracking.json").exists()


def test_a_password_in_track_is_refused_before_anything_runs(tiny, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", str(tiny()), "--out", str(out), "--quiet", "--track",
                 "https://kd:s3cret@mlflow.internal"]) == 2
    err = capsys.readouterr().err
    assert "--track: " in err and "MLFLOW_TRACKING_PASSWORD" in err
    assert not (out / "tiny" / "cells").exists()


def test_a_lost_record_finds_its_parent_and_an_untracked_run_turns_gate_off(finished, capsys):
    path, out = finished(tracking={"mlflow": {}})
    run_dir = out / "tiny"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    (parent,), nested = tracked(store_of(run_dir))
    (run_dir / "tracking.json").unlink()
    # the parent is found again by its run folder tag: nothing logged twice
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    (again,), nested_again = tracked(store_of(run_dir))
    assert again.info.run_id == parent.info.run_id and len(nested_again) == len(nested) == 4

    # a run without tracking: gate no longer logs into the store the last tracked run used
    set_off = path.read_text().replace("tracking:\n  mlflow: {}\n", "")
    assert "tracking" not in set_off
    path.write_text(set_off)
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert json.loads((run_dir / "tracking.json").read_text())["current"] is None
    main(["gate", str(run_dir)])
    assert "harness.gate.decision" not in store_of(run_dir).get_run(parent.info.run_id).data.tags
    assert "warning" not in capsys.readouterr().err


def test_track_overrides_the_section_and_keeps_artifacts_beside_its_database(
        finished, tmp_path, monkeypatch):
    path, out = finished(tracking={"mlflow": {}})
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "team" / "mlflow.db"
    db.parent.mkdir()
    assert main(["run", str(path), "--out", str(out), "--quiet", "--track",
                 f"sqlite:///{db}"]) == 0
    assert not (out / "tiny" / "mlflow.db").exists()  # --track wins over the section
    (parent,), nested = tracked(MlflowClient(f"sqlite:///{db}"))
    assert len(nested) == 4
    assert (db.parent / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    record = json.loads((out / "tiny" / "tracking.json").read_text())
    assert record["current"] == f"sqlite:///{db}"
