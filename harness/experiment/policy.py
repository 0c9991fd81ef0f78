"""Policies of the later stages: costs (the ROI ledger), stop-signal thresholds and the gate."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.experiment.base import Strict

#: The default price of a batch API call as a fraction of the synchronous one (OpenAI's and
#: Together's batch discount: 50 %).
BATCH_RATE = 0.5


class TeacherCost(Strict):
    """What one teacher costs (USD)."""

    price_per_1k_prompt: float = Field(0.0, ge=0)
    price_per_1k_completion: float = Field(0.0, ge=0)
    batch_price_per_1k_prompt: float | None = Field(
        None, ge=0, description="Price per 1k prompt tokens of calls sent through the batch "
        "API (a teacher with `batch: true`); default: half of price_per_1k_prompt, the batch "
        "rate of OpenAI and Together (other providers: see their pricing page).")
    batch_price_per_1k_completion: float | None = Field(
        None, ge=0, description="Price per 1k completion tokens of batch calls; default: half "
        "of price_per_1k_completion.")
    generation_cost: float | None = Field(None, ge=0, description="Declared total, overrides.")
    latency_p95_ms: float | None = Field(None, gt=0)

    def batch_prices(self) -> tuple[float, float]:
        """(per 1k prompt tokens, per 1k completion tokens) of batch API calls: the declared
        batch prices, else half the synchronous ones."""
        return (self.batch_price_per_1k_prompt if self.batch_price_per_1k_prompt is not None
                else self.price_per_1k_prompt * BATCH_RATE,
                self.batch_price_per_1k_completion
                if self.batch_price_per_1k_completion is not None
                else self.price_per_1k_completion * BATCH_RATE)


class TrafficSpec(Strict):
    qps: float = Field(1.0, ge=0)
    avg_tokens: float = Field(500, gt=0)
    days: int = Field(30, ge=1)


class CostSpec(Strict):
    """Inputs of the ROI ledger (used by the analysis stage)."""

    currency: str = "USD"
    teachers: dict[str, TeacherCost] = Field(default_factory=dict)
    judge_cost_per_item: float = Field(0.0, ge=0)
    gpu_hour: float = Field(0.0, ge=0)
    maintenance_per_month: float = Field(0.0, ge=0)
    teacher_price_per_1k: float = Field(0.0, ge=0, description="Online teacher price per 1k tok.")
    student_price_per_1k: float = Field(0.0, ge=0)
    student_price_from: Literal["declared", "measured"] = Field(
        "declared", description="declared: student_price_per_1k for every cell; measured: "
        "each cell's own serving price, gpu_hour x its measured median seconds per request "
        "(one request at a time) per avg_tokens / 1000, so a slower student costs more.")
    manual_fallback_cost: float = Field(0.0, ge=0, description="Cost of one error handled by hand.")
    traffic: TrafficSpec = TrafficSpec()

    @model_validator(mode="after")
    def _measured_needs_gpu_hour(self) -> CostSpec:
        # a measured price is the GPU's hourly price spread over the requests it serves
        if self.student_price_from == "measured" and not self.gpu_hour:
            raise ValueError("student_price_from: measured prices each cell's student from its "
                             "measured latency x gpu_hour, so gpu_hour must be declared")
        return self


def costs_declared(costs: dict[str, Any]) -> bool:
    """Whether a ``costs:`` section (as JSON data) prices anything at all. Without a single
    price every cost and saving is 0, and "ROI = 0.00" would read as a checked break-even."""
    per_teacher = any(v for t in costs["teachers"].values()
                      for k, v in t.items() if k != "latency_p95_ms")
    return per_teacher or any(costs[k] for k in (
        "judge_cost_per_item", "gpu_hour", "maintenance_per_month", "teacher_price_per_1k",
        "student_price_per_1k", "manual_fallback_cost"))


class StopSpec(Strict):
    """Stop-signal thresholds (used by the analysis stage)."""

    min_gain_next_doubling: float = Field(0.01, ge=0)
    max_real_synthetic_gap: float = Field(0.05, ge=0)
    max_teacher_disagreement: float = Field(0.3, ge=0, le=1)
    max_copied_error_rate: float = Field(0.1, ge=0, le=1)
    chance_margin: float = Field(
        0.05, ge=0, description="A student whose primary metric is within this of the best "
        "constant answer has learned nothing worth paying for: at_chance fires when the upper "
        "bound (one-sided, 1 %) of the chosen arm's mean minus chance is at most this.")
    units: list[str] | None = Field(None, description="Units that matter; default all.")


SignalName = Literal["at_chance", "diminishing_returns", "teacher_bias", "cost",
                     "distribution_gap", "teacher_inconsistency"]
#: ``at_chance`` blocks whatever ``blocking_signals`` says (a student at chance never CONTINUEs).
DEFAULT_BLOCKING: tuple[SignalName, ...] = ("at_chance", "diminishing_returns", "cost",
                                            "distribution_gap")


class GateSpec(Strict):
    """Gate policy (used by the analysis stage)."""

    min_metric: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="unit -> metric -> minimum value."
    )
    max_p95_latency_ms: float | None = Field(None, gt=0)
    min_roi: float | None = None
    correction: Literal["holm", "bh"] = Field(
        "holm", description="Multiple-comparison correction: Holm (family-wise) or "
        "Benjamini-Hochberg (false discovery rate).")
    blocking_signals: list[SignalName] = Field(
        default_factory=lambda: list(DEFAULT_BLOCKING),
        description="Stop signals that change the decision when they fire.")
