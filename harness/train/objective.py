"""The objective interface: what a kind of student trains towards, as the loop sees it.

:func:`harness.train.loop.run` owns everything a training run shares whatever the student is
(seeding, the length-grouped micro-batch schedule, AdamW, the warm-up + cosine schedule,
gradient clipping, the non-finite stop, logging, ``torch.compile``). An :class:`Objective` owns
what differs: its examples (encoded at construction), how indices become a micro-batch, the
weighted loss of a micro-batch, the optimizer's parameter groups, and which performance
switches of ``student.train`` it can honour, and (optionally) the fast path's fixed-shape
micro-batches (``student.train.fast``, :mod:`harness.train.budget`).

Standard library only (``harness validate`` reads :data:`SWITCHES` through the student kinds,
and the GPU worker imports this).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any, ClassVar

#: The performance switches of ``student.train`` (YAML keys): each changes how the loop
#: computes, never what. An objective lists those it honours in :attr:`Objective.switches`;
#: ``harness validate`` refuses the others for that student kind, and the loop raises on them.
SWITCHES: tuple[str, ...] = ("packing", "chunked_ce", "compile")


class Objective(ABC):
    """What one student kind minimises, over examples encoded once at construction.

    A micro-batch is a dict of CPU tensors plus two plain entries the loop reads:

    - ``n_tokens`` (int): real (non-padding) tokens in it, for throughput and the summary;
    - ``weight_sum``: this micro-batch's share of the optimizer step's loss normaliser (the
      total sample weight the loss sums over). The loop sums the shares of a step with
      ``sum()`` and then takes ``float()``, so an objective that gives 0-d float32 tensors gets
      a float32 sum and one that gives floats a float64 one: each keeps its own arithmetic.

    Attributes:
        name: the objective's name in messages.
        switches: the members of :data:`SWITCHES` it honours.
        betas: AdamW's betas for this kind of training.
    """

    name: ClassVar[str] = ""
    switches: ClassVar[frozenset[str]] = frozenset()
    betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    #: Whether :meth:`prepare_fast` / :meth:`fast_batch` exist (``student.train.fast``).
    fast_path: ClassVar[bool] = False

    @abstractmethod
    def lengths(self) -> Sequence[int]:
        """Tokens per example, in example order (the loop groups examples of similar length)."""

    @abstractmethod
    def param_groups(self, model: Any, cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """AdamW parameter groups (``params``, ``weight_decay``, optionally ``lr``), in order."""

    def prepare(self, model: Any, device: Any, requested: frozenset[str]
                ) -> tuple[Any, dict[str, Any]]:
        """Get ready to compute losses on ``device``, once, after the optimizer is built.

        Args:
            model: the student, already on ``device`` and in train mode.
            requested: the switches of :attr:`switches` the YAML turned on.

        Returns:
            forward: the module :meth:`loss` calls (the loop may ``torch.compile`` it);
            in_effect: per switch of :attr:`switches` other than ``compile`` (the loop adds
            it), what is in effect: True, False, or ``"off: <reason>"``, in summary order.
        """
        return model, {}

    def prepare_fast(self, model: Any, device: Any, steps: list[list[int]],
                     token_budget: int | None, cleanup: ExitStack
                     ) -> tuple[list[list[Any]] | None, Any, dict[str, Any]]:
        """Get ready for the fast path (fixed-shape token-budget micro-batches), after
        :meth:`prepare`; only where :attr:`fast_path` is True.

        Args:
            model: the student, on ``device``, in train mode.
            steps: the examples of each optimizer step (the plain schedule's, in order).
            token_budget: tokens per micro-batch (None: the objective chooses).
            cleanup: undoes what this changes on the model (entered by the loop, closed after
                training).

        Returns:
            plan: per optimizer step, its micro-batches (each an argument of
            :meth:`fast_batch`), or None when the fast path cannot run here; forward: the
            module :meth:`loss` calls on fast micro-batches; in_effect: the summary entries
            (``fast``: True or ``"off: <reason>"``, and its figures).
        """
        return None, model, {"fast": f"off: the {self.name} objective has no fast path"}

    def fast_batch(self, micro: Any) -> dict[str, Any]:
        """A fast micro-batch (CPU tensors, the same dict entries as :meth:`batch`'s)."""
        raise NotImplementedError(f"the {self.name} objective has no fast path")

    def reset_counts(self) -> None:
        """Forget the micro-batches :meth:`loss` counted so far (the loop calls it after the
        compile warm-up, whose micro-batch is trained on again)."""
        return None

    @abstractmethod
    def batch(self, idx: list[int]) -> dict[str, Any]:
        """The micro-batch of examples ``idx`` (CPU tensors; see the class docstring)."""

    @abstractmethod
    def loss(self, forward: Any, batch: dict[str, Any], device: Any) -> Any:
        """The weighted loss *sum* of a micro-batch (scalar float32 tensor on ``device``); the
        loop divides it by the step's normaliser."""

    @abstractmethod
    def summary(self, common: dict[str, Any], in_effect: dict[str, Any]) -> dict[str, Any]:
        """The training summary, from the loop's ``common`` figures (``steps``, ``examples``,
        ``tokens``, ``train_seconds``, ``final_loss``, ``tokens_per_s``) and ``in_effect``,
        with this objective's own entries, in the order the summary is written."""
