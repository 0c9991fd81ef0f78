"""A local OpenAI-compatible endpoint whose behaviour each test scripts: the commercial providers'
ways of answering (reasoning models' 400s, 429s with ``Retry-After`` or ``x-ratelimit-*``
headers, slow answers, log-probabilities, the files and batches endpoints) on 127.0.0.1 only.

It follows the OpenAI API reference (https://platform.openai.com/docs/api-reference: chat
completions, models, files, batches; https://platform.openai.com/docs/guides/rate-limits for the
``x-ratelimit-*`` headers). A test passes a *behaviour*: a function from the request to a
:class:`Reply`; behaviours see every request (chat, files, batches), so one test's server can
be a reasoning model, another's a rate-limited one. Everything the server received is kept in
:attr:`FakeProvider.requests` for assertions.

Usage::

    with FakeProvider(behaviour) as fp:
        spec = {"provider": "openai", "base_url": fp.base_url, "model": "m"}
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.serve import free_port


@dataclass
class Request:
    """One request the server received: method, path (without the query), headers (lower-case
    names), the JSON body (None when absent or not JSON) and the raw body bytes."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    received: float  # time.monotonic() on arrival


@dataclass
class Reply:
    """What the server answers: status, a JSON-able body (or raw bytes), extra headers, and a
    delay in seconds before answering (a slow model)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    raw: bytes | None = None


#: A behaviour: the request (and the server, for its counters) -> the reply, or None for the
#: default (``GET /models`` lists the served models; anything else is a 404).
Behaviour = Callable[[Request, "FakeProvider"], "Reply | None"]


def chat_completion(content: str | None, *, model: str = "m", prompt_tokens: int = 7,
                    completion_tokens: int = 2, logprobs: list[dict[str, Any]] | None = None,
                    finish_reason: str = "stop", **message: Any) -> dict[str, Any]:
    """A ``chat.completion`` object (``message`` adds keys to the message, e.g.
    ``reasoning_content``); ``logprobs`` is the ``choices[0].logprobs.content`` list."""
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason,
                              "message": {"role": "assistant", "content": content, **message}}
    if logprobs is not None:
        choice["logprobs"] = {"content": logprobs}
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def error_body(message: str, *, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The error object OpenAI-compatible endpoints answer a 4xx/5xx with."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def models_list(*ids: str) -> dict[str, Any]:
    """``GET /models``."""
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0,
                                        "owned_by": "fake"} for i in ids]}


class FakeProvider:
    """The server (a context manager). ``behaviour`` answers every request except
    ``GET /v1/models``, which lists ``models`` unless the behaviour handles it (return None
    from the behaviour to get the default)."""

    def __init__(self, behaviour: Behaviour, *, models: tuple[str, ...] = ("m",)) -> None:
        self.behaviour = behaviour
        self.models = models
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.state: dict[str, Any] = {}  # for behaviours that count or store (files, batches)
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use the server inside `with`"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def chat_requests(self) -> list[Request]:
        """The ``POST .../chat/completions`` requests received, in order."""
        with self.lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __enter__(self) -> FakeProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle's algorithm the body waits for
            # the client's delayed ACK of the headers, 40 ms a call
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                req = Request(self.command, self.path.split("?", 1)[0],
                              {k.lower(): v for k, v in self.headers.items()}, body, raw,
                              time.monotonic())
                with provider.lock:
                    provider.requests.append(req)
                reply = provider.behaviour(req, provider)
                if reply is None and req.method == "GET" and req.path.endswith("/models"):
                    reply = Reply(body=models_list(*provider.models))
                if reply is None:
                    reply = Reply(404, error_body(f"no route {req.method} {req.path}"))
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout, Ctrl-C): nothing to answer

            do_GET = do_POST = do_DELETE = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


def always(reply: Reply) -> Behaviour:
    """A behaviour answering every chat request with ``reply`` (models listed by default)."""
    def behaviour(req: Request, _: FakeProvider) -> Reply | None:
        return reply if req.path.endswith("/chat/completions") else None
    return behaviour


class ManualClock:
    """A clock (:class:`harness.teachers.providers.rate_limit.Clock`) whose waits pass at once:
    ``wait(stop, s)`` moves the time ``s`` seconds on and records ``s`` in :attr:`waits`. A
    test of a 20-second reset or a 10-minute retry horizon takes no time. Real time does not
    move it, so it suits one worker thread (``concurrency: 1``) or waits that are not raced."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self.t

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        if stop.is_set():
            return True
        with self._lock:
            if seconds > 0:
                self.waits.append(seconds)
                self.t += seconds
        return stop.is_set()
