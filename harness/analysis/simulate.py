"""Runs with known truth for calibrating the verdicts.

A simulated run is a :class:`~harness.analysis.load.RunData` built in memory with the harness's
own record types and row builders (:func:`harness.evaluate.units.unit_report`,
:func:`harness.store.results.cell_rows`, ...), so it goes through exactly the code a run folder
goes through (:func:`harness.analysis.attribution.attribution`,
:func:`harness.analysis.analyse.analyse_run`) without touching the disk.

The student model (probit scale). Eval items and training seeds are crossed: every seed of every
arm answers the same items. Arm ``A``'s seed ``s`` answers item ``i`` of a unit right when its
latent propensity is positive::

    z_Asi = theta_A + a_As + b_i + w_Ai + e_Asi

- ``b_i ~ N(0, item^2)``: the item's easiness, shared by every arm (some items are hard);
- ``w_Ai ~ N(0, arm_item^2)``: which items this arm's training data taught it (two arms err on
  partly different items), shared by all the arm's seeds;
- ``a_As ~ N(0, seed(scale)^2)``: the seed effect, moving the whole eval set (scale-dependent:
  small training sets make retraining noisier);
- ``e_Asi ~ N(0, flip^2)``: the item x seed interaction: which items a retrained student flips.
  It is small next to ``b + w``, so two seeds of one arm agree on most items (~14 % flipped with
  the default :class:`Noise`), unlike a model that redraws every item for every seed.

``theta_A`` is set from the arm's *population accuracy* (the share right over new items and new
seeds), ``Phi(theta / total_sd)``, so arms whose students are equally good are equal in truth
whatever their scale's seed noise. A wrong label answer is one of the other labels (fixed per arm
and item: the seeds of an arm make the same mistake); a wrong refusal decision is the opposite
decision. Besides learned students there are known-truth extremes: ``perfect`` (every item
right on every seed), ``constant`` (one answer to every item: a refusal student that always or
never escalates), ``guess`` (a uniformly random label per item and seed: a student at chance),
and clones (:attr:`ArmSpec.clone_of`: exactly the same answers as another arm, seed by seed).

The designs at the end are the scenarios of ``benchmarks/verdict_calibration.py`` (and of its
reduced version, ``tests/analysis/test_simulation.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import stats

from harness.analysis.load import CellData, RunData, UnitItems
from harness.evaluate.units import unit_report
from harness.experiment.models import Experiment
from harness.matrix import Axes as MatrixAxes
from harness.matrix import effective_spec
from harness.store.contracts import (
    Axes,
    CellEntry,
    CellManifest,
    CellMetrics,
    CellSpec,
    RunRecord,
    TeacherFacts,
)
from harness.store.results import cell_rows, latency_rows, results_frame
from harness.units import get

ArmKey = tuple[str, str, float]  # bucket, fields, scale (as harness.analysis.arms)
Behaviour = Literal["learned", "perfect", "constant", "guess"]

MARKER = "ESCALATE"
#: The answer text of an answerable refusal item (any non-marker answer is "answer").
ANSWER = "REPLY: ok"
#: The default units: a 3-label classification and a refusal unit.
UNITS: dict[str, dict[str, Any]] = {
    "route": {"kind": "label", "labels": ["a", "b", "c"]},
    "esc": {"kind": "refusal", "marker": MARKER},
}


@dataclass(frozen=True)
class Noise:
    """Standard deviations of the latent propensity's parts (probit units; module docstring).

    Attributes:
        item: ``b_i``, item easiness.
        arm_item: ``w_Ai``, arm x item.
        seed: ``a_As``, the seed effect at scales not in ``seed_by_scale``.
        flip: ``e_Asi``, item x seed.
        seed_by_scale: scale -> the seed effect's SD there.
    """

    item: float = 1.0
    arm_item: float = 0.5
    seed: float = 0.08
    flip: float = 0.35
    seed_by_scale: Mapping[float, float] = field(default_factory=dict)

    def seed_sd(self, scale: float) -> float:
        """The seed effect's SD at ``scale``."""
        return float(self.seed_by_scale.get(scale, self.seed))

    def total_sd(self, scale: float) -> float:
        """SD of the latent propensity around ``theta`` at ``scale``."""
        return math.sqrt(self.item ** 2 + self.arm_item ** 2 + self.seed_sd(scale) ** 2
                         + self.flip ** 2)

    def skill(self, accuracy: float, scale: float) -> float:
        """``theta`` of a student whose population accuracy is ``accuracy`` at ``scale``.

        Raises:
            ValueError: ``accuracy`` is not in (0, 1) (use a ``perfect`` student for 1).
        """
        if not 0 < accuracy < 1:
            raise ValueError(f"a learned student's accuracy must be in (0, 1), not {accuracy}")
        return float(stats.norm.ppf(accuracy)) * self.total_sd(scale)


@dataclass(frozen=True)
class Student:
    """How an arm answers one unit (the truth).

    Attributes:
        accuracy: population share of items answered right (``learned`` students), in (0, 1).
        behaviour: ``learned`` (the latent model), ``perfect``, ``constant`` (``answer`` to
            every item on every seed) or ``guess`` (a uniformly random label: label units only).
        answer: the constant answer (``constant`` only).
    """

    accuracy: float = 0.7
    behaviour: Behaviour = "learned"
    answer: str | None = None


@dataclass(frozen=True)
class ArmSpec:
    """One arm of a simulated design: its axes, seeds and students.

    Attributes:
        students: unit -> its student (a unit left out gets ``Student()``).
        clone_of: an arm listed earlier in the design whose answers this arm repeats exactly,
            seed by seed (it must have as many seeds).
    """

    bucket: str
    fields: str
    scale: float = 1.0
    seeds: int = 1
    students: Mapping[str, Student] = field(default_factory=dict)
    clone_of: ArmKey | None = None

    @property
    def key(self) -> ArmKey:
        return (self.bucket, self.fields, float(self.scale))

    @property
    def label(self) -> str:
        """As :func:`harness.analysis.arms.arm_label` names it."""
        return f"{self.bucket}/{self.fields}/x{self.scale:g}"

    def student(self, unit: str) -> Student:
        return self.students.get(unit, Student())


@dataclass(frozen=True)
class Design:
    """A simulated experiment: units, arms, eval items, noise and the gate's policy.

    Attributes:
        baseline: the baseline arm.
        base: the ``one_at_a_time`` centre (the reference arm); None for a factorial design.
        n_items: eval items per unit.
        escalate_share: share of a refusal unit's items that must be escalated.
        samples: training samples per unit at scale 1 (a cell at scale ``s`` has ``s * samples``,
            which learning curves read).
        stop, gate: the experiment's ``stop:`` and ``gate:`` sections.
    """

    arms: tuple[ArmSpec, ...]
    baseline: ArmKey
    base: ArmKey | None = None
    units: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: dict(UNITS))
    n_items: int = 400
    noise: Noise = field(default_factory=Noise)
    escalate_share: float = 0.3
    samples: int = 1000
    stop: Mapping[str, Any] = field(default_factory=dict)
    gate: Mapping[str, Any] = field(default_factory=dict)
    name: str = "simulated"

    def arm(self, key: ArmKey) -> ArmSpec:
        return next(a for a in self.arms if a.key == key)

    def spec(self) -> dict[str, Any]:
        """The experiment's validated spec (what ``run.json`` records)."""
        buckets = sorted({a.bucket for a in self.arms})
        fields = sorted({a.fields for a in self.arms})
        ref = lambda k: {"bucket": k[0], "fields": k[1], "scale": k[2]}  # noqa: E731
        design: dict[str, Any] = {"kind": "factorial"}
        if self.base is not None:
            design = {"kind": "one_at_a_time", "base": ref(self.base)}
        exp = Experiment.model_validate({
            "name": self.name, "data": {"samples": "s.jsonl", "eval": "e.jsonl"},
            "units": {k: dict(v) for k, v in self.units.items()},
            "student": {"config": {"layers": 1, "hidden": 32, "heads": 2}},
            "buckets": {b: {} for b in buckets}, "fields": {f: {} for f in fields},
            "scale": sorted({a.scale for a in self.arms}), "baseline": ref(self.baseline),
            "design": design, "stop": dict(self.stop), "gate": dict(self.gate), "costs": {},
        })
        return exp.model_dump(mode="json")


@dataclass(frozen=True)
class Items:
    """One draw of eval items (shared by every arm, and by the rounds of one experiment).

    Attributes:
        refs: unit -> ``(n,)`` reference answers.
        easiness: unit -> ``(n,)`` item easiness ``b_i`` (probit units).
    """

    refs: dict[str, list[str]]
    easiness: dict[str, np.ndarray]

    @property
    def ids(self) -> list[str]:
        n = len(next(iter(self.refs.values())))
        return [f"e{k:04d}" for k in range(n)]


def draw_items(design: Design, rng: np.random.Generator) -> Items:
    """Eval items: label references in equal shares (so no constant answer beats 1/k by more
    than rounding), refusal references with ``escalate_share`` to escalate, in random order."""
    n = design.n_items
    refs: dict[str, list[str]] = {}
    for name, unit in design.units.items():
        if unit["kind"] == "label":
            labels = list(unit["labels"])
            order = rng.permutation(n)
            refs[name] = [labels[k % len(labels)] for k in order]
        elif unit["kind"] == "refusal":
            escalate = rng.permutation(n) < round(design.escalate_share * n)
            refs[name] = [unit["marker"] if e else ANSWER for e in escalate]
        else:
            raise ValueError(f"unit {name!r}: the simulator knows label and refusal units only")
    easiness = {u: rng.normal(0.0, design.noise.item, n) for u in design.units}
    return Items(refs, easiness)


def _wrong(unit: Mapping[str, Any], refs: Sequence[str], shift: np.ndarray) -> list[str]:
    """Per item, a wrong answer: another label (``shift``: (n,) offsets in 1..k-1) or the
    opposite refusal decision."""
    if unit["kind"] == "label":
        labels = list(unit["labels"])
        pos = {lab: k for k, lab in enumerate(labels)}
        return [labels[(pos[r] + int(s)) % len(labels)] for r, s in zip(refs, shift,
                                                                         strict=True)]
    return [ANSWER if r == unit["marker"] else unit["marker"] for r in refs]


def _answers(unit: Mapping[str, Any], student: Student, refs: list[str], easiness: np.ndarray,
             noise: Noise, scale: float, seeds: int, rng: np.random.Generator
             ) -> list[list[str]]:
    """Per seed, the student's ``(n,)`` answers (module docstring)."""
    n = len(refs)
    if student.behaviour == "perfect":
        return [list(refs) for _ in range(seeds)]
    if student.behaviour == "constant":
        if student.answer is None:
            raise ValueError("a constant student needs its answer")
        return [[student.answer] * n for _ in range(seeds)]
    if student.behaviour == "guess":
        if unit["kind"] != "label":
            raise ValueError("a guessing student answers label units only")
        labels = list(unit["labels"])
        return [[labels[k] for k in rng.integers(0, len(labels), n)] for _ in range(seeds)]
    k = len(unit.get("labels", [])) or 2
    shift = rng.integers(1, max(k, 2), n)  # the arm's mistake on each item
    wrong = _wrong(unit, refs, shift)
    theta = noise.skill(student.accuracy, scale)
    stable = theta + easiness + rng.normal(0.0, noise.arm_item, n)
    out = []
    for _ in range(seeds):
        z = stable + rng.normal(0.0, noise.seed_sd(scale)) + rng.normal(0.0, noise.flip, n)
        out.append([r if ok else w for r, w, ok in zip(refs, wrong, z > 0, strict=True)])
    return out


def draw_answers(design: Design, items: Items, rng: np.random.Generator
                 ) -> dict[ArmKey, dict[str, list[list[str]]]]:
    """Arm -> unit -> per seed the ``(n,)`` answers."""
    out: dict[ArmKey, dict[str, list[list[str]]]] = {}
    for arm in design.arms:
        if arm.clone_of is not None:
            source = design.arm(arm.clone_of)
            if source.key not in out or source.seeds != arm.seeds:
                raise ValueError(f"{arm.label}: clone_of must name an earlier arm with as many "
                                 "seeds")
            out[arm.key] = out[source.key]
            continue
        out[arm.key] = {u: _answers(unit, arm.student(u), items.refs[u], items.easiness[u],
                                    design.noise, arm.scale, arm.seeds, rng)
                        for u, unit in design.units.items()}
    return out


def _unit_items(unit: Mapping[str, Any], ids: list[str], answers: list[str], refs: list[str],
                tags: list[dict[str, str]]) -> UnitItems:
    """The per-item parts analysis reads (as :func:`harness.analysis.load.load_run` does)."""
    scored = get(unit["kind"]).score(unit, answers, refs)
    parts = {k: np.asarray(v, dtype=float) for k, v in (scored.parts or {}).items()}
    parts["correct"] = np.asarray(scored.correct, dtype=float)
    return UnitItems(ids=ids, correct=parts["correct"], parts=parts, tags=tags)


#: Latency tables by design layout: every run of a design has the same cells and latencies, so
#: the table is built (and schema-checked) once.
_LATENCY: dict[tuple[Any, ...], Any] = {}


def simulate_run(design: Design, rng: np.random.Generator, items: Items | None = None,
                 full: bool = True, spec: dict[str, Any] | None = None) -> RunData:
    """One simulated run of ``design``.

    Args:
        items: the eval items (drawn when None; pass the same ones to every round).
        full: build everything :func:`~harness.analysis.analyse.analyse_run` reads (metrics,
            results and latency tables, run record); False builds what
            :func:`~harness.analysis.attribution.attribution` reads (cells' per-item parts and
            axes, the spec), several times faster.
        spec: ``design.spec()`` when the caller has it already (it is the same for every run).
    """
    spec = spec if spec is not None else design.spec()
    experiment = Experiment.model_validate(spec)  # as load_run reads it back from run.json
    items = items if items is not None else draw_items(design, rng)
    answers = draw_answers(design, items, rng)
    ids = items.ids
    tags: list[dict[str, str]] = [{"source": "synthetic"}] * len(ids)
    cells, rows, lat, entries = [], [], [], []
    latency_key = (design.name, design.n_items, design.baseline,
                   tuple((*a.key, a.seeds) for a in design.arms))
    i = 0
    for arm in design.arms:
        for seed in range(arm.seeds):
            cell_id, label = f"{i:012x}", f"{arm.label}/s{seed}"
            i += 1
            is_base = arm.key == design.baseline and seed == 0
            axes = {"bucket": arm.bucket, "fields": arm.fields, "scale": float(arm.scale),
                    "seed": seed}
            units = {u: _unit_items(unit, ids, answers[arm.key][u][seed], items.refs[u], tags)
                     for u, unit in design.units.items()}
            if not full:
                cells.append(CellData(cell_id, label, axes, is_base, None, None,  # type: ignore[arg-type]
                                      units))
                continue
            manifest, metrics = _records(design, experiment, arm, seed, cell_id, label,
                                         is_base, answers[arm.key], items)
            cells.append(CellData(cell_id, label, axes, is_base, manifest, metrics, units))
            rows += cell_rows(design.name, manifest, metrics)
            if latency_key not in _LATENCY:
                lat += latency_rows(design.name, manifest, metrics)
            entries.append(CellEntry(cell_id=cell_id, label=label, is_baseline=is_base,
                                     status="done", train_seconds=36.0, eval_seconds=1.0,
                                     error=None))
    if not full:
        return RunData(None, None, spec, experiment, None, None,  # type: ignore[arg-type]
                       cells, {}, [])
    record = RunRecord(
        schema_version=RunRecord.SCHEMA_VERSION, experiment=design.name,
        experiment_file=f"{design.name}.yaml", spec=spec,
        teachers=TeacherFacts(n_records=design.samples,
                              usage={"t": {"prompt_tokens": 100_000, "completion_tokens": 50_000}},
                              disagreement={}),
        baseline=spec["baseline"], cells=entries, inputs={}, python="3", pid=0)
    eval_rows = [{"id": k, "unit": u, "reference": r, "tags": tags[0]}
                 for u in design.units for k, r in zip(ids, items.refs[u], strict=True)]
    if latency_key not in _LATENCY:
        _LATENCY[latency_key] = results_frame(lat)
    return RunData(Path(f"<simulated {design.name}>"), record, spec, experiment,
                   results_frame(rows), _LATENCY[latency_key], cells, {}, eval_rows)


def _records(design: Design, experiment: Experiment, arm: ArmSpec, seed: int, cell_id: str,
             label: str, is_base: bool, answers: dict[str, list[list[str]]], items: Items
             ) -> tuple[CellManifest, CellMetrics]:
    """A cell's manifest and metrics as compose and the worker write them."""
    samples = max(1, round(design.samples * arm.scale))
    axes = Axes(bucket=arm.bucket, fields=arm.fields, scale=float(arm.scale), seed=seed)
    effective = effective_spec(experiment, MatrixAxes(arm.bucket, arm.fields, arm.scale, seed),
                               {"samples": "simulated", "eval": "simulated"})
    manifest = CellManifest(
        schema_version=CellManifest.SCHEMA_VERSION, harness_version="simulated",
        cell_id=cell_id, label=label, is_baseline=is_base, axes=axes,
        spec=CellSpec.from_json(effective, f"simulated cell {label}", path="spec"),
        n_samples=samples * len(design.units), n_records=samples,
        counts={"unit": {u: samples for u in design.units}}, tokens={}, inputs={}, files={},
        eval_items=design.n_items, paths={})
    reports = {}
    for u, unit in design.units.items():
        rows = [{"id": k, "unit": u, "reference": r, "tags": {"source": "synthetic"},
                 "candidates": []} for k, r in zip(items.ids, items.refs[u], strict=True)]
        rep = unit_report(dict(unit), rows, answers[u][seed], ["source"])
        rep.pop("correct")
        rep.pop("parts")
        rep["eval_seconds"] = 0.5
        reports[u] = rep
    metrics = CellMetrics(
        schema_version=CellMetrics.SCHEMA_VERSION, cell_id=cell_id, label=label, axes=axes,
        units=reports, train={"train_seconds": 36.0, "examples": samples}, eval_seconds=1.0,
        latency={"latency_p95_ms": 12.0, "latency_p50_ms": 10.0}, environment={})
    return manifest, metrics


# --- designs with known truth (the scenarios of benchmarks/verdict_calibration.py) ----------

#: The attribution designs' population accuracies: route (label), esc (refusal decision).
#: (route at 0.45, above its chance level 1/3, leaves room for an effect planted at twice the
#: reported MDE, which is ~0.2 with 400 items and a one-seed arm.)
NULL_ACCURACY = {"route": 0.45, "esc": 0.8}
BASELINE: ArmKey = ("b0", "plain", 1.0)
REFERENCE: ArmKey = ("b1", "rich", 1.0)
#: The arm an effect is planted on, the unit and the metric it is planted and read on.
PLANTED: tuple[ArmKey, str, str] = (("b0", "rich", 1.0), "route", "accuracy")


def _learned(accuracy: Mapping[str, float]) -> dict[str, Student]:
    return {u: Student(a) for u, a in accuracy.items()}


def null_design(n_items: int = 400, noise: Noise | None = None,
                planted: float = 0.0) -> Design:
    """Every arm equally good (``NULL_ACCURACY``), ``planted`` added to the population accuracy
    of :data:`PLANTED`'s arm on its unit.

    A ``one_at_a_time`` design whose reference arm (``b1/rich``) differs from the baseline
    (``b0/plain``), both with 3 seeds, so that all three attribution families are non-empty:
    vs the baseline (4 arms), bucket effects (``b0/rich``, ``b2/rich`` vs the reference) and
    field effects (``b1/plain``). ``b2/rich`` has 3 seeds, the others 1.
    """
    arm, unit, _ = PLANTED
    layout = [(BASELINE, 3), (REFERENCE, 3), (arm, 1), (("b2", "rich", 1.0), 3),
              (("b1", "plain", 1.0), 1)]
    arms = []
    for key, seeds in layout:
        acc = dict(NULL_ACCURACY)
        if key == arm:
            acc[unit] += planted
        arms.append(ArmSpec(*key, seeds=seeds, students=_learned(acc)))
    return Design(tuple(arms), BASELINE, REFERENCE, n_items=n_items, noise=noise or Noise(),
                  name="null" if planted == 0 else "planted")


def saturated_design(n_items: int = 400) -> Design:
    """The help-desk case: the baseline never escalates (refusal F1 0.0 on every seed), the
    multi-teacher arm (3 seeds) and the failures arm (1 seed) escalate exactly the right items
    (F1 1.0 on every seed), one learned arm beside them; ``route`` is at the ceiling for every
    arm (every item right on every seed)."""
    ceiling = Student(behaviour="perfect")
    never = Student(behaviour="constant", answer=ANSWER)
    perfect = Student(behaviour="perfect")
    arms = (ArmSpec("single", "plain", seeds=3, students={"route": ceiling, "esc": never}),
            ArmSpec("multi", "plain", seeds=3, students={"route": ceiling, "esc": perfect}),
            ArmSpec("failures", "plain", seeds=1, students={"route": ceiling, "esc": perfect}),
            ArmSpec("learned", "plain", seeds=1,
                    students={"route": ceiling, "esc": Student(NULL_ACCURACY["esc"])}))
    return Design(arms, ("single", "plain", 1.0), n_items=n_items, name="saturated")


def identical_design(n_items: int = 400, deterministic: bool = False) -> Design:
    """Four arms that answer exactly alike, seed by seed (clones of the baseline, 3 seeds
    each); ``deterministic``: no seed noise either, so every seed of every arm is the same."""
    noise = Noise(seed=0.0, flip=0.0) if deterministic else Noise()
    base = ArmSpec(*BASELINE, seeds=3, students=_learned(NULL_ACCURACY))
    clones = tuple(ArmSpec(b, "plain", seeds=3, clone_of=BASELINE) for b in ("b1", "b2", "b3"))
    return Design((base, *clones), BASELINE, n_items=n_items, noise=noise,
                  name="identical" + ("_deterministic" if deterministic else ""))


#: The scale-dependent seed noise: retraining on a tenth of the data moves a student 5x more
#: (seed SD of route accuracy ~0.09 at scale 0.1, ~0.02 at scale 1).
SCALE_SEED_SD = {0.1: 0.3, 1.0: 0.06}


def scale_noise_design(n_items: int = 400) -> Design:
    """Every arm equally good; seeds at two scales with different seed SDs
    (:data:`SCALE_SEED_SD`): 3 seeds of ``b0/plain`` at each scale, one-seed arms at both."""
    acc = _learned(NULL_ACCURACY)
    arms = (ArmSpec("b0", "plain", 1.0, 3, acc), ArmSpec("b0", "plain", 0.1, 3, acc),
            ArmSpec("b1", "plain", 1.0, 1, acc), ArmSpec("b1", "plain", 0.1, 1, acc),
            ArmSpec("b2", "plain", 0.1, 1, acc))
    return Design(arms, BASELINE, n_items=n_items, noise=Noise(seed_by_scale=SCALE_SEED_SD),
                  name="scale_noise")


# --- gate designs: three scale points, two buckets, one or two rounds -----------------------

#: Scales of the gate designs (a learning curve needs >= 3 points).
CURVE_SCALES = (0.25, 0.5, 1.0)
#: The rising curve's error ``c + a (m / 1000)^b`` at ``m`` training samples per unit: the
#: next doubling from 1,000 samples gains 0.05 (5x the default ``min_gain_next_doubling``),
#: from 2,000 (round 2) 0.035.
RISING = {"a": 0.05 / (1 - 2 ** -0.5), "b": -0.5, "c": 0.1}
FLAT_ACCURACY = 0.75


def curve_accuracy(samples: float, shape: Literal["rising", "flat"]) -> float:
    """Population accuracy after ``samples`` training samples per unit."""
    if shape == "flat":
        return FLAT_ACCURACY
    return 1 - (RISING["c"] + RISING["a"] * (samples / 1000) ** RISING["b"])


def gate_design(shape: Literal["rising", "flat"] = "rising", round_: int = 1,
                at_chance: Sequence[str] = (), n_items: int = 400) -> Design:
    """Buckets ``b0`` (baseline) and ``b1``, one field set, :data:`CURVE_SCALES`; 3 seeds of each
    bucket at scale 1, one seed below. Round ``r`` trains on ``1000 * 2^(r-1)`` samples per unit
    at scale 1 (the next round doubles the data).

    Args:
        shape: every learned student follows the rising curve or stays flat.
        at_chance: units on which every arm learned nothing: a label unit guesses uniformly,
            a refusal unit always escalates.
    """
    samples = 1000 * 2 ** (round_ - 1)
    arms = []
    for bucket in ("b0", "b1"):
        for scale in CURVE_SCALES:
            students = {}
            for u, unit in UNITS.items():
                if u in at_chance:
                    students[u] = (Student(behaviour="guess") if unit["kind"] == "label" else
                                   Student(behaviour="constant", answer=MARKER))
                else:
                    students[u] = Student(curve_accuracy(samples * scale, shape))
            arms.append(ArmSpec(bucket, "plain", scale, 3 if scale == 1.0 else 1, students))
    name = f"{shape}" + (f"_chance_{'_'.join(at_chance)}" if at_chance else "")
    # one experiment name for both rounds: the gate compares rounds of the same experiment
    return Design(tuple(arms), BASELINE, n_items=n_items, samples=samples, name=name)
