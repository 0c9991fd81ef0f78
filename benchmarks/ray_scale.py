"""Benchmark: a 200-cell matrix of tiny cells through the Ray executor; the driver's overhead.

A simulated scale test of ``harness run --executor ray`` on this machine: it writes a tiny
experiment whose factorial matrix has ``--cells`` cells (default 200: 2 buckets x 2 field sets
x 5 scales x 10 seeds; real students, one epoch on 24 records, 6 eval items, one latency run),
starts a local Ray cluster (``--cpus`` CPUs, default all), runs the whole matrix through
:func:`harness.run.run_cells` with the ``ray`` executor, and times what the driver itself
spends per cell, apart from the cells' own work on the workers:

* ``compose``: composing the cell's training set (the driver's job with any executor);
* ``pack``: reading the composed folder into the task's payload (bytes);
* ``submit``: handing the task to Ray (``.remote``);
* ``write``: writing the returned files into the run folder, ``DONE`` last;
* ``driver_cpu``: the driver process's CPU seconds over the run (everything: polling,
  progress, collecting the results store), per cell.

A second run of the same command (every cell skipped) is timed too (``resume_seconds``).
Writes JSON with the machine, versions, date and load averages.

Usage: ``python benchmarks/ray_scale.py [--cells 200] [--cpus N]
[--out benchmarks/results/ray_scale.json]``; ``--smoke`` runs 8 cells into a temporary file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ray_scale.json"
sys.path.insert(0, str(REPO))


def _experiment(folder: Path, cells: int) -> Path:
    """A tiny experiment whose factorial matrix has ``cells`` cells (a multiple of 4)."""
    import yaml

    from tests.helpers.tiny import BASE_SPEC, TINY_STUDENT, route_data, write_jsonl

    train, ev = route_data(24, 6)
    scales = [0.6, 0.7, 0.8, 0.9, 1.0] if cells >= 20 else [1.0]
    seeds = list(range(max(1, cells // (4 * len(scales)))))
    doc = json.loads(json.dumps(BASE_SPEC))
    doc.update({
        "student": {**TINY_STUDENT, "train": {**TINY_STUDENT["train"], "epochs": 1}},
        "evaluation": {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2,
                       "latency_new_tokens": 2, "max_new_tokens": 8},
        "scale": scales, "seeds": seeds, "design": {"kind": "factorial", "noise_seeds": []},
        "execution": {"cpus": 1, "checkpoint": "drop"}})
    write_jsonl(folder / "samples.jsonl", train)
    write_jsonl(folder / "eval.jsonl", ev)
    path = folder / "exp.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _timed(totals: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - t0

    return wrapper


def run(cells: int, cpus: int | None, work: Path) -> dict[str, Any]:
    import ray
    import torch
    import transformers

    import harness.execute.ray_executor as rx
    import harness.run as hrun
    from harness.commands.common import fit, load, matrix_cells

    os.environ.setdefault("HARNESS_CACHE_DIR", str(work / "cache"))
    path = _experiment(work, cells)
    loaded, data = load(str(path), cap=True)
    fit(loaded, data)
    matrix = matrix_cells(loaded, data)
    totals: dict[str, float] = defaultdict(float)
    rx.pack_cell = _timed(totals, "pack", rx.pack_cell)  # type: ignore[assignment]
    rx.RayExecutor._submit_task = _timed(totals, "submit",  # type: ignore[method-assign]
                                         rx.RayExecutor._submit_task)
    hrun.write_result = _timed(totals, "write", hrun.write_result)  # type: ignore[assignment]
    import harness.compose as compose

    real_compose = compose.compose_cell
    compose.compose_cell = _timed(totals, "compose", real_compose)  # type: ignore[assignment]
    t_init = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=300 * 2**20,
             runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}})
    init_s = time.perf_counter() - t_init
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        summary = hrun.run_cells(loaded, data, matrix, work / "runs", threads=1, progress=False,
                                 matrix=matrix, executor="ray")
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        t1 = time.perf_counter()
        again = hrun.run_cells(loaded, data, matrix, work / "runs", threads=1, progress=False,
                               matrix=matrix, executor="ray")
        resume_s = time.perf_counter() - t1
    finally:
        ray.shutdown()
    n = len(matrix)
    done = sum(o.status == "done" for o in summary.outcomes)
    nodes = sorted({o.node or "" for o in summary.outcomes})
    per_cell = {k: round(v / n * 1000, 3) for k, v in sorted(totals.items())}
    shipping = sum(totals[k] for k in ("pack", "submit", "write"))
    return {
        "cells": n, "done": done, "failed": len(summary.failed),
        "skipped_on_resume": sum(o.status == "skipped" for o in again.outcomes),
        "ray_init_seconds": round(init_s, 2), "wall_seconds": round(wall, 2),
        "cells_per_minute": round(n / wall * 60, 1), "resume_seconds": round(resume_s, 2),
        "driver_ms_per_cell": per_cell,
        "driver_shipping_ms_per_cell": round(shipping / n * 1000, 3),
        "driver_cpu_seconds_total": round(cpu, 2),
        "driver_cpu_ms_per_cell": round(cpu / n * 1000, 1),
        "nodes": nodes,
        "versions": {"python": platform.python_version(), "ray": ray.__version__,
                     "torch": torch.__version__, "transformers": transformers.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray cluster")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--smoke", action="store_true", help="8 cells, temporary output")
    args = ap.parse_args(argv)
    cells = 8 if args.smoke else args.cells
    out = args.out or (Path(tempfile.mkdtemp()) / "ray_scale.json" if args.smoke
                       else DEFAULT_OUT)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ray-scale-") as tmp:
        result = run(cells, args.cpus, Path(tmp))
    record = {
        "benchmark": "ray_scale", "date": dt.datetime.now(dt.timezone.utc).isoformat(
            timespec="seconds"),
        "machine": {"host": platform.node(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "processor": platform.processor()},
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        **result,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
