"""``harness report``: one self-contained HTML page from a run folder.

Reads the run folder (:class:`~harness.store.folder.RunFolder`): the results and latency tables,
the analysis (recomputed when missing or computed from other files than the folder's now), the
run record, the teacher audit and per cell its metrics, predictions and failure record; renders
``templates/report.html.j2`` with Jinja2 (autoescape on). Inline CSS and SVG only — no scripts,
fonts or any other request — so the file can be mailed, archived and opened offline.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from harness.analysis.chance import learned
from harness.analysis.load import RunData, load_run, units_that_matter
from harness.analysis.roi import NOT_PRICED, RoiEstimate
from harness.analysis.slices import slice_table
from harness.experiment.models import CostSpec
from harness.fsutil import atomic_write_text
from harness.report import effects, first_screen, svg
from harness.store.folder import RunFolder
from harness.units import get, primary_metric

MAX_DISAGREEMENTS = 40
MAX_TABLE_ROWS = 400


def _env() -> Environment:
    env = Environment(loader=PackageLoader("harness.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["num"] = lambda v, d=3: "–" if v is None else (
        f"{v:,.{d}f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else v)
    env.filters["signed"] = lambda v, d=3: "–" if v is None else f"{v:+.{d}f}"
    return env


#: How a learned-nothing cell looks in both cells x units tables: amber hatching, never the
#: neutral grey of "no evidence".
AT_CHANCE_STYLE = ("background:repeating-linear-gradient(135deg,#ffe1a8 0 6px,#fff3d6 6px 12px);"
                   "outline:2px solid #9a6700;outline-offset:-2px")


def _at_chance(analysis: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    """(arm, unit) -> the verdict of an arm that is not above chance on the unit (``at
    chance``, ``below chance`` or ``undecided``) as a one-item list."""
    return {(r["arm"], r["unit"]): [r["verdict"]]
            for r in analysis["gate"].get("vs_chance", []) if not learned(r)}


def _heatmap(run: RunData, analysis: dict[str, Any]) -> dict[str, Any]:
    """Arms x units: delta vs baseline with CI, significance and MDE greying; an arm whose
    student is not above chance on the unit is hatched amber and marked, whatever its delta."""
    units = list(run.experiment.units)
    cells: dict[str, dict[str, Any]] = {}
    biggest = 1e-9
    chance = _at_chance(analysis)
    for c in analysis["attribution"]["vs_baseline"]:
        if not c.get("primary", True):
            continue  # the heatmap shows primaries; every decision metric is in the tables
        cells.setdefault(c["arm"], {})[c["unit"]] = c
        biggest = max(biggest, abs(c["delta"]))
    rows = []
    for arm, by_unit in cells.items():
        row: dict[str, Any] = {"arm": arm, "cells": []}
        for u in units:
            c = by_unit.get(u)
            if c is None:
                row["cells"].append(None)
                continue
            below = abs(c["delta"]) < c["mde"]
            hue = 140 if c["delta"] >= 0 else 0  # green better, red worse (primaries: higher)
            alpha = 0.12 if below else 0.15 + 0.75 * min(1.0, abs(c["delta"]) / biggest)
            at_chance = chance.get((arm, u), [])
            style = (AT_CHANCE_STYLE if at_chance
                     else f"background:hsla({hue},60%,45%,{alpha:.2f})")
            row["cells"].append({**c, "below_mde": below and not at_chance,
                                 "at_chance": at_chance, "style": style})
        rows.append(row)
    baseline = analysis["attribution"].get("baseline")
    return {"units": units, "rows": rows,
            "metrics": {u: primary_metric(run.experiment.units[u].kind) for u in units},
            "baseline_at_chance": [u for u in units if (baseline, u) in chance]}


def _chance(run: RunData, analysis: dict[str, Any]) -> dict[str, Any]:
    """Arms x units against chance: per arm and unit its mean primary metric over its seeds,
    the chance level, the margin's 95% interval, its bounds and the verdict (with the action
    that would decide an undecided one); per unit the audited teachers."""
    units = list(run.experiment.units)
    by_arm: dict[str, dict[str, Any]] = {}
    teachers: dict[str, dict[str, float]] = {}
    rows_in = analysis["gate"].get("vs_chance", [])
    for r in rows_in:
        by_arm.setdefault(r["arm"], {})[r["unit"]] = {
            **r, "learned": learned(r), "style": "" if learned(r) else AT_CHANCE_STYLE}
        teachers.setdefault(r["unit"], r["teachers"])
    rows = [{"arm": arm, "cells": [cells.get(u) for u in units]}
            for arm, cells in by_arm.items()][:MAX_TABLE_ROWS]
    nothing = sum(1 for r in rows_in if not learned(r))
    first = rows_in[0] if rows_in else {}
    return {"units": units, "rows": rows, "teachers": teachers, "at_chance": nothing,
            "alpha": first.get("alpha"), "arms": first.get("arms"),
            "chance_margin": first.get("chance_margin"),
            "metrics": {u: primary_metric(run.experiment.units[u].kind) for u in units}}


def _calibration(run: RunData, chosen_id: str) -> list[dict[str, Any]]:
    out = []
    for unit, options in run.experiment.units.items():
        if not get(options.kind).calibrated:  # no probabilities, no reliability diagram
            continue
        rows: list[dict[str, Any]] = []
        charts: list[dict[str, Any]] = []
        for cell in run.cells[:MAX_TABLE_ROWS]:
            rep = cell.metrics.units.get(unit)  # a cell need not have every unit
            if not rep or not rep.get("calibration"):
                continue
            m = rep["metrics"]
            rows.append({"label": cell.label, "ece_15": m.get("ece_15"),
                         "ece_10_mass": m.get("ece_10_mass"), "brier": m.get("brier"),
                         "nll": m.get("nll"), "n": rep["n"],
                         "unreliable": not rep["calibration"]["ece_reliable"]})
            # the chosen cell and one baseline cell: a diagram per seed would say little more
            role = ("chosen" if cell.cell_id == chosen_id else "baseline" if cell.is_baseline
                    and not any(c["role"] == "baseline" for c in charts) else None)
            if role:
                charts.append({"role": role, "label": cell.label, "svg": svg.reliability(
                    rep["calibration"]["reliability"], f"Reliability: {cell.label}, {unit}")})
        out.append({"unit": unit, "rows": rows, "charts": charts})
    return out


def _latency(run: RunData) -> list[dict[str, Any]]:
    by_cell: dict[str, dict[str, Any]] = {}
    for r in run.latency.iter_rows(named=True):
        by_cell.setdefault(r["label"], {})[r["metric"]] = r["value"]
    return [{"label": k, **v} for k, v in sorted(by_cell.items())][:MAX_TABLE_ROWS]


#: Learning-curve charts drawn (the chosen arm's family first); the rest are in the table.
MAX_CURVE_CHARTS = 8


def _curve_note(c: dict[str, Any]) -> str:
    """What the eye would misread: a flat fit through points that fall with scale (the power
    law models an error that falls with samples, so it cannot follow a metric that drops)."""
    means = [p["value"] for p in c["points"]]
    flat = c["fit"] and (c["fit"]["a"] == 0.0 or c["fit"]["b"] == 0.0
                         or c["fit"]["next_doubling_gain"] <= 1e-9)
    if flat and len(means) > 1 and means[-1] < means[0]:
        return (f"measured {c['metric']} falls with scale ({means[0]:.2f} → {means[-1]:.2f}); "
                "the power law (error falling with samples) cannot follow it, so its fit is "
                "flat and predicts no gain")
    return ""


def _curves(analysis: dict[str, Any]) -> dict[str, Any]:
    """Learning-curve charts (every seed's point, the arm means, the fit and the next
    doubling's band), the chosen arm's bucket x field set first, at most
    :data:`MAX_CURVE_CHARTS`; every curve's numbers for the folded table."""
    arm = analysis["gate"]["cell"].get("arm") or ""
    own = tuple(arm.split("/")[:2])
    rows = sorted(analysis["learning_curves"],
                  key=lambda c: ((c["bucket"], c["fields"]) != own, not c["fit"]))
    charts: list[dict[str, Any]] = []
    for c in rows:
        if len(c["points"]) < 2 or len(charts) >= MAX_CURVE_CHARTS:
            continue
        seeds = [(p["samples"], v) for p in c["points"] for v in p.get("seed_values", [])]
        means = [(p["samples"], p["value"]) for p in c["points"]]
        fit: list[tuple[float, float]] = []
        band: list[tuple[float, float, float]] = []
        if c["fit"]:
            f = c["fit"]
            m_max = f["m_max"]
            xs = sorted({x for x, _ in means} | {m_max * 1.5, m_max * 2})
            fit = [(x, 1 - (f["a"] * x ** f["b"] + f["c"])) for x in xs]
            y_now = 1 - (f["a"] * m_max ** f["b"] + f["c"])
            lo, hi = f["gain_ci"]
            if lo is not None:
                band = [(m_max, y_now, y_now), (2 * m_max, y_now + lo, y_now + hi)]
        note = _curve_note(c)
        title = f"Learning curve {c['bucket']}/{c['fields']}, {c['unit']}"
        charts.append({**c, "note_flat": note, "svg": svg.curve(
            seeds, means, fit, band, title, "training samples of the unit (log2)", c["metric"],
            log_x=True)})
    return {"charts": charts, "rows": analysis["learning_curves"][:MAX_TABLE_ROWS],
            "single": sum(1 for c in analysis["learning_curves"] if len(c["points"]) < 2)}


def _roi_chart(analysis: dict[str, Any], chosen_id: str, costs: CostSpec) -> Any:
    """The chosen cell's cumulative cost; None without a ledger row or without prices (a chart
    of zeros would draw a break-even nobody computed)."""
    row = next((r for r in analysis["roi"] if r["cell_id"] == chosen_id), None)
    if row is None or not row.get("priced", True) or row["offline_cost"] is None:
        return None
    # The ledger's own estimator draws the curve, so chart and table cannot disagree.
    # (with the cell's own student price and fallback rate: the quality-adjusted break-even)
    curve = RoiEstimate.from_costs(costs, row["offline_cost"],
                                   row.get("student_price_per_1k"),
                                   row.get("fallback_rate", 0.0)).cumulative_cost()
    return svg.cumulative_cost(
        [("teacher only", curve["teacher only"]),
         ("distilled student", curve["distilled student"])],
        f"Cumulative cost ({row['currency']}) over {costs.traffic.days} days",
        "days", f"cost ({row['currency']})",
        break_even=row.get("quality_adjusted_break_even_days") or row.get("break_even_days"))


def _config_diff(run: RunData) -> dict[str, Any]:
    """Only the bucket / field-set / scale / seed settings that differ between cells."""
    flat: dict[str, dict[str, Any]] = {}
    for cell in run.cells:
        eff = cell.manifest.spec
        row: dict[str, Any] = {"scale": eff.scale, "seed": eff.seed}
        for part, settings in (("bucket", eff.bucket), ("fields", eff.fields)):
            for k, v in settings.items():
                row[f"{part}.{k}"] = json.dumps(v) if isinstance(v, list | dict) else v
        flat[cell.label] = row
    keys = sorted({k for r in flat.values() for k in r})
    differing = [k for k in keys if len({json.dumps(r.get(k), default=str)
                                         for r in flat.values()}) > 1]
    return {"keys": differing, "rows": [{"label": lab, "values": [r.get(k) for k in differing]}
                                        for lab, r in sorted(flat.items())][:MAX_TABLE_ROWS]}


def _disagreements(run: RunData, chosen_id: str) -> list[dict[str, Any]]:
    base = next((c for c in run.cells if c.is_baseline), None)
    best = next((c for c in run.cells if c.cell_id == chosen_id), None)
    if base is None or best is None or base.cell_id == best.cell_id:
        return []
    prompts = {r["id"]: r["prompt"] for r in run.eval_rows}

    def preds(cell: Any) -> dict[tuple[str, str], dict[str, Any]]:
        rows = RunFolder(run.path).cell(cell.cell_id).read_predictions()
        return {(r["unit"], r["id"]): r for r in rows}

    a, b = preds(base), preds(best)
    out = []
    for key in sorted(a.keys() & b.keys()):
        if a[key]["correct"] != b[key]["correct"]:
            out.append({"unit": key[0], "id": key[1], "prompt": prompts.get(key[1], ""),
                        "reference": a[key]["reference"], "baseline": a[key]["answer"],
                        "best": b[key]["answer"], "best_right": bool(b[key]["correct"])})
        if len(out) >= MAX_DISAGREEMENTS:
            break
    return out


def _slices(run: RunData, chosen_id: str) -> list[dict[str, Any]]:
    """Per-slice primary metrics with n and 95% intervals, for the chosen cell's arm and the
    baseline's arm (all seeds; :func:`harness.analysis.slices.slice_table`): one table each,
    the chosen arm first, the baseline once when it is the chosen arm."""
    def arm_of(cell: Any) -> list[Any]:
        a = cell.axes
        key = (a["bucket"], a["fields"], float(a["scale"]))
        return [c for c in run.cells
                if (c.axes["bucket"], c.axes["fields"], float(c.axes["scale"])) == key]

    chosen = next((c for c in run.cells if c.cell_id == chosen_id), None)
    base = next((c for c in run.cells if c.is_baseline), None)
    out = []
    for role, cell in (("chosen", chosen), ("baseline", base)):
        if cell is None or (role == "baseline" and chosen is not None
                            and arm_of(cell) == arm_of(chosen)):
            continue
        cells = arm_of(cell)
        a = cell.axes
        out.append({"role": role, "arm": f"{a['bucket']}/{a['fields']}/x{float(a['scale']):g}",
                    "seeds": len(cells),
                    "rows": [r.to_dict() for r in slice_table(run, cells, n_boot=200)]})
    return out


def _slice_charts(tables: list[dict[str, Any]]) -> list[Markup]:
    """Per unit, a dot plot of its eval slices: the chosen arm and the baseline arm with their
    intervals (slices in the chosen arm's table order); none without slices beyond ``all``."""
    if not tables or all(r["slice"] == "all" for t in tables for r in t["rows"]):
        return []
    order: dict[str, list[str]] = {}
    for r in tables[0]["rows"]:
        order.setdefault(r["unit"], []).append(r["slice"])
    charts = []
    for unit, slices in order.items():
        series = []
        for t in tables:
            got = {r["slice"]: r for r in t["rows"] if r["unit"] == unit}
            series.append(svg.DotSeries(
                f"{t['role']}: {t['arm']}", t["role"],
                tuple((r["value"], r["ci_low"], r["ci_high"], r["n"]) if (r := got.get(sl))
                      else (math.nan, None, None, 0) for sl in slices)))
        metric = next(r["metric"] for r in tables[0]["rows"] if r["unit"] == unit)
        charts.append(svg.dots([(unit, slices)], series,
                               f"{unit}: {metric} per eval slice, chosen arm and baseline "
                               "(95% intervals)", metric))
    return charts


def _failed(run: RunData) -> list[dict[str, Any]]:
    out = []
    for entry in run.run.cells:
        if entry.status == "done":
            continue
        failure = RunFolder(run.path).cell(entry.cell_id).read_failure()
        # the cell's own record first; else what this run saw; a cell not run has neither
        error, hint = ((failure.error, failure.hint) if failure else
                       (entry.error["error"], entry.error["hint"]) if entry.error else ("", ""))
        out.append({"label": entry.label, "cell_id": entry.cell_id, "status": entry.status,
                    "error": error, "hint": hint})
    return out


#: The verdict calibration benchmark's committed results (beside the package in a checkout).
CALIBRATION_JSON = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / \
    "verdict_calibration.json"


def _verdict_error_rates(path: Path = CALIBRATION_JSON) -> dict[str, Any] | None:
    """The measured error rates of the verdicts (``benchmarks/verdict_calibration.py``):
    ``{"date", "targets": [{"scenario", "target", "goal", "rate", "ci", "met"}]}``; None when
    the benchmark's JSON is not there (an installed package without the checkout) or
    unreadable."""
    try:
        data = json.loads(path.read_text())
        targets = [{"scenario": name, **t} for name, sc in data["scenarios"].items()
                   for t in sc.get("targets", [])]
        return {"date": data.get("date", "?"), "targets": targets}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def build(run_dir: Path) -> dict[str, Any]:
    """Everything the template shows."""
    from harness.analysis.analyse import report_analysis

    # Recomputed when a cell was re-run since (or never analysed): never a stale analysis.
    analysis = report_analysis(run_dir)
    run = load_run(run_dir)
    gate = analysis["gate"]
    chosen = gate["cell"]["cell_id"]
    env = run.cells[0].metrics.environment
    n_eval = {u: len(items.ids) for u, items in run.cells[0].units.items()}
    statuses = [c.status for c in run.run.cells]
    experiment = run.experiment
    notes = effects.Footnotes()
    at_chance = set(_at_chance(analysis))
    units = list(experiment.units)
    attribution = analysis["attribution"]
    reference = attribution.get("reference_arm") or attribution["baseline"]
    slices = _slices(run, chosen)
    return {
        "summary": first_screen.summary(analysis),
        "scorecard": first_screen.scorecard(analysis, run),
        "signal_states": first_screen.signal_states(analysis, run),
        "ranking": first_screen.ranking(analysis, units_that_matter(run)),
        "forests": effects.forests(
            [(f"every arm − baseline {attribution['baseline']}", attribution["vs_baseline"])],
            units, at_chance, notes),
        "factor_forests": effects.forests(
            [(f"bucket − {reference}", attribution["bucket_effects"]),
             (f"field set − {reference}", attribution["field_effects"])],
            units, at_chance, notes),
        "vs_baseline_rows": effects.table_rows(
            attribution["vs_baseline"][:MAX_TABLE_ROWS], notes),
        "bucket_rows": effects.table_rows(attribution["bucket_effects"][:MAX_TABLE_ROWS],
                                          notes),
        "field_rows": effects.table_rows(attribution["field_effects"][:MAX_TABLE_ROWS], notes),
        "keep_rows": effects.table_rows(attribution["fields_worth_keeping"][:MAX_TABLE_ROWS],
                                        notes),
        "footnotes": notes.items,
        "slice_charts": _slice_charts(slices),
        "title": f"Distillation report: {run.run.experiment}",
        "experiment": run.run.experiment, "gate": gate, "analysis": analysis,
        "signals": analysis["signals"], "baseline": experiment.baseline,
        "student": experiment.student, "n_eval": n_eval, "environment": env,
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "completed": statuses.count("done"), "failed_count": len(statuses) -
        statuses.count("done"), "total": len(statuses),
        "heatmap": _heatmap(run, analysis), "attribution": attribution,
        "calibration": _calibration(run, chosen), "latency": _latency(run),
        # declared values only: the template says "not declared" when there are none
        "teacher_p95": {t: c.latency_p95_ms for t, c in experiment.costs.teachers.items()
                        if c.latency_p95_ms},
        "chance": _chance(run, analysis),
        "priced": all(r.get("priced", True) for r in analysis["roi"]),
        "not_priced": NOT_PRICED, "at_chance_style": AT_CHANCE_STYLE,
        "curves": _curves(analysis), "fidelity": analysis["fidelity"][:MAX_TABLE_ROWS],
        "fidelity_flags": analysis["fidelity_flags"], "roi": analysis["roi"][:MAX_TABLE_ROWS],
        "roi_chart": _roi_chart(analysis, chosen, experiment.costs), "audit": run.teacher_audit,
        "config_diff": _config_diff(run), "disagreements": _disagreements(run, chosen),
        "failed": _failed(run),
        "slices": slices,
        # train-eval overlap validation found (None: a run.json from before it was recorded)
        "leakage": run.run.leakage,
        "primary": {s.kind: primary_metric(s.kind) for s in experiment.units.values()},
        "unit_kinds": {u: s.kind for u, s in experiment.units.items()},
        "verdict_error_rates": _verdict_error_rates(),
    }


def render_report(run_dir: Path, out: Path) -> Path:
    """Render the report of a run folder to ``out`` (written atomically)."""
    html = _env().get_template("report.html.j2").render(**build(run_dir))
    atomic_write_text(out, html)
    return out
