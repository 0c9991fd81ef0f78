"""Reading answers out of text (standard library only).

The answer contract shared by the composer and the evaluator: every composed target puts the
final answer right after the unit's answer marker, and evaluation parses a generation back the
same way (:func:`parse_answer`). Teachers answer in a JSON object, found in their completion by
:func:`find_json_object` (the teacher stage's parser and its label scoring both read it). Kept
dependency-free so the GPU worker can import it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
#: Braces tried per text when looking for a JSON object (bounds the work on long garbage).
_MAX_STARTS = 64


def parse_answer(text: str, marker: str) -> str | None:
    """The text after the first ``marker`` up to the end of its line, stripped.

    Args:
        text: a target or a generation.
        marker: the unit's answer marker, e.g. ``"Answer:"``.

    Returns:
        the answer, or None when the marker does not occur.
    """
    i = text.find(marker)
    if i < 0:
        return None
    return text[i + len(marker):].split("\n", 1)[0].strip()


@dataclass(frozen=True)
class JsonObject:
    """A JSON object found in a completion: its value, and where it lies — in ``block`` (the
    text of a code fence, or the whole text), from ``start`` to ``end``, the block itself
    starting at ``offset`` in the completion's text."""

    value: dict[str, Any]
    block: str
    offset: int
    start: int
    end: int


def find_json_object(text: str) -> JsonObject | None:
    """The first JSON object in ``text``, fenced blocks first, then the text itself (at most
    :data:`_MAX_STARTS` braces tried per block: long garbage stays cheap)."""
    decoder = json.JSONDecoder()
    blocks = [(m.start(1), m.group(1)) for m in _FENCE.finditer(text)] + [(0, text)]
    for offset, block in blocks:
        for k, m in enumerate(re.finditer(r"\{", block)):
            if k >= _MAX_STARTS:
                break
            try:
                value, end = decoder.raw_decode(block, m.start())
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                return JsonObject(value, block, offset, m.start(), end)
    return None
