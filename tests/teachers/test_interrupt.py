"""Ctrl-C with calls in flight: the process exits within 2 s, no request starts after the signal,
and the answers that arrive while it stops are in the call cache.

The teacher runs in a child process that imports polars first, like ``harness generate`` (once
polars has started its threads, a main thread blocked in a plain wait may not see SIGINT for
seconds); the slow endpoint (:mod:`tests.helpers.fake_provider`) runs here, so the times of its
requests and of the signal are on one clock.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cli
from tests.helpers.fake_provider import FakeProvider, Reply, Request, chat_completion, error_body

ROOT = Path(__file__).resolve().parents[2]
#: The child: 8 prompts, concurrency 4, through the call cache, as the generate stage asks them.
SCRIPT = """
import polars  # noqa: F401  (first, as the CLI does: it changes how signals reach the main thread)
import sys

from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest
from harness.teachers.cache import CachedTeacher, CallCache
from harness.teachers.providers.openai_chat import OpenAIChatTeacher

url, cache_path = sys.argv[1], sys.argv[2]
spec = OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": url, "model": "m",
                                         "concurrency": 4, "timeout_s": 30})
cache = CallCache(cache_path)
teacher = CachedTeacher(OpenAIChatTeacher("t", spec), cache)
requests = [ChatRequest(messages=(("user", f"q{i}"),), max_tokens=8) for i in range(8)]
try:
    teacher.complete_many(requests, lambda i, c: None)
except KeyboardInterrupt:
    cache.close()
    print("interrupted", file=sys.stderr)
    sys.exit(130)
print("finished", file=sys.stderr)
"""


def _run_and_interrupt(fp: FakeProvider, tmp_path: Path, *, after_first_s: float,
                       in_flight: int = 4) -> tuple[float, float, int, str]:
    """Start the child, send SIGINT ``after_first_s`` after the first of ``in_flight``
    requests arrived; return (signal time, exit time, exit status, stderr)."""
    cache = tmp_path / "cache.sqlite"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, fp.base_url, str(cache)], cwd=ROOT,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60  # the child's imports, on a loaded machine
        while len(fp.chat_requests()) < in_flight:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the child sent no requests"
            time.sleep(0.01)
        first = fp.chat_requests()[0].received
        time.sleep(max(0.0, first + after_first_s - time.monotonic()))
        signalled = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return signalled, exited, proc.returncode, err


def _cached_calls(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


def _slow(delay_s: float):
    def behaviour(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        return Reply(body=chat_completion("hello"), delay_s=delay_s)
    return behaviour


@pytest.mark.slow  # the endpoint takes 3 s per answer, as in the case it reproduces
def test_ctrl_c_caches_the_answers_arriving_while_stopping(tmp_path: Path) -> None:
    # the signal 2.8 s into 3 s answers: the four in flight come back 0.2 s later, within
    # the 0.5 s the teacher still takes answers after Ctrl-C
    with FakeProvider(_slow(3.0)) as fp:
        signalled, exited, rc, err = _run_and_interrupt(fp, tmp_path, after_first_s=2.8)
        received = [r.received for r in fp.chat_requests()]
    assert rc == 130 and "interrupted" in err
    assert exited - signalled < 2.0
    assert len(received) == 4 and max(received) < signalled  # nothing started after it
    assert _cached_calls(tmp_path / "cache.sqlite") == 4  # a re-run pays for 4, not 8


def test_ctrl_c_does_not_wait_for_calls_in_flight(tmp_path: Path) -> None:
    with FakeProvider(_slow(3.0)) as fp:
        signalled, exited, rc, err = _run_and_interrupt(fp, tmp_path, after_first_s=0.3)
        received = [r.received for r in fp.chat_requests()]
    assert rc == 130 and "interrupted" in err
    assert exited - signalled < 2.0  # not the 3 s the answers take
    assert len(received) == 4 and max(received) < signalled


def test_ctrl_c_during_a_rate_limit_backoff_is_prompt(tmp_path: Path) -> None:
    def limited(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        return Reply(429, error_body("Rate limit reached", code="rate_limit_exceeded"),
                     headers={"retry-after": "30"})

    with FakeProvider(limited) as fp:
        signalled, exited, rc, err = _run_and_interrupt(fp, tmp_path, after_first_s=0.3,
                                                        in_flight=1)
        received = [r.received for r in fp.chat_requests()]
    assert rc == 130 and "interrupted" in err
    assert exited - signalled < 2.0  # not the 30 s the provider asked for
    assert max(received) < signalled


def test_the_cli_says_what_ctrl_c_kept(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_generate", interrupted)
    assert cli.main(["generate", "exp.yaml"]) == 130
    assert "call cache" in capsys.readouterr().err
