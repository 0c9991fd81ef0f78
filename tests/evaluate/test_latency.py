"""The latency record names the decode path behind its batch-1 figures and its warm-up."""

from __future__ import annotations

import pytest
import torch

from harness.evaluate.latency import measure
from harness.students.build import build_from_config, train_tokenizer

PROMPTS = ["where is my parcel", "I was charged twice for order 88213",
           "reset my password please", "the screen shows error 42 after the update"]


@pytest.fixture(scope="module")
def student():
    texts = [p + "\n" for p in PROMPTS] + ["Answer: billing", "Answer: shipping"]
    tok = train_tokenizer(texts * 4, 300)
    cfg = {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300, "max_position": 128}
    return build_from_config(cfg, tok, seed=0).eval(), tok


def run(student, **kw):
    model, tok = student
    return measure(model, tok, PROMPTS, torch.device("cpu"), new_tokens=5, runs=3, warmup=1,
                   batch_size=2, **kw)


def check_figures(rec: dict) -> None:
    assert 0 < rec["ttft_p50_ms"] <= rec["latency_p99_ms"]
    assert rec["latency_p50_ms"] <= rec["latency_p95_ms"] <= rec["latency_p99_ms"]
    assert rec["decode_tokens_per_s"] > 0 and rec["throughput_tokens_per_s"] > 0
    assert rec["conditions"]["new_tokens"] == 5 and rec["parameters"] > 0


def test_cpu_default_is_todays_dynamic_path(student):
    rec = run(student)
    check_figures(rec)
    assert rec["decode_path"] == "dynamic_eager" and rec["warmup_s"] is None
    assert rec["decode_paths"] == {"batch1": "dynamic_eager", "throughput": "dynamic_eager"}
    assert "decode_fallback" not in rec and "static_cache_len" not in rec


def test_static_path_is_named_and_its_warm_up_reported(student):
    rec = run(student, decode_path="static_eager")
    check_figures(rec)
    assert rec["decode_path"] == "static_eager"
    assert rec["decode_paths"] == {"batch1": "static_eager", "throughput": "dynamic_eager"}
    assert rec["warmup_s"] > 0
    assert rec["static_cache_len"] == 64  # longest prompt + 5 new tokens, rounded up to 64


def test_a_failing_static_path_falls_back_and_says_why(student, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("inductor exploded")

    monkeypatch.setattr("harness.evaluate.static_decode.static_decoder_for", broken)
    rec = run(student, decode_path="static_compiled")
    check_figures(rec)
    assert rec["decode_path"] == "dynamic_eager" and rec["warmup_s"] is None
    assert "static_compiled failed: RuntimeError: inductor exploded" in rec["decode_fallback"]
