"""Experiment tracking: ``harness run``, ``gate`` and ``report`` logged into MLflow.

Off unless asked for (``tracking: {mlflow: {...}}`` in the YAML, or ``harness run --track
URI``): a plain run imports nothing of MLflow and writes nothing more. When on,

- ``harness run`` opens one *parent* MLflow run per run folder (a resumed run reopens it) and,
  after the cells, logs one *nested* run per finished or failed cell of the matrix that the
  tracker does not hold yet (:mod:`harness.tracking.mlflow_log` says what goes in one);
- ``harness gate`` adds the decision and its reasons to the parent, ``harness report`` the HTML.

Which tracker and which parent run belong to a run folder is recorded in
``<run folder>/tracking.json`` (written by ``harness run``, read by ``gate`` and ``report``)::

    {"version": 1, "current": "embedded",
     "stores": {"embedded": {"experiment": "demo", "experiment_id": "1",
                             "parent_run_id": "3f2a..."}}}

``"embedded"`` stands for the SQLite store inside the run folder
(``sqlite:///<run folder>/mlflow.db``, artifacts in ``<run folder>/mlartifacts/``), resolved
against the folder when read, so a moved run folder still finds its store.

Tracking never breaks a run: an unreachable tracker at the start is a warning (an
:class:`~harness.errors.InputError`, exit 2, only with ``required: true``), and any error while
logging later is a warning; the run's own files are complete either way, and the next
``harness run`` logs what is missing. The standard library only here: MLflow is imported by
:mod:`harness.tracking.mlflow_log`, once tracking is known to be on.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError, Problem
from harness.fsutil import atomic_write_json

if TYPE_CHECKING:
    from harness.experiment.models import Experiment
    from harness.tracking.mlflow_log import RunTracker

#: The run folder's record of its tracker (see the module docstring).
TRACKING_FILE = "tracking.json"
#: The URI recorded for the embedded store (resolved against the run folder when read).
EMBEDDED = "embedded"
#: The embedded store's database and artifact folder, inside the run folder.
EMBEDDED_DB = "mlflow.db"
EMBEDDED_ARTIFACTS = "mlartifacts"
_VERSION = 1

__all__ = ["EMBEDDED", "TRACKING_FILE", "Target", "log_gate", "log_report", "start_run",
           "target_of", "warn"]


def warn(message: str) -> None:
    """One ``warning: tracking: ...`` line on stderr (tracking never fails a command)."""
    print(f"warning: tracking: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Target:
    """Where a run is tracked.

    Attributes:
        uri: a tracking URI as the user gave it, or :data:`EMBEDDED`.
        experiment: the MLflow experiment name.
        required: an unreachable tracker at the start stops the run (exit 2).
        where, field: what set the URI, for messages (the YAML file and
            ``tracking.mlflow.uri``, or ``--track`` and "").
    """

    uri: str
    experiment: str
    required: bool = False
    where: str = "--track"
    field: str = ""

    def store_uri(self, run_dir: Path) -> str:
        """The URI MLflow's client is given (the embedded store's absolute SQLite URI)."""
        return embedded_uri(run_dir) if self.uri == EMBEDDED else self.uri

    def shown(self, run_dir: Path) -> str:
        """The tracker, for messages."""
        if self.uri == EMBEDDED:
            return f"the embedded store {run_dir / EMBEDDED_DB}"
        return self.uri

    def artifact_location(self, run_dir: Path) -> str | None:
        """Where a new experiment keeps its artifacts: ``mlartifacts/`` beside the embedded
        store, or beside the database file of a ``sqlite:///`` URI (MLflow's own default would
        be ``./mlruns`` in whatever folder the command ran in); None for any other tracker
        (a server's default artifact root)."""
        if self.uri == EMBEDDED:
            return (run_dir.resolve() / EMBEDDED_ARTIFACTS).as_uri()
        if self.uri.startswith("sqlite:///"):
            db = self.uri.removeprefix("sqlite:///").split("?", 1)[0]
            if db and db != ":memory:":
                return (Path(db).resolve().parent / EMBEDDED_ARTIFACTS).as_uri()
        return None


def embedded_uri(run_dir: Path) -> str:
    """``sqlite:////abs/<run folder>/mlflow.db``: the embedded store of a run folder."""
    return f"sqlite:///{(run_dir.resolve() / EMBEDDED_DB).as_posix()}"


def target_of(spec: Experiment, track: str | None, yaml_path: Path | None = None
              ) -> Target | None:
    """The tracker of a ``harness run``: ``--track URI`` over ``tracking.mlflow.uri``;
    None when neither the flag nor the section asks for tracking.

    Args:
        spec: the validated experiment.
        track: the ``--track`` value (None: not given).
        yaml_path: the experiment file, for messages.

    Raises:
        InputError: ``--track`` is blank or holds a password (as the section's validation
            refuses them).
    """
    section = spec.tracking.mlflow if spec.tracking is not None else None
    if track is None and section is None:
        return None
    if track is not None:
        from harness.experiment.tracking import check_uri_secret

        try:
            if not track.strip():
                raise ValueError("needs a URI (for the embedded store, leave --track out and "
                                 "write `tracking: {mlflow: {}}` in the YAML)")
            check_uri_secret(track)
        except ValueError as exc:
            raise InputError("--track: the tracking URI is refused",
                             [Problem("--track", "", str(exc))]) from None
    uri = track if track is not None else (section.uri if section else None)
    return Target(uri=uri or EMBEDDED,
                  experiment=(section.experiment if section and section.experiment
                              else spec.name),
                  required=bool(section and section.required),
                  where="--track" if track is not None else str(yaml_path or "experiment"),
                  field="" if track is not None else (
                      "tracking.mlflow.uri" if uri else "tracking.mlflow"))


def start_run(spec: Experiment, run_dir: Path, track: str | None = None,
              yaml_path: Path | None = None, experiment_file: str | None = None
              ) -> RunTracker | None:
    """Open (or reopen) the parent run of ``run_dir`` before any cell runs.

    Returns None when tracking is off, or when the tracker cannot be reached and is not
    required (after a warning). With tracking off, a ``tracking.json`` left by an earlier run
    is marked inactive, so ``gate`` and ``report`` stop logging into that tracker.

    Raises:
        InputError: the tracker cannot be reached and ``tracking.mlflow.required`` is true,
            or ``--track`` holds a password.
    """
    target = target_of(spec, track, yaml_path)
    if target is None:
        _deactivate(run_dir)
        return None
    try:
        from harness.tracking.mlflow_log import TrackingUnavailable, open_run_tracker
    except ImportError as exc:  # a broken or missing install must not break the run either
        _unavailable(target, run_dir, f"MLflow cannot be imported: {exc}")
        return None
    try:
        return open_run_tracker(target, run_dir, spec.name, experiment_file)
    except TrackingUnavailable as exc:
        _unavailable(target, run_dir, str(exc))
        return None


def _unavailable(target: Target, run_dir: Path, reason: str) -> None:
    """Warn that the run goes on untracked; raise :class:`InputError` (exit 2) instead when
    the tracker is required."""
    if target.required:
        raise InputError(
            f"the MLflow tracker {target.shown(run_dir)} cannot be reached, and "
            "tracking.mlflow.required is true: nothing was run",
            [Problem(target.where, target.field,
                     f"{reason} (set required: false to run untracked with a warning)")])
    warn(f"{target.shown(run_dir)} cannot be reached ({reason}); this run is not tracked "
         "(the next `harness run` logs its cells once the tracker answers)")


# -- the run folder's record ------------------------------------------------------------------
def read_record(run_dir: Path) -> dict[str, Any] | None:
    """``tracking.json`` of a run folder; None when absent or unreadable (warned)."""
    path = run_dir / TRACKING_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not isinstance(record.get("stores"), dict):
            raise ValueError("not a tracking record")
    except (OSError, ValueError) as exc:
        warn(f"{path} is unreadable ({exc}); ignored")
        return None
    return record


def write_record(run_dir: Path, target: Target, experiment_id: str, parent_run_id: str) -> None:
    """Record ``target``'s experiment and parent run as the run folder's current tracker
    (earlier trackers' entries are kept: going back to one reopens its parent run)."""
    record = read_record(run_dir) or {"version": _VERSION, "stores": {}}
    record["current"] = target.uri
    record["stores"][target.uri] = {"experiment": target.experiment,
                                    "experiment_id": experiment_id,
                                    "parent_run_id": parent_run_id}
    atomic_write_json(run_dir / TRACKING_FILE, record)


def _deactivate(run_dir: Path) -> None:
    """No tracker for this run: ``gate``/``report`` must not log into the last one."""
    record = read_record(run_dir)
    if record is not None and record.get("current") is not None:
        record["current"] = None
        atomic_write_json(run_dir / TRACKING_FILE, record)


def current_parent(run_dir: Path) -> tuple[str, str] | None:
    """(store URI, parent run id) of the tracker the last ``harness run`` of ``run_dir``
    logged into; None when that run was not tracked."""
    record = read_record(run_dir)
    if record is None or record.get("current") is None:
        return None
    uri = record["current"]
    entry = record["stores"].get(uri)
    if not isinstance(entry, dict) or not isinstance(entry.get("parent_run_id"), str):
        return None
    return (embedded_uri(run_dir) if uri == EMBEDDED else str(uri)), entry["parent_run_id"]


# -- gate and report ---------------------------------------------------------------------------
def log_gate(run_dir: Path, gate: dict[str, Any]) -> None:
    """Add the gate's decision to the run's parent MLflow run (nothing when not tracked).

    Tags ``harness.gate.decision``, ``harness.gate.exit_status``, ``harness.gate.cell``,
    ``harness.gate.reasons`` (one per line) and ``harness.gate.actions``; the run's note (its
    description in the MLflow UI) shows the decision and reasons; artifact
    ``gate/decision.json``. A later gate overwrites them.
    """
    _annotate(run_dir, "the gate's decision", gate=gate)


def log_report(run_dir: Path, html: Path) -> None:
    """Add the report's HTML to the run's parent MLflow run (artifact ``report/<name>``)."""
    _annotate(run_dir, "the report", report=html)


def _annotate(run_dir: Path, what: str, **items: Any) -> None:
    """Hand ``items`` to :func:`harness.tracking.mlflow_log.annotate_parent` for the run's
    parent MLflow run; nothing when the run is not tracked, a warning naming ``what`` when
    MLflow cannot be imported."""
    where = current_parent(run_dir)
    if where is None:
        return
    try:
        from harness.tracking.mlflow_log import annotate_parent
    except ImportError as exc:
        warn(f"{what} was not logged: MLflow cannot be imported ({exc})")
        return
    annotate_parent(*where, **items)
