"""Commands that train, evaluate and judge cells: ``run``, ``worker``, ``lm-eval``, ``gate``
and ``report``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.commands.common import EXIT_FAIL, EXIT_OK, fit, load, matrix_cells, select_cells
from harness.errors import InputError


def cmd_run(args: argparse.Namespace) -> int:
    """Compose, train and evaluate every cell (skipping finished ones), then collect results."""
    from harness.run import run_cells
    from harness.store.collect import format_table

    if args.address is not None and args.executor != "ray":
        # else the cells would quietly run here, not on the cluster the user named
        raise InputError(f"--address {args.address!r} names a Ray cluster, but the executor is "
                         f"{args.executor!r}: add `--executor ray`, or drop --address")
    loaded, data = load(args.experiment, cap=True, max_cells=args.max_cells,
                        allow_partial=getattr(args, "allow_partial", False))
    fit(loaded, data)
    matrix = matrix_cells(loaded, data)
    cells = select_cells(matrix, args.only, flag="--only")
    out = Path(args.out)
    summary = run_cells(loaded, data, cells, out, force=args.force, isolate=args.isolate,
                        device=args.device, threads=args.threads, progress=not args.quiet,
                        matrix=matrix, executor=args.executor, address=args.address,
                        workers=args.workers, track=getattr(args, "track", None))
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


def cmd_lm_eval(args: argparse.Namespace) -> int:
    """lm-eval's HFLM on a finished cell, next to the harness's own numbers."""
    from harness.lmeval import run_lm_eval
    from harness.store.folder import DONE, METRICS, MODEL, CellFolder
    from harness.students import base as student_kinds
    from harness.students.adapter import BaseChanged, BaseNotFound

    cell_dir = Path(args.cell_dir)
    folder = CellFolder(cell_dir)
    if not folder.done.is_file() or not folder.model.is_dir():
        raise InputError(f"{cell_dir}: not a finished cell (no {DONE} or {MODEL}/); run "
                         "`harness run` first")
    manifest = folder.read_manifest()
    kind = manifest.spec.student.kind
    if not student_kinds.get(kind).lm_eval:
        raise InputError(f"{cell_dir}: a {kind} student has no language-model head, and "
                         f"lm-eval's HFLM scores causal LMs; its {METRICS} holds the "
                         "harness's scores")
    ours = folder.read_metrics().units
    try:
        theirs = run_lm_eval(cell_dir, batch_size=args.batch_size, device=args.device,
                             base=getattr(args, "base", None))
    except (BaseNotFound, BaseChanged) as exc:  # a LoRA cell's base moved or changed
        raise InputError(f"{exc}; name the base the adapter was trained on with --base DIR"
                         ) from None
    for unit, res in theirs.items():
        harness_value = ours[unit]["metrics"].get("accuracy" if "acc" in res else "exact_match")
        shown = ", ".join(f"{k}={v:.4f}" for k, v in res.items())
        print(f"{unit}: lm-eval {shown}; harness {harness_value:.4f}")
    return EXIT_OK


def cmd_gate(args: argparse.Namespace) -> int:
    """Analyse a run folder and print the decision; exit 0 CONTINUE, 3 STOP/SHIFT,
    4 INCONCLUSIVE (the evidence cannot decide; the actions that would are printed).

    The stored analysis is reused only when it was computed from the folder as it is now."""
    from harness.analysis.analyse import current_analysis
    from harness.tracking import log_gate

    result = current_analysis(Path(args.run_dir), [Path(h) for h in args.history or []],
                              method=args.correction)
    gate = result["gate"]
    if args.json:
        print(json.dumps({"decision": gate["decision"], "exit_status": gate["exit_status"],
                          "actions": gate.get("actions", []), "cell": gate["cell"],
                          "selection": gate.get("selection"), "summary": gate.get("summary"),
                          "reasons": gate["reasons"],
                          "signals": result["signals"]}, indent=2))
    else:
        print(f"DECISION: {gate['decision']}")
        if gate.get("summary"):  # analyses stored before the summary existed have none
            print(f"  why: {gate['summary']['reason']}")
            print(f"  next: {gate['summary']['next_action']}")
        cell = gate["cell"]
        if cell.get("arm"):  # the decision is about an arm; the cell represents it
            print(f"  arm: {cell['arm']} (seeds {', '.join(map(str, cell['seeds']))}; "
                  f"representative cell {cell['label']} ({cell['cell_id']}))")
        else:
            print(f"  cell: {cell['label']} ({cell['cell_id']})")
        for r in gate["reasons"]:
            print(f"  {r}")
        for a in gate.get("actions", []):
            print(f"  TO DECIDE: {a}")
    log_gate(Path(args.run_dir), gate)  # into the run's MLflow parent run when tracked
    return int(gate["exit_status"])


def cmd_report(args: argparse.Namespace) -> int:
    """Render the self-contained HTML report of a run folder."""
    from harness.report.render import render_report
    from harness.tracking import log_report

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else Path("reports") / run_dir.name / "index.html"
    print(render_report(run_dir, out))
    log_report(run_dir, out)  # into the run's MLflow parent run when tracked
    return EXIT_OK

