"""The ``generate:`` section: where the prompts are and what ``harness generate`` asks for.

``harness generate EXP.yaml`` sends every prompt of ``prompts`` (and ``eval_prompts``) to the
teachers of the ``teachers:`` section, has the ``judge:`` score the answers and writes
``data.samples`` (and ``data.eval``). The section is optional and never enters a cell id: the
cells hash the files generate writes, not how they were made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from harness.experiment.base import Seed, Strict

#: The answer fields a teacher can be asked for besides the answer itself.
AskField = Literal["rationale", "limits", "confidence", "trajectory"]


class SoftLabelsSpec(Strict):
    """``generate.soft_labels``: store the teachers' top-k log-probabilities of every answer
    token (the candidates' ``answer_logprobs``, docs/data-contract.md)."""

    top_k: int = Field(5, ge=1, le=20, description="Alternatives kept per answer token, most "
                       "likely first (an endpoint returns at most 20).")


class GenerateSpec(Strict):
    """Prompts in, sample repository out (``harness generate``)."""

    prompts: Path = Field(description="JSON Lines of training prompts: id, unit, prompt, "
                          "optional reference and tags (path relative to the YAML file).")
    eval_prompts: Path | None = Field(
        None, description="JSON Lines of eval prompts (reference required); the teachers "
        "answer them too (teacher audit) and generate writes data.eval. Without it data.eval is "
        "left as it is.")
    teachers: list[str] | None = Field(
        None, description="Names of `teachers:` entries to ask (default: every teacher).")
    fields: list[AskField] = Field(
        ["rationale", "limits", "confidence"],
        description="What each teacher is asked for besides the answer (trajectory only on "
        "tool_call units).")
    cache: Path | None = Field(
        None, description="SQLite file caching every answered call (default: "
        "runs/<name>/teacher_cache.sqlite under the current folder).")
    limit: int | None = Field(None, ge=1, description="Only the first N prompts of each file "
                              "(a dry run; `harness generate --limit` overrides).")
    seed: Seed = Field(0, description="Seed of the judge's candidate order (and of sampled "
                      "teachers).")
    round: int = Field(1, ge=1, le=2**63 - 1,
                       description="The distillation round written on each record.")
    soft_labels: SoftLabelsSpec | None = Field(
        None, description="Store, for teachers that return them (`hf`; `openai` with "
        "`logprobs: true`), the log-probabilities of every answer token and their top-k "
        "alternatives as each candidate's `answer_logprobs` (default: off; on, it enters the "
        "teachers' cache keys).")

    @field_validator("fields")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("fields must be unique")
        return v

    @field_validator("teachers")
    @classmethod
    def _some(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("teachers must name at least one teacher, each once")
        return v
