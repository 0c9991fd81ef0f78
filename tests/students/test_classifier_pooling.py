"""Pooling of classifier students: mean pooling for sentence encoders, kept across a reload."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from harness.class_layout import ClassLayout
from harness.students.classifier import build_classifier, load_classifier, resolve_pooling

UNITS = {"route": {"kind": "label", "labels": ["billing", "shipping"]},
         "esc": {"kind": "refusal", "marker": "ESCALATE"}}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("enc")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "bill", "ship", "late", "card"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=32)).save_pretrained(path)
    return path


def test_auto_reads_the_sentence_transformers_pooling(encoder, tmp_path):
    assert resolve_pooling(encoder, None) == "cls"
    st = tmp_path / "st"
    shutil.copytree(encoder, st)
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert resolve_pooling(st, "auto") == "mean"
    assert resolve_pooling(st, "cls") == "cls"


def test_mean_pooling_is_the_masked_mean_and_survives_a_reload(encoder, tmp_path):
    layout = ClassLayout.from_units(UNITS)
    model, tok = build_classifier(encoder, layout, seed=0, pooling="mean")
    model.eval()
    enc = tok(["bill late", "ship card late late"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
        hidden = model.base_model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * m).sum(1) / m.sum(1)
        expected = model.classifier(mean)
    torch.testing.assert_close(logits, expected)
    # Padding must not move the first sentence's logits.
    with torch.no_grad():
        alone = model(**tok(["bill late"], return_tensors="pt")).logits
    torch.testing.assert_close(alone[0], logits[0], atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    again, _ = load_classifier(tmp_path / "m")
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**enc).logits, logits)
    assert again.config.harness_pooling == "mean"


def test_cls_pooling_keeps_the_architecture(encoder):
    model, _ = build_classifier(encoder, ClassLayout.from_units(UNITS), seed=0)
    assert type(model.base_model.pooler).__name__ == "BertPooler"
    assert model.config.harness_pooling == "cls"
