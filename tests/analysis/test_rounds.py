"""Diminishing returns on known truth: learning curves on arm means with seed noise in the band,
rounds compared chosen arm vs chosen arm on shared items, and alpha spent across rounds (issue 21).

Simulated runs are built in memory (as in test_simulation.py): eval items of varying difficulty,
every training run shifting its chance of being right by a seed effect, accuracy a known
function of the training samples ``m``. Rounds that go through ``choose_cell`` are written as
run folders (tests/helpers/synth.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.stats import binomtest

from harness.analysis.curves import fit_curve, learning_curves, power_law
from harness.analysis.load import CellData, RunData, UnitItems, load_run
from harness.analysis.rounds import (
    ALPHA,
    SeedPart,
    narrowing,
    round_alpha,
    round_call,
    round_gain,
)
from harness.analysis.selection import choose_cell
from harness.analysis.signals import SignalContext, diminishing_returns
from harness.experiment.models import Experiment
from tests.helpers.synth import spec_dict, write_run

ROUTE = {"kind": "label", "labels": ["a", "b"], "answer_marker": "Answer:"}
THRESHOLD = 0.01  # stop.min_gain_next_doubling (the default)
SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)  # m = 100 * scale training samples


def _items(correct: np.ndarray) -> UnitItems:
    n = correct.size
    return UnitItems(ids=[f"e{k:04d}" for k in range(n)], correct=correct,
                     parts={"correct": correct.astype(float)}, tags=[{}] * n)


def _spec() -> dict[str, Any]:
    """The in-memory runs' spec (the cells' scales are 1 to 16: the spec's own scale axis is
    not read by the curves, which take the scales from the cells)."""
    return spec_dict(["b"], ["plain"], [1.0], units={"route": ROUTE},
                     stop={"min_gain_next_doubling": THRESHOLD})


def simulate(rng: np.random.Generator, accuracy: Callable[[float], float], n: int,
             seeds: int, sigma: float, scales: tuple[float, ...] = SCALES,
             difficulty: np.ndarray | None = None) -> RunData:
    """One run of arm ``b/plain`` at each scale with ``seeds`` seeds: item ``i`` of seed ``s``
    at ``m`` samples is right with chance ``accuracy(m) + d_i + a_s`` (``a_s ~ N(0, sigma)``)."""
    d = difficulty if difficulty is not None else rng.uniform(-0.05, 0.05, n)
    cells = []
    for scale in scales:
        m = 100 * scale
        for seed in range(seeds):
            p = np.clip(accuracy(m) + d + rng.normal(0, sigma), 0, 1)
            axes = {"bucket": "b", "fields": "plain", "scale": scale, "seed": seed}
            manifest = SimpleNamespace(counts={"unit": {"route": m}})
            cells.append(CellData(f"x{scale:g}s{seed}", f"b/plain/x{scale:g}/s{seed}", axes,
                                  False, manifest, None,  # type: ignore[arg-type]
                                  {"route": _items((rng.random(n) < p).astype(int))}))
    spec = _spec()
    exp = Experiment.model_validate(spec)
    return RunData(None, None, spec, exp, None, None, cells, {}, [])  # type: ignore[arg-type]


def _verdict(run: RunData, n_boot: int = 100, history: list[RunData] | None = None
             ) -> dict[str, Any]:
    top = [c for c in run.cells if c.axes["scale"] == max(c.axes["scale"] for c in run.cells)]
    ctx = SignalContext(run=run, cell=top[0], units=["route"],
                        curves=learning_curves(run, n_boot=n_boot), roi=[],
                        history=list(history or []), vs_chance=[])
    return dict(diminishing_returns(ctx))


def rising(m: float) -> float:
    """Error 4 m^-0.5: 0.40 at 100 samples, 0.10 at 1,600; the next doubling buys 0.029."""
    return 1 - 4 * m ** -0.5


# -- the fit -------------------------------------------------------------------------------------

def test_profile_fit_is_never_worse_than_multistart_curve_fit():
    rng = np.random.default_rng(3)
    m = 100 * np.array(SCALES)
    x = m / m.max()
    for _ in range(25):
        err = np.clip(rng.uniform(0.1, 0.6) * (m / 100) ** rng.uniform(-1.5, 0)
                      + rng.uniform(0, 0.2) + rng.normal(0, 0.02, m.size), 0, 1)
        ours = fit_curve(m, err)
        sse = float(((power_law(m, *ours) - err) ** 2).sum())
        best = math.inf
        for p0 in ((0.1, -0.5, 0.05), (0.5, -1.0, 0.0), (0.01, -0.1, 0.2), (1.0, -2.0, 0.1)):
            p, _ = curve_fit(power_law, x, err, p0=p0, bounds=([0, -3, 0], [np.inf, 0, 1]),
                             maxfev=20000)
            best = min(best, float(((power_law(x, *p) - err) ** 2).sum()))
        assert sse <= best + 1e-9


def test_curve_is_fitted_on_arm_means_with_seed_noise_in_the_band():
    rng = np.random.default_rng(0)
    run = simulate(rng, rising, n=400, seeds=3, sigma=0.03)
    (row,) = learning_curves(run, n_boot=200)
    assert row["seeds"] == [0, 1, 2] and row["scales"] == list(SCALES)
    for p in row["points"]:
        assert p["seeds"] == [0, 1, 2] and p["value"] == pytest.approx(np.mean(p["seed_values"]))
    fit = row["fit"]
    assert fit["seeds_per_point"] == [3] * 5 and fit["n_items"] == 400
    assert fit["seed_variance"] is not None and fit["gain_se_seeds"] > 0
    assert "seed variance" in row["note"]
    # one seed per scale point: no seed variance estimate, items only, and the note says so
    single = simulate(np.random.default_rng(0), rising, n=400, seeds=1, sigma=0.03)
    (row1,) = learning_curves(single, n_boot=200)
    assert row1["fit"]["seed_variance"] is None and row1["fit"]["gain_se_seeds"] == 0.0
    assert "eval items only" in row1["note"]


def test_seeds_that_agree_add_nothing_to_the_band():
    # every seed answers exactly alike: sigma_a^2 is estimated 0, so the band is the items' alone
    rng = np.random.default_rng(1)
    run = simulate(rng, rising, n=400, seeds=1, sigma=0.0)
    clones = [CellData(c.cell_id + f"c{s}", c.label, {**c.axes, "seed": s}, False, c.manifest,
                       c.metrics, c.units) for c in run.cells for s in (1, 2)]
    three = replace(run, cells=run.cells + clones)
    (one,) = learning_curves(run, n_boot=200)
    (both,) = learning_curves(three, n_boot=200)
    assert both["fit"]["seed_variance"] == [0.0] * 5
    assert both["fit"]["gain_ci"] == pytest.approx(one["fit"]["gain_ci"])


# -- the curve's verdict on known truth ------------------------------------------------------------

def test_still_rising_curve_does_not_fire():
    rng = np.random.default_rng(20240601)
    sims = 50
    states = [_verdict(simulate(rng, rising, n=400, seeds=3, sigma=0.02))["state"]
              for _ in range(sims)]
    fired = states.count("fires")
    print(f"rising curve: fires {fired}/{sims}, quiet {states.count('quiet')}/{sims}")
    assert fired / sims <= 0.10


def test_flat_curve_with_plenty_of_data_is_never_called_still_rising():
    rng = np.random.default_rng(20240602)
    sims = 30
    states = [_verdict(simulate(rng, lambda m: 0.8, n=2000, seeds=3, sigma=0.005))["state"]
              for _ in range(sims)]
    print(f"flat curve: fires {states.count('fires')}/{sims}, quiet {states.count('quiet')}/{sims}")
    assert states.count("quiet") / sims <= 0.10
    assert states.count("fires") / sims >= 0.5


def test_undecided_names_the_items_that_decide_it():
    # items-only bands (one seed per point); grow each eval set as its action says (the same
    # items repeated: the item noise shrinks by exactly that factor, the estimate stays) and
    # the verdict is no longer open
    rng = np.random.default_rng(5)
    n, cases, decided = 1000, 0, 0
    while cases < 5:
        run = simulate(rng, lambda m: 0.85 - 2 * m ** -0.5, n=n, seeds=1, sigma=0.0)
        sig = _verdict(run, n_boot=200)
        if sig["state"] != "undecided" or f"({n} -> " not in sig["action"]:
            continue
        cases += 1
        assert "seed" not in sig["action"]  # no seed noise to shrink: items only
        target = int(sig["action"].split(f"({n} -> ")[1].split(")")[0])
        reps = math.ceil(target / n)
        grown = [CellData(c.cell_id, c.label, c.axes, False, c.manifest, None,  # type: ignore
                          {"route": _items(np.tile(c.units["route"].correct, reps))})
                 for c in run.cells]
        bigger = replace(run, cells=grown)
        decided += _verdict(bigger, n_boot=200)["state"] != "undecided"
    assert decided == cases


def test_narrowing_reaches_the_target():
    n = 400
    cur, prev = SeedPart(2e-4, 0.1, 3), SeedPart(1e-4, 0.1, 3)

    def var(n2: float, k2: float) -> float:
        return 3e-4 * n / n2 + prev.var(prev.k, n2) + cur.var(k2, n2)

    now = var(n, 3)
    for target in (0.8 * now, 0.5 * now):
        seeds, items, both = narrowing(target, 3e-4, n, cur, prev)
        if seeds is not None:
            assert var(n, seeds) <= target < var(n, seeds - 1)
        if items is not None:
            assert var(items, 3) <= target < var(items - 1, 3)
        assert both is not None and var(n * both, 3 * both) == pytest.approx(target)
    # below what the previous round's arm alone contributes: nothing here can reach it
    assert narrowing(0.9 * prev.var(3, 1e9), 3e-4, n, cur, prev) == (None, None, None)
    # no seed variance for this round's arm: more of its seeds are never the answer
    assert narrowing(0.5 * now, 3e-4, n, None, prev)[0] is None


def test_no_fitted_curve_is_quiet_with_the_reason():
    run = simulate(np.random.default_rng(2), rising, n=200, seeds=1, sigma=0.0,
                   scales=(1.0, 2.0))
    sig = _verdict(run)
    assert sig["state"] == "quiet" and "at least 3" in sig["evidence"]


def test_an_arm_run_at_one_scale_reads_the_base_curve():
    # one-at-a-time: the chosen arm c/plain ran at the largest scale only; the scale axis is
    # the base arm's (b/plain), and the evidence says so
    rng = np.random.default_rng(4)
    run = simulate(rng, lambda m: 0.8, n=2000, seeds=3, sigma=0.005)
    other = simulate(rng, lambda m: 0.85, n=2000, seeds=1, sigma=0.0, scales=(16.0,))
    cell = other.cells[0]
    cell.axes["bucket"] = "c"
    both = replace(run, cells=run.cells + [cell])
    ctx = SignalContext(run=both, cell=cell, units=["route"],
                        curves=learning_curves(both, n_boot=100), roi=[], history=[],
                        vs_chance=[])
    sig = diminishing_returns(ctx)
    assert "c/plain has no fitted learning curve, so the curve is read on b/plain" in \
        sig["evidence"]
    assert sig["state"] == "fires" and sig["per_unit"]["route"]["from"] == "curve"


# -- rounds ----------------------------------------------------------------------------------------

def _round(tmp_path, name: str, arrays: list[np.ndarray], stop: dict[str, Any] | None = None
           ) -> RunData:
    """A round: arm b/plain/x1 with one seed per array (route only)."""
    spec = spec_dict(["b"], ["plain"], [1.0], units={"route": ROUTE},
                     stop={"min_gain_next_doubling": THRESHOLD, **(stop or {})})
    cells = {("b", "plain", 1.0, s): {"route": a} for s, a in enumerate(arrays)}
    return load_run(write_run(tmp_path / name, spec, cells))


def _seeds(rng: np.random.Generator, p: float, d: np.ndarray, k: int, sigma: float
           ) -> list[np.ndarray]:
    return [(rng.random(d.size) < np.clip(p + d + rng.normal(0, sigma), 0, 1)).astype(int)
            for _ in range(k)]


def _round_signal(current: RunData, past: list[RunData]) -> dict[str, Any]:
    chosen = choose_cell(current, n_resamples=1)
    cell = next(c for c in current.cells if c.cell_id == chosen["cell_id"])
    ctx = SignalContext(run=current, cell=cell, units=["route"], curves=[], roi=[],
                        history=past, vs_chance=[])
    return dict(diminishing_returns(ctx))


def test_identical_rounds_gain_nothing_and_stop(tmp_path):
    rng = np.random.default_rng(7)
    base = (rng.random(2000) < 0.8).astype(int)
    # seeds differ only in which few items they flip (item x seed, no seed effect)
    arrays = [np.where(rng.random(2000) < 0.02, 1 - base, base) for _ in range(3)]
    before, after = _round(tmp_path, "r1", arrays), _round(tmp_path, "r2", arrays)
    gain = round_gain(after, choose_cell(after, n_resamples=1), before, "route")
    assert gain.delta == 0.0 and gain.n_shared == 2000
    assert gain.arms == ("b/plain/x1", "b/plain/x1")
    sig = _round_signal(after, [before])
    assert sig["state"] == "fires", sig["evidence"]
    assert sig["per_unit"]["route"] == {"state": "fires", "from": "rounds"}
    assert sig["rounds"]["round"] == 2 and sig["rounds"]["alpha"] == pytest.approx(
        ALPHA * 6 / math.pi ** 2)
    (g,) = sig["rounds"]["gains"]
    assert g["delta"] == 0.0 and g["ci"][0] <= 0.0 <= g["ci"][1]
    assert g["arms"] == {"previous": "b/plain/x1", "current": "b/plain/x1"}


def test_rising_rounds_are_quiet(tmp_path):
    rng = np.random.default_rng(8)
    d = rng.uniform(-0.05, 0.05, 400)
    before = _round(tmp_path, "r1", _seeds(rng, 0.60, d, 3, 0.02))
    after = _round(tmp_path, "r2", _seeds(rng, 0.75, d, 3, 0.02))
    sig = _round_signal(after, [before])
    assert sig["state"] == "quiet", sig["evidence"]
    assert "items + seeds" in sig["evidence"]


def test_rounds_on_different_eval_items_say_so(tmp_path):
    rng = np.random.default_rng(9)
    d = rng.uniform(-0.05, 0.05, 600)
    before = _round(tmp_path, "r1", _seeds(rng, 0.6, d[:400], 3, 0.02))
    after = _round(tmp_path, "r2", _seeds(rng, 0.75, d, 3, 0.02))
    gain = round_gain(after, choose_cell(after, n_resamples=1), before, "route")
    assert gain.n_shared == 400 and "compared on the 400 both share" in gain.text
    # no item in common: the rounds cannot be compared, and the (absent) curve decides
    for cell in before.cells:
        cell.units["route"].ids = ["old" + i for i in cell.units["route"].ids]
    gain = round_gain(after, choose_cell(after, n_resamples=1), before, "route")
    assert gain.delta is None and "share no eval item" in gain.text
    sig = _round_signal(after, [before])
    assert sig["per_unit"]["route"]["from"] == "none" and sig["state"] == "quiet"


def test_alpha_spending_sums_to_alpha_and_tightens():
    assert sum(round_alpha(r) for r in range(2, 200_000)) == pytest.approx(ALPHA, rel=1e-4)
    assert round_alpha(3) == pytest.approx(round_alpha(2) / 4)
    with pytest.raises(ValueError):
        round_alpha(1)


def _tiled(run: RunData, reps: int) -> RunData:
    """The run with every eval item repeated ``reps`` times (item noise / reps, estimate kept)."""
    cells = [CellData(c.cell_id, c.label, c.axes, False, c.manifest, None,  # type: ignore
                      {"route": _items(np.tile(c.units["route"].correct, reps))})
             for c in run.cells]
    return replace(run, cells=cells)


def _chosen(run: RunData) -> dict[str, Any]:
    return {"cell_ids": [c.cell_id for c in run.cells]}


def test_undecided_rounds_name_what_decides_them():
    # One seed per round (items only): repeating every eval item shrinks the difference's
    # variance exactly by the repeats and keeps the estimate, so the items the action names
    # must decide it. (Repeated items are not new items for the seed part: the interaction of
    # a repeated item with a seed repeats too; narrowing's seed arithmetic is checked above.)
    rng = np.random.default_rng(12)
    n = 400
    d = rng.uniform(-0.05, 0.05, n)
    for _ in range(40):
        before = simulate(rng, lambda m: 0.70, n, 1, 0.0, (1.0,), d)
        after = simulate(rng, lambda m: 0.73, n, 1, 0.0, (1.0,), d)
        gain = round_gain(after, _chosen(after), before, "route", _chosen(before))
        call = round_call(gain, THRESHOLD, 2, 1)
        if call.state == "undecided":
            break
    assert call.state == "undecided" and call.action is not None, call
    assert "seed" not in call.action and "both rounds' chosen arms" in call.action
    target = int(call.action.split(f"({n} -> ")[1].split(")")[0])
    reps = math.ceil(target / n)
    bigger = round_gain(_tiled(after, reps), _chosen(after), _tiled(before, reps), "route",
                        _chosen(before))
    assert bigger.delta == pytest.approx(gain.delta)
    assert round_call(bigger, THRESHOLD, 2, 1).state == call.leans


def test_repeated_looks_do_not_inflate_false_stops():
    # A team runs 5 rounds; each round truly gains exactly the minimum, so any futility stop is
    # wrong. Spending alpha keeps the chance of ever stopping wrongly below sum(alpha_r) < ALPHA;
    # testing every look at ALPHA stops wrongly in several times as many sequences. (One seed
    # per round and no seed effect, so the items-only reference distribution is the truth and
    # the check is of the spending, fast.)
    rng = np.random.default_rng(11)
    n, rounds, sims, gain = 400, 5, 300, 0.05
    wrong = naive = 0
    for _ in range(sims):
        d = rng.uniform(-0.1, 0.1, n)
        runs = [simulate(rng, lambda m, r=r: 0.55 + r * gain, n, 1, 0.0, (1.0,), d)
                for r in range(rounds)]
        stops = naive_stops = False
        for r in range(2, rounds + 1):
            g = round_gain(runs[r - 1], _chosen(runs[r - 1]), runs[r - 2], "route",
                           _chosen(runs[r - 2]))
            stops |= round_call(g, gain, r, 1).state == "fires"
            assert g.estimate is not None
            naive_stops |= g.estimate.bound(ALPHA, upper=True) < gain
        wrong += stops
        naive += naive_stops
    spent = binomtest(wrong, sims).proportion_ci(0.95, method="exact")
    every = binomtest(naive, sims).proportion_ci(0.95, method="exact")
    print(f"repeated looks: wrong futility stops {wrong}/{sims} spent [{spent.low:.3f}, "
          f"{spent.high:.3f}], {naive}/{sims} at ALPHA every look [{every.low:.3f}, "
          f"{every.high:.3f}]")
    # Clopper-Pearson: consistent with <= ALPHA (2,000 sequences gave 0.047 against the
    # sum(alpha_2..5) = 0.043 the union bound allows), while looking at ALPHA each time is not
    assert spent.low <= ALPHA < every.low
