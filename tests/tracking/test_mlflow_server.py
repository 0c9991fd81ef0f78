"""MLflow tracking against a real tracking server (``mlflow server`` on 127.0.0.1, started and
stopped here), read back through MLflow's client: the nested runs, their params, metrics and
artifacts, a resume that logs nothing twice, ``--force`` giving a cell a new nested run, and
the gate's decision on the parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.cli import main

BASELINE = "single_a/answer_only/x1/s0"


@pytest.fixture
def server(tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tracking server on 127.0.0.1 with a SQLite store and local artifacts; its URI."""
    mlflow = Path(sys.executable).parent / "mlflow"
    uri = f"http://127.0.0.1:{free_port}"
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--host", "127.0.0.1", "--port", str(free_port), "--workers",
         "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--default-artifact-root", str(tmp_path / "server-artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        client = MlflowClient(uri)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # poll, do not back off
        deadline = time.monotonic() + 120
        while True:
            try:
                client.search_experiments(max_results=1)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("mlflow server did not start:\n" + (
                        tmp_path / "server.log").read_text()[-3000:]) from None
                time.sleep(0.5)
        monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.slow
def test_a_tracking_server_gets_the_run_once_and_the_gate(finished, server, tmp_path, capsys):
    path, out = finished(tracking={"mlflow": {"uri": server, "experiment": "kd-tiny",
                                              "required": True}})
    run_dir = out / "tiny"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
    client = MlflowClient(server)
    exp = client.get_experiment_by_name("kd-tiny")
    assert exp is not None

    def runs() -> tuple[list, list]:
        found = client.search_runs([exp.experiment_id], max_results=1000)
        nested = [r for r in found if "mlflow.parentRunId" in r.data.tags]
        return [r for r in found if r not in nested], nested

    (parent,), nested = runs()
    assert parent.info.status == "FINISHED" and len(nested) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in nested} == {parent.info.run_id}
    base = next(r for r in nested if r.info.run_name == BASELINE)
    assert base.data.params["bucket"] == "single_a" and base.data.params["seed"] == "0"
    cell = run_dir / "cells" / base.data.params["cell_id"]
    assert 0 <= base.data.metrics["route/accuracy"] <= 1
    assert "route/accuracy/source/synthetic" in base.data.metrics
    assert base.data.metrics["latency/latency_p95_ms"] > 0
    assert client.get_metric_history(base.info.run_id, "train/loss")
    got = client.download_artifacts(base.info.run_id, "train_log.jsonl", str(tmp_path))
    assert Path(got).read_bytes() == (cell / "train_log.jsonl").read_bytes()

    # resumed: nothing logged twice
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    (again,), nested_again = runs()
    assert again.info.run_id == parent.info.run_id
    assert {r.info.run_id for r in nested_again} == {r.info.run_id for r in nested}

    # --force recomputes the baseline: a new nested run; the old one is no longer current
    assert main(["run", str(path), "--out", str(out), "--quiet", "--only", BASELINE,
                 "--force"]) == 0
    _, nested_forced = runs()
    assert len(nested_forced) == 5
    of_base = [r for r in nested_forced if r.info.run_name == BASELINE]
    current = {r.info.run_id: r.data.tags["harness.current"] for r in of_base}
    assert current == {base.info.run_id: "false",
                       next(iter(set(current) - {base.info.run_id})): "true"}

    capsys.readouterr()
    status = main(["gate", str(run_dir)])
    decision = capsys.readouterr().out.splitlines()[0].removeprefix("DECISION: ")
    tags = client.get_run(parent.info.run_id).data.tags
    assert tags["harness.gate.decision"] == decision
    assert tags["harness.gate.exit_status"] == str(status)
