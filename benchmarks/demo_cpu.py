"""Benchmark: the whole demo matrix on the CPU, with per-cell train and eval seconds.

Runs ``harness run experiments/demo.yaml`` into a fresh folder (so every cell trains) and reads
each cell's ``metrics.json``. Target (issue "Train and evaluate every cell"): the 10-cell demo in
<= 5 minutes on the 2-core development machine. Writes ``benchmarks/results/demo_cpu.json``.

Usage: ``python benchmarks/demo_cpu.py [--out FILE] [--keep DIR] [--checkout PATH ...]``

``--checkout PATH`` (repeatable) also runs the demo with another checkout of the harness first
on ``PYTHONPATH`` (e.g. ``git archive REV harness | tar -x -C PATH``), after this one, and
records each run's wall and CPU seconds and whether its ``results.parquet`` is byte-identical
to this checkout's: a change meant to leave the plain path alone is checked side by side.
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
    ap.add_argument("--checkout", type=Path, action="append", default=[],
                    help="another checkout to run the demo with, after this one (repeatable)")
    args = ap.parse_args()
    runs = args.keep or Path(tempfile.mkdtemp(prefix="demo_cpu_"))
    shutil.rmtree(runs / "demo", ignore_errors=True)
    proc, wall, cpu = _run_demo(runs, None)
    others = []
    for checkout in args.checkout:
        other = Path(tempfile.mkdtemp(prefix="demo_cpu_other_"))
        load = os.getloadavg()[0]
        _, o_wall, o_cpu = _run_demo(other, checkout.resolve())
        same = ((other / "demo" / "results.parquet").read_bytes()
                == (runs / "demo" / "results.parquet").read_bytes())
        others.append({"checkout": str(checkout), "total_wall_s": round(o_wall, 1),
                       "cpu_s": round(o_cpu, 1), "load_avg_1min_before": round(load, 2),
                       "results_parquet_identical": same})
        shutil.rmtree(other, ignore_errors=True)
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
        "cpu_s": round(cpu, 1),
        "other_checkouts": others,
        "target_wall_s": 300,
        "meets_target": wall <= 300,
        "table": proc.stdout,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(proc.stdout)
    print(f"total {wall:.1f}s (train {result['sum_train_s']}s, eval {result['sum_eval_s']}s)")
    for o in others:
        print(f"{o['checkout']}: total {o['total_wall_s']}s, CPU {o['cpu_s']}s, results.parquet "
              f"{'identical' if o['results_parquet_identical'] else 'DIFFERENT'}")


def _run_demo(runs: Path, checkout: Path | None
              ) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """``harness run`` of the demo into ``runs`` (with ``checkout`` first on the path when
    given): the finished process, its wall seconds and its CPU seconds (user + system, its own
    and its children's, from ``wait4``)."""
    env = dict(os.environ)
    # the checkout first on the path, and a working folder outside every checkout: `python -m`
    # puts the working folder before PYTHONPATH, so from the repository root its own harness
    # would run whatever --checkout says
    env["PYTHONPATH"] = f"{checkout or REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    runs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "harness.cli", "run",
                                  str(REPO / "experiments/demo.yaml"), "--out", str(runs),
                                  "--quiet"], stdout=out, stderr=err, text=True, env=env,
                                 cwd=runs)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        proc = subprocess.CompletedProcess(child.args, os.waitstatus_to_exitcode(status),
                                           out.read(), err.read())
    if proc.returncode != 0:
        raise SystemExit(f"harness run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc, wall, usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
