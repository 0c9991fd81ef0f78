"""Cells in parallel on the CPU, one thread count per run: how many CPU workers and threads a
run gets and from where, the executor each count picks, the mixed-thread warning, the run
record, and (slow) a CPU pool under Ctrl-C and a killed driver with several cells in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness.execute.local as local
import harness.run as hrun
from harness.cli import main
from harness.errors import InputError
from harness.execute.base import CheckpointPolicy
from harness.execute.local import (
    WORKERS_ENV,
    InlineExecutor,
    PoolExecutor,
    Slot,
    cpu_workers,
    local_executor,
)
from harness.matrix import Axes, Cell
from harness.store.folder import RunFolder
from harness.threads import DEFAULT_THREADS, run_threads, thread_env
from tests.helpers import REPO, TINY_STUDENT, route_data

FAST_EVAL = {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2}


def test_the_thread_count_is_the_runs_never_the_machines():
    assert DEFAULT_THREADS == 1
    assert run_threads(None, None) == (1, "default")
    assert run_threads(None, 4) == (4, "execution.threads")
    assert run_threads(2, 4) == (2, "--threads")
    env = thread_env(3)
    assert env == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3"}


def test_a_cell_computes_with_the_runs_threads_and_gives_them_back():
    import torch

    from harness.threads import cell_numerics, numerics_record

    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    with cell_numerics(1, "cpu"):
        assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled()
        rec = numerics_record(torch.device("cpu"), model=torch.nn.Linear(2, 2),
                              environ={"ATEN_CPU_CAPABILITY": "avx2", "HOME": "/x"})
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    assert rec["threads"] == 1 and rec["deterministic"] is True
    assert rec["dtype"] == "float32" and rec["autocast"] is None
    assert rec["numerics_env"] == {"ATEN_CPU_CAPABILITY": "avx2"}  # only what changes numbers
    assert rec["cpu_capability"] and rec["torch_blas"] and rec["numpy_blas"]
    assert rec["tokenizers"] and rec["numpy"]


def test_cpu_workers_come_from_the_flag_the_environment_the_section_or_the_cores():
    none: dict[str, str] = {}
    assert cpu_workers(3, 5, threads=1, environ={WORKERS_ENV: "2"}) == (3, "--workers")
    assert cpu_workers(None, 5, threads=1, environ={WORKERS_ENV: "2"}) == (2, "$HARNESS_WORKERS")
    assert cpu_workers(None, 5, threads=1, environ=none) == (5, "execution.cpu_workers")
    assert cpu_workers(None, None, threads=1, environ=none, cores=8) == (8, "cores")
    assert cpu_workers(None, None, threads=2, environ=none, cores=8) == (4, "cores")
    assert cpu_workers(None, None, threads=4, environ=none, cores=2) == (1, "cores")
    # execution.memory per cell caps the default by what the machine has free
    gib = 2**30
    assert cpu_workers(None, None, threads=1, environ=none, cores=8, memory=4 * gib,
                       free=10 * gib) == (2, "cores, execution.memory")
    assert cpu_workers(None, None, threads=1, environ=none, cores=8, memory=64 * gib,
                       free=10 * gib)[0] == 1
    for bad in ("0", "two", "-1", "1.5"):
        with pytest.raises(InputError, match="HARNESS_WORKERS"):
            cpu_workers(None, None, threads=1, environ={WORKERS_ENV: bad})


def test_one_cpu_worker_runs_in_process_more_run_a_pool_of_cpu_slots():
    keep = CheckpointPolicy()
    common = {"per_cell_gpus": None, "device": None, "threads": 1, "checkpoint": keep,
              "max_retries": 2, "gpus": []}
    assert isinstance(local_executor(isolate=False, workers=1, **common), InlineExecutor)
    pool = local_executor(isolate=False, workers=3, **common)
    assert isinstance(pool, PoolExecutor)
    assert [w.slot for w in pool._workers] == [Slot("cpu0"), Slot("cpu1"), Slot("cpu2")]
    assert pool.threads == 1 and not pool.fresh
    assert "3 worker process(es): cpu0, cpu1, cpu2 (1 torch thread(s) each)" in local.describe(
        pool)
    pool.close()
    iso = local_executor(isolate=True, workers=1, **common)
    assert isinstance(iso, PoolExecutor) and iso.fresh and len(iso._workers) == 1
    iso.close()
    # GPU slots take precedence; their workers compute with the run's threads, not cores/slots
    gpu = local_executor(isolate=False, workers=4, **{**common, "gpus": ["0"],
                                                      "per_cell_gpus": 0.5})
    assert [w.slot.name for w in gpu._workers] == ["gpu0.0", "gpu0.1"] and gpu.threads == 1
    gpu.close()
    # --device cpu ignores the GPUs: CPU slots
    cpu = local_executor(isolate=False, workers=2, **{**common, "gpus": None, "device": "cpu"})
    assert [w.slot.name for w in cpu._workers] == ["cpu0", "cpu1"]
    cpu.close()


def _finished(run: RunFolder, cell_id: str, threads: int | None) -> None:
    folder = run.cell(cell_id)
    folder.path.mkdir(parents=True)
    env = {} if threads is None else {"threads": threads}
    folder.metrics.write_text(json.dumps({"environment": env}))
    folder.mark_done(cell_id)


def _cell(cell_id: str) -> Cell:
    return Cell(axes=Axes("b", "f", 1.0, 0), cell_id=cell_id, effective={}, is_baseline=False)


def test_finished_cells_with_another_thread_count_are_warned_about(tmp_path, capsys):
    run = RunFolder(tmp_path / "exp")
    _finished(run, "aaa", 2)
    _finished(run, "bbb", 2)
    _finished(run, "ccc", 1)
    _finished(run, "ddd", None)  # from before the count was recorded: not counted
    cells = [_cell(c) for c in ("aaa", "bbb", "ccc", "ddd", "eee")]
    assert hrun.warn_mixed_threads(run, cells, 1, "default")
    err = capsys.readouterr().err
    assert "(2 cell(s) with 2)" in err and "this run's 1 (default)" in err
    assert "--threads 2" in err and "--force" in err
    assert not hrun.warn_mixed_threads(run, cells[2:], 1, "default")  # same count: silent
    assert capsys.readouterr().err == ""
    assert hrun.warn_mixed_threads(run, cells, 4, "--threads")
    assert "(1 cell(s) with 1, 2 cell(s) with 2)" in capsys.readouterr().err


def test_threads_and_workers_flags_reach_the_run(tiny, tmp_path, monkeypatch):
    seen: dict = {}

    def fake(loaded, data, cells, out, **kw):
        seen.update(kw)
        raise KeyboardInterrupt  # stop here: only the arguments matter

    monkeypatch.setattr(hrun, "run_cells", fake)
    path = tiny()
    assert main(["run", str(path), "--out", str(tmp_path), "--threads", "2",
                 "--workers", "3"]) == 130
    assert seen["threads"] == 2 and seen["workers"] == 3
    for flag in ("--threads", "--workers"):
        with pytest.raises(SystemExit):  # argparse: exit 2 with a usage message
            main(["run", str(path), flag, "0"])


# -- a CPU pool end to end -------------------------------------------------------------------


@pytest.fixture
def exp(tiny):
    train, ev = route_data(24, 10)
    return tiny(spec={"student": TINY_STUDENT, "evaluation": FAST_EVAL}, samples=train, eval=ev)


def _workers_of(tag: str) -> list[int]:
    """Pids of slot worker processes started under the environment tag ``tag``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
            if b"harness.execute.slot_worker" in cmd and (
                    f"HARNESS_TEST_TAG={tag}".encode() in (proc / "environ").read_bytes()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _wait(pred, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_cpu_pool_survives_a_killed_driver_and_ctrl_c(exp, tmp_path):
    out, tmp = tmp_path / "runs", tmp_path / "tmp"
    tmp.mkdir()
    tag = str(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), WORKERS_ENV: "2", "TMPDIR": str(tmp),
           "HARNESS_TEST_TAG": tag}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(exp), "--out", str(out)]
    cells = out / "tiny" / "cells"

    # a driver killed outright: its two workers end themselves, nothing finished is lost
    proc = subprocess.Popen(cmd + ["--quiet"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert _wait(lambda: len(_workers_of(tag)) == 2, 120), "two workers never started"
    proc.kill()
    proc.wait()
    assert _wait(lambda: not _workers_of(tag), 15), "orphaned workers kept running"

    # Ctrl-C with cells in flight: exit 130, workers gone, their temporaries removed
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert _wait(lambda: len(_workers_of(tag)) == 2 and any(cells.glob("*/DONE")), 180)
    proc.send_signal(signal.SIGINT)
    said, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert "local pool of 2 worker process(es): cpu0, cpu1" in said + err  # progress header
    assert _wait(lambda: not _workers_of(tag), 15)
    assert not list(tmp.glob("harness-pool-*")), "the pool's temporaries were left behind"
    done = {c.name: (c / "metrics.json").stat().st_mtime_ns for c in cells.iterdir()
            if (c / "DONE").is_file()}
    for c in done:  # a DONE only ever next to complete results
        json.loads((cells / c / "metrics.json").read_text())

    # resume: only the unfinished cells run, with the same thread count
    assert subprocess.run(cmd + ["--quiet"], env=env, capture_output=True,
                          check=False).returncode == 0
    assert all((c / "DONE").is_file() for c in cells.iterdir())
    assert done == {c: (cells / c / "metrics.json").stat().st_mtime_ns for c in done}
    run = json.loads((out / "tiny" / "run.json").read_text())
    assert run["numerics"] == {"threads": 1, "threads_from": "default",
                               "finished_cells_by_threads": {"1": 4}}
