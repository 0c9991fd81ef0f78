"""Command line: ``harness validate | plan | compose | schema``.

Every command that reads user input turns bad input into a located message on stderr and exit
status 2 (never a traceback). Heavy libraries (torch, transformers, lm-eval, scikit-learn) are
imported inside the commands that need them, so ``validate`` and ``plan`` start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import InputError

if TYPE_CHECKING:
    from harness.compose import ComposeContext
    from harness.matrix import Cell
    from harness.samples import Dataset
    from harness.spec import LoadedExperiment

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain monospace table (right-aligned numbers)."""
    cells = [[_fmt(v) for v in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric, strict=True)).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def _load(path: str, *, cap: bool = False, max_cells: int | None = None
          ) -> tuple[LoadedExperiment, Dataset]:
    """The experiment (every experiment rule checked: :mod:`harness.checks`) and its data;
    with ``cap``, a matrix larger than ``max_cells`` (default
    :data:`harness.matrix.DEFAULT_MAX_CELLS`) is refused first, counted without building cells
    and before the data files are read. The data-fit rules are the caller's (:func:`_fit`)."""
    from harness.checks import load_experiment
    from harness.samples import load_data

    loaded = load_experiment(path)
    if cap:
        from harness.matrix import DEFAULT_MAX_CELLS, check_matrix_size

        check_matrix_size(loaded.spec, max_cells or DEFAULT_MAX_CELLS)
    return loaded, load_data(loaded)


def _fit(loaded: LoadedExperiment, data: Dataset) -> None:
    """The data-fit rules (:mod:`harness.checks.data_fit`): e.g. buckets and costs may only name
    teachers the sample repository has."""
    from harness.checks import check_data_fit

    check_data_fit(loaded, data)


def _cells(loaded: LoadedExperiment, data: Dataset) -> list[Cell]:
    from harness.matrix import build_cells

    return build_cells(loaded.spec, {"samples": data.train.sha256, "eval": data.eval.sha256})


def cmd_validate(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    loaded, data = _load(args.experiment)
    _fit(loaded, data)
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
    for w in data.warnings:
        print(f"  warning: {w}")
    us = unit_stats(tr)
    print()
    print(_table(us.columns, us.rows()))
    if args.stats:
        ts = teacher_stats(tr)
        print()
        print(_table(ts.columns, ts.rows()))
    return EXIT_OK


def _plan_rows(ctx: ComposeContext, cells: list[Cell]) -> list[dict[str, Any]]:
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
    from harness.compose import build_context

    loaded, data = _load(args.experiment, cap=True, max_cells=args.max_cells)
    _fit(loaded, data)
    cells = _cells(loaded, data)
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
    print(_table(headers, table))
    return EXIT_OK


def _select_cells(cells: list[Cell], wanted: list[str] | None) -> list[Cell]:
    if not wanted:
        return cells
    from harness.errors import ProblemLog, did_you_mean

    log = ProblemLog()
    chosen = []
    for w in wanted:
        hits = [c for c in cells if c.cell_id.startswith(w) or c.label == w]
        if len(hits) != 1:
            reason = "matches no cell" if not hits else f"matches {len(hits)} cells"
            log.add("--cell", "", f"{w!r} {reason}"
                    f"{did_you_mean(w, [c.label for c in cells] + [c.cell_id for c in cells])}")
        chosen += hits[:1]
    log.raise_if_any("--cell: unknown cell")
    return chosen


def cmd_compose(args: argparse.Namespace) -> int:
    from harness.compose import build_context, compose_cell, eval_frame, write_cell

    loaded, data = _load(args.experiment, cap=True, max_cells=args.max_cells)
    _fit(loaded, data)
    cells = _select_cells(_cells(loaded, data), args.cell)
    ctx = build_context(loaded.spec, data, release=True)
    out = Path(args.out) if args.out else Path("runs") / loaded.spec.name / "cells"
    ev = eval_frame(loaded.spec, data)
    for cell in cells:
        composed = compose_cell(ctx, cell)
        folder = write_cell(composed, data, ev, out)
        print(f"{cell.cell_id}  {cell.label:<45} {composed.frame.height:>8,} samples -> {folder}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Compose, train and evaluate every cell (skipping finished ones), then collect results."""
    from harness.run import format_table, run_cells

    loaded, data = _load(args.experiment, cap=True, max_cells=args.max_cells)
    _fit(loaded, data)
    matrix = _cells(loaded, data)
    cells = _select_cells(matrix, args.only)
    out = Path(args.out)
    summary = run_cells(loaded, data, cells, out, force=args.force, isolate=args.isolate,
                        device=args.device, threads=args.threads, progress=not args.quiet,
                        matrix=matrix)
    counts = {s: sum(o.status == s for o in summary.outcomes)
              for s in ("done", "skipped", "failed")}
    print(f"{loaded.spec.name}: {counts['done']} cell(s) run, {counts['skipped']} already done, "
          f"{counts['failed']} failed -> {summary.run_dir}")
    print(format_table(summary.run_dir, {u: v.model_dump() for u, v in loaded.spec.units.items()}))
    for o in summary.failed:
        print(f"FAILED {o.cell.label} ({o.cell.cell_id}): {o.error['error'] if o.error else ''}",
              file=sys.stderr)
    return EXIT_FAIL if summary.failed else EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    """Train and evaluate one composed cell folder (torch + transformers + numpy only)."""
    from harness.store.folder import MANIFEST, CellFolder
    from harness.worker import run_cell

    cell_dir = Path(args.cell_dir)
    if not CellFolder(cell_dir).is_composed():
        raise InputError(f"{cell_dir}: not a composed cell folder (no {MANIFEST}); run "
                         "`harness compose` first")
    metrics = run_cell(cell_dir, device=args.device, threads=args.threads)
    for unit, rep in metrics.units.items():
        shown = ", ".join(f"{k}={v:.3f}" for k, v in rep["metrics"].items()
                          if isinstance(v, float) and "." not in k)
        print(f"{unit}: {shown}")
    return EXIT_OK


def cmd_export_lm_eval(args: argparse.Namespace) -> int:
    """One lm-eval task YAML (and its JSONL) per unit of the experiment's eval set."""
    from harness.compose import eval_frame
    from harness.evaluate.lmeval import export_tasks

    loaded, data = _load(args.experiment)
    rows = [dict(r, candidates=r["candidates"] or []) for r in
            eval_frame(loaded.spec, data).iter_rows(named=True)]
    units = {k: v.model_dump(mode="json") for k, v in loaded.spec.units.items()}
    for path in export_tasks(loaded.spec.name, units, rows, Path(args.out)):
        print(path)
    return EXIT_OK


def cmd_lm_eval(args: argparse.Namespace) -> int:
    """lm-eval's HFLM on a finished cell, next to the harness's own numbers."""
    from harness.evaluate.lmeval import run_lm_eval
    from harness.store.folder import DONE, METRICS, MODEL, CellFolder

    cell_dir = Path(args.cell_dir)
    folder = CellFolder(cell_dir)
    if not folder.done.is_file() or not folder.model.is_dir():
        raise InputError(f"{cell_dir}: not a finished cell (no {DONE} or {MODEL}/); run "
                         "`harness run` first")
    manifest = folder.read_manifest()
    if manifest.spec["student"].get("kind") == "classifier":
        raise InputError(f"{cell_dir}: a classifier student has no language-model head, and "
                         f"lm-eval's HFLM scores causal LMs; its {METRICS} holds the "
                         "harness's scores")
    ours = folder.read_metrics().units
    theirs = run_lm_eval(cell_dir, batch_size=args.batch_size, device=args.device)
    for unit, res in theirs.items():
        harness_value = ours[unit]["metrics"].get("accuracy" if "acc" in res else "exact_match")
        shown = ", ".join(f"{k}={v:.4f}" for k, v in res.items())
        print(f"{unit}: lm-eval {shown}; harness {harness_value:.4f}")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    """Analyse a run folder and print the decision; exit 0 CONTINUE, 3 STOP/SHIFT.

    The stored analysis is reused only when it was computed from the folder as it is now."""
    from harness.analysis.analyse import current_analysis

    result = current_analysis(Path(args.run_dir), [Path(h) for h in args.history or []],
                              method=args.correction)
    gate = result["gate"]
    if args.json:
        print(json.dumps({"decision": gate["decision"], "cell": gate["cell"],
                          "selection": gate.get("selection"), "reasons": gate["reasons"],
                          "signals": result["signals"]}, indent=2))
    else:
        print(f"DECISION: {gate['decision']}")
        cell = gate["cell"]
        if cell.get("arm"):  # the decision is about an arm; the cell represents it
            print(f"  arm: {cell['arm']} (seeds {', '.join(map(str, cell['seeds']))}; "
                  f"representative cell {cell['label']} ({cell['cell_id']}))")
        else:
            print(f"  cell: {cell['label']} ({cell['cell_id']})")
        for r in gate["reasons"]:
            print(f"  {r}")
    return int(gate["exit_status"])


def cmd_report(args: argparse.Namespace) -> int:
    """Render the self-contained HTML report of a run folder."""
    from harness.report.render import render_report

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else Path("reports") / run_dir.name / "index.html"
    print(render_report(run_dir, out))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return n


def _max_cells_option(p: argparse.ArgumentParser) -> None:
    # The default lives in harness.matrix (imported lazily: it pulls in pydantic).
    p.add_argument("--max-cells", type=_positive_int, metavar="N",
                   help="refuse a matrix of more than N cells (default 5,000)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Declarative experiment and "
                                "evaluation harness for knowledge distillation.")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check the experiment YAML and its data files")
    v.add_argument("experiment")
    v.add_argument("--stats", action="store_true", help="also print per-teacher statistics")
    v.set_defaults(fn=cmd_validate)
    pl_ = sub.add_parser("plan", help="list the matrix's cells with their training-set sizes")
    pl_.add_argument("experiment")
    pl_.add_argument("--json", action="store_true", help="machine-readable output")
    _max_cells_option(pl_)
    pl_.set_defaults(fn=cmd_plan)
    c = sub.add_parser("compose", help="write each cell's training set (JSONL + manifest)")
    c.add_argument("experiment")
    c.add_argument("--cell", action="append", help="cell id (or prefix) or label; repeatable")
    c.add_argument("--out", help="output folder (default runs/<experiment>/cells)")
    _max_cells_option(c)
    c.set_defaults(fn=cmd_compose)
    r = sub.add_parser("run", help="train and evaluate every cell; resumable")
    r.add_argument("experiment")
    r.add_argument("--out", default="runs", help="runs folder (default: runs)")
    r.add_argument("--only", action="append", help="cell id (or prefix) or label; repeatable")
    r.add_argument("--force", action="store_true", help="re-run cells that are already done")
    r.add_argument("--isolate", action="store_true",
                   help="run each cell's worker in its own process")
    r.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    r.add_argument("--threads", type=int, help="torch CPU threads")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    _max_cells_option(r)
    r.set_defaults(fn=cmd_run)
    w = sub.add_parser("worker", help="train and evaluate one composed cell folder")
    w.add_argument("cell_dir")
    w.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    w.add_argument("--threads", type=int, help="torch CPU threads")
    w.set_defaults(fn=cmd_worker)
    x = sub.add_parser("export-lm-eval", help="write one lm-eval task per unit")
    x.add_argument("experiment")
    x.add_argument("--out", required=True, help="folder for the task YAMLs and data")
    x.set_defaults(fn=cmd_export_lm_eval)
    le = sub.add_parser("lm-eval", help="run lm-eval's HFLM on a finished cell")
    le.add_argument("cell_dir")
    le.add_argument("--batch-size", type=int, default=32)
    le.add_argument("--device")
    le.set_defaults(fn=cmd_lm_eval)
    g = sub.add_parser("gate", help="analyse a run and print the decision (exit 0/3)")
    g.add_argument("run_dir")
    g.add_argument("--history", nargs="*", help="earlier runs of the same experiment (rounds)")
    g.add_argument("--correction", choices=["holm", "bh"], help="override gate.correction")
    g.add_argument("--json", action="store_true", help="print the decision as JSON")
    g.set_defaults(fn=cmd_gate)
    rp = sub.add_parser("report", help="render the HTML report of a run folder")
    rp.add_argument("run_dir")
    rp.add_argument("--out", help="HTML file (default reports/<experiment>/index.html)")
    rp.set_defaults(fn=cmd_report)
    s = sub.add_parser("schema", help="print the experiment JSON Schema")
    s.set_defaults(fn=cmd_schema)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failure, 2 bad input)."""
    from harness.threads import configure_wait_policy

    configure_wait_policy()  # before torch loads OpenMP: idle threads sleep, not spin
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except InputError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished cells are kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
