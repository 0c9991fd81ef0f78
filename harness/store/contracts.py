"""Typed records of the files that cross a stage boundary (standard library only).

=================  ==========================  =================================================
record             file                        written by -> read by
=================  ==========================  =================================================
:class:`CellManifest`  ``cells/<id>/manifest.json``  compose -> worker, run, analysis
:class:`CellMetrics`   ``cells/<id>/metrics.json``   worker -> run, analysis, report, ``lm-eval``
:class:`FailureRecord` ``cells/<id>/FAILED.json``    run -> report
:class:`RunRecord`     ``run.json``                  run -> analysis, gate, report
:class:`AnalysisRecord` ``analysis.json``            analysis -> gate, report
=================  ==========================  =================================================

(:mod:`harness.store.folder` names the files; this module knows only their contents.)

Every record is a :class:`~harness.store.record.Record`: a dataclass whose fields are the file's
keys, read strictly (a missing, unknown or mistyped key, or an unknown schema version, is a
:class:`~harness.store.record.ContractError` naming the file and the key; never a default) and
written back byte-identically. The reading rules live in :mod:`harness.store.record`.

The worker imports this module, so it may use only the standard library and harness modules
that do the same (:mod:`harness.errors`, :mod:`harness.store.record`,
:mod:`harness.store.cell_spec`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.store.cell_spec import CellSpec
from harness.store.record import ContractError, Record, join_key

__all__ = ["AnalysisRecord", "Axes", "CellEntry", "CellManifest", "CellMetrics", "CellSpec",
           "ContractError", "FailureRecord", "LeakageFacts", "Record", "RunRecord",
           "TeacherFacts"]

#: CellEntry's optional keys saying where the cell ran (written only when known) and what
#: reproduces its numbers
_WHERE_KEYS = ("executor", "node", "attempts", "checkpoint", "reproduce")
_STATUS_KEYS = {"done": ("train_seconds", "eval_seconds"), "failed": ("error",),
                "missing": ("error",)}


@dataclass(frozen=True)
class Axes(Record):
    """A cell's place in the matrix (``axes`` of the manifest and of metrics.json)."""

    bucket: str
    fields: str
    scale: float  #: share of the bucket's records, in (0, 1]
    seed: int


@dataclass(frozen=True)
class CellManifest(Record):
    """``manifest.json``: a composed cell (compose -> worker). Written last by compose."""

    VERSION_KEY: ClassVar[str | None] = "manifest_version"

    schema_version: int
    harness_version: str
    cell_id: str
    label: str
    is_baseline: bool
    axes: Axes
    spec: CellSpec  #: the cell's effective settings (harness.store.cell_spec)
    n_samples: int
    n_records: int
    counts: dict[str, Any]  #: "unit", "teacher", "pool", "origin", "unit/teacher" -> counts
    tokens: dict[str, Any]
    inputs: dict[str, Any]  #: "samples" / "eval" -> {"file", "sha256"}
    files: dict[str, str]  #: composed file name -> SHA-256
    eval_items: int
    paths: dict[str, str]  #: "student_model" / "teacher_model" -> local checkpoint folder

    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {"counts": ("unit",)}


@dataclass(frozen=True)
class CellMetrics(Record):
    """``metrics.json``: a finished cell's results (worker -> run, analysis, report).

    ``units`` maps unit name to the report of :func:`harness.evaluate.units.unit_report`
    (``n``, ``metrics``, ``slices``, ``calibration``, ``fidelity``) plus ``eval_seconds``;
    ``train`` is the training loop's summary (``train_seconds`` in seconds, ...); ``latency``
    the figures of :mod:`harness.evaluate.latency` (a classifier has no decode rate).
    """

    VERSION_KEY: ClassVar[str | None] = "metrics_version"

    schema_version: int
    cell_id: str
    label: str
    axes: Axes
    units: dict[str, dict[str, Any]]
    train: dict[str, Any]
    eval_seconds: float
    latency: dict[str, Any]
    environment: dict[str, Any]  #: device, torch, transformers, python, host

    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {
        "units": ("*.n", "*.metrics", "*.slices", "*.calibration", "*.fidelity",
                  "*.eval_seconds"),
        "train": ("train_seconds",)}


@dataclass(frozen=True)
class TeacherReport(Record):
    """One teacher on one unit in ``teacher_audit.json`` (unit -> teacher -> this; run ->
    analysis, report): its recorded eval answers scored like a student's
    (:func:`harness.evaluate.teacher_audit.audit_teachers`).

    ``n`` eval items; ``metrics`` the unit kind's metrics; ``slices`` per eval slice;
    ``calibration`` of its answer probabilities (None without); ``stated_confidence`` the
    calibration of the confidence it stated (``metrics``, ``n``, ``reliability``,
    ``ece_reliable``; None without).
    """

    n: int
    metrics: dict[str, Any]
    slices: dict[str, Any]
    calibration: dict[str, Any] | None
    stated_confidence: dict[str, Any] | None


@dataclass(frozen=True)
class FailureRecord(Record):
    """``FAILED.json``: why a cell failed (run -> report); ``kind`` names the failure class
    (``error``, ``non_finite_loss``, ``out_of_memory``, ``disk_full``)."""

    cell_id: str
    kind: str
    error: str
    hint: str
    traceback: str


@dataclass(frozen=True)
class TeacherFacts(Record):
    """What the run took from the sample repository for analysis (``run.json`` ``teachers``)."""

    n_records: int
    usage: dict[str, dict[str, int]]  #: teacher -> prompt_tokens / completion_tokens
    disagreement: dict[str, dict[str, float]]  #: unit -> rate / unjudged_rate


@dataclass(frozen=True)
class CellEntry(Record):
    """One cell in ``run.json``. ``done`` entries carry ``train_seconds`` and ``eval_seconds``;
    ``failed`` and ``missing`` ones carry ``error`` (the failure without its traceback's cell
    id, or null when the cell was not run now).

    Where it ran (optional; absent in run folders written before executors, and for cells no
    executor has run): ``executor`` (``local`` or ``ray``), ``node`` (the host, with the GPU
    slot on a local pool), ``attempts`` (1, or more when a lost worker was retried) and
    ``checkpoint`` (where the model went when not into the cell's ``model/`` folder).

    ``reproduce`` (optional; done cells): what reproduces the cell's numbers on another machine
    besides its spec and data: ``seed``, ``harness_version``, and from its metrics ``threads``,
    ``device``, ``dtype``, ``autocast``, ``deterministic``, ``cpu_capability``, ``torch_blas``,
    ``numpy_blas``, ``numerics_env`` and the ``torch`` / ``transformers`` / ``tokenizers`` /
    ``numpy`` / ``python`` versions (GPU cells: ``cuda``, ``gpu``, ``cudnn``, TF32 switches).
    """

    cell_id: str
    label: str
    is_baseline: bool
    status: str  #: "done", "failed" or "missing"
    train_seconds: float | None
    eval_seconds: float | None
    error: dict[str, str] | None
    executor: str | None = None
    node: str | None = None
    attempts: int | None = None
    checkpoint: str | None = None
    reproduce: dict[str, Any] | None = None

    @classmethod
    def _expected(cls, data: dict[str, Any], where: str, path: str) -> tuple[set[str], set[str]]:
        status = data.get("status")  # checked right here: unknown status is an error
        if status not in _STATUS_KEYS:
            raise ContractError(where, join_key(path, "status"),
                                f"{status!r} is not one of {', '.join(_STATUS_KEYS)}")
        keys = {"cell_id", "label", "is_baseline", "status", *_STATUS_KEYS[str(status)]}
        return keys, keys | set(_WHERE_KEYS)

    def _emitted(self) -> list[str]:
        return ["cell_id", "label", "is_baseline", "status", *_STATUS_KEYS[self.status],
                *(k for k in _WHERE_KEYS if getattr(self, k) is not None)]


@dataclass(frozen=True)
class LeakageFacts(Record):
    """Train-eval overlap that validation found and the run went on with (``run.json``
    ``leakage``; :func:`harness.samples.leakage.find_leaks`).

    ``policy`` is ``data.leakage`` (``error`` / ``warn`` / ``drop``): with ``warn`` the
    overlapping training records were kept (the eval items they leak into measure recall, not
    generalization); with ``drop`` they were removed before composing; ``error`` only ever runs
    with no overlap.
    """

    policy: str
    overlaps: int  #: (eval item, training record) pairs with the same id or normalized prompt
    eval_items: int  #: distinct eval items among them
    train_records: int  #: distinct training records among them (kept or dropped)


@dataclass(frozen=True)
class RunRecord(Record):
    """``run.json``: the run's spec, cells and inputs (run -> analysis, gate, report).

    ``leakage`` is optional: run folders written before it was recorded read as None (not
    recorded), never as "no overlap". So is ``numerics``: the torch thread count the run
    computed its cells with (``threads``), where it came from (``threads_from``: ``default``,
    ``--threads``, ``execution.threads``), and the finished cells per thread count their
    metrics record (``finished_cells_by_threads``: more than one key means mixed settings).
    """

    VERSION_KEY: ClassVar[str | None] = "schema_version"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"leakage", "numerics"})

    schema_version: int
    experiment: str
    experiment_file: str
    spec: dict[str, Any]  #: the experiment's validated spec (harness.experiment.models.Experiment)
    teachers: TeacherFacts
    baseline: dict[str, Any]
    cells: list[CellEntry]
    inputs: dict[str, str]  #: "samples" / "eval" -> SHA-256 of the input file
    python: str
    pid: int
    leakage: LeakageFacts | None = None
    numerics: dict[str, Any] | None = None

    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {
        "spec": ("units", "stop", "gate", "costs", "buckets")}


@dataclass(frozen=True)
class AnalysisRecord(Record):
    """``analysis.json``'s envelope (analysis -> gate, report); the sections stay open maps.

    ``computed_from`` (optional) is the hash of the run folder contents the analysis was
    computed from; an analysis without it cannot be shown to be current. ``bootstrap``
    (optional) holds the bootstrap counts it was computed with.
    """

    VERSION_KEY: ClassVar[str | None] = "analysis_version"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"computed_from", "bootstrap"})

    schema_version: int
    experiment: str
    date: str  #: ISO 8601, UTC
    gate: dict[str, Any]  #: decision, exit_status, cell, reasons
    signals: list[dict[str, Any]]
    attribution: dict[str, Any]
    learning_curves: list[dict[str, Any]]
    fidelity: list[dict[str, Any]]
    fidelity_flags: list[str]
    roi: list[dict[str, Any]]
    history: list[str]
    computed_from: str | None
    #: ``{"n_boot", "curve_boot"}`` the analysis was computed with (absent in older records):
    #: the report recomputes a stale one with the same counts the last ``harness gate`` used
    bootstrap: dict[str, int] | None = None

    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {
        "gate": ("decision", "exit_status", "cell", "reasons")}
