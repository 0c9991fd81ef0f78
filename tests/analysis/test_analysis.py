"""The analysis is honest: planted effects are found, null effects are not, curves and gaps
lead to the right decision, and the ROI ledger matches a hand computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.analysis.analyse import analyse
from harness.analysis.attribution import attribution
from harness.analysis.load import load_run
from harness.analysis.roi import RoiEstimate, ledger
from harness.cli import main
from harness.errors import InputError
from tests.helpers.synth import spec_dict, write_run


@pytest.fixture
def synth_run(tmp_path):
    """A writer of synthetic run folders under tmp_path (see synth.py)."""
    return lambda *args, **kw: write_run(tmp_path, *args, **kw)


def bern(p: float, n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(int)


def exact(p: float, n: int, seed: int = 0) -> np.ndarray:
    """Exactly round(p*n) ones, shuffled: a metric value without sampling noise."""
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def test_planted_effect_is_found_and_attributed(synth_run):
    spec = spec_dict(["single", "judged"], ["plain", "rationale"], [1.0])
    spec["fields"]["rationale"]["rationale"] = True
    spec["design"]["noise_seeds"] = []  # items-only tests (training noise: test_training_noise)
    n = 400
    run_dir = synth_run(spec, {
        ("single", "plain", 1.0): {"route": bern(0.6, n, 1), "esc": bern(0.7, n, 2)},
        ("judged", "plain", 1.0): {"route": bern(0.85, n, 3), "esc": bern(0.7, n, 4)},
        ("single", "rationale", 1.0): {"route": bern(0.6, n, 5), "esc": bern(0.9, n, 6)},
    })
    att = attribution(load_run(run_dir), "holm", n_boot=300)
    # primaries here; the other decision metrics are tested in test_attribution_metrics.py
    got = {(c["arm"], c["unit"]): c for c in att["vs_baseline"] if c["primary"]}
    assert got[("judged/plain/x1", "route")]["verdict"] == "better"
    assert got[("judged/plain/x1", "route")]["test"] == "mcnemar_exact"
    assert got[("judged/plain/x1", "esc")]["verdict"] == "no evidence"
    assert got[("judged/plain/x1", "esc")]["mde"] > 0
    assert got[("single/rationale/x1", "route")]["verdict"] == "no evidence"
    buckets = {(c["arm"], c["unit"]): c["verdict"] for c in att["bucket_effects"]
               if c["primary"]}
    assert buckets == {("judged/plain/x1", "route"): "better", ("judged/plain/x1", "esc"):
                       "no evidence"}
    keep = {(r["fields"], r["unit"]): r["verdict"] for r in att["fields_worth_keeping"]
            if r["metric"] in ("accuracy", "refusal_f1")}
    assert keep[("rationale", "esc")] == "keep (removing hurts)"
    assert keep[("rationale", "route")] == "no evidence"
    d = got[("judged/plain/x1", "route")]
    assert d["ci_low"] <= d["delta"] <= d["ci_high"] and d["ci_low"] > 0


def test_family_wise_false_positives_stay_below_five_percent(synth_run, tmp_path):
    spec = spec_dict(["b0", "b1", "b2", "b3", "b4"], ["plain"], [1.0])
    spec["design"]["noise_seeds"] = []  # items-only tests (with seeds: test_simulation.py)
    hits = 0
    sims = 200
    for sim in range(sims):
        cells = {(f"b{k}", "plain", 1.0): {"route": bern(0.7, 200, 1000 * sim + k)}
                 for k in range(5)}
        run_dir = write_run(tmp_path / f"s{sim}", spec, cells)
        att = attribution(load_run(run_dir), "holm", n_boot=20)
        hits += any(c["verdict"] != "no evidence" for c in att["vs_baseline"])
    assert hits / sims <= 0.05


def curve_run(synth_run, values: list[float], n: int = 2000):
    # a team that stops when the next doubling cannot buy 3 points
    spec = spec_dict(["judged"], ["plain"], [0.25, 0.5, 1.0],
                     costs={"teacher_price_per_1k": 0.06, "student_price_per_1k": 0.01},
                     stop={"min_gain_next_doubling": 0.03})
    cells = {("judged", "plain", s): {"route": exact(v, n, i), "esc": exact(v, n, 10 + i)}
             for i, (s, v) in enumerate(zip([0.25, 0.5, 1.0], values, strict=True))}
    return synth_run(spec, cells)


def test_saturating_curve_stops(synth_run):
    flat = analyse(curve_run(synth_run, [0.80, 0.84, 0.85]), n_boot=50)
    sig = {s["signal"]: s for s in flat["signals"]}
    assert sig["diminishing_returns"]["fires"], sig["diminishing_returns"]
    assert flat["gate"]["decision"] == "STOP"
    fit = flat["learning_curves"][0]["fit"]
    assert fit is not None and fit["gain_ci"][1] < 0.03


def test_rising_curve_continues(synth_run):
    rising = analyse(curve_run(synth_run, [0.55, 0.70, 0.82]), n_boot=50)
    sig = {s["signal"]: s for s in rising["signals"]}
    assert not sig["diminishing_returns"]["fires"], sig["diminishing_returns"]
    assert rising["gate"]["decision"] == "CONTINUE"
    assert rising["learning_curves"][0]["fit"]["next_doubling_gain"] > 0.02


def test_fewer_than_three_points_give_no_fit(synth_run):
    spec = spec_dict(["judged"], ["plain"], [0.5, 1.0])
    run_dir = synth_run(spec, {("judged", "plain", s): {"route": exact(v, 400)}
                               for s, v in ((0.5, 0.6), (1.0, 0.8))})
    curves = analyse(run_dir, n_boot=20)["learning_curves"]
    assert curves[0]["fit"] is None and "at least 3" in curves[0]["note"]


def test_persistent_real_gap_shifts_to_real_data(synth_run):
    n = 400
    tags = [{"source": "real" if k % 2 else "synthetic"} for k in range(n)]
    spec = spec_dict(["judged"], ["plain"], [0.25, 0.5, 1.0])

    def arr(p_syn: float, p_real: float, seed: int) -> np.ndarray:
        a = exact(p_syn, n, seed)
        b = exact(p_real, n, seed + 1)
        return np.where(np.arange(n) % 2 == 1, b, a)

    run_dir = synth_run(spec, {("judged", "plain", s): {"route": arr(0.6 + 0.3 * s, 0.55, i),
                                                        "esc": arr(0.6 + 0.3 * s, 0.55, 9 + i)}
                               for i, s in enumerate([0.25, 0.5, 1.0])}, tags=tags)
    out = analyse(run_dir, n_boot=50)
    sig = {s["signal"]: s for s in out["signals"]}
    assert sig["distribution_gap"]["fires"], sig["distribution_gap"]
    assert out["gate"]["decision"] == "SHIFT_TO_REAL_DATA"


def test_roi_matches_the_estimator_by_hand(synth_run):
    # Listing 16-3's example: 20 qps, 0.06 vs 0.01 per 1k tokens, 800 tokens, 30 days, 2000 offline
    requests = 20 * 86400 * 30
    saved = requests * 0.8 * (0.06 - 0.01)
    assert RoiEstimate(qps=20, teacher_price_per_1k=0.06, student_price_per_1k=0.01,
                       avg_tokens=800, days=30, offline_cost=2000).roi == pytest.approx(
        (saved - 2000) / 2000, abs=1e-9)
    costs = {"teachers": {"t": {"price_per_1k_prompt": 0.01, "price_per_1k_completion": 0.03}},
             "judge_cost_per_item": 0.002, "gpu_hour": 2.5, "maintenance_per_month": 50,
             "teacher_price_per_1k": 0.06, "student_price_per_1k": 0.01,
             "manual_fallback_cost": 0.5, "traffic": {"qps": 20, "avg_tokens": 800, "days": 30}}
    spec = spec_dict(["judged"], ["plain"], [1.0], costs=costs)
    run = load_run(synth_run(spec, {("judged", "plain", 1.0): {"route": exact(0.9, 100)}}))
    row = ledger(run, {"t": {"prompt_tokens": 100_000, "completion_tokens": 50_000}}, 1000,
                 {"route": 0.05})[0]
    generation = 100 * 0.01 + 50 * 0.03            # 2.50
    judge = 1000 * 0.002                           # 2.00 (judge_winner bucket)
    training = 36.0 / 3600 * 2.5                   # 0.025
    maintenance = 50.0                             # 30 days
    offline = generation + judge + training + maintenance
    assert offline == pytest.approx(54.525)
    assert row["offline_cost"] == pytest.approx(offline, abs=0.005)  # to the cent
    assert row["online_saving"] == pytest.approx(saved, abs=0.005)
    assert row["roi"] == pytest.approx((saved - offline) / offline)
    assert row["break_even_days"] == pytest.approx(offline / (saved / 30))
    # the student errs 0.10, the best teacher 0.05: 5% of requests fall back to a person
    assert row["manual_fallback"] == pytest.approx(requests * (0.10 - 0.05) * 0.5)
    # ... and go back to the teacher at the teacher's price: 5% of the tokens at 0.06 per 1k
    assert row["fallback_rate"] == pytest.approx(0.05)
    assert row["teacher_fallback"] == pytest.approx(requests * 0.05 * 0.8 * 0.06)
    assert row["quality_adjusted_saving"] == pytest.approx(
        saved - row["manual_fallback"] - row["teacher_fallback"])
    assert row["quality_adjusted_roi"] == pytest.approx(
        (row["quality_adjusted_saving"] - offline) / offline)


def test_without_prices_there_is_no_roi(synth_run):
    # Nothing priced: every cost and saving is 0, and "ROI 0.00" would read as a checked
    # break-even; the ledger, the cost signal and the gate say "not assessed" instead.
    spec = spec_dict(["judged"], ["plain"], [1.0])
    run_dir = synth_run(spec, {("judged", "plain", 1.0): {"route": exact(0.9, 100)}})
    row = ledger(load_run(run_dir), {}, 100, {})[0]
    assert row["priced"] is False and row["roi"] is None and row["break_even_days"] is None
    out = analyse(run_dir)
    cost = next(s for s in out["signals"] if s["signal"] == "cost")
    assert not cost["fires"] and cost["evidence"].startswith("not assessed")
    priced = {**spec_dict(["judged"], ["plain"], [1.0], costs={"gpu_hour": 1.0}),
              "name": "synth_priced"}
    cells = {("judged", "plain", 1.0): {"route": exact(0.9, 100)}}
    row = ledger(load_run(synth_run(priced, cells)), {}, 100, {})[0]
    assert row["priced"] is True and row["roi"] == pytest.approx(-1.0)


def test_gate_cli_exit_codes_and_json(synth_run, tmp_path, capsys):
    rising = curve_run(synth_run, [0.55, 0.70, 0.82])
    assert main(["gate", str(rising)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "DECISION: CONTINUE"
    assert main(["gate", str(rising), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "CONTINUE"
    assert json.loads((rising / "analysis.json").read_text())["gate"]["decision"] == "CONTINUE"
    assert main(["gate", str(tmp_path / "nope")]) == 2
    (rising / "results.parquet").write_bytes(b"not parquet")
    assert main(["gate", str(rising)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_history_of_another_experiment_is_refused(synth_run, tmp_path, capsys):
    a = curve_run(synth_run, [0.55, 0.70, 0.82])
    other = spec_dict(["judged"], ["plain"], [1.0])
    other["name"] = "other"
    b = write_run(tmp_path / "o", other, {("judged", "plain", 1.0): {"route": exact(0.8, 100)}})
    assert main(["gate", str(a), "--history", str(b)]) == 2
    assert "not 'synth'" in capsys.readouterr().err


def test_the_recorded_spec_is_read_as_the_typed_experiment(synth_run, capsys):
    run_dir = curve_run(synth_run, [0.55, 0.70, 0.82])
    run = load_run(run_dir)
    # validated back from run.json: its data paths (s.jsonl) need not exist where it is analysed
    assert not Path(run.experiment.data.samples).exists()
    assert run.experiment.model_dump(mode="json") == run.spec
    record = json.loads((run_dir / "run.json").read_text())
    record["spec"]["gate"]["min_rio"] = 0.0
    record["spec"]["units"]["route"]["kind"] = "nonesuch"
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(InputError) as err:
        load_run(run_dir)
    assert {p.field for p in err.value.problems} == {"spec.gate.min_rio", "spec.units.route"}
    assert main(["gate", str(run_dir)]) == 2
    text = capsys.readouterr().err
    assert "does not validate" in text and "spec.gate.min_rio: unknown key" in text
    assert "unknown kind 'nonesuch'" in text and "Traceback" not in text
