"""pandera schemas of the flattened sample tables (one per table crossing the samples stage).

The tables are built from typed records (:mod:`harness.samples.records`), so dtypes already hold;
these schemas check *values*: non-empty strings, confidence in [0, 1] and not NaN, pool names,
unique ids. Every table keeps the source ``line`` so a failure can be located.
"""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from harness.experiment.models import POOLS


class ItemsSchema(pa.DataFrameModel):
    """One row per record. ``rec`` is the record's index in its file, ``line`` its line."""

    rec: int = pa.Field(ge=0)
    line: int = pa.Field(ge=0)
    id: str = pa.Field(unique=True, str_length={"min_value": 1})
    unit: str
    prompt: str = pa.Field(str_length={"min_value": 1})
    reference: str = pa.Field(nullable=True)
    winner: str = pa.Field(nullable=True)
    round: int = pa.Field(nullable=True, ge=1)

    class Config:
        strict = False
        coerce = False


class CandidatesSchema(pa.DataFrameModel):
    """One row per record x candidate."""

    rec: int = pa.Field(ge=0)
    line: int = pa.Field(ge=0)
    teacher: str = pa.Field(str_length={"min_value": 1})
    final: str
    confidence: float = pa.Field(nullable=True, ge=0.0, le=1.0)
    prompt_tokens: int = pa.Field(nullable=True, ge=0)
    completion_tokens: int = pa.Field(nullable=True, ge=0)

    class Config:
        strict = False


class PoolsSchema(pa.DataFrameModel):
    """One row per record x ``pools`` entry."""

    rec: int
    line: int
    teacher: str
    pool: str = pa.Field(isin=list(POOLS))

    class Config:
        strict = False


class ScoresSchema(pa.DataFrameModel):
    """One row per record x ``judge.scores`` entry (the judge-scale check needs the spec)."""

    rec: int
    line: int
    teacher: str
    # NaN (Parquet) is reported as off the judge scale by the cross-field rules, not as null.
    score: float = pa.Field(nullable=True)

    class Config:
        strict = False


def _describe(check: str, case: object) -> str:
    """A person's wording of a pandera check failure."""
    if check == "field_uniqueness":
        return f"duplicate value {case!r}"
    if check.startswith("greater_than_or_equal_to("):
        return f"{case} must be >= {check[25:-1]}"
    if check.startswith("less_than_or_equal_to("):
        if str(case).lower() == "nan":
            return "NaN is not a number here"
        return f"{case} must be <= {check[22:-1]}"
    if check.startswith("str_length("):
        return "must not be empty"
    if check.startswith("isin("):
        return f"{case!r} must be one of {check[5:-1]}"
    if check == "not_nullable":
        return "must not be null"
    return f"{case!r} fails {check}"


def schema_failures(schema: type[pa.DataFrameModel], df: pl.DataFrame
                    ) -> list[tuple[int | None, str, str]]:
    """Validate ``df`` lazily.

    Returns:
        ``(row_index, column, message)`` per failing value (empty when valid); the caller turns
        the row index into a file line and a field path.
    """
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return [(row["index"], str(row["column"] or ""),
                 _describe(str(row["check"]), row["failure_case"]))
                for row in exc.failure_cases.iter_rows(named=True)]
    return []
