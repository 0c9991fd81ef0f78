"""Label probabilities from an endpoint's token log-probabilities, measured where the teacher
wrote its answer.

Used by the ``openai`` provider when a teacher sets ``logprobs: true`` for a label unit, whatever
its ``answer_from``. It follows the OpenAI chat completions reference
(https://platform.openai.com/docs/api-reference/chat/object, ``choices[].logprobs.content``): one
entry per generated token with ``token``, ``logprob`` (the chosen token's log-probability, or
``-9999.0`` when it is not among the 20 most likely), ``bytes`` (its UTF-8 bytes, which rebuild
characters split over tokens) and ``top_logprobs`` (the most likely tokens at that position; the
chosen one is not always among them, and fewer than asked may come back).

How a figure is measured:

1. The generated text is rebuilt from the tokens' bytes and the answer's value is located the
   way :mod:`harness.teachers.parse` reads it: the ``"answer"`` string of the first JSON object
   (in a code fence or not, text before it allowed, whitespace around ``:`` tolerated), else a
   (truncated) ``"answer": "`` anywhere. The value must start at a token boundary: a token that
   runs from the opening quote into the value gives no figure.
2. Along the generated tokens from there, the written label's probability is the product of the
   chosen tokens' probabilities up to the token that closes its string: the exact probability of
   the path the teacher took, so labels sharing a first token (``card_arrival``,
   ``card_linking``) are told apart by what was actually written, never by the labels' order.
3. At each of those positions an alternative token counts, with the probability of the path up
   to it, for the one label it is still consistent with (compared case-insensitively, leading
   whitespace ignored, as the label parser does); an alternative consistent with several labels
   (a shared prefix) or none counts for nobody. An alternative that only starts a label is
   counted as that label (the endpoint does not return what would follow it), so an
   alternative's figure is an upper estimate; the written label's is measured.
4. Nothing is renormalised: the probabilities are the measured mass, their sum is at most 1, and
   what the top alternatives do not show stays unassigned. A label with no measured mass is left
   out of the result rather than given 0.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

from harness.answers import find_json_object

#: ``logprob`` at or below this is the reference's "not among the top 20" sentinel (-9999.0):
#: no measured probability.
UNMEASURED_LOGPROB = -9999.0
#: The answer's key and colon, up to its value (of any JSON type; whitespace allowed).
_ANSWER_KEY = re.compile(r'"answer"\s*:\s*')
#: A (possibly truncated) string answer without a JSON object around it: the value is group 1,
#: as :func:`harness.teachers.parse.plain_answer` reads it.
_LOOSE_VALUE = re.compile(r'"answer"\s*:\s*"((?:[^"\\]|\\.)*)', re.DOTALL)
#: Codec error handler that keeps one character per undecodable byte, so character offsets map
#: back to byte offsets exactly.
_BYTES = "surrogateescape"


def token_bytes(entry: Any) -> bytes:
    """A token's UTF-8 bytes: its ``bytes`` list where given (it rebuilds a character split over
    tokens), else its text."""
    raw = getattr(entry, "bytes", None)
    if isinstance(raw, list) and raw:
        try:
            return bytes(raw)
        except (TypeError, ValueError):
            pass  # not a list of byte values: the text is all there is
    return str(getattr(entry, "token", "") or "").encode("utf-8", _BYTES)


def measured_logprob(value: Any) -> float | None:
    """A measured log-probability (<= 0), or None for a missing, odd or sentinel value."""
    try:
        lp = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(lp) or lp <= UNMEASURED_LOGPROB:
        return None
    return min(lp, 0.0)  # endpoints round a certain token to a tiny positive number


def _prob(logprob: Any) -> float | None:
    """The probability of a log-probability, or None for a missing or sentinel value."""
    lp = measured_logprob(logprob)
    return None if lp is None else math.exp(lp)


def _alternatives(entry: Any, chosen: bytes) -> list[tuple[bytes, float]]:
    """The (bytes, probability) of a position's top alternatives, the chosen token, repeats
    and sentinel values left out."""
    seen, out = {chosen}, []
    for alt in getattr(entry, "top_logprobs", None) or []:
        data, p = token_bytes(alt), _prob(getattr(alt, "logprob", None))
        if data not in seen and p is not None:
            seen.add(data)
            out.append((data, p))
    return out


def answer_value_start(text: str) -> int | None:
    """The character offset in ``text`` where the answer's string value starts (just after its
    opening quote), found as :func:`harness.teachers.parse.parse_text` reads the answer; None
    when the text has no string answer there."""
    span = answer_value_span(text)
    return span[0] if span is not None and span[2] else None


def answer_value_span(text: str) -> tuple[int, int, bool] | None:
    """Where the answer's value is written in ``text``, found as
    :func:`harness.teachers.parse.parse_text` reads the answer: ``(start, end, is_string)``,
    character offsets. For a string value the span is its body between the quotes, as written
    (JSON escapes kept); for any other JSON value (an object, ``null``, a number) its JSON text.
    A truncated ``"answer": "...`` without a JSON object spans to the end of its (unclosed)
    string. None when no answer value is written in JSON form (the parser's plain-text salvage).
    """
    found = find_json_object(text)
    if found is None:
        return _loose_value_span(text)
    obj, block = found.value, found.block
    if "answer" not in obj:  # the parser then salvages from the plain text
        return _loose_value_span(text)
    decoder = json.JSONDecoder()
    for m in _ANSWER_KEY.finditer(block, found.start, found.end):
        try:  # the key's value must be the answer the parser reads (not a nested one)
            value, end = decoder.raw_decode(block, m.end())
        except ValueError:
            continue
        if value == obj["answer"] and type(value) is type(obj["answer"]):
            string = isinstance(value, str)
            return (found.offset + m.end() + string, found.offset + end - string, string)
    return None


def _loose_value_span(text: str) -> tuple[int, int, bool] | None:
    m = _LOOSE_VALUE.search(text)
    return (m.start(1), m.end(1), True) if m else None


@functools.lru_cache(maxsize=64)
def _labels(choices: tuple[str, ...]) -> _Labels:
    """The index of a unit's labels (built once per unit)."""
    return _Labels(choices)


class _Labels:
    """The labels' written forms inside a JSON string (as JSON writes them, with or without
    ``\\u`` escapes), case-folded and sorted, so the labels a written prefix can still become
    are found by bisection (a unit may have hundreds of labels and 20 alternatives a token)."""

    def __init__(self, choices: Sequence[str]) -> None:
        pairs = sorted({(form.casefold(), c) for c in choices
                        for form in (json.dumps(c, ensure_ascii=False)[1:-1], json.dumps(c)[1:-1])})
        self.forms = [f for f, _ in pairs]
        self.labels = [c for _, c in pairs]
        self.exact: dict[str, set[str]] = {}
        for f, c in pairs:
            self.exact.setdefault(f, set()).add(c)
        self.all = set(choices)

    def consistent(self, written: bytes) -> dict[str, str]:
        """The labels the value bytes written so far can still be: ``open`` (the label
        continues, or only whitespace follows it) or ``closed`` (the label, then the string's
        closing quote). Compared as the label parser does: leading whitespace dropped,
        case-folded; a character split over tokens is left out until complete."""
        t = written.decode("utf-8", "ignore").lstrip().casefold()
        if not t:
            return dict.fromkeys(self.all, "open")
        head, quote, _ = t.partition('"')
        if quote:
            return dict.fromkeys(self.exact.get(head.rstrip(), ()), "closed")
        lo = bisect.bisect_left(self.forms, t)
        hi = bisect.bisect_left(self.forms, t + "\U0010ffff", lo)
        out = dict.fromkeys(self.labels[lo:hi], "open")
        if t != t.rstrip():  # the whole label, then whitespace before the closing quote
            out.update(dict.fromkeys(self.exact.get(t.rstrip(), ()), "open"))
        return out


def label_probs_from_logprobs(logprobs: Any, choices: Sequence[str]) -> dict[str, float] | None:
    """The measured probabilities of ``choices`` from a chat choice's ``logprobs`` (see the
    module docstring); None when no label could be measured (no logprobs, no string answer in
    the generated text, a token straddling the value's start, nothing consistent with a label).

    Args:
        logprobs: ``choices[0].logprobs`` of a chat completion (its ``content`` list is read).
        choices: the unit's labels.

    Returns:
        label -> probability (0..1) for the labels with measured mass only; the sum is at most 1.
    """
    content = getattr(logprobs, "content", None)
    if not content or not choices:
        return None
    data = [token_bytes(entry) for entry in content]
    starts = [0]
    for d in data:
        starts.append(starts[-1] + len(d))
    generated = b"".join(data).decode("utf-8", _BYTES)
    value_at = answer_value_start(generated)
    if value_at is None:
        return None
    byte_at = len(generated[:value_at].encode("utf-8", _BYTES))
    k = bisect.bisect_left(starts, byte_at)
    if k >= len(data) or starts[k] != byte_at:
        return None  # a token straddles the opening quote and the value, or nothing follows
    labels = _labels(tuple(choices))
    mass = dict.fromkeys(choices, 0.0)
    path, written = 1.0, b""  # the probability of the generated path so far, the value so far
    for entry, chosen in zip(content[k:], data[k:], strict=True):
        for alt, p in _alternatives(entry, chosen):
            fits = labels.consistent(written + alt)
            if len(fits) == 1:  # a shared prefix (several) or no label (none) counts for nobody
                mass[next(iter(fits))] += path * p
        prob = _prob(getattr(entry, "logprob", None))
        fits = labels.consistent(written + chosen)
        closed = [label for label, fit in fits.items() if fit == "closed"]
        if len(closed) == 1 and prob is not None:  # two: labels equal but for case
            mass[closed[0]] += path * prob
        if closed or prob is None or not fits or b'"' in chosen:
            break  # the value is written (or left the labels, or the path is not measured)
        path *= prob
        written += chosen
    measured = {c: min(1.0, m) for c, m in mass.items() if m > 0}
    return measured or None
