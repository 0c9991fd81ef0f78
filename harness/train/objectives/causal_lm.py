"""The causal-LM objective: weighted cross-entropy on target tokens, optional KD, packing and
the chunked cross-entropy.

- Sequence: ``encode(prompt + "\\n") + encode(target) + [eos]``; the loss covers the target
  tokens and the EOS, each token weighted by its sample's ``weight`` from the composer; the loop
  divides by the optimizer step's total weight of target tokens, so gradient accumulation gives
  the same update as one big batch.
- Optional soft targets from a white-box teacher sharing the tokenizer:
  ``(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)`` on the same positions.
- AdamW betas (0.9, 0.95); weight decay on matrices only.

Switches (each verified on the model before use, reported in the summary with the reason when
turned off; each has a CPU test showing it computes the same loss and gradients):

- ``packing``: a micro-batch's examples are concatenated into balanced rows of at most
  ``max_len`` tokens with per-example positions and a block-diagonal causal mask
  (:mod:`harness.train.packing`); a batch that packing would not shrink stays padded.
- ``chunked_ce``: the LM head and cross-entropy run only on target positions, chunk by chunk
  (:mod:`harness.train.linear_ce`). Off with a teacher (KD needs the full logits) and on models
  whose logits are not a plain ``hidden @ W.T``.
- ``compile``: honoured by the loop (``torch.compile`` of the forward this objective returns).

The fast path (``student.train.fast``, the default on CUDA): each optimizer step's examples
re-cut into fixed-shape token-budget micro-batches (:mod:`harness.train.budget`), documents kept
apart by a FlexAttention block mask on CUDA (a dense 4-D mask on CPU, where FlexAttention has no
backward; :mod:`harness.train.doc_mask`), the LM head and cross-entropy chunked on a fixed number
of target positions. Same loss and gradients as the plain path (tested on CPU); off with a
teacher (KD needs full logits of the teacher's own forward) or when the model does not honour
the mask, with the reason in the summary.

Imports numpy at module level, torch inside functions (the GPU worker's path).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.train import budget as budgets
from harness.train.doc_mask import DocumentMask, attention_implementation, isolates_documents
from harness.train.linear_ce import linear_cross_entropy, plain_linear_head
from harness.train.objective import Objective
from harness.train.packing import IGNORE, collate_packed, packing_isolates_examples
from harness.train.soft_targets import (
    SoftToken,
    Speller,
    place_soft_labels,
    soft_batch,
    soft_token_losses,
)


@dataclass(frozen=True)
class Example:
    """One tokenised sample: ``input_ids`` (prompt + target + eos) and where the target starts."""

    input_ids: list[int]
    target_start: int
    weight: float
    #: soft labels on some target tokens (``soft_targets: topk`` cells; empty: all hard)
    soft: tuple[SoftToken, ...] = ()


def encode_examples(tokenizer: Any, samples: list[dict[str, Any]], max_len: int, *,
                    soft: bool = False) -> list[Example]:
    """Tokenise ``prompt + "\\n"`` and ``target`` separately (so the boundary is exact), append
    EOS, and cut long prompts from the left so the target always fits in ``max_len``.

    With ``soft`` (a ``soft_targets: topk`` cell), each sample's ``soft_labels`` are placed
    on its target tokens (:func:`harness.train.soft_targets.place_soft_labels`)."""
    prompts = tokenizer([s["prompt"] + "\n" for s in samples],
                        add_special_tokens=False)["input_ids"]
    targets = tokenizer([s["target"] for s in samples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    speller = Speller(tokenizer) if soft else None
    out = []
    for s, p, t in zip(samples, prompts, targets, strict=True):
        t = [*t, eos][: max_len - 1]
        p = p[-(max_len - len(t)):]
        placed: tuple[SoftToken, ...] = ()
        if speller is not None and s.get("soft_labels"):
            placed = tuple(place_soft_labels(s["soft_labels"], s["target"], t, len(p),
                                             speller))
        out.append(Example(input_ids=p + t, target_start=len(p), weight=float(s["weight"]),
                           soft=placed))
    return out


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
        b["placed"] = [(row, 0) for row in range(len(idx))]
    placed = b.pop("placed")
    if any(examples[i].soft for i in idx):
        soft = soft_batch([examples[i].soft for i in idx], placed, int(b["input_ids"].shape[1]))
        if soft is not None:
            b.update(soft)
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

def _to_device(t: Any, device: Any) -> Any:
    """A CPU tensor on ``device`` (pinned and asynchronous on CUDA, so the host does not wait)."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def micro_loss(forward: Any, b: dict[str, Any], *, head_weight: Any | None, device: Any,
               teacher: Any | None = None, alpha: float = 0.0, temperature: float = 1.0,
               soft_weight: float = 0.0) -> Any:
    """The weighted loss sum of one micro-batch (not yet divided by the step's normaliser).

    Args:
        forward: the model (or its compiled wrapper); with ``head_weight``, its backbone (or
            the backbone's compiled wrapper), which returns ``last_hidden_state``.
        b: a micro-batch from :func:`micro_batch` (CPU tensors; moved here).
        head_weight: (vocab, hidden) LM head weight for the chunked loss, or None for the
            plain path (full logits, then cross-entropy).
        teacher, alpha, temperature: soft targets (plain path only).
        soft_weight: ``w`` of ``(1 - w) * CE + w * KL`` at the batch's soft-label positions
            (``soft_pos``, ``soft_ids``, ``soft_probs``; plain path only).

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
    if "soft_pos" in b:
        pos = _to_device(b["soft_pos"], device)
        kl = soft_token_losses(logits, pos, _to_device(b["soft_ids"], device),
                               _to_device(b["soft_probs"], device))
        flat = per_token.reshape(-1)
        mixed = (1 - soft_weight) * flat.index_select(0, pos) + soft_weight * kl
        per_token = flat.index_put((pos,), mixed).view_as(per_token)
    return (per_token * _to_device(b["token_weights"], device)[:, 1:]).sum()


def fast_micro_loss(forward: Any, b: dict[str, Any], masks: DocumentMask, *,
                    head_weight: Any | None, device: Any) -> Any:
    """The weighted loss sum of one fixed-shape micro-batch (:func:`budget.fixed_batch`).

    Args:
        forward: the model, or its backbone (``last_hidden_state``) with ``head_weight``.
        b: the micro-batch (CPU tensors; moved here, asynchronously on CUDA).
        masks: the run's document masks.
        head_weight: (vocab, hidden) for the chunked loss on the ``target_cap`` selected
            positions (fixed shape); None: full logits, then cross-entropy.

    Returns:
        scalar float32: sum over target tokens of ``weight * loss``. No host sync.
    """
    import torch

    cuda = device.type == "cuda"
    inputs = {"input_ids": _to_device(b["input_ids"], device),
              "position_ids": _to_device(b["position_ids"], device),
              "attention_mask": masks(b["doc"]), "use_cache": False}
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
        out = forward(**inputs)
    if head_weight is None:
        ce, _ = token_losses(out.logits, _to_device(b["labels"], device))
        return (ce * _to_device(b["token_weights"], device)[:, 1:]).sum()
    last = out.last_hidden_state
    hidden = last.reshape(-1, last.shape[-1]).index_select(0, _to_device(b["sel"], device))
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
        return linear_cross_entropy(hidden, head_weight, _to_device(b["targets"], device),
                                    _to_device(b["target_weights"], device))


class CausalLMObjective(Objective):
    """Weighted target-token cross-entropy of a causal LM (module docstring), with soft
    targets when a teacher is given.

    Args:
        examples: the tokenised samples (:func:`encode_examples`).
        pad_id: the tokenizer's pad id.
        max_len: tokens per sequence (and per packed row).
        teacher: optional white-box teacher sharing the tokenizer (moved to the device and
            put in eval mode in :meth:`prepare`).
        distill: ``alpha`` and ``temperature`` when ``teacher`` is given.
        soft_weight: ``w`` of the soft-label loss on the examples' :attr:`Example.soft`
            positions (``soft_targets: topk``; 0: every token hard).
    """

    name: ClassVar[str] = "causal_lm"
    switches: ClassVar[frozenset[str]] = frozenset({"packing", "chunked_ce", "compile"})
    betas: ClassVar[tuple[float, float]] = (0.9, 0.95)
    fast_path: ClassVar[bool] = True
    #: Widest row of the dense CPU mask (width^2 per row); longer budgets use several rows.
    dense_max_width: ClassVar[int] = 2048

    def __init__(self, examples: Sequence[Example], *, pad_id: int, max_len: int,
                 teacher: Any | None = None, distill: dict[str, Any] | None = None,
                 soft_weight: float = 0.0) -> None:
        self.examples = examples
        self.soft_weight = soft_weight
        #: soft-label tokens and the examples holding them (0, 0 for a hard cell)
        self.soft_tokens = sum(len(e.soft) for e in examples) if soft_weight else 0
        self.soft_examples = sum(bool(e.soft) for e in examples) if soft_weight else 0
        self.pad_id = pad_id
        self.max_len = max_len
        self.teacher = teacher
        kd = teacher is not None and bool(distill)
        self.alpha = float(distill["alpha"]) if kd and distill else 0.0
        self.temperature = float(distill["temperature"]) if kd and distill else 1.0
        self.packing = False
        self.head_weight: Any | None = None
        self.padded_tokens = 0
        self.packed_micro_batches = 0
        self.layout: budgets.Layout | None = None
        self.masks: DocumentMask | None = None
        self.fast_head: Any | None = None

    @classmethod
    def from_samples(cls, tokenizer: Any, samples: list[dict[str, Any]], cfg: dict[str, Any], *,
                     teacher: Any | None = None, distill: dict[str, Any] | None = None,
                     soft_weight: float | None = None) -> CausalLMObjective:
        """The objective over composed samples (``prompt``, ``target``, ``weight``, and
        ``soft_labels`` with ``soft_weight``: a ``soft_targets: topk`` cell), tokenised with
        ``cfg["max_len"]`` (``student.train``)."""
        max_len = int(cfg["max_len"])
        soft = soft_weight is not None
        return cls(encode_examples(tokenizer, samples, max_len, soft=soft),
                   pad_id=tokenizer.pad_token_id, max_len=max_len, teacher=teacher,
                   distill=distill, soft_weight=float(soft_weight or 0.0))

    def lengths(self) -> list[int]:
        return [len(e.input_ids) for e in self.examples]

    def param_groups(self, model: Any, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """Weight decay on matrices (ndim >= 2), none on vectors, one learning rate; frozen
        weights (a LoRA adapter's base) are left out of the optimizer."""
        trained = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in trained if p.ndim >= 2]
        no_decay = [p for p in trained if p.ndim < 2]
        return [{"params": decay, "weight_decay": float(cfg["weight_decay"])},
                {"params": no_decay, "weight_decay": 0.0}]

    def prepare(self, model: Any, device: Any, requested: frozenset[str]
                ) -> tuple[Any, dict[str, Any]]:
        """Move the teacher; check packing and the plain LM head on this model."""
        if self.teacher is not None:
            self.teacher.to(device).eval()
        in_effect: dict[str, Any] = {"packing": False, "chunked_ce": False}
        if "packing" in requested:
            self.packing = packing_isolates_examples(model, device)
            in_effect["packing"] = (True if self.packing else
                                    "off: this transformers version does not isolate packed "
                                    "examples")
        if "chunked_ce" in requested:
            full = self.teacher is not None or self.soft_tokens > 0
            self.head_weight = None if full else plain_linear_head(model, device)
            in_effect["chunked_ce"] = (True if self.head_weight is not None else
                                       "off: distillation needs full logits"
                                       if self.teacher is not None
                                       else "off: soft targets need full logits"
                                       if self.soft_tokens
                                       else "off: the logits are not a plain linear head")
        # With the chunked loss the backbone runs alone (hidden states only, no full logits).
        forward = (getattr(model, model.base_model_prefix) if self.head_weight is not None
                   else model)
        return forward, in_effect

    def prepare_fast(self, model: Any, device: Any, steps: list[list[int]],
                     token_budget: int | None, cleanup: ExitStack
                     ) -> tuple[list[list[Any]] | None, Any, dict[str, Any]]:
        """Plan the token-budget micro-batches, switch the model to FlexAttention (CUDA) for
        the run, and check on the model that packed examples stay apart. The forward is the
        backbone when the LM head is a plain linear one (chunked loss), else the model."""
        if self.teacher is not None:
            return None, model, {"fast": "off: distillation needs the teacher's full logits on the "
                                  "plain path"}
        if self.soft_tokens:
            return None, model, {"fast": "off: soft targets need the student's full logits on "
                                  "the plain path"}
        t0 = time.perf_counter()
        lengths = self.lengths()
        targets = [len(e.input_ids) - max(e.target_start, 1) for e in self.examples]
        kind = "flex" if device.type == "cuda" else "dense"
        if token_budget is None:
            token_budget = budgets.choose_budget([sum(lengths[i] for i in s) for s in steps],
                                                 max(lengths))
        layout = budgets.plan(lengths, targets, steps, token_budget,
                              max_width=None if kind == "flex" else self.dense_max_width)
        dtype = next(model.parameters()).dtype
        try:
            attn = cleanup.enter_context(attention_implementation(
                model, "flex_attention" if kind == "flex" else None))
            check = DocumentMask(1, 2 * budgets.BLOCK, device, kind, dtype)
            ok = isolates_documents(model, check, device)
        except Exception as exc:  # no flex_attention for this model / transformers / torch
            return None, model, {"fast": f"off: {type(exc).__name__}: {str(exc)[:160]}"}
        if not ok:
            return None, model, {"fast": f"off: the model does not honour a {attn} document mask"}
        self.layout = layout
        self.masks = DocumentMask(layout.rows, layout.width, device, kind, dtype)
        self.fast_head = plain_linear_head(model, device)
        info = {"fast": True, "token_budget": layout.budget,
                "micro_batch_shape": [layout.rows, layout.width],
                "target_positions": layout.target_cap,
                "attention": ("flex_attention block mask" if kind == "flex"
                              else f"{attn} with a dense document mask (no flex backward on "
                                   f"{device.type})"),
                "fast_chunked_ce": self.fast_head is not None,
                "micro_batches": layout.micro_batches,
                "fast_setup_seconds": round(time.perf_counter() - t0, 3)}
        forward = (getattr(model, model.base_model_prefix) if self.fast_head is not None
                   else model)
        return [list(s) for s in layout.steps], forward, info

    def fast_batch(self, micro: Any) -> dict[str, Any]:
        assert self.layout is not None, "prepare_fast first"
        return budgets.fixed_batch(self.examples, micro, self.pad_id, self.layout)

    def reset_counts(self) -> None:
        self.padded_tokens = 0
        self.packed_micro_batches = 0

    def batch(self, idx: list[int]) -> dict[str, Any]:
        return micro_batch(self.examples, idx, self.pad_id, self.max_len, self.packing)

    def loss(self, forward: Any, batch: dict[str, Any], device: Any) -> Any:
        self.packed_micro_batches += "position_ids" in batch
        self.padded_tokens += batch["padded_tokens"]
        if "doc" in batch:
            assert self.masks is not None
            return fast_micro_loss(forward, batch, self.masks, head_weight=self.fast_head,
                                   device=device)
        return micro_loss(forward, batch, head_weight=self.head_weight, device=device,
                          teacher=self.teacher, alpha=self.alpha, temperature=self.temperature,
                          soft_weight=self.soft_weight)

    def summary(self, common: dict[str, Any], in_effect: dict[str, Any]) -> dict[str, Any]:
        """The loop's figures and the switches in effect; a soft-target cell adds
        ``soft_targets``: the weight, and how many examples and tokens had soft labels placed
        (the rest of the answer tokens trained hard)."""
        out = {"steps": common["steps"], "examples": common["examples"],
               "tokens": common["tokens"], "padded_tokens": self.padded_tokens,
               "packed_micro_batches": self.packed_micro_batches,
               "train_seconds": common["train_seconds"], "final_loss": common["final_loss"],
               "tokens_per_s": common["tokens_per_s"], **in_effect}
        if self.soft_weight:
            out["soft_targets"] = {"weight": self.soft_weight, "examples": self.soft_examples,
                                   "tokens": self.soft_tokens}
        return out
