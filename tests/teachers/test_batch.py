"""``batch: true``: the openai provider through the Batch API (files and batches endpoints),
against a local server that implements them: a full run, resuming the same batch after Ctrl-C
(no second upload or batch), failed lines and ended batches as failed calls, batch prices."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import InputError
from harness.experiment.policy import TeacherCost
from harness.experiment.teachers import HFTeacherSpec, OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.cache import CachedTeacher, CallCache, call_key
from harness.teachers.providers import build_teacher
from harness.teachers.providers.openai_batch import (
    OpenAIBatchTeacher,
    line_body,
    sliced_sleep,
)
from harness.teachers.providers.openai_wire import request_body
from tests.helpers.fake_provider import FakeProvider, Reply, Request, chat_completion, error_body

#: What the server makes of one input line: the output line's ``response`` and ``error``.
Answer = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, dict[str, Any] | None]]


def echo(line: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Answer every request with its last message, 7 prompt and 2 completion tokens."""
    text = line["body"]["messages"][-1]["content"]
    return {"status_code": 200, "request_id": "r", "body": chat_completion(f"echo {text}")}, None


class BatchAPI:
    """The OpenAI files and batches endpoints (a FakeProvider behaviour): uploads are kept, a
    batch ends with status ``end`` at its ``polls``-th status check, and its output and error
    files hold what ``answer`` makes of each input line (``ran``: how many lines an expired
    or cancelled batch ran; ``drop``: contents of lines a completed batch loses)."""

    def __init__(self, answer: Answer = echo, *, polls: int = 2, end: str = "completed",
                 ran: int = 0, drop: tuple[str, ...] = ()) -> None:
        self.answer, self.polls, self.end, self.ran, self.drop = answer, polls, end, ran, drop
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, int] = {}
        self.lock = threading.Lock()

    def uploads(self) -> list[list[dict[str, Any]]]:
        """The lines of every uploaded input file, in upload order."""
        return [[json.loads(x) for x in raw.decode().splitlines()]
                for fid, raw in self.files.items() if fid.startswith("file-in")]

    def __call__(self, req: Request, fp: FakeProvider) -> Reply | None:
        with self.lock:
            return self._route(req)

    def _route(self, req: Request) -> Reply | None:
        path = req.path.removeprefix("/v1")
        if req.method == "POST" and path == "/files":
            msg = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + req.headers["content-type"].encode() + b"\r\n\r\n" + req.raw)
            parts: dict[Any, bytes] = {
                p.get_param("name", header="content-disposition"): bytes(p.get_payload(decode=True))
                for p in msg.iter_parts()}
            assert parts["purpose"] == b"batch"
            fid = f"file-in{len(self.files) + 1}"
            self.files[fid] = parts["file"]
            return Reply(body={"id": fid, "object": "file", "bytes": len(parts["file"]),
                               "created_at": 0, "filename": "requests.jsonl",
                               "purpose": "batch", "status": "processed"})
        if req.method == "POST" and path == "/batches":
            bid = f"batch_{len(self.batches) + 1}"
            n = len(self.files[req.body["input_file_id"]].splitlines())
            self.batches[bid] = {
                "id": bid, "object": "batch", "endpoint": req.body["endpoint"],
                "input_file_id": req.body["input_file_id"], "created_at": 0,
                "completion_window": req.body["completion_window"], "status": "validating",
                "request_counts": {"total": n, "completed": 0, "failed": 0}}
            self.checks[bid] = 0
            return Reply(body=self.batches[bid])
        if req.method == "GET" and path == "/batches":
            return Reply(body={"object": "list", "data": list(self.batches.values())[::-1],
                               "has_more": False})
        if req.method == "GET" and (m := re.fullmatch(r"/batches/(\w+)", path)):
            batch = self.batches.get(m[1])
            if batch is None:
                return Reply(404, error_body(f"No batch found with id '{m[1]}'"))
            self.checks[m[1]] += 1
            if batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                batch["status"] = "in_progress"
                if self.checks[m[1]] >= self.polls:
                    self._end(batch)
            return Reply(body=batch)
        if req.method == "GET" and (m := re.fullmatch(r"/files/([\w-]+)/content", path)):
            return Reply(raw=self.files[m[1]], headers={"Content-Type": "application/jsonl"})
        return None

    def _end(self, batch: dict[str, Any]) -> None:
        batch["status"] = self.end
        if self.end == "failed":
            batch["errors"] = {"object": "list", "data": [
                {"code": "invalid_request", "message": "model m is not available in batch",
                 "line": 1}]}
            return
        lines = [json.loads(x) for x in self.files[batch["input_file_id"]].splitlines()]
        if self.end != "completed":
            lines = lines[:self.ran]
        out: list[str] = []
        err: list[str] = []
        for n, line in enumerate(lines):
            if line["body"]["messages"][-1]["content"] in self.drop:
                continue
            response, error = self.answer(line)
            row = {"id": f"batch_req_{n}", "custom_id": line["custom_id"], "response": response,
                   "error": error}
            ok = error is None and response is not None and response["status_code"] == 200
            (out if ok else err).append(json.dumps(row))
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-{name[:3]}-{batch['id']}"
                self.files[fid] = ("\n".join(rows) + "\n").encode()
                batch[name] = fid
        batch["request_counts"]["completed"] = len(out)
        batch["request_counts"]["failed"] = len(err)


def requests_(*texts: str) -> list[ChatRequest]:
    return [ChatRequest(messages=(("user", t),), max_tokens=16) for t in texts]


class Run:
    """A batch teacher behind the call cache, with the waits recorded instead of slept and
    its status lines kept (``interrupt_at``: the wait at which Ctrl-C arrives)."""

    def __init__(self, fp: FakeProvider, cache: CallCache, *, interrupt_at: int | None = None,
                 **spec: Any) -> None:
        self.spec = OpenAITeacherSpec(**{"provider": "openai", "base_url": fp.base_url,
                                         "model": "m", "batch": True, "batch_poll_s": 5.0,
                                         "max_retries": 0, **spec})
        teacher = build_teacher("a", self.spec, cache)
        assert isinstance(teacher, OpenAIBatchTeacher)
        self.teacher, self.cache = teacher, cache
        self.waits: list[float] = []
        self.said: list[str] = []
        teacher._say = self.said.append

        def sleep(s: float) -> None:
            self.waits.append(s)
            if interrupt_at is not None and len(self.waits) >= interrupt_at:
                raise KeyboardInterrupt

        teacher._sleep = sleep

    def ask(self, requests: list[ChatRequest]) -> list[Completion]:
        out: list[Completion | None] = [None] * len(requests)

        def done(i: int, c: Completion) -> None:
            assert out[i] is None, f"request {i} answered twice"
            out[i] = c

        CachedTeacher(self.teacher, self.cache).complete_many(requests, done)
        assert all(c is not None for c in out), "a request was never answered"
        return [c for c in out if c is not None]


def _count(fp: FakeProvider, method: str, pattern: str) -> int:
    return sum(1 for r in fp.requests if r.method == method and re.fullmatch(pattern, r.path))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[CallCache]:
    with CallCache(tmp_path / "calls.sqlite") as store:
        yield store


def test_a_full_batch_run_uploads_once_polls_and_caches_every_answer(cache: CallCache) -> None:
    api = BatchAPI(polls=3)
    reqs = requests_("q0", "q1", "q2", "q3", "q0")  # a repeated request shares one line
    with FakeProvider(api) as fp:
        run = Run(fp, cache)
        got = run.ask(reqs)
        assert [c.text for c in got] == ["echo q0", "echo q1", "echo q2", "echo q3", "echo q0"]
        assert all(c.error is None and c.prompt_tokens == 7 and c.completion_tokens == 2
                   for c in got)
        assert run.waits == [5.0, 5.0]  # checked 3 times, batch_poll_s apart
        [lines] = api.uploads()
        assert [ln["custom_id"] for ln in lines] == [call_key(run.teacher, r) for r in reqs[:4]]
        assert all(ln["method"] == "POST" and ln["url"] == "/v1/chat/completions" for ln in lines)
        assert lines[1]["body"] == line_body(request_body(run.spec, reqs[1], False))
        [created] = [r.body for r in fp.requests if r.path == "/v1/batches"]
        assert created == {"input_file_id": "file-in1", "endpoint": "/v1/chat/completions",
                           "completion_window": "24h"}
        assert any("submitted batch batch_1 (4 requests" in s for s in run.said)
        assert cache.open_batches("a") == []  # collected and closed
        assert cache.counts("a") == {"calls": 4, "failures": 0}
        # a rerun is answered from the cache: nothing reaches the server
        seen = len(fp.requests)
        assert [c.cached for c in Run(fp, cache).ask(reqs)] == [True] * 5
        assert len(fp.requests) == seen


def test_ctrl_c_while_polling_keeps_the_batch_and_the_rerun_resumes_it(tmp_path: Path) -> None:
    api = BatchAPI(polls=3)
    reqs = requests_("q0", "q1", "q2")
    with FakeProvider(api) as fp:
        with CallCache(tmp_path / "calls.sqlite") as first:
            run = Run(fp, first, interrupt_at=1)
            with pytest.raises(KeyboardInterrupt):
                run.ask(reqs)
            assert "stopped waiting for batch batch_1" in run.said[-1]
            assert "run generate again" in run.said[-1]
            [kept] = first.open_batches("a")
            assert (kept.batch_id, kept.input_file_id) == ("batch_1", "file-in1")
            assert set(kept.keys) == {call_key(run.teacher, r) for r in reqs}
        with CallCache(tmp_path / "calls.sqlite") as again:  # a new process, the same file
            run = Run(fp, again)
            got = run.ask(reqs)
            assert [c.text for c in got] == ["echo q0", "echo q1", "echo q2"]
            assert any("resuming batch batch_1" in s for s in run.said)
            assert again.open_batches("a") == []
        assert _count(fp, "POST", "/v1/files") == 1
        assert _count(fp, "POST", "/v1/batches") == 1
        assert api.checks["batch_1"] == 3


def test_ctrl_c_handled_by_another_thread_ends_the_wait_at_once(cache: CallCache) -> None:
    # polars' threads can take the SIGINT: the main thread's sleep is then not woken by it
    api = BatchAPI(polls=99)
    with FakeProvider(api) as fp:
        run = Run(fp, cache, batch_poll_s=30.0)
        run.teacher._sleep = sliced_sleep
        timer = threading.Timer(0.3, signal.raise_signal, (signal.SIGINT,))
        start = time.monotonic()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                run.ask(requests_("q0"))
        finally:
            timer.cancel()
        assert time.monotonic() - start < 2.0
        assert "stopped waiting for batch batch_1" in run.said[-1]
        assert [b.batch_id for b in cache.open_batches("a")] == ["batch_1"]


def test_a_smaller_rerun_keeps_the_answers_it_did_not_ask(cache: CallCache) -> None:
    api = BatchAPI(polls=2)
    reqs = requests_("q0", "q1", "q2", "q3")
    with FakeProvider(api) as fp:
        with pytest.raises(KeyboardInterrupt):
            Run(fp, cache, interrupt_at=1).ask(reqs)
        # --limit 2: collects the whole batch, answers two, keeps the other two
        assert [c.text for c in Run(fp, cache).ask(reqs[:2])] == ["echo q0", "echo q1"]
        seen = len(fp.requests)
        got = Run(fp, cache).ask(reqs)
        assert [c.text for c in got] == ["echo q0", "echo q1", "echo q2", "echo q3"]
        assert [c.cached for c in got] == [True, True, False, False]
        assert len(fp.requests) == seen  # answered from the kept lines: no call at all
        assert cache.counts("a")["calls"] == 4


def test_an_interruption_between_upload_and_record_adopts_the_created_batch(
        cache: CallCache, monkeypatch: pytest.MonkeyPatch) -> None:
    api = BatchAPI(polls=1)
    reqs = requests_("q0", "q1")
    with FakeProvider(api) as fp:
        run = Run(fp, cache)
        real = cache.update_batch

        def interrupted(*a: Any, **k: Any) -> None:
            raise KeyboardInterrupt  # the batch exists at the provider, its id is not recorded

        monkeypatch.setattr(cache, "update_batch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run.ask(reqs)
        assert "input file file-in1" in run.said[-1]
        monkeypatch.setattr(cache, "update_batch", real)
        got = Run(fp, cache).ask(reqs)
        assert [c.text for c in got] == ["echo q0", "echo q1"]
        assert _count(fp, "POST", "/v1/files") == 1
        assert _count(fp, "POST", "/v1/batches") == 1  # found in GET /batches, not re-created


def refusing(line: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    text = line["body"]["messages"][-1]["content"]
    if text == "bad":
        return {"status_code": 400, "request_id": "r", "body": error_body(
            "Incorrect API key provided: sk-proj-abcdefghijklmnop1234")}, None
    if text == "busy":
        return {"status_code": 429, "request_id": "r", "body": error_body("slow down")}, None
    if text == "empty":
        return {"status_code": 200, "request_id": "r", "body": chat_completion(None)}, None
    return echo(line)


def test_failed_lines_are_failed_calls_and_a_rerun_sends_only_them(cache: CallCache) -> None:
    api = BatchAPI(refusing, polls=1, drop=("lost",))
    reqs = requests_("ok", "bad", "busy", "empty", "lost")
    with FakeProvider(api) as fp:
        got = Run(fp, cache).ask(reqs)
        assert [c.error for c in got] == [None, "bad_request", "rate_limited", "bad_response",
                                          "bad_response"]
        assert got[0].text == "echo ok" and all(c.text is None for c in got[1:])
        assert "HTTP 400" in (got[1].error_detail or "")
        assert "sk-proj" not in (got[1].error_detail or "")  # redacted
        assert "completed without an answer" in (got[4].error_detail or "")
        assert cache.counts("a") == {"calls": 1, "failures": 4}
        Run(fp, cache).ask(reqs)
        first, second = api.uploads()
        assert len(first) == 5
        assert [ln["body"]["messages"][-1]["content"] for ln in second] == [
            "bad", "busy", "empty", "lost"]


@pytest.mark.parametrize(("end", "kind", "said"), [
    ("expired", "timeout", "batch batch_1 expired"),
    ("failed", "bad_request", "batch batch_1 failed: invalid_request: model m is not available"),
    ("cancelled", "error", "batch batch_1 was cancelled"),
])
def test_an_ended_batch_fails_the_requests_it_never_ran(
        cache: CallCache, end: str, kind: str, said: str) -> None:
    api = BatchAPI(polls=2, end=end, ran=1)
    with FakeProvider(api) as fp:
        run = Run(fp, cache)
        got = run.ask(requests_("q0", "q1", "q2"))
        if end == "failed":  # a failed batch runs nothing
            assert [c.error for c in got] == [kind] * 3
        else:
            assert [c.text for c in got] == ["echo q0", None, None]
            assert [c.error for c in got[1:]] == [kind] * 2
        assert said in (got[2].error_detail or "")
        assert any(said in s and "run generate again" in s for s in run.said)
        assert cache.open_batches("a") == []  # nothing left to collect from it


def test_an_endpoint_without_a_batch_api_is_an_input_error(cache: CallCache) -> None:
    with FakeProvider(lambda req, fp: None) as fp:  # only GET /models
        with pytest.raises(InputError, match="has no batch API .*POST /files.* answered 404"):
            Run(fp, cache).ask(requests_("q0"))
        assert cache.open_batches("a") == []


def test_an_unreadable_status_fails_the_calls_and_keeps_the_batch(cache: CallCache) -> None:
    api = BatchAPI(polls=5)

    def flaky(req: Request, fp: FakeProvider) -> Reply | None:
        if req.method == "GET" and req.path.startswith("/v1/batches/"):
            # the client's own retry waits the 1 ms it is told to
            return Reply(503, error_body("overloaded"), headers={"retry-after-ms": "1"})
        return api(req, fp)

    with FakeProvider(flaky) as fp:
        run = Run(fp, cache, max_retries=1)
        got = run.ask(requests_("q0"))
        assert got[0].error == "server_error"
        assert [b.batch_id for b in cache.open_batches("a")] == ["batch_1"]  # resumable
        assert run.waits == [5.0]  # two unreadable rounds: max_retries + 1


def test_batch_spec_keys_and_batch_prices() -> None:
    base = {"provider": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    spec = OpenAITeacherSpec(**base, batch=True, batch_completion_window="7d")
    assert (spec.batch, spec.batch_poll_s, spec.batch_max_requests) == (True, 30.0, 50_000)
    with pytest.raises(ValueError, match="not a completion window"):
        OpenAITeacherSpec(**base, batch=True, batch_completion_window="soon")
    with pytest.raises(ValueError, match="batch"):
        HFTeacherSpec(provider="hf", model=Path("m"), batch=True)  # type: ignore[call-arg]
    assert TeacherCost(price_per_1k_prompt=1.0, price_per_1k_completion=3.0
                       ).batch_prices() == (0.5, 1.5)
    assert TeacherCost(price_per_1k_prompt=1.0, price_per_1k_completion=3.0,
                       batch_price_per_1k_prompt=0.75).batch_prices() == (0.75, 1.5)
    with pytest.raises(ValueError, match="call cache"):
        build_teacher("a", spec)


def test_generate_prices_a_batch_teacher_at_the_batch_rate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.checks import load_experiment
    from harness.commands.generate import run_generate
    from harness.teachers.generate import _price

    def label(line: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return {"status_code": 200, "body": chat_completion(
            '{"answer": "billing"}', prompt_tokens=100, completion_tokens=10)}, None

    (tmp_path / "train.jsonl").write_text("".join(
        json.dumps({"id": f"t{i}", "unit": "route", "prompt": f"charged twice {i}"}) + "\n"
        for i in range(3)), encoding="utf-8")
    with FakeProvider(BatchAPI(label, polls=1)) as fp:
        spec = {
            "name": "gen", "data": {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl",
                                    "judge_scale": [1, 5]},
            "units": {"route": {"kind": "label", "labels": ["billing", "shipping"]}},
            "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
            "buckets": {"only_a": {"teachers": ["a"], "select": "all"}},
            "fields": {"answer_only": {}},
            "baseline": {"bucket": "only_a", "fields": "answer_only"},
            "design": {"noise_seeds": []},
            "teachers": {"a": {"provider": "openai", "base_url": fp.base_url, "model": "m",
                               "batch": True, "batch_poll_s": 0.01}},
            "costs": {"teachers": {"a": {"price_per_1k_prompt": 1.0,
                                         "price_per_1k_completion": 2.0}}},
            "generate": {"prompts": "train.jsonl", "cache": str(tmp_path / "calls.sqlite")},
        }
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        monkeypatch.chdir(tmp_path)
        _, result, _ = run_generate(str(path), progress=False)
        [tally] = result.stats
        assert (tally.prompt_tokens, tally.completion_tokens) == (300, 30)
        # half the synchronous 0.3 + 0.06
        assert result.cost(tally) == pytest.approx((0.18, 0.18))
    # a declared batch price wins; without batch: true the synchronous prices apply
    spec["costs"]["teachers"]["a"]["batch_price_per_1k_completion"] = 1.0  # type: ignore[index]
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert _price(load_experiment(path, check_files=False).spec, "a") == (0.5, 1.0)
    spec["teachers"]["a"]["batch"] = False  # type: ignore[index]
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert _price(load_experiment(path, check_files=False).spec, "a") == (1.0, 2.0)
