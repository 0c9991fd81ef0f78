"""The ``student:`` section's models, one per student kind, on a base every kind shares.

:class:`StudentOptions` holds what every kind reads (``kind``, ``model`` or ``config``,
``trust_remote_code``, ``train``); each kind's model adds its own options —
:class:`CausalLMOptions` (``adapter``, ``distill``) and :class:`ClassifierOptions`
(``soft_targets``, ``head_lr``, ``pooling``). A kind names its model
(:meth:`harness.students.base.StudentKind.options_model`), and the experiment model validates a
``student:`` section with the model of the kind the section names
(:mod:`harness.experiment.student`), so a kind registered at run time validates like a built-in
one and nothing outside the student kinds names a kind's options.

Pydantic lives here, apart from the kinds' modules, because the worker imports the kinds and
never pydantic: a cell's manifest carries these settings as the standard-library
:class:`harness.store.cell_spec.StudentPart`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from harness.store.cell_spec import StudentPart
from harness.store.record import ABSENT
from harness.strict import Strict


def without_unset(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``data`` (a model's JSON dump) without those of ``keys`` that are unset (None): options
    added after cells were composed stay out of the dump while unset, so those cells' effective
    spec (and id) is the one written before the option existed."""
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


#: A module-name suffix of ``student.adapter.target_modules`` (``q_proj``, ``mlp.down_proj``).
SafeModuleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.]{0,127}$")]

#: Largest hidden size of a from-scratch student (twice the widest published LLMs').
MAX_HIDDEN = 32_768
#: Largest vocabulary of a from-scratch tokenizer (four times the largest published ones).
MAX_VOCAB = 2**20
#: Longest sequence (positions, training length) in tokens.
MAX_TOKENS = 2**20
#: Most weights a from-scratch student may have: 400 GB of float32 weights alone.
MAX_PARAMETERS = 10**11
#: Most epochs, optimizer steps and examples per batch (or accumulated batches) of a cell.
MAX_EPOCHS, MAX_STEPS, MAX_BATCH = 10_000, 10**8, 65_536

#: How the from-scratch tokenizer cuts numbers (``harness.students.tokenizer`` takes the same
#: two names; the worker's path never imports pydantic, so it cannot import this module).
DigitsMode = Literal["split", "merged"]


class StudentConfig(Strict):
    """A from-scratch causal LM (the tokenizer is trained on the experiment's own text)."""

    arch: Literal["llama"] = "llama"
    # Upper bounds: sizes no machine could hold are refused at validate, not after composing
    # every cell (the largest published models use hidden 16,384-25,600 and vocabularies of
    # 256k); the parameter count of the whole is bounded too (_fits).
    layers: int = Field(4, ge=1, le=64)
    hidden: int = Field(128, ge=8, le=MAX_HIDDEN)
    heads: int = Field(4, ge=1, le=1024)
    kv_heads: int | None = Field(None, ge=1, le=1024)
    intermediate: int | None = Field(None, ge=8, le=4 * MAX_HIDDEN,
                                     description="MLP width; default 4 x hidden.")
    vocab: int = Field(2048, ge=260, le=MAX_VOCAB, description="Byte-level BPE vocabulary size.")
    max_position: int = Field(512, ge=16, le=MAX_TOKENS)
    init_std: float | None = Field(
        None, gt=0, le=1,
        description="Standard deviation of the normal initialisation of the weights "
        "(transformers' initializer_range); unset: its default 0.02. A larger value (0.06 "
        "for hidden 128) shortens the plateau before attention starts to copy from the "
        "prompt: in the demo's base cell (462 steps) the student's per-digit accuracy on "
        "order ids is 0.10 (chance) at 0.02 and 0.26 at 0.06, and its currency field F1 "
        "0.26 and 0.43.")
    digits: DigitsMode = Field(
        "split",
        description="How the trained tokenizer cuts numbers. split (default): every digit is "
        "its own token, so an order id or an amount in the prompt and the same number in the "
        "answer are the same token sequence and copying it is a digit-by-digit copy a small "
        "from-scratch model can learn; merged: BPE merges runs of digits into multi-digit tokens "
        "that differ with their neighbours (the tokenizer before this setting existed; cells "
        "that say merged keep the ids they had then).")

    @model_serializer(mode="wrap")
    def _earlier_students_keep_their_ids(self, handler: SerializerFunctionWrapHandler
                                         ) -> dict[str, Any]:
        # Unset, init_std stays out of dumps: the effective spec (and so the cell id) of a
        # student from before the key is the one written then. (A 'merged' tokenizer is left out
        # of the cell's effective spec only, by StudentOptions.cell_dump: a full dump keeps it, so
        # a run record's spec validates back to the same experiment.)
        return without_unset(handler(self), ("init_std",))

    @model_validator(mode="after")
    def _heads_divide(self) -> StudentConfig:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be divisible by kv_heads")
        return self

    @model_validator(mode="after")
    def _fits(self) -> StudentConfig:
        n = self.parameters()
        if n > MAX_PARAMETERS:
            raise ValueError(f"this student has about {n:.2g} parameters ({n * 4 / 2**30:,.0f} "
                             "GiB of float32 weights, and training keeps about 3 times more): "
                             f"more than {MAX_PARAMETERS:.0e}, which no machine trains; make "
                             "layers, hidden, intermediate or vocab smaller")
        return self

    def parameters(self) -> int:
        """About how many weights the Llama architecture of this config has: embeddings and
        output head (``2 x vocab x hidden``) plus, per layer, the attention projections
        (queries and outputs ``hidden^2`` each, keys and values ``hidden x kv width`` each) and
        the gated MLP (``3 x hidden x intermediate``); norms are left out."""
        inter = self.intermediate or 4 * self.hidden
        kv = self.hidden // self.heads * (self.kv_heads or self.heads)
        per_layer = 2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * inter
        return 2 * self.vocab * self.hidden + self.layers * per_layer


class TrainSpec(Strict):
    """Optimisation settings shared by every cell (cells differ in data, not in recipe)."""

    epochs: float = Field(3, gt=0, le=MAX_EPOCHS)
    min_steps: int = Field(
        0, ge=0, le=MAX_STEPS, description="Train at least this many optimizer steps (small "
        "subsets of a learning curve otherwise stop before the optimiser gets anywhere).")
    batch_size: int = Field(32, ge=1, le=MAX_BATCH)
    grad_accum: int = Field(1, ge=1, le=MAX_BATCH)
    lr: float = Field(3.0e-4, gt=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    clip: float = Field(1.0, gt=0)
    max_len: int = Field(256, ge=8, le=MAX_TOKENS)
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
        "once. Same loss and gradients; ignored with 'distill' or a field set's soft_targets: "
        "topk (soft targets need full logits).")
    compile: bool = Field(
        False,
        description="torch.compile the model's forward for training (first steps are slower "
        "while it compiles; pays off on GPUs for runs of hundreds of steps).")
    fast: Literal["auto", "on", "off"] | None = Field(
        None,
        description="The fast training path (unset: auto, on for CUDA): each optimizer step's "
        "examples (exactly the batch_size x grad_accum of the plain path) cut into micro-"
        "batches of one fixed shape filled to token_budget, documents kept apart by "
        "FlexAttention block masks, the step compiled once (compile seconds in the training "
        "summary, bounded: eager with the reason when it fails or overruns). Same loss and "
        "gradients as the plain path; off with 'distill' and in soft_targets: topk cells (the "
        "plain path trains them).")
    token_budget: int | None = Field(
        None, ge=128, le=MAX_TOKENS * 16,
        description="Tokens per fast-path micro-batch, padding included (rounded up to a "
        "multiple of 128 and to the longest example). Unset: chosen per run from the steps' "
        "token counts, trading padding against micro-batches.")

    @model_serializer(mode="wrap")
    def _unset_keys_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Unset fast-path keys stay out of dumps, so cell ids (a hash of the dumped spec)
        # of experiments written before these keys existed do not change.
        return without_unset(handler(self), ("fast", "token_budget"))


@dataclass(frozen=True)
class Checkpoint:
    """A local checkpoint folder a student reads.

    Attributes:
        role: its key in a cell manifest's ``paths`` (``student_model``, ``teacher_model``).
        field: where it is written in the ``student:`` section (``("distill",
            "teacher_model")``).
        what: what it is, for messages ("teacher checkpoint").
        folder: the folder (absolute once the experiment is loaded).
    """

    role: str
    field: tuple[str, ...]
    what: str
    folder: Path


class StudentOptions(Strict):
    """What every student kind reads (``kind``, ``model``, ``trust_remote_code``, ``train``);
    each kind's model narrows ``kind`` and adds its options.

    Attributes (class-level, for the experiment model and the matrix):
        UNSET_ABSENT: the kind's options left out of a cell's effective spec while unset, so
            the cells from before each key existed keep their ids.
        CELL_KEYS: keys every cell's effective spec held, with their unset value, when one
            flat ``student:`` model carried every kind's options: a kind without one of them
            still writes it at that value, so no cell id changed when each kind got its own
            model.
        CELL_ORDER: the order of those keys in a cell's manifest: the fields of
            :class:`harness.store.cell_spec.StudentPart` (the flat model's order), so a manifest
            is written as it was before; a kind's own new keys go last.
        CHECKPOINTS: the checkpoint folders the kind reads, by manifest role: (where in the
            section, what it is). Made absolute by the loader, checked by validate, named by
            their folder name in a cell's id.
    """

    #: Narrowed to ``Literal["<name>"]`` by each kind's model (declared first, so every kind's
    #: fields keep the order kind, model, trust_remote_code, train, then its own).
    kind: str
    model: Path | None = Field(None, description="Local Hugging Face checkpoint folder.")
    trust_remote_code: bool = False
    train: TrainSpec = TrainSpec()

    UNSET_ABSENT: ClassVar[tuple[str, ...]] = ()
    CELL_KEYS: ClassVar[Mapping[str, Any]] = {
        "config": None, "soft_targets": False, "head_lr": None, "distill": None}
    CELL_ORDER: ClassVar[tuple[str, ...]] = tuple(
        f.name for f in fields(StudentPart) if f.name != ABSENT)
    CHECKPOINTS: ClassVar[Mapping[str, tuple[tuple[str, ...], str]]] = {
        "student_model": (("model",), "student checkpoint")}

    def cell_dump(self) -> dict[str, Any]:
        """This section as a cell's effective spec holds it (``harness.matrix``): the JSON dump
        without the :attr:`UNSET_ABSENT` options that are unset, with the :attr:`CELL_KEYS`
        the kind lacks at their unset value, and without ``config.digits`` when it is
        ``merged`` — the tokenizer of every student from before the key existed, so their
        cells keep their ids (the worker reads a missing ``digits`` as merged,
        :mod:`harness.students.build`)."""
        data = without_unset(self.model_dump(mode="json"), self.UNSET_ABSENT)
        for key, unset in self.CELL_KEYS.items():
            data.setdefault(key, unset)
        config = data.get("config")
        if isinstance(config, dict) and config.get("digits") == "merged":
            config.pop("digits")
        rank = {key: i for i, key in enumerate(self.CELL_ORDER)}
        return dict(sorted(data.items(), key=lambda kv: rank.get(kv[0], len(rank))))

    def checkpoints(self) -> list[Checkpoint]:
        """The checkpoint folders this student reads (:attr:`CHECKPOINTS` that are set)."""
        out = []
        for role, (field, what) in self.CHECKPOINTS.items():
            value: Any = self
            for key in field:
                value = getattr(value, key, None)
            if value is not None:
                out.append(Checkpoint(role, field, what, Path(value)))
        return out

    @property
    def from_scratch(self) -> bool:
        """Whether the student starts from random weights with its own tokenizer (trained on
        each cell's text), so its token ids never mean a teacher's."""
        return False

    @property
    def distils_logits(self) -> bool:
        """Whether training pulls the student towards a white-box teacher's token
        distribution (which needs the full logits: no fast path, no second soft part)."""
        return False

    def module_targets(self) -> tuple[str, list[str]] | None:
        """Module names of the checkpoint these options name (where in the section, the
        names), for validate to look for in the checkpoint; None when they name none."""
        return None


class DistillSpec(Strict):
    """Optional soft-target distillation from a white-box teacher sharing the tokenizer."""

    teacher_model: Path
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)


class AdapterSpec(Strict):
    """A LoRA adapter (through ``peft``) on a pretrained causal-LM student: the checkpoint's
    weights stay frozen and only the adapter's low-rank matrices train; the cell saves the
    adapter alone, naming its base by path and content hash (:mod:`harness.students.adapter`).
    """

    kind: Literal["lora"] = "lora"
    r: int = Field(16, ge=1, le=4096, description="Rank of each adapted weight's update.")
    alpha: float = Field(
        32.0, gt=0, description="LoRA alpha: the update B @ A is scaled by alpha / r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    target_modules: list[SafeModuleName] | Literal["all-linear"] = Field(
        "all-linear",
        description="The linear layers that get an adapter, by module-name suffix (e.g. "
        "[q_proj, v_proj] for Llama-style models); all-linear (default): every linear layer "
        "but the output head, peft's choice that QLoRA found matters most for quality.")

    @model_validator(mode="after")
    def _some_modules(self) -> AdapterSpec:
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("target_modules is empty: name the layers to adapt, or use "
                             "all-linear")
        return self


class CausalLMOptions(StudentOptions):
    """A causal LM: a local checkpoint (``model``, optionally with a LoRA ``adapter``) or a
    from-scratch ``config``, optionally distilled from a white-box teacher (``distill``).
    The student kind: :class:`harness.students.causal_lm.CausalLMStudent`."""

    kind: Literal["causal_lm"] = Field(
        "causal_lm", description="causal_lm (the default): a causal LM that generates answers "
        "(every unit kind).")
    config: StudentConfig | None = Field(
        None, description="A from-scratch model (the tokenizer is trained on the experiment's "
        "own text); give exactly one of model and config.")
    adapter: AdapterSpec | None = Field(
        None,
        description="With 'model' only: train a LoRA adapter on the frozen checkpoint instead "
        "of every weight (unset: full fine-tuning; absent from the cell id then, so earlier "
        "cells keep their ids).")
    distill: DistillSpec | None = None

    UNSET_ABSENT: ClassVar[tuple[str, ...]] = ("adapter",)
    CHECKPOINTS: ClassVar[Mapping[str, tuple[tuple[str, ...], str]]] = {
        **StudentOptions.CHECKPOINTS,
        "teacher_model": (("distill", "teacher_model"), "teacher checkpoint")}

    @field_validator("adapter")
    @classmethod
    def _adapter_needs_weights(cls, adapter: AdapterSpec | None, info: ValidationInfo
                               ) -> AdapterSpec | None:
        # A from-scratch student starts from random weights: there is nothing to keep frozen.
        if adapter is not None and info.data.get("config") is not None:
            raise ValueError("an adapter needs pretrained weights to freeze: a from-scratch "
                             "student (student.config) starts from random weights and must "
                             "train all of them; give student.model (a local checkpoint), or "
                             "remove adapter")
        return adapter

    @model_validator(mode="after")
    def _one_source(self) -> CausalLMOptions:
        if (self.model is None) == (self.config is None):
            raise ValueError("give exactly one of 'model' (a checkpoint path) or 'config'")
        return self

    @property
    def from_scratch(self) -> bool:
        return self.config is not None

    @property
    def distils_logits(self) -> bool:
        return self.distill is not None

    def module_targets(self) -> tuple[str, list[str]] | None:
        if self.adapter is None or not isinstance(self.adapter.target_modules, list):
            return None
        return "adapter.target_modules", list(self.adapter.target_modules)


class ClassifierOptions(StudentOptions):
    """A sequence-classifier head on a local pretrained encoder, one class block per unit
    (label and refusal units only). The student kind:
    :class:`harness.students.classifier.ClassifierStudent`."""

    kind: Literal["classifier"] = Field(
        description="classifier: an AutoModelForSequenceClassification head on the encoder "
        "at 'model', one class block per unit; only label and refusal units.")
    soft_targets: bool = Field(
        False,
        description="Train towards the teacher's stated confidence (its answer gets the "
        "confidence, the unit's other classes share the rest) instead of a one-hot target.")
    head_lr: float | None = Field(
        None, gt=0, lt=1,
        description="Learning rate of the new classification head (default 10 x train.lr); "
        "the pretrained encoder uses train.lr. A new head needs larger steps than the encoder "
        "it sits on.")
    pooling: Literal["auto", "cls", "mean"] | None = Field(
        None,
        description="How the encoder's tokens become one vector. cls: the architecture's own "
        "pooler; mean: the masked mean of the last hidden states (what sentence encoders such "
        "as all-MiniLM-L6-v2 were trained for); auto (default): mean when the folder is a "
        "sentence-transformers model with mean pooling, else cls.")

    UNSET_ABSENT: ClassVar[tuple[str, ...]] = ("pooling",)

    @model_validator(mode="after")
    def _needs_encoder(self) -> ClassifierOptions:
        if self.model is None:
            raise ValueError("a classifier student needs 'model': a local pretrained encoder "
                             "folder (e.g. the packaged MiniLM)")
        return self
