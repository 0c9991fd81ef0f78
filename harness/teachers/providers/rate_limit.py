"""Rate limits as providers state them, shared by every worker thread of one teacher.

Written against OpenAI's rate-limit guide (https://platform.openai.com/docs/guides/rate-limits)
and the HTTP ``Retry-After`` header (RFC 9110, section 10.2.3), which OpenAI-compatible servers
(vLLM, SGLang, Groq, Together, OpenRouter...) follow:

- ``x-ratelimit-remaining-requests`` / ``x-ratelimit-remaining-tokens``: what is left of the
  budget; ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens``: the time until the
  budget is whole again, a Go-style duration (``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1m30s"``).
- ``Retry-After``: seconds or an HTTP date; ``retry-after-ms``: milliseconds (OpenAI's).

One :class:`RateLimiter` per teacher paces the starts of its requests, whichever thread sends
them, so a teacher's concurrency backs off together: a 429 pauses every thread until the stated
reset instead of each thread retrying alone. Limits come from two places:

- declared: ``requests_per_minute`` / ``tokens_per_minute`` on the teacher, paced evenly
  (OpenAI enforces a per-minute limit over shorter windows, so bursts are refused even below it);
- learned: from the ``x-ratelimit-remaining-*`` and ``-reset-*`` headers of every answer, the
  remaining budget spread over the time until its reset (no pacing while most of the budget is
  left, the stated rate at half of it, slower as it runs out, a pause when it is spent).
  ``x-ratelimit-limit-*`` is not read: some providers state it per day (Groq's requests).

A tokens-per-minute limit counts a request before its answer exists: as OpenAI does, a request
costs its ``max_tokens`` plus its prompt's estimated tokens (characters / 4).

Nothing is locked or slept while no limit is known (a local server): the throughput of an
unlimited endpoint is the client's own.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Protocol

#: A Go-style duration part (``1m30s`` is two parts); ``ms`` before ``m`` and ``s``.
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
#: Waits are capped at a day: a wrong header must not overflow a timeout.
_MAX_WAIT_S = 86_400.0
#: A learned spacing shorter than this is no limit worth pacing for (s).
_NEGLIGIBLE_S = 1e-4


class Clock(Protocol):
    """Time as the limiter and the retries see it (injectable: tests pass a manual clock)."""

    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Wait ``seconds`` or until ``stop`` is set, whichever is first; True when stopped."""
        ...


class SystemClock:
    """``time.monotonic`` and ``Event.wait``: a wait that Ctrl-C or a stopped teacher ends at
    once (``time.sleep`` in a worker thread would hold the run until the backoff ends)."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        return stop.wait(min(seconds, _MAX_WAIT_S)) if seconds > 0 else stop.is_set()


def parse_duration(text: str | None) -> float | None:
    """Seconds of a reset header: a Go-style duration (``"20s"``, ``"1m30s"``, ``"6ms"``,
    ``"2h0m0.5s"``) or a bare number of seconds; None when absent or not a duration."""
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    try:
        value = float(s)
    except ValueError:
        pos, total = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                return None
            total, pos = total + float(m.group(1)) * _UNIT_S[m.group(2)], m.end()
        return min(total, _MAX_WAIT_S) if pos == len(s) else None
    return min(value, _MAX_WAIT_S) if math.isfinite(value) and value >= 0 else None


def _count(text: str | None) -> float | None:
    """A remaining-budget header as a number (None when absent or garbled)."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def retry_after_s(headers: Mapping[str, str], now_epoch: float | None = None) -> float | None:
    """The wait a response asks for, in seconds: ``retry-after-ms``, else ``Retry-After`` as
    seconds or as an HTTP date (relative to ``now_epoch``, default the wall clock); None when
    neither is given or readable."""
    ms = _count(headers.get("retry-after-ms"))
    if ms is not None:
        return min(ms / 1000.0, _MAX_WAIT_S)
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _count(value)
    if seconds is not None:
        return min(seconds, _MAX_WAIT_S)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    now = time.time() if now_epoch is None else now_epoch
    return min(max(when - now, 0.0), _MAX_WAIT_S)


def reset_wait_s(headers: Mapping[str, str]) -> float | None:
    """How long a 429 without ``Retry-After`` should wait, from the ``x-ratelimit-*`` headers:
    the reset of each budget that is spent (remaining 0) or whose remainder is not stated; the
    longest reset stated when every budget still has something left; None without a reset."""
    resets = {kind: parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
              for kind in ("requests", "tokens")}
    stated = {k: v for k, v in resets.items() if v is not None}
    if not stated:
        return None
    spent = [v for k, v in stated.items()
             if _count(headers.get(f"x-ratelimit-remaining-{k}")) in (None, 0.0)]
    return max(spent or stated.values())


def token_cost(chars: int, max_tokens: int) -> int:
    """What a request counts against a tokens-per-minute limit before it is answered:
    ``max_tokens`` plus the prompt's estimated tokens (OpenAI's estimate, characters / 4)."""
    return max_tokens + (chars + 3) // 4


class RateLimiter:
    """Paces the request starts of one teacher, across all its threads (see the module
    docstring). ``acquire`` before each attempt; ``observe`` every response's headers;
    ``pause`` after a rate-limit answer.

    Args:
        requests_per_minute / tokens_per_minute: the declared limits (None: not declared).
        clock: time and interruptible waits (:class:`SystemClock` by default).
    """

    def __init__(self, requests_per_minute: float | None = None,
                 tokens_per_minute: float | None = None, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._lock = threading.Lock()
        self._req_gap = 60.0 / requests_per_minute if requests_per_minute else 0.0  # s/request
        self._tok_gap = 60.0 / tokens_per_minute if tokens_per_minute else 0.0  # s/token
        self._learned_req = self._learned_tok = 0.0
        self._learned_until = -math.inf
        self._next = -math.inf  # the earliest start of the next request
        self._paused_until = -math.inf
        # read without the lock on the fast path (a bool read is atomic): False while no limit
        # is known, so an unlimited endpoint pays neither a lock nor a clock read per call
        self._active = bool(self._req_gap or self._tok_gap)

    @property
    def paused_until(self) -> float:
        """The clock time before which no request starts (-inf when not paused)."""
        return self._paused_until

    def acquire(self, tokens: int, stop: threading.Event) -> bool:
        """Wait for this request's turn (a pause, then the pacing); False, without waiting
        further, when ``stop`` is set: the request must not be sent.

        Args:
            tokens: the request's cost against a tokens-per-minute limit (:func:`token_cost`).
        """
        if not self._active:
            return not stop.is_set()
        while True:
            with self._lock:
                now = self.clock.now()
                if now < self._paused_until:
                    wait, reserved = self._paused_until - now, False
                else:
                    req, tok = self._req_gap, self._tok_gap
                    if now < self._learned_until:
                        req, tok = max(req, self._learned_req), max(tok, self._learned_tok)
                    slot = max(now, self._next)
                    self._next = slot + max(req, tokens * tok)
                    wait, reserved = slot - now, True
            if self.clock.wait(stop, wait):
                return False
            # a pause that arrived while this request waited for its slot still applies
            if reserved and self.clock.now() >= self._paused_until:
                return True

    def pause(self, seconds: float) -> None:
        """No request of this teacher starts for ``seconds`` (a rate-limit answer's wait)."""
        if seconds <= 0:
            return
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock.now() + seconds)
            self._active = True

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the budget left from a response's ``x-ratelimit-*`` headers (any status)."""
        rem_req = _count(headers.get("x-ratelimit-remaining-requests"))
        rem_tok = _count(headers.get("x-ratelimit-remaining-tokens"))
        if rem_req is None and rem_tok is None:
            return  # the common case of a local server: nothing to learn, nothing locked
        reset_req = parse_duration(headers.get("x-ratelimit-reset-requests"))
        reset_tok = parse_duration(headers.get("x-ratelimit-reset-tokens"))
        req_gap = reset_req / max(rem_req, 1.0) if rem_req is not None and reset_req else 0.0
        tok_gap = reset_tok / max(rem_tok, 1.0) if rem_tok is not None and reset_tok else 0.0
        spent = [r for rem, r in ((rem_req, reset_req), (rem_tok, reset_tok))
                 if rem == 0.0 and r]
        # plenty left (the spacing of a request, or of a 1,000-token one, negligible): pacing
        # would only cost the lock
        if not spent and req_gap < _NEGLIGIBLE_S and tok_gap * 1000 < _NEGLIGIBLE_S:
            return
        with self._lock:
            now = self.clock.now()
            self._learned_req, self._learned_tok = req_gap, tok_gap
            self._learned_until = now + max(reset_req or 0.0, reset_tok or 0.0)
            if spent:
                self._paused_until = max(self._paused_until, now + max(spent))
            self._active = True
