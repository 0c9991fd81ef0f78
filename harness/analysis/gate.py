"""Stop signals and the gate decision CI acts on.

Signals (thresholds from the YAML's ``stop:``; each with evidence and a verdict):

- ``diminishing_returns``: on every unit that matters, the upper 95% bound of the next
  doubling's predicted gain is below ``min_gain_next_doubling`` (needs fitted curves);
- ``teacher_bias``: agreement with a teacher rises with scale while the primary metric does not
  improve significantly ("more teacher-like, not more correct"), or the chosen cell repeats the
  teacher's wrong answers more often than its own answer frequencies explain, by more than
  ``max_copied_error_rate`` and significantly (one-sided binomial test, p < 0.05);
- ``cost``: the chosen cell's ROI over the horizon is negative;
- ``distribution_gap``: the chosen cell's primary metric on ``source=real`` lags
  ``source=synthetic`` by more than ``max_real_synthetic_gap`` and the gap does not close with
  scale;
- ``teacher_inconsistency``: teachers disagree on a unit's training records beyond
  ``max_teacher_disagreement`` where the judge gives no verdict.

The gate (``gate:``) then decides for the *chosen* cell (the best on the units that matter among
cells meeting the policy; else the best overall):
``SHIFT_TO_REAL_DATA`` when a blocking distribution gap fires; ``STOP`` when another blocking
signal fires or a hard policy fails (p95 latency above the maximum, ROI below the minimum);
``CONTINUE`` otherwise — unmet quality minimums with curves still rising are a reason to go on.
"""

from __future__ import annotations

from typing import Any

from scipy.stats import binomtest

from harness.analysis.load import RunData
from harness.evaluate.metrics import PRIMARY_METRIC

EXIT = {"CONTINUE": 0, "STOP": 3, "SHIFT_TO_REAL_DATA": 3}
#: Rise in agreement with a teacher (largest vs smallest scale) that counts as "more teacher-like".
AGREEMENT_RISE = 0.05


def _value(run: RunData, cell_id: str, unit: str, metric: str, slice_: str = "all"
           ) -> float | None:
    df = run.results.filter((run.results["cell_id"] == cell_id) & (run.results["unit"] == unit)
                            & (run.results["metric"] == metric)
                            & (run.results["slice"] == slice_))
    return float(df["value"][0]) if df.height else None


def _units_that_matter(run: RunData) -> list[str]:
    return list(run.spec["stop"].get("units") or run.spec["units"])


def choose_cell(run: RunData, roi: list[dict[str, Any]]) -> dict[str, Any]:
    """The cell the decision is about: best mean primary metric on the units that matter,
    preferring cells that meet the gate's minimums."""
    units = _units_that_matter(run)
    policy = run.spec["gate"]
    scored = []
    for cell in run.cells:
        values = [_value(run, cell.cell_id, u, PRIMARY_METRIC[run.spec["units"][u]["kind"]])
                  for u in units]
        present = [v for v in values if v is not None]
        mean = sum(present) / max(1, len(present))
        unmet = [f"{u}.{m} = {v:.3f} < {lo:g}" if v is not None else f"{u}.{m}: missing"
                 for u, mins in policy["min_metric"].items() for m, lo in mins.items()
                 if (v := _value(run, cell.cell_id, u, m)) is None or v < lo]
        scored.append((not unmet, mean, cell, unmet))
    scored.sort(key=lambda x: (x[0], x[1]), reverse=True)
    ok, mean, cell, unmet = scored[0]
    return {"cell_id": cell.cell_id, "label": cell.label, "mean_primary": mean,
            "meets_minimums": ok, "unmet": unmet}


def signals(run: RunData, chosen: dict[str, Any], curves: list[dict[str, Any]],
            roi: list[dict[str, Any]], history: list[RunData] | None = None
            ) -> list[dict[str, Any]]:
    """Every stop signal with evidence, threshold and whether it fires."""
    stop = run.spec["stop"]
    units = _units_that_matter(run)
    cell = next(c for c in run.cells if c.cell_id == chosen["cell_id"])
    out = []

    # diminishing returns — the chosen cell's curve group (same bucket, fields, seed)
    # The chosen cell's own curve when its bucket and field set were run at several scales;
    # otherwise the curves that exist (in a one-at-a-time design, the base's).
    fitted = [c for c in curves if c["unit"] in units and c["bucket"] == cell.axes["bucket"]
              and c["fields"] == cell.axes["fields"] and c["fit"]]
    if not fitted:
        fitted = [c for c in curves if c["unit"] in units and c["fit"]]
    thr = stop["min_gain_next_doubling"]
    if fitted and {c["unit"] for c in fitted} == set(units):
        highs = {f"{c['unit']} ({c['bucket']}/{c['fields']})": c["fit"]["gain_ci"][1]
                 for c in fitted}
        fires = all(h is not None and h < thr for h in highs.values())
        evidence = ", ".join(f"{u}: upper 95% gain {h:+.3f}" if h is not None else f"{u}: n/a"
                             for u, h in highs.items())
    else:
        fires, evidence = False, "no fitted learning curve for the chosen cell's bucket and " \
                                 "field set (needs >= 3 scale points)"
    if history:
        past = [_best_primary(h, units) for h in history]
        now = _best_primary(run, units)
        evidence += f"; across rounds best mean primary: {past} -> {now:.3f}"
        if len(past) and now - max(past) < thr:
            fires = True
    out.append({"signal": "diminishing_returns", "fires": fires, "threshold": thr,
                "evidence": evidence})

    # teacher bias: copied errors beyond what the student's own answer frequencies explain
    thr_c = stop["max_copied_error_rate"]
    copied = {f"{u}/{t}": fid for u, rep in cell.metrics["units"].items()
              for t, fid in rep["fidelity"].items() if "copied_error_rate" in fid}
    excess = {k: copied_excess(fid) for k, fid in copied.items()}
    worst = max(excess.items(), key=lambda kv: kv[1][0]) if excess else None
    flags = fidelity_flags(run)
    fires = bool(flags) or (worst is not None and worst[1][0] > thr_c and worst[1][1] < 0.05)
    if worst:
        fid = copied[worst[0]]
        evidence = (f"highest copied-error rate beyond chance {worst[0]}: "
                    f"{fid['copied_error_rate']:.3f} of the teacher's "
                    f"{int(fid.get('teacher_wrong', 0))} wrong answers repeated vs "
                    f"{fid.get('copied_error_chance', 0.0):.3f} by chance "
                    f"(excess {worst[1][0]:+.3f}, one-sided binomial p = {worst[1][1]:.3g})")
    else:
        evidence = "no teacher answers on eval items"
    if flags:
        evidence += "; more teacher-like, not more correct: " + "; ".join(flags)
    out.append({"signal": "teacher_bias", "fires": fires, "threshold": thr_c,
                "evidence": evidence})

    # cost
    row = next((r for r in roi if r["cell_id"] == cell.cell_id), None)
    if row is not None and row.get("roi") is None:
        out.append({"signal": "cost", "fires": False, "threshold": 0.0,
                    "evidence": "not assessed: `costs:` declares no price, so there is no ROI"})
    elif row is not None:
        out.append({"signal": "cost", "fires": row["roi"] < 0, "threshold": 0.0,
                    "evidence": f"ROI over {row['horizon_days']:g} days = {row['roi']:.2f} "
                                f"(offline {row['offline_cost']:.2f} {row['currency']}, saving "
                                f"{row['online_saving']:.2f})"})

    # distribution gap
    thr_g = stop["max_real_synthetic_gap"]
    gaps = {}
    for u in units:
        m = PRIMARY_METRIC[run.spec["units"][u]["kind"]]
        real = _value(run, cell.cell_id, u, m, "source=real")
        syn = _value(run, cell.cell_id, u, m, "source=synthetic")
        if real is not None and syn is not None:
            gaps[u] = syn - real
    closing = _gap_closes(run, cell, units)
    big = {u: g for u, g in gaps.items() if g > thr_g}
    fires = bool(big) and not closing
    evidence = (", ".join(f"{u}: synthetic - real = {g:+.3f}" for u, g in gaps.items())
                or "no source=real / source=synthetic slices")
    if big:
        evidence += "; the gap closes with scale" if closing else "; the gap does not close " \
                                                                  "with scale"
    out.append({"signal": "distribution_gap", "fires": fires, "threshold": thr_g,
                "evidence": evidence})

    # teacher inconsistency
    thr_t = stop["max_teacher_disagreement"]
    dis = run.run.get("teachers", {}).get("disagreement", {})
    bad = {u: d["unjudged_rate"] for u, d in dis.items() if u in units
           and d["unjudged_rate"] > thr_t}
    out.append({"signal": "teacher_inconsistency", "fires": bool(bad), "threshold": thr_t,
                "evidence": ", ".join(f"{u}: teachers disagree on {d['rate']:.2f} of records, "
                                      f"{d['unjudged_rate']:.2f} without a judge verdict"
                                      for u, d in dis.items() if u in units)
                or "no teacher disagreement recorded"})
    return out


def copied_excess(fid: dict[str, float]) -> tuple[float, float]:
    """(copied-error rate minus its chance rate, one-sided binomial p-value that the student
    repeats the teacher's errors more often than chance).

    A student whose answers carry no information about the teacher's still "copies" an error
    whenever it happens to give the same wrong answer; only the excess is the teacher's
    influence. Fidelity records written before the chance rate existed count chance as 0.
    """
    rate = float(fid["copied_error_rate"])
    chance = float(fid.get("copied_error_chance", 0.0))
    n = int(fid.get("teacher_wrong", 0))
    if n == 0:
        return rate - chance, 1.0
    k = round(rate * n)
    p = float(binomtest(k, n, min(max(chance, 0.0), 1.0), alternative="greater").pvalue)
    return rate - chance, p


def _best_primary(run: RunData, units: list[str]) -> float:
    best = 0.0
    for cell in run.cells:
        found = [_value(run, cell.cell_id, u, PRIMARY_METRIC[run.spec["units"][u]["kind"]])
                 for u in units]
        vals = [v for v in found if v is not None]
        if vals:
            best = max(best, sum(vals) / len(vals))
    return best


def _gap_closes(run: RunData, cell: Any, units: list[str]) -> bool:
    """Whether the real/synthetic gap shrinks from the smallest to the largest scale of the
    chosen cell's bucket and field set (by more than half)."""
    same = sorted((c for c in run.cells if c.axes["bucket"] == cell.axes["bucket"]
                   and c.axes["fields"] == cell.axes["fields"]),
                  key=lambda c: float(c.axes["scale"]))
    if len(same) < 2:
        return False
    for u in units:
        m = PRIMARY_METRIC[run.spec["units"][u]["kind"]]
        g = []
        for c in (same[0], same[-1]):
            real = _value(run, c.cell_id, u, m, "source=real")
            syn = _value(run, c.cell_id, u, m, "source=synthetic")
            if real is None or syn is None:
                return False
            g.append(syn - real)
        if g[1] > 0.5 * g[0]:
            return False
    return True


def fidelity_flags(run: RunData) -> list[str]:
    """Curve groups where agreement with a teacher rises with scale by > 0.05 while the primary
    metric's change is within its noise (|delta| below 2 binomial standard errors)."""
    flags = []
    groups: dict[tuple[str, str, int], list[Any]] = {}
    for c in run.cells:
        groups.setdefault((c.axes["bucket"], c.axes["fields"], c.axes["seed"]), []).append(c)
    for (bucket, fields, _), cells in groups.items():
        if len(cells) < 2:
            continue
        cells.sort(key=lambda c: float(c.axes["scale"]))
        lo, hi = cells[0], cells[-1]
        for u, rep in hi.metrics["units"].items():
            if u not in lo.metrics["units"]:
                continue
            m = PRIMARY_METRIC[run.spec["units"][u]["kind"]]
            d_acc = rep["metrics"].get(m, 0) - lo.metrics["units"][u]["metrics"].get(m, 0)
            n = rep["n"]
            p = rep["metrics"].get(m, 0.5)
            noise = 2 * (2 * max(p * (1 - p), 1e-6) / max(n, 1)) ** 0.5
            for t, fid in rep["fidelity"].items():
                before = lo.metrics["units"][u]["fidelity"].get(t)
                if (before and fid["agreement"] - before["agreement"] > AGREEMENT_RISE
                        and abs(d_acc) < noise):
                    flags.append(f"{bucket}/{fields} {u} vs {t}: agreement "
                                 f"{before['agreement']:.2f} -> {fid['agreement']:.2f}, {m} "
                                 f"{d_acc:+.3f}")
    return flags


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
