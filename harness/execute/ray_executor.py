"""The Ray executor: each cell is a Ray task with the resources ``execution:`` declares.

``harness run EXP.yaml --executor ray [--address ray://head:10001]`` connects to the cluster
named by ``--address`` (or ``RAY_ADDRESS``), or starts a local one with ``ray.init()``. Each
composed cell travels as a :class:`~harness.execute.base.CellTask` (its files as bytes: no
shared file system is assumed) to a task asking for ``num_gpus=execution.gpus``,
``num_cpus=execution.cpus`` and ``memory=execution.memory``; the task runs
:func:`harness.execute.task.execute_cell` and returns the produced files, which the driver
writes into the run folder (``DONE`` last).

What travels to the workers: the cell's payload, and, when connecting to an existing cluster,
the ``harness`` package itself (``runtime_env`` ``py_modules``); torch, transformers and numpy
must be installed on the nodes (the worker's import rule holds: nothing else is imported
there). Retries are the driver's: a task whose worker process or node died
(``WorkerCrashedError``, ``NodeDiedError``, ...) is submitted again with ``attempt + 1``, at
most ``execution.max_retries`` times, so the run record says how many attempts a cell took; a
cell that raises is a recorded failure and never retried. Ctrl-C cancels every submitted task
(``ray.cancel(force=True)``).

``ray`` is imported only inside this module's functions: nothing else in the harness needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.execute.base import (
    CellJob,
    CellResult,
    CellTask,
    CheckpointPolicy,
    Event,
    Executor,
    lost_record,
)
from harness.execute.shipping import pack_cell
from harness.threads import DEFAULT_THREADS, thread_env

#: Environment passed to every task's process (the OpenMP policy of :mod:`harness.threads`).
TASK_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
#: Seconds the head node's port has to accept a TCP connection before ``ray.init`` is tried:
#: Ray itself retries an unreachable GCS for minutes without saying why.
CONNECT_TIMEOUT_S = 5.0
_ADDRESS_HINT = ("give the head node's host:port (e.g. 10.0.0.5:6379, printed by `ray start "
                 "--head`), ray://host:10001 (needs ray[client]) or auto; or leave --address "
                 "and RAY_ADDRESS unset to start a local cluster")


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of ``host:port`` or ``[v6]:port``; None when it has no such form."""
    host, sep, port = address.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, origin: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address nothing listens at.

    Ray rewrites a loopback host to this node's IP before connecting, so both the address as
    given and Ray's canonical form are tried; either accepting a connection is enough. ``auto``
    and ``local`` are left to ``ray.init``, which fails at once when no cluster is found.

    Args:
        address: ``host:port``, ``ray://host:port``, ``auto`` or ``local``.
        origin: where the address came from (``--address`` or ``RAY_ADDRESS``), for the message.

    Raises:
        InputError: the address is not ``host:port``, or no connection could be made.
    """
    if address in ("auto", "local"):
        return
    target = address.removeprefix("ray://")
    given = None if "://" in target else _host_port(target)  # http://: the dashboard's URL
    if given is None:
        raise InputError(f"{origin} {address!r}: not a Ray cluster address; {_ADDRESS_HINT}")
    tries = [given]
    with contextlib.suppress(Exception):  # a private helper: without it, the address as given
        from ray._private.services import canonicalize_bootstrap_address

        canonical = _host_port(canonicalize_bootstrap_address(target) or "")
        if canonical is not None and canonical != given:
            tries.append(canonical)
    why = ""
    for host, port in tries:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
    raise InputError(f"{origin} {address!r}: no Ray cluster answers there ({why}); "
                     f"{_ADDRESS_HINT}")


def _ray_cell(task: CellTask, board: Any) -> CellResult:
    """The Ray task: say where it runs, then run the cell (imports: worker path + ray)."""
    node = platform.node()
    if board is not None:
        with contextlib.suppress(Exception):  # the progress view is best effort
            board.put_nowait((task.cell_id, node))
    from harness.execute.task import execute_cell

    return execute_cell(task, node=node)


def _lost_errors() -> tuple[type[BaseException], ...]:
    """Ray's errors that mean the worker or node was lost (retry), not that the cell failed."""
    import ray.exceptions as rx

    return (rx.WorkerCrashedError, rx.NodeDiedError, rx.ObjectLostError, rx.OwnerDiedError,
            rx.OutOfMemoryError, rx.LocalRayletDiedError)


class RayExecutor(Executor):
    """Cells as Ray tasks (see the module docstring).

    Args:
        address: the cluster (``ray://host:10001``, ``host:6379``, ``auto``); None: the
            ``RAY_ADDRESS`` environment variable, else a new local cluster.
        gpus, cpus, memory: resources per cell (``execution:``; ``gpus`` None: 1 when the
            cluster has GPUs, else 0).
        threads: torch threads per cell, the run's setting (None: 1), whatever ``cpus``
            reserves (``execution.threads`` sets both apart).
        ship_code: send the ``harness`` package to the workers (default: when connecting to
            an existing cluster).
    """

    name = "ray"

    def __init__(self, *, address: str | None, gpus: float | None, cpus: float,
                 memory: int | None, max_retries: int, device: str | None,
                 threads: int | None, checkpoint: CheckpointPolicy,
                 ship_code: bool | None = None) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._origin = "--address" if address else "RAY_ADDRESS"  # for the error messages
        self.gpus, self.cpus, self.memory = gpus, cpus, memory
        self.max_retries, self.device, self.checkpoint = max_retries, device, checkpoint
        # the run's count, never the task's CPUs: a cell computes alike on every executor
        self.threads = threads or DEFAULT_THREADS
        self.ship_code = self.address is not None if ship_code is None else ship_code
        self._owned = False
        self._remote: Any = None
        self._board: Any = None
        self._pending: dict[Any, CellTask] = {}
        self.description = "ray"

    # -- connection -------------------------------------------------------------------------
    def _runtime_env(self) -> dict[str, Any]:
        env = {**TASK_ENV, **thread_env(self.threads)}  # pools sized before torch loads
        runtime: dict[str, Any] = {"env_vars": env}
        if self.ship_code:
            import harness

            runtime["py_modules"] = [str(Path(harness.__file__).parent)]
            runtime["excludes"] = ["__pycache__", "*.pyc"]
        return runtime

    def start(self) -> None:
        import ray

        if not ray.is_initialized():  # a caller (a test, a notebook) may have connected
            if self.address is not None:
                check_reachable(self.address, self._origin)
            try:
                ray.init(address=self.address, runtime_env=self._runtime_env(),
                         include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING, configure_logging=True)
            except (ConnectionError, ValueError) as exc:
                if self.address is None:  # starting a local cluster failed: not the input
                    raise
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise InputError(f"{self._origin} {self.address!r}: cannot connect to the Ray "
                                 f"cluster ({type(exc).__name__}: {first[:300]}); "
                                 f"{_ADDRESS_HINT}") from None
            self._owned = True
        res = ray.cluster_resources()
        if self.gpus is None:
            self.gpus = 1.0 if res.get("GPU", 0) > 0 else 0.0
        self._check_feasible(res)
        self._remote = ray.remote(_ray_cell)  # the module's, now: a test may wrap it
        try:
            from ray.util.queue import Queue

            self._board = Queue(actor_options={"num_cpus": 0})
        except Exception:  # noqa: BLE001 - without it the view shows no node until a cell ends
            self._board = None
        where = self.address or "a local Ray cluster"
        self.description = (f"ray: {where}, {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} "
                            f"GPUs; per cell {self.gpus:g} GPU, {self.cpus:g} CPU, "
                            f"{self.threads} torch thread(s)")

    def _check_feasible(self, res: dict[str, float]) -> None:
        """Say so when no cell fits the cluster as it is now (an autoscaler may add nodes:
        the tasks wait rather than fail, and Ctrl-C stops them)."""
        need = {"GPU": self.gpus or 0, "CPU": self.cpus, "memory": self.memory or 0}
        short = [f"{k} {v:g} (cluster: {res.get(k, 0):g})" for k, v in need.items()
                 if v and res.get(k, 0) < v]
        if short:
            print(f"warning: no node of the Ray cluster can run a cell now, it needs "
                  f"{', '.join(short)}; the tasks wait for such a node (an autoscaler) - "
                  "Ctrl-C stops the run, or lower execution.gpus / cpus / memory",
                  file=sys.stderr)

    # -- tasks ------------------------------------------------------------------------------
    def _submit_task(self, task: CellTask) -> None:
        opts: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus or 0,
                                "max_retries": 0, "retry_exceptions": False,
                                "name": f"harness cell {task.label}"}
        if self.memory:
            opts["memory"] = self.memory
        ref = self._remote.options(**opts).remote(task, self._board)
        self._pending[ref] = task

    def submit(self, job: CellJob) -> None:
        self._submit_task(pack_cell(job, device=self.device, threads=self.threads,
                                    checkpoint=self.checkpoint))

    def pending(self) -> int:
        return len(self._pending)

    def _started(self) -> list[Event]:
        if self._board is None:
            return []
        try:
            n = self._board.qsize()
            got = self._board.get_nowait_batch(n) if n else []
        except Exception:  # noqa: BLE001 - best effort, like the put
            return []
        return [Event("started", cell_id, node) for cell_id, node in got]

    def poll(self, timeout: float) -> list[Event]:
        import ray

        events = self._started()
        refs = list(self._pending)
        if not refs:
            return events
        ready, rest = ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=True)
        if ready and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True)
            ready += more
        events += self._started()
        ended = []
        for ref in ready:
            task = self._pending.pop(ref)
            ev = self._outcome(ref, task)
            if ev is not None:
                ended.append(ev)
        # endings first: a cell that started because another ended must not be counted as
        # running beside it for a moment (the driver ignores a start after a cell's end)
        return ended + events

    def _outcome(self, ref: Any, task: CellTask) -> Event | None:
        """The finished event of a ready task, or a retried event (resubmitted)."""
        import ray
        import ray.exceptions as rx

        try:
            result = ray.get(ref)
        except _lost_errors() as exc:
            why = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
            if task.attempt <= self.max_retries:
                self._submit_task(CellTask(**{**task.__dict__, "attempt": task.attempt + 1}))
                return Event("retried", task.cell_id, message=why)
            result = CellResult(task.cell_id, ok=False, attempts=task.attempt,
                                failure=lost_record(task.label, task.attempt, why))
        except rx.TaskCancelledError:
            return None
        except rx.RayError as exc:  # the task raised outside the cell, or could not start
            cause = getattr(exc, "cause", None) or exc
            result = CellResult(task.cell_id, ok=False, attempts=task.attempt, failure={
                "kind": "error", "error": f"{type(cause).__name__}: {cause}"[:2000],
                "hint": "the Ray task failed outside the cell's code (runtime environment, "
                        "serialisation, imports on the node); see the error",
                "traceback": str(exc)[-2000:]})
        return Event("finished", task.cell_id, result.node, result)

    def cancel(self) -> None:
        import ray

        for ref in list(self._pending):
            with contextlib.suppress(Exception):  # already finished or gone
                ray.cancel(ref, force=True)
        self._pending.clear()

    def close(self) -> None:
        import ray

        if self._board is not None:
            with contextlib.suppress(Exception):  # the cluster may already be gone
                self._board.shutdown()
            self._board = None
        if self._owned and ray.is_initialized():
            ray.shutdown()
        self._owned = False
