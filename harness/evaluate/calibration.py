"""Calibration of confidences (numpy only).

ECE with 15 equal-width bins (comparable with Guo et al. 2017) and with 10 equal-mass bins
(comparable with HELM), multi-class Brier score, NLL of the true class, and reliability-diagram
bins with their counts. With fewer than 300 items ECE is noisy; :func:`calibration` says so.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

#: Below this many items ECE estimates are unreliable (flagged, not hidden).
MIN_RELIABLE_N = 300


def _bins_report(conf: np.ndarray, correct: np.ndarray, groups: list[np.ndarray],
                 edges: list[tuple[float, float]]) -> tuple[float, list[dict[str, float]]]:
    n = len(conf)
    ece = 0.0
    bins = []
    for idx, (lo, hi) in zip(groups, edges, strict=True):
        if len(idx) == 0:
            bins.append({"lo": lo, "hi": hi, "count": 0})
            continue
        acc, mc = float(correct[idx].mean()), float(conf[idx].mean())
        ece += len(idx) / n * abs(acc - mc)
        bins.append({"lo": lo, "hi": hi, "count": int(len(idx)), "accuracy": acc,
                     "mean_confidence": mc})
    return ece, bins


def ece_equal_width(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15
                    ) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error over equal-width confidence bins; and the bins.

    Args:
        conf: (n,) confidence of the predicted answer, in [0, 1].
        correct: (n,) 1 where the predicted answer is right.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins, the first also closed on the left: (0,1/15], ..., conf 0 goes to bin 0
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    groups = [np.flatnonzero(which == b) for b in range(n_bins)]
    return _bins_report(conf, correct, groups,
                        [(float(edges[b]), float(edges[b + 1])) for b in range(n_bins)])


def ece_equal_mass(conf: np.ndarray, correct: np.ndarray, n_bins: int = 10
                   ) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error over bins holding (nearly) equal numbers of items."""
    order = np.argsort(conf, kind="stable")
    groups = [g for g in np.array_split(order, min(n_bins, max(len(conf), 1))) if len(g)]
    edges = [(float(conf[g].min()), float(conf[g].max())) for g in groups]
    return _bins_report(conf, correct, groups, edges)


def calibration(probs: ArrayLike, true_index: ArrayLike) -> dict[str, Any]:
    """Calibration of a probability distribution per item over a unit's classes.

    Args:
        probs: (n, k) probabilities per item (rows sum to 1).
        true_index: (n,) index of the reference class.

    Returns:
        ``metrics`` (ece_15, ece_10_mass, brier, nll, mean_confidence), ``reliability`` (the
        15 equal-width bins), ``n`` and ``ece_reliable`` (n >= 300).
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(true_index, dtype=np.int64)
    n = len(y)
    if n == 0:
        return {"metrics": {}, "reliability": [], "n": 0, "ece_reliable": False}
    pred = p.argmax(axis=1)
    conf = p[np.arange(n), pred]
    correct = (pred == y).astype(np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    ece15, bins = ece_equal_width(conf, correct, 15)
    ece10, _ = ece_equal_mass(conf, correct, 10)
    return {
        "metrics": {
            "ece_15": float(ece15), "ece_10_mass": float(ece10),
            "brier": float(((p - onehot) ** 2).sum(axis=1).mean()),
            "nll": float(-np.log(np.clip(p[np.arange(n), y], 1e-12, 1.0)).mean()),
            "mean_confidence": float(conf.mean()),
        },
        "reliability": bins, "n": n, "ece_reliable": n >= MIN_RELIABLE_N,
    }


def stated_confidence_calibration(conf: ArrayLike, correct: ArrayLike) -> dict[str, Any]:
    """Calibration of a single stated confidence per answer (teacher audit).

    Brier and NLL are the binary ones: is the answer right, with probability ``conf``.
    """
    c = np.clip(np.asarray(conf, dtype=np.float64), 0.0, 1.0)
    y = np.asarray(correct, dtype=np.float64)
    if len(c) == 0:
        return {"metrics": {}, "reliability": [], "n": 0, "ece_reliable": False}
    ece15, bins = ece_equal_width(c, y, 15)
    ece10, _ = ece_equal_mass(c, y, 10)
    pc = np.clip(np.where(y == 1, c, 1 - c), 1e-12, 1.0)
    return {
        "metrics": {"ece_15": float(ece15), "ece_10_mass": float(ece10),
                    "brier": float(((c - y) ** 2).mean()), "nll": float(-np.log(pc).mean()),
                    "mean_confidence": float(c.mean())},
        "reliability": bins, "n": len(c), "ece_reliable": len(c) >= MIN_RELIABLE_N,
    }
