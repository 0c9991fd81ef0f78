"""The ``openai`` provider: any OpenAI-compatible chat endpoint through the official client.

Requests run in ``concurrency`` worker threads that take the prompts one at a time (nothing is
queued up front, so 100,000 prompts cost no more memory than 100); answers come back to the
calling thread through a bounded queue, and ``on_done`` runs there (the cache commits each answer
as it arrives).

Retries (the client's own are off, ``max_retries=0``, so every attempt is counted in
:attr:`Completion.attempts` and every failure classified, :func:`.openai_errors.classify`):

- a 429 pauses *every* thread of the teacher (:class:`~.rate_limit.RateLimiter`) for the wait
  the server stated (``retry-after-ms``, ``Retry-After``, else the reset of the spent
  ``x-ratelimit-*`` budget), or for an exponential backoff when it stated none, and is retried
  until ``retry_horizon_s`` has passed since the request's first attempt; ``max_retries`` does
  not count rate limits (they are the provider pacing the run, not a fault);
- a 5xx, 408, timeout or connection error is retried at most ``max_retries`` times, after the
  server's ``Retry-After`` (then every thread waits it) or ``min(30, 0.5 * 2**k)`` seconds times
  a jitter in [0.5, 1.5), and never past ``retry_horizon_s``;
- other 4xx and garbage answers are not retried.

A wait that would end past the horizon gives the request up at once (its error says so).

A teacher is *stopped*, with no further request sent and the rest of its prompts answered
``aborted`` (the detail names the provider's reason, redacted), when the endpoint refuses the
key or access (401/403: every later call would fail alike), or when its first
:data:`STOP_AFTER_CLIENT_ERRORS` finished calls failed with a client error (400, 404, 422...)
before any call succeeded: the request itself is wrong for this endpoint (an unsupported
parameter, an unknown model). A client error after a success costs only its own prompt (one
prompt too long).

Ctrl-C: the calling thread waits in short slices (a blocking wait may not see the signal for
seconds once polars has started its threads), so on KeyboardInterrupt no request starts, backoff
waits end at once, answers that arrive within :data:`INTERRUPT_GRACE_S` are still handed to
``on_done`` (cached), and the interrupt is re-raised. The workers are daemon threads: a call
still in flight never holds the process open.
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from harness.errors import InputError, did_you_mean
from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion, OnDone
from harness.teachers.providers.common import config_digest
from harness.teachers.providers.openai_errors import classify, detail, response_headers
from harness.teachers.providers.openai_wire import (
    parse_response,
    request_body,
    request_options_key,
    wants_logprobs,
)
from harness.teachers.providers.rate_limit import Clock, RateLimiter, token_cost
from harness.teachers.redact import redact

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 30.0
_MIN_RATE_LIMIT_WAIT_S = 0.1
_CHECK_TIMEOUT_S = 10.0
#: Client errors on a teacher's first finished calls (none succeeded) that stop the teacher.
STOP_AFTER_CLIENT_ERRORS = 3
#: After Ctrl-C, how long (s) answers still arriving are handed to ``on_done`` before the
#: interrupt is re-raised (the command exits within about this, well under 2 s).
INTERRUPT_GRACE_S = 0.5
#: How often (s) the calling thread wakes while waiting: the bound on noticing Ctrl-C.
_POLL_S = 0.1
#: Finished answers waiting for the calling thread, per worker thread (bounds memory when
#: ``on_done`` is slower than the endpoint).
_WINDOW_PER_WORKER = 4


class OpenAIChatTeacher:
    """A teacher behind ``/v1/chat/completions`` (see the module docstring for retries)."""

    def __init__(self, name: str, spec: OpenAITeacherSpec, clock: Clock | None = None) -> None:
        """``clock``: time and waits for the rate limiter and the backoff (tests pass a manual
        one; default the monotonic clock with interruptible waits)."""
        self.name = name
        self.spec = spec
        self._client: Any = None
        self._config_key: str | None = None
        #: shared by every thread and every complete_many of this teacher (a pause outlives
        #: the call that caused it)
        self.limiter = RateLimiter(spec.requests_per_minute, spec.tokens_per_minute, clock)

    def config_key(self) -> str:
        if self._config_key is None:  # asked once per call by the cache: computed once
            self._config_key = self._digest()
        return self._config_key

    def _digest(self) -> str:
        s = self.spec
        return config_digest({"provider": "openai", "base_url": s.base_url, "model": s.model,
                              "system": s.system, "logprobs": s.logprobs,
                              "top_logprobs": s.top_logprobs if s.logprobs else None,
                              # label probabilities as measured where the label is written
                              # (logprob_labels): answers cached under the first-token rule
                              # carry figures that were wrong, so they are asked again
                              **({"label_probs": "written"} if s.logprobs else {}),
                              # only when set, so generation teachers keep their cached calls
                              **({"answer_from": s.answer_from}
                                 if s.answer_from != "generation" else {}),
                              # request options, only when set (temperature and the answer
                              # schema are in each request's own key)
                              **request_options_key(s)})

    # ------------------------------------------------------------------ client and check

    def _api_key(self) -> str:
        env = self.spec.api_key_env
        if env is None:
            return "no-key"  # a local server; the client insists on a non-empty string
        key = os.environ.get(env, "")
        if not key:
            raise InputError(f"teachers.{self.name}: the environment variable {env} is not set "
                             f"(it must hold the API key for {self.spec.base_url})")
        return key

    def client(self) -> Any:
        """The ``openai.OpenAI`` client (built once)."""
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(base_url=self.spec.base_url, api_key=self._api_key(),
                                  timeout=self.spec.timeout_s, max_retries=0)
        return self._client

    def check(self) -> None:
        """Key present, ``GET /models`` reachable, the model listed; else InputError (exit 2)."""
        import openai

        where = f"teachers.{self.name}"
        client = self.client()
        try:
            listed = [m.id for m in client.models.list(timeout=min(self.spec.timeout_s,
                                                                    _CHECK_TIMEOUT_S))]
        except openai.AuthenticationError:
            raise InputError(f"{where}: {self.spec.base_url} refused the API key in "
                             f"{self.spec.api_key_env or '(none: set api_key_env)'}") from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise InputError(f"{where}: cannot reach {self.spec.base_url} "
                             f"({redact(str(exc))})") from None
        except openai.APIStatusError as exc:
            raise InputError(f"{where}: {self.spec.base_url}/models answered "
                             f"{exc.status_code}: {redact(str(exc)[:200])}") from None
        except Exception as exc:  # garbage instead of a model list
            raise InputError(f"{where}: {self.spec.base_url}/models gave no model list "
                             f"({type(exc).__name__}: {redact(str(exc)[:200])})") from None
        if self.spec.model not in listed:
            raise InputError(f"{where}: model {self.spec.model!r} is not served by "
                             f"{self.spec.base_url}{did_you_mean(self.spec.model, listed)} "
                             f"(served: {', '.join(listed[:10]) or 'none'})")

    # ------------------------------------------------------------------ calls

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        """Up to ``concurrency`` requests in flight; ``on_done`` runs in the calling thread
        (see the module docstring for stopping, Ctrl-C and memory)."""
        if not requests:
            return
        client = self.client()
        run = _Run(self.name)
        workers = min(self.spec.concurrency, len(requests))
        results: _Results = queue.Queue(maxsize=_WINDOW_PER_WORKER * workers)
        indices = itertools.count()  # next() is atomic: each worker takes the next prompt
        run.live = workers
        for k in range(workers):
            threading.Thread(target=self._work, args=(client, requests, indices, run, results),
                             name=f"teacher-{self.name}-{k}", daemon=True).start()
        try:
            while True:
                try:
                    item = results.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if item is None:  # the last worker has stopped: every answer came before it
                    return
                on_done(*item)
        except KeyboardInterrupt:
            run.interrupt(INTERRUPT_GRACE_S)
            for i, c in run.late_answers(results):
                on_done(i, c)  # a second Ctrl-C here ends the wait at once
            raise
        except BaseException:  # on_done failed: send nothing more
            run.interrupt(0.0)
            raise

    def _work(self, client: Any, requests: Sequence[ChatRequest], indices: Iterator[int],
              run: _Run, results: _Results) -> None:
        """One worker thread: take the next prompt, answer it (or abort it once the teacher
        is stopped), hand it over; until the prompts run out or the run is interrupted."""
        try:
            while not run.interrupted:
                i = next(indices)
                if i >= len(requests):
                    return
                try:
                    c = (run.aborted() if run.stop.is_set()
                         else self.complete_one(client, requests[i], run))
                except Exception as exc:  # a bug, not the endpoint: still one answer per prompt
                    c = Completion(text=None, error="error", error_detail=detail(exc))
                run.note(c)
                if not run.hand_over(results, (i, c)):
                    return
        finally:
            with run.lock:
                run.live -= 1
                last = run.live == 0
            if last:
                run.hand_over(results, None)  # wakes the calling thread at once

    def complete_one(self, client: Any, request: ChatRequest, run: _Run | None = None
                     ) -> Completion:
        """One request with retries (module docstring); never raises for a failed call.
        ``run``: the complete_many it belongs to (its stop signal); None for a lone call."""
        run = run if run is not None else _Run(self.name)
        spec, limiter = self.spec, self.limiter
        clock = limiter.clock
        want_logprobs = wants_logprobs(spec, request)
        body = request_body(spec, request, want_logprobs)
        cost = token_cost(sum(len(text) for _, text in request.messages) + len(spec.system or ""),
                          request.max_tokens)
        first: float | None = None  # the first attempt's start: the horizon counts from it
        attempt = faults = limited = 0
        last: str | None = None  # the last failure, for an aborted retry's detail
        while True:
            if not limiter.acquire(cost, run.stop):
                return run.aborted(attempt, 0.0 if first is None else clock.now() - first, last)
            if first is None:
                first = clock.now()
            attempt += 1
            try:
                raw = client.chat.completions.with_raw_response.create(**body)
                limiter.observe(raw.headers)
                done = parse_response(raw.parse(), request, want_logprobs)
                done.attempts, done.seconds = attempt, clock.now() - first
                return done
            except Exception as exc:
                kind, retry, wait = classify(exc)
                why = detail(exc)
                headers = response_headers(exc)
                if headers is not None:
                    limiter.observe(headers)
            elapsed = clock.now() - first
            if not retry:
                return Completion(text=None, error=kind, error_detail=why, attempts=attempt,
                                  seconds=elapsed)
            gave_up = ""
            if kind == "rate_limited":
                limited += 1
                # a stated wait of 0 s, answered again and again, must not become a busy loop
                delay = max(wait, _MIN_RATE_LIMIT_WAIT_S) if wait is not None else _backoff(limited)
            else:
                faults += 1
                delay = wait if wait is not None else _backoff(faults)
                if faults > spec.max_retries:
                    gave_up = f"max_retries is {spec.max_retries}"
            if not gave_up and elapsed + delay > spec.retry_horizon_s:
                gave_up = (f"{elapsed:.1f} s since the first, the next could start "
                           f"{delay:.1f} s later, past retry_horizon_s {spec.retry_horizon_s:g}")
            if gave_up:
                return Completion(text=None, error=kind, attempts=attempt, seconds=elapsed,
                                  error_detail=f"{why} (gave up after {attempt} attempts: "
                                               f"{gave_up})")
            last = f"{kind}: {why}"
            if kind == "rate_limited" or wait is not None:
                limiter.pause(delay)  # the provider's limit is the teacher's: every thread waits
            elif clock.wait(run.stop, delay):
                return run.aborted(attempt, clock.now() - first, last)


#: Finished calls on their way to the calling thread; None: the last worker has stopped.
_Results = queue.Queue[tuple[int, Completion] | None]


def _backoff(n: int) -> float:
    """The wait (s) before the retry after the ``n``-th failure when the server stated none:
    exponential, capped, jittered so the threads do not return in step."""
    return min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (n - 1)) * random.uniform(0.5, 1.5)


class _Run:
    """What one :meth:`OpenAIChatTeacher.complete_many` shares between its worker threads and
    the calling thread: the stop signal, why the teacher stopped, and the stop rule's counts."""

    def __init__(self, teacher: str) -> None:
        self.teacher = teacher
        #: set: no request starts any more (the teacher stopped, or the run was interrupted)
        self.stop = threading.Event()
        self.reason: str | None = None  # why the teacher stopped
        self.interrupted = False
        self.answered = False  # some call succeeded: a later client error is its prompt's own
        self.client_errors = 0
        self.lock = threading.Lock()
        self.live = 0  # worker threads still running
        self.hand_over_until = float("inf")  # after an interrupt: when answers stop being taken

    def note(self, c: Completion) -> None:
        """Apply the stop rule (module docstring) to a finished call."""
        if c.error is None:
            self.answered = True
        elif c.error == "auth":
            self.halt(f"the endpoint refused the key or the access: {c.error_detail}")
        elif c.error == "bad_request" and not self.answered:
            with self.lock:
                self.client_errors += 1
                n = self.client_errors
            if n >= STOP_AFTER_CLIENT_ERRORS:
                self.halt(f"its first {n} finished calls all failed with a client error, the "
                          f"last: {c.error_detail}")

    def halt(self, reason: str) -> None:
        """Stop the teacher: no request starts any more; the rest are :meth:`aborted`."""
        with self.lock:
            if self.reason is None:
                self.reason = reason
        self.stop.set()

    def interrupt(self, grace_s: float) -> None:
        """Ctrl-C (or ``on_done`` failed): no request starts, waits end, and workers hand over
        what they finish for ``grace_s`` more seconds."""
        self.hand_over_until = time.monotonic() + grace_s
        self.interrupted = True
        self.stop.set()

    def aborted(self, attempts: int = 0, seconds: float = 0.0, last: str | None = None
                ) -> Completion:
        """The completion of a request not sent (or not retried) because the run stopped."""
        why = ("the run was interrupted" if self.interrupted
               else f"teacher {self.teacher} was stopped: {self.reason}")
        what = "not sent" if attempts == 0 else f"not retried after {attempts} attempt(s)"
        note = f"{what}: {why}" + (f" (last failure: {last})" if last else "")
        return Completion(text=None, error="aborted", error_detail=note, attempts=attempts,
                          seconds=seconds)

    def hand_over(self, results: _Results, item: tuple[int, Completion] | None) -> bool:
        """Put a finished call in the results queue; False when nobody will take it (the run
        was interrupted and its grace is over)."""
        while True:
            try:
                results.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if self.interrupted and time.monotonic() > self.hand_over_until:
                    return False

    def late_answers(self, results: _Results) -> Iterator[tuple[int, Completion]]:
        """After an interrupt: what the workers finish until the grace ends or they all stop,
        except the requests aborted unsent."""
        while (left := self.hand_over_until - time.monotonic()) > 0:
            try:
                item = results.get(timeout=min(_POLL_S, left))
            except queue.Empty:
                continue
            if item is None:
                return
            if item[1].error != "aborted":
                yield item
