"""lm-eval integration: export the experiment's units as lm-eval tasks, and run lm-eval's HFLM on
a trained cell.

Each unit becomes one task over a local JSONL copy of its eval items; what the task does is
the unit kind's (``UnitKind.lm_eval_task``): kinds whose answers are scored (``label``) become
``multiple_choice`` tasks scored exactly as the harness scores them, so the accuracies agree;
the others ``generate_until`` a newline and compare the text after the marker by
``exact_match``.

Task names are ``<experiment>_<unit>``. Nothing here touches the network: the datasets are local
JSON files and the model is the cell's checkpoint folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.fsutil import atomic_write_text
from harness.store.folder import CellFolder
from harness.students import adapter
from harness.units import get


def task_name(experiment: str, unit: str) -> str:
    return f"{experiment}_{unit}"


def task_config(experiment: str, unit_name: str, unit: dict[str, Any], data_file: Path
                ) -> dict[str, Any]:
    """The lm-eval task config of one unit: the shared dataset part, then the kind's part
    (``UnitKind.lm_eval_task``)."""
    kind_part = get(unit["kind"]).lm_eval_task(unit)
    base: dict[str, Any] = {
        "task": task_name(experiment, unit_name),
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "output_type": kind_part.pop("output_type"),
        "metadata": {"version": 1, "harness_unit_kind": unit["kind"]},
    }
    base.update(kind_part)
    return base


def export_tasks(experiment: str, units: dict[str, dict[str, Any]],
                 eval_rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Write ``<unit>.jsonl`` and ``<unit>.yaml`` per unit into ``out``; returns the YAMLs."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, unit in units.items():
        items = [r for r in eval_rows if r["unit"] == name]
        if not items:
            continue
        data = out / f"{name}.jsonl"
        lines = []
        for r in items:
            row = {"id": r["id"], "prompt": r["prompt"], "reference": r["reference"],
                   **get(unit["kind"]).lm_eval_row(unit, r)}
            lines.append(json.dumps(row, ensure_ascii=False))
        atomic_write_text(data, "\n".join(lines) + "\n")
        cfg = out / f"{name}.yaml"
        atomic_write_text(cfg, yaml.safe_dump(task_config(experiment, name, unit, data),
                                              sort_keys=False, allow_unicode=True))
        written.append(cfg)
    return written


def run_lm_eval(cell_dir: Path, *, batch_size: int = 32, device: str | None = None,
                units: list[str] | None = None, base: Path | None = None
                ) -> dict[str, dict[str, float]]:
    """lm-eval's HFLM on a finished cell's checkpoint, over tasks exported from its eval set.

    A LoRA cell (its model folder holds an adapter) is scored merged: the base checkpoint
    (at ``base``, default the path it was trained from, checked by content hash) with the
    adapter folded into its weights, a plain model to HFLM.

    Returns:
        unit -> {metric: value} as lm-eval reports it (``acc`` or ``exact_match``).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = CellFolder(cell_dir)
    spec = folder.read_manifest().spec
    experiment = spec.experiment
    wanted = {k: v for k, v in spec.units.items() if units is None or k in units}
    rows = folder.read_eval()
    tasks_dir = cell_dir / "lm_eval_tasks"
    export_tasks(experiment, wanted, rows, tasks_dir)
    model_dir = folder.model
    if adapter.is_adapter_folder(model_dir):
        model, tokenizer = adapter.load(
            model_dir, merged=True, base=base,
            trust_remote_code=spec.student.trust_remote_code)
    else:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    dev = device or ("cuda" if _cuda() else "cpu")
    model = model.to(dev)  # type: ignore[arg-type]
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
              max_length=spec.student.train.max_len, device=dev)
    manager = TaskManager(include_path=str(tasks_dir), include_defaults=False)
    names = [task_name(experiment, u) for u in wanted if (tasks_dir / f"{u}.yaml").is_file()]
    out = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager,
                                  log_samples=False, bootstrap_iters=0)
    results: dict[str, dict[str, float]] = {}
    for unit in wanted:
        res = out["results"].get(task_name(experiment, unit))
        if res:
            results[unit] = {k.split(",")[0]: float(v) for k, v in res.items()
                             if isinstance(v, int | float) and "stderr" not in k}
    return results


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
