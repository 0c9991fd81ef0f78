"""Stop signals and the gate decision CI acts on.

The stop signals (thresholds from the YAML's ``stop:``) are the registry of
:mod:`harness.analysis.signals`, one function per ``SignalName``.

The gate (``gate:``) then decides for the *chosen arm* (:mod:`harness.analysis.selection`: the
best mean over its seeds on the units that matter among arms meeting the policy, else the best
overall; the signals read its representative cell), and records how often resampling would have
chosen another arm (``selection``):
Every signal says ``fires``, ``quiet`` or ``undecided`` (:data:`~harness.analysis.signals.
SignalState`), each on seed-aware evidence (arm means with item + seed noise) with intervals:

- ``STOP`` when the chosen student is at chance on a unit that matters (``at_chance``,
  blocking whatever ``blocking_signals`` says: nothing else the data says about such a student
  is worth acting on);
- ``SHIFT_TO_REAL_DATA`` when a blocking distribution gap fires;
- ``STOP`` when another blocking signal fires or a hard policy fails (p95 latency above the
  maximum; the quality-adjusted ROI's upper bound below ``min_roi``);
- ``INCONCLUSIVE`` when nothing fires but a blocking signal (or ``min_roi``) is undecided: the
  evidence cannot separate stop from go on, and ``actions`` names what would decide it (more
  seeds, more eval items), instead of turning "cannot tell" into STOP or CONTINUE;
- ``CONTINUE`` otherwise — unmet quality minimums with curves still rising are a reason to go
  on.

Exit statuses (:data:`EXIT`, for CI): 0 CONTINUE, 3 STOP and SHIFT_TO_REAL_DATA, 4 INCONCLUSIVE
(2 stays a bad input). Train-eval overlap kept under ``data.leakage: warn`` is a reason of its
own. The reasons end with the selection's uncertainty (ties named as ties) and the quality
minimums: met (with the values), not met, or "no minimums declared".
"""

from __future__ import annotations

from typing import Any

from harness.analysis.chance import versus_chance
from harness.analysis.load import RunData, units_that_matter
from harness.analysis.roi import roi_verdict
from harness.analysis.selection import arm_value, choose_cell
from harness.analysis.signals import (
    AGREEMENT_RISE,
    SignalContext,
    evaluate,
    fidelity_flags,
)

__all__ = ["AGREEMENT_RISE", "EXIT", "choose_cell", "decide", "fidelity_flags", "leakage_line",
           "selection_line", "signals"]

EXIT = {"CONTINUE": 0, "STOP": 3, "SHIFT_TO_REAL_DATA": 3, "INCONCLUSIVE": 4}
#: Signals that block whatever ``gate.blocking_signals`` lists.
ALWAYS_BLOCKING = frozenset({"at_chance"})


def signals(run: RunData, chosen: dict[str, Any], curves: list[dict[str, Any]],
            roi: list[dict[str, Any]], history: list[RunData] | None = None,
            vs_chance: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every stop signal with evidence, threshold and whether it fires (see
    :mod:`harness.analysis.signals`), in ``SignalName``'s order.

    ``vs_chance``: :func:`harness.analysis.chance.versus_chance` of the run (computed here when
    not given).
    """
    cell = next(c for c in run.cells if c.cell_id == chosen["cell_id"])
    if vs_chance is None:
        vs_chance = versus_chance(run)
    ctx = SignalContext(run=run, cell=cell, units=units_that_matter(run), curves=curves,
                        roi=roi, history=list(history or []), vs_chance=vs_chance)
    return [dict(s) for s in evaluate(ctx)]


def _minimums(run: RunData, chosen: dict[str, Any]) -> str:
    """The quality-minimums reason: not met, met (with the chosen arm's seed means) or none
    declared."""
    declared = run.experiment.gate.min_metric
    if chosen["unmet"]:
        return "quality minimums not met by any arm: " + "; ".join(chosen["unmet"])
    if not any(declared.values()):
        # nothing was checked: "met" would read as a passed bar
        return "quality minimums: no minimums declared (gate.min_metric)"
    ids = set(chosen.get("cell_ids") or [chosen["cell_id"]])
    cells = [c for c in run.cells if c.cell_id in ids]
    met = [f"{u}.{m} = {arm_value(run, cells, u, m) or 0.0:.3f} >= {lo:g}"
           for u, mins in declared.items() for m, lo in mins.items()]
    return "quality minimums met: " + "; ".join(met)


def decide(run: RunData, chosen: dict[str, Any], sigs: list[dict[str, Any]],
           roi: list[dict[str, Any]], vs_chance: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    """The decision, its reasons (one line each, with evidence) and the exit status.

    ``vs_chance`` (every cell x unit against chance) is kept in the record as ``vs_chance``:
    the evidence of ``at_chance``, and what the report marks learned-nothing cells by. What
    decided is also kept as data: ``decided_by`` (a signal, ``latency``, ``min_roi``,
    ``inconclusive`` or ``none``), ``undecided`` (the blocking checks an INCONCLUSIVE waits on),
    ``latency`` and ``min_roi`` (the policy checks, None when not made).
    """
    policy = run.experiment.gate
    blocking = set(policy.blocking_signals) | ALWAYS_BLOCKING
    reasons = []
    actions: list[str] = []
    fired = [s for s in sigs if s["fires"] and s["signal"] in blocking]
    undecided = [s for s in sigs if s.get("state") == "undecided" and s["signal"] in blocking]
    decision, decided_by = "CONTINUE", "none"
    if any(s["signal"] == "at_chance" for s in fired):
        decision, decided_by = "STOP", "at_chance"
    elif any(s["signal"] == "distribution_gap" for s in fired):
        decision, decided_by = "SHIFT_TO_REAL_DATA", "distribution_gap"
    elif fired:
        decision, decided_by = "STOP", fired[0]["signal"]
    for s in sigs:
        state = s.get("state") or ("fires" if s["fires"] else "quiet")
        block = " (blocking)" if s["signal"] in blocking else ""
        line = f"{s['signal']}: {state}{block} — {s['evidence']}"
        if state == "undecided" and s.get("action"):
            line += f"; to decide: {s['action']}"
            if s["signal"] in blocking:
                actions.append(f"{s['signal']}: {s['action']}")
        reasons.append(line)
    row = next((r for r in roi if r["cell_id"] == chosen["cell_id"]), None)
    max_p95 = policy.max_p95_latency_ms
    latency: dict[str, Any] | None = None
    if max_p95 and row and row["student_p95_ms"] is not None:
        ok = row["student_p95_ms"] <= max_p95
        latency = {"p95_ms": row["student_p95_ms"], "max_ms": max_p95, "ok": ok}
        reasons.append(f"latency: p95 {row['student_p95_ms']:.1f} ms vs max "
                       f"{max_p95:g} ms — {'ok' if ok else 'too slow'}")
        if not ok and decision == "CONTINUE":
            decision, decided_by = "STOP", "latency"
    roi_undecided = False
    roi_check: dict[str, Any] | None = None
    min_roi = policy.min_roi
    if min_roi is not None and row and row.get("quality_adjusted_roi") is None:
        reasons.append(f"roi: not assessed (no price in `costs:`) vs min {min_roi:g} "
                       "— the minimum cannot be checked")
    elif min_roi is not None and row:
        state, line, action = roi_verdict(row, min_roi)
        roi_check = {"state": state, "min_roi": min_roi, "evidence": line}
        reasons.append(f"roi: {state} vs min {min_roi:g} — {line}"
                       + (f"; to decide: {action}" if action else ""))
        if state == "fires" and decision == "CONTINUE":
            decision, decided_by = "STOP", "min_roi"
        elif state == "undecided":
            roi_undecided = True
            if action:
                actions.append(f"min_roi: {action}")
    names: list[str] = []
    if decision == "CONTINUE" and (undecided or roi_undecided):
        decision, decided_by = "INCONCLUSIVE", "inconclusive"
        names = [s["signal"] for s in undecided] + (["min_roi"] if roi_undecided else [])
        reasons.insert(0, "inconclusive: nothing says stop, but the evidence cannot tell "
                          f"whether {', '.join(names)} would: "
                       + ("; ".join(actions) if actions else "more seeds or eval items"))
    leak = leakage_line(run)
    if leak:
        reasons.append(leak)
    selection = chosen.get("selection")
    if selection:
        reasons.append(selection_line(selection))
    reasons.append(_minimums(run, chosen))
    return {"decision": decision, "exit_status": EXIT[decision],
            "cell": {k: v for k, v in chosen.items() if k != "selection"},
            "selection": selection, "reasons": reasons,
            "actions": actions if decision == "INCONCLUSIVE" else [],
            # what decided, as data (the summary's reason reads it; the reasons say it in words)
            "decided_by": decided_by, "undecided": names, "latency": latency,
            "min_roi": roi_check, "vs_chance": list(vs_chance or [])}


def leakage_line(run: RunData) -> str | None:
    """The reason line for train-eval overlap the run kept (``data.leakage: warn``); None when
    none was kept (no overlap, dropped, or not recorded by an older run)."""
    leak = run.run.leakage
    if leak is None or leak.policy != "warn" or leak.overlaps == 0:
        return None
    return (f"leakage: {leak.overlaps} train-eval overlap(s) kept (data.leakage: warn): "
            f"{leak.eval_items} eval item(s) share an id or normalized prompt with "
            f"{leak.train_records} training record(s), so their scores measure recall, not "
            "generalization")


def selection_line(selection: dict[str, Any]) -> str:
    """The selection's uncertainty in one line (gate reasons, ``harness gate``, report)."""
    line = (f"selection: arm {selection['arm']} chosen in {selection['p_chosen']:.0%} of "
            f"{selection['n_resamples']} resamples ({selection['resampled']})")
    if selection.get("tied"):
        line += (f"; tied on the point estimate with {', '.join(selection['tied'])}: the choice "
                 "among them is the run order, not evidence")
    if selection.get("runner_up"):
        line += f"; runner-up {selection['runner_up']} in {selection['p_runner_up']:.0%}"
    return line
