"""Stop signals: one small function per :data:`~harness.experiment.models.SignalName`,
registered by name.

Each signal reads a :class:`SignalContext` (the run, the chosen cell, the learning curves, the ROI
ledger, earlier rounds) and returns a :class:`Signal` — whether it fires, the threshold from the
YAML's ``stop:`` and its evidence in words. :func:`evaluate` runs them in the order
``SignalName`` declares, which is the order ``analysis.json`` lists them in.

- ``at_chance``: the chosen arm (mean over its seeds, item + seed noise) is at chance (the upper
  bound of its margin over the best constant answer / uniform guessing is within
  ``chance_margin``) or below it on some unit that matters; "undecided" when no unit is, but
  some cannot be told yet (with the items or seeds that would decide it; see
  :mod:`harness.analysis.chance`); the gate treats it as blocking whatever the YAML says;
- ``diminishing_returns``: on every unit that matters, the gain of more distilling is surely
  below ``min_gain_next_doubling``: this round's chosen arm against the previous round's (with
  ``--history``; paired on shared eval items, seed-aware, alpha spent across rounds:
  :mod:`harness.analysis.rounds`), else the upper 95% bound of the next doubling's predicted
  gain on the learning curve of arm means (:mod:`harness.analysis.curves`); "quiet" when some
  unit surely still gains that much, "undecided" (with the seeds or eval items that would
  decide) in between;
- ``teacher_bias``: agreement with a teacher rises with scale while the primary metric does not
  improve significantly ("more teacher-like, not more correct"), or the chosen arm (against
  every teacher) or any single-teacher arm (against its teacher) repeats a teacher's wrong
  answers more often than a student erring independently of that teacher would, by more than
  ``max_copied_error_rate`` and significantly (one-sided binomial p < 0.05, and the excess's
  95% interval above 0; :mod:`harness.analysis.copying`); the evidence names arm and teacher;
- ``cost``: the chosen cell's quality-adjusted ROI over the horizon is negative (see
  :mod:`harness.analysis.roi`: its extra errors fall back to the teacher), decided on its arm's
  95% interval; undecided (with the eval items or seeds that would decide) when the interval
  straddles 0;
- ``distribution_gap``: the chosen arm's primary metric on ``source=real`` lags
  ``source=synthetic`` by more than ``max_real_synthetic_gap`` (paired-by-unit bootstrap 95%
  interval above 0) and the gap does not close with scale, which is asserted only from >= 3
  scale points on a unit the student learned something on (else the evidence says why it
  cannot tell; :mod:`harness.analysis.slices`);
- ``teacher_inconsistency``: teachers disagree on a unit's training records beyond
  ``max_teacher_disagreement`` where the judge gives no verdict.

A new signal is a new ``SignalName`` and one function here decorated with ``@signal(name)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, get_args

from harness.analysis.arms import arm_label, arms, reference_arm
from harness.analysis.chance import (
    NOT_LEARNED,
    UNDECIDED,
    chance_margin_of,
    describe,
    learned_cells,
)
from harness.analysis.copying import copying
from harness.analysis.curves import Call, curve_call
from harness.analysis.load import CellData, RunData, primary
from harness.analysis.roi import NOT_PRICED, roi_verdict
from harness.analysis.rounds import combine, round_alpha, round_call, round_gains
from harness.analysis.slices import MIN_SCALE_POINTS, gap_trend, slice_gap
from harness.experiment.models import SignalName, StopSpec

#: Rise in agreement with a teacher (largest vs smallest scale) that counts as "more teacher-like".
AGREEMENT_RISE = 0.05


#: What a signal says: it fires (the evidence says stop), it is quiet (the evidence says it
#: does not), or it is undecided (the evidence cannot tell which; ``action`` then names the
#: cheapest thing that would decide it). The gate turns a blocking undecided signal into
#: INCONCLUSIVE instead of guessing.
SignalState = Literal["fires", "quiet", "undecided"]


class Signal(TypedDict, total=False):
    """One stop signal as ``analysis.json`` records it (``signal``, ``fires``, ``threshold``,
    ``evidence`` always; :func:`evaluate` fills ``state`` from ``fires`` and ``action`` with
    None when a signal leaves them out)."""

    signal: SignalName
    fires: bool
    threshold: float
    evidence: str
    state: SignalState
    action: str | None
    #: per unit, the numbers behind the evidence line (at_chance: verdict, value, chance;
    #: diminishing_returns: state and source;
    #: distribution_gap: gap, interval, metric, closes; teacher_inconsistency: unjudged_rate)
    per_unit: dict[str, dict[str, Any]]
    #: teacher_bias: the arms copying a teacher's errors beyond chance, worst first
    copiers: list[dict[str, Any]]
    rounds: dict[str, Any] | None


@dataclass(frozen=True)
class SignalContext:
    """What every signal may read.

    Attributes:
        run: the run folder's contents.
        cell: the chosen cell (the one the decision is about).
        units: the units that matter (``stop.units``, default all).
        curves: the learning curves (``analysis.json``'s ``learning_curves``).
        roi: the ROI ledger rows.
        history: earlier rounds of the same experiment (``--history``).
        vs_chance: every arm x unit against chance
            (:func:`harness.analysis.chance.versus_chance`).
    """

    run: RunData
    cell: CellData
    units: list[str]
    curves: list[dict[str, Any]]
    roi: list[dict[str, Any]]
    history: list[RunData]
    vs_chance: list[dict[str, Any]]

    @property
    def stop(self) -> StopSpec:
        """The YAML's ``stop:`` thresholds."""
        return self.run.experiment.stop


#: A signal's function; None when it has nothing to assess (no ledger row for the cell).
SignalFn = Callable[[SignalContext], Signal | None]
REGISTRY: dict[SignalName, SignalFn] = {}


def signal(name: SignalName) -> Callable[[SignalFn], SignalFn]:
    """Register ``fn`` as the signal ``name`` (each name exactly once)."""
    if name not in get_args(SignalName):
        raise ValueError(f"{name!r} is not a SignalName")

    def register(fn: SignalFn) -> SignalFn:
        if name in REGISTRY:
            raise ValueError(f"signal {name!r} is registered twice")
        REGISTRY[name] = fn
        return fn

    return register


def evaluate(ctx: SignalContext) -> list[Signal]:
    """Every registered signal, in ``SignalName``'s order."""
    out = []
    for name in get_args(SignalName):
        result = REGISTRY[name](ctx)
        if result is not None:
            state = result.get("state") or ("fires" if result["fires"] else "quiet")
            result["state"] = state
            result["fires"] = state == "fires"
            result.setdefault("action", None)
            out.append(result)
    return out


# -- shared look-ups -------------------------------------------------------------------------

# -- the signals -------------------------------------------------------------------------------

@signal("at_chance")
def at_chance(ctx: SignalContext) -> Signal:
    """The chosen arm (the mean over its seeds) is at or below chance on a unit that matters
    (:mod:`harness.analysis.chance`): "fires"; none is, but some unit cannot be told yet:
    "undecided", with the cheapest action that would decide it; else "quiet"."""
    a = ctx.cell.axes
    arm = arm_label((a["bucket"], a["fields"], float(a["scale"])))
    rows = [r for r in ctx.vs_chance if r["arm"] == arm and r["unit"] in ctx.units]
    bad = [r for r in rows if r["verdict"] in NOT_LEARNED]
    open_ = [r for r in rows if r["verdict"] == UNDECIDED]
    missing = [u for u in ctx.units if u not in {r["unit"] for r in rows}]
    # what decided the state first; every unit's comparison when nothing fired
    evidence = "; ".join(describe(r) for r in (bad or open_ or rows))
    if missing:
        evidence += ("; " if evidence else "") + f"no eval items for {', '.join(missing)}"
    state: SignalState = "fires" if bad else "undecided" if open_ else "quiet"
    # each undecided unit's own action (they name the unit, the arm and how much)
    actions = [r["action"] for r in open_ if r["action"]] if state == "undecided" else []
    thr = rows[0]["chance_margin"] if rows else chance_margin_of(ctx.run)
    return {"signal": "at_chance", "fires": bool(bad), "state": state,
            "action": "; ".join(actions) or None, "threshold": thr, "evidence": evidence,
            # the units that matter, each with its verdict (the summary names the ones that fired)
            "per_unit": {r["unit"]: {"verdict": r["verdict"], "value": r["value"],
                                     "chance": r["chance"]} for r in rows}}


@signal("diminishing_returns")
def diminishing_returns(ctx: SignalContext) -> Signal:
    """Whether more distilling can still buy ``min_gain_next_doubling`` on the units that matter.

    Two kinds of evidence, combined unit by unit by :func:`harness.analysis.rounds.combine`:

    - the learning curve on arm means of the chosen arm's bucket x field set (else the
      reference arm's, else the family with the most fitted units), whose 95% band of the next
      doubling's gain carries item and seed noise (:func:`harness.analysis.curves.curve_call`);
    - with ``--history``, this round's chosen arm against the previous round's, paired on the
      eval items both share, seed-aware, at this round's alpha-spending level
      (:func:`harness.analysis.rounds.round_call`); it takes precedence wherever the rounds can
      be compared, since it measures what the last round bought instead of extrapolating.

    "fires" when on every unit the gain is surely below the minimum; "quiet" when on some unit it
    is surely at or above it, or some unit has no evidence at all (nothing there says stop);
    "undecided" otherwise, with the seeds or eval items that would decide.
    """
    units, thr = ctx.units, ctx.stop.min_gain_next_doubling
    rows, moved = _returns_curves(ctx)
    curve = {r["unit"]: curve_call(r, thr) for r in rows}
    rounds: dict[str, Call] = {}
    record = None
    if ctx.history:
        r = len(ctx.history) + 1
        a = ctx.cell.axes
        key = (a["bucket"], a["fields"], float(a["scale"]))
        chosen = {"cell_ids": [c.cell_id for c in arms(ctx.run)[key]]}
        gains = round_gains(ctx.run, chosen, ctx.history[-1], units)
        rounds = {u: round_call(g, thr, r, len(units)) for u, g in gains.items()}
        record = {"round": r, "alpha": round_alpha(r), "previous": str(ctx.history[-1].path),
                  "gains": [g.to_dict() for g in gains.values()]}
    state, per, action = combine(curve, rounds, units)
    lines = []
    for u, (source, call) in per.items():
        line = call.text
        if source == "rounds" and u in curve and curve[u].state is not None:
            line += f" (its learning curve alone: {curve[u].state}, {curve[u].text})"
        lines.append(line)
    evidence = (moved + "; " if moved else "") + "; ".join(lines)
    return {"signal": "diminishing_returns", "fires": state == "fires", "state": state,
            "action": action, "threshold": thr, "evidence": evidence,
            "per_unit": {u: {"state": call.state, "from": source}
                         for u, (source, call) in per.items()},
            "rounds": record}


def _returns_curves(ctx: SignalContext) -> tuple[list[dict[str, Any]], str]:
    """The learning curves ``diminishing_returns`` reads, on the units that matter: the chosen
    arm's bucket x field set when it has a fitted one; else (said in the returned line) the
    family with the most fitted units, the reference arm's first (in a one-at-a-time design the
    base is the experiment's scale axis)."""
    fams: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in ctx.curves:
        if row["unit"] in ctx.units:
            fams.setdefault((row["bucket"], row["fields"]), []).append(row)
    own = (ctx.cell.axes["bucket"], ctx.cell.axes["fields"])

    def fitted(key: tuple[str, str]) -> int:
        return sum(1 for row in fams.get(key, []) if row["fit"])

    if fitted(own) or not fams:
        return fams.get(own, []), ""
    ref = reference_arm(ctx.run)[:2]
    best = max(sorted(fams), key=lambda k: (fitted(k), k == ref))
    if not fitted(best):
        return fams.get(own, []), ""
    return fams[best], (f"{own[0]}/{own[1]} has no fitted learning curve, so the curve is read "
                        f"on {best[0]}/{best[1]}")


@signal("teacher_bias")
def teacher_bias(ctx: SignalContext) -> Signal:
    """Copied errors beyond a teacher-independent chance, in the chosen arm or in any
    single-teacher arm (:mod:`harness.analysis.copying`), or agreement that rises with scale
    while the metric does not."""
    thr = ctx.stop.max_copied_error_rate
    found = copying(ctx.run, ctx.cell)
    copiers = [f for f in found if f.fires(thr)]
    flags = fidelity_flags(ctx.run)
    fires = bool(flags) or bool(copiers)
    if copiers:
        evidence = "copies teacher errors beyond chance: " + "; ".join(
            f.describe() for f in sorted(copiers, key=lambda f: -f.excess))
    elif found:
        worst = max(found, key=lambda f: f.excess)
        evidence = (f"no arm copies teacher errors beyond chance by more than {thr:g} "
                    f"({len(found)} arm x unit x teacher checked); highest: {worst.describe()}")
    else:
        evidence = "no teacher answers on eval items"
    if flags:
        evidence += "; more teacher-like, not more correct: " + "; ".join(flags)
    return {"signal": "teacher_bias", "fires": fires, "threshold": thr, "evidence": evidence,
            "copiers": [{"arm": f.arm, "unit": f.unit, "teacher": f.teacher,
                         "excess": f.excess} for f in sorted(copiers, key=lambda f: -f.excess)]}


@signal("cost")
def cost(ctx: SignalContext) -> Signal | None:
    """The chosen cell's quality-adjusted ROI over the horizon is negative (its extra errors
    fall back to the teacher), decided on its arm's 95% interval
    (:func:`harness.analysis.roi.roi_verdict` at 0): fires when the whole interval is below 0,
    quiet when it is at or above 0, undecided (with the eval items or seeds that would
    decide) otherwise. Quiet without prices (not assessed)."""
    row = next((r for r in ctx.roi if r["cell_id"] == ctx.cell.cell_id), None)
    if row is None:
        return None
    if row.get("quality_adjusted_roi") is None:
        return {"signal": "cost", "fires": False, "threshold": 0.0, "state": "quiet",
                "evidence": f"{NOT_PRICED} in `costs:`, so there is no ROI"}
    state, evidence, action = roi_verdict(row, 0.0)
    return {"signal": "cost", "fires": state == "fires", "threshold": 0.0, "state": state,
            "action": action, "evidence": evidence}


@signal("distribution_gap")
def distribution_gap(ctx: SignalContext) -> Signal:
    """On a unit that matters, the chosen arm's ``source=real`` lags ``source=synthetic`` by more
    than the threshold (the gap's paired-by-unit 95% interval above 0) and the gap does not
    close with scale — asserted only from >= 3 scale points on a unit the student learned
    something on (:func:`harness.analysis.slices.gap_trend`); otherwise the evidence says why
    it cannot tell, and the signal stays quiet."""
    run, cell = ctx.run, ctx.cell
    thr = ctx.stop.max_real_synthetic_gap
    a = cell.axes
    arm_cells = [c for c in run.cells if (c.axes["bucket"], c.axes["fields"],
                                          float(c.axes["scale"])) ==
                 (a["bucket"], a["fields"], float(a["scale"]))]
    gaps = {u: g for u in ctx.units if (g := slice_gap(run, arm_cells, u)) is not None}
    big = {u: g for u, g in gaps.items() if g.gap > thr and g.ci_low > 0}
    learned_on = learned_cells(ctx.vs_chance)
    trends = {u: _gap_trend(run, cell, u, learned_on) for u in big}
    evidence = ("; ".join(g.describe() for g in gaps.values())
                or "no source=real / source=synthetic slices")
    if gaps and not big:
        evidence += f"; no gap above {thr:g} with its 95% interval above 0"
    for _, why in trends.values():
        evidence += f"; {why}"
    # per unit, the numbers the evidence line says (the report's one-sentence reason reads them)
    per_unit = {u: {"gap": g.gap, "ci_low": g.ci_low, "ci_high": g.ci_high,
                    "metric": g.metric, "closes": trends[u][0] if u in trends else None}
                for u, g in gaps.items()}
    return {"signal": "distribution_gap", "threshold": thr, "evidence": evidence,
            "fires": any(closes is False for closes, _ in trends.values()),
            "per_unit": per_unit}


def _scale_families(run: RunData) -> dict[tuple[str, str], list[CellData]]:
    """Cells by bucket x field set, each family's cells sorted by scale."""
    fams: dict[tuple[str, str], list[CellData]] = {}
    for c in run.cells:
        fams.setdefault((c.axes["bucket"], c.axes["fields"]), []).append(c)
    for cells in fams.values():
        cells.sort(key=lambda c: (float(c.axes["scale"]), int(c.axes["seed"])))
    return fams


def _gap_trend(run: RunData, cell: CellData, unit: str, learned_on: set[tuple[str, str]]
               ) -> tuple[bool | None, str]:
    """Whether the gap on ``unit`` closes with scale: judged on the chosen cell's bucket x field
    set when it has enough scale points; otherwise on the family with the most scale points (in
    a one-at-a-time design, the base arm's: the experiment's scale axis), said so, and only when
    that family's largest-scale student learned something on the unit."""
    fams = _scale_families(run)
    own = (cell.axes["bucket"], cell.axes["fields"])

    def n_scales(key: tuple[str, str]) -> int:
        return len({float(c.axes["scale"]) for c in fams.get(key, [])})

    closes, why = gap_trend(run, cell, unit, (cell.cell_id, unit) in learned_on)
    if closes is not None or n_scales(own) >= MIN_SCALE_POINTS:
        return closes, why
    best = max(fams, key=lambda k: (n_scales(k), k == own))
    if best == own or n_scales(best) < MIN_SCALE_POINTS:
        return closes, why
    top = fams[best][-1]  # the largest scale (seed order breaks ties)
    closes, other = gap_trend(run, top, unit, (top.cell_id, unit) in learned_on)
    return closes, (f"{own[0]}/{own[1]} has {n_scales(own)} scale point(s), so the scale "
                    f"trend is read on {best[0]}/{best[1]} ({n_scales(best)} scales): {other}")


@signal("teacher_inconsistency")
def teacher_inconsistency(ctx: SignalContext) -> Signal:
    """Teachers disagree on a unit's training records without a judge verdict too often."""
    thr = ctx.stop.max_teacher_disagreement
    dis = ctx.run.run.teachers.disagreement
    bad = {u: d["unjudged_rate"] for u, d in dis.items() if u in ctx.units
           and d["unjudged_rate"] > thr}
    return {"signal": "teacher_inconsistency", "fires": bool(bad), "threshold": thr,
            "per_unit": {u: {"unjudged_rate": r} for u, r in bad.items()},
            "evidence": ", ".join(f"{u}: teachers disagree on {d['rate']:.2f} of records, "
                                  f"{d['unjudged_rate']:.2f} without a judge verdict"
                                  for u, d in dis.items() if u in ctx.units)
            or "no teacher disagreement recorded"}


# -- evidence helpers --------------------------------------------------------------------------

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
        for u, rep in hi.metrics.units.items():
            if u not in lo.metrics.units:
                continue
            m = primary(run, u)
            d_acc = rep["metrics"].get(m, 0) - lo.metrics.units[u]["metrics"].get(m, 0)
            n = rep["n"]
            p = rep["metrics"].get(m, 0.5)
            noise = 2 * (2 * max(p * (1 - p), 1e-6) / max(n, 1)) ** 0.5
            for t, fid in rep["fidelity"].items():
                before = lo.metrics.units[u]["fidelity"].get(t)
                if (before and fid["agreement"] - before["agreement"] > AGREEMENT_RISE
                        and abs(d_acc) < noise):
                    flags.append(f"{bucket}/{fields} {u} vs {t}: agreement "
                                 f"{before['agreement']:.2f} -> {fid['agreement']:.2f}, {m} "
                                 f"{d_acc:+.3f}")
    return flags
