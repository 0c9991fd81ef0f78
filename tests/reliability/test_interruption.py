"""No lost work: killed runs resume to the same results; faults fail one cell, not the run."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from tests.helpers import REPO, TINY_STUDENT, route_data

FAST_EVAL = {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2}


@pytest.fixture
def exp(tiny):
    train, ev = route_data(24, 10)
    return tiny(spec={"student": TINY_STUDENT, "evaluation": FAST_EVAL}, samples=train, eval=ev)


def _run_cmd(exp: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", str(exp), "--out", str(out), "--quiet"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.slow
def test_sigkill_five_times_then_resume_gives_identical_results(exp, tmp_path):
    reference = tmp_path / "ref"
    assert subprocess.run(_run_cmd(exp, reference), env=_env(), capture_output=True,
                          check=False).returncode == 0
    out = tmp_path / "killed"
    rng = random.Random(0)
    trained: dict[str, int] = {}
    for _ in range(5):
        proc = subprocess.Popen(_run_cmd(exp, out), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cells = out / "tiny" / "cells"
        for done in cells.glob("*/DONE") if cells.exists() else []:
            # a finished cell is never trained again: its metrics keep their first mtime
            stamp = (done.parent / "metrics.json").stat().st_mtime_ns
            assert trained.setdefault(done.parent.name, stamp) == stamp
            # and a DONE is only ever next to complete, parseable results
            json.loads((done.parent / "metrics.json").read_text())
    assert subprocess.run(_run_cmd(exp, out), env=_env(), capture_output=True,
                          check=False).returncode == 0
    for cell, stamp in trained.items():
        assert (out / "tiny" / "cells" / cell / "metrics.json").stat().st_mtime_ns == stamp
    assert ((out / "tiny" / "results.parquet").read_bytes()
            == (reference / "tiny" / "results.parquet").read_bytes())


@pytest.mark.slow
def test_sigint_stops_cleanly_and_resumes(exp, tmp_path):
    out = tmp_path / "runs"
    proc = subprocess.Popen(_run_cmd(exp, out), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "tiny" / "cells").glob("*/DONE")
                                             if (out / "tiny" / "cells").exists() else []):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert main(["run", str(exp), "--out", str(out), "--quiet"]) == 0
    assert all((c / "DONE").is_file() for c in (out / "tiny" / "cells").iterdir())


@pytest.mark.slow
def test_full_disk_fails_the_cell_with_a_hint_and_the_others_go_on(exp, tmp_path,
                                                                   monkeypatch, capsys):
    import harness.store.folder as folder  # writes every contract file of the cell

    real = folder.atomic_write_json
    calls = {"n": 0}

    def full_disk(path, obj):
        if path.name == "metrics.json":
            calls["n"] += 1
            if calls["n"] == 1:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, obj)

    monkeypatch.setattr(folder, "atomic_write_json", full_disk)
    out = tmp_path / "runs"
    assert main(["run", str(exp), "--out", str(out), "--quiet"]) == 1
    failed = [c for c in (out / "tiny" / "cells").iterdir() if (c / "FAILED.json").is_file()]
    assert len(failed) == 1
    record = json.loads((failed[0] / "FAILED.json").read_text())
    assert record["kind"] == "disk_full" and "free disk space" in record["hint"]
    assert not (failed[0] / "DONE").exists() and not (failed[0] / "metrics.json").exists()
    assert not list(failed[0].glob(".*.tmp"))  # no temporary file left behind
    assert sum((c / "DONE").is_file() for c in (out / "tiny" / "cells").iterdir()) == 3


@pytest.mark.slow
def test_non_finite_loss_fails_the_cell_with_a_hint(exp, tmp_path, monkeypatch):
    import harness.train.loop as loop

    real = loop.run  # every student kind trains through it (StudentKind.train)
    calls = {"n": 0}

    def diverging(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise loop.NonFiniteLoss("non-finite loss at optimizer step 7: nan")
        return real(*args, **kw)

    monkeypatch.setattr(loop, "run", diverging)
    out = tmp_path / "runs"
    assert main(["run", str(exp), "--out", str(out), "--quiet"]) == 1
    failed = [c for c in (out / "tiny" / "cells").iterdir() if (c / "FAILED.json").is_file()]
    assert len(failed) == 1
    record = json.loads((failed[0] / "FAILED.json").read_text())
    assert record["kind"] == "non_finite_loss" and "lr" in record["hint"]
    assert not (failed[0] / "model").exists() and not list(failed[0].glob(".*.tmp"))
