"""Typed records of the data contract (../shared/SAMPLE_REPOSITORY.md) and their decoding.

Records are decoded line by line with msgspec into typed structs: that is where wrong types and
missing fields are caught, each with its line and JSON path. Unknown fields are ignored so the
contract can grow without breaking readers. A JSON line is also refused, located, when one of
its objects gives a key twice (a JSON reader silently keeps the last value, so the file would
not say what it seems to) or when it nests deeper than the reader can follow (about 1,000
levels, or :data:`MAX_ARGUMENT_DEPTH` in a tool step's ``arguments``, which later stages
re-encode). Value rules (ranges, uniqueness, cross-field references) are checked afterwards on
the flattened polars tables (:mod:`harness.samples.validate`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

#: Counts must fit the tables' 64-bit integer columns (and be non-negative).
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Usage(msgspec.Struct, frozen=True, gc=False):
    """Teacher token usage for one answer."""

    prompt_tokens: Count
    completion_tokens: Count


class Step(msgspec.Struct, frozen=True, gc=False):
    """One tool step of a teacher's trajectory."""

    tool: str
    arguments: dict[str, Any] = {}
    observation: str | None = None


class TokenAlternative(msgspec.Struct, frozen=True, gc=False):
    """One of a position's most likely tokens: id (None when the tokenizer is unknown), text,
    natural-log probability."""

    text: str
    logprob: float
    id: Annotated[int, msgspec.Meta(ge=0)] | None = None


class AnswerToken(msgspec.Struct, frozen=True, gc=False):
    """One generated token of the answer: the chosen token (id, text, logprob, None when the
    endpoint did not measure it) and its ``top`` alternatives, most likely first."""

    text: str
    logprob: float | None
    top: list[TokenAlternative]
    id: Annotated[int, msgspec.Meta(ge=0)] | None = None


class AnswerLogprobs(msgspec.Struct, frozen=True, gc=False):
    """A candidate's soft labels (``answer_logprobs``): the tokens that wrote the answer's
    value. ``text`` is what they spell; ``text[value_start:value_end]`` is the value as written
    (character offsets); ``tokenizer`` names the teacher's tokenizer; ``starts`` (optional,
    one per token, non-decreasing) is where each token starts in ``text`` — absent, the tokens'
    texts are taken to spell ``text`` one after another; ``choices`` (optional, a scored label
    answer) is the teacher's probability of every label."""

    tokenizer: Annotated[str, msgspec.Meta(min_length=1)]
    top_k: Annotated[int, msgspec.Meta(ge=1)]
    text: str
    value_start: Count
    value_end: Count
    tokens: Annotated[list[AnswerToken], msgspec.Meta(min_length=1)]
    starts: list[Count] | None = None
    choices: dict[str, float] | None = None


class Candidate(msgspec.Struct, frozen=True, gc=False):
    """One teacher's answer to a prompt."""

    teacher: str
    final: str
    rationale: str | None = None
    limits: str | None = None
    confidence: float | None = None
    trajectory: list[Step] | None = None
    usage: Usage | None = None
    answer_logprobs: AnswerLogprobs | None = None


def answer_logprobs_problem(soft: AnswerLogprobs) -> tuple[str, str] | None:
    """The first value problem of a candidate's ``answer_logprobs`` (types are msgspec's):
    ``(path under answer_logprobs, reason)``, or None when it is sound. Log-probabilities
    must be finite and <= 0 (a tolerance of 1e-4 for rounding), alternatives at most
    ``top_k``, most likely first, and ``value_start <= value_end <= len(text)``."""
    if not soft.value_start <= soft.value_end <= len(soft.text):
        return ("value_end", f"value span {soft.value_start}..{soft.value_end} does not lie in "
                f"text of {len(soft.text)} characters")
    if soft.choices is not None:
        if not soft.choices or any(not (math.isfinite(p) and 0 <= p <= 1)
                                   for p in soft.choices.values()):
            return ("choices", "every choice's probability must be in [0, 1]")
        if abs(sum(soft.choices.values()) - 1) > 1e-3:
            return ("choices", f"the probabilities sum to {sum(soft.choices.values()):.4f}, "
                    "not 1")
    if soft.starts is not None:
        if len(soft.starts) != len(soft.tokens):
            return ("starts", f"{len(soft.starts)} offsets for {len(soft.tokens)} tokens")
        if any(b < a for a, b in zip(soft.starts, soft.starts[1:], strict=False)) or (
                soft.starts and soft.starts[-1] > len(soft.text)):
            return ("starts", "offsets must not decrease and must lie in text")
    for k, tok in enumerate(soft.tokens):
        if tok.logprob is not None and not _is_logprob(tok.logprob):
            return (f"tokens[{k}].logprob", f"{tok.logprob!r} is not a log-probability "
                    "(finite, <= 0)")
        if len(tok.top) > soft.top_k:
            return (f"tokens[{k}].top", f"{len(tok.top)} alternatives, more than top_k "
                    f"{soft.top_k}")
        for j, alt in enumerate(tok.top):
            if not _is_logprob(alt.logprob):
                return (f"tokens[{k}].top[{j}].logprob", f"{alt.logprob!r} is not a "
                        "log-probability (finite, <= 0)")
            if j and alt.logprob > tok.top[j - 1].logprob:
                return (f"tokens[{k}].top", "alternatives are not sorted most likely first")
    return None


#: Positive log-probabilities up to this are rounding (an endpoint's certain token), not errors.
_LOGPROB_TOL = 1e-4


def _is_logprob(value: float) -> bool:
    return math.isfinite(value) and value <= _LOGPROB_TOL


class Judge(msgspec.Struct, frozen=True, gc=False):
    """The judge's verdict over a record's candidates."""

    judge: str | None = None
    winner: str | None = None
    scores: dict[str, float] = {}
    reason_tags: list[str] = []


class Failure(msgspec.Struct, frozen=True, gc=False):
    """Why a candidate sits in the failure pool, and its correction."""

    kind: str
    correction: str | None = None
    note: str | None = None


class SampleRecord(msgspec.Struct, frozen=True, gc=False):
    """Training-side record: one prompt and what the teachers said about it."""

    id: str
    unit: str
    prompt: str
    candidates: Annotated[list[Candidate], msgspec.Meta(min_length=1)]
    reference: str | None = None
    judge: Judge | None = None
    pools: dict[str, str] | None = None
    failure: dict[str, Failure] | None = None
    tags: dict[str, str] | None = None
    round: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None


class EvalRecord(msgspec.Struct, frozen=True, gc=False):
    """Eval-side record: a held-out item with its gold answer (teacher answers optional)."""

    id: str
    unit: str
    prompt: str
    reference: str
    candidates: list[Candidate] = []
    tags: dict[str, str] | None = None
    judge: Judge | None = None
    pools: dict[str, str] | None = None
    failure: dict[str, Failure] | None = None
    round: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] | None = None


AnyRecord = SampleRecord | EvalRecord

_AT_RE = re.compile(r" - at `\$(.*)`$")


def explain_msgspec_error(exc: Exception) -> tuple[str, str]:
    """Split a msgspec error into (field path, human message)."""
    text = str(exc)
    field = ""
    m = _AT_RE.search(text)
    if m:
        field = m.group(1).lstrip(".")
        text = text[: m.start()]
    text = text.replace("`", "'")
    if text.startswith("Object missing required field"):
        name = text.split("'")[1] if "'" in text else "?"
        field = f"{field}.{name}" if field else name
        text = "required field is missing"
    elif text.startswith("Expected"):
        text = text[0].lower() + text[1:]
        text = text.replace("| null", "or null").replace("str", "string").replace(
            "object", "object").replace("array", "list")
    return field, text


def _decode_error(exc: Exception, raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as u:
        return f"invalid UTF-8 at byte {u.start}"
    msg = str(exc)
    if b"NaN" in raw or b"Infinity" in raw:
        msg += " (NaN and Infinity are not JSON numbers)"
    return f"invalid JSON: {msg}"


#: What a line nested deeper than the reader follows is told (msgspec and Python's json stop
#: near the interpreter's recursion limit, about 1,000 levels).
TOO_DEEP = ("the record nests too deeply for the JSON reader (lists or objects about 1,000 "
            "levels deep); a record needs only a few levels")
#: Deepest nesting of a tool step's ``arguments`` (free-form JSON, re-encoded by later stages).
MAX_ARGUMENT_DEPTH = 64

_ANY_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its ``(key, value)`` pairs, duplicates kept (:func:`duplicate_key`)."""


def duplicate_key(text: str) -> str | None:
    """The JSON path (``candidates[1].teacher``) of the first key given twice in one object of
    the JSON text ``text`` (already decoded once, so valid), or None when every key is unique.

    A cheap count rules most lines out: every key/value pair has one ``:`` outside strings, so a
    line without duplicates has no more ``:`` (counting ``\\u003a`` escapes, which decode to
    one) than the same value re-encoded, where a duplicate's pair is gone; only lines with more
    are parsed again keeping every pair (Python's json with ``object_pairs_hook``).

    Raises:
        RecursionError: the text nests deeper than the readers follow.
    """
    colons = text.count(":")
    if "\\u003" in text:  # rare: one more pass only then
        colons += text.count("\\u003a") + text.count("\\u003A")
    if colons <= _ENCODER.encode(_ANY_DECODER.decode(text)).count(b":"):
        return None
    stack: list[tuple[str, Any]] = [("", json.loads(text, object_pairs_hook=_Pairs))]
    while stack:
        where, value = stack.pop()
        if isinstance(value, _Pairs):
            seen: set[str] = set()
            for key, _ in value:
                if key in seen:
                    return f"{where}.{key}" if where else key
                seen.add(key)
            stack.extend((f"{where}.{k}" if where else k, v) for k, v in reversed(value))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None  # only \\u003a look-alikes (an escaped backslash before "u003a") counted


def _depth(value: Any) -> int:
    """Nesting depth of decoded JSON (a scalar 0, ``[]`` 1, ``[[1]]`` 2), iteratively."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v.values())
        elif isinstance(v, list):
            deepest = max(deepest, d + 1)
            stack.extend((x, d + 1) for x in v)
    return deepest


def _deep_arguments(record: AnyRecord) -> str | None:
    """The field of the first tool step whose ``arguments`` nest deeper than
    :data:`MAX_ARGUMENT_DEPTH`, or None."""
    for k, cand in enumerate(record.candidates):
        for j, step in enumerate(cand.trajectory or ()):
            if step.arguments and _depth(step.arguments) > MAX_ARGUMENT_DEPTH:
                return f"candidates[{k}].trajectory[{j}].arguments"
    return None


def _check_line(decoder: msgspec.json.Decoder[Any], raw: bytes
                ) -> tuple[AnyRecord | None, str, str]:
    """One JSON line decoded: ``(record, "", "")``, or ``(None, field, why)``."""
    try:
        text = raw.decode("utf-8")
        record = decoder.decode(text)
        dup = duplicate_key(text)
    except msgspec.ValidationError as exc:
        field, msg = explain_msgspec_error(exc)
        return None, field, msg
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        return None, "", _decode_error(exc, raw)
    except RecursionError:  # msgspec and json stop near the interpreter's recursion limit
        return None, "", TOO_DEEP
    if dup is not None:
        return None, dup, ("this key is given twice in one object: a JSON reader silently "
                           "keeps the last value; keep one")
    deep = _deep_arguments(record)
    if deep is not None:
        return None, deep, (f"nests deeper than {MAX_ARGUMENT_DEPTH} levels; tool arguments "
                            "need only a few")
    return record, "", ""


def iter_jsonl(path: Path, record_type: type[AnyRecord]
               ) -> Iterator[tuple[int, AnyRecord | None, str, str]]:
    """Decode a JSON Lines file.

    Yields:
        ``(line_number, record, field, error)``: ``record`` is None when the line is bad, and
        then ``field``/``error`` say why. Blank lines are skipped.
    """
    decoder = msgspec.json.Decoder(record_type)
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as some editors write
            if not raw.strip():
                continue
            record, field, msg = _check_line(decoder, raw)
            yield lineno, record, field, msg


_MAP_FIELDS = ("pools", "failure", "tags", "scores")


def _normalise_parquet_value(value: Any, key: str | None = None) -> Any:
    """Undo Parquet's encodings of JSON maps (structs padded with nulls, or key/value lists)."""
    if isinstance(value, list) and value and all(
        isinstance(x, dict) and set(x) == {"key", "value"} for x in value
    ):
        return {x["key"]: _normalise_parquet_value(x["value"]) for x in value}
    if isinstance(value, dict):
        out = {k: _normalise_parquet_value(v, k) for k, v in value.items()}
        if key in _MAP_FIELDS or key == "arguments":
            out = {k: v for k, v in out.items() if v is not None}
        return out
    if isinstance(value, list):
        return [_normalise_parquet_value(v) for v in value]
    return value


def iter_parquet(path: Path, record_type: type[AnyRecord]
                 ) -> Iterator[tuple[int, AnyRecord | None, str, str]]:
    """Decode a Parquet file whose columns mirror the JSON record (row numbers are 1-based)."""
    import polars as pl

    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file
        yield 0, None, "", f"cannot read Parquet: {exc}"
        return
    row = 0
    for chunk in df.iter_slices(50_000):
        for d in chunk.to_dicts():
            row += 1
            yield (row, *_convert_row(d, record_type))


def _convert_row(row: dict[str, Any], record_type: type[AnyRecord]
                 ) -> tuple[AnyRecord | None, str, str]:
    """One Parquet row (as polars gives it) as a record: ``(record, "", "")``, or
    ``(None, field, why)``."""
    try:
        d = {k: _normalise_parquet_value(v, k) for k, v in row.items() if v is not None}
        if isinstance(d.get("judge"), dict) and isinstance(d["judge"].get("scores"), dict):
            d["judge"]["scores"] = {k: v for k, v in d["judge"]["scores"].items()
                                    if v is not None}
        record = msgspec.convert(d, record_type)
    except msgspec.ValidationError as exc:
        field, msg = explain_msgspec_error(exc)
        return None, field, msg
    except RecursionError:
        return None, "", TOO_DEEP
    deep = _deep_arguments(record)
    if deep is not None:
        return None, deep, (f"nests deeper than {MAX_ARGUMENT_DEPTH} levels; tool arguments "
                            "need only a few")
    return record, "", ""


def file_format(path: Path) -> Literal["parquet", "jsonl"]:
    """How a sample or eval file is read: by its suffix (``.parquet``, else JSON Lines). The
    table cache keys on it too: the same bytes read as the other format validate differently."""
    return "parquet" if path.suffix.lower() == ".parquet" else "jsonl"


def iter_records(path: Path, record_type: type[AnyRecord]
                 ) -> Iterator[tuple[int, AnyRecord | None, str, str]]:
    """Decode a sample or eval file by its format (:func:`file_format`)."""
    if file_format(path) == "parquet":
        return iter_parquet(path, record_type)
    return iter_jsonl(path, record_type)
