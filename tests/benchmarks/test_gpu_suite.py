"""The one device script runs every GPU benchmark and prints one table last (CPU smoke mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: three benchmarks with real (tiny) models, each in its own processes: about a minute
pytestmark = pytest.mark.slow


def test_gpu_suite_smoke_writes_each_json_and_prints_the_table_last(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out)}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh"), "--smoke"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    lines = proc.stdout.rstrip().splitlines()
    steps = next(x for x in lines if x.startswith("=== steps:"))
    # the table is the last thing printed: its header, then one row per metric
    table = lines[lines.index(steps) + 1:]
    assert table[0].split() == ["benchmark", "metric", "value", "target", "met", "note"]
    rows = {r.split()[1]: r for r in table[1:]}
    for metric in ("scoring_speedup_vs_baseline", "scoring_accuracy_identical_fp32",
                   "decode_ms_per_token_batch1", "decode_warmup_s", "matrix_3_cells_wall_s"):
        assert "unmeasured" in rows[metric], (metric, proc.stdout[-3000:])
    for name in ("gpu_eval", "gpu_matrix"):
        assert f"{name} rc=0 " in steps, (steps, (out / f"{name}.log").read_text()[-3000:])
        assert (out / f"{name}.log").is_file()
        assert json.loads((out / f"{name}_smoke.json").read_text())["table"]
    assert "gpu_train rc=" in steps
    # the suite fails exactly when a step did
    assert (proc.returncode == 0) == (steps.count(" rc=0 ") == 3), steps
