"""The long results table every later stage reads (the run folder's results table).

One row per cell x unit x metric x slice, with the cell's axes and the metric's direction,
including teacher-fidelity rows (``metric = "agreement.teacher_a"``...). Latency and size, which
vary from run to run, go to the latency table (same schema, ``unit = "*"``) so that the results
table is byte-identical across reruns on the CPU (paths: :class:`harness.store.folder.RunFolder`).
The table is checked against :class:`ResultsSchema` before it is written, and carries
``schema_version`` so readers can refuse a table they do not understand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandera.polars as pa
import polars as pl

from harness.fsutil import atomic_write
from harness.store.contracts import CellManifest, CellMetrics
from harness.units import metric_direction

SCHEMA_VERSION = 1
LATENCY_METRICS = {
    "latency_p50_ms": False, "latency_p95_ms": False, "latency_p99_ms": False,
    "ttft_p50_ms": False, "ttft_p95_ms": False, "decode_tokens_per_s": True,
    "throughput_items_per_s": True, "throughput_tokens_per_s": True, "peak_memory_mb": False,
    "parameters": False, "checkpoint_mb": False,
    # LoRA cells only (harness.students.adapter): the figures above are the merged model's;
    # these the same measurements with the adapter unmerged, and the adapter's size.
    "unmerged_latency_p50_ms": False, "unmerged_latency_p95_ms": False,
    "unmerged_latency_p99_ms": False, "unmerged_ttft_p50_ms": False,
    "unmerged_ttft_p95_ms": False, "unmerged_decode_tokens_per_s": True,
    "unmerged_throughput_items_per_s": True, "unmerged_throughput_tokens_per_s": True,
    "adapter_parameters": False,
}


class ResultsSchema(pa.DataFrameModel):
    """The results table crossing from the run stage to analysis and report."""

    schema_version: int = pa.Field(eq=SCHEMA_VERSION)
    experiment: str
    cell_id: str = pa.Field(str_length={"min_value": 12, "max_value": 12})
    label: str
    bucket: str
    fields: str
    scale: float = pa.Field(gt=0, le=1)
    seed: int
    is_baseline: bool
    unit: str
    kind: str
    metric: str
    slice: str
    value: float = pa.Field(nullable=False)
    n: int = pa.Field(ge=0)
    higher_is_better: bool

    class Config:
        strict = True
        ordered = True


COLUMNS = list(ResultsSchema.to_schema().columns)


def _cell_columns(experiment: str, manifest: CellManifest) -> dict[str, Any]:
    """The columns identifying a cell, shared by all its rows."""
    axes = manifest.axes
    return {"schema_version": SCHEMA_VERSION, "experiment": experiment,
            "cell_id": manifest.cell_id, "label": manifest.label,
            "bucket": axes.bucket, "fields": axes.fields, "scale": float(axes.scale),
            "seed": int(axes.seed), "is_baseline": bool(manifest.is_baseline)}


def cell_rows(experiment: str, manifest: CellManifest, metrics: CellMetrics
              ) -> list[dict[str, Any]]:
    """Rows of one finished cell (see module docstring)."""
    base = _cell_columns(experiment, manifest)
    units = manifest.spec.units
    rows = []
    for unit, rep in metrics.units.items():
        kind = units[unit]["kind"]

        def add(metric: str, value: Any, slice_: str, n: int, unit: str = unit,
                kind: str = kind) -> None:
            if isinstance(value, int | float) and value == value:  # skip NaN
                rows.append({**base, "unit": unit, "kind": kind, "metric": metric,
                             "slice": slice_, "value": float(value), "n": int(n),
                             "higher_is_better": metric_direction(metric)})

        for metric, value in rep["metrics"].items():
            add(metric, value, "all", rep["n"])
        for name, sl in rep["slices"].items():
            for metric, value in sl["metrics"].items():
                add(metric, value, name, sl["n"])
        for teacher, fid in rep["fidelity"].items():
            for metric in ("agreement", "agree_correct", "agree_wrong", "copied_error_rate",
                           "copied_error_chance"):
                if metric in fid:
                    add(f"{metric}.{teacher}", fid[metric], "all", fid["n"])
    return rows


def latency_rows(experiment: str, manifest: CellManifest, metrics: CellMetrics
                 ) -> list[dict[str, Any]]:
    """Latency and size rows of one finished cell (``unit = "*"``, ``kind = "latency"``)."""
    base = _cell_columns(experiment, manifest)
    rows = []
    n_eval = sum(r["n"] for r in metrics.units.values())
    for metric, higher in LATENCY_METRICS.items():
        value = metrics.latency.get(metric)  # not every student has every figure (decode rate)
        if isinstance(value, int | float):
            rows.append({**base, "unit": "*", "kind": "latency", "metric": metric,
                         "slice": "all", "value": float(value), "n": n_eval,
                         "higher_is_better": higher})
    return rows


def results_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Validated, sorted results table from rows."""
    schema: dict[str, Any] = {c: pl.Utf8 for c in COLUMNS}
    schema.update({"schema_version": pl.Int64, "scale": pl.Float64, "seed": pl.Int64,
                   "is_baseline": pl.Boolean, "value": pl.Float64, "n": pl.Int64,
                   "higher_is_better": pl.Boolean})
    df = pl.DataFrame(rows, schema=schema).select(COLUMNS)
    df = df.sort("label", "unit", "metric", "slice")
    return ResultsSchema.validate(df)


def write_results(df: pl.DataFrame, path: Path) -> None:
    """Write the results table atomically (Parquet)."""
    atomic_write(path, lambda p: df.write_parquet(p))

