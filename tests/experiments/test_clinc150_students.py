"""Both CLINC150 students on the committed CLINC slice: the from-scratch causal LM (whose intent
accuracy lm-eval must reproduce exactly) and the pretrained MiniLM classifier.

The slice (``fixtures/clinc150``: three domains, 45 intents) is prepared by the experiment's own
``prepare.py``, so these tests run the real pipeline: seed-built teachers, judge, audited
failures, then ``harness run`` on one cell of each shipped YAML, shrunk to CPU-test size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from tests.helpers import REPO, load_script

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "clinc150"
ARGS = ["--seeds-per-intent", "5", "--oos-seeds", "5", "--pool-per-intent", "9",
        "--eval-per-intent", "2", "--eval-oos", "20"]
BASE_CELL = "multi_judged/answer_only/x1/s0"

#: trains a causal student and a MiniLM classifier on the CLINC150 fixture: minutes on a CPU
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slice prepared into ``<root>/data/cpu`` (MiniLM exported to ``<root>/data/minilm``)."""
    root = tmp_path_factory.mktemp("clinc_students")
    prep = load_script(REPO / "experiments" / "clinc150" / "prepare.py",
                       "clinc150_prepare_for_students")
    assert prep.main(["--data", str(FIXTURE), "--out", str(root / "data" / "cpu"), *ARGS]) == 0
    return root


def _experiment(root: Path, name: str, **train: Any) -> Path:
    """A shipped CLINC YAML pointed at the prepared slice, its intents and a small recipe."""
    doc = yaml.safe_load((REPO / "experiments" / name).read_text(encoding="utf-8"))
    domains = json.loads((FIXTURE / "domains.json").read_text(encoding="utf-8"))
    doc["units"]["intent"]["labels"] = [i for names in domains.values() for i in names]
    doc["data"]["samples"] = str(root / "data" / "cpu" / "samples.jsonl")
    doc["data"]["eval"] = str(root / "data" / "cpu" / "eval.jsonl")
    if doc["student"].get("model"):
        doc["student"]["model"] = str(root / "data" / "minilm")
    doc["student"]["train"].update(train)
    doc["evaluation"].update({"latency_runs": 3, "latency_batch_size": 4})
    path = root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _finished_cell(out: Path, experiment: str) -> Path:
    cells = [c for c in (out / experiment / "cells").iterdir() if (c / "DONE").is_file()]
    assert len(cells) == 1
    return cells[0]


def test_lm_eval_reproduces_the_causal_students_intent_accuracy(prepared: Path) -> None:
    from harness.lmeval import run_lm_eval

    exp = _experiment(prepared, "clinc150.yaml", epochs=1, min_steps=40)
    out = prepared / "runs"
    assert main(["run", str(exp), "--out", str(out), "--quiet", "--only", BASE_CELL]) == 0
    cell = _finished_cell(out, "clinc150")
    ours = json.loads((cell / "metrics.json").read_text())["units"]["intent"]
    theirs = run_lm_eval(cell, batch_size=32, device="cpu", units=["intent"])
    assert ours["n"] == 90
    assert abs(theirs["intent"]["acc"] - ours["metrics"]["accuracy"]) <= 1e-9


def test_the_minilm_classifier_learns_the_intents(prepared: Path) -> None:
    exp = _experiment(prepared, "clinc150_minilm.yaml", min_steps=30)
    out = prepared / "runs"
    assert main(["run", str(exp), "--out", str(out), "--quiet", "--only", BASE_CELL]) == 0
    metrics = json.loads((_finished_cell(out, "clinc150_minilm") / "metrics.json").read_text())
    intent = metrics["units"]["intent"]["metrics"]
    # 45 intents (chance 0.022), 30 optimizer steps on a CPU: the classifier must learn the
    # teachers' labels well above chance (0.156 measured on 2026-11-23; a longer run goes higher).
    assert intent["accuracy"] > 5 / 45
    assert "ece" in " ".join(intent) and metrics["latency"]["conditions"]["student"] == "classifier"
    oos = metrics["units"]["out_of_scope"]["metrics"]
    assert {"refusal_recall", "over_refusal_rate"} <= set(oos)
