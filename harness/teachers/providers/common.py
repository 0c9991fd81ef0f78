"""What every teacher provider shares: the configuration digest (the cache's half of a key) and
the teacher's system prompt. Standard library only."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any


def config_digest(fields: dict[str, Any]) -> str:
    """sha256 (64 hex chars) of the canonical JSON of the fields that change answers."""
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def with_system(messages: Sequence[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """``messages`` with the teacher's system prompt first, unless it has a system message."""
    out = [dict(m) for m in messages]
    if system and not any(m["role"] == "system" for m in out):
        out.insert(0, {"role": "system", "content": system})
    return out
