"""A cell's numbers do not depend on where it runs: two cells in this process, in the local CPU
pool and on a local Ray cluster (started by the run itself, as a new user would) give a
byte-identical results.parquet, each with the run's one torch thread, whatever the host's
default thread count; run.json names what reproduces each cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.execute.local import WORKERS_ENV
from tests.helpers import TINY_STUDENT, route_data

pytestmark = pytest.mark.slow
ray = pytest.importorskip("ray")

FAST_EVAL = {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2}
CELLS = ["--only", "judged/answer_only/x1/s0", "--only", "single_a/answer_only/x1/s0"]


@pytest.fixture
def exp(tiny):
    train, ev = route_data(24, 10)
    return tiny(spec={"student": TINY_STUDENT, "evaluation": FAST_EVAL}, samples=train, eval=ev)


def _run(path: Path, out: Path, *extra: str) -> None:
    # no --threads: the default is what must agree across executors
    assert main(["run", str(path), "--out", str(out), "--quiet", *CELLS, *extra]) == 0


def test_in_process_pool_and_ray_give_byte_identical_results(exp, tmp_path, monkeypatch):
    import torch

    # a host whose default is two threads (what a 2-core machine gives torch and OpenMP): the
    # run must still compute with one, in process as in its worker processes
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setenv(WORKERS_ENV, "1")
        _run(exp, tmp_path / "inline")
        assert torch.get_num_threads() == 2  # the in-process cell gave its threads back
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv(WORKERS_ENV, "2")
    _run(exp, tmp_path / "pool")
    _run(exp, tmp_path / "ray", "--executor", "ray")

    tables = {k: (tmp_path / k / "tiny" / "results.parquet").read_bytes()
              for k in ("inline", "pool", "ray")}
    assert tables["inline"] == tables["pool"] == tables["ray"]
    for kind in tables:
        run = json.loads((tmp_path / kind / "tiny" / "run.json").read_text())
        assert run["numerics"] == {"threads": 1, "threads_from": "default",
                                   "finished_cells_by_threads": {"1": 2}}
        done = [c for c in run["cells"] if c["status"] == "done"]
        assert len(done) == 2
        for c in done:
            rep = c["reproduce"]
            assert rep["threads"] == 1 and rep["device"] == "cpu" and rep["dtype"] == "float32"
            assert rep["deterministic"] is True and rep["autocast"] is None
            assert rep["seed"] == 0 and rep["harness_version"]
            assert {"torch", "transformers", "tokenizers", "numpy", "python", "cpu_capability",
                    "torch_blas", "numpy_blas", "numerics_env"} <= set(rep)
            metrics = json.loads((tmp_path / kind / "tiny" / "cells" / c["cell_id"]
                                  / "metrics.json").read_text())
            assert metrics["environment"]["threads"] == 1
        if kind == "pool":
            assert {c["node"].rsplit("/", 1)[1] for c in done} <= {"cpu0", "cpu1"}
        assert {c["executor"] for c in done} == {"ray" if kind == "ray" else "local"}
