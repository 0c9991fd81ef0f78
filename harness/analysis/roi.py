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

The *quality-adjusted* saving and ROI count the fallback; the raw ones do not. The cost signal
and ``gate.min_roi`` use the quality-adjusted ROI (a student that saves on paper while its extra
errors go back to the teacher does not pay). The latency view compares the teacher's declared
p95 with the student's measured p95.

The formula has one home, :class:`RoiEstimate`: the ledger's ROIs and break-even and the
report's cumulative-cost chart are all computed by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.analysis.load import CellData, RunData
from harness.spec.models import costs_declared

#: Seconds in a day: traffic is declared per second, the horizon in days.
SECONDS_PER_DAY = 86400
#: What the ledger, the cost signal and the report say when ``costs:`` prices nothing.
NOT_PRICED = "not assessed: no prices declared"


def return_on(saving: float, offline_cost: float) -> float:
    """ROI = (saving - offline investment) / offline investment (a zero investment counts as
    1e-9, so a free distillation has a huge but finite ROI)."""
    return (saving - offline_cost) / max(offline_cost, 1e-9)


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
    def from_costs(cls, costs: dict[str, Any], offline_cost: float,
                   student_price_per_1k: float | None = None, fallback_rate: float = 0.0
                   ) -> RoiEstimate:
        """The estimate for ``offline_cost`` under a spec's ``costs:`` section; a cell's own
        student price (default: the declared one) and fallback rate."""
        traffic = costs["traffic"]
        student = (costs["student_price_per_1k"] if student_price_per_1k is None
                   else student_price_per_1k)
        return cls(qps=traffic["qps"], avg_tokens=traffic["avg_tokens"],
                   days=float(traffic["days"]),
                   teacher_price_per_1k=costs["teacher_price_per_1k"],
                   student_price_per_1k=student, offline_cost=offline_cost,
                   fallback_rate=fallback_rate,
                   manual_fallback_cost=costs.get("manual_fallback_cost", 0.0))

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


def teacher_generation_cost(usage: Mapping[str, Mapping[str, float]], costs: dict[str, Any],
                            teachers: list[str]) -> dict[str, float]:
    """Per teacher: declared generation cost, or recorded tokens x prices (currency units)."""
    out = {}
    for t in teachers:
        tc = costs["teachers"].get(t, {})
        if tc.get("generation_cost") is not None:
            out[t] = float(tc["generation_cost"])
            continue
        u = usage.get(t, {"prompt_tokens": 0, "completion_tokens": 0})
        out[t] = (u["prompt_tokens"] / 1000 * tc.get("price_per_1k_prompt", 0.0)
                  + u["completion_tokens"] / 1000 * tc.get("price_per_1k_completion", 0.0))
    return out


def _latency(run: RunData, cell_id: str, metric: str) -> float | None:
    """One measured latency figure of a cell (ms; None when not measured)."""
    return next((r["value"] for r in run.latency.filter(
        run.latency["cell_id"] == cell_id).iter_rows(named=True) if r["metric"] == metric), None)


def student_price(costs: dict[str, Any], p50_ms: float | None) -> tuple[float, str]:
    """(a cell's student price per 1k tokens, how it was set).

    ``student_price_from: measured``: ``gpu_hour`` x the median seconds per request / 3600,
    per ``avg_tokens`` / 1000 (one request at a time on the declared GPU); the declared
    ``student_price_per_1k`` otherwise, or when the cell has no measured latency.
    """
    declared = float(costs["student_price_per_1k"])
    if costs.get("student_price_from", "declared") != "measured":
        return declared, "declared"
    if not p50_ms:
        return declared, "declared (no latency measured)"
    per_request = costs["gpu_hour"] * p50_ms / 1000 / 3600
    return (per_request * 1000 / costs["traffic"]["avg_tokens"],
            f"measured: p50 {p50_ms:.1f} ms x gpu_hour {costs['gpu_hour']:g}")


def fallback_rate(cell: CellData, teacher_error: Mapping[str, float]) -> tuple[float, float]:
    """(the student's mean error rate beyond the best teacher's over units, signed; the
    fallback rate: the same with each unit's excess floored at 0, in [0, 1]).

    Units weigh equally (the traffic mix is not declared); a unit without an audited teacher
    counts as no excess.
    """
    extra = []
    for unit, items in cell.units.items():
        student_err = 1 - float(items.correct.mean())
        extra.append(student_err - teacher_error.get(unit, student_err))
    if not extra:
        return 0.0, 0.0
    return sum(extra) / len(extra), min(1.0, sum(max(0.0, e) for e in extra) / len(extra))


def ledger(run: RunData, usage: Mapping[str, Mapping[str, float]], n_records: int,
           teacher_error: dict[str, float]) -> list[dict[str, Any]]:
    """One ledger row per finished cell (JSON-ready), each with its own student's price and
    fallback rate (see the module docstring).

    When ``costs:`` declares no price at all (``priced`` False) every money figure (generation,
    judge, training, maintenance, offline cost, prices, savings, fallback, ROIs, break-even) is
    None and ``cost_note`` says :data:`NOT_PRICED`: a column of 0.00 would read as a checked
    break-even.

    Args:
        usage: teacher -> summed ``prompt_tokens`` / ``completion_tokens`` of the repository.
        n_records: records in the sample repository (judge cost is per judged record).
        teacher_error: unit -> error rate of the best teacher on the eval set (audit).
    """
    costs = run.spec["costs"]
    priced = costs_declared(costs)
    days = float(costs["traffic"]["days"])
    all_teachers = sorted(usage)
    teacher_p95 = [t.get("latency_p95_ms") for t in costs["teachers"].values()
                   if t.get("latency_p95_ms")]
    rows = []
    for cell in run.cells:
        bucket = run.spec["buckets"][cell.axes["bucket"]]
        teachers = all_teachers if bucket["teachers"] == "all" else list(bucket["teachers"])
        gen = teacher_generation_cost(usage, costs, teachers)
        judged = bucket["select"] == "judge_winner" or bucket.get("min_score") is not None
        judge = costs["judge_cost_per_item"] * n_records if judged else 0.0
        train_h = float(cell.metrics.train["train_seconds"]) / 3600
        training = train_h * costs["gpu_hour"]
        maintenance = costs["maintenance_per_month"] * days / 30
        offline = sum(gen.values()) + judge + training + maintenance
        extra_rate, rate = fallback_rate(cell, teacher_error)
        price, basis = student_price(costs, _latency(run, cell.cell_id, "latency_p50_ms"))
        est = RoiEstimate.from_costs(costs, offline, price, rate)
        money: dict[str, Any] = {
            "teacher_generation": gen, "judge": judge, "training": training,
            "maintenance": maintenance, "offline_cost": offline,
            "student_price_per_1k": price, "online_saving": est.online_saving,
            "roi": est.roi, "break_even_days": est.break_even_days,
            "teacher_fallback": est.teacher_fallback, "manual_fallback": est.manual_fallback,
            "quality_adjusted_saving": est.quality_adjusted_saving,
            "quality_adjusted_roi": est.quality_adjusted_roi,
            "quality_adjusted_break_even_days": est.quality_adjusted_break_even_days}
        if not priced:  # every figure would be 0: none is shown rather than a ledger of zeros
            money = dict.fromkeys(money)
        rows.append({
            "cell_id": cell.cell_id, "label": cell.label, "currency": costs["currency"],
            "priced": priced, "cost_note": None if priced else NOT_PRICED, **money,
            "student_price_basis": basis, "training_hours": train_h,
            "extra_error_rate": extra_rate, "fallback_rate": rate,
            "student_p95_ms": _latency(run, cell.cell_id, "latency_p95_ms"),
            "teacher_p95_ms": max(teacher_p95) if teacher_p95 else None,
            "horizon_days": days,
        })
    return rows
