"""Stop signals: one small function per :data:`~harness.spec.models.SignalName`, registered by name.

Each signal reads a :class:`SignalContext` (the run, the chosen cell, the learning curves, the ROI
ledger, earlier rounds) and returns a :class:`Signal` — whether it fires, the threshold from the
YAML's ``stop:`` and its evidence in words. :func:`evaluate` runs them in the order
``SignalName`` declares, which is the order ``analysis.json`` lists them in.

- ``at_chance``: the chosen cell is not above chance on some unit that matters (its 95% CI
  against the best constant answer / uniform guessing does not exclude it, see
  :mod:`harness.analysis.chance`); the gate treats it as blocking whatever the YAML says;
- ``diminishing_returns``: on every unit that matters, the upper 95% bound of the next
  doubling's predicted gain is below ``min_gain_next_doubling`` (needs fitted curves); with
  earlier rounds, also no gain across rounds;
- ``teacher_bias``: agreement with a teacher rises with scale while the primary metric does not
  improve significantly ("more teacher-like, not more correct"), or the chosen arm (against
  every teacher) or any single-teacher arm (against its teacher) repeats a teacher's wrong
  answers more often than a student erring independently of that teacher would, by more than
  ``max_copied_error_rate`` and significantly (one-sided binomial p < 0.05, and the excess's
  95% interval above 0; :mod:`harness.analysis.copying`); the evidence names arm and teacher;
- ``cost``: the chosen cell's quality-adjusted ROI over the horizon is negative (see
  :mod:`harness.analysis.roi`: its extra errors fall back to the teacher);
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

from harness.analysis.chance import describe, learned
from harness.analysis.copying import (  # copied_excess: re-exported for the gate's callers
    copied_excess,  # noqa: F401
    copying,
)
from harness.analysis.load import CellData, RunData
from harness.analysis.roi import NOT_PRICED
from harness.analysis.slices import MIN_SCALE_POINTS, gap_trend, slice_gap
from harness.spec.models import SignalName
from harness.units import primary_metric

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
        vs_chance: every cell x unit against chance
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
    def stop(self) -> dict[str, Any]:
        """The YAML's ``stop:`` thresholds."""
        return self.run.spec["stop"]


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

def value(run: RunData, cell_id: str, unit: str, metric: str, slice_: str = "all"
          ) -> float | None:
    """One value of ``results.parquet``; None when the table has no such row."""
    df = run.results.filter((run.results["cell_id"] == cell_id) & (run.results["unit"] == unit)
                            & (run.results["metric"] == metric)
                            & (run.results["slice"] == slice_))
    return float(df["value"][0]) if df.height else None


def primary(run: RunData, unit: str) -> str:
    """The unit's primary metric."""
    return primary_metric(run.spec["units"][unit]["kind"])


def units_that_matter(run: RunData) -> list[str]:
    """``stop.units``, or every unit."""
    return list(run.spec["stop"].get("units") or run.spec["units"])


def best_primary(run: RunData, units: list[str]) -> float:
    """The best cell's mean primary metric over ``units`` (0 when none has a value)."""
    best = 0.0
    for cell in run.cells:
        found = [value(run, cell.cell_id, u, primary(run, u)) for u in units]
        vals = [v for v in found if v is not None]
        if vals:
            best = max(best, sum(vals) / len(vals))
    return best


# -- the signals -------------------------------------------------------------------------------

@signal("at_chance")
def at_chance(ctx: SignalContext) -> Signal:
    """The chosen cell is indistinguishable from (or below) chance on a unit that matters."""
    rows = [r for r in ctx.vs_chance
            if r["cell_id"] == ctx.cell.cell_id and r["unit"] in ctx.units]
    bad = [r for r in rows if not learned(r)]
    missing = [u for u in ctx.units if u not in {r["unit"] for r in rows}]
    # what fired first; every unit's comparison when nothing did
    evidence = "; ".join(describe(r) for r in (bad or rows))
    if missing:
        evidence += ("; " if evidence else "") + f"no eval items for {', '.join(missing)}"
    return {"signal": "at_chance", "fires": bool(bad), "threshold": 0.0, "evidence": evidence}


@signal("diminishing_returns")
def diminishing_returns(ctx: SignalContext) -> Signal:
    """The next doubling cannot buy ``min_gain_next_doubling`` on any unit that matters."""
    cell, units = ctx.cell, ctx.units
    # The chosen cell's own curve when its bucket and field set were run at several scales;
    # otherwise the curves that exist (in a one-at-a-time design, the base's).
    fitted = [c for c in ctx.curves if c["unit"] in units and c["bucket"] == cell.axes["bucket"]
              and c["fields"] == cell.axes["fields"] and c["fit"]]
    if not fitted:
        fitted = [c for c in ctx.curves if c["unit"] in units and c["fit"]]
    thr = ctx.stop["min_gain_next_doubling"]
    if fitted and {c["unit"] for c in fitted} == set(units):
        highs = {f"{c['unit']} ({c['bucket']}/{c['fields']})": c["fit"]["gain_ci"][1]
                 for c in fitted}
        fires = all(h is not None and h < thr for h in highs.values())
        evidence = ", ".join(f"{u}: upper 95% gain {h:+.3f}" if h is not None else f"{u}: n/a"
                             for u, h in highs.items())
    else:
        fires, evidence = False, "no fitted learning curve for the chosen cell's bucket and " \
                                 "field set (needs >= 3 scale points)"
    if ctx.history:
        past = [best_primary(h, units) for h in ctx.history]
        now = best_primary(ctx.run, units)
        evidence += f"; across rounds best mean primary: {past} -> {now:.3f}"
        if len(past) and now - max(past) < thr:
            fires = True
    return {"signal": "diminishing_returns", "fires": fires, "threshold": thr,
            "evidence": evidence}


@signal("teacher_bias")
def teacher_bias(ctx: SignalContext) -> Signal:
    """Copied errors beyond a teacher-independent chance, in the chosen arm or in any
    single-teacher arm (:mod:`harness.analysis.copying`), or agreement that rises with scale
    while the metric does not."""
    thr = ctx.stop["max_copied_error_rate"]
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
    return {"signal": "teacher_bias", "fires": fires, "threshold": thr, "evidence": evidence}


@signal("cost")
def cost(ctx: SignalContext) -> Signal | None:
    """The chosen cell's quality-adjusted ROI over the horizon is negative (its extra errors
    fall back to the teacher; not assessed without prices)."""
    row = next((r for r in ctx.roi if r["cell_id"] == ctx.cell.cell_id), None)
    if row is None:
        return None
    if row.get("quality_adjusted_roi") is None:
        return {"signal": "cost", "fires": False, "threshold": 0.0,
                "evidence": f"{NOT_PRICED} in `costs:`, so there is no ROI"}
    qroi = row["quality_adjusted_roi"]
    return {"signal": "cost", "fires": qroi < 0, "threshold": 0.0,
            "evidence": f"quality-adjusted ROI over {row['horizon_days']:g} days = {qroi:.2f} "
                        f"(offline {row['offline_cost']:.2f} {row['currency']}; saving "
                        f"{row['online_saving']:.2f} minus fallback "
                        f"{row['teacher_fallback'] + row['manual_fallback']:.2f} for "
                        f"{row['fallback_rate']:.1%} of requests wrong beyond the best teacher; "
                        f"raw ROI {row['roi']:.2f}, not used)"}


@signal("distribution_gap")
def distribution_gap(ctx: SignalContext) -> Signal:
    """On a unit that matters, the chosen arm's ``source=real`` lags ``source=synthetic`` by more
    than the threshold (the gap's paired-by-unit 95% interval above 0) and the gap does not
    close with scale — asserted only from >= 3 scale points on a unit the student learned
    something on (:func:`harness.analysis.slices.gap_trend`); otherwise the evidence says why
    it cannot tell, and the signal stays quiet."""
    run, cell = ctx.run, ctx.cell
    thr = ctx.stop["max_real_synthetic_gap"]
    a = cell.axes
    arm_cells = [c for c in run.cells if (c.axes["bucket"], c.axes["fields"],
                                          float(c.axes["scale"])) ==
                 (a["bucket"], a["fields"], float(a["scale"]))]
    gaps = {u: g for u in ctx.units if (g := slice_gap(run, arm_cells, u)) is not None}
    big = {u: g for u, g in gaps.items() if g.gap > thr and g.ci_low > 0}
    learned_on = {(r["cell_id"], r["unit"]) for r in ctx.vs_chance if learned(r)}
    trends = {u: _gap_trend(run, cell, u, learned_on) for u in big}
    evidence = ("; ".join(g.describe() for g in gaps.values())
                or "no source=real / source=synthetic slices")
    if gaps and not big:
        evidence += f"; no gap above {thr:g} with its 95% interval above 0"
    for _, why in trends.values():
        evidence += f"; {why}"
    return {"signal": "distribution_gap", "threshold": thr, "evidence": evidence,
            "fires": any(closes is False for closes, _ in trends.values())}


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
    thr = ctx.stop["max_teacher_disagreement"]
    dis = ctx.run.run.teachers.disagreement
    bad = {u: d["unjudged_rate"] for u, d in dis.items() if u in ctx.units
           and d["unjudged_rate"] > thr}
    return {"signal": "teacher_inconsistency", "fires": bool(bad), "threshold": thr,
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
