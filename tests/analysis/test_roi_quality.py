"""ROI that counts quality: each cell's own student price and fallback rate; the cost signal and
``gate.min_roi`` read the quality-adjusted ROI and say so."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from harness.analysis.gate import choose_cell, decide, signals
from harness.analysis.load import load_run
from harness.analysis.roi import RoiEstimate, ledger, student_price
from harness.spec.models import CostSpec
from tests.helpers.synth import UNITS, spec_dict, write_run

COSTS = {"teacher_price_per_1k": 0.06, "student_price_per_1k": 0.01, "gpu_hour": 2.5,
         "maintenance_per_month": 50, "manual_fallback_cost": 0.5,
         "traffic": {"qps": 20, "avg_tokens": 800, "days": 30}}
REQUESTS = 20 * 86400 * 30


def exact(p: float, n: int, seed: int = 0) -> np.ndarray:
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def _run(tmp_path, accuracies: dict[str, float], costs=None, gate=None):
    spec = spec_dict(list(accuracies), ["plain"], [1.0], units={"route": UNITS["route"]},
                     costs=costs or COSTS, gate=gate)
    return load_run(write_run(tmp_path, spec, {(b, "plain", 1.0): {"route": exact(p, 200, i)}
                                               for i, (b, p) in enumerate(accuracies.items())}))


def test_quality_adjusted_roi_is_a_field_of_the_one_formula():
    est = RoiEstimate(qps=20, avg_tokens=800, days=30, teacher_price_per_1k=0.06,
                      student_price_per_1k=0.01, offline_cost=2000, fallback_rate=0.1,
                      manual_fallback_cost=0.5)
    saved = REQUESTS * 0.8 * 0.05
    assert est.online_saving == pytest.approx(saved)  # the raw view is unchanged
    assert est.teacher_fallback == pytest.approx(REQUESTS * 0.1 * 0.8 * 0.06)
    assert est.manual_fallback == pytest.approx(REQUESTS * 0.1 * 0.5)
    q = saved - est.teacher_fallback - est.manual_fallback
    assert est.quality_adjusted_saving == pytest.approx(q)
    assert est.quality_adjusted_roi == pytest.approx((q - 2000) / 2000)
    assert est.quality_adjusted_break_even_days is None  # q < 0: it never pays
    # without fallback the quality-adjusted view is the raw one
    clean = RoiEstimate(qps=20, avg_tokens=800, days=30, teacher_price_per_1k=0.06,
                        student_price_per_1k=0.01, offline_cost=2000)
    assert clean.quality_adjusted_roi == clean.roi
    assert clean.quality_adjusted_break_even_days == clean.break_even_days


def test_savings_differ_with_each_cells_fallback_rate(tmp_path):
    run = _run(tmp_path, {"good": 0.95, "poor": 0.70})
    good, poor = ledger(run, {}, 100, {"route": 0.05})
    assert good["fallback_rate"] == pytest.approx(0.0)  # no worse than the best teacher
    assert poor["fallback_rate"] == pytest.approx(0.25)
    assert good["online_saving"] == poor["online_saving"]  # same declared price ...
    assert good["quality_adjusted_saving"] > poor["quality_adjusted_saving"]  # ... not the same
    assert poor["quality_adjusted_roi"] < 0 < poor["roi"]


def test_measured_student_price_follows_each_cells_latency(tmp_path):
    costs = {**COSTS, "student_price_from": "measured"}
    run = _run(tmp_path, {"small": 0.9, "big": 0.9}, costs=costs)
    slow = run.cells[1].cell_id  # the synthetic cells both measured p50 10 ms: make one 4x slower
    run.latency = run.latency.with_columns(
        pl.when((pl.col("cell_id") == slow) & (pl.col("metric") == "latency_p50_ms"))
        .then(40.0).otherwise(pl.col("value")).alias("value"))
    fast_row, slow_row = ledger(run, {}, 100, {"route": 0.1})
    # gpu_hour x seconds per request / 3600, per 800 tokens / 1000
    assert fast_row["student_price_per_1k"] == pytest.approx(2.5 * 0.010 / 3600 / 0.8)
    assert slow_row["student_price_per_1k"] == pytest.approx(4 * fast_row["student_price_per_1k"])
    assert slow_row["online_saving"] < fast_row["online_saving"]
    assert fast_row["student_price_basis"].startswith("measured: p50 10.0 ms")
    assert student_price(costs, None) == (0.01, "declared (no latency measured)")
    assert student_price(COSTS, 10.0) == (0.01, "declared")


def test_cost_signal_and_min_roi_use_the_quality_adjusted_roi(tmp_path):
    run = _run(tmp_path, {"poor": 0.70}, gate={"min_roi": 0.0})
    roi = ledger(run, {}, 100, {"route": 0.0})
    assert roi[0]["roi"] > 0 > roi[0]["quality_adjusted_roi"]  # raw would pass, quality not
    chosen = choose_cell(run, roi, n_resamples=10)
    sigs = signals(run, chosen, [], roi, vs_chance=[])
    cost = next(s for s in sigs if s["signal"] == "cost")
    assert cost["fires"] and cost["evidence"].startswith("quality-adjusted ROI over 30 days")
    assert "raw ROI" in cost["evidence"] and "not used" in cost["evidence"]
    gate = decide(run, chosen, sigs, roi, [])
    line = next(r for r in gate["reasons"] if r.startswith("roi:"))
    assert line.startswith("roi: quality-adjusted ROI -") and "below" in line
    assert gate["decision"] == "STOP"


def test_existing_costs_validate_unchanged_and_measured_needs_a_gpu_price():
    assert CostSpec.model_validate(COSTS).student_price_from == "declared"
    with pytest.raises(ValidationError, match="gpu_hour must be declared"):
        CostSpec.model_validate({"student_price_from": "measured"})
