"""ROI that counts quality: each cell's own student price and fallback rate, student and teacher
errors on the same metric, and the cost signal and ``gate.min_roi`` decided on the arm's
interval (fires / quiet / undecided with the action that would decide)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from harness.analysis.analyse import _teacher_error
from harness.analysis.fallback import from_row, rate_bounds
from harness.analysis.gate import choose_cell, decide, signals
from harness.analysis.load import RunData, UnitItems, load_run
from harness.analysis.roi import RoiEstimate, ledger, roi_verdict, student_price
from harness.analysis.signals import SignalContext, cost
from harness.experiment.models import CostSpec
from harness.units import get
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
    assert student_price(CostSpec.model_validate(costs), None) == (
        0.01, "declared (no latency measured)")
    assert student_price(CostSpec.model_validate(COSTS), 10.0) == (0.01, "declared")


def test_cost_signal_and_min_roi_use_the_quality_adjusted_roi(tmp_path):
    run = _run(tmp_path, {"poor": 0.70}, gate={"min_roi": 0.0})
    roi = ledger(run, {}, 100, {"route": 0.0})
    assert roi[0]["roi"] > 0 > roi[0]["quality_adjusted_roi"]  # raw would pass, quality not
    chosen = choose_cell(run, n_resamples=10)
    sigs = signals(run, chosen, [], roi, vs_chance=[])
    cost = next(s for s in sigs if s["signal"] == "cost")
    assert cost["fires"] and cost["evidence"].startswith("quality-adjusted ROI over 30 days")
    assert "raw ROI" in cost["evidence"] and "not used" in cost["evidence"]
    gate = decide(run, chosen, sigs, roi, [])
    line = next(r for r in gate["reasons"]
                if "quality-adjusted ROI" in r and not r.startswith("cost:"))
    assert "below 0 over the whole interval" in line and "raw ROI" in line
    assert gate["decision"] == "STOP"


def test_existing_costs_validate_unchanged_and_measured_needs_a_gpu_price():
    assert CostSpec.model_validate(COSTS).student_price_from == "declared"
    with pytest.raises(ValidationError, match="gpu_hour must be declared"):
        CostSpec.model_validate({"student_price_from": "measured"})


# -- the same metric for student and teacher; verdicts on the arm's interval ----------------------

FIELDS = ["name", "city", "zip"]
JSON_UNIT = {"kind": "json_fields", "fields": FIELDS, "answer_marker": "Answer:"}


def _record(k: int) -> dict[str, str]:
    return {"name": f"n{k}", "city": f"c{k}", "zip": f"{k:05d}"}


def _json_run(root: Path, answers_by_seed: list[list[dict[str, str]]],
              refs: list[dict[str, str]], costs: dict[str, Any]) -> RunData:
    """One arm (base/plain/x1), a seed per answer list, a json_fields unit ``x`` scored by the
    real scorer (the synthetic writer only knows label and refusal answers)."""
    spec = spec_dict(["base"], ["plain"], [1.0], units={"x": JSON_UNIT}, costs=costs)
    n = len(refs)
    run = load_run(write_run(root, spec, {("base", "plain", 1.0, s): {"x": np.ones(n, dtype=int)}
                                          for s in range(len(answers_by_seed))}))
    kind, unit, ref_text = get("json_fields"), spec["units"]["x"], [json.dumps(r) for r in refs]
    for cell, answers in zip(run.cells, answers_by_seed, strict=True):
        scored = kind.score(unit, [json.dumps(a) for a in answers], ref_text)
        parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
        parts["correct"] = np.asarray(scored.correct, dtype=float)
        old = cell.units["x"]
        cell.units["x"] = UnitItems(ids=old.ids, correct=parts["correct"], parts=parts,
                                    tags=old.tags)
        cell.metrics.units["x"]["metrics"] = dict(scored.metrics)
    return run


def _ctx(run: RunData, roi: list[dict[str, Any]]) -> SignalContext:
    return SignalContext(run=run, cell=run.cells[0], units=list(run.experiment.units), curves=[],
                         roi=roi, history=[], vs_chance=[])


def test_json_fields_student_as_good_as_the_teacher_on_field_f1_has_no_fallback(tmp_path):
    # Known truth: student and teacher have the same field F1 (0.8), while their exact match
    # differs a lot (0 vs 2/3): the student omits one field on every record, the teacher gets
    # two records in three exactly right and leaves the third empty. The old ledger compared
    # the student's exact-match error (1.0) with the teacher's field-F1 error (0.2).
    n = 300
    refs = [_record(k) for k in range(n)]
    student = [{"name": r["name"], "city": r["city"]} for r in refs]
    run = _json_run(tmp_path, [student] * 3, refs, COSTS)
    teacher = [r if k % 3 else {} for k, r in enumerate(refs)]
    audit = get("json_fields").score(JSON_UNIT, [json.dumps(a) for a in teacher],
                                     [json.dumps(r) for r in refs]).metrics
    assert audit["field_f1"] == pytest.approx(0.8) and audit["exact_match"] == pytest.approx(2 / 3)
    assert run.cells[0].metrics.units["x"]["metrics"]["exact_match"] == 0.0
    run.teacher_audit = {"x": {"t": {"metrics": audit}}}
    teacher_error = _teacher_error(run)
    assert teacher_error == {"x": pytest.approx(0.2)}

    rows = ledger(run, {}, 100, teacher_error)
    row = rows[0]
    assert row["fallback_metric"] == {"x": "field_f1"}
    assert row["fallback_source"] == {"x": "items"}
    assert row["arm"] == "base/plain/x1" and row["arm_seeds"] == 3
    assert row["fallback_rate"] == pytest.approx(0.0, abs=1e-12)
    assert row["fallback_rate_ci"] == pytest.approx([0.0, 0.0], abs=1e-12)
    # on exact match the fallback would have been 0.8, and the ROI negative: a spurious STOP
    spurious = RoiEstimate.from_costs(CostSpec.model_validate(COSTS), row["offline_cost"],
                                      fallback_rate=0.8)
    assert spurious.quality_adjusted_roi < 0 < row["quality_adjusted_roi"]
    state, evidence, action = roi_verdict(row, 0.0)
    assert state == "quiet" and action is None
    assert "x field_f1" in evidence and "at or above 0 over the whole interval" in evidence
    sig = cost(_ctx(run, rows))
    assert sig is not None and sig["state"] == "quiet" and not sig["fires"]


def test_a_metric_not_recomputable_from_parts_is_read_from_metrics_json(tmp_path, monkeypatch):
    # refusal's error metric (decision accuracy) is recomputed from its items; a kind whose
    # error metric is not (simulated here by taking that away): the ledger takes the recorded
    # value, says so, and gives that unit no interval
    spec = spec_dict(["base"], ["plain"], [1.0], units={"esc": UNITS["esc"]}, costs=COSTS)
    run = load_run(write_run(tmp_path, spec, {("base", "plain", 1.0): {"esc": exact(0.8, 200)}}))
    (row,) = ledger(run, {}, 100, {"esc": 0.05})
    assert row["fallback_source"] == {"esc": "items"}
    assert row["fallback_rate"] == pytest.approx(0.15)
    kind = type(get("refusal"))
    original = kind.metric_from_sums

    def no_accuracy(self, metric, sums, n):  # type: ignore[no-untyped-def]
        if metric == "accuracy":
            raise KeyError(metric)
        return original(self, metric, sums, n)

    monkeypatch.setattr(kind, "metric_from_sums", no_accuracy)
    (row,) = ledger(run, {}, 100, {"esc": 0.05})
    assert row["fallback_metric"] == {"esc": "accuracy"}
    assert row["fallback_source"] == {"esc": "metrics.json"}
    assert row["fallback_rate"] == pytest.approx(0.15)
    assert row["fallback_rate_ci"] == pytest.approx([0.15, 0.15])
    assert "esc accuracy (metrics.json, no interval)" in roi_verdict(row, 0.0)[1]


def test_a_clearly_worse_student_has_its_whole_roi_interval_below_the_threshold(tmp_path):
    # 3 seeds at accuracy 0.70 against a teacher that errs 5%: the fallback rate (0.25) is far
    # above the break-even rate (~0.073 with these prices), so the whole interval is below 0.
    spec = spec_dict(["poor"], ["plain"], [1.0], units={"route": UNITS["route"]}, costs=COSTS)
    cells = {("poor", "plain", 1.0, s): {"route": exact(0.70, 400, s)} for s in range(3)}
    run = load_run(write_run(tmp_path, spec, cells))
    rows = ledger(run, {}, 100, {"route": 0.05})
    row = rows[0]
    lo, hi = row["quality_adjusted_roi_ci"]
    r_lo, r_hi = row["fallback_rate_ci"]
    assert row["arm_fallback_rate"] == pytest.approx(0.25)
    assert r_lo < row["arm_fallback_rate"] < r_hi  # a real interval
    assert row["break_even_fallback_rate"] < r_lo
    assert lo < row["arm_quality_adjusted_roi"] < hi < 0
    # the ROI interval is the fallback interval through the one formula
    est = RoiEstimate.from_costs(CostSpec.model_validate(COSTS), row["offline_cost"],
                                 fallback_rate=r_hi)
    assert lo == pytest.approx(est.quality_adjusted_roi)
    assert row["quality_adjusted_break_even_days_ci"] == [None, None]  # it never pays
    state, evidence, action = roi_verdict(row, 0.0)
    assert state == "fires" and action is None and "below 0 over the whole interval" in evidence
    # a minimum below the interval is met, one inside it is undecided
    assert roi_verdict(row, lo - 1.0)[0] == "quiet"
    assert roi_verdict(row, (lo + hi) / 2)[0] == "undecided"
    sig = cost(_ctx(run, rows))
    assert sig is not None and sig["state"] == "fires" and sig["fires"]


#: Prices under which the break-even fallback rate is 0.1 (the offline cost aside).
BORDER = {**COSTS, "manual_fallback_cost": 0.352}


def _border_row(root: Path, n: int) -> dict[str, Any]:
    """One seed erring 15% on ``n`` items against a perfect teacher (fallback 0.15 > 0.1)."""
    spec = spec_dict(["b"], ["plain"], [1.0], units={"route": UNITS["route"]}, costs=BORDER)
    spec["design"]["noise_seeds"] = []
    run = load_run(write_run(root, spec, {("b", "plain", 1.0): {"route": exact(0.85, n)}}))
    return ledger(run, {}, 100, {"route": 0.0})[0]


def test_a_borderline_student_on_few_items_is_undecided_and_the_action_decides_it(tmp_path):
    row = _border_row(tmp_path / "few", 40)
    assert row["break_even_fallback_rate"] == pytest.approx(0.1, abs=1e-4)
    r_lo, r_hi = row["fallback_rate_ci"]
    assert r_lo < 0.1 < r_hi
    state, evidence, action = roi_verdict(row, 0.0)
    assert state == "undecided" and "the interval straddles 0" in evidence
    assert "eval items only: no seed noise measured" in evidence
    assert action is not None and "below" not in action.split("—")[0]
    m = re.match(r"add ~(\d+) eval items to unit route \(40 -> (\d+)\)", action)
    assert m, action
    more, total = int(m.group(1)), int(m.group(2))
    assert total == 40 + more and "above the break-even fallback rate 10.0%" in action
    # Known truth: the same student (error exactly 15%) on that many items is decided; the
    # count is the prospective minimum, so a tenth of it is not enough.
    enough = math.ceil(total / 20) * 20  # a multiple of 20 keeps the error exactly 0.15
    assert roi_verdict(_border_row(tmp_path / "enough", enough), 0.0)[0] == "fires"
    assert roi_verdict(_border_row(tmp_path / "short", 40 + more // 10 // 20 * 20), 0.0)[0] \
        == "undecided"


def test_when_the_seed_part_dominates_the_action_is_more_seeds(tmp_path):
    # Three seeds far apart (errors 0.05, 0.15, 0.25) on many items: retraining, not the eval
    # set, makes the interval wide, so more items alone cannot decide it.
    spec = spec_dict(["s"], ["plain"], [1.0], units={"route": UNITS["route"]}, costs=BORDER)
    cells = {("s", "plain", 1.0, k): {"route": exact(acc, 2000, k)}
             for k, acc in enumerate((0.95, 0.85, 0.75))}
    row = ledger(load_run(write_run(tmp_path, spec, cells)), {}, 100, {"route": 0.03})[0]
    unit = from_row(row)["route"]
    # retraining proper outweighs what more items would shrink (item part and interaction)
    assert unit.var_seeds - unit.var_interaction > unit.var_items + unit.var_interaction
    assert unit.seed_noise
    state, _, action = roi_verdict(row, 0.0)
    assert state == "undecided" and action is not None
    m = re.match(r"train (\d+) more seed\(s\) of arm s/plain/x1 \(3 -> (\d+)\)", action)
    assert m, action
    k_new = int(m.group(2))
    # prospectively: k_new seeds decide (the interval lies above the break-even rate) and one
    # fewer does not
    threshold = row["break_even_fallback_rate"]
    assert rate_bounds([unit], seeds=k_new / 3)[0] > threshold
    assert rate_bounds([unit], seeds=(k_new - 1) / 3)[0] <= threshold


def test_a_batch_teacher_is_priced_at_its_batch_rate() -> None:
    from harness.analysis.roi import teacher_generation_cost

    usage = {"api": {"prompt_tokens": 2000, "completion_tokens": 1000},
             "own": {"prompt_tokens": 2000, "completion_tokens": 1000}}
    prices = {"price_per_1k_prompt": 1.0, "price_per_1k_completion": 2.0}
    costs = CostSpec.model_validate({"teachers": {
        "api": prices, "own": {**prices, "batch_price_per_1k_prompt": 0.1}}})
    sync = teacher_generation_cost(usage, costs, ["api", "own"])
    assert sync == {"api": 4.0, "own": 4.0}
    # a teacher the costs do not price costs nothing, synchronous or batched
    assert teacher_generation_cost(usage, costs, ["free"], frozenset({"free"})) == {"free": 0.0}
    batch = teacher_generation_cost(usage, costs, ["api", "own"], frozenset({"api", "own"}))
    # half of both prices by default; a declared batch price wins (completion still halved)
    assert batch == {"api": 2.0, "own": 0.2 + 1.0}
