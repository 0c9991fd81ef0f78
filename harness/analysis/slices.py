"""Per-slice metrics with intervals, and the real-vs-synthetic gap of an arm.

Slices are the eval tags the YAML names (``eval.slices``, default ``source``): ``source=real``,
``source=synthetic``... The results table already carries every metric per slice (its ``slice``
column); here an *arm* (all its seeds) gets, per unit and slice, its primary metric with a 95%
bootstrap interval (eval items resampled within the slice, the same resample for every seed, the
arm's value the mean over seeds), and the gap ``synthetic - real`` on the unit's primary metric
with a paired-by-unit bootstrap interval: each replicate resamples the real items within the
real slice and the synthetic items within the synthetic slice, and recomputes both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.analysis.arms import aligned_parts, arms, shared_ids
from harness.analysis.load import CellData, RunData
from harness.units import get, primary_metric

ALL = "all"
REAL, SYNTHETIC = "source=real", "source=synthetic"


@dataclass(frozen=True)
class SliceValue:
    """An arm's primary metric on one unit and slice: ``value`` (mean over its ``seeds``) with a
    95% bootstrap interval over the slice's ``n`` eval items."""

    unit: str
    metric: str
    slice: str
    n: int
    value: float
    ci_low: float
    ci_high: float
    seeds: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Gap:
    """``synthetic - real`` on a unit's primary metric, for one arm, with its 95% interval."""

    unit: str
    metric: str
    gap: float
    ci_low: float
    ci_high: float
    n_real: int
    n_synthetic: int

    def describe(self) -> str:
        return (f"{self.unit}: synthetic - real = {self.gap:+.3f} [95% CI {self.ci_low:+.3f}, "
                f"{self.ci_high:+.3f}] (n real {self.n_real}, synthetic {self.n_synthetic})")


def _arm_metric(run: RunData, cells: list[CellData], unit: str
                ) -> tuple[Callable[[np.ndarray], float], dict[str, np.ndarray]] | None:
    """(idx -> the arm's primary metric on those items, mean over seeds; slice name -> item
    indices), over the eval items every seed has; None when a seed lacks the unit."""
    if not cells or any(unit not in c.units for c in cells):
        return None
    ids = shared_ids(cells, unit)
    if not ids:
        return None
    kind = get(run.experiment.units[unit].kind)
    parts = aligned_parts(cells, unit, ids)

    def metric(idx: np.ndarray) -> float:
        return float(np.mean([kind.primary_from_parts(
            {k: float(v[idx].sum()) for k, v in p.items()}, len(idx)) for p in parts]))

    first = cells[0].units[unit]
    tags = dict(zip(first.ids, first.tags, strict=True))
    index: dict[str, list[int]] = {ALL: list(range(len(ids)))}
    for key in run.experiment.evaluation.slices:
        for pos, i in enumerate(ids):
            if key in tags[i]:
                index.setdefault(f"{key}={tags[i][key]}", []).append(pos)
    return metric, {k: np.asarray(v) for k, v in index.items()}


def slice_table(run: RunData, cells: list[CellData], n_boot: int = 1000, seed: int = 0
                ) -> list[SliceValue]:
    """Per unit (spec order) and slice (``all`` first, then by name): the arm's primary metric
    with its 95% bootstrap interval over the slice's items."""
    rng = np.random.default_rng(seed)
    out = []
    for unit, options in run.experiment.units.items():
        found = _arm_metric(run, cells, unit)
        if found is None:
            continue
        metric, index = found
        for name in [ALL, *sorted(k for k in index if k != ALL)]:
            idx = index[name]
            boot = [metric(idx[rng.integers(0, len(idx), len(idx))]) for _ in range(n_boot)]
            lo, hi = np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
            out.append(SliceValue(unit, primary_metric(options.kind), name, len(idx),
                                  metric(idx), float(lo), float(hi), len(cells)))
    return out


def slice_gap(run: RunData, cells: list[CellData], unit: str, n_boot: int = 1000,
              seed: int = 0) -> Gap | None:
    """The arm's ``synthetic - real`` gap on ``unit`` with its paired-by-unit bootstrap
    interval; None when the unit lacks either slice."""
    found = _arm_metric(run, cells, unit)
    if found is None:
        return None
    metric, index = found
    real, syn = index.get(REAL), index.get(SYNTHETIC)
    if real is None or syn is None:
        return None
    rng = np.random.default_rng(seed)
    boot = [metric(syn[rng.integers(0, len(syn), len(syn))])
            - metric(real[rng.integers(0, len(real), len(real))]) for _ in range(n_boot)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Gap(unit, primary_metric(run.experiment.units[unit].kind),
               metric(syn) - metric(real), float(lo), float(hi), len(real), len(syn))


#: Fewest scale points from which "the gap does not close with scale" may be asserted.
MIN_SCALE_POINTS = 3


def gap_trend(run: RunData, chosen: CellData, unit: str, learned_there: bool,
              n_boot: int = 1000) -> tuple[bool | None, str]:
    """Whether the chosen arm's gap on ``unit`` closes with scale, and why.

    The arms of the chosen cell's bucket and field set, by scale: ``True`` (closes) when the
    largest scale's gap is at most half the smallest's, ``False`` (does not close) otherwise —
    but only from at least :data:`MIN_SCALE_POINTS` scales with both slices, on a unit the
    chosen student learned something on (``learned_there``: above chance,
    :func:`harness.analysis.chance.learned`); otherwise ``None`` and the reason it cannot tell.
    A student at chance scores alike on both slices whatever the data: its gap says nothing.
    """
    a = chosen.axes
    series = sorted(((k[2], cells) for k, cells in arms(run).items()
                     if (k[0], k[1]) == (a["bucket"], a["fields"])), key=lambda kc: kc[0])
    points = [(s, g) for s, cells in series
              if (g := slice_gap(run, cells, unit, n_boot)) is not None]
    where = f"{a['bucket']}/{a['fields']}"
    if not learned_there:
        return None, (f"cannot tell whether the gap on {unit} closes with scale: the chosen "
                      "student is not above chance there")
    if len(points) < MIN_SCALE_POINTS:
        return None, (f"cannot tell whether the gap on {unit} closes with scale: {where} has "
                      f"{len(points)} scale point(s) with both slices, needs >= "
                      f"{MIN_SCALE_POINTS}")
    trail = ", ".join(f"x{s:g} {g.gap:+.3f} [{g.ci_low:+.3f}, {g.ci_high:+.3f}]"
                      for s, g in points)
    closes = points[-1][1].gap <= 0.5 * points[0][1].gap
    return closes, (f"the gap on {unit} {'closes' if closes else 'does not close'} with scale "
                    f"({where}: {trail})")
