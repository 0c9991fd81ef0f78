"""A real (trained, not simulated) saturated contrast: one teacher never escalates.

The help desk of :mod:`tests.helpers.help_desk`: classifier students are trained through
``harness run`` on three arms x three seeds. The single-teacher baseline (``quiet``, which never
escalates) reaches refusal F1 0 on every seed, the multi-teacher arm and the arm trained on
``quiet``'s corrected failures reach 1 on every seed, over-refusal is 0 everywhere. The seed
spread is zero on every arm; that is an estimate of no retraining noise, not a reason: the
analysis must call both arms ``better`` than the baseline (contrasts are arm - baseline), with a
corrected p below 5 %, call the identical over-refusal ``no difference``, and call no contrast
of the unit ``not estimable`` (the old analysis called all of them "not estimable: zero
spread").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.analysis.analyse import analyse
from harness.cli import main
from tests.helpers import write_jsonl
from tests.helpers.help_desk import data, spec, tiny_encoder

BASELINE = "single_quiet/answer_only/x1"
BETTER_ARMS = ("multi/answer_only/x1", "quiet_failures/answer_only/x1")
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The help-desk experiment written, trained (9 cells) and returned as its run folder."""
    work = tmp_path_factory.mktemp("never_escalates")
    train, ev = data()
    write_jsonl(work / "samples.jsonl", train)
    write_jsonl(work / "eval.jsonl", ev)
    doc = spec(tiny_encoder(work / "encoder"), SEEDS)
    (work / "exp.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    # The autouse cache fixture is per test; this module-scoped run gets its own cache too.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE_DIR", str(work / "cache"))
        assert main(["run", str(work / "exp.yaml"), "--out", str(work / "runs"),
                     "--quiet"]) == 0
        yield work / "runs" / "help_desk"


@pytest.fixture(scope="module")
def analysis(run_dir: Path) -> dict[str, Any]:
    """The whole analysis of the run, as ``harness analyse`` stores it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE_DIR", str(run_dir.parent.parent / "cache"))
        return analyse(run_dir)


def refusal_f1_by_arm(run_dir: Path) -> dict[str, dict[int, float]]:
    """Arm label -> seed -> the cell's refusal F1 on the whole eval set (from metrics.json)."""
    out: dict[str, dict[int, float]] = {}
    for cell in sorted((run_dir / "cells").iterdir()):
        m = json.loads((cell / "metrics.json").read_text(encoding="utf-8"))
        a = m["axes"]
        arm = f"{a['bucket']}/{a['fields']}/x{a['scale']:g}"
        out.setdefault(arm, {})[a["seed"]] = m["units"]["esc"]["metrics"]["refusal_f1"]
    return out


def test_every_arm_has_three_seeds_with_the_documented_scores(run_dir: Path) -> None:
    f1 = refusal_f1_by_arm(run_dir)
    assert set(f1) == {BASELINE, *BETTER_ARMS}
    assert all(sorted(seeds) == list(SEEDS) for seeds in f1.values()), f1
    assert all(v == 0.0 for v in f1[BASELINE].values()), f1  # quiet never teaches the marker
    for arm in BETTER_ARMS:  # saturated: the zero-spread case this module is about
        assert all(v == 1.0 for v in f1[arm].values()), (arm, f1[arm])


def test_the_teacher_audit_sees_quiet_never_escalating(run_dir: Path) -> None:
    audit = json.loads((run_dir / "teacher_audit.json").read_text(encoding="utf-8"))
    assert audit["esc"]["quiet"]["metrics"]["refusal_f1"] == 0.0
    assert audit["esc"]["careful"]["metrics"]["refusal_f1"] == 1.0


def test_zero_seed_spread_is_an_estimate_not_a_reason(analysis: dict[str, Any]) -> None:
    att = analysis["attribution"]
    assert att["baseline"] == BASELINE
    esc = [c for c in att["vs_baseline"] if c["unit"] == "esc"]
    assert esc, att["vs_baseline"]
    assert not [c for c in esc if c["not_estimable"] or "not estimable" in c["verdict"]], esc
    assert att["families"]["vs_baseline"]["not_estimable"] == 0
    noise = att["training_noise"]["esc"]
    assert noise["metric"] == "refusal_f1" and noise["variance"] >= 0.0, noise


@pytest.mark.parametrize("arm", BETTER_ARMS)
def test_each_escalating_arm_is_better_than_the_single_teacher(analysis: dict[str, Any],
                                                               arm: str) -> None:
    contrasts = {(c["arm"], c["metric"]): c for c in analysis["attribution"]["vs_baseline"]
                 if c["unit"] == "esc"}
    for metric in ("refusal_f1", "refusal_recall"):
        c = contrasts[(arm, metric)]
        assert c["reference"] == BASELINE and tuple(c["seeds"]) == (3, 3), c
        assert c["verdict"] == "better", c
        assert c["p_adjusted"] is not None and c["p_adjusted"] < 0.05, c
        assert c["delta"] == 1.0 and c["ci_low"] > 0, c
        assert c["covers"] == "items + training seeds", c
        # every item and seed at 1 against every one at 0: the exact sign-flip p, 2^(1-n)
        assert c["test"].startswith("exact sign-flip") and c["p"] == 2.0 ** (1 - c["n"]), c


@pytest.mark.parametrize("arm", BETTER_ARMS)
def test_identical_over_refusal_is_no_difference_not_unestimable(analysis: dict[str, Any],
                                                                 arm: str) -> None:
    c = next(c for c in analysis["attribution"]["vs_baseline"]
             if (c["arm"], c["unit"], c["metric"]) == (arm, "esc", "over_refusal_rate"))
    assert c["identical"] and c["delta"] == 0.0, c
    assert c["verdict"].startswith("no difference"), c
