"""A tiny Llama and random tokenised examples, shared by the training-loop tests (plain,
packed, chunked cross-entropy, token-budget and document-masked paths)."""

from __future__ import annotations

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from harness.train.objectives.causal_lm import Example

#: Vocabulary of :func:`tiny_llama`; example token ids are drawn from 1..VOCAB-1 (0 is padding).
VOCAB = 97


def tiny_llama(seed: int = 0, attn: str = "sdpa") -> LlamaForCausalLM:
    """A seeded 2-layer Llama (hidden 32, GQA 4/2 heads, tied embeddings, pad id 0)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      pad_token_id=0, tie_word_embeddings=True)
    cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg)


def random_examples(n: int, seed: int = 0, *, lo: int = 4, max_len: int = 40,
                    min_start: int = 1) -> list[Example]:
    """``n`` examples of ``lo``..``max_len`` tokens, the target starting at a random position
    >= ``min_start``, with loss weights 0.25, 0.5 or 1."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(lo, max_len + 1))
        start = int(rng.integers(min_start, length))
        out.append(Example(input_ids=[int(x) for x in rng.integers(1, VOCAB, size=length)],
                           target_start=start, weight=float(rng.choice([0.25, 0.5, 1.0]))))
    return out
