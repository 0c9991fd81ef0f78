"""Soft targets at composition: the teacher's answer tokens placed on the rendered target, and
a ``soft_targets: topk`` cell's training file (hard cells' files unchanged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import polars as pl
import pytest

from harness.compose.soft_targets import align, token_starts, value_offset
from tests.helpers import label_record


def _soft(text: str, value: str, pieces: list[str], top: dict[int, list[tuple[str, float]]]
          | None = None, *, starts: bool = True) -> dict[str, Any]:
    """An ``answer_logprobs`` object whose tokens are ``pieces`` (spelling ``text``)."""
    assert "".join(pieces) == text
    lo = text.index(value)
    offs, at = [], 0
    for p in pieces:
        offs.append(at)
        at += len(p)
    toks = [{"id": 100 + k, "text": p, "logprob": -0.1,
             "top": [{"id": 200 + j, "text": t, "logprob": lp}
                     for j, (t, lp) in enumerate((top or {}).get(k, [(p, -0.1)]))]}
            for k, p in enumerate(pieces)]
    out: dict[str, Any] = {"tokenizer": "vocab-sha256:" + "0" * 64, "top_k": 3, "text": text,
                           "value_start": lo, "value_end": lo + len(value), "tokens": toks}
    if starts:
        out["starts"] = offs
    return out


def test_value_offset_is_after_the_marker_and_its_spaces():
    assert value_offset("Answer:  billing\nReason: x", "Answer:") == 9
    assert value_offset("no marker here", "Answer:") is None


def test_a_label_value_with_a_spilled_quote_is_placed_after_the_marker():
    soft = _soft('"billing"}', "billing", ['"bill', "ing", '"}'],
                 top={0: [('"bill', -0.2), ('"ship', -1.9)], 1: [("ing", -0.01)]})
    target = "Answer: billing\nReason: charged twice"
    placed = msgspec.json.decode(align(target, "Answer:", json.dumps(soft)))
    assert placed["value_start"] == 8 and placed["tokenizer"] == soft["tokenizer"]
    first, second = placed["tokens"]  # the closing '"}' runs past the value: left out
    assert (first["start"], first["end"], first["pre"]) == (8, 12, '"')
    assert target[first["start"]:first["end"]] == "bill"
    assert first["top"] == [['"bill', -0.2, 200], ['"ship', -1.9, 201]]
    assert (second["start"], second["end"], second["pre"]) == (12, 15, "")
    assert second["text"] == "ing" and second["id"] == 101


def test_tokens_without_stored_starts_are_placed_from_their_texts():
    soft = _soft('"billing"}', "billing", ['"', "billing", '"}'], starts=False)
    assert token_starts(soft) == [0, 1, 8]
    placed = msgspec.json.decode(align("Answer: billing", "Answer:", json.dumps(soft)))
    assert [(t["start"], t["end"], t["pre"]) for t in placed["tokens"]] == [(8, 15, "")]


@pytest.mark.parametrize("target", [
    'Answer: {"order_id":"1"}',   # the composer compacted the JSON the teacher spaced out
    "Answer: shipping",           # a corrected answer, not the teacher's
    "billing without a marker",
])
def test_nothing_is_placed_where_the_value_is_not_written_as_the_teacher_wrote_it(target):
    soft = _soft('{"order_id": "1"}', '{"order_id": "1"}', ['{"', "order", '_id', '": "',
                                                            '1', '"}'])
    assert align(target, "Answer:", json.dumps(soft)) is None
    billing = _soft('"billing"', "billing", ['"', "billing", '"'])
    if "billing" not in target:
        assert align(target, "Answer:", json.dumps(billing)) is None
    assert align(target, "Answer:", None) is None


def _record(i: int, prompt: str, answer: str, other: str) -> dict[str, Any]:
    rec = label_record(i, prompt, answer, {"a": answer, "b": other}, scores={"a": 5, "b": 1},
                       winner="a")
    text = json.dumps({"answer": answer})
    lo = text.index(answer)
    pieces = [text[:lo - 1], '"' + answer[:3], answer[3:], text[lo + len(answer):]]
    rec["candidates"][0]["answer_logprobs"] = _soft(
        text, answer, pieces, top={1: [('"' + answer[:3], -0.3), ('"ship', -1.5)]})
    return rec


def _exp(tiny: Any, tmp_path: Path, samples: list[dict[str, Any]] | None = None) -> Path:
    """The tiny experiment with a hard and a topk field set and a pretrained-student folder
    (soft targets need one; nothing loads it here)."""
    (tmp_path / "ckpt").mkdir(exist_ok=True)
    return tiny(spec={"fields": {"hard": {}, "soft": {"soft_targets": "topk",
                                                      "soft_weight": 0.25}},
                      "student": {"model": str(tmp_path / "ckpt")},
                      "baseline": {"bucket": "single_a", "fields": "hard"}},
                samples=samples)


def _compose(path: Path) -> dict[str, pl.DataFrame]:
    from harness.checks import load_experiment
    from harness.compose import build_context, compose_cell
    from harness.matrix import build_cells
    from harness.samples import load_data

    loaded = load_experiment(path)
    data = load_data(loaded)
    ctx = build_context(loaded.spec, data)
    return {c.label: compose_cell(ctx, c).frame
            for c in build_cells(loaded.spec, {"samples": data.train.sha256,
                                               "eval": data.eval.sha256})}


def test_a_topk_cell_writes_placed_soft_labels_and_a_hard_cell_writes_none(tiny, tmp_path):
    samples = [_record(i, f"ticket {i}: {p}", a, o) for i, (p, a, o) in enumerate([
        ("charged twice", "billing", "shipping"), ("parcel late", "shipping", "billing"),
        ("double charge", "billing", "shipping"), ("courier lost it", "shipping", "billing")])]
    frames = _compose(_exp(tiny, tmp_path, samples))
    hard, soft = frames["judged/hard/x1/s0"], frames["judged/soft/x1/s0"]
    assert "soft_labels" not in hard.columns
    assert hard.equals(soft.drop("soft_labels"))  # the same samples and targets
    for row in soft.iter_rows(named=True):
        placed = msgspec.json.decode(row["soft_labels"])
        first = placed["tokens"][0]
        assert row["target"][first["start"]:first["end"]] == row["final"][:3]
        assert first["pre"] == '"' and first["top"][1][0] == '"ship'


def test_failures_and_candidates_without_soft_labels_train_hard(tiny, tmp_path):
    """The tiny repository has no soft labels and a failure pool: a topk cell has the column,
    null everywhere (every sample trains hard)."""
    frames = _compose(_exp(tiny, tmp_path))
    soft = frames["judged/soft/x1/s0"]
    assert soft.height and soft["soft_labels"].null_count() == soft.height


def test_a_hard_field_set_keeps_the_cell_id_it_had(tiny, tmp_path):
    """soft_targets: hard (the default) is left out of the cell id, so cells composed before the
    key existed keep their ids; topk (and its weight) enters it."""
    from harness.checks import load_experiment
    from harness.matrix import Axes, effective_spec

    exp = load_experiment(_exp(tiny, tmp_path)).spec
    hashes = {"samples": "x", "eval": "y"}

    def fields_of(name: str) -> dict[str, Any]:
        return effective_spec(exp, Axes("judged", name, 1.0, 0), hashes)["fields"]

    assert "soft_targets" not in fields_of("hard") and "soft_weight" not in fields_of("hard")
    assert fields_of("soft")["soft_targets"] == "topk" and fields_of("soft")["soft_weight"] == 0.25
