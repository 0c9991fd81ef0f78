"""The one counter of what a teacher (or the judge) did: :class:`TeacherTally`.

:class:`~harness.teachers.cache.CachedTeacher` updates it for every request it answers (a cache
hit or a fresh call); the generate stage (:mod:`harness.teachers.generate`) reads it for its
progress bar and its summary table, and counts into it itself only for a teacher that is not
behind the cache. Money is not stored: the tally knows tokens, the caller knows the prices
(``costs.teachers``) and asks :meth:`TeacherTally.cost`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from harness.teachers.base import Completion


@dataclass
class TeacherTally:
    """What one teacher did (thread-safe counters: providers call back from several threads).

    Attributes:
        name: the teacher's name (``judge:<name>`` for the judge in a generate summary).
        calls: requests answered (hits + fresh answers + failures), not counting those never
            sent.
        cache_hits: requests answered from the cache (not paid again).
        prompt_tokens, completion_tokens: tokens of fresh answers (what this run paid for).
        cached_prompt_tokens, cached_completion_tokens: tokens of cache hits (paid earlier).
        failures: failed requests by :data:`~harness.teachers.base.ErrorKind`.
        not_sent: requests never sent (``attempts == 0``: the teacher was stopped after an
            auth or client error, or the run was interrupted); unanswered, but no call.
        retries: attempts beyond the first, over all fresh calls.
        seconds: summed time of fresh calls, in seconds (a batch's time is shared by its
            requests, and concurrent calls overlap, so this is not the time waited).
        wall_seconds: wall-clock time spent waiting for the teacher's answers, in seconds (set
            by whoever asked; the generate summary's ``seconds`` column).
    """

    name: str
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    not_sent: int = 0
    retries: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, c: Completion) -> None:
        """Count one finished request (``c.cached``: answered from the cache)."""
        with self._lock:
            if c.error is not None and c.attempts == 0 and not c.cached:
                self.not_sent += 1
                return
            self.calls += 1
            if c.cached:
                self.cache_hits += 1
                self.cached_prompt_tokens += c.prompt_tokens
                self.cached_completion_tokens += c.completion_tokens
                return
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens
            self.retries += max(0, c.attempts - 1)
            self.seconds += c.seconds
            if c.error is not None:
                self.failures[c.error] = self.failures.get(c.error, 0) + 1

    @property
    def failed(self) -> int:
        """Failed requests, all kinds."""
        return sum(self.failures.values())

    @property
    def total_prompt_tokens(self) -> int:
        """Prompt tokens of every answer, fresh and cached (what the written samples used)."""
        return self.prompt_tokens + self.cached_prompt_tokens

    @property
    def total_completion_tokens(self) -> int:
        """Completion tokens of every answer, fresh and cached."""
        return self.completion_tokens + self.cached_completion_tokens

    def cost(self, price_per_1k_prompt: float, price_per_1k_completion: float, *,
             with_cached: bool = False) -> float:
        """Money, in the currency of the prices (per 1,000 tokens): what this run paid (fresh
        tokens only; cache hits cost nothing again), or with ``with_cached`` what all the
        answers cost, cached ones included."""
        prompt, completion = ((self.total_prompt_tokens, self.total_completion_tokens)
                              if with_cached else (self.prompt_tokens, self.completion_tokens))
        return (prompt * price_per_1k_prompt + completion * price_per_1k_completion) / 1000.0
