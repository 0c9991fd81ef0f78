"""What the report's first screen shows: the decision's reason and next action, a scorecard per
unit, the stop signals as one line of states, and the arms ranked.

The first screen must let a lead act without scrolling (1400 x 900 px), whatever the size of
the matrix: everything here is per unit or capped (:data:`TOP_ARMS`), never per cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup
from scipy.stats import binomtest

from harness.analysis.chance import learned
from harness.analysis.load import RunData
from harness.analysis.summary import Summary
from harness.report import svg

#: Arms listed in the first screen's ranking (the full list is in the against-chance table).
TOP_ARMS = 5


def summary(analysis: Mapping[str, Any]) -> Summary:
    """The gate's summary (every analysis the report shows is computed by the current code:
    one from other code is stale by its ``computed_from`` and recomputed)."""
    return analysis["gate"]["summary"]  # type: ignore[no-any-return]


def _teacher_mark(teachers: Mapping[str, float], n: int) -> svg.Mark | None:
    """The best teacher's audited value with a 95% Wilson interval over the ``n`` eval items
    (exact for an accuracy; for a graded metric in [0, 1] the binomial variance is the largest
    a mean of such scores can have, so the interval is conservative)."""
    if not teachers or n <= 0:
        return None
    name, value = max(teachers.items(), key=lambda kv: kv[1])
    if 0.0 <= value <= 1.0:
        ci = binomtest(round(value * n), n).proportion_ci(method="wilson")
        return svg.Mark("teacher", name, value, float(ci.low), float(ci.high))
    return svg.Mark("teacher", name, value)


def _arm_mark(role: str, row: Mapping[str, Any]) -> svg.Mark:
    """An arm's mean over its seeds with the 95% interval of its margin over chance, moved to
    the metric's scale (``chance + [ci_low, ci_high]``)."""
    return svg.Mark(role, row["arm"], row["value"],  # type: ignore[arg-type]
                    row["chance"] + row["ci_low"], row["chance"] + row["ci_high"])


def scorecard_rows(analysis: Mapping[str, Any], run: RunData) -> list[svg.ScoreRow]:
    """Per unit of the experiment: the chosen arm, the baseline arm (when another), the best
    audited teacher and chance, as :class:`svg.ScoreRow`; ``flag`` marks a unit the chosen arm
    is not above chance on ("∅ at chance", "∅ below chance", "∅ not yet above chance")."""
    gate = analysis["gate"]
    chosen = gate["cell"].get("arm") or gate["cell"]["label"]
    b = run.experiment.baseline
    baseline = f"{b.bucket}/{b.fields}/x{float(b.scale):g}"
    rows = []
    by_key = {(r["arm"], r["unit"]): r for r in gate.get("vs_chance", [])}
    for unit in run.experiment.units:
        mine = by_key.get((chosen, unit))
        if mine is None:
            continue  # no eval item of the unit in the chosen arm: nothing to draw
        marks = [_arm_mark("chosen", mine)]
        base = by_key.get((baseline, unit))
        if base is not None and baseline != chosen:
            marks.append(_arm_mark("baseline", base))
        teacher = _teacher_mark(mine["teachers"], mine["n"])
        if teacher is not None:
            marks.append(teacher)
        marks.append(svg.Mark("chance", "chance", mine["chance"]))
        flag = ("" if learned(mine) else f"∅ {mine['verdict']}"
                if mine["verdict"] != "undecided" else "∅ not yet above chance")
        rows.append(svg.ScoreRow(unit, mine["metric"], tuple(marks), flag))
    return rows


def scorecard(analysis: Mapping[str, Any], run: RunData) -> Markup:
    """The scorecard chart (:func:`svg.scorecard`) of :func:`scorecard_rows`."""
    chosen = analysis["gate"]["cell"].get("arm") or analysis["gate"]["cell"]["label"]
    return svg.scorecard(scorecard_rows(analysis, run),
                         f"Scorecard: chosen arm {chosen} against the baseline, the best "
                         "teacher and chance, per unit (95% intervals)")


def signal_states(analysis: Mapping[str, Any], run: RunData) -> list[dict[str, Any]]:
    """The stop signals as ``{signal, state, blocking}``, in the analysis's order."""
    blocking = set(run.experiment.gate.blocking_signals) | {"at_chance"}
    return [{"signal": s["signal"], "state": s.get("state") or ("fires" if s["fires"]
                                                                 else "quiet"),
             "blocking": s["signal"] in blocking} for s in analysis["signals"]]


def ranking(analysis: Mapping[str, Any], units: Sequence[str]) -> dict[str, Any]:
    """Arms ranked by their mean primary metric over ``units`` (each the mean over the arm's
    seeds, from the against-chance rows), best first: ``{"rows": [{arm, mean, learned,
    n_units}], "total": int}`` with at most :data:`TOP_ARMS` rows; arms lacking a unit rank
    after those that have all."""
    by_arm: dict[str, list[Mapping[str, Any]]] = {}
    for r in analysis["gate"].get("vs_chance", []):
        if r["unit"] in units:
            by_arm.setdefault(r["arm"], []).append(r)
    rows = [{"arm": arm, "mean": sum(r["value"] for r in rs) / len(rs),
             "learned": sum(1 for r in rs if learned(r)), "n_units": len(rs)}
            for arm, rs in by_arm.items()]
    rows.sort(key=lambda r: (-r["n_units"], -r["mean"], r["arm"]))
    return {"rows": rows[:TOP_ARMS], "total": len(rows)}
