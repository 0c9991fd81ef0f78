"""Attribution: which bucket and which field helps which unit, on which metric, how sure we are.

Cells are grouped into *arms* (:mod:`harness.analysis.arms`: same bucket, fields and scale; one
cell per seed). Every arm is compared with the baseline arm on each unit's *decision metrics*
(the primary and what the kind declares besides: exact-record match and each field's F1, refusal
recall and over-refusal, ...), paired over eval items, an arm being the mean over all its seeds
(never one seed against one):

- training noise (:mod:`harness.analysis.noise`): a student trained once is one draw of its
  training run, and no resampling of eval items sees how much a second run would move it.
  ``design.noise_seeds`` (default ``[1, 2]``) retrains the reference arm and the baseline; the
  pooled seed-to-seed variance of each unit's metric (Student t, its degrees of freedom) is
  added to every contrast's items-only bootstrap variance (Welch-Satterthwaite df). When it
  cannot be estimated (no arm with several seeds, fewer than 2 df, or no spread at all, as at a
  ceiling) the contrast is ``not estimable: <reason>``, never silently items-only. Only an
  explicit ``noise_seeds: []`` with single-seed arms gives items-only tests, and the note says
  so;
- p-value: the t test above; McNemar's exact test (items only, per-item correctness) or the
  bootstrap p (printed ``< 1/B`` when no resample crossed 0: ``p_floor``, ``p_text``);
- intervals respect the metric: a bounded metric's interval is clipped to the possible
  differences (``ci_clipped``), and one wider than the metric's range is not estimable;
- the family (arms x units x decision metrics) is corrected with Holm (default) or
  Benjamini-Hochberg; ``families`` records its size and metrics;
- verdict: ``better`` / ``worse`` (in the metric's own direction) when the corrected p < 0.05,
  else ``no evidence`` with the minimum detectable effect beside it.

One-factor views: *bucket effects* (arms differing from the reference arm in the bucket only) and
*field effects* (in the field set only), each corrected as its own family; and the "fields worth
keeping" table derived from the field effects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from harness.analysis.arms import (
    ArmKey,
    aligned_parts,
    arm_label,
    arms,
    label_of,
    metric_fns,
    reference_arm,
    shared_ids,
)
from harness.analysis.load import CellData, RunData
from harness.analysis.noise import noise_note, noise_status, training_noise
from harness.analysis.stats import (
    adjust,
    fit_to_range,
    format_p,
    mcnemar_exact,
    paired_bootstrap,
    with_training_noise,
)
from harness.units import get

__all__ = ["ALPHA", "NOT_ESTIMABLE", "ArmKey", "Contrast", "arm_label", "arms", "attribution",
           "compare", "correct_family", "family_summary", "fields_worth_keeping",
           "noise_status", "training_noise"]

ALPHA = 0.05
NOT_ESTIMABLE = "not estimable"


@dataclass
class Contrast:
    """One arm vs a reference arm on one decision metric of one unit.

    ``seeds`` is (reference seeds, arm seeds); ``covers`` says which sources of variation the
    interval and test include; ``not_estimable`` the reason when they cannot be trusted (the
    contrast then stays out of the corrected family, ``p_adjusted`` None).
    """

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
    p_adjusted: float | None = 1.0
    verdict: str = "no evidence"
    primary: bool = True
    higher_is_better: bool = True
    seeds: tuple[int, int] = (1, 1)
    covers: str = "items"
    p_floor: float = 0.0
    p_text: str = ""
    p_adjusted_text: str = ""
    ci_clipped: bool = False
    not_estimable: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(run: RunData, ref: list[CellData], trt: list[CellData], unit: str,
            metric: str | None = None, n_boot: int = 1000, seed: int = 0,
            noise: dict[str, Any] | None = None, opted_out: bool = False) -> Contrast | None:
    """Paired comparison of two arms (each the mean over its seeds) on one unit's metric.

    Args:
        metric: a decision metric of the unit's kind (default: the primary).
        noise: this metric's entry of :func:`training_noise` (``variance``, ``df``), or None.
        opted_out: training noise was switched off (``design.noise_seeds: []``).

    Returns:
        The contrast, or None when either arm lacks the unit or the run lacks the metric's
        per-item parts (predictions written before the kind declared it).
    """
    if any(unit not in c.units for c in ref + trt):
        return None
    kind_name = run.spec["units"][unit]["kind"]
    kind = get(kind_name)
    metric = metric or kind.primary
    ids = shared_ids(ref + trt, unit)
    pr, pt = aligned_parts(ref, unit, ids), aligned_parts(trt, unit, ids)
    try:
        fr, ft = metric_fns(kind_name, metric, pr), metric_fns(kind_name, metric, pt)
    except KeyError:
        return None
    reason = noise_status(noise, opted_out)
    single = len(ref) == 1 and len(trt) == 1
    per_item = kind.metric_parts(metric) == ("correct",) or (
        metric == kind.primary and kind.binary_primary)  # a mean of 0/1: McNemar applies
    # Items only here (every seed of each arm averaged in each replicate); seed noise is added
    # analytically below, because resampling 1-3 seeds cannot estimate it.
    d = paired_bootstrap(fr, ft, len(ids), n_boot, seed, resample_seeds=False)
    if noise is not None and reason is None:
        d = with_training_noise(d, noise["variance"] * (1 / len(ref) + 1 / len(trt)),
                                noise["df"])
        p, test, covers = d.p_boot, "bootstrap+seed_noise_t", "items + training seeds"
    else:
        covers = ("items only (training noise switched off: design.noise_seeds: [])"
                  if reason is None else "items only")
        if per_item and single:
            p, test = mcnemar_exact(pr[0]["correct"], pt[0]["correct"]), "mcnemar_exact"
            d = replace(d, p_floor=0.0)  # an exact test resolves any p
        else:
            p, test = d.p_boot, "paired_bootstrap"
    d, wide, clipped = fit_to_range(d, kind.metric_def(metric).bounds)
    return Contrast(arm=label_of(trt), reference=label_of(ref), unit=unit, metric=metric,
                    delta=d.delta, ci_low=d.ci_low, ci_high=d.ci_high, mde=d.mde, p=p,
                    test=test, n=d.n, primary=metric == kind.primary,
                    higher_is_better=kind.metric_def(metric).higher_is_better,
                    seeds=(len(ref), len(trt)), covers=covers, p_floor=d.p_floor,
                    ci_clipped=clipped, not_estimable=reason or wide)


def correct_family(contrasts: list[Contrast], method: str) -> None:
    """Adjust p-values across the family in place and set verdicts.

    Not-estimable contrasts stay out of the family (their p-value means nothing); the p-value
    texts show ``< floor`` where a bootstrap resolved no smaller p, and the correction uses
    the floor for them.
    """
    tested = [c for c in contrasts if c.not_estimable is None]
    # A bootstrap p of 0 only says p < 1/B: decide on the floor itself (conservative), so
    # that a few resamples can never make a significant result on their own.
    adjusted = adjust([max(c.p, c.p_floor) for c in tested], method)
    for c, p in zip(tested, adjusted, strict=True):
        c.p_adjusted = p
        c.p_text = format_p(c.p, c.p_floor)
        c.p_adjusted_text = f"< {p:.2g}" if c.p < c.p_floor else format_p(p)
        if p < ALPHA and c.delta != 0:
            c.verdict = "better" if (c.delta > 0) == c.higher_is_better else "worse"
        else:
            c.verdict = "no evidence"
    for c in contrasts:
        if c.not_estimable is not None:
            c.p_adjusted, c.p_adjusted_text = None, "–"
            c.p_text = format_p(c.p, c.p_floor)
            c.verdict = f"{NOT_ESTIMABLE}: {c.not_estimable}"


def _family(run: RunData, groups: dict[ArmKey, list[CellData]], reference: ArmKey,
            axis: int | None, method: str, n_boot: int,
            noise: dict[str, Any] | None = None, opted_out: bool = False) -> list[Contrast]:
    """Every arm vs ``reference`` on every decision metric of every unit, corrected as one
    family.

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
        for unit, spec in run.spec["units"].items():
            entry = (noise or {}).get(unit, {}).get("metrics", {})
            for metric in get(spec["kind"]).decision_metrics(spec):
                c = compare(run, groups[reference], cells, unit, metric, n_boot,
                            noise=entry.get(metric), opted_out=opted_out)
                if c is not None:
                    out.append(c)
    correct_family(out, method)
    return out


def family_summary(contrasts: list[Contrast], method: str) -> dict[str, Any]:
    """What formed a family: its size (tests corrected together), the metrics per unit, and
    how many contrasts were left out as not estimable."""
    metrics: dict[str, list[str]] = {}
    for c in contrasts:
        seen = metrics.setdefault(c.unit, [])
        if c.metric not in seen:
            seen.append(c.metric)
    return {"correction": method,
            "size": sum(c.not_estimable is None for c in contrasts),
            "not_estimable": sum(c.not_estimable is not None for c in contrasts),
            "metrics": metrics}


def fields_worth_keeping(run: RunData, field_effects: list[Contrast]) -> list[dict[str, Any]]:
    """Per field (or set of fields that change together) and unit: keep / drop / no evidence.

    A field set that *adds* fields relative to the reference and is significantly better means
    removing them hurts (keep); significantly worse means removing them helps (drop).
    """
    ref_fields = run.spec["fields"][reference_arm(run)[1]]
    rows = []
    for c in field_effects:
        fields_name = c.arm.split("/")[1]
        other = run.spec["fields"][fields_name]
        changed = [f for f in ("rationale", "limits", "trajectory")
                   if bool(other.get(f)) != bool(ref_fields.get(f))]
        if other.get("confidence") != ref_fields.get("confidence"):
            changed.append(f"confidence={other.get('confidence')}")
        added = all(bool(other.get(f)) for f in changed if "=" not in f)
        if c.verdict not in ("better", "worse"):
            verdict = c.verdict  # no evidence, or not estimable with its reason
        elif (c.verdict == "better") == added:
            verdict = "keep (removing hurts)"
        else:
            verdict = "drop (removing helps)"
        rows.append({"fields": "+".join(changed) or fields_name, "field_set": fields_name,
                     "unit": c.unit, "metric": c.metric, "delta": c.delta,
                     "ci": [c.ci_low, c.ci_high], "mde": c.mde, "p_adjusted": c.p_adjusted,
                     "verdict": verdict})
    return rows


def attribution(run: RunData, method: str = "holm", n_boot: int = 1000) -> dict[str, Any]:
    """All attribution views of a run (JSON-ready)."""
    groups = arms(run)
    b = run.spec["baseline"]
    baseline = (b["bucket"], b["fields"], float(b["scale"]))
    if baseline not in groups:
        return {"correction": method, "error": "the baseline cell has no finished results",
                "vs_baseline": [], "bucket_effects": [], "field_effects": [],
                "fields_worth_keeping": []}
    # An explicit ``noise_seeds: []`` switches the measurement off; the default measures it.
    opted_out = run.spec["design"].get("noise_seeds") == []
    noise = training_noise(run, groups)
    vs_base = _family(run, groups, baseline, None, method, n_boot, noise, opted_out)
    reference = reference_arm(run)
    buckets = _family(run, groups, reference, 0, method, n_boot, noise, opted_out)
    fields = _family(run, groups, reference, 1, method, n_boot, noise, opted_out)
    single = sorted(arm_label(k) for k, cells in groups.items() if len(cells) == 1)
    return {
        "correction": method, "alpha": ALPHA, "baseline": arm_label(baseline),
        "reference_arm": arm_label(reference),
        "training_noise": noise,
        "training_noise_note": noise_note(noise, single, run, opted_out),
        "families": {"vs_baseline": family_summary(vs_base, method),
                     "bucket_effects": family_summary(buckets, method),
                     "field_effects": family_summary(fields, method)},
        "vs_baseline": [c.to_dict() for c in vs_base],
        "bucket_effects": [c.to_dict() for c in buckets],
        "field_effects": [c.to_dict() for c in fields],
        "fields_worth_keeping": fields_worth_keeping(run, fields),
    }
