"""Label scoring by log-likelihood (torch only); generation lives in :mod:`.generate`.

Label units are scored, not generated: for each item and each declared label, the sum of
log-probabilities of the continuation ``" " + label`` after ``prompt + "\\n" + marker``; the
softmax over labels is the confidence. Context and continuation are split the way lm-eval does
(encode the whole string, take the tokens past the context's), so ``harness lm-eval`` agrees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _pairs(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


def chunk_bounds(widths: Sequence[int], batch_size: int, token_budget: int | None = None
                 ) -> list[tuple[int, int]]:
    """Consecutive ``(start, end)`` slices of rows that are scored in one forward each.

    Args:
        widths: each row's length in tokens, in the order the rows are run (length-sorted by
            the callers, so consecutive rows pad little).
        batch_size: rows per slice when ``token_budget`` is None.
        token_budget: the most padded tokens per forward (rows x the slice's longest row):
            rows are added to a slice until the next would push it past the budget; a row
            longer than the budget on its own still gets a slice of one.

    Returns:
        Slices covering ``range(len(widths))`` once each, in order.
    """
    n = len(widths)
    if token_budget is None:
        return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    bounds: list[tuple[int, int]] = []
    start, longest = 0, 0
    for end, width in enumerate(widths):
        longest_with = max(longest, width)
        if end > start and (end - start + 1) * longest_with > token_budget:
            bounds.append((start, end))
            start, longest_with = end, width
        longest = longest_with
    if n:
        bounds.append((start, n))
    return bounds


CUDA_SCORE_TOKEN_BUDGET = 32_768
"""Padded tokens per label-scoring forward on CUDA: about 256 demo-sized items (context and all
labels, ~130 tokens) per forward. Chosen, not measured: no GPU run has timed it yet
(benchmarks/gpu_eval.py would; docs/gpu.md)."""


def default_token_budget(device: Any) -> int | None:
    """The worker's label-scoring budget: :data:`CUDA_SCORE_TOKEN_BUDGET` on CUDA; None (the
    fixed 64 items per forward) elsewhere, so CPU results stay bit for bit what they were
    (another split of the same rows changes padding widths and with them float rounding)."""
    return CUDA_SCORE_TOKEN_BUDGET if str(device).startswith("cuda") else None


def score_labels(model: Any, tokenizer: Any, prompts: list[str], labels: list[str], marker: str,
                 device: Any, batch_size: int = 64, max_len: int = 512,
                 shared_prefix: bool | None = None, token_budget: int | None = None
                 ) -> np.ndarray:
    """Log-likelihood of each label per prompt.

    Args:
        prompts: the items' prompts; the context is ``prompt + "\n" + marker``.
        labels: the unit's labels; the continuation is ``" " + label``.
        batch_size: items per forward (shared-prefix path) or (item, label) rows per forward
            (per-pair path), when ``token_budget`` is None.
        token_budget: size each forward by padded tokens instead (rows x longest row, see
            :func:`chunk_bounds`); None keeps ``batch_size`` rows per forward. The rows and
            their order are the same either way; only where the forwards split differs.
        max_len: the joint sequence is cut from the left to this many tokens.
        shared_prefix: score all labels of an item in one row that holds the context once
            (:func:`score_labels_shared`); False: one row per (item, label)
            (:func:`score_labels_per_pair`). Default: shared when the model's attention
            implementation takes a custom 4D mask (sdpa, eager), per-pair otherwise.

    Returns:
        (n_prompts, n_labels) summed log-probabilities of the label continuation tokens.
    """
    if shared_prefix is None:
        shared_prefix = _takes_4d_mask(model)
    if shared_prefix:
        return score_labels_shared(model, tokenizer, prompts, labels, marker, device,
                                   batch_size=batch_size, max_len=max_len,
                                   token_budget=token_budget)
    return score_labels_per_pair(model, tokenizer, prompts, labels, marker, device,
                                 batch_size=batch_size, max_len=max_len,
                                 token_budget=token_budget)


def score_labels_per_pair(model: Any, tokenizer: Any, prompts: list[str], labels: list[str],
                          marker: str, device: Any, batch_size: int = 64, max_len: int = 512,
                          token_budget: int | None = None) -> np.ndarray:
    """:func:`score_labels` with one sequence per (item, label), as lm-eval runs it.

    Returns:
        (n_prompts, n_labels) summed log-probabilities of the label continuation tokens.
    """

    rows: list[tuple[int, int, list[int], int]] = []  # (item, label, ids, n_continuation)
    for i, prompt in enumerate(prompts):
        for j, lab in enumerate(labels):
            ctx, cont = _pairs(tokenizer, prompt + "\n" + marker, " " + lab)
            seq_ids = (ctx + cont)[-max_len:]
            rows.append((i, j, seq_ids, len(cont)))
    out = np.zeros((len(prompts), len(labels)), dtype=np.float64)
    _score_rows(model, tokenizer, rows, out, device, batch_size, token_budget)
    return out


def _score_rows(model: Any, tokenizer: Any, rows: list[tuple[int, int, list[int], int]],
                out: np.ndarray, device: Any, batch_size: int,
                token_budget: int | None = None) -> None:
    """Fill ``out[item, label]`` for (item, label, ids, n_continuation) rows, one per sequence,
    in forwards of ``batch_size`` rows or ``token_budget`` padded tokens (:func:`chunk_bounds`)."""
    import torch

    order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]))  # length-bucketed
    pad = tokenizer.pad_token_id
    bounds = chunk_bounds([len(rows[r][2]) for r in order], batch_size, token_budget)
    with torch.inference_mode():
        for start, end in bounds:
            chunk = [rows[r] for r in order[start:end]]
            width = max(len(c[2]) for c in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for k, (_, _, seq, _) in enumerate(chunk):
                ids[k, :len(seq)] = torch.tensor(seq)
                mask[k, :len(seq)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for k, (i, j, seq, n_cont) in enumerate(chunk):
                n = len(seq)
                positions = torch.arange(n - n_cont - 1, n - 1)
                targets = torch.tensor(seq[n - n_cont:])
                out[i, j] = float(logp[k, positions, targets].double().sum())


def _takes_4d_mask(model: Any) -> bool:
    """Whether the model's attention uses a dense 4D mask as given (sdpa and eager do; flash
    and flex attention build their own)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return impl in ("sdpa", "eager")


def score_labels_shared(model: Any, tokenizer: Any, prompts: list[str], labels: list[str],
                        marker: str, device: Any, batch_size: int = 64, max_len: int = 512,
                        token_budget: int | None = None) -> np.ndarray:
    """:func:`score_labels` with the context run once per item (:func:`score_continuations`
    on the contexts ``prompt + "\n" + marker`` and the continuations ``" " + label``).

    Returns:
        (n_prompts, n_labels) summed log-probabilities of the label continuation tokens.
    """
    return score_continuations(model, tokenizer, [p + "\n" + marker for p in prompts],
                               [" " + lab for lab in labels], device, batch_size=batch_size,
                               max_len=max_len, token_budget=token_budget)


def score_continuations(model: Any, tokenizer: Any, contexts: list[str], continuations: list[str],
                        device: Any, batch_size: int = 64, max_len: int = 512,
                        token_budget: int | None = None) -> np.ndarray:
    """Log-likelihood of every continuation after every context, each context run once.

    The continuation's tokens are those of ``context + continuation`` past the context's own
    (as lm-eval splits them). One row per context holds ``context + cont_1 + ... + cont_k``;
    each continuation gets the positions that follow the context and a mask that lets it see
    the context and its own earlier tokens only (never another continuation), so every
    log-probability is the one a separate sequence per pair gives, for about ``1/k`` of its
    tokens. When every continuation of a batch's items is a single token, only the contexts
    run (no mask) and all are read at the last context position. The scored positions are
    gathered before the vocabulary softmax, so only ``(scored tokens, vocab)`` logits leave the
    model. Items whose joint sequence would need cutting (longer than ``max_len``) take one
    sequence per pair, cut from the left. ``token_budget`` counts a row as its whole length,
    even where only the context runs (an upper bound).

    Returns:
        (n_contexts, n_continuations) summed log-probabilities of the continuation tokens.
    """
    import torch

    ctx_ids = tokenizer(contexts, add_special_tokens=False)["input_ids"]
    whole = tokenizer([c + cont for c in contexts for cont in continuations],
                      add_special_tokens=False)["input_ids"]
    k = len(continuations)
    out = np.zeros((len(contexts), k), dtype=np.float64)
    items: list[tuple[int, list[int], list[list[int]]]] = []
    fallback: list[tuple[int, int, list[int], int]] = []
    for i, ctx in enumerate(ctx_ids):
        conts = [whole[i * k + j][len(ctx):] for j in range(k)]
        if len(ctx) + max(len(c) for c in conts) > max_len:
            for j, cont in enumerate(conts):
                fallback.append((i, j, (ctx + cont)[-max_len:], len(cont)))
        else:
            items.append((i, ctx, conts))
    if fallback:
        _score_rows(model, tokenizer, fallback, out, device, batch_size, token_budget)
    items.sort(key=lambda it: len(it[1]) + sum(len(c) for c in it[2]))  # length-bucketed
    bounds = chunk_bounds([len(c) + sum(len(x) for x in conts) for _, c, conts in items],
                          batch_size, token_budget)
    pad = tokenizer.pad_token_id
    impl = model.config._attn_implementation
    dtype = next(model.parameters()).dtype
    head = model.get_output_embeddings()
    backbone: Any = getattr(model, getattr(model, "base_model_prefix", ""), None)
    hidden_only = (isinstance(head, torch.nn.Linear) and backbone is not None
                   and _logits_are_head_of_hidden(model, backbone, head, device))
    with torch.inference_mode():
        for start, end in bounds:
            chunk = items[start:end]
            if all(len(x) == 1 for _, _, conts in chunk for x in conts):
                # Every label is one token: its log-probability is read at the context's last
                # position, so the contexts alone are run, right-padded and without a mask
                # (causal attention never looks right, so padding after a row changes nothing
                # before it; sdpa can take its fastest causal kernel).
                _score_single_tokens(model, chunk, pad, out, device, backbone if hidden_only
                                     else None, head)
                continue
            width = max(len(c) + sum(len(x) for x in conts) for _, c, conts in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            pos = torch.zeros((len(chunk), width), dtype=torch.long)
            seg = torch.full((len(chunk), width), -2, dtype=torch.long)  # -2 pad, -1 context
            rows_at, cols_at, targets, owner = [], [], [], []
            for r, (i, ctx, conts) in enumerate(chunk):
                n_c = len(ctx)
                ids[r, :n_c] = torch.tensor(ctx)
                pos[r, :n_c] = torch.arange(n_c)
                seg[r, :n_c] = -1
                at = n_c
                for j, cont in enumerate(conts):
                    m = len(cont)
                    ids[r, at:at + m] = torch.tensor(cont, dtype=torch.long)
                    pos[r, at:at + m] = torch.arange(n_c, n_c + m)
                    seg[r, at:at + m] = j
                    # token t of the label is predicted at the context's last position (t = 0)
                    # or at the label's own previous token
                    for t in range(m):
                        rows_at.append(r)
                        cols_at.append(n_c - 1 if t == 0 else at + t - 1)
                        targets.append(cont[t])
                        owner.append((i, j))
                    at += m
                pos[r, at:] = torch.arange(width - at)
            q = torch.arange(width)
            allowed = (q[None, :, None] >= q[None, None, :]) & (
                (seg[:, None, :] == -1) | (seg[:, None, :] == seg[:, :, None]))
            mask = allowed[:, None]  # (rows, 1, width, width), True = may attend
            if impl == "eager":  # eager adds the mask to the scores
                mask = torch.zeros(mask.shape, dtype=dtype).masked_fill_(
                    ~mask, torch.finfo(dtype).min)
            kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device),
                      "position_ids": pos.to(device), "use_cache": False}
            r_idx = torch.tensor(rows_at, device=device)
            c_idx = torch.tensor(cols_at, device=device)
            if hidden_only:
                hid = backbone(**kwargs).last_hidden_state[r_idx, c_idx]
                logits = head(hid)
            else:
                logits = model(**kwargs).logits[r_idx, c_idx]
            logp = torch.log_softmax(logits.float(), dim=-1)
            picked = logp.gather(1, torch.tensor(targets, device=device)[:, None])[:, 0]
            values = picked.double().cpu().numpy()
            for (i, j), v in zip(owner, values, strict=True):
                out[i, j] += v
    return out


def _score_single_tokens(model: Any, chunk: list[tuple[int, list[int], list[list[int]]]],
                         pad: int, out: np.ndarray, device: Any, backbone: Any | None,
                         head: Any) -> None:
    """Fill ``out[item, :]`` for items whose every label continuation is a single token.

    Args:
        chunk: (item, context ids, [one-token continuation per label]).
        backbone: run it and ``head`` on the last context positions only (no full logits),
            or None to take the model's logits there.
    """
    import torch

    width = max(len(ctx) for _, ctx, _ in chunk)
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    for r, (_, ctx, _) in enumerate(chunk):
        ids[r, :len(ctx)] = torch.tensor(ctx)
    rows = torch.arange(len(chunk), device=device)
    last = torch.tensor([len(ctx) - 1 for _, ctx, _ in chunk], device=device)
    kwargs = {"input_ids": ids.to(device), "use_cache": False}
    if backbone is not None:
        logits = head(backbone(**kwargs).last_hidden_state[rows, last])
    else:
        logits = model(**kwargs).logits[rows, last]
    logp = torch.log_softmax(logits.float(), dim=-1)                  # (items, vocab)
    targets = torch.tensor([[c[0] for c in conts] for _, _, conts in chunk], device=device)
    values = logp.gather(1, targets).double().cpu().numpy()          # (items, labels)
    for r, (i, _, _) in enumerate(chunk):
        out[i] = values[r]


def _logits_are_head_of_hidden(model: Any, backbone: Any, head: Any, device: Any) -> bool:
    """Whether ``model(x).logits == head(backbone(x).last_hidden_state)`` (no softcap or scale
    in between), checked on 8 tokens. False when ``backbone`` gives no hidden states: a
    wrapper such as ``peft.PeftModel`` forwards ``base_model_prefix`` to the model it wraps,
    so its "backbone" is the whole causal LM."""
    import torch

    ids = torch.arange(8, device=device)[None] % int(head.weight.shape[0])
    with torch.inference_mode():
        ref = model(input_ids=ids, use_cache=False).logits.float()
        hidden = getattr(backbone(input_ids=ids, use_cache=False), "last_hidden_state", None)
        if hidden is None:
            return False
        mine = head(hidden).float()
    return float((ref - mine).abs().max()) <= 1e-3 * (float(ref.abs().max()) + 1.0)


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shape kept."""
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
