"""Soft targets at composition: the teacher's answer tokens placed on the rendered target.

A field set with ``soft_targets: topk`` trains the tokens that write the answer towards the
teacher's top-k distribution (the candidate's ``answer_logprobs``, stored by ``harness generate``
with ``generate.soft_labels``). The teacher wrote its answer inside its own JSON
(``{"answer": "Paris"}``); the target puts the same value right after the answer marker
(``Answer: Paris``, answer first, as every template must). :func:`align` finds the value in the
target and moves every teacher token that holds value characters to target offsets, so the
training objective (:mod:`harness.train.soft_targets`), which has the student's tokenizer, can
match them to the student's own target tokens.

The aligned form (the ``soft_labels`` column of a topk cell's ``train.jsonl``; compact JSON)::

    {"tokenizer": str,                 # the teacher's tokenizer identity
     "value_start": int,               # target offset where the answer's value starts
     "choices": {label: float},        # a scored label's distribution (optional), with
     "value_end": int,                 #   the target offset where the value ends
     "tokens": [{"start": int,         # target offset of the token's first value character
                 "end": int,           # target offset after its last one
                 "pre": str,           # its characters before the value (a spilled quote), or ""
                 "id": int | None, "text": str, "logprob": float | None,   # the chosen token
                 "top": [[text, logprob, id | None], ...]},               # most likely first
                ...]}

A token that runs past the value's end (``Paris"}``) is left out: what follows the value differs
between the teacher's JSON and the target (a newline, a rationale, the end), so its alternatives
mean something else there, and the student's token at that place trains hard. Nothing is placed
when the value is not written in the target as the teacher wrote it (a JSON object the composer
compacted, a string with escapes, a correction): that sample trains hard, and the objective
counts what was aligned.

Standard library and msgspec only.
"""

from __future__ import annotations

from typing import Any

import msgspec


def value_offset(target: str, marker: str) -> int | None:
    """Where the answer starts in ``target``: after the first ``marker`` and the spaces that
    follow it (the answer contract of :mod:`harness.compose.templates`), or None without one."""
    at = target.find(marker)
    if at < 0:
        return None
    pos = at + len(marker)
    while pos < len(target) and target[pos] in " \t":
        pos += 1
    return pos


def token_starts(soft: dict[str, Any]) -> list[int] | None:
    """Each stored token's start in ``soft["text"]``: the stored ``starts``, or (older records
    without them) the running length of the tokens' texts when they spell ``text`` exactly;
    None when neither holds."""
    starts = soft.get("starts")
    if starts is not None:
        return [int(s) for s in starts]
    texts = [str(t.get("text") or "") for t in soft["tokens"]]
    if "".join(texts) != soft["text"]:
        return None
    out, at = [], 0
    for t in texts:
        out.append(at)
        at += len(t)
    return out


def align(target: str, marker: str, soft_json: str | None) -> str | None:
    """The aligned soft labels of one sample (module docstring), as compact JSON.

    Args:
        target: the rendered target text.
        marker: its unit's answer marker.
        soft_json: the candidate's ``answer_logprobs`` as compact JSON (the candidate table's
            ``soft_labels``), or None.

    Returns:
        compact JSON of ``{"tokenizer", "value_start", "tokens"}`` with at least one token,
        or None when nothing can be placed (no soft labels, the value is not in the target as
        written, or no token lies inside the value).
    """
    if not soft_json:
        return None
    soft = msgspec.json.decode(soft_json)
    text, lo, hi = str(soft["text"]), int(soft["value_start"]), int(soft["value_end"])
    value = text[lo:hi]
    pos = value_offset(target, marker)
    if pos is None or not value or not target.startswith(value, pos):
        return None
    starts = token_starts(soft)
    if starts is None:
        return None
    ends = [*starts[1:], len(text)]
    placed = []
    for tok, s, e in zip(soft["tokens"], starts, ends, strict=True):
        if e <= lo or s >= hi or e > hi or s == e:
            continue  # outside the value, past its end, or zero width (a split character)
        if str(tok.get("text") or "") != text[s:e]:
            continue  # its text does not spell its characters (part of a split character)
        cut = max(s, lo) - s  # characters of the token before the value
        placed.append({"start": pos + max(s, lo) - lo, "end": pos + e - lo,
                       "pre": text[s:s + cut], "id": tok.get("id"), "text": text[s:e],
                       "logprob": tok.get("logprob"),
                       "top": [[str(a.get("text") or ""), float(a["logprob"]), a.get("id")]
                               for a in tok.get("top") or []]})
    scored = bool(soft.get("choices")) and value in soft["choices"]
    if not placed and not scored:
        return None
    out: dict[str, Any] = {"tokenizer": soft.get("tokenizer"), "value_start": pos,
                           "tokens": placed}
    if scored:
        # a scored label: the label distribution, which the student regroups by its own
        # tokens (harness.train.soft_targets), and where the value ends in the target
        out.update(choices=soft["choices"], value_end=pos + len(value))
    return msgspec.json.encode(out).decode()
