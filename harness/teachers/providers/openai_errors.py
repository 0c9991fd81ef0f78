"""How a failed call to an OpenAI-compatible endpoint is classified: its
:data:`~harness.teachers.base.ErrorKind`, whether it is retried, and the wait the server asked for.
"""

from __future__ import annotations

from typing import Any

from harness.teachers.base import ErrorKind
from harness.teachers.redact import redact

_RETRY_AFTER_CAP_S = 60.0


class BadResponse(Exception):
    """A 2xx answer that is not a usable chat completion."""


def classify(exc: Exception) -> tuple[ErrorKind, bool, float | None]:
    """(kind, retry?, server-requested wait in s or None) of a failed attempt."""
    import openai

    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError
        return "timeout", True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", True, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        wait = retry_after(exc)
        if status == 429:
            return "rate_limited", True, wait
        if status == 408:
            return "timeout", True, wait
        if status >= 500:
            return "server_error", True, wait
        return "bad_request", False, None
    if isinstance(exc, (BadResponse, openai.APIResponseValidationError, ValueError)):
        return "bad_response", False, None  # json.JSONDecodeError is a ValueError
    return "error", False, None


def retry_after(exc: Any) -> float | None:
    try:
        value = float(exc.response.headers.get("retry-after", ""))
    except (AttributeError, TypeError, ValueError):
        return None
    return min(max(value, 0.0), _RETRY_AFTER_CAP_S)


def detail(exc: Exception) -> str:
    """What the provider said, for a failure note: the exception's class and text, redacted
    (:func:`~harness.teachers.redact.redact`: error texts carry keys and organisation ids)."""
    return redact(f"{type(exc).__name__}: {str(exc)[:500]}")
