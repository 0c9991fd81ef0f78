"""The call cache: hits are served without the teacher, failures are counted not cached, the
tally adds up, and a SIGKILLed writer loses no committed call."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.teachers import CachedTeacher, CallCache, ChatRequest, Completion
from harness.teachers.base import OnDone


class EchoTeacher:
    """Answers ``echo: <last message>``, fails on prompts starting with ``fail``; counts calls."""

    def __init__(self, name: str = "echo", style: str = "") -> None:
        self.name, self.style, self.seen = name, style, 0

    def config_key(self) -> str:
        return f"echo/{self.style}"

    def check(self) -> None:
        pass

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        for i, r in enumerate(requests):
            self.seen += 1
            text = r.messages[-1][1]
            if text.startswith("fail"):
                on_done(i, Completion(text=None, error="server_error", error_detail="boom",
                                      attempts=3, seconds=0.5))
            else:
                on_done(i, Completion(text=f"echo: {text}", prompt_tokens=len(text),
                                      completion_tokens=2, seconds=0.1))


def _req(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=(("user", text),), max_tokens=8, **kw)  # type: ignore[arg-type]


def _run(t: CachedTeacher, reqs: list[ChatRequest]) -> list[Completion]:
    out: dict[int, Completion] = {}
    t.complete_many(reqs, lambda i, c: out.__setitem__(i, c))
    return [out[i] for i in range(len(reqs))]


def test_hits_failures_and_tally(tmp_path: Path) -> None:
    inner = EchoTeacher()
    with CallCache(tmp_path / "c.sqlite") as cache:
        t = CachedTeacher(inner, cache)
        first = _run(t, [_req("a"), _req("fail 1"), _req("bb")])
        assert [c.text for c in first] == ["echo: a", None, "echo: bb"]
        again = _run(t, [_req("bb"), _req("fail 1"), _req("a"), _req("a", seed=1)])
        # bb and a from the file; the failure and the new seed went to the teacher again
        assert inner.seen == 3 + 2
        assert [c.cached for c in again] == [True, False, True, False]
        assert again[0].seconds == 0 and again[0].text == "echo: bb"
        tally = t.tally
        assert tally.calls == 7 and tally.cache_hits == 2
        assert tally.failures == {"server_error": 2} and tally.retries == 4
        assert tally.prompt_tokens == 1 + 2 + 1 and tally.cached_prompt_tokens == 3
        assert t.tally.cost(1.0, 10.0) == (4 + 3 * 20) / 1000
        assert cache.counts("echo") == {"calls": 3, "failures": 2}
        # another prompt style of the same teacher name is another configuration
        other = CachedTeacher(EchoTeacher(style="terse"), cache)
        assert not _run(other, [_req("a")])[0].cached


def test_cache_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "c.sqlite"
    writer = textwrap.dedent(f"""
        import sys, time
        from harness.teachers import CallCache, Completion
        cache = CallCache({str(db)!r})
        for i in range(5):
            cache.put(f"k{{i}}", "t", Completion(text=f"answer {{i}}", completion_tokens=i))
        print("written", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with CallCache(db) as cache:
        got = cache.get("k4")
        assert got is not None and got.text == "answer 4" and got.completion_tokens == 4
        assert cache.counts() == {"calls": 5, "failures": 0}


def test_an_unusable_cache_path_is_refused_before_any_call(tmp_path: Path) -> None:
    folder = tmp_path / "a_folder.sqlite"
    folder.mkdir()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not a database " * 100)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:  # another program's table named `calls`
        db.execute("CREATE TABLE calls (x INTEGER)")
    (tmp_path / "file").write_text("x")
    for path in (folder, garbage, other, tmp_path / "file" / "c.sqlite"):
        with pytest.raises(InputError, match="cannot use it as the teacher call cache"):
            CallCache(path)
    assert garbage.read_bytes() == b"not a database " * 100  # left as it was
