"""What varies between cells: buckets (which candidates train), field sets (what a target
holds), subsampling, and how the axes combine into cells (the design and cell references)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from harness.experiment.base import PoolName, Seed, Strict


class BucketSpec(Strict):
    """Which candidates feed training: teacher subset, selection, filters, failure handling."""

    extends: str | None = Field(None, description="Inherit every key of another bucket.")
    teachers: list[str] | Literal["all"] = Field("all", description="Teacher subset.")
    select: str = Field(
        "judge_winner",
        description="Candidate selector: judge_winner | all | best_confidence.",
    )
    min_score: float | None = Field(None, description="Minimum judge score of a candidate.")
    pools: list[PoolName] = Field(["train"], min_length=1, description="Pools feeding training.")
    failures: str = Field(
        "exclude", description="Failure-pool candidates: exclude | refusal | contrastive."
    )


class TierSpec(Strict):
    """Confidence tiers: high -> main set, mid -> down-weighted, low -> excluded."""

    high: float = Field(0.8, ge=0, le=1)
    low: float = Field(0.5, ge=0, le=1)
    mid_weight: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> TierSpec:
        if self.low > self.high:
            raise ValueError(f"tiers.low ({self.low}) must not exceed tiers.high ({self.high})")
        return self


class FieldSpec(Strict):
    """Which parts of a teacher answer enter the target, and how confidence weighs a sample."""

    extends: str | None = None
    rationale: bool = False
    limits: bool = False
    trajectory: bool = False
    confidence: str = Field("none", description="Confidence rule: none | weight | tiers.")
    tiers: TierSpec = TierSpec()
    missing_confidence: float = Field(
        1.0, ge=0, le=1, description="Confidence assumed where a candidate states none."
    )
    soft_targets: Literal["hard", "topk"] = Field(
        "hard",
        description="hard (default): cross-entropy on the target's tokens. topk: on the tokens "
        "that write the answer, the teacher's renormalised top-k distribution (the candidates' "
        "answer_logprobs, from generate.soft_labels) mixed with cross-entropy; needs a causal_lm "
        "student with 'model' sharing the teacher's tokenizer. A rationale or a correction "
        "trains hard.")
    soft_weight: float = Field(
        0.5, gt=0, le=1,
        description="topk only: the KL term's weight w in (1 - w) * CE + w * KL(teacher top-k || "
        "student) on the answer tokens that have soft labels.")


# --------------------------------------------------------------------------- sampling & design


class SamplingSpec(Strict):
    """How a scale < 1 subset is drawn (nested across scales)."""

    seed: Seed = 0
    dedup: bool = Field(True, description="Rank near-duplicate prompts after unique ones.")
    clusters_per_unit: int | None = Field(
        None, ge=1, le=65_536,
        description="k of MiniBatchKMeans per unit; default ~sqrt(n/2), max 256.")


class CellRef(Strict):
    """A point of the matrix by its axis values."""

    bucket: str
    fields: str
    scale: float = Field(1.0, gt=0, le=1)
    seed: Seed | None = None


class CellPattern(Strict):
    """A partial cell: every given axis must match (used by ``exclude``)."""

    bucket: str | None = None
    fields: str | None = None
    scale: float | None = None
    seed: Seed | None = None


class DesignSpec(Strict):
    """How the axes combine into cells."""

    kind: Literal["factorial", "one_at_a_time"] = "factorial"
    base: CellRef | None = Field(None, description="The centre of a one_at_a_time design.")
    include: list[CellRef] = Field(default_factory=list)
    exclude: list[CellPattern] = Field(default_factory=list)
    noise_seeds: list[Seed] = Field(
        default_factory=lambda: [1, 2],
        description="Extra training seeds for the reference arm (the one_at_a_time base) and "
        "the baseline: measures how much retraining moves each unit, and every verdict is "
        "tested against it (3 seeds in all by default). [] switches the measurement off: "
        "single-seed arms are then tested on eval items only, and the analysis says so.")

    @model_validator(mode="after")
    def _base_for_oat(self) -> DesignSpec:
        if self.kind == "one_at_a_time" and self.base is None:
            raise ValueError("a one_at_a_time design needs a 'base' cell")
        if len(set(self.noise_seeds)) != len(self.noise_seeds):
            raise ValueError("noise_seeds must be unique")
        return self
