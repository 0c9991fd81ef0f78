"""The ROI ledger: what distilling a cell cost, what the student saves, and when it breaks even.

The estimator is the chapter's (seed 003, Listing 16-3)::

    requests = qps * 86400 * days
    saved    = requests * avg_tokens / 1000 * (teacher_price_per_1k - student_price_per_1k)
    ROI      = (saved - offline_cost) / offline_cost

Offline cost per cell = teacher generation (recorded ``usage`` tokens x each teacher's prices,
or its declared ``generation_cost``, for the teachers the bucket draws on) + judge cost (per
judged record, when the bucket uses the judge) + training (measured train seconds / 3600 x
``gpu_hour``) + sample maintenance (``maintenance_per_month`` over the horizon).

Each cell's own student sets its saving:

- its price: ``student_price_per_1k`` as declared, or (``student_price_from: measured``)
  ``gpu_hour`` x its measured median seconds per request / 3600 per ``avg_tokens`` / 1000 — a
  bigger, slower student costs more to serve;
- its *fallback rate*: the share of traffic it gets wrong beyond the best audited teacher (per
  unit, never below 0; the mean over units). Those requests fall back to the teacher at the
  teacher's price and each costs ``manual_fallback_cost`` besides.

Student and teacher errors are on the *same* metric: per unit, ``1 -`` the kind's
``teacher_error_metric`` (field F1 for JSON fields, ROUGE-L for text, ...), and the row says
which and where the student's value came from (``fallback_metric``, ``fallback_source``).
Comparing the student's exact match with the teacher's field F1 inflated the fallback rate and
could fire a spurious STOP. The fallback rate has a 95% interval at the *arm* level (the mean
over the arm's seeds, with item and seed noise; :mod:`harness.analysis.fallback`); the
quality-adjusted ROI is linear and decreasing in the fallback rate, so the rate's interval maps
to the ROI's and the break-even's.
The cost signal and ``gate.min_roi`` decide on that interval (:func:`roi_verdict`): the whole
interval below the minimum fires, the whole interval at or above it is quiet, and otherwise the
verdict is undecided, with the prospective number of eval items or seeds that would decide it.

The *quality-adjusted* saving and ROI count the fallback; the raw ones do not. The cost signal
and ``gate.min_roi`` use the quality-adjusted ROI (a student that saves on paper while its extra
errors go back to the teacher does not pay). The latency view compares the teacher's declared
p95 with the student's measured p95.

The formula has one home, :class:`RoiEstimate`: the ledger's ROIs and break-even and the
report's cumulative-cost chart are all computed by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from harness.analysis.arms import ArmKey, arm_label, arms
from harness.analysis.fallback import (
    arm_rate,
    decide_action,
    error_tables,
    from_row,
    rate_bounds,
    unit_fallback,
)
from harness.analysis.load import CellData, RunData
from harness.experiment.models import CostSpec, OpenAITeacherSpec, TeacherCost, costs_declared

#: Seconds in a day: traffic is declared per second, the horizon in days.
SECONDS_PER_DAY = 86400
#: What the ledger, the cost signal and the report say when ``costs:`` prices nothing.
NOT_PRICED = "not assessed: no prices declared"
#: A verdict on an interval.
RoiState = Literal["fires", "quiet", "undecided"]


def return_on(saving: float, offline_cost: float) -> float:
    """ROI = (saving - offline investment) / offline investment (a zero investment counts as
    1e-9, so a free distillation has a huge but finite ROI)."""
    return (saving - offline_cost) / max(offline_cost, 1e-9)


def fallback_rate_at(online_saving: float, offline_cost: float, full_fallback_cost: float,
                     minimum: float = 0.0) -> float | None:
    """The fallback rate at which the quality-adjusted ROI equals ``minimum``.

    The quality-adjusted saving is ``online_saving - rate * full_fallback_cost``, so its ROI
    (:func:`return_on`) is linear and decreasing in the rate: at or below the returned rate the
    ROI meets ``minimum``, above it it does not. None when fallback costs nothing (the ROI does
    not depend on the rate). Not clipped to [0, 1]: below 0 even a student that never falls
    back misses the minimum; above 1 even total fallback meets it.
    """
    if full_fallback_cost <= 0:
        return None
    return (online_saving - offline_cost - minimum * max(offline_cost, 1e-9)) / full_fallback_cost


@dataclass(frozen=True)
class RoiEstimate:
    """The chapter's estimator for one offline investment (all money in ``costs.currency``).

    Attributes:
        qps: requests per second the student would serve.
        avg_tokens: tokens per request.
        days: the horizon (days).
        teacher_price_per_1k / student_price_per_1k: online price per 1,000 tokens.
        offline_cost: what distillation cost up front (generation, judge, training, upkeep).
        fallback_rate: share of requests the student gets wrong beyond the best teacher, in
            [0, 1]; they are served again by the teacher (teacher price).
        manual_fallback_cost: money per fallen-back request handled by hand besides.
    """

    qps: float
    avg_tokens: float
    days: float
    teacher_price_per_1k: float
    student_price_per_1k: float
    offline_cost: float
    fallback_rate: float = 0.0
    manual_fallback_cost: float = 0.0

    @classmethod
    def from_costs(cls, costs: CostSpec, offline_cost: float,
                   student_price_per_1k: float | None = None, fallback_rate: float = 0.0
                   ) -> RoiEstimate:
        """The estimate for ``offline_cost`` under a spec's ``costs:`` section; a cell's own
        student price (default: the declared one) and fallback rate."""
        traffic = costs.traffic
        student = (costs.student_price_per_1k if student_price_per_1k is None
                   else student_price_per_1k)
        return cls(qps=traffic.qps, avg_tokens=traffic.avg_tokens, days=float(traffic.days),
                   teacher_price_per_1k=costs.teacher_price_per_1k,
                   student_price_per_1k=student, offline_cost=offline_cost,
                   fallback_rate=fallback_rate,
                   manual_fallback_cost=costs.manual_fallback_cost)

    @property
    def requests(self) -> float:
        """Requests over the horizon."""
        return self.qps * SECONDS_PER_DAY * self.days

    @property
    def online_saving(self) -> float:
        """Teacher minus student inference cost over the horizon."""
        return self.requests * self.avg_tokens / 1000 * (self.teacher_price_per_1k
                                                         - self.student_price_per_1k)

    @property
    def daily_saving(self) -> float:
        """The online saving per day."""
        return self.online_saving / self.days

    @property
    def roi(self) -> float:
        """ROI over the horizon (see :func:`return_on`)."""
        return return_on(self.online_saving, self.offline_cost)

    @property
    def break_even_days(self) -> float | None:
        """Days until the saving pays the offline cost; None when nothing is saved."""
        daily = self.daily_saving
        return self.offline_cost / daily if daily > 0 else None

    @property
    def teacher_fallback(self) -> float:
        """Teacher inference for the fallen-back requests over the horizon."""
        return (self.requests * self.fallback_rate * self.avg_tokens / 1000
                * self.teacher_price_per_1k)

    @property
    def manual_fallback(self) -> float:
        """Hand-handling of the fallen-back requests over the horizon."""
        return self.requests * self.fallback_rate * self.manual_fallback_cost

    @property
    def quality_adjusted_saving(self) -> float:
        """The online saving minus what the student's extra errors cost (teacher and hand)."""
        return self.online_saving - self.teacher_fallback - self.manual_fallback

    @property
    def quality_adjusted_roi(self) -> float:
        """ROI of the quality-adjusted saving (see :func:`return_on`): what the gate uses."""
        return return_on(self.quality_adjusted_saving, self.offline_cost)

    @property
    def quality_adjusted_break_even_days(self) -> float | None:
        """Days until the quality-adjusted saving pays the offline cost; None when it saves
        nothing."""
        daily = self.quality_adjusted_saving / self.days
        return self.offline_cost / daily if daily > 0 else None

    @property
    def full_fallback_cost(self) -> float:
        """What fallback would cost over the horizon if every request fell back (rate 1):
        teacher inference plus hand-handling. The quality-adjusted saving falls by this much
        per unit of fallback rate."""
        return self.requests * (self.avg_tokens / 1000 * self.teacher_price_per_1k
                                + self.manual_fallback_cost)

    def with_fallback(self, rate: float) -> RoiEstimate:
        """The same investment at another fallback rate (an interval's bound)."""
        return replace(self, fallback_rate=rate)

    def fallback_rate_at(self, minimum: float = 0.0) -> float | None:
        """The fallback rate at which the quality-adjusted ROI is ``minimum`` (see
        :func:`fallback_rate_at`)."""
        return fallback_rate_at(self.online_saving, self.offline_cost, self.full_fallback_cost,
                                minimum)

    def cumulative_cost(self, points: int = 15) -> dict[str, list[tuple[int, float]]]:
        """Cumulative cost over the horizon, about ``points`` + 1 whole days from day 0:
        ``{"teacher only": [(day, cost)], "distilled student": [(day, offline + cost)]}``; the
        student's line includes its fallback (so it crosses at the quality-adjusted
        break-even)."""
        per_day_k = self.qps * SECONDS_PER_DAY * self.avg_tokens / 1000
        teacher = self.teacher_price_per_1k * per_day_k
        student = (self.student_price_per_1k * per_day_k
                   + (self.teacher_fallback + self.manual_fallback) / self.days)
        days = list(range(0, int(self.days) + 1, max(1, int(self.days) // points)))
        return {"teacher only": [(d, teacher * d) for d in days],
                "distilled student": [(d, self.offline_cost + student * d) for d in days]}


def teacher_generation_cost(usage: Mapping[str, Mapping[str, float]], costs: CostSpec,
                            teachers: list[str], batched: frozenset[str] = frozenset()
                            ) -> dict[str, float]:
    """Per teacher: declared generation cost, or recorded tokens x prices (currency units);
    a teacher in ``batched`` (``batch: true``: asked through the provider's batch API) at its
    batch prices (:meth:`~harness.experiment.policy.TeacherCost.batch_prices`). A teacher
    without a ``costs.teachers`` entry costs nothing."""
    out = {}
    for t in teachers:
        tc = costs.teachers.get(t, TeacherCost())
        if tc.generation_cost is not None:
            out[t] = float(tc.generation_cost)
            continue
        u = usage.get(t, {"prompt_tokens": 0, "completion_tokens": 0})
        prompt, completion = tc.price_per_1k_prompt, tc.price_per_1k_completion
        if t in batched:
            prompt, completion = tc.batch_prices()
        out[t] = u["prompt_tokens"] / 1000 * prompt + u["completion_tokens"] / 1000 * completion
    return out


def _latency(run: RunData, cell_id: str, metric: str) -> float | None:
    """One measured latency figure of a cell (ms; None when not measured)."""
    return next((r["value"] for r in run.latency.filter(
        run.latency["cell_id"] == cell_id).iter_rows(named=True) if r["metric"] == metric), None)


def student_price(costs: CostSpec, p50_ms: float | None) -> tuple[float, str]:
    """(a cell's student price per 1k tokens, how it was set).

    ``student_price_from: measured``: ``gpu_hour`` x the median seconds per request / 3600,
    per ``avg_tokens`` / 1000 (one request at a time on the declared GPU); the declared
    ``student_price_per_1k`` otherwise, or when the cell has no measured latency.
    """
    declared = float(costs.student_price_per_1k)
    if costs.student_price_from != "measured":
        return declared, "declared"
    if not p50_ms:
        return declared, "declared (no latency measured)"
    per_request = costs.gpu_hour * p50_ms / 1000 / 3600
    return (per_request * 1000 / costs.traffic.avg_tokens,
            f"measured: p50 {p50_ms:.1f} ms x gpu_hour {costs.gpu_hour:g}")


# -- the ledger ------------------------------------------------------------------------------

def _offline(run: RunData, cell: CellData, usage: Mapping[str, Mapping[str, float]],
             n_records: int) -> dict[str, Any]:
    """The cell's offline cost items (currency units) and its training hours."""
    costs = run.experiment.costs
    bucket = run.experiment.buckets[cell.axes["bucket"]]
    teachers = sorted(usage) if bucket.teachers == "all" else list(bucket.teachers)
    # HF teachers answer locally: only an API teacher has a batch price
    batched = frozenset(n for n, t in run.experiment.teachers.items()
                        if isinstance(t, OpenAITeacherSpec) and t.batch)
    gen = teacher_generation_cost(usage, costs, teachers, batched)
    judged = bucket.select == "judge_winner" or bucket.min_score is not None
    judge = costs.judge_cost_per_item * n_records if judged else 0.0
    train_h = float(cell.metrics.train["train_seconds"]) / 3600
    training = train_h * costs.gpu_hour
    maintenance = costs.maintenance_per_month * float(costs.traffic.days) / 30
    return {"teacher_generation": gen, "judge": judge, "training": training,
            "maintenance": maintenance,
            "offline_cost": sum(gen.values()) + judge + training + maintenance,
            "training_hours": train_h}


def _money(est: RoiEstimate, arm_point: float, rate_ci: tuple[float, float]) -> dict[str, Any]:
    """The ledger's money figures for one cell: the point (its own fallback rate), the arm's
    point and the intervals (the ROI falls as the fallback rate rises, so the rate's upper
    bound gives the ROI's lower bound)."""
    worst, best = est.with_fallback(rate_ci[1]), est.with_fallback(rate_ci[0])
    return {
        "offline_cost": est.offline_cost, "student_price_per_1k": est.student_price_per_1k,
        "online_saving": est.online_saving, "roi": est.roi,
        "break_even_days": est.break_even_days, "teacher_fallback": est.teacher_fallback,
        "manual_fallback": est.manual_fallback,
        "quality_adjusted_saving": est.quality_adjusted_saving,
        "quality_adjusted_roi": est.quality_adjusted_roi,
        "quality_adjusted_break_even_days": est.quality_adjusted_break_even_days,
        "arm_quality_adjusted_roi": est.with_fallback(arm_point).quality_adjusted_roi,
        "quality_adjusted_roi_ci": [worst.quality_adjusted_roi, best.quality_adjusted_roi],
        # None in the upper bound: at that fallback rate it never pays
        "quality_adjusted_break_even_days_ci": [best.quality_adjusted_break_even_days,
                                                worst.quality_adjusted_break_even_days],
        "full_fallback_cost": est.full_fallback_cost,
        "break_even_fallback_rate": est.fallback_rate_at(0.0)}


def ledger(run: RunData, usage: Mapping[str, Mapping[str, float]], n_records: int,
           teacher_error: Mapping[str, float],
           groups: dict[ArmKey, list[CellData]] | None = None) -> list[dict[str, Any]]:
    """One ledger row per finished cell (JSON-ready), each with its own student's price and
    fallback rate, and its arm's fallback-rate and ROI intervals (see the module docstring).

    Besides the money figures each row has ``arm`` (the label of the cell's arm) and
    ``arm_seeds``; ``fallback_metric`` / ``fallback_source`` (unit -> the error metric, and
    ``items`` or ``metrics.json``); ``fallback_by_unit`` (unit -> the fields of its
    :class:`~harness.analysis.fallback.UnitFallback`); ``extra_error_rate`` (signed) and
    ``fallback_rate`` (the cell's); ``arm_fallback_rate`` and ``fallback_rate_ci`` ([low,
    high], 95%); and, priced, ``arm_quality_adjusted_roi``, ``quality_adjusted_roi_ci`` and
    ``quality_adjusted_break_even_days_ci`` ([low, high]), ``full_fallback_cost`` (the
    fallback's cost at rate 1) and ``break_even_fallback_rate`` (where the quality-adjusted ROI
    is 0).

    When ``costs:`` declares no price at all (``priced`` False) every money figure is None and
    ``cost_note`` says :data:`NOT_PRICED`: a column of 0.00 would read as a checked break-even.

    Args:
        usage: teacher -> summed ``prompt_tokens`` / ``completion_tokens`` of the repository.
        n_records: records in the sample repository (judge cost is per judged record).
        teacher_error: unit -> error rate of the best teacher on the eval set (audit), on
            :func:`harness.analysis.fallback.error_metric`.
        groups: :func:`harness.analysis.arms.arms` of the run, when the caller has it.
    """
    costs = run.experiment.costs
    # costs_declared reads the section as JSON data (the validator's form)
    priced = costs_declared(costs.model_dump(mode="json"))
    groups = groups if groups is not None else arms(run)
    tables = error_tables(run, groups, [u for u in run.experiment.units if u in teacher_error])
    teacher_p95 = [t.latency_p95_ms for t in costs.teachers.values() if t.latency_p95_ms]
    rows = []
    for cell in run.cells:
        a = cell.axes
        key = (a["bucket"], a["fields"], float(a["scale"]))
        fb = {u: unit_fallback(run, groups[key], cell, u, teacher_error.get(u), tables)
              for u in cell.units}
        units = list(fb.values())
        rate = min(1.0, float(np.mean([u.fallback for u in units]))) if units else 0.0
        rate_ci, arm_point = rate_bounds(units), arm_rate(units)
        offline = _offline(run, cell, usage, n_records)
        price, basis = student_price(costs, _latency(run, cell.cell_id, "latency_p50_ms"))
        est = RoiEstimate.from_costs(costs, offline["offline_cost"], price, rate)
        money = {**{k: offline[k] for k in ("teacher_generation", "judge", "training",
                                             "maintenance")}, **_money(est, arm_point, rate_ci)}
        if not priced:  # every figure would be 0: none is shown rather than a ledger of zeros
            money = dict.fromkeys(money)
        rows.append({
            "cell_id": cell.cell_id, "label": cell.label, "currency": costs.currency,
            "priced": priced, "cost_note": None if priced else NOT_PRICED, **money,
            "student_price_basis": basis, "training_hours": offline["training_hours"],
            "extra_error_rate": float(np.mean([u.excess for u in units])) if units else 0.0,
            "fallback_rate": rate, "arm": arm_label(key), "arm_seeds": len(groups[key]),
            "fallback_metric": {u: f.metric for u, f in fb.items()},
            "fallback_source": {u: f.source for u, f in fb.items()},
            "fallback_by_unit": {u: asdict(f) for u, f in fb.items()},
            "arm_fallback_rate": arm_point, "fallback_rate_ci": list(rate_ci),
            "student_p95_ms": _latency(run, cell.cell_id, "latency_p95_ms"),
            "teacher_p95_ms": max(teacher_p95) if teacher_p95 else None,
            "horizon_days": float(costs.traffic.days),
        })
    return rows


# -- the verdict on the interval ---------------------------------------------------------------

def _units_text(row: Mapping[str, Any]) -> str:
    """'unit metric (source)' for each unit, with what its interval does not cover."""
    out = []
    for name, u in from_row(row).items():
        text = f"{name} {u.metric}"
        if u.source != "items":
            text += f" ({u.source}, no interval)"
        elif u.teacher_error is not None and not u.seed_noise:
            text += " (eval items only: no seed noise measured)"
        out.append(text)
    return ", ".join(out) or "no unit"


def roi_verdict(row: Mapping[str, Any], minimum: float) -> tuple[RoiState, str, str | None]:
    """(state, evidence line, action) of a ledger row's quality-adjusted ROI against
    ``minimum`` (the cost signal: 0; ``gate.min_roi``), decided on the arm's 95% interval:
    ``fires`` when its upper bound is below ``minimum``, ``quiet`` when its lower bound is at
    or above it, ``undecided`` otherwise, with the cheapest action that would decide
    (:func:`harness.analysis.fallback.decide_action`). Not priced: quiet, and the evidence
    says why."""
    if row.get("quality_adjusted_roi") is None:
        return ("quiet", f"{NOT_PRICED} in `costs:`, so there is no ROI to check against "
                         f"{minimum:g}", None)
    q = row["quality_adjusted_roi"]
    lo, hi = row.get("quality_adjusted_roi_ci") or (q, q)
    arm_q = row.get("arm_quality_adjusted_roi", q)
    state: RoiState
    if hi < minimum:
        state, verdict = "fires", f"below {minimum:g} over the whole interval"
    elif lo >= minimum:
        state, verdict = "quiet", f"at or above {minimum:g} over the whole interval"
    else:
        state, verdict = "undecided", f"the interval straddles {minimum:g}"
    threshold = fallback_rate_at(row["online_saving"], row["offline_cost"],
                                 row.get("full_fallback_cost") or 0.0, minimum)
    r_lo, r_hi = row.get("fallback_rate_ci") or (row["fallback_rate"], row["fallback_rate"])
    at = (f"ROI {minimum:g} at a fallback rate of {threshold:.1%}" if threshold is not None
          else "fallback costs nothing")
    evidence = (
        f"quality-adjusted ROI over {row['horizon_days']:g} days = {q:.2f}; arm "
        f"{row.get('arm', '?')} ({row.get('arm_seeds', 1)} seed(s)): {arm_q:.2f}, 95% interval "
        f"[{lo:.2f}, {hi:.2f}] — {verdict} (offline {row['offline_cost']:.2f} "
        f"{row['currency']}; saving {row['online_saving']:.2f} minus fallback "
        f"{row['teacher_fallback'] + row['manual_fallback']:.2f} for {row['fallback_rate']:.1%} "
        f"of requests wrong beyond the best teacher on {_units_text(row)}; the arm's fallback "
        f"rate {row.get('arm_fallback_rate', row['fallback_rate']):.1%} [{r_lo:.1%}, "
        f"{r_hi:.1%}], {at}; the teacher's error taken as known; raw ROI {row['roi']:.2f}, "
        "not used)")
    action = (decide_action(from_row(row), row.get("arm", "the chosen arm"), threshold)
              if state == "undecided" and threshold is not None else None)
    return state, evidence, action
