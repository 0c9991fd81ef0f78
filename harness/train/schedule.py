"""What the loop does when: the micro-batch order, and the optimizer with its learning rates.

- Micro-batches: examples sorted by length into batches of ``batch_size`` (so padding is
  minimal), the batch order reshuffled every epoch by the seeded numpy generator (one
  ``permutation`` draw per epoch), for ``epochs`` epochs or at least ``min_steps`` optimizer
  steps, a fractional last epoch cut short.
- Optimizer: AdamW (fused on CUDA) over the objective's parameter groups; linear warm-up for
  ``warmup_ratio`` of the steps, then cosine decay to zero.

Imports numpy at module level, torch and transformers inside functions (the GPU worker's path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def epoch_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator
                  ) -> list[list[int]]:
    """One epoch: indices grouped into batches of similar length, in a shuffled batch order.

    Args:
        lengths: tokens per example.
        batch_size: examples per batch (the last batch of the length order may be smaller).
        rng: the run's generator; one ``permutation`` draw.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def micro_schedule(lengths: Sequence[int], cfg: dict[str, Any], rng: np.random.Generator
                   ) -> list[list[int]]:
    """Every micro-batch of the run, in order (lists of example indices).

    Args:
        lengths: tokens per example.
        cfg: ``student.train`` (``batch_size``, ``grad_accum``, ``epochs``, ``min_steps``).
        rng: the run's seeded generator.
    """
    bs, accum = int(cfg["batch_size"]), int(cfg["grad_accum"])
    batches_per_epoch = math.ceil(len(lengths) / bs)
    total_micro = max(1, math.ceil(batches_per_epoch * float(cfg["epochs"])),
                      int(cfg.get("min_steps", 0)) * accum)
    schedule: list[list[int]] = []
    while len(schedule) < total_micro:
        schedule += epoch_batches(lengths, bs, rng)
    return schedule[:total_micro]


def build_optimizer(param_groups: list[dict[str, Any]], cfg: dict[str, Any],
                    betas: tuple[float, float], total_steps: int, device: Any
                    ) -> tuple[Any, Any]:
    """AdamW (fused on CUDA) and its warm-up + cosine learning-rate schedule.

    Args:
        param_groups: the objective's groups; a group without ``lr`` uses ``cfg["lr"]``.
        cfg: ``student.train`` (``lr``, ``warmup_ratio``).
        total_steps: optimizer steps of the run.

    Returns:
        ``(optimizer, scheduler)``; call ``scheduler.step()`` after each ``optimizer.step()``.
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.AdamW(param_groups, lr=float(cfg["lr"]), betas=betas,
                            fused=device.type == "cuda")
    sched = get_cosine_schedule_with_warmup(opt, int(cfg["warmup_ratio"] * total_steps),
                                            total_steps)
    return opt, sched
