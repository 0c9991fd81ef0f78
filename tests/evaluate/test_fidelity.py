"""Fidelity to the teacher: copied errors are judged against what chance alone would copy."""

from __future__ import annotations

from harness.analysis.gate import copied_excess
from harness.evaluate.units import fidelity

LABEL = {"kind": "label", "labels": ["A", "B", "C", "D"]}


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
    excess, p = copied_excess(fid)
    assert abs(excess) < 1e-12 and p > 0.5


def test_student_that_follows_the_teacher_copies_beyond_chance():
    refs = (list("ABCD") * 10)
    teach = [("B" if i % 2 else r) for i, r in enumerate(refs)]  # says B on every odd item
    preds = list(teach)  # a perfect imitator
    correct = [int(p == r) for p, r in zip(preds, refs, strict=True)]
    fid = fidelity(LABEL, _items(refs, teach), preds, correct)["t"]
    assert fid["copied_error_rate"] == 1.0
    assert fid["copied_error_chance"] < 0.8
    excess, p = copied_excess(fid)
    assert excess > 0.2 and p < 0.05


def test_refusal_decisions_and_unparsed_answers():
    unit = {"kind": "refusal", "marker": "REFUSE"}
    refs = ["REFUSE", "x", "y", "REFUSE"]
    teach = ["x", "REFUSE", "y", "REFUSE"]  # wrong decisions on items 0 and 1
    preds = [None, "REFUSE", "z", "REFUSE"]
    fid = fidelity(unit, _items(refs, teach), preds, [0, 0, 1, 1])["t"]
    assert fid["teacher_wrong"] == 2
    assert fid["copied_error_rate"] == 0.5  # item 1 copied; item 0 unparsed never agrees
    # student decisions: REFUSE 2/4, ANSWER 1/4 -> chance = (1/4 + 2/4) / 2
    assert abs(fid["copied_error_chance"] - 0.375) < 1e-12


def test_old_records_without_chance_keep_the_plain_rate():
    excess, p = copied_excess({"copied_error_rate": 0.4})
    assert excess == 0.4 and p == 1.0
