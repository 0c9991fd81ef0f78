"""The local executor: slot planning (pure), the worker-process pool on CPU, lost workers,
checkpoint policies, and the shipping of a cell's files (``DONE`` last)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import IO, Any

import polars as pl
import pytest

import harness.execute.local as local
from harness.cli import main
from harness.errors import InputError
from harness.execute.base import CellResult, CellTask
from harness.execute.local import Slot, plan_slots, visible_gpus
from harness.execute.shipping import write_result
from harness.store.folder import CellFolder
from tests.helpers import TINY_STUDENT, route_data

FAST_EVAL = {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2}


def test_slots_pack_fractional_cells_onto_every_gpu():
    assert plan_slots([], 0.25) == []  # no GPU: the cells run in process
    assert plan_slots(["0", "1"], 0) == []  # CPU-only cells
    assert plan_slots(["0", "1"], None) == [Slot("gpu0", ("0",)), Slot("gpu1", ("1",))]
    four = plan_slots(["0", "1"], 0.25)
    assert len(four) == 8 and [s.gpus for s in four] == [("0",)] * 4 + [("1",)] * 4
    assert four[3].name == "gpu0.3"
    assert len(plan_slots(["0"], 0.3)) == 3  # floor(1 / 0.3)
    assert len(plan_slots(["0"], 1 / 3)) == 3  # no rounding surprise
    assert plan_slots(["0", "1", "2"], 2) == [Slot("gpu0+1", ("0", "1"))]  # GPU 2 left idle
    with pytest.raises(InputError, match="execution.gpus: a cell needs 4 GPUs but 2"):
        plan_slots(["0", "1"], 4)


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({}, count=2) == ["0", "1"]


@pytest.fixture
def exp(tiny):
    train, ev = route_data(24, 10)
    return lambda execution=None: tiny(spec={
        "student": TINY_STUDENT, "evaluation": FAST_EVAL,
        **({"execution": execution} if execution else {})}, samples=train, eval=ev)


def _run(path: Path, out: Path, *extra: str) -> int:
    return main(["run", str(path), "--out", str(out), "--quiet", "--threads", "1", *extra])


def _cells(out: Path) -> dict[str, dict]:
    return {c["label"]: c for c in json.loads((out / "tiny" / "run.json").read_text())["cells"]}


@pytest.mark.slow
def test_a_pool_of_worker_processes_gives_the_inline_results(exp, tmp_path, monkeypatch):
    inline = tmp_path / "inline"
    assert _run(exp(), inline) == 0
    # one "GPU" (this machine has none: the workers see CUDA_VISIBLE_DEVICES=0 and run on
    # the CPU), half a GPU per cell: two long-lived worker processes take the four cells
    monkeypatch.setattr(local, "visible_gpus", lambda: ["0"])
    pool = tmp_path / "pool"
    assert _run(exp({"gpus": 0.5}), pool) == 0
    a = pl.read_parquet(inline / "tiny" / "results.parquet")
    b = pl.read_parquet(pool / "tiny" / "results.parquet")
    assert a.equals(b)
    cells = _cells(pool)
    assert {c["node"].rsplit("/", 1)[1] for c in cells.values()} <= {"gpu0.0", "gpu0.1"}
    assert all(c["executor"] == "local" and c["attempts"] == 1 for c in cells.values())
    for c in (pool / "tiny" / "cells").iterdir():  # the same files as an in-process worker
        assert sorted(p.name for p in c.iterdir() if p.name != "predictions.parquet") == sorted(
            p.name for p in (inline / "tiny" / "cells" / c.name).iterdir()
            if p.name != "predictions.parquet")
    assert _run(exp({"gpus": 0.5}), pool) == 0  # resume: nothing to run
    assert _cells(pool) == cells  # skipped cells keep where they ran


def _kill_workers_under(monkeypatch: pytest.MonkeyPatch, deaths: dict[str, int]) -> None:
    """Kill a pool's worker process (SIGKILL, from this side) right after it was sent a cell
    whose label has deaths left in ``deaths`` (decremented on each kill): a worker lost under
    the cell, as when the OS kills it, with no hook in the worker's code."""
    procs: dict[int, subprocess.Popen[bytes]] = {}  # id of a process's stdin -> the process
    real_ensure, real_send = local._Worker.ensure, local.send

    def ensure(self: local._Worker, threads: int) -> subprocess.Popen[bytes]:
        proc = real_ensure(self, threads)
        procs[id(proc.stdin)] = proc
        return proc

    def send(stream: IO[bytes], obj: Any) -> None:
        real_send(stream, obj)
        if isinstance(obj, CellTask) and deaths.get(obj.label, 0) > 0:
            deaths[obj.label] -= 1
            procs[id(stream)].kill()

    monkeypatch.setattr(local._Worker, "ensure", ensure)
    monkeypatch.setattr(local, "send", send)


def test_a_lost_worker_is_retried_then_given_up(exp, tmp_path, monkeypatch):
    path = exp({"max_retries": 1})
    label = "judged/answer_only/x1/s0"
    out = tmp_path / "runs"
    monkeypatch.setattr(local, "visible_gpus", lambda: ["0"])
    # the first attempt's worker is killed under the cell; the retry finishes the cell
    deaths = {label: 1}
    _kill_workers_under(monkeypatch, deaths)
    assert _run(path, out, "--only", label) == 0
    entry = _cells(out)[label]
    assert entry["status"] == "done" and entry["attempts"] == 2
    assert deaths[label] == 0
    # a cell whose worker dies on every attempt fails after 1 + max_retries, the run goes on
    deaths[label] = 5
    assert _run(path, out, "--only", label, "--force") == 1
    entry = _cells(out)[label]
    failure = json.loads((out / "tiny" / "cells" / entry["cell_id"] / "FAILED.json").read_text())
    assert failure["kind"] == "worker_lost" and "2 time(s)" in failure["error"]
    assert entry["status"] == "failed" and entry["attempts"] == 2
    assert deaths[label] == 3  # bounded: two deaths, no more


def test_dropped_and_stored_checkpoints(exp, tmp_path):
    label = "judged/answer_only/x1/s0"
    drop = tmp_path / "drop"
    assert _run(exp({"checkpoint": "drop"}), drop, "--only", label) == 0
    cell = next((drop / "tiny" / "cells").iterdir())
    assert (cell / "DONE").is_file() and (cell / "metrics.json").is_file()
    assert not (cell / "model").exists()
    store = tmp_path / "ckpt"
    out = tmp_path / "stored"
    assert _run(exp({"checkpoint": "storage", "storage": str(store)}), out, "--only",
                label) == 0
    cell = next((out / "tiny" / "cells").iterdir())
    assert not (cell / "model").exists()
    model = store / "tiny" / cell.name / "model"
    assert (model / "config.json").is_file()
    assert _cells(out)[label]["checkpoint"] == str(model)


def test_write_result_refuses_a_foreign_done_and_unsafe_names(tmp_path):
    folder = CellFolder(tmp_path / "abc")
    folder.path.mkdir()
    with pytest.raises(ValueError, match="DONE"):
        write_result(folder, CellResult("abc", ok=True, files={"DONE": b"xyz\n"}))
    with pytest.raises(ValueError, match="unsafe"):
        write_result(folder, CellResult("abc", ok=True, files={"../evil": b"", "DONE": b"abc"}))
    assert not folder.done.exists()
    write_result(folder, CellResult("abc", ok=True, files={
        "metrics.json": b"{}", "model/config.json": b"{}", "DONE": b"abc\n"}))
    assert folder.is_done("abc") and (folder.model / "config.json").read_bytes() == b"{}"
