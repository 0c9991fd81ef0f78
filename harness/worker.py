"""The worker: train and evaluate one composed cell folder.

``harness worker CELL_DIR`` reads the cell's manifest, training set and eval set (written by
``compose``), picks the student kind (``student.kind``: :mod:`harness.students.base`), builds
the student, trains it, saves it, has it answer every unit, measures its latency, and writes
into the same folder (file names: :class:`harness.store.folder.CellFolder`):

- the training log: one line per logged optimizer step;
- the model folder: the checkpoint and tokenizer (``from_pretrained`` reloads them); with
  ``student.adapter``, the LoRA adapter, tokenizer and the base's path and content hash
  instead (``PeftModel.from_pretrained`` on the base reloads it: :mod:`harness.students.adapter`);
- the predictions: per eval item the generation, parsed answer, correctness, confidence;
- the metrics (:class:`harness.store.contracts.CellMetrics`): per unit metrics, slices,
  calibration, fidelity; latency; training summary;
- the ``DONE`` marker: the cell id, written last — a cell without it is not finished.

Every file is written atomically. Imports: torch, transformers, numpy, the standard library and
harness modules that need nothing more — the GPU machine has nothing else.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.caches import use_run_caches
from harness.store.contracts import CellMetrics, CellSpec
from harness.store.folder import CellFolder
from harness.threads import DEFAULT_THREADS, cell_numerics, numerics_record, thread_record

if TYPE_CHECKING:
    from harness.students.base import StudentKind


def pick_device(requested: str | None = None) -> Any:
    """``cuda`` when available (or requested), else ``cpu``."""
    import torch

    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _evaluate(student: StudentKind, spec: CellSpec, eval_rows: list[dict[str, Any]],
              device: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every unit's report and the per-item predictions, the student answering unit by unit."""
    from harness.evaluate.units import unit_report

    slices = list(spec.evaluation.slices)
    reports: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    for name, unit in spec.units.items():
        items = [r for r in eval_rows if r["unit"] == name]
        if not items:
            continue
        t0 = time.perf_counter()
        ans = student.answer(name, unit, [r["prompt"] for r in items], device)
        rep = unit_report(unit, items, ans.answers, slices,
                          ans.probs if ans.calibrated else None)
        rep["eval_seconds"] = round(time.perf_counter() - t0, 3)
        for k, it in enumerate(items):
            row = {"id": it["id"], "unit": name, "generation": ans.texts[k],
                   "answer": ans.answers[k], "reference": it["reference"],
                   "correct": rep["correct"][k], "tags": it.get("tags") or {},
                   # scored once, here: the analysis bootstraps these instead of re-scoring
                   "parts": {"correct": float(rep["correct"][k]),
                             **{p: float(v[k]) for p, v in rep["parts"].items()}}}
            if ans.probs is not None:
                row["confidence"] = float(ans.probs[k].max())
                row["probs"] = [round(float(x), 6) for x in ans.probs[k]]
            predictions.append(row)
        reports[name] = rep
    return reports, predictions


def run_cell(cell_dir: Path, *, device: str | None = None,
             threads: int | None = None) -> CellMetrics:
    """Train and evaluate one cell; returns its metrics (also written to the cell folder).

    Args:
        cell_dir: the composed cell folder (files: :class:`~harness.store.folder.CellFolder`).
        device: ``cpu`` / ``cuda`` (None: cuda when available).
        threads: torch intra-op threads the cell computes with (None:
            :data:`harness.threads.DEFAULT_THREADS`, 1); set before the first tensor op and
            restored afterwards (:func:`harness.threads.cell_numerics`), so every executor
            computes a cell alike.

    Raises whatever training raises (e.g. :class:`~harness.train.loop.NonFiniteLoss`,
    ``torch.OutOfMemoryError``); the caller records it as the cell's failure.
    """
    dev = pick_device(device)
    with cell_numerics(threads or DEFAULT_THREADS, dev.type):
        return _run_cell(cell_dir, dev)


def _run_cell(cell_dir: Path, dev: Any) -> CellMetrics:
    """:func:`run_cell`'s body, inside the cell's numerics settings."""
    import torch
    import transformers

    from harness.evaluate.units import PER_ITEM
    from harness.students import base as students

    transformers.utils.logging.disable_progress_bar()  # keep the run's own progress bar clean
    folder = CellFolder(cell_dir)
    manifest = folder.read_manifest()
    use_run_caches(cell_dir, manifest.paths)  # tokenizers and compiled graphs, per run folder
    spec = manifest.spec
    cell_id = manifest.cell_id
    folder.clear_done()
    seed = spec.seed
    samples = folder.read_train()
    eval_rows = folder.read_eval()
    if not samples:
        raise ValueError("the cell's training set is empty (check the bucket's filters)")
    # (manifests composed before student kinds existed carry no kind: it reads as a causal LM)
    student = students.get(spec.student.kind)(spec, manifest.paths)
    t0 = time.perf_counter()
    student.build(samples, seed)
    with folder.train_log_writer() as log:  # a failed cell leaves no partial log behind
        summary = student.train(samples, seed=seed, device=dev, log=log)
    model_dir = folder.model
    student.save(model_dir)
    t_eval = time.perf_counter()
    reports, predictions = _evaluate(student, spec, eval_rows, dev)
    eval_seconds = time.perf_counter() - t_eval
    ev = spec.evaluation
    latency = student.latency([r["prompt"] for r in eval_rows[:64]], dev,
                              runs=ev.latency_runs, batch_size=ev.latency_batch_size,
                              new_tokens=ev.latency_new_tokens, checkpoint_dir=model_dir)
    metrics = CellMetrics(
        schema_version=CellMetrics.SCHEMA_VERSION, cell_id=cell_id, label=manifest.label,
        axes=manifest.axes, units={k: {kk: vv for kk, vv in v.items() if kk not in PER_ITEM}
                                   for k, v in reports.items()},
        train={**summary, "wall_seconds": round(t_eval - t0, 3)},
        eval_seconds=round(eval_seconds, 3), latency=latency,
        environment={"device": dev.type, "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "python": platform.python_version(), "host": platform.node(),
                     **thread_record(torch.get_num_threads()),
                     **numerics_record(dev, model=student.model), "seed": seed},
    )
    folder.write_predictions(predictions)
    folder.write_metrics(metrics)
    folder.mark_done(cell_id)
    return metrics
