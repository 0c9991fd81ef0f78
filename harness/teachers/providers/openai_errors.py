"""How a failed call to an OpenAI-compatible endpoint is classified: its
:data:`~harness.teachers.base.ErrorKind`, whether it is retried, and the wait the server asked for.
"""

from __future__ import annotations

from typing import Any

from harness.teachers.base import ErrorKind
from harness.teachers.providers.rate_limit import reset_wait_s, retry_after_s
from harness.teachers.redact import redact


class BadResponse(Exception):
    """A 2xx answer that is not a usable chat completion."""


def classify(exc: Exception) -> tuple[ErrorKind, bool, float | None]:
    """(kind, retry?, server-requested wait in s or None) of a failed attempt.

    A 429's wait is its ``Retry-After`` (or ``retry-after-ms``), else the reset of the spent
    budget in its ``x-ratelimit-*`` headers (:func:`~.rate_limit.reset_wait_s`). 401 and 403
    are ``auth`` (the key, or its access to the model, is refused: no retry can help); other
    4xx are ``bad_request``.
    """
    import openai

    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError
        return "timeout", True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", True, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        wait = retry_after(exc)
        if status == 429:
            if wait is None:
                headers = response_headers(exc)
                wait = reset_wait_s(headers) if headers is not None else None
            return "rate_limited", True, wait
        if status == 408:
            return "timeout", True, wait
        if status >= 500:
            return "server_error", True, wait
        if status in (401, 403):
            return "auth", False, None
        return "bad_request", False, None
    if isinstance(exc, (BadResponse, openai.APIResponseValidationError, ValueError)):
        return "bad_response", False, None  # json.JSONDecodeError is a ValueError
    return "error", False, None


def response_headers(exc: Any) -> Any:
    """The HTTP headers of a failed attempt's response (None without a response)."""
    return getattr(getattr(exc, "response", None), "headers", None)


def retry_after(exc: Any) -> float | None:
    """The wait (s) a failed attempt's response asks for (``retry-after-ms``, ``Retry-After``
    in seconds or as an HTTP date), uncapped: the retry horizon decides whether to wait it."""
    headers = response_headers(exc)
    return retry_after_s(headers) if headers is not None else None


def detail(exc: Exception) -> str:
    """What the provider said, for a failure note: the exception's class and text, redacted
    (:func:`~harness.teachers.redact.redact`: error texts carry keys and organisation ids)."""
    return redact(f"{type(exc).__name__}: {str(exc)[:500]}")
