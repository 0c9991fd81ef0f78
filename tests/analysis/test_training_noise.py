"""Training noise in a run: the seed variance is measured on every multi-seed arm without
counting the item x seed interaction twice, zero spread is an estimate, and only a run with no
multi-seed arm at all is not estimable (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.analysis.attribution import attribution
from harness.analysis.load import load_run
from tests.helpers.synth import spec_dict, write_run


def _arm(p: float, n: int, seed: int) -> np.ndarray:
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def _training_run(difficulty: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """One trained student: its skill offset shifts every item's chance of being right."""
    p = np.clip(difficulty + rng.normal(0, sigma), 0, 1)
    return (rng.random(difficulty.size) < p).astype(int)


def _route(out: dict) -> dict:
    (row,) = [c for c in out["vs_baseline"] if c["unit"] == "route" and c["primary"]]
    return row


def test_attribution_measures_noise_on_the_reference_arm(tmp_path):
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    n = 400
    cells = {("base", "plain", 1.0, 0): {"route": _arm(0.70, n, 0)},
             ("base", "plain", 1.0, 1): {"route": _arm(0.64, n, 1)},
             ("base", "plain", 1.0, 2): {"route": _arm(0.76, n, 2)},
             ("other", "plain", 1.0, 0): {"route": _arm(0.80, n, 3)}}
    out = attribution(load_run(write_run(tmp_path, spec, cells)))
    noise = out["training_noise"]["route"]
    # whole-set spread 0.06; the seeds are independent permutations, so part of that spread is
    # the item x seed interaction (which items flip) and the seed SD proper is smaller
    assert noise["df_seed"] == 2 and noise["naive_variance"] == pytest.approx(0.0036)
    assert 0.04 < noise["sd"] < 0.06
    row = _route(out)
    assert row["test"].startswith("items + seeds") and row["seeds"] == (3, 1)
    assert row["delta"] == pytest.approx(0.10, abs=1e-9)
    assert row["verdict"] == "no evidence" and row["ci_low"] < 0 < row["ci_high"]
    assert "route accuracy SD" in out["training_noise_note"]


def test_attribution_says_when_noise_was_switched_off(tmp_path):
    # An explicit ``noise_seeds: []``: items-only tests, and the note says what they miss.
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    spec["design"]["noise_seeds"] = []
    cells = {("base", "plain", 1.0): {"route": _arm(0.70, 400, 0)},
             ("other", "plain", 1.0): {"route": _arm(0.80, 400, 3)}}
    out = attribution(load_run(write_run(tmp_path, spec, cells)))
    assert out["training_noise"] == {}
    assert "switched off" in out["training_noise_note"]
    row = _route(out)
    assert row["test"] == "mcnemar_exact" and row["verdict"] == "better"
    assert row["covers"].startswith("items only (training noise switched off")


def test_missing_noise_seeds_make_every_contrast_not_estimable(tmp_path):
    # The default design retrains the baseline, but those cells are missing: there is no
    # variance estimate for retraining at all, and the reason says what would give one.
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    assert spec["design"]["noise_seeds"] == [1, 2]
    cells = {("base", "plain", 1.0): {"route": _arm(0.70, 400, 0)},
             ("other", "plain", 1.0): {"route": _arm(0.80, 400, 3)}}
    out = attribution(load_run(write_run(tmp_path, spec, cells)))
    rows = [c for c in out["vs_baseline"] if c["unit"] == "route"]
    assert rows and all(c["verdict"].startswith("not estimable: no arm has two finished seeds")
                        and "noise_seeds" in c["verdict"] for c in rows)
    assert all(c["p_adjusted"] is None for c in rows)
    assert out["families"]["vs_baseline"]["size"] == 0
    assert "could not be measured" in out["training_noise_note"]


def test_two_seeds_or_zero_spread_are_estimates(tmp_path):
    # One extra seed (1 df) is an estimate: a wide interval, not "not estimable".
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    n = 400
    two = {("base", "plain", 1.0, 0): {"route": _arm(0.70, n, 0)},
           ("base", "plain", 1.0, 1): {"route": _arm(0.64, n, 1)},
           ("other", "plain", 1.0, 0): {"route": _arm(0.95, n, 3)}}
    row = _route(attribution(load_run(write_run(tmp_path / "a", spec, two))))
    assert row["not_estimable"] is None and row["seeds"] == (2, 1)
    # A baseline at the ceiling on every seed: zero spread is an estimate of no retraining
    # noise, and a worse arm is found.
    ceiling = {("base", "plain", 1.0, s): {"route": np.ones(n, dtype=int)} for s in range(3)}
    ceiling[("other", "plain", 1.0, 0)] = {"route": _arm(0.5, n, 3)}
    out = attribution(load_run(write_run(tmp_path / "b", spec, ceiling)))
    row = _route(out)
    assert out["training_noise"]["route"]["variance"] == 0.0
    assert row["verdict"] == "worse" and row["delta"] == pytest.approx(-0.5)


def test_every_seed_at_one_against_every_seed_at_zero_is_the_clearest_effect(tmp_path):
    # The regression of issue 21: 1.000 on every seed vs 0.000 on every seed was "not
    # estimable: zero spread". It is an exact difference of 1 with p = 2^(1-n).
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    n = 200
    cells = {("base", "plain", 1.0, s): {"route": np.zeros(n, dtype=int)} for s in range(3)}
    cells.update({("other", "plain", 1.0, s): {"route": np.ones(n, dtype=int)} for s in range(3)})
    out = attribution(load_run(write_run(tmp_path, spec, cells)))
    row = _route(out)
    assert row["delta"] == 1.0 and row["ci_low"] == row["ci_high"] == 1.0
    assert row["verdict"] == "better" and row["p"] == pytest.approx(2.0 ** (1 - n))
    assert row["test"].startswith("exact sign-flip")


def test_identical_students_are_no_difference(tmp_path):
    # Clone arms: every seed of every arm gives the same answers. No difference, never
    # "not estimable", never significant.
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    same = _arm(0.7, 300, 5)
    cells = {(b, "plain", 1.0, s): {"route": same} for b in ("base", "other") for s in range(3)}
    out = attribution(load_run(write_run(tmp_path, spec, cells)))
    rows = [c for c in out["vs_baseline"] if c["unit"] == "route"]
    assert rows and all(c["verdict"].startswith("no difference") for c in rows)
    assert all(c["not_estimable"] is None and c["p"] == 1.0 for c in rows)


def test_seeds_of_one_arm_are_never_called_different(tmp_path):
    # Every arm trained 3 times from one true quality; arms are compared as arms (mean over
    # seeds) against item + seed noise, so seed-to-seed differences give no verdict.
    rng = np.random.default_rng(3)
    spec = spec_dict(["base", "other"], ["plain"], [1.0])
    n, sigma = 400, 0.05
    difficulty = rng.uniform(0.4, 0.9, n)
    cells = {(b, "plain", 1.0, s): {"route": _training_run(difficulty, sigma, rng)}
             for b in ("base", "other") for s in range(3)}
    out = attribution(load_run(write_run(tmp_path, spec, cells)))
    rows = [c for c in out["vs_baseline"] if c["unit"] == "route"]
    assert rows and all(c["seeds"] == (3, 3) and c["verdict"] == "no evidence" for c in rows)
