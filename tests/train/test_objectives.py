"""The shared loop with a toy objective: it trains whatever the objective, in the objective's
parameter groups, and refuses a switch the objective does not honour."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from harness.train.loop import NonFiniteLoss, run
from harness.train.objective import SWITCHES, Objective
from harness.train.schedule import build_optimizer, epoch_batches, micro_schedule

CPU = torch.device("cpu")
CFG = {"epochs": 3, "batch_size": 4, "grad_accum": 2, "lr": 0.1, "weight_decay": 0.0,
       "warmup_ratio": 0.0, "clip": 10.0, "min_steps": 0, "log_every": 1}


class LeastSquares(Objective):
    """Weighted squared error of a linear model on ``y = 2 x``; a bias group at a tenth of the
    learning rate."""

    name: ClassVar[str] = "least_squares"

    def __init__(self, n: int = 16, scale: float = 1.0) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, generator=gen)
        self.y = 2.0 * self.x * scale
        self.w = torch.ones(n)

    def lengths(self) -> list[int]:
        return [1 + i % 3 for i in range(len(self.x))]

    def param_groups(self, model: Any, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"params": [model.weight], "weight_decay": 0.0},
                {"params": [model.bias], "weight_decay": 0.0, "lr": float(cfg["lr"]) / 10}]

    def batch(self, idx: list[int]) -> dict[str, Any]:
        return {"x": self.x[idx], "y": self.y[idx], "w": self.w[idx], "n_tokens": len(idx),
                "weight_sum": float(self.w[idx].sum())}

    def loss(self, forward: Any, batch: dict[str, Any], device: Any) -> Any:
        err = forward(batch["x"].to(device))[:, 0] - batch["y"].to(device)[:, 0]
        return (batch["w"].to(device) * err * err).sum()

    def summary(self, common: dict[str, Any], in_effect: dict[str, Any]) -> dict[str, Any]:
        return {**common, "toy": True}


def test_any_objective_trains_through_the_loop():
    torch.manual_seed(0)
    model, logs = torch.nn.Linear(1, 1), []
    summary = run(model, LeastSquares(), CFG, seed=0, device=CPU, log=logs.append)
    # 16 examples in batches of 4 -> 4 micro-batches per epoch, 3 epochs, 2 per step
    assert summary["steps"] == 6 and summary["examples"] == 16 and summary["toy"] is True
    assert summary["tokens"] == 16 * 3
    assert len(logs) == 6 and logs[-1]["loss"] < logs[0]["loss"]
    assert not model.training  # left in eval mode


def test_parameter_groups_keep_their_own_learning_rate_under_the_cosine_schedule():
    model = torch.nn.Linear(1, 1)
    opt, sched = build_optimizer(LeastSquares().param_groups(model, CFG), CFG, (0.9, 0.95),
                                 total_steps=4, device=CPU)
    assert [g["lr"] for g in opt.param_groups] == [0.1, pytest.approx(0.01)]
    assert opt.defaults["betas"] == (0.9, 0.95)
    opt.step()
    sched.step()  # one of four steps, no warm-up: half-way down a cosine's first quarter
    factor = 0.5 * (1 + np.cos(np.pi / 4))
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * factor, 0.01 * factor])


@pytest.mark.parametrize("switch", SWITCHES)
def test_a_switch_the_objective_cannot_honour_is_refused(switch):
    with pytest.raises(ValueError, match=f"student.train.{switch}"):
        run(torch.nn.Linear(1, 1), LeastSquares(), {**CFG, switch: True}, seed=0, device=CPU)


def test_a_non_finite_loss_stops_the_loop():
    with pytest.raises(NonFiniteLoss, match="optimizer step 1"):
        run(torch.nn.Linear(1, 1), LeastSquares(scale=float("nan")), CFG, seed=0, device=CPU)


def test_the_schedule_draws_one_permutation_per_epoch_in_length_order():
    lengths = [5, 1, 3, 1, 5, 3]
    rng, ref = np.random.default_rng(7), np.random.default_rng(7)
    got = micro_schedule(lengths, {"batch_size": 2, "grad_accum": 1, "epochs": 1.5,
                                   "min_steps": 0}, rng)
    batches = [[1, 3], [2, 5], [0, 4]]  # sorted by (length, index), then cut
    first = [batches[i] for i in ref.permutation(3)]
    second = [batches[i] for i in ref.permutation(3)]
    assert got == first + second[:2]  # 1.5 epochs of 3 batches, the last cut short
    assert epoch_batches(lengths, 2, np.random.default_rng(7)) == first
