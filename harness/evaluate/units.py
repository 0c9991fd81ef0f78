"""Evaluate one capability unit from predictions: metrics, slices, calibration, fidelity.

Pure Python + numpy (the GPU worker imports it). Per-unit results come from grouping the eval
items, never from copies of a loop: the same :func:`unit_report` serves students (their
predictions) and the teacher audit (each teacher's recorded answers).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from harness.evaluate.calibration import calibration, stated_confidence_calibration
from harness.units import get

ALL = "all"
#: Keys of a unit report that hold per-item lists rather than metrics.
PER_ITEM = ("correct", "parts")


def _slices(items: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, list[int]]:
    """``{"all": every index, "source=real": [...], ...}`` for the requested tag keys."""
    out: dict[str, list[int]] = {ALL: list(range(len(items)))}
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        tags = it.get("tags") or {}
        for k in keys:
            if k in tags:
                groups[f"{k}={tags[k]}"].append(i)
    out.update(sorted(groups.items()))
    return out


def unit_report(unit: dict[str, Any], items: Sequence[dict[str, Any]],
                preds: Sequence[str | None], slice_keys: Sequence[str],
                probs: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of one unit, overall and per slice, with calibration and teacher fidelity.

    Args:
        unit: the unit's spec (``kind`` and vocabulary).
        items: eval rows of this unit (``reference``, ``tags``, ``candidates``).
        preds: the parsed answer per item (None = no parseable answer).
        slice_keys: tag keys to slice by.
        probs: (n, n_choices) probabilities over the kind's choices, for kinds whose answers
            are scored (``answers_by == "loglik"``); they add calibration.

    Returns:
        ``{"n", "metrics", "slices": {name: {"n", "metrics"}}, "calibration", "fidelity",
        "correct", "parts"}`` where ``correct`` is the per-item 0/1 list and ``parts`` the
        per-item additive parts of the primary metric (``Scored.parts``; empty for kinds whose
        primary is the mean of ``correct``) — both per item, for paired tests, and not metrics:
        :data:`PER_ITEM` names them so writers drop them from metric files.
    """
    kind = get(unit["kind"])
    score = partial(kind.score, unit)
    refs = [it["reference"] for it in items]
    scored = score(preds, refs)
    metrics = dict(scored.metrics)
    metrics["answer_parse_rate"] = (sum(p is not None for p in preds) / len(preds)
                                    if preds else 0.0)
    report: dict[str, Any] = {"n": len(items), "metrics": metrics, "slices": {},
                              "calibration": None, "fidelity": {}, "correct": scored.correct,
                              "parts": dict(scored.parts or {})}
    cal_index: list[int] = []
    choices = kind.choices(unit) if kind.calibrated else None
    if probs is not None and choices is not None:
        cal_index = [choices.index(r) for r in refs]
        cal = calibration(probs, cal_index)
        metrics.update(cal["metrics"])
        report["calibration"] = {k: v for k, v in cal.items() if k != "metrics"}
    for name, idx in _slices(items, slice_keys).items():
        if name == ALL or not idx:
            continue
        sub = score([preds[i] for i in idx], [refs[i] for i in idx])
        sm = dict(sub.metrics)
        if probs is not None and cal_index:
            sm.update(calibration(probs[idx], [cal_index[i] for i in idx])["metrics"])
        report["slices"][name] = {"n": len(idx), "metrics": sm}
    report["fidelity"] = fidelity(unit, items, preds, scored.correct)
    return report


def fidelity(unit: dict[str, Any], items: Sequence[dict[str, Any]],
             preds: Sequence[str | None], correct: Sequence[int]) -> dict[str, dict[str, float]]:
    """Agreement with each teacher that answered the eval items, split by correctness.

    Per teacher (over the items it answered): ``agreement`` (same decision/answer),
    ``agree_correct`` (agrees and is right), ``agree_wrong`` (agrees and is wrong — a copied
    teacher error), ``copied_error_rate`` (of the teacher's wrong answers, the share the
    student repeats), ``copied_error_chance`` (the share a student with the same answer
    frequencies would repeat by coincidence, its answers independent of the teacher's) and ``n``.

    The chance rate matters for weak students: one that answers "A" to everything "repeats" every
    teacher error that is "A" without having learnt anything from the teacher.
    """
    per: dict[str, dict[str, float]] = {}
    by_teacher: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for i, it in enumerate(items):
        for c in it.get("candidates") or []:
            by_teacher[c["teacher"]].append((i, c.get("final")))
    # What 'agreeing' compares is the kind's decision key (refusal units: refuse or answer).
    key = partial(get(unit["kind"]).decision_key, unit)
    # The student's answer frequencies over every eval item (None = no parsable answer).
    keys = [key(p) for p in preds]
    freq = Counter(k for k in keys if k is not None)
    total = len(keys)
    for teacher, answers in sorted(by_teacher.items()):
        agree = agree_ok = agree_bad = teacher_wrong = copied = 0
        chance = 0.0
        for i, final in answers:
            same = keys[i] is not None and keys[i] == key(final)
            t_ok = key(final) == key(items[i]["reference"])
            agree += same
            agree_ok += same and bool(correct[i])
            agree_bad += same and not correct[i]
            teacher_wrong += not t_ok
            copied += same and not t_ok
            t_key = key(final)
            if not t_ok and total and t_key is not None:
                chance += freq.get(t_key, 0) / total
        n = len(answers)
        per[teacher] = {"n": n, "agreement": agree / n, "agree_correct": agree_ok / n,
                        "agree_wrong": agree_bad / n}
        if teacher_wrong:
            per[teacher]["copied_error_rate"] = copied / teacher_wrong
            per[teacher]["copied_error_chance"] = chance / teacher_wrong
            per[teacher]["teacher_wrong"] = teacher_wrong
    return per


def teacher_audit(unit: dict[str, Any], items: Sequence[dict[str, Any]],
                  slice_keys: Sequence[str]) -> dict[str, Any]:
    """The unit's metrics for each teacher's recorded eval answers, plus the calibration of the
    teacher's stated confidence (seed advice: audit teachers on your task before distilling)."""
    by_teacher: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, it in enumerate(items):
        for c in it.get("candidates") or []:
            by_teacher[c["teacher"]].append((i, c))
    out: dict[str, Any] = {}
    for teacher, answers in sorted(by_teacher.items()):
        sub_items = [items[i] for i, _ in answers]
        preds = [c.get("final") for _, c in answers]
        rep = unit_report(unit, sub_items, preds, slice_keys)
        confs = [(float(c["confidence"]), ok) for (_, c), ok in zip(answers, rep["correct"],
                                                                    strict=True)
                 if c.get("confidence") is not None]
        cal = stated_confidence_calibration([c for c, _ in confs], [ok for _, ok in confs])
        rep.pop("fidelity")
        rep["stated_confidence"] = cal
        out[teacher] = rep
    return out
