"""The Ray executor on a real local Ray cluster (head on localhost, 2 CPUs, one per module):
identical results to the local executor, resume, a failing cell, a lost worker retried, and
Ctrl-C cancelling the submitted tasks with a resumable folder left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import harness.execute.ray_executor as ray_executor
from harness.cli import main
from harness.execute.base import CellResult, CellTask
from tests.helpers import REPO, TINY_STUDENT, route_data

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

FAST_EVAL = {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2}
GOOD, EMPTY = "judged/answer_only/x1/s0", "hard_b/answer_only/x1/s0"


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster for the whole module; yields its address."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 2**20,
             runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _die_in_the_task(monkeypatch: pytest.MonkeyPatch, lose: Path) -> None:
    """Wrap the executor's Ray task so its worker process exits (``os._exit``: no clean-up, no
    exception, what a killed process looks like) while a file ``lose/<cell id>`` holds a count
    above 0, decremented on each death. The wrapper is a closure, so Ray ships it by value to
    the task's process; the count is a file because every attempt runs in a new process."""
    real = ray_executor._ray_cell

    def ray_cell(task: CellTask, board: Any) -> CellResult:
        marker = lose / task.cell_id
        left = int(marker.read_text()) if marker.is_file() else 0
        if left > 0:
            marker.write_text(str(left - 1))
            os._exit(70)
        return real(task, board)

    monkeypatch.setattr(ray_executor, "_ray_cell", ray_cell)


@pytest.fixture
def exp(tiny):
    train, ev = route_data(24, 10)
    return tiny(spec={
        "student": TINY_STUDENT, "evaluation": FAST_EVAL,
        # a bucket that selects nothing: its cells fail on the node (empty training set)
        "buckets": {"single_a": {"teachers": ["a"], "select": "all"},
                    "judged": {"select": "judge_winner"},
                    "hard_b": {"teachers": ["b"], "pools": ["hard"]}},
        "fields": {"answer_only": {}},
        "execution": {"cpus": 1, "max_retries": 1}}, samples=train, eval=ev)


def _run(path: Path, out: Path, *extra: str) -> int:
    return main(["run", str(path), "--out", str(out), "--quiet", "--threads", "1", *extra])


def _cells(out: Path) -> dict[str, dict]:
    return {c["label"]: c for c in json.loads((out / "tiny" / "run.json").read_text())["cells"]}


def test_ray_gives_the_local_results_and_resumes(cluster, exp, tmp_path, capsys):
    local, remote = tmp_path / "local", tmp_path / "ray"
    only = ["--only", GOOD, "--only", "single_a/answer_only/x1/s0"]
    assert _run(exp, local, *only) == 0
    assert _run(exp, remote, "--executor", "ray", *only) == 0
    a = pl.read_parquet(local / "tiny" / "results.parquet")
    b = pl.read_parquet(remote / "tiny" / "results.parquet")
    assert a.height > 0 and a.equals(b)
    cells = _cells(remote)
    assert cells[GOOD]["executor"] == "ray" and cells[GOOD]["attempts"] == 1
    assert cells[GOOD]["node"]
    stamps = {c: (c / "metrics.json").stat().st_mtime_ns
              for c in (remote / "tiny" / "cells").iterdir() if (c / "DONE").is_file()}
    capsys.readouterr()
    assert _run(exp, remote, "--executor", "ray", *only) == 0
    assert "0 cell(s) run, 2 already done" in capsys.readouterr().out
    assert stamps == {c: (c / "metrics.json").stat().st_mtime_ns for c in stamps}


def test_a_failing_cell_is_recorded_and_a_lost_worker_retried(cluster, exp, tmp_path,
                                                               monkeypatch):
    lose = tmp_path / "lose"
    lose.mkdir()
    _die_in_the_task(monkeypatch, lose)
    out = tmp_path / "runs"
    # first learn the good cell's id, then have its worker die once on the node
    assert main(["compose", str(exp), "--cell", GOOD, "--out", str(tmp_path / "c")]) == 0
    (good_id,) = [p.name for p in (tmp_path / "c").iterdir()]
    (lose / good_id).write_text("1")
    assert _run(exp, out, "--executor", "ray", "--only", GOOD, "--only", EMPTY) == 1
    cells = _cells(out)
    assert cells[GOOD]["status"] == "done" and cells[GOOD]["attempts"] == 2
    assert (lose / good_id).read_text() == "0"
    assert cells[EMPTY]["status"] == "failed" and cells[EMPTY]["attempts"] == 1
    failed = json.loads((out / "tiny" / "cells" / cells[EMPTY]["cell_id"] / "FAILED.json")
                        .read_text())
    assert "training set is empty" in failed["error"]


def test_ctrl_c_cancels_the_tasks_and_the_folder_resumes(cluster, exp, tmp_path):
    address = cluster
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(exp), "--out", str(out), "--quiet",
           "--threads", "1", "--executor", "ray", "--address", address,
           "--only", GOOD, "--only", "single_a/answer_only/x1/s0"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cells = out / "tiny" / "cells"
    deadline = time.time() + 60  # until both cells are composed and submitted
    while time.time() < deadline and len(list(cells.glob("*/manifest.json"))
                                         if cells.exists() else []) < 2:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    for c in cells.iterdir():  # a DONE only ever next to complete results
        if (c / "DONE").is_file():
            json.loads((c / "metrics.json").read_text())
    assert _run(exp, out, "--executor", "ray", "--only", GOOD, "--only",
                "single_a/answer_only/x1/s0") == 0
    assert all((c / "DONE").is_file() for c in cells.iterdir())
