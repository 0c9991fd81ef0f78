"""Load: a 200-cell matrix of tiny students runs to the end on the CPU with bounded memory, and
its report renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, route_data

#: Peak RSS allowed for the whole 200-cell run (measured 615 MB on 2026-11-23; a per-cell leak
#: of a few MB would exceed it). Read as VmHWM: ``ru_maxrss`` carries the parent's peak through
#: exec, and inside the full suite pytest itself has grown past this limit.
MAX_RSS_MB = 1500


@pytest.mark.slow
def test_two_hundred_cells_with_bounded_memory(tiny, tmp_path):
    train, ev = route_data(16, 6)
    buckets = {f"b{i}": {"teachers": ["a"] if i % 2 else "all",
                         "select": "all" if i % 2 else "judge_winner"} for i in range(10)}
    fields = {f"f{i}": {"rationale": bool(i % 2), "limits": bool(i // 2 % 2)} for i in range(5)}
    spec = {"student": {"config": {"layers": 1, "hidden": 16, "heads": 2, "vocab": 280,
                                   "max_position": 96},
                        "train": {"epochs": 1, "batch_size": 8, "lr": 5e-3, "max_len": 96}},
            "buckets": buckets, "fields": fields, "scale": [0.25, 0.5, 0.75, 1.0],
            "baseline": {"bucket": "b1", "fields": "f0", "scale": 1.0},
            "evaluation": {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2,
                           "max_new_tokens": 8}}
    exp = tiny(spec=spec, samples=train, eval=ev)
    out = tmp_path / "runs"
    script = (
        "import sys\n"
        "from harness.cli import main\n"
        "from harness.evaluate.latency import process_peak_rss_mb\n"
        f"rc = main(['run', {str(exp)!r}, '--out', {str(out)!r}, '--quiet'])\n"
        "print('PEAK_MB', process_peak_rss_mb())\n"
        "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = float(proc.stdout.split("PEAK_MB")[-1])
    run = json.loads((out / "tiny" / "run.json").read_text())
    assert len(run["cells"]) == 200 and {c["status"] for c in run["cells"]} == {"done"}
    assert peak < MAX_RSS_MB, peak
    (tmp_path / "peak.txt").write_text(f"{peak:.0f}")
    report = tmp_path / "index.html"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "report", str(out / "tiny"),
                        "--out", str(report)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert report.stat().st_size < 5 * 2**20
    print(f"200 cells: peak RSS {peak:.0f} MB")
