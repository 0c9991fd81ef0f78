"""The ``openai`` provider: any OpenAI-compatible chat endpoint through the official client.

The client's own retries are off (``max_retries=0``): this module retries, so every attempt is
counted in :attr:`Completion.attempts` and every failure is classified into an
:data:`~harness.teachers.base.ErrorKind`. Retried: 429, 5xx, 408, timeouts and connection errors,
after ``min(30, 0.5 * 2**attempt)`` seconds times a jitter in [0.5, 1.5) (or the server's
``Retry-After``, capped at 60 s). Not retried: other 4xx and garbage responses.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from harness.errors import InputError, did_you_mean
from harness.spec.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion, OnDone
from harness.teachers.providers.common import config_digest
from harness.teachers.providers.openai_errors import classify, detail
from harness.teachers.providers.openai_wire import parse_response, request_body

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 30.0
_CHECK_TIMEOUT_S = 10.0


class OpenAIChatTeacher:
    """A teacher behind ``/v1/chat/completions`` (see the module docstring for retries)."""

    def __init__(self, name: str, spec: OpenAITeacherSpec) -> None:
        self.name = name
        self.spec = spec
        self._client: Any = None
        self._sleep = time.sleep  # tests may shorten the backoff

    def config_key(self) -> str:
        s = self.spec
        return config_digest({"provider": "openai", "base_url": s.base_url, "model": s.model,
                              "system": s.system, "logprobs": s.logprobs,
                              "top_logprobs": s.top_logprobs if s.logprobs else None,
                              # only when set, so generation teachers keep their cached calls
                              **({"answer_from": s.answer_from}
                                 if s.answer_from != "generation" else {})})

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
            raise InputError(f"{where}: cannot reach {self.spec.base_url} ({exc})") from None
        except openai.APIStatusError as exc:
            raise InputError(f"{where}: {self.spec.base_url}/models answered "
                             f"{exc.status_code}: {str(exc)[:200]}") from None
        except Exception as exc:  # garbage instead of a model list
            raise InputError(f"{where}: {self.spec.base_url}/models gave no model list "
                             f"({type(exc).__name__}: {str(exc)[:200]})") from None
        if self.spec.model not in listed:
            raise InputError(f"{where}: model {self.spec.model!r} is not served by "
                             f"{self.spec.base_url}{did_you_mean(self.spec.model, listed)} "
                             f"(served: {', '.join(listed[:10]) or 'none'})")

    # ------------------------------------------------------------------ calls

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        """Up to ``concurrency`` requests in flight; ``on_done`` runs in the calling thread."""
        if not requests:
            return
        client = self.client()
        pool = ThreadPoolExecutor(max_workers=min(self.spec.concurrency, len(requests)),
                                  thread_name_prefix=f"teacher-{self.name}")
        try:
            futures = {pool.submit(self.complete_one, client, r): i
                       for i, r in enumerate(requests)}
            for fut in as_completed(futures):
                on_done(futures[fut], fut.result())
        finally:
            # Ctrl-C: drop the queued requests, do not wait for the ones in flight
            pool.shutdown(wait=False, cancel_futures=True)

    def complete_one(self, client: Any, request: ChatRequest) -> Completion:
        """One request with retries; never raises for a failed call."""
        start = time.monotonic()
        want_logprobs = self.spec.logprobs and request.choices is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                response = client.chat.completions.create(
                    **request_body(self.spec, request, want_logprobs))
                done = parse_response(response, request, want_logprobs)
                done.attempts, done.seconds = attempt, time.monotonic() - start
                return done
            except Exception as exc:
                kind, retry, wait = classify(exc)
                why = detail(exc)
            if not retry or attempt > self.spec.max_retries:
                return Completion(text=None, error=kind, error_detail=why,
                                  attempts=attempt, seconds=time.monotonic() - start)
            backoff = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))
            self._sleep(wait if wait is not None else backoff * random.uniform(0.5, 1.5))
