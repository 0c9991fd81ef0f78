"""Learning curves over the scale axis on arm means: fit, bootstrap with item and seed noise, and
the next doubling's predicted gain with what it would take to decide it.

One curve per bucket x field set x unit whose arms (:mod:`harness.analysis.arms`) were run at
``>= 3`` scales. Each scale point is the *arm mean* (the mean over that scale's seeds of the
whole-set primary metric), on the eval items every seed of every scale shares, and the error
``e(m) = 1 - primary`` at ``m`` training samples of the unit is fitted with
``e(m) = a * m**b + c`` (a >= 0, -3 <= b <= 0, 0 <= c <= 1) by least squares. The predicted gain
of doubling the largest set is ``e(m_max) - e(2 m_max) = a m_max^b (1 - 2^b) >= 0``.

The band is a bootstrap of the whole fit. Each replicate

- resamples the eval items (the same resample at every scale point, so points stay paired), which
  moves each arm mean by the resampled mean of its items' seed-averaged pseudo-values
  (:mod:`harness.analysis.variance`: item effects and item x seed interactions), and
- adds to each scale point a normal draw with that arm mean's seed variance, from the seed
  variance estimate of its scale (:meth:`harness.analysis.noise.SeedNoise.for_scale`) over the
  arm's seeds, split from the item part as :func:`harness.analysis.variance.arm_mean` splits it
  (``MS_seed / (k n)``, the resampled items shrunk to the items' own part so that the item x
  seed interaction is not counted twice); with no seed variance estimate nothing is added and
  the curve's ``note`` says so,

and is refitted; ``gain_ci`` is the 2.5 / 97.5 percentiles of the replicates' gains. Two more
fits of the same draws, items only and seeds only, say which noise the band is made of
(``gain_se_items``, ``gain_se_seeds``). When the band straddles ``stop.min_gain_next_doubling``,
the same draws are refitted with the item or the seed noise shrunk as ``1/sqrt(growth)``: the
fewest eval items, or seeds per scale point, that would make the band clear the threshold (with
one growth step of margin) are the curve's ``to_decide``. This prospective calculation keeps the
fit's nonlinearity, which scaling the band's width would miss: the band of a bounded, skewed
gain narrows more slowly than ``1/sqrt(n)``.

The fit is profile (variable-projection) least squares (Golub & Pereyra, *SIAM J. Numer. Anal.*
10, 1973): for fixed ``b`` the model is linear in ``(a, c)``, whose box-constrained least squares
has a closed form (the interior solution or the best of the three edges), so ``b`` is found by a
grid over ``[-3, 0]`` (step 0.025) refined twice around the best point (steps 0.0005 and
0.000025), vectorised over every bootstrap replicate at once. It is never worse than a
multi-start ``scipy.optimize.curve_fit`` (tests/analysis/test_rounds.py), which costs ~4 ms per
replicate, some 100 times more.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from harness.analysis.arms import ArmKey, aligned_parts, arms
from harness.analysis.load import CellData, RunData
from harness.analysis.noise import SeedNoise, seed_noise, unit_tables
from harness.analysis.variance import ArmTable, arm_mean, arm_table
from harness.units import get

MIN_POINTS = 3
#: Two-sided level of the band (``gain_ci``).
LEVEL = 0.95
#: The exponent's range and the grids that search it: coarse, then twice finer around the best.
B_RANGE = (-3.0, 0.0)
B_COARSE = np.linspace(*B_RANGE, 121)
B_FINE = np.linspace(-0.025, 0.025, 101)
B_FINEST = np.linspace(-0.0005, 0.0005, 41)
#: The growths of eval items or seeds the prospective search tries (about 1.5-fold apart).
MAX_GROWTH = 100.0
GROWTH = np.geomspace(1.1, MAX_GROWTH, 13)

#: What the evidence says (the signal's states, :data:`harness.analysis.signals.SignalState`).
State = Literal["fires", "quiet", "undecided"]
#: Per unit, what one kind of evidence says, or None for no evidence.
CallState = State | None


def power_law(m: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """``a m^b + c`` (``m``: training samples)."""
    return a * np.power(m, b) + c


def _best_ac(x: np.ndarray, b: np.ndarray, err: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box-constrained least squares of ``err ~ a x^b + c`` (a >= 0, 0 <= c <= 1) for each row
    of ``err`` and each exponent of ``b``.

    Args:
        x: ``(S,)`` scale points in ``(0, 1]``.
        b: ``(G,)`` exponents shared by every row, or ``(B, G)`` per row.
        err: ``(B, S)`` errors.

    Returns:
        ``(a, c, sse)``, each ``(B, G)``. A convex quadratic on the box is minimised either
        inside it or on one of its edges ``a = 0``, ``c = 0``, ``c = 1`` (each a clipped 1-D
        fit); every candidate is scored from the sufficient statistics, so a whole grid of
        exponents costs one matrix product.
    """
    s = x.size
    u = np.power(x, b[..., None])  # (G, S) or (B, G, S)
    su, suu = u.sum(axis=-1), (u * u).sum(axis=-1)
    seu = err @ u.T if u.ndim == 2 else np.einsum("bs,bgs->bg", err, u)
    se = err.sum(axis=1)[:, None]
    se2 = (err * err).sum(axis=1)[:, None]

    def sse(a: np.ndarray, c: np.ndarray) -> np.ndarray:
        return se2 - 2 * a * seu - 2 * c * se + a * a * suu + 2 * a * c * su + s * c * c

    centred = suu - su * su / s  # 0 at b = 0, where a and c cannot be told apart
    with np.errstate(divide="ignore", invalid="ignore"):
        a_in = np.where(centred > 1e-12, (seu - se * su / s) / centred, -1.0)
    zero, one = np.zeros_like(seu), np.ones_like(seu)
    cands = [(a_in, (se - a_in * su) / s),
             (zero, np.clip(se / s, 0.0, 1.0) * one),
             (np.maximum(0.0, seu / suu), zero),
             (np.maximum(0.0, (seu - su) / suu), one)]
    best_a, best_c = cands[1]
    best = np.full(seu.shape, np.inf)
    for a, c in cands:
        ok = (a >= 0) & (c >= 0) & (c <= 1)
        val = np.where(ok, sse(a, c), np.inf)
        take = val < best
        best_a, best_c, best = (np.where(take, a, best_a), np.where(take, c, best_c),
                                np.where(take, val, best))
    return best_a, best_c, best


def fit_power_law(m: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``a m^b + c`` to each row of ``err``.

    Args:
        m: ``(S,)`` training samples (> 0) at the scale points.
        err: ``(B, S)`` errors (1 - primary metric) of ``B`` curves at those points.

    Returns:
        ``(a, b, c)``, each ``(B,)``, with ``a`` for ``x = m / max(m)`` (multiply by
        ``max(m) ** -b`` for raw ``m``).
    """
    x = np.asarray(m, dtype=float) / float(np.max(m))  # (0, 1]: x^b stays finite and tame
    err = np.atleast_2d(np.asarray(err, dtype=float))
    rows = np.arange(err.shape[0])
    _, _, sse = _best_ac(x, B_COARSE, err)
    coarse = B_COARSE[np.argmin(sse, axis=1)]
    best_b = coarse
    for step in (B_FINE, B_FINEST):
        grid = np.clip(best_b[:, None] + step[None, :], *B_RANGE)  # (B, F)
        a, c, sse = _best_ac(x, grid, err)
        pick = np.argmin(sse, axis=1)
        best_b = grid[rows, pick]
    return a[rows, pick], best_b, c[rows, pick]


def fit_curve(m: np.ndarray, err: np.ndarray) -> tuple[float, float, float]:
    """``(a, b, c)`` of one curve in raw ``m`` (``err``: ``(S,)``)."""
    a, b, c = fit_power_law(m, np.asarray(err, dtype=float)[None, :])
    return float(a[0] * float(np.max(m)) ** (-b[0])), float(b[0]), float(c[0])


def doubling_gain(a_x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``e(m_max) - e(2 m_max)`` from :func:`fit_power_law`'s ``a`` (on ``x``) and ``b``."""
    return a_x * (1.0 - np.power(2.0, b))


def next_doubling_gain(params: tuple[float, float, float], m_max: float) -> float:
    """The predicted gain of doubling ``m_max`` under the raw-``m`` fit ``params``."""
    a, b, c = params
    return float(power_law(np.array([m_max]), a, b, c)[0]
                 - power_law(np.array([2 * m_max]), a, b, c)[0])


# -- the curves ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScalePoint:
    """One arm of a curve: its scale, training samples of the unit and table on shared items."""

    scale: float
    samples: float
    seeds: list[int]
    table: ArmTable


def _families(run: RunData) -> dict[tuple[str, str], dict[float, list[CellData]]]:
    """Arms by bucket x field set, then scale."""
    out: dict[tuple[str, str], dict[float, list[CellData]]] = defaultdict(dict)
    key: ArmKey
    for key, cells in arms(run).items():
        out[(key[0], key[1])][key[2]] = cells
    return dict(out)


def _samples(cells: list[CellData], unit: str) -> float:
    """The unit's training samples of an arm (mean over its seeds; they compose the same set)."""
    return float(np.mean([c.manifest.counts["unit"].get(unit, 0) for c in cells]))


def _points(kind: str, metric: str, by_scale: dict[float, list[CellData]], unit: str
            ) -> tuple[list[ScalePoint], int]:
    """The family's scale points on the eval items every seed of every scale has, and how many
    items that is (raises KeyError when the predictions lack the metric's parts)."""
    usable = {s: cells for s, cells in sorted(by_scale.items())
              if all(unit in c.units for c in cells)}
    if not usable:
        return [], 0
    ids = sorted(set.intersection(*(set(c.units[unit].ids) for cs in usable.values()
                                    for c in cs)))
    if not ids:
        return [], 0
    return [ScalePoint(s, _samples(cells, unit), [int(c.axes["seed"]) for c in cells],
                       arm_table(kind, metric, aligned_parts(cells, unit, ids)))
            for s, cells in usable.items()], len(ids)


def _noise_text(noise: SeedNoise | None, opted_out: bool) -> str:
    """What the band covers."""
    if noise is not None:
        return ("band: eval items resampled (paired across scale points) and, per scale point, "
                "the seed variance of that scale over its seeds")
    why = ("training noise was switched off (design.noise_seeds: [])" if opted_out else
           "no arm of this unit has two finished seeds, so there is no seed variance estimate")
    return f"band: eval items only ({why}); retraining noise is not in it"


def _seed_parts(points: list[ScalePoint], noise: SeedNoise | None) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Per point, ``(item_scale, seed_var)`` of the arm mean as
    :func:`~harness.analysis.variance.arm_mean` splits it: the resampled items' variance is
    shrunk by ``item_scale^2`` to the items' own part (less the item x seed interaction, which
    retraining carries) and the seed part ``MS_seed / (k n)`` is drawn as a normal."""
    scale, seed_var = np.ones(len(points)), np.zeros(len(points))
    if noise is None:
        return scale, seed_var
    for j, p in enumerate(points):
        est = arm_mean(p.table, noise.for_scale(p.scale))
        raw = float(p.table.item_means.var(ddof=1)) / p.table.n if p.table.n > 1 else 0.0
        scale[j] = math.sqrt(est.var_items / raw) if raw > 0 else 0.0
        seed_var[j] = est.var_seeds
    return scale, seed_var


def _bootstrap(points: list[ScalePoint], noise: SeedNoise | None, n_boot: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(item_shift, seed_shift)``, each ``(n_boot, S)``: how much each replicate moves each
    arm mean, from resampled items (one resample for all points) and from seed noise."""
    n = points[0].table.n
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # (B, n)
    dev = np.vstack([p.table.item_means - p.table.item_means.mean() for p in points])  # (S, n)
    scale, seed_var = _seed_parts(points, noise)
    item_shift = counts @ dev.T / n * scale[None, :]
    return item_shift, rng.standard_normal((n_boot, len(points))) * np.sqrt(seed_var)[None, :]


def _gains(m: np.ndarray, err: np.ndarray, item_shift: np.ndarray, seed_shift: np.ndarray,
           f_items: np.ndarray, f_seeds: np.ndarray) -> np.ndarray:
    """``(F, B)`` bootstrap gains with the item part of the noise shrunk ``f_items``-fold and
    the seed part ``f_seeds``-fold (each ``(F,)``: as with that many times the eval items or
    the seeds per scale point)."""
    # error = 1 - metric: a replicate that raises the metric lowers the error
    reps = (err[None, None, :] - item_shift[None] / np.sqrt(f_items)[:, None, None]
            - seed_shift[None] / np.sqrt(f_seeds)[:, None, None])
    a, b, _ = fit_power_law(m, reps.reshape(-1, err.size))
    return doubling_gain(a, b).reshape(len(f_items), -1)


def _band(gains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``LEVEL`` percentile band of each row of ``(F, B)`` gains."""
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.percentile(gains, [tail, 100 - tail], axis=1)
    return lo, hi


def _to_decide(m: np.ndarray, err: np.ndarray, shifts: tuple[np.ndarray, np.ndarray],
               n: int, k: int, threshold: float, seeds: bool) -> dict[str, Any]:
    """Prospective sizes that would decide an undecided curve, by rerunning its bootstrap with
    the item and seed noise shrunk (the same draws, scaled by ``1/sqrt(growth)``: width ~
    ``1/sqrt(items)`` and ``1/sqrt(seeds)``) and refitting, for growths up to ``MAX_GROWTH``;
    the answer is one growth step beyond the first that clears the threshold.

    Returns:
        ``{"threshold", "items": n' | None, "seeds_per_point": k' | None, "both": growth |
        None}``: the eval items alone, the seeds per scale point alone, or the growth of both
        together that first makes the band clear the threshold (None: not within
        ``MAX_GROWTH``, or no seed noise to shrink).
    """
    def first(f_items: np.ndarray, f_seeds: np.ndarray) -> int | None:
        lo, hi = _band(_gains(m, err, *shifts, f_items, f_seeds))
        hit = np.flatnonzero((hi < threshold) | (lo >= threshold))
        # one growth step (~1.5x) beyond the first that clears: a fresh bootstrap at that size
        # is another draw, and a band that clears by a hair on these draws may not on it
        return int(min(hit[0] + 1, f_items.size - 1)) if hit.size else None

    sizes_n = np.unique(np.ceil(n * GROWTH)).astype(int)
    hit = first(sizes_n / n, np.ones(sizes_n.size))
    out: dict[str, Any] = {"threshold": threshold,
                           "items": int(sizes_n[hit]) if hit is not None else None,
                           "seeds_per_point": None, "both": None}
    if seeds:
        sizes_k = np.unique(np.ceil(k * GROWTH)).astype(int)
        hit = first(np.ones(sizes_k.size), sizes_k / k)
        out["seeds_per_point"] = int(sizes_k[hit]) if hit is not None else None
    if out["items"] is None and out["seeds_per_point"] is None:
        hit = first(GROWTH, GROWTH if seeds else np.ones(GROWTH.size))
        out["both"] = float(GROWTH[hit]) if hit is not None else None
    return out


def _fit_row(points: list[ScalePoint], n_items: int, noise: SeedNoise | None, n_boot: int,
             threshold: float, rng: np.random.Generator) -> dict[str, Any]:
    """The ``fit`` record of a curve (see :func:`learning_curves`)."""
    m = np.array([p.samples for p in points])
    err = np.array([1.0 - p.table.mean for p in points])
    params = fit_curve(m, err)
    gain = next_doubling_gain(params, float(m.max()))
    out: dict[str, Any] = {"a": params[0], "b": params[1], "c": params[2],
                           "next_doubling_gain": gain, "gain_ci": [None, None],
                           "gain_se": None, "gain_se_items": None, "gain_se_seeds": None,
                           "bootstrap_fits": 0, "m_max": float(m.max()), "n_items": n_items,
                           "seeds_per_point": [p.table.k for p in points],
                           "seed_variance": (_seed_parts(points, noise)[1].tolist()
                                             if noise is not None else None),
                           "to_decide": None}
    if n_boot < 1:
        return out
    shifts = _bootstrap(points, noise, n_boot, rng)
    # both noises, items only, seeds only (the last two say which one the band is made of)
    gains = _gains(m, err, *shifts, np.array([1.0, 1.0, np.inf]), np.array([1.0, np.inf, 1.0]))
    lo, hi = _band(gains[:1])
    sd = gains.std(axis=1, ddof=1) if n_boot > 1 else np.zeros(3)
    out.update(gain_ci=[float(lo[0]), float(hi[0])], gain_se=float(sd[0]),
               gain_se_items=float(sd[1]),
               # exactly 0 without seed noise (not float dust)
               gain_se_seeds=float(sd[2]) if noise is not None else 0.0,
               bootstrap_fits=n_boot)
    if lo[0] < threshold <= hi[0]:
        out["to_decide"] = _to_decide(m, err, shifts, n_items, min(out["seeds_per_point"]),
                                      threshold, noise is not None)
    return out


def _curve(run: RunData, unit: str, family: tuple[str, str],
           by_scale: dict[float, list[CellData]], noise_of: Any, n_boot: int,
           threshold: float, rng: np.random.Generator) -> dict[str, Any] | None:
    """One bucket x field set x unit curve (None when no arm of the family has the unit)."""
    kind = run.experiment.units[unit].kind
    metric = get(kind).primary
    row: dict[str, Any] = {"bucket": family[0], "fields": family[1], "unit": unit,
                           "metric": metric, "scales": sorted(by_scale),
                           "seeds": sorted({int(c.axes["seed"]) for cs in by_scale.values()
                                            for c in cs}),
                           "points": [], "fit": None}
    try:
        points, n_items = _points(kind, metric, by_scale, unit)
    except KeyError:
        row["note"] = f"the predictions lack the per-item parts of {metric}: no curve"
        return row
    if not points:
        if not any(unit in c.units for cs in by_scale.values() for c in cs):
            return None
        row["note"] = "the scale points share no eval items: no curve"
        return row
    row["points"] = [{"scale": p.scale, "samples": int(round(p.samples)), "value": p.table.mean,
                      "seeds": p.seeds, "seed_values": [float(v) for v in p.table.whole]}
                     for p in points]
    m = [p.samples for p in points]
    if len(points) < MIN_POINTS or len(set(m)) < MIN_POINTS or min(m) <= 0:
        row["note"] = (f"{len(set(m) - {0.0})} scale point(s) with training samples of the unit: "
                       f"at least {MIN_POINTS} are needed for a fit")
        return row
    noise = noise_of(unit, metric)
    row["fit"] = _fit_row(points, n_items, noise, n_boot, threshold, rng)
    row["note"] = _noise_text(noise, run.experiment.design.noise_seeds == [])
    return row


def learning_curves(run: RunData, n_boot: int = 200, seed: int = 0,
                    noise: dict[str, dict[str, SeedNoise]] | None = None
                    ) -> list[dict[str, Any]]:
    """Every curve of the run (JSON-ready), including the ones too short to fit.

    Args:
        n_boot: bootstrap replicates of each fit.
        noise: :func:`harness.analysis.noise.training_noise` of the run when the caller has it
            (else the primary metric's seed noise is computed here, for fitted curves only).

    Returns:
        Rows ``{"bucket", "fields", "unit", "metric", "scales": [float], "seeds": [int] (every
        seed of the family), "points": [{"scale", "samples", "value" (arm mean), "seeds": [int],
        "seed_values": [float] (each seed's whole-set metric)}], "fit": None | {"a", "b", "c"
        (raw-m power law of the error), "next_doubling_gain", "gain_ci": [lo, hi] (95%),
        "gain_se", "gain_se_items", "gain_se_seeds" (bootstrap SDs: both, items only, seeds
        only), "bootstrap_fits", "m_max", "n_items", "seeds_per_point": [int],
        "seed_variance": [float] per point (its arm mean's seed variance, ``MS_seed / (k n)``)
        | None, "to_decide": None
        | {"threshold", "items", "seeds_per_point", "both"} (when the band straddles
        ``stop.min_gain_next_doubling``: :func:`_to_decide`)}, "note": str}`` (``note``: why
        there is no fit, or what the band covers).
    """
    groups = arms(run)
    cache: dict[tuple[str, str], SeedNoise | None] = {}

    def noise_of(unit: str, metric: str) -> SeedNoise | None:
        if noise is not None:
            return noise.get(unit, {}).get(metric)
        if (unit, metric) not in cache:
            cache[(unit, metric)] = seed_noise(unit_tables(run, groups, unit, metric))
        return cache[(unit, metric)]

    threshold = run.experiment.stop.min_gain_next_doubling
    rng = np.random.default_rng(seed)
    out = []
    for family, by_scale in sorted(_families(run).items()):
        for unit in run.experiment.units:
            row = _curve(run, unit, family, by_scale, noise_of, n_boot, threshold, rng)
            if row is not None:
                out.append(row)
    return out


# -- what a curve says about the next doubling ---------------------------------------------------

@dataclass(frozen=True)
class Call:
    """What one kind of evidence says on one unit about stopping.

    Attributes:
        state: "fires" (the gain is surely below the minimum), "quiet" (surely at or above it),
            "undecided", or None (no evidence on this unit).
        text: the evidence in words.
        action: for "undecided", what would decide it.
        growth: the least growth of seeds or eval items that would (inf: none found); orders
            the actions of several undecided units.
        leans: "fires" or "quiet": where the point estimate sits.
    """

    state: CallState
    text: str
    action: str | None = None
    growth: float = 0.0
    leans: str | None = None


def action_text(seeds: int | None, items: int | None, both: float | None, k: int, n: int,
                where: str, unit: str) -> str:
    """A prospective action in words.

    Args:
        seeds, items: the seeds (``where``, e.g. "at each of the 5 scale points of
            judged/plain") or the eval items of ``unit`` that would decide alone (None: they
            cannot, or not within ``MAX_GROWTH``).
        both: the growth of both together that would (None: none found).
        k, n: the current seeds and eval items.
    """
    opts = []
    if seeds is not None:
        opts.append(f"train {seeds - k} more seed(s) {where} ({k} -> {seeds})")
    if items is not None:
        opts.append(f"add ~{items - n} eval items to {unit} ({n} -> {items})")
    if not opts and both is not None:
        opts.append(f"grow both the seeds {where} and {unit}'s eval items {both:.1f}-fold "
                    f"({k} -> {math.ceil(k * both)} seeds, {n} -> {math.ceil(n * both)} items)")
    if not opts:
        return (f"{unit}: the estimate sits too near the threshold for up to "
                f"{MAX_GROWTH:g} times the seeds or eval items to decide it")
    return " or ".join(opts)


def curve_call(row: dict[str, Any], threshold: float) -> Call:
    """What one curve says: "fires" when the upper 95% bound of the next doubling's gain is
    below ``threshold``, "quiet" when the lower bound is at or above it, else "undecided" with
    the seeds per scale point or eval items that would narrow the band enough (the fit's
    ``to_decide``)."""
    where = f"{row['unit']} ({row['bucket']}/{row['fields']})"
    fit = row.get("fit")
    if not fit or fit["gain_ci"][0] is None:
        return Call(None, f"{where}: no fitted learning curve ({row.get('note', '')})")
    g, (lo, hi) = fit["next_doubling_gain"], fit["gain_ci"]
    text = f"{where}: next doubling {g:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    if hi < threshold:
        return Call("fires", text)
    if lo >= threshold:
        return Call("quiet", text)
    leans = "quiet" if g >= threshold else "fires"
    dec = fit.get("to_decide")
    if not dec or dec["threshold"] != threshold:
        return Call("undecided", text, None, math.inf, leans)
    k, n = min(fit["seeds_per_point"]), fit["n_items"]
    growths = [x for x in (dec["items"] / n if dec["items"] else None,
                           dec["seeds_per_point"] / k if dec["seeds_per_point"] else None,
                           dec["both"]) if x is not None]
    scope = (f"at each of the {len(fit['seeds_per_point'])} scale points of "
             f"{row['bucket']}/{row['fields']}")
    action = action_text(dec["seeds_per_point"], dec["items"], dec["both"], k, n, scope,
                         row["unit"])
    return Call("undecided", text, action + " (prospective: the curve's bootstrap rerun with "
                "the noise shrunk)" if growths else action, min(growths, default=math.inf),
                leans)
