"""Paired statistics over eval items (scipy/numpy): bootstrap CIs, McNemar, corrections, MDE.

Conventions (DESIGN.md): cells are compared *paired* on the same eval items; binary correctness
of two one-seed arms gets McNemar's exact test; a family of tests is corrected with Holm
(default) or Benjamini-Hochberg. Arm means and arm differences with item and seed noise are
:mod:`harness.analysis.variance`'s; the paired bootstrap here serves statistics outside that
model (a gap between slices, a student against a rescored constant answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

#: z_{0.975} + z_{0.80}: the multiplier turning a standard error into an 80%-power MDE.
MDE_Z = float(stats.norm.ppf(0.975) + stats.norm.ppf(0.80))


def mcnemar_exact(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided exact McNemar p-value for paired binary outcomes (1 = correct).

    Only discordant pairs count: b10 (a right, b wrong) vs b01; under H0 each is Binomial(n, 1/2).
    """
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    n10, n01 = int(np.sum(x & ~y)), int(np.sum(~x & y))
    if n10 + n01 == 0:
        return 1.0
    return float(stats.binomtest(n10, n10 + n01, 0.5, alternative="two-sided").pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (family-wise error control), in input order."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), via scipy."""
    if len(pvalues) == 0:
        return []
    return stats.false_discovery_control(np.asarray(pvalues, dtype=float), method="bh").tolist()


def adjust(pvalues: Sequence[float], method: str) -> list[float]:
    """``holm`` or ``bh``."""
    return holm(pvalues) if method == "holm" else benjamini_hochberg(pvalues)


@dataclass(frozen=True)
class PairedDelta:
    """A paired comparison of one metric: treatment minus reference.

    Attributes:
        delta: point estimate (metric(treatment) - metric(reference)).
        ci_low, ci_high: 95% percentile bootstrap interval.
        se: bootstrap standard error of the delta.
        p_boot: two-sided bootstrap p-value (share of resamples on the other side of 0, x2).
        mde: minimum detectable effect, ``MDE_Z * se``.
        n: paired items.
        p_floor: the smallest p-value the method can resolve (``2/B`` for ``B`` bootstrap
            resamples, as the two-sided p doubles the smaller tail share; 0 for a t or exact
            test): a bootstrap p below it means ``p < p_floor``.
    """

    delta: float
    ci_low: float
    ci_high: float
    se: float
    p_boot: float
    mde: float
    n: int
    p_floor: float = 0.0


MetricFn = Callable[[np.ndarray], float]


def paired_bootstrap(metric_ref: Sequence[MetricFn], metric_trt: Sequence[MetricFn], n: int,
                     n_boot: int = 2000, seed: int = 0, resample_seeds: bool = True
                     ) -> PairedDelta:
    """Paired bootstrap of ``metric(treatment) - metric(reference)`` over ``n`` shared items.

    Args:
        metric_ref, metric_trt: one function per seed of each arm; each maps an index array
            (items, with repeats) to the metric on those items. With several seeds, every
            replicate also resamples seeds (with replacement) and averages over them.
        n: number of paired eval items.
        resample_seeds: False averages over every seed in each replicate (items only), for
            callers that account for training noise separately (:func:`with_training_noise`).
        n_boot: resamples (>= 1,000 by convention).
    """
    rng = np.random.default_rng(seed)
    all_idx = np.arange(n)
    point = (np.mean([f(all_idx) for f in metric_trt]) - np.mean([f(all_idx) for f in metric_ref]))
    draws = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, size=n)
        trt, ref = list(metric_trt), list(metric_ref)
        if resample_seeds:
            trt = [metric_trt[i] for i in rng.integers(0, len(trt), size=len(trt))]
            ref = [metric_ref[i] for i in rng.integers(0, len(ref), size=len(ref))]
        draws[b] = np.mean([f(idx) for f in trt]) - np.mean([f(idx) for f in ref])
    lo, hi = np.percentile(draws, [2.5, 97.5])
    se = float(draws.std(ddof=1))
    p = 2 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0)))
    return PairedDelta(float(point), float(lo), float(hi), se, min(1.0, p), MDE_Z * se, n,
                       2.0 / n_boot)


def format_p(p: float, floor: float = 0.0) -> str:
    """A p-value for people: ``"< 0.001"`` below the method's resolution ``floor`` (a bootstrap
    of 1,000 resamples never sees p = 0), else 4 decimals (scientific below 0.0001)."""
    if floor > 0 and p < floor:
        return f"< {floor:.2g}"
    return f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.4f}"
