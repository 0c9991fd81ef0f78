"""The training loop: causal-LM SFT on target tokens, read top to bottom.

:func:`train` tokenises and hands over to :func:`train_examples`, which does everything else in
order: choose the micro-batches, build the optimiser and schedule, then loop optimizer steps ->
micro-batches. Imports torch, transformers and numpy only (the GPU worker's path).

- Loss: cross-entropy on target tokens (+ EOS) only; each token weighted by its sample's
  ``weight`` from the composer; normalised by the total weight of the optimizer step's target
  tokens, so gradient accumulation gives the same update as one big batch.
- Optional soft targets from a white-box teacher sharing the tokenizer:
  ``(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)`` on the same positions.
- AdamW (fused on CUDA), linear warm-up then cosine decay, gradient clipping.
- bf16 autocast on CUDA, fp32 on CPU; seeded, deterministic on CPU.
- Length-aware batching: samples sorted by length into batches (shuffled per epoch), so padding
  is minimal; padded positions are masked out of attention and loss.
- A non-finite loss stops training with :class:`NonFiniteLoss` (on CPU at once; on CUDA at the
  next logged step, so the loop does not wait for the GPU after every step).

Performance switches (``student.train``; none changes what is computed, each has a CPU test
showing it computes the same loss and gradients as the plain path):

- ``packing``: a micro-batch's examples are concatenated into balanced rows of at most
  ``max_len`` tokens, with per-example ``position_ids`` and a block-diagonal causal mask
  (:mod:`harness.train.packing`), so almost no FLOP goes to padding and no example sees
  another; a batch that packing would not shrink (equal lengths) stays padded.
- ``chunked_ce``: the LM head and cross-entropy run only on target positions, chunk by chunk,
  computing the gradient in the forward (:class:`LinearCrossEntropy`): the (tokens x vocab)
  logits are never all alive at once. Off with a teacher (KD needs the full logits) and on
  models whose logits are not a plain ``hidden @ W.T``.
- ``compile``: ``torch.compile`` of the model's forward (the model object itself is left
  uncompiled, so evaluation and saving see the plain module).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.train.packing import collate_packed, packing_isolates_examples

IGNORE = -100


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stopped."""


@dataclass(frozen=True)
class Example:
    """One tokenised sample: ``input_ids`` (prompt + target + eos) and where the target starts."""

    input_ids: list[int]
    target_start: int
    weight: float


@dataclass(frozen=True)
class TrainOptions:
    """How the loop computes (not what): the performance switches of ``student.train``.

    Read from the cfg dict with defaults, because manifests composed before a switch existed
    do not carry it; :class:`harness.spec.models.TrainSpec` documents the YAML keys.
    ``compile_backend``, ``compile_mode``, ``compile_dynamic`` (torch.compile's ``dynamic``;
    None: recompile as dynamic once a second shape shows up) and ``log_every`` are not YAML
    keys: benchmarks and tests set them in the dict.
    """

    packing: bool = False
    chunked_ce: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    compile_dynamic: bool | None = None
    log_every: int = 10

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> TrainOptions:
        """The options present in ``cfg`` (the YAML's ``student.train``), defaults elsewhere."""
        return cls(packing=bool(cfg.get("packing") or False),
                   chunked_ce=bool(cfg.get("chunked_ce") or False),
                   compile=bool(cfg.get("compile") or False),
                   compile_backend=str(cfg.get("compile_backend") or "inductor"),
                   compile_mode=cfg.get("compile_mode"),
                   compile_dynamic=cfg.get("compile_dynamic"),
                   log_every=max(1, int(cfg.get("log_every") or 10)))


def encode_examples(tokenizer: Any, samples: list[dict[str, Any]], max_len: int) -> list[Example]:
    """Tokenise ``prompt + "\\n"`` and ``target`` separately (so the boundary is exact), append
    EOS, and cut long prompts from the left so the target always fits in ``max_len``."""
    prompts = tokenizer([s["prompt"] + "\n" for s in samples],
                        add_special_tokens=False)["input_ids"]
    targets = tokenizer([s["target"] for s in samples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = []
    for s, p, t in zip(samples, prompts, targets, strict=True):
        t = [*t, eos][: max_len - 1]
        p = p[-(max_len - len(t)):]
        out.append(Example(input_ids=p + t, target_start=len(p), weight=float(s["weight"])))
    return out


def length_batches(examples: Sequence[Example], batch_size: int, rng: np.random.Generator
                   ) -> list[list[int]]:
    """Indices grouped into batches of similar length, in a shuffled batch order."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].input_ids), i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def collate(examples: Sequence[Example], idx: list[int], pad_id: int, device: Any
            ) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (IGNORE off-target), weights."""
    import torch

    width = max(len(examples[i].input_ids) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    weights = torch.empty(len(idx), dtype=torch.float32)
    for row, i in enumerate(idx):
        ex = examples[i]
        n = len(ex.input_ids)
        ids[row, :n] = torch.tensor(ex.input_ids)
        mask[row, :n] = 1
        labels[row, ex.target_start:n] = ids[row, ex.target_start:n]
        weights[row] = ex.weight
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "weights": weights}
    return {k: v.to(device) for k, v in batch.items()}


def micro_batch(examples: Sequence[Example], idx: list[int], pad_id: int, max_len: int,
                packing: bool) -> dict[str, Any]:
    """One micro-batch on the CPU, padded (:func:`collate`) or packed
    (:func:`~harness.train.packing.collate_packed`), in one layout for the loop.

    With ``packing`` the batch is packed into rows of at most ``max_len`` tokens unless that
    holds at least as many positions as padding every item to the longest (a batch of items of
    equal length, as length grouping makes, gains nothing from packing).

    Returns:
        ``input_ids``, ``labels`` (rows, width); ``attention_mask`` (padded) or
        ``position_ids`` (packed) (rows, width); ``token_weights`` (rows, width) float32;
        ``n_tokens`` (int, real tokens); ``weight_sum`` (float, total weight of the target
        tokens, the loss normaliser's share of this micro-batch); ``padded_tokens`` (int).
    """
    import torch

    b: dict[str, Any] | None = None
    if packing:
        b = collate_packed(examples, idx, pad_id, max_len)
        if b["input_ids"].numel() >= len(idx) * max(len(examples[i].input_ids) for i in idx):
            b = None
    if b is None:
        b = collate(examples, idx, pad_id, torch.device("cpu"))
        b["token_weights"] = b.pop("weights")[:, None].expand_as(b["labels"]).contiguous()
        b["n_tokens"] = int(b["attention_mask"].sum())
    valid = b["labels"][:, 1:] != IGNORE
    b["weight_sum"] = float(valid.float().mul(b["token_weights"][:, 1:]).sum())
    b["padded_tokens"] = int(b["input_ids"].numel())
    return b


def token_losses(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Per-token CE on shifted positions.

    Args:
        logits: (batch, seq, vocab)
        labels: (batch, seq) with IGNORE where no loss applies.

    Returns:
        ``ce`` (batch, seq-1) float32 and ``valid`` (batch, seq-1) bool.
    """
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    valid = shift_labels != IGNORE
    ce = F.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                         shift_labels.clamp(min=0).reshape(-1), reduction="none")
    return ce.view(shift_labels.shape) * valid, valid


def kd_token_losses(student_logits: Any, teacher_logits: Any, valid: Any, temperature: float
                    ) -> Any:
    """T^2 * KL(teacher_T || student_T) per shifted position, (batch, seq-1), zero off-target."""
    import torch.nn.functional as F

    t = temperature
    s = F.log_softmax(student_logits[:, :-1].float() / t, dim=-1)
    p = F.log_softmax(teacher_logits[:, :-1].float() / t, dim=-1)
    kl = (p.exp() * (p - s)).sum(-1)
    return kl * (t * t) * valid


def _linear_ce_function() -> Any:
    """The autograd Function behind :func:`linear_cross_entropy` (built lazily: torch import)."""
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        """``sum_i w_i * CE(h_i @ W.T, y_i)`` with the gradient computed chunk by chunk in the
        forward, so at most ``chunk x vocab`` logits exist at any time and nothing is
        recomputed in the backward (the idea of Liger's fused linear cross-entropy)."""

        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, token_weights: Any,
                    chunk: int, compute_dtype: Any) -> Any:
            n = hidden.shape[0]
            w = weight.to(compute_dtype)
            acc = torch.promote_types(compute_dtype, torch.float32)  # softmax/accumulation dtype
            grad_h = torch.empty_like(hidden)
            grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device)
            total = torch.zeros((), dtype=acc, device=hidden.device)
            with torch.autocast(device_type=hidden.device.type, enabled=False):
                for s in range(0, n, chunk):
                    h = hidden[s:s + chunk].to(compute_dtype)
                    y = targets[s:s + chunk]
                    tw = token_weights[s:s + chunk]
                    logits = (h @ w.T).to(acc)                       # (c, vocab)
                    lse = torch.logsumexp(logits, dim=-1)            # (c,)
                    picked = logits.gather(1, y[:, None]).squeeze(1)
                    total += ((lse - picked) * tw.to(acc)).sum()
                    # d/dlogits of w * CE = w * (softmax - onehot), reusing the logits buffer.
                    g = logits.sub_(lse[:, None]).exp_()
                    g[torch.arange(g.shape[0], device=g.device), y] -= 1.0
                    g.mul_(tw[:, None].to(acc))
                    g = g.to(compute_dtype)
                    grad_h[s:s + chunk] = (g @ w).to(hidden.dtype)
                    grad_w += (g.T @ h).to(acc)
            ctx.save_for_backward(grad_h, grad_w)
            ctx.weight_dtype = weight.dtype
            return total

        @staticmethod
        def backward(ctx: Any, grad_out: Any) -> tuple[Any, ...]:
            grad_h, grad_w = ctx.saved_tensors
            return (grad_h * grad_out.to(grad_h.dtype), (grad_w * grad_out).to(ctx.weight_dtype),
                    None, None, None, None)

    return LinearCrossEntropy


_LINEAR_CE: Any = None


def linear_cross_entropy(hidden: Any, weight: Any, targets: Any, token_weights: Any, *,
                         chunk: int | None = None, compute_dtype: Any = None) -> Any:
    """Weighted cross-entropy of a linear LM head, without materialising all logits.

    Args:
        hidden: (n, hidden) final hidden states at the positions that predict a target.
        weight: (vocab, hidden) the LM head's weight (tied or not).
        targets: (n,) long target token ids.
        token_weights: (n,) float32 per-token loss weights.
        chunk: rows per chunk (default: about 2**27 logits, 512 MB in fp32).
        compute_dtype: matmul dtype (default: the autocast dtype when autocast is on, else
            ``hidden.dtype``), the same precision the plain path's autocast uses.

    Returns:
        scalar float32: ``sum_i token_weights[i] * CE_i`` (differentiable in ``hidden`` and
        ``weight``).
    """
    import torch

    global _LINEAR_CE
    if _LINEAR_CE is None:
        _LINEAR_CE = _linear_ce_function()
    if compute_dtype is None:
        dev = hidden.device.type
        compute_dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
                         else hidden.dtype)
    if chunk is None:
        chunk = max(64, (1 << 27) // int(weight.shape[0]))
    return _LINEAR_CE.apply(hidden, weight, targets, token_weights, chunk, compute_dtype)


def plain_linear_head(model: Any, device: Any) -> Any | None:
    """The LM head's weight when the model's logits are exactly ``last_hidden @ W.T``.

    Checked numerically on 8 tokens (so a softcap, logit scale or bias is caught whatever the
    architecture calls it); None when they differ or the model has no separate backbone.
    """
    import torch

    head = model.get_output_embeddings()
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(head, torch.nn.Linear) or head.bias is not None or backbone is None:
        return None
    ids = torch.arange(8, device=device)[None] % int(head.weight.shape[0])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(input_ids=ids, use_cache=False).logits.float()
            hid = backbone(input_ids=ids, use_cache=False).last_hidden_state
            mine = (hid @ head.weight.T).float()
    finally:
        model.train(was_training)
    ok = float((ref - mine).abs().max()) <= 1e-4 * (float(ref.abs().max()) + 1.0)
    return head.weight if ok else None


def _to_device(t: Any, device: Any) -> Any:
    """A CPU tensor on ``device`` (pinned and asynchronous on CUDA, so the host does not wait)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def micro_loss(forward: Any, b: dict[str, Any], *, head_weight: Any | None, device: Any,
               teacher: Any | None = None, alpha: float = 0.0, temperature: float = 1.0
               ) -> Any:
    """The weighted loss sum of one micro-batch (not yet divided by the step's normaliser).

    Args:
        forward: the model (or its compiled wrapper); with ``head_weight``, its backbone (or
            the backbone's compiled wrapper), which returns ``last_hidden_state``.
        b: a micro-batch from :func:`micro_batch` (CPU tensors; moved here).
        head_weight: (vocab, hidden) LM head weight for the chunked loss, or None for the
            plain path (full logits, then cross-entropy).
        teacher, alpha, temperature: soft targets (plain path only).

    Returns:
        scalar float32: sum over target tokens of ``weight * loss``.
    """
    import torch

    cuda = device.type == "cuda"
    inputs: dict[str, Any] = {"input_ids": _to_device(b["input_ids"], device), "use_cache": False}
    if "position_ids" in b:  # packed: the position resets mark the examples, no mask given
        inputs["position_ids"] = _to_device(b["position_ids"], device)
    else:
        inputs["attention_mask"] = _to_device(b["attention_mask"], device)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
        out = forward(**inputs)
    if head_weight is not None:
        # Only the positions predicting a target token reach the head (selected with
        # CPU-made indices: no device sync).
        sel = (b["labels"][:, 1:] != IGNORE).flatten().nonzero().squeeze(1)
        last = out.last_hidden_state
        hidden = last[:, :-1].reshape(-1, last.shape[-1])
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            return linear_cross_entropy(
                hidden.index_select(0, _to_device(sel, device)), head_weight,
                _to_device(b["labels"][:, 1:].flatten()[sel], device),
                _to_device(b["token_weights"][:, 1:].flatten()[sel], device))
    logits = out.logits
    ce, valid = token_losses(logits, _to_device(b["labels"], device))
    per_token = ce
    if teacher is not None:
        with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                             enabled=cuda):
            t_logits = teacher(**inputs).logits
        kd = kd_token_losses(logits, t_logits, valid, temperature)
        per_token = (1 - alpha) * ce + alpha * kd
    return (per_token * _to_device(b["token_weights"], device)[:, 1:]).sum()


def train(model: Any, tokenizer: Any, samples: list[dict[str, Any]], cfg: dict[str, Any], *,
          seed: int, device: Any, teacher: Any | None = None, distill: dict[str, Any] | None = None,
          log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place on composed samples.

    Args:
        model: a causal LM (moved to ``device`` here).
        tokenizer: its tokenizer.
        samples: rows of ``train.jsonl`` (``prompt``, ``target``, ``weight``).
        cfg: the YAML's ``student.train`` (epochs, min_steps, batch_size, grad_accum, lr,
            weight_decay, warmup_ratio, clip, max_len, and the switches of
            :class:`TrainOptions`).
        seed: shuffling and dropout seed.
        device: a ``torch.device``.
        teacher: optional white-box teacher (same tokenizer) for soft targets.
        distill: ``alpha`` and ``temperature`` when ``teacher`` is given.
        log: called with one dict per logged step (every ``log_every`` optimizer steps and
            the last): ``step``, ``loss`` (that step's), ``loss_mean`` (mean step loss since the
            previous row), ``lr``, ``grad_norm``, ``tokens_per_s``, ``tokens`` (real tokens so
            far), ``elapsed_s`` (since the loop started; CUDA synchronised).

    Returns:
        summary: steps, tokens, seconds, final loss, tokens/s, the switches in effect.

    Raises:
        NonFiniteLoss: the loss became NaN/inf.
    """
    examples = encode_examples(tokenizer, samples, int(cfg["max_len"]))
    return train_examples(model, examples, cfg, pad_id=tokenizer.pad_token_id, seed=seed,
                          device=device, teacher=teacher, distill=distill, log=log)


def train_examples(model: Any, examples: Sequence[Example], cfg: dict[str, Any], *,
                   pad_id: int, seed: int, device: Any,
                   schedule: list[list[int]] | None = None, teacher: Any | None = None,
                   distill: dict[str, Any] | None = None,
                   log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` in place on tokenised examples (what :func:`train` does after
    tokenising; benchmarks call it directly).

    Args:
        schedule: the micro-batches, as lists of indices into ``examples``, in order; default:
            length-grouped batches reshuffled every epoch, for ``epochs`` (at least
            ``min_steps`` optimizer steps). A given schedule fixes the data order exactly
            (e.g. to match another trainer's).
        Other arguments as in :func:`train`.

    Returns:
        summary: ``steps``, ``examples``, ``tokens`` (real, non-padding tokens seen),
        ``padded_tokens`` (tokens in the tensors, padding included),
        ``packed_micro_batches`` (how many took the packed layout), ``train_seconds``,
        ``final_loss``, ``tokens_per_s``, ``packing`` / ``chunked_ce`` / ``compile`` (what was
        in effect, with the reason when a requested switch was turned off).
    """
    import torch
    from transformers import get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opts = TrainOptions.from_cfg(cfg)
    cuda = device.type == "cuda"
    model.to(device).train()
    if teacher is not None:
        teacher.to(device).eval()
    max_len = int(cfg["max_len"])
    bs, accum = int(cfg["batch_size"]), int(cfg["grad_accum"])
    epochs = float(cfg["epochs"])
    batches_per_epoch = math.ceil(len(examples) / bs)
    if schedule is None:
        total_micro = max(1, math.ceil(batches_per_epoch * epochs),
                          int(cfg.get("min_steps", 0)) * accum)
        # The micro-batch schedule across epochs (a fractional last epoch is cut short).
        schedule = []
        while len(schedule) < total_micro:
            schedule += length_batches(examples, bs, rng)
        schedule = schedule[:total_micro]
    total_micro = len(schedule)
    total_steps = max(1, math.ceil(total_micro / accum))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(cfg["weight_decay"])},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=float(cfg["lr"]), betas=(0.9, 0.95), fused=cuda)
    sched = get_cosine_schedule_with_warmup(opt, int(cfg["warmup_ratio"] * total_steps),
                                            total_steps)
    alpha = float(distill["alpha"]) if teacher is not None and distill else 0.0
    temp = float(distill["temperature"]) if teacher is not None and distill else 1.0

    # Switches: each is verified on this model before use, and reported in the summary.
    in_effect: dict[str, Any] = {"packing": False, "chunked_ce": False, "compile": False}
    packing = opts.packing
    if packing and not packing_isolates_examples(model, device):
        packing = False
        in_effect["packing"] = "off: this transformers version does not isolate packed examples"
    elif packing:
        in_effect["packing"] = True
    head_weight = None
    if opts.chunked_ce:
        head_weight = None if teacher is not None else plain_linear_head(model, device)
        in_effect["chunked_ce"] = (True if head_weight is not None else
                                   "off: distillation needs full logits" if teacher is not None
                                   else "off: the logits are not a plain linear head")
    # With the chunked loss the backbone runs alone (hidden states only, no full logits).
    forward = getattr(model, model.base_model_prefix) if head_weight is not None else model
    if opts.compile:
        forward = torch.compile(forward, backend=opts.compile_backend, mode=opts.compile_mode,
                                dynamic=opts.compile_dynamic)
        in_effect["compile"] = opts.compile_backend + (f"/{opts.compile_mode}"
                                                       if opts.compile_mode else "")

    step = 0
    tokens_seen = padded_seen = packed_batches = 0
    t_start = time.perf_counter()
    t_log = t_start
    tokens_since_log = 0
    last_loss = float("nan")
    bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss so far (CUDA)
    window_loss = torch.zeros((), dtype=torch.float32, device=device)  # summed since last log
    window_steps = 0
    for first in range(0, total_micro, accum):
        group = schedule[first:first + accum]
        batches = [micro_batch(examples, idx, pad_id, max_len, packing) for idx in group]
        # Normaliser: total weight of the step's target tokens (same update as one big batch),
        # known on the CPU before anything reaches the device.
        denom = sum(b["weight_sum"] for b in batches) or 1.0
        step_loss = torch.zeros((), dtype=torch.float32, device=device)
        for b in batches:
            loss_sum = micro_loss(forward, b, head_weight=head_weight, device=device,
                                  teacher=teacher, alpha=alpha, temperature=temp)
            packed_batches += "position_ids" in b
            loss = loss_sum / denom
            if cuda:
                bad |= ~torch.isfinite(loss)
            elif not torch.isfinite(loss):
                raise NonFiniteLoss(f"non-finite loss at optimizer step {step + 1}: {loss.item()}")
            loss.backward()
            step_loss += loss.detach()
            tokens_seen += b["n_tokens"]
            padded_seen += b["padded_tokens"]
            tokens_since_log += b["n_tokens"]
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float(cfg["clip"]))
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        window_loss += step_loss
        window_steps += 1
        is_log_step = step % opts.log_every == 0 or step == total_steps
        if cuda and is_log_step and bool(bad):
            raise NonFiniteLoss(f"non-finite loss by optimizer step {step}")
        if log is not None and is_log_step:
            if cuda:
                torch.cuda.synchronize()
            now = time.perf_counter()
            log({"step": step, "epoch": round(first / max(batches_per_epoch, 1), 3),
                 "loss": round(float(step_loss), 6),
                 "loss_mean": round(float(window_loss) / window_steps, 6),
                 "lr": sched.get_last_lr()[0],
                 "grad_norm": round(float(grad_norm), 4),
                 "tokens_per_s": round(tokens_since_log / max(now - t_log, 1e-9), 1),
                 "tokens": tokens_seen, "elapsed_s": round(now - t_start, 6)})
            t_log, tokens_since_log = now, 0
            window_loss.zero_()
            window_steps = 0
        if step == total_steps:
            last_loss = float(step_loss)
    if cuda:
        torch.cuda.synchronize()
        if bool(bad):
            raise NonFiniteLoss(f"non-finite loss by optimizer step {step}")
    seconds = time.perf_counter() - t_start
    model.eval()
    return {"steps": step, "examples": len(examples), "tokens": tokens_seen,
            "padded_tokens": padded_seen, "packed_micro_batches": packed_batches,
            "train_seconds": round(seconds, 3),
            "final_loss": last_loss, "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 1),
            **in_effect}
