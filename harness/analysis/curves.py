"""Learning curves over the scale axis: fit, bootstrap, and the next doubling's predicted gain.

Per bucket x field set x seed with at least 3 scale points, and per unit: the error
``e(m) = 1 - primary metric`` at ``m`` training samples of that unit is fitted with
``e(m) = a * m**b + c`` (scipy ``curve_fit``; a >= 0, -3 <= b <= 0, 0 <= c <= 1). The fit is
bootstrapped by resampling eval items (the same items at every scale point, so points stay
paired), and the predicted gain of doubling the largest set, ``e(m_max) - e(2 m_max)``, is
reported with its 95% interval. Fewer than 3 points: no fit, and the curve says so.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from harness.analysis.arms import aligned_parts
from harness.analysis.load import CellData, RunData
from harness.units import get, primary_metric

MIN_POINTS = 3


def power_law(m: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a * np.power(m, b) + c


def fit_curve(m: np.ndarray, err: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares fit of ``a m^b + c``; None when it does not converge."""
    x = np.asarray(m, dtype=float) / float(np.max(m))  # scale for conditioning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (a, b, c), _ = curve_fit(power_law, x, err, p0=(max(err[0] - err[-1], 1e-3), -0.5,
                                                            max(float(err.min()) * 0.9, 0.0)),
                                     bounds=([0.0, -3.0, 0.0], [np.inf, 0.0, 1.0]),
                                     maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return float(a * float(np.max(m)) ** (-b)), float(b), float(c)  # back to raw m


def next_doubling_gain(params: tuple[float, float, float], m_max: float) -> float:
    a, b, c = params
    return float(power_law(np.array([m_max]), a, b, c)[0]
                 - power_law(np.array([2 * m_max]), a, b, c)[0])


def learning_curves(run: RunData, n_boot: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Every curve of the run (JSON-ready), including the ones too short to fit."""
    groups: dict[tuple[str, str, int], list[CellData]] = defaultdict(list)
    for c in run.cells:
        groups[(c.axes["bucket"], c.axes["fields"], int(c.axes["seed"]))].append(c)
    rng = np.random.default_rng(seed)
    out = []
    for (bucket, fields, s), cells in sorted(groups.items()):
        cells.sort(key=lambda c: float(c.axes["scale"]))
        scales = sorted({float(c.axes["scale"]) for c in cells})
        for unit, spec in run.spec["units"].items():
            kind = spec["kind"]
            usable = [c for c in cells if unit in c.units]
            row: dict[str, Any] = {"bucket": bucket, "fields": fields, "seed": s, "unit": unit,
                                   "metric": primary_metric(kind), "scales": scales,
                                   "points": [], "fit": None}
            if not usable:
                continue
            ids = sorted(set.intersection(*(set(c.units[unit].ids) for c in usable)))
            parts = [aligned_parts([c], unit, ids)[0] for c in usable]
            m = np.array([c.manifest.counts["unit"].get(unit, 0) for c in usable], float)
            full = np.arange(len(ids))

            def metric(p: dict[str, np.ndarray], idx: np.ndarray, kind: str = kind) -> float:
                sums = {k: float(v[idx].sum()) for k, v in p.items()}
                return get(kind).primary_from_parts(sums, len(idx))

            err = np.array([1 - metric(p, full) for p in parts])
            row["points"] = [{"scale": float(c.axes["scale"]), "samples": int(mi),
                              "value": 1 - float(e)} for c, mi, e in zip(usable, m, err,
                                                                         strict=True)]
            if len(usable) < MIN_POINTS or len(set(m)) < MIN_POINTS:
                row["note"] = (f"{len(usable)} scale point(s): at least {MIN_POINTS} are "
                               "needed for a fit")
                out.append(row)
                continue
            params = fit_curve(m, err)
            if params is None:
                row["note"] = "the power law did not converge on these points"
                out.append(row)
                continue
            gains = []
            for _ in range(n_boot):
                idx = rng.integers(0, len(ids), size=len(ids))
                e_b = np.array([1 - metric(p, idx) for p in parts])
                fb = fit_curve(m, e_b)
                if fb is not None:
                    gains.append(next_doubling_gain(fb, float(m.max())))
            gain = next_doubling_gain(params, float(m.max()))
            lo, hi = (np.percentile(gains, [2.5, 97.5]).tolist() if gains else [None, None])
            row["fit"] = {"a": params[0], "b": params[1], "c": params[2],
                          "next_doubling_gain": gain, "gain_ci": [lo, hi],
                          "bootstrap_fits": len(gains), "m_max": float(m.max())}
            out.append(row)
    return out
