"""Nothing paid twice: every answered teacher call on disk (SQLite), counted as it is answered.

:class:`CallCache` is one SQLite file in WAL mode; each answered call is committed as its own
transaction the moment it arrives, so Ctrl-C or SIGKILL loses no answered call and an interrupted
``generate`` resumes where it stopped. The key is ``sha256(teacher.config_key() + canonical JSON
of request.key_data())``: the same prompt to the same configured teacher. Failed calls are not
cached (the next run retries them) but are recorded in a ``failures`` table, so a summary can
count them.

:class:`CachedTeacher` wraps any :class:`~harness.teachers.base.Teacher`: hits are answered from
the file (``cached=True``, ``seconds=0``), misses go to the wrapped teacher, and every answer
updates its :class:`~harness.teachers.tally.TeacherTally` (what the progress bar and the summary
table read).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import InputError
from harness.teachers.base import ChatRequest, Completion, OnDone, Teacher
from harness.teachers.tally import TeacherTally

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
        """Open (or create) the file, before any call is made.

        Raises:
            InputError: the path is a folder, sits under a file, is not a SQLite file of this
                layout, or cannot be written (a call answered later could not be stored).
        """
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit (isolation_level=None): every INSERT is its own committed transaction
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a killed process (only a power cut can lose the last
            # commits), at a fraction of FULL's fsyncs
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            # another program's table of the same name, or a read-only file, fails here rather
            # than on the first paid answer
            self._db.execute("SELECT key, teacher, created, completion FROM calls LIMIT 0")
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("ROLLBACK")
        except (OSError, sqlite3.Error) as exc:
            if hasattr(self, "_db"):
                self._db.close()
            raise InputError(f"{self.path}: cannot use it as the teacher call cache "
                             f"({type(exc).__name__}: {exc}); point generate.cache at a "
                             "writable SQLite file (it is created if missing)") from None

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

    def counting_into(self, tally: TeacherTally) -> CachedTeacher:
        """The same teacher and cache, counting into ``tally`` instead (the generate stage
        counts each run in a fresh tally named as its summary row, ``judge:<name>`` included)."""
        return CachedTeacher(self.teacher, self.cache, tally)

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
