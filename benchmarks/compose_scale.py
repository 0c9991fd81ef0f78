"""Benchmark: validate + plan + compose of a 6-cell matrix on a 1,000,000-record repository.

Generates a support-desk repository with the demo generator (not timed), writes a 6-cell
experiment (2 buckets x 3 scales), then runs ``harness validate``, ``harness plan`` and
``harness compose`` as separate processes — what a user types — and records each command's wall
time and peak RSS. Target (issue "Foundation"): total <= 30 s and <= 4 GB peak RSS on the 2-core
development machine. Writes ``benchmarks/results/compose_scale.json``.

Usage: ``python benchmarks/compose_scale.py [--records 1000000] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import importlib.util
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

EXPERIMENT = """\
name: scale_bench
data: {samples: samples.jsonl, eval: eval.jsonl}
units:
  intent_routing: {kind: label, labels: [billing, shipping, technical, account]}
  order_fields:   {kind: json_fields, fields: [order_id, amount, currency]}
  tool_decision:  {kind: tool_call, tools: [lookup_order, issue_refund]}
  escalation:     {kind: refusal, marker: ESCALATE}
student:
  config: {layers: 2, hidden: 128, heads: 4, vocab: 1024}
buckets:
  single_a: {teachers: [teacher_a], select: all}
  multi_judged_failures: {select: judge_winner, min_score: 4, failures: refusal}
fields:
  with_rationale: {rationale: true, limits: true, trajectory: true}
scale: [0.25, 0.5, 1.0]
baseline: {bucket: single_a, fields: with_rationale, scale: 1.0}
"""


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("demo_generate",
                                                  REPO / "experiments/demo/generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: Runs ``harness.cli`` and, at exit, writes the process's own peak RSS to stderr. The child's
#: ``ru_maxrss`` (from wait4) would carry this benchmark's own peak through exec, and this process
#: has just generated a million records.
_MEASURED_CLI = (
    "import atexit, runpy, sys\n"
    "from harness.evaluate.latency import process_peak_rss_mb\n"
    "atexit.register(lambda: print(f'PEAK_RSS_MB {process_peak_rss_mb():.1f}', file=sys.stderr))\n"
    "sys.argv = ['harness', *sys.argv[1:]]\n"
    "runpy.run_module('harness.cli', run_name='__main__')\n")


def _run(args: list[str], cwd: Path) -> dict[str, float]:
    """Run one harness command; its wall seconds and its own peak RSS (MB)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *args], cwd=cwd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"harness {' '.join(args)} failed:\n{proc.stderr}")
    peak = [ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK_RSS_MB ")]
    return {"wall_s": round(wall, 2), "peak_rss_mb": float(peak[-1].split()[1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--eval", type=int, default=2_000)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/compose_scale.json")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse samples.jsonl/eval.jsonl already in --workdir")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="compose_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if not (args.reuse and (work / "samples.jsonl").is_file()):
        _generator().generate(work, seed=0, n_train=args.records, n_eval=args.eval)
    gen_s = time.perf_counter() - t0
    # A cold table cache, so `validate` pays the full decode; plan and compose then reuse it.
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["HARNESS_CACHE_DIR"] = str(cache)
    shutil.rmtree(work / "cells", ignore_errors=True)
    (work / "exp.yaml").write_text(EXPERIMENT)
    stages = {
        "validate": _run(["validate", "exp.yaml"], work),
        "plan": _run(["plan", "exp.yaml"], work),
        "compose": _run(["compose", "exp.yaml", "--out", "cells"], work),
    }
    total = round(sum(s["wall_s"] for s in stages.values()), 2)
    peak = max(s["peak_rss_mb"] for s in stages.values())
    samples = sum(1 for p in (work / "cells").glob("*/train.jsonl") for _ in p.open())
    result = {
        "benchmark": "compose_scale",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "versions": {p: md.version(p) for p in ("polars", "pandera", "msgspec", "scikit-learn",
                                                 "pydantic")},
        "records": args.records, "eval_items": args.eval, "cells": 6,
        "input_mb": round((work / "samples.jsonl").stat().st_size / 2**20, 1),
        "generate_s": round(gen_s, 1),
        "stages": stages,
        "total_wall_s": total,
        "peak_rss_mb": peak,
        "composed_samples_all_cells": samples,
        "target": {"total_wall_s": 30, "peak_rss_mb": 4096},
        "meets_target": total <= 30 and peak <= 4096,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
