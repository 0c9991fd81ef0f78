"""Arms, training noise and attribution each have their own module; what other modules imported
from ``harness.analysis.attribution`` before the split is still there, the same objects."""

from __future__ import annotations

from harness.analysis import arms, attribution, noise


def test_attribution_reexports_arms_and_noise() -> None:
    assert attribution.arms is arms.arms
    assert attribution.arm_label is arms.arm_label
    assert attribution.ArmKey is arms.ArmKey
    assert attribution.training_noise is noise.training_noise
    assert attribution.noise_status is noise.noise_status


def test_noise_status_reasons() -> None:
    assert noise.noise_status(None, opted_out=True) is None
    assert "several seeds" in str(noise.noise_status(None, opted_out=False))
    assert "degree of freedom" in str(noise.noise_status({"df": 1, "variance": 0.1}, False))
    assert "zero spread" in str(noise.noise_status({"df": 4, "variance": 0.0}, False))
    assert noise.noise_status({"df": 4, "variance": 0.01}, False) is None
