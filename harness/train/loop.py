"""The training loop: causal-LM SFT on target tokens, read top to bottom.

One function, :func:`train`, does everything in order: tokenise, batch by length, build the
optimiser and schedule, then loop epochs -> optimizer steps -> micro-batches. Imports torch,
transformers and numpy only (the GPU worker's path).

- Loss: cross-entropy on target tokens (+ EOS) only; each token weighted by its sample's
  ``weight`` from the composer; normalised by the total weight of the optimizer step's target
  tokens, so gradient accumulation gives the same update as one big batch.
- Optional soft targets from a white-box teacher sharing the tokenizer:
  ``(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)`` on the same positions.
- AdamW (fused on CUDA), linear warm-up then cosine decay, gradient clipping.
- bf16 autocast on CUDA, fp32 on CPU; seeded, deterministic on CPU.
- Length-aware batching: samples sorted by length into batches (shuffled per epoch), so padding
  is minimal; padded positions are masked out of attention and loss.
- A non-finite loss stops training at once with :class:`NonFiniteLoss`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

IGNORE = -100


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stopped."""


@dataclass(frozen=True)
class Example:
    """One tokenised sample: ``input_ids`` (prompt + target + eos) and where the target starts."""

    input_ids: list[int]
    target_start: int
    weight: float


def encode_examples(tokenizer: Any, samples: list[dict[str, Any]], max_len: int) -> list[Example]:
    """Tokenise ``prompt + "\\n"`` and ``target`` separately (so the boundary is exact), append
    EOS, and cut long prompts from the left so the target always fits in ``max_len``."""
    prompts = tokenizer([s["prompt"] + "\n" for s in samples],
                        add_special_tokens=False)["input_ids"]
    targets = tokenizer([s["target"] for s in samples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = []
    for s, p, t in zip(samples, prompts, targets, strict=True):
        t = [*t, eos][: max_len - 1]
        p = p[-(max_len - len(t)):]
        out.append(Example(input_ids=p + t, target_start=len(p), weight=float(s["weight"])))
    return out


def length_batches(examples: list[Example], batch_size: int, rng: np.random.Generator
                   ) -> list[list[int]]:
    """Indices grouped into batches of similar length, in a shuffled batch order."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].input_ids), i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(examples: list[Example], idx: list[int], pad_id: int, device: Any
            ) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE off-target), weights."""
    import torch

    width = max(len(examples[i].input_ids) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    weights = torch.empty(len(idx), dtype=torch.float32)
    for row, i in enumerate(idx):
        ex = examples[i]
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        mask[row, :n] = 1
        labels[row, ex.target_start:n] = ids[row, ex.target_start:n]
        weights[row] = ex.weight
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "weights": weights}
    return {k: v.to(device) for k, v in batch.items()}


def token_losses(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per-token CE on shifted positions.

    Args:
        logits: (batch, seq, vocab)
        labels: (batch, seq) with IGNORE where no loss applies.

    Returns:
        ``ce`` (batch, seq-1) float32 and ``valid`` (batch, seq-1) bool.
    """
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    valid = shift_labels != IGNORE
    ce = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                         shift_labels.clamp(min=0).reshape(-1), reduction="none")
    return ce.view(shift_labels.shape) * valid, valid


def kd_token_losses(student_logits: Any, teacher_logits: Any, valid: Any, temperature: float
                    ) -> Any:
    """T^2 * KL(teacher_T || student_T) per shifted position, (batch, seq-1), zero off-target."""
    import torch.nn.functional as F

    t = temperature
    s = F.log_softmax(student_logits[:, :-1].float() / t, dim=-1)
    p = F.log_softmax(teacher_logits[:, :-1].float() / t, dim=-1)
    kl = (p.exp() * (p - s)).sum(-1)
    return kl * (t * t) * valid


def train(model: Any, tokenizer: Any, samples: list[dict[str, Any]], cfg: dict[str, Any], *,
          seed: int, device: Any, teacher: Any | None = None, distill: dict[str, Any] | None = None,
          log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place on composed samples.

    Args:
        model: a causal LM (moved to ``device`` here).
        tokenizer: its tokenizer.
        samples: rows of ``train.jsonl`` (``prompt``, ``target``, ``weight``).
        cfg: the YAML's ``student.train`` (epochs, min_steps, batch_size, grad_accum, lr,
            weight_decay, warmup_ratio, clip, max_len).
        seed: shuffling and dropout seed.
        device: a ``torch.device``.
        teacher: optional white-box teacher (same tokenizer) for soft targets.
        distill: ``alpha`` and ``temperature`` when ``teacher`` is given.
        log: called with one dict per logged step (loss, lr, tokens/s, ...).

    Returns:
        summary: steps, tokens, seconds, final loss, tokens/s.

    Raises:
        NonFiniteLoss: the loss became NaN/inf.
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cuda = device.type == "cuda"
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    examples = encode_examples(tokenizer, samples, int(cfg["max_len"]))
    bs, accum = int(cfg["batch_size"]), int(cfg["grad_accum"])
    epochs = float(cfg["epochs"])
    batches_per_epoch = math.ceil(len(examples) / bs)
    total_micro = max(1, math.ceil(batches_per_epoch * epochs),
                      int(cfg.get("min_steps", 0)) * accum)
    total_steps = max(1, math.ceil(total_micro / accum))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(cfg["weight_decay"])},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=float(cfg["lr"]), betas=(0.9, 0.95), fused=cuda)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg["warmup_ratio"] * total_steps),
                                            total_steps)
    alpha = float(distill["alpha"]) if teacher is not None and distill else 0.0
    temp = float(distill["temperature"]) if teacher is not None and distill else 1.0

    # The micro-batch schedule across epochs (a fractional last epoch is cut short).
    schedule: list[list[int]] = []
    while len(schedule) < total_micro:
        schedule += length_batches(examples, bs, rng)
    schedule = schedule[:total_micro]

    step = 0
    tokens_seen = 0
    t_start = time.perf_counter()
    t_log = t_start
    tokens_since_log = 0
    last_loss = float("nan")
    for first in range(0, total_micro, accum):
        group = schedule[first:first + accum]
        batches = [collate(examples, idx, tokenizer.pad_token_id, device) for idx in group]
        # Normaliser: total weight of the step's target tokens (same update as one big batch).
        denom = sum(float((b["labels"][:, 1:] != IGNORE).float().mul(
            b["weights"][:, None]).sum()) for b in batches) or 1.0
        step_loss = 0.0
        for b in batches:
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            ce, valid = token_losses(logits, b["labels"])
            per_token = ce
            if teacher is not None:
                with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                                     enabled=cuda):
                    t_logits = teacher(input_ids=b["input_ids"],
                                       attention_mask=b["attention_mask"]).logits
                kd = kd_token_losses(logits, t_logits, valid, temp)
                per_token = (1 - alpha) * ce + alpha * kd
            loss = (per_token * b["weights"][:, None]).sum() / denom
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"non-finite loss at optimizer step {step + 1}: {loss.item()}")
            loss.backward()
            step_loss += float(loss.detach())
            n_tok = int(b["attention_mask"].sum())
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
    return {"steps": step, "examples": len(examples), "tokens": tokens_seen,
            "train_seconds": round(seconds, 3), "final_loss": last_loss,
            "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 1)}
