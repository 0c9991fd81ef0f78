"""Put the analysis together: attribution, curves, ROI, signals, gate -> ``analysis.json``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from harness.analysis.attribution import attribution
from harness.analysis.curves import learning_curves
from harness.analysis.gate import choose_cell, decide, fidelity_flags, signals
from harness.analysis.load import RunData, load_run
from harness.analysis.roi import ledger
from harness.errors import InputError
from harness.evaluate.metrics import PRIMARY_METRIC
from harness.fsutil import atomic_write_json

ANALYSIS_VERSION = 1


def _teacher_error(run: RunData) -> dict[str, float]:
    """Per unit, the error rate of the best teacher on the eval set (from the audit)."""
    out = {}
    for unit, teachers in run.teacher_audit.items():
        kind = run.spec["units"][unit]["kind"]
        key = "accuracy" if kind in ("label", "refusal") else PRIMARY_METRIC[kind]
        vals = [t["metrics"].get(key) for t in teachers.values() if t["metrics"].get(key)
                is not None]
        if vals:
            out[unit] = 1 - max(vals)
    return out


def _fidelity_table(run: RunData) -> list[dict[str, Any]]:
    rows = []
    for cell in run.cells:
        for unit, rep in cell.metrics["units"].items():
            m = PRIMARY_METRIC[run.spec["units"][unit]["kind"]]
            for t, fid in rep["fidelity"].items():
                rows.append({"cell_id": cell.cell_id, "label": cell.label, "unit": unit,
                             "teacher": t, "metric": m, "value": rep["metrics"].get(m),
                             **{k: fid.get(k) for k in ("agreement", "agree_correct",
                                                        "agree_wrong", "copied_error_rate",
                                                        "copied_error_chance")}})
    return rows


def analyse(run_dir: Path, history: list[Path] | None = None, method: str | None = None,
            n_boot: int = 1000, curve_boot: int = 200) -> dict[str, Any]:
    """Analyse a run folder (and earlier rounds); writes and returns ``analysis.json``."""
    run = load_run(run_dir)
    past = [load_run(h) for h in history or []]
    for h in past:
        if h.run["experiment"] != run.run["experiment"]:
            raise InputError(f"--history {h.path}: a run of experiment "
                             f"{h.run['experiment']!r}, not {run.run['experiment']!r}")
    method = method or run.spec["gate"].get("correction", "holm")
    facts = run.run.get("teachers", {})
    roi = ledger(run, facts.get("usage", {}), int(facts.get("n_records", 0)),
                 _teacher_error(run))
    curves = learning_curves(run, n_boot=curve_boot)
    chosen = choose_cell(run, roi)
    sigs = signals(run, chosen, curves, roi, past)
    gate = decide(run, chosen, sigs, roi)
    out = {
        "analysis_version": ANALYSIS_VERSION, "experiment": run.run["experiment"],
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "gate": gate, "signals": sigs,
        "attribution": attribution(run, method, n_boot),
        "learning_curves": curves, "fidelity": _fidelity_table(run),
        "fidelity_flags": fidelity_flags(run), "roi": roi,
        "history": [str(h.path) for h in past],
    }
    atomic_write_json(run_dir / "analysis.json", out)
    return out
