"""Synthetic run folders with known truth, written through the real store functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.evaluate.units import unit_report
from harness.experiment.models import Experiment
from harness.matrix import Axes as MatrixAxes
from harness.matrix import effective_spec
from harness.store.contracts import (
    Axes,
    CellEntry,
    CellManifest,
    CellMetrics,
    CellSpec,
    RunRecord,
    TeacherFacts,
)
from harness.store.folder import CellFolder, RunFolder
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

    Label references cycle through the unit's labels (item k: label k mod len(labels)), so
    no constant answer is right more often than its share; a wrong answer is the next label.
    Escalation items alternate must-escalate / answerable, answered right when correct.
    """
    run_dir = root / spec["name"]
    n = len(next(iter(next(iter(cells.values())).values())))
    tags = tags or [{"source": "synthetic"}] * n
    rows, lat, entries = [], [], []
    base = spec["baseline"]
    experiment = Experiment.model_validate(spec)
    hashes = {"samples": "synthetic", "eval": "synthetic"}
    for i, (key, units) in enumerate(cells.items()):
        bucket, fields, scale = key[:3]
        seed = key[3] if len(key) > 3 else 0
        cell_id = f"{i:012x}"
        label = f"{bucket}/{fields}/x{scale:g}/s{seed}"
        folder = run_dir / "cells" / cell_id
        folder.mkdir(parents=True)
        is_base = (bucket, fields, scale, seed) == (base["bucket"], base["fields"],
                                                    base["scale"], 0)
        axes = Axes(bucket=bucket, fields=fields, scale=scale, seed=seed)
        manifest = CellManifest(
            schema_version=CellManifest.SCHEMA_VERSION, harness_version="synth",
            cell_id=cell_id, label=label, is_baseline=is_base, axes=axes,
            spec=CellSpec.from_json(effective_spec(
                experiment, MatrixAxes(bucket, fields, scale, seed), hashes), str(folder)),
            n_samples=samples(scale) * len(units), n_records=samples(scale),
            counts={"unit": {u: samples(scale) for u in units}}, tokens={}, inputs={},
            files={}, eval_items=n, paths={})
        reports, preds = {}, []
        for u, correct in units.items():
            items, answers = [], []
            for k, ok in enumerate(correct):
                if spec["units"][u]["kind"] == "label":
                    labels = spec["units"][u]["labels"]
                    ref, other = labels[k % len(labels)], labels[(k + 1) % len(labels)]
                    ans = ref if ok else other
                else:
                    ref = "ESCALATE" if k % 2 == 0 else "REPLY: ok"
                    ans = ref if ok else ("REPLY: ok" if k % 2 == 0 else "ESCALATE")
                cands = []
                if teacher_answers and u in teacher_answers:
                    t_ok = teacher_answers[u][k]
                    cands = [{"teacher": "t", "final": ref if t_ok else
                              (other if spec["units"][u]["kind"] == "label" else "X"),
                              "confidence": 0.9}]
                items.append({"id": f"e{k:04d}", "unit": u, "reference": ref, "tags": tags[k],
                              "candidates": cands})
                answers.append(ans)
                preds.append({"id": f"e{k:04d}", "unit": u, "answer": ans, "reference": ref,
                              "correct": int(ok), "tags": tags[k]})
            rep = unit_report(spec["units"][u], items, answers, ["source"])
            rep.pop("correct")
            rep.pop("parts")
            rep["eval_seconds"] = 0.5
            reports[u] = rep
        metrics = CellMetrics(
            schema_version=CellMetrics.SCHEMA_VERSION, cell_id=cell_id, label=label, axes=axes,
            units=reports, train={"train_seconds": 36.0, "examples": samples(scale)},
            eval_seconds=1.0, latency={"latency_p95_ms": 12.0, "latency_p50_ms": 10.0},
            environment={})
        cell = CellFolder(folder)
        cell.write_manifest(manifest)
        cell.write_metrics(metrics)
        cell.write_predictions(preds)
        cell.mark_done(cell_id)
        rows += cell_rows(spec["name"], manifest, metrics)
        lat += latency_rows(spec["name"], manifest, metrics)
        entries.append(CellEntry(cell_id=cell_id, label=label, is_baseline=is_base,
                                 status="done", train_seconds=36.0, eval_seconds=1.0,
                                 error=None))
    run = RunFolder(run_dir)
    write_results(results_frame(rows), run.results)
    write_results(results_frame(lat), run.latency)
    run.write_run(RunRecord(
        schema_version=RunRecord.SCHEMA_VERSION, experiment=spec["name"],
        experiment_file="synth.yaml", spec=spec,
        teachers=TeacherFacts(n_records=1000, usage={"t": {"prompt_tokens": 100_000,
                                                           "completion_tokens": 50_000}},
                              disagreement={}),
        baseline=spec["baseline"], cells=entries, inputs={}, python="3", pid=0))
    run.write_teacher_audit({})
    return run_dir


