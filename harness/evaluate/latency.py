"""Latency and size of a student on the device it runs on (DESIGN.md, "Latency conventions").

Batch-1 end-to-end latency (p50/p95/p99) and time to first token over real eval prompts,
decode tokens/s, batched throughput at a fixed batch size, peak memory, parameter count and
checkpoint size. Warm-up runs are excluded; CUDA is synchronised around every timed region.
Generation here runs to a fixed number of new tokens (no early stop) so runs are comparable.

Batch-1 figures come from one decode path (:mod:`.static_decode`), named in the record:
``decode_path`` is ``static_compiled`` on CUDA (a static KV cache and a compiled decode step,
whose compilation is done once here, before the timed runs, and reported as ``warmup_s``) and
``dynamic_eager`` on the CPU (``model.generate`` as before). Should compilation fail, the record
falls back to ``dynamic_eager`` and says why (``decode_fallback``). Batched throughput always
uses ``model.generate`` (``decode_paths.throughput``).

Classifier students (:func:`measure_classifier`) answer in one forward pass: their end-to-end
latency is that pass, time to first token equals it (the whole answer arrives at once), and
decode speed does not apply (left out rather than reported as a number).
"""

from __future__ import annotations

import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_generate(model: Any, ids: Any, mask: Any, new_tokens: int, pad: int, device: Any
                    ) -> float:
    _sync(device)
    t0 = time.perf_counter()
    model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
    _sync(device)
    return time.perf_counter() - t0


def measure(model: Any, tokenizer: Any, prompts: list[str], device: Any, *, new_tokens: int = 16,
            runs: int = 20, warmup: int = 3, batch_size: int = 32,
            checkpoint_dir: Path | None = None, decode_path: str | None = None
            ) -> dict[str, Any]:
    """Latency and size figures (milliseconds, tokens/s, MB).

    Args:
        prompts: real eval prompts; batch-1 runs cycle through them.
        new_tokens: tokens generated per run (fixed).
        runs: timed batch-1 runs after ``warmup`` untimed ones.
        batch_size: the fixed batch size of the throughput measurement.
        decode_path: the batch-1 path (:data:`~.static_decode.DECODE_PATHS`); default
            ``static_compiled`` on CUDA, ``dynamic_eager`` elsewhere.
    """
    import torch

    from harness.evaluate.static_decode import DYNAMIC_EAGER, default_decode_path

    path = decode_path or default_decode_path(device)
    pad = tokenizer.pad_token_id
    enc = [tokenizer(p + "\n", add_special_tokens=False, return_tensors="pt") for p in prompts]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    record: dict[str, Any] = {}
    with torch.inference_mode():
        if path != DYNAMIC_EAGER:
            try:
                e2e, ttft, record = _batch1_static(model, enc, device, path, new_tokens, runs,
                                                   warmup)
            except Exception as exc:  # a compile failure must not cost the cell its figures
                record = {"decode_fallback": f"{path} failed: {type(exc).__name__}: "
                                             f"{str(exc)[:300]}"}
                path = DYNAMIC_EAGER
        if path == DYNAMIC_EAGER:
            e2e, ttft = _batch1_generate(model, enc, device, pad, new_tokens, runs, warmup)
        batch = tokenizer([p + "\n" for p in (prompts * batch_size)[:batch_size]],
                          add_special_tokens=False, return_tensors="pt", padding=True,
                          padding_side="left")
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        _timed_generate(model, ids, mask, new_tokens, pad, device)  # warm-up
        batched = _timed_generate(model, ids, mask, new_tokens, pad, device)
    e2e_ms, ttft_ms = np.array(e2e) * 1000, np.array(ttft) * 1000
    decode_s = np.maximum(np.array(e2e) - np.array(ttft), 1e-9)
    size = _size(model, device, checkpoint_dir)
    return {
        "latency_p50_ms": float(np.percentile(e2e_ms, 50)),
        "latency_p95_ms": float(np.percentile(e2e_ms, 95)),
        "latency_p99_ms": float(np.percentile(e2e_ms, 99)),
        "ttft_p50_ms": float(np.percentile(ttft_ms, 50)),
        "ttft_p95_ms": float(np.percentile(ttft_ms, 95)),
        "decode_tokens_per_s": float(np.median((new_tokens - 1) / decode_s)),
        "throughput_items_per_s": float(batch_size / batched),
        "throughput_tokens_per_s": float(batch_size * new_tokens / batched),
        "decode_path": path,
        "decode_paths": {"batch1": path, "throughput": DYNAMIC_EAGER},
        "warmup_s": record.pop("warmup_s", None),
        **record,
        **size,
        "conditions": {
            **_conditions(model, device),
            "new_tokens": new_tokens, "runs": runs, "warmup": warmup, "batch_size": batch_size,
            "mean_prompt_tokens": float(np.mean([e["input_ids"].shape[1] for e in enc])),
        },
    }


def _batch1_generate(model: Any, enc: list[Any], device: Any, pad: int, new_tokens: int,
                     runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """``dynamic_eager``: end-to-end and first-token seconds per timed run, each from its own
    ``model.generate`` call (``new_tokens``, then 1 token)."""
    e2e, ttft = [], []
    for r in range(warmup + runs):
        e = enc[r % len(enc)]
        ids, mask = e["input_ids"].to(device), e["attention_mask"].to(device)
        first = _timed_generate(model, ids, mask, 1, pad, device)
        full = _timed_generate(model, ids, mask, new_tokens, pad, device)
        if r >= warmup:
            ttft.append(first)
            e2e.append(full)
    return e2e, ttft


def _batch1_static(model: Any, enc: list[Any], device: Any, path: str, new_tokens: int,
                   runs: int, warmup: int) -> tuple[list[float], list[float], dict[str, Any]]:
    """``static_*``: one static cache for every prompt, the decode step compiled once (the
    warm-up, timed), then ``warmup`` untimed and ``runs`` timed generations; each timed run
    gives its first-token and end-to-end seconds."""
    from harness.evaluate.static_decode import static_decoder_for

    prompts = [e["input_ids"][0].tolist() for e in enc]
    decoder = static_decoder_for(model, [len(p) for p in prompts], new_tokens, path)
    warmup_s = decoder.warm_up(prompts[0], new_tokens)
    e2e, ttft = [], []
    for r in range(warmup + runs):
        out = decoder.decode(prompts[r % len(prompts)], new_tokens)
        if r >= warmup:
            ttft.append(out.first_token_s)
            e2e.append(out.total_s)
    return e2e, ttft, {"warmup_s": round(warmup_s, 3),
                       "static_cache_len": decoder.max_cache_len}


def _size(model: Any, device: Any, checkpoint_dir: Path | None) -> dict[str, Any]:
    """Peak memory (CUDA allocator, else process RSS), parameters and checkpoint MB."""
    import torch

    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = process_peak_rss_mb()
    ckpt_mb = (sum(f.stat().st_size for f in checkpoint_dir.glob("*.safetensors")) / 2**20
               if checkpoint_dir else None)
    return {"peak_memory_mb": float(peak_mb),
            "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "process_rss",
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "checkpoint_mb": ckpt_mb}


def process_peak_rss_mb() -> float:
    """This process's peak resident set size in MB since it started (exec).

    Read from ``VmHWM`` in ``/proc/self/status`` where there is one: ``ru_maxrss`` survives
    ``exec``, so a worker started by a large parent (a test runner that has loaded models, say)
    would report the parent's peak as its own. ``ru_maxrss`` only where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _conditions(model: Any, device: Any) -> dict[str, Any]:
    import torch
    import transformers

    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine())
    return {"device": device.type, "device_name": device_name,
            "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads()}


def measure_classifier(model: Any, tokenizer: Any, prompts: list[str], device: Any, *,
                       student: str, max_len: int = 512, runs: int = 20, warmup: int = 3,
                       batch_size: int = 32, checkpoint_dir: Path | None = None
                       ) -> dict[str, Any]:
    """Latency and size of a student that answers in one forward pass, a classifier head
    (milliseconds, items/s, MB); ``student`` (its kind's name) is recorded in the conditions.

    Batch-1 runs cycle through real eval prompts; the throughput run classifies a fixed batch
    of ``batch_size`` prompts in one padded forward pass.
    """
    import torch

    from harness.class_layout import encode_prompts, pad_batch

    ids = encode_prompts(tokenizer, prompts, max_len)
    pad = tokenizer.pad_token_id
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def timed(batch: list[list[int]]) -> float:
        x, mask = pad_batch(batch, pad, device)
        _sync(device)
        t0 = time.perf_counter()
        model(input_ids=x, attention_mask=mask)
        _sync(device)
        return time.perf_counter() - t0

    model.eval()
    with torch.inference_mode():
        single = [timed([ids[r % len(ids)]]) for r in range(warmup + runs)][warmup:]
        batch = (ids * batch_size)[:batch_size]
        timed(batch)  # warm-up at this shape
        batched = timed(batch)
    ms = np.array(single) * 1000
    p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
    return {
        "latency_p50_ms": p50, "latency_p95_ms": p95, "latency_p99_ms": p99,
        # One forward pass yields the whole answer: the first token is the last.
        "ttft_p50_ms": p50, "ttft_p95_ms": p95,
        "throughput_items_per_s": float(batch_size / batched),
        **_size(model, device, checkpoint_dir),
        "conditions": {
            **_conditions(model, device), "student": student, "runs": runs,
            "warmup": warmup, "batch_size": batch_size,
            "mean_prompt_tokens": float(np.mean([len(x) for x in ids])),
        },
    }
