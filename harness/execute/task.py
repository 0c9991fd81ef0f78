"""A cell's task, on the node that runs it: unpack, run the worker, pack what it produced.

:func:`execute_cell` is what a pool worker process and a Ray task call. A local worker process
given the cell's own folder (``in_place``) runs the cell there, as the in-process path does.
Otherwise it writes the shipped cell folder into a temporary directory, runs
:func:`harness.worker.run_cell` there (the same function ``harness worker`` runs), and returns
every file the worker added (metrics, predictions, training log, ``DONE``; the model folder
only when ``execution.checkpoint`` is ``keep``), so the driver needs no shared file system. A
cell that raises comes back as a failed result with its
:func:`~harness.execute.base.failure_record`; only a lost process escapes.

Imports: the standard library and worker-path harness modules (torch, transformers and numpy
through the worker); fsspec only for a ``storage`` URI with a scheme.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from harness.execute.base import CellResult, CellTask, CheckpointPolicy, failure_record
from harness.store.folder import DONE, MODEL


def checkpoint_target(policy: CheckpointPolicy, cell_id: str) -> str:
    """``<storage>/<experiment>/<cell_id>/model`` (a path or a URI, ``/``-joined)."""
    base = (policy.storage or "").rstrip("/")
    return f"{base}/{policy.experiment}/{cell_id}/{MODEL}"


def store_checkpoint(model_dir: Path, policy: CheckpointPolicy, cell_id: str) -> str:
    """Copy ``model_dir`` to its place under ``policy.storage``; returns where it went.

    A plain path (one every node sees) is written under a temporary name and renamed, so a
    reader never sees half a checkpoint; a URI with a scheme (``s3://``, ``gs://``, ``file://``)
    goes through fsspec, which must be installed on the workers with the scheme's package.
    """
    target = checkpoint_target(policy, cell_id)
    if "://" in target:
        import fsspec  # only for object storage; the worker path does not need it otherwise

        fs, path = fsspec.core.url_to_fs(target)
        if fs.exists(path):
            fs.rm(path, recursive=True)
        fs.put(str(model_dir), path, recursive=True)
        return target
    dest = Path(target)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{MODEL}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(model_dir, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return str(dest)


def produced_files(cell_dir: Path, shipped: set[str], *, with_model: bool) -> dict[str, bytes]:
    """Every file under ``cell_dir`` that was not ``shipped`` in, as relative name -> bytes
    (``model/`` only ``with_model``; temporaries starting with ``.`` left out)."""
    out: dict[str, bytes] = {}
    for path in sorted(cell_dir.rglob("*")):
        rel = path.relative_to(cell_dir).as_posix()
        if not path.is_file() or rel in shipped or any(p.startswith(".") for p in path.parts[
                len(cell_dir.parts):]):
            continue
        if rel.split("/", 1)[0] == MODEL and not with_model:
            continue
        out[rel] = path.read_bytes()
    return out


def execute_cell(task: CellTask, *, node: str | None = None) -> CellResult:
    """Run one shipped cell in a temporary folder and return what the worker produced.

    Args:
        task: the composed cell's files and how to run it.
        node: where this runs, for the record (default: the host name).
    """
    import harness.worker as worker  # the module, so a test's monkeypatch of run_cell holds

    t0 = time.perf_counter()
    where = node or platform.node()
    if task.in_place is not None:
        return _execute_in_place(task, where, t0)
    with tempfile.TemporaryDirectory(prefix=f"harness-{task.cell_id}-") as tmp:
        cell_dir = Path(tmp) / task.cell_id
        for rel, data in task.files.items():
            dest = cell_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        try:
            worker.run_cell(cell_dir, device=task.device, threads=task.threads)
            policy = task.checkpoint
            stored = (store_checkpoint(cell_dir / MODEL, policy, task.cell_id)
                      if policy.mode == "storage" else None)
            files = produced_files(cell_dir, set(task.files), with_model=policy.mode == "keep")
        except Exception as exc:  # noqa: BLE001 - reported as the cell's failure, not raised
            return CellResult(task.cell_id, ok=False, failure=failure_record(exc), node=where,
                              seconds=time.perf_counter() - t0, attempts=task.attempt)
    if DONE not in files:  # run_cell returned without marking: never read as finished
        return CellResult(task.cell_id, ok=False, node=where, attempts=task.attempt,
                          seconds=time.perf_counter() - t0,
                          failure={"kind": "error", "error": "the worker wrote no DONE marker",
                                   "hint": "see the worker's output", "traceback": ""})
    return CellResult(task.cell_id, ok=True, files=files, node=where, attempts=task.attempt,
                      seconds=time.perf_counter() - t0, checkpoint=stored)


def _execute_in_place(task: CellTask, where: str, t0: float) -> CellResult:
    """Run the cell in its own run-folder folder (a local worker: the driver's file system).

    The worker writes every file atomically and ``DONE`` last, as in process; a process killed
    half-way leaves a folder without ``DONE``, which the next run redoes.
    """
    import harness.worker as worker

    assert task.in_place is not None
    try:
        worker.run_cell(Path(task.in_place), device=task.device, threads=task.threads)
    except Exception as exc:  # noqa: BLE001 - reported as the cell's failure, not raised
        return CellResult(task.cell_id, ok=False, failure=failure_record(exc), node=where,
                          seconds=time.perf_counter() - t0, attempts=task.attempt)
    return CellResult(task.cell_id, ok=True, node=where, attempts=task.attempt,
                      seconds=time.perf_counter() - t0, in_place=True)
