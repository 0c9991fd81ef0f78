"""What a teacher is to the rest of the harness: a chat request in, a completion out.

Providers (:mod:`harness.teachers.providers`) implement :class:`Teacher`; the generate stage
(:mod:`harness.teachers.generate`) and the judge only ever see this interface, so a new provider
never touches them. A failed call is a :class:`Completion` with ``error`` set, never an exception:
one bad answer costs one candidate, not the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

#: Why a call produced no usable text. ``unparseable`` is decided later, by the unit kind.
#: ``auth``: the endpoint refused the key or the access (401, 403); ``aborted``: never sent,
#: or given up while waiting to retry, because its teacher was stopped (an auth error, or
#: client errors on every first call) or the run was interrupted.
ErrorKind = Literal["timeout", "rate_limited", "server_error", "bad_request", "bad_response",
                    "connection", "auth", "aborted", "error"]

#: Where a candidate's confidence came from (recorded beside it).
ConfidenceSource = Literal["label_probabilities", "top_logprobs", "self_reported"]

#: How a candidate's answer was obtained: parsed from generated text, or the argmax of the
#: teacher's probabilities over the labels (``answer_from: label_scores``).
AnswerSource = Literal["generation", "label_scores"]


@dataclass(frozen=True)
class ChatRequest:
    """One prompt to one teacher.

    ``messages`` is OpenAI chat format (``[{"role": ..., "content": str}]``, roles ``system``,
    ``user``, ``assistant``).
    ``choices``, for label units, lists the answer strings whose probabilities the teacher should
    report (local teachers score each one; endpoints read log-probabilities at the tokens where
    the answer's value is generated, where the endpoint returns them).

    ``score_messages``: where set, local teachers score each choice as the bare answer to
    these messages (the prompt without the answer-format instruction: P(label | prompt), the
    student's own rule) instead of after ``answer_prefix`` in the answer to ``messages``.
    ``answer_prefix`` / ``answer_suffix``: the text a choice is written between at the start of
    a JSON answer (``{"answer": "`` and ``"``); endpoints locate the value in the generated
    JSON themselves, whatever precedes it. ``generate_text`` False: only score the choices,
    write no text (``answer_from: label_scores`` with no free-text field asked; endpoints
    cannot score without generating and ignore it).

    ``temperature`` None: none is sent (the endpoint's default; reasoning models accept no
    other). ``answer_schema``: where set, the compact JSON text of the structured-output
    schema the answer must follow (``{"name", "schema", "strict"}``, the ``json_schema`` of an
    OpenAI ``response_format``; :func:`harness.teachers.prompts.response_schema`), for a teacher
    that declares ``structured_output: true``; text, so the request stays hashable.
    ``soft_top_k``: where set (``generate.soft_labels``), the provider also returns the
    log-probabilities of every generated token with this many alternatives
    (:mod:`harness.teachers.soft_labels`).
    """

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs; hashable for the cache key
    max_tokens: int
    temperature: float | None = 0.0
    seed: int | None = None
    choices: tuple[str, ...] | None = None
    answer_prefix: str = ""
    answer_suffix: str = ""
    generate_text: bool = True
    score_messages: tuple[tuple[str, str], ...] | None = None
    answer_schema: str | None = None
    soft_top_k: int | None = None

    def as_messages(self) -> list[dict[str, str]]:
        """The OpenAI-format message list."""
        return [{"role": r, "content": c} for r, c in self.messages]

    def key_data(self) -> dict[str, Any]:
        """Everything that determines the answer (with the teacher's config): the cache key."""
        return {"messages": [list(m) for m in self.messages], "max_tokens": self.max_tokens,
                "temperature": self.temperature, "seed": self.seed,
                "choices": list(self.choices) if self.choices is not None else None,
                # only when set, so the keys of plain generation requests stay as they were
                **({"answer_prefix": self.answer_prefix, "answer_suffix": self.answer_suffix}
                   if self.answer_prefix or self.answer_suffix else {}),
                **({} if self.generate_text else {"generate_text": False}),
                **({"score_messages": [list(m) for m in self.score_messages]}
                   if self.score_messages is not None else {}),
                **({"answer_schema": json.loads(self.answer_schema)}
                   if self.answer_schema is not None else {}),
                # only when asked, so runs without soft labels keep their cached calls
                **({"soft_top_k": self.soft_top_k} if self.soft_top_k is not None else {}),
                # scored soft labels changed form (the constrained distribution and the label
                # probabilities): answers cached in the first form are not reused for them
                **({"soft_form": "constrained"} if self.soft_top_k is not None
                   and self.score_messages is not None else {})}


@dataclass
class Completion:
    """A teacher's answer to one :class:`ChatRequest`.

    ``text`` is None exactly when ``error`` is set. ``label_probs`` maps requested choices to
    the probability the provider measured for them, None when it measured none. A local teacher
    (``hf``) scores every choice over the full vocabulary and normalises over the choices (sums
    to 1). An endpoint's figures come from its log-probabilities where the answer was written
    (:mod:`harness.teachers.providers.logprob_labels`): the written label's is the probability
    of its generated tokens, others' come from the alternatives shown at those tokens; nothing
    is renormalised (the sum is at most 1, the mass the top alternatives do not show stays
    unassigned) and a choice with no measured mass is absent, not 0.
    Token counts are the provider's own (endpoint usage, or the local tokenizer's count).
    ``extra`` holds what the provider said beside the answer: ``finish_reason``; for endpoints
    the provenance ``model`` (the model that answered, as the endpoint names it) and
    ``system_fingerprint``, and ``reasoning`` (the reasoning trace, where one was returned);
    ``token_logprobs`` (every generated token's log-probabilities,
    :mod:`harness.teachers.soft_labels`) where the request set ``soft_top_k`` and the provider
    returned them.
    """

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    label_probs: dict[str, float] | None = None
    confidence_source: ConfidenceSource | None = None
    error: ErrorKind | None = None
    error_detail: str | None = None
    seconds: float = 0.0  # wall time of the call (0 for a cache hit)
    cached: bool = False
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


#: Called once per finished request with its index in the submitted list.
OnDone = Callable[[int, Completion], None]


class Teacher(Protocol):
    """A configured model that answers chat requests."""

    name: str

    def config_key(self) -> str:
        """A digest of everything in the configuration that changes answers (provider, model,
        endpoint, prompt style...), so a cached answer is reused only by the same teacher."""
        ...

    def check(self) -> None:
        """Fail before any paid call with :class:`harness.errors.InputError` (exit 2) when the
        teacher cannot work: missing API key, unreachable endpoint, unknown model, missing file."""
        ...

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        """Answer every request (concurrently or batched, as the provider allows), calling
        ``on_done(i, completion)`` as each finishes; never raises for a failed call."""
        ...
