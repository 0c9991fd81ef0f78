"""The decision in two sentences: why, and what to do next.

The gate (:mod:`harness.analysis.gate`) decides and lists every reason with its evidence; a lead
reading the report (or a CI log) first needs the one reason that decided and the action the
evidence points to. :func:`summarise` derives both from the gate record, the signals, the
against-chance rows and the learning curves — it adds no verdict of its own: every number it
quotes is one the analysis already computed, and every action follows from which signal decided.

The rules, by what decided:

- ``at_chance`` (STOP): the unit the chosen arm learned nothing on. When no arm learns it, the
  student (not the data) is the limit: try a larger or pretrained student before buying
  samples; when the teachers themselves are near chance there, fix the teachers first; when
  another arm learns it, compose from that arm.
- ``distribution_gap`` (SHIFT_TO_REAL_DATA): the gap on real prompts and that scale does not
  close it: collect real prompts.
- any other blocking signal, the latency maximum or ``gate.min_roi`` (STOP): its own action.
- INCONCLUSIVE: what would decide it (the gate's cheapest actions).
- CONTINUE: ship when the minimums are met; else buy the next doubling where the learning
  curve still rises (``diminishing_returns``, blocking or not, neither fires nor is undecided),
  or declare minimums so that "good enough" can be told. Arms tied with the chosen one are
  named: the choice among them is run order, not an effect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from harness.analysis.chance import NOT_LEARNED, learned

#: How far above chance (in the unit's primary metric) a teacher must score for the summary to
#: blame the student rather than the teachers when no arm learns a unit.
TEACHER_ABOVE_CHANCE = 0.1


class Summary(TypedDict):
    """``gate.summary`` in ``analysis.json``.

    Attributes:
        decided_by: the signal (or ``latency`` / ``min_roi`` / ``inconclusive`` / ``none``)
            the decision rests on.
        reason: one sentence, with the numbers that decided.
        next_action: one sentence: what the evidence says to do next.
    """

    decided_by: str
    reason: str
    next_action: str


def _rows(vs_chance: Sequence[Mapping[str, Any]], unit: str) -> list[Mapping[str, Any]]:
    return [r for r in vs_chance if r["unit"] == unit]


def _at_chance(gate: Mapping[str, Any], vs_chance: Sequence[Mapping[str, Any]],
               sig: Mapping[str, Any]) -> Summary:
    arm = gate["cell"].get("arm") or gate["cell"]["label"]
    bad = [r for r in vs_chance if r["arm"] == arm and r["verdict"] in NOT_LEARNED]
    # Only the units that matter (stop.units, the signal's per_unit) fired the signal: a unit
    # the spec does not weigh is not named as the reason (records from before per_unit: all).
    units = sig.get("per_unit")
    if units:
        bad = [r for r in bad if r["unit"] in units]
    if not bad:  # the signal fired on a record without rows: say what the gate said
        return {"decided_by": "at_chance", "reason": f"The chosen student {arm} is at chance "
                "on a unit that matters.", "next_action": "Try a larger or pretrained student "
                "before buying more samples."}
    parts = ", ".join(f"{r['unit']} ({r['metric']} {r['value']:.2f} vs chance "
                      f"{r['chance']:.2f})" for r in bad)
    reason = f"The chosen student {arm} learned nothing measurable on {parts}."
    actions = []
    no_arm: list[str] = []  # units no arm learns and the teachers do: one clause for them all
    for r in bad:
        unit = r["unit"]
        others = sorted((o for o in _rows(vs_chance, unit) if learned(o)),
                        key=lambda o: -o["value"])
        best_teacher = max(r["teachers"].values(), default=None)
        if others:
            o = others[0]
            actions.append(f"arm {o['arm']} does learn {unit} ({o['value']:.2f}): compose the "
                           "next round from its bucket and fields")
        elif best_teacher is not None and best_teacher - r["chance"] < TEACHER_ABOVE_CHANCE:
            actions.append(f"the teachers themselves score {best_teacher:.2f} on {unit} "
                           f"(chance {r['chance']:.2f}): fix the teachers or prompts before "
                           "distilling")
        else:
            no_arm.append(unit)
    if no_arm:
        actions.append(f"no arm's student learns {' or '.join(no_arm)}: try a larger or "
                       "pretrained student (student.model) before buying more samples")
    return {"decided_by": "at_chance", "reason": reason,
            "next_action": _sentence("; ".join(actions))}


def _gap(sig: Mapping[str, Any]) -> Summary:
    per = {u: g for u, g in (sig.get("per_unit") or {}).items() if g.get("closes") is False}
    if not per:
        return {"decided_by": "distribution_gap", "reason": "The student does worse on real "
                "prompts than on synthetic ones, and scale does not close the gap.",
                "next_action": "Collect real prompts before buying more synthetic samples."}
    parts = ", ".join(f"{u} ({g['metric']} {g['gap']:.2f} lower, 95% CI {g['ci_low']:.2f} to "
                      f"{g['ci_high']:.2f})" for u, g in per.items())
    return {"decided_by": "distribution_gap",
            "reason": f"On real prompts the student loses {parts} against synthetic ones, and "
                      "more samples do not close the gap.",
            "next_action": f"Collect real prompts for {', '.join(per)} (tag them source=real) "
                           "before buying more synthetic samples."}


def _first_clause(text: str) -> str:
    """The evidence up to its first ``;``: the part that decided."""
    return text.split("; ")[0].rstrip(".")


#: Per stop signal: (reason prefix, next action) when it decides a STOP.
STOP_ACTIONS: dict[str, tuple[str, str]] = {
    "diminishing_returns": ("More samples will not buy the minimum gain per doubling",
                            "Stop buying teacher samples of this kind: change the student, the "
                            "fields or the bucket to move further."),
    "teacher_bias": ("The student copies its teachers' errors",
                     "Filter the copied teacher's answers with a judge, or mix in another "
                     "teacher, before distilling more."),
    "cost": ("Distilling does not pay back over the horizon",
             "Do not scale up: a cheaper student, fewer fallbacks to the teacher or more "
             "traffic must change the costs first."),
    "teacher_inconsistency": ("The teachers disagree without a judge's verdict too often",
                              "Add a judge, or drop the teacher that disagrees, before "
                              "composing more samples."),
}


#: How ``teacher_bias`` evidence introduces agreement that rises with scale while the metric
#: does not (:func:`harness.analysis.signals.fidelity_flags`).
FIDELITY_FLAGS = "more teacher-like, not more correct: "


def _stop_reason(gate: Mapping[str, Any], sigs: Sequence[Mapping[str, Any]]) -> Summary | None:
    """The reason of a STOP the gate records as decided by a signal (not at_chance),
    ``latency`` or ``min_roi``."""
    decided = gate.get("decided_by")
    s = next((x for x in sigs if x["signal"] == decided), None)
    if s is not None:
        prefix, action = STOP_ACTIONS.get(s["signal"], (f"{s['signal']} fires",
                                                        "See the signal's evidence."))
        if s["signal"] == "teacher_bias" and s.get("copiers"):
            c = s["copiers"][0]
            prefix = (f"Arm {c['arm']} repeats teacher {c['teacher']}'s wrong answers on "
                      f"{c['unit']} {c['excess']:.2f} more often than chance")
            return {"decided_by": s["signal"], "reason": prefix + ".", "next_action": action}
        if s["signal"] == "teacher_bias" and FIDELITY_FLAGS in s["evidence"]:
            # fired on agreement rising with scale, not on copied errors: the evidence's first
            # clause is then "no arm copies teacher errors beyond chance", which contradicts
            # the prefix; quote the flag that fired instead
            flag = _first_clause(s["evidence"].split(FIDELITY_FLAGS, 1)[1])
            return {"decided_by": s["signal"], "reason": "The student grows more like its "
                    f"teachers with scale, not more correct: {flag}.", "next_action": action}
        return {"decided_by": s["signal"],
                "reason": f"{prefix}: {_first_clause(s['evidence'])}.", "next_action": action}
    if decided == "latency" and gate.get("latency"):
        lat = gate["latency"]
        return {"decided_by": "latency", "reason": f"The student is too slow: p95 "
                f"{lat['p95_ms']:.1f} ms vs max {lat['max_ms']:g} ms.",
                "next_action": "Try a smaller or quantised student, or batch requests: "
                               "latency, not quality, blocks it."}
    if decided == "min_roi" and gate.get("min_roi"):
        return {"decided_by": "min_roi", "reason": "The quality-adjusted ROI is below "
                f"gate.min_roi: {_first_clause(gate['min_roi']['evidence'])}.",
                "next_action": STOP_ACTIONS["cost"][1]}
    return None


def _inconclusive(gate: Mapping[str, Any]) -> Summary:
    names = ", ".join(gate.get("undecided") or []) or "a signal"
    actions = gate.get("actions") or ["more seeds or eval items"]
    return {"decided_by": "inconclusive",
            "reason": f"Nothing says stop, but the evidence cannot tell yet whether {names} "
                      "would.",
            "next_action": _sentence("To decide: " + "; ".join(actions[:2]))}


def _tie(gate: Mapping[str, Any]) -> str:
    """``; it ties with ...`` when the selection tied the chosen arm with others, else ``""``:
    a lead must not read the choice among tied arms as an effect."""
    tied = (gate.get("selection") or {}).get("tied") or []
    return (f"; it ties with {', '.join(tied)} on the point estimate, so the choice among them "
            "is the run order, not evidence" if tied else "")


def _unmet_action(bucket: str | None, fields: str | None, has_curve: bool,
                  returns: Mapping[str, Any]) -> str:
    """What to do when the minimums are unmet, from ``diminishing_returns`` (blocking or not):
    "the curves still rise" only where that signal does not say, or doubt, otherwise."""
    if not has_curve:
        return ("Add scale points (scale: [...]) to see whether more samples would reach the "
                "minimums.")
    state = returns.get("state") or ("fires" if returns.get("fires") else "quiet")
    if state == "fires":
        return ("More samples of this kind will not reach the minimums (diminishing_returns "
                "fires): change the student, the fields or the bucket.")
    if state == "undecided":
        how = f": {returns['action']}" if returns.get("action") else ""
        return _sentence(f"The learning curve cannot tell yet whether another doubling of "
                         f"{bucket}/{fields} samples is worth buying{how}")
    return f"Buy the next doubling of {bucket}/{fields} samples and rerun; the curves still rise."


def _continue(gate: Mapping[str, Any], sigs: Sequence[Mapping[str, Any]],
              curves: Sequence[Mapping[str, Any]]) -> Summary:
    cell = gate["cell"]
    arm = cell.get("arm") or cell["label"]
    bucket, fields = arm.split("/")[:2] if "/" in arm else (None, None)
    gains = sorted(((c["fit"]["next_doubling_gain"], c["unit"]) for c in curves
                    if c.get("fit") and c["bucket"] == bucket and c["fields"] == fields),
                   reverse=True)
    gain = (f"; its learning curve predicts {gains[0][0]:+.3f} on {gains[0][1]} for the next "
            "doubling" if gains else "")
    tie = _tie(gate)
    minimums = next((r for r in gate["reasons"] if r.startswith("quality minimums")), "")
    if cell.get("unmet"):
        returns = next((s for s in sigs if s["signal"] == "diminishing_returns"), {})
        return {"decided_by": "none",
                "reason": f"{arm} learns every unit that matters and nothing says stop, but "
                          f"the quality minimums are not met yet{gain}{tie}.",
                "next_action": _unmet_action(bucket, fields, bool(gains), returns)}
    if "no minimums declared" in minimums:
        return {"decided_by": "none",
                "reason": f"{arm} learns every unit that matters and nothing says stop{gain}"
                          f"{tie}.",
                "next_action": "Declare quality minimums (gate.min_metric) so the gate can tell "
                               "good enough; until then weigh the next doubling's gain against "
                               "its cost."}
    return {"decided_by": "none",
            "reason": f"{arm} meets the quality minimums and nothing says stop{gain}{tie}.",
            "next_action": f"Ship {arm}, or buy the next doubling if its predicted gain is "
                           "worth the teacher calls."}


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")) if text else text


def summarise(gate: Mapping[str, Any], sigs: Sequence[Mapping[str, Any]],
              curves: Sequence[Mapping[str, Any]]) -> Summary:
    """The decision's one-sentence reason and next action (:class:`Summary`).

    ``gate``: :func:`harness.analysis.gate.decide`'s record (with ``vs_chance`` and what
    decided: ``decided_by``, ``undecided``, ``latency``, ``min_roi``); ``sigs``: the signals;
    ``curves``: the learning curves.
    """
    decision = gate["decision"]
    vs_chance = gate.get("vs_chance") or []
    if decision == "INCONCLUSIVE":
        return _inconclusive(gate)
    if decision == "CONTINUE":
        return _continue(gate, sigs, curves)
    by_name = {s["signal"]: s for s in sigs}
    if by_name.get("at_chance", {}).get("fires"):
        return _at_chance(gate, vs_chance, by_name["at_chance"])
    if decision == "SHIFT_TO_REAL_DATA":
        return _gap(by_name.get("distribution_gap", {}))
    found = _stop_reason(gate, sigs)
    if found is not None:
        return found
    return {"decided_by": "none", "reason": "The gate says STOP (see its reasons).",
            "next_action": "Read the reasons below."}
