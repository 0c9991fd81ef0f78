"""Classifier students: a sequence-classification head on a local pretrained encoder.

A common production pattern is to distil an LLM's labels into a small encoder. One
``AutoModelForSequenceClassification`` serves every unit of the experiment: its output layer is
the concatenation of one *class block* per unit, and each item is scored with a softmax over its
own unit's block only (equivalent to one head per unit sharing the encoder). A unit's block is
its kind's ``classifier_classes`` (:mod:`harness.units`): a ``label`` unit's declared labels, in
order; a ``refusal`` unit's ``[marker, ANSWER_CLASS]`` — refuse, or answer (any other answer).
The layout and the batching live in :mod:`harness.class_layout`, which the training objective
and the latency measurement read too.

Class names are stored in the checkpoint's ``config.id2label`` as ``"<unit>:<class>"`` (unit
names cannot contain ``:``), so a reloaded checkpoint knows its layout without the YAML.

Imports only torch and transformers (the GPU worker's path); never touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.class_layout import (
    NEW_PARAMETERS,
    ClassLayout,
    UnitBlock,
    encode_prompts,
    pad_batch,
)
from harness.store.cell_spec import CellSpec
from harness.students.base import Answers, StudentKind, register
from harness.students.pooling import apply_pooling, resolve_pooling
from harness.train.objective import Objective
from harness.units import get
from harness.units.refusal import ANSWER_CLASS  # noqa: F401 - re-exported (class names)

if TYPE_CHECKING:
    from harness.students.options import ClassifierOptions


def build_classifier(path: Path, layout: ClassLayout, seed: int,
                     trust_remote_code: bool = False, pooling: str | None = None
                     ) -> tuple[Any, Any]:
    """A classification head (seeded init) on the local encoder at ``path`` -> (model, tokenizer).

    The encoder's own weights load from ``path`` (safetensors, ``local_files_only``); the head is
    new, sized ``layout.n_classes``. ``pooling`` as in :func:`resolve_pooling`.
    """
    model, tokenizer = _load(path, trust_remote_code, num_labels=layout.n_classes,
                             id2label=layout.id2label(), seed=seed)
    apply_pooling(model, resolve_pooling(path, pooling))
    return model, tokenizer


def load_classifier(path: Path, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """A saved classifier student (a cell's ``model/``) with the pooling it was trained with."""
    model, tokenizer = _load(path, trust_remote_code)
    apply_pooling(model, getattr(model.config, "harness_pooling", "cls"))
    return model, tokenizer


def _load(path: Path, trust_remote_code: bool, num_labels: int | None = None,
          id2label: dict[int, str] | None = None, seed: int = 0) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True,
                                              trust_remote_code=trust_remote_code)
    torch.manual_seed(seed)  # the new head's initialisation
    extra: dict[str, Any] = {}
    if id2label is not None:
        extra = {"num_labels": num_labels, "id2label": id2label,
                 "label2id": {v: k for k, v in id2label.items()},
                 "ignore_mismatched_sizes": True}
    # transformers reports the new head's weights (and, for a mean-pooled checkpoint, the
    # pooler it no longer has) as "missing" in a warning table: expected here.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code,
            output_loading_info=True, **extra)
    finally:
        hf_logging.set_verbosity(verbosity)
    # The parameters the checkpoint did not have: the new head (trained with its own rate).
    setattr(model, NEW_PARAMETERS, sorted(set(info.get("missing_keys", ()))
                                          | {k for k, *_ in info.get("mismatched_keys", ())}))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model, tokenizer


def classify(model: Any, tokenizer: Any, block: UnitBlock, prompts: list[str], device: Any,
             max_len: int, batch_size: int = 64) -> Any:
    """Class probabilities of each prompt over its unit's block.

    Returns:
        numpy array (n_prompts, len(block.classes)), rows summing to 1 (float64).
    """
    import numpy as np
    import torch

    ids = encode_prompts(tokenizer, prompts, max_len)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # length-bucketed batches
    out = np.zeros((len(ids), len(block.classes)), dtype=np.float64)
    cuda = getattr(device, "type", str(device)) == "cuda"
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x, mask = pad_batch([ids[i] for i in idx], tokenizer.pad_token_id, device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(input_ids=x, attention_mask=mask).logits
            probs = torch.softmax(logits[:, block.offset:block.stop].float(), dim=-1)
            out[idx] = probs.cpu().double().numpy()
    return out


@register
class ClassifierStudent(StudentKind):
    """A sequence-classification head on a local encoder; answers every item with one forward
    pass over its unit's class block."""

    name = "classifier"
    why_not: ClassVar[Mapping[str, str]] = {
        "adapter": "its new class head trains with the whole encoder, and the cell saves the "
                   "full checkpoint",
        "config": "a classifier is a new head on a pretrained encoder, given as "
                  "student.model",
        "distill": "token-level soft targets need a language-model head; a classifier trains "
                   "on the teacher's stated confidence instead, with student.soft_targets: true",
        "token_soft_labels": "a classifier trains on the teacher's stated confidence "
                             "instead (student.soft_targets: true)",
    }

    @classmethod
    def answers_unit_kind(cls, unit_kind: str) -> bool:
        """Units whose kind has a closed class set (``classifier_classes``: label, refusal)."""
        return get(unit_kind).classifier

    def __init__(self, spec: CellSpec, paths: Mapping[str, str]) -> None:
        super().__init__(spec, paths)
        self.layout = ClassLayout.from_units(spec.units)

    @classmethod
    def options_model(cls) -> type[ClassifierOptions]:
        from harness.students.options import ClassifierOptions

        return ClassifierOptions

    @classmethod
    def objective_type(cls) -> type[Objective]:
        from harness.train.objectives.classifier import ClassifierObjective

        return ClassifierObjective

    def build(self, samples: Sequence[dict[str, Any]], seed: int) -> None:
        """The encoder at ``student.model`` with a new seeded head of the layout's classes."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local encoder; never the hub
        self.model, self.tokenizer = build_classifier(
            Path(str(self.student.model)), self.layout, seed,
            self.student.trust_remote_code, self.student.pooling)

    def objective(self, samples: list[dict[str, Any]]) -> Objective:
        from harness.train.objectives.classifier import ClassifierObjective

        return ClassifierObjective(self.tokenizer, self.layout, samples,
                                   self.student.train.max_len,
                                   soft=self.student.soft_targets,
                                   head_lr=self.student.head_lr)

    def answer(self, unit_name: str, unit: Mapping[str, Any], prompts: list[str], device: Any
               ) -> Answers:
        """Softmax over the unit's block; the answer (and the "generation") is the top class.
        Calibration applies where the classes are the unit's declared labels."""
        probs = classify(self.model, self.tokenizer, self.layout.blocks[unit_name], prompts,
                         device, self.student.train.max_len)
        answers: list[str | None] = [self.layout.answer(unit_name, int(j))
                                     for j in probs.argmax(axis=1)]
        return Answers([str(a) for a in answers], answers, probs,
                       calibrated=get(unit["kind"]).calibrated)

    def latency(self, prompts: list[str], device: Any, *, runs: int, batch_size: int,
                new_tokens: int, checkpoint_dir: Path) -> dict[str, Any]:
        """One forward pass per answer: batch-1 latency, throughput, size (no decode speed)."""
        from harness.evaluate.latency import measure_classifier

        return measure_classifier(self.model, self.tokenizer, prompts, device,
                                  student=self.name, runs=runs,
                                  max_len=self.student.train.max_len,
                                  batch_size=batch_size, checkpoint_dir=checkpoint_dir)
