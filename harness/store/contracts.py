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

Every record is a dataclass whose fields are the file's keys, in the order they are written.
``from_json(data, where)`` checks the schema version first, then that every key is present and
of its declared type and that no key is unknown; anything else raises :class:`ContractError`
naming the file and the key (``path/metrics.json: train.train_seconds: missing ...``). Nothing
is ever filled in with a default, so a renamed key fails loudly where it is read instead of
turning into a silent zero. ``to_json()`` gives back exactly the dict ``from_json`` was given
(values are checked, never coerced), so a read-then-write round trip is byte-identical.

Open maps whose keys belong to another module (the effective spec, per-unit reports, latency
figures, the analysis's sections) stay ``dict``; where a stage reads a key of such a map, the
record checks that key is there (see ``REQUIRED_INSIDE``).

The worker imports this module, so it may use only the standard library and harness modules
that do the same (:mod:`harness.errors`).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, ClassVar, TypeVar

from harness.errors import InputError, Problem

_STATUS_KEYS = {"done": ("train_seconds", "eval_seconds"), "failed": ("error",),
                "missing": ("error",)}


class ContractError(InputError):
    """A stage-boundary file that does not match its record (exit status 2).

    Attributes:
        where: the file (or another description of the source), e.g. ``runs/x/run.json``.
        key: dotted path of the offending key inside it (``cells[2].status``); "" for the file.
    """

    def __init__(self, where: str, key: str, message: str) -> None:
        self.where, self.key = where, key
        super().__init__(Problem(where, key, message).render())


R = TypeVar("R", bound="Record")


class Record:
    """Base of the contract records: strict JSON reading and writing (see module docstring).

    Class attributes a record may set:
        VERSION_KEY: the JSON key holding the ``schema_version`` field (None: not versioned).
        SCHEMA_VERSION: the only version this code reads and writes.
        OPTIONAL: JSON keys that may be absent (the field is then None, and None is not
            written); used only where absence itself means something.
        REQUIRED_INSIDE: per open-map field, keys that its value must hold (read downstream).
    """

    VERSION_KEY: ClassVar[str | None] = None
    SCHEMA_VERSION: ClassVar[int] = 1
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def _key(cls, name: str) -> str:
        """The JSON key of field ``name`` (``schema_version`` is stored under VERSION_KEY)."""
        return cls.VERSION_KEY if name == "schema_version" and cls.VERSION_KEY else name

    @classmethod
    def _expected(cls, data: dict[str, Any], where: str, path: str) -> tuple[set[str], set[str]]:
        """(required, allowed) JSON keys for ``data``."""
        allowed = {cls._key(f.name) for f in fields(cls)}  # type: ignore[arg-type]
        return allowed - cls.OPTIONAL, allowed

    @classmethod
    def from_json(cls: type[R], data: Any, where: str, *, path: str = "") -> R:
        """The record held by ``data`` (parsed JSON); raises :class:`ContractError`.

        Args:
            data: the parsed JSON value.
            where: the file it came from (used in error messages).
            path: the key path of ``data`` inside that file, for nested records.
        """
        if not isinstance(data, dict):
            raise ContractError(where, path, f"expected a JSON object ({cls.__name__}), found "
                                             f"{_json_type(data)}")
        if cls.VERSION_KEY:
            found = data.get(cls.VERSION_KEY)  # presence is checked right here, not defaulted
            if found != cls.SCHEMA_VERSION:
                state = "missing" if cls.VERSION_KEY not in data else f"{found!r} is unknown"
                raise ContractError(where, _join(path, cls.VERSION_KEY),
                                    f"{state}: this version of the harness reads "
                                    f"{cls.__name__} schema version {cls.SCHEMA_VERSION} only "
                                    "(not written by this version of the harness)")
        required, allowed = cls._expected(data, where, path)
        for key in data:
            if key not in allowed:
                raise ContractError(where, _join(path, key),
                                    f"unknown key in {cls.__name__} (expected: "
                                    f"{', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in data:
                raise ContractError(where, _join(path, key),
                                    f"missing from {cls.__name__} (not written by this version "
                                    "of the harness, or the file was edited)")
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            key = cls._key(f.name)
            values[f.name] = (_convert(data[key], hints[f.name], where, _join(path, key))
                              if key in data else None)
        for name, keys in cls.REQUIRED_INSIDE.items():
            _require_inside(values[name], keys, where, _join(path, cls._key(name)))
        return cls(**values)

    def _emitted(self) -> list[str]:
        """Field names written by :meth:`to_json` (an absent OPTIONAL key stays absent)."""
        return [f.name for f in fields(self)  # type: ignore[arg-type]
                if not (self._key(f.name) in self.OPTIONAL and getattr(self, f.name) is None)]

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record (keys in field order; values as read)."""
        return {self._key(name): _dump(getattr(self, name)) for name in self._emitted()}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path and not key.startswith("[") else f"{path}{key}"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                         type(value).__name__)


def _require_inside(value: Any, keys: tuple[str, ...], where: str, path: str) -> None:
    """Each map in ``value`` (a dict, or a dict of dicts when keys start with ``*.``) holds
    ``keys``."""
    for key in keys:
        if key.startswith("*."):
            for name, inner in value.items():
                if not isinstance(inner, dict):
                    raise ContractError(where, f"{path}.{name}", "expected a JSON object, found "
                                        f"{_json_type(inner)}")
                if key[2:] not in inner:
                    raise ContractError(where, f"{path}.{name}.{key[2:]}", "missing")
        elif key not in value:
            raise ContractError(where, f"{path}.{key}", "missing")


def _convert(value: Any, hint: Any, where: str, path: str) -> Any:
    """``value`` checked against the type ``hint`` (nested records built); never coerced."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _convert(value, hint, where, path)
    if hint is Any:
        return value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, where, path=path)
    if origin is list:
        _expect(isinstance(value, list), "an array", value, where, path)
        (item,) = typing.get_args(hint)
        return [_convert(v, item, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _expect(isinstance(value, dict), "an object", value, where, path)
        _, item = typing.get_args(hint)
        return {k: _convert(v, item, where, f"{path}.{k}") for k, v in value.items()}
    ok = {str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, int | float) and not isinstance(v, bool)}[hint]
    _expect(ok(value), {str: "a string", bool: "true/false", int: "an integer",
                        float: "a number"}[hint], value, where, path)
    return value


def _expect(ok: bool, wanted: str, value: Any, where: str, path: str) -> None:
    if not ok:
        raise ContractError(where, path, f"expected {wanted}, found {_json_type(value)}")


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    assert not is_dataclass(value), value  # every nested dataclass is a Record
    return value


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
    spec: dict[str, Any]  #: the cell's effective spec (its contract is harness.spec.models)
    n_samples: int
    n_records: int
    counts: dict[str, Any]  #: "unit", "teacher", "pool", "origin", "unit/teacher" -> counts
    tokens: dict[str, Any]
    inputs: dict[str, Any]  #: "samples" / "eval" -> {"file", "sha256"}
    files: dict[str, str]  #: composed file name -> SHA-256
    eval_items: int
    paths: dict[str, str]  #: "student_model" / "teacher_model" -> local checkpoint folder

    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {
        "spec": ("units",), "counts": ("unit",)}


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
    id, or null when the cell was not run now)."""

    cell_id: str
    label: str
    is_baseline: bool
    status: str  #: "done", "failed" or "missing"
    train_seconds: float | None
    eval_seconds: float | None
    error: dict[str, str] | None

    @classmethod
    def _expected(cls, data: dict[str, Any], where: str, path: str) -> tuple[set[str], set[str]]:
        status = data.get("status")  # checked right here: unknown status is an error
        if status not in _STATUS_KEYS:
            raise ContractError(where, _join(path, "status"),
                                f"{status!r} is not one of {', '.join(_STATUS_KEYS)}")
        keys = {"cell_id", "label", "is_baseline", "status", *_STATUS_KEYS[str(status)]}
        return keys, keys

    def _emitted(self) -> list[str]:
        return ["cell_id", "label", "is_baseline", "status", *_STATUS_KEYS[self.status]]


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
    recorded), never as "no overlap".
    """

    VERSION_KEY: ClassVar[str | None] = "schema_version"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"leakage"})

    schema_version: int
    experiment: str
    experiment_file: str
    spec: dict[str, Any]  #: the experiment's validated spec (harness.spec.models.Experiment)
    teachers: TeacherFacts
    baseline: dict[str, Any]
    cells: list[CellEntry]
    inputs: dict[str, str]  #: "samples" / "eval" -> SHA-256 of the input file
    python: str
    pid: int
    leakage: LeakageFacts | None = None

    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {
        "spec": ("units", "stop", "gate", "costs", "buckets")}


@dataclass(frozen=True)
class AnalysisRecord(Record):
    """``analysis.json``'s envelope (analysis -> gate, report); the sections stay open maps.

    ``computed_from`` (optional) is the hash of the run folder contents the analysis was
    computed from; an analysis without it cannot be shown to be current.
    """

    VERSION_KEY: ClassVar[str | None] = "analysis_version"
    OPTIONAL: ClassVar[frozenset[str]] = frozenset({"computed_from"})

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

    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {
        "gate": ("decision", "exit_status", "cell", "reasons")}
