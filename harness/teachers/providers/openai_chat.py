"""The ``openai`` provider: any OpenAI-compatible chat endpoint through the official client.

The client's own retries are off (``max_retries=0``): this module retries, so every attempt is
counted in :attr:`Completion.attempts` and every failure is classified into an
:data:`~harness.teachers.base.ErrorKind`. Retried: 429, 5xx, 408, timeouts and connection errors,
after ``min(30, 0.5 * 2**attempt)`` seconds times a jitter in [0.5, 1.5) (or the server's
``Retry-After``, capped at 60 s). Not retried: other 4xx and garbage responses.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from harness.errors import InputError, did_you_mean
from harness.spec.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion, ErrorKind, OnDone
from harness.teachers.providers.common import config_digest, with_system

_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 30.0
_RETRY_AFTER_CAP_S = 60.0
_CHECK_TIMEOUT_S = 10.0


def label_probs_from_top_logprobs(top: Sequence[tuple[str, float]], choices: Sequence[str]
                                  ) -> dict[str, float] | None:
    """Probabilities of ``choices`` from the first answer token's top log-probabilities.

    A top token counts for a choice when, stripped and lower-cased, it is a non-empty prefix of
    the choice (``"Pos"`` for ``positive``); a token that fits several choices is shared equally.
    The mass found is normalised over the choices (sums to 1). None when no top token fits any
    choice (the answer did not start with a label).
    """
    mass = dict.fromkeys(choices, 0.0)
    for token, logprob in top:
        t = token.strip().lower()
        if not t:
            continue
        fits = [c for c in choices if c.lower().startswith(t)]
        for c in fits:
            mass[c] += math.exp(logprob) / len(fits)
    total = sum(mass.values())
    if total <= 0:
        return None
    return {c: m / total for c, m in mass.items()}


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
                response = client.chat.completions.create(**self._body(request, want_logprobs))
                done = self._parse(response, request, want_logprobs)
                done.attempts, done.seconds = attempt, time.monotonic() - start
                return done
            except Exception as exc:
                kind, retry, wait = _classify(exc)
                detail = _detail(exc)
            if not retry or attempt > self.spec.max_retries:
                return Completion(text=None, error=kind, error_detail=detail,
                                  attempts=attempt, seconds=time.monotonic() - start)
            backoff = min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (attempt - 1))
            self._sleep(wait if wait is not None else backoff * random.uniform(0.5, 1.5))

    def _body(self, request: ChatRequest, want_logprobs: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.spec.model, "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "messages": with_system(request.as_messages(), self.spec.system)}
        if request.seed is not None:
            body["seed"] = request.seed
        if want_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.spec.top_logprobs
        return body

    def _parse(self, response: Any, request: ChatRequest, want_logprobs: bool) -> Completion:
        try:
            choice = response.choices[0]
            text = choice.message.content
        except (AttributeError, IndexError, TypeError) as exc:
            raise _BadResponse(f"no choices[0].message in {str(response)[:200]!r}") from exc
        if not isinstance(text, str):
            raise _BadResponse(f"the answer has no text (finish_reason="
                               f"{getattr(choice, 'finish_reason', None)!r})")
        usage = getattr(response, "usage", None)
        out = Completion(text=text,
                         prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                         completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                         extra={"finish_reason": getattr(choice, "finish_reason", None)})
        if want_logprobs and request.choices is not None:
            top = _answer_token_top(choice, request.answer_prefix)
            probs = label_probs_from_top_logprobs(top, request.choices) if top else None
            if probs is not None:
                out.label_probs, out.confidence_source = probs, "top_logprobs"
        return out


class _BadResponse(Exception):
    """A 2xx answer that is not a usable chat completion."""


def _answer_token_top(choice: Any, answer_prefix: str = "") -> list[tuple[str, float]]:
    """The (token, logprob) alternatives of the token where the answer starts, or [] when not
    returned.

    Without ``answer_prefix`` that is the first generated token. With one (a JSON answer,
    ``{"answer": "``), it is the first token after the generated text has written the prefix
    (whitespace ignored, so ``{ "answer" : "`` counts); [] when the text never writes it or a
    token runs from the prefix into the value.
    """
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return []
    if not answer_prefix:
        return [(t.token, float(t.logprob)) for t in (content[0].top_logprobs or [])]
    want = "".join(answer_prefix.split())
    seen = ""
    for k, tok in enumerate(content):
        seen += "".join(str(tok.token).split())
        if seen.endswith(want) and k + 1 < len(content):
            return [(t.token, float(t.logprob)) for t in (content[k + 1].top_logprobs or [])]
        if want in seen:  # a token ran past the prefix into the value: no clean answer token
            return []
    return []


def _classify(exc: Exception) -> tuple[ErrorKind, bool, float | None]:
    """(kind, retry?, server-requested wait in s or None) of a failed attempt."""
    import openai

    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError
        return "timeout", True, None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", True, None
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        wait = _retry_after(exc)
        if status == 429:
            return "rate_limited", True, wait
        if status == 408:
            return "timeout", True, wait
        if status >= 500:
            return "server_error", True, wait
        return "bad_request", False, None
    if isinstance(exc, (_BadResponse, openai.APIResponseValidationError, ValueError)):
        return "bad_response", False, None  # json.JSONDecodeError is a ValueError
    return "error", False, None


def _retry_after(exc: Any) -> float | None:
    try:
        value = float(exc.response.headers.get("retry-after", ""))
    except (AttributeError, TypeError, ValueError):
        return None
    return min(max(value, 0.0), _RETRY_AFTER_CAP_S)


def _detail(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc)[:500]}"
