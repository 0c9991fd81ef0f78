"""The answer contract shared by the composer and the evaluator (standard library only).

Every composed target puts the final answer right after the unit's answer marker; evaluation
parses a generation back the same way. Kept dependency-free so the GPU worker can import it.
"""

from __future__ import annotations


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
