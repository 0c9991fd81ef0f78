"""Descriptive statistics of a sample repository: per unit, per teacher and unit.

Teacher accuracy here is against the training-side ``reference`` where one is recorded (exact
match after whitespace normalisation; JSON finals compared as parsed JSON), which lets a team
audit its teachers on its own task data before distilling.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import polars as pl

from harness.samples.tables import RecordTables
from harness.store.contracts import TeacherFacts

if TYPE_CHECKING:
    from harness.samples import Dataset


def _canon(text: str | None) -> str | None:
    """Canonical form for comparing finals: parsed-and-dumped JSON, else collapsed text."""
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
    except (json.JSONDecodeError, RecursionError):
        return " ".join(text.split())


def candidates_with_context(t: RecordTables) -> pl.DataFrame:
    """Candidates joined with unit, reference, pool and judge score; adds ``correct``."""
    pools = t.pools.select("rec", "teacher", "pool")
    scores = t.scores.select("rec", "teacher", "score")
    df = (t.candidates
          .join(t.items.select("rec", "unit", "reference", "winner"), on="rec", how="left")
          .join(pools, on=["rec", "teacher"], how="left")
          .join(scores, on=["rec", "teacher"], how="left")
          .with_columns(pl.col("pool").fill_null("train")))
    canon_final = df["final"].map_elements(_canon, return_dtype=pl.Utf8)
    canon_ref = df["reference"].map_elements(_canon, return_dtype=pl.Utf8)
    return df.with_columns(
        pl.when(pl.col("reference").is_null()).then(None)
        .otherwise(canon_final == canon_ref).alias("correct"))


def unit_stats(t: RecordTables) -> pl.DataFrame:
    """Per unit: records, candidates, records with a reference, with a judge winner."""
    per_unit = t.items.group_by("unit").agg(
        pl.len().alias("records"),
        pl.col("reference").is_not_null().sum().alias("with_reference"),
        pl.col("winner").is_not_null().sum().alias("with_winner"),
    )
    cands = t.candidates.join(t.items.select("rec", "unit"), on="rec").group_by("unit").agg(
        pl.len().alias("candidates"))
    return per_unit.join(cands, on="unit", how="left").sort("unit")


def teacher_stats(t: RecordTables) -> pl.DataFrame:
    """Per teacher and unit: answers, accuracy vs reference, mean confidence, judge wins,
    share in the failure pool, tokens used."""
    df = candidates_with_context(t)
    return df.group_by("teacher", "unit").agg(
        pl.len().alias("answers"),
        pl.col("correct").mean().alias("accuracy"),
        pl.col("confidence").mean().alias("mean_confidence"),
        (pl.col("winner") == pl.col("teacher")).mean().alias("judge_win_rate"),
        pl.col("score").mean().alias("mean_score"),
        (pl.col("pool") == "failure").mean().alias("failure_share"),
        (pl.col("prompt_tokens").fill_null(0) + pl.col("completion_tokens").fill_null(0))
        .sum().alias("tokens"),
    ).sort("unit", "teacher")


def teacher_facts(data: Dataset) -> TeacherFacts:
    """What analysis needs from the repository itself: token usage per teacher (cost) and, per
    unit, how often teachers disagree and how much of that the judge covers."""
    t = data.train.tables
    usage = t.candidates.group_by("teacher").agg(
        pl.col("prompt_tokens").fill_null(0).sum(), pl.col("completion_tokens").fill_null(0).sum())
    per_rec = (t.candidates.join(t.items.select("rec", "unit", "winner"), on="rec")
               .group_by("rec", "unit").agg(pl.col("final").n_unique().alias("answers"),
                                            pl.col("winner").first().is_not_null().alias("judged")))
    dis = per_rec.group_by("unit").agg(
        (pl.col("answers") > 1).mean().alias("disagreement"),
        ((pl.col("answers") > 1) & ~pl.col("judged")).mean().alias("unjudged_disagreement"))
    return TeacherFacts(
        n_records=t.items.height,
        usage={r["teacher"]: {"prompt_tokens": int(r["prompt_tokens"]),
                              "completion_tokens": int(r["completion_tokens"])}
               for r in usage.iter_rows(named=True)},
        disagreement={r["unit"]: {"rate": float(r["disagreement"]),
                                  "unjudged_rate": float(r["unjudged_disagreement"])}
                      for r in dis.iter_rows(named=True)},
    )
