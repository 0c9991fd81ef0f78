"""The worker: train and evaluate one composed cell folder.

``harness worker CELL_DIR`` reads ``manifest.json``, ``train.jsonl`` and ``eval.jsonl`` (written
by ``compose``), builds the student, trains it, evaluates every unit, measures latency, and
writes into the same folder:

- ``train_log.jsonl``: one line per logged optimizer step;
- ``model/``: the checkpoint and tokenizer (``from_pretrained`` reloads them);
- ``predictions.jsonl``: per eval item the generation, parsed answer, correctness, confidence;
- ``metrics.json``: per unit metrics, slices, calibration, fidelity; latency; training summary;
- ``DONE``: the cell id, written last — a cell without it is not finished.

Every file is written atomically. Imports: torch, transformers, numpy, the standard library and
harness modules that need nothing more — the GPU machine has nothing else.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from harness.fsutil import atomic_write_json, atomic_write_text

METRICS_VERSION = 1


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All JSON objects of a JSON Lines file."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def pick_device(requested: str | None = None) -> Any:
    """``cuda`` when available (or requested), else ``cpu``."""
    import torch

    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def is_done(cell_dir: Path, cell_id: str) -> bool:
    """Whether the folder holds finished results for exactly this cell id."""
    done = cell_dir / "DONE"
    try:
        return done.read_text(encoding="utf-8").strip() == cell_id
    except OSError:
        return False


def _evaluate(model: Any, tokenizer: Any, spec: dict[str, Any], eval_rows: list[dict[str, Any]],
              device: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every unit's report and the per-item predictions."""
    from harness.evaluate.predict import generate, parse_answers, score_labels, softmax_rows
    from harness.evaluate.units import unit_report

    max_len = int(spec["student"]["train"]["max_len"])
    slices = spec["evaluation"]["slices"]
    max_new = int(spec["evaluation"]["max_new_tokens"])
    reports: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    for name, unit in spec["units"].items():
        items = [r for r in eval_rows if r["unit"] == name]
        if not items:
            continue
        prompts = [r["prompt"] for r in items]
        marker = unit["answer_marker"]
        probs = None
        t0 = time.perf_counter()
        if unit["kind"] == "label":
            ll = score_labels(model, tokenizer, prompts, list(unit["labels"]), marker, device,
                              max_len=max_len)
            probs = softmax_rows(ll)
            preds: list[str | None] = [unit["labels"][j] for j in probs.argmax(axis=1)]
            texts = [f"{marker} {p}" for p in preds]
        else:
            texts = generate(model, tokenizer, prompts, device, max_new, max_len=max_len)
            preds = parse_answers(texts, marker)
        rep = unit_report(unit, items, preds, slices, probs)
        rep["eval_seconds"] = round(time.perf_counter() - t0, 3)
        for k, it in enumerate(items):
            row = {"id": it["id"], "unit": name, "generation": texts[k], "answer": preds[k],
                   "reference": it["reference"], "correct": rep["correct"][k],
                   "tags": it.get("tags") or {}}
            if probs is not None:
                row["confidence"] = float(probs[k].max())
                row["probs"] = [round(float(x), 6) for x in probs[k]]
            predictions.append(row)
        reports[name] = rep
    return reports, predictions


def _evaluate_classifier(model: Any, tokenizer: Any, layout: Any, spec: dict[str, Any],
                         eval_rows: list[dict[str, Any]], device: Any
                         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Every unit's report and predictions for a classifier student: one forward pass per item,
    softmax over the unit's class block (label units also get calibration)."""
    from harness.evaluate.units import unit_report
    from harness.students.classifier import classify

    max_len = int(spec["student"]["train"]["max_len"])
    reports: dict[str, Any] = {}
    predictions: list[dict[str, Any]] = []
    for name, unit in spec["units"].items():
        items = [r for r in eval_rows if r["unit"] == name]
        if not items:
            continue
        t0 = time.perf_counter()
        block = layout.blocks[name]
        probs = classify(model, tokenizer, block, [r["prompt"] for r in items], device, max_len)
        preds: list[str | None] = [layout.answer(name, int(j)) for j in probs.argmax(axis=1)]
        rep = unit_report(unit, items, preds, spec["evaluation"]["slices"],
                          probs if unit["kind"] == "label" else None)
        rep["eval_seconds"] = round(time.perf_counter() - t0, 3)
        for k, it in enumerate(items):
            predictions.append({
                "id": it["id"], "unit": name, "generation": preds[k], "answer": preds[k],
                "reference": it["reference"], "correct": rep["correct"][k],
                "tags": it.get("tags") or {}, "confidence": float(probs[k].max()),
                "probs": [round(float(x), 6) for x in probs[k]]})
        reports[name] = rep
    return reports, predictions


def run_cell(cell_dir: Path, *, device: str | None = None, latency_runs: int = 20,
             threads: int | None = None) -> dict[str, Any]:
    """Train and evaluate one cell; returns the metrics dict (also written to metrics.json).

    Raises whatever training raises (e.g. :class:`~harness.train.loop.NonFiniteLoss`,
    ``torch.OutOfMemoryError``); the caller records it as the cell's failure.
    """
    import torch
    import transformers

    from harness.evaluate.latency import measure, measure_classifier
    from harness.students.build import build_student, load_checkpoint
    from harness.students.classifier import ClassLayout, build_classifier
    from harness.train.classifier import train_classifier
    from harness.train.loop import train

    transformers.utils.logging.disable_progress_bar()  # keep the run's own progress bar clean
    manifest = json.loads((cell_dir / "manifest.json").read_text(encoding="utf-8"))
    spec = manifest["spec"]
    cell_id = manifest["cell_id"]
    (cell_dir / "DONE").unlink(missing_ok=True)
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    seed = int(spec["seed"])
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    samples = read_jsonl(cell_dir / "train.jsonl")
    eval_rows = read_jsonl(cell_dir / "eval.jsonl")
    if not samples:
        raise ValueError("the cell's training set is empty (check the bucket's filters)")
    student = dict(spec["student"])
    paths = manifest.get("paths", {})
    if student.get("model"):
        student["model"] = paths.get("student_model", student["model"])
    texts = [s["prompt"] + "\n" for s in samples] + [s["target"] for s in samples]
    classifier = student.get("kind") == "classifier"
    layout = ClassLayout.from_units(spec["units"]) if classifier else None
    t0 = time.perf_counter()
    if layout is not None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local encoder; never the hub
        model, tokenizer = build_classifier(Path(student["model"]), layout, seed,
                                            bool(student.get("trust_remote_code")),
                                            student.get("pooling"))
    else:
        model, tokenizer = build_student(student, texts, seed)
    teacher = None
    if spec["student"].get("distill"):
        teacher, _ = load_checkpoint(Path(paths["teacher_model"]),
                                     bool(spec["student"].get("trust_remote_code")))
    log_path = cell_dir / "train_log.jsonl"
    log_tmp = cell_dir / ".train_log.jsonl.tmp"
    try:
        with log_tmp.open("w", encoding="utf-8") as log_fh:
            def log(row: dict[str, Any]) -> None:
                log_fh.write(json.dumps(row) + "\n")
                log_fh.flush()

            if layout is not None:
                summary = train_classifier(model, tokenizer, layout, samples,
                                           spec["student"]["train"],
                                           soft=bool(student.get("soft_targets")), seed=seed,
                                           device=dev, head_lr=student.get("head_lr"), log=log)
            else:
                summary = train(model, tokenizer, samples, spec["student"]["train"], seed=seed,
                                device=dev, teacher=teacher,
                                distill=spec["student"].get("distill"), log=log)
        os.replace(log_tmp, log_path)
    except BaseException:
        log_tmp.unlink(missing_ok=True)  # a failed cell leaves no partial log behind
        raise
    model_dir = cell_dir / "model"
    model.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)
    t_eval = time.perf_counter()
    if layout is not None:
        reports, predictions = _evaluate_classifier(model, tokenizer, layout, spec, eval_rows,
                                                    dev)
    else:
        reports, predictions = _evaluate(model, tokenizer, spec, eval_rows, dev)
    eval_seconds = time.perf_counter() - t_eval
    ev_spec = spec["evaluation"]
    latency_prompts = [r["prompt"] for r in eval_rows[:64]]
    runs = int(ev_spec.get("latency_runs", latency_runs))
    if layout is not None:
        latency = measure_classifier(model, tokenizer, latency_prompts, dev, runs=runs,
                                     max_len=int(spec["student"]["train"]["max_len"]),
                                     batch_size=int(ev_spec.get("latency_batch_size", 32)),
                                     checkpoint_dir=model_dir)
    else:
        latency = measure(model, tokenizer, latency_prompts, dev, runs=runs,
                          new_tokens=int(ev_spec.get("latency_new_tokens", 16)),
                          batch_size=int(ev_spec.get("latency_batch_size", 32)),
                          checkpoint_dir=model_dir)
    metrics = {
        "metrics_version": METRICS_VERSION, "cell_id": cell_id, "label": manifest["label"],
        "axes": manifest["axes"], "units": {k: {kk: vv for kk, vv in v.items() if kk != "correct"}
                                            for k, v in reports.items()},
        "train": {**summary, "wall_seconds": round(t_eval - t0, 3)},
        "eval_seconds": round(eval_seconds, 3), "latency": latency,
        "environment": {"device": dev.type, "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "python": platform.python_version(), "host": platform.node()},
    }
    atomic_write_text(cell_dir / "predictions.jsonl",
                      "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions))
    atomic_write_json(cell_dir / "metrics.json", metrics)
    atomic_write_text(cell_dir / "DONE", cell_id + "\n")
    return metrics
