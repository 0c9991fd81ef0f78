"""The training loop on tiny from-scratch students (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.students.build import build_from_config, train_tokenizer
from harness.train.loop import NonFiniteLoss
from harness.train.objectives.causal_lm import IGNORE, collate, encode_examples
from tests.helpers.training import train_causal_lm as train

CFG = {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300, "max_position": 64}
TRAIN = {"epochs": 8, "batch_size": 8, "grad_accum": 1, "lr": 5e-3, "weight_decay": 0.0,
         "warmup_ratio": 0.1, "clip": 1.0, "max_len": 48}
WORDS = ["red", "blue", "green", "cat", "dog", "sun", "moon", "tree"]


def samples(n: int = 48, weight: float = 1.0) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        w = [WORDS[i] for i in rng.integers(0, len(WORDS), size=3)]
        label = "yes" if "cat" in w else "no"
        out.append({"prompt": " ".join(w), "target": f"Answer: {label}", "weight": weight})
    return out


def student(data: list[dict], seed: int = 0):
    tok = train_tokenizer([d["prompt"] + "\n" for d in data] + [d["target"] for d in data], 300)
    return build_from_config(CFG, tok, seed), tok


def test_labels_cover_only_target_and_eos():
    data = samples(4)
    _, tok = student(data)
    ex = encode_examples(tok, data, 48)
    batch = collate(ex, [0, 1], tok.pad_token_id, torch.device("cpu"))
    for row, e in enumerate(ex[:2]):
        labels = batch["labels"][row]
        assert (labels[: e.target_start] == IGNORE).all()
        n = len(e.input_ids)
        assert (labels[e.target_start:n] != IGNORE).all() and (labels[n:] == IGNORE).all()
        assert labels[n - 1] == tok.eos_token_id
        assert tok.decode(labels[e.target_start:n - 1]) == data[row]["target"]


def test_tiny_student_learns_and_is_deterministic():
    data = samples()
    logs: list[dict] = []
    model, tok = student(data)
    first = train(model, tok, data, TRAIN, seed=0, device=torch.device("cpu"), log=logs.append)
    assert first["steps"] == 48
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    model2, tok2 = student(data)
    second = train(model2, tok2, data, TRAIN, seed=0, device=torch.device("cpu"))
    assert first["final_loss"] == second["final_loss"]
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_zero_weight_samples_do_not_train():
    data = samples(16, weight=0.0)
    model, tok = student(data)
    before = [p.detach().clone() for p in model.parameters()]
    train(model, tok, data, {**TRAIN, "epochs": 1}, seed=0, device=torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_non_finite_loss_stops_training():
    data = samples(16)
    model, tok = student(data)
    model.lm_head.register_forward_hook(lambda m, i, o: o * float("nan"))
    with pytest.raises(NonFiniteLoss):
        train(model, tok, data, TRAIN, seed=0, device=torch.device("cpu"))


def test_soft_targets_from_a_tiny_teacher():
    data = samples()
    teacher, tok = student(data, seed=1)
    train(teacher, tok, data, TRAIN, seed=1, device=torch.device("cpu"))

    def kl_to_teacher(model) -> float:
        ex = encode_examples(tok, data, 48)
        b = collate(ex, list(range(len(ex))), tok.pad_token_id, torch.device("cpu"))
        with torch.no_grad():
            s = torch.log_softmax(model(input_ids=b["input_ids"],
                                        attention_mask=b["attention_mask"]).logits, -1)
            t = torch.log_softmax(teacher(input_ids=b["input_ids"],
                                          attention_mask=b["attention_mask"]).logits, -1)
        mask = (b["labels"] != IGNORE)[:, 1:]
        kl = (t.exp() * (t - s)).sum(-1)[:, :-1]
        return float((kl * mask).sum() / mask.sum())

    student_model = build_from_config(CFG, tok, seed=2)
    before = kl_to_teacher(student_model)
    train(student_model, tok, data, TRAIN, seed=2, device=torch.device("cpu"), teacher=teacher,
          distill={"alpha": 0.9, "temperature": 2.0})
    assert kl_to_teacher(student_model) < 0.3 * before
