"""Experiment -> cells of the ablation matrix, each with a stable id.

A cell is one point (bucket, field set, scale, seed). ``factorial`` takes every combination;
``one_at_a_time`` starts from ``design.base`` and varies one axis at a time (seeds are always
crossed). ``include`` adds cells, ``exclude`` removes every cell matching a partial pattern, and
the baseline cell is always part of the matrix because every comparison is made against it.
``noise_seeds`` (default ``[1, 2]``) adds the reference arm (the one_at_a_time base) and the
baseline retrained with extra seeds, so the analysis can measure training noise without
crossing every arm with every seed.

The cell id hashes the cell's *effective* spec (the resolved bucket and field set, units,
student, sampling) together with the content hashes of the data files, so a changed spec or
changed data gives a new id, and an unchanged one keeps its finished results.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from harness.errors import InputError
from harness.experiment.models import CellPattern, CellRef, Experiment

#: Bumped whenever composition rules change what a cell's training set contains.
COMPOSE_VERSION = 1


@dataclass(frozen=True, order=True)
class Axes:
    """A cell's position in the matrix."""

    bucket: str
    fields: str
    scale: float
    seed: int

    @property
    def label(self) -> str:
        """Readable label, e.g. ``multi_judged/answer_only/x0.5/s0``."""
        return f"{self.bucket}/{self.fields}/x{self.scale:g}/s{self.seed}"

    def matches(self, pat: CellPattern) -> bool:
        return all(want is None or want == have for want, have in (
            (pat.bucket, self.bucket), (pat.fields, self.fields), (pat.scale, self.scale),
            (pat.seed, self.seed)))


@dataclass(frozen=True)
class Cell:
    """One cell: axes, stable id and the effective spec that id hashes.

    Attributes:
        axes: bucket, fields, scale, seed.
        cell_id: 12 hex chars of SHA-256 over ``effective``.
        effective: JSON-ready dict of everything that determines the cell's results.
        is_baseline: whether this is the experiment's baseline cell.
    """

    axes: Axes
    cell_id: str
    effective: dict[str, Any]
    is_baseline: bool

    @property
    def label(self) -> str:
        return self.axes.label


def _ref_axes(ref: CellRef, seeds: list[int]) -> list[Axes]:
    chosen = [ref.seed] if ref.seed is not None else seeds
    return [Axes(ref.bucket, ref.fields, ref.scale, s) for s in chosen]


def expand_axes(exp: Experiment) -> list[Axes]:
    """The matrix's axes in a stable order: design cells, then includes, then the baseline."""
    d = exp.design
    out: list[Axes] = []
    if d.kind == "factorial":
        out = [Axes(b, f, s, seed) for b, f, s, seed in
               itertools.product(exp.buckets, exp.fields, exp.scale, exp.seeds)]
    else:
        assert d.base is not None
        base = d.base
        points = [(base.bucket, base.fields, base.scale)]
        points += [(b, base.fields, base.scale) for b in exp.buckets if b != base.bucket]
        points += [(base.bucket, f, base.scale) for f in exp.fields if f != base.fields]
        points += [(base.bucket, base.fields, s) for s in exp.scale if s != base.scale]
        out = [Axes(b, f, s, seed) for (b, f, s), seed in itertools.product(points, exp.seeds)]
    for ref in d.include:
        out += _ref_axes(ref, exp.seeds)
    out = [a for a in out if not any(a.matches(p) for p in d.exclude)]
    out += _ref_axes(exp.baseline, exp.seeds)  # the baseline survives any exclude
    # The reference arm and the baseline retrained with extra seeds: the training-noise
    # measurement (the baseline is in every vs-baseline contrast, the base in every one-factor one).
    for t in _noise_arms(exp):
        out += [Axes(*t, s) for s in d.noise_seeds]
    seen: set[Axes] = set()
    unique = []
    for a in out:
        if a not in seen:
            seen.add(a)
            unique.append(a)
    return unique


#: Default largest matrix ``plan``/``compose``/``run`` accept (``--max-cells`` raises it).
DEFAULT_MAX_CELLS = 5_000
#: Work bound of the exclusion count (recursion steps); far above any hand-written design.
_COUNT_BUDGET = 1_000_000

Triple = tuple[str, str, float]


def count_cells(exp: Experiment) -> int:
    """``len(expand_axes(exp))`` without building a single cell.

    The design is a set of (bucket, fields, scale) triples crossed with the seeds; excluded
    cells are counted by splitting on the values the ``exclude`` patterns name (a pattern that
    names nothing covers everything left). Includes, the baseline and the noise seeds touch
    few triples and are counted per triple, minus what the design already holds.
    Cost: about (#patterns x #axes) steps, whatever the matrix size (360,000 cells: ~1 ms).

    Raises:
        InputError: when the exclude patterns are too many to count within the work bound.
    """
    d = exp.design
    seeds = frozenset(exp.seeds)
    pats = [(p.bucket, p.fields, p.scale, p.seed) for p in d.exclude]
    if d.kind == "factorial":
        domains = [frozenset(exp.buckets), frozenset(exp.fields), frozenset(exp.scale), seeds]
        design = len(domains[0]) * len(domains[1]) * len(domains[2]) * len(seeds)
        excluded = _covered(pats, domains, [_COUNT_BUDGET])

        def in_design(t: Triple) -> bool:
            return t[0] in domains[0] and t[1] in domains[1] and t[2] in domains[2]
    else:
        assert d.base is not None
        points = set(_oat_points(exp))
        design = len(points) * len(seeds)
        excluded = sum(len(seeds) - len(_kept_seeds(t, seeds, pats)) for t in points)

        def in_design(t: Triple) -> bool:
            return t in points
    extra: dict[Triple, set[int]] = {}
    for ref in d.include:  # includes are filtered by exclude, like design cells
        t = (ref.bucket, ref.fields, ref.scale)
        chosen = {ref.seed} if ref.seed is not None else set(seeds)
        extra.setdefault(t, set()).update(chosen & _kept_seeds(t, chosen, pats))
    b = exp.baseline
    t = (b.bucket, b.fields, b.scale)
    extra.setdefault(t, set()).update({b.seed} if b.seed is not None else seeds)
    for t in _noise_arms(exp):
        extra.setdefault(t, set()).update(d.noise_seeds)
    added = 0
    for t, chosen in extra.items():
        held = _kept_seeds(t, seeds, pats) if in_design(t) else set()
        added += len(chosen - held)
    return design - excluded + added


def _noise_arms(exp: Experiment) -> list[Triple]:
    """The arms ``design.noise_seeds`` retrains: the one_at_a_time base (if any), then the
    baseline (once when they coincide)."""
    d, b = exp.design, exp.baseline
    out: list[Triple] = []
    if d.kind == "one_at_a_time" and d.base is not None:
        out.append((d.base.bucket, d.base.fields, d.base.scale))
    if (b.bucket, b.fields, b.scale) not in out:
        out.append((b.bucket, b.fields, b.scale))
    return out


def _oat_points(exp: Experiment) -> list[Triple]:
    """The one_at_a_time design's (bucket, fields, scale) points, as :func:`expand_axes`."""
    base = exp.design.base
    assert base is not None
    points = [(base.bucket, base.fields, base.scale)]
    points += [(b, base.fields, base.scale) for b in exp.buckets if b != base.bucket]
    points += [(base.bucket, f, base.scale) for f in exp.fields if f != base.fields]
    points += [(base.bucket, base.fields, s) for s in exp.scale if s != base.scale]
    return points


def _kept_seeds(t: Triple, seeds: frozenset[int] | set[int],
                pats: list[tuple[Any, Any, Any, Any]]) -> set[int]:
    """The seeds of triple ``t`` that no exclude pattern removes."""
    dropped: set[int] = set()
    for pb, pf, ps, pz in pats:
        if all(want is None or want == have for want, have in ((pb, t[0]), (pf, t[1]),
                                                                (ps, t[2]))):
            if pz is None:
                return set()
            dropped.add(pz)
    return set(seeds) - dropped


def _covered(pats: list[tuple[Any, ...]], domains: list[frozenset[Any]], budget: list[int]
             ) -> int:
    """How many points of the grid ``domains[0] x domains[1] x ...`` match any pattern.

    A pattern is a tuple with one value or None (any) per axis. Splits on the first axis: each
    value some pattern names gets the patterns naming it plus the wildcards; all other values
    behave alike and share one count of the wildcards.
    """
    budget[0] -= 1
    if budget[0] < 0:
        raise InputError(f"the design's {len(pats)} exclude patterns are too many to count the "
                         "matrix; list fewer, broader patterns")
    if not pats:
        return 0
    if any(all(v is None for v in p) for p in pats):
        return math.prod(len(d) for d in domains)
    first, rest = domains[0], domains[1:]
    wild = [p[1:] for p in pats if p[0] is None]
    named: dict[Any, list[tuple[Any, ...]]] = {}
    for p in pats:
        if p[0] is not None and p[0] in first:
            named.setdefault(p[0], []).append(p[1:])
    total = sum(_covered(wild + sub, rest, budget) for sub in named.values())
    others = len(first) - len(named)
    if others and wild:
        total += others * _covered(wild, rest, budget)
    return total


def check_matrix_size(exp: Experiment, max_cells: int) -> int:
    """The number of cells, refusing a matrix larger than ``max_cells``.

    Raises:
        InputError: above the cap, saying how many cells, how the design makes them and how to
            raise the cap.
    """
    n = count_cells(exp)
    if n > max_cells:
        d = exp.design
        if d.kind == "factorial":
            how = (f"factorial: {len(exp.buckets):,} buckets x {len(exp.fields):,} field sets x "
                   f"{len(exp.scale):,} scales x {len(exp.seeds):,} seeds")
        else:
            how = (f"one_at_a_time: {len(set(_oat_points(exp))):,} points x "
                   f"{len(exp.seeds):,} seeds")
        extra = [f"{len(d.include)} include(s)"] if d.include else []
        extra += [f"{len(d.exclude)} exclude pattern(s)"] if d.exclude else []
        raise InputError(f"{exp.name}: the matrix has {n:,} cells ({how}"
                         f"{'; ' + ', '.join(extra) if extra else ''}), more than --max-cells "
                         f"{max_cells:,}: each cell trains and evaluates one student. Narrow the "
                         "design (one_at_a_time, exclude, fewer seeds or scales) or pass "
                         "--max-cells N to run it anyway.")
    return n


def effective_spec(exp: Experiment, axes: Axes, data_hashes: dict[str, str]) -> dict[str, Any]:
    """Everything that determines a cell's results, as JSON-ready data."""
    bucket = exp.buckets[axes.bucket].model_dump(mode="json", exclude={"extends"})
    fields = exp.fields[axes.fields].model_dump(mode="json", exclude={"extends"})
    if fields.get("soft_targets") == "hard":  # the default: ids of earlier cells hold
        fields.pop("soft_targets")
        fields.pop("soft_weight", None)
    student = exp.student.cell_dump()  # unset newer options absent: earlier cell ids hold
    # Paths differ between machines; a checkpoint is identified by its folder name here.
    for checkpoint in exp.student.checkpoints():
        *parents, key = checkpoint.field
        section = student
        for parent in parents:
            section = section[parent]
        section[key] = checkpoint.folder.name
    return {
        "compose_version": COMPOSE_VERSION,
        "experiment": exp.name,
        "bucket": {"name": axes.bucket, **bucket},
        "fields": {"name": axes.fields, **fields},
        "scale": axes.scale,
        "seed": axes.seed,
        "units": {k: v.model_dump(mode="json") for k, v in exp.units.items()},
        "student": student,
        "sampling": exp.sampling.model_dump(mode="json"),
        "evaluation": exp.evaluation.model_dump(mode="json"),
        "data": {"samples_sha256": data_hashes["samples"], "eval_sha256": data_hashes["eval"],
                 "judge_scale": list(exp.data.judge_scale), "leakage": exp.data.leakage},
    }


def hash_spec(effective: dict[str, Any]) -> str:
    """12 hex chars of SHA-256 over the canonical JSON of an effective spec."""
    blob = json.dumps(effective, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build_cells(exp: Experiment, data_hashes: dict[str, str]) -> list[Cell]:
    """Expand the matrix into cells with ids.

    Args:
        exp: the validated experiment.
        data_hashes: ``{"samples": sha256, "eval": sha256}`` of the data files.
    """
    base = exp.baseline
    cells = []
    for axes in expand_axes(exp):
        eff = effective_spec(exp, axes, data_hashes)
        is_base = (axes.bucket, axes.fields, axes.scale) == (base.bucket, base.fields, base.scale)
        cells.append(Cell(axes=axes, cell_id=hash_spec(eff), effective=eff, is_baseline=is_base))
    return cells
