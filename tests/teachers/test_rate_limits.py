"""Rate limits as providers state them, a teacher stopped on its first client errors, and a
bounded window of work, against local endpoints that behave like the commercial ones
(:mod:`tests.helpers.fake_provider`, 127.0.0.1 only).

Long waits (a 20 s reset, a 10 min horizon) run on a :class:`ManualClock` whose waits pass at
once; the tests of threads backing off together use real sub-second waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any, overload

import pytest

from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.providers import openai_chat
from harness.teachers.providers.openai_chat import STOP_AFTER_CLIENT_ERRORS, OpenAIChatTeacher
from harness.teachers.providers.rate_limit import (
    parse_duration,
    reset_wait_s,
    retry_after_s,
    token_cost,
)
from tests.helpers.fake_provider import (
    FakeProvider,
    ManualClock,
    Reply,
    Request,
    chat_completion,
    error_body,
)


def _teacher(url: str, clock: ManualClock | None = None, **kw: Any) -> OpenAIChatTeacher:
    spec = OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": url, "model": "m",
                                             "timeout_s": 5, "concurrency": 1, **kw})
    return OpenAIChatTeacher("t", spec, clock=clock)


def _requests(n: int, max_tokens: int = 16) -> list[ChatRequest]:
    return [ChatRequest(messages=(("user", f"question {i}"),), max_tokens=max_tokens)
            for i in range(n)]


def _ask(t: OpenAIChatTeacher, requests: Sequence[ChatRequest]) -> dict[int, Completion]:
    got: dict[int, Completion] = {}
    t.complete_many(requests, got.__setitem__)
    assert sorted(got) == list(range(len(requests)))  # every prompt answered exactly once
    return got


def _scripted(replies: list[Reply], rest: Reply | None = None):
    """A behaviour answering the n-th chat request with ``replies[n]``, then ``rest``."""
    ok = rest or Reply(body=chat_completion("hello"))

    def behaviour(req: Request, fp: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        with fp.lock:
            n = fp.state.get("n", 0)
            fp.state["n"] = n + 1
        return replies[n] if n < len(replies) else ok
    return behaviour


def _limited(**headers: str) -> Reply:
    return Reply(429, error_body("Rate limit reached for requests", type_="requests",
                                 code="rate_limit_exceeded"), headers=headers)


# ---------------------------------------------------------------- the headers, as stated


@pytest.mark.parametrize(("text", "seconds"), [
    ("20s", 20.0), ("1m30s", 90.0), ("6ms", 0.006), ("6m0s", 360.0), ("0.5s", 0.5),
    ("2h", 7200.0), ("1h2m3.5s", 3723.5), ("17", 17.0), ("1.25", 1.25), ("250us", 0.00025)])
def test_reset_durations_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "20 s", "s", "1m30", "-3", "nan", None])
def test_garbled_durations_are_none(text: str | None) -> None:
    assert parse_duration(text) is None


def test_retry_after_in_seconds_milliseconds_or_a_date() -> None:
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    now = datetime(2030, 1, 1, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_s({"retry-after": date}, now.timestamp()) == pytest.approx(30.0)
    assert retry_after_s({"retry-after": "whenever"}) is None
    assert retry_after_s({}) is None


def test_a_429_waits_for_the_spent_budget() -> None:
    assert reset_wait_s({"x-ratelimit-reset-requests": "20s"}) == 20.0
    spent_tokens = {"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "1s",
                    "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "6m0s"}
    assert reset_wait_s(spent_tokens) == 360.0
    assert reset_wait_s({"x-ratelimit-remaining-requests": "0"}) is None


def test_token_cost_is_max_tokens_plus_a_quarter_of_the_characters() -> None:
    assert token_cost(400, 100) == 200
    assert token_cost(1, 0) == 1


# ---------------------------------------------------------------- 429s, as stated


def test_retry_after_outlasting_the_old_retries_is_waited_out() -> None:
    # six 429s asking 20 s each: two more than max_retries 4 allowed, 2 min under the horizon
    clock = ManualClock()
    with FakeProvider(_scripted([_limited(**{"retry-after": "20"})] * 6)) as fp:
        c = _ask(_teacher(fp.base_url, clock, max_retries=4), _requests(1))[0]
    assert c.error is None and c.text == "hello" and c.attempts == 7
    assert clock.waits == [20.0] * 6


def test_only_x_ratelimit_reset_requests_is_honoured() -> None:
    # the provider states nothing but `x-ratelimit-reset-requests: 20s`: 8 of 8 prompts are
    # answered, each 429 waited out for 20 s (not 0.5, 1, 2, 4 s and a give-up)
    clock = ManualClock()
    limited = _limited(**{"x-ratelimit-remaining-requests": "0",
                          "x-ratelimit-reset-requests": "20s"})
    with FakeProvider(_scripted([limited] * 5)) as fp:
        got = _ask(_teacher(fp.base_url, clock), _requests(8))
        assert len(fp.chat_requests()) == 13
    assert all(c.error is None for c in got.values())
    assert clock.waits == [20.0] * 5


def test_rate_limits_are_retried_until_the_horizon_then_given_up() -> None:
    clock = ManualClock()
    with FakeProvider(_scripted([], rest=_limited(**{"retry-after": "120"}))) as fp:
        c = _ask(_teacher(fp.base_url, clock, retry_horizon_s=600), _requests(1))[0]
        sent = len(fp.chat_requests())
    # attempts at 0, 120, ..., 600 s; a 7th would start at 720 s, past the horizon
    assert c.error == "rate_limited" and c.attempts == sent == 6
    assert "retry_horizon_s 600" in (c.error_detail or "")


def test_server_errors_stay_capped_by_max_retries() -> None:
    clock = ManualClock()
    with FakeProvider(_scripted([], rest=Reply(503, error_body("overloaded")))) as fp:
        c = _ask(_teacher(fp.base_url, clock, max_retries=3), _requests(1))[0]
    assert c.error == "server_error" and c.attempts == 4
    assert "max_retries is 3" in (c.error_detail or "")


def test_a_spent_budget_in_a_successful_answer_pauses_the_next_request() -> None:
    clock = ManualClock()
    spent = Reply(body=chat_completion("hello"),
                  headers={"x-ratelimit-remaining-requests": "0",
                           "x-ratelimit-reset-requests": "20s"})
    with FakeProvider(_scripted([spent])) as fp:
        got = _ask(_teacher(fp.base_url, clock), _requests(2))
    assert all(c.error is None for c in got.values())
    assert clock.waits == [pytest.approx(20.0)]


def test_the_remaining_budget_is_spread_over_its_reset() -> None:
    # 4 requests left in the next 2 s: one every 0.5 s from the first answer on, not all at once
    clock = ManualClock()
    left = Reply(body=chat_completion("hello"),
                 headers={"x-ratelimit-remaining-requests": "4",
                          "x-ratelimit-reset-requests": "2s"})
    with FakeProvider(_scripted([], rest=left)) as fp:
        _ask(_teacher(fp.base_url, clock), _requests(4))
    assert clock.waits == [pytest.approx(0.5)] * 2


def test_declared_tokens_per_minute_paces_by_the_estimated_cost() -> None:
    clock = ManualClock()
    requests = _requests(3, max_tokens=100)
    cost = token_cost(len("question 0"), 100)
    with FakeProvider(_scripted([])) as fp:
        _ask(_teacher(fp.base_url, clock, tokens_per_minute=6000), requests)
    assert clock.waits == [pytest.approx(cost * 60 / 6000)] * 2


# ---------------------------------------------------------------- threads back off together


def test_after_one_429_no_thread_sends_until_the_reset() -> None:
    pause = 0.4
    first_four = threading.Barrier(4, timeout=10)  # the four threads' first requests, together
    marks: dict[str, float] = {}

    def behaviour(req: Request, fp: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        with fp.lock:
            n = fp.state.get("n", 0)
            fp.state["n"] = n + 1
        if n < 4:
            first_four.wait()
        if n == 0:
            marks["429"] = time.monotonic()
            return _limited(**{"retry-after-ms": str(int(pause * 1000))})
        return Reply(body=chat_completion("hello"), delay_s=0.2)

    with FakeProvider(behaviour) as fp:
        got = _ask(_teacher(fp.base_url, concurrency=4), _requests(8))
        arrivals = [r.received for r in fp.chat_requests()]
    assert all(c.error is None for c in got.values())
    # the three answered with the 429 come back at 0.2 s; without a shared pause their threads
    # would send their next requests then, inside the 0.4 s the provider asked for
    later = sorted(arrivals)[4:]
    assert len(later) == 8 + 1 - 4
    assert min(later) - marks["429"] >= pause - 0.02


def test_declared_requests_per_minute_paces_every_thread() -> None:
    with FakeProvider(_scripted([])) as fp:
        t = _teacher(fp.base_url, concurrency=4, requests_per_minute=600)
        t.client()
        start = time.monotonic()
        _ask(t, _requests(6))
        arrivals = sorted(r.received for r in fp.chat_requests())
    # 600 a minute: the k-th request starts no earlier than k * 0.1 s (a late thread may
    # shorten one gap, never get ahead of the pace)
    assert len(arrivals) == 6
    assert all(t_k - start >= k * 0.1 for k, t_k in enumerate(arrivals))


def test_no_limit_known_means_no_lock_and_no_wait() -> None:
    with FakeProvider(_scripted([])) as fp:
        t = _teacher(fp.base_url, concurrency=4)
        _ask(t, _requests(8))
    assert t.limiter._active is False  # the unlimited endpoint's fast path was never left


# ---------------------------------------------------------------- a teacher that cannot work


def test_400_on_the_first_calls_stops_the_teacher() -> None:
    reason = "Unsupported parameter: 'max_tokens' is not supported with this model."
    bad = Reply(400, error_body(reason, param="max_tokens", code="unsupported_parameter"))
    with FakeProvider(_scripted([], rest=bad)) as fp:
        got = _ask(_teacher(fp.base_url, concurrency=2), _requests(40))
        sent = len(fp.chat_requests())
    # the stop comes after STOP_AFTER_CLIENT_ERRORS answers; at most one more was in flight
    assert STOP_AFTER_CLIENT_ERRORS <= sent <= STOP_AFTER_CLIENT_ERRORS + 1
    kinds = [c.error for c in got.values()]
    assert kinds.count("bad_request") == sent and kinds.count("aborted") == 40 - sent
    aborted = next(c for c in got.values() if c.error == "aborted")
    assert "not sent" in (aborted.error_detail or "") and reason in (aborted.error_detail or "")


def test_401_stops_the_teacher_at_once() -> None:
    reason = "Incorrect API key provided: sk-abc***xyz."
    bad = Reply(401, error_body(reason, code="invalid_api_key"))
    with FakeProvider(_scripted([], rest=bad)) as fp:
        got = _ask(_teacher(fp.base_url), _requests(10))
        assert len(fp.chat_requests()) == 1
    assert got[0].error == "auth"
    assert all(got[i].error == "aborted" for i in range(1, 10))
    assert "refused the key" in (got[1].error_detail or "")
    assert "Incorrect API key provided" in (got[1].error_detail or "")


def test_one_400_in_a_healthy_run_costs_only_its_prompt() -> None:
    bad = Reply(400, error_body("This model's maximum context length is 8192 tokens."))
    ok = Reply(body=chat_completion("hello"))
    with FakeProvider(_scripted([ok, bad, bad, bad, ok])) as fp:
        got = _ask(_teacher(fp.base_url), _requests(10))
        assert len(fp.chat_requests()) == 10
    assert [c.error for c in got.values()].count("bad_request") == 3
    assert sum(c.error is None for c in got.values()) == 7


# ---------------------------------------------------------------- bounded memory


class _Prompts(Sequence[ChatRequest]):
    """Prompts made on demand, recording the furthest one a worker took."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.furthest = -1
        self.one = ChatRequest(messages=(("user", "hi"),), max_tokens=4)

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> ChatRequest: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[ChatRequest]: ...

    def __getitem__(self, i: int | slice) -> Any:
        assert isinstance(i, int)
        self.furthest = max(self.furthest, i)
        return self.one


def _instant_client() -> Any:
    """Stands for ``openai.OpenAI``: every call answered at once, no network."""
    from openai.types.chat import ChatCompletion

    parsed = ChatCompletion.model_validate(chat_completion("hi"))
    raw = SimpleNamespace(headers={}, parse=lambda: parsed)
    create = SimpleNamespace(create=lambda **body: raw)
    return SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(
        with_raw_response=create)))


def test_work_taken_ahead_of_on_done_is_bounded() -> None:
    # the old pool made a future per prompt up front (225 MiB more at 100,000 prompts); the
    # workers now take a prompt only when the window has room, whatever the number of prompts
    n, concurrency = 30_000, 8
    prompts = _Prompts(n)
    with FakeProvider(_scripted([])) as fp:
        t = _teacher(fp.base_url, concurrency=concurrency)
    t._client = _instant_client()
    ahead = delivered = 0

    def done(i: int, c: Completion) -> None:
        nonlocal ahead, delivered
        assert c.error is None
        delivered += 1
        ahead = max(ahead, prompts.furthest + 1 - delivered)
        if delivered == 1:
            time.sleep(0.2)  # a slow consumer: the workers must wait, not run ahead

    t.complete_many(prompts, done)
    assert delivered == n and prompts.furthest == n - 1
    # taken but not yet delivered: the results queue plus one prompt in each worker's hands
    assert ahead <= concurrency * (openai_chat._WINDOW_PER_WORKER + 1)
