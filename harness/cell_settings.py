"""The defaults of a cell's ``evaluation:`` settings, as a standard-library record.

The experiment model takes its defaults from here (:class:`harness.experiment.models.EvalSpec`),
and so does the manifest's typed reader (:class:`harness.store.cell_spec.EvaluationPart`, which
the GPU worker reads without pydantic; an older manifest's missing key reads as the default), so
each default is written once; ``tests/test_cell_settings.py`` checks that every field here
matches the pydantic model's field of the same name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationSettings:
    """``evaluation:`` of a cell (the YAML section :class:`harness.experiment.models.EvalSpec`).

    Attributes:
        slices: tag keys every metric is sliced by.
        max_new_tokens: generation budget per eval answer (tokens).
        latency_runs: timed batch-1 runs, after 3 warm-ups.
        latency_new_tokens: tokens generated per latency run.
        latency_batch_size: batch size of the throughput run (items).
    """

    slices: tuple[str, ...] = ("source",)
    max_new_tokens: int = 64
    latency_runs: int = 20
    latency_new_tokens: int = 16
    latency_batch_size: int = 32


#: The defaults, for the experiment model's fields.
EVALUATION = EvaluationSettings()
