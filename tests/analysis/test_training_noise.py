"""Training noise: single-seed contrasts are widened by the measured seed-to-seed variance."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.attribution import attribution
from harness.analysis.load import load_run
from harness.analysis.stats import (
    mcnemar_exact,
    mean_metric,
    paired_bootstrap,
    pooled_seed_variance,
    with_training_noise,
)
from tests.helpers.synth import spec_dict, write_run


def test_pooled_seed_variance():
    var, df = pooled_seed_variance([[0.5, 0.6, 0.7], [0.2], [0.4, 0.4]])
    assert df == 3 and var == pytest.approx(0.02 / 3)
    assert pooled_seed_variance([[0.5], [0.3]]) is None


def test_zero_noise_keeps_a_normal_interval_and_noise_widens_it():
    d = paired_bootstrap([mean_metric([1, 0] * 50)], [mean_metric([1, 1, 1, 0] * 25)], 100,
                         n_boot=500, resample_seeds=False)
    same = with_training_noise(d, 0.0, 2)
    assert same.ci_high - same.ci_low == pytest.approx(2 * 1.959964 * d.se, rel=1e-4)
    wide = with_training_noise(d, 0.01, 2)
    assert wide.ci_high - wide.ci_low > 4 * (same.ci_high - same.ci_low)
    assert wide.p_boot > same.p_boot and wide.mde > same.mde


def _training_run(difficulty: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """One trained student: its skill offset shifts every item's chance of being right."""
    p = np.clip(difficulty + rng.normal(0, sigma), 0, 1)
    return (rng.random(difficulty.size) < p).astype(int)


def test_identical_arms_trained_once_are_not_called_different():
    # Two arms with the same true quality; each training run moves accuracy with SD 0.03.
    # Items-only tests (McNemar) then call them different far more often than 5% of the time;
    # with the reference arm retrained 3 times the widened test stays near its level.
    rng = np.random.default_rng(7)
    n, reps, sigma = 600, 150, 0.03
    naive = adjusted = 0
    for _ in range(reps):
        difficulty = rng.uniform(0.3, 0.9, n)
        ref = [_training_run(difficulty, sigma, rng) for _ in range(3)]
        trt = _training_run(difficulty, sigma, rng)
        naive += mcnemar_exact(ref[0], trt) < 0.05
        var, df = pooled_seed_variance([[r.mean() for r in ref]])  # type: ignore[misc]
        d = paired_bootstrap([mean_metric(r) for r in ref], [mean_metric(trt)], n, n_boot=200,
                             seed=int(rng.integers(1 << 30)), resample_seeds=False)
        adjusted += with_training_noise(d, var * (1 / 3 + 1), df).p_boot < 0.05
    assert naive / reps > 0.2
    assert adjusted / reps < 0.1


def _arm(p: float, n: int, seed: int) -> np.ndarray:
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def test_attribution_measures_noise_on_the_reference_arm(tmp_path):
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    n = 400
    cells = {("base", "plain", 1.0, 0): {"route": _arm(0.70, n, 0)},
             ("base", "plain", 1.0, 1): {"route": _arm(0.64, n, 1)},
             ("base", "plain", 1.0, 2): {"route": _arm(0.76, n, 2)},
             ("other", "plain", 1.0, 0): {"route": _arm(0.80, n, 3)}}
    out = attribution(load_run(write_run(tmp_path, spec, cells)), n_boot=300)
    noise = out["training_noise"]["route"]
    assert noise["df"] == 2 and noise["sd"] == pytest.approx(0.06, abs=1e-9)
    (row,) = [c for c in out["vs_baseline"] if c["unit"] == "route" and c["primary"]]
    assert row["test"] == "bootstrap+seed_noise_t" and row["seeds"] == (3, 1)
    assert row["delta"] == pytest.approx(0.10, abs=1e-9)
    # +0.10 against a seed SD of 0.06 with 2 df: not evidence
    assert row["verdict"] == "no evidence" and row["ci_low"] < 0 < row["ci_high"]
    assert "SD 0.060" in out["training_noise_note"]


def test_attribution_says_when_noise_was_switched_off(tmp_path):
    # An explicit ``noise_seeds: []``: items-only tests, and the note says what they miss.
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    spec["design"]["noise_seeds"] = []
    cells = {("base", "plain", 1.0): {"route": _arm(0.70, 400, 0)},
             ("other", "plain", 1.0): {"route": _arm(0.80, 400, 3)}}
    out = attribution(load_run(write_run(tmp_path, spec, cells)), n_boot=300)
    assert out["training_noise"] == {}
    assert "switched off" in out["training_noise_note"]
    (row,) = [c for c in out["vs_baseline"] if c["unit"] == "route" and c["primary"]]
    assert row["test"] == "mcnemar_exact" and row["verdict"] == "better"
    assert row["covers"].startswith("items only (training noise switched off")


def test_missing_noise_seeds_make_every_contrast_not_estimable(tmp_path):
    # The default design retrains the baseline, but those cells are missing: no silent
    # items-only fallback (this was "better" by McNemar before issue 17).
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    assert spec["design"]["noise_seeds"] == [1, 2]
    cells = {("base", "plain", 1.0): {"route": _arm(0.70, 400, 0)},
             ("other", "plain", 1.0): {"route": _arm(0.80, 400, 3)}}
    out = attribution(load_run(write_run(tmp_path, spec, cells)), n_boot=300)
    rows = [c for c in out["vs_baseline"] if c["unit"] == "route"]
    assert rows and all(c["verdict"].startswith("not estimable: no arm was trained with "
                                                "several seeds") for c in rows)
    assert all(c["p_adjusted"] is None for c in rows)
    assert out["families"]["vs_baseline"]["size"] == 0
    assert "could not be measured" in out["training_noise_note"]


def test_one_noise_seed_or_zero_spread_is_not_estimable(tmp_path):
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    n = 400
    two = {("base", "plain", 1.0, 0): {"route": _arm(0.70, n, 0)},
           ("base", "plain", 1.0, 1): {"route": _arm(0.64, n, 1)},
           ("other", "plain", 1.0, 0): {"route": _arm(0.95, n, 3)}}
    out = attribution(load_run(write_run(tmp_path / "a", spec, two)), n_boot=200)
    (row,) = [c for c in out["vs_baseline"] if c["unit"] == "route" and c["primary"]]
    assert row["verdict"].startswith("not estimable: the seed variance has 1 degree")
    ceiling = {("base", "plain", 1.0, s): {"route": np.ones(n, dtype=int)} for s in range(3)}
    ceiling[("other", "plain", 1.0, 0)] = {"route": _arm(0.5, n, 3)}
    out = attribution(load_run(write_run(tmp_path / "b", spec, ceiling)), n_boot=200)
    (row,) = [c for c in out["vs_baseline"] if c["unit"] == "route" and c["primary"]]
    assert "zero spread" in row["verdict"] and "zero spread" in out["training_noise_note"]


def test_seeds_of_one_arm_are_never_called_different(tmp_path):
    # Every arm trained 3 times from one true quality; arms are compared as arms (mean over
    # seeds) against item + seed noise, so seed-to-seed differences give no verdict.
    rng = np.random.default_rng(3)
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    n, sigma = 400, 0.05
    difficulty = rng.uniform(0.4, 0.9, n)
    cells = {(b, "plain", 1.0, s): {"route": _training_run(difficulty, sigma, rng)}
             for b in ("base", "other") for s in range(3)}
    out = attribution(load_run(write_run(tmp_path, spec, cells)), n_boot=300)
    rows = [c for c in out["vs_baseline"] if c["unit"] == "route"]
    assert rows and all(c["seeds"] == (3, 3) and c["verdict"] == "no evidence" for c in rows)
