"""Flatten decoded records into polars tables.

Tables (``rec`` = index of the record among the file's decoded records, ``line`` = its line or
Parquet row, so every later check can point back into the file):

- ``items``: rec, line, id, unit, prompt, reference, judge, winner, reason_tags, round
- ``candidates``: rec, line, cand, teacher, final, rationale, limits, confidence, trajectory
  (rendered text), n_steps, prompt_tokens, completion_tokens
- ``scores``: rec, line, teacher, score (from ``judge.scores``)
- ``pools``: rec, line, teacher, pool
- ``failures``: rec, line, teacher, kind, correction, note
- ``tags``: rec, line, key, value

Records are flattened in chunks so that a million-record file never holds all its Python
objects at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import polars as pl

from harness.samples.records import AnyRecord, Step

_CHUNK = 50_000

ITEM_SCHEMA = {
    "rec": pl.Int64, "line": pl.Int64, "id": pl.Utf8, "unit": pl.Utf8, "prompt": pl.Utf8,
    "reference": pl.Utf8, "judge": pl.Utf8, "winner": pl.Utf8,
    "reason_tags": pl.List(pl.Utf8), "round": pl.Int64,
}
CAND_SCHEMA = {
    "rec": pl.Int64, "line": pl.Int64, "cand": pl.Int32, "teacher": pl.Utf8, "final": pl.Utf8,
    "rationale": pl.Utf8, "limits": pl.Utf8, "confidence": pl.Float64, "trajectory": pl.Utf8,
    "n_steps": pl.Int32, "prompt_tokens": pl.Int64, "completion_tokens": pl.Int64,
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
class _Columns:
    """Column lists for one chunk of one table."""

    schema: dict[str, Any]
    cols: dict[str, list[Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.cols = {k: [] for k in self.schema}

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.cols, schema=self.schema)


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
    """Flatten ``(line, record)`` pairs into :class:`RecordTables`."""
    parts: dict[str, list[pl.DataFrame]] = {k: [] for k in
                                            ("items", "cands", "scores", "pools", "fails", "tags")}
    rec = 0
    chunk = _new_chunk()
    for line, r in records:
        _add(chunk, rec, line, r)
        rec += 1
        if rec % _CHUNK == 0:
            _flush(chunk, parts)
            chunk = _new_chunk()
    _flush(chunk, parts)
    return RecordTables(*(pl.concat(parts[k], rechunk=True) for k in
                          ("items", "cands", "scores", "pools", "fails", "tags")))


def _new_chunk() -> dict[str, _Columns]:
    return {"items": _Columns(ITEM_SCHEMA), "cands": _Columns(CAND_SCHEMA),
            "scores": _Columns(SCORE_SCHEMA), "pools": _Columns(POOL_SCHEMA),
            "fails": _Columns(FAIL_SCHEMA), "tags": _Columns(TAG_SCHEMA)}


def _flush(chunk: dict[str, _Columns], parts: dict[str, list[pl.DataFrame]]) -> None:
    for k, c in chunk.items():
        parts[k].append(c.frame())


def _add(chunk: dict[str, _Columns], rec: int, line: int, r: AnyRecord) -> None:
    it = chunk["items"].cols
    judge = r.judge
    it["rec"].append(rec)
    it["line"].append(line)
    it["id"].append(r.id)
    it["unit"].append(r.unit)
    it["prompt"].append(r.prompt)
    it["reference"].append(r.reference)
    it["judge"].append(judge.judge if judge else None)
    it["winner"].append(judge.winner if judge else None)
    it["reason_tags"].append(list(judge.reason_tags) if judge else [])
    it["round"].append(r.round)

    cc = chunk["cands"].cols
    for i, c in enumerate(r.candidates):
        cc["rec"].append(rec)
        cc["line"].append(line)
        cc["cand"].append(i)
        cc["teacher"].append(c.teacher)
        cc["final"].append(c.final)
        cc["rationale"].append(c.rationale)
        cc["limits"].append(c.limits)
        cc["confidence"].append(c.confidence)
        cc["trajectory"].append(render_trajectory(c.trajectory) if c.trajectory else None)
        cc["n_steps"].append(len(c.trajectory) if c.trajectory else 0)
        cc["prompt_tokens"].append(c.usage.prompt_tokens if c.usage else None)
        cc["completion_tokens"].append(c.usage.completion_tokens if c.usage else None)

    if judge and judge.scores:
        sc = chunk["scores"].cols
        for t, s in judge.scores.items():
            sc["rec"].append(rec)
            sc["line"].append(line)
            sc["teacher"].append(t)
            sc["score"].append(s)
    if r.pools:
        pc = chunk["pools"].cols
        for t, p in r.pools.items():
            pc["rec"].append(rec)
            pc["line"].append(line)
            pc["teacher"].append(t)
            pc["pool"].append(p)
    if r.failure:
        fc = chunk["fails"].cols
        for t, f in r.failure.items():
            fc["rec"].append(rec)
            fc["line"].append(line)
            fc["teacher"].append(t)
            fc["kind"].append(f.kind)
            fc["correction"].append(f.correction)
            fc["note"].append(f.note)
    if r.tags:
        tc = chunk["tags"].cols
        for k, v in r.tags.items():
            tc["rec"].append(rec)
            tc["line"].append(line)
            tc["key"].append(k)
            tc["value"].append(v)
