"""Nothing paid twice: every answered teacher call on disk (SQLite), and the per-teacher tally.

:class:`CallCache` is one SQLite file in WAL mode; each answered call is committed as its own
transaction the moment it arrives, so Ctrl-C or SIGKILL loses no answered call and an interrupted
``generate`` resumes where it stopped. The key is ``sha256(teacher.config_key() + canonical JSON
of request.key_data())``: the same prompt to the same configured teacher. Failed calls are not
cached (the next run retries them) but are recorded in a ``failures`` table, so a summary can
count them.

:class:`CachedTeacher` wraps any :class:`~harness.teachers.base.Teacher`: hits are answered from
the file (``cached=True``, ``seconds=0``), misses go to the wrapped teacher, and every answer
updates a :class:`TeacherTally` (what the progress bar and the summary table read).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.teachers.base import ChatRequest, Completion, OnDone, Teacher

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, teacher TEXT NOT NULL, created REAL NOT NULL, completion TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, teacher TEXT NOT NULL,
    created REAL NOT NULL, kind TEXT NOT NULL, detail TEXT);
"""


def call_key(teacher: Teacher, request: ChatRequest) -> str:
    """The cache key of one call: 64 hex chars."""
    canonical = json.dumps(request.key_data(), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256((teacher.config_key() + canonical).encode("utf-8")).hexdigest()


class CallCache:
    """The SQLite file of answered calls; safe to share between threads (one lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # autocommit mode (isolation_level=None): every INSERT is its own committed transaction
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only a power cut can lose the last
        # commits), at a fraction of FULL's fsyncs
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def get(self, key: str) -> Completion | None:
        """The stored completion of ``key``, or None."""
        with self._lock:
            row = self._db.execute("SELECT completion FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        known = {f.name for f in dataclasses.fields(Completion)}
        return Completion(**{k: v for k, v in data.items() if k in known})

    def put(self, key: str, teacher: str, completion: Completion) -> None:
        """Store an answered call (committed before returning). Failed calls are refused."""
        if completion.error is not None:
            raise ValueError("failed calls are not cached; use record_failure")
        blob = json.dumps(dataclasses.asdict(completion), ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?)",
                             (key, teacher, time.time(), blob))

    def record_failure(self, key: str, teacher: str, completion: Completion) -> None:
        """Count a failed call (kind and detail), without caching it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO failures (key, teacher, created, kind, detail) VALUES (?, ?, ?, ?, ?)",
                (key, teacher, time.time(), completion.error or "error",
                 (completion.error_detail or "")[:2000]))

    def counts(self, teacher: str | None = None) -> dict[str, int]:
        """``{"calls": answered rows, "failures": recorded failures}`` (of one teacher or all)."""
        where, args = ("WHERE teacher = ?", (teacher,)) if teacher is not None else ("", ())
        with self._lock:
            calls = self._db.execute(f"SELECT COUNT(*) FROM calls {where}", args).fetchone()[0]
            fails = self._db.execute(f"SELECT COUNT(*) FROM failures {where}", args).fetchone()[0]
        return {"calls": int(calls), "failures": int(fails)}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CallCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class TeacherTally:
    """What one teacher did in this process (thread-safe counters; read by progress bars and
    the summary table).

    Attributes:
        name: the teacher's name.
        calls: requests answered (hits + fresh answers + failures).
        cache_hits: requests answered from the cache (not paid again).
        prompt_tokens, completion_tokens: tokens of fresh answers (what this run paid for).
        cached_prompt_tokens, cached_completion_tokens: tokens of cache hits (paid earlier).
        failures: failed requests by :data:`~harness.teachers.base.ErrorKind`.
        retries: attempts beyond the first, over all fresh calls.
        seconds: summed wall time of fresh calls (a batch's time is shared by its requests).
    """

    name: str
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, c: Completion) -> None:
        """Count one finished request."""
        with self._lock:
            self.calls += 1
            if c.cached:
                self.cache_hits += 1
                self.cached_prompt_tokens += c.prompt_tokens
                self.cached_completion_tokens += c.completion_tokens
                return
            self.prompt_tokens += c.prompt_tokens
            self.completion_tokens += c.completion_tokens
            self.retries += max(0, c.attempts - 1)
            self.seconds += c.seconds
            if c.error is not None:
                self.failures[c.error] = self.failures.get(c.error, 0) + 1

    @property
    def failed(self) -> int:
        """Failed requests, all kinds."""
        return sum(self.failures.values())

    def cost(self, price_per_1k_prompt: float, price_per_1k_completion: float) -> float:
        """What this run paid (fresh tokens only; cache hits cost nothing again), in the
        currency of the prices."""
        return (self.prompt_tokens * price_per_1k_prompt
                + self.completion_tokens * price_per_1k_completion) / 1000.0

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data (for JSON and tables)."""
        with self._lock:
            return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), dict) else v)
                    for f in dataclasses.fields(self) if not f.name.startswith("_")}


class CachedTeacher:
    """A :class:`Teacher` that answers from a :class:`CallCache` first and counts everything.

    ``on_done`` is called once per request, hits first (from the calling thread), then misses as
    the wrapped teacher finishes them; each miss is committed to the cache before ``on_done``.
    """

    def __init__(self, teacher: Teacher, cache: CallCache, tally: TeacherTally | None = None
                 ) -> None:
        self.teacher = teacher
        self.name = teacher.name
        self.cache = cache
        self.tally = tally if tally is not None else TeacherTally(teacher.name)

    def config_key(self) -> str:
        return self.teacher.config_key()

    def check(self) -> None:
        self.teacher.check()

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        keys = [call_key(self.teacher, r) for r in requests]
        misses: list[int] = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is None:
                misses.append(i)
                continue
            hit = dataclasses.replace(hit, cached=True, seconds=0.0, attempts=0)
            self.tally.add(hit)
            on_done(i, hit)
        if not misses:
            return

        def done(j: int, c: Completion) -> None:
            i = misses[j]
            if c.error is None:
                self.cache.put(keys[i], self.name, c)
            else:
                self.cache.record_failure(keys[i], self.name, c)
            self.tally.add(c)
            on_done(i, c)

        self.teacher.complete_many([requests[i] for i in misses], done)
