"""The executor interface and what travels between the driver and a cell's task.

The driver (``harness run``, :mod:`harness.run`) composes each cell into its run folder, then
hands it to an :class:`Executor` as a :class:`CellJob`. Executors that run the cell elsewhere (a
worker process, a Ray node: no shared file system is assumed) ship a :class:`CellTask` (the
composed folder's files as bytes, plain data only) and get back a :class:`CellResult` (the files
the worker produced, as bytes), which the driver writes into the run folder with atomic writes
and ``DONE`` last (:func:`harness.execute.shipping.write_result`).

Standard library only: a task's payload and result are unpickled on GPU nodes that have torch,
transformers and numpy and nothing else.
"""

from __future__ import annotations

import errno
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from harness.store.folder import CellFolder

#: Failure kind of a cell whose worker process or node was lost more often than allowed.
WORKER_LOST = "worker_lost"


@dataclass(frozen=True)
class CheckpointPolicy:
    """What becomes of a trained model (``execution.checkpoint`` / ``execution.storage``)."""

    mode: Literal["keep", "drop", "storage"] = "keep"
    storage: str | None = None  #: a path every node sees or an fsspec URI (mode "storage")
    experiment: str = ""  #: the checkpoint lands in <storage>/<experiment>/<cell_id>/model


@dataclass(frozen=True)
class CellJob:
    """A composed cell in the driver's run folder, ready to run."""

    cell_id: str
    label: str
    folder: CellFolder


@dataclass(frozen=True)
class CellTask:
    """What travels to a worker: everything it needs, as plain data.

    Attributes:
        files: composed file name (relative to the cell folder) -> its bytes; empty when the
            cell runs ``in_place``.
        device: ``cpu`` / ``cuda`` / None (the worker picks cuda when it has one).
        threads: torch intra-op threads the cell computes with (the run's setting:
            :func:`harness.threads.run_threads`; None: the worker's default, 1).
        attempt: 1 on first submission; +1 each time a lost worker is retried.
        in_place: the composed cell folder on the worker's own file system (a local worker
            process): the worker runs the cell there, as the in-process path does, and ships
            nothing back (None: run the shipped ``files`` in a temporary folder).
    """

    cell_id: str
    label: str
    files: dict[str, bytes]
    device: str | None = None
    threads: int | None = None
    checkpoint: CheckpointPolicy = CheckpointPolicy()
    attempt: int = 1
    in_place: str | None = None


@dataclass
class CellResult:
    """What a worker sends back for one cell.

    Attributes:
        ok: the worker finished the cell (metrics and ``DONE`` are among ``files``).
        files: produced file name (relative, ``/``-separated) -> bytes; empty when the files
            were written straight into the run folder (``in_place``).
        failure: ``kind``, ``error``, ``hint``, ``traceback`` when not ``ok``.
        node: where it ran (host name, plus the GPU slot on a local pool).
        seconds: the worker's wall time for the cell (unpacking to packing), in seconds.
        checkpoint: where the model went when not into the cell's ``model/`` folder.
    """

    cell_id: str
    ok: bool
    files: dict[str, bytes] = field(default_factory=dict)
    failure: dict[str, str] | None = None
    node: str = ""
    seconds: float = 0.0
    attempts: int = 1
    checkpoint: str | None = None
    in_place: bool = False


@dataclass(frozen=True)
class Event:
    """Something the executor observed: a cell ``started`` on a node, was ``retried`` after
    its worker was lost, or ``finished`` (with its result, successful or not)."""

    kind: Literal["started", "retried", "finished"]
    cell_id: str
    node: str = ""
    result: CellResult | None = None
    message: str = ""


class Executor(ABC):
    """Runs composed cells somewhere and reports back; the driver does everything else.

    The driver calls :meth:`start`, then :meth:`submit` for each cell (interleaved with
    :meth:`poll`, so results are written while later cells are still being composed), then
    :meth:`poll` until :meth:`pending` is 0, and :meth:`close` at the end. On Ctrl-C or any
    other error it calls :meth:`cancel` first: submitted cells are abandoned (their folders
    have no ``DONE``, so the next run runs them again).
    """

    name: ClassVar[str]

    def start(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Acquire workers or connect to the cluster (default: nothing to do)."""

    @abstractmethod
    def submit(self, job: CellJob) -> None:
        """Queue one composed cell (may run it right away, e.g. in process)."""

    @abstractmethod
    def poll(self, timeout: float) -> list[Event]:
        """Events since the last call, waiting up to ``timeout`` seconds for the first one."""

    @abstractmethod
    def pending(self) -> int:
        """Cells submitted whose ``finished`` event has not been returned yet."""

    def cancel(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Abandon every submitted cell not finished yet (default: nothing to do)."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release workers or the cluster connection (default: nothing to do)."""


def failure_record(exc: BaseException) -> dict[str, str]:
    """A failed cell's error with a plain reason and a hint of what to change."""
    from harness.train.loop import NonFiniteLoss

    text = f"{type(exc).__name__}: {exc}"
    kind, hint = "error", "see the traceback below; the other cells are unaffected"
    if isinstance(exc, NonFiniteLoss):
        kind, hint = "non_finite_loss", ("lower student.train.lr, raise warmup_ratio, or check "
                                         "for empty targets")
    elif "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError":
        kind, hint = "out_of_memory", ("lower student.train.batch_size or max_len (raise "
                                       "grad_accum to keep the effective batch)")
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        kind, hint = "disk_full", "free disk space in the run folder, then run again"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return {"kind": kind, "error": text, "hint": hint, "traceback": tb}


def lost_record(cell_label: str, attempts: int, why: str) -> dict[str, str]:
    """The failure of a cell whose worker was lost on every one of its ``attempts``."""
    return {"kind": WORKER_LOST,
            "error": f"the worker running {cell_label} was lost {attempts} time(s): {why}",
            "hint": "a worker process or node died under the cell (host out of memory, a "
                    "crash, preemption); raise execution.memory or execution.max_retries, or "
                    "run it alone with --only to see its output",
            "traceback": ""}
