"""The fallback rate of a ROI ledger row and its interval: a student's error beyond the best
teacher's, on the teacher's metric, at the arm level with item and seed noise.

Per unit, student and teacher errors are ``1 -`` the same metric: the unit kind's
``teacher_error_metric`` (field F1 for JSON fields, ROUGE-L for text, decision accuracy for
refusal, accuracy for labels, ...). The student's value is recomputed from its per-item parts;
a metric that cannot be (``KeyError``) is read from the cell's ``metrics.json`` and has no
interval. The unit's fallback rate is ``max(0, student error - teacher error)``, the row's the
mean over units (equal weights: the traffic mix is not declared).

The interval is the arm's (the mean over its seeds; :func:`harness.analysis.variance.arm_mean`
with the unit's seed noise at the arm's scale). Per unit the student error's 95% interval is
clipped to [0, 1] and shifted by the teacher's error, taken as known (one audit; no teacher is
retrained), then floored at 0; the mean over units takes the mean of the per-unit lower bounds
and of the upper bounds, which is conservative (as if every unit erred to the same side at
once).

:func:`decide_action` is the prospective side: how many more eval items (item variance ~ 1/n)
or seeds (seed variance ~ 1/k) would put the interval wholly on one side of a break-even rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.optimize import brentq

from harness.analysis.arms import ArmKey
from harness.analysis.load import CellData, RunData
from harness.analysis.noise import SeedNoise, seed_noise, unit_tables
from harness.analysis.variance import ArmTable, Estimate, arm_mean, seed_part
from harness.units import get

#: Two-sided level of the fallback-rate (and so the ROI) intervals.
LEVEL = 0.95
#: Largest factor on eval items or seeds a prospective action considers.
MAX_FACTOR = 1e6


def error_metric(run: RunData, unit: str) -> str:
    """The metric a unit's error rates are ``1 -`` of, for the teacher (audit) and the student
    (ledger) alike: the kind's ``teacher_error_metric``."""
    return get(run.experiment.units[unit].kind).teacher_error_metric


def error_of(value: float) -> float:
    """An error rate in [0, 1] from an error metric's value (higher is better, in [0, 1])."""
    return min(1.0, max(0.0, 1.0 - float(value)))


@dataclass(frozen=True)
class UnitFallback:
    """One unit's error beyond the best teacher, for one cell (the point) and its arm (the
    interval). Error rates are ``1 - metric`` on :attr:`metric`, in [0, 1].

    The interval covers the student's eval items and its retraining (seeds); the teacher's
    error is taken as known (it comes from one audit, and no teacher is retrained).

    Attributes:
        metric: the unit kind's ``teacher_error_metric``.
        source: ``items`` (recomputed from the per-item parts), ``metrics.json`` (the cell's
            recorded value: the metric cannot be recomputed from parts, so it has no interval)
            or ``not measured`` (no value: counts as no excess).
        teacher_error: the best audited teacher's error; None: no audited teacher (no excess).
        student_error: this cell's error on all its eval items.
        arm_error: the arm's error, the mean over its seeds (on the items they all share).
        var_items / var_seeds: the variance of ``arm_error`` from eval items and from
            retraining (error units squared; 0 without an interval or seed estimate), as
            :func:`~harness.analysis.variance.arm_mean` splits it.
        var_interaction: the item x seed interaction's share of ``var_seeds`` (which items a
            retrained student flips: it shrinks with more items and more seeds alike).
        n: eval items of the arm (the item part has ``n - 1`` degrees of freedom); k: its seeds.
        df_seeds: degrees of freedom of the seed variance estimate (None without one).
        seed_noise: whether a seed variance was measured (else the interval covers items only).
    """

    metric: str
    source: str
    teacher_error: float | None
    student_error: float | None
    arm_error: float | None
    var_items: float = 0.0
    var_seeds: float = 0.0
    var_interaction: float = 0.0
    n: int = 0
    k: int = 1
    df_seeds: float | None = None
    seed_noise: bool = False

    @property
    def excess(self) -> float:
        """The cell's error minus the teacher's, signed (0 without both)."""
        if self.teacher_error is None or self.student_error is None:
            return 0.0
        return self.student_error - self.teacher_error

    @property
    def fallback(self) -> float:
        """The cell's fallback rate on this unit: the excess floored at 0."""
        return max(0.0, self.excess)

    def estimate(self, items: float = 1.0, seeds: float = 1.0) -> Estimate:
        """The arm's error as an :class:`~harness.analysis.variance.Estimate`, with ``items``
        / ``seeds`` times the current eval items / seeds. Prospective: the item part scales
        as 1/items, the seed part's retraining share as 1/seeds and its item x seed
        interaction as 1/(items x seeds); the seed part's degrees of freedom grow by each
        added seed. At (1, 1) it is the arm mean's own estimate
        (:func:`~harness.analysis.variance.arm_mean`)."""
        seed_df = math.inf if self.df_seeds is None else self.df_seeds + self.k * (seeds - 1)
        n = self.n * items if math.isfinite(items) else self.n
        proper = self.var_seeds - self.var_interaction
        return Estimate(value=self.arm_error or 0.0, var_items=self.var_items / items,
                        var_seeds=proper / seeds + self.var_interaction / (items * seeds),
                        seed_df=seed_df, n=int(n))

    def bounds(self, items: float = 1.0, seeds: float = 1.0) -> tuple[float, float]:
        """The arm's fallback-rate interval on this unit, ``(low, high)`` in [0, 1]; ``items``
        / ``seeds``: see :meth:`estimate` (``inf`` for both gives the point)."""
        if self.teacher_error is None or self.arm_error is None:
            return 0.0, 0.0
        lo_e, hi_e = self.estimate(items, seeds).interval(LEVEL)
        half = (hi_e - lo_e) / 2
        # the error's interval lives in [0, 1]; the teacher's error is a known offset
        lo = min(1.0, max(0.0, self.arm_error - half)) - self.teacher_error
        hi = min(1.0, max(0.0, self.arm_error + half)) - self.teacher_error
        return max(0.0, lo), max(0.0, hi)


def rate_bounds(units: Sequence[UnitFallback], items: float = 1.0, seeds: float = 1.0
                ) -> tuple[float, float]:
    """The arm's fallback rate interval over units (equal weights), ``(low, high)``.

    Conservative: the mean of the per-unit lower bounds and the mean of the upper bounds (as
    if every unit erred to the same side at once), with each unit's teacher error as known.
    ``items`` / ``seeds``: see :meth:`UnitFallback.bounds`.
    """
    if not units:
        return 0.0, 0.0
    b = np.array([u.bounds(items, seeds) for u in units])  # (units, 2)
    return float(min(1.0, b[:, 0].mean())), float(min(1.0, b[:, 1].mean()))


def arm_rate(units: Sequence[UnitFallback]) -> float:
    """The arm's fallback rate: each unit's arm error beyond the teacher floored at 0,
    averaged (the centre the interval is built around)."""
    return rate_bounds(units, math.inf, math.inf)[0]


ErrorTables = dict[str, tuple[dict[ArmKey, ArmTable], SeedNoise | None]]


def error_tables(run: RunData, groups: dict[ArmKey, list[CellData]], units: Iterable[str]
                 ) -> ErrorTables:
    """Per unit, every arm's seeds x items table of its error metric and the metric's seed
    noise (the estimate :func:`harness.analysis.noise.training_noise` gives for a decision
    metric, built the same way for an error metric that is not one; None without a
    multi-seed arm)."""
    out: ErrorTables = {}
    for unit in units:
        tables = unit_tables(run, groups, unit, error_metric(run, unit))
        out[unit] = (tables, seed_noise(tables))
    return out


def _recorded(cell: CellData, unit: str, metric: str) -> float | None:
    """The cell's ``metrics.json`` value of ``metric`` on ``unit`` (None when absent)."""
    value = cell.metrics.units.get(unit, {}).get("metrics", {}).get(metric)
    return None if value is None else float(value)


def unit_fallback(run: RunData, arm_cells: list[CellData], cell: CellData, unit: str,
                  teacher_error: float | None, tables: ErrorTables) -> UnitFallback:
    """``cell``'s :class:`UnitFallback` on ``unit``; ``arm_cells``: every seed of its arm."""
    kind = get(run.experiment.units[unit].kind)
    metric = kind.teacher_error_metric
    items = cell.units[unit]
    n = len(items.ids)
    try:
        value: float | None = kind.metric_from_items(metric, items.parts, np.arange(n))
        source = "items"
    except KeyError:  # not recomputable from parts: the value the worker recorded
        value, source = _recorded(cell, unit, metric), "metrics.json"
    if value is None:
        return UnitFallback(metric, "not measured", teacher_error, None, None, n=n)
    student = error_of(value)
    a = cell.axes
    key = (a["bucket"], a["fields"], float(a["scale"]))
    table_noise = tables.get(unit)
    table = table_noise[0].get(key) if table_noise and source == "items" else None
    if teacher_error is None or table is None:
        # no per-item interval: the arm's recorded values, taken as known
        vals = [v for c in arm_cells if (v := _recorded(c, unit, metric)) is not None]
        arm = float(np.mean([error_of(v) for v in vals])) if vals else student
        return UnitFallback(metric, source, teacher_error, student, arm, n=n, k=len(arm_cells))
    noise = table_noise[1] if table_noise else None
    seed = noise.for_scale(key[2]) if noise is not None else None
    est = arm_mean(table, seed)
    # the interaction share of the seed part, split as the noise model splits it
    inter = min(est.var_seeds, seed_part(seed, table.k, table.n)[1])
    return UnitFallback(metric, source, teacher_error, student, error_of(est.value),
                        est.var_items, est.var_seeds, inter, table.n, table.k,
                        est.seed_df if math.isfinite(est.seed_df) else None, seed is not None)


def from_row(row: Mapping[str, Any]) -> dict[str, UnitFallback]:
    """Unit -> :class:`UnitFallback` of a ledger row (its ``fallback_by_unit``)."""
    names = {f.name for f in fields(UnitFallback)}
    return {u: UnitFallback(**{k: v for k, v in d.items() if k in names})
            for u, d in (row.get("fallback_by_unit") or {}).items()}


def _factor(units: Sequence[UnitFallback], threshold: float, below: bool,
            scale: tuple[bool, bool]) -> float | None:
    """The smallest factor on (items, seeds) — each scaled where ``scale`` says so — at which the
    arm's fallback-rate interval lies wholly on its point's side of ``threshold`` (``below``: the
    interval's top at or under it; else its bottom above it); None when no factor up to
    :data:`MAX_FACTOR` does. The bounds move monotonically with the factor, so the root is
    bracketed."""
    def gap(x: float) -> float:
        lo, hi = rate_bounds(units, x if scale[0] else 1.0, x if scale[1] else 1.0)
        return hi - threshold if below else threshold - lo + 1e-12

    top = MAX_FACTOR
    if gap(top) > 0:
        return None
    return 1.0 if gap(1.0) <= 0 else float(brentq(gap, 1.0, top, xtol=1e-6))


def _more_items(units: Sequence[tuple[str, UnitFallback]], x: float) -> str:
    """'add ~m eval items to unit u (n -> n')' for each unit with item noise."""
    parts = []
    for name, u in units:
        new = max(u.n + 1, math.ceil(u.n * x))
        parts.append(f"add ~{new - u.n} eval items to unit {name} ({u.n} -> {new})")
    return "; ".join(parts)


def decide_action(by_unit: Mapping[str, UnitFallback], arm: str, threshold: float
                  ) -> str | None:
    """The cheapest action that would put the arm's fallback-rate interval wholly on one side
    of ``threshold`` (a break-even fallback rate), prospectively: the arm's fallback rate held
    at its estimate and its variance scaling as :meth:`UnitFallback.estimate` says (items
    part 1/items, retraining 1/seeds, their interaction 1/(items x seeds)). More eval items
    first unless retraining is the larger part; the other when the first cannot decide; both
    when neither alone can. None when nothing varies."""
    units = list(by_unit.values())
    point = arm_rate(units)
    if math.isclose(point, threshold, abs_tol=1e-12):
        return (f"none decides it: the arm's fallback rate {point:.1%} sits at the break-even "
                "rate, so more data narrows the interval around it without leaving it")
    below = point < threshold
    with_items = [(n, u) for n, u in by_unit.items() if u.var_items + u.var_interaction > 0]
    seeded = [u for u in units if u.var_seeds > 0]
    k = max((u.k for u in seeded), default=1)

    def seeds_text(x: float) -> str:
        new = max(k + 1, math.ceil(k * x))
        return f"train {new - k} more seed(s) of arm {arm} ({k} -> {new})"

    modes = [("items", (True, False)), ("seeds", (False, True))]
    # what more items shrink (item part, interaction) vs what only more seeds shrink
    by_items = sum(u.var_items + u.var_interaction for u in units)
    if sum(u.var_seeds - u.var_interaction for u in units) > by_items:
        modes.reverse()  # the seed part dominates: seeds first
    modes = [m for m in modes if (with_items if m[0] == "items" else seeded)]
    tail = (f" — prospectively its 95% fallback-rate interval would then lie "
            f"{'below' if below else 'above'} the break-even fallback rate {threshold:.1%} "
            f"(arm estimate {point:.1%}; standard errors ~ 1/sqrt(items), 1/sqrt(seeds))")
    for i, (name, scale) in enumerate(modes):
        x = _factor(units, threshold, below, scale)
        if x is None:
            continue
        what = _more_items(with_items, x) if name == "items" else seeds_text(x)
        if i > 0:
            what += f" (more {modes[0][0]} alone cannot decide it)"
        return what + tail
    x = _factor(units, threshold, below, (True, True))
    if x is None:
        return None
    both = "; ".join(t for t in (seeds_text(x) if seeded else "", _more_items(with_items, x))
                     if t)
    return f"{both} (neither alone decides it){tail}"
