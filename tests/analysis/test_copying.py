"""Copied teacher errors reach the decision: every single-teacher arm and the chosen arm are
checked against a teacher-independent chance, and the reason names the arm and the teacher."""

from __future__ import annotations

import numpy as np

from harness.analysis.analyse import analyse
from harness.analysis.copying import CHOSEN, SINGLE, copying
from harness.analysis.load import load_run
from tests.helpers.synth import spec_dict, write_run

N = 600


def _run(tmp_path, solo_copies: float):
    """Two arms at one scale: ``mixed`` (every teacher; 97% right, its errors independent of the
    teacher's) and ``solo`` (teacher ``t`` only; wrong exactly on a ``solo_copies`` share of
    the teacher's wrong answers, right everywhere else). The teacher is wrong on 30% of items,
    and a wrong label answer is the other label, so a wrong student repeats the teacher there."""
    rng = np.random.default_rng(3)
    teacher_ok = (rng.random(N) >= 0.3).astype(int)
    copied = (teacher_ok == 0) & (rng.random(N) < solo_copies)
    spec = spec_dict(["mixed", "solo"], ["plain"], [1.0],
                     units={"route": {"kind": "label", "labels": ["a", "b"],
                                      "answer_marker": "Answer:"}})
    spec["buckets"]["solo"]["teachers"] = ["t"]
    cells = {("mixed", "plain", 1.0): {"route": (rng.random(N) >= 0.03).astype(int)},
             ("solo", "plain", 1.0): {"route": (~copied).astype(int)}}
    return write_run(tmp_path, spec, cells, teacher_answers={"route": teacher_ok.tolist()})


def test_a_single_teacher_arms_copying_reaches_the_decision(tmp_path):
    out = analyse(_run(tmp_path, solo_copies=0.305), n_boot=20, curve_boot=10)
    assert out["gate"]["cell"]["label"].startswith("mixed/")  # not the chosen arm
    sig = {s["signal"]: s for s in out["signals"]}["teacher_bias"]
    assert sig["fires"], sig
    assert "single-teacher arm solo/plain/x1" in sig["evidence"]
    assert "teacher t's" in sig["evidence"] and "mixed" not in sig["evidence"]
    reason = next(r for r in out["gate"]["reasons"] if r.startswith("teacher_bias"))
    assert "fires" in reason and "solo/plain/x1" in reason


def test_findings_cover_single_teacher_and_chosen_arms_only(tmp_path):
    run = load_run(_run(tmp_path, solo_copies=0.305))
    mixed = next(c for c in run.cells if c.axes["bucket"] == "mixed")
    found = {(f.arm, f.role, f.teacher): f for f in copying(run, mixed)}
    assert set(found) == {("mixed/plain/x1", CHOSEN, "t"), ("solo/plain/x1", SINGLE, "t")}
    solo, chosen = found[("solo/plain/x1", SINGLE, "t")], found[("mixed/plain/x1", CHOSEN, "t")]
    assert 0.2 < solo.rate < 0.4 and solo.chance < 0.01
    assert solo.ci_low is not None and solo.ci_low > 0.15 and solo.fires(0.1)
    # the chosen arm errs independently of the teacher: not flagged
    assert not chosen.fires(0.1) and abs(chosen.excess) < 0.05


def test_an_arm_that_does_not_copy_is_quiet(tmp_path):
    out = analyse(_run(tmp_path, solo_copies=0.0), n_boot=20, curve_boot=10)
    sig = {s["signal"]: s for s in out["signals"]}["teacher_bias"]
    assert not sig["fires"], sig
    assert "no arm copies teacher errors beyond chance" in sig["evidence"]
