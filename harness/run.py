"""``harness run``: compose every cell, train and evaluate it, and collect the results store.

The layout of ``runs/<experiment>/`` is :mod:`harness.store.folder`'s; its contract files are
the records of :mod:`harness.store.contracts`.

A finished cell (its ``DONE`` marker holds its id) is skipped; a changed spec or changed data
gives a new cell id, so it is run afresh. A failing cell (exception, non-finite loss, out of
memory, full disk) is recorded and the others go on; the command then exits with status 1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.fsutil import atomic_write_text
from harness.matrix import Cell
from harness.samples import Dataset
from harness.spec import LoadedExperiment
from harness.store.contracts import (
    CellEntry,
    FailureRecord,
    LeakageFacts,
    RunRecord,
    TeacherFacts,
)
from harness.store.folder import CellFolder, RunFolder


@dataclass
class CellOutcome:
    """What happened to one cell in this run."""

    cell: Cell
    status: str  # "done" (ran now), "skipped" (already done), "failed"
    seconds: float = 0.0
    error: dict[str, str] | None = None


@dataclass
class RunSummary:
    """The run's outcome: folder, cells, and whether any failed."""

    run_dir: Path
    outcomes: list[CellOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def failure_record(exc: BaseException) -> dict[str, str]:
    """A failed cell's error with a plain reason and a hint of what to change."""
    from harness.train.loop import NonFiniteLoss

    text = f"{type(exc).__name__}: {exc}"
    kind, hint = "error", "see the traceback below; the other cells are unaffected"
    if isinstance(exc, NonFiniteLoss):
        kind, hint = "non_finite_loss", ("lower student.train.lr, raise warmup_ratio, or check "
                                         "for empty targets")
    elif "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError":
        kind, hint = "out_of_memory", ("lower student.train.batch_size or max_len (raise "
                                       "grad_accum to keep the effective batch)")
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        kind, hint = "disk_full", "free disk space in the run folder, then run again"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return {"kind": kind, "error": text, "hint": hint, "traceback": tb}


def _write_spec(folder: CellFolder, cell: Cell) -> None:
    atomic_write_text(folder.spec, yaml.safe_dump(
        {"cell_id": cell.cell_id, "label": cell.label, **cell.effective}, sort_keys=False,
        allow_unicode=True))


def _run_isolated(folder: Path, device: str | None, threads: int | None) -> None:
    """The worker in its own process, so a crash (even a segfault) cannot end the run."""
    cmd = [sys.executable, "-m", "harness.cli", "worker", str(folder)]
    if device:
        cmd += ["--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise RuntimeError(f"worker process failed: {tail[0]}")


def run_cells(loaded: LoadedExperiment, data: Dataset, cells: list[Cell], out: Path, *,
              force: bool = False, isolate: bool = False, device: str | None = None,
              threads: int | None = None, progress: bool = True,
              matrix: list[Cell] | None = None) -> RunSummary:
    """Compose, train and evaluate each of ``cells`` not already done; then collect the store
    over the whole ``matrix`` (default: ``cells``), so ``--only`` never drops finished cells
    from the results table."""
    from tqdm import tqdm

    from harness.compose import build_context, compose_cell, eval_frame, write_cell
    from harness.compose.compose import TargetTemplateError
    from harness.worker import run_cell

    exp = loaded.spec
    run = RunFolder(out / exp.name)
    summary = RunSummary(run_dir=run.root)
    teachers = teacher_facts(data)  # before the context releases the candidate tables
    ctx = build_context(exp, data, release=True)
    ev = eval_frame(exp, data)
    bar = tqdm(cells, unit="cell", disable=not progress, dynamic_ncols=True)
    for cell in bar:
        bar.set_description(cell.label)
        folder = run.cell(cell.cell_id)
        if folder.is_done(cell.cell_id) and not force:
            summary.outcomes.append(CellOutcome(cell, "skipped"))
            continue
        t0 = time.perf_counter()
        try:
            folder.clear_failure()
            write_cell(compose_cell(ctx, cell), data, ev, run.cells)
            _write_spec(folder, cell)
            if isolate:
                _run_isolated(folder.path, device, threads)
            else:
                run_cell(folder.path, device=device, threads=threads)
            summary.outcomes.append(CellOutcome(cell, "done", time.perf_counter() - t0))
        except (KeyboardInterrupt, TargetTemplateError):  # a template bound broken by a real
            raise  # row is bad input: the run ends with exit 2, not one failed cell after another
        except Exception as exc:  # noqa: BLE001 - one failing cell must not end the run
            record = failure_record(exc)
            # e.g. the disk is full: the outcome below still reports the failure
            with contextlib.suppress(OSError):
                folder.write_failure(FailureRecord(cell_id=cell.cell_id, **record))
            summary.outcomes.append(CellOutcome(cell, "failed", time.perf_counter() - t0,
                                                record))
            bar.write(f"FAILED {cell.label} ({cell.cell_id}): {record['error']}\n"
                      f"  hint: {record['hint']}")
    collect(loaded, data, matrix or cells, summary, teachers)
    return summary


def teacher_facts(data: Dataset) -> TeacherFacts:
    """What analysis needs from the repository itself: token usage per teacher (cost) and, per
    unit, how often teachers disagree and how much of that the judge covers."""
    import polars as pl

    t = data.train.tables
    usage = t.candidates.group_by("teacher").agg(
        pl.col("prompt_tokens").fill_null(0).sum(), pl.col("completion_tokens").fill_null(0).sum())
    per_rec = (t.candidates.join(t.items.select("rec", "unit", "winner"), on="rec")
               .group_by("rec", "unit").agg(pl.col("final").n_unique().alias("answers"),
                                            pl.col("winner").first().is_not_null().alias("judged")))
    dis = per_rec.group_by("unit").agg(
        (pl.col("answers") > 1).mean().alias("disagreement"),
        ((pl.col("answers") > 1) & ~pl.col("judged")).mean().alias("unjudged_disagreement"))
    return TeacherFacts(
        n_records=t.items.height,
        usage={r["teacher"]: {"prompt_tokens": int(r["prompt_tokens"]),
                              "completion_tokens": int(r["completion_tokens"])}
               for r in usage.iter_rows(named=True)},
        disagreement={r["unit"]: {"rate": float(r["disagreement"]),
                                  "unjudged_rate": float(r["unjudged_disagreement"])}
                      for r in dis.iter_rows(named=True)},
    )


def collect(loaded: LoadedExperiment, data: Dataset, cells: list[Cell], summary: RunSummary,
            teachers: TeacherFacts) -> None:
    """Write the results and latency tables, the teacher audit and the run record."""
    from harness.store.results import cell_rows, latency_rows, results_frame, write_results

    exp = loaded.spec
    run = RunFolder(summary.run_dir)
    rows, lat = [], []
    status = {o.cell.cell_id: o for o in summary.outcomes}
    cell_index = []
    for cell in cells:
        folder = run.cell(cell.cell_id)
        if folder.is_done(cell.cell_id):
            manifest, metrics = folder.read_manifest(), folder.read_metrics()
            _predictions_parquet(folder)
            rows += cell_rows(exp.name, manifest, metrics)
            lat += latency_rows(exp.name, manifest, metrics)
            entry = CellEntry(cell_id=cell.cell_id, label=cell.label,
                              is_baseline=cell.is_baseline, status="done",
                              train_seconds=metrics.train["train_seconds"],
                              eval_seconds=metrics.eval_seconds, error=None)
        else:
            outcome = status.get(cell.cell_id)
            failed = outcome is not None and outcome.status == "failed"
            entry = CellEntry(cell_id=cell.cell_id, label=cell.label,
                              is_baseline=cell.is_baseline,
                              status="failed" if failed else "missing", train_seconds=None,
                              eval_seconds=None, error=outcome.error if outcome else None)
        cell_index.append(entry)
    run.root.mkdir(parents=True, exist_ok=True)
    if rows:
        write_results(results_frame(rows), run.results)
        write_results(results_frame(lat), run.latency)
    run.write_teacher_audit(teacher_audit(exp.model_dump(mode="json"), run, cells))
    run.write_run(RunRecord(
        schema_version=RunRecord.SCHEMA_VERSION, experiment=exp.name,
        experiment_file=str(loaded.path), spec=exp.model_dump(mode="json"), teachers=teachers,
        baseline=exp.baseline.model_dump(mode="json"), cells=cell_index,
        inputs={"samples": data.train.sha256, "eval": data.eval.sha256},
        python=sys.version.split()[0], pid=os.getpid(), leakage=leakage_facts(loaded, data),
    ))


def leakage_facts(loaded: LoadedExperiment, data: Dataset) -> LeakageFacts:
    """The train-eval overlap validation found and the policy the run went on under (so that
    the gate and the report can say it; ``harness validate`` only prints it)."""
    leaks = data.leaks
    n = leaks.height
    return LeakageFacts(policy=loaded.spec.data.leakage, overlaps=n,
                        eval_items=leaks["eval_id"].n_unique() if n else 0,
                        train_records=leaks["train_rec"].n_unique() if n else 0)


def _predictions_parquet(folder: CellFolder) -> None:
    """The worker writes predictions as JSONL (no polars on a GPU machine); convert once."""
    import polars as pl

    from harness.fsutil import atomic_write

    src, dst = folder.predictions, folder.predictions_table
    if dst.is_file() and dst.stat().st_mtime_ns >= src.stat().st_mtime_ns:
        return
    df = pl.read_ndjson(src, infer_schema_length=None)
    if "tags" in df.columns:  # free-form tag maps stay JSON text (no empty-struct columns)
        df = df.with_columns(pl.col("tags").struct.json_encode())
    atomic_write(dst, lambda p: df.write_parquet(p))


def teacher_audit(exp: dict[str, Any], run: RunFolder, cells: list[Cell]) -> dict[str, Any]:
    """Each teacher's recorded eval answers scored per unit, with stated-confidence calibration.

    Reads the eval set from any composed cell (they all carry the same one).
    """
    from harness.evaluate.units import PER_ITEM
    from harness.evaluate.units import teacher_audit as audit_unit

    for cell in cells:
        folder = run.cell(cell.cell_id)
        if folder.eval.is_file():
            rows = folder.read_eval()
            break
    else:
        return {}
    out = {}
    slices = exp["evaluation"]["slices"]
    for name, unit in exp["units"].items():
        items = [r for r in rows if r["unit"] == name]
        audit = audit_unit(unit, items, slices)
        for rep in audit.values():
            for key in PER_ITEM:
                rep.pop(key, None)
        out[name] = audit
    return out


def format_table(run_dir: Path, exp_units: dict[str, Any]) -> str:
    """Per cell: the primary metric of every unit and p95 latency (for the terminal)."""
    import polars as pl

    from harness.units import primary_metric

    run = RunFolder(run_dir)
    if not run.results.is_file():
        return "no finished cells"
    df = pl.read_parquet(run.results).filter(pl.col("slice") == "all")
    lat = pl.read_parquet(run.latency)
    wanted = {u: primary_metric(spec["kind"]) for u, spec in exp_units.items()}
    labels = df.select("label", "is_baseline").unique().sort("label")
    header = ["cell", *(f"{u}.{m}" for u, m in wanted.items()), "p95_ms"]
    lines = []
    for label, base in labels.iter_rows():
        vals = []
        for u, m in wanted.items():
            v = df.filter((pl.col("label") == label) & (pl.col("unit") == u)
                          & (pl.col("metric") == m))["value"]
            vals.append(f"{v[0]:.3f}" if len(v) else "-")
        p95 = lat.filter((pl.col("label") == label) & (pl.col("metric") == "latency_p95_ms"))
        vals.append(f"{p95['value'][0]:.1f}" if p95.height else "-")
        lines.append([label + (" *" if base else ""), *vals])
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])
