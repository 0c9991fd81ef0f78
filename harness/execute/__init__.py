"""Executors: where ``harness run`` runs each composed cell.

- :mod:`harness.execute.base`: the :class:`Executor` interface, the task payload
  (:class:`CellTask`) and result (:class:`CellResult`), failure records;
- :mod:`harness.execute.local`: in process, or a pool of worker processes over every GPU or
  every core;
- :mod:`harness.execute.ray_executor`: Ray tasks on a cluster (``ray`` imported only there);
- :mod:`harness.execute.task` (on the node) and :mod:`harness.execute.shipping` (on the
  driver): a cell's files out as bytes, its results back, ``DONE`` last;
- :mod:`harness.execute.progress`: one progress view (done, running, failed, where).
"""

from __future__ import annotations

from harness.execute.base import (
    CellJob,
    CellResult,
    CellTask,
    CheckpointPolicy,
    Event,
    Executor,
    failure_record,
)

__all__ = ["EXECUTORS", "CellJob", "CellResult", "CellTask", "CheckpointPolicy", "Event",
           "Executor", "failure_record", "make_executor"]

#: The names ``--executor`` accepts.
EXECUTORS = ("local", "ray")


def make_executor(name: str, execution: object, *, experiment: str, device: str | None,
                  threads: int | None, isolate: bool, address: str | None,
                  workers: int = 1) -> Executor:
    """The executor ``--executor name`` asks for, set up from the ``execution:`` section
    (:class:`harness.experiment.execution.ExecutionSpec`).

    Args:
        threads: torch threads per cell, the run's setting (:func:`harness.threads.run_threads`).
        workers: cells at once on the CPU for the local executor
            (:func:`harness.execute.local.cpu_workers`); the Ray executor ignores it.
    """
    from harness.experiment.execution import ExecutionSpec

    assert isinstance(execution, ExecutionSpec)
    policy = CheckpointPolicy(mode=execution.checkpoint, storage=execution.storage,
                              experiment=experiment)
    if name == "ray":
        from harness.execute.ray_executor import RayExecutor

        return RayExecutor(address=address, gpus=execution.gpus, cpus=execution.cpus,
                           memory=execution.memory, max_retries=execution.max_retries,
                           device=device, threads=threads, checkpoint=policy)
    from harness.execute.local import local_executor

    return local_executor(per_cell_gpus=execution.gpus, device=device, threads=threads,
                          isolate=isolate, checkpoint=policy,
                          max_retries=execution.max_retries, workers=workers)
