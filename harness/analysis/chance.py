"""Did a student learn anything? Each cell against chance and against the teachers, per unit.

A metric means little without the level a student reaches by learning nothing. Per unit, on the
eval items the run has (their references come with the predictions), the *chance level* is the
higher of:

- the **best constant answer**: always answering the most frequent reference (references are
  grouped by the kind's decision key, so every answerable reply of a refusal unit counts as one
  "answer" class; between equally frequent groups the one scoring higher, of the first
  :data:`MAX_TIED` in text order), scored on the unit's primary metric — the majority class for
  a label unit;
- **uniform guessing** for kinds that answer from fixed choices with a per-item correctness
  metric: 1/k accuracy for a label unit with k labels.

The student's margin is primary(student) − chance with a 95% paired bootstrap CI over eval items
(:func:`harness.analysis.stats.paired_bootstrap`; the constant answer is rescored on every
resample, uniform guessing is its expected value). The verdict is ``above chance`` when the CI's
lower bound is above 0, ``below chance`` when its upper bound is below 0, else
``indistinguishable from chance``; only ``above chance`` counts as having learned something
(:func:`learned`). The audited teachers' primary metric on the same unit (``teacher_audit.json``)
stands beside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harness.analysis.load import CellData, RunData
from harness.analysis.stats import MetricFn, paired_bootstrap
from harness.store.folder import RunFolder
from harness.units import get, primary_metric

ABOVE, SAME, BELOW = "above chance", "indistinguishable from chance", "below chance"
#: Equally frequent constant answers scored to pick the best one (see :func:`chance_level`).
MAX_TIED = 16


@dataclass(frozen=True)
class ChanceLevel:
    """What a unit's primary metric is worth without learning, on a set of eval items.

    Attributes:
        constant_answer: the best constant answer (a reference text).
        constant_share: share of the references in its decision-key group.
        uniform: the expected primary metric of uniform guessing over the kind's choices (1/k),
            None for kinds without fixed choices or without a per-item correctness metric.
    """

    constant_answer: str
    constant_share: float
    uniform: float | None


@dataclass(frozen=True)
class VsChance:
    """One cell on one unit against chance and against the teachers (JSON-ready via
    :meth:`to_dict`).

    Attributes:
        value: the student's primary metric on the ``n`` items.
        chance: the chance level (max of ``constant`` and ``uniform``).
        constant: the best constant answer's primary metric on the same items.
        delta, ci_low, ci_high: ``value - chance`` with its 95% paired bootstrap CI.
        teachers: audited teacher -> its primary metric on the unit.
        verdict: ``above chance``, ``indistinguishable from chance`` or ``below chance``.
    """

    cell_id: str
    label: str
    arm: str
    unit: str
    metric: str
    value: float
    chance: float
    constant: float
    constant_answer: str
    constant_share: float
    uniform: float | None
    delta: float
    ci_low: float
    ci_high: float
    n: int
    verdict: str
    teachers: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def learned(row: Mapping[str, Any]) -> bool:
    """Whether a :class:`VsChance` row (as a dict) shows the student above chance."""
    return row["verdict"] == ABOVE


def chance_level(unit: Mapping[str, Any], refs: Sequence[str]) -> ChanceLevel:
    """The chance level of a unit (its options as a mapping) on these references."""
    kind = get(unit["kind"])
    groups: dict[Any, Counter[str]] = {}
    for r in refs:
        groups.setdefault(kind.decision_key(unit, r), Counter())[r] += 1
    top = max(sum(c.values()) for c in groups.values())
    # each most frequent group's most frequent reference; ties go to the better-scoring one,
    # among the first MAX_TIED in text order (all-distinct references would otherwise be
    # scored against each other: quadratic in the eval set)
    candidates = sorted(c.most_common(1)[0][0] for c in groups.values()
                        if sum(c.values()) == top)[:MAX_TIED]
    best = max(candidates, key=lambda a: _primary_on(unit, a, refs, np.arange(len(refs))))
    choices = kind.choices(unit)
    uniform = 1 / len(choices) if choices and kind.binary_primary else None
    return ChanceLevel(best, top / len(refs), uniform)


def _parts_metric(kind_name: str, parts: Mapping[str, np.ndarray]) -> MetricFn:
    """A bootstrap metric: the kind's primary metric recomputed from per-item parts on the
    resampled items."""
    primary = get(kind_name).primary_from_parts
    return lambda idx: primary({k: float(v[idx].sum()) for k, v in parts.items()}, len(idx))


def _constant_parts(unit: Mapping[str, Any], answer: str, refs: Sequence[str]
                    ) -> dict[str, np.ndarray]:
    """Per-item parts of answering ``answer`` to every item (shape (n,) each)."""
    scored = get(unit["kind"]).score(unit, [answer] * len(refs), list(refs))
    parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
    parts.setdefault("correct", np.asarray(scored.correct, dtype=float))
    return parts


def _primary_on(unit: Mapping[str, Any], answer: str, refs: Sequence[str], idx: np.ndarray
                ) -> float:
    return _parts_metric(unit["kind"], _constant_parts(unit, answer, refs))(idx)


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


def _teachers(run: RunData, unit: str, metric: str) -> dict[str, float]:
    """Audited teacher -> its primary metric on the unit (teachers without it are left out)."""
    return {t: float(rep["metrics"][metric]) for t, rep in run.teacher_audit.get(unit, {}).items()
            if rep.get("metrics", {}).get(metric) is not None}


def versus_chance(run: RunData, n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Every finished cell x unit against chance and the teachers (one :class:`VsChance` dict
    each, cells in run order, units in spec order)."""
    out = []
    levels: dict[str, ChanceLevel] = {}
    for cell in run.cells:
        refs_by_unit = _references(run, cell)
        a = cell.axes
        arm = f"{a['bucket']}/{a['fields']}/x{float(a['scale']):g}"
        for unit_name, unit in run.spec["units"].items():
            items = cell.units.get(unit_name)
            if items is None or not items.ids:
                continue
            refs = [refs_by_unit[unit_name][i] for i in items.ids]
            if unit_name not in levels:  # the eval set is the run's: one level per unit
                levels[unit_name] = chance_level(unit, list(refs_by_unit[unit_name].values()))
            level = levels[unit_name]
            constant_fn = _parts_metric(unit["kind"], _constant_parts(
                unit, level.constant_answer, refs))
            floor = level.uniform if level.uniform is not None else float("-inf")

            def chance_fn(idx: np.ndarray, f: MetricFn = constant_fn, lo: float = floor
                          ) -> float:
                return max(f(idx), lo)

            student_fn = _parts_metric(unit["kind"], items.parts)
            n = len(items.ids)
            d = paired_bootstrap([chance_fn], [student_fn], n, n_boot, seed,
                                 resample_seeds=False)
            verdict = ABOVE if d.ci_low > 0 else BELOW if d.ci_high < 0 else SAME
            all_idx = np.arange(n)
            metric = primary_metric(unit["kind"])
            out.append(VsChance(
                cell_id=cell.cell_id, label=cell.label, arm=arm, unit=unit_name, metric=metric,
                value=student_fn(all_idx), chance=chance_fn(all_idx),
                constant=constant_fn(all_idx), constant_answer=level.constant_answer,
                constant_share=level.constant_share, uniform=level.uniform, delta=d.delta,
                ci_low=d.ci_low, ci_high=d.ci_high, n=n, verdict=verdict,
                teachers=_teachers(run, unit_name, metric)).to_dict())
    return out


def describe(row: Mapping[str, Any]) -> str:
    """One line of evidence: the unit, the student's metric, the chance level, the CI, the
    teachers and the verdict."""
    chance = f"chance {row['chance']:.3f} (always {_short(row['constant_answer'])!r}: " \
             f"{row['constant']:.3f}"
    if row["uniform"] is not None:
        chance += f"; uniform guessing {row['uniform']:.3f}"
    teachers = ", ".join(f"{t} {v:.3f}" for t, v in row["teachers"].items())
    return (f"{row['unit']}: {row['metric']} {row['value']:.3f} vs {chance}), difference "
            f"{row['delta']:+.3f} [95% CI {row['ci_low']:+.3f}, {row['ci_high']:+.3f}], "
            f"n={row['n']}; teachers: {teachers or 'not audited'} — {row['verdict']}")


def _short(text: str, limit: int = 40) -> str:
    """A reference shortened for a one-line reason."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
