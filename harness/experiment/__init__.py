"""Experiment YAML -> frozen pydantic models, every error with its YAML path and line.

A leaf package: it imports only the standard library, pydantic, PyYAML and the lower leaves
(:mod:`harness.errors`, :mod:`harness.units`). The cross-section and data-fit rules sit above it
in :mod:`harness.checks`, whose ``load_experiment`` is the one way callers load an experiment.
"""

from harness.experiment.load import (
    LoadedExperiment,
    ParsedExperiment,
    json_schema,
    parse_experiment,
)
from harness.experiment.models import (
    BucketSpec,
    CellRef,
    Experiment,
    FieldSpec,
    StudentSpec,
    Unit,
)

__all__ = [
    "BucketSpec",
    "CellRef",
    "Experiment",
    "FieldSpec",
    "LoadedExperiment",
    "ParsedExperiment",
    "StudentSpec",
    "Unit",
    "json_schema",
    "parse_experiment",
]
