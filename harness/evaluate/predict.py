"""Student predictions: label scoring by log-likelihood, and greedy generation (torch only).

Label units are scored, not generated: for each item and each declared label, the sum of
log-probabilities of the continuation ``" " + label`` after ``prompt + "\\n" + marker``; the
softmax over labels is the confidence. Context and continuation are split the way lm-eval does
(encode the whole string, take the tokens past the context's), so ``harness lm-eval`` agrees.

Other units are generated greedily, stopping at EOS or at the end of the answer line, and the
answer is parsed after the marker (:func:`harness.answers.parse_answer`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.answers import parse_answer


def _pairs(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    return ctx, whole[len(ctx):]


def score_labels(model: Any, tokenizer: Any, prompts: list[str], labels: list[str], marker: str,
                 device: Any, batch_size: int = 64, max_len: int = 512) -> np.ndarray:
    """Log-likelihood of each label per prompt.

    Returns:
        (n_prompts, n_labels) summed log-probabilities of the label continuation tokens.
    """
    import torch

    rows: list[tuple[int, int, list[int], int]] = []  # (item, label, ids, n_continuation)
    for i, prompt in enumerate(prompts):
        for j, lab in enumerate(labels):
            ctx, cont = _pairs(tokenizer, prompt + "\n" + marker, " " + lab)
            seq_ids = (ctx + cont)[-max_len:]
            rows.append((i, j, seq_ids, len(cont)))
    out = np.zeros((len(prompts), len(labels)), dtype=np.float64)
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]))  # length-bucketed
    pad = tokenizer.pad_token_id
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = [rows[r] for r in order[start:start + batch_size]]
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
    return out


def softmax_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shape kept."""
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS and every vocabulary token whose text contains a newline (end of the answer line)."""
    ids = {tokenizer.eos_token_id}
    for tok, idx in tokenizer.get_vocab().items():
        if "\n" in tokenizer.convert_tokens_to_string([tok]):
            ids.add(idx)
    return sorted(i for i in ids if i is not None)


def generate(model: Any, tokenizer: Any, prompts: list[str], device: Any, max_new_tokens: int,
             batch_size: int = 32, max_len: int = 512) -> list[str]:
    """Greedy generations (the text after ``prompt + "\\n"``), batched with left padding.

    Generation stops at EOS or at the first token containing a newline, so only the answer
    line is produced whatever the target format.
    """
    import torch

    stops = stop_token_ids(tokenizer)
    encoded = tokenizer([p + "\n" for p in prompts], add_special_tokens=False)["input_ids"]
    encoded = [e[-(max_len - max_new_tokens):] for e in encoded]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    texts: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for k, i in enumerate(idx):
                seq = encoded[i]
                ids[k, width - len(seq):] = torch.tensor(seq)
                mask[k, width - len(seq):] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=stops, pad_token_id=pad)
            for k, i in enumerate(idx):
                texts[i] = tokenizer.decode(out[k, width:], skip_special_tokens=True)
    return texts


def parse_answers(texts: list[str], marker: str) -> list[str | None]:
    """The answer of each generation (None when the marker is missing)."""
    return [parse_answer(t, marker) for t in texts]
