"""Benchmark: the 12-cell demo matrix on one GPU through the harness's worker: wall time.

The cells are composed here, where polars is (the GPU machine has none), and travel as a
compressed archive: ``python benchmarks/gpu_matrix.py prepare`` composes ``experiments/demo.yaml``
(its data from ``make demo-data``) into ``benchmarks/data/demo_cells.tar.gz`` (inputs only:
manifest, train and eval sets; about 2 MB, far below the 64 MiB the device copy allows; should
a future demo outgrow ``--max-mib``, prepare refuses and says to compose fewer cells with
``--max-cells`` or to carry the archive separately). A run extracts the archive (``--cells-tar``,
the default) or reads composed folders (``--cells``), lays out ``--n-cells`` cells (past the
composed ones: the first ones again with seed + 1, a real ablation axis), and trains +
evaluates every cell with ``harness worker`` (one process per cell, ``PYTHONPATH`` = the
repository: torch, transformers and numpy only), ``K`` cells at a time for each ``K`` in
``--concurrency`` (default 12: all at once, as the issue measured). Every worker shares one
run cache (``HARNESS_RUN_CACHE``: trained tokenizers and torch's compile caches,
:mod:`harness.caches`).

Per concurrency level: wall time of the whole matrix, cells done / failed, the sum of the
cells' train and eval seconds (from their ``metrics.json``), each cell's decode path and
warm-up, and GPU utilisation sampled with ``nvidia-smi`` every 0.5 s (mean, p50, p90; peak
memory). ``--switches packing=true,...`` sets ``student.train`` switches in the copies' specs.

Usage::

    python benchmarks/gpu_matrix.py prepare                  # here: compose + archive
    python benchmarks/gpu_matrix.py [--cells-tar F | --cells DIR] [--n-cells 12]
        [--concurrency 12] [--switches packing=true] [--out DIR]
    python benchmarks/gpu_matrix.py --smoke --out /tmp/x     # CPU: composes 2 tiny cells
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gpu_common as gc  # noqa: E402  (puts the repository on sys.path)

BENCH = "gpu_matrix"
DEMO_TAR = gc.REPO / "benchmarks" / "data" / "demo_cells.tar.gz"
#: the files of a composed cell that a worker reads (nothing a previous run wrote)
INPUTS = ("manifest.json", "train.jsonl", "eval.jsonl")

#: The tiny experiment of the smoke run: two cells of the demo's data, a one-layer student.
SMOKE_YAML = """\
name: matrix_smoke
data: {samples: data/samples.jsonl, eval: data/eval.jsonl, judge_scale: [1, 5]}
units:
  intent_routing: {kind: label, labels: [billing, shipping, technical, account]}
  order_fields:   {kind: json_fields, fields: [order_id, amount, currency]}
  tool_decision:  {kind: tool_call, tools: [lookup_order, issue_refund]}
  escalation:     {kind: refusal, marker: ESCALATE}
student:
  config: {arch: llama, layers: 1, hidden: 32, heads: 2, vocab: 300, max_position: 128}
  train: {epochs: 1, min_steps: 2, batch_size: 32, lr: 1.0e-3, max_len: 96}
buckets:
  single_a:     {teachers: [teacher_a], select: all}
  multi_judged: {teachers: all, select: judge_winner, min_score: 4}
fields:
  answer_only: {rationale: false, limits: false}
scale: [1.0]
design: {kind: one_at_a_time, base: {bucket: multi_judged, fields: answer_only, scale: 1.0},
         noise_seeds: []}
baseline: {bucket: single_a, fields: answer_only, scale: 1.0}
evaluation: {slices: [source], max_new_tokens: 4, latency_runs: 1, latency_new_tokens: 2,
             latency_batch_size: 2}
"""


def smoke_cells(work: Path) -> Path:
    """Generate a little demo data and compose the two-cell smoke experiment (needs polars:
    the development machine only). Returns the cells folder."""
    subprocess.run([sys.executable, str(gc.REPO / "experiments/demo/generate.py"), "--out",
                    str(work / "data"), "--n-train", "120", "--n-eval", "40"],
                   check=True, capture_output=True)
    (work / "exp.yaml").write_text(SMOKE_YAML, encoding="utf-8")
    cells = work / "cells"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "compose", str(work / "exp.yaml"),
                           "--out", str(cells)], capture_output=True, text=True,
                          cwd=gc.REPO, env=_env(1))
    if proc.returncode != 0:
        raise SystemExit(f"compose failed:\n{proc.stdout}\n{proc.stderr}")
    return cells


def _env(threads: int | None, cache: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(gc.REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if cache is not None:  # one run cache for every worker (tokenizers, compiled graphs)
        env["HARNESS_RUN_CACHE"] = str(cache)
    return env


def prepare(experiment: Path, archive: Path, max_mib: float) -> dict[str, Any]:
    """Compose ``experiment`` here and archive its cells' inputs into ``archive`` (tar.gz).

    Refuses (exit 2) when the archive exceeds ``max_mib``: compose fewer cells
    (``harness compose --max-cells``) or carry the archive outside the copied tree.
    """
    with tempfile.TemporaryDirectory(prefix="demo_cells_") as tmp:
        cells = Path(tmp) / "cells"
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "compose", str(experiment),
                               "--out", str(cells)], capture_output=True, text=True,
                              cwd=gc.REPO, env=_env(None))
        if proc.returncode != 0:
            raise SystemExit(f"compose failed (is the demo data there? make demo-data):\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        folders = sorted(p.parent for p in cells.glob("*/manifest.json"))
        archive.parent.mkdir(parents=True, exist_ok=True)
        tmp_archive = archive.with_suffix(".tmp")
        with tarfile.open(tmp_archive, "w:gz") as tar:
            for folder in folders:
                for name in INPUTS:
                    tar.add(folder / name, arcname=f"{folder.name}/{name}")
        mib = tmp_archive.stat().st_size / 2**20
        if mib > max_mib:
            tmp_archive.unlink()
            raise SystemExit(f"{len(folders)} cells make {mib:.1f} MiB compressed, over "
                             f"--max-mib {max_mib}: compose fewer (harness compose "
                             "--max-cells N) or carry the archive outside the tree")
        os.replace(tmp_archive, archive)
    return {"archive": str(archive), "cells": len(folders), "mib": round(mib, 2)}


def extract_cells(archive: Path, dest: Path) -> Path:
    """Extract an archive written by :func:`prepare` into ``dest``; returns ``dest``."""
    if not archive.is_file():
        raise SystemExit(f"{archive} is missing: run `python benchmarks/gpu_matrix.py "
                         "prepare` on a machine with the project installed")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest


def parse_switches(text: str) -> dict[str, Any]:
    """``"packing=true,compile=false"`` -> ``{"packing": True, "compile": False}``."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        out[key.strip()] = json.loads(value.strip().lower()) if value else True
    return out


def lay_out_matrix(cells: Path, n_cells: int, dest: Path, switches: dict[str, Any]
                   ) -> list[Path]:
    """Copy the composed cells into ``dest`` as ``n_cells`` cells (repeats get seed + k).

    Only the inputs are copied (manifest, train.jsonl, eval.jsonl), so nothing a previous run
    wrote is read back; each copy's cell id gets the repeat suffix, and ``switches`` go into
    its ``student.train``.
    """
    sources = sorted(p.parent for p in cells.glob("*/manifest.json"))
    if not sources:
        raise SystemExit(f"no composed cells under {cells}")
    out = []
    for k in range(n_cells):
        src = sources[k % len(sources)]
        repeat = k // len(sources)
        manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
        manifest["spec"]["seed"] = int(manifest["spec"]["seed"]) + repeat
        manifest["spec"]["student"]["train"].update(switches)
        if repeat:
            manifest["cell_id"] = f"{manifest['cell_id']}r{repeat}"
            manifest["label"] = f"{manifest['label']} (seed +{repeat})"
        target = dest / f"{k:02d}_{manifest['cell_id']}"
        target.mkdir(parents=True)
        for name in INPUTS[1:]:
            shutil.copy2(src / name, target / name)
        (target / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        out.append(target)
    return out


def run_worker(cell: Path, device: str, threads: int | None, cache: Path | None,
               deadline: float | None = None) -> dict[str, Any]:
    """``harness worker CELL --device DEVICE`` in its own process; the cell's figures.
    ``deadline`` (``time.monotonic()`` value): the worker is killed when it passes."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "harness.cli", "worker", str(cell), "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=gc.REPO,
                              env=_env(threads, cache),
                              timeout=None if deadline is None
                              else max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return {"cell": cell.name, "wall_s": round(time.perf_counter() - t0, 2), "ok": False,
                "error": "killed at the benchmark's deadline (--deadline-s)"}
    wall = time.perf_counter() - t0
    row: dict[str, Any] = {"cell": cell.name, "wall_s": round(wall, 2),
                           "ok": proc.returncode == 0 and (cell / "DONE").is_file()}
    if row["ok"]:
        m = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
        row.update(train_s=m["train"]["train_seconds"], eval_s=m["eval_seconds"],
                   train_tokens_per_s=m["train"]["tokens_per_s"],
                   latency_p50_ms=m["latency"]["latency_p50_ms"],
                   decode_path=m["latency"].get("decode_path"),
                   decode_warmup_s=m["latency"].get("warmup_s"))
    else:
        row["error"] = (proc.stderr or proc.stdout)[-1500:]
    return row


def run_level(cells: list[Path], k: int, device: str, threads: int | None,
              cache: Path | None, deadline: float | None = None) -> dict[str, Any]:
    """All cells, ``k`` at a time, with the GPU sampled throughout."""
    for c in cells:  # every level retrains every cell
        for name in ("DONE", "metrics.json", "predictions.jsonl", "FAILED.json"):
            (c / name).unlink(missing_ok=True)
    with gc.GpuSampler() as sampler:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=k) as pool:
            rows = list(pool.map(lambda c: run_worker(c, device, threads, cache, deadline),
                                 cells))
        wall = time.perf_counter() - t0
    ok = [r for r in rows if r["ok"]]
    return {"concurrency": k, "wall_s": round(wall, 2), "cells_done": len(ok),
            "cells_failed": len(rows) - len(ok),
            "sum_train_s": round(sum(r["train_s"] for r in ok), 2),
            "sum_eval_s": round(sum(r["eval_s"] for r in ok), 2),
            "gpu_utilisation": sampler.summary(), "cells": rows}


def table(result: dict[str, Any], measured: bool) -> list[dict[str, Any]]:
    """The suite's row: the matrix's best wall time (the target applies to 12 cells)."""
    head = result.get("headline") or {}
    n = result["matrix"]["n_cells"]
    metric = f"matrix_{n}_cells_wall_s"
    note = (f"K={head.get('best_concurrency')}, GPU util mean {head.get('gpu_util_mean_pct')} %"
            if head else "no level finished every cell")
    return [gc.table_row(BENCH, metric, head.get("total_wall_s"), measured and n == 12,
                         target=gc.TARGETS["matrix_12_cells_wall_s"], note=note)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", choices=["run", "prepare"], default="run",
                    help="run the matrix (default), or prepare its archive here")
    ap.add_argument("--smoke", action="store_true",
                    help="compose 2 tiny cells here and run a matrix of 3, all at once, on the CPU")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--cells", type=Path, default=None, help="composed cell folders")
    ap.add_argument("--cells-tar", type=Path, default=DEMO_TAR,
                    help="archive of composed cells (prepare writes it; used without --cells)")
    ap.add_argument("--experiment", type=Path, default=gc.REPO / "experiments/demo.yaml",
                    help="prepare: the experiment to compose")
    ap.add_argument("--max-mib", type=float, default=16.0,
                    help="prepare: refuse an archive larger than this (the device copy of the "
                    "tree is limited to 64 MiB in all)")
    ap.add_argument("--n-cells", type=int, default=None, help="matrix size (default 12)")
    ap.add_argument("--concurrency", default=None, help="comma list of K (default 12)")
    ap.add_argument("--switches", default="", help="student.train switches, e.g. packing=true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per worker (default: cores / concurrency)")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="kill workers still running this many seconds after the start and "
                    "write what finished (the suite bounds every step)")
    ap.add_argument("--keep", type=Path, default=None, help="scratch folder to keep")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results; with --smoke a temp folder)")
    ap.add_argument("--name", default=None, help="result file name (default gpu_matrix.json)")
    args = ap.parse_args()
    if args.mode == "prepare":
        print(json.dumps(prepare(args.experiment, args.cells_tar, args.max_mib)))
        return
    args.out = args.out or gc.default_out(args.smoke)

    device = gc.pick_device(args.device or ("cpu" if args.smoke else None))
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="gpu_matrix_"))
    scratch.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.cells = smoke_cells(scratch / "compose")
        args.threads = args.threads or 1
    elif args.cells is None:
        args.cells = extract_cells(args.cells_tar, scratch / "composed")
    n_cells = args.n_cells or (3 if args.smoke else 12)
    levels = [int(x) for x in (args.concurrency or ("3" if args.smoke else "12")).split(",")]
    switches = parse_switches(args.switches)
    cells = lay_out_matrix(args.cells, n_cells, scratch / "matrix", switches)
    cache = scratch / "cache"
    deadline = None if args.deadline_s is None else time.monotonic() + args.deadline_s
    result: dict[str, Any] = {
        "benchmark": BENCH, "smoke": args.smoke, "environment": gc.environment(device),
        "matrix": {"n_cells": n_cells, "source": str(args.cells), "switches": switches,
                   "one_process_per_cell": True, "shared_run_cache": True},
        "levels": []}
    for k in levels:
        # CPU threads per worker: what was asked, else the machine's cores shared among the K
        # workers (16 cores on the GPU machine; oversubscribing them slows every cell).
        threads = args.threads or max(1, (os.cpu_count() or 1) // k)
        level = run_level(cells, k, device.type, threads, cache, deadline)
        level["threads_per_worker"] = threads
        result["levels"].append(level)
        print(f"concurrency {k}: {level['wall_s']} s, {level['cells_done']}/{n_cells} done, "
              f"GPU util mean {level['gpu_utilisation'].get('util_mean_pct')} %", flush=True)
    done = [lv for lv in result["levels"] if lv["cells_failed"] == 0]
    result["headline"] = None
    if done:
        best = min(done, key=lambda lv: lv["wall_s"])
        result["headline"] = {"n_cells": n_cells, "best_concurrency": best["concurrency"],
                              "total_wall_s": best["wall_s"],
                              "gpu_util_mean_pct": best["gpu_utilisation"].get("util_mean_pct"),
                              "sequential_wall_s": next((lv["wall_s"] for lv in done
                                                         if lv["concurrency"] == 1), None)}
    result["table"] = table(result, device.type == "cuda" and not args.smoke)
    path = gc.write_result(result, args.out, args.name or
                           ("gpu_matrix_smoke.json" if args.smoke else "gpu_matrix.json"))
    if args.keep is None:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nwrote {path}")
    print(gc.table([{"K": lv["concurrency"], "wall_s": lv["wall_s"], "done": lv["cells_done"],
                     "failed": lv["cells_failed"], "sum_train_s": lv["sum_train_s"],
                     "sum_eval_s": lv["sum_eval_s"],
                     "gpu_util_mean": lv["gpu_utilisation"].get("util_mean_pct"),
                     "gpu_util_p90": lv["gpu_utilisation"].get("util_p90_pct"),
                     "gpu_mem_peak_mib": lv["gpu_utilisation"].get("memory_peak_mib")}
                    for lv in result["levels"]],
                   ["K", "wall_s", "done", "failed", "sum_train_s", "sum_eval_s",
                    "gpu_util_mean", "gpu_util_p90", "gpu_mem_peak_mib"]))
    failed = [c for lv in result["levels"] for c in lv["cells"] if not c["ok"]]
    if failed:
        print(f"\n{len(failed)} cell run(s) failed; first error:\n{failed[0]['error']}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
