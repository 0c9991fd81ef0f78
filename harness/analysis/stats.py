"""Paired statistics over eval items (scipy/numpy): McNemar, corrections, MDE, p-values.

Conventions (DESIGN.md): cells are compared *paired* on the same eval items; binary correctness
of two one-seed arms gets McNemar's exact test; a family of tests is corrected with Holm
(default) or Benjamini-Hochberg. Arm means and arm differences with item and seed noise are
:mod:`harness.analysis.variance`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

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


def format_p(p: float, floor: float = 0.0) -> str:
    """A p-value for people: ``"< 0.001"`` below the method's resolution ``floor`` (a bootstrap
    of 1,000 resamples never sees p = 0), else 4 decimals (scientific below 0.0001)."""
    if floor > 0 and p < floor:
        return f"< {floor:.2g}"
    return f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.4f}"
