"""The ROI ledger: what distilling a cell cost, what the student saves, and when it breaks even.

The estimator is the chapter's (seed 003, Listing 16-3)::

    requests = qps * 86400 * days
    saved    = requests * avg_tokens / 1000 * (teacher_price_per_1k - student_price_per_1k)
    ROI      = (saved - offline_cost) / offline_cost

Offline cost per cell = teacher generation (recorded ``usage`` tokens x each teacher's prices,
or its declared ``generation_cost``, for the teachers the bucket draws on) + judge cost (per
judged record, when the bucket uses the judge) + training (measured train seconds / 3600 x
``gpu_hour``) + sample maintenance (``maintenance_per_month`` over the horizon). The
quality-adjusted view subtracts the manual fallback cost of the student's extra errors over the
teacher's; the latency view compares the teacher's declared p95 with the student's measured p95.

The formula has one home, :class:`RoiEstimate`: the ledger's ROI and break-even and the report's
cumulative-cost chart are all computed by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.analysis.load import RunData
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
    """

    qps: float
    avg_tokens: float
    days: float
    teacher_price_per_1k: float
    student_price_per_1k: float
    offline_cost: float

    @classmethod
    def from_costs(cls, costs: dict[str, Any], offline_cost: float) -> RoiEstimate:
        """The estimate for ``offline_cost`` under a spec's ``costs:`` section."""
        traffic = costs["traffic"]
        return cls(qps=traffic["qps"], avg_tokens=traffic["avg_tokens"],
                   days=float(traffic["days"]),
                   teacher_price_per_1k=costs["teacher_price_per_1k"],
                   student_price_per_1k=costs["student_price_per_1k"],
                   offline_cost=offline_cost)

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

    def cumulative_cost(self, points: int = 15) -> dict[str, list[tuple[int, float]]]:
        """Cumulative cost over the horizon, about ``points`` + 1 whole days from day 0:
        ``{"teacher only": [(day, cost)], "distilled student": [(day, offline + cost)]}``."""
        per_day_k = self.qps * SECONDS_PER_DAY * self.avg_tokens / 1000
        teacher = self.teacher_price_per_1k * per_day_k
        student = self.student_price_per_1k * per_day_k
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


def ledger(run: RunData, usage: Mapping[str, Mapping[str, float]], n_records: int,
           teacher_error: dict[str, float]) -> list[dict[str, Any]]:
    """One ledger row per finished cell (JSON-ready).

    When ``costs:`` declares no price at all (``priced`` False) every money figure (generation,
    judge, training, maintenance, offline cost, saving, fallback, ROIs, break-even) is None and
    ``cost_note`` says :data:`NOT_PRICED`: a column of 0.00 would read as a checked break-even.

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
        est = RoiEstimate.from_costs(costs, offline)
        saved, requests = est.online_saving, est.requests
        # quality-adjusted: the student's extra errors over the best teacher, handled by hand
        extra = []
        for unit, items in cell.units.items():
            student_err = 1 - float(items.correct.mean())
            extra.append(student_err - teacher_error.get(unit, student_err))
        extra_rate = sum(extra) / len(extra) if extra else 0.0
        fallback = requests * extra_rate * costs["manual_fallback_cost"]
        q_saved = saved - fallback
        p95 = next((r["value"] for r in run.latency.filter(
            run.latency["cell_id"] == cell.cell_id).iter_rows(named=True)
            if r["metric"] == "latency_p95_ms"), None)
        money: dict[str, Any] = {
            "teacher_generation": gen, "judge": judge, "training": training,
            "maintenance": maintenance, "offline_cost": offline, "online_saving": saved,
            "roi": est.roi, "break_even_days": est.break_even_days,
            "manual_fallback": fallback, "quality_adjusted_saving": q_saved,
            "quality_adjusted_roi": return_on(q_saved, offline)}
        if not priced:  # every figure would be 0: none is shown rather than a ledger of zeros
            money = dict.fromkeys(money)
        rows.append({
            "cell_id": cell.cell_id, "label": cell.label, "currency": costs["currency"],
            "priced": priced, "cost_note": None if priced else NOT_PRICED, **money,
            "training_hours": train_h, "extra_error_rate": extra_rate,
            "student_p95_ms": p95,
            "teacher_p95_ms": max(teacher_p95) if teacher_p95 else None,
            "horizon_days": days,
        })
    return rows
