"""Batch-1 greedy decoding with a preallocated static KV cache and one compiled decode step.

``model.generate`` with its default dynamic cache grows the cache every token and launches
every kernel from Python: at batch 1 a small model is launch-bound. :class:`StaticDecoder`
preallocates one ``transformers.StaticCache`` of a fixed length for every prompt of a cell, runs
the prompt (prefill) eagerly, and each following token through one decode step of fixed shapes
(``[1, 1]`` token and position, the whole cache), which ``torch.compile`` (mode
``"reduce-overhead"``: CUDA graphs on CUDA) turns into one graph that serves every prompt.
The compile and graph capture happen in the first call: :meth:`StaticDecoder.warm_up` runs it
once per cell and reports its seconds.

Greedy tokens equal ``model.generate``'s (``do_sample=False``): the same argmax over the same
logits (tested on CPU against the eager dynamic-cache path).

Decode paths, named in every latency record (``decode_path``):

- ``static_compiled``: static cache + compiled decode step (the CUDA default);
- ``static_eager``: static cache, no compilation (what the CPU tests exercise);
- ``dynamic_eager``: ``model.generate`` with its dynamic cache (the CPU default, as before).

Works with transformers 5.17 (the GPU machine: ``past_key_values=``) and 5.24 (``cache=``):
both keep the write position in the cache itself, so only the keyword differs.
Imports torch and transformers inside functions only (the worker's path).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

STATIC_COMPILED = "static_compiled"
STATIC_EAGER = "static_eager"
DYNAMIC_EAGER = "dynamic_eager"
DECODE_PATHS = (STATIC_COMPILED, STATIC_EAGER, DYNAMIC_EAGER)


def default_decode_path(device: Any) -> str:
    """``static_compiled`` on CUDA, ``dynamic_eager`` elsewhere (the CPU keeps today's path)."""
    return STATIC_COMPILED if getattr(device, "type", str(device)) == "cuda" else DYNAMIC_EAGER


def cache_length(prompt_lengths: Sequence[int], new_tokens: int, *, multiple: int = 64,
                 limit: int | None = None) -> int:
    """One static cache length (tokens) for every prompt: the longest prompt plus ``new_tokens``,
    rounded up to ``multiple`` and capped at ``limit`` (the model's position limit)."""
    need = max(prompt_lengths, default=0) + new_tokens
    length = multiple * math.ceil(max(need, 1) / multiple)
    return min(length, limit) if limit else length


def _cache_keyword(model: Any) -> str:
    """The forward's name for the KV cache: ``cache`` (transformers >= 5.24) or
    ``past_key_values`` (5.17)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@dataclass
class Decoded:
    """One greedy generation: the new token ids (a stop token included, as ``generate`` returns
    it), seconds to the first token (prefill) and seconds in all (device synchronised)."""

    tokens: list[int]
    first_token_s: float
    total_s: float


class StaticDecoder:
    """Greedy batch-1 decoding of one model with one preallocated static cache.

    Args:
        model: a causal LM of transformers (Llama-style; on its device, in its dtype).
        max_cache_len: cache length in tokens; every prompt + new tokens must fit
            (:func:`cache_length`).
        compile: compile the decode step (``torch.compile``); False runs it eagerly.
        mode: ``torch.compile`` mode; ``"reduce-overhead"`` captures CUDA graphs on CUDA.
            Only used with the inductor backend.
        backend: ``torch.compile`` backend (``"eager"`` traces without code generation:
            the CPU tests use it to check that the step is one graph).
        fullgraph: refuse graph breaks (one graph or an error).
    """

    def __init__(self, model: Any, max_cache_len: int, *, compile: bool = True,
                 mode: str | None = "reduce-overhead", backend: str = "inductor",
                 fullgraph: bool = False) -> None:
        import torch
        from transformers import StaticCache

        self.model = model
        self.max_cache_len = int(max_cache_len)
        self.device = next(model.parameters()).device
        self.cache = StaticCache(config=model.config, max_cache_len=self.max_cache_len)
        self._cache_kw = _cache_keyword(model)
        self.compiled = compile
        self.path = STATIC_COMPILED if compile else STATIC_EAGER
        self._cuda_graphs = compile and backend == "inductor" and mode == "reduce-overhead" \
            and self.device.type == "cuda"
        self._step: Any = self._next_token
        if compile:
            # Dynamo keeps compiled code per code object (this method) with the parameters as
            # graph inputs: a later decoder of a model of the same shapes (the next cell in a
            # long-lived worker) reuses the graph; other shapes compile anew (up to dynamo's
            # recompile limit per process).
            # one shape (batch 1, one token, the whole cache): no dynamic shapes, one graph
            self._step = torch.compile(self._next_token, backend=backend, fullgraph=fullgraph,
                                       dynamic=False,
                                       mode=mode if backend == "inductor" else None)
        self.warmup_s: float | None = None

    def _next_token(self, ids: Any, positions: Any) -> Any:
        """The argmax token after ``ids`` ([1, T] at ``positions`` [1, T]) -> [1, 1] int64;
        the KV cache is written in place."""
        out = self.model(input_ids=ids, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self._cache_kw: self.cache})
        return out.logits[:, -1, :].argmax(dim=-1, keepdim=True)

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def decode(self, prompt_ids: Sequence[int], max_new_tokens: int,
               stop_ids: Collection[int] = ()) -> Decoded:
        """Greedy ``max_new_tokens`` after ``prompt_ids``, ending early at a token in
        ``stop_ids`` (kept, as ``generate`` keeps its EOS). Without stop ids the host never
        waits on the device between tokens."""
        import torch

        n = len(prompt_ids)
        if n == 0 or n + max_new_tokens > self.max_cache_len:
            raise ValueError(f"prompt of {n} tokens + {max_new_tokens} new does not fit the "
                             f"static cache of {self.max_cache_len}")
        stops = set(stop_ids)
        self._sync()
        t0 = time.perf_counter()
        # The cache's tensors are made in inference mode (first prefill): reset them there too.
        with torch.inference_mode():
            self.cache.reset()
            ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=self.device)
            positions = torch.arange(n, device=self.device).unsqueeze(0)
            token = self._next_token(ids, positions)  # prefill: eager, any prompt length
            self._sync()
            first = time.perf_counter() - t0
            produced = [token]
            position = torch.tensor([[n]], dtype=torch.long, device=self.device)
            for _ in range(max_new_tokens - 1):
                if stops and int(token.item()) in stops:
                    break
                if self._cuda_graphs:  # a new graph replay: the previous outputs are ours
                    torch.compiler.cudagraph_mark_step_begin()
                token = self._step(token, position).clone()
                produced.append(token)
                position = position + 1
            tokens = torch.cat(produced, dim=1)[0].tolist()
        self._sync()
        if stops:  # the loop checks before each step: trim at the first stop token
            for k, t in enumerate(tokens):
                if t in stops:
                    tokens = tokens[:k + 1]
                    break
        return Decoded(tokens, first, time.perf_counter() - t0)

    def warm_up(self, prompt_ids: Sequence[int], new_tokens: int) -> float:
        """Compile the decode step and capture its graph (the first calls do): two full
        generations of ``new_tokens`` (>= 3 steps each, which CUDA graph trees need to record
        and replay). Returns and keeps the seconds taken (:attr:`warmup_s`)."""
        t0 = time.perf_counter()
        for _ in range(2):
            self.decode(prompt_ids, max(new_tokens, 4))
        self.warmup_s = time.perf_counter() - t0
        return self.warmup_s


def static_decoder_for(model: Any, prompt_lengths: Sequence[int], new_tokens: int,
                       path: str) -> StaticDecoder:
    """A :class:`StaticDecoder` sized for ``prompt_lengths`` + ``new_tokens`` (the model's
    position limit caps it), compiled when ``path`` is ``static_compiled``."""
    if path not in (STATIC_COMPILED, STATIC_EAGER):
        raise ValueError(f"not a static decode path: {path!r} (known: {DECODE_PATHS})")
    limit = getattr(model.config, "max_position_embeddings", None)
    length = cache_length(prompt_lengths, max(new_tokens, 4), limit=limit)
    return StaticDecoder(model, length, compile=path == STATIC_COMPILED)
