"""Calibration: ECE by hand, Brier and NLL against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, log_loss

from harness.evaluate.calibration import (
    calibration,
    ece_equal_mass,
    ece_equal_width,
    stated_confidence_calibration,
)


def test_perfectly_calibrated_bins_have_zero_ece():
    conf = np.array([0.8] * 10)
    correct = np.array([1] * 8 + [0] * 2)
    ece, bins = ece_equal_width(conf, correct, 15)
    assert ece == pytest.approx(0.0)
    assert sum(b["count"] for b in bins) == 10


def test_ece_hand_computed():
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 0, 1, 1])
    # bins: 0.9 -> acc 0.5 (|0.4|, weight 1/2); 0.6 -> acc 1 (|0.4|, weight 1/2)
    assert ece_equal_width(conf, correct, 15)[0] == pytest.approx(0.4)
    assert ece_equal_mass(conf, correct, 2)[0] == pytest.approx(0.4)


def test_calibration_against_sklearn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 3))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 3, size=400)
    cal = calibration(p, y)
    assert cal["metrics"]["nll"] == pytest.approx(log_loss(y, p, labels=[0, 1, 2]))
    onehot = np.eye(3)[y]
    assert cal["metrics"]["brier"] == pytest.approx(((p - onehot) ** 2).sum(1).mean())
    assert cal["ece_reliable"] is True
    assert calibration(p[:50], y[:50])["ece_reliable"] is False


def test_stated_confidence_matches_sklearn_brier():
    conf = [0.9, 0.8, 0.3, 0.95]
    correct = [1, 0, 0, 1]
    cal = stated_confidence_calibration(conf, correct)
    assert cal["metrics"]["brier"] == pytest.approx(brier_score_loss(correct, conf))
    assert cal["metrics"]["nll"] == pytest.approx(log_loss(correct, conf))
