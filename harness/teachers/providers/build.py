"""From a ``teachers:`` entry to a :class:`~harness.teachers.base.Teacher`, and building a request
with the teacher's own defaults (the providers' shared helpers: :mod:`.common`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.experiment.teachers import HFTeacherSpec, OpenAITeacherSpec
from harness.teachers.base import ChatRequest, Teacher

if TYPE_CHECKING:
    from harness.teachers.cache import CallCache


def build_request(spec: OpenAITeacherSpec | HFTeacherSpec, prompt: str | Sequence[tuple[str, str]],
                  *, choices: Sequence[str] | None = None, seed: int | None = None,
                  max_tokens: int | None = None) -> ChatRequest:
    """A request with the teacher's own ``max_tokens`` and ``temperature``.

    Args:
        spec: the teacher's entry.
        prompt: the user prompt, or (role, content) pairs. Do not add the teacher's ``system``
            prompt: the provider prepends it (and it is part of the teacher's config key).
        choices: the labels whose probabilities to measure (label units).
        seed: sampling seed (ignored by greedy decoding).
        max_tokens: overrides the teacher's budget (e.g. a short judge answer).
    """
    messages = ((("user", prompt),) if isinstance(prompt, str)
                else tuple((r, c) for r, c in prompt))
    return ChatRequest(messages=messages, max_tokens=max_tokens or spec.max_tokens,
                       temperature=spec.temperature, seed=seed,
                       choices=tuple(choices) if choices is not None else None)


def build_teacher(name: str, spec: OpenAITeacherSpec | HFTeacherSpec,
                  cache: CallCache | None = None) -> Teacher:
    """The provider of ``spec`` (imported only when used: the openai client and transformers
    are heavy).

    ``cache``: the call cache the teacher will be wrapped in. A teacher with ``batch: true``
    needs it (:mod:`.openai_batch` records its batches there, so an interrupted run resumes
    them); the others ignore it.
    """
    if isinstance(spec, OpenAITeacherSpec) and spec.batch:
        from harness.teachers.providers.openai_batch import OpenAIBatchTeacher

        if cache is None:
            raise ValueError(f"teacher {name!r} has batch: true: pass the call cache its "
                             "batches are recorded in")
        return OpenAIBatchTeacher(name, spec, cache)
    if isinstance(spec, OpenAITeacherSpec):
        from harness.teachers.providers.openai_chat import OpenAIChatTeacher

        return OpenAIChatTeacher(name, spec)
    from harness.teachers.providers.hf_local import HFLocalTeacher

    return HFLocalTeacher(name, spec)
