"""Load and validate a sample repository or eval set against the data contract.

One pass collects every problem: decoding (types, missing fields, invalid JSON or UTF-8), the
pandera value schemas, the contract's cross-field rules (judge winner, pools and failures naming
the record's teachers, judge scale, unique teachers) and the per-unit-kind rules for finals. Each
problem names file, line, field and reason. Teacher answers outside a unit's vocabulary (an
off-label label, a tool the unit does not declare) are real teacher errors, so they are counted as
warnings, not rejected; a *reference* outside the vocabulary is an error.
"""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from harness.errors import ProblemLog, did_you_mean, number
from harness.experiment.models import Experiment
from harness.samples.records import (
    AnyRecord,
    EvalRecord,
    SampleRecord,
    file_format,
    iter_records,
)
from harness.samples.schema import (
    CandidatesSchema,
    ItemsSchema,
    PoolsSchema,
    ScoresSchema,
    schema_failures,
)
from harness.samples.tables import RecordTables, build_tables
from harness.units import get


@dataclass
class Repository:
    """A validated sample or eval file.

    Attributes:
        path: the file.
        sha256: hex digest of its bytes (enters every cell id).
        tables: the flattened tables.
        warnings: human lines about tolerated oddities (e.g. off-label teacher answers).
    """

    path: Path
    sha256: str
    tables: RecordTables
    warnings: list[str] = field(default_factory=list)

    @property
    def n_records(self) -> int:
        return self.tables.items.height


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _where(path: Path, line: int) -> str:
    if file_format(path) == "parquet":
        return f"{path.name}:row {line}" if line else path.name
    return f"{path.name}:{line}" if line else path.name


def load_repository(path: Path, exp: Experiment, *, is_eval: bool,
                    log: ProblemLog | None = None) -> Repository | None:
    """Read and validate one file; problems go to ``log`` (returns None if the file is unusable).

    Args:
        path: ``.jsonl`` or ``.parquet``.
        exp: the experiment (declares units and the judge scale).
        is_eval: eval-set rules (``reference`` required) instead of training-side rules.
        log: where problems are collected; a new one is made (and raised) when omitted.
    """
    own_log = log is None
    log = log if log is not None else ProblemLog()
    if not path.is_file():
        log.add(str(path), "", "file not found")
        if own_log:
            log.raise_if_any(f"{path}: cannot be read")
        return None
    from harness.samples import cache

    start_total = log.total
    sha = file_sha256(path)
    key = cache.cache_key(sha, exp, is_eval, file_format(path))
    hit = cache.load_cached(key)
    if hit is not None:
        return Repository(path=path, sha256=sha, tables=hit[0], warnings=hit[1])
    record_type = EvalRecord if is_eval else SampleRecord

    def good_records() -> Iterator[tuple[int, AnyRecord]]:
        # Streams into the table builder: decoded structs never pile up in memory.
        for line, rec, fld, msg in iter_records(path, record_type):
            if rec is None:
                log.add(_where(path, line), fld, msg)
            else:
                yield line, rec

    before = log.total
    # The cyclic GC would rescan millions of fresh containers while tables are built; none of
    # them form cycles, so it is paused for the pass (restored even on error).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        tables = build_tables(good_records())
    finally:
        if gc_was_enabled:
            gc.enable()
    if tables.items.height == 0 and log.total == before:
        log.add(path.name, "", "the file has no records")
    repo = Repository(path=path, sha256=sha, tables=tables)
    _check_values(repo, log)
    _check_cross_fields(repo, exp, log)
    _check_finals(repo, exp, log)
    if log.total == start_total and tables.items.height:
        cache.store(key, tables, repo.warnings)
    if own_log:
        log.raise_if_any(f"{path}: the file breaks the data contract ({log.total} problem(s))")
    return repo


def _check_values(repo: Repository, log: ProblemLog) -> None:
    t = repo.tables
    for schema, df, prefix in ((ItemsSchema, t.items, ""), (PoolsSchema, t.pools, "pools."),
                               (ScoresSchema, t.scores, "judge.scores.")):
        for idx, col, msg in schema_failures(schema, df):
            line = int(df["line"][idx]) if idx is not None else 0
            if prefix and idx is not None:
                col = f"{prefix}{df['teacher'][idx]}"
            log.add(_where(repo.path, line), col, msg)
    cands = t.candidates
    for idx, col, msg in schema_failures(CandidatesSchema, cands):
        line = int(cands["line"][idx]) if idx is not None else 0
        cand = int(cands["cand"][idx]) if idx is not None else 0
        log.add(_where(repo.path, line), f"candidates[{cand}].{col}", msg)
    soft = cands.filter(pl.col("soft_problem").is_not_null())
    for line, cand, fld, msg in soft.select("line", "cand", "soft_field",
                                            "soft_problem").iter_rows():
        log.add(_where(repo.path, line), f"candidates[{cand}].answer_logprobs.{fld}", msg)
    for col in ("id", "prompt"):  # "" is the schema's "must not be empty"
        blank = t.items.filter(pl.col(col).str.strip_chars().str.len_chars() == 0,
                               pl.col(col).str.len_chars() > 0)
        for line in blank["line"]:
            log.add(_where(repo.path, line), col, "must not be only whitespace")
    # Teacher names reach the report, costs.teachers keys and per-teacher metric names: a
    # visible name on one line ("" is the schema's "must not be empty").
    odd = cands.filter(pl.col("teacher").str.len_chars() > 0,
                       (pl.col("teacher").str.strip_chars().str.len_chars() == 0)
                       | pl.col("teacher").str.contains(r"\p{Cc}"))
    for line, cand, teacher in odd.select("line", "cand", "teacher").iter_rows():
        log.add(_where(repo.path, line), f"candidates[{cand}].teacher",
                f"{teacher!r} is not a teacher name: use visible text without control "
                "characters (no newline, tab or NUL)")


def _check_cross_fields(repo: Repository, exp: Experiment, log: ProblemLog) -> None:
    t = repo.tables
    where = repo.path
    units = t.items.filter(~pl.col("unit").is_in(list(exp.units)))
    for line, unit in units.select("line", "unit").iter_rows():
        log.add(_where(where, line), "unit", f"unit {unit!r} is not declared by the experiment"
                f"{did_you_mean(unit, exp.units)}")
    dup = (t.candidates.group_by("rec", "line", "teacher").len().filter(pl.col("len") > 1)
           .sort("rec"))
    for line, teacher in dup.select("line", "teacher").iter_rows():
        log.add(_where(where, line), "candidates", f"teacher {teacher!r} answers twice")
    teachers = t.candidates.select("rec", "teacher").unique()

    def unknown(df: pl.DataFrame) -> pl.DataFrame:
        return df.join(teachers, on=["rec", "teacher"], how="anti").sort("rec")

    winners = t.items.filter(pl.col("winner").is_not_null()).select(
        "rec", "line", pl.col("winner").alias("teacher"))
    for line, teacher in unknown(winners).select("line", "teacher").iter_rows():
        log.add(_where(where, line), "judge.winner",
                f"{teacher!r} is not a teacher of this record")
    for name, df in (("judge.scores", t.scores), ("pools", t.pools), ("failure", t.failures)):
        for line, teacher in unknown(df).select("line", "teacher").iter_rows():
            log.add(_where(where, line), f"{name}.{teacher}",
                    f"{teacher!r} is not a teacher of this record")
    low, high = exp.data.judge_scale
    out_of_scale = t.scores.filter((pl.col("score") < low) | (pl.col("score") > high)
                                   | pl.col("score").is_nan())
    for line, teacher, score in out_of_scale.select("line", "teacher", "score").iter_rows():
        log.add(_where(where, line), f"judge.scores.{teacher}",
                f"{number(score)} is outside the judge scale ({number(low)}-{number(high)})")
    not_failed = (t.failures.join(t.pools, on=["rec", "teacher"], how="left")
                  .filter(pl.col("pool").fill_null("train") != "failure")
                  .join(teachers, on=["rec", "teacher"], how="semi"))
    for line, teacher, pool in not_failed.select("line", "teacher",
                                                 pl.col("pool").fill_null("train")).iter_rows():
        log.add(_where(where, line), f"failure.{teacher}",
                f"{teacher!r} is in pool {pool!r}, but failure details belong to the "
                "'failure' pool")


def _check_finals(repo: Repository, exp: Experiment, log: ProblemLog) -> None:
    """Each unit kind's rules for references and corrections (errors) and candidate finals
    (errors, or a counted warning for kinds whose off-vocabulary finals are teacher errors)."""
    t = repo.tables
    where = repo.path
    for unit_name, unit in exp.units.items():
        items = t.items.filter(pl.col("unit") == unit_name)
        if items.height == 0:
            continue
        kind = get(unit.kind)
        opts = unit.model_dump(mode="json")
        cands = t.candidates.join(items.select("rec"), on="rec", how="semi")
        fails = t.failures.join(items.select("rec"), on="rec", how="semi").filter(
            pl.col("correction").is_not_null())

        final_problem = partial(kind.final_problem, opts, unit_name)
        ref_problem = partial(kind.reference_problem, opts, unit_name)
        corr_problem = partial(kind.correction_problem, opts, unit_name)
        bad_finals = _located(cands, "final", final_problem, ["line", "cand"])
        if kind.bad_final == "error":
            for line, cand, _final, why in bad_finals:
                log.add(_where(where, line), f"candidates[{cand}].final", why)
        for line, _ref, why in _located(items, "reference", ref_problem, ["line"]):
            log.add(_where(where, line), "reference", why)
        for line, teacher, _corr, why in _located(fails, "correction", corr_problem,
                                                  ["line", "teacher"]):
            log.add(_where(where, line), f"failure.{teacher}.correction", why)
        if kind.bad_final == "warning" and bad_finals:
            warning = kind.finals_warning(unit_name, len(bad_finals))
            repo.warnings.append(f"{where.name}: {warning}")


def _located(df: pl.DataFrame, col: str, problem: Callable[[str], str | None],
             keys: list[str]) -> list[tuple[Any, ...]]:
    """Rows whose ``col`` value has a problem: ``(*keys, value, why)``, in file order.

    Each distinct value is checked once (answers repeat a lot), then the bad ones are located.
    """
    bad = {v: why for v in df[col].drop_nulls().unique().to_list()
           if (why := problem(v)) is not None}
    if not bad:
        return []
    rows = (df.filter(pl.col(col).is_in(list(bad))).sort("line", maintain_order=True)
            .select(*keys, col).iter_rows())
    return [(*r, bad[r[-1]]) for r in rows]
