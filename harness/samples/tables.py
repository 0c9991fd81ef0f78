"""Flatten decoded records into polars tables.

Tables (``rec`` = index of the record among the file's decoded records, ``line`` = its line or
Parquet row, so every later check can point back into the file):

- ``items``: rec, line, id, unit, prompt, reference, judge, winner, reason_tags ('|'-joined),
  round
- ``candidates``: rec, line, cand, teacher, final, rationale, limits, confidence, trajectory
  (rendered text), n_steps, prompt_tokens, completion_tokens, soft_tokens (answer tokens with
  soft labels, 0 without), soft_field and soft_problem (their first value problem, or null)
- ``scores``: rec, line, teacher, score (from ``judge.scores``)
- ``pools``: rec, line, teacher, pool
- ``failures``: rec, line, teacher, kind, correction, note
- ``tags``: rec, line, key, value

Records are flattened in chunks so that a million-record file never holds all its Python
objects at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import polars as pl

from harness.samples.records import AnyRecord, Step, answer_logprobs_problem

_CHUNK = 50_000

ITEM_SCHEMA = {
    "rec": pl.Int64, "line": pl.Int64, "id": pl.Utf8, "unit": pl.Utf8, "prompt": pl.Utf8,
    "reference": pl.Utf8, "judge": pl.Utf8, "winner": pl.Utf8,
    "reason_tags": pl.Utf8, "round": pl.Int64,
}
CAND_SCHEMA = {
    "rec": pl.Int64, "line": pl.Int64, "cand": pl.Int32, "teacher": pl.Utf8, "final": pl.Utf8,
    "rationale": pl.Utf8, "limits": pl.Utf8, "confidence": pl.Float64, "trajectory": pl.Utf8,
    "n_steps": pl.Int32, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64,
    "soft_tokens": pl.Int32, "soft_field": pl.Utf8, "soft_problem": pl.Utf8,
    "soft_tokenizer": pl.Utf8, "soft_labels": pl.Utf8,
}
SCORE_SCHEMA = {"rec": pl.Int64, "line": pl.Int64, "teacher": pl.Utf8, "score": pl.Float64}
POOL_SCHEMA = {"rec": pl.Int64, "line": pl.Int64, "teacher": pl.Utf8, "pool": pl.Utf8}
FAIL_SCHEMA = {"rec": pl.Int64, "line": pl.Int64, "teacher": pl.Utf8, "kind": pl.Utf8,
               "correction": pl.Utf8, "note": pl.Utf8}
TAG_SCHEMA = {"rec": pl.Int64, "line": pl.Int64, "key": pl.Utf8, "value": pl.Utf8}


def render_trajectory(steps: list[Step]) -> str:
    """A compact one-line text of tool steps: ``tool {args} -> observation ; ...``."""
    parts = []
    for s in steps:
        args = msgspec.json.encode(s.arguments).decode()
        parts.append(f"{s.tool} {args}" + (f" -> {s.observation}" if s.observation else ""))
    return " ; ".join(parts)


@dataclass
class RecordTables:
    """The flattened tables of one sample or eval file."""

    items: pl.DataFrame
    candidates: pl.DataFrame
    scores: pl.DataFrame
    pools: pl.DataFrame
    failures: pl.DataFrame
    tags: pl.DataFrame


def build_tables(records: Iterable[tuple[int, AnyRecord]]) -> RecordTables:
    """Flatten ``(line, record)`` pairs into :class:`RecordTables`, a chunk at a time.

    Column lists are built with comprehensions over a chunk of records (several times faster
    than appending field by field), turned into polars frames and the chunk's Python objects
    are dropped, so memory stays bounded by the tables themselves.
    """
    parts: list[RecordTables] = []
    chunk: list[tuple[int, AnyRecord]] = []
    start = 0
    for pair in records:
        chunk.append(pair)
        if len(chunk) == _CHUNK:
            parts.append(_chunk_tables(chunk, start))
            start += len(chunk)
            chunk = []
    parts.append(_chunk_tables(chunk, start))
    return RecordTables(*(pl.concat([getattr(p, name) for p in parts], rechunk=True)
                          for name in RecordTables.__dataclass_fields__))


def _frame(cols: dict[str, list[Any]], schema: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(cols, schema=schema)


def _chunk_tables(chunk: list[tuple[int, AnyRecord]], start: int) -> RecordTables:
    """Tables of one chunk; ``start`` is the ``rec`` index of its first record."""
    lines = [line for line, _ in chunk]
    recs = [r for _, r in chunk]
    idx = list(range(start, start + len(recs)))
    judges = [r.judge for r in recs]
    items = _frame({
        "rec": idx, "line": lines, "id": [r.id for r in recs], "unit": [r.unit for r in recs],
        "prompt": [r.prompt for r in recs], "reference": [r.reference for r in recs],
        "judge": [j.judge if j else None for j in judges],
        "winner": [j.winner if j else None for j in judges],
        "reason_tags": ["|".join(j.reason_tags) if j else None for j in judges],
        "round": [r.round for r in recs],
    }, ITEM_SCHEMA)

    # One row per candidate: (rec, line, position, candidate)
    flat = [(i, ln, k, c) for i, ln, r in zip(idx, lines, recs, strict=True)
            for k, c in enumerate(r.candidates)]
    soft = [answer_logprobs_problem(f[3].answer_logprobs) if f[3].answer_logprobs else None
            for f in flat]
    cands = _frame({
        "rec": [f[0] for f in flat], "line": [f[1] for f in flat], "cand": [f[2] for f in flat],
        "teacher": [f[3].teacher for f in flat], "final": [f[3].final for f in flat],
        "rationale": [f[3].rationale for f in flat], "limits": [f[3].limits for f in flat],
        "confidence": [f[3].confidence for f in flat],
        "trajectory": [render_trajectory(f[3].trajectory) if f[3].trajectory else None
                       for f in flat],
        "n_steps": [len(f[3].trajectory) if f[3].trajectory else 0 for f in flat],
        "prompt_tokens": [f[3].usage.prompt_tokens if f[3].usage else None for f in flat],
        "completion_tokens": [f[3].usage.completion_tokens if f[3].usage else None
                              for f in flat],
        # soft labels: token count (0 without) and their first value problem, for validate
        "soft_tokens": [len(f[3].answer_logprobs.tokens) if f[3].answer_logprobs else 0
                        for f in flat],
        "soft_field": [p[0] if p else None for p in soft],
        "soft_problem": [p[1] if p else None for p in soft],
        # the soft labels themselves (compact JSON) for soft-target field sets, and whose
        # tokenizer they are in (validate compares it with the student's)
        "soft_tokenizer": [f[3].answer_logprobs.tokenizer if f[3].answer_logprobs else None
                           for f in flat],
        "soft_labels": [msgspec.json.encode(f[3].answer_logprobs).decode() if f[3].answer_logprobs
                        else None for f in flat],
    }, CAND_SCHEMA)

    def keyed(get: Any) -> list[tuple[int, int, str, Any]]:
        return [(i, ln, key, value) for i, ln, r in zip(idx, lines, recs, strict=True)
                if (m := get(r)) for key, value in m.items()]

    sc = keyed(lambda r: r.judge.scores if r.judge else None)
    po = keyed(lambda r: r.pools)
    fa = keyed(lambda r: r.failure)
    tg = keyed(lambda r: r.tags)
    return RecordTables(
        items=items,
        candidates=cands,
        scores=_frame({"rec": [x[0] for x in sc], "line": [x[1] for x in sc],
                       "teacher": [x[2] for x in sc], "score": [x[3] for x in sc]}, SCORE_SCHEMA),
        pools=_frame({"rec": [x[0] for x in po], "line": [x[1] for x in po],
                      "teacher": [x[2] for x in po], "pool": [x[3] for x in po]}, POOL_SCHEMA),
        failures=_frame({"rec": [x[0] for x in fa], "line": [x[1] for x in fa],
                         "teacher": [x[2] for x in fa], "kind": [x[3].kind for x in fa],
                         "correction": [x[3].correction for x in fa],
                         "note": [x[3].note for x in fa]}, FAIL_SCHEMA),
        tags=_frame({"rec": [x[0] for x in tg], "line": [x[1] for x in tg],
                     "key": [x[2] for x in tg], "value": [x[3] for x in tg]}, TAG_SCHEMA),
    )
