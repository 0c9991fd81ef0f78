"""Experiment YAML -> frozen pydantic models, every error with its YAML path and line."""

from harness.spec.load import LoadedExperiment, json_schema, load_experiment
from harness.spec.models import (
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
    "StudentSpec",
    "Unit",
    "json_schema",
    "load_experiment",
]
