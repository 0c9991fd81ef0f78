"""Rules that need the loaded data: does the experiment fit its sample repository?

They run after :func:`harness.samples.load_data` (which needs the validated experiment), on the
same :class:`~harness.checks.registry.Context` as the experiment rules with ``data`` set to a
:class:`FitData`. Their problems name the experiment file and the YAML path (no line: the loaded
experiment no longer carries its node tree) and are raised together as one
:class:`~harness.errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from harness.checks.registry import Context, Rules, problem
from harness.errors import Problem, ProblemLog, did_you_mean
from harness.experiment import Experiment, LoadedExperiment
from harness.experiment.student import StudentSpec
from harness.students import base as student_kinds

if TYPE_CHECKING:
    from harness.samples import Dataset

#: The data-fit rules, in the order they report.
DATA_RULES = Rules()
rule = DATA_RULES.rule


@dataclass(frozen=True)
class FitData:
    """What the data-fit rules read from the repository, computed once.

    Attributes:
        dataset: the loaded data.
        teachers: every teacher name in the training repository's candidates.
        samples_name: the training file's name (for messages).
        soft_tokenizers: teacher -> the tokenizer identities (``vocab-sha256:<hex>`` or
            ``endpoint:<model>``, sorted) its candidates' soft labels (``answer_logprobs``)
            are in; only teachers with at least one candidate carrying soft labels.
    """

    dataset: Dataset
    teachers: frozenset[str]
    samples_name: str
    soft_tokenizers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Dataset) -> FitData:
        cands = data.train.tables.candidates
        known = cands["teacher"].unique().to_list()
        soft = (cands.filter(pl.col("soft_tokens") > 0)
                .group_by("teacher").agg(pl.col("soft_tokenizer").drop_nulls().unique()))
        return cls(dataset=data, teachers=frozenset(known), samples_name=data.train.path.name,
                   soft_tokenizers={t: tuple(sorted(ids)) for t, ids in soft.iter_rows()})


def check_data_fit(loaded: LoadedExperiment, data: Dataset) -> None:
    """Run every rule of :data:`DATA_RULES`.

    Raises:
        InputError: ``<experiment>: the experiment does not fit its data``, with every problem.
    """
    ctx = Context(_sections(loaded.spec), {}, FitData.of(data))
    log = ProblemLog()
    for p in DATA_RULES.run(ctx):
        log.add(loaded.path.name, p.field, p.message)
    log.raise_if_any(f"{loaded.path}: the experiment does not fit its data")


def _sections(exp: Experiment) -> dict[str, object]:
    return {name: getattr(exp, name) for name in type(exp).model_fields}


def _unknown_teacher(fit: FitData, teacher: str) -> str:
    return (f"teacher {teacher!r} does not occur in {fit.samples_name}"
            f"{did_you_mean(teacher, fit.teachers)}")


@rule("buckets")
def bucket_teachers(s: Context) -> Iterator[Problem]:
    """A bucket names only teachers the sample repository has."""
    fit: FitData = s.data
    for name, b in s["buckets"].items():
        if isinstance(b.teachers, list):
            for i, t in enumerate(b.teachers):
                if t not in fit.teachers:
                    yield problem(f"buckets.{name}.teachers.{i}", _unknown_teacher(fit, t))


@rule("costs")
def cost_teachers(s: Context) -> Iterator[Problem]:
    """``costs.teachers`` prices only teachers the sample repository has, or the judge's own
    provider block (it writes verdicts, not candidates: its calls are priced all the same)."""
    fit: FitData = s.data
    judge = s.sections.get("judge")  # optional: None when absent (or invalid, reported there)
    own_judge = {judge.name} if judge is not None and judge.config is not None else set()
    for t in s["costs"].teachers:
        if t not in fit.teachers and t not in own_judge:
            yield problem(f"costs.teachers.{t}", _unknown_teacher(fit, t))


# --------------------------------------------------------------------------- soft targets


def _topk_teachers(s: Context) -> dict[str, set[str]]:
    """Per field set with ``soft_targets: topk``, the teachers its cells may train on: those of
    every bucket some cell pairs it with (``all``: every teacher of the repository). Empty for
    a field set no cell uses. The pairs come from the design's cells when the matrix is
    countable within :data:`~harness.matrix.DEFAULT_MAX_CELLS`; past that (the run refuses
    such a matrix unless told otherwise) every bucket counts, rather than building it here."""
    from harness.matrix import DEFAULT_MAX_CELLS, count_cells, expand_axes

    fit: FitData = s.data
    topk = [name for name, f in s["fields"].items() if f.soft_targets == "topk"]
    if not topk:
        return {}
    exp = Experiment.model_construct(**s.sections)  # every section validated: no re-validation
    if count_cells(exp) <= DEFAULT_MAX_CELLS:
        pairs = {(a.fields, a.bucket) for a in expand_axes(exp)}
    else:
        pairs = {(f, b) for f in topk for b in s["buckets"]}
    out: dict[str, set[str]] = {name: set() for name in topk}
    for fields, bucket in pairs:
        if fields in out:
            chosen = s["buckets"][bucket].teachers
            out[fields] |= fit.teachers if chosen == "all" else set(chosen) & fit.teachers
    return out


def _short(identity: str) -> str:
    """``vocab-sha256:`` and 12 hex characters: enough to tell two vocabularies apart."""
    kind, _, digest = identity.partition(":")
    return f"{kind}:{digest[:12]}" if kind == "vocab-sha256" else identity


def _student_identity(student: StudentSpec) -> tuple[str | None, str]:
    """The student's tokenizer identity (:func:`harness.teachers.soft_labels.tokenizer_identity`)
    loaded from ``student.model``, and ""; or None and why it could not be loaded (the
    exception, on one line). Imports transformers here: only an experiment with soft targets
    pays for it."""
    try:
        import transformers

        from harness.teachers.soft_labels import tokenizer_identity

        tok = transformers.AutoTokenizer.from_pretrained(
            str(student.model), trust_remote_code=student.trust_remote_code)
        return tokenizer_identity(tok), ""
    except Exception as exc:  # any loader failure is the user's folder: say so, no traceback
        # transformers' messages run over several lines: one line, bounded, for the problem
        said = " ".join(str(exc).split())
        return None, f"{type(exc).__name__}: {said[:300]}{'...' if len(said) > 300 else ''}"


def _takes_token_soft_labels(student: StudentSpec) -> bool:
    """A pretrained student (``student.model``) of a kind that trains on token soft labels."""
    return student_kinds.get(student.kind).token_soft_labels and student.model is not None


@rule("fields", "student", "buckets", "design", "scale", "seeds", "baseline")
def soft_target_labels(s: Context) -> Iterator[Problem]:
    """A field set with ``soft_targets: topk`` has soft labels to train on: some candidate of
    the teachers its cells may use carries ``answer_logprobs`` (a pretrained student of a kind
    that trains on token soft labels only; the others are refused by
    :func:`harness.checks.experiment.soft_targets_student`)."""
    student = s["student"]
    if not _takes_token_soft_labels(student):
        return
    fit: FitData = s.data
    for name, teachers in _topk_teachers(s).items():
        if teachers and not teachers & fit.soft_tokenizers.keys():
            yield problem(f"fields.{name}.soft_targets", "no candidate of "
                          f"{_teacher_list(teachers)} in {fit.samples_name} carries soft "
                          "labels (answer_logprobs); set generate.soft_labels: {top_k: K} "
                          "and generate again, or use soft_targets: hard")


@rule("fields", "student", "buckets", "design", "scale", "seeds", "baseline")
def soft_target_tokenizer(s: Context) -> Iterator[Problem]:
    """The student shares the tokenizer of every teacher whose soft labels a ``topk`` field set
    trains on: soft labels are token ids of the teacher's vocabulary, and a KL over ids means
    nothing across two vocabularies. The student's identity is computed from its tokenizer,
    loaded from ``student.model``; an endpoint teacher's ids are unknown, so it never matches.
    Reported once per teacher and tokenizer, at ``student.model`` (the one side both fixes
    name); not run without soft labels (:func:`soft_target_labels` says so)."""
    student = s["student"]
    if not _takes_token_soft_labels(student):
        return
    fit: FitData = s.data
    used: dict[str, list[str]] = {}  # teacher with soft labels -> the topk field sets using it
    for name, teachers in _topk_teachers(s).items():
        for t in sorted(teachers & fit.soft_tokenizers.keys()):
            used.setdefault(t, []).append(name)
    if not used:
        return
    mine, why = _student_identity(student)
    if mine is None:
        every = sorted({n for names in used.values() for n in names})
        yield problem("student.model", f"the student's tokenizer cannot be loaded from "
                      f"{student.model} ({why}), so it cannot be compared with the teachers' "
                      "soft labels (soft_targets: topk in field set(s) "
                      f"{', '.join(repr(n) for n in every)})")
        return
    for teacher, names in sorted(used.items()):
        sets = ", ".join(repr(n) for n in names)
        for theirs in fit.soft_tokenizers[teacher]:
            if theirs == mine:
                continue
            if theirs.startswith("endpoint:"):
                yield problem("student.model", f"teacher {teacher!r} stored its soft labels "
                              f"through an endpoint ({theirs}), whose token ids are unknown: no "
                              "student can train on them by id (soft_targets: topk in field "
                              f"set(s) {sets}); use soft_targets: hard, or keep that teacher "
                              "out of those cells' buckets")
            else:
                yield problem("student.model", f"teacher {teacher!r} stored its soft labels in "
                              f"tokenizer {_short(theirs)}, the student's is {_short(mine)}: "
                              "soft labels are token ids of the teacher's vocabulary "
                              f"(soft_targets: topk in field set(s) {sets}); use a student "
                              "checkpoint with that tokenizer, or soft_targets: hard")


def _teacher_list(teachers: set[str]) -> str:
    names = sorted(teachers)
    return ("teacher " if len(names) == 1 else "teachers ") + ", ".join(repr(t) for t in names)
