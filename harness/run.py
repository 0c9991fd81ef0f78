"""``harness run``: compose every cell, train and evaluate it, and collect the results store.

The layout of ``runs/<experiment>/`` is :mod:`harness.store.folder`'s; its contract files are
the records of :mod:`harness.store.contracts`.

A finished cell (its ``DONE`` marker holds its id) is skipped; a changed spec or changed data
gives a new cell id, so it is run afresh. A failing cell (exception, non-finite loss, out of
memory, full disk) is recorded and the others go on; the command then exits with status 1.

Every cell of a run computes with one torch thread count (:func:`harness.threads.run_threads`:
``--threads``, ``execution.threads``, else 1), whichever executor runs it; ``run.json`` records
it (``numerics``) and, per finished cell, what reproduces its numbers elsewhere
(``reproduce``: threads, device, dtype, seed, library versions, CPU kernels, BLAS). A run whose
thread count differs from the finished cells' says so on stderr before it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.execute.base import CellJob, CellResult, Event, Executor, failure_record
from harness.execute.local import InlineExecutor
from harness.execute.progress import Progress
from harness.execute.shipping import write_result
from harness.experiment import LoadedExperiment
from harness.fsutil import atomic_write_text
from harness.matrix import Cell
from harness.samples import Dataset
from harness.store.contracts import (
    CellEntry,
    CellManifest,
    CellMetrics,
    FailureRecord,
    LeakageFacts,
    RunRecord,
    TeacherFacts,
)
from harness.store.folder import CellFolder, RunFolder
from harness.threads import run_threads


@dataclass
class CellOutcome:
    """What happened to one cell in this run (and, when it ran now, where)."""

    cell: Cell
    status: str  # "done" (ran now), "skipped" (already done), "failed"
    seconds: float = 0.0
    error: dict[str, str] | None = None
    executor: str | None = None
    node: str | None = None
    attempts: int | None = None
    checkpoint: str | None = None


@dataclass
class RunSummary:
    """The run's outcome: folder, cells, and whether any failed."""

    run_dir: Path
    outcomes: list[CellOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def _write_spec(folder: CellFolder, cell: Cell) -> None:
    atomic_write_text(folder.spec, yaml.safe_dump(
        {"cell_id": cell.cell_id, "label": cell.label, **cell.effective}, sort_keys=False,
        allow_unicode=True))


@dataclass
class _Driver:
    """The driver's bookkeeping while an executor runs the cells: writes what comes back
    (``DONE`` last), records failures, keeps the progress view."""

    run: RunFolder
    summary: RunSummary
    executor: Executor
    view: Progress
    cells: dict[str, tuple[Cell, float]] = field(default_factory=dict)  # id -> (cell, t0)
    finished: set[str] = field(default_factory=set)

    def fail(self, cell: Cell, t0: float, record: dict[str, str], **where: Any) -> None:
        folder = self.run.cell(cell.cell_id)
        # e.g. the disk is full: the outcome below still reports the failure
        with contextlib.suppress(OSError):
            folder.write_failure(FailureRecord(cell_id=cell.cell_id, **record))
        self.summary.outcomes.append(CellOutcome(cell, "failed", time.perf_counter() - t0,
                                                 record, **where))
        self.view.write(f"FAILED {cell.label} ({cell.cell_id}): {record['error']}\n"
                        f"  hint: {record['hint']}")

    def handle(self, events: list[Event]) -> None:
        for ev in events:
            if ev.cell_id in self.finished:
                continue
            if ev.kind == "started":
                self.view.started(ev.cell_id, ev.node)
            elif ev.kind == "retried":
                self.view.retried(ev.cell_id, ev.node, ev.message)
            elif ev.result is not None:
                self.finished.add(ev.cell_id)
                self._finish(ev.result)

    def _finish(self, result: CellResult) -> None:
        cell, t0 = self.cells[result.cell_id]
        where: dict[str, Any] = {"executor": self.executor.name, "node": result.node or None,
                 "attempts": result.attempts, "checkpoint": result.checkpoint}
        self.view.finished(cell.cell_id, result.ok, result.node)
        if not result.ok:
            self.fail(cell, t0, result.failure or {"kind": "error", "error": "unknown",
                                                   "hint": "", "traceback": ""}, **where)
            return
        try:
            write_result(self.run.cell(cell.cell_id), result)
        except Exception as exc:  # noqa: BLE001 - writing one cell's files must not end the run
            self.fail(cell, t0, failure_record(exc), **where)
            return
        self.summary.outcomes.append(CellOutcome(cell, "done", time.perf_counter() - t0,
                                                 **where))


def run_cells(loaded: LoadedExperiment, data: Dataset, cells: list[Cell], out: Path, *,
              force: bool = False, isolate: bool = False, device: str | None = None,
              threads: int | None = None, progress: bool = True,
              matrix: list[Cell] | None = None, executor: str = "local",
              address: str | None = None, workers: int | None = None,
              track: str | None = None) -> RunSummary:
    """Compose, train and evaluate each of ``cells`` not already done; then collect the store
    over the whole ``matrix`` (default: ``cells``), so ``--only`` never drops finished cells
    from the results table.

    Composing stays here, on the driver; the ``executor`` (:mod:`harness.execute`: ``local``
    or ``ray``) runs the composed cells, and what it returns is written into the run folder
    with ``DONE`` last. Ctrl-C (or any error that ends the run) cancels the cells submitted and
    not finished: their folders have no ``DONE``, so the next run does them again.

    Args:
        threads: ``--threads`` (None: ``execution.threads``, else 1), every cell's torch
            threads on every executor.
        workers: ``--workers``, cells at once on the CPU for the local executor (None:
            ``$HARNESS_WORKERS``, ``execution.cpu_workers``, else one per core per thread).
        track: ``--track URI``, the MLflow tracker over ``tracking.mlflow.uri``
            (:mod:`harness.tracking`: reached before any cell runs, logged into after).
    """
    from harness.compose import build_context, compose_cell, eval_frame, write_cell
    from harness.compose.compose import TargetTemplateError
    from harness.execute import make_executor
    from harness.execute.local import cpu_workers, describe
    from harness.tracking import start_run as start_tracking

    exp = loaded.spec
    run = RunFolder(out / exp.name)
    summary = RunSummary(run_dir=run.root)
    # before any work: an unreachable tracker warns now (or ends the run, exit 2, if required)
    tracker = start_tracking(exp, run.root, track, loaded.path, str(loaded.path))
    n_threads, threads_from = run_threads(threads, exp.execution.threads)
    n_workers = 1 if executor == "ray" else cpu_workers(
        workers, exp.execution.cpu_workers, threads=n_threads, memory=exp.execution.memory)[0]
    redo = {c.cell_id for c in cells} if force else set()
    warn_mixed_threads(run, [c for c in matrix or cells if c.cell_id not in redo], n_threads,
                       threads_from)
    teachers = teacher_facts(data)  # before the context releases the candidate tables
    ctx = build_context(exp, data, release=True)
    ev = eval_frame(exp, data)
    ex = make_executor(executor, exp.execution, experiment=exp.name, device=device,
                       threads=n_threads, isolate=isolate, address=address, workers=n_workers)
    view = Progress({c.cell_id: c.label for c in cells}, enabled=progress)
    driver = _Driver(run, summary, ex, view)
    try:
        ex.start()
        if progress and not isinstance(ex, InlineExecutor):
            view.write(describe(ex))
        for cell in cells:
            folder = run.cell(cell.cell_id)
            if folder.is_done(cell.cell_id) and not force:
                summary.outcomes.append(CellOutcome(cell, "skipped"))
                view.skipped(cell.cell_id)
                continue
            t0 = time.perf_counter()
            driver.cells[cell.cell_id] = (cell, t0)
            try:
                folder.clear_failure()
                folder.clear_done()  # (--force) the folder is being rewritten: not finished
                write_cell(compose_cell(ctx, cell), data, ev, run.cells)
                _write_spec(folder, cell)
            except (KeyboardInterrupt, TargetTemplateError):  # a template bound broken by a
                raise  # real row is bad input: the run ends with exit 2, not failed cells
            except Exception as exc:  # noqa: BLE001 - one failing cell must not end the run
                driver.finished.add(cell.cell_id)
                view.finished(cell.cell_id, False, "")
                driver.fail(cell, t0, failure_record(exc))
                continue
            ex.submit(CellJob(cell.cell_id, cell.label, folder))
            driver.handle(ex.poll(0))
        while ex.pending():
            driver.handle(ex.poll(0.5))
    except BaseException:
        ex.cancel()
        raise
    finally:
        ex.close()
        view.close()
    collect(loaded, data, matrix or cells, summary, teachers,
            numerics={"threads": n_threads, "threads_from": threads_from})
    if tracker is not None:  # every finished cell of the matrix the tracker lacks; never raises
        tracker.log_run(matrix or cells)
    return summary


def _finished_threads(run: RunFolder, cells: list[Cell]) -> Counter[int]:
    """How many of ``cells`` are finished in ``run``, per torch thread count their
    ``metrics.json`` records (cells from before the count was recorded are left out)."""
    counts: Counter[int] = Counter()
    for cell in cells:
        folder = run.cell(cell.cell_id)
        if not folder.is_done(cell.cell_id):
            continue
        # an unreadable or older metrics file is no evidence either way (collect reports it)
        with contextlib.suppress(OSError, ValueError, LookupError, AttributeError, TypeError):
            n = json.loads(folder.metrics.read_text(encoding="utf-8"))["environment"]["threads"]
            if isinstance(n, int) and not isinstance(n, bool):
                counts[n] += 1
    return counts


def warn_mixed_threads(run: RunFolder, kept: list[Cell], threads: int, source: str) -> bool:
    """Say on stderr when finished cells this run keeps were computed with another thread
    count than ``threads`` (results.parquet would mix two settings); True when it did.

    Args:
        run: the run folder.
        kept: the matrix's cells this run does not recompute.
        threads, source: this run's count and where it came from (:func:`run_threads`).
    """
    other = {n: k for n, k in sorted(_finished_threads(run, kept).items()) if n != threads}
    if not other:
        return False
    them = ", ".join(f"{k} cell(s) with {n}" for n, k in other.items())
    match = " or ".join(f"--threads {n}" for n in other)
    print(f"warning: finished cells of {run.root} were computed with another torch thread "
          f"count ({them}) than this run's {threads} ({source}); float reductions depend on "
          f"it, so their numbers and this run's would mix two settings in results.parquet (the "
          f"4th to 6th decimal of calibration metrics can differ). Run with {match} to match "
          f"them, or with --force to recompute every cell with {threads}.", file=sys.stderr)
    return True


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


#: metrics.json ``environment`` keys that decide a cell's numbers (``run.json`` ``reproduce``).
REPRODUCE_KEYS = ("device", "dtype", "autocast", "threads", "deterministic", "cpu_capability",
                  "torch_blas", "mkldnn", "numpy_blas", "numerics_env", "torch", "transformers",
                  "tokenizers", "numpy", "python", "cuda", "gpu", "cudnn", "tf32_matmul",
                  "tf32_cudnn")


def reproduce_record(manifest: CellManifest, metrics: CellMetrics) -> dict[str, Any]:
    """What reproduces a finished cell's numbers on another machine, besides its spec and data
    (whose hashes are its id): the seed, the harness version that composed it, and what its
    metrics record of threads, device, dtype, CPU kernels, BLAS and library versions (cells
    from older versions record less)."""
    env = metrics.environment
    return {"seed": metrics.axes.seed, "harness_version": manifest.harness_version,
            **{k: env[k] for k in REPRODUCE_KEYS if k in env}}


def collect(loaded: LoadedExperiment, data: Dataset, cells: list[Cell], summary: RunSummary,
            teachers: TeacherFacts, numerics: dict[str, Any] | None = None) -> None:
    """Write the results and latency tables, the teacher audit and the run record.

    Args:
        numerics: the run's thread setting (``threads``, ``threads_from``) for ``run.json``;
            the finished cells' counts per thread count are added here.
    """
    from harness.store.results import cell_rows, latency_rows, results_frame, write_results

    exp = loaded.spec
    run = RunFolder(summary.run_dir)
    rows, lat = [], []
    status = {o.cell.cell_id: o for o in summary.outcomes}
    before = _previous_where(run)
    cell_index = []
    by_threads: Counter[str] = Counter()
    for cell in cells:
        folder = run.cell(cell.cell_id)
        outcome = status.get(cell.cell_id)
        where = (_where(outcome) if outcome is not None and outcome.status != "skipped"
                 else before.get(cell.cell_id, {}))
        if folder.is_done(cell.cell_id):
            manifest, metrics = folder.read_manifest(), folder.read_metrics()
            _predictions_parquet(folder)
            rows += cell_rows(exp.name, manifest, metrics)
            lat += latency_rows(exp.name, manifest, metrics)
            entry = CellEntry(cell_id=cell.cell_id, label=cell.label,
                              is_baseline=cell.is_baseline, status="done",
                              train_seconds=metrics.train["train_seconds"],
                              eval_seconds=metrics.eval_seconds, error=None,
                              **{"node": metrics.environment.get("host"), **where},
                              reproduce=reproduce_record(manifest, metrics))
            if isinstance(metrics.environment.get("threads"), int):
                by_threads[str(metrics.environment["threads"])] += 1
        else:
            failed = outcome is not None and outcome.status == "failed"
            entry = CellEntry(cell_id=cell.cell_id, label=cell.label,
                              is_baseline=cell.is_baseline,
                              status="failed" if failed else "missing", train_seconds=None,
                              eval_seconds=None, error=outcome.error if outcome else None,
                              **(where if failed else {}))
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
        numerics=None if numerics is None else {
            **numerics, "finished_cells_by_threads": dict(sorted(by_threads.items()))},
    ))


def _where(outcome: CellOutcome) -> dict[str, Any]:
    """Where a cell ran now, as CellEntry's optional keys (unknown ones left out)."""
    keys = {"executor": outcome.executor, "node": outcome.node, "attempts": outcome.attempts,
            "checkpoint": outcome.checkpoint}
    return {k: v for k, v in keys.items() if v is not None}


def _previous_where(run: RunFolder) -> dict[str, dict[str, Any]]:
    """Per cell id, where the previous run record says the cell ran (so a skipped cell keeps
    it); {} when there is no readable record."""
    from harness.store.contracts import ContractError

    if not run.run_json.is_file():
        return {}
    try:
        entries = run.read_run().cells
    except ContractError:
        return {}
    return {e.cell_id: {k: getattr(e, k) for k in ("executor", "node", "attempts", "checkpoint")
                        if getattr(e, k) is not None} for e in entries if e.status == "done"}


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
