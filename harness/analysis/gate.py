"""Stop signals and the gate decision CI acts on.

The stop signals (thresholds from the YAML's ``stop:``) are the registry of
:mod:`harness.analysis.signals`, one function per ``SignalName``.

The gate (``gate:``) then decides for the *chosen* cell (the best on the units that matter among
cells meeting the policy; else the best overall):
``SHIFT_TO_REAL_DATA`` when a blocking distribution gap fires; ``STOP`` when another blocking
signal fires or a hard policy fails (p95 latency above the maximum, ROI below the minimum);
``CONTINUE`` otherwise — unmet quality minimums with curves still rising are a reason to go on.
"""

from __future__ import annotations

from typing import Any

from harness.analysis.load import RunData
from harness.analysis.signals import (
    AGREEMENT_RISE,
    SignalContext,
    copied_excess,
    evaluate,
    fidelity_flags,
    primary,
    units_that_matter,
    value,
)

__all__ = ["AGREEMENT_RISE", "EXIT", "choose_cell", "copied_excess", "decide", "fidelity_flags",
           "signals"]

EXIT = {"CONTINUE": 0, "STOP": 3, "SHIFT_TO_REAL_DATA": 3}


def choose_cell(run: RunData, roi: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell the decision is about: best mean primary metric on the units that matter,
    preferring cells that meet the gate's minimums."""
    units = units_that_matter(run)
    policy = run.spec["gate"]
    scored = []
    for cell in run.cells:
        values = [value(run, cell.cell_id, u, primary(run, u)) for u in units]
        present = [v for v in values if v is not None]
        mean = sum(present) / max(1, len(present))
        unmet = [f"{u}.{m} = {v:.3f} < {lo:g}" if v is not None else f"{u}.{m}: missing"
                 for u, mins in policy["min_metric"].items() for m, lo in mins.items()
                 if (v := value(run, cell.cell_id, u, m)) is None or v < lo]
        scored.append((not unmet, mean, cell, unmet))
    scored.sort(key=lambda x: (x[0], x[1]), reverse=True)
    ok, mean, cell, unmet = scored[0]
    return {"cell_id": cell.cell_id, "label": cell.label, "mean_primary": mean,
            "meets_minimums": ok, "unmet": unmet}


def signals(run: RunData, chosen: dict[str, Any], curves: list[dict[str, Any]],
            roi: list[dict[str, Any]], history: list[RunData] | None = None
            ) -> list[dict[str, Any]]:
    """Every stop signal with evidence, threshold and whether it fires (see
    :mod:`harness.analysis.signals`), in ``SignalName``'s order."""
    cell = next(c for c in run.cells if c.cell_id == chosen["cell_id"])
    ctx = SignalContext(run=run, cell=cell, units=units_that_matter(run), curves=curves,
                        roi=roi, history=list(history or []))
    return [dict(s) for s in evaluate(ctx)]


def decide(run: RunData, chosen: dict[str, Any], sigs: list[dict[str, Any]],
           roi: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision, its reasons (one line each, with evidence) and the exit status."""
    policy = run.spec["gate"]
    blocking = set(policy["blocking_signals"])
    reasons = []
    fired = [s for s in sigs if s["fires"] and s["signal"] in blocking]
    decision = "CONTINUE"
    if any(s["signal"] == "distribution_gap" for s in fired):
        decision = "SHIFT_TO_REAL_DATA"
    elif fired:
        decision = "STOP"
    for s in sigs:
        state = "fires" if s["fires"] else "quiet"
        block = " (blocking)" if s["signal"] in blocking else ""
        reasons.append(f"{s['signal']}: {state}{block} — {s['evidence']}")
    row = next((r for r in roi if r["cell_id"] == chosen["cell_id"]), None)
    if policy.get("max_p95_latency_ms") and row and row["student_p95_ms"] is not None:
        ok = row["student_p95_ms"] <= policy["max_p95_latency_ms"]
        reasons.append(f"latency: p95 {row['student_p95_ms']:.1f} ms vs max "
                       f"{policy['max_p95_latency_ms']:g} ms — {'ok' if ok else 'too slow'}")
        if not ok and decision == "CONTINUE":
            decision = "STOP"
    if policy.get("min_roi") is not None and row and row.get("roi") is None:
        reasons.append(f"roi: not assessed (no price in `costs:`) vs min {policy['min_roi']:g} "
                       "— the minimum cannot be checked")
    elif policy.get("min_roi") is not None and row:
        ok = row["roi"] >= policy["min_roi"]
        reasons.append(f"roi: {row['roi']:.2f} vs min {policy['min_roi']:g} — "
                       f"{'ok' if ok else 'below'}")
        if not ok and decision == "CONTINUE":
            decision = "STOP"
    if chosen["unmet"]:
        reasons.append("quality minimums not met by any cell: " + "; ".join(chosen["unmet"]))
    else:
        reasons.append("quality minimums met")
    return {"decision": decision, "exit_status": EXIT[decision], "cell": chosen,
            "reasons": reasons}
