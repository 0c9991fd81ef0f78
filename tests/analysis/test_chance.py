"""Students at chance never CONTINUE: each unit's chosen student against chance, with a CI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.analysis.analyse import analyse
from harness.analysis.chance import ABOVE, BELOW, SAME, chance_level
from harness.analysis.load import load_run
from harness.analysis.roi import NOT_PRICED, ledger
from harness.cli import main
from tests.helpers.synth import spec_dict, write_run

#: The issue's case: intent routing with 4 labels, escalation as a refusal unit.
UNITS = {"intent": {"kind": "label", "labels": ["billing", "shipping", "technical", "account"],
                    "answer_marker": "Answer:"},
         "esc": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"}}
FACTORIAL = [(b, f) for b in ("single", "judged") for f in ("plain", "rationale")]


def exact(p: float, n: int, seed: int = 0) -> np.ndarray:
    """Exactly round(p*n) ones, shuffled."""
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def factorial(tmp_path: Path, intent: float, esc: float, **spec_kw: Any) -> Path:
    """A 2 x 2 factorial (buckets x field sets) whose every student scores about the same."""
    spec = spec_dict(["single", "judged"], ["plain", "rationale"], [1.0], units=UNITS, **spec_kw)
    cells = {(b, f, 1.0): {"intent": exact(intent, 400, i), "esc": exact(esc, 400, 10 + i)}
             for i, (b, f) in enumerate(FACTORIAL)}
    return write_run(tmp_path, spec, cells)


def test_students_at_chance_stop_with_the_chance_reason(tmp_path):
    # every student answers at chance: accuracy 0.245 with 4 labels, refusal F1 0.000
    out = analyse(factorial(tmp_path, 0.245, 0.0), n_boot=200, curve_boot=10)
    gate = out["gate"]
    assert gate["decision"] == "STOP" and gate["exit_status"] == 3
    sig = next(s for s in out["signals"] if s["signal"] == "at_chance")
    assert sig["fires"]
    reason = next(r for r in gate["reasons"] if r.startswith("at_chance: fires (blocking)"))
    # the unit, the student's metric, the chance level, the CI and the words
    assert "intent: accuracy 0.245 vs chance 0.250" in reason
    assert "95% CI" in reason and "indistinguishable from chance" in reason
    assert "uniform guessing 0.250" in reason
    assert "esc: refusal_f1 0.000" in reason and "below chance" in reason
    # nothing was declared: never "met"
    assert "quality minimums: no minimums declared (gate.min_metric)" in gate["reasons"]
    assert not any("minimums met" in r for r in gate["reasons"])
    # every cell x unit is recorded against chance, and none learned anything
    assert len(gate["vs_chance"]) == 4 * 2
    assert {r["verdict"] for r in gate["vs_chance"]} <= {SAME, BELOW}


def test_at_chance_blocks_whatever_blocking_signals_say(tmp_path):
    run_dir = factorial(tmp_path, 0.245, 0.0, gate={"blocking_signals": []})
    assert analyse(run_dir, n_boot=100, curve_boot=10)["gate"]["decision"] == "STOP"
    assert main(["gate", str(run_dir)]) == 3


def test_a_learning_run_still_continues(tmp_path, capsys):
    out = analyse(factorial(tmp_path, 0.8, 0.8), n_boot=200, curve_boot=10)
    gate = out["gate"]
    assert gate["decision"] == "CONTINUE", gate["reasons"]
    sig = next(s for s in out["signals"] if s["signal"] == "at_chance")
    assert not sig["fires"] and "above chance" in sig["evidence"]
    assert {r["verdict"] for r in gate["vs_chance"]} == {ABOVE}
    chosen = [r for r in gate["vs_chance"] if r["cell_id"] == gate["cell"]["cell_id"]]
    assert all(r["ci_low"] > 0 for r in chosen)
    assert gate["reasons"][-1] == "quality minimums: no minimums declared (gate.min_metric)"


def test_only_the_units_that_matter_block(tmp_path):
    # at chance on intent, learning on esc: only esc matters, so the student may go on
    out = analyse(factorial(tmp_path, 0.245, 0.8, stop={"units": ["esc"]}), n_boot=100,
                  curve_boot=10)
    assert out["gate"]["decision"] == "CONTINUE", out["gate"]["reasons"]
    # ... but the record still says intent learned nothing
    assert {r["verdict"] for r in out["gate"]["vs_chance"] if r["unit"] == "intent"} == {SAME}


def test_declared_minimums_that_hold_are_listed_with_their_values(tmp_path):
    gate = analyse(factorial(tmp_path, 0.8, 0.8, gate={"min_metric": {"intent": {
        "accuracy": 0.5}}}), n_boot=50, curve_boot=10)["gate"]
    assert gate["reasons"][-1] == "quality minimums met: intent.accuracy = 0.800 >= 0.5"


def test_chance_levels():
    labels = {"kind": "label", "labels": ["a", "b", "c"], "answer_marker": "A:"}
    level = chance_level(labels, ["a", "a", "b", "c"])
    assert (level.constant_answer, level.constant_share, level.uniform) == ("a", 0.5, 1 / 3)
    # refusal: answerable replies are one class, so the majority answers (F1 0)
    refusal = {"kind": "refusal", "marker": "ESC", "answer_marker": "A:"}
    level = chance_level(refusal, ["ESC", "ESC", "R: x", "R: y", "R: z"])
    assert level.constant_answer.startswith("R: ") and level.constant_share == 0.6
    assert level.uniform is None
    # a tie goes to the constant that scores higher (always refusing: F1 2/3)
    assert chance_level(refusal, ["ESC", "R: x"]).constant_answer == "ESC"


def test_without_prices_the_ledger_shows_no_money(tmp_path):
    run_dir = factorial(tmp_path, 0.8, 0.8)
    row = ledger(load_run(run_dir), {}, 100, {})[0]
    assert row["priced"] is False and row["cost_note"] == NOT_PRICED
    for key in ("teacher_generation", "judge", "training", "maintenance", "offline_cost",
                "online_saving", "roi", "break_even_days", "manual_fallback",
                "quality_adjusted_saving", "quality_adjusted_roi"):
        assert row[key] is None, key
    assert row["training_hours"] == pytest.approx(0.01) and row["student_p95_ms"] == 12.0
