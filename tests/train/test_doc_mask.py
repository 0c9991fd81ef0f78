"""Document masks: block tables equal torch's own block mask; the dense mask, the flex mask and
the plain padded batch give the same forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.train.budget import fixed_batch, plan
from harness.train.doc_mask import (
    BLOCK,
    DocumentMask,
    attention_implementation,
    block_tables,
    dense_mask,
    isolates_documents,
)
from harness.train.objectives.causal_lm import Example, fast_micro_loss, micro_batch, micro_loss
from tests.helpers.tiny_lm import tiny_llama

CPU = torch.device("cpu")



def random_docs(rows: int, width: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    doc = np.zeros((rows, width), dtype=np.int64)
    for r in range(rows):
        cuts = np.sort(rng.choice(np.arange(1, width), size=int(rng.integers(0, 8)),
                                  replace=False))
        doc[r] = np.searchsorted(cuts, np.arange(width), side="right")
    return torch.from_numpy(doc)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_tables_give_the_document_causal_mask(seed):
    from torch.nn.attention.flex_attention import create_block_mask

    doc = random_docs(3, 4 * BLOCK, seed)
    doc[2] = 0  # one document across the whole row: full blocks below the diagonal
    ours = DocumentMask(3, 4 * BLOCK, CPU, "flex")(doc)
    ref = create_block_mask(lambda b, h, q, k: (doc[b, q] == doc[b, k]) & (q >= k), 3, None,
                            4 * BLOCK, 4 * BLOCK, device="cpu")
    assert torch.equal(ours.to_dense(), ref.to_dense())
    tables = block_tables(doc.numpy())
    assert tables["full_kv_num_blocks"][2, 0].tolist() == [0, 1, 2, 3]  # j < i, one document
    visible = (dense_mask(doc, torch.float32) == 0)[:, 0]
    q = torch.arange(4 * BLOCK)
    brute = (doc[:, :, None] == doc[:, None, :]) & (q[:, None] >= q[None, :])
    assert torch.equal(visible, brute)


def test_attention_implementation_is_switched_for_the_block_only():
    model = tiny_llama()
    assert model.config._attn_implementation == "sdpa"
    with attention_implementation(model, "eager") as now:
        assert now == "eager" == model.config._attn_implementation
    assert model.config._attn_implementation == "sdpa"
    with attention_implementation(model, None) as now:
        assert now == "sdpa"


def test_dense_mask_isolates_documents():
    model = tiny_llama()
    assert isolates_documents(model, DocumentMask(1, 2 * BLOCK, CPU, "dense", torch.float32), CPU)


@pytest.mark.slow
def test_flex_block_mask_forward_equals_dense_and_padded():
    """FlexAttention has no CPU backward (torch 2.13): the CPU checks its forward; the loss
    equality with gradients runs on the dense mask (test_fast_path)."""
    rng = np.random.default_rng(5)
    ex = []
    for _ in range(9):
        n = int(rng.integers(5, 60))
        ex.append(Example(input_ids=[int(x) for x in rng.integers(1, 97, size=n)],
                          target_start=int(rng.integers(1, n)), weight=1.0))
    lengths = [len(e.input_ids) for e in ex]
    targets = [n - e.target_start for n, e in zip(lengths, ex, strict=True)]
    layout = plan(lengths, targets, [list(range(9))], 2 * BLOCK)
    model = tiny_llama().eval()
    with torch.no_grad():
        plain = micro_loss(model, micro_batch(ex, list(range(9)), 0, 64, False),
                           head_weight=None, device=CPU)
        losses = {}
        for kind, impl in (("dense", None), ("flex", "flex_attention")):
            masks = DocumentMask(layout.rows, layout.width, CPU, kind, torch.float32)
            with attention_implementation(model, impl):
                assert isolates_documents(model, masks, CPU)
                losses[kind] = sum(
                    fast_micro_loss(model, fixed_batch(ex, mb, 0, layout), masks,
                                    head_weight=None, device=CPU) for mb in layout.steps[0])
    assert float(losses["dense"]) == pytest.approx(float(plain), rel=1e-5)
    assert float(losses["flex"]) == pytest.approx(float(plain), rel=1e-5)
