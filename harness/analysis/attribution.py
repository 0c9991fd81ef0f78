"""Attribution: which bucket and which field helps which unit, on which metric, how sure we are.

Cells are grouped into *arms* (:mod:`harness.analysis.arms`: same bucket, fields and scale; one
cell per seed). Every arm is compared with the baseline arm on each unit's *decision metrics*
(the primary and what the kind declares besides: exact-record match and each field's F1, refusal
recall and over-refusal, ...), paired over eval items, an arm being the mean over all its seeds
(never one seed against one):

- one model of the noise (:mod:`harness.analysis.variance`): eval items and training seeds are
  crossed, and a contrast's variance is the spread of its per-item differences of seed-averaged
  pseudo-values (item noise) plus each arm's seed mean square over its seeds (method of
  moments, scale-aware: :mod:`harness.analysis.noise`), never counting the item x seed
  interaction twice. The test refers the delta to a normal scale mixture over the seed
  variance's chi-square (a generalized pivot that holds its level in the tails, where Holm tests
  a family's strongest contrast); with no variation at all (every item and seed at 1.0 against
  every one at 0.0) the exact sign-flip p ``2^(1-n)``;
- a contrast is ``not estimable`` only when there is no variance estimate at all: no arm of the
  unit has two seeds (unless ``design.noise_seeds: []`` switched training noise off: then it is
  tested on eval items only, McNemar's exact test for 0/1 metrics of two one-seed arms); the
  reason says what would make it estimable;
- intervals respect the metric: a bounded metric's interval is clipped to the possible
  differences (``ci_clipped``); one that is wide (a seed variance with few degrees of freedom)
  is still an estimate, and its minimum detectable effect says how little it can tell;
- the family (arms x units x decision metrics) is corrected with Holm (default) or
  Benjamini-Hochberg; ``families`` records its size and metrics. The minimum detectable effect
  beside a verdict is the one at the corrected level (Bonferroni's ``alpha / m``, which is what
  Holm demands of the strongest contrast), with the uncorrected one kept as ``mde_uncorrected``;
- verdict: ``better`` / ``worse`` (in the metric's own direction) when the corrected p < 0.05;
  ``no difference`` when the two arms score identically on every eval item in every seed;
  else ``no evidence`` with the minimum detectable effect beside it.

One-factor views: *bucket effects* (arms differing from the reference arm in the bucket only) and
*field effects* (in the field set only), each corrected as its own family; and the "fields worth
keeping" table derived from the field effects.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from harness.analysis.arms import (
    ArmKey,
    arm_label,
    arms,
    reference_arm,
)
from harness.analysis.load import CellData, RunData, decision_metrics
from harness.analysis.noise import (
    NO_SEEDS,
    SeedNoise,
    noise_note,
    noise_record,
    training_noise,
    unit_tables,
)
from harness.analysis.stats import adjust, format_p, mcnemar_exact
from harness.analysis.variance import ArmTable, Estimate, difference
from harness.units import get

__all__ = ["ALPHA", "NOT_ESTIMABLE", "NO_DIFFERENCE", "ArmKey", "Contrast", "arm_label", "arms",
           "attribution", "correct_family", "family_summary",
           "fields_worth_keeping", "training_noise"]

ALPHA = 0.05
POWER = 0.8
NOT_ESTIMABLE = "not estimable"
NO_DIFFERENCE = "no difference"


@dataclass
class Contrast:
    """One arm vs a reference arm on one decision metric of one unit.

    ``seeds`` is (reference seeds, arm seeds); ``covers`` says which sources of variation the
    interval and test include; ``se`` and ``df`` are the delta's standard error and degrees of
    freedom (:class:`harness.analysis.variance.Estimate`); ``mde`` is the minimum detectable
    effect at the family's corrected level, ``mde_uncorrected`` at 5 %; ``not_estimable`` the
    reason when there is no variance estimate (the contrast then stays out of the corrected
    family, ``p_adjusted`` None).
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
    se: float = 0.0
    df: float = math.inf
    mde_uncorrected: float = 0.0
    identical: bool = False
    var_items: float = 0.0
    var_seeds: float = 0.0
    seed_df: float = math.inf

    @property
    def estimate(self) -> Estimate:
        """The delta as :class:`~harness.analysis.variance.Estimate` (its reference
        distribution)."""
        return Estimate(self.delta, self.var_items, self.var_seeds, self.seed_df, self.n)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("df", "seed_df"):  # JSON has no inf
            out[key] = None if not math.isfinite(getattr(self, key)) else getattr(self, key)
        return out


def _contrast(run: RunData, unit: str, metric: str, ref: tuple[ArmKey, ArmTable],
              trt: tuple[ArmKey, ArmTable], noise: SeedNoise | None, opted_out: bool,
              parts: tuple[Any, Any] | None = None) -> Contrast:
    """One contrast from the two arms' tables (see the module docstring)."""
    kind = get(run.experiment.units[unit].kind)
    (rk, rt), (tk, tt) = ref, trt
    identical = bool(rt.values.shape == tt.values.shape and (rt.values == tt.values).all()
                     and (rt.whole == tt.whole).all())
    reason = None
    test = "items + seeds (normal mixture over the seed variance)"
    if noise is not None:
        sr, st = noise.for_scale(rk[2]), noise.for_scale(tk[2])
        est = difference(rt, tt, sr, st)
        covers = "items + training seeds"
    else:
        est = difference(rt, tt, None, None)
        if opted_out:
            covers = "items only (training noise switched off: design.noise_seeds: [])"
        else:
            covers = "items only"
            reason = NO_SEEDS
    if est.var <= 0:
        test = "exact sign-flip (no variation on any item or seed)"
    p = est.p_value()
    binary = kind.metric_parts(metric) == ("correct",) or (
        metric == kind.primary and kind.binary_primary)
    if noise is None and opted_out and binary and rt.k == 1 and tt.k == 1 and parts:
        p, test = mcnemar_exact(parts[0]["correct"], parts[1]["correct"]), "mcnemar_exact"
    lo, hi = est.interval()
    clipped = False
    bounds = kind.metric_def(metric).bounds
    if bounds is not None:
        # an interval wider than the metric allows says little, but it is an estimate: it is
        # clipped to the possible differences and its MDE says how little it can tell
        span = bounds[1] - bounds[0]
        nlo, nhi = max(lo, -span), min(hi, span)
        clipped = (nlo, nhi) != (lo, hi)
        lo, hi = nlo, nhi
    mde = est.mde(ALPHA, POWER)
    return Contrast(arm=arm_label(tk), reference=arm_label(rk), unit=unit, metric=metric,
                    delta=est.value, ci_low=lo, ci_high=hi, mde=mde, p=p, test=test, n=est.n,
                    primary=metric == kind.primary,
                    higher_is_better=kind.metric_def(metric).higher_is_better,
                    seeds=(rt.k, tt.k), covers=covers, ci_clipped=clipped,
                    not_estimable=reason, se=est.se, df=est.df, mde_uncorrected=mde,
                    identical=identical, var_items=est.var_items, var_seeds=est.var_seeds,
                    seed_df=est.seed_df)


def _correct_parts(ref: list[CellData], trt: list[CellData], unit: str
                   ) -> tuple[Any, Any] | None:
    """The 0/1 correctness of two one-seed arms on their shared items (McNemar), else None."""
    if len(ref) != 1 or len(trt) != 1:
        return None
    from harness.analysis.arms import aligned_parts, shared_ids
    ids = shared_ids(ref + trt, unit)
    return aligned_parts(ref, unit, ids)[0], aligned_parts(trt, unit, ids)[0]


def correct_family(contrasts: list[Contrast], method: str) -> None:
    """Adjust p-values across the family in place, set each minimum detectable effect at the
    corrected level, and set the verdicts.

    Not-estimable contrasts stay out of the family (they have no variance estimate).
    """
    tested = [c for c in contrasts if c.not_estimable is None]
    adjusted = adjust([max(c.p, c.p_floor) for c in tested], method)
    m = max(1, len(tested))
    for c, p in zip(tested, adjusted, strict=True):
        c.p_adjusted = p
        c.p_text = format_p(c.p, c.p_floor)
        c.p_adjusted_text = format_p(p)
        # Holm tests the strongest contrast at alpha/m (BH at alpha/m as well, when only one
        # effect is real): that is the effect size the family can find with 80 % power
        c.mde = c.estimate.mde(ALPHA / m, POWER)
        if p < ALPHA and c.delta != 0:
            c.verdict = "better" if (c.delta > 0) == c.higher_is_better else "worse"
        elif c.identical:
            c.verdict = f"{NO_DIFFERENCE}: identical on every eval item in every seed"
        else:
            c.verdict = "no evidence"
    for c in contrasts:
        if c.not_estimable is not None:
            c.p_adjusted, c.p_adjusted_text = None, "–"
            c.p_text = format_p(c.p, c.p_floor)
            c.verdict = f"{NOT_ESTIMABLE}: {c.not_estimable}"


def _family(run: RunData, groups: dict[ArmKey, list[CellData]], reference: ArmKey,
            axis: int | None, method: str, tables: dict[tuple[str, str], dict[ArmKey, ArmTable]],
            noise: dict[str, dict[str, SeedNoise]], opted_out: bool) -> list[Contrast]:
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
        for unit in run.experiment.units:
            for metric in decision_metrics(run, unit):
                tab = tables.get((unit, metric), {})
                if reference not in tab or key not in tab:
                    continue
                out.append(_contrast(run, unit, metric, (reference, tab[reference]),
                                     (key, tab[key]), noise.get(unit, {}).get(metric),
                                     opted_out,
                                     _correct_parts(groups[reference], cells, unit)))
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
    ref_fields = run.experiment.fields[reference_arm(run)[1]]
    rows = []
    for c in field_effects:
        fields_name = c.arm.split("/")[1]
        other = run.experiment.fields[fields_name]
        changed = [f for f in ("rationale", "limits", "trajectory")
                   if getattr(other, f) != getattr(ref_fields, f)]
        if other.confidence != ref_fields.confidence:
            changed.append(f"confidence={other.confidence}")
        added = all(getattr(other, f) for f in changed if "=" not in f)
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
    """All attribution views of a run (JSON-ready). ``n_boot`` is kept for callers; the
    contrasts are analytic (:mod:`harness.analysis.variance`)."""
    groups = arms(run)
    b = run.experiment.baseline
    baseline = (b.bucket, b.fields, float(b.scale))
    if baseline not in groups:
        return {"correction": method, "error": "the baseline cell has no finished results",
                "vs_baseline": [], "bucket_effects": [], "field_effects": [],
                "fields_worth_keeping": []}
    # An explicit ``noise_seeds: []`` switches the measurement off; the default measures it.
    opted_out = run.experiment.design.noise_seeds == []
    tables = {(unit, metric): unit_tables(run, groups, unit, metric)
              for unit in run.experiment.units for metric in decision_metrics(run, unit)}
    noise = training_noise(run, groups, tables)
    vs_base = _family(run, groups, baseline, None, method, tables, noise, opted_out)
    reference = reference_arm(run)
    buckets = _family(run, groups, reference, 0, method, tables, noise, opted_out)
    fields = _family(run, groups, reference, 1, method, tables, noise, opted_out)
    single = sorted(arm_label(k) for k, cells in groups.items() if len(cells) == 1)
    return {
        "correction": method, "alpha": ALPHA, "baseline": arm_label(baseline),
        "reference_arm": arm_label(reference),
        "training_noise": noise_record(noise, run),
        "training_noise_note": noise_note(noise, single, run, opted_out),
        "families": {"vs_baseline": family_summary(vs_base, method),
                     "bucket_effects": family_summary(buckets, method),
                     "field_effects": family_summary(fields, method)},
        "vs_baseline": [c.to_dict() for c in vs_base],
        "bucket_effects": [c.to_dict() for c in buckets],
        "field_effects": [c.to_dict() for c in fields],
        "fields_worth_keeping": fields_worth_keeping(run, fields),
    }
