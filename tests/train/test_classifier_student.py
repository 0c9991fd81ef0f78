"""Classifier students: class layout, loss, training, and a whole run through the harness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from harness.class_layout import ClassLayout
from harness.cli import main
from harness.students.classifier import ANSWER_CLASS, build_classifier, classify
from harness.train.loop import run
from harness.train.objectives.classifier import ClassifierObjective, sample_losses, target_rows
from tests.helpers import label_record

UNITS = {"route": {"kind": "label", "labels": ["billing", "shipping", "account"]},
         "esc": {"kind": "refusal", "marker": "ESCALATE"}}
BILLING = ["invoice", "charge", "refund"]
SHIPPING = ["parcel", "courier", "late"]
FILLER = ["please", "help", "today", "my", "order", "now"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised BERT encoder and its WordPiece tokenizer, saved like a
    pretrained checkpoint folder."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("encoder")
    words = BILLING + SHIPPING + FILLER + ["ticket", "lawyer", "sue", "court", "escalate",
                                           "we", "will", "fine"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *map(str, range(100))]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    return path


def test_layout_places_one_block_per_unit():
    layout = ClassLayout.from_units(UNITS)
    assert layout.n_classes == 5
    assert layout.id2label() == {0: "route:billing", 1: "route:shipping", 2: "route:account",
                                 3: "esc:ESCALATE", 4: f"esc:{ANSWER_CLASS}"}
    assert layout.target_index("route", "shipping ") == 1
    assert layout.target_index("route", "refunds") is None  # outside the declared labels
    assert layout.target_index("esc", "ESCALATE") == 0
    assert layout.target_index("esc", "REPLY: sorry about that") == 1
    with pytest.raises(ValueError, match="json_fields"):
        ClassLayout.from_units({"f": {"kind": "json_fields", "fields": ["a"]}})


def test_soft_targets_spread_the_teachers_doubt_inside_the_unit_only():
    layout = ClassLayout.from_units(UNITS)
    samples = [{"unit": "route", "final": "billing", "confidence": 0.7},
               {"unit": "route", "final": "nonsense", "confidence": 0.9},
               {"unit": "esc", "final": "ESCALATE", "confidence": None}]
    kept, targets, spans = target_rows(layout, samples, soft=True)
    assert kept == [0, 2]
    np.testing.assert_allclose(targets[0], [0.7, 0.15, 0.15, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(targets[1], [0, 0, 0, 1, 0])  # no confidence: one-hot
    assert spans.tolist() == [[0, 3], [3, 5]]
    _, hard, _ = target_rows(layout, samples, soft=False)
    np.testing.assert_allclose(hard[0], [1, 0, 0, 0, 0])


def test_loss_is_cross_entropy_over_the_unit_block():
    logits = torch.tensor([[2.0, 0.5, -1.0, 9.0, -9.0], [9.0, 9.0, 9.0, 0.3, 1.2]])
    targets = torch.tensor([[0.7, 0.15, 0.15, 0, 0], [0, 0, 0, 0, 1.0]])
    spans = torch.tensor([[0, 3], [3, 5]])
    got = sample_losses(logits, targets, spans)
    first = -(targets[0, :3] * torch.log_softmax(logits[0, :3], -1)).sum()
    second = -torch.log_softmax(logits[1, 3:], -1)[1]
    torch.testing.assert_close(got, torch.stack([first, second]))
    assert torch.isfinite(got).all()


def _ticket(rng: np.random.Generator, kind: str) -> str:
    words = list(rng.choice(BILLING if kind == "billing" else SHIPPING, 2)) + list(
        rng.choice(FILLER, 2))
    return "ticket " + " ".join(rng.permutation(words))


def test_training_learns_a_separable_task_deterministically(encoder_dir):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(48):
        kind = "billing" if i % 2 else "shipping"
        samples.append({"prompt": _ticket(rng, kind), "unit": "route", "final": kind,
                        "confidence": 0.9, "weight": 1.0})
    cfg = {"epochs": 12, "batch_size": 8, "grad_accum": 1, "lr": 5e-3, "weight_decay": 0.0,
           "warmup_ratio": 0.0, "clip": 1.0, "max_len": 32, "min_steps": 0}
    layout = ClassLayout.from_units(UNITS)
    test = [_ticket(rng, "billing") for _ in range(5)] + [_ticket(rng, "shipping")
                                                          for _ in range(5)]
    probs = []
    for _ in range(2):
        model, tok = build_classifier(encoder_dir, layout, seed=0)
        objective = ClassifierObjective(tok, layout, samples, cfg["max_len"], soft=False)
        summary = run(model, objective, cfg, seed=0, device=torch.device("cpu"))
        probs.append(classify(model, tok, layout.blocks["route"], test, "cpu", 32))
    assert summary["examples"] == 48 and summary["skipped"] == 0
    assert summary["head_parameters"] == ["classifier.bias", "classifier.weight"]
    assert summary["steps"] == 72  # 6 batches x 12 epochs
    assert summary["final_loss"] < 0.3
    assert probs[0].shape == (10, 3)
    np.testing.assert_allclose(probs[0].sum(axis=1), 1.0, rtol=1e-6)
    assert (probs[0].argmax(axis=1) == [0] * 5 + [1] * 5).all()  # learnt, unseen prompts
    np.testing.assert_array_equal(probs[0], probs[1])  # deterministic on CPU


def _spec(encoder: Path, **student: object) -> dict:
    return {"student": {"kind": "classifier", "model": str(encoder),
                        "train": {"epochs": 4, "batch_size": 8, "lr": 3e-3, "max_len": 32},
                        **student},
            "units": UNITS, "evaluation": {"slices": ["source"], "latency_runs": 3,
                                           "latency_batch_size": 4}}


def _data(n_train: int = 40, n_eval: int = 24) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(1)
    train, ev = [], []
    for i in range(n_train):
        kind = "billing" if i % 2 else "shipping"
        other = "shipping" if kind == "billing" else "billing"
        train.append(label_record(i, _ticket(rng, kind), kind, {"a": kind, "b": other},
                                  scores={"a": 5, "b": 1}, winner="a",
                                  confidences={"a": 0.8, "b": 0.4}))
    for i in range(n_train, n_train + 12):
        threat = i % 2 == 0
        words = rng.choice(["lawyer", "sue", "court"] if threat else FILLER, 3)
        prompt = "ticket " + " ".join(words)
        ref = "ESCALATE" if threat else "REPLY: we will help"
        train.append(label_record(i, prompt, ref, {"a": ref}, scores={"a": 5}, winner="a",
                                  unit="esc"))
    for i in range(n_eval):
        kind = "billing" if i % 2 else "shipping"
        ev.append({"id": f"e{i}", "unit": "route", "prompt": _ticket(rng, kind) + f" {i}",
                   "reference": kind, "tags": {"source": "real"},
                   "candidates": [{"teacher": "a", "final": kind, "confidence": 0.8}]})
    ev.append({"id": "x1", "unit": "esc", "prompt": "ticket lawyer court sue now",
               "reference": "ESCALATE", "tags": {"source": "real"}})
    ev.append({"id": "x2", "unit": "esc", "prompt": "ticket help my order please",
               "reference": "fine", "tags": {"source": "real"}})
    return train, ev


def test_a_classifier_experiment_runs_end_to_end(tiny, tmp_path, encoder_dir, capsys):
    from transformers import AutoModelForSequenceClassification

    train, ev = _data()
    path = tiny(spec=_spec(encoder_dir, soft_targets=True), samples=train, eval=ev)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet", "--only",
                 "judged/answer_only/x1/s0"]) == 0, capsys.readouterr().err
    cells = [c for c in sorted((out / "tiny" / "cells").iterdir()) if (c / "DONE").is_file()]
    assert len(cells) == 1
    metrics = json.loads((cells[0] / "metrics.json").read_text())
    route = metrics["units"]["route"]
    assert route["n"] == 24 and "brier" in route["metrics"] and route["calibration"]
    assert metrics["units"]["esc"]["n"] == 2
    assert "refusal_recall" in metrics["units"]["esc"]["metrics"]
    lat = metrics["latency"]
    assert lat["latency_p95_ms"] > 0 and lat["throughput_items_per_s"] > 0
    assert "decode_tokens_per_s" not in lat and lat["conditions"]["student"] == "classifier"
    preds = [json.loads(line) for line in (cells[0] / "predictions.jsonl").open()]
    esc = [p for p in preds if p["unit"] == "esc"]
    assert {p["answer"] for p in esc} <= {"ESCALATE", ANSWER_CLASS}
    # The saved checkpoint reloads with transformers alone and knows its class layout.
    model = AutoModelForSequenceClassification.from_pretrained(cells[0] / "model")
    assert set(model.config.id2label.values()) == {"route:billing", "route:shipping",
                                                   "route:account", "esc:ESCALATE",
                                                   f"esc:{ANSWER_CLASS}"}
    results = pl.read_parquet(out / "tiny" / "results.parquet")
    assert set(results["unit"]) >= {"route", "esc"}
    assert main(["lm-eval", str(cells[0])]) == 2
    assert "classifier" in capsys.readouterr().err


def test_classifier_reruns_are_identical_on_cpu(tiny, tmp_path, encoder_dir):
    train, ev = _data(n_train=16, n_eval=6)
    path = tiny(spec=_spec(encoder_dir), samples=train, eval=ev)
    got = []
    for name in ("one", "two"):
        out = tmp_path / name
        assert main(["run", str(path), "--out", str(out), "--quiet", "--only",
                     "judged/answer_only/x1/s0"]) == 0
        got.append(pl.read_parquet(out / "tiny" / "results.parquet"))
    assert got[0].equals(got[1])


@pytest.mark.parametrize("student, message", [
    ({"kind": "classifier"}, "student: a classifier student needs 'model'"),
    ({"kind": "classifier", "config": {"layers": 1, "hidden": 32, "heads": 2}},
     "student.config: a classifier student does not take config"),
    ({"config": {"layers": 1, "hidden": 32, "heads": 2}, "soft_targets": True},
     "student.soft_targets: a causal_lm student does not take soft_targets"),
])
def test_bad_classifier_specs_are_located_errors(tiny, capsys, student, message):
    path = tiny(spec={"student": student})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_classifier_cannot_take_generated_units(tiny, capsys, encoder_dir):
    # The tiny experiment declares json_fields and tool_call units too.
    path = tiny(spec={"student": {"kind": "classifier", "model": str(encoder_dir)}})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "student.kind" in err and "json_fields" in err
