"""Benchmark: the worker's label scoring against an lm-eval-style baseline, and batch-1 decode.

**Label scoring** at the worker's default settings: :func:`harness.evaluate.predict.
score_labels` with :func:`~harness.evaluate.predict.default_token_budget` (shared prompt, forwards
sized by padded tokens on CUDA), in fp32 (the worker's dtype), over ``--items`` items of one
label unit of the demo eval set (cycled when the unit has fewer), after a warm-up on 32 items,
CUDA synchronised. The baseline is lm-eval's ``HFLM`` (batch 32) running the unit exported as a
``multiple_choice`` task when lm-eval is importable. **The GPU machine has no lm-eval**: there
the baseline is the plain per-pair scorer (:func:`~harness.evaluate.predict.
score_labels_per_pair`, 32 rows per forward), which issues exactly HFLM's loglikelihood requests
(one ``(context, " label")`` row per item and label, no shared prompt); the JSON and the table
say which baseline was used. Reported: items/s of both, their ratio, and whether the accuracies
are identical in fp32 (with the largest log-likelihood difference and the argmax
disagreements).

**Batch-1 decode**: :func:`harness.evaluate.latency.measure` exactly as the worker calls it, on
the worker's decode path (``static_compiled`` on CUDA: static KV cache and a compiled decode
step; its warm-up, i.e. compilation, timed once), ``--new-tokens`` fixed tokens over real eval
prompts; and the ``dynamic_eager`` path (``model.generate``) for comparison. Reported: decode
ms/token, warm-up seconds, the path of each figure.

Model: a randomly initialised SmolLM2-135M-shaped Llama (``--smoke``: a tiny one) with a
tokenizer trained on the cell's text, or ``--checkpoint``. Imports torch, transformers, numpy
(lm-eval only when present).

Usage::

    python benchmarks/gpu_eval.py --cells DIR [--out DIR]      # composed cells (gpu_matrix.py
                                                               # prepare, or harness compose)
    python benchmarks/gpu_eval.py --smoke --out /tmp/x         # CPU, tiny model, seconds
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import gpu_common as gc  # noqa: E402  (puts the repository on sys.path)
import numpy as np

from harness.evaluate.predict import default_token_budget, score_labels, score_labels_per_pair

BENCH = "gpu_eval"


def load_cell(cells: Path, unit: str) -> tuple[list[dict[str, Any]], dict[str, Any],
                                               list[dict[str, Any]], str]:
    """(eval rows, unit spec, training samples, cell folder name) of the first composed cell."""
    manifests = sorted(cells.glob("*/manifest.json"))
    if not manifests:
        raise SystemExit(f"no composed cells under {cells} (python benchmarks/gpu_matrix.py "
                         "prepare, then extract benchmarks/data/demo_cells.tar.gz)")
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
    """The checkpoint given, else a random SmolLM2-135M-shaped (tiny in smoke) Llama, fp32."""
    if args.checkpoint:
        from harness.students.build import load_checkpoint

        model, tok = load_checkpoint(args.checkpoint)
        return model.to(device).float().eval(), tok, str(args.checkpoint)
    from harness.students.build import train_tokenizer

    shape = gc.TINY if args.smoke else gc.SMOLLM2_135M
    tok = train_tokenizer([t["prompt"] + "\n" for t in train] + [t["target"] for t in train],
                          int(shape["vocab_size"]))
    model = gc.llama(shape, args.seed, tok.pad_token_id, tok.eos_token_id)
    return model.to(device).eval(), tok, "random init, " + ("tiny" if args.smoke
                                                            else "SmolLM2-135M shape")


# --------------------------------------------------------------------------- label scoring


def lm_eval_loglikelihoods(model: Any, tok: Any, unit_name: str, unit: dict[str, Any],
                           items: list[dict[str, Any]], device: Any, max_len: int
                           ) -> tuple[float, np.ndarray]:
    """lm-eval's ``HFLM`` (batch 32) on the exported task: (seconds inside
    ``HFLM.loglikelihood``, per-item log-likelihoods (items, labels)). Raises ImportError
    without lm-eval."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from harness.lmeval import export_tasks, task_name

    name = task_name("bench", unit_name)
    with tempfile.TemporaryDirectory(prefix="lmeval_tasks_") as tmp:
        export_tasks("bench", {unit_name: unit}, items, Path(tmp))
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=32, max_length=max_len,
                  device=str(device))
        inner = [0.0]
        original = lm.loglikelihood

        def timed(*a: Any, **k: Any) -> Any:
            gc.sync(device)
            t = time.perf_counter()
            res = original(*a, **k)
            gc.sync(device)
            inner[0] += time.perf_counter() - t
            return res

        lm.loglikelihood = timed  # simple_evaluate looks it up on the instance
        out = lm_eval.simple_evaluate(model=lm, tasks=[name], log_samples=True,
                                      task_manager=TaskManager(include_path=tmp,
                                                               include_defaults=False),
                                      bootstrap_iters=0)
    lls = np.full((len(items), len(unit["labels"])), np.nan)
    for s in out["samples"][name]:
        lls[int(s["doc_id"])] = [float(_first(r)) for r in s["filtered_resps"]]
    return inner[0], lls


def _first(resp: Any) -> Any:
    """lm-eval keeps each choice's response as ``(loglikelihood, is_greedy)``, sometimes in a
    one-element list."""
    while isinstance(resp, list | tuple):
        resp = resp[0]
    return resp


def bench_scoring(model: Any, tok: Any, unit_name: str, unit: dict[str, Any],
                  items: list[dict[str, Any]], device: Any, args: argparse.Namespace
                  ) -> dict[str, Any]:
    """Items/s and accuracy of the worker's scorer and of the baseline, fp32."""
    labels, marker = list(unit["labels"]), unit["answer_marker"]
    prompts = [r["prompt"] for r in items]
    gold = np.array([labels.index(r["reference"]) for r in items])
    budget = default_token_budget(device)

    def harness(ps: list[str]) -> np.ndarray:
        return score_labels(model, tok, ps, labels, marker, device, max_len=args.max_len,
                            token_budget=budget)

    def per_pair(ps: list[str]) -> np.ndarray:
        return score_labels_per_pair(model, tok, ps, labels, marker, device, batch_size=32,
                                     max_len=args.max_len)

    def timed(fn: Any) -> tuple[float, np.ndarray]:
        fn(prompts[:32])  # warm-up
        gc.sync(device)
        t0 = time.perf_counter()
        ll = fn(prompts)
        gc.sync(device)
        return time.perf_counter() - t0, ll

    out: dict[str, Any] = {"items": len(items), "labels": len(labels), "dtype": "float32",
                           "harness": {"call": "score_labels (the worker's default)",
                                       "token_budget": budget}}
    secs, ll_h = timed(harness)
    out["harness"].update(items_per_s=round(len(items) / secs, 1), seconds=round(secs, 4),
                          accuracy=float((ll_h.argmax(1) == gold).mean()))
    try:
        if args.baseline == "per_pair":
            raise ImportError("per-pair baseline asked for (--baseline per_pair)")
        lm_eval_loglikelihoods(model, tok, unit_name, unit, items[:32], device, args.max_len)
        secs, ll_b = lm_eval_loglikelihoods(model, tok, unit_name, unit, items, device,
                                            args.max_len)
        out["baseline"] = {"name": "lm_eval_hflm", "batch_size": 32,
                           "note": "lm-eval HFLM; time inside HFLM.loglikelihood"}
    except ImportError as exc:
        # only a missing lm-eval falls back; a broken import of the harness itself must fail
        if args.baseline == "lm_eval" or (exc.name or "").startswith("harness"):
            raise
        secs, ll_b = timed(per_pair)
        out["baseline"] = {"name": "per_pair_emulating_hflm", "batch_size": 32,
                           "note": f"no HFLM ({exc}): the plain per-pair scorer, one "
                                   "(context, label) row per request as HFLM issues them"}
    out["baseline"].update(items_per_s=round(len(items) / secs, 1), seconds=round(secs, 4),
                           accuracy=float((np.nanargmax(ll_b, 1) == gold).mean()))
    out["accuracy_identical"] = out["harness"]["accuracy"] == out["baseline"]["accuracy"]
    out["argmax_disagreements"] = int((ll_h.argmax(1) != np.nanargmax(ll_b, 1)).sum())
    out["max_abs_loglik_diff"] = float(np.nanmax(np.abs(ll_h - ll_b)))
    out["speedup_vs_baseline"] = round(out["harness"]["items_per_s"]
                                       / out["baseline"]["items_per_s"], 3)
    return out


# --------------------------------------------------------------------------- decode


def bench_decode(model: Any, tok: Any, prompts: list[str], device: Any,
                 args: argparse.Namespace) -> dict[str, Any]:
    """Batch-1 figures on the worker's decode path and on ``dynamic_eager``."""
    from harness.evaluate.latency import measure
    from harness.evaluate.static_decode import DYNAMIC_EAGER, default_decode_path

    path = args.decode_path or default_decode_path(device)
    out: dict[str, Any] = {"new_tokens": args.new_tokens, "dtype": "float32", "paths": {}}
    for name, runs in ((path, args.runs), (DYNAMIC_EAGER, max(2, args.runs // 6))):
        if name in out["paths"]:
            continue
        try:
            rec = measure(model, tok, prompts, device, new_tokens=args.new_tokens, runs=runs,
                          warmup=2, batch_size=4, decode_path=name)
        except Exception as exc:
            out["paths"][name] = {"error": f"{type(exc).__name__}: {exc}",
                                  "traceback": traceback.format_exc()[-2000:]}
            continue
        out["paths"][name] = {
            "decode_path": rec["decode_path"], "warmup_s": rec["warmup_s"],
            "decode_fallback": rec.get("decode_fallback"), "runs": runs,
            "decode_ms_per_token": round(1000 / rec["decode_tokens_per_s"], 4),
            "ttft_p50_ms": round(rec["ttft_p50_ms"], 3),
            "latency_p50_ms": round(rec["latency_p50_ms"], 3),
            "static_cache_len": rec.get("static_cache_len")}
    out["worker_path"] = path
    return out


def table(result: dict[str, Any], measured: bool) -> list[dict[str, Any]]:
    """The suite's rows: scoring speedup and accuracy identity, decode ms/token and warm-up."""
    rows = []
    s = result.get("scoring")
    if s:
        rows.append(gc.table_row(BENCH, "scoring_speedup_vs_baseline", s["speedup_vs_baseline"],
                                 measured, note=f"baseline {s['baseline']['name']}"))
        rows.append(gc.table_row(BENCH, "scoring_accuracy_identical_fp32",
                                 s["accuracy_identical"], measured,
                                 note=f"{s['argmax_disagreements']} argmax disagreements"))
    d = result.get("decode")
    if d:
        fig = d["paths"].get(d["worker_path"], {})
        path = fig.get("decode_path", d["worker_path"])
        rows.append(gc.table_row(BENCH, "decode_ms_per_token_batch1",
                                 fig.get("decode_ms_per_token"), measured,
                                 note=f"path {path}" + (" (fallback)" if fig.get(
                                     "decode_fallback") else "")))
        rows.append(gc.table_row(BENCH, "decode_warmup_s", fig.get("warmup_s"),
                                 measured and path != "dynamic_eager", note=f"path {path}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model, few items, CPU unless --device: proves the script runs")
    ap.add_argument("--device", default=None)
    ap.add_argument("--cells", type=Path, default=gc.REPO / "runs/gpu_bench/cells")
    ap.add_argument("--unit", default="intent_routing", help="the label unit to score")
    ap.add_argument("--items", type=int, default=None, help="items scored (default 200)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="a checkpoint folder (default: random 135M-shaped Llama)")
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--baseline", choices=["auto", "lm_eval", "per_pair"], default="auto",
                    help="scoring baseline: lm-eval HFLM when importable (auto), or the "
                    "per-pair scorer emulating its requests")
    ap.add_argument("--decode-path", default=None,
                    help="static_compiled | static_eager | dynamic_eager (default: the "
                    "worker's: static_compiled on CUDA; static_eager in --smoke)")
    ap.add_argument("--new-tokens", type=int, default=None, help="default 64 (smoke 6)")
    ap.add_argument("--runs", type=int, default=None, help="timed batch-1 runs (default 20)")
    ap.add_argument("--skip", default="", help="comma list: scoring, decode")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results; with --smoke a temp folder)")
    ap.add_argument("--name", default=None, help="result file name (default gpu_eval.json)")
    args = ap.parse_args()
    args.out = args.out or gc.default_out(args.smoke)
    import torch

    device = gc.pick_device(args.device or ("cpu" if args.smoke else None))
    if args.smoke:
        torch.set_num_threads(1)
        args.decode_path = args.decode_path or "static_eager"
    args.new_tokens = args.new_tokens or (6 if args.smoke else 64)
    args.runs = args.runs or (4 if args.smoke else 20)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.smoke:
        rows, unit, train = smoke_inputs(args.seed)
        source = "synthetic demo-like items (smoke)"
    else:
        rows, unit, train, cell = load_cell(args.cells, args.unit)
        source = f"demo eval set, cell {cell}"
    unit_rows = [r for r in rows if r["unit"] == args.unit]
    n_items = args.items or (len(unit_rows) if args.smoke else 200)
    items = [{**unit_rows[k % len(unit_rows)], "id": f"i{k}"} for k in range(n_items)]
    model, tok, what = build_model(args, train, device)
    result: dict[str, Any] = {
        "benchmark": BENCH, "smoke": args.smoke, "environment": gc.environment(device),
        "model": {"checkpoint": what, "params": gc.param_counts(model),
                  "attn_implementation": model.config._attn_implementation},
        "data": {"source": source, "unit": args.unit, "labels": list(unit["labels"]),
                 "items": n_items, "distinct_items": len(unit_rows)},
        "scoring": None, "decode": None}
    t0 = time.perf_counter()
    if "scoring" not in skip:
        result["scoring"] = bench_scoring(model, tok, args.unit, unit, items, device, args)
        # written now too, so a decode step cut short by the suite's bound keeps these figures
        result["table"] = table(result, device.type == "cuda" and not args.smoke)
        gc.write_result(result, args.out, args.name or
                        ("gpu_eval_smoke.json" if args.smoke else "gpu_eval.json"))
    if "decode" not in skip:
        prompts = [r["prompt"] for r in rows if r["unit"] != args.unit][:16] or \
            [r["prompt"] for r in rows][:16]
        result["decode"] = bench_decode(model, tok, prompts, device, args)
    result["seconds"] = round(time.perf_counter() - t0, 2)
    measured = device.type == "cuda" and not args.smoke
    result["table"] = table(result, measured)
    path = gc.write_result(result, args.out, args.name or
                           ("gpu_eval_smoke.json" if args.smoke else "gpu_eval.json"))
    print(f"\nwrote {path}")
    print(gc.table(result["table"], ["benchmark", "metric", "value", "target", "met", "note"]))


if __name__ == "__main__":
    main()
