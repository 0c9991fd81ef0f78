"""Sequence packing for the training loop: several examples per row, none attending to another.

A packed row concatenates whole examples (never splits one) up to a token capacity (the
training ``max_len``). Each example's ``position_ids`` restart at 0, and the model is called
with ``attention_mask=None``: transformers (>= 4.5x, 5.x) then finds the example boundaries
from the position resets (``masking_utils.find_packed_sequence_indices``) and builds a
block-diagonal causal mask for every attention implementation (sdpa, eager, flex; flash-attn
uses the positions for its varlen kernel). :func:`packing_isolates_examples` checks this on the
model at hand, so a transformers version that does not do it is caught instead of silently
letting examples see each other.

The tail of a row shorter than the batch's widest row is padding; it gets positions
``0, 1, ...`` too, so it forms its own segment that no real token attends to, and its labels
are ignored. The first token of every example is never a label (it has no predecessor inside
the example), which keeps the loss identical to the unpacked batch.

Imports torch only (the GPU worker's path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

IGNORE = -100


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Assign items to as few rows as fit, with the rows' fills balanced.

    Starts from ``ceil(total / capacity)`` rows and deals the items longest first, each to the
    emptiest row (longest-processing-time order); if a row would pass ``capacity``, tries again
    with one more row. Balanced rows keep the batch's width (its fullest row) near
    ``total / rows``, so little goes to padding even when the items do not fill ``capacity``.

    Args:
        lengths: token count of each item; each must be <= ``capacity``.
        capacity: tokens per row at most.

    Returns:
        rows: lists of indices into ``lengths``; each row's total is <= ``capacity``, every
        index appears exactly once, and items keep their original order inside a row (so the
        packing of a given batch is deterministic).
    """
    if not lengths:
        return []
    if max(lengths) > capacity:
        raise ValueError(f"an item of {max(lengths)} tokens exceeds the row capacity {capacity}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    n_rows = max(1, -(-sum(lengths) // capacity))
    while True:
        rows: list[list[int]] = [[] for _ in range(n_rows)]
        fill = [0] * n_rows
        for i in order:
            r = min(range(n_rows), key=lambda k: (fill[k], k))
            rows[r].append(i)
            fill[r] += lengths[i]
        if max(fill) <= capacity:
            return [sorted(r) for r in rows if r]
        n_rows += 1


def collate_packed(examples: Sequence[Any], idx: Sequence[int], pad_id: int, capacity: int
                   ) -> dict[str, Any]:
    """Pack the examples ``idx`` into rows of at most ``capacity`` tokens (CPU tensors).

    Args:
        examples: :class:`harness.train.objectives.causal_lm.Example` objects
            (``input_ids``, ``target_start``, ``weight``).
        idx: which examples form this micro-batch.
        pad_id: the tokenizer's pad id.
        capacity: tokens per row (the training ``max_len``).

    Returns:
        ``input_ids`` (rows, width) long, ``position_ids`` (rows, width) long,
        ``labels`` (rows, width) long with IGNORE off-target, ``token_weights`` (rows, width)
        float32 (each token carries its example's weight), ``n_tokens`` (int, real tokens),
        ``placed`` (per example of ``idx``: its row and where it starts there) — width is the
        longest row's fill, at most ``capacity``.
    """
    import torch

    lengths = [len(examples[i].input_ids) for i in idx]
    rows = pack_rows(lengths, capacity)
    width = max(sum(lengths[k] for k in row) for row in rows)
    n_rows = len(rows)
    ids = torch.full((n_rows, width), pad_id, dtype=torch.long)
    labels = torch.full((n_rows, width), IGNORE, dtype=torch.long)
    weights = torch.zeros((n_rows, width), dtype=torch.float32)
    pos = torch.empty((n_rows, width), dtype=torch.long)
    placed: list[tuple[int, int]] = [(0, 0)] * len(idx)
    for r, row in enumerate(rows):
        at = 0
        for k in row:
            placed[k] = (r, at)
            ex = examples[idx[k]]
            n = len(ex.input_ids)
            seq = torch.tensor(ex.input_ids, dtype=torch.long)
            ids[r, at:at + n] = seq
            pos[r, at:at + n] = torch.arange(n)
            # Labels from the target start on; never on an example's first token, whose
            # "previous position" is the end of the example before it in the row.
            start = max(ex.target_start, 1)
            labels[r, at + start:at + n] = seq[start:]
            weights[r, at:at + n] = ex.weight
            at += n
        pos[r, at:] = torch.arange(width - at)  # padding: a segment of its own
    return {"input_ids": ids, "position_ids": pos, "labels": labels, "token_weights": weights,
            "n_tokens": int(sum(lengths)), "placed": placed}


def packing_isolates_examples(model: Any, device: Any) -> bool:
    """Whether ``model`` keeps packed examples apart when given restarting ``position_ids``.

    Runs two short random sequences separately and packed in one row (no grad, eval-mode
    dropout off) and compares the logits of the second: equal (to 1e-3 relative to their
    scale) means the block-diagonal mask was built. Costs two forwards of 16 tokens.
    """
    import torch

    vocab = int(model.get_input_embeddings().weight.shape[0])
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, vocab, (1, 9), generator=gen).to(device)
    b = torch.randint(0, vocab, (1, 7), generator=gen).to(device)
    pos = torch.cat([torch.arange(9), torch.arange(7)])[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=b, use_cache=False).logits.float()
            packed = model(input_ids=torch.cat([a, b], 1), position_ids=pos,
                           use_cache=False).logits[:, 9:].float()
    finally:
        model.train(was_training)
    scale = float(alone.abs().max()) or 1.0
    return float((packed - alone).abs().max()) <= 1e-3 * scale + 1e-4
