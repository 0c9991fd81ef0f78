"""Settings a cell's worker reads from its manifest, as standard-library records with defaults.

The GPU worker reads a cell's effective settings without pydantic (the experiment model's
package is not on its import path), and manifests composed by older versions lack keys added
since: these records fill a missing key with its default. The experiment model takes its
defaults from here (:class:`harness.experiment.models.EvalSpec`), so each default is written
once; ``tests/test_cell_settings.py`` checks that every field here matches the pydantic
model's field of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


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

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvaluationSettings:
        """The settings in a manifest's ``evaluation`` map; a key absent (an older manifest) or
        null takes its default; unknown keys are ignored (a newer manifest's)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            v = data.get(f.name)
            if v is not None:
                values[f.name] = tuple(v) if f.name == "slices" else int(v)
        return cls(**values)


#: The defaults, for the experiment model's fields.
EVALUATION = EvaluationSettings()
