"""The wire format of an OpenAI-compatible chat endpoint: the request body a
:class:`~harness.teachers.base.ChatRequest` becomes (with the teacher's request options), and
the :class:`Completion` a response becomes (with its provenance and reasoning trace).
"""

from __future__ import annotations

import json
from typing import Any

from harness.experiment.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.providers.common import with_system
from harness.teachers.providers.logprob_labels import label_probs_from_logprobs
from harness.teachers.providers.openai_errors import BadResponse
from harness.teachers.soft_labels import TOKENS_KEY, from_openai


def wants_logprobs(spec: OpenAITeacherSpec, request: ChatRequest) -> bool:
    """Whether a request asks the endpoint for log-probabilities: only for a teacher that sets
    ``logprobs: true``, where labels are scored (``choices``) or soft labels are stored
    (``soft_top_k``)."""
    return spec.logprobs and (request.choices is not None or request.soft_top_k is not None)


def request_body(spec: OpenAITeacherSpec, request: ChatRequest, want_logprobs: bool
                 ) -> dict[str, Any]:
    """The ``/chat/completions`` body of one request (the keyword arguments of
    ``client.chat.completions.create``), after the OpenAI chat completions reference
    (https://platform.openai.com/docs/api-reference/chat/create).

    The teacher's defaults send what earlier versions sent (model, ``max_tokens``,
    temperature, messages, seed); its request options add to it only when set: the budget
    under ``max_completion_tokens`` (``max_tokens_as``), no temperature (``temperature:
    null``), no seed (``send_seed: false``), ``top_p``, ``stop``, ``reasoning_effort``, the
    unit's answer schema as ``response_format`` (``structured_output: true``; the request
    carries it) and ``extra_body``, which the client merges into the JSON body.
    """
    body: dict[str, Any] = {"model": spec.model, spec.max_tokens_as: request.max_tokens}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    body["messages"] = with_system(request.as_messages(), spec.system)
    if request.seed is not None and spec.send_seed:
        body["seed"] = request.seed
    if spec.top_p is not None:
        body["top_p"] = spec.top_p
    if spec.stop is not None:
        body["stop"] = list(spec.stop)
    if spec.reasoning_effort is not None:
        body["reasoning_effort"] = spec.reasoning_effort
    if request.answer_schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": json.loads(request.answer_schema)}
    if want_logprobs:
        body["logprobs"] = True
        # soft labels wider than the teacher's setting widen it (only when asked: unchanged off)
        body["top_logprobs"] = max(spec.top_logprobs, request.soft_top_k or 0)
    if spec.extra_body:
        body["extra_body"] = dict(spec.extra_body)
    return body


def request_options_key(spec: OpenAITeacherSpec) -> dict[str, Any]:
    """The request options that change answers, for the teacher's cache key: only those set
    away from their defaults, so the keys of teachers that set none stay as they were.
    (``temperature`` and the answer schema are part of each request's own key;
    ``reasoning_as`` only decides how a kept trace is used.)"""
    out: dict[str, Any] = {}
    if spec.max_tokens_as != "max_tokens":
        out["max_tokens_as"] = spec.max_tokens_as
    if not spec.send_seed:
        out["send_seed"] = False
    for name in ("top_p", "stop", "reasoning_effort", "extra_body"):
        if getattr(spec, name) is not None:
            out[name] = getattr(spec, name)
    return out


def reasoning_trace(message: Any) -> str | None:
    """The reasoning trace beside an answer: ``message.reasoning_content`` (DeepSeek, SGLang,
    vLLM before 0.11) or ``message.reasoning`` (vLLM 0.11 and later, OpenRouter,
    https://docs.vllm.ai/en/stable/features/reasoning_outputs/); None when there is none. The
    openai client keeps such non-standard fields as attributes of the message."""
    for name in ("reasoning_content", "reasoning"):
        value = getattr(message, name, None)
        if isinstance(value, str) and value.strip():
            return value
    return None


def parse_response(response: Any, request: ChatRequest, want_logprobs: bool) -> Completion:
    """A 2xx chat completion as a :class:`Completion`.

    Raises:
        BadResponse: no ``choices[0].message`` with text.
    """
    try:
        choice = response.choices[0]
        message = choice.message
        text = message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise BadResponse(f"no choices[0].message in {str(response)[:200]!r}") from exc
    if not isinstance(text, str):
        refusal = getattr(message, "refusal", None)  # structured outputs' refusal field
        if isinstance(refusal, str) and refusal.strip():
            raise BadResponse(f"the model refused: {refusal.strip()[:200]}")
        raise BadResponse(f"the answer has no text (finish_reason="
                          f"{getattr(choice, 'finish_reason', None)!r})")
    usage = getattr(response, "usage", None)
    # provenance: the model the endpoint says answered (an alias resolves to a snapshot) and
    # its backend configuration, kept with the cached answer
    extra: dict[str, Any] = {"finish_reason": getattr(choice, "finish_reason", None),
                             "model": _text_or_none(getattr(response, "model", None)),
                             "system_fingerprint": _text_or_none(
                                 getattr(response, "system_fingerprint", None))}
    reasoning = reasoning_trace(message)
    if reasoning is not None:
        extra["reasoning"] = reasoning
    out = Completion(text=text,
                     prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                     completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                     extra=extra)
    if want_logprobs and request.soft_top_k is not None:
        tokens = from_openai(getattr(choice, "logprobs", None), extra["model"])
        if tokens is not None:
            extra[TOKENS_KEY] = tokens
    if want_logprobs and request.choices is not None:
        # measured where the answer's value is written, in generation and label_scores mode
        # alike (the JSON value is located in the generated text, not assumed to come first)
        probs = label_probs_from_logprobs(getattr(choice, "logprobs", None), request.choices)
        if probs is not None:
            out.label_probs, out.confidence_source = probs, "top_logprobs"
    return out


def _text_or_none(value: Any) -> str | None:
    """A response field that should be a string, or None (a missing or odd field is no name)."""
    return value if isinstance(value, str) and value else None
