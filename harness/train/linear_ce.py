"""The chunked (fused linear) cross-entropy of an LM head: the ``chunked_ce`` switch.

The LM head and cross-entropy run only on the positions that predict a target, chunk by chunk,
with the gradient computed in the forward (:class:`LinearCrossEntropy`, the idea of Liger's
fused linear cross-entropy): the (tokens x vocab) logits are never all alive at once.
:func:`plain_linear_head` checks that a model's logits are a plain ``hidden @ W.T`` before the
causal-LM objective uses it. Imports torch inside functions (the GPU worker's path).
"""

from __future__ import annotations

from typing import Any


def _linear_ce_function() -> Any:
    """The autograd Function behind :func:`linear_cross_entropy` (built lazily: torch import)."""
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        """``sum_i w_i * CE(h_i @ W.T, y_i)`` with the gradient computed chunk by chunk in the
        forward, so at most ``chunk x vocab`` logits exist at any time and nothing is
        recomputed in the backward (the idea of Liger's fused linear cross-entropy)."""

        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, token_weights: Any,
                    chunk: int, compute_dtype: Any) -> Any:
            n = hidden.shape[0]
            w = weight.to(compute_dtype)
            acc = torch.promote_types(compute_dtype, torch.float32)  # softmax/accumulation dtype
            grad_h = torch.empty_like(hidden)
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
            total = torch.zeros((), dtype=acc, device=hidden.device)
            with torch.autocast(device_type=hidden.device.type, enabled=False):
                for s in range(0, n, chunk):
                    h = hidden[s:s + chunk].to(compute_dtype)
                    y = targets[s:s + chunk]
                    tw = token_weights[s:s + chunk]
                    logits = (h @ w.T).to(acc)                       # (c, vocab)
                    lse = torch.logsumexp(logits, dim=-1)            # (c,)
                    picked = logits.gather(1, y[:, None]).squeeze(1)
                    total += ((lse - picked) * tw.to(acc)).sum()
                    # d/dlogits of w * CE = w * (softmax - onehot), reusing the logits buffer.
                    g = logits.sub_(lse[:, None]).exp_()
                    g[torch.arange(g.shape[0], device=g.device), y] -= 1.0
                    g.mul_(tw[:, None].to(acc))
                    g = g.to(compute_dtype)
                    grad_h[s:s + chunk] = (g @ w).to(hidden.dtype)
                    grad_w += (g.T @ h).to(acc)
            ctx.save_for_backward(grad_h, grad_w)
            ctx.weight_dtype = weight.dtype
            return total

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> tuple[Any, ...]:
            grad_h, grad_w = ctx.saved_tensors
            return (grad_h * grad_out.to(grad_h.dtype), (grad_w * grad_out).to(ctx.weight_dtype),
                    None, None, None, None)

    return LinearCrossEntropy


_LINEAR_CE: Any = None


def linear_cross_entropy(hidden: Any, weight: Any, targets: Any, token_weights: Any, *,
                         chunk: int | None = None, compute_dtype: Any = None) -> Any:
    """Weighted cross-entropy of a linear LM head, without materialising all logits.

    Args:
        hidden: (n, hidden) final hidden states at the positions that predict a target.
        weight: (vocab, hidden) the LM head's weight (tied or not).
        targets: (n,) long target token ids.
        token_weights: (n,) float32 per-token loss weights.
        chunk: rows per chunk (default: about 2**27 logits, 512 MB in fp32).
        compute_dtype: matmul dtype (default: the autocast dtype when autocast is on, else
            ``hidden.dtype``), the same precision the plain path's autocast uses.

    Returns:
        scalar float32: ``sum_i token_weights[i] * CE_i`` (differentiable in ``hidden`` and
        ``weight``).
    """
    import torch

    global _LINEAR_CE
    if _LINEAR_CE is None:
        _LINEAR_CE = _linear_ce_function()
    if compute_dtype is None:
        dev = hidden.device.type
        compute_dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
                         else hidden.dtype)
    if chunk is None:
        chunk = max(64, (1 << 27) // int(weight.shape[0]))
    return _LINEAR_CE.apply(hidden, weight, targets, token_weights, chunk, compute_dtype)


def plain_linear_head(model: Any, device: Any) -> Any | None:
    """The LM head's weight when the model's logits are exactly ``last_hidden @ W.T``.

    Checked numerically on 8 tokens (so a softcap, logit scale or bias is caught whatever the
    architecture calls it); None when they differ or the model has no separate backbone.
    """
    import torch

    head = model.get_output_embeddings()
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or backbone is None:
        return None
    ids = torch.arange(8, device=device)[None] % int(head.weight.shape[0])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(input_ids=ids, use_cache=False).logits.float()
            hid = backbone(input_ids=ids, use_cache=False).last_hidden_state
            mine = (hid @ head.weight.T).float()
    finally:
        model.train(was_training)
    ok = float((ref - mine).abs().max()) <= 1e-4 * (float(ref.abs().max()) + 1.0)
    return head.weight if ok else None
