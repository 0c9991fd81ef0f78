"""The chunked (fused linear) cross-entropy and torch.compile compute what the plain path does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.train.linear_ce import linear_cross_entropy, plain_linear_head
from harness.train.loop import train_examples
from harness.train.objectives.causal_lm import micro_batch, micro_loss
from tests.helpers.tiny_lm import random_examples, tiny_llama

CPU = torch.device("cpu")




@pytest.mark.parametrize("chunk", [3, 1000])
def test_linear_cross_entropy_matches_logits_then_cross_entropy(chunk):
    torch.manual_seed(0)
    h = torch.randn(11, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (11,))
    tw = torch.rand(11, dtype=torch.float64)
    ref = (F.cross_entropy(h @ w.T, y, reduction="none") * tw).sum()
    gh_ref, gw_ref = torch.autograd.grad(ref * 0.7, (h, w))
    mine = linear_cross_entropy(h, w, y, tw, chunk=chunk)
    gh, gw = torch.autograd.grad(mine * 0.7, (h, w))
    torch.testing.assert_close(mine.double(), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gh, gh_ref, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-6, atol=1e-8)


def test_plain_linear_head_detects_a_scaled_head():
    model = tiny_llama()
    assert plain_linear_head(model, CPU) is model.lm_head.weight
    model.lm_head.register_forward_hook(lambda m, i, o: o * 2.0)  # a logit scale
    assert plain_linear_head(model, CPU) is None


@pytest.mark.parametrize("packing", [False, True])
def test_chunked_loss_and_gradients_equal_the_plain_path(packing):
    model = tiny_llama(seed=3)
    ex = random_examples(9, seed=6)
    b = micro_batch(ex, list(range(9)), 0, 40, packing)
    out = {}
    for name, head in (("plain", None), ("chunked", model.lm_head.weight)):
        model.zero_grad(set_to_none=True)
        fwd = model if head is None else model.model
        loss = micro_loss(fwd, b, head_weight=head, device=CPU) / b["weight_sum"]
        loss.backward()
        out[name] = (float(loss.detach()), [p.grad.clone() for p in model.parameters()])
    assert out["chunked"][0] == pytest.approx(out["plain"][0], rel=1e-5)
    for a, c in zip(out["plain"][1], out["chunked"][1], strict=True):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-6)


CFG = {"epochs": 1, "batch_size": 6, "grad_accum": 1, "lr": 3e-3, "weight_decay": 0.0,
       "warmup_ratio": 0.1, "clip": 1.0, "max_len": 40, "log_every": 1}


def run(switches: dict, seed: int = 7) -> tuple[torch.nn.Module, list[dict], dict]:
    ex = random_examples(18, seed=8)
    order = [int(i) for i in np.random.default_rng(0).permutation(18)]
    schedule = [order[i:i + 6] for i in range(0, 18, 6)]
    model, logs = tiny_llama(seed=seed), []
    summary = train_examples(model, ex, {**CFG, **switches}, pad_id=0, seed=0, device=CPU,
                             schedule=schedule, log=logs.append)
    return model, logs, summary


def test_training_with_chunked_ce_matches_plain_training():
    m0, l0, _ = run({})
    m1, l1, s1 = run({"chunked_ce": True, "packing": True})
    assert s1["chunked_ce"] is True and s1["packing"] is True
    assert [r["loss"] for r in l1] == pytest.approx([r["loss"] for r in l0], rel=1e-4)
    for a, b in zip(m1.parameters(), m0.parameters(), strict=True):
        # Adam turns float noise in near-zero gradients into steps of up to lr * noise/eps;
        # a wrong loss would move weights by ~lr (3e-3), 30x the tolerance.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compiled_forward_matches_eager_training():
    # aot_eager traces forward and backward through AOTAutograd as inductor does, without a
    # C++ toolchain run per shape, so the test stays at seconds on a CPU.
    m0, l0, _ = run({"packing": True})
    m1, l1, s1 = run({"packing": True, "chunked_ce": True, "compile": True,
                      "compile_backend": "aot_eager"})
    assert s1["compile"] == "aot_eager"
    assert [r["loss"] for r in l1] == pytest.approx([r["loss"] for r in l0], rel=1e-4)
    for a, b in zip(m1.parameters(), m0.parameters(), strict=True):
        # Adam turns float noise in near-zero gradients into steps of up to lr * noise/eps;
        # a wrong loss would move weights by ~lr (3e-3), 30x the tolerance.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not hasattr(m1, "_orig_mod")  # the model itself stays a plain module
