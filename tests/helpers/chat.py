"""A chat request with a teacher's own budget and temperature, for the provider tests (the
generate stage builds its requests per unit: :func:`harness.teachers.prompts.build_request`)."""

from __future__ import annotations

from collections.abc import Sequence

from harness.experiment.teachers import HFTeacherSpec, OpenAITeacherSpec
from harness.teachers.base import ChatRequest


def chat_request(spec: OpenAITeacherSpec | HFTeacherSpec, prompt: str,
                 choices: Sequence[str] | None = None) -> ChatRequest:
    """One user message with ``spec``'s ``max_tokens`` and ``temperature``; ``choices``: the
    labels whose probabilities the provider measures (None: none)."""
    return ChatRequest(messages=(("user", prompt),), max_tokens=spec.max_tokens,
                       temperature=spec.temperature,
                       choices=tuple(choices) if choices is not None else None)
