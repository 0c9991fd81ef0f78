"""The experiment spec: frozen pydantic models, one per YAML section.

This module holds the root model (:class:`Experiment`) with its two small sections (``data:``
and ``evaluation:``) and re-exports every section model, so ``from harness.experiment.models
import X`` names any of them. The sections live by concept: :mod:`harness.experiment.base` (the
strict base, names, pools), :mod:`harness.experiment.unit_options` (``units:``),
:mod:`harness.experiment.student`
(``student:``), :mod:`harness.experiment.design` (buckets, fields, sampling, design, cells) and
:mod:`harness.experiment.policy` (costs, stop, gate). Cross-section rules (a design naming an
undeclared bucket, ``min_score`` above the judge scale, ...) live in :mod:`harness.checks`,
which reports them with their YAML paths.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

import harness.units as unit_kinds
from harness.cell_settings import EVALUATION
from harness.experiment.base import (
    NAME_PATTERN,
    POOLS,
    PoolName,
    Seed,
    SelfCheckedFloat,
    Strict,
    check_name,
)
from harness.experiment.design import (
    BucketSpec,
    CellPattern,
    CellRef,
    DesignSpec,
    FieldSpec,
    SamplingSpec,
    TierSpec,
)
from harness.experiment.execution import ExecutionSpec
from harness.experiment.generate import GenerateSpec
from harness.experiment.policy import (
    DEFAULT_BLOCKING,
    CostSpec,
    GateSpec,
    SignalName,
    StopSpec,
    TeacherCost,
    TrafficSpec,
    costs_declared,
)
from harness.experiment.student import (
    DistillSpec,
    StudentConfig,
    StudentOptions,
    StudentSpec,
    TrainSpec,
    student_model,
)
from harness.experiment.teachers import HFTeacherSpec, JudgeSpec, OpenAITeacherSpec, TeacherSpec
from harness.experiment.tracking import TrackingSpec
from harness.experiment.unit_options import Unit, UnitOptions, unit_model

__all__ = [
    "DEFAULT_BLOCKING", "NAME_PATTERN", "POOLS", "BucketSpec", "CellPattern", "CellRef",
    "CostSpec", "DataSpec", "DesignSpec", "DistillSpec", "EvalSpec", "Experiment", "FieldSpec",
    "GateSpec", "PoolName", "SamplingSpec", "SignalName", "StopSpec", "Strict", "StudentConfig",
    "StudentOptions", "StudentSpec", "TeacherCost", "TierSpec", "TrafficSpec", "TrainSpec",
    "Unit", "UnitOptions", "check_name", "costs_declared", "student_model", "unit_model",
    "HFTeacherSpec", "JudgeSpec", "OpenAITeacherSpec", "TeacherSpec",
]


class DataSpec(Strict):
    """Where the sample repository and the eval set live (paths relative to the YAML file)."""

    samples: Path = Field(description="Training-side sample repository (.jsonl or .parquet).")
    eval: Path = Field(description="Held-out eval set (.jsonl or .parquet) with references.")
    judge_scale: tuple[SelfCheckedFloat, SelfCheckedFloat] = Field(
        (1.0, 5.0), description="Lowest and highest score the judge can give."
    )
    leakage: Literal["error", "warn", "drop"] = Field(
        "error",
        description="What to do when an eval item also appears in training (same id or same "
        "normalized prompt): fail validation, only report it, or drop the training records.",
    )

    @field_validator("judge_scale")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(math.isfinite(x) for x in v):  # NaN compares false: it would pass below
            raise ValueError(f"judge_scale must be two finite numbers, got {list(v)}")
        if v[0] >= v[1]:
            raise ValueError(f"judge_scale must be [low, high] with low < high, got {list(v)}")
        return v


class EvalSpec(Strict):
    """Evaluation options."""

    # defaults: harness.cell_settings, which the worker reads without pydantic
    slices: list[str] = Field(list(EVALUATION.slices),
                              description="Tag keys to slice every metric by.")
    max_new_tokens: int = Field(EVALUATION.max_new_tokens, ge=1, le=131_072,
                                description="Generation budget per eval answer.")
    latency_runs: int = Field(EVALUATION.latency_runs, ge=1, le=100_000,
                              description="Timed batch-1 runs (after 3 warm-ups).")
    latency_new_tokens: int = Field(EVALUATION.latency_new_tokens, ge=2, le=131_072,
                                    description="Tokens generated per latency run.")
    latency_batch_size: int = Field(EVALUATION.latency_batch_size, ge=1, le=65_536,
                                    description="Batch size of the throughput run.")


class Experiment(Strict):
    """One experiment: data, units, student, ablation axes, design and later-stage policies."""

    name: str = Field(description="Experiment name; used for the run folder.")
    description: str = ""
    data: DataSpec
    units: dict[str, Unit] = Field(min_length=1)
    student: StudentSpec
    buckets: dict[str, BucketSpec] = Field(min_length=1)
    fields: dict[str, FieldSpec] = Field(min_length=1)
    scale: list[float] = Field([1.0], min_length=1)
    seeds: list[Seed] = Field([0], min_length=1)
    sampling: SamplingSpec = SamplingSpec()
    design: DesignSpec = DesignSpec()
    baseline: CellRef
    evaluation: EvalSpec = EvalSpec()
    costs: CostSpec = CostSpec()
    stop: StopSpec = StopSpec()
    gate: GateSpec = GateSpec()
    teachers: dict[str, TeacherSpec] = Field(
        default_factory=dict, description="LLM teachers the generate stage asks (by name).")
    judge: JudgeSpec | None = Field(None, description="The LLM judge of the generate stage.")
    generate: GenerateSpec | None = Field(None, description="Prompts to send to the teachers "
                                          "(`harness generate`); not in cell ids.")
    execution: ExecutionSpec = Field(ExecutionSpec(), description="Resources per cell and "
                                     "where checkpoints go (harness.execute); not in cell ids.")
    tracking: TrackingSpec | None = Field(None, description="Experiment trackers `harness run` "
                                          "logs into (harness.tracking); not in cell ids.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("units", "buckets", "fields", "teachers")
    @classmethod
    def _keys(cls, v: dict[str, object]) -> dict[str, object]:
        for key in v:
            check_name(key)
        return v

    @field_validator("scale")
    @classmethod
    def _scales(cls, v: list[float]) -> list[float]:
        bad = [s for s in v if not 0 < s <= 1]
        if bad:
            raise ValueError(f"scale values must be in (0, 1], got {bad}")
        if len(set(v)) != len(v):
            raise ValueError("scale values must be unique")
        return sorted(v)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("seeds must be unique")
        return v


def __getattr__(name: str) -> Any:
    """``LabelUnit``, ``JsonFieldsUnit``... : each registered kind's model, by its class name."""
    # Only kind-model names, and only once this module is initialised (pydantic probes names
    # while models are being built; this function is defined last for the same reason).
    if not name.endswith("Unit") or "Unit" not in globals():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for kind in unit_kinds.names():
        model = unit_model(kind)
        if model.__name__ == name:
            return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
