"""How a classifier student's encoder turns tokens into one vector: its own ``[CLS]`` pooler,
or the masked mean of the last hidden states (what sentence encoders were trained for).

The choice is recorded in ``config.harness_pooling`` so a reloaded checkpoint pools the way it
was trained. Imports torch inside functions only (the GPU worker's path).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def resolve_pooling(path: Path, pooling: str | None) -> str:
    """``cls`` or ``mean`` for the encoder at ``path``.

    ``auto`` (or None) reads a sentence-transformers folder's ``1_Pooling/config.json``: an
    encoder trained for mean pooling (all-MiniLM-L6-v2) never trained its ``[CLS]`` pooler for
    sentence meaning, so a head on that pooler starts from features that barely separate
    intents, and learns slowly on a small budget.
    """
    if pooling in ("cls", "mean"):
        return pooling
    cfg = path / "1_Pooling" / "config.json"
    try:
        mean = bool(json.loads(cfg.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"))
    except (OSError, ValueError):
        mean = False
    return "mean" if mean else "cls"


def _masked_mean_pooler() -> Any:
    """A module replacing an encoder's ``[CLS]`` pooler: the masked mean of the last hidden
    states, (batch, seq, hidden) -> (batch, hidden). The attention mask is handed over by a
    pre-hook on the encoder (BERT-style encoders call their pooler with the hidden states
    alone). Built here so torch is imported only when a classifier is built."""
    import torch

    class MaskedMeanPooler(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mask: Any = None

        def forward(self, hidden: Any) -> Any:
            if self.mask is None:
                return hidden.mean(dim=1)
            m = self.mask.to(hidden.dtype).unsqueeze(-1)
            return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    return MaskedMeanPooler()


def apply_pooling(model: Any, pooling: str) -> None:
    """Switch ``model`` to ``pooling`` in place and record it in ``config.harness_pooling``.

    Raises:
        ValueError: mean pooling asked of an encoder without a replaceable ``pooler``.
    """
    model.config.harness_pooling = pooling
    if pooling != "mean":
        return
    base = model.base_model
    if not hasattr(base, "pooler"):
        raise ValueError(f"pooling: mean needs an encoder with a pooler module "
                         f"({type(model).__name__} has none); use pooling: cls")
    pooler = _masked_mean_pooler()
    base.pooler = pooler

    def hand_over_mask(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1:
            mask = args[1]
        pooler.mask = mask

    base.register_forward_pre_hook(hand_over_mask, with_kwargs=True)
