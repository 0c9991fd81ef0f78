"""Shared-prefix label scoring gives the per-pair log-likelihoods (the lm-eval way) to 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.evaluate import predict
from harness.students.build import train_tokenizer
from tests.helpers.scoring import LABELS, WORDS, model_for, prompts

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():
    texts = prompts(200) + [f"Answer: {lab}" for lab in LABELS]
    return train_tokenizer(texts, 300)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prefix_equals_per_pair(tokenizer, attn):
    model = model_for(tokenizer, attn)
    ps = prompts(23, seed=1)
    per_pair = predict.score_labels_per_pair(model, tokenizer, ps, LABELS, "Answer:", CPU,
                                             batch_size=16, max_len=128)
    shared = predict.score_labels_shared(model, tokenizer, ps, LABELS, "Answer:", CPU,
                                         batch_size=5, max_len=128)
    assert any(len(tokenizer(" " + lab)["input_ids"]) > 1 for lab in LABELS)  # multi-token
    np.testing.assert_allclose(shared, per_pair, rtol=1e-4, atol=1e-4)
    assert (shared.argmax(1) == per_pair.argmax(1)).all()


def test_items_longer_than_max_len_fall_back_to_the_per_pair_cut(tokenizer):
    model = model_for(tokenizer, "sdpa", seed=2)
    ps = prompts(6, seed=3) + [" ".join(["refund order late"] * 12)]
    max_len = 24
    ctx_len = len(tokenizer(ps[-1] + "\nAnswer:", add_special_tokens=False)["input_ids"])
    assert ctx_len > max_len  # the last item must be cut, differently per label
    per_pair = predict.score_labels_per_pair(model, tokenizer, ps, LABELS, "Answer:", CPU,
                                             max_len=max_len)
    shared = predict.score_labels_shared(model, tokenizer, ps, LABELS, "Answer:", CPU,
                                         max_len=max_len)
    np.testing.assert_allclose(shared, per_pair, rtol=1e-4, atol=1e-4)


def test_full_logits_path_when_the_head_is_not_plain(tokenizer, monkeypatch):
    model = model_for(tokenizer, "sdpa", seed=4)
    ps = prompts(9, seed=5)
    expected = predict.score_labels_per_pair(model, tokenizer, ps, LABELS, "Answer:", CPU)
    monkeypatch.setattr(predict, "_logits_are_head_of_hidden", lambda *a: False)
    shared = predict.score_labels_shared(model, tokenizer, ps, LABELS, "Answer:", CPU)
    np.testing.assert_allclose(shared, expected, rtol=1e-4, atol=1e-4)


def test_default_picks_the_shared_path_only_where_a_4d_mask_is_honoured(tokenizer, monkeypatch):
    model = model_for(tokenizer, "sdpa")
    calls: list[str] = []
    monkeypatch.setattr(predict, "score_labels_shared", lambda *a, **k: calls.append("shared"))
    monkeypatch.setattr(predict, "score_labels_per_pair", lambda *a, **k: calls.append("pair"))
    predict.score_labels(model, tokenizer, ["x"], LABELS, "Answer:", CPU)
    model.config._attn_implementation = "flash_attention_2"
    predict.score_labels(model, tokenizer, ["x"], LABELS, "Answer:", CPU)
    predict.score_labels(model, tokenizer, ["x"], LABELS, "Answer:", CPU, shared_prefix=False)
    assert calls == ["shared", "pair", "pair"]


def test_single_token_labels_read_at_the_last_context_position(tokenizer):
    model = model_for(tokenizer, "sdpa", seed=6)
    single = [w for w in WORDS if len(tokenizer(" " + w, add_special_tokens=False)
                                      ["input_ids"]) == 1][:4]
    assert len(single) >= 2, "the test tokenizer should have single-token words"
    ps = prompts(17, seed=7)
    per_pair = predict.score_labels_per_pair(model, tokenizer, ps, single, "Answer:", CPU)
    calls: list[int] = []
    original = predict._score_single_tokens
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predict, "_score_single_tokens",
                   lambda *a, **k: calls.append(1) or original(*a, **k))
        shared = predict.score_labels_shared(model, tokenizer, ps, single, "Answer:", CPU,
                                             batch_size=5)
    assert calls  # the single-token path ran
    np.testing.assert_allclose(shared, per_pair, rtol=1e-4, atol=1e-4)
