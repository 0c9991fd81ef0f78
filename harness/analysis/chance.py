"""Did a student learn anything? Each arm against chance and against the teachers, per unit.

A metric means little without the level a student reaches by learning nothing. Per unit, on the
eval items the run has (their references come with the predictions), the *chance level* is the
higher of:

- the **best constant answer by score**: every constant the unit allows is a candidate — the
  most frequent reference of each decision-key group (:meth:`UnitKind.decision_key`: for a
  refusal unit "refuse" and "answer"), every fixed choice (:meth:`UnitKind.choices`: the labels)
  and every classifier class (:meth:`UnitKind.classifier_classes`: for a refusal unit the marker
  itself, i.e. *always refuse*); the :data:`MAX_CANDIDATES` most frequent are scored on the
  unit's primary metric over the eval items and the best is kept. With refusals under half,
  *always refuse* scores refusal F1 ``2p/(1+p) > 0``, which the majority class (*always
  answer*, F1 0) would hide: a student that always escalates has learned nothing;
- **uniform guessing** for kinds that answer from fixed choices with a per-item correctness
  metric: ``1/k`` accuracy for a label unit with ``k`` labels (a floor: an expectation, exact on
  any items).

**The comparison is per arm** (the mean over its seeds, :mod:`harness.analysis.variance`), never
per seed: the margin ``arm mean - chance`` is a paired difference over the eval items between
the arm's ``(seeds x items)`` table and the constant answer's one-seed table (no seed noise),
with the arm's seed variance (:mod:`harness.analysis.noise`, at the arm's scale) added; when
uniform guessing is the chance level, the arm mean is compared with that fixed number. Without a
multi-seed arm the margin covers eval items only, and every row says so (``covers``).

**Three states** (and one more for "worse than chance"):

- ``above chance`` — the student learned something: the one-sided lower bound of the margin at
  level ``ALPHA_CHANCE / A`` is above 0, where ``A`` is the number of arms the gate chose among
  (Bonferroni: the gate picks the best of ``A`` arms on these same eval items, so the chosen
  arm's own bound at ``ALPHA_CHANCE`` would be optimistic — the winner's curse. With every arm
  at chance, the chance that *any* arm is called above chance is then at most
  ``ALPHA_CHANCE``);
- ``at chance`` — the one-sided upper bound at ``ALPHA_CHANCE`` is at most ``stop.chance_margin``:
  whatever the student learned is within the declared margin of the best constant answer, which
  is not worth paying for (this takes precedence over a lower bound above 0: "above chance by
  less than the margin" is still nothing worth paying for);
- ``below chance`` — the upper bound is below 0 (counts as at chance for the gate);
- ``undecided`` — neither: the evidence cannot tell yet, and ``action`` names the cheapest step
  that would decide it (a prospective calculation, see :func:`decide_action`).

Why ``ALPHA_CHANCE = 0.01``: the issue's target is a false CONTINUE on students at chance of at
most 2 %. A false CONTINUE needs the chosen arm called ``above chance`` on every unit that
matters; by the Bonferroni bound that happens with probability at most ``ALPHA_CHANCE`` on any
one unit. Half the target is kept in reserve for what the bound assumes away: the normal
approximation of pseudo-values for nonlinear metrics (F1) and a seed variance with few degrees
of freedom (the reference distribution of :class:`~harness.analysis.variance.Estimate`).
Choosing the best constant on the same items makes chance, if anything, slightly too high,
which errs towards *not* above chance. Simulated (400 runs each, every arm at chance, the gate
choosing the best of 6): the chosen arm came out above chance in 1/400 runs without seed noise
and 5/400 (95 % Clopper-Pearson [0.004, 0.029]) with a seed SD of 0.03 (3 seeds per arm).

A perfectly consistent result (no variation on any item or seed: a student identical to the
constant answer, or right on every item of every seed against uniform guessing) is exact on
these items; its bound is taken at face value once the items are as many as an exact sign-flip
test needs at that level (``2^-n <= alpha``), else it is undecided and the action asks for
more items.

The audited teachers' primary metric on the same unit (``teacher_audit.json``) stands beside it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from harness.analysis.arms import ArmKey, arm_label, arms, shared_ids
from harness.analysis.load import CellData, RunData, unit_options
from harness.analysis.noise import seed_noise, unit_tables
from harness.analysis.variance import (
    ArmTable,
    Estimate,
    SeedVariance,
    arm_mean,
    arm_table,
    difference,
)
from harness.errors import InputError
from harness.store.folder import RunFolder
from harness.units import get, primary_metric

ABOVE, AT, BELOW, UNDECIDED = "above chance", "at chance", "below chance", "undecided"
#: Verdicts that count as "learned nothing" for the gate (the ``at_chance`` signal fires).
NOT_LEARNED = (AT, BELOW)
#: One-sided error level of every bound here (see the module docstring for the choice).
ALPHA_CHANCE = 0.01
#: Constant answers scored per unit (the most frequent ones): keeps the search cheap on
#: free-text units whose references are all different.
MAX_CANDIDATES = 32
#: Metric differences below this are float rounding, not a margin.
EPS = 1e-9
#: What the margin covers, in words (``covers``).
COVERS_SEEDS = "eval items + training seeds"
COVERS_ITEMS = ("eval items only: no arm has two finished seeds on this unit, so retraining "
                "noise is not covered")


@dataclass(frozen=True)
class ChanceLevel:
    """What a unit's primary metric is worth without learning, on a set of eval items.

    Attributes:
        constant_answer: the best constant answer (a reference text, a label or the marker).
        constant_share: share of the references in its decision-key group (0 when none is).
        constant: its primary metric on the references.
        uniform: the expected primary metric of uniform guessing over the kind's choices (1/k),
            None for kinds without fixed choices or without a per-item correctness metric.
        candidates: how many constant answers were scored.
    """

    constant_answer: str
    constant_share: float
    constant: float
    uniform: float | None
    candidates: int


@dataclass(frozen=True)
class VsChance:
    """One arm on one unit against chance and against the teachers (JSON-ready via
    :meth:`to_dict`). Metric units throughout.

    Attributes:
        arm: the arm's label (``bucket/fields/x<scale>``); ``cell_ids``: its cells (one a seed).
        value: the arm's primary metric, the mean over its ``seeds`` on the ``n`` shared items.
        chance: the chance level (max of ``constant`` and ``uniform``).
        constant: the best constant answer's primary metric on the same items.
        delta: ``value - chance`` (the margin); ``ci_low``, ``ci_high``: its two-sided 95%
            interval (items, and seeds per ``covers``), clipped to the metric's range.
        lower_bound: one-sided lower bound at ``alpha / arms`` (simultaneous over the ``arms``
            the gate chose among); ``upper_bound``: one-sided upper bound at ``alpha``. None
            when too few items bound a result without any variation.
        chance_margin: ``stop.chance_margin``; ``at chance`` when ``upper_bound`` is at most it.
        verdict: ``above chance``, ``at chance``, ``below chance`` or ``undecided``.
        action: for ``undecided``, the cheapest step that would decide it; else None.
        covers: what the margin's variance covers (eval items, and training seeds when the
            unit has a multi-seed arm).
        arms: ``A``, the arms the Bonferroni lower bound is simultaneous over; ``alpha``:
            :data:`ALPHA_CHANCE`.
        teachers: audited teacher -> its primary metric on the unit.
    """

    arm: str
    cell_ids: list[str]
    unit: str
    metric: str
    value: float
    seeds: int
    chance: float
    constant: float
    constant_answer: str
    constant_share: float
    uniform: float | None
    delta: float
    ci_low: float
    ci_high: float
    lower_bound: float | None
    upper_bound: float | None
    n: int
    verdict: str
    action: str | None
    covers: str
    arms: int
    alpha: float
    chance_margin: float
    teachers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def learned(row: Mapping[str, Any]) -> bool:
    """Whether a :class:`VsChance` row (as a dict) shows the student above chance."""
    return row["verdict"] == ABOVE


def learned_cells(rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """``(cell_id, unit)`` for every cell of every arm that learned something on the unit."""
    return {(cid, r["unit"]) for r in rows if learned(r) for cid in r["cell_ids"]}


# -- the chance level -----------------------------------------------------------------------

def chance_level(unit: Mapping[str, Any], refs: Sequence[str]) -> ChanceLevel:
    """The chance level of a unit (its options as a mapping) on these references.

    Raises:
        ValueError: ``refs`` is empty.
    """
    if not refs:
        raise ValueError("no references to compute a chance level on")
    kind = get(unit["kind"])
    counts = Counter(refs)
    groups: dict[Any, Counter[str]] = {}
    for r, c in counts.items():
        groups.setdefault(kind.decision_key(unit, r), Counter())[r] += c
    pool = {c.most_common(1)[0][0] for c in groups.values()}
    pool |= set(kind.choices(unit) or ()) | set(kind.classifier_classes(unit) or ())
    # the most frequent first; text order between equally frequent ones (reproducible)
    candidates = sorted(pool, key=lambda a: (-counts[a], a))[:MAX_CANDIDATES]
    every = np.arange(len(refs))
    scored = [(_primary_on(unit, a, refs, every), counts[a], a) for a in candidates]
    # the best score; between equal scores the more frequent, then the first in text order
    # (max keeps the first of equal keys, and the candidates are in that order)
    score, _, best = max(scored, key=lambda s: (s[0], s[1]))
    group = groups.get(kind.decision_key(unit, best))
    share = sum(group.values()) / len(refs) if group else 0.0
    choices = kind.choices(unit)
    uniform = 1 / len(choices) if choices and kind.binary_primary else None
    return ChanceLevel(best, share, float(score), uniform, len(candidates))


def _constant_parts(unit: Mapping[str, Any], answer: str, refs: Sequence[str]
                    ) -> dict[str, np.ndarray]:
    """Per-item parts of answering ``answer`` to every item (shape (n,) each)."""
    scored = get(unit["kind"]).score(unit, [answer] * len(refs), list(refs))
    parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
    parts.setdefault("correct", np.asarray(scored.correct, dtype=float))
    return parts


def _primary_on(unit: Mapping[str, Any], answer: str, refs: Sequence[str], idx: np.ndarray
                ) -> float:
    """The primary metric of the constant ``answer`` on the items ``idx``."""
    kind = get(unit["kind"])
    return kind.metric_from_items(kind.primary, _constant_parts(unit, answer, refs), idx)


# -- the margin and its verdict ---------------------------------------------------------------

@dataclass(frozen=True)
class Margin:
    """``arm mean - chance`` with its bounds and verdict (metric units).

    Attributes:
        estimate: the margin with its item and seed variance.
        lower: one-sided lower bound at ``alpha_low`` (None: unbounded).
        upper: one-sided upper bound at ``alpha_up`` (None: unbounded).
        ci: two-sided 95% interval.
        verdict: see the module docstring.
        action: what would decide an undecided verdict, else None.
    """

    estimate: Estimate
    lower: float | None
    upper: float | None
    ci: tuple[float, float]
    verdict: str
    action: str | None


def _exact(est: Estimate) -> bool:
    """Whether ``est`` has no variance beyond float rounding (an SE below :data:`EPS`)."""
    return est.var <= EPS ** 2


def _bounds(est: Estimate, alpha_low: float, alpha_up: float) -> tuple[float, float]:
    """(lower bound at ``alpha_low``, upper bound at ``alpha_up``); ``-inf`` / ``inf`` for a
    result without variation on fewer items than an exact sign-flip test needs
    (``2^-n > alpha``)."""
    if not _exact(est):
        return est.bound(alpha_low), est.bound(alpha_up, upper=True)
    exact = 0.5 ** est.n if est.n else 1.0
    return (est.value if exact <= alpha_low else -math.inf,
            est.value if exact <= alpha_up else math.inf)


def verdict_of(lower: float, upper: float, chance_margin: float) -> str:
    """The verdict from the margin's bounds (see the module docstring); differences within
    :data:`EPS` are float rounding (a student identical to the constant answer is at chance,
    not below it by 1e-17)."""
    if upper < -EPS:
        return BELOW
    if upper <= chance_margin + EPS:
        return AT
    if lower > EPS:
        return ABOVE
    return UNDECIDED


#: How far the prospective calculation looks: up to this many times the eval items, or this
#: many extra seeds (beyond that the action says so instead of naming a number).
MAX_ITEM_FACTOR = 100
MAX_EXTRA_SEEDS = 30


def _projected(est: Estimate, n1: int, k0: int, k1: int) -> Estimate:
    """The margin's estimate with ``n1`` eval items and ``k1`` seeds instead of ``n`` and
    ``k0``, assuming the same margin and variance components: the item part shrinks as ``1/n``,
    the seed part (``MS_seed / (k n)``, :mod:`harness.analysis.variance`) as ``1/k``, and the
    seed mean square gains one degree of freedom per extra seed."""
    extra = k1 - k0
    seed_df = est.seed_df + extra if math.isfinite(est.seed_df) else est.seed_df
    return Estimate(est.value, est.var_items * est.n / n1, est.var_seeds * k0 / k1, seed_df,
                    n1)


def _decides(est: Estimate, alpha_low: float, alpha_up: float, chance_margin: float) -> bool:
    lower, upper = _bounds(est, alpha_low, alpha_up)
    return verdict_of(lower, upper, chance_margin) != UNDECIDED


def _first(ok: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The smallest ``x`` in ``[lo, hi]`` with ``ok(x)`` for a monotone ``ok`` (bisection:
    each call costs a quantile of the margin's reference distribution); None if none."""
    if not ok(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def decide_action(est: Estimate, alpha_low: float, alpha_up: float, chance_margin: float,
                  seeds: int, arm: str, unit: str) -> str:
    """The cheapest step that would decide an undecided margin, from a prospective calculation.

    Assuming the margin stays at its estimate, it finds the fewest eval items (the item part
    of the variance shrinks as ``1/n``) or the fewest extra seeds of the arm (the seed part
    shrinks as ``1/k``, and its degrees of freedom grow) whose bounds would give a verdict
    (lower bound above 0, or upper bound within ``chance_margin``; :func:`_projected`). Seeds
    come first when the seed part of the variance dominates, items otherwise; when neither
    alone decides within :data:`MAX_ITEM_FACTOR` x the items or :data:`MAX_EXTRA_SEEDS` more
    seeds, the action says so.
    """
    n0 = est.n
    if _exact(est):  # exact on too few items: as many as the sign-flip test needs
        alpha = alpha_low if est.value > 0 else alpha_up
        need = math.ceil(math.log2(1 / alpha))
        return (f"add ~{need - n0} eval items to unit {unit} (n {n0} -> {need}: a result "
                "without any variation needs that many items to count)")

    def by_items() -> str | None:
        n1 = _first(lambda n: _decides(_projected(est, n, seeds, seeds), alpha_low, alpha_up,
                                       chance_margin), n0 + 1, MAX_ITEM_FACTOR * n0)
        return None if n1 is None else f"add ~{n1 - n0} eval items to unit {unit} (n {n0} -> {n1})"

    def by_seeds() -> str | None:
        if est.var_seeds <= 0:
            return None
        k1 = _first(lambda k: _decides(_projected(est, n0, seeds, k), alpha_low, alpha_up,
                                       chance_margin), seeds + 1, seeds + MAX_EXTRA_SEEDS)
        return (None if k1 is None else
                f"train {k1 - seeds} more seed(s) of arm {arm} ({seeds} -> {k1})")

    order = (by_seeds, by_items) if est.var_seeds > est.var_items else (by_items, by_seeds)
    for route in order:
        found = route()
        if found:
            return found + (f": enough to decide a margin of {est.value:+.3f} if it holds "
                            f"(standard error now {est.se:.3f})")
    if est.value == 0 and chance_margin == 0:
        return (f"no sample size decides {arm} on {unit}: its margin sits at 0 and "
                "stop.chance_margin is 0 (raise stop.chance_margin)")
    return (f"more seeds of arm {arm} and more eval items on unit {unit}: neither "
            f"{MAX_EXTRA_SEEDS} more seeds nor {MAX_ITEM_FACTOR} x the items alone would bring "
            f"the margin's standard error ({est.se:.3f}) low enough")


def margin(est: Estimate, arms_compared: int, chance_margin: float, seeds: int, arm: str,
           unit: str, bounds: tuple[float, float] | None = None,
           alpha: float = ALPHA_CHANCE) -> Margin:
    """Bounds, verdict and action of a margin estimate.

    Args:
        est: ``arm mean - chance`` (:func:`harness.analysis.variance.difference`, or an arm mean
            shifted by a fixed chance level).
        arms_compared: ``A``, the arms the gate chose among (the lower bound is at
            ``alpha / A``).
        bounds: the range the margin can take (``(low - chance, high - chance)`` for a metric
            in ``[low, high]``); bounds and interval are clipped to it.
    """
    a_low = alpha / max(1, arms_compared)
    lower, upper = _bounds(est, a_low, alpha)
    ci = est.interval(0.95)
    if bounds is not None:
        lower, upper = max(lower, bounds[0]), min(upper, bounds[1])
        ci = (max(ci[0], bounds[0]), min(ci[1], bounds[1]))
    verdict = verdict_of(lower, upper, chance_margin)
    action = (decide_action(est, a_low, alpha, chance_margin, seeds, arm, unit)
              if verdict == UNDECIDED else None)
    return Margin(est, lower if math.isfinite(lower) else None,
                  upper if math.isfinite(upper) else None, ci, verdict, action)


def against_chance(unit: Mapping[str, Any], level: ChanceLevel, refs: Sequence[str],
                   table: ArmTable, seed_var: SeedVariance | None
                   ) -> tuple[Estimate, float, float]:
    """``(margin estimate, chance, constant)`` of one arm's table on items with ``refs``.

    The constant answer's per-item parts form a one-seed table without seed noise, paired with
    the arm over the items; when uniform guessing is at least as high, the arm mean is compared
    with that fixed number (it has no item noise: an expectation on every item).
    """
    kind = get(unit["kind"])
    constant = arm_table(unit["kind"], kind.primary, [_constant_parts(
        unit, level.constant_answer, refs)])
    if level.uniform is not None and level.uniform >= constant.mean:
        est = arm_mean(table, seed_var)
        est = replace(est, value=est.value - level.uniform)
        chance, per_item = level.uniform, table.values
    else:
        est = difference(constant, table, None, seed_var)
        chance, per_item = constant.mean, table.values - constant.values
    return _floored(est, per_item), chance, constant.mean


def _floored(est: Estimate, per_item: np.ndarray) -> Estimate:
    """``est`` with its variance floored at what the eval items alone say: the spread of the
    per-item margins averaged over the seeds, over ``n`` (``per_item``: ``(k, n)``).

    In expectation that floor is ``sigma_b^2 / n + sigma_ab^2 / (k n)``, below the arm mean's
    true variance (which adds ``sigma_a^2 / k``), so it never asks for more than the truth.
    The method-of-moments split of :func:`harness.analysis.variance.arm_mean` can fall below
    it when the seeds' whole-set metrics happen to agree (``MS_seed < MS_res``; seeds at the
    same count of right answers on a few items give ``MS_seed = 0``): then the item x seed
    part vanished with the seed part, and a student varying item by item would read as exact.
    The seed part (and its degrees of freedom) is kept; the item part makes up the rest.
    """
    if est.n < 2:
        return est
    floor = float(per_item.mean(axis=0).var(ddof=1)) / est.n
    if est.var >= floor:
        return est
    return replace(est, var_items=floor - est.var_seeds)


# -- the run ----------------------------------------------------------------------------------

def _references(run: RunData, cell: CellData) -> dict[str, dict[str, str]]:
    """unit -> eval id -> reference for the cell's items: from the run's eval file, else from
    the cell's own predictions (which carry their references)."""
    known: dict[str, dict[str, str]] = {}
    for r in run.eval_rows:
        known.setdefault(r["unit"], {})[r["id"]] = r["reference"]
    if all(set(items.ids) <= set(known.get(u, {})) for u, items in cell.units.items()):
        return known
    out: dict[str, dict[str, str]] = {}
    for r in RunFolder(run.path).cell(cell.cell_id).read_predictions():
        out.setdefault(r["unit"], {})[r["id"]] = r["reference"]
    return out


def _run_references(run: RunData, groups: dict[ArmKey, list[CellData]]
                    ) -> dict[str, dict[str, str]]:
    """unit -> eval id -> reference over every cell of the run."""
    out: dict[str, dict[str, str]] = {}
    for cells in groups.values():
        for c in cells:
            if any(i not in out.get(u, {}) for u, items in c.units.items() for i in items.ids):
                for u, refs in _references(run, c).items():
                    out.setdefault(u, {}).update(refs)
    return out


def _teachers(run: RunData, unit: str, metric: str) -> dict[str, float]:
    """Audited teacher -> its primary metric on the unit (teachers without it are left out)."""
    return {t: float(rep["metrics"][metric]) for t, rep in run.teacher_audit.get(unit, {}).items()
            if rep.get("metrics", {}).get(metric) is not None}


def chance_margin_of(run: RunData) -> float:
    """``stop.chance_margin`` of the run (for runs recorded before it existed, the model's
    default, which validating the recorded spec fills in)."""
    return run.experiment.stop.chance_margin


def versus_chance(run: RunData, n_boot: int | None = None, seed: int = 0,
                  n_arms: int | None = None) -> list[dict[str, Any]]:
    """Every arm x unit against chance and the teachers (one :class:`VsChance` dict each, arms
    in run order, units in spec order).

    Args:
        n_boot, seed: unused (the margin's variance is analytic, :mod:`harness.analysis.
            variance`); accepted so that older callers keep working.
        n_arms: ``A``, the arms the gate chooses among (default: every arm of the run, which is
            conservative when the gate chose among fewer).
    """
    groups = arms(run)
    refs_by_unit = _run_references(run, groups)
    big_a = n_arms if n_arms is not None else len(groups)
    cm = chance_margin_of(run)
    out = []
    for unit_name, options in run.experiment.units.items():
        refs_of = refs_by_unit.get(unit_name, {})
        if not refs_of:
            continue
        kind = get(options.kind)
        metric = primary_metric(options.kind)
        tables = unit_tables(run, groups, unit_name, metric)
        noise = seed_noise(tables)
        unit = unit_options(run, unit_name)  # the unit-kind interface's (JSON) form
        level = chance_level(unit, list(refs_of.values()))
        lo, hi = kind.metric_def(metric).bounds or (-math.inf, math.inf)
        teachers = _teachers(run, unit_name, metric)
        for key, table in tables.items():
            if table.n == 0:
                continue
            ids = shared_ids(groups[key], unit_name)
            missing = [i for i in ids if i not in refs_of]
            if missing:
                raise InputError(f"{run.path}: eval item {missing[0]!r} of unit {unit_name!r} "
                                 "has no reference in the eval file or the predictions")
            seed_var = noise.for_scale(key[2]) if noise is not None else None
            est, chance, constant = against_chance(unit, level, [refs_of[i] for i in ids],
                                                   table, seed_var)
            label = arm_label(key)
            m = margin(est, big_a, cm, table.k, label, unit_name, (lo - chance, hi - chance))
            out.append(VsChance(
                arm=label, cell_ids=[c.cell_id for c in groups[key]], unit=unit_name,
                metric=metric, value=table.mean, seeds=table.k, chance=chance,
                constant=constant, constant_answer=level.constant_answer,
                constant_share=level.constant_share, uniform=level.uniform, delta=est.value,
                ci_low=m.ci[0], ci_high=m.ci[1], lower_bound=m.lower, upper_bound=m.upper,
                n=table.n, verdict=m.verdict, action=m.action,
                covers=COVERS_SEEDS if noise is not None else COVERS_ITEMS, arms=big_a,
                alpha=ALPHA_CHANCE, chance_margin=cm, teachers=teachers).to_dict())
    order = {arm_label(k): i for i, k in enumerate(groups)}
    out.sort(key=lambda r: order[r["arm"]])  # stable: units stay in spec order
    return out


# -- words ------------------------------------------------------------------------------------

def _num(v: float | None) -> str:
    return "unbounded" if v is None else f"{v:+.3f}"


def describe(row: Mapping[str, Any]) -> str:
    """One line of evidence: the arm and unit, its metric, the chance level, the margin with its
    interval and bounds, what the noise covers, the teachers and the verdict (the action of an
    undecided row is the signal's ``action``, which the gate appends)."""
    chance = (f"chance {row['chance']:.3f} (always {_short(row['constant_answer'])!r}: "
              f"{row['constant']:.3f}")
    if row["uniform"] is not None:
        chance += f"; uniform guessing {row['uniform']:.3f}"
    teachers = ", ".join(f"{t} {v:.3f}" for t, v in row["teachers"].items())
    a = row["arms"]
    return (f"{row['arm']} on {row['unit']}: {row['metric']} {row['value']:.3f} "
            f"(mean of {row['seeds']} seed(s)) vs {chance}), margin {row['delta']:+.3f} "
            f"[95% CI {row['ci_low']:+.3f}, {row['ci_high']:+.3f}]; lower bound "
            f"{_num(row['lower_bound'])} (level {row['alpha']:g}/{a}, simultaneous over {a} "
            f"arm(s)), upper bound {_num(row['upper_bound'])} vs chance_margin "
            f"{row['chance_margin']:g}; n={row['n']}, {row['covers']}; teachers: "
            f"{teachers or 'not audited'} — {row['verdict']}")


def _short(text: str, limit: int = 40) -> str:
    """A reference shortened for a one-line reason."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
