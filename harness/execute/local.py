"""The local executor: cells in this process, or a pool of worker processes (GPU or CPU slots).

Which one :func:`local_executor` picks:

- GPUs visible: :class:`PoolExecutor` with the slots of :func:`plan_slots`: one long-lived
  worker process per slot, ``CUDA_VISIBLE_DEVICES`` naming the slot's GPU(s); with
  ``execution.gpus: 0.25`` four slots share each GPU, so four small cells run on it at once
  and no cell pays the process, torch and transformers start-up again;
- no GPU visible (or ``--device cpu``, or ``execution.gpus: 0``): the same pool with CPU slots
  ``cpu0``, ``cpu1``, ...: as many cells at once as :func:`cpu_workers` says (``--workers``,
  else ``$HARNESS_WORKERS``, else ``execution.cpu_workers``, else the cores divided by the
  run's threads, capped by ``execution.memory`` when set). One worker:
  :class:`InlineExecutor`, each cell in this process, one after another;
- ``--isolate``: the same pool, but every cell gets a fresh process (a crash, even a segfault,
  ends only that cell's process).

Every executor computes a cell with the run's thread count (:mod:`harness.threads`), so where a
cell ran never changes its numbers. A local worker runs the cell in its own folder of the run
(the driver's file system; nothing is shipped) unless ``execution.checkpoint`` is ``drop`` or
``storage``; it writes ``DONE`` last, as in process. Memory is one cell's peak per worker: a
worker takes the next cell only when its current one is finished, and a cell's files are read
only when a worker takes it.

A worker process that dies under a cell (killed, crashed, out of host memory) is replaced and
the cell is retried, at most ``execution.max_retries`` times; then it is recorded as failed. A
worker whose driver is gone (killed) ends itself within a second
(:mod:`harness.execute.slot_worker`).
"""

from __future__ import annotations

import math
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.errors import InputError
from harness.execute.base import (
    CellJob,
    CellResult,
    CellTask,
    CheckpointPolicy,
    Event,
    Executor,
    failure_record,
    lost_record,
)
from harness.execute.shipping import pack_cell
from harness.execute.slot_worker import NODE_ENV, recv, send
from harness.threads import DEFAULT_THREADS, available_cores, thread_env

#: Environment variable: how many cells run at once on the CPU (what ``--workers`` sets; 1 runs
#: them in process). The test suite sets 1, so its runs stay in process.
WORKERS_ENV = "HARNESS_WORKERS"


@dataclass(frozen=True)
class Slot:
    """One worker process's place: a name for the record and the GPUs it sees.

    Attributes:
        name: ``gpu0``, ``gpu0.3`` (4th cell on GPU 0), ``gpu0+1`` (two GPUs), ``cpu0``.
        gpus: ``CUDA_VISIBLE_DEVICES`` ids; empty for a CPU slot.
    """

    name: str
    gpus: tuple[str, ...] = ()


def visible_gpus(environ: dict[str, str] | None = None, count: int | None = None) -> list[str]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` when set (ids or UUIDs;
    empty or ``-1`` means none), else ``0 .. count-1`` with ``count`` from torch."""
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        ids = [g.strip() for g in listed.split(",") if g.strip()]
        return [] if not ids or ids[0] == "-1" else ids
    if count is None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [str(i) for i in range(count)]


def plan_slots(gpus: list[str], per_cell: float | None) -> list[Slot]:
    """Worker slots for ``gpus`` when each cell needs ``per_cell`` GPUs.

    ``per_cell`` <= 1: ``floor(1 / per_cell)`` slots per GPU (0.25 -> 4 per GPU; None -> 1);
    above 1 (a whole number): disjoint groups of that many GPUs, leftovers unused. No GPUs, or
    ``per_cell`` 0: no slots (the cells run on the CPU). More GPUs per cell than visible is an
    :class:`InputError` naming ``execution.gpus``.
    """
    per = 1.0 if per_cell is None else per_cell
    if not gpus or per == 0:
        return []
    if per <= 1:
        k = max(1, math.floor(1 / per + 1e-9))
        return [Slot(f"gpu{g}" if k == 1 else f"gpu{g}.{j}", (g,)) for g in gpus
                for j in range(k)]
    n = int(per)
    if n > len(gpus):
        raise InputError(f"execution.gpus: a cell needs {n} GPUs but {len(gpus)} are visible "
                         f"({', '.join(gpus)})")
    return [Slot("gpu" + "+".join(gpus[i:i + n]), tuple(gpus[i:i + n]))
            for i in range(0, len(gpus) - n + 1, n)]


def cpu_slots(n: int) -> list[Slot]:
    """``n`` CPU slots, ``cpu0`` .. ``cpu{n-1}`` (their workers see no GPU)."""
    return [Slot(f"cpu{i}") for i in range(n)]


def available_memory() -> int | None:
    """Bytes of memory available to new processes now (None where the OS does not say)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def cpu_workers(flag: int | None, spec_workers: int | None, *, threads: int,
                memory: int | None = None, environ: Mapping[str, str] | None = None,
                cores: int | None = None, free: int | None = None) -> tuple[int, str]:
    """How many cells run at once on the CPU, and what decided it.

    The first of: ``--workers`` (``flag``), ``$HARNESS_WORKERS``, ``execution.cpu_workers``;
    else one worker per ``threads`` cores, and no more than the available memory holds at
    ``execution.memory`` per cell when that is set (a worker's memory is one cell's peak).

    Args:
        flag, spec_workers: the flag's and the section's value (None: not given).
        threads: the run's torch threads per cell.
        memory: ``execution.memory`` in bytes (None: not declared).
        environ, cores, free: the environment, the usable cores and the available memory in
            bytes (defaults: this process's; tests pass their own).

    Raises:
        InputError: ``$HARNESS_WORKERS`` is not a whole number >= 1.
    """
    if flag:
        return int(flag), "--workers"
    env = os.environ if environ is None else environ
    text = env.get(WORKERS_ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise InputError(f"${WORKERS_ENV}={text!r}: expected a whole number >= 1 (how many "
                             "cells run at once on the CPU; 1 runs them in process)")
        return int(text), f"${WORKERS_ENV}"
    if spec_workers:
        return int(spec_workers), "execution.cpu_workers"
    n = max(1, (cores or available_cores()) // max(1, threads))
    if memory:
        room = available_memory() if free is None else free
        if room is not None and n > 1:
            return max(1, min(n, room // memory)), "cores, execution.memory"
    return n, "cores"


class InlineExecutor(Executor):
    """Each cell in this process, at submission, straight into its run folder (today's path).

    With ``execution.checkpoint`` other than ``keep`` the cell runs through the shipped-task
    path instead (in this process, in a temporary folder), so ``DONE`` still comes last.
    """

    name = "local"

    def __init__(self, *, device: str | None, threads: int | None,
                 checkpoint: CheckpointPolicy) -> None:
        self.device, self.threads, self.checkpoint = device, threads, checkpoint
        self._events: list[Event] = []
        self.node = platform.node()

    def submit(self, job: CellJob) -> None:
        import harness.worker as worker  # looked up now: a test may have replaced run_cell
        from harness.execute.task import execute_cell

        self._events.append(Event("started", job.cell_id, self.node))
        if self.checkpoint.mode != "keep":
            task = pack_cell(job, device=self.device, threads=self.threads,
                             checkpoint=self.checkpoint)
            result = execute_cell(task, node=self.node)
        else:
            try:
                worker.run_cell(job.folder.path, device=self.device, threads=self.threads)
                result = CellResult(job.cell_id, ok=True, node=self.node, in_place=True)
            except Exception as exc:  # noqa: BLE001 - one failing cell must not end the run
                result = CellResult(job.cell_id, ok=False, failure=failure_record(exc),
                                    node=self.node)
        self._events.append(Event("finished", job.cell_id, self.node, result))

    def poll(self, timeout: float) -> list[Event]:
        out, self._events = self._events, []
        return out

    def pending(self) -> int:
        return sum(e.kind == "finished" for e in self._events)


#: Temporary folder of a pool's workers: ``<tmp>/harness-pool-<driver pid>-<random>``.
POOL_PREFIX = "harness-pool-"


def _remove_stale_pools(root: Path | None = None) -> None:
    """Remove the temporary folders of pools whose driver is gone (killed: it could not)."""
    for old in Path(root or tempfile.gettempdir()).glob(f"{POOL_PREFIX}*-*"):
        pid = old.name.removeprefix(POOL_PREFIX).split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)  # signal 0: is it alive (a reused pid keeps the folder)
        except ProcessLookupError:
            shutil.rmtree(old, ignore_errors=True)
        except OSError:  # alive, but another user's
            continue


class _Worker:
    """One slot's process: started on demand, replaced when it dies."""

    def __init__(self, slot: Slot, host: str, tmp: Path) -> None:
        self.slot, self.node = slot, f"{host}/{slot.name}"
        self.tmp = tmp / slot.name  #: the process's TMPDIR, removed with the pool's
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None

    def ensure(self, threads: int) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.tmp.mkdir(parents=True, exist_ok=True)
            # every thread pool sized before torch, MKL and OpenBLAS load (the run's count,
            # whatever the user's shell exported), temporaries where the pool cleans them up
            env = {**os.environ, NODE_ENV: self.node, **thread_env(threads),
                   "TMPDIR": str(self.tmp)}
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.slot.gpus) if self.slot.gpus else ""
            # the worker's stderr, kept for a crash's last line; closed by stop()
            self.log = tempfile.TemporaryFile()  # noqa: SIM115
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.execute.slot_worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self.log, env=env, start_new_session=True)
        return self.proc

    def last_words(self) -> str:
        """Exit status and the last line the process wrote to stderr."""
        code = self.proc.wait() if self.proc else None
        tail = ""
        if self.log is not None:
            self.log.seek(0)
            lines = self.log.read().decode("utf-8", "replace").strip().splitlines()
            tail = f": {lines[-1]}" if lines else ""
        return f"worker process ended (exit status {code}){tail}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.log is not None:
            self.log.close()
        self.proc = self.log = None


class PoolExecutor(Executor):
    """Worker processes, one per slot, each taking cell after cell (see the module docstring).

    Args:
        slots: where the workers go (:func:`plan_slots`; CPU slots in tests).
        fresh_process: start a new process for every cell (``--isolate``).
        max_retries: how often a cell is retried after its worker process died.
    """

    name = "local"

    def __init__(self, slots: list[Slot], *, device: str | None, threads: int | None,
                 checkpoint: CheckpointPolicy, max_retries: int = 2,
                 fresh_process: bool = False) -> None:
        if not slots:
            raise ValueError("a pool needs at least one slot")
        self.device, self.checkpoint = device, checkpoint
        self.threads = threads or DEFAULT_THREADS
        self.max_retries, self.fresh = max_retries, fresh_process
        host = platform.node()
        _remove_stale_pools()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{POOL_PREFIX}{os.getpid()}-"))
        self._workers = [_Worker(s, host, self._tmp) for s in slots]
        # cells wait here as jobs (a path, not their files): the driver holds no payloads
        self._tasks: queue.Queue[CellJob | CellTask | None] = queue.Queue()
        self._events: queue.Queue[Event] = queue.Queue()
        self._pending = 0
        self._cancelled = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for w in self._workers:
            t = threading.Thread(target=self._serve, args=(w,), daemon=True,
                                 name=f"harness-{w.slot.name}")
            t.start()
            self._threads.append(t)

    def submit(self, job: CellJob) -> None:
        self._pending += 1
        self._tasks.put(job)

    def _task(self, job: CellJob) -> CellTask:
        """The task of a job, made when a worker takes it: in the cell's own folder when the
        model stays there (``checkpoint: keep``), else its files shipped to a temporary one."""
        if self.checkpoint.mode == "keep":
            return CellTask(job.cell_id, job.label, {}, device=self.device,
                            threads=self.threads, checkpoint=self.checkpoint,
                            in_place=str(job.folder.path.resolve()))
        return pack_cell(job, device=self.device, threads=self.threads,
                         checkpoint=self.checkpoint)

    def poll(self, timeout: float) -> list[Event]:
        out: list[Event] = []
        try:
            out.append(self._events.get(timeout=timeout) if timeout > 0
                       else self._events.get_nowait())
            while True:
                out.append(self._events.get_nowait())
        except queue.Empty:
            pass
        self._pending -= sum(e.kind == "finished" for e in out)
        return out

    def pending(self) -> int:
        return self._pending

    def _serve(self, w: _Worker) -> None:
        """One slot's loop: run tasks on its process; a dead process means retry or fail."""
        while not self._cancelled.is_set():
            item = self._tasks.get()
            if item is None or self._cancelled.is_set():
                return
            try:
                task = self._task(item) if isinstance(item, CellJob) else item
            except OSError as exc:  # the composed files went missing: this cell fails
                self._events.put(Event("finished", item.cell_id, w.node, CellResult(
                    item.cell_id, ok=False, failure=failure_record(exc), node=w.node)))
                continue
            result = self._run_one(w, task)
            if self._cancelled.is_set():
                return
            if result is not None:
                self._events.put(Event("finished", task.cell_id, result.node, result))

    def _run_one(self, w: _Worker, task: CellTask) -> CellResult | None:
        """The task's result, or None when it was put back for a retry."""
        proc = w.ensure(self.threads)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            send(proc.stdin, task)
            kind, node = recv(proc.stdout)
            self._events.put(Event("started", task.cell_id, node))
            kind, result = recv(proc.stdout)
        except (EOFError, OSError):  # the process died under the cell (or was cancelled)
            if self._cancelled.is_set():
                return None
            why = w.last_words()
            w.stop()
            if task.attempt <= self.max_retries:
                retry = CellTask(**{**task.__dict__, "attempt": task.attempt + 1})
                self._events.put(Event("retried", task.cell_id, w.node, message=why))
                self._tasks.put(retry)
                return None
            return CellResult(task.cell_id, ok=False, node=w.node, attempts=task.attempt,
                              failure=lost_record(task.label, task.attempt, why))
        if self.fresh:
            send(proc.stdin, None)
            proc.wait()
            w.stop()
        assert isinstance(result, CellResult)
        return result

    def cancel(self) -> None:
        self._cancelled.set()
        for w in self._workers:
            w.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def close(self) -> None:
        if not self._cancelled.is_set():
            for _ in self._workers:
                self._tasks.put(None)
            for t in self._threads:
                t.join(timeout=30)
        for w in self._workers:
            if w.proc is not None and w.proc.poll() is None and w.proc.stdin is not None:
                try:
                    send(w.proc.stdin, None)
                    w.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            w.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


def local_executor(*, per_cell_gpus: float | None, device: str | None, threads: int | None,
                   isolate: bool, checkpoint: CheckpointPolicy, max_retries: int,
                   gpus: list[str] | None = None, workers: int = 1) -> Executor:
    """The local executor for this machine (see the module docstring for the choice).

    Args:
        threads: torch threads per cell, the run's setting (None: 1).
        workers: cells at once when there are no GPU slots (:func:`cpu_workers`).
    """
    visible = [] if device == "cpu" else (visible_gpus() if gpus is None else gpus)
    slots = plan_slots(visible, per_cell_gpus) or cpu_slots(max(1, workers))
    if not slots[0].gpus and len(slots) == 1 and not isolate:
        return InlineExecutor(device=device, threads=threads, checkpoint=checkpoint)
    return PoolExecutor(slots, device=device, threads=threads, checkpoint=checkpoint,
                        max_retries=max_retries, fresh_process=isolate)


def describe(executor: Any) -> str:
    """One line for the terminal: which executor and how many workers."""
    if isinstance(executor, PoolExecutor):
        names = ", ".join(w.slot.name for w in executor._workers)
        return (f"local pool of {len(executor._workers)} worker process(es): {names} "
                f"({executor.threads} torch thread(s) each)")
    return getattr(executor, "description", executor.name)
