"""Benchmark: the whole demo matrix on the CPU, with per-cell train and eval seconds.

Runs ``harness run experiments/demo.yaml`` into a fresh folder (so every cell trains) and reads
each cell's ``metrics.json``. Target (issue "Train and evaluate every cell"): the 10-cell demo in
<= 5 minutes on the 2-core development machine. Writes ``benchmarks/results/demo_cpu.json``.

Usage: ``python benchmarks/demo_cpu.py [--out FILE] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/demo_cpu.json")
    ap.add_argument("--keep", type=Path, default=None, help="runs folder to keep (default: temp)")
    args = ap.parse_args()
    runs = args.keep or Path(tempfile.mkdtemp(prefix="demo_cpu_"))
    shutil.rmtree(runs / "demo", ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run",
                           str(REPO / "experiments/demo.yaml"), "--out", str(runs), "--quiet"],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"harness run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    run = json.loads((runs / "demo" / "run.json").read_text())
    cells = []
    for c in run["cells"]:
        m = json.loads((runs / "demo" / "cells" / c["cell_id"] / "metrics.json").read_text())
        cells.append({"label": c["label"], "cell_id": c["cell_id"],
                      "samples": m["train"]["examples"], "train_tokens": m["train"]["tokens"],
                      "train_s": m["train"]["train_seconds"], "eval_s": m["eval_seconds"],
                      "train_tokens_per_s": m["train"]["tokens_per_s"]})
    result = {
        "benchmark": "demo_cpu",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "versions": {p: md.version(p) for p in ("torch", "transformers", "tokenizers", "polars")},
        "cells": cells,
        "total_wall_s": round(wall, 1),
        "sum_train_s": round(sum(c["train_s"] for c in cells), 1),
        "sum_eval_s": round(sum(c["eval_s"] for c in cells), 1),
        "target_wall_s": 300,
        "meets_target": wall <= 300,
        "table": proc.stdout,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(proc.stdout)
    print(f"total {wall:.1f}s (train {result['sum_train_s']}s, eval {result['sum_eval_s']}s)")


if __name__ == "__main__":
    main()
