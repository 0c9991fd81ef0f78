"""The classifier objective: block cross-entropy of a classifier student
(:mod:`harness.students.classifier`; its class blocks and batches: :mod:`harness.class_layout`),
trained by the shared loop.

Each sample's loss is the cross-entropy between its target distribution and the softmax over
its own unit's class block:

- hard targets: one-hot on the composed answer (``final``);
- soft targets (``student.soft_targets``): the teacher's stated confidence ``c`` on its answer
  and ``(1 - c) / (k - 1)`` on each of the unit's other ``k - 1`` classes — the teacher's
  belief, not certainty. Samples without a stated confidence (e.g. corrected failures) stay
  one-hot.

Samples whose answer is not one of the unit's classes (a teacher label outside the declared
labels) cannot be a classification target; they are skipped and counted. Per-sample weights are
normalised by the optimizer step's total weight (summed in float32). The new head trains with
its own learning rate (``student.head_lr``, default :data:`HEAD_LR_FACTOR` x ``train.lr``);
AdamW betas are the usual fine-tuning ones (0.9, 0.999): the encoder is pretrained. No
performance switch applies: batches are padded, the head is not an LM head, and the loop does
not compile it (``harness validate`` refuses the switches for a classifier).

Imports numpy at module level, torch inside functions (the GPU worker's path).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.class_layout import ClassLayout, encode_prompts, head_parameter_names, pad_batch
from harness.train.objective import Objective

#: The head's learning rate relative to the encoder's when the YAML gives no ``head_lr``.
HEAD_LR_FACTOR = 10.0


def target_rows(layout: ClassLayout, samples: list[dict[str, Any]], soft: bool
                ) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Trainable samples and their targets.

    Returns:
        kept: indices into ``samples`` of the samples with a known class;
        targets: (len(kept), n_classes) float32 target distributions (zero outside the unit's
            block);
        blocks: (len(kept), 2) int64 ``[offset, stop)`` of each sample's unit block.
    """
    kept: list[int] = []
    rows: list[np.ndarray] = []
    spans: list[tuple[int, int]] = []
    for i, s in enumerate(samples):
        final = s.get("final")
        if final is None:
            continue
        j = layout.target_index(s["unit"], str(final))
        if j is None:
            continue
        block = layout.blocks[s["unit"]]
        row = np.zeros(layout.n_classes, dtype=np.float32)
        k = len(block.classes)
        conf = s.get("confidence")
        if soft and conf is not None and k > 1:
            c = float(conf)
            row[block.offset:block.stop] = (1.0 - c) / (k - 1)
            row[block.offset + j] = c
        else:
            row[block.offset + j] = 1.0
        kept.append(i)
        rows.append(row)
        spans.append((block.offset, block.stop))
    targets = np.stack(rows) if rows else np.zeros((0, layout.n_classes), dtype=np.float32)
    return kept, targets, np.array(spans, dtype=np.int64).reshape(-1, 2)


def block_mask(spans: Any, n_classes: int) -> Any:
    """(batch, n_classes) bool: True inside each row's unit block."""
    import torch

    cols = torch.arange(n_classes, device=spans.device)[None, :]
    return (cols >= spans[:, :1]) & (cols < spans[:, 1:])


def sample_losses(logits: Any, targets: Any, spans: Any) -> Any:
    """Per-sample cross-entropy against ``targets`` over each row's own unit block.

    Args:
        logits: (batch, n_classes); targets: (batch, n_classes) summing to 1 within the block;
        spans: (batch, 2) block bounds.

    Returns:
        (batch,) float32 losses.
    """
    import torch

    inside = block_mask(spans, logits.size(-1))
    logp = torch.log_softmax(logits.float().masked_fill(~inside, float("-inf")), dim=-1)
    # Outside the block logp is -inf and the target 0: take 0 there, not 0 * -inf = nan.
    return -torch.where(inside, targets * logp, torch.zeros_like(logp)).sum(-1)


class ClassifierObjective(Objective):
    """Block cross-entropy over each sample's unit block (module docstring).

    Args:
        tokenizer: the encoder's tokenizer.
        layout: the class blocks of the experiment's units.
        samples: rows of ``train.jsonl`` (``prompt``, ``unit``, ``final``, ``confidence``,
            ``weight``).
        max_len: tokens per prompt (``student.train.max_len``; longer prompts are truncated).
        soft: train towards the teacher's stated confidence.
        head_lr: learning rate of the new head (default ``HEAD_LR_FACTOR`` x ``train.lr``).

    Raises:
        ValueError: no sample has an answer among its unit's classes.
    """

    name: ClassVar[str] = "classifier"
    switches: ClassVar[frozenset[str]] = frozenset()
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)

    def __init__(self, tokenizer: Any, layout: ClassLayout, samples: list[dict[str, Any]],
                 max_len: int, *, soft: bool, head_lr: float | None = None) -> None:
        import torch

        kept, targets, spans = target_rows(layout, samples, soft)
        if not kept:
            raise ValueError("no training sample's answer is one of its unit's classes")
        self.n_samples = len(samples)
        self.pad_id = tokenizer.pad_token_id
        self.ids = encode_prompts(tokenizer, [samples[i]["prompt"] for i in kept], max_len)
        self.targets = torch.from_numpy(targets)
        self.spans = torch.from_numpy(spans)
        self.weights = torch.from_numpy(
            np.array([float(samples[i]["weight"]) for i in kept], dtype=np.float32))
        self.head_lr = head_lr
        self.head: set[str] = set()
        self.lr = 0.0

    def lengths(self) -> list[int]:
        return [len(x) for x in self.ids]

    def param_groups(self, model: Any, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """Encoder then head, each with decay (matrices) then without (vectors); the head at
        its own learning rate. Empty groups are left out."""
        self.lr = float(cfg["lr"])
        self.head = head_parameter_names(model)
        groups: list[dict[str, Any]] = []
        for is_head in (False, True):
            for decays in (True, False):
                params = [p for n, p in model.named_parameters()
                          if (n in self.head) == is_head and (p.ndim >= 2) == decays]
                if params:
                    groups.append({"params": params,
                                   "weight_decay": float(cfg["weight_decay"]) if decays else 0.0,
                                   "lr": self.effective_head_lr if is_head else self.lr})
        return groups

    @property
    def effective_head_lr(self) -> float:
        """The head's learning rate (known once :meth:`param_groups` has read ``train.lr``)."""
        return self.head_lr or HEAD_LR_FACTOR * self.lr

    def batch(self, idx: list[int]) -> dict[str, Any]:
        """Right-padded prompts, their targets and block bounds; the weight share is a float32
        tensor (the normaliser is summed in float32)."""
        x, mask = pad_batch([self.ids[i] for i in idx], self.pad_id, "cpu")
        w = self.weights[idx]
        return {"input_ids": x, "attention_mask": mask, "targets": self.targets[idx],
                "spans": self.spans[idx], "weights": w, "n_tokens": int(mask.sum()),
                "weight_sum": w.sum()}

    def loss(self, forward: Any, batch: dict[str, Any], device: Any) -> Any:
        import torch

        with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                            enabled=device.type == "cuda"):
            logits = forward(input_ids=batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device)).logits
        per = sample_losses(logits, batch["targets"].to(device), batch["spans"].to(device))
        return (per * batch["weights"].to(device)).sum()

    def summary(self, common: dict[str, Any], in_effect: dict[str, Any]) -> dict[str, Any]:
        return {"steps": common["steps"], "examples": common["examples"],
                "skipped": self.n_samples - common["examples"],
                "head_lr": self.effective_head_lr, "head_parameters": sorted(self.head),
                "tokens": common["tokens"], "train_seconds": common["train_seconds"],
                "final_loss": common["final_loss"], "tokens_per_s": common["tokens_per_s"]}
