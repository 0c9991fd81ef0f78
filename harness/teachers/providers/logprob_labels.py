"""Label probabilities from an endpoint's top log-probabilities: where a label's answer token
is in the generated text, and how its alternatives' mass is shared among the labels.

Used by the ``openai`` provider when a teacher sets ``logprobs: true`` for a label unit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def label_probs_from_top_logprobs(top: Sequence[tuple[str, float]], choices: Sequence[str]
                                  ) -> dict[str, float] | None:
    """Probabilities of ``choices`` from the first answer token's top log-probabilities.

    A top token counts for a choice when, stripped and lower-cased, it is a non-empty prefix of
    the choice (``"Pos"`` for ``positive``); a token that fits several choices is shared equally.
    The mass found is normalised over the choices (sums to 1). None when no top token fits any
    choice (the answer did not start with a label).
    """
    mass = dict.fromkeys(choices, 0.0)
    for token, logprob in top:
        t = token.strip().lower()
        if not t:
            continue
        fits = [c for c in choices if c.lower().startswith(t)]
        for c in fits:
            mass[c] += math.exp(logprob) / len(fits)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {c: m / total for c, m in mass.items()}


def answer_token_top(choice: Any, answer_prefix: str = "") -> list[tuple[str, float]]:
    """The (token, logprob) alternatives of the token where the answer starts, or [] when not
    returned.

    Without ``answer_prefix`` that is the first generated token. With one (a JSON answer,
    ``{"answer": "``), it is the first token after the generated text has written the prefix
    (whitespace ignored, so ``{ "answer" : "`` counts); [] when the text never writes it or a
    token runs from the prefix into the value.
    """
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return []
    if not answer_prefix:
        return [(t.token, float(t.logprob)) for t in (content[0].top_logprobs or [])]
    want = "".join(answer_prefix.split())
    seen = ""
    for k, tok in enumerate(content):
        seen += "".join(str(tok.token).split())
        if seen.endswith(want) and k + 1 < len(content):
            return [(t.token, float(t.logprob)) for t in (content[k + 1].top_logprobs or [])]
        if want in seen:  # a token ran past the prefix into the value: no clean answer token
            return []
    return []
