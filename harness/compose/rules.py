"""The composition rules, each registered by the name the YAML uses.

Every rule is a function over polars frames of candidate rows (see
:mod:`harness.compose.context` for the columns):

- selectors ``(rows, bucket) -> rows``: which training-pool candidates of a record become samples;
- failure modes ``(rows, bucket) -> rows``: what failure-pool candidates become; they set
  ``final`` (the target answer), ``wrong`` and ``note``;
- confidence rules ``(rows, fields) -> rows``: set ``weight`` and drop what the rule excludes.
"""

from __future__ import annotations

import polars as pl

from harness.compose.registry import CONFIDENCE_RULES, FAILURE_MODES, SELECTORS
from harness.experiment.models import BucketSpec, FieldSpec

# --------------------------------------------------------------------------- selectors


@SELECTORS.register("all")
def select_all(rows: pl.DataFrame, bucket: BucketSpec) -> pl.DataFrame:
    """Every eligible candidate becomes a sample (one per teacher per record)."""
    return rows


@SELECTORS.register("judge_winner")
def select_judge_winner(rows: pl.DataFrame, bucket: BucketSpec) -> pl.DataFrame:
    """Per record, the eligible candidate the judge scored highest.

    Ties go to the judge's declared winner, then to the teacher name. With the teacher subset or
    ``min_score`` excluding the declared winner, the best remaining scored candidate is taken —
    the judge's ranking restricted to the bucket. Records without any verdict (no scores, no
    eligible declared winner) contribute nothing.
    """
    ranked = rows.with_columns(
        (pl.col("teacher") == pl.col("winner")).fill_null(False).alias("_is_winner"),
    ).filter(pl.col("score").is_not_null() | pl.col("_is_winner"))
    ranked = ranked.sort(["rec", "score", "_is_winner", "teacher"],
                         descending=[False, True, True, False], nulls_last=True)
    return ranked.group_by("rec", maintain_order=True).first().drop("_is_winner")


@SELECTORS.register("best_confidence")
def select_best_confidence(rows: pl.DataFrame, bucket: BucketSpec) -> pl.DataFrame:
    """Per record, the eligible candidate with the highest stated confidence (ties: judge
    score, then teacher name). Candidates that state no confidence are not eligible."""
    ranked = rows.filter(pl.col("confidence").is_not_null()).sort(
        ["rec", "confidence", "score", "teacher"], descending=[False, True, True, False],
        nulls_last=True)
    return ranked.group_by("rec", maintain_order=True).first()


# --------------------------------------------------------------------------- failure modes


@FAILURE_MODES.register("exclude")
def failures_exclude(rows: pl.DataFrame, bucket: BucketSpec) -> pl.DataFrame:
    """Failure-pool candidates are not trained on."""
    return rows.clear()


def _corrected(rows: pl.DataFrame, *extra: pl.Expr) -> pl.DataFrame:
    """Rows whose target answer is known — the correction, else (for a wrong answer, not for a
    candidate that gave none) the unit's refusal marker — with ``final`` set to it. The
    teacher's rationale, limits and trajectory are dropped: they argued for the wrong answer.
    ``extra`` expressions see the original ``final``."""
    # The marker stands in only for a wrong answer: a candidate that gave none (an unparseable
    # reply or a failed call, final "" as `harness generate` writes it) says nothing about where
    # the unit's boundary is, so without a correction it is left out.
    gave_answer = pl.col("final").fill_null("").str.strip_chars() != ""
    answer = pl.coalesce(pl.col("correction"),
                         pl.when(gave_answer).then(pl.col("marker")).otherwise(None))
    known = rows.with_columns(answer.alias("_answer")).filter(pl.col("_answer").is_not_null())
    return known.with_columns(*extra).with_columns(
        pl.col("_answer").alias("final"),
        *(pl.lit(None, dtype=pl.Utf8).alias(c) for c in ("rationale", "limits", "trajectory")),
    ).drop("_answer")


@FAILURE_MODES.register("refusal")
def failures_refusal(rows: pl.DataFrame, bucket: BucketSpec) -> pl.DataFrame:
    """A failed candidate becomes a sample whose target is its correction (or, without one, the
    unit's refusal marker), so the student learns where the boundary is."""
    return _corrected(rows)


@FAILURE_MODES.register("contrastive")
def failures_contrastive(rows: pl.DataFrame, bucket: BucketSpec) -> pl.DataFrame:
    """A failed candidate becomes a sample that states the right answer, then the wrong one and
    the correction note (rendered by the unit's template through ``wrong`` and ``note``)."""
    return _corrected(rows, pl.col("final").alias("wrong"))


# --------------------------------------------------------------------------- confidence


@CONFIDENCE_RULES.register("none")
def confidence_none(rows: pl.DataFrame, fields: FieldSpec) -> pl.DataFrame:
    """Every sample weighs 1."""
    return rows.with_columns(pl.lit(1.0).alias("weight"))


@CONFIDENCE_RULES.register("weight")
def confidence_weight(rows: pl.DataFrame, fields: FieldSpec) -> pl.DataFrame:
    """Loss weight = the teacher's stated confidence (``missing_confidence`` when absent);
    zero-weight samples are dropped."""
    w = pl.col("confidence").fill_null(fields.missing_confidence).alias("weight")
    return rows.with_columns(w).filter(pl.col("weight") > 0)


@CONFIDENCE_RULES.register("tiers")
def confidence_tiers(rows: pl.DataFrame, fields: FieldSpec) -> pl.DataFrame:
    """High confidence -> weight 1; mid (``low`` <= c < ``high``) -> ``mid_weight``;
    below ``low`` -> excluded."""
    t = fields.tiers
    c = pl.col("confidence").fill_null(fields.missing_confidence)
    w = pl.when(c >= t.high).then(1.0).when(c >= t.low).then(t.mid_weight).otherwise(None)
    return rows.with_columns(w.alias("weight")).filter(pl.col("weight").is_not_null())
