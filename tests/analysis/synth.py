"""Synthetic run folders with known truth, written through the real store functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.evaluate.units import unit_report
from harness.spec.models import Experiment
from harness.store.results import cell_rows, latency_rows, results_frame, write_results

UNITS = {"route": {"kind": "label", "labels": ["a", "b"], "answer_marker": "Answer:"},
         "esc": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"}}


def spec_dict(buckets: list[str], fields: list[str], scales: list[float],
              stop: dict[str, Any] | None = None, gate: dict[str, Any] | None = None,
              costs: dict[str, Any] | None = None, units: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    exp = Experiment.model_validate({
        "name": "synth", "data": {"samples": "s.jsonl", "eval": "e.jsonl"},
        "units": {k: dict(v) for k, v in (units or UNITS).items()},
        "student": {"config": {"layers": 1, "hidden": 32, "heads": 2}},
        "buckets": {b: {} for b in buckets}, "fields": {f: {} for f in fields},
        "scale": scales, "baseline": {"bucket": buckets[0], "fields": fields[0],
                                      "scale": max(scales)},
        "stop": stop or {}, "gate": gate or {}, "costs": costs or {},
    })
    return exp.model_dump(mode="json")


def write_run(root: Path, spec: dict[str, Any],
              cells: dict[tuple[Any, ...], dict[str, np.ndarray]],
              tags: list[dict[str, str]] | None = None, samples: Callable[[float], int] =
              lambda s: int(1000 * s), teacher_answers: dict[str, list[int]] | None = None
              ) -> Path:
    """One cell per (bucket, fields, scale[, seed]); per unit a 0/1 correctness array (same
    length). The seed defaults to 0.

    Route answers are "a" when correct (references are all "a"); escalation items alternate
    must-escalate / answerable, answered right when correct.
    """
    run_dir = root / spec["name"]
    n = len(next(iter(next(iter(cells.values())).values())))
    tags = tags or [{"source": "synthetic"}] * n
    rows, lat, entries = [], [], []
    base = spec["baseline"]
    for i, (key, units) in enumerate(cells.items()):
        bucket, fields, scale = key[:3]
        seed = key[3] if len(key) > 3 else 0
        cell_id = f"{i:012x}"
        label = f"{bucket}/{fields}/x{scale:g}/s{seed}"
        folder = run_dir / "cells" / cell_id
        folder.mkdir(parents=True)
        is_base = (bucket, fields, scale, seed) == (base["bucket"], base["fields"],
                                                    base["scale"], 0)
        manifest = {"cell_id": cell_id, "label": label, "is_baseline": is_base,
                    "axes": {"bucket": bucket, "fields": fields, "scale": scale, "seed": seed},
                    "spec": {"units": spec["units"], "scale": scale, "seed": seed,
                             "bucket": {"name": bucket, **spec["buckets"][bucket]},
                             "fields": {"name": fields, **spec["fields"][fields]}},
                    "counts": {"unit": {u: samples(scale) for u in units}}}
        reports, preds = {}, []
        for u, correct in units.items():
            items, answers = [], []
            for k, ok in enumerate(correct):
                if spec["units"][u]["kind"] == "label":
                    ref, ans = "a", ("a" if ok else "b")
                else:
                    ref = "ESCALATE" if k % 2 == 0 else "REPLY: ok"
                    ans = ref if ok else ("REPLY: ok" if k % 2 == 0 else "ESCALATE")
                cands = []
                if teacher_answers and u in teacher_answers:
                    t_ok = teacher_answers[u][k]
                    cands = [{"teacher": "t", "final": ref if t_ok else
                              ("b" if spec["units"][u]["kind"] == "label" else "X"),
                              "confidence": 0.9}]
                items.append({"id": f"e{k:04d}", "unit": u, "reference": ref, "tags": tags[k],
                              "candidates": cands})
                answers.append(ans)
                preds.append({"id": f"e{k:04d}", "unit": u, "answer": ans, "reference": ref,
                              "correct": int(ok), "tags": tags[k]})
            rep = unit_report(spec["units"][u], items, answers, ["source"])
            rep.pop("correct")
            reports[u] = rep
        metrics = {"cell_id": cell_id, "units": reports,
                   "train": {"train_seconds": 36.0, "examples": samples(scale)},
                   "latency": {"latency_p95_ms": 12.0, "latency_p50_ms": 10.0}}
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "metrics.json").write_text(json.dumps(metrics))
        (folder / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
        (folder / "DONE").write_text(cell_id)
        rows += cell_rows(spec["name"], manifest, metrics)
        lat += latency_rows(spec["name"], manifest, metrics)
        entries.append({"cell_id": cell_id, "label": label, "is_baseline": is_base,
                        "status": "done"})
    write_results(results_frame(rows), run_dir / "results.parquet")
    write_results(results_frame(lat), run_dir / "latency.parquet")
    (run_dir / "run.json").write_text(json.dumps({
        "experiment": spec["name"], "spec": spec, "cells": entries,
        "teachers": {"n_records": 1000, "usage": {"t": {"prompt_tokens": 100_000,
                                                        "completion_tokens": 50_000}},
                     "disagreement": {}}}))
    (run_dir / "teacher_audit.json").write_text("{}")
    return run_dir


