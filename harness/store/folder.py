"""The run folder: the one module that names its files and markers (standard library only).

``runs/<experiment>/``::

    cells/<cell_id>/   spec.yaml, manifest.json, train.jsonl, eval.jsonl   (compose; manifest last)
                       train_log.jsonl, model/, predictions.jsonl, metrics.json, DONE   (worker)
                       predictions.parquet   (run: the predictions as a table)
                       FAILED.json   (only when the cell failed: error, kind, hint)
    results.parquet    quality metrics, one row per cell x unit x metric x slice
    latency.parquet    latency and size per cell
    teacher_audit.json each teacher's eval answers scored like a student
    run.json           the run's spec, cells with their status, and inputs
    analysis.json      the analysis and the gate decision
    cache/             tokenizers and compiled graphs shared by the run's cells
                       (:mod:`harness.caches`; deleting it changes no result)

Every file is written atomically (:mod:`harness.fsutil`). ``DONE`` holds the cell id and is
written last: a cell is finished exactly when :meth:`CellFolder.is_done` says so for its id, so
a killed run never reads a half-written cell. The contract files are read into the typed
records of :mod:`harness.store.contracts`; a missing, corrupt or foreign file raises
:class:`~harness.store.contracts.ContractError` naming the file (exit status 2).

The worker imports this module: standard library and stdlib-only harness modules only.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.fsutil import atomic_write_json, atomic_write_text
from harness.store.contracts import (
    AnalysisRecord,
    CellManifest,
    CellMetrics,
    ContractError,
    FailureRecord,
    Record,
    RunRecord,
    TeacherReport,
)

CELLS = "cells"
SPEC = "spec.yaml"
MANIFEST = "manifest.json"
TRAIN = "train.jsonl"
EVAL = "eval.jsonl"
TRAIN_LOG = "train_log.jsonl"
MODEL = "model"
PREDICTIONS = "predictions.jsonl"
PREDICTIONS_TABLE = "predictions.parquet"
METRICS = "metrics.json"
DONE = "DONE"
FAILED = "FAILED.json"
RUN = "run.json"
RESULTS = "results.parquet"
LATENCY = "latency.parquet"
TEACHER_AUDIT = "teacher_audit.json"
ANALYSIS = "analysis.json"
CACHE = "cache"


def read_json(path: Path) -> Any:
    """The parsed JSON file; a missing or unparsable file is a located :class:`ContractError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContractError(str(path), "", "missing (is this a finished `harness run` "
                                           "folder?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(str(path), "", f"not valid JSON ({exc})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All JSON objects of a JSON Lines file (blank lines skipped); a missing file or a bad line
    is a located :class:`ContractError` (``file:line``)."""
    rows = []
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ContractError(f"{path}:{number}", "",
                                            f"not valid JSON ({exc})") from None
    except FileNotFoundError:
        raise ContractError(str(path), "", "missing") from None
    except UnicodeDecodeError as exc:
        raise ContractError(str(path), "", f"not UTF-8 text ({exc})") from None
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """One compact JSON object per line, UTF-8 kept as is, written atomically."""
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


R = TypeVar("R", bound=Record)


def _checked(record: R, path: Path) -> dict[str, Any]:
    """The record's JSON, read back through its contract first: a writer that drifted from the
    contract fails where it writes, not in a later stage that reads."""
    data = record.to_json()
    type(record).from_json(data, f"{path} (being written)")
    return data


def _teacher_audit(data: Any, where: str) -> dict[str, Any]:
    """``teacher_audit.json``'s map with every report read through :class:`TeacherReport`
    (the same JSON back; raises :class:`ContractError` naming unit and teacher)."""
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ContractError(where, "", "expected an object unit -> teacher -> report")
    return {unit: {t: TeacherReport.from_json(rep, f"{where}: {unit}.{t}").to_json()
                   for t, rep in teachers.items()} for unit, teachers in data.items()}


def is_done(cell_dir: Path, cell_id: str) -> bool:
    """Whether ``cell_dir`` holds finished results for exactly this cell id."""
    return CellFolder(cell_dir).is_done(cell_id)


@dataclass(frozen=True)
class CellFolder:
    """``runs/<experiment>/cells/<cell_id>/`` (or any folder ``harness compose`` wrote)."""

    path: Path

    @property
    def spec(self) -> Path:
        return self.path / SPEC

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def train(self) -> Path:
        return self.path / TRAIN

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def predictions(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def predictions_table(self) -> Path:
        return self.path / PREDICTIONS_TABLE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def done(self) -> Path:
        return self.path / DONE

    @property
    def failed(self) -> Path:
        return self.path / FAILED

    # -- markers ---------------------------------------------------------------------------
    def is_composed(self) -> bool:
        """Whether compose finished writing this folder (its manifest is written last)."""
        return self.manifest.is_file()

    def is_done(self, cell_id: str) -> bool:
        """Whether the folder holds finished results for exactly this cell id."""
        try:
            return self.done.read_text(encoding="utf-8").strip() == cell_id
        except OSError:
            return False

    def mark_done(self, cell_id: str) -> None:
        """Write ``DONE`` (the cell id); call after every other result file is in place."""
        atomic_write_text(self.done, cell_id + "\n")

    def clear_done(self) -> None:
        """Remove ``DONE``: the folder is being rewritten and is not finished until marked."""
        self.done.unlink(missing_ok=True)

    def clear_manifest(self) -> None:
        """Remove the manifest: compose is rewriting the folder."""
        self.manifest.unlink(missing_ok=True)

    def write_failure(self, record: FailureRecord) -> None:
        atomic_write_json(self.failed, _checked(record, self.failed))

    def read_failure(self) -> FailureRecord | None:
        """The failure record, or None when the cell has not failed."""
        if not self.failed.is_file():
            return None
        return FailureRecord.from_json(read_json(self.failed), str(self.failed))

    def clear_failure(self) -> None:
        self.failed.unlink(missing_ok=True)

    # -- contract files --------------------------------------------------------------------
    def read_manifest(self) -> CellManifest:
        return CellManifest.from_json(read_json(self.manifest), str(self.manifest))

    def write_manifest(self, manifest: CellManifest) -> None:
        atomic_write_json(self.manifest, _checked(manifest, self.manifest))

    def read_metrics(self) -> CellMetrics:
        return CellMetrics.from_json(read_json(self.metrics), str(self.metrics))

    def write_metrics(self, metrics: CellMetrics) -> None:
        atomic_write_json(self.metrics, _checked(metrics, self.metrics))

    def read_train(self) -> list[dict[str, Any]]:
        return read_jsonl(self.train)

    def read_eval(self) -> list[dict[str, Any]]:
        return read_jsonl(self.eval)

    def read_predictions(self) -> list[dict[str, Any]]:
        return read_jsonl(self.predictions)

    def write_predictions(self, rows: list[dict[str, Any]]) -> None:
        write_jsonl(self.predictions, rows)

    @contextlib.contextmanager
    def train_log_writer(self) -> Iterator[Callable[[dict[str, Any]], None]]:
        """``log(row)`` appending one JSON line per call to a temporary file that becomes
        ``train_log.jsonl`` when the block ends normally; on an exception it is removed, so a
        failed cell leaves no partial log behind."""
        tmp = self.path / f".{TRAIN_LOG}.tmp"
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                def log(row: dict[str, Any]) -> None:
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()  # a watcher (or a post-mortem) sees every logged step

                yield log
            os.replace(tmp, self.train_log)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class RunFolder:
    """``runs/<experiment>/``: the run's cells and its store."""

    root: Path

    @property
    def cells(self) -> Path:
        return self.root / CELLS

    def cell(self, cell_id: str) -> CellFolder:
        return CellFolder(self.cells / cell_id)

    @property
    def run_json(self) -> Path:
        return self.root / RUN

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def latency(self) -> Path:
        return self.root / LATENCY

    @property
    def teacher_audit(self) -> Path:
        return self.root / TEACHER_AUDIT

    @property
    def analysis(self) -> Path:
        return self.root / ANALYSIS

    @property
    def cache(self) -> Path:
        return self.root / CACHE

    def read_run(self) -> RunRecord:
        return RunRecord.from_json(read_json(self.run_json), str(self.run_json))

    def write_run(self, run: RunRecord) -> None:
        atomic_write_json(self.run_json, _checked(run, self.run_json))

    def has_analysis(self) -> bool:
        return self.analysis.is_file()

    def read_analysis(self) -> AnalysisRecord:
        return AnalysisRecord.from_json(read_json(self.analysis), str(self.analysis))

    def write_analysis(self, analysis: AnalysisRecord) -> None:
        atomic_write_json(self.analysis, _checked(analysis, self.analysis))

    def read_teacher_audit(self) -> dict[str, Any]:
        """unit -> teacher -> audit report (each checked as a :class:`TeacherReport`); {} when
        the run wrote none (no composed cell)."""
        if not self.teacher_audit.is_file():
            return {}
        return _teacher_audit(read_json(self.teacher_audit), str(self.teacher_audit))

    def write_teacher_audit(self, audit: dict[str, Any]) -> None:
        atomic_write_json(self.teacher_audit,
                          _teacher_audit(audit, f"{self.teacher_audit} (being written)"))
