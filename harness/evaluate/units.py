"""Evaluate one capability unit from predictions: metrics, slices, calibration, fidelity.

Pure Python + numpy (the GPU worker imports it). Per-unit results come from grouping the eval
items, never from copies of a loop: the same :func:`unit_report` serves students (their
predictions) and the teacher audit (each teacher's recorded answers).
"""

from __future__ import annotations

from collections import defaultdict
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


#: Bootstrap resamples of the copied-error intervals (fixed seed: the worker is deterministic).
FIDELITY_BOOT = 1000
#: Fewest teacher-right items of one reference class that estimate the student's answer
#: distribution on that class; smaller classes fall back to the teacher-right items of any
#: other reference (see :func:`_chance_pool`).
MIN_POOL = 5


def fidelity(unit: dict[str, Any], items: Sequence[dict[str, Any]],
             preds: Sequence[str | None], correct: Sequence[int],
             n_boot: int = FIDELITY_BOOT, seed: int = 0) -> dict[str, dict[str, float]]:
    """Agreement with each teacher that answered the eval items, split by correctness.

    Per teacher (over the items it answered): ``agreement`` (same decision/answer),
    ``agree_correct`` (agrees and is right), ``agree_wrong`` (agrees and is wrong — a copied
    teacher error), ``n``, and where the teacher was wrong at all:

    - ``teacher_wrong``: how many of its answers were wrong;
    - ``copied_error_rate``: of those, the share the student repeats;
    - ``copied_error_chance``: the share a student would repeat if it erred *independently of
      that teacher* — per wrong item, how often the student gives the teacher's wrong answer on
      items where the teacher was *right*, with the same reference (:func:`_chance_pool`).
      A student that learnt the teacher's errors agrees with the teacher on the right items
      too, so there it gives the reference, not the wrong answer: its chance stays low while its
      copied rate is high. A student that always says "A" gives "A" on the teacher-right items
      as well, so its copied "A" errors count as chance. (The student's own answer frequencies
      over all items, the earlier rate, rise with the copying itself: a student repeating all
      of a teacher's errors could score copied 1.000 vs chance 1.000);
    - ``copied_error_chance_low``/``_high`` and ``copied_excess_low``/``_high``: 95%
      bootstrap intervals of the chance rate and of ``copied_error_rate - copied_error_chance``
      (:func:`_copy_intervals`).
    """
    per: dict[str, dict[str, float]] = {}
    by_teacher: dict[str, list[tuple[int, str | None]]] = defaultdict(list)
    for i, it in enumerate(items):
        for c in it.get("candidates") or []:
            by_teacher[c["teacher"]].append((i, c.get("final")))
    # What 'agreeing' compares is the kind's decision key (refusal units: refuse or answer).
    key = partial(get(unit["kind"]).decision_key, unit)
    keys = [key(p) for p in preds]  # None = no parsable answer: never agrees
    ref_keys = [key(it["reference"]) for it in items]
    for teacher, answers in sorted(by_teacher.items()):
        agree = agree_ok = agree_bad = 0
        wrong: list[tuple[int, Any]] = []  # (item, the teacher's wrong decision key)
        right: list[int] = []
        for i, final in answers:
            t_key = key(final)
            same = keys[i] is not None and keys[i] == t_key
            agree += same
            agree_ok += same and bool(correct[i])
            agree_bad += same and not correct[i]
            if t_key == ref_keys[i]:
                right.append(i)
            else:
                wrong.append((i, t_key))
        n = len(answers)
        per[teacher] = {"n": n, "agreement": agree / n, "agree_correct": agree_ok / n,
                        "agree_wrong": agree_bad / n}
        if wrong:
            copied = np.asarray([keys[i] is not None and keys[i] == k for i, k in wrong],
                                dtype=float)
            pools = [_chance_pool(i, k, right, keys, ref_keys) for i, k in wrong]
            chance = np.asarray([_share(pool, k, keys) for pool, (_, k) in
                                 zip(pools, wrong, strict=True)])
            per[teacher].update(
                copied_error_rate=float(copied.mean()),
                copied_error_chance=float(chance.mean()), teacher_wrong=len(wrong),
                **_copy_intervals(copied, [(p, k) for p, (_, k) in zip(pools, wrong,
                                                                        strict=True)],
                                  keys, n_boot, seed))
    return per


def _chance_pool(i: int, k: Any, right: Sequence[int], keys: Sequence[Any],
                 ref_keys: Sequence[Any]) -> tuple[int, ...]:
    """The items whose student answers estimate how often the student gives ``k`` on wrong item
    ``i`` by itself: the teacher-right items with ``i``'s reference class when there are at
    least :data:`MIN_POOL`; else the teacher-right items whose reference is not ``k`` (on items
    whose reference *is* ``k`` a good student says ``k`` for being right); else, when the
    teacher was right on none of those, every item whose reference is not ``k`` (then the
    student's answers are not independent of the teacher's, the best the data allows)."""
    same = tuple(j for j in right if ref_keys[j] == ref_keys[i])
    if len(same) >= MIN_POOL:
        return same
    other = tuple(j for j in right if ref_keys[j] != k)
    if other:
        return other
    return tuple(j for j in range(len(keys)) if ref_keys[j] != k)


def _share(pool: Sequence[int], k: Any, keys: Sequence[Any]) -> float:
    """Share of the pool's student answers equal to ``k`` (unparsed answers count as other)."""
    return sum(keys[j] is not None and keys[j] == k for j in pool) / len(pool) if pool else 0.0


def _copy_intervals(copied: np.ndarray, pairs: Sequence[tuple[tuple[int, ...], Any]],
                    keys: Sequence[Any], n_boot: int, seed: int) -> dict[str, float]:
    """95% percentile intervals of the chance rate and of the copied-minus-chance excess.

    Two sources of noise, both resampled per replicate: which of the teacher's wrong items were
    drawn (multinomial weights over the ``len(copied)`` items) and each chance share's pool
    (binomial: the share of ``k`` in a resample of the pool). Distinct (pool, ``k``) pairs are
    drawn independently of each other, which ignores that one pool's shares of different
    answers are negatively correlated — a small effect next to the item resampling.

    Args:
        copied: (m,) 1 where the student repeats the teacher's wrong answer on wrong item m.
        pairs: per wrong item, its chance pool and the teacher's wrong key.
        keys: the student's decision key per eval item.
    """
    rng = np.random.default_rng(seed)
    m = len(copied)
    distinct: dict[tuple[tuple[int, ...], Any], int] = {}
    which = np.asarray([distinct.setdefault(pk, len(distinct)) for pk in pairs])
    shares = np.empty((n_boot, len(distinct)))
    for (pool, k), col in distinct.items():
        size = max(len(pool), 1)
        shares[:, col] = rng.binomial(len(pool), _share(pool, k, keys), n_boot) / size
    weights = rng.multinomial(m, np.full(m, 1 / m), size=n_boot)  # (n_boot, m)
    chance = (weights * shares[:, which]).sum(axis=1) / m
    excess = weights @ copied / m - chance
    c_lo, c_hi = np.percentile(chance, [2.5, 97.5])
    e_lo, e_hi = np.percentile(excess, [2.5, 97.5])
    return {"copied_error_chance_low": float(c_lo), "copied_error_chance_high": float(c_hi),
            "copied_excess_low": float(e_lo), "copied_excess_high": float(e_hi)}


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
