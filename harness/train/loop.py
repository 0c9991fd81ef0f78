"""The training loop, one for every student kind, read top to bottom.

:func:`run` trains a model in place towards an :class:`~harness.train.objective.Objective`
(:mod:`harness.train.objectives`: the causal LM's target-token cross-entropy with KD, packing
and the chunked cross-entropy; the classifier's block cross-entropy). In order: seed, choose the
micro-batches (:mod:`harness.train.schedule`), build AdamW and its warm-up + cosine schedule,
turn on the performance switches the objective honours, then loop optimizer steps ->
micro-batches. Imports torch, transformers and numpy only (the GPU worker's path).

- Normalisation: each micro-batch's loss is the objective's weighted *sum*, divided by the
  whole optimizer step's total weight (known on the CPU before anything runs), so gradient
  accumulation gives the same update as one big batch.
- bf16 autocast on CUDA (inside the objective), fp32 on CPU; seeded, deterministic on CPU.
- Gradient clipping to ``clip`` before every optimizer step.
- A non-finite loss stops training with :class:`NonFiniteLoss` (on CPU at once; on CUDA at the
  next logged step, so the loop does not wait for the GPU after every step).
- ``compile``: ``torch.compile`` of the objective's forward (the model object itself stays
  uncompiled, so evaluation and saving see the plain module).
- ``fast`` (``auto``: on for CUDA; ``on``; ``off``): the same examples per optimizer step,
  re-cut into fixed-shape token-budget micro-batches with document masking
  (:mod:`harness.train.budget`, :mod:`harness.train.doc_mask`), the step compiled once with a
  bounded, timed warm-up (:mod:`harness.train.compiled`; on CUDA by default, elsewhere when
  ``compile`` is set), fused AdamW on CUDA, no host sync inside a step. The summary says what
  was in effect, or why not.

The worker trains every student kind through :func:`run` (``StudentKind.train``, on the kind's
objective). :func:`train_examples` builds the causal LM's objective from encoded examples on a
fixed schedule and calls it (the GPU training benchmark uses it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from harness.train import compiled
from harness.train.objective import SWITCHES, Objective
from harness.train.objectives.causal_lm import CausalLMObjective, Example, encode_examples
from harness.train.schedule import build_optimizer, micro_schedule

__all__ = ["NonFiniteLoss", "TrainOptions", "run", "train_examples",
           # re-exported for benchmarks/gpu_train.py: the causal LM's examples
           "Example", "encode_examples"]

Log = Callable[[dict[str, Any]], None]


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; training stopped."""


@dataclass(frozen=True)
class TrainOptions:
    """How the loop computes (not what): the performance switches of ``student.train``.

    Read from the cfg dict with defaults, because manifests composed before a switch existed
    do not carry it; :class:`harness.students.options.TrainSpec` documents the YAML keys.
    ``compile_backend``, ``compile_mode``, ``compile_dynamic`` (torch.compile's ``dynamic``;
    None: recompile as dynamic once a second shape shows up) and ``log_every`` are not YAML
    keys: benchmarks and tests set them in the dict; nor are the fast path's
    ``fast_compile`` (None: compile on CUDA, or when ``compile`` is set), ``compile_scope``
    (``layers`` or ``model``, :mod:`harness.train.compiled`) and ``compile_budget_s`` (the
    compile warm-up's deadline). ``fast`` (``auto``/``on``/``off``) and ``token_budget`` are
    YAML keys, absent from older manifests (then ``auto`` and the objective's choice).
    """

    packing: bool = False
    chunked_ce: bool = False
    compile: bool = False
    compile_backend: str = "inductor"
    compile_mode: str | None = None
    compile_dynamic: bool | None = None
    log_every: int = 10
    fast: str = "auto"
    token_budget: int | None = None
    fast_compile: bool | None = None
    compile_scope: str = "layers"
    compile_budget_s: float | None = 300.0

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> TrainOptions:
        """The options present in ``cfg`` (the YAML's ``student.train``), this class's defaults
        elsewhere (an absent, null or empty key; ``compile_budget_s`` may be null: no
        deadline). The YAML's defaults for the same keys are checked to be these
        (tests/test_cell_settings.py)."""
        d = {f.name: f.default for f in fields(cls)}

        def given(name: str) -> Any:
            return cfg.get(name) or d[name]

        budget = cfg.get("compile_budget_s", d["compile_budget_s"])
        return cls(packing=bool(given("packing")), chunked_ce=bool(given("chunked_ce")),
                   compile=bool(given("compile")),
                   compile_backend=str(given("compile_backend")),
                   compile_mode=cfg.get("compile_mode"),
                   compile_dynamic=cfg.get("compile_dynamic"),
                   log_every=max(1, int(given("log_every"))), fast=str(given("fast")),
                   token_budget=(int(cfg["token_budget"]) if cfg.get("token_budget")
                                 else None),
                   fast_compile=cfg.get("fast_compile"),
                   compile_scope=str(given("compile_scope")),
                   compile_budget_s=None if budget is None else float(budget))

    def fast_on(self, device: Any, objective: Objective) -> bool:
        """Whether to try the fast path: ``on``, or ``auto`` on CUDA for an objective that has
        one. Raises ``ValueError`` for ``on`` with an objective that has none."""
        if self.fast not in ("auto", "on", "off"):
            raise ValueError(f"student.train.fast: {self.fast!r} is not one of auto, on, off")
        if self.fast == "on" and not objective.fast_path:
            raise ValueError(f"student.train.fast: the {objective.name} objective has no fast "
                             "path")
        return objective.fast_path and (self.fast == "on" or
                                        (self.fast == "auto" and device.type == "cuda"))

    def compile_fast(self, device: Any) -> bool:
        """Whether the fast path compiles its step (``fast_compile``; default: on CUDA, or
        when the ``compile`` switch is set)."""
        if self.fast_compile is not None:
            return bool(self.fast_compile)
        return self.compile or device.type == "cuda"

    @property
    def requested(self) -> frozenset[str]:
        """The switches (:data:`~harness.train.objective.SWITCHES`) turned on."""
        return frozenset(s for s in SWITCHES if getattr(self, s))


def train_examples(model: Any, examples: Sequence[Example], cfg: dict[str, Any], *,
                   pad_id: int, seed: int, device: Any,
                   schedule: list[list[int]] | None = None, teacher: Any | None = None,
                   distill: dict[str, Any] | None = None, log: Log | None = None
                   ) -> dict[str, Any]:
    """Train a causal LM in place on tokenised examples (what :func:`train` does after
    tokenising; benchmarks call it directly). Arguments as in :func:`train` and :func:`run`."""
    objective = CausalLMObjective(examples, pad_id=pad_id, max_len=int(cfg["max_len"]),
                                  teacher=teacher, distill=distill)
    return run(model, objective, cfg, seed=seed, device=device, schedule=schedule, log=log)


def run(model: Any, objective: Objective, cfg: dict[str, Any], *, seed: int, device: Any,
        schedule: list[list[int]] | None = None, log: Log | None = None) -> dict[str, Any]:
    """Train ``model`` in place towards ``objective``; the model is left in eval mode.

    Args:
        model: the student (moved to ``device`` here).
        objective: what to minimise, over its encoded examples.
        cfg: the YAML's ``student.train`` (epochs, min_steps, batch_size, grad_accum, lr,
            weight_decay, warmup_ratio, clip, and the switches of :class:`TrainOptions`).
        seed: the torch seed (dropout) and the numpy generator's (batch order).
        device: a ``torch.device``.
        schedule: the micro-batches, as lists of example indices, in order; default:
            :func:`~harness.train.schedule.micro_schedule`. A given schedule fixes the data
            order exactly (e.g. to match another trainer's).
        log: called with one dict per logged step (every ``log_every`` optimizer steps and
            the last): ``step``, ``epoch``, ``loss`` (that step's), ``loss_mean`` (mean step
            loss since the previous row), ``lr``, ``grad_norm``, ``tokens_per_s``, ``tokens``
            (real tokens so far), ``elapsed_s`` (since the loop started; CUDA synchronised).

    Returns:
        the objective's summary of ``steps``, ``examples``, ``tokens`` (real, non-padding
        tokens seen), ``train_seconds``, ``final_loss``, ``tokens_per_s`` and its own entries
        (for the causal LM: padded tokens, packed micro-batches, the switches in effect).

    Raises:
        NonFiniteLoss: the loss became NaN/inf.
        ValueError: ``cfg`` turns on a switch the objective cannot honour.
    """
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opts = TrainOptions.from_cfg(cfg)
    refused = sorted(opts.requested - objective.switches)
    if refused:
        raise ValueError(f"student.train.{refused[0]}: the {objective.name} objective cannot "
                         f"honour it (honours: {', '.join(sorted(objective.switches)) or 'none'})")
    model.to(device).train()
    n_examples = len(objective.lengths())
    accum = int(cfg["grad_accum"])
    batches_per_epoch = math.ceil(n_examples / int(cfg["batch_size"]))
    if schedule is None:
        schedule = micro_schedule(objective.lengths(), cfg, rng)
    total_micro = len(schedule)
    total_steps = max(1, math.ceil(total_micro / accum))
    fast = opts.fast_on(device, objective)
    opt, sched = build_optimizer(objective.param_groups(model, cfg), cfg, objective.betas,
                                 total_steps, device)
    forward, in_effect = objective.prepare(model, device, opts.requested)
    # Per optimizer step, its micro-batches: the schedule's (plain) or the fast path's.
    steps: list[list[Any]] = [schedule[f:f + accum] for f in range(0, total_micro, accum)]
    make_batch: Callable[[Any], dict[str, Any]] = objective.batch
    with ExitStack() as cleanup:  # undoes the fast path's changes to the model after training
        if fast:
            plan, fast_forward, fast_info = objective.prepare_fast(
                model, device, [[i for mb in s for i in mb] for s in steps], opts.token_budget,
                cleanup)
            in_effect.update(fast_info)
            fast = plan is not None
            if plan is not None:
                steps, forward, make_batch = plan, fast_forward, objective.fast_batch
        graphs_before = 0
        if fast and opts.compile_fast(device):
            first_batch = make_batch(steps[0][0])
            forward, compile_info = compiled.compile_step(
                model, forward,
                lambda fw: objective.loss(fw, first_batch, device).backward(),
                device=device, backend=opts.compile_backend, mode=opts.compile_mode,
                scope=opts.compile_scope, budget_s=opts.compile_budget_s, cleanup=cleanup)
            objective.reset_counts()
            in_effect.update(compile_info)
            graphs_before = compiled.graphs_compiled()
        elif fast:
            in_effect["compile"] = False
        elif "compile" in objective.switches:
            in_effect["compile"] = False
            if opts.compile:
                forward = torch.compile(forward, backend=opts.compile_backend,
                                        mode=opts.compile_mode, dynamic=opts.compile_dynamic)
                in_effect["compile"] = opts.compile_backend + (f"/{opts.compile_mode}"
                                                               if opts.compile_mode else "")
        common = _optimize(model, objective, forward, steps, make_batch, opt, sched,
                           clip=float(cfg["clip"]), log_every=opts.log_every, device=device,
                           epoch_micro=batches_per_epoch, accum=accum, log=log)
        if fast and str(in_effect.get("compile", "off")).split(":")[0] not in ("off", "False"):
            in_effect["recompiles"] = compiled.graphs_compiled() - graphs_before
    model.eval()
    return objective.summary({"examples": n_examples, **common}, in_effect)


def _optimize(model: Any, objective: Objective, forward: Any, steps: list[list[Any]],
              make_batch: Callable[[Any], dict[str, Any]], opt: Any, sched: Any, *, clip: float,
              log_every: int, device: Any, epoch_micro: int, accum: int, log: Log | None
              ) -> dict[str, Any]:
    """The optimizer steps: each step's micro-batches, accumulated, clipped, stepped.

    Args:
        steps: per optimizer step, its micro-batches (arguments of ``make_batch``).
        epoch_micro: plain micro-batches per epoch and ``accum`` the plain micro-batches per
            step (the logged ``epoch`` counts those, whatever the fast path re-cut).
        Others as in :func:`run`.

    Returns:
        ``steps``, ``tokens``, ``train_seconds``, ``final_loss``, ``tokens_per_s``.
    """
    import torch

    cuda = device.type == "cuda"
    total_steps = len(steps)
    step = tokens_seen = tokens_since_log = 0
    t_start = t_log = time.perf_counter()
    last_loss = float("nan")
    bad = torch.zeros((), dtype=torch.bool, device=device)  # any non-finite loss so far (CUDA)
    window_loss = torch.zeros((), dtype=torch.float32, device=device)  # summed since last log
    window_steps = 0
    for micro in steps:
        first = step * accum
        batches = [make_batch(m) for m in micro]
        # Normaliser: the step's total weight, summed in the type the objective gives (see
        # Objective), known on the CPU before anything reaches the device.
        denom = float(sum(b["weight_sum"] for b in batches)) or 1.0
        step_loss = torch.zeros((), dtype=torch.float32, device=device)
        for b in batches:
            loss = objective.loss(forward, b, device) / denom
            if cuda:
                bad |= ~torch.isfinite(loss)
            elif not torch.isfinite(loss):
                raise NonFiniteLoss(f"non-finite loss at optimizer step {step + 1}: {loss.item()}")
            loss.backward()
            step_loss += loss.detach()
            tokens_seen += b["n_tokens"]
            tokens_since_log += b["n_tokens"]
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        window_loss += step_loss
        window_steps += 1
        is_log_step = step % log_every == 0 or step == total_steps
        if cuda and is_log_step and bool(bad):
            raise NonFiniteLoss(f"non-finite loss by optimizer step {step}")
        if log is not None and is_log_step:
            if cuda:
                torch.cuda.synchronize()
            now = time.perf_counter()
            log({"step": step, "epoch": round(first / max(epoch_micro, 1), 3),
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
    return {"steps": step, "tokens": tokens_seen, "train_seconds": round(seconds, 3),
            "final_loss": last_loss, "tokens_per_s": round(tokens_seen / max(seconds, 1e-9), 1)}
