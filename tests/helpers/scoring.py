"""A tiny label-scoring setup shared by the scoring tests: prompts, labels, a tiny model."""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.students.build import build_from_config

LABELS = ["billing", "shipping", "technical support", "account closure request"]
WORDS = ["refund", "order", "late", "password", "charge", "parcel", "login", "close", "my",
         "account", "twice", "where", "is", "error", "screen"]


def prompts(n: int, seed: int = 0) -> list[str]:
    """``n`` seeded prompts of 2-13 words."""
    rng = np.random.default_rng(seed)
    return [" ".join(WORDS[k] for k in rng.integers(0, len(WORDS), size=int(rng.integers(2, 14))))
            for _ in range(n)]


def model_for(tokenizer: Any, attn: str, seed: int = 0) -> Any:
    """A 2-layer, 32-wide Llama with grouped-query attention and the given implementation."""
    cfg = {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "vocab": 300,
           "max_position": 128}
    model = build_from_config(cfg, tokenizer, seed).eval()
    model.config._attn_implementation = attn
    return model
