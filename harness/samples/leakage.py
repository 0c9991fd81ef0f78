"""Train-eval leakage: an eval item whose id or normalized prompt also occurs in training."""

from __future__ import annotations

import polars as pl

from harness.store.contracts import LeakageFacts


def normalized_prompt(col: str = "prompt") -> pl.Expr:
    """Lower-cased prompt with whitespace runs collapsed and ends stripped."""
    return (pl.col(col).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
            .alias("norm"))


def find_leaks(train_items: pl.DataFrame, eval_items: pl.DataFrame) -> pl.DataFrame:
    """Pairs of (eval item, training record) that leak.

    Returns:
        columns ``eval_id, eval_line, train_rec, train_id, train_line, by`` where ``by`` is
        ``"id"`` or ``"prompt"``; sorted by eval line.
    """
    tr = train_items.select(pl.col("rec").alias("train_rec"), pl.col("id").alias("train_id"),
                            pl.col("line").alias("train_line"), normalized_prompt())
    ev = eval_items.select(pl.col("id").alias("eval_id"), pl.col("line").alias("eval_line"),
                           normalized_prompt())
    by_id = ev.join(tr, left_on="eval_id", right_on="train_id", how="inner").select(
        "eval_id", "eval_line", "train_rec", pl.col("eval_id").alias("train_id"), "train_line",
        pl.lit("id").alias("by"))
    by_prompt = ev.join(tr, on="norm", how="inner").select(
        "eval_id", "eval_line", "train_rec", "train_id", "train_line", pl.lit("prompt").alias("by"))
    both = pl.concat([by_id, by_prompt]).unique(["eval_id", "train_rec"], keep="first")
    return both.sort("eval_line", "train_line")


def leakage_facts(policy: str, leaks: pl.DataFrame) -> LeakageFacts:
    """The train-eval overlap validation found (``leaks``: :func:`find_leaks`'s pairs) and the
    policy the run went on under (``data.leakage``), so the gate and the report can say it
    (``harness validate`` only prints it)."""
    n = leaks.height
    return LeakageFacts(policy=policy, overlaps=n,
                        eval_items=leaks["eval_id"].n_unique() if n else 0,
                        train_records=leaks["train_rec"].n_unique() if n else 0)
