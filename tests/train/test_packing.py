"""Packing computes what padding computes: same loss, same gradients, same normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaForCausalLM

from harness.train import packing as packing_mod
from harness.train.loop import train_examples
from harness.train.objectives.causal_lm import Example, micro_batch, micro_loss
from harness.train.packing import pack_rows
from tests.helpers.tiny_lm import random_examples, tiny_llama

CPU = torch.device("cpu")




def loss_and_grads(model: LlamaForCausalLM, examples: list[Example], idx: list[int],
                   packing: bool, max_len: int = 40) -> tuple[float, list[torch.Tensor], dict]:
    model.zero_grad(set_to_none=True)
    b = micro_batch(examples, idx, 0, max_len, packing)
    loss = micro_loss(model, b, head_weight=None, device=CPU) / b["weight_sum"]
    loss.backward()
    return float(loss.detach()), [p.grad.detach().clone() for p in model.parameters()], b


def test_pack_rows_places_every_item_once_within_capacity_and_balanced():
    rng = np.random.default_rng(1)
    for _ in range(200):
        lengths = [int(x) for x in rng.integers(1, 30, size=int(rng.integers(1, 40)))]
        rows = pack_rows(lengths, 30)
        assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
        fills = [sum(lengths[i] for i in r) for r in rows]
        assert max(fills) <= 30
        assert len(rows) <= 2 * sum(lengths) / 30 + 1  # never worse than next-fit
        # balanced: the fullest row exceeds the mean by less than one item
        assert max(fills) - sum(fills) / len(fills) < max(lengths) + 1e-9
    assert pack_rows([10, 10, 10, 10], 40) == [[0, 1, 2, 3]]
    assert sorted(pack_rows([20, 20, 20, 20], 40)) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError):
        pack_rows([31], 30)


def test_a_batch_packing_would_not_shrink_stays_padded():
    ex = [Example(input_ids=list(range(1, 31)), target_start=5, weight=1.0) for _ in range(4)]
    b = micro_batch(ex, [0, 1, 2, 3], 0, 40, packing=True)
    assert "attention_mask" in b and "position_ids" not in b
    assert b["padded_tokens"] == 120


def test_packed_rows_restart_positions_and_never_label_a_first_token():
    ex = random_examples(12)
    b = micro_batch(ex, list(range(12)), 0, 40, packing=True)
    assert "position_ids" in b  # random lengths: packing saves positions
    assert b["input_ids"].shape[1] <= 40 and b["input_ids"].shape[0] < 12
    assert b["n_tokens"] == sum(len(e.input_ids) for e in ex)
    starts = (b["position_ids"] == 0).sum()
    assert starts >= 12  # one per example, plus one per padded tail
    first_tokens = b["position_ids"] == 0
    assert (b["labels"][first_tokens] == -100).all()
    n_labels = int((b["labels"] != -100).sum())
    assert n_labels == sum(len(e.input_ids) - e.target_start for e in ex)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_and_gradients_equal_unpacked(attn):
    model = tiny_llama(attn=attn)
    ex = random_examples(10, seed=2)
    idx = list(range(10))
    loss_p, grads_p, bp = loss_and_grads(model, ex, idx, packing=True)
    loss_u, grads_u, bu = loss_and_grads(model, ex, idx, packing=False)
    assert "position_ids" in bp and "position_ids" not in bu
    assert bp["padded_tokens"] < bu["padded_tokens"]  # packing removed padding
    assert bp["weight_sum"] == pytest.approx(bu["weight_sum"], rel=1e-7)  # same normaliser
    assert loss_p == pytest.approx(loss_u, rel=1e-5, abs=1e-6)
    for gp, gu in zip(grads_p, grads_u, strict=True):
        torch.testing.assert_close(gp, gu, rtol=1e-4, atol=1e-6)


def test_weighted_normalisation_is_the_weighted_mean_over_target_tokens():
    model = tiny_llama()
    ex = random_examples(6, seed=3)
    loss, _, b = loss_and_grads(model, ex, list(range(6)), packing=True)
    # By hand: each example alone, unweighted sum of CE over its targets, then the weighted mean.
    num = den = 0.0
    with torch.no_grad():
        for e in ex:
            ids = torch.tensor([e.input_ids])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            tgt = torch.arange(e.target_start, len(e.input_ids))
            ce = -logp[tgt - 1, ids[0, tgt]].sum()
            num += e.weight * float(ce)
            den += e.weight * len(tgt)
    assert b["weight_sum"] == pytest.approx(den)
    assert loss == pytest.approx(num / den, rel=1e-5)


def test_training_with_packing_matches_padding_step_by_step():
    ex = random_examples(24, seed=4)
    cfg = {"epochs": 1, "batch_size": 6, "grad_accum": 2, "lr": 3e-3, "weight_decay": 0.01,
           "warmup_ratio": 0.1, "clip": 1.0, "max_len": 40, "log_every": 1}
    rng = np.random.default_rng(0)
    order = [int(i) for i in rng.permutation(24)]
    schedule = [order[i:i + 6] for i in range(0, 24, 6)]
    runs = {}
    for packing in (False, True):
        model, logs = tiny_llama(seed=5), []
        summary = train_examples(model, ex, {**cfg, "packing": packing}, pad_id=0, seed=0,
                                 device=CPU, schedule=schedule, log=logs.append)
        runs[packing] = (model, logs, summary)
    (mu, lu, su), (mp, lp, sp) = runs[False], runs[True]
    assert sp["packing"] is True and su["packing"] is False
    assert sp["packed_micro_batches"] > 0 and su["packed_micro_batches"] == 0
    assert su["tokens"] == sp["tokens"] and sp["padded_tokens"] < su["padded_tokens"]
    assert [r["loss"] for r in lp] == pytest.approx([r["loss"] for r in lu], rel=1e-4)
    for a, b in zip(mp.parameters(), mu.parameters(), strict=True):
        # Adam turns float noise in near-zero gradients into steps of up to lr * noise/eps;
        # a wrong loss would move weights by ~lr (3e-3), 30x the tolerance.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_packing_turns_itself_off_when_transformers_would_mix_examples(monkeypatch):
    import transformers.masking_utils as mu

    model = tiny_llama()
    assert packing_mod.packing_isolates_examples(model, CPU)
    monkeypatch.setattr(mu, "find_packed_sequence_indices", lambda position_ids: None)
    assert not packing_mod.packing_isolates_examples(model, CPU)
    ex = random_examples(8)
    cfg = {"epochs": 1, "batch_size": 4, "grad_accum": 1, "lr": 1e-3, "weight_decay": 0.0,
           "warmup_ratio": 0.0, "clip": 1.0, "max_len": 40, "packing": True}
    summary = train_examples(model, ex, cfg, pad_id=0, seed=0, device=CPU)
    assert str(summary["packing"]).startswith("off:")
