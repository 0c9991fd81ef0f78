"""The static-cache decoder gives ``model.generate``'s greedy tokens, with one decode graph."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.evaluate.static_decode import (
    DYNAMIC_EAGER,
    STATIC_COMPILED,
    STATIC_EAGER,
    StaticDecoder,
    cache_length,
    default_decode_path,
    static_decoder_for,
)

PROMPT_LENGTHS = (3, 11, 26)


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return LlamaForCausalLM(cfg).eval()


def prompts(seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, 97, (n,), generator=g).tolist() for n in PROMPT_LENGTHS]


def eager_tokens(model: LlamaForCausalLM, prompt: list[int], new: int, stops: list[int]
                 ) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=new, do_sample=False, pad_token_id=0,
                             eos_token_id=stops)
    return out[0, len(prompt):].tolist()


def test_static_eager_equals_generate_with_and_without_stops():
    model = tiny_llama()
    decoder = StaticDecoder(model, 64, compile=False)
    assert decoder.path == STATIC_EAGER
    stopped_early = 0
    for p in prompts():
        assert decoder.decode(p, 12, [1]).tokens == eager_tokens(model, p, 12, [1])
        free = decoder.decode(p, 12)  # no stop ids: exactly 12 tokens
        assert len(free.tokens) == 12 and 0 < free.first_token_s <= free.total_s
        # a stop token the model does produce (its 4th), so generation must end there
        stop = free.tokens[3]
        got = decoder.decode(p, 12, stop_ids=[stop]).tokens
        assert got == eager_tokens(model, p, 12, [stop])
        assert got[-1] == stop and len(got) <= 4
        stopped_early += len(got) < 12
    assert stopped_early == len(PROMPT_LENGTHS)


def test_compiled_step_is_one_graph_for_every_prompt_length():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = tiny_llama()
    # backend "eager": dynamo traces the step (no code generation), fullgraph refuses breaks
    decoder = StaticDecoder(model, 64, compile=True, backend="eager", fullgraph=True)
    assert decoder.path == STATIC_COMPILED
    for p in prompts():
        assert decoder.decode(p, 10, [1]).tokens == eager_tokens(model, p, 10, [1])
    assert counters["stats"]["unique_graphs"] == 1


def test_a_new_model_of_the_same_shape_reuses_the_compiled_step():
    """A long-lived worker builds one decoder per cell, each for a new model: one graph serves
    them all (the parameters are its inputs), and each model still gets its own tokens."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    p = prompts()[0]
    seen = set()
    for seed in range(10):
        model = tiny_llama(seed)
        decoder = StaticDecoder(model, 64, compile=True, backend="eager", fullgraph=True)
        assert decoder.decode(p, 4, [1]).tokens == eager_tokens(model, p, 4, [1])
        seen.add(tuple(decoder.decode(p, 4).tokens))  # no stop: the compiled step runs
    assert counters["stats"]["unique_graphs"] == 1
    assert len(seen) > 1  # different models, different generations: no stale graph


def test_cache_length_and_limits():
    assert cache_length([10, 30], 16) == 64
    assert cache_length([10, 60], 16) == 128
    assert cache_length([500], 64, limit=256) == 256
    model = tiny_llama()
    decoder = static_decoder_for(model, [30], 16, STATIC_EAGER)
    assert decoder.max_cache_len == 64
    with pytest.raises(ValueError, match="does not fit"):
        decoder.decode(list(range(2, 60)), 16)
    with pytest.raises(ValueError, match="not a static decode path"):
        static_decoder_for(model, [3], 4, DYNAMIC_EAGER)


def test_default_path_is_static_compiled_on_cuda_only():
    assert default_decode_path(torch.device("cpu")) == DYNAMIC_EAGER
    assert default_decode_path(torch.device("cuda")) == STATIC_COMPILED


@pytest.mark.slow
def test_inductor_compiled_decoder_matches_eager(tmp_path, monkeypatch):
    """The CUDA default (inductor, reduce-overhead) compiled here on the CPU: same tokens, and
    its warm-up (the compilation) is timed once."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    model = tiny_llama()
    decoder = static_decoder_for(model, PROMPT_LENGTHS, 8, STATIC_COMPILED)
    ps = prompts()
    warm = decoder.warm_up(ps[0], 8)
    assert warm > 0 and decoder.warmup_s == warm
    for p in ps:
        assert decoder.decode(p, 8, [1]).tokens == eager_tokens(model, p, 8, [1])
