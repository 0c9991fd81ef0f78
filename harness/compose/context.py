"""The candidate table every composition rule works on, built once per experiment.

One row per (record, candidate) with everything a rule may look at: unit and its kind/marker,
prompt, reference, the candidate's pool, judge score, the judge's declared winner, failure details,
and finals normalised per unit kind (JSON compacted, other answers on one line) so targets keep
the answer on the marker line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import polars as pl

import harness.units as unit_kinds
from harness.compose.templates import TargetTemplate
from harness.experiment.models import Experiment
from harness.samples import Dataset


def _compact_json(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return msgspec.json.encode(msgspec.json.decode(text)).decode()
    except (msgspec.DecodeError, UnicodeDecodeError):
        return text


def normalise_answers(df: pl.DataFrame, cols: list[str], kind_col: str = "kind") -> pl.DataFrame:
    """Normalise answer columns: JSON kinds compacted, other kinds collapsed to one line."""
    json_rows = pl.col(kind_col).is_in([n for n in unit_kinds.names()
                                        if unit_kinds.get(n).json_answers])
    out = df
    for c in cols:
        one_line = pl.col(c).str.replace_all(r"\s+", " ").str.strip_chars()
        # Answers repeat a lot: compact each distinct JSON text once, then map.
        distinct = df.filter(json_rows)[c].drop_nulls().unique().to_list()
        if distinct:
            mapping = {v: _compact_json(v) for v in distinct}
            compact = pl.col(c).replace_strict(mapping, default=pl.col(c), return_dtype=pl.Utf8)
            out = out.with_columns(pl.when(json_rows).then(compact).otherwise(one_line).alias(c))
        else:
            out = out.with_columns(one_line.alias(c))
    return out


def units_table(exp: Experiment) -> pl.DataFrame:
    """unit, kind, marker (the answer a failed candidate without a correction trains towards,
    e.g. a refusal unit's marker; null for kinds that have none), answer_marker."""
    rows = [{"unit": name, "kind": u.kind,
             "marker": unit_kinds.get(u.kind).failure_answer(u.model_dump(mode="json")),
             "answer_marker": u.answer_marker} for name, u in exp.units.items()]
    return pl.DataFrame(rows, schema={"unit": pl.Utf8, "kind": pl.Utf8, "marker": pl.Utf8,
                                      "answer_marker": pl.Utf8})


@dataclass
class ComposeContext:
    """Everything composition needs, computed once per experiment.

    Attributes:
        exp: the experiment.
        data: the validated data.
        cands: candidate rows with context (see module docstring).
        items: rec, id, unit, prompt of every training record.
        ranking: per-unit subsampling order (filled lazily by :mod:`harness.compose.sampling`).
    """

    exp: Experiment
    data: Dataset
    cands: pl.DataFrame
    items: pl.DataFrame
    ranking: pl.DataFrame | None = field(default=None)
    templates: dict[str, TargetTemplate] | None = field(default=None)


def build_context(exp: Experiment, data: Dataset, *, release: bool = False) -> ComposeContext:
    """Join the training tables into the candidate table the rules read.

    Args:
        release: drop the training tables from ``data`` once joined (they are not needed
            again by composition; on a million-record repository this halves peak memory).
    """
    t = data.train.tables
    units = units_table(exp)
    # Prompts and ids are attached once per sample at rendering, not copied per candidate.
    items = t.items.select("rec", "unit", "reference", "winner")
    fails = t.failures.select("rec", "teacher", pl.col("kind").alias("failure_kind"),
                              "correction", "note")
    cands = (
        t.candidates.select("rec", "cand", "teacher", "final", "rationale", "limits",
                            "confidence", "trajectory", "soft_labels")
        .join(items, on="rec", how="left")
        .join(units, on="unit", how="left")
        .join(t.pools.select("rec", "teacher", "pool"), on=["rec", "teacher"], how="left")
        .join(t.scores.select("rec", "teacher", "score"), on=["rec", "teacher"], how="left")
        .join(fails, on=["rec", "teacher"], how="left")
        .with_columns(pl.col("pool").fill_null("train"))
    )
    cands = normalise_answers(cands, ["final", "correction", "reference"])
    ctx = ComposeContext(exp=exp, data=data, cands=cands,
                         items=t.items.select("rec", "id", "unit", "prompt"))
    if release:
        for name in ("candidates", "scores", "pools", "failures", "tags"):
            setattr(t, name, getattr(t, name).clear())
    return ctx
