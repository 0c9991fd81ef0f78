"""Train a causal LM on composed samples in one call (the tests' shorthand for what a causal-LM
student does: its objective from the samples, then the training loop)."""

from __future__ import annotations

from typing import Any

from harness.train.loop import Log, run
from harness.train.objectives.causal_lm import CausalLMObjective


def train_causal_lm(model: Any, tokenizer: Any, samples: list[dict[str, Any]],
                    cfg: dict[str, Any], *, seed: int, device: Any, teacher: Any | None = None,
                    distill: dict[str, Any] | None = None, soft_weight: float | None = None,
                    log: Log | None = None) -> dict[str, Any]:
    """:func:`harness.train.loop.run` on a :class:`CausalLMObjective` of ``samples`` (rows of a
    cell's ``train.jsonl``); the loop's summary."""
    objective = CausalLMObjective.from_samples(tokenizer, samples, cfg, teacher=teacher,
                                               distill=distill, soft_weight=soft_weight)
    return run(model, objective, cfg, seed=seed, device=device, log=log)
