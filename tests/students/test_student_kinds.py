"""The student interface: kinds by name, the switches each honours (refused by validate where
not), and a causal LM answering label and generated units through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.students import base as students
from harness.students.causal_lm import CausalLMStudent
from harness.students.classifier import ClassifierStudent
from harness.train.objective import SWITCHES
from tests.helpers import tiny_samples

CPU = torch.device("cpu")
UNITS = {"route": {"kind": "label", "labels": ["billing", "shipping"]},
         "esc": {"kind": "refusal", "marker": "ESCALATE"}}


def test_kinds_are_registered_by_name_with_a_did_you_mean():
    assert students.names() == ["causal_lm", "classifier"]
    assert students.get("causal_lm") is CausalLMStudent
    assert students.get("classifier") is ClassifierStudent
    with pytest.raises(KeyError, match="did you mean 'classifier'"):
        students.get("clasifier")


def test_each_kind_declares_the_switches_its_objective_honours():
    assert CausalLMStudent.switches() == frozenset(SWITCHES)
    assert ClassifierStudent.switches() == frozenset()
    assert students.unsupported_switches("causal_lm", dict.fromkeys(SWITCHES, True)) == []
    assert students.unsupported_switches(
        "classifier", {"packing": True, "chunked_ce": False, "compile": True}) == [
        "packing", "compile"]


def _classifier_yaml(tiny, tmp_path: Path, **train: object) -> Path:
    encoder = tmp_path / "encoder"
    encoder.mkdir(exist_ok=True)
    samples = [s for s in tiny_samples() if s["unit"] in UNITS]
    return tiny(spec={"units": UNITS, "student": {"kind": "classifier", "model": str(encoder),
                                                  "train": {"max_len": 32, **train}}},
                samples=samples)


@pytest.mark.parametrize("switch", SWITCHES)
def test_validate_refuses_a_switch_the_classifier_cannot_honour(tiny, tmp_path, capsys, switch):
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path))]) == 0
    capsys.readouterr()
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, **{switch: True}))]) == 2
    err = capsys.readouterr().err
    assert f"student.train.{switch}" in err and "classifier student cannot honour" in err
    assert "Traceback" not in err


def test_validate_locates_a_classifier_packing_switch_in_the_yaml(tiny, tmp_path, capsys):
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, packing=True))]) == 2
    err = capsys.readouterr().err
    assert "exp.yaml" in err and "student.train.packing" in err


def test_validate_refuses_fast_on_where_the_objective_has_no_fast_path(tiny, tmp_path, capsys):
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, fast="auto"))]) == 0
    capsys.readouterr()
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, fast="on"))]) == 2
    err = capsys.readouterr().err
    assert "student.train.fast" in err and "no fast training path" in err
    assert "Traceback" not in err


def test_a_causal_lm_scores_label_units_and_generates_the_others(tmp_path):
    spec = {"student": {"kind": "causal_lm",
                        "config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300,
                                   "max_position": 64},
                        "train": {"max_len": 64}},
            "units": {}, "evaluation": {"max_new_tokens": 3}}
    samples = [{"prompt": f"ticket {i} refund", "target": "ANSWER: billing", "weight": 1.0}
               for i in range(8)]
    student = students.get("causal_lm")(spec, {})
    student.build(samples, seed=0)
    assert student.objective(samples).lengths() == [
        len(student.tokenizer(s["prompt"] + "\n")["input_ids"])
        + len(student.tokenizer(s["target"])["input_ids"]) + 1 for s in samples]
    prompts = ["refund my money", "parcel late", "where is it"]
    label = {"kind": "label", "labels": ["billing", "shipping"], "answer_marker": "ANSWER:"}
    scored = student.answer("route", label, prompts, CPU)
    assert scored.calibrated and scored.probs.shape == (3, 2)
    assert scored.answers == [["billing", "shipping"][j] for j in scored.probs.argmax(axis=1)]
    assert scored.texts == [f"ANSWER: {a}" for a in scored.answers]
    generated = student.answer("note", {"kind": "text", "answer_marker": "ANSWER:"}, prompts,
                               CPU)
    assert generated.probs is None and not generated.calibrated
    assert len(generated.texts) == len(generated.answers) == 3
    student.save(tmp_path / "model")
    lat = student.latency(prompts, CPU, runs=1, batch_size=2, new_tokens=2,
                          checkpoint_dir=tmp_path / "model")
    assert lat["latency_p50_ms"] > 0 and lat["checkpoint_mb"] > 0
    assert lat["conditions"]["new_tokens"] == 2


def test_init_std_sets_the_initialisation_and_unset_keeps_the_transformers_default():
    from harness.students.build import build_from_config, train_tokenizer

    tok = train_tokenizer(["order 88213 refund", "Answer: billing"] * 4, 280)
    config = {"layers": 1, "hidden": 64, "heads": 2, "max_position": 32}
    default = build_from_config(config, tok, seed=0)
    wide = build_from_config({**config, "init_std": 0.06}, tok, seed=0)
    assert default.config.initializer_range == 0.02 and wide.config.initializer_range == 0.06
    for model, std in ((default, 0.02), (wide, 0.06)):
        weight = model.model.layers[0].mlp.up_proj.weight  # (intermediate, hidden)
        assert float(weight.detach().std()) == pytest.approx(std, rel=0.05)
