"""Benchmark: render the HTML report of a 200-cell x 8-unit synthetic run.

The run folder is written with the same store code `harness run` uses (the test helper
``tests/analysis/synth.py``), analysed once (small bootstrap counts: the analysis is not what is
timed), then ``harness report`` is timed in a fresh process. Targets: <= 10 s and a page under
5 MB (issue "The HTML report"), and a first screen as short as the demo's (issue "A report a
lead reads in one minute": rankings and top effects, not every cell), measured in Chromium
(``screens.py``) when it is installed. Writes ``benchmarks/results/report_render.json``.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "helpers"))

from synth import spec_dict, write_run  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from screens import look  # noqa: E402

from harness.analysis.analyse import analyse  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="report_render_"))
    units = {f"label{i}": {"kind": "label", "labels": ["a", "b"], "answer_marker": "Answer:"}
             for i in range(4)}
    units.update({f"esc{i}": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "A:"}
                  for i in range(4)})
    buckets = [f"b{i}" for i in range(10)]
    fields = [f"f{i}" for i in range(5)]
    scales = [0.125, 0.25, 0.5, 1.0]
    spec = spec_dict(buckets, fields, scales, units=units)
    rng = np.random.default_rng(0)
    cells = {(b, f, s): {u: (rng.random(200) < 0.5 + 0.3 * s).astype(int) for u in units}
             for b in buckets for f in fields for s in scales}
    t0 = time.perf_counter()
    run_dir = write_run(work, spec, cells)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyse(run_dir, n_boot=50, curve_boot=10)
    analysis_s = time.perf_counter() - t0
    out = work / "index.html"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run_dir), "--out",
                    str(out)], check=True, capture_output=True)
    render_s = time.perf_counter() - t0
    size_mb = out.stat().st_size / 2**20
    seen = look(out)
    result = {
        "benchmark": "report_render",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "load_avg": os.getloadavg()},
        "versions": {p: md.version(p) for p in ("jinja2", "polars")},
        "cells": len(cells), "units": len(units), "eval_items_per_unit": 200,
        "setup_s": round(setup, 1), "analysis_s_small_bootstrap": round(analysis_s, 1),
        "render_s": round(render_s, 2), "page_mb": round(size_mb, 2),
        "screens": seen,
        "target": {"render_s": 10, "page_mb": 5, "first_screen_px": 900},
        "meets_target": render_s <= 10 and size_mb < 5 and (
            seen is None or seen["desktop"]["bottom_px"]["#scorecard"] <= 900),
    }
    path = REPO / "benchmarks/results/report_render.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
