"""Document masking for the fast training path: several examples in one row, none attending to
another, without a dense (tokens x tokens) mask on the GPU.

A fast micro-batch (:mod:`harness.train.budget`) is rows of fixed width whose tokens carry a
*document id*: each example has its own id, increasing along the row, and the padding at the end
of a row has one id of its own. A query may see a key iff both carry the same id and the key is
not later (causal). Two ways to hand that to the model:

- ``flex_attention`` (CUDA): a FlexAttention ``BlockMask`` passed as ``attention_mask`` to a
  model switched to transformers' ``attn_implementation="flex_attention"`` (transformers returns
  a 4-D ``BlockMask`` as-is from its mask builders). The block tables are computed here on the
  CPU from the ids' block ranges (:func:`block_tables`, O(blocks^2), no per-token mask), and the
  element-wise ``mask_mod`` reads the ids from one persistent device buffer, so the mask function
  is the same object for the whole run and a compiled graph is never re-traced for it.
- ``dense`` (CPU): the same mask as a 4-D additive float mask for the model's own attention
  (sdpa / eager). torch's FlexAttention has no CPU backward (torch 2.13), so CPU training uses
  this; it is also the reference the flex path is tested against (forward, CPU).

:func:`isolates_documents` checks on the model at hand that the chosen mask really keeps two
packed examples apart (else the fast path is turned off with the reason).

Imports numpy at module level, torch inside functions (the GPU worker's path).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: FlexAttention's sparse block size (torch's default); rows are padded to a multiple of it.
BLOCK = 128


def block_tables(doc: np.ndarray, block: int = BLOCK) -> dict[str, np.ndarray]:
    """The FlexAttention block tables of a document-causal mask.

    Args:
        doc: (rows, width) int document ids, non-decreasing along each row; ``width`` a
            multiple of ``block``.
        block: block size in tokens (queries and keys alike).

    Returns:
        ``kv_num_blocks`` (rows, 1, nb) int32 and ``kv_indices`` (rows, 1, nb, nb) int32: the
        *partial* key blocks of each query block (those needing the element-wise mask: the
        diagonal and blocks crossing a document boundary), in ascending order first;
        ``full_kv_num_blocks`` / ``full_kv_indices``: the *full* key blocks (strictly earlier,
        every query and key in one and the same document: no mask needed). ``nb`` = width /
        block. A block neither full nor partial is skipped entirely.
    """
    rows, width = doc.shape
    if width % block:
        raise ValueError(f"row width {width} is not a multiple of the block size {block}")
    nb = width // block
    blocks = doc.reshape(rows, nb, block)
    lo, hi = blocks.min(-1), blocks.max(-1)                     # (rows, nb): ids in each block
    q_lo, q_hi = lo[:, :, None], hi[:, :, None]                 # query block i on axis 1
    k_lo, k_hi = lo[:, None, :], hi[:, None, :]                 # key block j on axis 2
    causal = np.tril(np.ones((nb, nb), dtype=bool))[None]       # j <= i
    strictly = np.tril(np.ones((nb, nb), dtype=bool), -1)[None]  # j < i
    # Ids are contiguous ranges along the row, so blocks share a document iff ranges overlap.
    touches = causal & (q_lo <= k_hi) & (k_lo <= q_hi)
    full = strictly & (q_lo == q_hi) & (k_lo == k_hi) & (q_lo == k_lo)
    partial = touches & ~full

    def ordered(sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Selected block indices first, ascending (a stable sort of "not selected").
        idx = np.argsort(~sel, axis=-1, kind="stable").astype(np.int32)
        return sel.sum(-1).astype(np.int32)[:, None], idx[:, None]

    kv_num, kv_idx = ordered(partial)
    full_num, full_idx = ordered(full)
    return {"kv_num_blocks": kv_num, "kv_indices": kv_idx, "full_kv_num_blocks": full_num,
            "full_kv_indices": full_idx}


def dense_mask(doc: Any, dtype: Any) -> Any:
    """The document-causal mask as a 4-D additive mask (0 where visible, the dtype's minimum
    elsewhere), (rows, 1, width, width): what sdpa and eager attention add to their scores.

    Args:
        doc: (rows, width) long tensor of document ids.
        dtype: the model's floating dtype.
    """
    import torch

    width = doc.shape[1]
    pos = torch.arange(width, device=doc.device)
    visible = (doc[:, :, None] == doc[:, None, :]) & (pos[:, None] >= pos[None, :])[None]
    mask = torch.zeros(visible.shape, dtype=dtype, device=doc.device)
    return mask.masked_fill_(~visible, torch.finfo(dtype).min)[:, None]


class DocumentMask:
    """Builds each micro-batch's attention mask for one run (one fixed row shape).

    Args:
        rows, width: the micro-batch shape (width a multiple of :data:`BLOCK` for ``flex``).
        device: where the model runs.
        kind: ``"flex"`` (a ``BlockMask``) or ``"dense"`` (:func:`dense_mask`).
        dtype: the model's floating dtype (``dense`` only).
    """

    def __init__(self, rows: int, width: int, device: Any, kind: str, dtype: Any = None) -> None:
        import torch

        self.kind, self.device, self.dtype = kind, device, dtype
        self.shape = (rows, width)
        # One buffer and one mask function for the whole run: refilled in place (stream
        # ordered on CUDA), so torch.compile sees the same mask_mod object every micro-batch.
        self.doc = torch.zeros((rows, width), dtype=torch.long, device=device)
        doc = self.doc

        def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
            return (doc[b, q] == doc[b, kv]) & (q >= kv)

        self.mask_mod = mask_mod

    def __call__(self, doc: Any) -> Any:
        """The mask of a micro-batch from its (rows, width) CPU long tensor of document ids."""
        import torch

        if tuple(doc.shape) != self.shape:
            raise ValueError(f"micro-batch shape {tuple(doc.shape)} != the run's {self.shape}")
        if self.kind == "dense":
            return dense_mask(doc.to(self.device), self.dtype)
        from torch.nn.attention.flex_attention import BlockMask

        cuda = self.device.type == "cuda"

        def put(a: Any) -> Any:
            t = torch.as_tensor(a)
            return t.pin_memory().to(self.device, non_blocking=True) if cuda else t.to(self.device)

        self.doc.copy_(put(doc), non_blocking=cuda)
        tables = {k: put(v) for k, v in block_tables(doc.numpy()).items()}
        width = self.shape[1]
        return BlockMask.from_kv_blocks(tables["kv_num_blocks"], tables["kv_indices"],
                                        tables["full_kv_num_blocks"], tables["full_kv_indices"],
                                        BLOCK_SIZE=BLOCK, mask_mod=self.mask_mod,
                                        seq_lengths=(width, width))


@contextmanager
def attention_implementation(model: Any, name: str | None) -> Iterator[str]:
    """Switch ``model`` to attention implementation ``name`` (None: leave it) for the block and
    restore the previous one afterwards (evaluation and saving see the model as built).

    Yields:
        the implementation in effect. Raises ``ValueError`` when the switch does not take.
    """
    before = getattr(model.config, "_attn_implementation", None)
    if name is None or name == before:
        yield str(before)
        return
    model.set_attn_implementation(name)
    try:
        now = getattr(model.config, "_attn_implementation", None)
        if now != name:
            raise ValueError(f"attention implementation {name!r} did not take (still {now!r})")
        yield name
    finally:
        model.set_attn_implementation(before)


def isolates_documents(model: Any, masks: DocumentMask, device: Any) -> bool:
    """Whether ``model`` with ``masks`` keeps packed examples apart (forward only, no grad).

    Packs two random examples (9 and 7 tokens) into the run's row shape (one row; the rest
    padding) and compares the second one's logits with the example run alone: equal to 1e-3 of
    their scale means the mask is honoured. Costs two forwards; dropout off meanwhile.
    """
    import torch

    rows, width = masks.shape
    vocab = int(model.get_input_embeddings().weight.shape[0])
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, vocab, (9,), generator=gen)
    b = torch.randint(0, vocab, (7,), generator=gen)
    ids = torch.zeros((rows, width), dtype=torch.long)
    pos = torch.zeros((rows, width), dtype=torch.long)
    doc = torch.full((rows, width), 2, dtype=torch.long)
    ids[0, :16] = torch.cat([a, b])
    pos[0, :16] = torch.cat([torch.arange(9), torch.arange(7)])
    doc[0, :9], doc[0, 9:16] = 0, 1
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model(input_ids=b[None].to(device), use_cache=False).logits.float()
            packed = model(input_ids=ids.to(device), position_ids=pos.to(device),
                           attention_mask=masks(doc), use_cache=False).logits[:1, 9:16].float()
    finally:
        model.train(was_training)
    scale = float(alone.abs().max()) or 1.0
    return bool(torch.isfinite(packed).all()) and float((packed - alone).abs().max()) <= (
        1e-3 * scale + 1e-4)
