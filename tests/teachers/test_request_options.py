"""Request options real endpoints need, against a local server that behaves like them
(tests/helpers/fake_provider.py, 127.0.0.1 only): a reasoning model that answers 400 to
``max_tokens`` and to a temperature other than 1 is reached with ``max_tokens_as:
max_completion_tokens`` and ``temperature: null``; ``top_p``, ``stop``, ``reasoning_effort`` and
``extra_body`` arrive as sent; ``send_seed: false`` sends none; ``structured_output: true``
sends the unit's answer schema as ``response_format``. The defaults send what earlier versions
sent and keep their cache keys. Bad option values are refused with a located message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from harness.cli import main
from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.prompts import build_request, response_schema, strict_compatible
from harness.teachers.providers.common import config_digest
from harness.teachers.providers.openai_chat import OpenAIChatTeacher
from harness.teachers.providers.openai_wire import request_body
from tests.helpers.fake_provider import (
    FakeProvider,
    ManualClock,
    Reply,
    Request,
    chat_completion,
    error_body,
)

LABELS = ["billing", "shipping"]
LABEL_UNIT = {"kind": "label", "labels": LABELS, "answer_marker": "Answer:"}
TOOL_UNIT = {"kind": "tool_call", "tools": ["refund", "track"], "answer_marker": "Answer:"}
FIELDS_UNIT = {"kind": "json_fields", "fields": ["order_id", "city"], "answer_marker": "Answer:"}


def _answer(prompt: str) -> str:
    return "shipping" if "parcel" in prompt else "billing"


def reasoning_model(req: Request, _: FakeProvider) -> Reply | None:
    """An OpenAI reasoning model (o-series, gpt-5): ``max_tokens`` and any temperature but
    the default 1 are refused with a 400 in OpenAI's error shape; otherwise it answers the
    JSON asked for, with its reasoning trace beside it (``reasoning_content``)."""
    if not req.path.endswith("/chat/completions"):
        return None
    body = req.body
    if "max_tokens" in body:
        return Reply(400, error_body(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.", param="max_tokens", code="unsupported_parameter"))
    if body.get("temperature", 1) != 1:
        return Reply(400, error_body(
            f"Unsupported value: 'temperature' does not support {body['temperature']} with this "
            "model. Only the default (1) value is supported.", param="temperature",
            code="unsupported_value"))
    prompt = body["messages"][-1]["content"]
    answer = _answer(prompt)
    return Reply(body=chat_completion(
        json.dumps({"answer": answer}), model="o4-mini-2025-04-16",
        reasoning_content=f"The customer writes about money, so {answer}."
        if answer == "billing" else f"A parcel is a delivery matter: {answer}.",
        system_fingerprint="fp_reasoning"))


def _teacher(url: str, **kw: Any) -> OpenAIChatTeacher:
    spec = OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": url, "model": "m",
                                             "timeout_s": 5, "max_retries": 0, **kw})
    return OpenAIChatTeacher("t", spec, clock=ManualClock())


def _ask(t: OpenAIChatTeacher, requests: list[ChatRequest]) -> list[Completion]:
    got: dict[int, Completion] = {}
    t.complete_many(requests, lambda i, c: got.__setitem__(i, c))
    return [got[i] for i in range(len(requests))]


def _label_request(prompt: str, spec: OpenAITeacherSpec, **kw: Any) -> ChatRequest:
    return build_request(prompt, LABEL_UNIT, ["rationale"], max_tokens=spec.max_tokens,
                         temperature=spec.temperature, seed=0,
                         structured_output=spec.structured_output, **kw)


# ---------------------------------------------------------------- a reasoning model


def test_a_reasoning_model_answers_the_configured_teacher_and_refuses_the_default() -> None:
    with FakeProvider(reasoning_model) as fp:
        default = _teacher(fp.base_url)
        refused = _ask(default, [_label_request("I was charged twice", default.spec)])[0]
        assert refused.error == "bad_request" and "max_completion_tokens" in (
            refused.error_detail or "")

        only_budget = _teacher(fp.base_url, max_tokens_as="max_completion_tokens")
        refused = _ask(only_budget, [_label_request("charged", only_budget.spec)])[0]
        assert refused.error == "bad_request" and "temperature" in (refused.error_detail or "")

        reasoning = _teacher(fp.base_url, max_tokens_as="max_completion_tokens",
                             temperature=None, max_tokens=4000, reasoning_effort="low")
        prompts = ["I was charged twice", "my parcel is late"]
        done = _ask(reasoning, [_label_request(p, reasoning.spec) for p in prompts])
    assert [c.error for c in done] == [None, None]
    assert [json.loads(c.text or "")["answer"] for c in done] == ["billing", "shipping"]
    sent = fp.chat_requests()[-1].body
    assert sent["max_completion_tokens"] == 4000 and sent["reasoning_effort"] == "low"
    assert "max_tokens" not in sent and "temperature" not in sent


def test_the_generate_command_gets_answers_and_rationales_from_a_reasoning_model(
        tmp_path: Path) -> None:
    train = [{"id": "t1", "unit": "route", "prompt": "I was charged twice",
              "reference": "billing"},
             {"id": "t2", "unit": "route", "prompt": "my parcel is late"}]
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "train.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    with FakeProvider(reasoning_model) as fp:
        teacher = {"provider": "openai", "base_url": fp.base_url, "model": "m",
                   "max_tokens_as": "max_completion_tokens", "temperature": None,
                   "max_tokens": 2000, "structured_output": True, "reasoning_as": "rationale",
                   "timeout_s": 5}
        spec = {
            "name": "reasoning",
            "data": {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl"},
            "units": {"route": {"kind": "label", "labels": LABELS}},
            "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
            "buckets": {"only_a": {"teachers": ["a"], "select": "all"}},
            "fields": {"answer_only": {}},
            "baseline": {"bucket": "only_a", "fields": "answer_only"},
            "design": {"noise_seeds": []},
            "teachers": {"a": teacher},
            "costs": {"teachers": {"a": {"price_per_1k_prompt": 1.0,
                                         "price_per_1k_completion": 2.0}}},
            "generate": {"prompts": "prompts/train.jsonl", "cache": "cache.sqlite"},
        }
        exp = tmp_path / "exp.yaml"
        exp.write_text(yaml.safe_dump(spec), encoding="utf-8")
        assert main(["generate", str(exp), "--quiet"]) == 0
        sent = fp.chat_requests()
    rows = [json.loads(x) for x in (tmp_path / "data" / "samples.jsonl").read_text().splitlines()]
    cands = [r["candidates"][0] for r in rows]
    assert [c["final"] for c in cands] == ["billing", "shipping"]
    assert cands[0]["rationale"] == "The customer writes about money, so billing."
    assert cands[1]["rationale"] == "A parcel is a delivery matter: shipping."
    assert [r["pools"] for r in rows] == [{"a": "train"}, {"a": "train"}]
    assert len(sent) == 2 and all(s.body["response_format"]["type"] == "json_schema"
                                  for s in sent)


# ---------------------------------------------------------------- what arrives at the server


def test_options_and_extra_body_arrive_at_the_server() -> None:
    def echo(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        return Reply(body=chat_completion('{"answer": "billing"}'))

    extra = {"guided_choice": LABELS, "chat_template_kwargs": {"enable_thinking": False},
             "top_k": 20}
    with FakeProvider(echo) as fp:
        t = _teacher(fp.base_url, top_p=0.9, stop="\n\n", send_seed=False, extra_body=extra)
        done = _ask(t, [_label_request("charged twice", t.spec)])[0]
        assert done.error is None
        body = fp.chat_requests()[0].body
    assert body["top_p"] == 0.9 and body["stop"] == ["\n\n"]
    assert body["guided_choice"] == LABELS and body["top_k"] == 20
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "seed" not in body and "extra_body" not in body
    assert body["temperature"] == 0.0 and body["max_tokens"] == 256


def test_structured_output_sends_the_units_schema() -> None:
    def answer(req: Request, _: FakeProvider) -> Reply | None:
        if not req.path.endswith("/chat/completions"):
            return None
        return Reply(body=chat_completion('{"answer": "billing", "rationale": "charged"}'))

    with FakeProvider(answer) as fp:
        t = _teacher(fp.base_url, structured_output=True)
        _ask(t, [_label_request("charged twice", t.spec)])
        plain = _teacher(fp.base_url)
        _ask(plain, [_label_request("charged twice", plain.spec)])
        first, second = (r.body for r in fp.chat_requests())
    fmt = first["response_format"]
    assert fmt["type"] == "json_schema"
    js = fmt["json_schema"]
    assert js["name"] == "label_answer" and js["strict"] is True
    schema = js["schema"]
    assert list(schema["properties"]) == ["answer", "rationale"]  # the answer first, as asked
    assert schema["properties"]["answer"]["enum"] == LABELS
    assert schema["required"] == ["answer", "rationale"]
    assert schema["additionalProperties"] is False
    assert "response_format" not in second


# ---------------------------------------------------------------- schemas per unit kind


def test_each_kind_gives_its_answer_schema_strict_where_it_can() -> None:
    label = response_schema(LABEL_UNIT, ["rationale", "confidence"])
    assert label["strict"] and label["schema"]["properties"]["confidence"] == {
        "type": "number", "minimum": 0, "maximum": 1}
    fields = response_schema(FIELDS_UNIT, [])
    value = fields["schema"]["properties"]["answer"]
    assert fields["strict"] and value["required"] == ["order_id", "city"]
    assert value["properties"]["city"] == {"type": ["string", "null"]}
    # a tool call's arguments are free-form: a non-strict guide, with the tools as an enum
    tool = response_schema(TOOL_UNIT, ["trajectory"])
    assert tool["name"] == "tool_call_answer" and tool["strict"] is False
    call = tool["schema"]["properties"]["answer"]["anyOf"][1]
    assert call["properties"]["name"]["enum"] == ["refund", "track"]
    for kind, unit in (("text", {"kind": "text"}),
                       ("refusal", {"kind": "refusal", "marker": "ESCALATE"})):
        got = response_schema({**unit, "answer_marker": "Answer:"}, ["limits"])
        assert got["name"] == f"{kind}_answer" and got["strict"]
        assert got["schema"]["properties"]["answer"]["type"] == "string"


def test_strict_compatible_needs_every_object_closed_and_fully_required() -> None:
    closed = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    assert strict_compatible(closed)
    assert not strict_compatible({**closed, "required": []})
    assert not strict_compatible({**closed, "additionalProperties": True})
    assert not strict_compatible({"type": "object"})
    nested = {**closed, "properties": {"a": {"type": "array", "items": {"type": "object"}}}}
    assert not strict_compatible(nested)
    assert not strict_compatible({"anyOf": [{"type": "null"}, {"type": "object"}]})


def test_a_schema_decoded_json_fields_answer_drops_its_null_fields() -> None:
    import harness.units as unit_kinds

    kind = unit_kinds.get("json_fields")
    assert kind.parse_teacher_final({"order_id": "77", "city": None}, FIELDS_UNIT) == \
        '{"order_id":"77"}'
    assert kind.parse_teacher_final('{"order_id": null, "city": "Oslo"}', FIELDS_UNIT) == \
        '{"city":"Oslo"}'
    assert kind.parse_teacher_final("not json", FIELDS_UNIT) is None


# ---------------------------------------------------------------- defaults and cache keys


def test_defaults_send_the_same_body_and_keep_the_cache_keys() -> None:
    spec = OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": "http://h/v1",
                                             "model": "m", "system": "be brief"})
    req = _label_request("charged", spec)
    body = request_body(spec, req, want_logprobs=False)
    assert list(body) == ["model", "max_tokens", "temperature", "messages", "seed"]
    assert req.answer_schema is None and "answer_schema" not in req.key_data()
    old_key = config_digest({"provider": "openai", "base_url": "http://h/v1", "model": "m",
                             "system": "be brief", "logprobs": False, "top_logprobs": None})
    assert OpenAIChatTeacher("t", spec).config_key() == old_key


@pytest.mark.parametrize("option", [
    {"max_tokens_as": "max_completion_tokens"}, {"reasoning_effort": "high"}, {"top_p": 0.5},
    {"stop": ["END"]}, {"send_seed": False}, {"extra_body": {"top_k": 5}}])
def test_options_that_change_answers_change_the_teachers_key(option: dict[str, Any]) -> None:
    base = {"provider": "openai", "base_url": "http://h/v1", "model": "m"}
    plain = OpenAIChatTeacher("t", OpenAITeacherSpec.model_validate(base)).config_key()
    other = OpenAIChatTeacher("t", OpenAITeacherSpec.model_validate({**base, **option}))
    assert other.config_key() != plain


def test_temperature_none_and_the_schema_are_in_the_request_key() -> None:
    spec = OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": "http://h/v1",
                                             "model": "m"})
    greedy = build_request("x", LABEL_UNIT, [], max_tokens=9, temperature=0.0)
    unset = build_request("x", LABEL_UNIT, [], max_tokens=9, temperature=None)
    schema = build_request("x", LABEL_UNIT, [], max_tokens=9, structured_output=True)
    assert len({json.dumps(r.key_data(), sort_keys=True) for r in (greedy, unset, schema)}) == 3
    assert "temperature" not in request_body(spec, unset, want_logprobs=False)
    # reasoning_as only decides how a kept trace is used: the same answers, the same key
    with_trace = OpenAITeacherSpec.model_validate({**spec.model_dump(), "reasoning_as":
                                                   "rationale"})
    assert OpenAIChatTeacher("t", with_trace).config_key() == \
        OpenAIChatTeacher("t", spec).config_key()


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(("option", "needle"), [
    ({"max_tokens_as": "max_output_tokens"}, "'max_tokens' or 'max_completion_tokens'"),
    ({"temperature": 3}, "less than or equal to 2"),
    ({"reasoning_effort": "extreme"}, "'minimal'"),
    ({"top_p": 0}, "greater than 0"),
    ({"top_p": 1.5}, "less than or equal to 1"),
    ({"stop": []}, "give 1 to 16 stop sequences"),
    ({"stop": ["a", ""]}, "must not be empty"),
    ({"stop": ["a", "a"]}, "stop sequences repeat"),
    ({"extra_body": {"max_tokens": 5}}, "extra_body.max_tokens: use `max_tokens:`"),
    ({"extra_body": {"response_format": {}}}, "use `structured_output: true`"),
    ({"extra_body": {"stream": True}}, "whole answers"),
    ({"extra_body": {"api_key": "abc"}}, "extra_body.api_key: never put an API key"),
    ({"extra_body": {"headers": {"x": "sk-proj-abc123"}}}, "extra_body.headers.x: never put"),
    ({"extra_body": [1, 2]}, "valid dictionary"),
    ({"reasoning_as": "trajectory"}, "'rationale'"),
    ({"structured_output": "yes please"}, "valid boolean"),
])
def test_bad_request_options_are_refused(option: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": "http://h/v1",
                                          "model": "m", **option})
    assert needle in str(err.value)


def test_a_bad_option_is_a_located_input_error_at_load(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = {"name": "x", "data": {"samples": "s.jsonl", "eval": "e.jsonl"},
            "units": {"route": {"kind": "label", "labels": LABELS}},
            "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}},
            "buckets": {"b": {"teachers": ["a"], "select": "all"}},
            "fields": {"answer_only": {}}, "baseline": {"bucket": "b", "fields": "answer_only"},
            "teachers": {"a": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1",
                               "model": "m",
                               "extra_body": {"temperature": 1, "guided_choice": LABELS}}},
            "costs": {"teachers": {"a": {"price_per_1k_prompt": 0, "price_per_1k_completion": 0}}}}
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert main(["validate", str(exp)]) == 2
    err = capsys.readouterr().err
    assert "teachers.a.extra_body" in err and "use `temperature:`" in err
