"""Soft targets in training: the teacher's top-k distribution on the student's answer tokens.

A ``soft_targets: topk`` cell's samples carry the teacher's answer tokens placed on the target
(``soft_labels``, :mod:`harness.compose.soft_targets`). Here, with the student's tokenizer,
each placed teacher token is matched to the student's target token that spells the same
characters, and its alternatives become student token ids:

- a student token matches a placed teacher token when both end at the same character and the
  student's token covers the teacher token's value characters; the student's characters before
  them (``sp``, e.g. the space after the answer marker in `` Paris``) replace the teacher's
  spilled prefix (``pre``, e.g. the opening quote in ``"Paris``) in every alternative, so
  ``"London`` becomes `` London``. Alternatives that do not start with ``pre`` are dropped;
- an alternative's student id is its id when nothing was re-spelled and the ids are the
  teacher's (the tokenizers share a vocabulary: ``harness validate`` checks), else the one
  token its re-spelled text encodes to (none: dropped);
- the teacher's own token must map to the student's token at that place (else the position
  trains hard); duplicates keep their largest log-probability; the kept log-probabilities are
  renormalised (softmax), which is the top-k distribution renormalised.

A scored label's soft labels (``choices``: every label's probability, from a label-scoring
teacher) are regrouped by the student's own tokens instead (:func:`choice_soft_labels`): exact
whatever tokenizer the teacher split the bare label with.

The loss at such a position is ``(1 - w) * CE + w * KL(p_teacher || q_student)`` with ``q``
the student's full softmax (its log-probabilities at the kept ids) and ``w`` the field set's
``soft_weight``; every other target token keeps plain cross-entropy. Temperature 1: the stored
log-probabilities are the teacher's own (sampling temperature aside).

Standard library at module level, torch inside functions (the GPU worker's path, which must
not need msgspec: ``tests/test_worker_imports.py``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.constrained import next_token_masses


@dataclass(frozen=True)
class SoftToken:
    """A target token's soft label: where it is and the teacher's distribution there.

    Attributes:
        index: the token's index in its example's ``input_ids`` (prompt + target + eos).
        ids: student token ids, K of them (distinct).
        probs: their probabilities, (K,), summing to 1.
    """

    index: int
    ids: tuple[int, ...]
    probs: tuple[float, ...]


class Speller:
    """Student token ids of single-token texts, cached (one tokenizer call per distinct text).

    Args:
        tokenizer: the student's tokenizer.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[str, int | None] = {}

    def __call__(self, text: str) -> int | None:
        """The id of the one token ``text`` encodes to, or None (several tokens, or none)."""
        if text not in self.cache:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
            self.cache[text] = int(ids[0]) if len(ids) == 1 else None
        return self.cache[text]


def token_spans(tokenizer: Any, ids: Sequence[int], text: str, until: int
                ) -> list[tuple[int, int]]:
    """Character spans in ``text`` of the first tokens of ``ids`` (its encoding), up to the
    first that ends at or after ``until``, from the lengths of decoded prefixes (a prefix that
    is not a prefix of ``text``, e.g. one ending inside a character, stops the walk).

    Returns:
        ``[(start, end), ...]`` for tokens 0..m-1; O(m^2) decoding, m small (the answer comes
        first in a target).
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for j in range(len(ids)):
        prefix = str(tokenizer.decode(list(ids[:j + 1]), skip_special_tokens=True,
                                      clean_up_tokenization_spaces=False))
        if prefix.endswith("\ufffd") or not text.startswith(prefix):
            break
        spans.append((start, len(prefix)))
        start = len(prefix)
        if start >= until:
            break
    return spans


def place_soft_labels(soft_json: str, target: str, target_ids: Sequence[int], offset: int,
                      speller: Speller) -> list[SoftToken]:
    """The soft labels of one example on the student's target tokens (module docstring).

    Args:
        soft_json: the sample's ``soft_labels`` (compose's aligned form).
        target: the target text; ``target_ids`` its student tokens (as trained, possibly cut).
        offset: index in the example's ``input_ids`` of ``target_ids[0]``.
        speller: the student's text -> id lookup.

    Returns:
        one :class:`SoftToken` per matched target token, in order.
    """
    aligned = json.loads(soft_json)
    if aligned.get("choices"):
        return choice_soft_labels(aligned, target, target_ids, offset, speller.tokenizer)
    placed = aligned["tokens"]
    if not placed:
        return []
    by_end = {int(p["end"]): p for p in placed}
    value_start = int(aligned.get("value_start", min(int(p["start"]) for p in placed)))
    spans = token_spans(speller.tokenizer, target_ids, target, max(by_end))
    out = []
    for j, (x, y) in enumerate(spans):
        p = by_end.get(y)
        # The student's token may start before the teacher's only where the value starts (the
        # space after the marker): inside the value it would fold earlier value characters,
        # whose probability the teacher's distribution here does not include.
        if p is None or int(p["start"]) < x or (int(p["start"]) > x
                                                and int(p["start"]) != value_start):
            continue
        sp, pre = target[x:int(p["start"])], str(p["pre"])
        dist = _distribution(p, sp, pre, speller)
        if dist is None or int(target_ids[j]) not in dist:
            continue  # the teacher's token is not the student's here: train it hard
        ids = tuple(dist)
        lps = [dist[i] for i in ids]
        top = max(lps)
        z = math.log(sum(math.exp(v - top) for v in lps)) + top
        out.append(SoftToken(offset + j, ids, tuple(math.exp(v - z) for v in lps)))
    return out


def choice_soft_labels(aligned: dict[str, Any], target: str, target_ids: Sequence[int],
                       offset: int, tokenizer: Any) -> list[SoftToken]:
    """Soft labels of a scored label answer (``choices`` in the aligned form): the teacher's
    label distribution regrouped by the *student's* tokens of the target.

    Each label is written where the value stands (``target[:value_start] + label``) and
    tokenised by the student; from the first token that reaches into the value on, each target
    token gets the constrained distribution: the labels that share the target's tokens before
    it, grouped by their token there, each group weighing its labels' probabilities,
    renormalised. Exact whatever the teacher's tokenizer (its bare ``b`` + ``illing`` and the
    student's `` billing`` both carry P(billing)). A label whose tokens before the value differ
    from the target's is left out; nothing is placed when the target's own value tokens are not
    the label's (e.g. a merge across the value's end).

    Returns:
        one :class:`SoftToken` per token of the value, in order (possibly certain ones).
    """
    choices: dict[str, float] = {str(c): float(p) for c, p in aligned["choices"].items()}
    lo, hi = int(aligned["value_start"]), int(aligned["value_end"])
    spans = token_spans(tokenizer, target_ids, target, hi)
    j0 = next((j for j, (_, y) in enumerate(spans) if y > lo), None)
    if j0 is None or not spans or spans[-1][1] < hi:
        return []
    labels = list(choices)
    encoded = tokenizer([target[:lo] + c for c in labels], add_special_tokens=False)["input_ids"]
    head = list(target_ids[:j0])
    split = {c: list(ids[j0:]) for c, ids in zip(labels, encoded, strict=True)
             if list(ids[:j0]) == head}
    won = split.get(target[lo:hi])
    if not won or list(target_ids[j0:j0 + len(won)]) != won:
        return []
    out = []
    for k, t in enumerate(won):
        mass = next_token_masses(split, choices, won[:k])
        z = sum(mass.values())
        if z <= 0 or mass.get(t, 0.0) <= 0:
            break  # the teacher gave the target's label no probability: hard from here
        ids_k = tuple(sorted(mass, key=lambda i: -mass[i]))
        out.append(SoftToken(offset + j0 + k, ids_k, tuple(mass[i] / z for i in ids_k)))
    return out


def _distribution(p: dict[str, Any], sp: str, pre: str, speller: Speller
                  ) -> dict[int, float] | None:
    """Student id -> teacher log-probability for one placed token (its alternatives and the
    chosen token, re-spelled with ``sp`` for ``pre``); None when none maps."""
    same = sp == "" and pre == ""
    entries = [(str(t), float(lp), i) for t, lp, i in p["top"]]
    if p.get("logprob") is not None:
        entries.append((str(p["text"]), float(p["logprob"]), p.get("id")))
    dist: dict[int, float] = {}
    for text, lp, tid in entries:
        if not text.startswith(pre):
            continue
        sid = int(tid) if same and tid is not None else speller(sp + text[len(pre):])
        if sid is not None and lp > dist.get(sid, -math.inf):
            dist[sid] = lp
    return dist or None


def soft_token_losses(logits: Any, pos: Any, ids: Any, probs: Any) -> Any:
    """KL(p || q) at the soft positions.

    Args:
        logits: (rows, seq, vocab) student logits.
        pos: (n,) long, flat indices into the shifted positions (rows * (seq - 1)).
        ids: (n, K) long student ids (padding: any id with probability 0).
        probs: (n, K) float32 teacher probabilities (0 in padding).

    Returns:
        (n,) float32: ``sum_k p_k (log p_k - log q_k)``, q the student's softmax.
    """
    import torch

    shifted = logits[:, :-1]
    rows = shifted.reshape(-1, shifted.size(-1)).index_select(0, pos).float()
    logq = torch.log_softmax(rows, dim=-1).gather(1, ids)
    terms = torch.where(probs > 0, probs * (torch.log(probs.clamp_min(1e-30)) - logq),
                        torch.zeros_like(logq))
    return terms.sum(-1)


def soft_batch(soft: Sequence[Sequence[SoftToken]], placed: Sequence[tuple[int, int]],
               width: int) -> dict[str, Any] | None:
    """The soft-target tensors of one micro-batch, or None without soft labels.

    Args:
        soft: per example of the batch, its soft tokens.
        placed: per example, ``(row, start)``: its row and where it starts in that row.
        width: the batch's sequence width.

    Returns:
        ``soft_pos`` (n,) long flat shifted positions, ``soft_ids`` (n, K) long, ``soft_probs``
        (n, K) float32, K the most alternatives of any position.
    """
    import torch

    flat = [(row * (width - 1) + at + t.index - 1, t)
            for toks, (row, at) in zip(soft, placed, strict=True) for t in toks if t.index >= 1]
    if not flat:
        return None
    k = max(len(t.ids) for _, t in flat)
    ids = torch.zeros((len(flat), k), dtype=torch.long)
    probs = torch.zeros((len(flat), k), dtype=torch.float32)
    for n, (_, t) in enumerate(flat):
        ids[n, :len(t.ids)] = torch.tensor(t.ids)
        probs[n, :len(t.probs)] = torch.tensor(t.probs)
    return {"soft_pos": torch.tensor([f for f, _ in flat], dtype=torch.long),
            "soft_ids": ids, "soft_probs": probs}
