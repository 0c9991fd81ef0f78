"""The driver's side of a shipped cell: pack the composed folder, write back what returns.

No shared file system is assumed: :func:`pack_cell` reads the files ``compose`` wrote (spec,
manifest, training and eval sets) into a :class:`~harness.execute.base.CellTask`, and
:func:`write_result` writes a worker's files into the run folder with atomic writes, ``DONE``
last, exactly as an in-process worker would have left them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from harness.execute.base import CellJob, CellResult, CellTask, CheckpointPolicy
from harness.fsutil import atomic_write
from harness.store.folder import DONE, EVAL, MANIFEST, MODEL, SPEC, TRAIN, CellFolder

#: The composed files a worker reads (compose writes them; the manifest last).
COMPOSED = (SPEC, MANIFEST, TRAIN, EVAL)


def pack_cell(job: CellJob, *, device: str | None, threads: int | None,
              checkpoint: CheckpointPolicy) -> CellTask:
    """The composed cell folder's files as bytes, with how to run it (first attempt)."""
    files = {name: (job.folder.path / name).read_bytes() for name in COMPOSED
             if (job.folder.path / name).is_file()}
    return CellTask(cell_id=job.cell_id, label=job.label, files=files, device=device,
                    threads=threads, checkpoint=checkpoint)


def _safe(rel: str) -> PurePosixPath:
    """A returned file name that stays inside the cell folder (no absolute path, no ``..``)."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"a worker returned the unsafe file name {rel!r}")
    return p


def _bytes_writer(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def write_result(folder: CellFolder, result: CellResult) -> None:
    """Write a finished cell's returned files into ``folder``; ``DONE`` last.

    ``DONE`` is removed first, so a driver killed half-way leaves a folder the next run treats
    as unfinished. A returned ``model/`` replaces the old one (no stale files of an earlier
    run survive next to the new checkpoint).
    """
    if not result.ok or result.in_place:
        return
    done = result.files.get(DONE, b"").decode("utf-8").strip()
    if done != result.cell_id:
        raise ValueError(f"the worker's {DONE} marker holds {done!r}, not {result.cell_id!r}")
    folder.clear_done()
    if any(rel.split("/", 1)[0] == MODEL for rel in result.files):
        shutil.rmtree(folder.model, ignore_errors=True)
    for rel, data in sorted(result.files.items()):
        if rel == DONE:
            continue
        atomic_write(folder.path / _safe(rel), _bytes_writer(data))
    folder.mark_done(result.cell_id)
