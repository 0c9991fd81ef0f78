"""The verdicts' error rates on simulated runs with known truth: the reduced version of
``benchmarks/verdict_calibration.py`` (issue 21, item 5), calling the same scenario functions
with fewer runs.

Simulated runs (:mod:`harness.analysis.simulate`) cross eval items with training seeds: a seed
shifts a student's skill and flips only some items. They go through the real attribution and the
real gate (:func:`harness.analysis.analyse.analyse_run`).

Rates are asserted through exact (Clopper-Pearson) intervals at 99.9 %, on the side a correct
procedure passes on any seed: e.g. the *lower* bound of the family-wise false-positive rate
must not be above 5 % (a procedure whose true rate is 5 % fails that about once in 1,000 seeds),
the interval of power at the reported MDE must reach [0.7, 0.9]. Known-truth extremes are
asserted exactly: a saturated effect (F1 1.0 on every seed vs 0.0 on every seed) is found in every
run, a unit at the ceiling and identical students are never significant and never "not
estimable".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.verdict_calibration import (
    FAMILIES,
    Settings,
    scenario_chance,
    scenario_curves,
    scenario_identical,
    scenario_null,
    scenario_power,
    scenario_saturated,
    scenario_scale_noise,
    share,
)
from harness.analysis.simulate import (
    ArmSpec,
    Design,
    Noise,
    Student,
    draw_answers,
    draw_items,
    null_design,
    simulate_run,
)

#: Level of the intervals the assertions read.
LEVEL = 0.999
#: Smaller than the benchmark's 400 items: the procedures are the same, the runs cheaper.
ITEMS = 150


def _interval(figure: dict[str, Any]) -> tuple[float, float]:
    lo, hi = share(figure["k"], figure["n"], LEVEL)["ci"]
    return float(lo), float(hi)


def test_seeds_flip_some_items_not_all() -> None:
    """The student model: two seeds of one arm disagree on some items (the item x seed
    interaction), far fewer than students that redraw every item would; clones agree on all."""
    rng = np.random.default_rng(1)
    design = null_design(2000)
    answers = draw_answers(design, draw_items(design, rng), rng)
    route = answers[design.baseline]["route"]
    flipped = np.mean([a != b for a, b in zip(route[0], route[1], strict=True)])
    assert 0.05 < flipped < 0.25  # redrawing each item at accuracy 0.55 would flip ~50 %
    clone = Design((ArmSpec("b0", "plain", seeds=2), ArmSpec("b1", "plain", seeds=2,
                                                             clone_of=("b0", "plain", 1.0))),
                   ("b0", "plain", 1.0), n_items=50)
    same = draw_answers(clone, draw_items(clone, rng), rng)
    assert same[("b0", "plain", 1.0)] == same[("b1", "plain", 1.0)]
    with pytest.raises(ValueError, match="accuracy"):
        Noise().skill(1.2, 1.0)


def test_simulated_run_is_complete() -> None:
    """A full simulated run carries what the gate reads (tables, records, eval rows)."""
    design = Design((ArmSpec("b0", "plain", seeds=2, students={"esc": Student(
        behaviour="constant", answer="ESCALATE")}),), ("b0", "plain", 1.0), n_items=30)
    run = simulate_run(design, np.random.default_rng(0))
    assert len(run.cells) == 2 and run.run.experiment == design.name
    assert set(run.results["unit"].unique()) == {"route", "esc"}
    assert {r["unit"] for r in run.eval_rows} == {"route", "esc"}
    esc = run.results.filter((run.results["unit"] == "esc")
                             & (run.results["metric"] == "refusal_recall")
                             & (run.results["slice"] == "all"))
    assert esc["value"].to_list() == [1.0, 1.0]  # always escalating recalls every escalation


def test_null_false_positives_and_power_at_the_reported_mde() -> None:
    s = Settings(runs=50, null_runs=100, n_items=ITEMS, power_at=(1.0,))
    null = scenario_null(s)
    for fam in FAMILIES:
        lo, _ = _interval(null["family_wise_false_positives"][fam])
        assert lo <= 0.05, (fam, null["family_wise_false_positives"][fam])
    assert null["not_estimable"]["contrasts"] == 0
    power = scenario_power(s)["by_multiple"]["1x"]
    lo, hi = _interval(power["power"])
    assert hi >= 0.7 and lo <= 0.9, power["power"]  # the MDE means what it says
    assert power["wrong_sign"]["k"] == 0


def test_saturated_effect_is_found_and_the_ceiling_is_no_difference() -> None:
    fig = scenario_saturated(Settings(runs=10, n_items=ITEMS))
    assert fig["found"]["k"] == fig["runs"]
    assert fig["ceiling_significant"]["k"] == 0
    assert fig["ceiling_not_estimable"]["k"] == 0
    assert fig["not_estimable"]["contrasts"] == 0


def test_identical_students_are_no_difference() -> None:
    fig = scenario_identical(Settings(runs=10, n_items=ITEMS))
    assert fig["significant"]["k"] == 0
    assert fig["not_estimable"]["k"] == 0
    assert fig["all_no_difference"]["k"] == fig["runs"]


def test_scale_dependent_seed_noise_keeps_the_family_wise_rate() -> None:
    fig = scenario_scale_noise(Settings(runs=60, n_items=ITEMS))
    for fam in FAMILIES:  # each family is corrected on its own (Holm within the family)
        lo, _ = _interval(fig["family_wise_false_positives"][fam])
        assert lo <= 0.05, (fam, fig["family_wise_false_positives"][fam])
    assert fig["not_estimable"]["contrasts"] == 0


def test_gate_never_continues_with_students_at_chance() -> None:
    fig = scenario_chance(Settings(runs=12, n_items=ITEMS))
    lo, _ = _interval(fig["decisions"]["CONTINUE"])
    assert lo <= 0.02, fig["decisions"]
    # every arm always escalating on esc is exactly at chance: never CONTINUE
    assert fig["by_case"]["esc"]["CONTINUE"]["k"] == 0


def test_gate_does_not_stop_a_rising_curve() -> None:
    fig = scenario_curves(Settings(runs=6, n_items=ITEMS, curve_shapes=("rising",)))
    lo, _ = _interval(fig["rising"]["stop_at_either_round"])
    assert lo <= 0.10, fig["rising"]
