"""Greedy answer generation: stop tokens, and the static batch-1 path gives the same text."""

from __future__ import annotations

import pytest
import torch

from harness.evaluate.generate import generate, stop_token_ids
from harness.students.build import build_from_config, train_tokenizer

PROMPTS = ["where is my parcel", "I was charged twice for order 88213",
           "reset my password please", "the screen shows error 42 after the update", "hi"]
TARGETS = ["Answer: shipping", "Answer: billing\nReason: a charge", "Answer: account",
           "Answer: technical", "Answer: ESCALATE"]


@pytest.fixture(scope="module")
def student():
    tok = train_tokenizer([p + "\n" for p in PROMPTS] * 3 + TARGETS * 3, 300)
    cfg = {"layers": 2, "hidden": 32, "heads": 2, "vocab": 300, "max_position": 128}
    return build_from_config(cfg, tok, seed=3).eval(), tok


def test_stop_tokens_are_eos_and_every_newline_token(student):
    _, tok = student
    stops = stop_token_ids(tok)
    assert tok.eos_token_id in stops
    newline = [i for i in stops if i != tok.eos_token_id]
    assert newline and all("\n" in tok.decode([i]) for i in newline)
    assert stops == sorted(stops)


@pytest.mark.parametrize("path", ["static_eager", "dynamic_eager"])
def test_static_batch1_generation_equals_batched_generation(student, path):
    model, tok = student
    cpu = torch.device("cpu")
    batched = generate(model, tok, PROMPTS, cpu, 12, batch_size=3, max_len=128)
    assert generate(model, tok, PROMPTS, cpu, 12, max_len=128, decode_path=path) == batched
    assert any(batched)  # the random student does say something
