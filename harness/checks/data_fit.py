"""Rules that need the loaded data: does the experiment fit its sample repository?

They run after :func:`harness.samples.load_data` (which needs the validated experiment), on the
same :class:`~harness.checks.registry.Context` as the experiment rules with ``data`` set to a
:class:`FitData`. Their problems name the experiment file and the YAML path (no line: the loaded
experiment no longer carries its node tree) and are raised together as one
:class:`~harness.errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.checks.registry import Context, Rules, problem
from harness.errors import Problem, ProblemLog, did_you_mean
from harness.spec import Experiment, LoadedExperiment

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
    """

    dataset: Dataset
    teachers: frozenset[str]
    samples_name: str

    @classmethod
    def of(cls, data: Dataset) -> FitData:
        known = data.train.tables.candidates["teacher"].unique().to_list()
        return cls(dataset=data, teachers=frozenset(known), samples_name=data.train.path.name)


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
