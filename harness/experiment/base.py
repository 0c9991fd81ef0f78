"""What every experiment model shares: the strict base model (:mod:`harness.strict`, re-exported
here), safe names, seeds and the sample pools."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from harness.strict import Strict

__all__ = ["MAX_SEED", "NAME_PATTERN", "POOLS", "PoolName", "Seed", "SelfCheckedFloat",
           "Strict", "check_name"]

#: Names users give to experiments, units, buckets and field sets end up in folder names and
#: cell labels, so they are restricted to a safe alphabet (no ``/``, no ``..``). The whole name
#: must match (:func:`check_name` uses ``fullmatch``: with ``re.match`` the ``$`` would also
#: match before a final newline, and ``"demo\n"`` would become a folder name).
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)

PoolName = Literal["train", "failure", "hard", "review", "discard"]
POOLS: tuple[str, ...] = ("train", "failure", "hard", "review", "discard")

#: Largest seed: numpy's and scikit-learn's seeds are unsigned 32-bit integers (sampling and
#: clustering use them), and a negative seed fails there too.
MAX_SEED = 2**32 - 1
#: A random seed: a whole number from 0 to :data:`MAX_SEED`.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
#: A float that may be NaN or infinite when it reaches the model's own validator, which refuses
#: it in its own words (a scale's "must be two finite numbers").
SelfCheckedFloat = Annotated[float, Field(allow_inf_nan=True)]


def check_name(value: str) -> str:
    """Reject names that could escape a folder or break a label."""
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{value!r} is not a valid name: use letters, digits, '_', '-', '.' (max 64, "
            "starting with a letter or digit, no '..')"
        )
    return value
