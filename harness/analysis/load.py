"""Read a run folder (``runs/<experiment>/``) for analysis — and nothing else.

Everything analysis needs was written by ``harness run`` (paths:
:class:`harness.store.folder.RunFolder`): the run record (the experiment's spec and the cells'
status), the results and latency tables, and per finished cell its manifest, metrics and
predictions. The record's spec (``Experiment.model_dump(mode="json")``) is validated back into
the typed experiment model, which analysis reads (``run.experiment.gate.blocking_signals``); the
JSON form stays as ``run.spec``, the record as written. A unit's options go to the unit-kind
interface as JSON data (:func:`unit_options`), the form the worker passes too. A missing,
incomplete or foreign folder is an :class:`~harness.errors.InputError` (a
:class:`~harness.store.contracts.ContractError` when a record does not match its contract; exit
status 2), and so is a recorded spec this harness's experiment model no longer accepts
(:func:`recorded_experiment`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import ValidationError

from harness.errors import InputError, ProblemLog
from harness.experiment.locate import Locator, pydantic_problems
from harness.experiment.models import Experiment
from harness.store.contracts import CellManifest, CellMetrics, RunRecord
from harness.store.folder import CellFolder, RunFolder
from harness.store.record import join_key
from harness.store.results import SCHEMA_VERSION
from harness.units import get, primary_metric


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
    """A finished cell as analysis sees it (``axes``: the manifest's axes as a dict)."""

    cell_id: str
    label: str
    axes: dict[str, Any]
    is_baseline: bool
    manifest: CellManifest
    metrics: CellMetrics
    units: dict[str, UnitItems] = field(default_factory=dict)


@dataclass
class RunData:
    """A run folder's contents.

    Attributes:
        spec: the run record's spec as JSON data (``run.spec``).
        experiment: the same spec validated into the experiment model: what analysis reads.
    """

    path: Path
    run: RunRecord
    spec: dict[str, Any]
    experiment: Experiment
    results: pl.DataFrame
    latency: pl.DataFrame
    cells: list[CellData]
    teacher_audit: dict[str, Any]
    eval_rows: list[dict[str, Any]]


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


def _predictions(folder: CellFolder) -> list[dict[str, Any]]:
    try:
        return folder.read_predictions()
    except OSError as exc:  # missing or corrupt content is a ContractError already
        raise InputError(f"{folder.predictions}: cannot be read ({exc})") from None


def _unit_items(unit: dict[str, Any], rows: list[dict[str, Any]]) -> UnitItems:
    """Per-item parts as the worker scored them (each prediction's ``parts``: the primary
    metric's additive parts, ``correct`` included); predictions written without them are scored
    here (run folders from before the worker recorded parts)."""
    rows = sorted(rows, key=lambda r: r["id"])
    if rows and all(isinstance(r.get("parts"), dict) for r in rows):
        names = sorted({k for r in rows for k in r["parts"]})
        parts = {k: np.asarray([r["parts"].get(k, 0.0) for r in rows], dtype=float)
                 for k in names}
        if "correct" not in parts:
            parts["correct"] = np.asarray([r["correct"] for r in rows], dtype=float)
    else:
        scored = get(unit["kind"]).score(unit, [r["answer"] for r in rows],
                                         [r["reference"] for r in rows])
        parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
        parts["correct"] = np.asarray(scored.correct, dtype=float)
    return UnitItems(ids=[r["id"] for r in rows], correct=parts["correct"], parts=parts,
                     tags=[r.get("tags") or {} for r in rows])


def recorded_experiment(run: RunRecord, where: Path) -> Experiment:
    """The run record's spec validated into the experiment model.

    The spec is the experiment's JSON dump, so it validates back; its data paths are not
    checked for existence (the model never does; :mod:`harness.checks` does at load), so a run
    folder analysed on another machine validates too. Unit kinds are found in the unit-kind
    registry, as when the YAML was loaded: a kind registered at run time must be registered
    here as well.

    Raises:
        InputError: the spec does not validate (a run written by another harness version, or
            a unit kind not registered here), one located problem per error (``spec.<path>``).
    """
    try:
        return Experiment.model_validate(run.spec)
    except ValidationError as exc:
        log = ProblemLog()
        pydantic_problems(exc, log, Locator(where, {}))
        problems = [replace(p, field=join_key("spec", p.field) if p.field else "spec")
                    for p in log.problems]
        raise InputError(f"{where}: the experiment spec it records does not validate against "
                         "this harness's experiment model", problems, log.total) from None


def load_run(path: Path) -> RunData:
    """Load a run folder; raises :class:`InputError` when it is missing or incomplete, or
    when its recorded spec does not validate (:func:`recorded_experiment`)."""
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder")
    folder = RunFolder(path)
    run = folder.read_run()
    experiment = recorded_experiment(run, folder.run_json)
    results = _read_parquet(folder.results)
    latency = _read_parquet(folder.latency)
    if set(results["experiment"].unique()) != {run.experiment}:
        raise InputError(f"{folder.results}: rows of another experiment")
    cells = []
    eval_rows: list[dict[str, Any]] = []
    for entry in run.cells:
        if entry.status != "done":
            continue
        cell_folder = folder.cell(entry.cell_id)
        manifest, metrics = cell_folder.read_manifest(), cell_folder.read_metrics()
        cell = CellData(entry.cell_id, entry.label, asdict(manifest.axes), entry.is_baseline,
                        manifest, metrics)
        preds = _predictions(cell_folder)
        for name, unit in experiment.units.items():
            rows = [r for r in preds if r["unit"] == name]
            if rows:
                cell.units[name] = _unit_items(unit.model_dump(mode="json"), rows)
        cells.append(cell)
        if not eval_rows and cell_folder.eval.is_file():
            eval_rows = cell_folder.read_eval()
    if not cells:
        raise InputError(f"{path}: no finished cell to analyse")
    return RunData(path, run, run.spec, experiment, results, latency, cells,
                   folder.read_teacher_audit(), eval_rows)


# -- reading a loaded run ----------------------------------------------------------------------

def value(run: RunData, cell_id: str, unit: str, metric: str, slice_: str = "all"
          ) -> float | None:
    """One value of ``results.parquet``; None when the table has no such row."""
    df = run.results.filter((run.results["cell_id"] == cell_id) & (run.results["unit"] == unit)
                            & (run.results["metric"] == metric)
                            & (run.results["slice"] == slice_))
    return float(df["value"][0]) if df.height else None


def unit_options(run: RunData, unit: str) -> dict[str, Any]:
    """The unit's ``units:`` entry as JSON data: the form the unit-kind interface takes
    (``UnitKind.score``, ``decision_metrics``...), the worker's as well."""
    return run.experiment.units[unit].model_dump(mode="json")


def primary(run: RunData, unit: str) -> str:
    """The unit's primary metric."""
    return primary_metric(run.experiment.units[unit].kind)


def decision_metrics(run: RunData, unit: str) -> list[str]:
    """The metrics attribution tests on the unit, primary first (its kind's
    ``decision_metrics``)."""
    return get(run.experiment.units[unit].kind).decision_metrics(unit_options(run, unit))


def units_that_matter(run: RunData) -> list[str]:
    """``stop.units``, or every unit."""
    return list(run.experiment.stop.units or run.experiment.units)
