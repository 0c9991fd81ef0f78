"""A deterministic teacher for the unit tests of parsing, judging and assembling: it answers each
request from a script (a function of the request), so a test knows every answer in advance.

Only for logic tests: the end-to-end generate test and the experiment use the real providers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.teachers.base import ChatRequest, Completion, OnDone

Script = Callable[[ChatRequest], "str | Completion"]


@dataclass
class ScriptedTeacher:
    """Answers ``script(request)``: a string is the completion text (usage: 10 prompt tokens,
    one per word of the answer); a :class:`Completion` is passed through. Records every
    request it got in ``seen``."""

    name: str
    script: Script
    label_probs: dict[str, float] | None = None
    seen: list[ChatRequest] = field(default_factory=list)

    def config_key(self) -> str:
        return f"scripted:{self.name}"

    def check(self) -> None:
        return None

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        for i, req in enumerate(requests):
            self.seen.append(req)
            out = self.script(req)
            if isinstance(out, str):
                probs = self.label_probs if req.choices else None
                out = Completion(text=out, prompt_tokens=10, completion_tokens=len(out.split()),
                                 label_probs=probs,
                                 confidence_source="label_probabilities" if probs else None)
            on_done(i, out)


def user_text(req: ChatRequest) -> str:
    """The user turn of a request (what the teacher was asked)."""
    return next(c for r, c in req.messages if r == "user")
