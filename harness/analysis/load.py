"""Read a run folder (``runs/<experiment>/``) for analysis — and nothing else.

Everything analysis needs was written by ``harness run``: ``run.json`` (the experiment's spec and
the cells' status), ``results.parquet`` / ``latency.parquet``, and per finished cell its
``manifest.json``, ``metrics.json`` and predictions. A missing, incomplete or foreign folder is an
:class:`~harness.errors.InputError` (exit status 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from harness.errors import InputError
from harness.evaluate.metrics import scorer_for
from harness.store.results import SCHEMA_VERSION


@dataclass
class UnitItems:
    """One cell's per-item results for one unit, aligned by eval id.

    Attributes:
        ids: eval item ids (sorted), shape (n,).
        correct: (n,) 0/1.
        parts: per-item additive parts of the primary metric (see ``Scored.parts``).
        slices: tag values per item (``{"source": [...]}``).
    """

    ids: list[str]
    correct: np.ndarray
    parts: dict[str, np.ndarray]
    tags: list[dict[str, str]]


@dataclass
class CellData:
    """A finished cell as analysis sees it."""

    cell_id: str
    label: str
    axes: dict[str, Any]
    is_baseline: bool
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    units: dict[str, UnitItems] = field(default_factory=dict)


@dataclass
class RunData:
    """A run folder's contents."""

    path: Path
    run: dict[str, Any]
    spec: dict[str, Any]
    results: pl.DataFrame
    latency: pl.DataFrame
    cells: list[CellData]
    teacher_audit: dict[str, Any]
    eval_rows: list[dict[str, Any]]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: missing (is this a finished `harness run` folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def _read_parquet(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise InputError(f"{path}: missing (no cell of this run finished?)")
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a corrupt table
        raise InputError(f"{path}: cannot be read as Parquet ({type(exc).__name__})") from None
    if "schema_version" not in df.columns or df["schema_version"].n_unique() != 1 or int(
            df["schema_version"][0]) != SCHEMA_VERSION:
        raise InputError(f"{path}: not a results table of schema version {SCHEMA_VERSION}")
    return df


def _predictions(folder: Path) -> list[dict[str, Any]]:
    path = folder / "predictions.jsonl"
    try:
        return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from None


def _unit_items(unit: dict[str, Any], rows: list[dict[str, Any]]) -> UnitItems:
    rows = sorted(rows, key=lambda r: r["id"])
    scored = scorer_for(unit)([r["answer"] for r in rows], [r["reference"] for r in rows])
    parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
    parts["correct"] = np.asarray(scored.correct, dtype=float)
    return UnitItems(ids=[r["id"] for r in rows], correct=parts["correct"], parts=parts,
                     tags=[r.get("tags") or {} for r in rows])


def load_run(path: Path) -> RunData:
    """Load a run folder; raises :class:`InputError` when it is missing or incomplete."""
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder")
    run = _read_json(path / "run.json")
    if "spec" not in run or "cells" not in run:
        raise InputError(f"{path / 'run.json'}: not written by this version of `harness run`")
    spec = run["spec"]
    results = _read_parquet(path / "results.parquet")
    latency = _read_parquet(path / "latency.parquet")
    if set(results["experiment"].unique()) != {run["experiment"]}:
        raise InputError(f"{path / 'results.parquet'}: rows of another experiment")
    cells = []
    eval_rows: list[dict[str, Any]] = []
    for entry in run["cells"]:
        if entry["status"] != "done":
            continue
        folder = path / "cells" / entry["cell_id"]
        manifest = _read_json(folder / "manifest.json")
        metrics = _read_json(folder / "metrics.json")
        cell = CellData(entry["cell_id"], entry["label"], manifest["axes"],
                        bool(entry["is_baseline"]), manifest, metrics)
        preds = _predictions(folder)
        for name, unit in spec["units"].items():
            rows = [r for r in preds if r["unit"] == name]
            if rows:
                cell.units[name] = _unit_items(unit, rows)
        cells.append(cell)
        if not eval_rows and (folder / "eval.jsonl").is_file():
            eval_rows = [json.loads(x) for x in (folder / "eval.jsonl").open(encoding="utf-8")
                         if x.strip()]
    if not cells:
        raise InputError(f"{path}: no finished cell to analyse")
    audit = _read_json(path / "teacher_audit.json") if (path / "teacher_audit.json").is_file() \
        else {}
    return RunData(path, run, spec, results, latency, cells, audit, eval_rows)
