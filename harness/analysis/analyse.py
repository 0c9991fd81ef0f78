"""Put the analysis together: attribution, curves, ROI, signals, gate -> the analysis record
(:class:`~harness.store.contracts.AnalysisRecord`, written to the run folder). Every cell x
unit against chance (:mod:`harness.analysis.chance`) is computed once and kept in the gate
section (``gate.vs_chance``), where the ``at_chance`` signal and the report read it.

The record carries ``computed_from``, the SHA-256 of everything it was computed from (the run
record, the results and latency tables, the teacher audit, each finished cell's id, manifest,
metrics and predictions, the ``--history`` runs, the settings, the registered stop signals and
the harness version).
``harness gate`` and ``harness report`` call :func:`current_analysis`, which reuses the stored
analysis only when that digest still matches: a re-run cell is never reported with a stale
analysis.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from harness import __version__
from harness.analysis.arms import arms
from harness.analysis.attribution import attribution
from harness.analysis.chance import versus_chance
from harness.analysis.curves import learning_curves
from harness.analysis.gate import choose_cell, decide, fidelity_flags, signals
from harness.analysis.load import RunData, load_run, recorded_experiment
from harness.analysis.noise import training_noise
from harness.analysis.roi import ledger
from harness.analysis.signals import REGISTRY
from harness.analysis.summary import summarise
from harness.errors import InputError
from harness.experiment.models import Experiment
from harness.store.contracts import AnalysisRecord
from harness.store.folder import RunFolder
from harness.units import get, primary_metric

ANALYSIS_VERSION = AnalysisRecord.SCHEMA_VERSION


def _teacher_error(run: RunData) -> dict[str, float]:
    """Per unit, the error rate of the best teacher on the eval set (from the audit): ``1 -``
    the best value of the unit kind's ``teacher_error_metric``, the same metric the ROI ledger
    measures the student on (:func:`harness.analysis.fallback.error_metric`), so that the fallback
    rate compares like with like. Audited units the spec no longer has are skipped."""
    out = {}
    for unit, teachers in run.teacher_audit.items():
        if unit not in run.experiment.units:
            continue
        key = get(run.experiment.units[unit].kind).teacher_error_metric
        vals = [float(v) for t in teachers.values()
                if (v := (t.get("metrics") or {}).get(key)) is not None]
        if vals:
            out[unit] = min(1.0, max(0.0, 1.0 - max(vals)))
    return out


def _fidelity_table(run: RunData) -> list[dict[str, Any]]:
    rows = []
    for cell in run.cells:
        for unit, rep in cell.metrics.units.items():
            m = primary_metric(run.experiment.units[unit].kind)
            for t, fid in rep["fidelity"].items():
                rows.append({"cell_id": cell.cell_id, "label": cell.label, "unit": unit,
                             "teacher": t, "metric": m, "value": rep["metrics"].get(m),
                             **{k: fid.get(k) for k in ("agreement", "agree_correct",
                                                        "agree_wrong", "copied_error_rate",
                                                        "copied_error_chance")}})
    return rows


def analyse(run_dir: Path, history: list[Path] | None = None, method: str | None = None,
            n_boot: int = 1000, curve_boot: int = 200) -> dict[str, Any]:
    """Analyse a run folder (and earlier rounds); writes the analysis there and returns it."""
    # Hashed before reading, so a file that changes while we work makes the record stale.
    digest = computed_from(run_dir, history, method, n_boot, curve_boot)
    run = load_run(run_dir)
    past = [load_run(h) for h in history or []]
    for h in past:
        if h.run.experiment != run.run.experiment:
            raise InputError(f"--history {h.path}: a run of experiment "
                             f"{h.run.experiment!r}, not {run.run.experiment!r}")
    out = analyse_run(run, past, method, n_boot, curve_boot)
    out["computed_from"] = digest
    out["bootstrap"] = {"n_boot": n_boot, "curve_boot": curve_boot}
    folder = RunFolder(run_dir)
    # Checked against its contract before it is written: a section renamed here fails now,
    # not as a silent default in the report.
    folder.write_analysis(AnalysisRecord.from_json(out, f"the analysis of {run_dir}"))
    return out


def analyse_run(run: RunData, past: list[RunData] | None = None, method: str | None = None,
                n_boot: int = 1000, curve_boot: int = 200) -> dict[str, Any]:
    """The analysis record of a loaded run (and earlier rounds), written nowhere: what
    :func:`analyse` stores, less ``computed_from``. Simulated runs with known truth
    (``benchmarks/verdict_calibration.py``) go through exactly this code."""
    past = list(past or [])
    method = method or run.experiment.gate.correction
    facts = run.run.teachers
    groups = arms(run)
    noise = training_noise(run, groups)
    roi = ledger(run, facts.usage, facts.n_records, _teacher_error(run), groups)
    curves = learning_curves(run, n_boot=curve_boot, noise=noise)
    chosen = choose_cell(run)
    # the chosen arm's "above chance" is a bound simultaneous over the arms it was chosen among
    vs_chance = versus_chance(run, n_arms=chosen.get("candidates"))
    sigs = signals(run, chosen, curves, roi, past, vs_chance)
    gate = decide(run, chosen, sigs, roi, vs_chance)
    gate["summary"] = summarise(gate, sigs, curves)
    return {
        "analysis_version": ANALYSIS_VERSION, "experiment": run.run.experiment,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "gate": gate, "signals": sigs,
        "attribution": attribution(run, method, n_boot),
        "learning_curves": curves, "fidelity": _fidelity_table(run),
        "fidelity_flags": fidelity_flags(run), "roi": roi,
        "history": [str(h.path) for h in past], "computed_from": None,
    }


def current_analysis(run_dir: Path, history: list[Path] | None = None, method: str | None = None,
                     n_boot: int = 1000, curve_boot: int = 200) -> dict[str, Any]:
    """The stored analysis when it was computed from this folder as it is now (and the same
    history and settings); otherwise :func:`analyse` anew, which rewrites it."""
    folder = RunFolder(run_dir)
    digest = computed_from(run_dir, history, method, n_boot, curve_boot)
    if digest is not None and folder.has_analysis():
        try:
            stored = folder.read_analysis()
        except InputError:  # unreadable or another version: recompute it
            stored = None
        if stored is not None and stored.computed_from == digest:
            return stored.to_json()
    return analyse(run_dir, history, method, n_boot, curve_boot)


def report_analysis(run_dir: Path) -> dict[str, Any]:
    """The analysis a report shows: the stored one while it is current; else recomputed with the
    stored one's ``--history``, correction and bootstrap counts (what the last ``harness gate``
    asked for)."""
    history, method = None, None
    boot: dict[str, int] = {}
    folder = RunFolder(run_dir)
    if folder.has_analysis():
        try:
            stored = folder.read_analysis()
            history = [Path(h) for h in stored.history]
            method = stored.attribution.get("correction")
            boot = stored.bootstrap or {}
        except InputError:  # unreadable: analysed anew with the defaults
            pass
    return current_analysis(run_dir, history, method, **boot)


def _file_digest(path: Path) -> str | None:
    """SHA-256 of a file's bytes (None when it does not exist)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        return None
    return h.hexdigest()


def _folder_inputs(run_dir: Path) -> tuple[Experiment, dict[str, Any]]:
    """(the run's experiment, file -> digest of every file of the run folder the analysis
    reads)."""
    folder = RunFolder(run_dir)
    run = folder.read_run()
    files = {p.name: _file_digest(p) for p in (folder.run_json, folder.results, folder.latency,
                                               folder.teacher_audit)}
    cells = {}
    for entry in run.cells:
        if entry.status == "done":
            cell = folder.cell(entry.cell_id)
            cells[entry.cell_id] = {p.name: _file_digest(p) for p in (
                cell.manifest, cell.metrics, cell.predictions)}
    return recorded_experiment(run, folder.run_json), {"files": files, "cells": cells}


def _code_digest() -> str:
    """SHA-256 (hex) of the analysis and unit-kind sources: what turns a run folder into
    verdicts. Read once per call (a few dozen small files)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in ("analysis", "units"):
        for source in sorted((root / package).glob("*.py")):
            h.update(source.name.encode())
            h.update(source.read_bytes())
    return h.hexdigest()


def computed_from(run_dir: Path, history: list[Path] | None = None, method: str | None = None,
                  n_boot: int = 1000, curve_boot: int = 200) -> str | None:
    """SHA-256 (hex) of what an analysis of ``run_dir`` with these arguments depends on; None
    when the folder cannot be read (then the analysis itself says why)."""
    try:
        experiment, files = _folder_inputs(run_dir)
        inputs = {
            "analysis_version": ANALYSIS_VERSION, "harness": __version__, "run": files,
            # the code that computes it: a changed check or estimator makes a stored one stale
            "code": _code_digest(),
            # a new check changes what the analysis says: a stored one without it is stale
            "signals": sorted(REGISTRY),
            "history": [{"path": str(h), **_folder_inputs(h)[1]} for h in history or []],
            # the method analyse() will use: naming the spec's default changes nothing
            "method": method or experiment.gate.correction,
            "n_boot": n_boot, "curve_boot": curve_boot,
        }
    except (InputError, OSError, KeyError, TypeError, AttributeError):
        return None
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
