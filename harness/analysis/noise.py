"""Training noise: how much retraining the same arm moves each unit's decision metrics.

A student trained once is one draw of its training run, and no resampling of eval items sees
how much a second run would move it. ``design.noise_seeds`` (default ``[1, 2]``) retrains the
reference arm and the baseline; the pooled seed-to-seed variance of each unit's metric (Student
t, its degrees of freedom) is what :mod:`harness.analysis.attribution` adds to every contrast's
items-only bootstrap variance. When it cannot be estimated (no arm with several seeds, fewer
than 2 df, or no spread at all, as at a ceiling) :func:`noise_status` gives the reason the
contrast is ``not estimable``; :func:`noise_note` is the report's paragraph on what the
intervals cover.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.analysis.arms import ArmKey, aligned_parts, arm_label, metric_fns, shared_ids
from harness.analysis.load import CellData, RunData
from harness.analysis.stats import pooled_seed_variance
from harness.units import get


def noise_status(entry: dict[str, Any] | None, opted_out: bool) -> str | None:
    """Why the seed variance of one unit's metric cannot be used (None: it can, or training
    noise was switched off with ``noise_seeds: []`` and no arm has several seeds)."""
    if entry is None:
        return None if opted_out else (
            "no arm was trained with several seeds (the design.noise_seeds cells are missing), "
            "so retraining noise is unmeasured")
    if entry["df"] < 2:
        return (f"the seed variance has {entry['df']} degree of freedom (needs >= 2: train one "
                "arm with >= 3 seeds)")
    if entry["variance"] <= 0:
        return ("the seeds did not move the metric at all (zero spread, as at a ceiling or "
                "floor), so the seed variance cannot be estimated")
    return None


def training_noise(run: RunData, groups: dict[ArmKey, list[CellData]]) -> dict[str, Any]:
    """Per unit, how much retraining the same arm moves each decision metric.

    Pooled over every arm trained with several seeds (``seeds:``, or ``design.noise_seeds`` on
    the reference arm and the baseline), each arm's metric per seed on the eval items all its
    seeds share.

    Returns:
        ``{unit: {"metric", "variance", "sd", "df", "arms", "metrics": {metric: {"variance",
        "sd", "df", "arms"}}}}`` (the top level is the primary metric's; ``arms``: arm label ->
        metric per seed); units with no multi-seed arm are absent.
    """
    out: dict[str, Any] = {}
    for unit, spec in run.spec["units"].items():
        kind = get(spec["kind"])
        by_metric: dict[str, Any] = {}
        for metric in kind.decision_metrics(spec):
            per_arm: dict[str, list[float]] = {}
            for key, cells in groups.items():
                if len(cells) < 2 or any(unit not in c.units for c in cells):
                    continue
                ids = shared_ids(cells, unit)
                try:
                    fns = metric_fns(spec["kind"], metric, aligned_parts(cells, unit, ids))
                except KeyError:
                    break
                per_arm[arm_label(key)] = [fn(np.arange(len(ids))) for fn in fns]
            pooled = pooled_seed_variance(list(per_arm.values()))
            if pooled is not None:
                by_metric[metric] = {"variance": pooled[0], "sd": float(np.sqrt(pooled[0])),
                                     "df": pooled[1], "arms": per_arm}
        if kind.primary in by_metric:
            out[unit] = {"metric": kind.primary, **by_metric[kind.primary],
                         "metrics": by_metric}
    return out


def noise_note(noise: dict[str, Any], single: list[str], run: RunData, opted_out: bool) -> str:
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
    parts = [f"{u} {n['metric']} SD {n['sd']:.3f} ({n['df']} df)" for u, n in noise.items()]
    text = ("Retraining the same arm moves the metric by (seed-to-seed SD): " + ", ".join(parts)
            + ". Every contrast adds this seed variance to the eval-item variance (t intervals "
            "with its degrees of freedom); arms with several seeds count as their mean.")
    missing = [u for u in run.spec["units"] if u not in noise]
    if missing:
        text += f" No seed variance for {', '.join(missing)}: their contrasts are not estimable."
    bad = sorted({f"{u} {m}: {why}" for u, n in noise.items() for m, e in n["metrics"].items()
                  if (why := noise_status(e, opted_out)) is not None})
    if bad:
        text += " Not estimable: " + "; ".join(bad) + "."
    return text

