"""Benchmark: the harness's evaluation vs lm-eval and ``model.generate``, on one device.

**Label scoring.** One label unit of the demo eval set (``--cells``, unit ``--unit``), one
checkpoint (``--checkpoint``, e.g. a finished cell's ``model/``; default: a randomly
initialised SmolLM2-135M-shaped Llama with a tokenizer trained on the cell's text), scored
three ways, each after a warm-up on 32 items, CUDA synchronised, per dtype in ``--dtypes``:

- ``harness_shared``: :func:`harness.evaluate.predict.score_labels_shared` (the default path:
  one row per item, the prompt once, labels masked from each other), 64 items per forward as
  in the worker, and again with ``--big-batch`` items per forward;
- ``harness_per_pair``: :func:`~harness.evaluate.predict.score_labels_per_pair` (one row per
  item and label, as before);
- ``lm_eval_hflm``: lm-eval's ``HFLM`` (``batch_size`` 32) running the unit exported as a
  ``multiple_choice`` task (:mod:`harness.evaluate.lmeval`) through ``simple_evaluate``;
  its items/s counts only the time inside ``HFLM.loglikelihood`` (the end-to-end time, with
  task building and data loading, is recorded too).

Reported: items/s, accuracy of each, whether the accuracies are identical, the largest
log-likelihood difference from lm-eval's per-item values, and ``speedup_vs_lm_eval``.
lm-eval is optional: on the GPU machine it comes from ``bash ../shared/device/wheels.sh
lm-eval`` (``.whl/``, installed with ``pip install --no-index --find-links .whl lm-eval``).

**Generation** (bf16 on CUDA): batch-1 time to first token and decode ms/token over real eval
prompts (``--prompts`` distinct prompts, each warmed up once, then ``--runs`` timed runs
cycling through them, fixed ``--new-tokens``), and batched throughput (``--gen-batch`` prompts,
left-padded), for ``model.generate`` with its default dynamic cache (the baseline), with
``cache_implementation="static"`` (on CUDA transformers compiles the decode step; the cache
length follows each prompt), and with one preallocated static cache of a fixed length reset
per call (one decode shape, so the compiled step is built once), with and without that
compilation. Target: batch-1 decode <= 5 ms/token for the 135M student.

Usage::

    python benchmarks/gpu_eval.py --cells runs/gpu_bench/cells [--checkpoint DIR]
    python benchmarks/gpu_eval.py --smoke --out /tmp/x       # CPU, tiny model, seconds
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import gpu_common as gc  # noqa: E402  (puts the repository on sys.path)
import numpy as np

from harness.evaluate.predict import score_labels_per_pair, score_labels_shared

DECODE_TARGET_MS = 5.0


# --------------------------------------------------------------------------- inputs


def load_cell(cells: Path, unit: str) -> tuple[list[dict[str, Any]], dict[str, Any],
                                               list[dict[str, Any]], str]:
    """(eval rows, unit spec, training samples, cell folder name) of the first composed cell."""
    manifests = sorted(cells.glob("*/manifest.json"))
    if not manifests:
        raise SystemExit(f"no composed cells under {cells} (run: harness compose "
                         "experiments/demo.yaml --out runs/gpu_bench/cells)")
    folder = manifests[0].parent
    spec = json.loads(manifests[0].read_text(encoding="utf-8"))["spec"]
    if unit not in spec["units"] or spec["units"][unit]["kind"] != "label":
        raise SystemExit(f"unit {unit!r} is not a label unit of {folder}")
    def read(path: Path) -> list[dict[str, Any]]:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(x) for x in fh if x.strip()]

    return (read(folder / "eval.jsonl"), spec["units"][unit], read(folder / "train.jsonl"),
            folder.name)


def smoke_inputs(seed: int) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """Demo-like label items for the CPU smoke run."""
    rng = np.random.default_rng(seed)
    words = ["refund", "order", "late", "password", "charge", "parcel", "login", "close",
             "account", "twice", "where", "is", "my", "screen", "error"]
    labels = ["billing", "shipping", "technical", "account"]
    rows, train = [], []
    for i in range(40):
        prompt = " ".join(words[k] for k in rng.integers(0, len(words), int(rng.integers(3, 20))))
        ref = labels[int(rng.integers(0, 4))]
        rows.append({"id": f"e{i}", "unit": "intent_routing", "prompt": prompt,
                     "reference": ref, "tags": {}})
        train.append({"prompt": prompt, "target": f"Answer: {ref}"})
    unit = {"kind": "label", "labels": labels, "answer_marker": "Answer:"}
    return rows, unit, train


def build_model(args: argparse.Namespace, train: list[dict[str, Any]], device: Any
                ) -> tuple[Any, Any, str]:
    """The checkpoint given, else a random SmolLM2-135M-shaped (tiny in smoke) Llama."""
    if args.checkpoint:
        from harness.students.build import load_checkpoint

        model, tok = load_checkpoint(args.checkpoint)
        return model.to(device).eval(), tok, str(args.checkpoint)
    from harness.students.build import train_tokenizer

    shape = gc.TINY if args.smoke else gc.SMOLLM2_135M
    tok = train_tokenizer([t["prompt"] + "\n" for t in train] + [t["target"] for t in train],
                          int(shape["vocab_size"]))
    model = gc.llama(shape, args.seed, tok.pad_token_id, tok.eos_token_id)
    return model.to(device).eval(), tok, "random init, " + ("tiny" if args.smoke
                                                            else "SmolLM2-135M shape")


# --------------------------------------------------------------------------- label scoring


def lm_eval_scores(model: Any, tok: Any, unit_name: str, unit: dict[str, Any],
                   items: list[dict[str, Any]], device: Any, batch_size: int, max_len: int,
                   limit: int | None = None
                   ) -> tuple[float, float, np.ndarray | None, float]:
    """``simple_evaluate`` of the exported task.

    Returns:
        (seconds end to end, seconds inside ``HFLM.loglikelihood`` (the model's share, without
        task building and data loading), per-item log-likelihoods (items, labels), accuracy).
    """
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.evaluate.lmeval import export_tasks, task_name

    with tempfile.TemporaryDirectory(prefix="lmeval_tasks_") as tmp:
        export_tasks("bench", {unit_name: unit}, items, Path(tmp))
        gc.sync(device)
        t0 = time.perf_counter()
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, max_length=max_len,
                  device=str(device))
        inner = [0.0]
        original = lm.loglikelihood

        def timed_loglikelihood(*a: Any, **k: Any) -> Any:
            gc.sync(device)
            t = time.perf_counter()
            res = original(*a, **k)
            gc.sync(device)
            inner[0] += time.perf_counter() - t
            return res

        lm.loglikelihood = timed_loglikelihood  # simple_evaluate looks it up on the instance
        manager = TaskManager(include_path=tmp, include_defaults=False)
        out = lm_eval.simple_evaluate(model=lm, tasks=[task_name("bench", unit_name)],
                                      task_manager=manager, log_samples=True,
                                      bootstrap_iters=0, limit=limit)
        gc.sync(device)
        seconds = time.perf_counter() - t0
    name = task_name("bench", unit_name)
    acc = float(out["results"][name]["acc,none"])
    lls = None
    samples = (out.get("samples") or {}).get(name)
    if samples:
        lls = np.full((len(items), len(unit["labels"])), np.nan)
        for s in samples:
            lls[int(s["doc_id"])] = [float(_first(r)) for r in s["filtered_resps"]]
    return seconds, inner[0], lls, acc


def _first(resp: Any) -> Any:
    """lm-eval keeps each choice's response as ``(loglikelihood, is_greedy)``, sometimes in a
    one-element list."""
    while isinstance(resp, list | tuple):
        resp = resp[0]
    return resp


def bench_scoring(model: Any, tok: Any, unit_name: str, unit: dict[str, Any],
                  items: list[dict[str, Any]], device: Any, dtype: str, args: argparse.Namespace
                  ) -> dict[str, Any]:
    """Items/s and accuracy of the three scorers at one dtype."""
    import torch

    model = model.to(dtype=getattr(torch, dtype))
    labels, marker = list(unit["labels"]), unit["answer_marker"]
    prompts = [r["prompt"] for r in items]
    gold = np.array([labels.index(r["reference"]) for r in items])
    out: dict[str, Any] = {"items": len(items), "labels": len(labels), "dtype": dtype}
    lls: dict[str, np.ndarray] = {}
    scorers = (("harness_shared", score_labels_shared, 64),
               (f"harness_shared_b{args.big_batch}", score_labels_shared, args.big_batch),
               ("harness_per_pair", score_labels_per_pair, 64))
    for name, fn, bs in scorers:
        fn(model, tok, prompts[:32], labels, marker, device, batch_size=bs,
           max_len=args.max_len)  # warm-up
        gc.sync(device)
        t0 = time.perf_counter()
        ll = fn(model, tok, prompts, labels, marker, device, batch_size=bs, max_len=args.max_len)
        gc.sync(device)
        seconds = time.perf_counter() - t0
        lls[name] = ll
        out[name] = {"items_per_s": round(len(items) / seconds, 1),
                     "seconds": round(seconds, 4), "batch_size": bs,
                     "accuracy": float((ll.argmax(1) == gold).mean())}
    out["shared_vs_per_pair_max_abs_ll_diff"] = float(
        np.abs(lls["harness_shared"] - lls["harness_per_pair"]).max())
    try:
        lm_eval_scores(model, tok, unit_name, unit, items, device, 32, args.max_len, limit=32)
        seconds, inner, ll_lm, acc = lm_eval_scores(model, tok, unit_name, unit, items, device,
                                                    32, args.max_len)
        # items/s counts HFLM.loglikelihood only (kinder to lm-eval than its end-to-end time,
        # which adds task building and data loading); both are recorded.
        out["lm_eval_hflm"] = {"items_per_s": round(len(items) / inner, 1),
                               "seconds_loglikelihood": round(inner, 4),
                               "items_per_s_end_to_end": round(len(items) / seconds, 1),
                               "seconds_end_to_end": round(seconds, 4), "accuracy": acc,
                               "batch_size": 32}
        if ll_lm is not None:
            diff = np.abs(lls["harness_shared"] - ll_lm)
            out["shared_vs_lm_eval_max_abs_ll_diff"] = float(np.nanmax(diff))
            out["argmax_disagreements_vs_lm_eval"] = int(
                (lls["harness_shared"].argmax(1) != np.nanargmax(ll_lm, 1)).sum())
        out["accuracy_identical"] = out["harness_shared"]["accuracy"] == acc
        out["speedup_vs_lm_eval"] = round(out["harness_shared"]["items_per_s"]
                                          / out["lm_eval_hflm"]["items_per_s"], 3)
        out[f"speedup_vs_lm_eval_b{args.big_batch}"] = round(
            out[f"harness_shared_b{args.big_batch}"]["items_per_s"]
            / out["lm_eval_hflm"]["items_per_s"], 3)
    except ImportError as exc:
        out["lm_eval_hflm"] = {"error": f"lm-eval not installed ({exc}); on the GPU machine: "
                               "bash ../shared/device/wheels.sh lm-eval"}
    except Exception as exc:  # keep the harness figures when lm-eval fails
        out["lm_eval_hflm"] = {"error": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc()[-3000:]}
    out["speedup_shared_vs_per_pair"] = round(out["harness_shared"]["items_per_s"]
                                              / out["harness_per_pair"]["items_per_s"], 3)
    return out


# --------------------------------------------------------------------------- generation


def _generate(model: Any, ids: Any, mask: Any, new: int, pad: int, kw: Any) -> Any:
    """Greedy ``new`` tokens exactly; ``kw`` is a dict of generate arguments or a function of
    the batch size returning one (a preallocated cache, reset for each call)."""
    extra = kw(ids.shape[0]) if callable(kw) else kw
    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new,
                          min_new_tokens=new, do_sample=False, pad_token_id=pad, **extra)


def _timed(device: Any, fn: Any) -> float:
    gc.sync(device)
    t0 = time.perf_counter()
    fn()
    gc.sync(device)
    return time.perf_counter() - t0


class FixedStaticCache:
    """One preallocated ``StaticCache`` per batch size, of one length for every prompt, reset
    before each call: the decode step keeps one shape, so transformers' compiled decode step
    (CUDA graphs) is built once instead of once per prompt length."""

    def __init__(self, model: Any, max_cache_len: int, compile_decode: bool) -> None:
        self.model, self.max_cache_len, self.compile_decode = model, max_cache_len, compile_decode
        self.caches: dict[int, Any] = {}

    def __call__(self, batch: int) -> dict[str, Any]:
        from transformers import StaticCache

        cache = self.caches.get(batch)
        if cache is None:
            try:  # transformers 5: layers allocate lazily on first use
                cache = StaticCache(config=self.model.config, max_cache_len=self.max_cache_len)
            except TypeError:  # older signature
                cache = StaticCache(config=self.model.config, max_batch_size=batch,
                                    max_cache_len=self.max_cache_len, device=self.model.device,
                                    dtype=self.model.dtype)
            self.caches[batch] = cache
        else:
            cache.reset()
        out: dict[str, Any] = {"past_key_values": cache}
        if not self.compile_decode:
            out["disable_compile"] = True
        return out


def bench_generation(model: Any, tok: Any, prompts: list[str], device: Any,
                     args: argparse.Namespace) -> dict[str, Any]:
    """Batch-1 TTFT and decode ms/token, batched throughput, per generate configuration."""
    import torch

    dtype = getattr(torch, args.gen_dtype)
    model = model.to(dtype=dtype)
    pad = tok.pad_token_id
    enc = [tok(p + "\n", add_special_tokens=False, return_tensors="pt")
           for p in prompts[:args.prompts]]
    batch = tok([p + "\n" for p in (prompts * args.gen_batch)[:args.gen_batch]],
                add_special_tokens=False, return_tensors="pt", padding=True,
                padding_side="left")
    longest = max(batch["input_ids"].shape[1], *(e["input_ids"].shape[1] for e in enc))
    cache_len = 64 * math.ceil((longest + args.new_tokens) / 64)
    configs: dict[str, Any] = {
        "generate_dynamic_cache": {},
        "generate_static_cache": {"cache_implementation": "static"},
        "generate_static_cache_preallocated": FixedStaticCache(model, cache_len, True),
        "generate_static_cache_preallocated_no_compile": FixedStaticCache(model, cache_len,
                                                                          False),
    }
    out: dict[str, Any] = {"dtype": args.gen_dtype, "new_tokens": args.new_tokens,
                           "distinct_prompts": len(enc), "timed_runs": args.runs,
                           "batch_size": args.gen_batch, "preallocated_cache_len": cache_len,
                           "mean_prompt_tokens": float(np.mean([e["input_ids"].shape[1]
                                                                for e in enc])),
                           "variants": {}}
    with torch.inference_mode():
        for name, kw in configs.items():
            try:
                firsts, fulls = [], []
                for r in range(len(enc) + args.runs):  # one warm-up per distinct prompt
                    e = enc[r % len(enc)]
                    ids, mask = e["input_ids"].to(device), e["attention_mask"].to(device)
                    first = _timed(device, partial(_generate, model, ids, mask, 1, pad, kw))
                    full = _timed(device, partial(_generate, model, ids, mask, args.new_tokens,
                                                  pad, kw))
                    if r >= len(enc):
                        firsts.append(first)
                        fulls.append(full)
                ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
                _generate(model, ids, mask, args.new_tokens, pad, kw)  # warm-up
                batched = _timed(device, partial(_generate, model, ids, mask, args.new_tokens,
                                                 pad, kw))
            except Exception as exc:
                out["variants"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                         "traceback": traceback.format_exc()[-3000:]}
                continue
            decode_ms = [(f - t) / (args.new_tokens - 1) * 1000
                         for f, t in zip(fulls, firsts, strict=True)]
            out["variants"][name] = {
                "ttft_p50_ms": round(float(np.percentile(np.array(firsts) * 1000, 50)), 3),
                "ttft_p95_ms": round(float(np.percentile(np.array(firsts) * 1000, 95)), 3),
                "decode_ms_per_token_p50": round(float(np.percentile(decode_ms, 50)), 3),
                "decode_ms_per_token_p95": round(float(np.percentile(decode_ms, 95)), 3),
                "e2e_p50_ms": round(float(np.percentile(np.array(fulls) * 1000, 50)), 3),
                "batched_items_per_s": round(args.gen_batch / batched, 2),
                "batched_tokens_per_s": round(args.gen_batch * args.new_tokens / batched, 1),
            }
    ok = {k: v for k, v in out["variants"].items() if "error" not in v}
    if ok:
        best = min(ok, key=lambda k: ok[k]["decode_ms_per_token_p50"])
        out["best_batch1"] = {"variant": best,
                              "decode_ms_per_token": ok[best]["decode_ms_per_token_p50"],
                              "ttft_ms": ok[best]["ttft_p50_ms"],
                              "target_ms": DECODE_TARGET_MS,
                              "meets_target": ok[best]["decode_ms_per_token_p50"]
                              <= DECODE_TARGET_MS}
        if "generate_dynamic_cache" in ok:
            out["best_batch1"]["speedup_vs_dynamic_cache"] = round(
                ok["generate_dynamic_cache"]["decode_ms_per_token_p50"]
                / ok[best]["decode_ms_per_token_p50"], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model, few items, CPU unless --device: proves the script runs")
    ap.add_argument("--device", default=None)
    ap.add_argument("--cells", type=Path, default=gc.REPO / "runs/gpu_bench/cells")
    ap.add_argument("--unit", default="intent_routing", help="the label unit to score")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="a checkpoint folder (default: random 135M-shaped Llama)")
    ap.add_argument("--dtypes", default=None,
                    help="scoring dtypes (default float32,bfloat16 on CUDA, float32 on CPU)")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--big-batch", type=int, default=256,
                    help="items per forward of the second shared-prefix run (the worker's "
                    "default is 64)")
    ap.add_argument("--gen-dtype", default=None, help="default bfloat16 on CUDA, else float32")
    ap.add_argument("--new-tokens", type=int, default=None, help="default 64")
    ap.add_argument("--prompts", type=int, default=None, help="distinct batch-1 prompts (8)")
    ap.add_argument("--runs", type=int, default=None, help="timed batch-1 runs (default 24)")
    ap.add_argument("--gen-batch", type=int, default=None, help="batched throughput (32)")
    ap.add_argument("--skip", default="", help="comma list: scoring, generation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results; with --smoke a temp folder)")
    ap.add_argument("--name", default=None, help="result file name (default gpu_eval.json)")
    args = ap.parse_args()
    args.out = args.out or gc.default_out(args.smoke)
    import torch

    device = gc.pick_device(args.device or ("cpu" if args.smoke else None))
    cuda = device.type == "cuda"
    if args.smoke:
        torch.set_num_threads(1)
    dtypes = (args.dtypes or ("float32,bfloat16" if cuda else "float32")).split(",")
    args.gen_dtype = args.gen_dtype or ("bfloat16" if cuda else "float32")
    args.new_tokens = args.new_tokens or (4 if args.smoke else 64)
    args.prompts = args.prompts or (2 if args.smoke else 8)
    args.runs = args.runs or (2 if args.smoke else 24)
    args.gen_batch = args.gen_batch or (4 if args.smoke else 32)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.smoke:
        rows, unit, train = smoke_inputs(args.seed)
        source = "synthetic demo-like items (smoke)"
    else:
        rows, unit, train, cell = load_cell(args.cells, args.unit)
        source = f"demo eval set, cell {cell}"
    items = [r for r in rows if r["unit"] == args.unit]
    model, tok, what = build_model(args, train, device)
    env = gc.environment(device)
    result: dict[str, Any] = {
        "benchmark": "gpu_eval", "smoke": args.smoke, "environment": env,
        "model": {"checkpoint": what, "params": gc.param_counts(model),
                  "attn_implementation": model.config._attn_implementation},
        "data": {"source": source, "unit": args.unit, "labels": list(unit["labels"]),
                 "items": len(items)},
        "scoring": {}, "generation": None}
    if "scoring" not in skip:
        for dtype in dtypes:
            result["scoring"][dtype] = bench_scoring(model, tok, args.unit, unit, items,
                                                     device, dtype, args)
    if "generation" not in skip:
        gen_prompts = [r["prompt"] for r in rows if r["unit"] != args.unit] or \
            [r["prompt"] for r in rows]
        result["generation"] = bench_generation(model, tok, gen_prompts, device, args)
    head: dict[str, Any] = {}
    for dtype, s in result["scoring"].items():
        if "speedup_vs_lm_eval" in s:
            head[f"speedup_vs_lm_eval_{dtype}"] = s["speedup_vs_lm_eval"]
            head[f"accuracy_identical_{dtype}"] = s["accuracy_identical"]
    if result["generation"] and result["generation"].get("best_batch1"):
        head["batch1_decode_ms_per_token"] = result["generation"]["best_batch1"][
            "decode_ms_per_token"]
    result["headline"] = head
    path = gc.write_result(result, args.out, args.name or
                           ("gpu_eval_smoke.json" if args.smoke else "gpu_eval.json"))
    rows_out = []
    for dtype, s in result["scoring"].items():
        for k in ("harness_shared", f"harness_shared_b{args.big_batch}", "harness_per_pair",
                  "lm_eval_hflm"):
            fig = s.get(k, {})
            rows_out.append({"part": f"score {dtype}", "variant": k,
                             "items/s": fig.get("items_per_s"), "acc": fig.get("accuracy"),
                             "ms/token": None, "ttft_ms": None,
                             "note": (fig.get("error") or "")[:50]})
    for k, fig in ((result["generation"] or {}).get("variants") or {}).items():
        rows_out.append({"part": "generate", "variant": k,
                         "items/s": fig.get("batched_items_per_s"), "acc": None,
                         "ms/token": fig.get("decode_ms_per_token_p50"),
                         "ttft_ms": fig.get("ttft_p50_ms"), "note": (fig.get("error") or "")[:50]})
    print(f"\nwrote {path}")
    print("headline:", json.dumps(head))
    print(gc.table(rows_out, ["part", "variant", "items/s", "acc", "ms/token", "ttft_ms",
                              "note"]))


if __name__ == "__main__":
    main()
