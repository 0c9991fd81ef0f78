"""The ``openai`` provider through a Batch API (``batch: true``): upload, create, poll, collect.

Written against the OpenAI Batch API (https://platform.openai.com/docs/guides/batch and the
files and batches pages of https://platform.openai.com/docs/api-reference). The requests are
uploaded as one JSONL file (``POST /files``, purpose ``batch``), one line per request::

    {"custom_id": KEY, "method": "POST", "url": "/v1/chat/completions", "body": {...}}

a batch is created over it (``POST /batches`` with ``endpoint`` and ``completion_window``),
polled (``GET /batches/{id}``) until its status is ``completed``, ``failed``, ``expired`` or
``cancelled``, and the answers are read from its output and error files
(``GET /files/{id}/content``), one line per request::

    {"custom_id": KEY, "response": {"status_code": 200, "body": {chat.completion}}, "error": null}

Groq (https://console.groq.com/docs/batch), Together
(https://docs.together.ai/docs/batch-inference) and SGLang's server serve the same endpoints
and line format; vLLM reads and writes the same lines offline
(``python -m vllm.entrypoints.openai.run_batch``) but serves no batches endpoint. A provider
takes at most 50,000 requests and 100 MB (Together; OpenAI and Groq: 200 MB) per file, so
larger runs are split over several batches.

Each line's ``custom_id`` is the call's cache key (:func:`~harness.teachers.cache.call_key`),
the body is built by :func:`~.openai_wire.request_body` and the answer parsed by
:func:`~.openai_wire.parse_response`, exactly as the synchronous provider does. A batch is
recorded in the call cache (:meth:`~harness.teachers.cache.CallCache.add_batch`) the moment its
input file is uploaded and again once created, so Ctrl-C or a crash while it runs loses
nothing: the next run finds the batch covering the calls it asks and polls it instead of
submitting (and paying for) them again. Answers are handed to ``on_done`` line by line as they
are downloaded (the :class:`~harness.teachers.cache.CachedTeacher` around this teacher commits
each one). Lines that failed, and requests an expired, failed or cancelled batch never ran,
come back as completions with ``error`` set. Batch calls are priced at
``costs.teachers.NAME.batch_price_per_1k_prompt`` / ``batch_price_per_1k_completion``
(:meth:`~harness.experiment.policy.TeacherCost.batch_prices`).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from harness.errors import InputError
from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion, ErrorKind, OnDone
from harness.teachers.cache import BatchRecord, CallCache, call_key
from harness.teachers.providers.openai_chat import OpenAIChatTeacher
from harness.teachers.providers.openai_errors import classify, detail
from harness.teachers.providers.openai_wire import (
    parse_response,
    request_body,
    wants_logprobs,
)
from harness.teachers.redact import redact

#: The endpoint every line of a batch calls.
ENDPOINT = "/v1/chat/completions"
#: Batch statuses after which nothing changes any more.
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: Bytes per input file: under Together's 100 MB limit (OpenAI's and Groq's is 200 MB).
MAX_FILE_BYTES = 95 * 2**20
#: Keyword arguments of ``client.chat.completions.create`` that are transport options, not
#: part of the request body a batch line carries.
_CLIENT_ONLY = frozenset({"extra_headers", "extra_query", "timeout"})


#: Longest single sleep of a wait between status checks (s): Ctrl-C is seen within it.
WAIT_SLICE_S = 0.1


def sliced_sleep(seconds: float) -> None:
    """Sleep ``seconds`` in slices of :data:`WAIT_SLICE_S`: a SIGINT handled by another
    thread (polars starts its own) does not wake a long ``time.sleep``, and the
    KeyboardInterrupt would wait for its end."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(WAIT_SLICE_S, left))


def _say_stderr(message: str) -> None:
    """Print a status line without breaking the progress bars (both on stderr)."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


@dataclass
class _Asked:
    """The requests of one :meth:`OpenAIBatchTeacher.complete_many` call: ``index`` maps each
    call key still unanswered to its request indices (a repeated request shares one line)."""

    requests: Sequence[ChatRequest]
    index: dict[str, list[int]]
    on_done: OnDone


def line_body(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``body`` of a batch line from the keyword arguments of
    ``client.chat.completions.create`` (:func:`~.openai_wire.request_body`): ``extra_body``
    merged in at the top level, as the client sends it, and the client's transport options
    and omitted values dropped."""
    import openai

    body = {k: v for k, v in kwargs.items()
            if k not in _CLIENT_ONLY and k != "extra_body"
            and not isinstance(v, (openai.NotGiven, openai.Omit))}
    extra = kwargs.get("extra_body")
    if isinstance(extra, dict):
        body.update(extra)
    return body


def line_error_kind(status: Any, error: Any) -> ErrorKind:
    """The :data:`~harness.teachers.base.ErrorKind` of a failed batch line: by its HTTP
    status, or, for a line with no response (``batch_expired``...), by its error code."""
    if isinstance(status, int):
        if status == 429:
            return "rate_limited"
        if status == 408:
            return "timeout"
        if status >= 500:
            return "server_error"
        if 400 <= status < 500:
            return "bad_request"
        return "bad_response"
    code = error.get("code") if isinstance(error, dict) else None
    return "timeout" if code == "batch_expired" else "error"


def _line_message(error: Any, body: Any) -> str:
    """What a failed line says: its ``error`` object, else the error in its response body."""
    err = error if isinstance(error, dict) else None
    if err is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
    if err is None:
        return str(body)[:300]
    code, message = err.get("code"), err.get("message")
    return f"{code}: {message}" if code else str(message)


class OpenAIBatchTeacher:
    """A teacher behind an OpenAI-compatible Batch API (see the module docstring).

    Args:
        name: the teacher's name (``teachers:`` key).
        spec: its entry (``batch: true``).
        cache: the call cache its batches are recorded in (the one the
            :class:`~harness.teachers.cache.CachedTeacher` around it uses).
    """

    def __init__(self, name: str, spec: OpenAITeacherSpec, cache: CallCache) -> None:
        self.name = name
        self.spec = spec
        self.cache = cache
        self._chat = OpenAIChatTeacher(name, spec)  # key, client and check are the same
        self._client: Any = None
        self._sleep: Callable[[float], None] = sliced_sleep  # tests skip the waits
        self._say: Callable[[str], None] = _say_stderr

    def config_key(self) -> str:
        # the same model answers the same body: answers of synchronous and batch calls serve
        # each other from the cache
        return self._chat.config_key()

    def check(self) -> None:
        """As the synchronous provider: key present, endpoint reachable, model listed."""
        self._chat.check()

    def client(self) -> Any:
        """The ``openai.OpenAI`` client, with the client's own retries (exponential backoff)
        on the few control calls: upload, create, status and download."""
        if self._client is None:
            self._client = self._chat.client().with_options(max_retries=self.spec.max_retries)
        return self._client

    # ------------------------------------------------------------------ the run

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        """Answer ``requests`` through batches: answers kept from an earlier batch first, then
        the open batches (recorded in the cache) that cover some of them, then new batches for
        the rest; waits ``batch_poll_s`` seconds between status checks.

        Raises:
            InputError: the endpoint has no batch API or refuses the upload or the batch (a
                4xx other than 408 and 429): nothing was run, so nothing was paid.
            KeyboardInterrupt: Ctrl-C; the open batches stay in the cache (their ids are
                printed) and the next run collects them.
        """
        if not requests:
            return
        index: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            index.setdefault(call_key(self, request), []).append(i)
        asked = _Asked(requests, index, on_done)
        self._deliver_kept(asked)
        try:
            batches = [b for b in self.cache.open_batches(self.name)
                       if any(k in asked.index for k in b.keys)]
            covered = {k for b in batches for k in b.keys}
            client = self.client()
            for b in batches:
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(b.created))
                self._say(f"teachers.{self.name}: resuming batch "
                          f"{b.batch_id or '(not created yet)'} ({len(b.keys)} requests, "
                          f"submitted {when})")
            ready = [r for r in (self._created(client, b, asked) for b in batches)
                     if r is not None]
            ready += self._submit_all(client, [k for k in asked.index if k not in covered],
                                      asked)
            self._poll(client, ready, asked)
        except KeyboardInterrupt:
            self._say_interrupted()
            raise
        # a key no batch answered (a provider that dropped it): never silently unanswered
        self._fail(asked, list(asked.index), "bad_response",
                   "the batch API returned no answer for this request")

    def _say_interrupted(self) -> None:
        open_ = self.cache.open_batches(self.name)
        if not open_:
            return
        ids = ", ".join(b.batch_id or f"(input file {b.input_file_id})" for b in open_)
        self._say(f"teachers.{self.name}: stopped waiting for batch {ids}: it keeps running at "
                  f"{self.spec.base_url} and is recorded in the call cache ({self.cache.path}); "
                  "run generate again to collect its answers without paying twice")

    # ------------------------------------------------------------------ submitting

    def _want_logprobs(self, request: ChatRequest) -> bool:
        return wants_logprobs(self.spec, request)  # the synchronous provider's rule

    def _line(self, key: str, asked: _Asked) -> bytes:
        request = asked.requests[asked.index[key][0]]
        body = line_body(request_body(self.spec, request, self._want_logprobs(request)))
        return (json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body},
                           ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    def _input_files(self, keys: Sequence[str], asked: _Asked
                     ) -> Iterator[tuple[IO[bytes], list[str]]]:
        """The JSONL input files of ``keys`` (spooled to disk, so memory stays flat), each
        within ``batch_max_requests`` lines and :data:`MAX_FILE_BYTES`."""
        at = 0
        while at < len(keys):
            with tempfile.TemporaryFile() as fh:
                part: list[str] = []
                size = 0
                while at < len(keys) and len(part) < self.spec.batch_max_requests:
                    line = self._line(keys[at], asked)
                    if part and size + len(line) > MAX_FILE_BYTES:
                        break
                    fh.write(line)
                    part.append(keys[at])
                    size += len(line)
                    at += 1
                fh.seek(0)
                yield fh, part

    def _refused(self, what: str, exc: Exception) -> InputError:
        status = getattr(exc, "status_code", None)
        if status in (404, 405):
            return InputError(
                f"teachers.{self.name}: {self.spec.base_url} has no batch API ({what} answered "
                f"{status}); set `batch: false`, or use a provider that serves /files and "
                "/batches (OpenAI, Groq, Together, SGLang)")
        return InputError(f"teachers.{self.name}: {self.spec.base_url} refused the {what} "
                          f"({detail(exc)}); nothing was run, so nothing was paid")

    def _submit_all(self, client: Any, keys: Sequence[str], asked: _Asked
                    ) -> list[BatchRecord]:
        """Upload and create the batches of ``keys``; a chunk whose upload fails after the
        client's retries comes back as failed calls (the next run submits it again)."""
        out: list[BatchRecord] = []
        for fh, part in self._input_files(keys, asked):
            try:
                uploaded = client.files.create(file=("requests.jsonl", fh, "application/jsonl"),
                                               purpose="batch")
            except Exception as exc:
                kind, retry, _ = classify(exc)
                if not retry:
                    raise self._refused("upload (POST /files)", exc) from None
                self._fail(asked, part, kind, f"uploading the batch input failed: {detail(exc)}")
                continue
            record = self.cache.add_batch(self.name, uploaded.id, part)
            created = self._create(client, record, asked)
            if created is not None:
                out.append(created)
        return out

    def _create(self, client: Any, record: BatchRecord, asked: _Asked) -> BatchRecord | None:
        """Create the batch of an uploaded input file and record its id (None: it could not
        be created now; its calls failed, the record stays for the next run)."""
        try:
            batch = client.batches.create(input_file_id=record.input_file_id, endpoint=ENDPOINT,
                                          completion_window=self.spec.batch_completion_window)
        except Exception as exc:
            kind, retry, _ = classify(exc)
            if not retry:
                raise self._refused("batch (POST /batches)", exc) from None
            self._fail(asked, record.keys, kind, f"creating the batch failed: {detail(exc)}")
            return None
        self.cache.update_batch(record.row, batch.status, batch.id)
        self._say(f"teachers.{self.name}: submitted batch {batch.id} ({len(record.keys)} "
                  f"requests, completion window {self.spec.batch_completion_window}); Ctrl-C "
                  "stops the waiting, not the batch: a later run collects it")
        return dataclasses.replace(record, batch_id=batch.id, status=batch.status)

    def _created(self, client: Any, record: BatchRecord, asked: _Asked) -> BatchRecord | None:
        """A recorded batch with its id: an upload interrupted before the batch's id was
        recorded is matched to the batch the provider lists for its input file, else its
        batch is created now (the file is not uploaded again)."""
        if record.batch_id is not None:
            return record
        try:
            listed = client.batches.list(limit=100).data
        except Exception:  # a provider that cannot list batches: create it
            listed = []
        for batch in listed:
            if batch.input_file_id == record.input_file_id:
                self.cache.update_batch(record.row, batch.status, batch.id)
                return dataclasses.replace(record, batch_id=batch.id, status=batch.status)
        return self._create(client, record, asked)

    # ------------------------------------------------------------------ waiting

    def _poll(self, client: Any, batches: Sequence[BatchRecord], asked: _Asked) -> None:
        """Check each batch every ``batch_poll_s`` seconds and collect it once it ends. After
        ``max_retries`` + 1 rounds in which the status could not be read, the calls of the
        batches still running fail (``connection``...) and the batches stay recorded."""
        pending = {b.row: b for b in batches}
        unreachable = 0
        while pending:
            trouble: tuple[ErrorKind, str] | None = None
            for row, b in list(pending.items()):
                assert b.batch_id is not None
                try:
                    info = client.batches.retrieve(b.batch_id)
                except Exception as exc:
                    kind, retry, _ = classify(exc)
                    if retry:
                        trouble = (kind, detail(exc))
                        continue
                    # the provider does not know it (deleted, or another account's key)
                    self._say(f"teachers.{self.name}: batch {b.batch_id} cannot be read "
                              f"({detail(exc)}); its requests are sent again next run")
                    self._fail(asked, b.keys, kind, f"batch {b.batch_id}: {detail(exc)}")
                    self.cache.close_batch(row, "lost")
                    del pending[row]
                    continue
                if info.status != b.status:
                    self.cache.update_batch(row, info.status)
                    counts = info.request_counts
                    done = (f" ({counts.completed + counts.failed}/{counts.total} requests)"
                            if counts is not None else "")
                    self._say(f"teachers.{self.name}: batch {b.batch_id} {info.status}{done}")
                    b = pending[row] = dataclasses.replace(b, status=info.status)
                if info.status in TERMINAL:
                    del pending[row]
                    self._collect(client, b, info, asked)
            unreachable = unreachable + 1 if trouble is not None else 0
            if trouble is not None and unreachable > self.spec.max_retries:
                kind, why = trouble
                ids = ", ".join(str(b.batch_id) for b in pending.values())
                self._say(f"teachers.{self.name}: cannot read the status of batch {ids} ({why}); "
                          "it stays recorded in the call cache: run generate again to collect it")
                for b in pending.values():
                    self._fail(asked, b.keys, kind, f"batch {b.batch_id}: status unreadable "
                               f"({why}); run generate again to collect it")
                return
            if pending:
                self._sleep(self.spec.batch_poll_s)

    # ------------------------------------------------------------------ collecting

    def _download(self, client: Any, file_id: str) -> Iterator[str]:
        """The lines of a batch output or error file, streamed (not held in memory)."""
        with client.files.with_streaming_response.content(file_id) as response:
            for line in response.iter_lines():
                if line.strip():
                    yield line

    def _collect(self, client: Any, b: BatchRecord, info: Any, asked: _Asked) -> None:
        """Hand every line of an ended batch to ``on_done`` (or keep it, for a call nobody
        asked this run); requests without a line fail with the batch's reason. The batch is
        closed in the cache only once every file was read."""
        assert b.batch_id is not None
        keys = set(b.keys)
        seen: set[str] = set()
        # the batch's wall time, shared by its requests (the tally sums seconds)
        share = max(0.0, time.time() - b.created) / max(1, len(b.keys))
        for file_id in (info.output_file_id, info.error_file_id):
            if not file_id:
                continue
            lines = self._download(client, file_id)
            while True:
                try:
                    raw = next(lines)
                except StopIteration:
                    break
                except Exception as exc:  # the download broke off after the client's retries
                    kind, _, _ = classify(exc)
                    self._say(f"teachers.{self.name}: downloading the answers of batch "
                              f"{b.batch_id} failed ({detail(exc)}); run generate again to "
                              "collect the rest")
                    self._fail(asked, [k for k in b.keys if k not in seen], kind,
                               f"batch {b.batch_id}: download failed: {detail(exc)}")
                    return
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # no custom_id to file it under: its request ends up missing
                key = line.get("custom_id") if isinstance(line, dict) else None
                if isinstance(key, str) and key in keys and key not in seen:
                    seen.add(key)
                    self._deliver(asked, key, line, b.batch_id, share)
        missing = [k for k in b.keys if k not in seen]
        if missing:
            kind, why = self._missing_reason(b.batch_id, info)
            if info.status != "completed":
                self._say(f"teachers.{self.name}: {why} ({len(missing)} of {len(b.keys)} "
                          "requests unanswered; run generate again to send them in a new batch)")
            self._fail(asked, missing, kind, why)
        self.cache.close_batch(b.row, info.status)

    def _missing_reason(self, batch_id: str, info: Any) -> tuple[ErrorKind, str]:
        """Why an ended batch has no line for a request."""
        if info.status == "expired":
            return "timeout", (f"batch {batch_id} expired: the provider did not run every request"
                               f" within its completion window "
                               f"({self.spec.batch_completion_window})")
        if info.status == "failed":
            errors = getattr(getattr(info, "errors", None), "data", None) or []
            said = "; ".join(f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
                             for e in errors[:5]) or "no reason given"
            return "bad_request", redact(f"batch {batch_id} failed: {said}")
        if info.status == "cancelled":
            return "error", f"batch {batch_id} was cancelled at the provider"
        return "bad_response", f"batch {batch_id} completed without an answer for this request"

    def _completion(self, line: dict[str, Any], request: ChatRequest, batch_id: str,
                    seconds: float) -> Completion:
        """One output or error line as a :class:`Completion`."""
        response = line.get("response")
        if not isinstance(response, dict):
            response = {}
        status, body, error = response.get("status_code"), response.get("body"), line.get("error")
        if error or status != 200:
            return Completion(text=None, error=line_error_kind(status, error), seconds=seconds,
                              error_detail=redact(f"batch {batch_id}: HTTP {status}: "
                                                  f"{_line_message(error, body)}"[:500]))
        from openai.types.chat import ChatCompletion

        try:
            done = parse_response(ChatCompletion.model_validate(body), request,
                                  self._want_logprobs(request))
        except Exception as exc:  # not a chat completion, or one without text
            kind, _, _ = classify(exc)
            return Completion(text=None, error=kind, error_detail=detail(exc), seconds=seconds)
        done.seconds = seconds
        return done

    def _deliver(self, asked: _Asked, key: str, line: dict[str, Any], batch_id: str,
                 seconds: float) -> None:
        indices = asked.index.pop(key, None)
        if indices is None:
            # paid for but not asked this run (a smaller --limit): keep an answer for later
            answered = (isinstance(line.get("response"), dict) and not line.get("error")
                        and line["response"].get("status_code") == 200)
            if answered and self.cache.get(key) is None:
                self.cache.keep_batch_answer(key, self.name, batch_id, json.dumps(line))
            return
        done = self._completion(line, asked.requests[indices[0]], batch_id, seconds)
        for i in indices:
            asked.on_done(i, dataclasses.replace(done, extra=dict(done.extra)))

    def _deliver_kept(self, asked: _Asked) -> None:
        """Answers an earlier batch returned for these calls while nobody asked them."""
        kept = self.cache.batch_answers(self.name, list(asked.index))
        for key, (batch_id, line) in kept.items():
            self._deliver(asked, key, json.loads(line), batch_id, 0.0)
            self.cache.drop_batch_answer(key, self.name)

    def _fail(self, asked: _Asked, keys: Sequence[str], kind: ErrorKind, why: str) -> None:
        """The calls of ``keys`` still unanswered, as failed completions."""
        why = redact(why)
        for key in keys:
            for i in asked.index.pop(key, None) or ():
                asked.on_done(i, Completion(text=None, error=kind, error_detail=why))
