"""Fidelity to the teacher: copied errors are judged against what chance alone would copy."""

from __future__ import annotations

import numpy as np

from harness.analysis.copying import SINGLE, _pooled
from harness.evaluate.units import fidelity

LABEL = {"kind": "label", "labels": ["A", "B", "C", "D"]}


def _copied_excess(fid: dict) -> tuple[float, float]:
    """The excess over chance and its one-sided binomial p of one seed's record, as the
    ``teacher_bias`` signal reads it (:mod:`harness.analysis.copying`)."""
    finding = _pooled("arm", SINGLE, "unit", "t", [fid])
    return finding.excess, finding.p


def _items(refs: list[str], teacher: list[str]) -> list[dict]:
    return [{"reference": r, "candidates": [{"teacher": "t", "final": f}]}
            for r, f in zip(refs, teacher, strict=True)]


def test_constant_student_copies_only_by_chance():
    # The student always says A: it repeats exactly the teacher's wrong A answers.
    refs = list("BBBBCCCCDDDD")
    teach = list("AABCCDDDBCAA")  # wrong on 10 items, 4 of them "A"
    items = _items(refs, teach)
    preds = ["A"] * 12
    correct = [int(p == r) for p, r in zip(preds, refs, strict=True)]
    fid = fidelity(LABEL, items, preds, correct)["t"]
    wrong = sum(t != r for t, r in zip(teach, refs, strict=True))
    assert fid["teacher_wrong"] == wrong
    copied_a = sum(t != r and t == "A" for t, r in zip(teach, refs, strict=True))
    assert fid["copied_error_rate"] == copied_a / wrong
    # The student says A with frequency 1, so chance copies exactly the wrong "A" answers.
    assert fid["copied_error_chance"] == copied_a / wrong
    excess, p = _copied_excess(fid)
    assert abs(excess) < 1e-12 and p > 0.5


def test_student_that_follows_the_teacher_copies_beyond_chance():
    refs = (list("ABCD") * 10)
    teach = [("B" if i % 2 else r) for i, r in enumerate(refs)]  # says B on every odd item
    preds = list(teach)  # a perfect imitator
    correct = [int(p == r) for p, r in zip(preds, refs, strict=True)]
    fid = fidelity(LABEL, _items(refs, teach), preds, correct)["t"]
    assert fid["copied_error_rate"] == 1.0
    assert fid["copied_error_chance"] < 0.8
    excess, p = _copied_excess(fid)
    assert excess > 0.2 and p < 0.05


def test_refusal_decisions_and_unparsed_answers():
    unit = {"kind": "refusal", "marker": "REFUSE"}
    refs = ["REFUSE", "x", "y", "REFUSE"]
    teach = ["x", "REFUSE", "y", "REFUSE"]  # wrong decisions on items 0 and 1
    preds = [None, "REFUSE", "z", "REFUSE"]
    fid = fidelity(unit, _items(refs, teach), preds, [0, 0, 1, 1])["t"]
    assert fid["teacher_wrong"] == 2
    assert fid["copied_error_rate"] == 0.5  # item 1 copied; item 0 unparsed never agrees
    # Chance comes from the items the teacher got right: on item 3 (a refusal) the student
    # refuses, on item 2 (an answer) it answers, so it gives neither wrong decision by itself.
    assert fid["copied_error_chance"] == 0.0


def test_old_records_without_chance_keep_the_plain_rate():
    excess, p = _copied_excess({"copied_error_rate": 0.4})
    assert excess == 0.4 and p == 1.0


def _refusal_case(copy_teacher: bool, n: int = 200, seed: int = 0
                  ) -> tuple[dict, list[dict], list[str], list[int]]:
    """Half the items must be refused; the teacher misses 40% of those (answers instead).
    The student either repeats exactly the teacher's misses (and is right elsewhere) or errs on
    a random 40% of the refusals whatever the teacher did."""
    rng = np.random.default_rng(seed)
    unit = {"kind": "refusal", "marker": "REFUSE"}
    refs = ["REFUSE" if k % 2 == 0 else f"reply {k}" for k in range(n)]
    misses = (np.arange(n) % 2 == 0) & (rng.random(n) < 0.4)
    teach = ["answer" if miss else r for r, miss in zip(refs, misses, strict=True)]
    if copy_teacher:
        preds = list(teach)
    else:
        own = (np.arange(n) % 2 == 0) & (rng.random(n) < 0.4)
        preds = ["answer" if o else r for r, o in zip(refs, own, strict=True)]
    key = lambda a: a == "REFUSE"  # noqa: E731 - the refusal decision
    correct = [int(key(p) == key(r)) for p, r in zip(preds, refs, strict=True)]
    return unit, _items(refs, teach), preds, correct


def test_a_student_repeating_all_of_a_teachers_errors_copies_far_beyond_chance():
    unit, items, preds, correct = _refusal_case(copy_teacher=True)
    fid = fidelity(unit, items, preds, correct)["t"]
    assert fid["copied_error_rate"] == 1.0
    # its answer frequencies over all items would give (share of "answer") ~0.7, not ~0
    assert fid["copied_error_chance"] < 0.05
    assert fid["copied_error_chance_low"] <= fid["copied_error_chance"] \
        <= fid["copied_error_chance_high"]
    assert fid["copied_excess_low"] > 0.8
    excess, p = _copied_excess(fid)
    assert excess > 0.9 and p < 1e-6


def test_a_student_erring_independently_of_the_teacher_is_not_flagged():
    unit, items, preds, correct = _refusal_case(copy_teacher=False)
    fid = fidelity(unit, items, preds, correct)["t"]
    assert 0.2 < fid["copied_error_rate"] < 0.6  # it does repeat some errors ...
    # ... as often as it makes that error where the teacher was right
    assert fid["copied_excess_low"] < 0 < fid["copied_excess_high"]
    assert abs(fid["copied_error_rate"] - fid["copied_error_chance"]) < 0.15


def test_the_intervals_are_deterministic():
    unit, items, preds, correct = _refusal_case(copy_teacher=False)
    assert fidelity(unit, items, preds, correct) == fidelity(unit, items, preds, correct)
