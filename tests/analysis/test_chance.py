"""Did the student learn anything? Each arm against the best constant answer, with item and seed
noise, three states and the winner's curse handled — checked on students whose truth is known."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.analysis.analyse import analyse
from harness.analysis.chance import (
    ABOVE,
    ALPHA_CHANCE,
    AT,
    BELOW,
    MAX_CANDIDATES,
    NOT_LEARNED,
    UNDECIDED,
    chance_level,
    versus_chance,
)
from harness.analysis.load import CellData, RunData, UnitItems, load_run
from harness.analysis.roi import NOT_PRICED, ledger
from harness.analysis.signals import SignalContext, at_chance
from harness.cli import main
from harness.errors import InputError
from harness.experiment.models import Experiment
from harness.units import get
from tests.helpers.synth import spec_dict, write_run

LABELS = ["billing", "shipping", "technical", "account"]
#: The issue's case: intent routing with 4 labels, escalation as a refusal unit.
UNITS = {"intent": {"kind": "label", "labels": LABELS, "answer_marker": "Answer:"},
         "esc": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"}}
FACTORIAL = [(b, f) for b in ("single", "judged") for f in ("plain", "rationale")]


def exact(p: float, n: int, seed: int = 0) -> np.ndarray:
    """Exactly round(p*n) ones, shuffled."""
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


# -- in-memory runs with known truth ---------------------------------------------------------

def intent_refs(n: int) -> list[str]:
    """Labels in turn: every constant answer (and uniform guessing) scores exactly 0.25."""
    return [LABELS[k % 4] for k in range(n)]


def esc_refs(n: int, share: float) -> list[str]:
    """``share`` of the items must be escalated (the first ones), the rest answered."""
    return ["ESCALATE" if k < round(share * n) else f"REPLY: {k % 7}" for k in range(n)]


def scored(unit: str, answers: list[str], refs: list[str]) -> UnitItems:
    """Per-item parts of ``answers`` as the worker records them."""
    s = get(UNITS[unit]["kind"]).score(UNITS[unit], answers, refs)
    parts = {k: np.asarray(v, dtype=float) for k, v in (s.parts or {}).items()}
    parts["correct"] = np.asarray(s.correct, dtype=float)
    return UnitItems([f"e{k:05d}" for k in range(len(refs))], parts["correct"], parts,
                     [{}] * len(refs))


def accuracy_items(correct: np.ndarray) -> UnitItems:
    """Intent items from 0/1 correctness alone (accuracy needs nothing else; fast)."""
    c = np.asarray(correct, dtype=float)
    return UnitItems([f"e{k:05d}" for k in range(c.size)], c, {"correct": c}, [{}] * c.size)


def memory_run(arm_seeds: dict[str, list[dict[str, UnitItems]]], refs: dict[str, list[str]],
               stop: dict[str, Any] | None = None) -> RunData:
    """A run in memory: arm -> per seed its units' items; ``refs`` per unit (the eval file)."""
    cells = []
    for arm, seeds in arm_seeds.items():
        for s, units in enumerate(seeds):
            axes = {"bucket": arm, "fields": "plain", "scale": 1.0, "seed": s}
            cells.append(CellData(f"{arm}-{s}", f"{arm}/plain/x1/s{s}", axes, False,
                                  None, None, units))  # type: ignore[arg-type]
    spec = spec_dict(list(arm_seeds), ["plain"], [1.0], units={u: UNITS[u] for u in refs},
                     stop={"chance_margin": 0.05, **(stop or {})})
    evals = [{"unit": u, "id": f"e{k:05d}", "reference": r}
             for u, rs in refs.items() for k, r in enumerate(rs)]
    exp = Experiment.model_validate(spec)
    return RunData(None, None, spec, exp, None, None, cells, {}, evals)  # type: ignore[arg-type]


def signal_for(run: RunData, arm: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The at_chance signal with ``arm`` chosen."""
    cell = next(c for c in run.cells if c.axes["bucket"] == arm)
    ctx = SignalContext(run=run, cell=cell, units=list(run.experiment.units), curves=[], roi=[],
                        history=[], vs_chance=rows)
    return dict(at_chance(ctx))


def row(rows: list[dict[str, Any]], arm: str, unit: str) -> dict[str, Any]:
    return next(r for r in rows if r["arm"] == f"{arm}/plain/x1" and r["unit"] == unit)


# -- the chance level ------------------------------------------------------------------------

def test_chance_level_is_the_best_constant_by_score():
    # refusals under half: always refusing scores F1 2p/(1+p) = 0.4615, the majority class 0
    refs = esc_refs(200, 0.3)
    level = chance_level(UNITS["esc"], refs)
    assert level.constant_answer == "ESCALATE"
    assert level.constant == pytest.approx(2 * 0.3 / 1.3) and level.constant_share == 0.3
    assert level.uniform is None
    # the marker is a candidate even when no reference is a refusal (then every constant's
    # F1 is 0, and the more frequent answer is shown)
    assert chance_level(UNITS["esc"], ["REPLY: a"] * 3 + ["REPLY: b"]).constant_answer == \
        "REPLY: a"
    # a tie on score goes to the more frequent, then the first in text order
    assert chance_level(UNITS["esc"], ["ESCALATE", "REPLY: x"]).constant_answer == "ESCALATE"
    # labels: the majority class, uniform guessing beside it
    labels = {"kind": "label", "labels": ["a", "b", "c"], "answer_marker": "A:"}
    level = chance_level(labels, ["a", "a", "b", "c"])
    assert (level.constant_answer, level.constant_share, level.uniform) == ("a", 0.5, 1 / 3)
    assert level.constant == 0.5
    # every label is a candidate (one never seen in the references too), capped
    many = {"kind": "label", "labels": [f"l{i:02d}" for i in range(40)], "answer_marker": "A:"}
    level = chance_level(many, ["l07"] * 3 + [f"l{i:02d}" for i in range(40)])
    assert level.constant_answer == "l07" and level.candidates == MAX_CANDIDATES


# -- known truth: always escalating, perfect, always answering -------------------------------

def test_an_always_escalating_student_has_learned_nothing():
    n = 300
    refs = esc_refs(n, 0.3)
    answers = {"escalates": ["ESCALATE"] * n, "perfect": refs, "answers": ["REPLY: 1"] * n}
    run = memory_run({arm: [{"esc": scored("esc", a, refs)} for _ in range(3)]
                      for arm, a in answers.items()}, {"esc": refs})
    rows = versus_chance(run)
    esc = row(rows, "escalates", "esc")
    # refusal F1 0.46 > 0: a majority-class chance level (0) would call it learned
    assert esc["value"] == pytest.approx(2 * 0.3 / 1.3)
    assert esc["verdict"] == AT and abs(esc["delta"]) < 1e-12
    assert esc["constant_answer"] == "ESCALATE"
    assert row(rows, "perfect", "esc")["verdict"] == ABOVE
    assert row(rows, "answers", "esc")["verdict"] == BELOW
    sig = signal_for(run, "escalates", rows)
    assert sig["state"] == "fires" and sig["fires"] and "at chance" in sig["evidence"]
    assert sig["threshold"] == 0.05
    quiet = signal_for(run, "perfect", rows)
    assert quiet["state"] == "quiet" and not quiet["fires"] and quiet["action"] is None


def test_a_perfect_student_is_above_chance_and_says_what_its_noise_covers():
    n = 200
    refs = {"intent": intent_refs(n), "esc": esc_refs(n, 0.3)}
    one = memory_run({"perfect": [{"intent": accuracy_items(np.ones(n)),
                                   "esc": scored("esc", refs["esc"], refs["esc"])}]}, refs)
    rows = versus_chance(one)
    assert {r["verdict"] for r in rows} == {ABOVE}
    # one seed, no multi-seed arm: the margin covers eval items only, and says so
    assert all("eval items only" in r["covers"] for r in rows)
    sig = signal_for(one, "perfect", rows)
    assert sig["state"] == "quiet" and "eval items only" in sig["evidence"]
    intent = row(rows, "perfect", "intent")
    # no variation at all against uniform guessing: exact, an effect, not "not estimable"
    assert (intent["value"], intent["chance"], intent["lower_bound"]) == (1.0, 0.25, 0.75)
    # 3 seeds: seed noise is covered
    three = memory_run({"perfect": [{"intent": accuracy_items(np.ones(n))}] * 3},
                       {"intent": refs["intent"]})
    assert versus_chance(three)[0]["covers"] == "eval items + training seeds"


# -- known truth: students at chance, over simulated runs ------------------------------------

def test_students_at_chance_fire_in_at_least_98_percent_of_runs():
    """6 arms x 3 seeds, every student guessing (accuracy 0.25 with 4 labels), the gate's arm
    the best of them: ``at_chance`` fires, and never lets one pass as learned beyond the
    Bonferroni bound."""
    rng = np.random.default_rng(20240611)
    n, sims, arms = 1500, 100, 6
    refs = {"intent": intent_refs(n)}
    fires = passed = any_above = 0
    for _ in range(sims):
        run = memory_run({f"b{a}": [{"intent": accuracy_items(rng.random(n) < 0.25)}
                                    for _ in range(3)] for a in range(arms)}, refs)
        rows = versus_chance(run)
        assert {r["arms"] for r in rows} == {arms}
        best = max(rows, key=lambda r: r["value"])  # what the gate chooses: the best mean
        sig = signal_for(run, best["arm"].split("/")[0], rows)
        fires += sig["state"] == "fires"
        passed += sig["state"] == "quiet"
        any_above += any(r["verdict"] == ABOVE for r in rows)
    print(f"at chance: fires in {fires}/{sims}, passes as learned in {passed}/{sims}")
    assert fires >= 0.98 * sims
    # P(any of 6 arms above chance) <= ALPHA_CHANCE = 0.01; 6+ of 100 has p < 0.001 there
    assert any_above <= 5 and passed <= any_above
    assert ALPHA_CHANCE == 0.01


# -- undecided, with the action that decides it ------------------------------------------------

def test_a_small_sample_is_undecided_and_the_action_decides_it():
    # n = 20, accuracy 0.40 against 0.25: neither above chance nor within the margin
    run = memory_run({"small": [{"intent": accuracy_items(exact(0.4, 20))}]},
                     {"intent": intent_refs(20)})
    rows = versus_chance(run)
    r = rows[0]
    assert r["verdict"] == UNDECIDED and r["lower_bound"] < 0 < 0.05 < r["upper_bound"]
    assert r["action"].startswith("add ~") and "eval items to unit intent" in r["action"]
    sig = signal_for(run, "small", rows)
    assert sig["state"] == "undecided" and not sig["fires"] and sig["action"] == r["action"]
    # the prospective calculation holds: the same margin on the named number of items decides
    # (rounded up to whole rounds of the 4 labels: with one label more frequent, the best
    # constant beats uniform guessing and brings its own item noise)
    n1 = int(r["action"].split("-> ")[1].split(")")[0])
    n1 += -n1 % 4
    bigger = memory_run({"small": [{"intent": accuracy_items(exact(0.4, n1))}]},
                        {"intent": intent_refs(n1)})
    assert versus_chance(bigger)[0]["verdict"] == ABOVE


def test_seeds_that_agree_on_the_total_but_not_item_by_item_are_not_exact():
    # three seeds at exactly 8/20 on different items: the seed mean square is 0, yet the
    # students vary item by item. Truth: 60 independent answers at 0.4, SE sqrt(0.24/60) =
    # 0.063, a 95% interval 0.25 wide and a one-sided 1% bound at about 0 (z = 2.37)
    for first in (0, 3, 6):
        run = memory_run({"same": [{"intent": accuracy_items(exact(0.4, 20, i))}
                                   for i in range(first, first + 3)]},
                         {"intent": intent_refs(20)})
        r = versus_chance(run)[0]
        assert r["ci_high"] - r["ci_low"] > 0.2 and r["verdict"] == UNDECIDED


def test_when_the_seeds_disagree_the_action_is_more_seeds():
    # many items, but the three seeds land at 0.30, 0.40 and 0.33: the seed part dominates
    n = 4000
    run = memory_run({"noisy": [{"intent": accuracy_items(exact(p, n, i))}
                                for i, p in enumerate((0.30, 0.40, 0.33))]},
                     {"intent": intent_refs(n)})
    r = versus_chance(run)[0]
    assert r["verdict"] == UNDECIDED and "more seed(s) of arm noisy/plain/x1" in r["action"]


def test_a_margin_below_chance_margin_is_at_chance_and_the_margin_is_declared():
    # 0.27 on 4,000 items, 3 seeds: measurably above guessing, but by less than 0.05
    n = 4000
    arms = {"slight": [{"intent": accuracy_items(exact(0.27, n, i))} for i in range(3)]}
    refs = {"intent": intent_refs(n)}
    assert versus_chance(memory_run(arms, refs))[0]["verdict"] == AT
    # a smaller declared margin: the same student now counts as learned
    r = versus_chance(memory_run(arms, refs, stop={"chance_margin": 0.0}))[0]
    assert r["verdict"] == ABOVE and r["chance_margin"] == 0.0


def test_chance_margin_is_validated_with_its_yaml_path(tiny):
    from harness.checks import load_experiment
    with pytest.raises(InputError) as exc:
        load_experiment(tiny(spec={"stop": {"chance_margin": -0.1}}))
    assert "stop.chance_margin" in exc.value.render(cap=100)


# -- through the whole analysis and gate ----------------------------------------------------

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
    assert sig["fires"] and sig["state"] == "fires"
    reason = next(r for r in gate["reasons"] if r.startswith("at_chance: fires (blocking)"))
    # the unit, the arm's metric, the chance level, the interval, the bounds and the words
    assert "on intent: accuracy 0.245 (mean of 1 seed(s)) vs chance 0.250" in reason
    assert "95% CI" in reason and "uniform guessing 0.250" in reason
    assert "simultaneous over 4 arm(s)" in reason and "chance_margin 0.05" in reason
    # escalation: the best constant is always escalating (half the items: F1 0.667)
    assert "on esc: refusal_f1 0.000" in reason and "always 'ESCALATE': 0.667" in reason
    assert "below chance" in reason
    assert "quality minimums: no minimums declared (gate.min_metric)" in gate["reasons"]
    # every arm x unit is recorded against chance, and none learned anything
    assert len(gate["vs_chance"]) == 4 * 2
    assert {r["verdict"] for r in gate["vs_chance"]} <= set(NOT_LEARNED) | {UNDECIDED}
    assert all(len(r["cell_ids"]) == 1 for r in gate["vs_chance"])


def test_at_chance_blocks_whatever_blocking_signals_say(tmp_path):
    run_dir = factorial(tmp_path, 0.245, 0.0, gate={"blocking_signals": []})
    assert analyse(run_dir, n_boot=100, curve_boot=10)["gate"]["decision"] == "STOP"
    assert main(["gate", str(run_dir)]) == 3


def test_a_learning_run_still_continues(tmp_path):
    out = analyse(factorial(tmp_path, 0.8, 0.8), n_boot=200, curve_boot=10)
    gate = out["gate"]
    assert gate["decision"] == "CONTINUE", gate["reasons"]
    sig = next(s for s in out["signals"] if s["signal"] == "at_chance")
    assert sig["state"] == "quiet" and "above chance" in sig["evidence"]
    assert {r["verdict"] for r in gate["vs_chance"]} == {ABOVE}
    chosen = [r for r in gate["vs_chance"] if gate["cell"]["cell_id"] in r["cell_ids"]]
    assert len(chosen) == 2 and all(r["lower_bound"] > 0 for r in chosen)
    assert gate["reasons"][-1] == "quality minimums: no minimums declared (gate.min_metric)"


def test_only_the_units_that_matter_block(tmp_path):
    # at chance on intent, learning on esc: only esc matters, so the student may go on
    out = analyse(factorial(tmp_path, 0.245, 0.8, stop={"units": ["esc"]}), n_boot=100,
                  curve_boot=10)
    assert out["gate"]["decision"] == "CONTINUE", out["gate"]["reasons"]
    # ... but the record still says intent learned nothing
    assert {r["verdict"] for r in out["gate"]["vs_chance"] if r["unit"] == "intent"} == {AT}


def test_declared_minimums_that_hold_are_listed_with_their_values(tmp_path):
    gate = analyse(factorial(tmp_path, 0.8, 0.8, gate={"min_metric": {"intent": {
        "accuracy": 0.5}}}), n_boot=50, curve_boot=10)["gate"]
    assert gate["reasons"][-1] == "quality minimums met: intent.accuracy = 0.800 >= 0.5"


def test_without_prices_the_ledger_shows_no_money(tmp_path):
    run_dir = factorial(tmp_path, 0.8, 0.8)
    row_ = ledger(load_run(run_dir), {}, 100, {})[0]
    assert row_["priced"] is False and row_["cost_note"] == NOT_PRICED
    for key in ("teacher_generation", "judge", "training", "maintenance", "offline_cost",
                "online_saving", "roi", "break_even_days", "manual_fallback",
                "quality_adjusted_saving", "quality_adjusted_roi"):
        assert row_[key] is None, key
    assert row_["training_hours"] == pytest.approx(0.01) and row_["student_p95_ms"] == 12.0
