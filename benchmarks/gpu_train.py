"""Benchmark: the harness trainer vs a Hugging Face Trainer baseline, side by side on one device.

Both train the same randomly initialised SmolLM2-135M-shaped Llama (``--smoke``: a tiny one) on
the same examples in the same order, with the same optimiser settings (AdamW betas 0.9/0.95,
eps 1e-8, lr, weight decay, cosine schedule with the same warm-up steps, gradient clipping),
the same items per optimizer step and seed; bf16 autocast on CUDA for both. The baseline is
what a user would write with stock tools: ``Trainer`` with ``bf16=True``,
``DataCollatorForSeq2Seq`` padding each batch to its longest item (labels padded with -100,
prompt tokens labelled -100), the model's own loss, fused AdamW on CUDA. Its sampler is made
sequential over a dataset laid out in the shared order, so both trainers see identical batches
and their losses can be compared.

Harness variants (``--variants``):

- ``harness_fast``: the fast path (``student.train.fast: on``): fixed-shape token-budget
  micro-batches, FlexAttention document masks (CUDA), chunked cross-entropy, the decoder layers
  compiled once (compile seconds reported apart, bounded by what is left of ``--budget-s``);
- ``harness_padded``: the plain path, padded micro-batches, eager (the harness before);
- ``harness_packed_chunked``: the plain path with packing and the chunked cross-entropy.

Two data sets:

- ``a``: the demo's composed training set (``--cells``: a folder of composed cells, the cell
  ``--cell-label`` is used; without one, demo-like synthetic samples, said in the JSON), its
  prompts and targets tokenised with a byte-level BPE trained on them, cut at 512 tokens;
- ``b``: longer sequences, 128-1,024 tokens (prompt 30-70 %, the rest a rationale-like target),
  drawn from the same token stream.

Figures per variant, after ``--warmup`` optimizer steps, CUDA synchronised: useful tokens/s
(real, non-padding tokens), padding fraction, peak memory (CUDA max allocated), MFU = model
FLOPs of the useful tokens / second / the bf16 peak of a large matmul measured in the same run
(formula in :func:`gpu_common.training_flops`), compile seconds, and the mean training loss per
logging window next to the baseline's (the speed must not come from training differently).

Bounded: ``--budget-s`` is the script's wall-clock budget; a variant that would start with too
little of it left is skipped (said in the JSON), the compile warm-up gets a deadline from what
is left, and the JSON is rewritten after every variant so a run cut short keeps its figures.
The JSON's ``"table"`` rows (``gpu_common.table_row``) carry the issue's targets: speed-up vs
the HF Trainer on a and b, MFU on b, and whether the window losses match.

Usage::

    python benchmarks/gpu_train.py --out DIR --budget-s 150 [--cells DIR] [--sets a,b]
    python benchmarks/gpu_train.py --smoke --out /tmp/x      # CPU, tiny model, < 60 s
"""

from __future__ import annotations

import argparse
import dataclasses
import gc as garbage
import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import gpu_common as gc  # noqa: E402  (puts the repository on sys.path)
import numpy as np

from harness.train.loop import Example, encode_examples, train_examples

#: Harness variants: name -> the student.train settings it sets.
VARIANTS: dict[str, dict[str, Any]] = {
    "harness_fast": {"fast": "on"},
    "harness_padded": {"fast": "off"},
    "harness_packed_chunked": {"fast": "off", "packing": True, "chunked_ce": True},
}
BASELINE = "hf_trainer"
#: Seconds a variant needs at least to be worth starting (model build, a few steps).
MIN_VARIANT_S = 15.0


# --------------------------------------------------------------------------- data


def read_cell_samples(cells: Path, label: str) -> tuple[list[dict[str, Any]], str] | None:
    """The composed training samples of the cell labelled ``label`` (else the largest cell);
    None when ``cells`` holds no composed cell (``*/manifest.json``, one level or two down)."""
    found = []
    for manifest in sorted([*cells.glob("*/manifest.json"), *cells.glob("*/*/manifest.json")]):
        m = json.loads(manifest.read_text(encoding="utf-8"))
        size = (manifest.parent / "train.jsonl").stat().st_size
        found.append((m.get("label") == label, size, manifest.parent, m.get("label")))
    if not found:
        return None
    _, _, folder, got = max(found, key=lambda f: (f[0], f[1]))
    with (folder / "train.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()], f"{folder.name} ({got})"


def smoke_samples(n: int, seed: int) -> list[dict[str, Any]]:
    """Demo-like samples for the CPU smoke run: a prompt of 3-30 words, a short answer."""
    rng = np.random.default_rng(seed)
    words = ["refund", "order", "late", "password", "charge", "parcel", "login", "close",
             "account", "twice", "where", "is", "my", "screen", "error", "amount", "EUR"]
    out = []
    for _ in range(n):
        prompt = " ".join(words[k] for k in rng.integers(0, len(words), int(rng.integers(3, 30))))
        answer = ["billing", "shipping", "technical", "account"][int(rng.integers(0, 4))]
        out.append({"prompt": prompt, "target": f"Answer: {answer}\nReason: {prompt[:40]}",
                    "weight": 1.0})
    return out


def long_examples(stream: list[int], n: int, lo: int, hi: int, eos: int, seed: int
                  ) -> list[Example]:
    """``n`` examples of ``lo``-``hi`` tokens cut from ``stream`` (real token statistics),
    prompt 30-70 % of each, the rest its target, EOS last."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(lo, hi + 1))
        start = int(rng.integers(0, max(1, len(stream) - length)))
        ids = [stream[(start + k) % len(stream)] for k in range(length - 1)] + [eos]
        out.append(Example(input_ids=ids, target_start=max(1, int(length * rng.uniform(0.3, 0.7))),
                           weight=1.0))
    return out


def fixed_schedule(n_examples: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of ``batch_size`` indices: seeded permutations, one after another."""
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    while len(stream) < steps * batch_size:
        stream += [int(i) for i in rng.permutation(n_examples)]
    return [stream[s * batch_size:(s + 1) * batch_size] for s in range(steps)]


# --------------------------------------------------------------------------- runs


def run_hf_trainer(model: Any, tokenizer: Any, examples: list[Example],
                   schedule: list[list[int]], hp: dict[str, Any], device: Any, warmup: int,
                   seed: int) -> dict[str, Any]:
    """Train with ``transformers.Trainer`` (see the module docstring for the set-up)."""
    import torch
    from transformers import (
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    cuda = device.type == "cuda"
    rows = []
    for idx in schedule:  # the dataset laid out in the shared order, read sequentially
        for i in idx:
            ex = examples[i]
            labels = [-100] * ex.target_start + ex.input_ids[ex.target_start:]
            rows.append({"input_ids": ex.input_ids, "attention_mask": [1] * len(ex.input_ids),
                         "labels": labels})
    steps = len(schedule)
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    extra: dict[str, Any] = {}
    if "train_sampling_strategy" in fields:
        extra["train_sampling_strategy"] = "sequential"
    out_dir = tempfile.mkdtemp(prefix="hf_trainer_")
    args = TrainingArguments(
        output_dir=out_dir, per_device_train_batch_size=len(schedule[0]),
        gradient_accumulation_steps=1, max_steps=steps, learning_rate=hp["lr"],
        adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, weight_decay=hp["weight_decay"],
        max_grad_norm=hp["clip"], lr_scheduler_type="cosine",
        warmup_steps=int(hp["warmup_ratio"] * steps), bf16=cuda, use_cpu=not cuda,
        optim="adamw_torch_fused" if cuda else "adamw_torch", logging_steps=warmup,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=seed, data_seed=seed,
        dataloader_num_workers=0, remove_unused_columns=False, **extra)
    marks: dict[str, float] = {}
    losses: dict[int, float] = {}

    class Clock(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step in (warmup, steps):
                gc.sync(device)
                marks[f"step{state.global_step}"] = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any
                   ) -> None:
            if logs and "loss" in logs:
                losses[int(state.global_step)] = float(logs["loss"])

    class Trained(Trainer):  # only where this transformers has no "sequential" strategy
        def _get_train_sampler(self, *a: Any, **k: Any) -> Any:
            return torch.utils.data.SequentialSampler(self.train_dataset)  # type: ignore[arg-type]

    cls = Trainer if extra else Trained
    trainer = cls(model=model, args=args, train_dataset=rows,
                  data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest",
                                                       label_pad_token_id=-100),
                  callbacks=[Clock()])
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    trainer.train()
    seconds = marks[f"step{steps}"] - marks[f"step{warmup}"]
    return {"seconds": seconds, "losses": losses,
            "peak_memory_mb": (torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None),
            "sampler": "train_sampling_strategy=sequential" if extra
            else "SequentialSampler (subclass)"}


def run_harness(model: Any, pad_id: int, examples: list[Example], schedule: list[list[int]],
                hp: dict[str, Any], settings: dict[str, Any], device: Any, warmup: int,
                seed: int) -> dict[str, Any]:
    """Train with :func:`harness.train.loop.train_examples` on the same schedule (one
    schedule entry = one optimizer step, as the baseline's)."""
    import torch

    rows: list[dict[str, Any]] = []
    cfg = {**hp, "epochs": 1, "batch_size": len(schedule[0]), "grad_accum": 1,
           "log_every": warmup, **settings}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    summary = train_examples(model, examples, cfg, pad_id=pad_id, seed=seed, device=device,
                             schedule=schedule, log=rows.append)
    at = {r["step"]: r for r in rows}
    steps = len(schedule)
    keys = ("fast", "token_budget", "micro_batch_shape", "micro_batches", "attention",
            "fast_chunked_ce", "fast_setup_seconds", "compile", "compile_seconds",
            "compile_graphs", "recompiles", "packing", "chunked_ce")
    return {"seconds": at[steps]["elapsed_s"] - at[warmup]["elapsed_s"],
            "losses": {r["step"]: r["loss_mean"] for r in rows},
            "peak_memory_mb": (torch.cuda.max_memory_allocated(device) / 2**20
                               if device.type == "cuda" else None),
            "padded_tokens_run": summary["padded_tokens"],
            "in_effect": {k: summary[k] for k in keys if k in summary}}


def hf_padded_tokens(examples: list[Example], schedule: list[list[int]]) -> int:
    """Positions in the baseline's tensors: each batch padded to its longest item."""
    return sum(len(b) * max(len(examples[i].input_ids) for i in b) for b in schedule)


class Clock:
    """The script's wall-clock budget (``--budget-s``; None: unbounded)."""

    def __init__(self, budget_s: float | None) -> None:
        self.t0 = time.perf_counter()
        self.budget_s = budget_s

    def left(self) -> float:
        """Seconds left (infinite without a budget)."""
        if self.budget_s is None:
            return float("inf")
        return self.budget_s - (time.perf_counter() - self.t0)


def compare_losses(fig: dict[str, Any], base: dict[str, Any], tol: float) -> None:
    """Add the window-loss comparison and the speed-up vs the baseline to ``fig``."""
    common = sorted(set(fig["window_losses"]) & set(base["window_losses"]), key=int)
    rel = [abs(fig["window_losses"][s] - base["window_losses"][s])
           / max(abs(base["window_losses"][s]), 1e-9) for s in common]
    fig["loss_max_rel_diff_vs_baseline"] = round(max(rel), 5) if rel else None
    fig["losses_match"] = bool(rel) and max(rel) <= tol
    fig["speedup_vs_hf_trainer"] = round(fig["useful_tokens_per_s"]
                                         / base["useful_tokens_per_s"], 3)


def bench_set(name: str, examples: list[Example], tokenizer: Any, shape: dict[str, Any],
              args: argparse.Namespace, device: Any, peak_tflops: float, capacity: int,
              clock: Clock, save: Any, variants: list[str],
              out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``variants`` (the baseline among them, first) on one data set, added to ``out`` (the
    set's figures from an earlier pass, if any); returns the set's figures. ``save(out)`` is
    called after each variant with the figures so far."""
    import torch

    schedule = fixed_schedule(len(examples), args.batch_size, args.steps, args.seed)
    hp = {"lr": args.lr, "weight_decay": args.weight_decay, "warmup_ratio": args.warmup_ratio,
          "clip": args.clip, "max_len": capacity}
    timed = schedule[args.warmup:]
    useful_timed = sum(len(examples[i].input_ids) for b in timed for i in b)
    useful_run = sum(len(examples[i].input_ids) for b in schedule for i in b)
    init = gc.llama(shape, args.seed, tokenizer.pad_token_id, tokenizer.eos_token_id)
    state = {k: v.detach().clone() for k, v in init.state_dict().items()}
    flops = gc.training_flops(init, [len(examples[i].input_ids) for b in timed for i in b])
    del init
    lengths = [len(e.input_ids) for e in examples]
    out = out or {
        "examples": len(examples), "steps": args.steps, "warmup_steps": args.warmup,
        "items_per_optimizer_step": args.batch_size, "row_capacity_tokens": capacity,
        "length_tokens": {"mean": round(float(np.mean(lengths)), 1), "min": min(lengths),
                          "p50": int(np.median(lengths)), "max": max(lengths)},
        "useful_tokens_timed": useful_timed, "model_flops_timed": flops["model_flops"],
        "variants": {}}
    tol = 1e-3 if device.type == "cpu" else args.loss_tolerance
    out["loss_tolerance_rel"] = tol
    for variant in variants:
        left = clock.left()
        if left < MIN_VARIANT_S:
            out["variants"][variant] = {"skipped": f"budget: {left:.0f} s left"}
            print(f"[{name}] {variant}: skipped, {left:.0f} s of the budget left", flush=True)
            continue
        model = gc.llama(shape, args.seed, tokenizer.pad_token_id, tokenizer.eos_token_id)
        model.load_state_dict(state)
        try:
            if variant == BASELINE:
                res = run_hf_trainer(model, tokenizer, examples, schedule, hp, device,
                                     args.warmup, args.seed)
                padded = hf_padded_tokens(examples, schedule)
            else:
                settings = dict(VARIANTS[variant])
                if variant == "harness_fast":
                    settings["fast_compile"] = True  # on CPU too (the smoke checks it)
                    settings["compile_backend"] = args.compile_backend
                    settings["compile_mode"] = args.compile_mode
                    # The compile warm-up may use what is left, less the steps themselves.
                    settings["compile_budget_s"] = max(10.0, min(args.compile_budget_s,
                                                                 left - MIN_VARIANT_S))
                    if args.token_budget:
                        settings["token_budget"] = args.token_budget
                res = run_harness(model, tokenizer.pad_token_id, examples, schedule, hp,
                                  settings, device, args.warmup, args.seed)
                padded = res.pop("padded_tokens_run")
        except Exception as exc:  # one failing variant must not lose the others' figures
            out["variants"][variant] = {"error": f"{type(exc).__name__}: {exc}",
                                        "traceback": traceback.format_exc()[-3000:]}
            print(f"[{name}] {variant}: FAILED {type(exc).__name__}: {exc}", flush=True)
            save(out)
            continue
        finally:
            del model
            garbage.collect()  # the Trainer's optimizer state must go before the next peak
            if device.type == "cuda":
                torch.cuda.empty_cache()
        tps = useful_timed / res["seconds"]
        fig = {"useful_tokens_per_s": round(tps, 1), "seconds_timed": round(res["seconds"], 4),
               "padding_fraction": round(1 - useful_run / padded, 4),
               "peak_memory_mb": (round(res["peak_memory_mb"], 1)
                                  if res["peak_memory_mb"] is not None else None),
               "model_tflops_per_s": round(flops["model_flops"] / res["seconds"] / 1e12, 3),
               "mfu": round(flops["model_flops"] / res["seconds"] / 1e12 / peak_tflops, 4),
               "mfu_with_lm_head": round(flops["with_lm_head"] / res["seconds"] / 1e12
                                         / peak_tflops, 4),
               "window_losses": {str(k): round(v, 5) for k, v in sorted(res["losses"].items())}}
        for key in ("in_effect", "sampler"):
            if key in res:
                fig[key] = res[key]
        base = out["variants"].get(BASELINE, {})
        if variant != BASELINE and "useful_tokens_per_s" in base:
            compare_losses(fig, base, tol)
        out["variants"][variant] = fig
        extra = fig.get("in_effect", {})
        print(f"[{name}] {variant}: {tps:,.0f} useful tokens/s"
              + (f", compile {extra.get('compile')} {extra.get('compile_seconds')} s"
                 if "compile_seconds" in extra else ""), flush=True)
        save(out)
    fast = out["variants"].get("harness_fast", {})
    out["headline"] = ({"variant": "harness_fast",
                        "speedup_vs_hf_trainer": fast["speedup_vs_hf_trainer"],
                        "mfu": fast["mfu"], "losses_match": fast["losses_match"],
                        "baseline_mfu": out["variants"][BASELINE].get("mfu")}
                       if "speedup_vs_hf_trainer" in fast else None)
    return out


def table(result: dict[str, Any], measured: bool) -> list[dict[str, Any]]:
    """The JSON's ``"table"``: the issue's training targets, from the fast variant of each
    set (``met`` None where the run measures no target: CPU, smoke, a missing figure)."""
    rows = []
    for key, res in result["sets"].items():
        fast = res.get("variants", {}).get("harness_fast", {})
        note = fast.get("error", fast.get("skipped", ""))[:80] if (
            "error" in fast or "skipped" in fast) else ""
        comp = fast.get("in_effect", {})
        if comp:
            note = (f"compile {comp.get('compile')} {comp.get('compile_seconds')} s; "
                    f"budget {comp.get('token_budget')} tokens")
        rows.append(gc.table_row("gpu_train", f"train_{key}_speedup_vs_hf_trainer",
                                 fast.get("speedup_vs_hf_trainer"), measured, note=note))
        if key == "b":
            mfu = fast.get("mfu")
            rows.append(gc.table_row("gpu_train", "train_b_mfu_pct",
                                     round(100 * mfu, 2) if mfu is not None else None,
                                     measured))
        rows.append(gc.table_row("gpu_train", f"train_{key}_window_losses_match",
                                 fast.get("losses_match"), measured, target=("==", 1.0),
                                 note=f"max rel diff {fast.get('loss_max_rel_diff_vs_baseline')}"
                                 f" (tolerance {res.get('loss_tolerance_rel')})"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny model, few steps, CPU unless --device: proves the script runs")
    ap.add_argument("--device", default=None, help="cuda | cpu (default: cuda when available)")
    ap.add_argument("--cells", type=Path, default=gc.REPO / "runs/gpu_bench/cells",
                    help="composed demo cells (harness compose experiments/demo.yaml --out ...)")
    ap.add_argument("--cell-label", default="multi_judged/answer_only/x1/s0")
    ap.add_argument("--sets", default="a,b", help="comma list of a (demo), b (long)")
    ap.add_argument("--variants", default=None,
                    help="harness variants to run after the baseline, in order: "
                    + ", ".join(VARIANTS) + " (default: harness_fast,harness_padded; "
                    "--smoke: all)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default 40)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps (default 10)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="items per optimizer step (default 32)")
    ap.add_argument("--token-budget", type=int, default=None,
                    help="the fast path's tokens per micro-batch (default: the trainer's own "
                    "choice per set, harness.train.budget.choose_budget; --smoke 256)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--warmup-ratio", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loss-tolerance", type=float, default=0.03,
                    help="largest relative difference of a window's mean loss from the "
                    "baseline's that still counts as a match on GPU (bf16 noise)")
    ap.add_argument("--compile-backend", default=None,
                    help="torch.compile backend (default inductor; aot_eager in --smoke)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (default none)")
    ap.add_argument("--compile-budget-s", type=float, default=90.0,
                    help="deadline of the fast path's compile warm-up (less when less of "
                    "--budget-s is left)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="wall-clock budget of the whole script in seconds (default none)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results folder (default benchmarks/results; with --smoke a temp folder)")
    ap.add_argument("--name", default=None,
                    help="result file name (default gpu_train.json; --smoke gpu_train_smoke.json)")
    args = ap.parse_args()
    clock = Clock(args.budget_s)
    args.out = args.out or gc.default_out(args.smoke)
    import torch

    device = gc.pick_device(args.device or ("cpu" if args.smoke else None))
    if args.smoke:
        torch.set_num_threads(1)
    args.steps = args.steps or (4 if args.smoke else 40)
    args.warmup = args.warmup or (2 if args.smoke else 10)
    args.batch_size = args.batch_size or (4 if args.smoke else 32)
    if args.token_budget is None and args.smoke:
        args.token_budget = 256
    args.compile_backend = args.compile_backend or ("aot_eager" if args.smoke else "inductor")
    names = args.variants or (",".join(VARIANTS) if args.smoke else
                              "harness_fast,harness_padded")
    args.variants = [v.strip() for v in names.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    if args.warmup >= args.steps or args.steps % args.warmup:
        raise SystemExit("--steps must be a multiple of --warmup and larger (the logging "
                         "windows of both trainers are --warmup steps long)")
    shape = gc.TINY if args.smoke else gc.SMOLLM2_135M
    env = gc.environment(device)
    peak = gc.peak_matmul_tflops(device)
    print(f"device {env['device_name']}: matmul peak {peak['tflops']} TFLOP/s ({peak['dtype']})",
          flush=True)

    from harness.students.build import train_tokenizer

    cell = None if args.smoke else read_cell_samples(args.cells, args.cell_label)
    if cell is None:
        samples = smoke_samples(48 if args.smoke else 2000, args.seed)
        source = "synthetic demo-like samples" + (" (smoke)" if args.smoke else
                                                  f" (no composed cells under {args.cells})")
    else:
        samples, source = cell
    len_a, lo_b, hi_b = (64, 16, 96) if args.smoke else (512, 128, 1024)
    samples = [{**s, "weight": 1.0} for s in samples]  # the baseline has no sample weights
    tokenizer = train_tokenizer([s["prompt"] + "\n" for s in samples]
                                + [s["target"] for s in samples], int(shape["vocab_size"]))
    ex_a = encode_examples(tokenizer, samples, len_a)
    stream = [t for e in ex_a for t in e.input_ids]
    n_b = max(args.steps * args.batch_size // 2, 8 * args.batch_size)
    ex_b = long_examples(stream, n_b, lo_b, hi_b, tokenizer.eos_token_id, args.seed)
    sets = {"a": (ex_a, len_a, f"demo composed set: {source}, cut at {len_a} tokens"),
            "b": (ex_b, hi_b, f"long set: {lo_b}-{hi_b} tokens from the demo token stream, "
                              "prompt 30-70 %")}
    model_probe = gc.llama(shape, args.seed)
    result: dict[str, Any] = {
        "benchmark": "gpu_train", "smoke": args.smoke, "environment": env,
        "matmul_peak": peak,
        "model": {"shape": shape, "params": gc.param_counts(model_probe),
                  "tokenizer_vocab": len(tokenizer), "init": "random, seeded"},
        "settings": {"steps": args.steps, "warmup_steps": args.warmup,
                     "items_per_optimizer_step": args.batch_size, "lr": args.lr,
                     "weight_decay": args.weight_decay, "warmup_ratio": args.warmup_ratio,
                     "clip": args.clip, "seed": args.seed, "betas": [0.9, 0.95],
                     "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
                     "token_budget": args.token_budget or "trainer's choice",
                     "compile_backend": args.compile_backend, "compile_mode": args.compile_mode,
                     "budget_s": args.budget_s},
        "mfu_formula": gc.training_flops.__doc__,
        "sets": {}}
    del model_probe
    measured = device.type == "cuda" and not args.smoke
    name = args.name or ("gpu_train_smoke.json" if args.smoke else "gpu_train.json")

    def save(set_key: str | None = None, partial: dict[str, Any] | None = None) -> Path:
        if set_key is not None and partial is not None:
            result["sets"][set_key] = partial
        result["headline"] = {k: v.get("headline") for k, v in result["sets"].items()}
        result["table"] = table(result, measured)
        result["seconds"] = round(time.perf_counter() - clock.t0, 1)
        return gc.write_result(result, args.out, name)

    # Two passes: the baseline and the first variant (the targets' figures) on every set
    # first, the other variants after, while the budget lasts.
    passes = [[BASELINE, *args.variants[:1]], args.variants[1:]]
    for variants in filter(None, passes):
        for key in [s.strip() for s in args.sets.split(",") if s.strip()]:
            examples, capacity, what = sets[key]
            res = bench_set(key, examples, tokenizer, shape, args, device, peak["tflops"],
                            capacity, clock,
                            lambda partial, k=key, w=what: save(k, {**partial, "data": w}),
                            variants, result["sets"].get(key))
            res["data"] = what
            result["sets"][key] = res
    path = save()
    rows = []
    for key, res in result["sets"].items():
        for variant, fig in res["variants"].items():
            rows.append({"set": key, "variant": variant,
                         "useful_tok/s": fig.get("useful_tokens_per_s"),
                         "padding": fig.get("padding_fraction"),
                         "peak_MB": fig.get("peak_memory_mb"), "MFU": fig.get("mfu"),
                         "x_HF": fig.get("speedup_vs_hf_trainer"),
                         "loss_ok": fig.get("losses_match"),
                         "compile_s": fig.get("in_effect", {}).get("compile_seconds"),
                         "error": (fig.get("error") or fig.get("skipped") or "")[:60]})
    print(f"\nwrote {path}")
    print(gc.table(rows, ["set", "variant", "useful_tok/s", "padding", "peak_MB", "MFU", "x_HF",
                          "loss_ok", "compile_s", "error"]))
    print()
    print(gc.table(result["table"], ["benchmark", "metric", "value", "target", "met", "note"]))


if __name__ == "__main__":
    main()
