"""The collect phase of ``harness run``: the run folder's store from its cells' folders.

After the executor has run the cells, :func:`collect` reads every finished cell of the matrix
(this run's and earlier runs') and writes the results and latency tables
(:mod:`harness.store.results`), each cell's predictions as Parquet, the teacher audit and the
run record (``run.json``: every cell's status, where it ran and what reproduces its numbers).
What the run knows besides its cells — teacher usage, leakage, the audit of the teachers'
eval answers — is computed by the stages that own it and handed over as :class:`RunFacts`, so
this module reads and writes the store only.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.store.contracts import (
    CellEntry,
    CellManifest,
    CellMetrics,
    LeakageFacts,
    RunRecord,
    TeacherFacts,
)
from harness.store.folder import CellFolder, RunFolder
from harness.store.results import cell_rows, latency_rows, results_frame, write_results


class CellRef(Protocol):
    """What the store needs of a matrix cell (:class:`harness.matrix.Cell` is one)."""

    @property
    def cell_id(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def is_baseline(self) -> bool: ...


@dataclass
class CellOutcome:
    """What happened to one cell in this run (and, when it ran now, where)."""

    cell: CellRef
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


@dataclass(frozen=True)
class RunFacts:
    """What ``run.json`` records besides the cells, computed by the stages that own it.

    Attributes:
        experiment: the experiment's name; experiment_file: the YAML it was loaded from.
        spec: the experiment's settings as JSON (``Experiment.model_dump(mode="json")``).
        teachers: token usage and disagreement per teacher (:func:`harness.samples.stats.
            teacher_facts`).
        leakage: the train-eval overlap and the policy (:func:`harness.samples.leakage.
            leakage_facts`).
        inputs: ``{"samples": sha256, "eval": sha256}`` of the data files.
        teacher_audit: run folder -> the teachers' eval answers scored per unit
            (:func:`harness.evaluate.teacher_audit.audit_run`), called once the cells are
            composed.
    """

    experiment: str
    experiment_file: str
    spec: dict[str, Any]
    teachers: TeacherFacts
    leakage: LeakageFacts
    inputs: dict[str, str]
    teacher_audit: Callable[[RunFolder], dict[str, Any]]


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


def collect(facts: RunFacts, cells: Sequence[CellRef], summary: RunSummary,
            numerics: dict[str, Any] | None = None) -> None:
    """Write the results and latency tables, the teacher audit and the run record of the
    whole ``cells`` matrix (finished cells from earlier runs included; a cell neither finished
    nor failed now is ``missing``).

    Args:
        facts: what the run knows besides its cells (:class:`RunFacts`).
        summary: what happened to the cells this run ran (skipped ones keep where they ran).
        numerics: the run's thread setting (``threads``, ``threads_from``) for ``run.json``;
            the finished cells' counts per thread count are added here.
    """
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
            rows += cell_rows(facts.experiment, manifest, metrics)
            lat += latency_rows(facts.experiment, manifest, metrics)
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
    run.write_teacher_audit(facts.teacher_audit(run))
    run.write_run(RunRecord(
        schema_version=RunRecord.SCHEMA_VERSION, experiment=facts.experiment,
        experiment_file=facts.experiment_file, spec=facts.spec, teachers=facts.teachers,
        baseline=facts.spec["baseline"], cells=cell_index, inputs=facts.inputs,
        python=sys.version.split()[0], pid=os.getpid(), leakage=facts.leakage,
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
