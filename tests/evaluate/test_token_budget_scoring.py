"""Label scoring sized by a token budget: chunks stay within it, every row is scored once, and
the log-likelihoods equal the fixed-batch path's (to float rounding) on both scoring paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.evaluate import predict
from tests.helpers.scoring import LABELS, model_for, prompts

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():
    from harness.students.build import train_tokenizer

    return train_tokenizer(prompts(200) + [f"Answer: {lab}" for lab in LABELS], 300)


@pytest.mark.parametrize("budget", [1, 7, 40, 100, 333, 10_000])
def test_chunks_cover_every_row_once_within_the_budget(budget):
    rng = np.random.default_rng(budget)
    widths = sorted(int(w) for w in rng.integers(1, 60, size=57))
    bounds = predict.chunk_bounds(widths, batch_size=64, token_budget=budget)
    assert [i for s, e in bounds for i in range(s, e)] == list(range(len(widths)))
    for start, end in bounds:
        assert end > start
        # within the budget, unless one row alone exceeds it
        assert (end - start) * max(widths[start:end]) <= budget or end - start == 1
    for s1, e1 in bounds[:-1]:
        # greedy: the next row would have pushed the slice past the budget
        assert (e1 - s1 + 1) * max(widths[s1:e1 + 1]) > budget


def test_no_budget_keeps_fixed_batches():
    assert predict.chunk_bounds([3] * 10, batch_size=4) == [(0, 4), (4, 8), (8, 10)]
    assert predict.chunk_bounds([], batch_size=4, token_budget=10) == []


def test_worker_budget_only_on_cuda():
    assert predict.default_token_budget(CPU) is None
    assert predict.default_token_budget("cuda:0") == predict.CUDA_SCORE_TOKEN_BUDGET


def _spy_widths(monkeypatch) -> list[tuple[int, int]]:
    """Record the (rows, width) of every forward the model runs."""
    seen: list[tuple[int, int]] = []
    original = predict.chunk_bounds

    def spy(widths, batch_size, token_budget=None):
        bounds = original(widths, batch_size, token_budget)
        seen.extend((e - s, max(widths[s:e])) for s, e in bounds)
        return bounds

    monkeypatch.setattr(predict, "chunk_bounds", spy)
    return seen


@pytest.mark.parametrize("path", ["shared", "per_pair"])
@pytest.mark.parametrize("budget", [5, 64, 300, 5_000])  # 5: smaller than any single item
def test_budgeted_scores_equal_the_fixed_batch_path(tokenizer, monkeypatch, path, budget):
    model = model_for(tokenizer, "sdpa", seed=8)
    ps = prompts(21, seed=9)
    score = (predict.score_labels_shared if path == "shared"
             else predict.score_labels_per_pair)
    fixed = score(model, tokenizer, ps, LABELS, "Answer:", CPU, max_len=128)
    seen = _spy_widths(monkeypatch)
    budgeted = score(model, tokenizer, ps, LABELS, "Answer:", CPU, max_len=128,
                     token_budget=budget)
    assert seen and all(rows * width <= budget or rows == 1 for rows, width in seen)
    if budget == 5:
        assert all(rows == 1 for rows, _ in seen)
    np.testing.assert_allclose(budgeted, fixed, rtol=1e-5, atol=1e-5)
    assert (budgeted.argmax(1) == fixed.argmax(1)).all()


def test_score_labels_passes_the_budget_to_the_shared_fallback(tokenizer):
    # one item longer than max_len takes the per-pair rows inside the shared path
    model = model_for(tokenizer, "sdpa", seed=10)
    ps = prompts(5, seed=11) + [" ".join(["refund order late"] * 12)]
    fixed = predict.score_labels(model, tokenizer, ps, LABELS, "Answer:", CPU, max_len=24)
    budgeted = predict.score_labels(model, tokenizer, ps, LABELS, "Answer:", CPU, max_len=24,
                                    token_budget=30)
    np.testing.assert_allclose(budgeted, fixed, rtol=1e-5, atol=1e-5)
