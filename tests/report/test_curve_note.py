"""A flat power-law fit through points that fall with scale is said in words, not left to the
eye (the fit models an error that falls with samples, so it cannot follow a falling metric)."""

from __future__ import annotations

from typing import Any

from harness.report.render import _curve_note


def curve(values: list[float], a: float, b: float, gain: float) -> dict[str, Any]:
    return {"metric": "accuracy", "points": [{"value": v} for v in values],
            "fit": {"a": a, "b": b, "next_doubling_gain": gain}}


def test_every_kind_of_flat_fit_through_falling_points_is_named():
    for a, b, gain in [(0.0, -3.0, 0.0), (0.059, 0.0, 0.0), (1e-3, -0.5, 0.0)]:
        note = _curve_note(curve([0.965, 0.935, 0.922], a, b, gain))
        assert "falls with scale (0.96 → 0.92)" in note and "fit is flat" in note


def test_no_note_when_points_rise_or_the_fit_predicts_a_gain():
    assert _curve_note(curve([0.80, 0.85, 0.90], 0.0, -3.0, 0.0)) == ""
    assert _curve_note(curve([0.90, 0.85, 0.88], 2.0, -0.4, 0.02)) == ""
    assert _curve_note({"metric": "accuracy", "points": [{"value": 0.9}, {"value": 0.8}],
                        "fit": None}) == ""
