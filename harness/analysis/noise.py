"""Training noise of a run: how much retraining the same arm moves each unit's decision metrics.

A student trained once is one draw of its training run, and no resampling of eval items sees
how much a second run would move it. ``design.noise_seeds`` (default ``[1, 2]``) retrains the
reference arm and the baseline; every arm with several seeds then contributes to the seed
variance ``sigma_a^2`` of each unit's metric, estimated without counting the item x seed
interaction twice (:mod:`harness.analysis.variance`).

The estimate is *scale-aware*: retraining a student on 100 samples moves it more than on
10,000. When arms with several seeds exist at more than one scale, each scale has its own
estimate, and an arm at a scale without one borrows the estimate of the nearest scale (in log
scale; between two equally near, the larger variance). :class:`SeedNoise` holds them.

"Not estimable" is kept for what has no variance estimate at all: no arm of the unit has two
finished seeds (and training noise was not switched off with ``noise_seeds: []``). Zero spread
across seeds is an estimate (``sigma_a^2 = 0``), not a reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from harness.analysis.arms import ArmKey, aligned_parts, arm_label, shared_ids
from harness.analysis.load import CellData, RunData, decision_metrics
from harness.analysis.variance import ArmTable, SeedVariance, arm_table, pool_seed_variance
from harness.units import get

#: Why a contrast has no seed variance, and what would give it one.
NO_SEEDS = ("no arm has two finished seeds on this unit, so retraining noise has no estimate "
            "(make it estimable: train the baseline and the reference arm with "
            "design.noise_seeds, at least one extra seed, or give an arm seeds: [0, 1, 2])")


@dataclass(frozen=True)
class SeedNoise:
    """The seed variance of one metric of one unit, per scale and pooled.

    Attributes:
        pooled: over every multi-seed arm of the run.
        by_scale: scale -> over the multi-seed arms at that scale.
    """

    pooled: SeedVariance
    by_scale: dict[float, SeedVariance] = field(default_factory=dict)

    def for_scale(self, scale: float) -> SeedVariance:
        """The estimate that applies to an arm at ``scale`` (see the module docstring)."""
        if scale in self.by_scale:
            return self.by_scale[scale]
        if not self.by_scale:
            return self.pooled

        def distance(s: float) -> tuple[float, float]:
            return abs(math.log(s) - math.log(scale)) if s > 0 and scale > 0 else abs(
                s - scale), -self.by_scale[s].variance

        return self.by_scale[min(self.by_scale, key=distance)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the pooled estimate's figures at the top, per scale beneath."""
        def one(v: SeedVariance) -> dict[str, Any]:
            return {"variance": v.variance, "sd": v.sd, "df": v.df,
                    "naive_variance": v.naive_variance, "ms_seed": v.ms_seed,
                    "df_seed": v.df_seed, "ms_res": v.ms_res, "df_res": v.df_res, "n": v.n,
                    "arms": v.arms}
        return {**one(self.pooled),
                "by_scale": {f"{s:g}": one(v) for s, v in sorted(self.by_scale.items())}}


def unit_tables(run: RunData, groups: dict[ArmKey, list[CellData]], unit: str, metric: str
                ) -> dict[ArmKey, ArmTable]:
    """Every arm with the unit -> its seeds x items table of ``metric`` on the items all its
    seeds share (arms lacking the metric's parts are left out)."""
    kind_name = run.experiment.units[unit].kind
    out = {}
    for key, cells in groups.items():
        if any(unit not in c.units for c in cells):
            continue
        ids = shared_ids(cells, unit)
        try:
            out[key] = arm_table(kind_name, metric, aligned_parts(cells, unit, ids))
        except KeyError:
            continue
    return out


def seed_noise(tables: dict[ArmKey, ArmTable]) -> SeedNoise | None:
    """The :class:`SeedNoise` of one metric from its arms' tables; None when no arm has two
    seeds."""
    multi = {k: t for k, t in tables.items() if t.k >= 2}
    pooled = pool_seed_variance({arm_label(k): t for k, t in multi.items()},
                                [k[2] for k in multi])
    if pooled is None:
        return None
    scales = sorted({k[2] for k in multi})
    by_scale: dict[float, SeedVariance] = {}
    if len(scales) > 1:
        for s in scales:
            v = pool_seed_variance({arm_label(k): t for k, t in multi.items() if k[2] == s}, [s])
            if v is not None:
                by_scale[s] = v
    return SeedNoise(pooled, by_scale)


def training_noise(run: RunData, groups: dict[ArmKey, list[CellData]],
                   tables: dict[tuple[str, str], dict[ArmKey, ArmTable]] | None = None
                   ) -> dict[str, dict[str, SeedNoise]]:
    """Per unit and decision metric, its :class:`SeedNoise` (absent where no arm of the unit
    has two seeds).

    ``tables``: (unit, metric) -> :func:`unit_tables`, when the caller has them already.
    """
    out: dict[str, dict[str, SeedNoise]] = {}
    for unit in run.experiment.units:
        for metric in decision_metrics(run, unit):
            tab = (tables or {}).get((unit, metric))
            noise = seed_noise(tab if tab is not None else unit_tables(run, groups, unit,
                                                                         metric))
            if noise is not None:
                out.setdefault(unit, {})[metric] = noise
    return out


def noise_record(noise: dict[str, dict[str, SeedNoise]], run: RunData) -> dict[str, Any]:
    """JSON-ready training noise for ``analysis.json``: per unit, the primary metric's figures
    at the top (``metric``, ``variance``, ``sd``, ``df``, ...) and every metric's under
    ``metrics``."""
    out: dict[str, Any] = {}
    for unit, by_metric in noise.items():
        primary = get(run.experiment.units[unit].kind).primary
        if primary not in by_metric:
            continue
        out[unit] = {"metric": primary, **by_metric[primary].to_dict(),
                     "metrics": {m: n.to_dict() for m, n in by_metric.items()}}
    return out


def noise_note(noise: dict[str, dict[str, SeedNoise]], single: list[str], run: RunData,
               opted_out: bool) -> str:
    """One paragraph for the report on what the intervals do and do not cover."""
    if not noise:
        if opted_out:
            return (f"Training noise was switched off (design.noise_seeds: []): the {len(single)} "
                    "single-seed arm(s) are tested on eval items only, which cannot see how much "
                    "a second training run of the same arm would move the metric, so a 'better' "
                    "or 'worse' between them may be training noise.")
        return ("Training noise could not be measured: no arm has several finished seeds (the "
                "design.noise_seeds cells are missing), so every contrast is 'not estimable'. "
                "Run the noise-seed cells, or set seeds: [0, 1, 2].")
    parts = []
    for u, by_metric in noise.items():
        m = get(run.experiment.units[u].kind).primary
        if m in by_metric:
            v = by_metric[m].pooled
            parts.append(f"{u} {m} SD {v.sd:.3f} ({v.df:.0f} df; whole-set spread "
                         f"{math.sqrt(v.naive_variance):.3f})")
    text = ("Eval items and training seeds are crossed: every contrast's variance is the spread "
            "of its per-item differences (eval items, and which items a retrained student "
            "flips) plus the seed variance over each arm's seeds, estimated by the method of "
            "moments so that the item x seed interaction is not counted twice. Retraining "
            "moves the whole set by (seed SD): " + ", ".join(parts) + ". Zero spread across "
            "seeds is an estimate of no retraining noise, not a reason to give up.")
    scaled = sorted({u for u, bm in noise.items() for n in bm.values() if n.by_scale})
    if scaled:
        text += (" Seeds exist at several scales for " + ", ".join(scaled) + ": each arm uses "
                 "the seed variance of its own scale (or the nearest one).")
    missing = [u for u in run.experiment.units if u not in noise]
    if missing:
        text += (f" No seed variance for {', '.join(missing)}"
                 + (": tested on eval items only (noise_seeds: [])." if opted_out else
                    f": {NO_SEEDS}."))
    return text
