"""What ``harness run``, ``gate`` and ``report`` log into MLflow, through MLflow's own client
(:class:`mlflow.tracking.MlflowClient`; imported only when tracking is on).

One **parent run** per run folder (``mlflow.runName``: the experiment's name; tag
``harness.run_dir``), reopened by every ``harness run`` of that folder, and per cell one
**nested run** (tag ``mlflow.parentRunId``; ``mlflow.runName``: the cell's label):

- params: ``cell_id``, ``label``, ``bucket``, ``fields``, ``scale``, ``seed``, ``is_baseline``,
  ``student`` (kind and checkpoint or config, one line) and the resolved definitions behind
  them, flattened: ``bucket.select``, ``fields.rationale``, ``student.train.lr``, ...;
- metrics: every row of the cell in the results table as ``<unit>/<metric>`` (slice ``all``)
  or ``<unit>/<metric>/<key>/<value>`` (slice ``key=value``); the training curve from
  ``train_log.jsonl`` as ``train/loss``, ``train/loss_mean``, ``train/lr``, ``train/grad_norm``,
  ``train/tokens_per_s`` at each logged optimizer step; the training summary as
  ``train_summary/<key>`` (seconds, steps, tokens, final loss); ``eval_seconds``; latency and
  size as ``latency/<metric>`` (milliseconds, items or tokens per second, MB, parameters);
- artifacts: the cell's ``metrics.json``, ``train_log.jsonl`` and ``spec.yaml`` (a failed cell:
  ``FAILED.json``, run status FAILED, tag ``harness.error``).

A nested run is tagged with its cell id and a fingerprint (SHA-256 of ``metrics.json``, or of
``FAILED.json``) and, last, ``harness.logged = complete``. Before logging, the parent's children
are listed: a cell whose fingerprint is already logged completely is skipped (a resumed run logs
nothing twice), a half-logged one (the run was killed while logging it) is deleted and logged
again, and a cell recomputed with ``--force`` gets a new nested run, the older ones tagged
``harness.current = false``.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from harness import __version__
from harness.matrix import Cell
from harness.store.folder import CellFolder, RunFolder
from harness.students.base import DEFAULT_KIND
from harness.tracking import TRACKING_FILE, Target, warn, write_record

#: MLflow's limits per ``log_batch`` call (mlflow.utils.validation).
_MAX_METRICS, _MAX_PARAMS = 1000, 100
#: Longest param and tag values MLflow stores (longer ones are cut here, with a marker).
_MAX_PARAM, _MAX_TAG = 6000, 8000
#: Training-log columns logged as curves (per optimizer step).
CURVE_KEYS = ("loss", "loss_mean", "lr", "grad_norm", "tokens_per_s")
#: Errors about what was sent (one cell's data), not about the tracker: the others go on.
_CONTENT_ERRORS = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_LIMIT_EXCEEDED",
                             "BAD_REQUEST", "INVALID_STATE"})
#: HTTP settings while tracking, unless the user set them: MLflow's defaults retry a dead
#: server for minutes (7 retries, backoff factor 2, 120 s timeouts).
_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
         "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
#: ... and while probing the tracker at the start: an unreachable one answers at once.
_PROBE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


class TrackingUnavailable(Exception):
    """The tracker could not be reached or set up at the start of a run (message: why)."""


@contextlib.contextmanager
def bounded_http(probe: bool = False) -> Iterator[None]:
    """MLflow's HTTP retries and timeouts bounded (:data:`_HTTP`, :data:`_PROBE`) for the
    block, where the user did not set them; the environment is restored after (worker
    processes started later see it unchanged)."""
    wanted = {**_HTTP, **(_PROBE if probe else {})}
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _quiet() -> None:
    """MLflow announces creating and migrating a SQLite store at INFO: not for our stderr."""
    for name in ("mlflow.store.db.utils", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def short(exc: BaseException) -> str:
    """The first line of an error, at most 300 characters (MLflow's can hold a whole URL and
    retry history)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# -- names and values ---------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^\w.\- ]")


def _part(text: str) -> str:
    """One ``/``-separated part of a metric or param key: MLflow keys allow letters, digits,
    ``_ - . /`` and spaces (``:`` not on Windows), and no part that resolves as a path
    (``.``, ``..``); anything else becomes ``_``."""
    clean = _UNSAFE.sub("_", text).strip()
    return "_" if clean in ("", ".", "..") else clean


def metric_key(unit: str, metric: str, slice_: str) -> str:
    """``<unit>/<metric>`` for slice ``all``, ``<unit>/<metric>/<key>/<value>`` for slice
    ``key=value`` (MLflow's UI groups keys by their ``/`` prefixes)."""
    parts = [unit, metric] if slice_ == "all" else [unit, metric, *slice_.split("=", 1)]
    return "/".join(_part(p) for p in parts)[:250]


def _unique(keys: dict[str, float], key: str, origin: str) -> str:
    """``key``, or ``key-<hash of origin>`` when another row already took it (two slices that
    differ only in characters MLflow refuses)."""
    if key not in keys:
        return key
    return f"{key[:240]}-{hashlib.sha256(origin.encode()).hexdigest()[:6]}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 12] + " [truncated]"


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """A nested JSON value as ``prefix.key.sub`` -> compact text (lists as JSON)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{_part(str(k))}", v))
        return out
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return {prefix: _cut(text, _MAX_PARAM)}


def student_summary(student: dict[str, Any]) -> str:
    """One line naming the student: ``causal_lm config(layers=1, hidden=32, ...)``, or
    ``classifier model=all-MiniLM-L6-v2``, ``+lora`` with an adapter."""
    kind = student.get("kind", DEFAULT_KIND)
    if student.get("model"):
        what = f"model={student['model']}"
    else:
        cfg = student.get("config") or {}
        what = "config(" + ", ".join(f"{k}={v}" for k, v in cfg.items()) + ")"
    return f"{kind} {what}" + (" +lora" if student.get("adapter") else "")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- opening the parent run ---------------------------------------------------------------------
def _client(uri: str) -> MlflowClient:
    _quiet()
    return MlflowClient(tracking_uri=uri)


def open_run_tracker(target: Target, run_dir: Path, name: str,
                     experiment_file: str | None = None) -> RunTracker:
    """Reach the tracker, find or create its experiment, and reopen the run folder's parent
    run (the one ``tracking.json`` records for this tracker, else the one tagged with this run
    folder) or create it; status RUNNING until :meth:`RunTracker.log_run`.

    Raises:
        TrackingUnavailable: anything failed (the caller warns, or stops when required).
    """
    run_dir.mkdir(parents=True, exist_ok=True)  # the embedded store lives in it
    uri = target.store_uri(run_dir)
    try:
        client = _client(uri)
        with bounded_http(probe=True):
            experiment = client.get_experiment_by_name(target.experiment)
        with bounded_http():
            if experiment is None:
                experiment_id = client.create_experiment(
                    target.experiment, artifact_location=target.artifact_location(run_dir))
            elif experiment.lifecycle_stage != "active":
                raise TrackingUnavailable(
                    f"its experiment {target.experiment!r} is deleted (restore it in MLflow, "
                    "or name another with tracking.mlflow.experiment)")
            else:
                experiment_id = experiment.experiment_id
            parent = _find_parent(client, target, run_dir, experiment_id)
            if parent is None:
                parent = client.create_run(experiment_id, run_name=name, tags={
                    "harness.run_dir": str(run_dir.resolve()), "harness.kind": "run",
                    "harness.experiment": name, "harness.version": __version__,
                    "mlflow.source.type": "LOCAL",
                    "mlflow.source.name": experiment_file or name,
                    "mlflow.user": _user()}).info.run_id
            else:
                client.update_run(parent, status="RUNNING")
    except TrackingUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - connection, store, permission: all "unreachable"
        raise TrackingUnavailable(short(exc)) from exc
    try:
        write_record(run_dir, target, experiment_id, parent)
    except OSError as exc:  # the next run finds the parent by its run folder tag
        warn(f"{run_dir / TRACKING_FILE} could not be written ({exc}); `harness gate` and "
             "`harness report` will not log into the tracker")
    return RunTracker(client, target, RunFolder(run_dir), name, experiment_id, parent)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def _find_parent(client: MlflowClient, target: Target, run_dir: Path, experiment_id: str
                 ) -> str | None:
    """The parent run recorded in ``tracking.json`` for this tracker, if it still exists (not
    deleted) in ``experiment_id``; else the newest run of the experiment tagged with this run
    folder (the record was lost); else None."""
    from harness.tracking import read_record

    record = read_record(run_dir) or {}
    entry = record.get("stores", {}).get(target.uri) or {}
    run_id = entry.get("parent_run_id") if isinstance(entry, dict) else None
    if isinstance(run_id, str):
        try:
            run = client.get_run(run_id)
        except MlflowException:  # deleted for good, or another store at this URI now
            run = None
        if (run is not None and run.info.lifecycle_stage == "active"
                and run.info.experiment_id == experiment_id):
            return run_id
    folder = str(run_dir.resolve())
    if "'" in folder:  # cannot be quoted in a filter string: make a new parent
        return None
    found = client.search_runs(
        [experiment_id], f"tags.`harness.run_dir` = '{folder}' and tags.`harness.kind` = 'run'",
        max_results=1, order_by=["attributes.start_time DESC"])
    return found[0].info.run_id if found else None


# -- logging the cells --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Logged:
    """A nested run already in the tracker."""

    run_id: str
    fingerprint: str | None
    complete: bool
    current: bool


@dataclass
class RunTracker:
    """The parent run of one ``harness run``: :meth:`log_run` after the cells."""

    client: MlflowClient
    target: Target
    run: RunFolder
    experiment: str  #: the harness experiment's name
    experiment_id: str
    parent_run_id: str

    def log_run(self, cells: list[Cell]) -> int:
        """Log each finished or failed cell of ``cells`` (the whole matrix) that the tracker
        does not hold yet, then the parent's counts and ``run.json``, and end the parent run
        (FAILED when a cell failed). Never raises: an error is a warning, and what was not
        logged is logged by the next ``harness run``.

        Returns:
            How many nested runs were logged now.
        """
        logged = 0
        try:
            with bounded_http():
                children = self._children()
                for cell in cells:
                    try:
                        logged += self._log_cell(cell, children.get(cell.cell_id, []))
                    except MlflowException as exc:
                        if exc.error_code not in _CONTENT_ERRORS:
                            raise
                        warn(f"cell {cell.label} ({cell.cell_id}) was not logged: {short(exc)}")
                self._end_parent(cells)
        except Exception as exc:  # noqa: BLE001 - tracking never breaks a run
            warn(f"logging into {self.target.shown(self.run.root)} failed ({short(exc)}); "
                 f"{logged} cell(s) logged, the run's own files are complete, and the next "
                 "`harness run` logs the rest")
        return logged

    def _children(self) -> dict[str, list[_Logged]]:
        """Cell id -> the nested runs of the parent (not deleted)."""
        out: dict[str, list[_Logged]] = {}
        token: str | None = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], f"tags.mlflow.parentRunId = '{self.parent_run_id}'",
                run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            for r in page:
                tags = r.data.tags
                if "harness.cell_id" in tags:
                    out.setdefault(tags["harness.cell_id"], []).append(_Logged(
                        r.info.run_id, tags.get("harness.fingerprint"),
                        tags.get("harness.logged") == "complete",
                        tags.get("harness.current", "true") == "true"))
            token = page.token
            if not token:
                return out

    def _log_cell(self, cell: Cell, before: list[_Logged]) -> int:
        """Log one cell unless its fingerprint is already logged completely; 1 when logged."""
        folder = self.run.cell(cell.cell_id)
        if folder.is_done(cell.cell_id):
            status, fingerprint = "FINISHED", _digest(folder.metrics)
        elif folder.failed.is_file():
            status, fingerprint = "FAILED", _digest(folder.failed)
        else:
            return 0
        if any(b.complete and b.fingerprint == fingerprint for b in before):
            return 0
        for b in before:
            if not b.complete:  # a killed run left it half-logged: log the cell again
                self.client.delete_run(b.run_id)
        run_id = self._nested(cell, folder, status, fingerprint)
        for b in before:
            if b.complete and b.current:
                self.client.set_tag(b.run_id, "harness.current", "false")
        return 1 if run_id else 0

    def _nested(self, cell: Cell, folder: CellFolder, status: str, fingerprint: str) -> str:
        """Create, fill and end the nested run of one cell; its run id."""
        c = self.client
        end_ms = int((folder.done if status == "FINISHED" else folder.failed).stat().st_mtime
                     * 1000)
        metrics: list[Metric] = []
        if status == "FINISHED":
            m = folder.read_metrics()
            seconds = float(m.train.get("train_seconds") or 0) + float(m.eval_seconds or 0)
            start_ms = end_ms - int(seconds * 1000)
            metrics = self._metrics(folder, end_ms)
        else:
            start_ms = end_ms
        tags = {"mlflow.parentRunId": self.parent_run_id, "harness.cell_id": cell.cell_id,
                "harness.label": cell.label, "harness.fingerprint": fingerprint,
                "harness.status": "done" if status == "FINISHED" else "failed",
                "harness.baseline": str(cell.is_baseline).lower(), "harness.current": "true",
                "harness.experiment": self.experiment}
        if status == "FAILED":
            failure = json.loads(folder.failed.read_text(encoding="utf-8"))
            tags["harness.error"] = _cut(str(failure.get("error", "")), _MAX_TAG)
            tags["harness.failure_kind"] = str(failure.get("kind", ""))
        run_id = c.create_run(self.experiment_id, start_time=start_ms, tags=tags,
                              run_name=cell.label).info.run_id
        params = [Param(k, v) for k, v in self._params(cell).items()]
        for i in range(0, len(params), _MAX_PARAMS):
            c.log_batch(run_id, params=params[i:i + _MAX_PARAMS])
        for i in range(0, len(metrics), _MAX_METRICS):
            c.log_batch(run_id, metrics=metrics[i:i + _MAX_METRICS])
        for path in (folder.metrics, folder.train_log, folder.spec, folder.failed):
            if path.is_file() and (status == "FAILED") == (path == folder.failed):
                c.log_artifact(run_id, str(path))
        c.set_tag(run_id, "harness.logged", "complete")  # last: the cell is fully logged
        c.set_terminated(run_id, status, end_time=end_ms)
        return str(run_id)

    def _params(self, cell: Cell) -> dict[str, str]:
        eff = cell.effective
        axes = cell.axes
        params = {"cell_id": cell.cell_id, "label": cell.label, "bucket": axes.bucket,
                  "fields": axes.fields, "scale": repr(float(axes.scale)),
                  "seed": str(axes.seed), "is_baseline": str(cell.is_baseline).lower(),
                  "student": student_summary(eff.get("student", {}))}
        for section in ("bucket", "fields", "student"):
            body = {k: v for k, v in (eff.get(section) or {}).items() if k != "name"}
            params.update(flatten(section, body))
        return params

    def _metrics(self, folder: CellFolder, end_ms: int) -> list[Metric]:
        """Results rows, latency, training summary and curve of a finished cell."""
        from harness.store.results import cell_rows, latency_rows

        manifest, m = folder.read_manifest(), folder.read_metrics()
        values: dict[str, float] = {}
        for row in cell_rows(self.experiment, manifest, m):
            origin = f"{row['unit']}|{row['metric']}|{row['slice']}"
            key = _unique(values, metric_key(row["unit"], row["metric"], row["slice"]), origin)
            values[key] = row["value"]
        for row in latency_rows(self.experiment, manifest, m):
            values[f"latency/{_part(row['metric'])}"] = row["value"]
        for k, v in m.train.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v:
                values[f"train_summary/{_part(k)}"] = float(v)
        values["eval_seconds"] = float(m.eval_seconds)
        out = [Metric(k, v, end_ms, 0) for k, v in values.items()]
        out += list(_curve(folder.train_log, end_ms))
        return out

    def _end_parent(self, cells: list[Cell]) -> None:
        """The parent's counts (``cells_done``, ``cells_failed``, ``cells_missing``),
        ``run.json`` and status."""
        c = self.client
        done = failed = 0
        for cell in cells:
            folder = self.run.cell(cell.cell_id)
            if folder.is_done(cell.cell_id):
                done += 1
            elif folder.failed.is_file():
                failed += 1
        now = int(time.time() * 1000)
        counts = {"cells_done": done, "cells_failed": failed,
                  "cells_missing": len(cells) - done - failed}
        c.log_batch(self.parent_run_id,
                    metrics=[Metric(k, float(v), now, 0) for k, v in counts.items()],
                    tags=[RunTag(f"harness.{k}", str(v)) for k, v in counts.items()])
        if self.run.run_json.is_file():
            c.log_artifact(self.parent_run_id, str(self.run.run_json))
        c.set_terminated(self.parent_run_id, "FAILED" if failed else "FINISHED")


def _curve(train_log: Path, when_ms: int) -> Iterable[Metric]:
    """The training log's curves, one point per logged optimizer step (``step``); rows
    without a step or with a non-finite value are left out."""
    if not train_log.is_file():
        return
    with train_log.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            step = row.get("step") if isinstance(row, dict) else None
            if not isinstance(step, int):
                continue
            for key in CURVE_KEYS:
                v = row.get(key)
                if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) < float("inf"):
                    yield Metric(f"train/{key}", float(v), when_ms, step)


# -- gate and report ----------------------------------------------------------------------------
def annotate_parent(uri: str, parent_run_id: str, *, gate: dict[str, Any] | None = None,
                    report: Path | None = None) -> None:
    """Add the gate's decision or the report to a parent run. Never raises (a warning)."""
    what = "the gate's decision" if gate is not None else "the report"
    try:
        client = _client(uri)
        with bounded_http(probe=True):
            client.get_run(parent_run_id)
        with bounded_http():
            if gate is not None:
                _log_gate(client, parent_run_id, gate)
            if report is not None:
                client.log_artifact(parent_run_id, str(report), "report")
                client.set_tag(parent_run_id, "harness.report", str(report.resolve()))
    except Exception as exc:  # noqa: BLE001 - tracking never breaks a command
        warn(f"{what} was not logged into {uri} ({short(exc)})")


def _log_gate(client: MlflowClient, run_id: str, gate: dict[str, Any]) -> None:
    cell = gate.get("cell") or {}
    reasons = [str(r) for r in gate.get("reasons", [])]
    actions = [str(a) for a in gate.get("actions", [])]
    decision = str(gate.get("decision"))
    summary = gate.get("summary") or {}
    lead = ([f"Why: {summary['reason']}", f"Next: {summary['next_action']}", ""]
            if summary else [])
    note = "\n".join([f"**DECISION: {decision}**", "", *lead, *(f"- {r}" for r in reasons),
                      *(f"- TO DECIDE: {a}" for a in actions)])
    tags = {"harness.gate.decision": decision,
            "harness.gate.exit_status": str(gate.get("exit_status")),
            "harness.gate.cell": str(cell.get("arm") or cell.get("label") or ""),
            "harness.gate.reasons": _cut("\n".join(reasons), _MAX_TAG),
            "harness.gate.actions": _cut("\n".join(actions), _MAX_TAG),
            "mlflow.note.content": _cut(note, _MAX_TAG)}
    if summary:  # the report's first screen in two tags
        tags["harness.gate.why"] = _cut(str(summary["reason"]), _MAX_TAG)
        tags["harness.gate.next"] = _cut(str(summary["next_action"]), _MAX_TAG)
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    client.log_dict(run_id, {"decision": decision, "exit_status": gate.get("exit_status"),
                             "cell": cell, "reasons": reasons, "actions": actions,
                             "selection": gate.get("selection"), "summary": summary or None},
                    "gate/decision.json")
