"""The fast path computes what the plain padded path computes (CPU, fp32): same loss, same
gradients, same examples per optimizer step; compiled or not; and says what was in effect."""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np
import pytest
import torch

from harness.train.loop import TrainOptions, train_examples
from harness.train.objectives.causal_lm import CausalLMObjective, Example, micro_batch, micro_loss
from tests.helpers.tiny_lm import random_examples as _random_examples
from tests.helpers.tiny_lm import tiny_llama

CPU = torch.device("cpu")
CFG = {"epochs": 1, "batch_size": 6, "grad_accum": 2, "lr": 3e-3, "weight_decay": 0.01,
       "warmup_ratio": 0.1, "clip": 1.0, "max_len": 60, "log_every": 1}




def schedule_of(n: int, size: int, seed: int = 0) -> list[list[int]]:
    order = [int(i) for i in np.random.default_rng(seed).permutation(n)]
    return [order[i:i + size] for i in range(0, n, size)]


def grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


def random_examples(n: int, seed: int = 0) -> list[Example]:
    """Up to 60 tokens, the target may start at the first token."""
    return _random_examples(n, seed, max_len=60, min_start=0)


@pytest.mark.parametrize(("attn", "chunked"), [("sdpa", False), ("sdpa", True), ("eager", True)])
def test_one_step_loss_and_gradients_equal_the_padded_path(attn, chunked):
    ex = random_examples(12, seed=1)
    micro = [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]  # one optimizer step, 3 micro-batches
    model = tiny_llama(attn=attn)
    # Plain: padded micro-batches, each loss sum / the step's total weight.
    batches = [micro_batch(ex, m, 0, 60, False) for m in micro]
    denom = float(sum(b["weight_sum"] for b in batches))
    plain = sum(micro_loss(model, b, head_weight=None, device=CPU) for b in batches) / denom
    plain.backward()
    g_plain = grads(model)
    model.zero_grad(set_to_none=True)
    # Fast: the same 12 examples in fixed 128-token micro-batches, dense document mask.
    obj = CausalLMObjective(ex, pad_id=0, max_len=60)
    with ExitStack() as cleanup:
        plan, forward, info = obj.prepare_fast(model, CPU, [sum(micro, [])], 128, cleanup)
        assert plan is not None and info["fast"] is True
        if not chunked:
            obj.fast_head, forward = None, model
        assert info["fast_chunked_ce"] is True
        fast_batches = [obj.fast_batch(m) for m in plan[0]]
        assert len(fast_batches) > 1  # the budget really re-cut the step
        assert {tuple(b["input_ids"].shape) for b in fast_batches} == {(1, 128)}
        f_denom = float(sum(b["weight_sum"] for b in fast_batches))
        fast = sum(obj.loss(forward, b, CPU) for b in fast_batches) / f_denom
        fast.backward()
    assert f_denom == pytest.approx(denom, rel=1e-6)
    assert float(fast) == pytest.approx(float(plain), rel=1e-5)
    for gf, gp in zip(grads(model), g_plain, strict=True):
        torch.testing.assert_close(gf, gp, rtol=1e-5, atol=1e-6)


def train_pair(extra: dict, seed: int = 5):
    ex = random_examples(36, seed=4)
    schedule = schedule_of(36, CFG["batch_size"])
    runs = {}
    for name, cfg in (("plain", {"fast": "off"}), ("fast", extra)):
        model, logs = tiny_llama(seed=seed), []
        summary = train_examples(model, ex, {**CFG, **cfg}, pad_id=0, seed=0, device=CPU,
                                 schedule=schedule, log=logs.append)
        runs[name] = (model, logs, summary)
    return runs


def assert_same_training(runs) -> None:
    (mp, lp, sp), (mf, lf, sf) = runs["plain"], runs["fast"]
    assert sf["steps"] == sp["steps"] == 3 and sf["tokens"] == sp["tokens"]
    assert [r["loss"] for r in lf] == pytest.approx([r["loss"] for r in lp], rel=1e-5)
    assert [r["grad_norm"] for r in lf] == pytest.approx([r["grad_norm"] for r in lp], rel=1e-3)
    for a, b in zip(mf.parameters(), mp.parameters(), strict=True):
        # Adam turns float noise in near-zero gradients into steps of up to lr * noise/eps;
        # a wrong loss would move weights by ~lr (3e-3), 30x the tolerance.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_training_on_the_fast_path_matches_the_plain_path():
    runs = train_pair({"fast": "on", "token_budget": 256, "fast_compile": False})
    assert_same_training(runs)
    sf, sp = runs["fast"][2], runs["plain"][2]
    assert sf["fast"] is True and sf["compile"] is False and sf["micro_batch_shape"] == [1, 256]
    assert sf["attention"].startswith("sdpa with a dense document mask")
    assert sf["padded_tokens"] == 256 * sf["micro_batches"]
    assert sp["fast"] == "off" if "fast" in sp else True  # explicit off: recorded or absent


def test_the_cpu_default_is_the_plain_path_and_its_summary_is_unchanged():
    ex = random_examples(12)
    summary = train_examples(tiny_llama(), ex, {**CFG, "epochs": 1}, pad_id=0, seed=0,
                             device=CPU)
    assert list(summary) == ["steps", "examples", "tokens", "padded_tokens",
                             "packed_micro_batches", "train_seconds", "final_loss",
                             "tokens_per_s", "packing", "chunked_ce", "compile"]


def test_compiled_step_on_cpu_matches_eager_and_reports_its_seconds():
    runs = train_pair({"fast": "on", "token_budget": 256, "fast_compile": True,
                       "compile_backend": "aot_eager"})
    assert_same_training(runs)
    sf = runs["fast"][2]
    assert sf["compile"] == "aot_eager/layers" and sf["compile_seconds"] > 0
    assert sf["compile_graphs"] >= 1 and sf["recompiles"] == 0  # one shape, one graph
    model = runs["fast"][0]
    assert all("forward" not in vars(layer) for layer in model.model.layers)  # undone


@pytest.mark.slow
def test_inductor_compiles_the_step_on_cpu():
    runs = train_pair({"fast": "on", "token_budget": 256, "fast_compile": True,
                       "compile_budget_s": 600})
    assert_same_training(runs)
    sf = runs["fast"][2]
    assert sf["compile"] == "inductor/layers" and sf["recompiles"] == 0


@pytest.mark.parametrize(("extra", "reason"), [
    ({"compile_backend": "no_such_backend"}, "off: "),
    ({"compile_budget_s": 1e-4}, "off: CompileTimeout"),
])
def test_a_failing_or_slow_compile_falls_back_to_eager_with_the_reason(extra, reason):
    runs = train_pair({"fast": "on", "token_budget": 256, "fast_compile": True, **extra})
    assert_same_training(runs)
    sf = runs["fast"][2]
    assert str(sf["compile"]).startswith(reason) and sf["fast"] is True
    assert "recompiles" not in sf


def test_fast_on_is_refused_by_an_objective_without_a_fast_path_and_off_with_a_teacher():
    class NoFast:
        name, fast_path = "classifier", False

    with pytest.raises(ValueError, match="no fast path"):
        TrainOptions.from_cfg({"fast": "on"}).fast_on(CPU, NoFast())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not one of"):
        TrainOptions.from_cfg({"fast": "yes"}).fast_on(CPU, NoFast())  # type: ignore[arg-type]
    assert not TrainOptions.from_cfg({}).fast_on(CPU, NoFast())  # type: ignore[arg-type]
    ex = random_examples(12)
    summary = train_examples(tiny_llama(), ex, {**CFG, "fast": "on"}, pad_id=0, seed=0,
                             device=CPU, teacher=tiny_llama(seed=1),
                             distill={"alpha": 0.5, "temperature": 2.0})
    assert summary["fast"].startswith("off: distillation")
