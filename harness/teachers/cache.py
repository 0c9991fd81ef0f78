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
from harness.teachers.redact import redact
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
                 redact(completion.error_detail or "")[:2000]))  # the last guard for secrets

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

    # ------------------------------------------------------------ batch API bookkeeping
    # A teacher with ``batch: true`` (:mod:`harness.teachers.providers.openai_batch`) records
    # each batch it submits here, committed before it polls, so an interrupted run resumes
    # the same batch instead of paying for a second one. ``batches.keys`` is the JSON list of
    # the call keys the batch covers (its lines' custom_ids); ``done`` is NULL while its
    # answers are still to be collected. ``batch_answers`` keeps answers a batch returned for
    # calls the run that collected them did not ask (a smaller --limit): they were paid for.

    _BATCH_SCHEMA = """
    CREATE TABLE IF NOT EXISTS batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT, teacher TEXT NOT NULL, batch_id TEXT,
        input_file_id TEXT NOT NULL, keys TEXT NOT NULL, status TEXT NOT NULL,
        created REAL NOT NULL, done REAL);
    CREATE TABLE IF NOT EXISTS batch_answers (
        key TEXT NOT NULL, teacher TEXT NOT NULL, batch_id TEXT NOT NULL, line TEXT NOT NULL,
        PRIMARY KEY (key, teacher));
    """

    def _batch_db(self) -> sqlite3.Connection:
        """The connection, with the batch tables created on first use (the caller holds the
        lock): files of teachers that never batch keep their two tables."""
        if not getattr(self, "_batch_ready", False):
            self._db.executescript(self._BATCH_SCHEMA)
            self._batch_ready = True
        return self._db

    def add_batch(self, teacher: str, input_file_id: str, keys: Sequence[str]) -> BatchRecord:
        """Record an uploaded batch input file (status ``uploaded``, no batch id yet)."""
        created = time.time()
        with self._lock:
            cur = self._batch_db().execute(
                "INSERT INTO batches (teacher, batch_id, input_file_id, keys, status, created)"
                " VALUES (?, NULL, ?, ?, 'uploaded', ?)",
                (teacher, input_file_id, json.dumps(list(keys)), created))
        return BatchRecord(int(cur.lastrowid or 0), teacher, None, input_file_id, tuple(keys),
                           "uploaded", created)

    def open_batches(self, teacher: str) -> list[BatchRecord]:
        """The batches of ``teacher`` whose answers are not collected yet, oldest first."""
        with self._lock:
            rows = self._batch_db().execute(
                "SELECT id, teacher, batch_id, input_file_id, keys, status, created FROM batches"
                " WHERE teacher = ? AND done IS NULL ORDER BY id", (teacher,)).fetchall()
        return [BatchRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6])
                for r in rows]

    def update_batch(self, row: int, status: str, batch_id: str | None = None) -> None:
        """Set a batch's last seen provider status (and its id, once created)."""
        with self._lock:
            self._batch_db().execute(
                "UPDATE batches SET status = ?, batch_id = COALESCE(?, batch_id) WHERE id = ?",
                (status, batch_id, row))

    def close_batch(self, row: int, status: str) -> None:
        """Mark a batch's answers collected (``status``: its final provider status)."""
        with self._lock:
            self._batch_db().execute("UPDATE batches SET status = ?, done = ? WHERE id = ?",
                                     (status, time.time(), row))

    def keep_batch_answer(self, key: str, teacher: str, batch_id: str, line: str) -> None:
        """Keep a batch output line (JSON) for a call nobody asked for yet."""
        with self._lock:
            self._batch_db().execute("INSERT OR REPLACE INTO batch_answers VALUES (?, ?, ?, ?)",
                                     (key, teacher, batch_id, line))

    def batch_answers(self, teacher: str, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """The kept output lines of ``keys``: key -> (batch id, line)."""
        out: dict[str, tuple[str, str]] = {}
        with self._lock:
            db = self._batch_db()
            for at in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                part = keys[at:at + 500]
                marks = ",".join("?" * len(part))
                out.update((k, (b, line)) for k, b, line in db.execute(
                    f"SELECT key, batch_id, line FROM batch_answers WHERE teacher = ? AND key IN"
                    f" ({marks})", (teacher, *part)))
        return out

    def drop_batch_answer(self, key: str, teacher: str) -> None:
        """Forget a kept output line (its answer is now in ``calls``, or failed)."""
        with self._lock:
            self._batch_db().execute("DELETE FROM batch_answers WHERE key = ? AND teacher = ?",
                                     (key, teacher))


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
            elif c.attempts > 0:  # a request never sent (its teacher stopped) is no failed call
                self.cache.record_failure(keys[i], self.name, c)
            self.tally.add(c)
            on_done(i, c)

        self.teacher.complete_many([requests[i] for i in misses], done)


@dataclasses.dataclass(frozen=True)
class BatchRecord:
    """One batch submitted to a provider's batch API, as :class:`CallCache` keeps it.

    Attributes:
        row: its row in the ``batches`` table.
        teacher: the teacher's name.
        batch_id: the provider's batch id; None while only the input file is known (an
            interruption between the upload and the batch's creation).
        input_file_id: the uploaded JSONL file of its requests.
        keys: the call keys it covers (the custom_id of each line).
        status: the provider's status when last seen (``uploaded`` before creation).
        created: when the input file was uploaded (Unix time, s).
    """

    row: int
    teacher: str
    batch_id: str | None
    input_file_id: str
    keys: tuple[str, ...]
    status: str
    created: float
