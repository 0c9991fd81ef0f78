"""Slices with intervals: the real-vs-synthetic gap has a paired-by-unit bootstrap CI, and "the
gap does not close with scale" needs >= 3 scale points on a unit the student learned on."""

from __future__ import annotations

import numpy as np

from harness.analysis.analyse import analyse
from harness.analysis.load import load_run
from harness.analysis.slices import REAL, SYNTHETIC, slice_gap, slice_table
from tests.helpers.synth import spec_dict, write_run

N = 400
TAGS = [{"source": "real" if k % 2 else "synthetic"} for k in range(N)]
ROUTE = {"route": {"kind": "label", "labels": ["a", "b"], "answer_marker": "Answer:"}}


def exact(p: float, n: int, seed: int = 0) -> np.ndarray:
    """Exactly round(p*n) ones, shuffled."""
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def split(p_syn: float, p_real: float, seed: int) -> np.ndarray:
    """Correctness with accuracy exactly p_syn on synthetic (even) items and p_real on real
    (odd) ones."""
    out = np.empty(N, dtype=int)
    out[0::2], out[1::2] = exact(p_syn, N // 2, seed), exact(p_real, N // 2, seed + 1)
    return out


def _gap_run(tmp_path, scales: list[float], p_syn: float, p_real: float):
    spec = spec_dict(["judged"], ["plain"], scales, units=ROUTE)
    return write_run(tmp_path, spec, {("judged", "plain", s): {"route": split(p_syn, p_real, i)}
                                      for i, s in enumerate(scales)}, tags=TAGS)


def _signal(out: dict, name: str) -> dict:
    return next(s for s in out["signals"] if s["signal"] == name)


def test_the_gap_has_a_paired_bootstrap_interval(tmp_path):
    run = load_run(_gap_run(tmp_path, [1.0], 0.9, 0.6))
    gap = slice_gap(run, run.cells, "route", n_boot=400)
    assert gap is not None and gap.n_real == gap.n_synthetic == N // 2
    assert abs(gap.gap - 0.3) < 1e-9
    # two independent binomial slices of 200: se ~ sqrt(.09/200 + .24/200) ~ 0.041
    assert 0.2 < gap.ci_low < gap.gap < gap.ci_high < 0.4
    assert 0.12 < gap.ci_high - gap.ci_low < 0.22
    same = slice_gap(run, run.cells, "route", n_boot=400)
    assert same == gap  # deterministic


def test_slice_table_has_every_slice_with_n_and_an_interval(tmp_path):
    run = load_run(_gap_run(tmp_path, [1.0], 0.9, 0.6))
    rows = {r.slice: r for r in slice_table(run, run.cells, n_boot=200)}
    assert list(rows) == ["all", REAL, SYNTHETIC]
    assert rows["all"].n == N and rows[REAL].n == rows[SYNTHETIC].n == N // 2
    assert abs(rows[REAL].value - 0.6) < 1e-9 and abs(rows[SYNTHETIC].value - 0.9) < 1e-9
    assert all(r.ci_low <= r.value <= r.ci_high for r in rows.values())
    # the results table carries the same per-slice values
    res = run.results.filter((run.results["metric"] == "accuracy")
                             & (run.results["slice"] == REAL))
    assert res["value"][0] == rows[REAL].value and res["n"][0] == N // 2


def test_one_scale_point_cannot_tell_whether_the_gap_closes(tmp_path):
    out = analyse(_gap_run(tmp_path, [1.0], 0.9, 0.6), n_boot=50, curve_boot=10)
    sig = _signal(out, "distribution_gap")
    assert not sig["fires"], sig
    assert "cannot tell whether the gap on route closes with scale" in sig["evidence"]
    assert "1 scale point(s)" in sig["evidence"] and "does not close" not in sig["evidence"]


def test_two_scale_points_are_not_enough(tmp_path):
    out = analyse(_gap_run(tmp_path, [0.5, 1.0], 0.9, 0.6), n_boot=50, curve_boot=10)
    sig = _signal(out, "distribution_gap")
    assert not sig["fires"] and "2 scale point(s)" in sig["evidence"], sig


def test_three_scale_points_assert_that_the_gap_does_not_close(tmp_path):
    out = analyse(_gap_run(tmp_path, [0.25, 0.5, 1.0], 0.9, 0.6), n_boot=50, curve_boot=10)
    sig = _signal(out, "distribution_gap")
    assert sig["fires"], sig
    assert "the gap on route does not close with scale" in sig["evidence"]
    assert "[95% CI" in sig["evidence"]


def test_a_unit_at_chance_cannot_tell(tmp_path):
    # 0.55 synthetic vs 0.45 real: overall at chance (0.5) on a two-label unit
    spec = spec_dict(["judged"], ["plain"], [0.25, 0.5, 1.0], units=ROUTE,
                     stop={"max_real_synthetic_gap": 0.05})
    run_dir = write_run(tmp_path, spec, {("judged", "plain", s): {"route": split(0.6, 0.4, i)}
                                         for i, s in enumerate([0.25, 0.5, 1.0])}, tags=TAGS)
    out = analyse(run_dir, n_boot=50, curve_boot=10)
    sig = _signal(out, "distribution_gap")
    assert not sig["fires"], sig
    assert "not above chance" in sig["evidence"] and "does not close" not in sig["evidence"]


def test_a_gap_within_noise_does_not_count(tmp_path):
    out = analyse(_gap_run(tmp_path, [0.25, 0.5, 1.0], 0.82, 0.76), n_boot=50, curve_boot=10)
    sig = _signal(out, "distribution_gap")
    assert not sig["fires"], sig
    assert "no gap above 0.05 with its 95% interval above 0" in sig["evidence"]


def test_a_chosen_arm_without_a_scale_series_reads_the_trend_on_the_base_family(tmp_path):
    # "solo" is the best arm but was trained at one scale only; "judged" has the three scales
    spec = spec_dict(["judged", "solo"], ["plain"], [0.25, 0.5, 1.0], units=ROUTE)
    cells = {("judged", "plain", s): {"route": split(0.9, 0.6, i)}
             for i, s in enumerate([0.25, 0.5, 1.0])}
    cells[("solo", "plain", 1.0)] = {"route": split(0.97, 0.7, 7)}
    out = analyse(write_run(tmp_path, spec, cells, tags=TAGS), n_boot=50, curve_boot=10)
    assert out["gate"]["cell"]["label"].startswith("solo/plain/x1")
    sig = _signal(out, "distribution_gap")
    assert sig["fires"], sig
    assert "solo/plain has 1 scale point(s), so the scale trend is read on judged/plain" in (
        sig["evidence"])
    assert "the gap on route does not close with scale" in sig["evidence"]
