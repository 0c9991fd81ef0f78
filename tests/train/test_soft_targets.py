"""Soft targets in training: placing the teacher's top-k on the student's tokens, the mixed
loss (exact against a hand computation, packed = padded), and what it teaches (a student
trained on a 0.7 / 0.3 teacher learns 0.7 / 0.3, where hard labels teach certainty)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.students.tokenizer import train_tokenizer
from harness.train.objectives.causal_lm import encode_examples, micro_batch, micro_loss
from harness.train.soft_targets import Speller, place_soft_labels, token_spans
from tests.helpers.training import train_causal_lm as train

CPU = torch.device("cpu")
LABELS = ("billing", "shipping", "technical")
P_TEACHER = {"billing": 0.7, "shipping": 0.3}


@pytest.fixture(scope="module")
def tok() -> Any:
    """A byte-level BPE trained on answer lines, so `` billing`` and `` shipping`` are one token
    each (checked)."""
    texts = [f"ticket {i}: where is it\nAnswer: {LABELS[i % 3]}" for i in range(60)]
    t = train_tokenizer(texts, 300)
    for label in LABELS:
        assert len(t(" " + label, add_special_tokens=False)["input_ids"]) == 1, label
    return t


def _aligned(target: str, label: str, top: dict[str, float], pre: str = "") -> str:
    """Compose's aligned form for a target whose value is ``label``: one teacher token holding
    the whole value (spilled prefix ``pre``), with ``top`` (text -> probability)."""
    start = target.index(label)
    return json.dumps({"tokenizer": "t", "value_start": start, "tokens": [
        {"start": start, "end": start + len(label), "pre": pre, "id": None, "text": pre + label,
         "logprob": math.log(top[label]),
         "top": [[pre + t, math.log(p), None] for t, p in top.items()]}]})


def test_token_spans_follow_the_decoded_text(tok):
    target = "Answer: billing\nReason: twice"
    ids = tok(target, add_special_tokens=False)["input_ids"]
    spans = token_spans(tok, ids, target, until=15)
    assert spans[0][0] == 0 and spans[-1][1] >= 15
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert "".join(target[a:b] for a, b in spans) == target[:spans[-1][1]]


@pytest.mark.parametrize("pre", ["", '"'])
def test_the_first_value_token_is_respelled_with_the_targets_space(tok, pre):
    """The teacher wrote ``"billing`` (or ``billing``) in its JSON; the student's target has
    `` billing``: alternatives get the space for the quote and become student ids."""
    target = "Answer: billing"
    ids = tok(target, add_special_tokens=False)["input_ids"]
    soft = place_soft_labels(_aligned(target, "billing", P_TEACHER, pre), target, ids, 5,
                             Speller(tok))
    assert len(soft) == 1
    (s,) = soft
    billing = tok(" billing", add_special_tokens=False)["input_ids"][0]
    shipping = tok(" shipping", add_special_tokens=False)["input_ids"][0]
    assert s.index == 5 + ids.index(billing)
    assert dict(zip(s.ids, s.probs, strict=True)) == pytest.approx({billing: 0.7,
                                                                    shipping: 0.3})


def test_a_token_the_student_does_not_write_there_trains_hard(tok):
    """The teacher's token is not the student's (a corrected target, a different split): no
    soft label at that place, whatever the alternatives."""
    target = "Answer: shipping"
    ids = tok(target, add_special_tokens=False)["input_ids"]
    wrong = json.loads(_aligned(target, "shipping", {"shipping": 0.5, "billing": 0.5}))
    wrong["tokens"][0]["text"] = "billing"  # the chosen token spells another answer
    wrong["tokens"][0]["top"] = [["billing", math.log(0.9), None]]
    assert place_soft_labels(json.dumps(wrong), target, ids, 0, Speller(tok)) == []


def _model(vocab: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64, pad_token_id=0, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg)


def _samples(top: dict[str, float], n: int = 8) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        label = "billing" if i % 2 == 0 else "shipping"
        target = f"Answer: {label}"
        probs = top if label == "billing" else {"shipping": 0.6, "billing": 0.4}
        out.append({"prompt": f"ticket {i}: " + "where is it " * (1 + i % 4), "target": target,
                    "weight": 1.0 if i % 3 else 0.5,
                    "soft_labels": _aligned(target, label, probs, '"')})
    return out


def test_the_mixed_loss_is_the_hand_computed_one(tok):
    samples = _samples(P_TEACHER)
    examples = encode_examples(tok, samples, 40, soft=True)
    assert all(len(e.soft) == 1 for e in examples)
    model = _model(len(tok))
    idx = list(range(len(examples)))
    b = micro_batch(examples, idx, tok.pad_token_id, 40, packing=False)
    w = 0.3
    got = micro_loss(model, b, head_weight=None, device=CPU, soft_weight=w).detach()
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    want = torch.zeros(())
    for row, e in enumerate(examples):
        logp = torch.log_softmax(logits[row].float(), -1)
        soft = {t.index: t for t in e.soft}
        for k in range(e.target_start, len(e.input_ids)):
            ce = -logp[k - 1, e.input_ids[k]]
            if k in soft:
                p = torch.tensor(soft[k].probs)
                kl = (p * (p.log() - logp[k - 1, list(soft[k].ids)])).sum()
                ce = (1 - w) * ce + w * kl
            want += e.weight * ce
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    # a one-hot teacher on the student's own token is cross-entropy: the soft loss is the hard
    certain = encode_examples(tok, _samples({"billing": 1.0}), 40, soft=True)
    hard = encode_examples(tok, _samples({"billing": 1.0}), 40, soft=False)
    bc = micro_batch(certain[::2], [0, 1, 2, 3], tok.pad_token_id, 40, packing=False)
    bh = micro_batch(hard[::2], [0, 1, 2, 3], tok.pad_token_id, 40, packing=False)
    assert "soft_pos" in bc and "soft_pos" not in bh
    assert float(micro_loss(model, bc, head_weight=None, device=CPU, soft_weight=0.8)) == \
        pytest.approx(float(micro_loss(model, bh, head_weight=None, device=CPU)), rel=1e-5)


def test_packed_soft_batches_give_the_padded_loss(tok):
    examples = encode_examples(tok, _samples(P_TEACHER), 40, soft=True)
    model = _model(len(tok))
    idx = [0, 3, 1, 6, 2]
    padded = micro_batch(examples, idx, tok.pad_token_id, 40, packing=False)
    packed = micro_batch(examples, idx, tok.pad_token_id, 40, packing=True)
    assert "position_ids" in packed  # really packed
    a = micro_loss(model, padded, head_weight=None, device=CPU, soft_weight=0.5)
    b = micro_loss(model, packed, head_weight=None, device=CPU, soft_weight=0.5)
    assert float(a) == pytest.approx(float(b), rel=1e-4)


def _p_billing(model: LlamaForCausalLM, tok: Any, prompt: str) -> float:
    ids = (tok(prompt + "\n", add_special_tokens=False)["input_ids"]  # as training encodes
           + tok("Answer:", add_special_tokens=False)["input_ids"])
    billing = tok(" billing", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return float(torch.softmax(logits.float(), -1)[billing])


def test_a_student_learns_the_teachers_uncertainty_only_from_soft_targets(tok):
    """Every ticket's teacher said billing at 0.7 / shipping 0.3 (and wrote billing): trained
    soft (weight 1), the student's P(billing) on the answer's first token comes to ~0.7; trained
    hard on the same text it comes to ~1. What the matrix's topk arm can show: calibration."""
    samples = [{"prompt": f"ticket {i}: where is it", "target": "Answer: billing",
                "weight": 1.0, "soft_labels": _aligned("Answer: billing", "billing",
                                                       P_TEACHER, '"')} for i in range(16)]
    cfg = {"epochs": 15, "batch_size": 4, "grad_accum": 1, "lr": 1e-2, "weight_decay": 0.0,
           "warmup_ratio": 0.0, "clip": 1.0, "max_len": 40, "log_every": 100}
    got = {}
    for name, weight in (("soft", 1.0), ("hard", None)):
        model = _model(len(tok))
        summary = train(model, tok, samples, cfg, seed=0, device=CPU, soft_weight=weight)
        got[name] = _p_billing(model, tok, "ticket 99: where is it")
        if weight:
            assert summary["soft_targets"] == {"weight": 1.0, "examples": 16, "tokens": 16}
        else:
            assert "soft_targets" not in summary
    assert got["soft"] == pytest.approx(0.7, abs=0.08), got
    assert got["hard"] > 0.95, got


def test_a_scored_labels_distribution_is_regrouped_by_the_students_tokens(tok):
    """A label-scoring teacher's soft labels carry every label's probability: the student
    regroups them by its own tokens of the target, whatever the teacher's split (a bare
    "b" + "illing" or one token) — labels sharing the target's first token pool their mass."""
    target = "Answer: billing"
    ids = tok(target, add_special_tokens=False)["input_ids"]
    choices = {"billing": 0.5, "billing_late": 0.2, "shipping": 0.3}
    aligned = json.dumps({"tokenizer": "t", "value_start": 8, "value_end": 15,
                          "choices": choices, "tokens": [
                              {"start": 8, "end": 9, "pre": "", "id": 1, "text": "b",
                               "logprob": -0.1, "top": [["b", -0.1, 1]]}]})
    soft = place_soft_labels(aligned, target, ids, 3, Speller(tok))
    billing = tok(" billing", add_special_tokens=False)["input_ids"][0]
    shipping = tok(" shipping", add_special_tokens=False)["input_ids"][0]
    assert [s.index for s in soft] == [3 + ids.index(billing)]
    assert dict(zip(soft[0].ids, soft[0].probs, strict=True)) == pytest.approx(
        {billing: 0.7, shipping: 0.3})
    # the target's label got no probability from the teacher: nothing to learn from, hard
    zero = json.loads(aligned)
    zero["choices"] = {"billing": 0.0, "shipping": 1.0}
    assert place_soft_labels(json.dumps(zero), target, ids, 3, Speller(tok)) == []
