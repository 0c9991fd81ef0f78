"""Benchmark: the demo with its cells in parallel on the CPU, against one cell at a time.

Issue 25: the in-process path ran the demo's 14 cells one after another with torch's default
threads (5 min 32 s on 2 cores), while two single-threaded processes use two cores better than
one process with two threads. ``harness run`` now runs one cell per core in worker processes,
every cell with one torch thread. This script runs ``harness run EXP --out <fresh folder>``
(every cell trains) side by side, in one invocation on one machine:

* ``reference``: this checkout, one cell at a time in process, one thread
  (``HARNESS_WORKERS=1 --threads 1``): the numbers every executor must reproduce;
* ``parallel``: this checkout as ``make demo`` runs it now (defaults: one worker process per
  core, one thread each); its ``results.parquet`` must be byte-identical to the reference's;
* ``before`` (with ``--before DIR``): another checkout of the harness, e.g. the commit before
  this change (``git archive HEAD harness | tar -x -C DIR``), run as ``make demo`` ran it then.

Per run: wall and CPU seconds (user + system of the driver and its reaped worker processes,
from ``wait4``), the 1-minute load average before and after, the peak resident memory of the
whole process tree (sampled every 0.25 s from ``/proc``: the sum, and the largest process),
the ``results.parquet`` SHA-256 and how many of its values differ from the reference. Writes
JSON with the machine, versions, date and commit. Target (issue 25): ``parallel`` <= 210 s on
2 cores, identical results.

The machine must be quiet: the script refuses to start when the 1-minute load average is above
``--max-load`` (default 0.5) unless ``--max-load`` is raised, and records the load either way.

Usage: ``python benchmarks/demo_parallel.py [--before DIR] [--experiment FILE] [--out FILE]
[--max-load 0.5]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "demo_parallel.json"
TARGET_WALL_S = 210.0
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _tree(root: int) -> list[int]:
    """``root`` and every descendant process (Linux ``/proc``; just ``root`` elsewhere)."""
    parents: dict[int, int] = {}
    for p in Path("/proc").glob("[0-9]*"):
        try:
            stat = (p / "stat").read_text()
            parents[int(p.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    out, frontier = [root], [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier]
        out += kids
        frontier = kids
    return out


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` (0 when gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class MemorySampler:
    """Peak resident memory of a process tree: the sum over its processes and the largest."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every = pid, every_s
        self.peak_total = self.peak_process = self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sizes = [_rss(p) for p in _tree(self.pid)]
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_process = max(self.peak_process, max(sizes, default=0))
            self.max_processes = max(self.max_processes, sum(s > 0 for s in sizes))
            self._stop.wait(self.every)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_demo(experiment: Path, runs: Path, *, env_extra: dict[str, str], args: list[str],
             checkout: Path | None) -> dict[str, Any]:
    """One ``harness run`` of ``experiment`` into the fresh folder ``runs``: its figures."""
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_WORKERS"}
    env.update(env_extra)
    # the checkout first on the path, and a working folder outside every checkout: `python -m`
    # puts the working folder before PYTHONPATH, and the repository's own harness would win
    env["PYTHONPATH"] = f"{checkout or REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(experiment), "--out", str(runs),
           "--quiet", *args]
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env,
                                 cwd=runs.parent)
        with MemorySampler(child.pid) as mem:
            _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}):\n{stderr[-3000:]}")
    return {"command": " ".join(cmd[1:]), "env": env_extra, "harness": str(checkout or REPO),
            "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "load_avg_1min_before": round(load, 2),
            "load_avg_1min_after": round(os.getloadavg()[0], 2),
            "peak_rss_tree_mb": round(mem.peak_total / 2**20),
            "peak_rss_process_mb": round(mem.peak_process / 2**20),
            "max_processes": mem.max_processes, "stderr_tail": stderr[-1500:],
            "table": stdout}


def _compare(ref: Path, other: Path) -> dict[str, Any]:
    """Whether two results tables are byte-identical, and how many values differ."""
    import polars as pl

    a, b = ref.read_bytes(), other.read_bytes()
    out: dict[str, Any] = {"results_sha256": hashlib.sha256(b).hexdigest(),
                           "results_parquet_identical": a == b}
    keys = ["cell_id", "unit", "metric", "slice"]
    ta, tb = pl.read_parquet(ref), pl.read_parquet(other)
    joined = ta.select(*keys, "value").join(tb.select(*keys, "value"), on=keys, how="full",
                                            suffix="_other", coalesce=True)
    differ = joined.filter(pl.col("value").ne_missing(pl.col("value_other")))
    out.update({"values": ta.height, "values_differing": differ.height,
                "units_differing": sorted(set(differ["unit"].drop_nulls().to_list()))})
    return out


def _cells(run_dir: Path) -> dict[str, Any]:
    """Per cell: where it ran and its torch threads (from run.json)."""
    run = json.loads((run_dir / "run.json").read_text())
    return {"numerics": run.get("numerics"),
            "nodes": sorted({c.get("node") or "?" for c in run["cells"]}),
            "threads": sorted({(c.get("reproduce") or {}).get("threads", -1)
                               for c in run["cells"]})}


def _version(pkg: str) -> str | None:
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", type=Path, default=REPO / "experiments" / "demo.yaml")
    ap.add_argument("--before", type=Path, help="another checkout of the harness (the code "
                    "before this change) to run as `make demo` ran it then")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--max-load", type=float, default=0.5,
                    help="refuse to start above this 1-minute load average (default 0.5)")
    ap.add_argument("--keep", type=Path, help="keep the run folders here (default: removed)")
    args = ap.parse_args()
    load0 = os.getloadavg()
    if load0[0] > args.max_load:
        raise SystemExit(f"the 1-minute load average is {load0[0]:.2f} (> {args.max_load}): "
                         "the machine is busy, timings would mean little; run it on a quiet "
                         "machine or raise --max-load")
    name = yaml.safe_load(args.experiment.read_text())["name"]
    work = args.keep or Path(tempfile.mkdtemp(prefix="demo_parallel_"))
    plan: list[tuple[str, dict[str, str], list[str], Path | None]] = [
        ("reference", {"HARNESS_WORKERS": "1"}, ["--threads", "1"], None),
        ("parallel", {}, [], None)]
    if args.before:
        plan.append(("before", {}, [], args.before.resolve()))
    runs: dict[str, Any] = {}
    for label, env, extra, checkout in plan:
        folder = work / label
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"{label}: harness run {' '.join(extra)} {env or ''}", flush=True)
        runs[label] = run_demo(args.experiment.resolve(), folder, env_extra=env, args=extra,
                               checkout=checkout)
        runs[label].update(_cells(folder / name))
        print(f"  {runs[label]['wall_s']} s wall, {runs[label]['cpu_s']} s CPU, peak RSS "
              f"{runs[label]['peak_rss_tree_mb']} MB", flush=True)
    ref = work / "reference" / name / "results.parquet"
    for label in runs:
        runs[label].update(_compare(ref, work / label / name / "results.parquet"))
    par = runs["parallel"]
    result = {
        "benchmark": "demo_parallel",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                 capture_output=True, text=True, check=False).stdout.strip(),
        "experiment": str(args.experiment),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(),
                    "memory_gb": round(os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30, 1)},
        "versions": {p: _version(p) for p in ("torch", "transformers", "tokenizers", "numpy",
                                              "polars")},
        "load_avg_before": [round(x, 2) for x in load0],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "runs": runs,
        "target_wall_s": TARGET_WALL_S,
        "meets_target": par["wall_s"] <= TARGET_WALL_S and par["results_parquet_identical"],
    }
    if "before" in runs:
        result["speedup_vs_before"] = round(runs["before"]["wall_s"] / par["wall_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for label, r in runs.items():
        print(f"{label:9s} {r['wall_s']:7.1f} s wall {r['cpu_s']:7.1f} s CPU  peak RSS "
              f"{r['peak_rss_tree_mb']} MB (largest process {r['peak_rss_process_mb']} MB)  "
              f"results {'identical' if r['results_parquet_identical'] else 'DIFFERENT'} "
              f"({r['values_differing']} of {r['values']} values differ)")
    print(f"-> {args.out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
