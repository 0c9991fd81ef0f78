"""What every spec model shares: the strict base model, safe names, and the sample pools.

Every model forbids unknown keys (a typo is an error, never a silent default) and is frozen so a
loaded experiment cannot drift while the harness runs.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict

#: Names users give to experiments, units, buckets and field sets end up in folder names and
#: cell labels, so they are restricted to a safe alphabet (no ``/``, no ``..``).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

PoolName = Literal["train", "failure", "hard", "review", "discard"]
POOLS: tuple[str, ...] = ("train", "failure", "hard", "review", "discard")


def check_name(value: str) -> str:
    """Reject names that could escape a folder or break a label."""
    if not _NAME_RE.match(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '_', '-', '.' (max 64, "
            "starting with a letter or digit, no '..')"
        )
    return value


class Strict(BaseModel):
    """Base of every spec model: unknown keys are errors and instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
