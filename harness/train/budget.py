"""Token-budget micro-batches of one fixed shape, for the fast training path.

The plain loop trains on the micro-batch schedule of :mod:`harness.train.schedule`: an optimizer
step is ``grad_accum`` micro-batches of ``batch_size`` examples. The fast path keeps exactly
those examples per optimizer step (the speed never comes from training differently) and only
re-cuts each step into micro-batches of one fixed shape, ``rows x width`` tokens (the *token
budget*): the step's examples are packed whole (never split) into rows by first-fit decreasing,
rows are grouped ``rows`` at a time, and every micro-batch, the last of a step too, is padded to
the full shape. One shape for the whole run means one compiled graph serves it, and the loop
accumulates gradients over however many micro-batches a step needs, normalised by the step's
total target weight as before.

Inside a micro-batch each example keeps its own positions (restarting at 0) and its own
document id (:mod:`harness.train.doc_mask` turns the ids into the attention mask); the padding
at the end of a row is one more document that nothing real attends to. The loss positions are
given as a fixed number (``target_cap``, the run's largest count rounded up) of flat indices,
so the LM head and cross-entropy run on target positions only, in a fixed shape too.

Imports numpy at module level, torch inside functions (the GPU worker's path).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.train.doc_mask import BLOCK
from harness.train.packing import IGNORE

#: What one more micro-batch costs besides its tokens (kernel launches, optimizer-free host
#: work), in tokens' worth of compute: the budget chooser's trade-off against padding.
MICRO_OVERHEAD_TOKENS = 1024
#: Target positions are rounded up to a multiple of this (one shape for the run).
TARGET_QUANTUM = 64


def round_up(n: int, quantum: int) -> int:
    """``n`` rounded up to a multiple of ``quantum`` (at least one quantum)."""
    return max(quantum, -(-n // quantum) * quantum)


def choose_budget(step_tokens: Sequence[int], longest: int, *,
                  overhead: int = MICRO_OVERHEAD_TOKENS) -> int:
    """The default token budget: the multiple of :data:`BLOCK` that minimises the run's
    estimated cost, ``sum over steps of ceil(tokens / budget) * (budget + overhead)``.

    Candidates run from the longest example (every example must fit one row) to the largest
    step (one micro-batch per step); a larger budget pads more, a smaller one launches more
    micro-batches. Ties go to the larger budget (fewer launches).

    Args:
        step_tokens: real tokens of each optimizer step.
        longest: tokens of the longest example.
        overhead: :data:`MICRO_OVERHEAD_TOKENS`.
    """
    lo = round_up(longest, BLOCK)
    hi = max(lo, round_up(max(step_tokens, default=lo), BLOCK))
    best, best_cost = hi, math.inf
    for budget in range(hi, lo - 1, -BLOCK):
        cost = sum(-(-t // budget) * (budget + overhead) for t in step_tokens)
        if cost < best_cost:
            best, best_cost = budget, cost
    return best


def pack_step(lengths: Sequence[int], idx: Sequence[int], rows: int, width: int
              ) -> list[list[list[int]]]:
    """One optimizer step's examples as micro-batches of ``rows`` rows of ``width`` tokens.

    First-fit decreasing into rows (ties by index, so the result is deterministic), rows in
    order of creation, ``rows`` per micro-batch; inside a row examples keep ascending index.

    Returns:
        micro-batches, each a list of rows, each a list of example indices.
    """
    order = sorted(idx, key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    fill: list[int] = []
    for i in order:
        n = lengths[i]
        if n > width:
            raise ValueError(f"an example of {n} tokens exceeds the row width {width}")
        for b, f in enumerate(fill):
            if f + n <= width:
                bins[b].append(i)
                fill[b] += n
                break
        else:
            bins.append([i])
            fill.append(n)
    packed = [sorted(b) for b in bins]
    return [packed[k:k + rows] for k in range(0, len(packed), rows)]


@dataclass(frozen=True)
class Layout:
    """The fast path's plan for a run.

    Attributes:
        rows, width: every micro-batch's shape (``width`` a multiple of :data:`BLOCK`).
        target_cap: target positions per micro-batch (fixed; unused slots have weight 0).
        steps: per optimizer step, its micro-batches (lists of rows of example indices).
    """

    rows: int
    width: int
    target_cap: int
    steps: list[list[list[list[int]]]]

    @property
    def budget(self) -> int:
        """Tokens per micro-batch, padding included."""
        return self.rows * self.width

    @property
    def micro_batches(self) -> int:
        """Micro-batches in the run."""
        return sum(len(s) for s in self.steps)


def plan(lengths: Sequence[int], targets: Sequence[int], steps: Sequence[Sequence[int]],
         budget: int, *, max_width: int | None = None) -> Layout:
    """Cut every optimizer step's examples into fixed-shape micro-batches of ``budget`` tokens.

    Args:
        lengths: tokens of each example.
        targets: loss positions of each example (target tokens, never the first token).
        steps: the examples of each optimizer step (the plain schedule's, flattened per step).
        budget: tokens per micro-batch; rounded up to a multiple of :data:`BLOCK` and to the
            longest example.
        max_width: cap on the row width (the dense CPU mask is width^2 per row): longer
            budgets become several rows of ``round_up(longest)`` .. ``max_width`` tokens.
    """
    longest = max(lengths[i] for s in steps for i in s)
    budget = max(round_up(budget, BLOCK), round_up(longest, BLOCK))
    rows, width = 1, budget
    if max_width is not None and budget > max_width:
        width = max(round_up(longest, BLOCK), max_width - max_width % BLOCK)
        rows = max(1, budget // width)
    cut = [pack_step(lengths, list(s), rows, width) for s in steps]
    most = max(sum(targets[i] for row in mb for i in row) for s in cut for mb in s)
    return Layout(rows=rows, width=width, target_cap=min(round_up(most, TARGET_QUANTUM),
                                                          rows * width), steps=cut)


def fixed_batch(examples: Sequence[Any], micro: Sequence[Sequence[int]], pad_id: int,
                layout: Layout) -> dict[str, Any]:
    """One fixed-shape micro-batch on the CPU.

    Args:
        examples: :class:`~harness.train.objectives.causal_lm.Example` objects
            (``input_ids``, ``target_start``, ``weight``).
        micro: its rows of example indices (:attr:`Layout.steps`' entries).
        pad_id: the tokenizer's pad id.

    Returns:
        ``input_ids``, ``position_ids``, ``doc`` (document ids), ``labels`` (IGNORE
        off-target) (rows, width) long; ``token_weights`` (rows, width) float32; ``sel``
        (target_cap,) long: flat indices of the positions predicting a target (0 in unused
        slots); ``targets`` (target_cap,) long; ``target_weights`` (target_cap,) float32 (0 in
        unused slots); ``n_tokens`` (int, real tokens); ``weight_sum`` (float, the micro-batch's
        share of the step's loss normaliser); ``padded_tokens`` (int, rows x width).
    """
    import torch

    rows, width, cap = layout.rows, layout.width, layout.target_cap
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    pos = torch.zeros((rows, width), dtype=torch.long)
    doc = torch.zeros((rows, width), dtype=torch.long)
    labels = torch.full((rows, width), IGNORE, dtype=torch.long)
    weights = torch.zeros((rows, width), dtype=torch.float32)
    sel: list[int] = []
    tgt: list[int] = []
    tw: list[float] = []
    n_tokens = 0
    for r, row in enumerate(micro):
        at = 0
        for d, i in enumerate(row):
            ex = examples[i]
            n = len(ex.input_ids)
            seq = torch.tensor(ex.input_ids, dtype=torch.long)
            ids[r, at:at + n] = seq
            pos[r, at:at + n] = torch.arange(n)
            doc[r, at:at + n] = d
            # Never a label on an example's first token (its predecessor is another example).
            start = max(ex.target_start, 1)
            labels[r, at + start:at + n] = seq[start:]
            weights[r, at:at + n] = ex.weight
            flat = r * width + at
            sel.extend(range(flat + start - 1, flat + n - 1))
            tgt.extend(ex.input_ids[start:])
            tw.extend([ex.weight] * (n - start))
            at += n
        doc[r, at:] = len(row)  # the padding: one document of its own, last in the row
        n_tokens += at
    for r in range(len(micro), rows):  # rows left empty by the step's last micro-batch
        doc[r] = 0
    spare = cap - len(sel)
    if spare < 0:
        raise ValueError(f"{len(sel)} target positions exceed the planned {cap}")
    target_weights = torch.tensor(tw + [0.0] * spare, dtype=torch.float32)
    valid = labels[:, 1:] != IGNORE
    return {"input_ids": ids, "position_ids": pos, "doc": doc, "labels": labels,
            "token_weights": weights,
            "sel": torch.tensor(sel + [0] * spare, dtype=torch.long),
            "targets": torch.tensor(tgt + [0] * spare, dtype=torch.long),
            "target_weights": target_weights, "n_tokens": n_tokens,
            "weight_sum": float(valid.float().mul(weights[:, 1:]).sum()),
            "padded_tokens": rows * width}
