"""Commands that read the experiment and its data: ``validate``, ``plan``, ``compose``,
``export-lm-eval`` and ``schema``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.commands.common import EXIT_OK, fit, load, matrix_cells, select_cells, text_table

if TYPE_CHECKING:
    from harness.compose import ComposeContext
    from harness.matrix import Cell


def cmd_validate(args: argparse.Namespace) -> int:
    """Check the experiment and its data; print counts, warnings and per-unit statistics.
    Data that ``generate --partial`` wrote with prompts unanswered is refused (exit 2) unless
    ``--allow-partial``."""
    from harness.teachers.unanswered import check_complete

    t0 = time.perf_counter()
    loaded, data = load(args.experiment, allow_partial=None)
    # before the data-fit rules: a teacher whose every call failed is missing for that reason
    partial = check_complete(loaded.spec, allow_partial=getattr(args, "allow_partial", False))
    fit(loaded, data)
    from harness.matrix import DEFAULT_MAX_CELLS, count_cells
    from harness.samples.stats import teacher_stats, unit_stats

    n_cells = count_cells(loaded.spec)  # counted, not built: a huge matrix answers at once

    exp = loaded.spec
    tr = data.train.tables
    teachers = sorted(tr.candidates["teacher"].unique().to_list())
    print(f"{loaded.path}: valid ({time.perf_counter() - t0:.1f}s)")
    print(f"  experiment {exp.name!r}: {len(exp.units)} units, {len(teachers)} teachers "
          f"({', '.join(teachers)}), {n_cells} cells")
    if n_cells > DEFAULT_MAX_CELLS:
        print(f"  note: {n_cells:,} cells is more than plan/compose/run accept by default "
              f"(--max-cells {DEFAULT_MAX_CELLS:,})")
    print(f"  {data.train.path.name}: {data.train.n_records:,} records, "
          f"{tr.candidates.height:,} candidates")
    print(f"  {data.eval.path.name}: {data.eval.n_records:,} items")
    for w in [*partial, *data.warnings]:
        print(f"  warning: {w}")
    us = unit_stats(tr)
    print()
    print(text_table(us.columns, us.rows()))
    if args.stats:
        ts = teacher_stats(tr)
        print()
        print(text_table(ts.columns, ts.rows()))
    return EXIT_OK


def _plan_rows(ctx: ComposeContext, cells: list[Cell]) -> list[dict[str, Any]]:
    """Each cell composed in memory: its axes, sample counts per unit and token estimates."""
    from harness.compose import compose_cell

    out = []
    for cell in cells:
        composed = compose_cell(ctx, cell)
        out.append({
            "cell_id": cell.cell_id, "label": cell.label, "baseline": cell.is_baseline,
            "axes": {"bucket": cell.axes.bucket, "fields": cell.axes.fields,
                     "scale": cell.axes.scale, "seed": cell.axes.seed},
            "samples": composed.frame.height, "samples_per_unit": composed.counts("unit"),
            "tokens": composed.token_totals(),
        })
    return out


def cmd_plan(args: argparse.Namespace) -> int:
    """List the matrix's cells with their training-set sizes (a table, or JSON)."""
    from harness.compose import build_context

    loaded, data = load(args.experiment, cap=True, max_cells=args.max_cells,
                        allow_partial=getattr(args, "allow_partial", False))
    fit(loaded, data)
    cells = matrix_cells(loaded, data)
    ctx = build_context(loaded.spec, data, release=True)
    rows = _plan_rows(ctx, cells)
    if args.json:
        print(json.dumps({"experiment": loaded.spec.name, "cells": rows}, indent=2))
        return EXIT_OK
    units = list(loaded.spec.units)
    headers = ["cell_id", "label", "base", *units, "samples", "target_tok"]
    table = [[r["cell_id"], r["label"], "*" if r["baseline"] else "",
              *(r["samples_per_unit"].get(u, 0) for u in units), r["samples"],
              sum(v["target_tokens_est"] for v in r["tokens"].values())] for r in rows]
    print(f"{loaded.spec.name}: {len(rows)} cells ({loaded.spec.design.kind}); samples per unit; "
          "target_tok = estimated target tokens (words and punctuation)")
    print(text_table(headers, table))
    return EXIT_OK


def cmd_compose(args: argparse.Namespace) -> int:
    """Write each chosen cell's training and eval files and its manifest."""
    from harness.compose import build_context, compose_cell, eval_frame, write_cell

    loaded, data = load(args.experiment, cap=True, max_cells=args.max_cells,
                        allow_partial=getattr(args, "allow_partial", False))
    fit(loaded, data)
    cells = select_cells(matrix_cells(loaded, data), args.cell)
    ctx = build_context(loaded.spec, data, release=True)
    out = Path(args.out) if args.out else Path("runs") / loaded.spec.name / "cells"
    ev = eval_frame(loaded.spec, data)
    for cell in cells:
        composed = compose_cell(ctx, cell)
        folder = write_cell(composed, data, ev, out)
        print(f"{cell.cell_id}  {cell.label:<45} {composed.frame.height:>8,} samples -> {folder}")
    return EXIT_OK


def cmd_export_lm_eval(args: argparse.Namespace) -> int:
    """One lm-eval task YAML (and its JSONL) per unit of the experiment's eval set."""
    from harness.compose import eval_frame
    from harness.lmeval import export_tasks

    # the eval items and their references are whole even in partial data
    loaded, data = load(args.experiment, allow_partial=True)
    rows = [dict(r, candidates=r["candidates"] or []) for r in
            eval_frame(loaded.spec, data).iter_rows(named=True)]
    units = {k: v.model_dump(mode="json") for k, v in loaded.spec.units.items()}
    for path in export_tasks(loaded.spec.name, units, rows, Path(args.out)):
        print(path)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the experiment's JSON Schema."""
    from harness.experiment import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK
