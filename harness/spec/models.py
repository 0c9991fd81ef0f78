"""The experiment spec: frozen pydantic models, one per YAML section.

Every model forbids unknown keys (a typo is an error, never a silent default) and is frozen so a
loaded experiment cannot drift while the harness runs. Cross-section rules (a design naming an
undeclared bucket, ``min_score`` above the judge scale, ...) live in :mod:`harness.spec.load`,
which reports them with their YAML paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

import harness.units as unit_kinds
from harness.errors import did_you_mean

#: Names users give to experiments, units, buckets and field sets end up in folder names and
#: cell labels, so they are restricted to a safe alphabet (no ``/``, no ``..``).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

PoolName = Literal["train", "failure", "hard", "review", "discard"]
POOLS: tuple[str, ...] = ("train", "failure", "hard", "review", "discard")


def check_name(value: str) -> str:
    """Reject names that could escape a folder or break a label."""
    if not _NAME_RE.match(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '_', '-', '.' (max 64, "
            "starting with a letter or digit, no '..')"
        )
    return value


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- data


class DataSpec(Strict):
    """Where the sample repository and the eval set live (paths relative to the YAML file)."""

    samples: Path = Field(description="Training-side sample repository (.jsonl or .parquet).")
    eval: Path = Field(description="Held-out eval set (.jsonl or .parquet) with references.")
    judge_scale: tuple[float, float] = Field(
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
        if v[0] >= v[1]:
            raise ValueError(f"judge_scale must be [low, high] with low < high, got {list(v)}")
        return v


# --------------------------------------------------------------------------- units


class UnitOptions(Strict):
    """Options every unit has; each kind's model (``LabelUnit``...) adds ``kind`` and its own.

    The kind models live with their kind (``harness/units/<kind>.py``, built by
    ``UnitKind.define_options``) and are looked up in the unit-kind registry, so a kind
    registered at run time validates like a built-in one.
    """

    template: str | None = Field(
        None,
        description="Jinja2 target template (inline text). Variables: final, rationale, limits, "
        "trajectory, marker, unit. Default: the kind's built-in template.",
    )
    answer_marker: str = Field(
        "Answer:",
        min_length=1,
        description="Text that precedes the final answer in every target, so evaluation can "
        "parse the answer out of a longer target.",
    )
    #: Narrowed to ``Literal["<name>"]`` by each kind's model (declared here, after the shared
    #: options, so every kind's fields keep the order template, answer_marker, kind, ...).
    kind: str

    @field_validator("answer_marker")
    @classmethod
    def _single_line(cls, v: str) -> str:
        if "\n" in v:
            raise ValueError("answer_marker must be a single line")
        return v


def unit_model(kind: str) -> type[UnitOptions]:
    """The pydantic model of a registered kind's options.

    Raises:
        harness.units.UnknownUnitKind: no kind of that name is registered.
    """
    model: type[UnitOptions] = unit_kinds.get(kind).options_model()
    return model


def __getattr__(name: str) -> Any:
    """``LabelUnit``, ``JsonFieldsUnit``... : each registered kind's model, by its class name."""
    # Only kind-model names, and only once this module is initialised (pydantic probes names
    # while the models above are being built).
    if not name.endswith("Unit") or "Unit" not in globals():
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for kind in unit_kinds.names():
        model = unit_model(kind)
        if model.__name__ == name:
            return model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _validate_unit(value: Any) -> UnitOptions:
    """Validate one ``units:`` entry with its kind's model.

    Errors inside the entry carry the kind in their location (``units.x.label.labels``), as a
    pydantic discriminated union's would, so the loader can find the model for did-you-mean.
    """
    if not isinstance(value, dict):
        raise PydanticCustomError(
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from")
    if "kind" not in value:
        raise ValueError(f"'kind' must be one of {', '.join(unit_kinds.names())}")
    kind = value["kind"]
    if not isinstance(kind, str) or kind not in unit_kinds.names():
        raise ValueError(f"unknown kind {kind!r}"
                         + did_you_mean(str(kind), unit_kinds.names()))
    model = unit_model(kind)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValidationError.from_exception_data(exc.title, [
            InitErrorDetails(type=e["type"], loc=(kind, *e["loc"]), input=e["input"],
                             **({"ctx": e["ctx"]} if "ctx" in e else {}))  # type: ignore[typeddict-item]
            for e in exc.errors(include_url=False)]) from None


class _UnitEntry:
    """The type of one ``units:`` entry: any registered kind's options model.

    Validation dispatches on ``kind`` through the unit-kind registry at validation time (not a
    union fixed when this module was imported); the JSON Schema lists every registered kind as
    a ``oneOf`` with ``kind`` as the discriminator.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                     ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(_validate_unit)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        choices = {k: unit_model(k).__pydantic_core_schema__ for k in unit_kinds.names()}
        return handler(core_schema.tagged_union_schema(choices, discriminator="kind"))


if TYPE_CHECKING:
    Unit = UnitOptions  # what a validated entry is, for type checkers
else:
    Unit = _UnitEntry


# --------------------------------------------------------------------------- student


class StudentConfig(Strict):
    """A from-scratch causal LM (the tokenizer is trained on the experiment's own text)."""

    arch: Literal["llama"] = "llama"
    layers: int = Field(4, ge=1, le=64)
    hidden: int = Field(128, ge=8)
    heads: int = Field(4, ge=1)
    kv_heads: int | None = Field(None, ge=1)
    intermediate: int | None = Field(None, ge=8, description="MLP width; default 4 x hidden.")
    vocab: int = Field(2048, ge=260, description="Byte-level BPE vocabulary size.")
    max_position: int = Field(512, ge=16)

    @model_validator(mode="after")
    def _heads_divide(self) -> StudentConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be divisible by kv_heads")
        return self


class TrainSpec(Strict):
    """Optimisation settings shared by every cell (cells differ in data, not in recipe)."""

    epochs: float = Field(3, gt=0)
    min_steps: int = Field(
        0, ge=0, description="Train at least this many optimizer steps (small subsets of a "
        "learning curve otherwise stop before the optimiser gets anywhere).")
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(3.0e-4, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    clip: float = Field(1.0, gt=0)
    max_len: int = Field(256, ge=8)
    packing: bool = Field(
        False,
        description="Concatenate each micro-batch's examples into rows of up to max_len tokens "
        "(per-example positions, block-diagonal causal mask: no example attends to another), "
        "so no compute goes to padding. Same loss and gradients as padded batches; checked on "
        "the model at start and turned off (with the reason in the training summary) when the "
        "installed transformers does not isolate packed examples.")
    chunked_ce: bool = Field(
        False,
        description="Compute the LM head and cross-entropy only at target positions, in chunks, "
        "with the gradient formed in the forward: the tokens x vocab logits never exist at "
        "once. Same loss and gradients; ignored with 'distill' (soft targets need full logits).")
    compile: bool = Field(
        False,
        description="torch.compile the model's forward for training (first steps are slower "
        "while it compiles; pays off on GPUs for runs of hundreds of steps).")


class DistillSpec(Strict):
    """Optional soft-target distillation from a white-box teacher sharing the tokenizer."""

    teacher_model: Path
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)


StudentKind = Literal["causal_lm", "classifier"]


class StudentSpec(Strict):
    """The student: a causal LM (a local checkpoint or a from-scratch ``config``), or a
    sequence classifier head on a local pretrained encoder (``kind: classifier``)."""

    kind: StudentKind = Field(
        "causal_lm",
        description="causal_lm: generates answers (every unit kind). classifier: an "
        "AutoModelForSequenceClassification head on the encoder at 'model', one class block "
        "per unit; only label and refusal units.")
    model: Path | None = Field(None, description="Local Hugging Face checkpoint folder.")
    config: StudentConfig | None = None
    trust_remote_code: bool = False
    soft_targets: bool = Field(
        False,
        description="classifier only: train towards the teacher's stated confidence (its "
        "answer gets the confidence, the unit's other classes share the rest) instead of a "
        "one-hot target.")
    head_lr: float | None = Field(
        None, gt=0, lt=1,
        description="classifier only: learning rate of the new classification head (default "
        "10 x train.lr); the pretrained encoder uses train.lr. A new head needs larger steps "
        "than the encoder it sits on.")
    pooling: Literal["auto", "cls", "mean"] | None = Field(
        None,
        description="classifier only: how the encoder's tokens become one vector. cls: the "
        "architecture's own pooler; mean: the masked mean of the last hidden states (what "
        "sentence encoders such as all-MiniLM-L6-v2 were trained for); auto (default): mean "
        "when the folder is a sentence-transformers model with mean pooling, else cls.")
    train: TrainSpec = TrainSpec()
    distill: DistillSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> StudentSpec:
        if (self.model is None) == (self.config is None):
            raise ValueError("give exactly one of 'model' (a checkpoint path) or 'config'")
        if self.kind == "classifier":
            if self.model is None:
                raise ValueError("a classifier student needs 'model': a local pretrained "
                                 "encoder folder (e.g. the packaged MiniLM)")
            if self.distill is not None:
                raise ValueError("'distill' (token-level soft targets) needs a causal_lm "
                                 "student; a classifier uses 'soft_targets' instead")
        elif self.soft_targets or self.head_lr is not None or self.pooling is not None:
            raise ValueError("'soft_targets', 'head_lr' and 'pooling' apply to classifier "
                             "students only")
        return self


# --------------------------------------------------------------------------- buckets & fields


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


# --------------------------------------------------------------------------- sampling & design


class SamplingSpec(Strict):
    """How a scale < 1 subset is drawn (nested across scales)."""

    seed: int = 0
    dedup: bool = Field(True, description="Rank near-duplicate prompts after unique ones.")
    clusters_per_unit: int | None = Field(
        None, ge=1, description="k of MiniBatchKMeans per unit; default ~sqrt(n/2), max 256."
    )


class CellRef(Strict):
    """A point of the matrix by its axis values."""

    bucket: str
    fields: str
    scale: float = Field(1.0, gt=0, le=1)
    seed: int | None = None


class CellPattern(Strict):
    """A partial cell: every given axis must match (used by ``exclude``)."""

    bucket: str | None = None
    fields: str | None = None
    scale: float | None = None
    seed: int | None = None


class DesignSpec(Strict):
    """How the axes combine into cells."""

    kind: Literal["factorial", "one_at_a_time"] = "factorial"
    base: CellRef | None = Field(None, description="The centre of a one_at_a_time design.")
    include: list[CellRef] = Field(default_factory=list)
    exclude: list[CellPattern] = Field(default_factory=list)
    noise_seeds: list[int] = Field(
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


# --------------------------------------------------------------------------- later stages


class TeacherCost(Strict):
    """What one teacher costs (USD)."""

    price_per_1k_prompt: float = Field(0.0, ge=0)
    price_per_1k_completion: float = Field(0.0, ge=0)
    generation_cost: float | None = Field(None, ge=0, description="Declared total, overrides.")
    latency_p95_ms: float | None = Field(None, gt=0)


class TrafficSpec(Strict):
    qps: float = Field(1.0, ge=0)
    avg_tokens: float = Field(500, gt=0)
    days: int = Field(30, ge=1)


class CostSpec(Strict):
    """Inputs of the ROI ledger (used by the analysis stage)."""

    currency: str = "USD"
    teachers: dict[str, TeacherCost] = Field(default_factory=dict)
    judge_cost_per_item: float = Field(0.0, ge=0)
    gpu_hour: float = Field(0.0, ge=0)
    maintenance_per_month: float = Field(0.0, ge=0)
    teacher_price_per_1k: float = Field(0.0, ge=0, description="Online teacher price per 1k tok.")
    student_price_per_1k: float = Field(0.0, ge=0)
    student_price_from: Literal["declared", "measured"] = Field(
        "declared", description="declared: student_price_per_1k for every cell; measured: "
        "each cell's own serving price, gpu_hour x its measured median seconds per request "
        "(one request at a time) per avg_tokens / 1000, so a slower student costs more.")
    manual_fallback_cost: float = Field(0.0, ge=0, description="Cost of one error handled by hand.")
    traffic: TrafficSpec = TrafficSpec()

    @model_validator(mode="after")
    def _measured_needs_gpu_hour(self) -> CostSpec:
        # a measured price is the GPU's hourly price spread over the requests it serves
        if self.student_price_from == "measured" and not self.gpu_hour:
            raise ValueError("student_price_from: measured prices each cell's student from its "
                             "measured latency x gpu_hour, so gpu_hour must be declared")
        return self


def costs_declared(costs: dict[str, Any]) -> bool:
    """Whether a ``costs:`` section (as JSON data) prices anything at all. Without a single
    price every cost and saving is 0, and "ROI = 0.00" would read as a checked break-even."""
    per_teacher = any(v for t in costs["teachers"].values()
                      for k, v in t.items() if k != "latency_p95_ms")
    return per_teacher or any(costs[k] for k in (
        "judge_cost_per_item", "gpu_hour", "maintenance_per_month", "teacher_price_per_1k",
        "student_price_per_1k", "manual_fallback_cost"))


class StopSpec(Strict):
    """Stop-signal thresholds (used by the analysis stage)."""

    min_gain_next_doubling: float = Field(0.01, ge=0)
    max_real_synthetic_gap: float = Field(0.05, ge=0)
    max_teacher_disagreement: float = Field(0.3, ge=0, le=1)
    max_copied_error_rate: float = Field(0.1, ge=0, le=1)
    units: list[str] | None = Field(None, description="Units that matter; default all.")


SignalName = Literal["at_chance", "diminishing_returns", "teacher_bias", "cost",
                     "distribution_gap", "teacher_inconsistency"]
#: ``at_chance`` blocks whatever ``blocking_signals`` says (a student at chance never CONTINUEs).
DEFAULT_BLOCKING: tuple[SignalName, ...] = ("at_chance", "diminishing_returns", "cost",
                                            "distribution_gap")


class GateSpec(Strict):
    """Gate policy (used by the analysis stage)."""

    min_metric: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="unit -> metric -> minimum value."
    )
    max_p95_latency_ms: float | None = Field(None, gt=0)
    min_roi: float | None = None
    correction: Literal["holm", "bh"] = Field(
        "holm", description="Multiple-comparison correction: Holm (family-wise) or "
        "Benjamini-Hochberg (false discovery rate).")
    blocking_signals: list[SignalName] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKING),
        description="Stop signals that change the decision when they fire.")


class EvalSpec(Strict):
    """Evaluation options."""

    slices: list[str] = Field(["source"], description="Tag keys to slice every metric by.")
    max_new_tokens: int = Field(64, ge=1, description="Generation budget per eval answer.")
    latency_runs: int = Field(20, ge=1, description="Timed batch-1 runs (after 3 warm-ups).")
    latency_new_tokens: int = Field(16, ge=2, description="Tokens generated per latency run.")
    latency_batch_size: int = Field(32, ge=1, description="Batch size of the throughput run.")


# --------------------------------------------------------------------------- experiment


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
    seeds: list[int] = Field([0], min_length=1)
    sampling: SamplingSpec = SamplingSpec()
    design: DesignSpec = DesignSpec()
    baseline: CellRef
    evaluation: EvalSpec = EvalSpec()
    costs: CostSpec = CostSpec()
    stop: StopSpec = StopSpec()
    gate: GateSpec = GateSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("units", "buckets", "fields")
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
