"""Token-budget micro-batches: every step keeps its examples, every micro-batch one shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.train.budget import choose_budget, fixed_batch, pack_step, plan, round_up
from harness.train.objectives.causal_lm import Example
from harness.train.packing import IGNORE
from tests.helpers.tiny_lm import random_examples as _random_examples


def random_examples(n: int, seed: int = 0, lo: int = 4, hi: int = 40) -> list[Example]:
    """``lo``..``hi`` tokens, the target may start at the first token."""
    return _random_examples(n, seed, lo=lo, max_len=hi, min_start=0)

def layout_of(ex: list[Example], steps: list[list[int]], budget: int, **kw):
    lengths = [len(e.input_ids) for e in ex]
    targets = [len(e.input_ids) - max(e.target_start, 1) for e in ex]
    return plan(lengths, targets, steps, budget, **kw)


def test_pack_step_keeps_every_example_once_within_the_width():
    rng = np.random.default_rng(1)
    for _ in range(100):
        lengths = [int(x) for x in rng.integers(1, 60, size=40)]
        idx = sorted(int(i) for i in rng.choice(40, size=int(rng.integers(1, 40)), replace=False))
        micro = pack_step(lengths, idx, rows=2, width=64)
        got = [i for mb in micro for row in mb for i in row]
        assert sorted(got) == idx
        assert all(len(mb) <= 2 for mb in micro)
        assert all(sum(lengths[i] for i in row) <= 64 for mb in micro for row in mb)
    with pytest.raises(ValueError):
        pack_step([65], [0], rows=1, width=64)


def test_every_step_keeps_its_examples_and_every_micro_batch_one_shape():
    ex = random_examples(60, seed=2)
    steps = [list(range(k, k + 12)) for k in range(0, 60, 12)]
    layout = layout_of(ex, steps, budget=100)
    assert layout.width == 128 and layout.rows == 1  # rounded up to the block size
    shapes, targets = set(), set()
    for step, micro in zip(steps, layout.steps, strict=True):
        assert sorted(i for mb in micro for row in mb for i in row) == step
        weight = 0.0
        for mb in micro:
            b = fixed_batch(ex, mb, 0, layout)
            shapes |= {tuple(b[k].shape) for k in ("input_ids", "position_ids", "doc",
                                                   "labels", "token_weights")}
            targets |= {tuple(b[k].shape) for k in ("sel", "targets", "target_weights")}
            weight += b["weight_sum"]
        expect = sum(ex[i].weight * (len(ex[i].input_ids) - max(ex[i].target_start, 1))
                     for i in step)
        assert weight == pytest.approx(expect)
    assert shapes == {(1, 128)} and targets == {(layout.target_cap,)}
    assert layout.target_cap % 64 == 0


def test_fixed_batch_layout_positions_documents_and_targets():
    ex = random_examples(5, seed=3)
    layout = layout_of(ex, [list(range(5))], budget=256)
    (micro,) = layout.steps[0]
    b = fixed_batch(ex, micro, 0, layout)
    at = 0
    for d, i in enumerate(micro[0]):
        n = len(ex[i].input_ids)
        assert b["input_ids"][0, at:at + n].tolist() == ex[i].input_ids
        assert b["position_ids"][0, at:at + n].tolist() == list(range(n))
        assert (b["doc"][0, at:at + n] == d).all()
        at += n
    assert (b["doc"][0, at:] == len(micro[0])).all()  # padding: one document, last
    assert b["n_tokens"] == at == sum(len(e.input_ids) for e in ex)
    # The selected positions predict exactly the labelled tokens, with their weights.
    flat_labels = b["labels"].flatten()
    used = b["target_weights"] > 0
    assert torch.equal(flat_labels[b["sel"][used] + 1], b["targets"][used])
    assert int((flat_labels != IGNORE).sum()) == int(used.sum()) > 0  # weights are all > 0
    assert (b["labels"][b["position_ids"] == 0] == IGNORE).all()  # never a first token


def test_long_budgets_become_several_rows_under_a_width_cap():
    ex = random_examples(40, seed=4, lo=30, hi=100)
    layout = layout_of(ex, [list(range(40))], budget=1024, max_width=256)
    assert (layout.rows, layout.width) == (4, 256)
    for mb in layout.steps[0]:
        assert fixed_batch(ex, mb, 0, layout)["input_ids"].shape == (4, 256)


def test_the_default_budget_trades_padding_against_micro_batches():
    assert round_up(1, 128) == 128 and round_up(129, 128) == 256
    # Equal steps: one micro-batch each, just big enough.
    assert choose_budget([1000] * 10, longest=100) == 1024
    # One huge step among small ones: the budget follows the many, not the one.
    assert choose_budget([1000] * 50 + [20000], longest=100) < 4096
    # Never below the longest example.
    assert choose_budget([100, 100], longest=700) == 768
