"""The worker runs on the GPU machine, which has torch, transformers and numpy but no polars,
pandera, lm-eval (and whose harness install is a bare PYTHONPATH): the worker's import path
must not need them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.cli import main

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"polars", "pandera", "lm_eval", "sklearn", "pydantic", "msgspec", "pandas"}

SCRIPT = """
import sys
from harness.cli import main
rc = main(["worker", sys.argv[1], "--device", "cpu"])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2].split(",")))
print("LOADED=" + ",".join(loaded))
sys.exit(rc)
"""


def test_worker_imports_nothing_the_gpu_machine_lacks(tiny, tmp_path):
    from tests.helpers import TINY_STUDENT, route_data

    train, ev = route_data(16, 6)
    path = tiny(spec={"student": TINY_STUDENT, "evaluation": {"latency_runs": 1,
                                                              "latency_batch_size": 2}},
                samples=train, eval=ev)
    assert main(["compose", str(path), "--out", str(tmp_path / "cells"),
                 "--cell", "judged/answer_only/x1/s0"]) == 0
    cell = next((tmp_path / "cells").iterdir())
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(cell), ",".join(FORBIDDEN)],
                          capture_output=True, text=True, cwd=REPO, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                               "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = proc.stdout.split("LOADED=")[-1].strip()
    assert loaded == "", f"the worker imported {loaded}"
    assert (cell / "DONE").is_file()
