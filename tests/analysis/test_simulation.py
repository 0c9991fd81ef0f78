"""Simulated runs with known truth through the attribution analysis (issue 17, item 9).

Each simulation builds a run in memory: eval items of varying difficulty; every training run of
an arm shifts its chance of being right by a seed effect (SD ``SIGMA``); the baseline and one
other arm are trained with 3 seeds, the rest once. Units: ``route`` (label: accuracy, macro-F1)
and ``esc`` (refusal: F1, recall, over-refusal). Null arms differ from the baseline by seed noise
only; the planted arm is better on ``route`` by twice the minimum detectable effect that the
analysis itself reports. Checked over repeated, seeded simulations:

- family-wise false positives (any "better"/"worse" on a null contrast) stay <= 5 %;
- the planted effect is found (power, printed and asserted >= 0.7).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.analysis.attribution import attribution
from harness.analysis.load import CellData, RunData, UnitItems
from harness.units import get

UNITS = {"route": {"kind": "label", "labels": ["a", "b"], "answer_marker": "Answer:"},
         "esc": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"}}
N_ITEMS = 400
SIGMA = 0.02  # seed-to-seed SD of a student's skill
SEEDS = {"base": 3, "null_1": 1, "null_2": 1, "seeded": 3, "planted": 1}


def _unit_items(unit: str, correct: np.ndarray) -> UnitItems:
    """Per-item parts as the worker records them: answers derived from correctness, scored."""
    spec = UNITS[unit]
    if spec["kind"] == "label":
        refs = ["a" if k % 3 else "b" for k in range(correct.size)]
        preds = [r if ok else ("b" if r == "a" else "a")
                 for r, ok in zip(refs, correct, strict=True)]
    else:
        refs = ["ESCALATE" if k % 2 == 0 else "REPLY: ok" for k in range(correct.size)]
        preds = [r if ok else ("REPLY: ok" if r == "ESCALATE" else "ESCALATE")
                 for r, ok in zip(refs, correct, strict=True)]
    scored = get(spec["kind"]).score(spec, preds, refs)
    parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
    parts["correct"] = np.asarray(scored.correct, dtype=float)
    return UnitItems(ids=[f"e{k:04d}" for k in range(correct.size)], correct=parts["correct"],
                     parts=parts, tags=[{}] * correct.size)


def simulate(rng: np.random.Generator, effect: float) -> RunData:
    """One run: ``effect`` added to the planted arm's chance of being right on ``route``."""
    difficulty = {u: rng.uniform(0.45, 0.8, N_ITEMS) for u in UNITS}
    cells = []
    for arm, seeds in SEEDS.items():
        for seed in range(seeds):
            units = {}
            for u in UNITS:
                shift = rng.normal(0, SIGMA) + (effect if arm == "planted" and u == "route"
                                                else 0.0)
                p = np.clip(difficulty[u] + shift, 0, 1)
                units[u] = _unit_items(u, (rng.random(N_ITEMS) < p).astype(int))
            axes = {"bucket": arm, "fields": "plain", "scale": 1.0, "seed": seed}
            cells.append(CellData(f"{arm}{seed}", f"{arm}/plain/x1/s{seed}", axes,
                                  arm == "base", None, None, units))  # type: ignore[arg-type]
    spec: dict[str, Any] = {
        "units": UNITS, "baseline": {"bucket": "base", "fields": "plain", "scale": 1.0},
        "design": {"kind": "factorial", "base": None, "noise_seeds": [1, 2]},
        "fields": {"plain": {}}}
    return RunData(None, None, spec, None, None, cells, {}, [])  # type: ignore[arg-type]


def _significant(c: dict[str, Any]) -> bool:
    return c["verdict"] in ("better", "worse")


def test_false_positives_and_power_over_simulations() -> None:
    rng = np.random.default_rng(20240517)
    sims, n_boot = 40, 100
    false_runs, mdes, family_sizes = 0, [], set()
    for _ in range(sims):
        out = attribution(simulate(rng, 0.0), "holm", n_boot=n_boot)
        rows = out["vs_baseline"]
        assert all(not c["verdict"].startswith("not estimable") for c in rows)
        false_runs += any(_significant(c) for c in rows)
        mdes += [c["mde"] for c in rows if c["arm"].startswith("planted") and c["primary"]
                 and c["unit"] == "route"]
        family_sizes.add(out["families"]["vs_baseline"]["size"])
    fwer = false_runs / sims
    assert family_sizes == {4 * (2 + 3)}  # 4 arms x (route: 2 metrics + esc: 3 metrics)
    mde = float(np.median(mdes))
    hits = planted_false = 0
    for _ in range(sims):
        out = attribution(simulate(rng, 2 * mde), "holm", n_boot=n_boot)
        for c in out["vs_baseline"]:
            target = c["arm"].startswith("planted") and c["unit"] == "route" and c["primary"]
            if target:
                hits += c["verdict"] == "better"
            elif c["unit"] == "esc" or not c["arm"].startswith("planted"):
                planted_false += _significant(c)
    power = hits / sims
    print(f"simulation: FWER {fwer:.3f} on nulls ({sims} runs), power {power:.2f} for a planted "
          f"effect of 2 x MDE = {2 * mde:.3f} on route accuracy")
    assert fwer <= 0.05
    assert power >= 0.7
    assert planted_false <= 0.05 * sims  # the effect does not leak onto null arms or units
