"""A classifier student's output layer and batches: what the student
(:mod:`harness.students.classifier`), its training objective
(:mod:`harness.train.objectives.classifier`) and its latency measurement
(:mod:`harness.evaluate.latency`) all read, kept below the three so none imports another.

The output layer is the concatenation of one *class block* per unit: a unit's block is its
kind's ``classifier_classes`` (:mod:`harness.units`), and each item is scored with a softmax over
its own unit's block only. Prompts are encoded with the encoder's special tokens and
right-padded.

Standard library and :mod:`harness.units` at import time; torch inside functions (the GPU
worker's path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.units import classifier_kinds, get

#: Model attribute holding the names of the parameters the checkpoint did not have (the new
#: head), set when a classifier student is built (:mod:`harness.students.classifier`).
NEW_PARAMETERS = "harness_new_parameters"


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


def head_parameter_names(model: Any) -> set[str]:
    """Names of the parameters that are new in a built classifier (its head): those the
    checkpoint lacked (:data:`NEW_PARAMETERS`), else the usual head modules (``classifier``,
    ``score``)."""
    new = set(getattr(model, NEW_PARAMETERS, ()))
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
