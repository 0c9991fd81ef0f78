"""LoRA adapters on a pretrained causal-LM student (``student.adapter``, through ``peft``).

The base is a tiny Llama checkpoint folder (2 layers, hidden 32, GQA 4/2 heads) with a byte-level
BPE tokenizer, saved like a downloaded checkpoint: only the adapter trains, the cell saves the
adapter alone (with its base by path and content hash), it reloads with ``from_pretrained`` +
``PeftModel.from_pretrained`` and scores the same, latency is recorded merged and unmerged, and
``validate`` refuses an adapter where it cannot apply.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.checks import load_experiment
from harness.cli import main
from harness.evaluate.predict import score_labels
from harness.matrix import build_cells
from harness.students import adapter
from tests.helpers import route_data

#: Weight scale of the tiny base. With transformers' 0.02 a random 32-wide model's logits
#: span well under one nat however its frozen embeddings are mixed, so no adapter could lower
#: the loss much; a real pretrained base has no such ceiling, and 0.3 removes it here.
INIT_STD = 0.3
HASHES = {"samples": "s" * 64, "eval": "e" * 64}
#: all-linear, rank 4: what :func:`_expected_lora_parameters` counts for the tiny base.
ADAPTER = {"kind": "lora", "r": 4, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}
TRAIN = {"epochs": 4, "batch_size": 8, "lr": 3e-2, "max_len": 64, "warmup_ratio": 0.0}


def _texts() -> list[str]:
    train, _ = route_data(40, 0)
    return [r["prompt"] + "\n" for r in train] + ["ANSWER: billing", "ANSWER: shipping"]


def tiny_base(path: Path) -> Path:
    """Save a seeded 2-layer Llama and its tokenizer to ``path`` (a local "pretrained"
    checkpoint: config.json, model.safetensors, tokenizer files)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from harness.students.tokenizer import train_tokenizer

    tok = train_tokenizer(_texts(), 300)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=None, initializer_range=INIT_STD)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


def _expected_lora_parameters(r: int) -> int:
    """r x (in + out) per adapted linear layer of the tiny base, 2 layers: q and o 32->32,
    k and v 32->16 (2 KV heads of 8), gate and up 32->64, down 64->32; not the tied head."""
    per_layer = sum(i + o for i, o in [(32, 32), (32, 16), (32, 16), (32, 32), (32, 64),
                                       (32, 64), (64, 32)])
    return 2 * r * per_layer


def _samples() -> list[dict[str, Any]]:
    train, _ = route_data(40, 0)
    return [{"prompt": r["prompt"], "target": f"ANSWER: {r['reference']}", "weight": 1.0}
            for r in train]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base"))


def test_only_the_adapter_trains_and_the_saved_adapter_reloads_scoring_the_same(
        base: Path, tmp_path: Path) -> None:
    from harness.students.build import load_checkpoint
    from tests.helpers.training import train_causal_lm

    model, tok = load_checkpoint(base)
    wrapped = adapter.attach(model, ADAPTER, seed=0)
    counts = adapter.parameter_counts(model)
    assert counts["trainable_parameters"] == _expected_lora_parameters(4) == 4096
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    logged: list[dict[str, Any]] = []
    cpu = torch.device("cpu")
    summary = train_causal_lm(model, tok, _samples(), {**TRAIN, "weight_decay": 0.0,
                                                       "grad_accum": 1, "clip": 1.0,
                                                       "min_steps": 0},
                              seed=0, device=cpu, log=logged.append)
    assert summary["steps"] >= 10
    assert logged[-1]["loss_mean"] < 0.7 * logged[0]["loss"]
    for n, p in model.named_parameters():
        moved = not torch.equal(p, before[n])
        assert moved == ("lora_" in n), n  # the base stays bit-identical; every adapter moves

    saved = tmp_path / "model"
    adapter.save(wrapped, tok, saved, base)
    assert not (saved / "model.safetensors").exists()
    assert {p.name for p in saved.glob("*.safetensors")} == {"adapter_model.safetensors"}
    assert adapter.is_adapter_folder(saved)
    record = adapter.read_base(saved)
    assert record["path"] == str(base.resolve())
    assert record["sha256"] == adapter.base_identity(base)["sha256"]

    labels, prompts = ["billing", "shipping"], [r["prompt"] for r in _samples()[:12]]
    ours = score_labels(model, tok, prompts, labels, "ANSWER:", cpu, max_len=64)
    for merged in (False, True):
        again, tok2 = adapter.load(saved, merged=merged)
        theirs = score_labels(again, tok2, prompts, labels, "ANSWER:", cpu, max_len=64)
        assert abs(theirs - ours).max() < 1e-4, merged
    # plain peft, as a user would: the base by path, then the adapter folder
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), saved).eval()
    theirs = score_labels(plain, tok, prompts, labels, "ANSWER:", cpu, max_len=64)
    assert abs(theirs - ours).max() < 1e-4


def test_a_changed_base_is_refused_on_reload(base: Path, tmp_path: Path) -> None:
    import shutil

    from harness.students.build import load_checkpoint

    model, tok = load_checkpoint(base)
    saved = tmp_path / "model"
    adapter.save(adapter.attach(model, ADAPTER, seed=0), tok, saved, base)
    other = tmp_path / "other_base"
    shutil.copytree(base, other)
    assert adapter.load(saved, merged=True, base=other)[0] is not None  # same content: fine
    cfg = json.loads((other / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-5
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not the one the adapter was trained on"):
        adapter.load(saved, merged=True, base=other)


def _experiment(tiny: Any, student: dict[str, Any]) -> Path:
    train, ev = route_data(40, 12)
    path: Path = tiny(spec={"units": {"route": {"kind": "label",
                                                "labels": ["billing", "shipping"]}},
                            "student": student,
                            "evaluation": {"latency_runs": 2, "latency_batch_size": 2,
                                           "latency_new_tokens": 4}},
                      samples=train, eval=ev)
    return path


def test_the_cell_id_records_the_adapter_only_when_set(tiny: Any, base: Path) -> None:
    def cells(student: dict[str, Any]) -> list[Any]:
        return build_cells(load_experiment(_experiment(tiny, student)).spec, HASHES)

    full = cells({"model": str(base), "train": TRAIN})
    lora = cells({"model": str(base), "adapter": ADAPTER, "train": TRAIN})
    rank8 = cells({"model": str(base), "adapter": {**ADAPTER, "r": 8}, "train": TRAIN})
    assert "adapter" not in full[0].effective["student"]
    assert lora[0].effective["student"]["adapter"]["r"] == 4
    assert len({full[0].cell_id, lora[0].cell_id, rank8[0].cell_id}) == 3


@pytest.mark.parametrize("student", [
    {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}, "adapter": ADAPTER},
    {"kind": "classifier", "model": "BASE", "adapter": ADAPTER},
], ids=["from_scratch", "classifier"])
def test_validate_refuses_an_adapter_where_it_cannot_apply(
        tiny: Any, base: Path, student: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    if student.get("model") == "BASE":
        student = {**student, "model": str(base)}
    path = _experiment(tiny, student)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1)
                if t.strip().startswith("adapter:"))
    assert f"exp.yaml:{line}: student.adapter: " in err, err
    assert ("needs pretrained weights to freeze" if "config" in student
            else "a classifier student does not take adapter") in err


def test_validate_refuses_a_target_module_the_checkpoint_lacks(
        tiny: Any, base: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = _experiment(tiny, {"model": str(base), "train": TRAIN,
                            "adapter": {**ADAPTER, "target_modules": ["q_proj", "mlp.down_proj"]}})
    assert main(["validate", str(ok)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    bad = _experiment(tiny, {"model": str(base), "train": TRAIN,
                             "adapter": {**ADAPTER, "target_modules": ["q_proj", "q_prj"]}})
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "student.adapter.target_modules.1: no module of" in err
    assert "'q_prj'" in err and "did you mean 'q_proj'" in err and "Traceback" not in err


@pytest.mark.slow
def test_worker_trains_saves_and_times_an_adapter_cell(tiny: Any, base: Path,
                                                        tmp_path: Path) -> None:
    from harness.store.folder import CellFolder

    path = _experiment(tiny, {"model": str(base), "adapter": ADAPTER, "train": TRAIN})
    assert main(["compose", str(path), "--out", str(tmp_path / "cells")]) == 0
    (cell_dir,) = [p for p in (tmp_path / "cells").iterdir() if p.is_dir()][:1]
    assert main(["worker", str(cell_dir), "--device", "cpu"]) == 0
    folder = CellFolder(cell_dir)
    metrics = folder.read_metrics()
    lat, train = metrics.latency, metrics.train
    assert train["trainable_parameters"] == _expected_lora_parameters(4)
    assert lat["adapter_parameters"] == _expected_lora_parameters(4)
    adapter_bytes = (folder.model / "adapter_model.safetensors").stat().st_size
    assert lat["checkpoint_mb"] == pytest.approx(adapter_bytes / 2**20)
    assert lat["checkpoint_mb"] < 0.2 * lat["adapter"]["base_mb"]
    assert lat["parameters"] == train["parameters"] - _expected_lora_parameters(4)  # merged
    for key in adapter.UNMERGED_KEYS:
        assert lat[f"unmerged_{key}"] > 0 and lat[key] > 0, key
    assert lat["adapter"]["base_sha256"] == adapter.base_identity(base)["sha256"]

    # the saved cell reloads (merged) and scores its eval items as the worker did
    model, tok = adapter.load(folder.model, merged=True)
    preds = [json.loads(x) for x in folder.predictions.read_text().splitlines()]
    marker = folder.read_manifest().spec.units["route"]["answer_marker"]
    probs = score_labels(model, tok, [r["prompt"] for r in folder.read_eval()],
                         ["billing", "shipping"], marker, torch.device("cpu"), max_len=64)
    probs = torch.softmax(torch.as_tensor(probs), dim=1).numpy()
    assert abs(probs - [p["probs"] for p in preds]).max() < 1e-4


@pytest.mark.slow
def test_lm_eval_scores_the_merged_adapter_cell_like_the_harness(tiny: Any, base: Path,
                                                                 tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    from harness.lmeval import run_lm_eval
    from harness.store.folder import CellFolder

    path = _experiment(tiny, {"model": str(base), "adapter": ADAPTER, "train": TRAIN})
    assert main(["compose", str(path), "--out", str(tmp_path / "cells")]) == 0
    (cell_dir,) = [p for p in (tmp_path / "cells").iterdir() if p.is_dir()][:1]
    assert main(["worker", str(cell_dir), "--device", "cpu"]) == 0
    ours = CellFolder(cell_dir).read_metrics().units["route"]["metrics"]["accuracy"]
    theirs = run_lm_eval(cell_dir, batch_size=8, device="cpu")["route"]["acc"]
    assert theirs == pytest.approx(ours, abs=1e-9)


@pytest.mark.slow
def test_lm_eval_finds_a_moved_base_with_base_and_refuses_another(
        tiny: Any, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lm_eval")
    import shutil

    own = tmp_path / "base"  # a copy of the shared base, so moving it harms no other test
    shutil.copytree(base, own)
    path = _experiment(tiny, {"model": str(own), "adapter": ADAPTER, "train": TRAIN})
    assert main(["compose", str(path), "--out", str(tmp_path / "cells")]) == 0
    (cell_dir,) = [p for p in (tmp_path / "cells").iterdir() if p.is_dir()][:1]
    assert main(["worker", str(cell_dir), "--device", "cpu"]) == 0
    moved = own.rename(tmp_path / "elsewhere")  # the run read on a machine where it lies elsewhere
    capsys.readouterr()
    assert main(["lm-eval", str(cell_dir), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "base checkpoint is not at" in err and "--base DIR" in err and "Traceback" not in err
    assert main(["lm-eval", str(cell_dir), "--device", "cpu", "--base", str(moved)]) == 0
    got = re.search(r"acc=([0-9.]+); harness ([0-9.]+)", capsys.readouterr().out)
    assert got is not None and got[1] == got[2]  # the merged model scores as the harness did
    (moved / "config.json").write_text((moved / "config.json").read_text() + " ")
    assert main(["lm-eval", str(cell_dir), "--device", "cpu", "--base", str(moved)]) == 2
    assert "is not the one the adapter was trained on" in capsys.readouterr().err


def test_the_plain_path_never_imports_peft() -> None:
    import subprocess
    import sys

    from tests.helpers import REPO

    code = ("import sys, harness.worker, harness.students.causal_lm, harness.lmeval; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'peft'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.strip()
    assert out == "[]"  # peft (and its import time) only for cells with student.adapter
