"""Stop signals are a registry with one function per SignalName; the ROI formula has one home."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from harness.analysis import signals as sig
from harness.analysis.analyse import analyse
from harness.analysis.roi import RoiEstimate, return_on
from harness.experiment.models import CostSpec, SignalName
from tests.helpers.synth import spec_dict, write_run


def test_the_registry_covers_every_signal_name_exactly_once():
    names = list(get_args(SignalName))
    assert sorted(sig.REGISTRY) == sorted(names)
    assert len(set(sig.REGISTRY.values())) == len(names)  # one function per name
    for name in names:
        assert sig.REGISTRY[name].__name__ == name


def test_a_name_cannot_be_registered_twice_or_invented():
    with pytest.raises(ValueError, match="registered twice"):
        sig.signal("cost")(lambda ctx: None)
    with pytest.raises(ValueError, match="not a SignalName"):
        sig.signal("mood")  # type: ignore[arg-type]
    assert sig.REGISTRY["cost"] is sig.cost


def test_analysis_lists_the_signals_in_signal_name_order(tmp_path):
    spec = spec_dict(["judged"], ["plain"], [1.0], costs={"gpu_hour": 1.0})
    run_dir = write_run(tmp_path, spec, {("judged", "plain", 1.0): {
        "route": (np.arange(100) % 4 > 0).astype(int)}})
    out = analyse(run_dir, n_boot=20, curve_boot=10)
    assert [s["signal"] for s in out["signals"]] == list(get_args(SignalName))
    # every signal says these; a signal may add its own details (per unit, per round)
    assert all({"signal", "fires", "threshold", "evidence", "state", "action"} <= set(s)
               for s in out["signals"])


def test_roi_estimate_is_the_chapter_formula():
    # Listing 16-3: 20 qps, 0.06 vs 0.01 per 1k tokens, 800 tokens, 30 days, 2000 offline
    est = RoiEstimate(qps=20, avg_tokens=800, days=30, teacher_price_per_1k=0.06,
                      student_price_per_1k=0.01, offline_cost=2000)
    saved = 20 * 86400 * 30 * 0.8 * 0.05
    assert est.requests == 20 * 86400 * 30
    assert est.online_saving == pytest.approx(saved)
    assert est.daily_saving == pytest.approx(saved / 30)
    assert est.roi == pytest.approx((saved - 2000) / 2000)
    assert est.roi == return_on(est.online_saving, 2000)
    assert est.break_even_days == pytest.approx(2000 / (saved / 30))
    free = RoiEstimate(qps=0, avg_tokens=800, days=30, teacher_price_per_1k=0.06,
                       student_price_per_1k=0.01, offline_cost=5)
    assert free.break_even_days is None and free.roi == pytest.approx(-1.0)


def test_the_cumulative_cost_curve_breaks_even_where_the_estimate_says():
    costs = CostSpec.model_validate({"teacher_price_per_1k": 0.06, "student_price_per_1k": 0.01,
                                     "traffic": {"qps": 0.01, "avg_tokens": 500, "days": 60}})
    est = RoiEstimate.from_costs(costs, offline_cost=10.0)
    curve = est.cumulative_cost()
    days = [d for d, _ in curve["teacher only"]]
    assert days[0] == 0 and days == list(range(0, 61, 4))
    assert curve["distilled student"][0] == (0, 10.0) and curve["teacher only"][0] == (0, 0.0)
    gap = {d: t - s for (d, t), (_, s) in zip(curve["teacher only"], curve["distilled student"],
                                               strict=True)}
    # the student's line starts above the teacher's and crosses it at the break-even day
    assert est.break_even_days is not None
    assert all((g < 0) == (d < est.break_even_days) for d, g in gap.items())
    assert gap[60] == pytest.approx(est.online_saving * 60 / 60 - 10.0)
