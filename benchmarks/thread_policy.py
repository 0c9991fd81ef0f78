"""Benchmark: OpenMP wait policy and thread count on a shared, oversubscribed CPU.

Issue 16 measured the demo's first cell at ~20 s CPU alone but 971 s CPU / 65 min wall at load
12 on 2 cores: idle OpenMP threads spinning against the threads doing work. This benchmark
reproduces the situation on purpose: it starts ``--busy`` busy-looping background processes
(default 2), then times a small causal-LM training run (a 2-layer GPT-2 of the demo's size,
AdamW, ``--steps`` steps) in a fresh process per configuration:

* ``OMP_WAIT_POLICY=ACTIVE`` (spin) vs ``PASSIVE`` (sleep at once; the harness's default now),
* torch's default thread count (the cores) vs the fair share under the measured load,

recording each run's wall time, CPU time (user + sys of the child) and final loss, and whether
the losses are bit-identical across configurations (the wait policy must not change numbers;
the thread count may). Writes JSON with the machine, versions, date and load averages.

Usage: ``python benchmarks/thread_policy.py [--steps 30] [--repeats 3] [--busy 2]
[--out benchmarks/results/thread_policy.json]``; ``--smoke`` runs 2 steps once per policy
(default threads) and writes to a temporary file unless ``--out`` is given (the tests run it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "thread_policy.json"

#: The timed child: a tiny GPT-2 trained for N steps; prints one JSON line.
CHILD = r"""
import json, sys, time
import torch, transformers
steps, threads = int(sys.argv[1]), int(sys.argv[2])
if threads > 0:
    torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = transformers.GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=1024, n_positions=128)
model = transformers.GPT2LMHeadModel(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(1)
batch = torch.randint(0, 1024, (16, 64), generator=g)
t0 = time.perf_counter()
loss = None
for _ in range(steps):
    out = model(input_ids=batch, labels=batch)
    out.loss.backward()
    opt.step()
    opt.zero_grad()
    loss = out.loss.item()
print(json.dumps({"train_seconds": time.perf_counter() - t0, "loss": loss.hex(),
                  "threads": torch.get_num_threads()}))
"""

BUSY = "while True:\n    pass\n"


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _run_child(steps: int, threads: int, policy: str, timeout: float) -> dict[str, Any]:
    """One training run in a fresh process (the wait policy is read when OpenMP loads)."""
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(steps), str(threads)], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(policy=policy, wall_seconds=round(wall, 3),
               cpu_seconds=round((after.ru_utime - before.ru_utime)
                                 + (after.ru_stime - before.ru_stime), 3),
               train_seconds=round(res["train_seconds"], 3))
    return res


def run(steps: int, repeats: int, busy: int, timeout: float, *, smoke: bool = False
        ) -> dict[str, Any]:
    """Start the busy processes, time every configuration ``repeats`` times, stop them
    (``smoke``: the default thread count only)."""
    from harness.threads import fair_share_threads, load_average

    load_before = load_average()
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(busy)]
    try:
        time.sleep(1.0)  # let the hogs show up in the scheduler
        cores = os.cpu_count() or 1
        fair = fair_share_threads(cores, (load_average() or 0) + busy) or max(1, cores // 2)
        counts = [0] if smoke else sorted({0, fair})
        configs = [(p, t) for p in ("ACTIVE", "PASSIVE") for t in counts]
        runs = [dict(_run_child(steps, t, p, timeout), requested_threads=t or "default")
                for _ in range(repeats) for p, t in configs]
    finally:
        for h in hogs:
            h.kill()
        for h in hogs:
            h.wait()
    by_policy = {p: sorted({r["loss"] for r in runs if r["policy"] == p and
                            r["requested_threads"] == "default"}) for p in ("ACTIVE", "PASSIVE")}
    return {
        "benchmark": "thread_policy",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count()},
        "versions": _versions(),
        "settings": {"steps": steps, "repeats": repeats, "busy_processes": busy,
                     "model": "GPT-2 2 layers x 128, vocab 1024, batch 16 x 64, AdamW"},
        "load_average": {"before": load_before, "after": load_average()},
        "runs": runs,
        "summary": _summary(runs),
        "policy_changes_numbers": by_policy["ACTIVE"] != by_policy["PASSIVE"],
        "thread_count_changes_numbers": len({r["loss"] for r in runs if r["policy"] == "PASSIVE"})
        > 1,
    }


def _summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median wall and CPU seconds per (policy, threads)."""
    import statistics

    keys = sorted({(r["policy"], str(r["requested_threads"])) for r in runs})
    out = []
    for policy, threads in keys:
        rs = [r for r in runs if r["policy"] == policy and str(r["requested_threads"]) == threads]
        out.append({"policy": policy, "threads": threads, "n": len(rs),
                    "median_wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
                    "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=2, help="busy-looping background processes")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per child run")
    ap.add_argument("--out", type=Path, help=f"JSON file (default {DEFAULT_OUT})")
    ap.add_argument("--smoke", action="store_true", help="2 steps, once each (for the tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.repeats = 2, 1
        if args.out is None:
            args.out = Path(tempfile.mkdtemp(prefix="thread_policy_")) / "thread_policy.json"
    out = args.out or DEFAULT_OUT
    result = run(args.steps, args.repeats, args.busy, args.timeout, smoke=args.smoke)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for row in result["summary"]:
        print(f"{row['policy']:<8} threads={row['threads']:<8} "
              f"wall {row['median_wall_seconds']:7.2f} s  cpu {row['median_cpu_seconds']:7.2f} s")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
