"""The per-teacher tally: fresh and cached answers counted apart, money from the caller's
prices (what this run paid, or with the cached answers), safe to add to from several threads."""

from __future__ import annotations

import threading

from harness.teachers import Completion, TeacherTally


def test_fresh_cached_and_failed_answers_are_counted_apart() -> None:
    t = TeacherTally("a")
    t.add(Completion(text="x", prompt_tokens=10, completion_tokens=4, seconds=0.5, attempts=3))
    t.add(Completion(text="y", prompt_tokens=7, completion_tokens=2, cached=True, attempts=0))
    t.add(Completion(text=None, error="rate_limited", prompt_tokens=0, seconds=1.0, attempts=2))
    t.add(Completion(text=None, error="rate_limited"))
    t.add(Completion(text=None, error="aborted", attempts=0))  # never sent: no call
    assert (t.calls, t.cache_hits, t.failed, t.retries, t.not_sent) == (4, 1, 2, 3, 1)
    assert t.failures == {"rate_limited": 2} and t.seconds == 1.5 and t.wall_seconds == 0.0
    assert (t.prompt_tokens, t.completion_tokens) == (10, 4)
    assert (t.total_prompt_tokens, t.total_completion_tokens) == (17, 6)
    # prices per 1k prompt / completion tokens: a cache hit is paid once, earlier
    assert t.cost(2.0, 5.0) == (10 * 2.0 + 4 * 5.0) / 1000
    assert t.cost(2.0, 5.0, with_cached=True) == (17 * 2.0 + 6 * 5.0) / 1000
    assert t.cached_prompt_tokens == 7 and t.cached_completion_tokens == 2


def test_concurrent_adds_lose_nothing() -> None:
    t = TeacherTally("a")

    def work() -> None:
        for _ in range(2000):
            t.add(Completion(text="x", prompt_tokens=1, completion_tokens=1, attempts=2))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert (t.calls, t.prompt_tokens, t.retries) == (8000, 8000, 8000)
