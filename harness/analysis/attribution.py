"""Attribution: which bucket and which field helps which unit, and how sure we are.

Cells are grouped into *arms* (same bucket, fields and scale; one cell per seed). Every arm is
compared with the baseline arm on each unit's primary metric, paired over eval items:

- delta with a 95% paired-bootstrap CI (seeds resampled too when there are several);
- p-value: McNemar's exact test when the primary metric is per-item correctness and there is one
  seed, else the bootstrap p-value;
- training noise: where some arm was trained with several seeds (``seeds:`` or
  ``design.noise_seeds``), the pooled seed-to-seed variance of each unit's metric widens every
  contrast involving a single-seed arm (t interval, Welch-Satterthwaite df), because resampling
  eval items cannot see how much a second training run would move a student. Without any
  multi-seed arm the result says so (``training_noise_note``);
- the family of arms x units is corrected with Holm (default) or Benjamini-Hochberg;
- verdict: ``better`` / ``worse`` when the corrected p < 0.05, else ``no evidence`` with the
  minimum detectable effect beside it.

One-factor views: *bucket effects* (arms differing from the reference arm in the bucket only) and
*field effects* (in the field set only), each corrected as its own family; and the "fields worth
keeping" table derived from the field effects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.analysis.load import CellData, RunData
from harness.analysis.stats import (
    adjust,
    mcnemar_exact,
    paired_bootstrap,
    pooled_seed_variance,
    with_training_noise,
)
from harness.units import get, primary_metric

ALPHA = 0.05
ArmKey = tuple[str, str, float]  # bucket, fields, scale


@dataclass
class Contrast:
    """One arm vs a reference arm on one unit."""

    arm: str
    reference: str
    unit: str
    metric: str
    delta: float
    ci_low: float
    ci_high: float
    mde: float
    p: float
    test: str
    n: int
    p_adjusted: float = 1.0
    verdict: str = "no evidence"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def arm_label(key: ArmKey) -> str:
    return f"{key[0]}/{key[1]}/x{key[2]:g}"


def arms(run: RunData) -> dict[ArmKey, list[CellData]]:
    """Cells grouped by (bucket, fields, scale), seeds sorted."""
    out: dict[ArmKey, list[CellData]] = defaultdict(list)
    for c in run.cells:
        out[(c.axes["bucket"], c.axes["fields"], float(c.axes["scale"]))].append(c)
    for cells in out.values():
        cells.sort(key=lambda c: c.axes["seed"])
    return dict(out)


def _aligned(cells: list[CellData], unit: str, ids: list[str]) -> list[dict[str, np.ndarray]]:
    """Per seed, the unit's per-item parts reordered to ``ids``."""
    out = []
    for c in cells:
        ui = c.units[unit]
        pos = {i: k for k, i in enumerate(ui.ids)}
        order = np.array([pos[i] for i in ids])
        out.append({k: v[order] for k, v in ui.parts.items()})
    return out


def _metric_fns(kind: str, parts_per_seed: list[dict[str, np.ndarray]]) -> list[Any]:
    primary = get(kind).primary_from_parts

    def make(parts: dict[str, np.ndarray]) -> Any:
        return lambda idx: primary({k: float(v[idx].sum()) for k, v in parts.items()}, len(idx))

    return [make(p) for p in parts_per_seed]


def compare(run: RunData, ref: list[CellData], trt: list[CellData], unit: str,
            n_boot: int = 1000, seed: int = 0,
            noise: dict[str, Any] | None = None) -> Contrast | None:
    """Paired comparison of two arms on one unit (None when either lacks the unit).

    ``noise`` (this unit's entry of :func:`training_noise`) applies when either arm was trained
    with a single seed: its resampling cannot see how much retraining moves the metric, so the
    item-only interval is widened by the measured seed variance. Arms with several seeds each
    resample their own seeds instead.
    """
    if any(unit not in c.units for c in ref + trt):
        return None
    kind = run.spec["units"][unit]["kind"]
    ids = sorted(set(ref[0].units[unit].ids).intersection(*(set(c.units[unit].ids)
                                                               for c in ref + trt)))
    pr, pt = _aligned(ref, unit, ids), _aligned(trt, unit, ids)
    # Single-seed arms with a measured seed variance: items only here, noise added after.
    widen = noise is not None and (len(ref) == 1 or len(trt) == 1)
    d = paired_bootstrap(_metric_fns(kind, pr), _metric_fns(kind, pt), len(ids), n_boot, seed,
                         resample_seeds=not widen)
    binary = get(kind).binary_primary  # primary = mean of per-item flags: McNemar applies
    if widen:
        assert noise is not None
        d = with_training_noise(d, noise["variance"] * (1 / len(ref) + 1 / len(trt)),
                                noise["df"])
        p, test = d.p_boot, "bootstrap+seed_noise_t"
    elif binary and len(ref) == 1 and len(trt) == 1:
        p, test = mcnemar_exact(pr[0]["correct"], pt[0]["correct"]), "mcnemar_exact"
    else:
        p, test = d.p_boot, "paired_bootstrap"
    key = trt[0].axes
    rkey = ref[0].axes
    return Contrast(arm=arm_label((key["bucket"], key["fields"], float(key["scale"]))),
                    reference=arm_label((rkey["bucket"], rkey["fields"], float(rkey["scale"]))),
                    unit=unit, metric=primary_metric(kind), delta=d.delta, ci_low=d.ci_low,
                    ci_high=d.ci_high, mde=d.mde, p=p, test=test, n=d.n)


def training_noise(run: RunData, groups: dict[ArmKey, list[CellData]]) -> dict[str, Any]:
    """Per unit, how much retraining the same arm moves its primary metric.

    Pooled over every arm trained with several seeds (``seeds:``, or ``design.noise_seeds`` on
    the reference arm), each arm's metric per seed on the eval items all its seeds share.

    Returns:
        ``{unit: {"variance", "sd", "df", "arms": {arm label: [metric per seed]}}}``; units
        with no multi-seed arm are absent.
    """
    out: dict[str, Any] = {}
    for unit, spec in run.spec["units"].items():
        kind = spec["kind"]
        per_arm: dict[str, list[float]] = {}
        for key, cells in groups.items():
            if len(cells) < 2 or any(unit not in c.units for c in cells):
                continue
            ids = sorted(set(cells[0].units[unit].ids).intersection(
                *(set(c.units[unit].ids) for c in cells)))
            idx = np.arange(len(ids))
            per_arm[arm_label(key)] = [fn(idx) for fn in _metric_fns(
                kind, _aligned(cells, unit, ids))]
        pooled = pooled_seed_variance(list(per_arm.values()))
        if pooled is not None:
            out[unit] = {"metric": primary_metric(kind), "variance": pooled[0],
                         "sd": float(np.sqrt(pooled[0])), "df": pooled[1], "arms": per_arm}
    return out


def correct_family(contrasts: list[Contrast], method: str) -> None:
    """Adjust p-values across the family in place and set verdicts."""
    for c, p in zip(contrasts, adjust([c.p for c in contrasts], method), strict=True):
        c.p_adjusted = p
        if p < ALPHA and c.delta != 0:
            c.verdict = "better" if c.delta > 0 else "worse"
        else:
            c.verdict = "no evidence"


def _family(run: RunData, groups: dict[ArmKey, list[CellData]], reference: ArmKey,
            axis: int | None, method: str, n_boot: int,
            noise: dict[str, Any] | None = None) -> list[Contrast]:
    """Every arm vs ``reference`` on every unit, corrected as one family.

    ``axis`` (0 bucket, 1 fields, 2 scale) keeps only arms differing from the reference in that
    axis alone; None keeps every arm.
    """
    if reference not in groups:
        return []
    out = []
    for key, cells in groups.items():
        if key == reference or (axis is not None and any(
                key[i] != reference[i] for i in range(3) if i != axis)):
            continue
        for unit in run.spec["units"]:
            c = compare(run, groups[reference], cells, unit, n_boot,
                        noise=(noise or {}).get(unit))
            if c is not None:
                out.append(c)
    correct_family(out, method)
    return out


def _reference_arm(run: RunData) -> ArmKey:
    design = run.spec["design"]
    base = design.get("base") or run.spec["baseline"]
    return (base["bucket"], base["fields"], float(base["scale"]))


def fields_worth_keeping(run: RunData, field_effects: list[Contrast]) -> list[dict[str, Any]]:
    """Per field (or set of fields that change together) and unit: keep / drop / no evidence.

    A field set that *adds* fields relative to the reference and is significantly better means
    removing them hurts (keep); significantly worse means removing them helps (drop).
    """
    ref_fields = run.spec["fields"][_reference_arm(run)[1]]
    rows = []
    for c in field_effects:
        fields_name = c.arm.split("/")[1]
        other = run.spec["fields"][fields_name]
        changed = [f for f in ("rationale", "limits", "trajectory")
                   if bool(other.get(f)) != bool(ref_fields.get(f))]
        if other.get("confidence") != ref_fields.get("confidence"):
            changed.append(f"confidence={other.get('confidence')}")
        added = all(bool(other.get(f)) for f in changed if "=" not in f)
        if c.verdict == "no evidence":
            verdict = "no evidence"
        elif (c.verdict == "better") == added:
            verdict = "keep (removing hurts)"
        else:
            verdict = "drop (removing helps)"
        rows.append({"fields": "+".join(changed) or fields_name, "field_set": fields_name,
                     "unit": c.unit, "delta": c.delta, "ci": [c.ci_low, c.ci_high],
                     "mde": c.mde, "p_adjusted": c.p_adjusted, "verdict": verdict})
    return rows


def _noise_note(noise: dict[str, Any], single: list[str], run: RunData) -> str:
    """One sentence for the report on what the intervals do and do not cover."""
    if not single:
        return "Every arm was trained with several seeds: intervals resample seeds and items."
    if not noise:
        return (f"{len(single)} arm(s) were trained once (one seed): their intervals and tests "
                "cover which eval items were drawn, not how much a second training run of the "
                "same arm would move the metric, so a 'better' or 'worse' between single-seed "
                "arms may be training noise. Measure it with design.noise_seeds (the reference "
                "arm retrained with extra seeds) or seeds: [0, 1, 2].")
    parts = [f"{u} {n['metric']} SD {n['sd']:.3f} ({n['df']} df)" for u, n in noise.items()]
    missing = [u for u in run.spec["units"] if u not in noise]
    text = ("Retraining the same arm moves the metric by (seed-to-seed SD): " + ", ".join(parts)
            + f". Contrasts of single-seed arms ({len(single)}) are widened by it (t intervals).")
    if missing:
        text += f" No seed variance for {', '.join(missing)}: those intervals cover items only."
    return text


def attribution(run: RunData, method: str = "holm", n_boot: int = 1000) -> dict[str, Any]:
    """All attribution views of a run (JSON-ready)."""
    groups = arms(run)
    b = run.spec["baseline"]
    baseline = (b["bucket"], b["fields"], float(b["scale"]))
    if baseline not in groups:
        return {"correction": method, "error": "the baseline cell has no finished results",
                "vs_baseline": [], "bucket_effects": [], "field_effects": [],
                "fields_worth_keeping": []}
    noise = training_noise(run, groups)
    vs_base = _family(run, groups, baseline, None, method, n_boot, noise)
    reference = _reference_arm(run)
    buckets = _family(run, groups, reference, 0, method, n_boot, noise)
    fields = _family(run, groups, reference, 1, method, n_boot, noise)
    single = sorted(arm_label(k) for k, cells in groups.items() if len(cells) == 1)
    return {
        "correction": method, "alpha": ALPHA, "baseline": arm_label(baseline),
        "reference_arm": arm_label(reference),
        "training_noise": noise,
        "training_noise_note": _noise_note(noise, single, run),
        "vs_baseline": [c.to_dict() for c in vs_base],
        "bucket_effects": [c.to_dict() for c in buckets],
        "field_effects": [c.to_dict() for c in fields],
        "fields_worth_keeping": fields_worth_keeping(run, fields),
    }
