"""Experiment YAML -> frozen pydantic models, every error with its YAML path and line.

It imports only the standard library, pydantic, PyYAML and the layers below it
(``tests/test_import_direction.py``): the leaves, and the unit and student kinds, whose options
models it finds in their registries (light at import: neither imports torch). The
cross-section and data-fit rules sit above it in :mod:`harness.checks`, whose
``load_experiment`` is the one way callers load an experiment.
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
