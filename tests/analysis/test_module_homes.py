"""Arms, training noise and attribution each have their own module; what other modules imported
from ``harness.analysis.attribution`` before the split is still there, the same objects."""

from __future__ import annotations

from harness.analysis import arms, attribution, noise


def test_attribution_reexports_arms_and_noise() -> None:
    assert attribution.arms is arms.arms
    assert attribution.arm_label is arms.arm_label
    assert attribution.ArmKey is arms.ArmKey
    assert attribution.training_noise is noise.training_noise
