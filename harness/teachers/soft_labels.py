"""Soft labels: the teacher's top-k log-probabilities at every token of its answer.

``generate.soft_labels: {top_k: K}`` asks every teacher that can return them for the
log-probabilities of the tokens it generates. The provider puts every generated token in
``Completion.extra[TOKENS_KEY]`` (:func:`from_scores` for the local ``hf`` teacher,
:func:`from_openai` for an endpoint's ``logprobs.content``), and
:func:`harness.teachers.parse.candidate_from` keeps the tokens that write the answer's value
(:func:`answer_logprobs`) as the candidate's ``answer_logprobs``: the stored form of the data
contract (docs/data-contract.md).

The per-completion form in ``extra`` (cached with the answer)::

    {"tokenizer": str,           # tokenizer_identity(), or "endpoint:<model>"
     "text": str,                # the generated text the tokens spell
     "starts": [int, ...],       # per token: character offset in ``text`` where it starts
     "tokens": [{"id": int | None, "text": str, "logprob": float | None,
                 "top": [{"id": int | None, "text": str, "logprob": float}, ...]}, ...]}

A token that ends inside a multi-byte character starts where the character does and spells
nothing until the token that completes it (zero width), so offsets are always whole characters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.teachers.providers.logprob_labels import (
    answer_value_span,
    measured_logprob,
    token_bytes,
)

#: Where a provider puts the generated tokens' log-probabilities in ``Completion.extra``.
TOKENS_KEY = "token_logprobs"
#: Where the local ``hf`` teacher puts a scored answer's tokens (``answer_from: label_scores``):
#: the winning choice's tokens with the distribution of constrained decoding over the choices,
#: its whole ``text`` the value (:func:`bare_answer_logprobs`).
SCORED_KEY = "scored_token_logprobs"
#: The candidate key of the stored answer tokens (data contract extension).
CANDIDATE_KEY = "answer_logprobs"
#: Most alternatives per token an endpoint returns (OpenAI's ``top_logprobs`` limit).
MAX_TOP_K = 20


def tokenizer_identity(tok: Any) -> str:
    """A tokenizer's identity for soft labels: ``vocab-sha256:<hex>``, the SHA-256 of its
    vocabulary (every token string and its id, added tokens included, sorted by id as
    compact JSON). Two tokenizers with the same identity give a token id the same meaning, which
    is what a KL over ids needs; a student computes it the same way from its own tokenizer."""
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    blob = json.dumps(vocab, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return "vocab-sha256:" + hashlib.sha256(blob).hexdigest()


def decoded_starts(tok: Any, ids: Sequence[int], text: str) -> list[int]:
    """Per token of ``ids``, the character offset in ``text`` (their decoding, special tokens
    skipped) where it starts: the length of the decoded prefix before it. A prefix that ends
    inside a character (decoded with a trailing U+FFFD) or that is not a prefix of ``text``
    (a tokenizer that cleans up spaces) keeps the previous offset, so offsets never decrease.
    O(n^2) decoding for n tokens: a few milliseconds at a generation budget of hundreds."""
    starts, last = [], 0
    for i in range(len(ids)):
        prefix = str(tok.decode(list(ids[:i]), skip_special_tokens=True))
        if not prefix.endswith("\ufffd") and text.startswith(prefix):
            last = max(last, len(prefix))
        starts.append(last)
    return starts


def from_scores(tok: Any, ids: Sequence[int], text: str, chosen: Sequence[float],
                top_ids: Sequence[Sequence[int]], top_logprobs: Sequence[Sequence[float]]
                ) -> dict[str, Any]:
    """The ``extra`` form (module docstring) of a local model's generated tokens.

    Args:
        tok: the model's tokenizer.
        ids: the generated token ids, n of them (end token included where one was generated).
        text: their decoding, special tokens skipped (the completion's text).
        chosen: per token, log P(token) under the model (natural log, <= 0), shape (n,).
        top_ids, top_logprobs: per token the K most likely ids and their log-probabilities,
            most likely first, shape (n, K).
    """
    flat = sorted({int(i) for i in ids} | {int(i) for row in top_ids for i in row})
    spelled = dict(zip(flat, tok.batch_decode([[i] for i in flat]), strict=True))
    tokens = [{"id": int(t), "text": spelled[int(t)], "logprob": float(lp),
               "top": [{"id": int(a), "text": spelled[int(a)], "logprob": float(alp)}
                       for a, alp in zip(ai, alps, strict=True)]}
              for t, lp, ai, alps in zip(ids, chosen, top_ids, top_logprobs, strict=True)]
    return {"tokenizer": tokenizer_identity(tok), "text": text,
            "starts": decoded_starts(tok, ids, text), "tokens": tokens}


def from_openai(logprobs: Any, model: str | None) -> dict[str, Any] | None:
    """The ``extra`` form of a chat choice's ``logprobs`` (``content[*]``: ``token``,
    ``logprob``, ``bytes``, ``top_logprobs``); None without tokens. Ids are unknown (None) and
    the tokenizer is named ``endpoint:<model>``: no local student can share it by id. The
    alternatives keep the endpoint's order re-sorted most likely first, sentinels and repeats
    dropped."""
    content = getattr(logprobs, "content", None)
    if not content:
        return None
    data = [token_bytes(entry) for entry in content]
    joined, offsets = b"", []
    for d in data:
        offsets.append(len(joined))
        joined += d
    # "ignore": a prefix ending inside a character counts only its whole characters, so a
    # token that splits one starts where the character does (zero width, module docstring)
    text = joined.decode("utf-8", "ignore")
    starts = [len(joined[:b].decode("utf-8", "ignore")) for b in offsets]
    tokens = []
    for entry in content:
        top: dict[str, float] = {}
        for alt in getattr(entry, "top_logprobs", None) or []:
            alt_text = str(getattr(alt, "token", "") or "")
            alp = measured_logprob(getattr(alt, "logprob", None))
            if alp is not None and alt_text not in top:
                top[alt_text] = alp
        tokens.append({"id": None, "text": str(getattr(entry, "token", "") or ""),
                       "logprob": measured_logprob(getattr(entry, "logprob", None)),
                       "top": [{"id": None, "text": t, "logprob": lp}
                               for t, lp in sorted(top.items(), key=lambda kv: -kv[1])]})
    return {"tokenizer": f"endpoint:{model or 'unknown'}", "text": text, "starts": starts,
            "tokens": tokens}


def answer_logprobs(data: Mapping[str, Any] | None, top_k: int) -> dict[str, Any] | None:
    """The stored soft labels of one answer: the tokens that write the answer's value.

    The value is located in ``data["text"]`` as the answer parser reads it
    (:func:`~harness.teachers.providers.logprob_labels.answer_value_span`: a string's body as
    written, JSON escapes kept, or another JSON value's text). The tokens kept run from the one
    holding the value's first character to the one holding its last; the first and last may
    spill over (the opening or closing quote, ``"}``).

    Returns:
        ``{"tokenizer", "top_k", "text", "value_start", "value_end", "tokens", "starts"}``:
        ``text`` is what the kept tokens spell, ``text[value_start:value_end]`` the value
        (character offsets), ``starts`` where each kept token starts in ``text``; each token
        keeps at most ``top_k`` alternatives. None when ``data`` is
        missing or malformed, or no value is written in JSON form (plain-text salvage) or it
        is empty.
    """
    if not data:
        return None
    try:
        text, starts, tokens = str(data["text"]), list(data["starts"]), list(data["tokens"])
    except (KeyError, TypeError):
        return None  # a cached answer from another version: no soft labels, not a crash
    span = answer_value_span(text)
    if span is None or len(starts) != len(tokens):
        return None
    lo, hi, _ = span
    ends = [*starts[1:], len(text)]
    # a zero-width token at the value's start begins its first (split) character
    keep = [i for i, (s, e) in enumerate(zip(starts, ends, strict=True))
            if s < hi and (e > lo or s == e == lo)]
    if not keep:
        return None
    first, last = keep[0], keep[-1]
    return _stored(data, top_k, text, lo, hi, tokens[first:last + 1], starts[first:last + 1],
                   ends[last])


def _stored(data: Mapping[str, Any], top_k: int, text: str, lo: int, hi: int,
            tokens: Sequence[Mapping[str, Any]], starts: Sequence[int], end: int
            ) -> dict[str, Any]:
    """The stored form (:func:`answer_logprobs`) of ``tokens`` (starting at ``starts`` in
    ``text``, the last ending at ``end``) around the value ``text[lo:hi]``: the text they spell,
    offsets relative to it, at most ``top_k`` alternatives per token."""
    at = int(starts[0])
    return {"tokenizer": str(data.get("tokenizer") or "unknown"), "top_k": top_k,
            "text": text[at:end], "value_start": lo - at, "value_end": hi - at,
            "tokens": [{**t, "top": list(t.get("top") or [])[:top_k]} for t in tokens],
            "starts": [int(x) - at for x in starts]}


def bare_answer_logprobs(data: Mapping[str, Any] | None, top_k: int) -> dict[str, Any] | None:
    """The stored soft labels of a scored answer (:data:`SCORED_KEY`): the tokens spell the
    answer itself, no JSON around it, so the value is the whole ``text``. Same stored form as
    :func:`answer_logprobs`, plus ``choices`` (every label's probability) when the teacher gave
    them; None when ``data`` is missing, malformed or empty."""
    if not data:
        return None
    try:
        text, starts, tokens = str(data["text"]), list(data["starts"]), list(data["tokens"])
    except (KeyError, TypeError):
        return None
    if not text or not tokens or len(starts) != len(tokens):
        return None
    out = _stored(data, top_k, text, 0, len(text), tokens, starts, len(text))
    if isinstance(data.get("choices"), Mapping):
        out["choices"] = {str(c): float(p) for c, p in data["choices"].items()}
    return out
