"""``harness run``: compose every cell, have an executor train and evaluate it, then collect the
results store (:mod:`harness.store.collect`).

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
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.evaluate.teacher_audit import audit_run
from harness.execute.base import CellJob, CellResult, Event, Executor, failure_record
from harness.execute.local import InlineExecutor
from harness.execute.progress import Progress
from harness.execute.shipping import write_result
from harness.experiment import LoadedExperiment
from harness.fsutil import atomic_write_text
from harness.matrix import Cell
from harness.samples import Dataset
from harness.samples.leakage import leakage_facts
from harness.samples.stats import teacher_facts
from harness.store.collect import CellOutcome, RunFacts, RunSummary, collect
from harness.store.contracts import FailureRecord
from harness.store.folder import CellFolder, RunFolder
from harness.threads import run_threads


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
    spec = exp.model_dump(mode="json")
    everything = matrix or cells
    facts = RunFacts(
        experiment=exp.name, experiment_file=str(loaded.path), spec=spec, teachers=teachers,
        leakage=leakage_facts(exp.data.leakage, data.leaks),
        inputs={"samples": data.train.sha256, "eval": data.eval.sha256},
        teacher_audit=lambda run: audit_run(spec, run, [c.cell_id for c in everything]))
    collect(facts, everything, summary,
            numerics={"threads": n_threads, "threads_from": threads_from})
    if tracker is not None:  # every finished cell of the matrix the tracker lacks; never raises
        tracker.log_run(everything)
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


