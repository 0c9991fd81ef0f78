"""The wire format of an OpenAI-compatible chat endpoint: the request body a
:class:`~harness.teachers.base.ChatRequest` becomes, and the :class:`Completion` a response becomes.
"""

from __future__ import annotations

from typing import Any

from harness.spec.teachers import OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Completion
from harness.teachers.providers.common import with_system
from harness.teachers.providers.logprob_labels import (
    answer_token_top,
    label_probs_from_top_logprobs,
)
from harness.teachers.providers.openai_errors import BadResponse


def request_body(spec: OpenAITeacherSpec, request: ChatRequest, want_logprobs: bool
                 ) -> dict[str, Any]:
    """The ``/chat/completions`` body of one request (the keyword arguments of
    ``client.chat.completions.create``)."""
    body: dict[str, Any] = {
        "model": spec.model, "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "messages": with_system(request.as_messages(), spec.system)}
    if request.seed is not None:
        body["seed"] = request.seed
    if want_logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = spec.top_logprobs
    return body


def parse_response(response: Any, request: ChatRequest, want_logprobs: bool) -> Completion:
    """A 2xx chat completion as a :class:`Completion`.

    Raises:
        BadResponse: no ``choices[0].message`` with text.
    """
    try:
        choice = response.choices[0]
        text = choice.message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise BadResponse(f"no choices[0].message in {str(response)[:200]!r}") from exc
    if not isinstance(text, str):
        raise BadResponse(f"the answer has no text (finish_reason="
                          f"{getattr(choice, 'finish_reason', None)!r})")
    usage = getattr(response, "usage", None)
    out = Completion(text=text,
                     prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                     completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                     extra={"finish_reason": getattr(choice, "finish_reason", None)})
    if want_logprobs and request.choices is not None:
        top = answer_token_top(choice, request.answer_prefix)
        probs = label_probs_from_top_logprobs(top, request.choices) if top else None
        if probs is not None:
            out.label_probs, out.confidence_source = probs, "top_logprobs"
    return out
