"""Training loop of classifier students (see :mod:`harness.students.classifier`).

Same recipe as the causal-LM loop so cells stay comparable: AdamW (fused on CUDA), linear
warm-up then cosine decay, gradient clipping, bf16 autocast on CUDA / fp32 on CPU, seeded and
deterministic on CPU, length-grouped batches in shuffled order, per-sample weights normalised by
the optimizer step's total weight, a non-finite loss stops training. Imports torch,
transformers and numpy only (the GPU worker's path).

Each sample's loss is the cross-entropy between its target distribution and the softmax over
its own unit's class block:

- hard targets: one-hot on the composed answer (``final``);
- soft targets (``student.soft_targets``): the teacher's stated confidence ``c`` on its answer
  and ``(1 - c) / (k - 1)`` on each of the unit's other ``k - 1`` classes — the teacher's
  belief, not certainty. Samples without a stated confidence (e.g. corrected failures) stay
  one-hot.

Samples whose answer is not one of the unit's classes (a teacher label outside the declared
labels) cannot be a classification target; they are skipped and counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.students.classifier import (
    ClassLayout,
    encode_prompts,
    head_parameter_names,
    pad_batch,
)
from harness.train.loop import NonFiniteLoss

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


def train_classifier(model: Any, tokenizer: Any, layout: ClassLayout,
                     samples: list[dict[str, Any]], cfg: dict[str, Any], *, soft: bool,
                     seed: int, device: Any, head_lr: float | None = None,
                     log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune ``model`` (encoder + head) in place on composed samples.

    Args:
        samples: rows of ``train.jsonl`` (``prompt``, ``unit``, ``final``, ``confidence``,
            ``weight``).
        cfg: the YAML's ``student.train`` (epochs, min_steps, batch_size, grad_accum, lr,
            weight_decay, warmup_ratio, clip, max_len).
        soft: train towards the teacher's stated confidence (module docstring).
        head_lr: learning rate of the new head (default ``HEAD_LR_FACTOR`` x ``cfg["lr"]``);
            the pretrained encoder uses ``cfg["lr"]``.

    Returns:
        summary: steps, examples, skipped (answers outside the unit's classes), tokens,
        train_seconds, final_loss, tokens_per_s.

    Raises:
        NonFiniteLoss: the loss became NaN/inf.
        ValueError: no sample has an answer among its unit's classes.
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cuda = device.type == "cuda"
    model.to(device).train()
    kept, targets_np, spans_np = target_rows(layout, samples, soft)
    if not kept:
        raise ValueError("no training sample's answer is one of its unit's classes")
    ids = encode_prompts(tokenizer, [samples[i]["prompt"] for i in kept], int(cfg["max_len"]))
    weights = np.array([float(samples[i]["weight"]) for i in kept], dtype=np.float32)
    bs, accum = int(cfg["batch_size"]), int(cfg["grad_accum"])
    batches_per_epoch = math.ceil(len(kept) / bs)
    total_micro = max(1, math.ceil(batches_per_epoch * float(cfg["epochs"])),
                      int(cfg.get("min_steps", 0)) * accum)
    total_steps = max(1, math.ceil(total_micro / accum))
    lr = float(cfg["lr"])
    head = head_parameter_names(model)
    param_groups: list[dict[str, Any]] = []
    for is_head in (False, True):
        for decays in (True, False):
            params = [p for n, p in model.named_parameters()
                      if (n in head) == is_head and (p.ndim >= 2) == decays]
            if params:
                param_groups.append({"params": params,
                                     "weight_decay": (float(cfg["weight_decay"]) if decays
                                                      else 0.0),
                                     "lr": (head_lr or HEAD_LR_FACTOR * lr) if is_head else lr})
    # The usual fine-tuning betas: the encoder is pretrained, not trained from scratch.
    opt = torch.optim.AdamW(param_groups, lr=lr, betas=(0.9, 0.999), fused=cuda)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg["warmup_ratio"] * total_steps),
                                            total_steps)
    by_length = sorted(range(len(kept)), key=lambda i: (len(ids[i]), i))
    groups = [by_length[i:i + bs] for i in range(0, len(by_length), bs)]
    schedule: list[list[int]] = []
    while len(schedule) < total_micro:  # epochs of shuffled length-grouped batches
        schedule += [groups[g] for g in rng.permutation(len(groups))]
    schedule = schedule[:total_micro]
    targets = torch.from_numpy(targets_np)
    spans = torch.from_numpy(spans_np)
    w_all = torch.from_numpy(weights)

    step = tokens_seen = tokens_since_log = 0
    t_start = t_log = time.perf_counter()
    last_loss = float("nan")
    for first in range(0, total_micro, accum):
        group = schedule[first:first + accum]
        denom = float(sum(w_all[idx].sum() for idx in group)) or 1.0
        step_loss = 0.0
        for idx in group:
            x, mask = pad_batch([ids[i] for i in idx], tokenizer.pad_token_id, device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(input_ids=x, attention_mask=mask).logits
            per = sample_losses(logits, targets[idx].to(device), spans[idx].to(device))
            loss = (per * w_all[idx].to(device)).sum() / denom
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"non-finite loss at optimizer step {step + 1}: {loss.item()}")
            loss.backward()
            step_loss += float(loss.detach())
            n_tok = int(mask.sum())
            tokens_seen += n_tok
            tokens_since_log += n_tok
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["clip"])))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        last_loss = step_loss
        if log is not None and (step % 10 == 0 or step == total_steps):
            if cuda:
                torch.cuda.synchronize()
            now = time.perf_counter()
            log({"step": step, "epoch": round(first / max(batches_per_epoch, 1), 3),
                 "loss": round(step_loss, 6), "lr": sched.get_last_lr()[0],
                 "grad_norm": round(grad_norm, 4),
                 "tokens_per_s": round(tokens_since_log / max(now - t_log, 1e-9), 1)})
            t_log, tokens_since_log = now, 0
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t_start
    model.eval()
    return {"steps": step, "examples": len(kept), "skipped": len(samples) - len(kept),
            "head_lr": head_lr or HEAD_LR_FACTOR * lr, "head_parameters": sorted(head),
            "tokens": tokens_seen, "train_seconds": round(seconds, 3), "final_loss": last_loss,
            "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 1)}
