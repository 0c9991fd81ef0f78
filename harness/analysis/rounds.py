"""Rounds: this round's chosen arm against the previous round's, and when to stop distilling.

A team distils in rounds (more samples, other buckets, other fields) and runs the gate after
each, passing the earlier run folders with ``--history`` (oldest first: the last one is the
previous round). What a round bought is the *chosen arm* of this round (the arm the gate decides
about, :func:`harness.analysis.selection.choose_cell`, the mean over its seeds) against the
chosen arm of the previous round, per unit that matters on its primary metric:

- paired on the eval items both rounds share: a frozen eval set pairs every item; when the items
  differ the comparison uses their intersection and says so, and with no item in common the
  rounds cannot be compared;
- seed-aware: each arm's :class:`~harness.analysis.variance.ArmTable` on the shared items, and
  :func:`~harness.analysis.variance.difference` with each round's own seed variance at its arm's
  scale (:mod:`harness.analysis.noise`; two runs, two separate estimates).

**Repeated looks.** The gate runs after every round, so the round-over-round test is repeated.
Round ``r`` (``r = len(history) + 1 >= 2``) is tested at

    alpha_r = ALPHA * 6 / (pi^2 (r - 1)^2),

the Bonferroni alpha-spending sequence (as used for anytime-valid inference by Howard, Ramdas,
McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences", *Annals
of Statistics* 49, 2021): ``sum_{r>=2} alpha_r = ALPHA`` since ``sum 1/j^2 = pi^2 / 6``. At each
look at most one of the two wrong declarations is possible for a given truth (a futility stop
when the true gain is at least the minimum, or "still paying" when it is below), each with
probability at most ``alpha_r``; by the union bound the chance that the round-over-round test
*ever* declares a wrong futility or a wrong gain, over every round a team will run, is at most
``ALPHA``. Per unit that matters:

- "fires" (futility) when on every unit the upper ``1 - alpha_r`` confidence bound of the gain is
  below ``stop.min_gain_next_doubling`` (an intersection-union test: no multiplicity correction
  is needed for "all units", Berger, *Technometrics* 24, 1982);
- "quiet" (still paying) when on some unit the lower ``1 - alpha_r / U`` bound (``U`` units that
  matter: Bonferroni over "some unit") is at or above the minimum;
- "undecided" otherwise, with the seeds of this round's arm or the shared eval items that would
  narrow the interval enough (prospective, :func:`narrowing`).

How this combines with the learning curve's extrapolation: :func:`combine`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scipy import optimize

from harness.analysis.arms import ArmKey, aligned_parts, arm_label, arms, shared_ids
from harness.analysis.curves import MAX_GROWTH, Call, State, action_text
from harness.analysis.load import CellData, RunData
from harness.analysis.noise import seed_noise, unit_tables
from harness.analysis.variance import Estimate, SeedVariance, arm_table, difference
from harness.units import get

#: The error budget of every round-over-round look together.
ALPHA = 0.05
#: Resamples behind the previous round's choice (only its arm is used here, not how sure it
#: was, so the selection's own uncertainty is not recomputed at full size).
PAST_RESAMPLES = 1


def round_alpha(r: int) -> float:
    """The level round ``r`` (>= 2) is tested at: ``ALPHA * 6 / (pi^2 (r - 1)^2)``."""
    if r < 2:
        raise ValueError(f"round {r}: the first round has nothing to compare with")
    return ALPHA * 6.0 / (math.pi ** 2 * (r - 1) ** 2)


@dataclass(frozen=True)
class SeedPart:
    """One arm's seed variance in a comparison, as it shrinks with more seeds or items.

    At ``k`` seeds and ``n`` items it is ``pure / k + inter / (k n)``, which at the arm's own
    sizes is :func:`~harness.analysis.variance.difference`'s ``MS_seed / (k n)``: ``inter`` is
    the interaction mean square ``MS_res`` (``sigma_ab^2``, which items a retrained student
    flips: more items average it away), ``pure`` the rest (``sigma_a^2``: only more seeds help).
    """

    pure: float
    inter: float
    k: int

    @classmethod
    def of(cls, seed: SeedVariance, k: int, n: int) -> SeedPart:
        inter = min(seed.ms_seed, seed.ms_res)
        return cls((seed.ms_seed - inter) / n if n else 0.0, inter, k)

    def var(self, k: int | float, n: int | float) -> float:
        """The arm mean's seed variance at ``k`` seeds and ``n`` items."""
        return self.pure / k + self.inter / (k * n)


@dataclass(frozen=True)
class RoundGain:
    """This round's chosen arm minus the previous round's, on one unit's primary metric.

    Attributes:
        unit, metric: what is compared.
        delta: ``mean(this round's arm) - mean(previous round's arm)`` on the shared items
            (metric units); None when the rounds cannot be compared.
        ci: its two-sided 95% interval, clipped to the metric's possible differences.
        se, df: standard error (items + each round's seeds) and Welch-Satterthwaite df.
        n_shared: eval items of the unit both arms have (every seed of both).
        arms: ``(previous round's arm, this round's arm)`` labels.
        text: the comparison in words, with what it covers and why it may not compare.
        estimate: the :class:`~harness.analysis.variance.Estimate` (None: not comparable).
        seeds: ``(previous, this)`` seeds of the arms.
        seed_parts: ``(previous, this)`` :class:`SeedPart` of each arm (None: that round has
            no seed variance estimate).
    """

    unit: str
    metric: str
    delta: float | None
    ci: tuple[float, float] | None
    se: float | None
    df: float | None
    n_shared: int
    arms: tuple[str, str]
    text: str
    estimate: Estimate | None = field(default=None, repr=False)
    seeds: tuple[int, int] = (0, 0)
    seed_parts: tuple[SeedPart | None, SeedPart | None] = (None, None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"unit", "metric", "delta", "ci": [lo, hi] | None, "se", "df",
        "n_shared", "arms": {"previous", "current"}, "seeds": {"previous", "current"},
        "text"}`` (``df``: None when infinite)."""
        return {"unit": self.unit, "metric": self.metric, "delta": self.delta,
                "ci": list(self.ci) if self.ci is not None else None, "se": self.se,
                "df": self.df if self.df is None or math.isfinite(self.df) else None,
                "n_shared": self.n_shared,
                "arms": {"previous": self.arms[0], "current": self.arms[1]},
                "seeds": {"previous": self.seeds[0], "current": self.seeds[1]},
                "text": self.text}


def previous_choice(run: RunData) -> dict[str, Any]:
    """The chosen arm of an earlier round, by that round's own policy
    (:func:`~harness.analysis.selection.choose_cell`: its ``arm`` and ``cell_ids``)."""
    # imported here: selection imports signals, which imports this module
    from harness.analysis.selection import choose_cell
    return choose_cell(run, n_resamples=PAST_RESAMPLES)


def _arm(run: RunData, chosen: Mapping[str, Any]) -> tuple[ArmKey, list[CellData]]:
    """The chosen arm's key and cells (seed order) from a ``choose_cell`` record."""
    ids = set(chosen["cell_ids"])
    for key, cells in arms(run).items():
        if ids & {c.cell_id for c in cells}:
            return key, [c for c in cells if c.cell_id in ids]
    raise KeyError(f"no arm of {run.path} holds cells {sorted(ids)}")


def _seed_variance(run: RunData, key: ArmKey, unit: str, metric: str) -> SeedVariance | None:
    """The seed variance that applies to arm ``key`` of ``run`` (its scale's, or the nearest)."""
    noise = seed_noise(unit_tables(run, arms(run), unit, metric))
    return noise.for_scale(key[2]) if noise is not None else None


def _not_comparable(unit: str, metric: str, labels: tuple[str, str], why: str,
                    n: int = 0) -> RoundGain:
    return RoundGain(unit, metric, None, None, None, None, n, labels,
                     f"{unit}: {labels[1]} vs the previous round's {labels[0]} cannot be "
                     f"compared: {why}")


def _notes(current: RunData, past: RunData, n: int, n_cur: int, n_past: int,
           seed_parts: tuple[SeedPart | None, SeedPart | None]) -> list[str]:
    """What the comparison covers and how its items were chosen."""
    notes = []
    if n < max(n_cur, n_past):
        notes.append(f"the eval items differ between rounds: compared on the {n} both share "
                     f"({n_past} in the previous round, {n_cur} in this one); freeze the eval "
                     "set to compare rounds on all of them")
    else:
        digests = [getattr(getattr(r, "run", None), "inputs", {}).get("eval") for r in
                   (past, current)]
        if None not in digests and digests[0] != digests[1]:
            notes.append("the eval files differ (SHA-256) though every item id is shared: "
                         "make sure the items themselves did not change")
    missing = [name for name, part in zip(("previous round", "this round"), seed_parts,
                                          strict=True) if part is None]
    notes.append("items + seeds (each round's own seed variance)" if not missing else
                 f"no seed variance estimate for the {' and '.join(missing)}: "
                 f"{'its' if len(missing) == 1 else 'their'} retraining noise is not in the "
                 "interval")
    return notes


def round_gain(current_run: RunData, current_chosen: Mapping[str, Any], past_run: RunData,
               unit: str, past_chosen: Mapping[str, Any] | None = None) -> RoundGain:
    """This round's chosen arm against the previous round's on ``unit``'s primary metric.

    Args:
        current_chosen, past_chosen: ``choose_cell`` records (``cell_ids`` used); the previous
            round's is computed by :func:`previous_choice` when not given.
    """
    kind_name = current_run.experiment.units[unit].kind
    kind = get(kind_name)
    metric = kind.primary
    past_chosen = past_chosen if past_chosen is not None else previous_choice(past_run)
    key_cur, cur = _arm(current_run, current_chosen)
    key_past, past = _arm(past_run, past_chosen)
    labels = (arm_label(key_past), arm_label(key_cur))
    past_unit = past_run.experiment.units.get(unit)
    if past_unit is None or past_unit.kind != kind_name:
        return _not_comparable(unit, metric, labels,
                               f"the previous round has no {kind_name} unit {unit!r}")
    if any(unit not in c.units for c in cur + past):
        return _not_comparable(unit, metric, labels, "a seed of either arm has no results on it")
    ids_cur, ids_past = shared_ids(cur, unit), shared_ids(past, unit)
    ids = sorted(set(ids_cur) & set(ids_past))
    if not ids:
        return _not_comparable(unit, metric, labels, "the rounds share no eval item (freeze the "
                               "eval set across rounds to compare them)")
    try:
        t_cur = arm_table(kind_name, metric, aligned_parts(cur, unit, ids))
        t_past = arm_table(kind_name, metric, aligned_parts(past, unit, ids))
    except KeyError:
        return _not_comparable(unit, metric, labels,
                               f"the predictions lack the per-item parts of {metric}", len(ids))
    s_cur = _seed_variance(current_run, key_cur, unit, metric)
    s_past = _seed_variance(past_run, key_past, unit, metric)
    est = difference(t_past, t_cur, s_past, s_cur)
    lo, hi = est.interval(0.95)
    bounds = kind.metric_def(metric).bounds
    if bounds is not None:  # intervals live in the metric's range of differences
        span = bounds[1] - bounds[0]
        lo, hi = max(lo, -span), min(hi, span)
    parts = (SeedPart.of(s_past, t_past.k, len(ids)) if s_past else None,
             SeedPart.of(s_cur, t_cur.k, len(ids)) if s_cur else None)
    text = (f"{unit} {metric}: {labels[1]} {t_cur.mean:.3f} vs the previous round's {labels[0]} "
            f"{t_past.mean:.3f} on {len(ids)} shared items: {est.value:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] ("
            + "; ".join(_notes(current_run, past_run, len(ids), len(ids_cur), len(ids_past),
                               parts)) + ")")
    return RoundGain(unit, metric, est.value, (lo, hi), est.se, est.df, len(ids), labels, text,
                     est, (t_past.k, t_cur.k), parts)


def round_gains(current_run: RunData, current_chosen: Mapping[str, Any], past_run: RunData,
                units: list[str]) -> dict[str, RoundGain]:
    """:func:`round_gain` on every unit of ``units`` (the previous round's choice made once)."""
    past_chosen = previous_choice(past_run)
    return {u: round_gain(current_run, current_chosen, past_run, u, past_chosen)
            for u in units}


def narrowing(target: float, var_items: float, n: int, current: SeedPart | None,
              previous: SeedPart | None = None) -> tuple[int | None, int | None, float | None]:
    """Prospective sizes that bring a paired difference's variance to ``target``.

    The variance at ``n'`` shared items and ``k'`` seeds of the current arm is
    ``var_items n / n' + previous.var(k_prev, n') + current.var(k', n')``: the items' own part
    shrinks with items, each arm's interaction part with items and seeds, the current arm's
    pure seed part with its seeds; the previous round's arm keeps its seeds.

    Args:
        target: the variance that would decide (metric units squared).
        var_items: the items' own part now (the Estimate's ``var_items``).
        n: shared eval items now.
        current, previous: each arm's :class:`SeedPart` (None: no seed variance for it).

    Returns:
        ``(k' seeds of the current arm alone, n' items alone, growth of both together)``, each
        None when it cannot reach ``target`` within ``MAX_GROWTH``.
    """
    cur = current or SeedPart(0.0, 0.0, 1)
    prev = previous or SeedPart(0.0, 0.0, 1)

    def var(n2: float, k2: float) -> float:
        return var_items * n / n2 + prev.var(prev.k, n2) + cur.var(k2, n2)

    def size(now: int, fn: Any) -> int | None:
        # fn(growth) is decreasing in the growth: the least growth that reaches the target
        if fn(MAX_GROWTH) > target:
            return None
        if fn(1.0) <= target:
            return now
        g = optimize.brentq(lambda g: fn(g) - target, 1.0, MAX_GROWTH, xtol=1e-9)
        return max(now + 1, math.ceil(now * g - 1e-9))

    items = size(n, lambda g: var(n * g, cur.k))
    seeds = size(cur.k, lambda g: var(n, cur.k * g)) if cur.pure + cur.inter > 0 else None
    both: float | None = None
    if var(n * MAX_GROWTH, cur.k * MAX_GROWTH) <= target:
        both = (1.0 if var(n, cur.k) <= target else
                float(optimize.brentq(lambda g: var(n * g, cur.k * g) - target, 1.0,
                                      MAX_GROWTH, xtol=1e-9)))
    return seeds, items, both


def round_call(gain: RoundGain, threshold: float, r: int, n_units: int) -> Call:
    """What the round-over-round gain says on its unit at round ``r`` (see the module
    docstring): fires / quiet / undecided at the spent level, or None when not comparable."""
    est = gain.estimate
    if est is None:
        return Call(None, gain.text)
    alpha = round_alpha(r)
    alpha_low = alpha / max(1, n_units)
    up, lo = est.bound(alpha, upper=True), est.bound(alpha_low)
    text = (f"{gain.text}; round {r}'s look (alpha_{r} = {alpha:.4f}): upper bound {up:+.3f}, "
            f"lower bound {lo:+.3f}")
    if up < threshold:
        return Call("fires", text)
    if lo >= threshold:
        return Call("quiet", text)
    leans = "quiet" if est.value >= threshold else "fires"
    # the reference distribution's standardised quantile (its scale mixture: see Estimate)
    q = est.quantile(1 - (alpha_low if leans == "quiet" else alpha)) / est.se if est.se else 0.0
    need = abs(est.value - threshold)
    k_cur = gain.seeds[1]
    # the se that would put the bound on the threshold (strictly inside it), the standardised
    # quantile held fixed: with more seeds the seed part's degrees of freedom grow and that
    # quantile falls, so the sizes below err on the side of enough
    target = (need / q) ** 2 * 0.999 if q > 0 else 0.0
    seeds, items, both = narrowing(target, est.var_items, gain.n_shared, gain.seed_parts[1],
                                   gain.seed_parts[0])
    action = action_text(seeds, items, both, k_cur, gain.n_shared,
                         f"of this round's chosen arm {gain.arms[1]}", gain.unit)
    if items is not None or (seeds is None and both is not None):
        action += " (new eval items answered by both rounds' chosen arms)"
    growths = [x for x in (items / gain.n_shared if items else None,
                           seeds / k_cur if seeds else None, both) if x is not None]
    return Call("undecided", text, action, min(growths, default=math.inf), leans)


def combine(curve: Mapping[str, Call], rounds: Mapping[str, Call], units: list[str]
            ) -> tuple[State, dict[str, tuple[str, Call]], str | None]:
    """The diminishing-returns state from the two kinds of evidence, unit by unit.

    Per unit, the round-over-round comparison takes precedence whenever the rounds could be
    compared on it (it measures what more distilling bought, where the curve extrapolates), and
    that includes "undecided": an undecided direct test is not overruled by the extrapolation,
    which would spend error twice on one look. Without a comparable previous round, the unit's
    learning curve decides; without either, the unit has no evidence.

    Across units: "quiet" when some unit is still paying (quiet); "fires" when every unit
    fires; else "quiet" again when some unit has no evidence at all (nothing there can say
    stop: the signal could never fire), else "undecided". The action of an undecided verdict:
    the cheapest way to settle one unit that leans to "quiet" (that alone decides), or else
    every undecided unit's (all must fall below the minimum to stop).

    Returns:
        ``(state, {unit: (source "rounds" | "curve" | "none", call)}, action)``.
    """
    per: dict[str, tuple[str, Call]] = {}
    for u in units:
        rc, cc = rounds.get(u), curve.get(u)
        if rc is not None and rc.state is not None:
            per[u] = ("rounds", rc)
        elif cc is not None and cc.state is not None:
            per[u] = ("curve", cc)
        else:
            why = "; ".join(c.text for c in (rc, cc) if c is not None) or (
                f"{u}: no fitted learning curve and no comparable earlier round")
            per[u] = ("none", Call(None, why))
    states = [call.state for _, call in per.values()]
    if "quiet" in states:
        return "quiet", per, None
    if states and all(s == "fires" for s in states):
        return "fires", per, None
    if None in states or not states:
        return "quiet", per, None
    open_ = [call for _, call in per.values() if call.state == "undecided"]
    towards_quiet = [c for c in open_ if c.leans == "quiet"]
    if towards_quiet:
        best = min(towards_quiet, key=lambda c: c.growth)
        return "undecided", per, best.action
    return "undecided", per, "; ".join(c.action for c in open_ if c.action) or None
