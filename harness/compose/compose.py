"""Compose one cell's training set: bucket -> failures -> confidence -> fields -> scale -> targets.

The output frame has one row per training sample with columns ``prompt, target, weight, unit,
record_id, teacher, pool, origin, final, confidence`` (origin: ``teacher`` or ``failure``; final:
the answer the target states, which classifier students train on; confidence: the teacher's
stated confidence, null for corrected failures), sorted by unit and record id so the file is
byte-stable. Samples that end up with the same record and target are merged
(their weight is the maximum), e.g. when the judge's winner and a corrected failure both say
``ESCALATE``.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from harness.compose.context import ComposeContext
from harness.compose.registry import CONFIDENCE_RULES, FAILURE_MODES, SELECTORS
from harness.compose.sampling import rank_records, subsample
from harness.compose.sandbox import TemplateBoundError
from harness.compose.soft_targets import align
from harness.compose.templates import ROW_VARS, TargetTemplate, compile_target_template
from harness.errors import InputError, Problem
from harness.experiment.models import StudentSpec
from harness.matrix import Cell

OUTPUT_COLUMNS = ["prompt", "target", "weight", "unit", "record_id", "teacher", "pool", "origin",
                  "final", "confidence"]
#: The extra column of a ``soft_targets: topk`` cell: the teacher's answer tokens placed on the
#: target (:mod:`harness.compose.soft_targets`), null where none could be placed. Hard cells do
#: not have it, so their files stay byte-identical to those of earlier versions.
SOFT_COLUMN = "soft_labels"
_FLOAT_COLUMNS = ("weight", "confidence")
_ROW_COLUMNS = ["rec", "unit", "teacher", "pool", "weight", "confidence", "origin", *ROW_VARS]

#: Rough token count used by ``plan`` and manifests before any tokenizer exists: words and
#: punctuation marks. Real tokenizer counts are recorded by the worker.
TOKEN_PATTERN = r"\w+|[^\w\s]"


class TargetTemplateError(InputError):
    """A unit's target template broke its bounds on a real training row (exit status 2; the
    whole run stops, as every cell of the experiment renders the same template)."""


@dataclass(frozen=True)
class ComposedCell:
    """A cell's training set and the numbers about it."""

    cell: Cell
    frame: pl.DataFrame
    student: StudentSpec

    def counts(self, by: str | list[str]) -> dict[str, int]:
        """Sample counts grouped by one column (key) or several (keys joined by '/')."""
        cols = [by] if isinstance(by, str) else by
        df = self.frame.group_by(cols).len().sort(cols)
        return {"/".join(str(v) for v in row[:-1]): int(row[-1]) for row in df.iter_rows()}

    def token_totals(self) -> dict[str, dict[str, int]]:
        """Per unit: estimated prompt and target tokens (see ``TOKEN_PATTERN``)."""
        df = self.frame.group_by("unit").agg(
            pl.col("prompt").str.count_matches(TOKEN_PATTERN).sum().alias("prompt_tokens_est"),
            pl.col("target").str.count_matches(TOKEN_PATTERN).sum().alias("target_tokens_est"),
        ).sort("unit")
        return {r["unit"]: {"prompt_tokens_est": int(r["prompt_tokens_est"]),
                            "target_tokens_est": int(r["target_tokens_est"])}
                for r in df.iter_rows(named=True)}


def _templates(ctx: ComposeContext) -> dict[str, TargetTemplate]:
    if ctx.templates is None:
        ctx.templates = {name: compile_target_template(u, name)
                         for name, u in ctx.exp.units.items()}
    return ctx.templates


def _ranking(ctx: ComposeContext) -> pl.DataFrame:
    if ctx.ranking is None:
        ctx.ranking = rank_records(ctx.items, ctx.exp.sampling)
    return ctx.ranking


def compose_cell(ctx: ComposeContext, cell: Cell) -> ComposedCell:
    """Build the training set of one cell (see the module docstring for the order of rules)."""
    exp = ctx.exp
    bucket = exp.buckets[cell.axes.bucket]
    fields = exp.fields[cell.axes.fields]
    rows = ctx.cands
    if isinstance(bucket.teachers, list):
        rows = rows.filter(pl.col("teacher").is_in(bucket.teachers))
    eligible = rows.filter(pl.col("pool").is_in(list(bucket.pools)))
    if bucket.min_score is not None:
        eligible = eligible.filter(pl.col("score") >= bucket.min_score)
    chosen = SELECTORS[bucket.select](eligible, bucket)
    chosen = CONFIDENCE_RULES[fields.confidence](chosen, fields)
    chosen = chosen.with_columns(pl.lit("teacher").alias("origin"),
                                 pl.lit(None, dtype=pl.Utf8).alias("wrong"),
                                 pl.lit(None, dtype=pl.Utf8).alias("note"))
    failed = FAILURE_MODES[bucket.failures](rows.filter(pl.col("pool") == "failure"), bucket)
    if "wrong" not in failed.columns:
        failed = failed.with_columns(pl.lit(None, dtype=pl.Utf8).alias("wrong"))
    # A corrected failure states a checked answer, not the teacher's guess: no confidence.
    failed = failed.with_columns(pl.lit(1.0).alias("weight"), pl.lit("failure").alias("origin"),
                                 pl.lit(None, dtype=pl.Float64).alias("confidence"))
    soft = fields.soft_targets == "topk"
    # A corrected failure states a checked answer, not the teacher's: it trains hard.
    failed = failed.with_columns(pl.lit(None, dtype=pl.Utf8).alias(SOFT_COLUMN))
    keep = [*_ROW_COLUMNS, SOFT_COLUMN] if soft else _ROW_COLUMNS
    samples = pl.concat([chosen.select(keep), failed.select(keep)])
    # Field ablation: what the target may contain.
    samples = samples.with_columns(
        *(pl.lit(None, dtype=pl.Utf8).alias(f) for f in ("rationale", "limits", "trajectory")
          if not getattr(fields, f)))
    if cell.axes.scale < 1.0:  # the ranking (clustering) is only needed for subsets
        samples = subsample(samples, _ranking(ctx), cell.axes.scale)
    return ComposedCell(cell=cell, frame=_render(ctx, samples, soft=soft), student=exp.student)


def _render(ctx: ComposeContext, samples: pl.DataFrame, *, soft: bool = False) -> pl.DataFrame:
    """Render targets per unit, place soft labels on them (``soft``), attach prompts and ids,
    merge duplicates, sort."""
    templates = _templates(ctx)
    columns = [*OUTPUT_COLUMNS, SOFT_COLUMN] if soft else OUTPUT_COLUMNS
    parts = []
    for unit, tmpl in templates.items():
        part = samples.filter(pl.col("unit") == unit)
        if part.height:
            part = part.with_columns(_render_targets(ctx, unit, tmpl, part))
            if soft:
                part = part.with_columns(_placed(part, tmpl.marker))
            parts.append(part)
    if not parts:
        return pl.DataFrame(schema={c: (pl.Float64 if c in _FLOAT_COLUMNS else pl.Utf8)
                                    for c in columns})
    out = pl.concat(parts).join(ctx.items.select("rec", pl.col("id").alias("record_id"),
                                                 "prompt"), on="rec", how="left")
    # Teacher rows sort before failure rows of the same record: a merged sample keeps the
    # teacher's soft labels (the same target, written by the teacher).
    out = (out.sort("rec", "origin", "teacher", descending=[False, True, False])
           .group_by("rec", "target", maintain_order=True)
           .agg(pl.col("prompt", "unit", "record_id", "teacher", "pool", "origin", "final",
                       *([SOFT_COLUMN] if soft else [])).first(),
                pl.col("weight", "confidence").max()))
    return out.sort("unit", "record_id", "origin", "teacher").select(columns)


def _placed(part: pl.DataFrame, marker: str) -> pl.Series:
    """The ``soft_labels`` column of one unit's rows: each candidate's answer tokens placed on
    its rendered target (:func:`harness.compose.soft_targets.align`), null where none could
    be (one Python call per row: only topk cells pay it)."""
    return pl.Series(SOFT_COLUMN, [align(t, marker, js) for t, js in
                                   zip(part["target"], part[SOFT_COLUMN], strict=True)],
                     dtype=pl.Utf8)


def _render_targets(ctx: ComposeContext, unit: str, tmpl: TargetTemplate, part: pl.DataFrame
                    ) -> pl.Series:
    """The ``target`` column of one unit's rows.

    Raises:
        TargetTemplateError: a real row broke the template's bounds (validate renders templates
            on placeholder answers only, so a template that grows with its input passes there).
    """
    try:
        return tmpl.render_frame(part).alias("target")
    except TemplateBoundError as exc:
        rec = _first_unrenderable(tmpl, part)
        ids = ctx.items.filter(pl.col("rec") == rec)["id"] if rec is not None else None
        at = f" (first at record {ids[0]!r})" if ids is not None and len(ids) else ""
        problem = Problem(f"units.{unit}.template", "",
                          f"{exc}{at}: simplify the template or shorten the answers")
        raise TargetTemplateError(f"experiment {ctx.exp.name!r}: the target template of unit "
                                  f"{unit!r} broke its bounds on a training row",
                                  [problem]) from None


def _first_unrenderable(tmpl: TargetTemplate, part: pl.DataFrame) -> int | None:
    """The ``rec`` of the first row that breaks the template's bounds on its own, if any (only
    on the error path: renders row by row)."""
    for row in part.select(*ROW_VARS, "rec").iter_rows(named=True):
        try:
            tmpl.render_one(row)
        except TemplateBoundError:
            return int(row["rec"])
    return None
