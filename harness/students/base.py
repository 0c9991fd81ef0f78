"""The student interface: everything the worker does with a student, whatever its kind.

A *student kind* (``student.kind`` in the YAML: ``causal_lm``, ``classifier``) is one subclass of
:class:`StudentKind`, registered by name (:func:`register`; importing :mod:`harness.students`
registers the built-in kinds). The worker picks the kind, then calls, in order:
:meth:`~StudentKind.build`, :meth:`~StudentKind.train`, :meth:`~StudentKind.save`,
:meth:`~StudentKind.answer` per unit, and :meth:`~StudentKind.latency` — it never asks which
kind it holds.

Everything else asks a kind what it can do instead of testing its name (the capabilities):
which unit kinds it answers (:meth:`~StudentKind.answers_unit_kind`), whether lm-eval applies
(:attr:`~StudentKind.lm_eval`), its ``student:`` options (:meth:`~StudentKind.options_model`,
the pydantic model the experiment validates the section with; :meth:`~StudentKind.options`,
the keys it adds to the ones every kind reads) and the ``student.train`` switches it honours
(:meth:`~StudentKind.switches`, :meth:`~StudentKind.fast_path`), whether it trains on token
soft labels (:attr:`~StudentKind.token_soft_labels`), and why not where it does not
(:attr:`~StudentKind.why_not`, for validate's messages).

Standard library only at import time (the worker imports the kinds and never pydantic: the
options models, :mod:`harness.students.options`, are imported when asked for); each kind imports
torch and transformers inside its methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from harness.errors import did_you_mean
from harness.store.cell_spec import CellSpec, StudentPart
from harness.train.objective import SWITCHES, Objective

if TYPE_CHECKING:
    from harness.students.options import StudentOptions

Log = Callable[[dict[str, Any]], None]

#: The kind of a student spec that names none: the YAML's default (``student.kind``), and what
#: a manifest written before the key existed holds (:class:`harness.store.cell_spec.StudentPart`
#: reads it so).
DEFAULT_KIND = StudentPart.kind

@dataclass(frozen=True)
class Answers:
    """A student's answers to one unit's eval items, in item order.

    Attributes:
        texts: what the student produced per item (the generation, or the chosen class).
        answers: the parsed answer per item (None: no parseable answer).
        probs: (n_items, n_choices) probabilities over the unit's choices (scored or
            classified units), written to the predictions; None for generated units.
        calibrated: ``probs`` are over the unit's declared labels, so calibration applies.
    """

    texts: list[str]
    answers: list[str | None]
    probs: Any | None = None
    calibrated: bool = False


class StudentKind(ABC):
    """One kind of student: how it is built, trained, saved, asked and timed.

    Args:
        spec: the cell's effective spec (the manifest's ``spec``: ``student``, ``units``,
            ``evaluation``, ``seed``).
        paths: the manifest's resolved paths (``student_model``, ``teacher_model``).

    Attributes:
        name: the ``student.kind`` value.
        lm_eval: lm-eval's HFLM can score a finished cell of this kind (``harness lm-eval``:
            the student has a language-model head).
        token_soft_labels: it trains on a field set's token soft labels (``fields.<name>.
            soft_targets: topk``, the teacher's top-k next tokens).
        why_not: why it does not take another kind's option (or train on token soft labels:
            key ``token_soft_labels``), as a clause validate quotes in its message; where a key
            is absent, the message names the kinds that take it.
        spec: the cell's effective spec.
        student: ``spec.student`` with ``model`` the resolved checkpoint path, where compose
            recorded one (the spec names the checkpoint by its folder name only).
        model, tokenizer: set by :meth:`build`.
    """

    name: ClassVar[str] = ""
    lm_eval: ClassVar[bool] = False
    token_soft_labels: ClassVar[bool] = False
    why_not: ClassVar[Mapping[str, str]] = {}

    def __init__(self, spec: CellSpec, paths: Mapping[str, str]) -> None:
        self.spec = spec
        self.paths = paths
        student = spec.student
        if student.model:
            student = replace(student, model=paths.get("student_model", student.model))
        self.student: StudentPart = student
        self.model: Any = None
        self.tokenizer: Any = None

    @property
    def train_cfg(self) -> dict[str, Any]:
        """``student.train`` as the training loop takes it (:func:`harness.train.loop.run`
        also takes keys that are not YAML settings, from benchmarks and tests): the manifest's
        JSON, so a switch absent from an older manifest takes the loop's default."""
        return self.student.train.to_json()

    @classmethod
    @abstractmethod
    def options_model(cls) -> type[StudentOptions]:
        """The pydantic model of its ``student:`` section (a
        :class:`~harness.students.options.StudentOptions` subclass whose ``kind`` is
        ``Literal[name]``; imported on demand, the worker never imports pydantic)."""

    @classmethod
    def options(cls) -> frozenset[str]:
        """The ``student:`` keys it adds to those every kind reads (``kind``, ``model``,
        ``trust_remote_code``, ``train``)."""
        from harness.students.options import StudentOptions

        return frozenset(cls.options_model().model_fields) - frozenset(
            StudentOptions.model_fields)

    @classmethod
    @abstractmethod
    def objective_type(cls) -> type[Objective]:
        """The class of this kind's training objective (imported on demand)."""

    @classmethod
    def switches(cls) -> frozenset[str]:
        """The performance switches of ``student.train`` this kind honours (its objective's)."""
        return cls.objective_type().switches

    @classmethod
    def fast_path(cls) -> bool:
        """Whether its objective has the fast training path (``student.train.fast``)."""
        return cls.objective_type().fast_path

    @classmethod
    def answers_unit_kind(cls, unit_kind: str) -> bool:
        """Whether it can answer units of ``unit_kind`` (a registered unit kind's name)."""
        return True

    @classmethod
    def answered_unit_kinds(cls) -> tuple[str, ...]:
        """The registered unit kinds it can answer, in registration order."""
        import harness.units as unit_kinds

        return tuple(k for k in unit_kinds.names() if cls.answers_unit_kind(k))

    @abstractmethod
    def build(self, samples: Sequence[dict[str, Any]], seed: int) -> None:
        """Build (or load) :attr:`model` and :attr:`tokenizer`, seeded.

        Args:
            samples: rows of ``train.jsonl`` (a from-scratch tokenizer is trained on them).
            seed: initialisation seed.
        """

    @abstractmethod
    def objective(self, samples: list[dict[str, Any]]) -> Objective:
        """The training objective over ``samples`` (rows of ``train.jsonl``)."""

    def train(self, samples: list[dict[str, Any]], *, seed: int, device: Any,
              log: Log | None = None) -> dict[str, Any]:
        """Train :attr:`model` in place with the shared loop; returns its summary."""
        from harness.train import loop

        return loop.run(self.model, self.objective(samples), self.train_cfg, seed=seed,
                        device=device, log=log)

    def save(self, folder: Path) -> None:
        """Checkpoint and tokenizer into ``folder`` (``from_pretrained`` reloads them)."""
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)

    @abstractmethod
    def answer(self, unit_name: str, unit: Mapping[str, Any], prompts: list[str], device: Any
               ) -> Answers:
        """The student's answers to one unit's eval prompts.

        Args:
            unit_name: the unit's name in ``units``.
            unit: its spec (``kind``, ``answer_marker``, vocabulary).
            prompts: the items' prompts.
        """

    @abstractmethod
    def latency(self, prompts: list[str], device: Any, *, runs: int, batch_size: int,
                new_tokens: int, checkpoint_dir: Path) -> dict[str, Any]:
        """Latency and size figures (:mod:`harness.evaluate.latency`) over real prompts.

        Args:
            runs: timed batch-1 runs; batch_size: the throughput batch; new_tokens: tokens
            generated per run (students that generate); checkpoint_dir: the saved model.
        """


K = TypeVar("K", bound=type[StudentKind])
_KINDS: dict[str, type[StudentKind]] = {}


def register(cls: K) -> K:
    """Register a :class:`StudentKind` subclass under its ``name`` (a class decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if _KINDS.get(cls.name, cls) is not cls:
        raise ValueError(f"student kind {cls.name!r} is already registered")
    _KINDS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a kind registered at run time (tests that declare their own)."""
    _KINDS.pop(name, None)


def get(name: str) -> type[StudentKind]:
    """The student kind registered as ``name``.

    Raises:
        KeyError: nobody registered it (with a did-you-mean).
    """
    try:
        return _KINDS[name]
    except KeyError:
        raise KeyError(f"unknown student kind {name!r}{did_you_mean(name, _KINDS)} (known: "
                       f"{', '.join(sorted(_KINDS))})") from None


def names() -> list[str]:
    """The registered kinds' names, sorted."""
    return sorted(_KINDS)


def names_where(capable: Callable[[type[StudentKind]], bool]) -> list[str]:
    """The registered kinds' names, sorted, that have a capability (for messages naming the
    kinds that would do), e.g. ``names_where(lambda k: "adapter" in k.options())``."""
    return [n for n in sorted(_KINDS) if capable(_KINDS[n])]


def unsupported_switches(kind: str, train: Mapping[str, Any]) -> list[str]:
    """The performance switches ``train`` (``student.train``) turns on that ``kind`` cannot
    honour, in :data:`~harness.train.objective.SWITCHES` order."""
    honoured = get(kind).switches()
    return [s for s in SWITCHES if train.get(s) and s not in honoured]
