"""Classifier students: a sequence-classification head on a local pretrained encoder.

A common production pattern is to distil an LLM's labels into a small encoder. One
``AutoModelForSequenceClassification`` serves every unit of the experiment: its output layer is
the concatenation of one *class block* per unit, and each item is scored with a softmax over its
own unit's block only (equivalent to one head per unit sharing the encoder). A unit's block is
its kind's ``classifier_classes`` (:mod:`harness.units`): a ``label`` unit's declared labels, in
order; a ``refusal`` unit's ``[marker, ANSWER_CLASS]`` — refuse, or answer (any other answer).

Class names are stored in the checkpoint's ``config.id2label`` as ``"<unit>:<class>"`` (unit
names cannot contain ``:``), so a reloaded checkpoint knows its layout without the YAML.

Imports only torch and transformers (the GPU worker's path); never touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.students.base import Answers, StudentKind, register
from harness.students.pooling import apply_pooling, resolve_pooling
from harness.train.objective import Objective
from harness.units import classifier_kinds, get
from harness.units.refusal import ANSWER_CLASS  # noqa: F401 - re-exported (class names)


@dataclass(frozen=True)
class UnitBlock:
    """One unit's slice of the output layer: classes ``offset .. offset + len(classes) - 1``."""

    unit: str
    kind: str
    offset: int
    classes: tuple[str, ...]
    marker: str | None = None

    @property
    def stop(self) -> int:
        return self.offset + len(self.classes)


@dataclass(frozen=True)
class ClassLayout:
    """Where each unit's classes sit in the classifier's output layer."""

    blocks: dict[str, UnitBlock]

    @classmethod
    def from_units(cls, units: dict[str, dict[str, Any]]) -> ClassLayout:
        """The layout for the YAML's units (spec dicts with ``kind``, ``labels``/``marker``).

        Raises:
            ValueError: a unit kind a classifier cannot answer (``classifier_classes`` None).
        """
        blocks: dict[str, UnitBlock] = {}
        offset = 0
        for name, unit in units.items():
            classes = get(unit["kind"]).classifier_classes(unit)
            if classes is None:
                raise ValueError(f"a classifier student cannot answer unit {name!r} of kind "
                                 f"{unit['kind']!r} (only {' and '.join(classifier_kinds())} "
                                 "units)")
            blocks[name] = UnitBlock(name, unit["kind"], offset, classes, unit.get("marker"))
            offset += len(classes)
        return cls(blocks)

    @property
    def n_classes(self) -> int:
        return sum(len(b.classes) for b in self.blocks.values())

    def id2label(self) -> dict[int, str]:
        """``{output index: "<unit>:<class>"}`` for the checkpoint's config."""
        return {b.offset + j: f"{b.unit}:{c}" for b in self.blocks.values()
                for j, c in enumerate(b.classes)}

    def target_index(self, unit: str, final: str) -> int | None:
        """Index *within the unit's block* of a composed sample's answer; None when the answer
        is outside the unit's classes (a label the unit does not declare)."""
        block = self.blocks[unit]
        return get(block.kind).class_index(block.classes, final.strip())

    def answer(self, unit: str, index: int) -> str:
        """The answer string of class ``index`` within the unit's block."""
        block = self.blocks[unit]
        return get(block.kind).class_answer(block.classes, index)


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
    model.harness_new_parameters = sorted(set(info.get("missing_keys", ()))
                                          | {k for k, *_ in info.get("mismatched_keys", ())})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return model, tokenizer


def head_parameter_names(model: Any) -> set[str]:
    """Names of the parameters that are new in a built classifier (its head): those the
    checkpoint lacked, else the usual head modules (``classifier``, ``score``)."""
    new = set(getattr(model, "harness_new_parameters", ()))
    names = {n for n, _ in model.named_parameters()}
    if new & names:
        return new & names
    return {n for n in names if n.split(".")[0] in ("classifier", "score")}


def encode_prompts(tokenizer: Any, prompts: list[str], max_len: int) -> list[list[int]]:
    """Token ids per prompt with the encoder's special tokens, truncated to ``max_len``."""
    return list(tokenizer(prompts, truncation=True, max_length=max_len)["input_ids"])


def pad_batch(ids: list[list[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    """Right-padded ``input_ids`` and ``attention_mask``, both (batch, longest) int64."""
    import torch

    width = max(len(x) for x in ids)
    out = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1
    return out.to(device), mask.to(device)


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

    def __init__(self, spec: Mapping[str, Any], paths: Mapping[str, str]) -> None:
        super().__init__(spec, paths)
        self.layout = ClassLayout.from_units(spec["units"])

    @classmethod
    def objective_type(cls) -> type[Objective]:
        from harness.train.objectives.classifier import ClassifierObjective

        return ClassifierObjective

    def build(self, samples: Sequence[dict[str, Any]], seed: int) -> None:
        """The encoder at ``student.model`` with a new seeded head of the layout's classes."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local encoder; never the hub
        self.model, self.tokenizer = build_classifier(
            Path(self.student["model"]), self.layout, seed,
            bool(self.student.get("trust_remote_code")), self.student.get("pooling"))

    def objective(self, samples: list[dict[str, Any]]) -> Objective:
        from harness.train.objectives.classifier import ClassifierObjective

        return ClassifierObjective(self.tokenizer, self.layout, samples,
                                   int(self.train_cfg["max_len"]),
                                   soft=bool(self.student.get("soft_targets")),
                                   head_lr=self.student.get("head_lr"))

    def answer(self, unit_name: str, unit: Mapping[str, Any], prompts: list[str], device: Any
               ) -> Answers:
        """Softmax over the unit's block; the answer (and the "generation") is the top class.
        Calibration applies where the classes are the unit's declared labels."""
        probs = classify(self.model, self.tokenizer, self.layout.blocks[unit_name], prompts,
                         device, int(self.student["train"]["max_len"]))
        answers: list[str | None] = [self.layout.answer(unit_name, int(j))
                                     for j in probs.argmax(axis=1)]
        return Answers([str(a) for a in answers], answers, probs,
                       calibrated=get(unit["kind"]).calibrated)

    def latency(self, prompts: list[str], device: Any, *, runs: int, batch_size: int,
                new_tokens: int, checkpoint_dir: Path) -> dict[str, Any]:
        """One forward pass per answer: batch-1 latency, throughput, size (no decode speed)."""
        from harness.evaluate.latency import measure_classifier

        return measure_classifier(self.model, self.tokenizer, prompts, device, runs=runs,
                                  max_len=int(self.student["train"]["max_len"]),
                                  batch_size=batch_size, checkpoint_dir=checkpoint_dir)
