"""The cell's effective settings as a typed record: ``spec`` of ``manifest.json``
(:class:`CellSpec`; standard library only, the GPU worker reads it).

:func:`harness.matrix.effective_spec` builds the JSON (a plain dict: the cell id is the hash of
its canonical form, so the dict stays the source of truth); compose stores it in the manifest
through this record, and the worker, the student kinds, ``lm-eval``, the results tables and the
report read it typed (``spec.student.train.max_len``).

Reading rules (:class:`~harness.store.record.Record`): every key is checked and none is unknown;
a read-then-write round trip gives back the same JSON. Settings added after cells were composed
without them are ``DEFAULTED``: absent, they read as the default below and are written absent
again, so an older manifest (and its cell id) survives a round trip unchanged. Keys an
effective spec leaves out on purpose while unset (``student.pooling``, ``student.adapter``,
``student.train.fast``, ``student.train.token_budget``; :meth:`harness.students.options.
StudentOptions.cell_dump`) are DEFAULTED too. The defaults are the experiment model's (each
student kind's options model, :mod:`harness.students.options`, and
:class:`harness.experiment.models.EvalSpec`); ``tests/test_cell_settings.py`` checks that they
agree.

Open maps stay maps where another module owns their keys: a unit's options (the unit-kind
interface takes JSON), the from-scratch ``config`` (:mod:`harness.students.build`), ``adapter``
and ``distill``, the bucket, field set, sampling and data sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from harness.cell_settings import EVALUATION
from harness.store.record import Record, absent_keys

__all__ = ["CellSpec", "EvaluationPart", "StudentPart", "TrainPart"]


#: The training loop's option keys that are not YAML keys (:attr:`TrainPart.LOOP_ONLY`).
LOOP_ONLY_KEYS = ("compile_backend", "compile_mode", "compile_dynamic", "log_every",
                  "fast_compile", "compile_scope", "compile_budget_s")


@dataclass(frozen=True, kw_only=True)
class TrainPart(Record):
    """``student.train``: the optimisation recipe (:class:`harness.students.options.TrainSpec`
    documents each key). ``epochs`` may be fractional; ``lr``, ``weight_decay``,
    ``warmup_ratio`` (a share of the steps) and ``clip`` (a gradient norm) are floats;
    ``max_len`` is in tokens. The switches and ``min_steps`` came later (DEFAULTED);
    ``fast`` (``auto`` / ``on`` / ``off``) and ``token_budget`` (tokens per fast-path
    micro-batch) are absent while unset.
    """

    #: Keys of the training loop's options that are not YAML keys
    #: (:class:`harness.train.loop.TrainOptions`): benchmarks (``gpu_matrix.py --switches``)
    #: and tests may put them in a cell's spec; absent, the loop's defaults hold (so a part
    #: built in code leaves them out: ``compile_budget_s: null`` would mean no deadline).
    LOOP_ONLY: ClassVar[tuple[str, ...]] = LOOP_ONLY_KEYS
    DEFAULTED: ClassVar[frozenset[str]] = frozenset({
        "min_steps", "packing", "chunked_ce", "compile", "fast", "token_budget", *LOOP_ONLY})

    epochs: float
    min_steps: int = 0
    batch_size: int
    grad_accum: int
    lr: float
    weight_decay: float
    warmup_ratio: float
    clip: float
    max_len: int
    packing: bool = False
    chunked_ce: bool = False
    compile: bool = False
    fast: str | None = None
    token_budget: int | None = None
    compile_backend: str | None = None
    compile_mode: str | None = None
    compile_dynamic: bool | None = None
    log_every: int | None = None
    fast_compile: bool | None = None
    compile_scope: str | None = None
    compile_budget_s: float | None = None
    absent: frozenset[str] = absent_keys(frozenset(LOOP_ONLY_KEYS))


@dataclass(frozen=True, kw_only=True)
class StudentPart(Record):
    """``student``: the student kind and what it is built from (a local checkpoint folder
    ``model``, named by its folder name in the effective spec, or a from-scratch ``config``),
    its training recipe and every kind's own options (each kind's model in
    :mod:`harness.students.options`; a manifest holds them all, the kinds without one at its
    unset value, in the order of these fields, which ``StudentOptions.CELL_ORDER`` reads).

    ``kind`` is absent from manifests composed before student kinds existed (a causal LM);
    ``pooling`` and ``adapter`` are absent while unset; ``config`` (``layers``, ``hidden``,
    ``digits``, ...), ``adapter`` (LoRA ``r``, ``alpha``, ``dropout``, ``target_modules``) and
    ``distill`` (``teacher_model``, ``alpha``, ``temperature``) stay maps: their readers
    (:mod:`harness.students.build`, :mod:`harness.students.adapter`, the causal-LM objective)
    take JSON.
    """

    DEFAULTED: ClassVar[frozenset[str]] = frozenset({
        "kind", "adapter", "trust_remote_code", "soft_targets", "head_lr", "pooling",
        "distill"})

    kind: str = "causal_lm"
    model: str | None
    adapter: dict[str, Any] | None = None
    config: dict[str, Any] | None
    trust_remote_code: bool = False
    soft_targets: bool = False
    head_lr: float | None = None
    pooling: str | None = None
    train: TrainPart
    distill: dict[str, Any] | None = None
    absent: frozenset[str] = absent_keys()


@dataclass(frozen=True, kw_only=True)
class EvaluationPart(Record):
    """``evaluation``: what the worker measures (:class:`harness.experiment.models.EvalSpec`;
    the defaults are :data:`harness.cell_settings.EVALUATION`): ``slices`` (tag keys every
    metric is sliced by), ``max_new_tokens`` (generation budget per eval answer, tokens),
    ``latency_runs`` (timed batch-1 runs), ``latency_new_tokens`` (tokens per latency run),
    ``latency_batch_size`` (the throughput run's batch, items)."""

    DEFAULTED: ClassVar[frozenset[str]] = frozenset({
        "slices", "max_new_tokens", "latency_runs", "latency_new_tokens", "latency_batch_size"})

    slices: list[str] = field(default_factory=lambda: list(EVALUATION.slices))
    max_new_tokens: int = EVALUATION.max_new_tokens
    latency_runs: int = EVALUATION.latency_runs
    latency_new_tokens: int = EVALUATION.latency_new_tokens
    latency_batch_size: int = EVALUATION.latency_batch_size
    absent: frozenset[str] = absent_keys()


@dataclass(frozen=True, kw_only=True)
class CellSpec(Record):
    """A cell's effective spec: everything that determines its results
    (:func:`harness.matrix.effective_spec`; the cell id hashes its JSON).

    Attributes:
        compose_version: :data:`harness.matrix.COMPOSE_VERSION` when it was composed.
        experiment: the experiment's name.
        bucket: the resolved bucket with its ``name`` (``select``, ``teachers``, ...).
        fields: the resolved field set with its ``name`` (``confidence``, ``rationale``,
            ``soft_targets`` and ``soft_weight`` when not hard, ...).
        scale: share of the bucket's records, in (0, 1].
        seed: the training seed.
        units: unit name -> its options (``kind``, ``answer_marker``, the kind's own keys).
        student: the student (:class:`StudentPart`).
        sampling: ``seed``, ``dedup``, ``clusters_per_unit``.
        evaluation: what the worker measures (:class:`EvaluationPart`).
        data: ``samples_sha256``, ``eval_sha256``, ``judge_scale``, ``leakage``.
    """

    compose_version: int
    experiment: str
    bucket: dict[str, Any]
    fields: dict[str, Any]
    scale: float
    seed: int
    units: dict[str, dict[str, Any]]
    student: StudentPart
    sampling: dict[str, Any]
    evaluation: EvaluationPart
    data: dict[str, Any]
