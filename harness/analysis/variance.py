"""One model of the noise behind every verdict: eval items crossed with training seeds.

Every seed of every arm answers the same eval items, so one arm's results on one metric form a
``(k seeds, n items)`` table. Its value for seed ``s`` and item ``i`` is modelled as

    y_si = mu + a_s + b_i + ab_si

with a seed effect ``a`` (variance ``sigma_a^2``: retraining moves the whole set), an item effect
``b`` (``sigma_b^2``: some items are harder) and their interaction ``ab`` (``sigma_ab^2``: which
items a retrained student flips). The arm's mean over its seeds then has variance

    Var(arm mean) = sigma_a^2 / k + (sigma_b^2 + sigma_ab^2 / k) / n.

The second term is exactly what the item means ``mean_s y_si`` vary by, so it is estimated from
their spread (``var_i / n``); only ``sigma_a^2`` needs the seeds, and it is estimated by the
method of moments of the two-way crossed ANOVA (Searle, Casella & McCulloch, *Variance
Components*, 1992, ch. 4)::

    MS_seed = n * sum_s (ybar_s. - ybar..)^2 / (k - 1)            E = sigma_ab^2 + n sigma_a^2
    MS_res  = sum_si (y_si - ybar_s. - ybar_.i + ybar..)^2 / ((k-1)(n-1))   E = sigma_ab^2
    sigma_a^2 = max(0, (MS_seed - MS_res) / n)

Taking the spread of whole-set metrics across seeds as ``sigma_a^2`` and adding it to the item
spread (what the harness did before) counts ``sigma_ab^2 / n`` twice: once there and once in
the item spread. Here an arm mean's variance is ``[var_i(item means)/n - MS_res/(k n)]_+ +
MS_seed/(k n)`` (same expectation as ``var_i/n + sigma_a^2/k``); a paired difference of two arms
takes the per-item differences of their item means less both arms' interaction parts, plus each
arm's ``MS_seed/(k n)`` (see :func:`arm_mean` for why the truncation falls on the item part).
Tests and intervals use the scale mixture of :class:`Estimate` (the item part known, the seed
part with the seed mean square's degrees of freedom).

Metrics that are not means of per-item values (F1 from summed counts, macro-F1) enter the same
model through per-item *pseudo-values*: the delta-method linearisation for a metric of summed
parts (its pseudo-values average exactly to the metric) and jackknife pseudo-values for the rest
(Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 11 and 21). For accuracy the
pseudo-values are the 0/1 correctness flags themselves.

Zero spread is information here, not its absence: seeds that never move the metric estimate
``sigma_a^2 = 0``; arms at 1.0 on every item and seed against 0.0 on every item and seed differ
by exactly 1 with no variation at all (an exact sign-flip test gives ``p = 2^(1-n)``), and arms
that score identically on every item in every seed show no difference.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from harness.units import get


def item_values(kind_name: str, metric: str, parts: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-item pseudo-values of ``metric`` on one seed's items: shape ``(n,)``.

    Their mean is the metric on all ``n`` items (exactly for metrics of summed parts), and their
    spread is the metric's item-sampling spread: ``var / n`` is its delta-method (or jackknife)
    variance.

    Args:
        parts: the per-item parts (``{name: (n,)}``) the kind computes the metric from.

    Raises:
        KeyError: the metric cannot be recomputed from these parts.
    """
    kind = get(kind_name)
    n = len(next(iter(parts.values()))) if parts else 0
    if n == 0:
        return np.zeros(0)
    if not kind.metric_is_of_sums(metric):
        return _jackknife(kind_name, metric, parts, n)
    names = kind.metric_parts(metric)
    use = {k: np.asarray(parts[k], dtype=float) for k in (names if names is not None else parts)}
    sums = {k: float(v.sum()) for k, v in use.items()}
    theta = kind.metric_from_sums(metric, sums, n)
    out = np.full(n, theta, dtype=float)
    for name, x in use.items():
        # central difference of the metric in one summed part; the step is tiny next to a
        # count but far above float rounding
        h = 1e-4 * max(1.0, abs(sums[name]))
        up = kind.metric_from_sums(metric, {**sums, name: sums[name] + h}, n)
        down = kind.metric_from_sums(metric, {**sums, name: sums[name] - h}, n)
        grad = (up - down) / (2 * h)
        if grad:
            out += grad * (n * x - sums[name])
    return out


def _jackknife(kind_name: str, metric: str, parts: Mapping[str, np.ndarray], n: int
               ) -> np.ndarray:
    """Jackknife pseudo-values ``n * theta - (n - 1) * theta_(-i)``, shape ``(n,)``."""
    kind = get(kind_name)
    every = np.arange(n)
    theta = kind.metric_from_items(metric, parts, every)
    if n == 1:
        return np.array([theta])
    loo = np.array([kind.metric_from_items(metric, parts, np.delete(every, i))
                    for i in range(n)])
    return n * theta - (n - 1) * loo


@dataclass(frozen=True)
class ArmTable:
    """One arm's results on one metric of one unit, seeds crossed with eval items.

    Attributes:
        values: ``(k, n)`` per-seed, per-item pseudo-values (rows: seeds in order).
        whole: ``(k,)`` the metric of each seed on all ``n`` items.
    """

    values: np.ndarray
    whole: np.ndarray

    @property
    def k(self) -> int:
        """Seeds."""
        return int(self.values.shape[0])

    @property
    def n(self) -> int:
        """Eval items."""
        return int(self.values.shape[1])

    @property
    def mean(self) -> float:
        """The arm's value: the mean over its seeds of the whole-set metric."""
        return float(self.whole.mean())

    @property
    def item_means(self) -> np.ndarray:
        """``(n,)`` each item's pseudo-value averaged over the seeds."""
        return self.values.mean(axis=0)

    def mean_squares(self) -> tuple[float, int, float, int]:
        """``(SS_seed, df_seed, SS_res, df_res)`` of the two-way crossed table (sums of squares,
        not yet divided by their degrees of freedom; both 0 for one seed)."""
        k, n = self.values.shape
        if k < 2 or n < 1:
            return 0.0, 0, 0.0, 0
        seed_means = self.values.mean(axis=1)
        grand = float(seed_means.mean())
        ss_seed = n * float(((seed_means - grand) ** 2).sum())
        resid = self.values - seed_means[:, None] - self.item_means[None, :] + grand
        return ss_seed, k - 1, float((resid ** 2).sum()), (k - 1) * (n - 1)


def arm_table(kind_name: str, metric: str, parts_per_seed: Sequence[Mapping[str, np.ndarray]]
              ) -> ArmTable:
    """The :class:`ArmTable` of an arm from each seed's parts aligned on the same items."""
    kind = get(kind_name)
    values = np.vstack([item_values(kind_name, metric, p) for p in parts_per_seed])
    whole = np.array([kind.metric_from_items(metric, p, np.arange(values.shape[1]))
                      for p in parts_per_seed], dtype=float)
    return ArmTable(values, whole)


@dataclass(frozen=True)
class SeedVariance:
    """The retraining (seed) variance ``sigma_a^2`` of one metric, by the method of moments.

    Attributes:
        variance: ``max(0, (MS_seed - MS_res) / n)`` in metric units squared.
        df: Welch-Satterthwaite degrees of freedom of ``variance`` (``df_seed`` when it is 0).
        ms_seed, df_seed: the pooled seed mean square and its degrees of freedom.
        ms_res, df_res: the pooled residual (item x seed) mean square and its degrees of freedom.
        n: eval items.
        arms: arm label -> its metric per seed (what the estimate was computed from).
        scales: the scales whose arms were pooled.
    """

    variance: float
    df: float
    ms_seed: float
    df_seed: int
    ms_res: float
    df_res: int
    n: int
    arms: dict[str, list[float]]
    scales: tuple[float, ...]

    @property
    def sd(self) -> float:
        return math.sqrt(self.variance)

    @property
    def naive_variance(self) -> float:
        """The spread of whole-set metrics across seeds (``MS_seed / n``): what counts the
        item x seed interaction a second time."""
        return self.ms_seed / self.n if self.n else 0.0


def pool_seed_variance(tables: Mapping[str, ArmTable], scales: Sequence[float] = ()
                       ) -> SeedVariance | None:
    """``sigma_a^2`` pooled over every arm with several seeds (mean squares summed with their
    degrees of freedom); None when no arm has two seeds.

    Args:
        tables: arm label -> its table (one-seed arms are skipped).
        scales: the scales of the pooled arms, recorded in the result.
    """
    ss_s = ss_r = 0.0
    df_s = df_r = 0
    n = 0
    used: dict[str, list[float]] = {}
    for label, t in tables.items():
        a, b, c, d = t.mean_squares()
        if b == 0:
            continue
        ss_s, df_s, ss_r, df_r = ss_s + a, df_s + b, ss_r + c, df_r + d
        n = max(n, t.n)
        used[label] = [float(v) for v in t.whole]
    if df_s == 0 or n == 0:
        return None
    ms_s = ss_s / df_s
    ms_r = ss_r / df_r if df_r else 0.0
    var = max(0.0, (ms_s - ms_r) / n)
    if var > 0:
        denom = ms_s ** 2 / df_s + (ms_r ** 2 / df_r if df_r else 0.0)
        df = (ms_s - ms_r) ** 2 / denom if denom > 0 else float(df_s)
    else:
        df = float(df_s)
    return SeedVariance(var, df, ms_s, df_s, ms_r, df_r, n, used, tuple(sorted(set(scales))))


#: Nodes and weights over the chi-square's probability scale for the scale mixture of
#: :class:`Estimate`: ``u_j = ((j + 1/2) / J)^3`` crowds the nodes near 0, where a small
#: chi-square draw (an underestimated seed variance) makes the tail heavy.
_J = 512
_U = ((np.arange(_J) + 0.5) / _J) ** 3
_W = 3 * ((np.arange(_J) + 0.5) / _J) ** 2 / _J
_W = _W / _W.sum()  # the midpoint rule's weights, made to sum to exactly 1


@functools.lru_cache(maxsize=256)
def _inverse_chi2_nodes(df: float) -> np.ndarray:
    """``df / W`` at the chi-square quantile nodes ``_U`` (cached: a run has few distinct
    seed degrees of freedom, and every tail probability of :class:`Estimate` needs them)."""
    w = stats.chi2.ppf(_U, df)
    out = df / np.maximum(w, 1e-300)
    out.setflags(write=False)
    return out


@dataclass(frozen=True)
class Estimate:
    """An arm mean or a paired difference of arm means, with its item and seed variance.

    The reference distribution of ``value - truth`` is a normal scale mixture: the item part is
    estimated from hundreds of items and taken as known, the seed part ``var_seeds`` from a few
    seeds with ``seed_df`` degrees of freedom, so ``value - truth ~ Z * sqrt(var_items +
    var_seeds * seed_df / W)`` with ``Z`` standard normal and ``W ~ chi2(seed_df)``. This is the
    generalized pivot of Tsui & Weerahandi (1989, JASA 84:602) for the Behrens-Fisher
    problem; its p-values hold their level in the tails, where Welch-Satterthwaite's t with
    estimated weights did not (simulated 3-seed vs 1-seed nulls at the 0.5 % level: 1.2 % with
    t, 0.4-0.7 % with the mixture) — and Holm tests the strongest contrast of a family at
    ``alpha / m``. ``df`` (Welch-Satterthwaite) is kept for the reader.

    Attributes:
        value: the point estimate (metric units).
        var_items: variance from the eval items' own effects (``sigma_b^2 / n`` for a mean;
            the item effects' differences for a paired difference).
        var_seeds: variance from retraining: ``MS_seed / (k n) = sigma_a^2 / k +
            sigma_ab^2 / (k n)`` summed over the arms involved (which items a retrained
            student flips is part of retraining).
        seed_df: degrees of freedom of ``var_seeds`` (inf when there is none).
        n: eval items.
        exact_sign_p: with no variation at all, the exact sign-flip p-value ``2^(1-n)`` of a
            nonzero value (1 for a zero value); None when there is variation.
    """

    value: float
    var_items: float
    var_seeds: float
    seed_df: float
    n: int
    exact_sign_p: float | None = None

    @property
    def var(self) -> float:
        return self.var_items + self.var_seeds

    @property
    def se(self) -> float:
        return math.sqrt(self.var)

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom (items ``n - 1``, seeds ``seed_df``)."""
        return _satterthwaite([(self.var_items, self.n - 1), (self.var_seeds, self.seed_df)])

    def _scales(self) -> np.ndarray | None:
        """The mixture's normal SDs at the chi-square nodes (None: a plain normal)."""
        if self.var_seeds <= 0 or not math.isfinite(self.seed_df):
            return None
        return np.sqrt(self.var_items + self.var_seeds * _inverse_chi2_nodes(self.seed_df))

    def sf(self, x: float) -> float:
        """``P(value - truth > x)`` under the reference distribution (``x`` in metric units)."""
        if self.var <= 0:
            return 0.0 if x >= 0 else 1.0
        scales = self._scales()
        if scales is None:  # items only: Student t with n - 1 df (a few items are not many)
            return float(stats.t.sf(x / self.se, max(1, self.n - 1)))
        return float(np.dot(_W, special.ndtr(-x / scales)))

    def quantile(self, q: float) -> float:
        """The ``q`` quantile of ``value - truth`` (metric units; symmetric about 0)."""
        if self.var <= 0:
            return 0.0
        if q < 0.5:
            return -self.quantile(1 - q)
        scales = self._scales()
        if scales is None:
            return float(stats.t.ppf(q, max(1, self.n - 1))) * self.se
        hi = float(stats.norm.ppf(q)) * float(scales.max()) + self.se
        return float(optimize.brentq(lambda x: self.sf(x) - (1 - q), 0.0, hi, xtol=1e-12))

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided ``level`` interval (a point when there is no variation)."""
        h = self.quantile(0.5 + level / 2)
        return self.value - h, self.value + h

    def bound(self, alpha: float, upper: bool = False) -> float:
        """One-sided ``1 - alpha`` confidence bound (lower by default)."""
        h = self.quantile(1 - alpha)
        return self.value + h if upper else self.value - h

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided p-value of ``value == null``."""
        if self.value == null:
            return 1.0
        if self.var <= 0:
            if self.value == null:
                return 1.0
            return self.exact_sign_p if self.exact_sign_p is not None else 0.0
        return float(min(1.0, 2 * self.sf(abs(self.value - null))))

    def mde(self, alpha: float = 0.05, power: float = 0.8) -> float:
        """Minimum detectable effect: the true difference a two-sided level-``alpha`` test
        finds with probability ``power`` (0 with no variation)."""
        if self.var <= 0:
            return 0.0
        return self.quantile(1 - alpha / 2) + self.quantile(power)


def _satterthwaite(parts: Sequence[tuple[float, float]]) -> float:
    """Welch-Satterthwaite df of a sum of variance components ``[(variance, df), ...]``."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / d for v, d in parts if v > 0 and math.isfinite(d) and d > 0)
    if total <= 0 or denom <= 0:
        return float("inf")
    return total * total / denom


def seed_part(seed: SeedVariance | None, k: int, n: int) -> tuple[float, float]:
    """``(retraining part, interaction part)`` of the variance of a ``k``-seed arm's mean on
    ``n`` items under ``seed`` (zeros without one).

    The retraining part is ``sigma_a^2 / k + sigma_ab^2 / (k n)``: ``MS_seed / (k n_est)`` on
    the ``n_est`` items the estimate was made on, corrected by ``MS_res (1/n - 1/n_est) / k``
    when the comparison has fewer (or more) items. The interaction part ``MS_res / (k n)`` is
    what the item spread of the arm's item means already holds of it.
    """
    if seed is None or n == 0 or seed.n == 0:
        return 0.0, 0.0
    part = seed.ms_seed / (k * seed.n) + seed.ms_res * (1 / n - 1 / seed.n) / k
    return max(0.0, part), seed.ms_res / (k * n)


def _items_part(raw: float, interaction: float) -> float:
    """The item part of a variance: the item spread ``raw`` less the interaction it holds,
    truncated at 0. (Flooring the total at ``raw`` instead, so that seeds agreeing on their
    whole-set scores by chance could not shrink it, made 3-vs-1-seed nulls without any seed
    noise reject 0.6 % at the 5 % level: the mixture over the seed variance already covers an
    underestimated seed part.)"""
    return max(0.0, raw - interaction)


def arm_mean(table: ArmTable, seed: SeedVariance | None) -> Estimate:
    """An arm's mean over its seeds with item and seed noise (``seed``: None adds none).

    ``Var = sigma_a^2/k + (sigma_b^2 + sigma_ab^2/k)/n`` is estimated as
    ``[var_i(item means)/n - MS_res/(k n)]_+ + MS_seed/(k n)``: the same expectation as
    ``var_i/n + sigma_a^2/k``, but the subtraction (and its truncation at 0) falls on the item
    part, estimated with ``n - 1`` degrees of freedom, while the seed part ``MS_seed/(k n)`` is
    an unbiased, never truncated multiple of a chi-square with ``df_seed`` degrees of freedom.
    Truncating the seed part instead (``sigma_a^2 = 0`` whenever ``MS_seed < MS_res``, as a
    2-df estimate often is) let true retraining noise vanish from the test: simulated 3-seed
    vs 1-seed nulls rejected 8 % at the 5 % level that way, 6 % this way.
    """
    n = table.n
    raw = float(table.item_means.var(ddof=1)) / n if n > 1 else 0.0
    seeds, inter = seed_part(seed, table.k, n)
    var_items = _items_part(raw, inter) if seed is not None else raw
    seed_df = float(seed.df_seed) if seed is not None else math.inf
    exact = float(min(1.0, 2.0 ** (1 - n))) if var_items + seeds <= 0 and n else None
    return Estimate(table.mean, var_items, seeds, seed_df, n, exact)


def difference(ref: ArmTable, trt: ArmTable, seed_ref: SeedVariance | None,
               seed_trt: SeedVariance | None) -> Estimate:
    """``mean(trt) - mean(ref)``, paired over the (shared, aligned) eval items.

    ``seed_ref`` / ``seed_trt``: the seed variance that applies to each arm (the same object
    when both arms use one estimate: its degrees of freedom are then counted once). The
    variance splits as in :func:`arm_mean`: the per-item differences' spread less both arms'
    interaction parts (truncated at 0), plus each arm's ``MS_seed / (k n)``.
    """
    n = ref.n
    d = trt.item_means - ref.item_means
    value = trt.mean - ref.mean
    raw = float(d.var(ddof=1)) / n if n > 1 else 0.0
    s_ref, i_ref = seed_part(seed_ref, ref.k, n)
    s_trt, i_trt = seed_part(seed_trt, trt.k, n)
    var_items = (_items_part(raw, i_ref + i_trt) if (seed_ref or seed_trt)
                 else raw)
    if seed_ref is not None and seed_ref is seed_trt:
        seed_df = float(seed_ref.df_seed)
    else:  # two separate estimates: one chi-square by Welch-Satterthwaite
        seed_df = _satterthwaite([(sp, v.df_seed) for sp, v in ((s_ref, seed_ref),
                                                                  (s_trt, seed_trt))
                                  if v is not None])
    var = var_items + s_ref + s_trt
    exact = None
    if var <= 0:
        exact = 1.0 if value == 0 else float(min(1.0, 2.0 ** (1 - n)))
    return Estimate(value, var_items, s_ref + s_trt, seed_df, n, exact)
