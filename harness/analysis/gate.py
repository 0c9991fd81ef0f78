"""Stop signals and the gate decision CI acts on.

The stop signals (thresholds from the YAML's ``stop:``) are the registry of
:mod:`harness.analysis.signals`, one function per ``SignalName``.

The gate (``gate:``) then decides for the *chosen* cell (the best on the units that matter among
cells meeting the policy; else the best overall):
``STOP`` when the chosen student is not above chance on a unit that matters (``at_chance``,
blocking whatever ``blocking_signals`` says: nothing else the data says about such a student
is worth acting on); ``SHIFT_TO_REAL_DATA`` when a blocking distribution gap fires; ``STOP`` when
another blocking signal fires or a hard policy fails (p95 latency above the maximum, ROI below the
minimum); ``CONTINUE`` otherwise — unmet quality minimums with curves still rising are a reason to
go on. The reasons end with the quality minimums: met (with the values), not met, or "no
minimums declared".
"""

from __future__ import annotations

from typing import Any

from harness.analysis.chance import versus_chance
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
#: Signals that block whatever ``gate.blocking_signals`` lists.
ALWAYS_BLOCKING = frozenset({"at_chance"})


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
    """The quality-minimums reason: not met, met (with the values) or none declared."""
    declared = run.spec["gate"]["min_metric"]
    if chosen["unmet"]:
        return "quality minimums not met by any cell: " + "; ".join(chosen["unmet"])
    if not any(declared.values()):
        # nothing was checked: "met" would read as a passed bar
        return "quality minimums: no minimums declared (gate.min_metric)"
    met = [f"{u}.{m} = {value(run, chosen['cell_id'], u, m):.3f} >= {lo:g}"
           for u, mins in declared.items() for m, lo in mins.items()]
    return "quality minimums met: " + "; ".join(met)


def decide(run: RunData, chosen: dict[str, Any], sigs: list[dict[str, Any]],
           roi: list[dict[str, Any]], vs_chance: list[dict[str, Any]] | None = None
           ) -> dict[str, Any]:
    """The decision, its reasons (one line each, with evidence) and the exit status.

    ``vs_chance`` (every cell x unit against chance) is kept in the record as ``vs_chance``:
    the evidence of ``at_chance``, and what the report marks learned-nothing cells by.
    """
    policy = run.spec["gate"]
    blocking = set(policy["blocking_signals"]) | ALWAYS_BLOCKING
    reasons = []
    fired = [s for s in sigs if s["fires"] and s["signal"] in blocking]
    decision = "CONTINUE"
    if any(s["signal"] == "at_chance" for s in fired):
        decision = "STOP"
    elif any(s["signal"] == "distribution_gap" for s in fired):
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
    reasons.append(_minimums(run, chosen))
    return {"decision": decision, "exit_status": EXIT[decision], "cell": chosen,
            "reasons": reasons, "vs_chance": list(vs_chance or [])}
