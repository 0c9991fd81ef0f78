"""Copied teacher errors, per arm: what the ``teacher_bias`` signal reads.

The worker records, per cell x unit x teacher, how many of the teacher's wrong answers the
student repeats and how many a student erring independently of that teacher would repeat
(:func:`harness.evaluate.units.fidelity`). Here those records become one finding per *arm*
(the cells of one bucket, field set and scale, all seeds) x unit x teacher, for:

- every **single-teacher arm** (its bucket's ``teachers`` lists one teacher), against that
  teacher: the arm trained on one teacher's answers only, so that teacher's errors are the ones
  it can inherit — and an arm the gate did not choose may still be the one a team ships next;
- the **chosen arm**, against every teacher.

Seeds of one arm are pooled: the rates are their means, the binomial test counts every seed's
repeated errors, and the interval is the mean of the seeds' bounds (as if the seeds were
perfectly correlated: wider than pooling independent seeds, never narrower).
"""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

from harness.analysis.arms import arm_label, arms
from harness.analysis.load import CellData, RunData

#: One-sided significance level of the copied-error test.
ALPHA = 0.05
SINGLE, CHOSEN = "single-teacher arm", "chosen arm"


@dataclass(frozen=True)
class Copying:
    """One arm x unit x teacher: the copied-error rate against its teacher-independent chance.

    Attributes:
        arm: the arm's label (``bucket/fields/x<scale>``).
        role: why it is checked: :data:`SINGLE` or :data:`CHOSEN`.
        rate, chance: copied-error rate and chance rate (means over the arm's seeds).
        excess: ``rate - chance``.
        ci_low, ci_high: 95% interval of the excess (None for records without one).
        p: one-sided binomial p-value of copying beyond chance (all seeds' errors together).
        teacher_wrong: the teacher's wrong answers on the unit's eval items (one seed's count).
        seeds: how many trainings the arm has.
    """

    arm: str
    role: str
    unit: str
    teacher: str
    rate: float
    chance: float
    excess: float
    ci_low: float | None
    ci_high: float | None
    p: float
    teacher_wrong: int
    seeds: int

    def fires(self, threshold: float) -> bool:
        """Copies beyond chance by more than ``threshold``, significantly (p < :data:`ALPHA`
        and, where the record has an interval, its lower bound above 0)."""
        return (self.excess > threshold and self.p < ALPHA
                and (self.ci_low is None or self.ci_low > 0))

    def describe(self) -> str:
        """One line naming the arm, the unit and the teacher, with the evidence."""
        ci = (f" [95% CI {self.ci_low:+.3f}, {self.ci_high:+.3f}]"
              if self.ci_low is not None and self.ci_high is not None else "")
        seeds = f", {self.seeds} seeds" if self.seeds > 1 else ""
        return (f"{self.role} {self.arm} on {self.unit} repeats {self.rate:.3f} of teacher "
                f"{self.teacher}'s {self.teacher_wrong} wrong answers vs {self.chance:.3f} by "
                f"chance (excess {self.excess:+.3f}{ci}, one-sided binomial p = {self.p:.3g}"
                f"{seeds})")

def _pooled(arm: str, role: str, unit: str, teacher: str, fids: list[dict[str, float]]
            ) -> Copying:
    """One finding from the seeds' fidelity records of one teacher on one unit."""
    rates = [float(f["copied_error_rate"]) for f in fids]
    chances = [float(f.get("copied_error_chance", 0.0)) for f in fids]
    wrong = [int(f.get("teacher_wrong", 0)) for f in fids]
    rate, chance = sum(rates) / len(fids), sum(chances) / len(fids)
    n = sum(wrong)
    k = sum(round(r * w) for r, w in zip(rates, wrong, strict=True))
    p = (float(binomtest(k, n, min(max(chance, 0.0), 1.0), alternative="greater").pvalue)
         if n else 1.0)
    has_ci = all("copied_excess_low" in f for f in fids)
    lo = sum(f["copied_excess_low"] for f in fids) / len(fids) if has_ci else None
    hi = sum(f["copied_excess_high"] for f in fids) / len(fids) if has_ci else None
    return Copying(arm=arm, role=role, unit=unit, teacher=teacher, rate=rate, chance=chance,
                   excess=rate - chance, ci_low=lo, ci_high=hi, p=p,
                   teacher_wrong=max(wrong), seeds=len(fids))


def _arm_findings(arm: str, role: str, cells: list[CellData], teachers: list[str] | None
                  ) -> list[Copying]:
    """Findings of one arm (``teachers``: the teachers to check, None = every teacher)."""
    out = []
    units = sorted({u for c in cells for u in c.metrics.units})
    for unit in units:
        names = sorted({t for c in cells for t in c.metrics.units.get(unit, {}).get(
            "fidelity", {})})
        for t in names:
            if teachers is not None and t not in teachers:
                continue
            fids = [c.metrics.units[unit]["fidelity"][t] for c in cells
                    if t in c.metrics.units.get(unit, {}).get("fidelity", {})
                    and "copied_error_rate" in c.metrics.units[unit]["fidelity"][t]]
            if fids:
                out.append(_pooled(arm, role, unit, t, fids))
    return out


def copying(run: RunData, chosen: CellData) -> list[Copying]:
    """The findings of every single-teacher arm (against its teacher) and of the chosen cell's
    arm (against every teacher); an arm that is both is listed once, as the chosen arm."""
    a = chosen.axes
    chosen_key = (a["bucket"], a["fields"], float(a["scale"]))
    out = []
    for key, cells in arms(run).items():
        bucket = run.experiment.buckets.get(key[0])
        teachers = bucket.teachers if bucket is not None else "all"
        if key == chosen_key:
            out += _arm_findings(arm_label(key), CHOSEN, cells, None)
        elif isinstance(teachers, list) and len(teachers) == 1:
            out += _arm_findings(arm_label(key), SINGLE, cells, teachers)
    return out
