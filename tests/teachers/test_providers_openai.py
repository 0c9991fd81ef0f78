"""The ``openai`` provider's retries, error classes and checks, against a scripted local HTTP
server (stdlib ``http.server`` in a thread), and its label probabilities from top logprobs."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from harness.errors import InputError
from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers import ChatRequest, Completion
from harness.teachers.providers.openai_chat import OpenAIChatTeacher
from tests.helpers.chat import chat_request
from tests.helpers.fake_provider import ManualClock
from tests.helpers.serve import free_port

OK = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
      "choices": [{"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "hello"}}],
      "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}


class Script:
    """What the fake endpoint answers, one step per chat request; the rest answer OK."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []
        self.chat_calls = 0
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()


@pytest.fixture
def endpoint() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._send(200, json.dumps({"object": "list", "data": [
                {"id": "m", "object": "model", "created": 0, "owned_by": "t"}]}).encode())

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with script.lock:
                script.chat_calls += 1
                script.bodies.append(body)
                step = script.steps.pop(0) if script.steps else ("ok", None)
            kind, arg = step
            if kind == "status":
                self._send(arg, b'{"error": {"message": "scripted"}}', {"Retry-After": "0"})
            elif kind == "garbage":
                self._send(200, b"<html>not json")
            elif kind == "sleep":
                time.sleep(arg)
                self._send(200, json.dumps(OK).encode())
            else:
                self._send(200, json.dumps(arg or OK).encode())

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    finally:
        server.shutdown()
        server.server_close()


def _teacher(url: str, **kw: Any) -> OpenAIChatTeacher:
    spec = OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": url, "model": "m",
                                             "timeout_s": 2, "max_retries": 2, **kw})
    # the backoff's length is not what these tests measure: its waits pass at once
    return OpenAIChatTeacher("t", spec, clock=ManualClock())


def _one(t: OpenAIChatTeacher, request: ChatRequest | None = None) -> Completion:
    got: list[Completion] = []
    t.complete_many([request or chat_request(t.spec, "hi")], lambda i, c: got.append(c))
    return got[0]


def test_429_then_ok_is_retried(endpoint) -> None:
    url, script = endpoint
    script.steps = [("status", 429), ("status", 503)]
    c = _one(_teacher(url))
    assert c.error is None and c.text == "hello" and c.attempts == 3
    assert (c.prompt_tokens, c.completion_tokens) == (7, 2)


@pytest.mark.parametrize(("step", "kind", "calls"), [
    (("status", 500), "server_error", 3),   # retried max_retries times, then given up
    (("status", 400), "bad_request", 1),    # a client error is not retried
    (("status", 401), "auth", 1),           # nor a refused key or access
    (("status", 403), "auth", 1),
    (("garbage", None), "bad_response", 1),
])
def test_failures_are_classified(endpoint, step, kind, calls) -> None:
    url, script = endpoint
    script.steps = [step] * 3
    c = _one(_teacher(url))
    assert c.text is None and c.error == kind and c.attempts == calls
    assert script.chat_calls == calls


def test_timeout_is_classified_and_retried(endpoint) -> None:
    url, script = endpoint
    script.steps = [("sleep", 1.5), ("sleep", 1.5)]
    c = _one(_teacher(url, timeout_s=0.3, max_retries=1))
    assert c.error == "timeout" and c.attempts == 2


def test_concurrency_runs_requests_in_parallel(endpoint) -> None:
    url, script = endpoint
    script.steps = [("sleep", 0.4)] * 4
    t = _teacher(url, concurrency=4)
    got: dict[int, Completion] = {}
    start = time.monotonic()
    t.complete_many([chat_request(t.spec, f"q{i}") for i in range(4)],
                    lambda i, c: got.__setitem__(i, c))
    assert sorted(got) == [0, 1, 2, 3] and all(c.text == "hello" for c in got.values())
    assert time.monotonic() - start < 1.2  # 4 x 0.4 s one at a time would be 1.6 s


def test_system_prompt_and_logprobs_reach_the_endpoint(endpoint) -> None:
    url, script = endpoint
    t = _teacher(url, system="Be terse.", logprobs=True, top_logprobs=5)
    answer = json.loads(json.dumps(OK))
    answer["choices"][0]["message"]["content"] = '{"answer": "Positive"}'
    answer["choices"][0]["logprobs"] = {"content": [
        {"token": '{"answer": "', "logprob": 0.0, "bytes": [], "top_logprobs": []},
        {"token": "Pos", "logprob": math.log(0.6), "bytes": [], "top_logprobs": [
            {"token": "Pos", "logprob": math.log(0.6), "bytes": []},
            {"token": " negative", "logprob": math.log(0.2), "bytes": []},
            {"token": "The", "logprob": math.log(0.1), "bytes": []}]},
        {"token": "itive", "logprob": 0.0, "bytes": [], "top_logprobs": []},
        {"token": '"}', "logprob": 0.0, "bytes": [], "top_logprobs": []}]}
    script.steps = [("ok", answer)]
    c = _one(t, chat_request(t.spec, "sentiment?", choices=("positive", "negative")))
    body = script.bodies[0]
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert c.confidence_source == "top_logprobs"
    # measured at the answer's value, not renormalised (the label parser's case-folding)
    assert c.label_probs == pytest.approx({"positive": 0.6, "negative": 0.2})


def test_missing_key_env_fails_before_any_call(endpoint, monkeypatch) -> None:
    url, script = endpoint
    monkeypatch.delenv("H1_TEST_KEY", raising=False)
    with pytest.raises(InputError, match="H1_TEST_KEY is not set"):
        _teacher(url, api_key_env="H1_TEST_KEY").check()
    assert script.chat_calls == 0


def test_check_passes_and_unreachable_endpoint_is_input_error(endpoint) -> None:
    url, _ = endpoint
    _teacher(url).check()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(InputError, match="cannot reach"):
        _teacher(dead).check()
    with pytest.raises(InputError, match="'gpt-x' is not served"):
        _teacher(url, model="gpt-x").check()


def test_config_key_ignores_concurrency_but_not_the_model(endpoint) -> None:
    url, _ = endpoint
    assert _teacher(url).config_key() == _teacher(url, concurrency=9, timeout_s=5).config_key()
    assert _teacher(url).config_key() != _teacher(url, model="n").config_key()
    assert _teacher(url).config_key() != _teacher(url, system="x").config_key()
