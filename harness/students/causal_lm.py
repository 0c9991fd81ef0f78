"""The causal-LM student: a local checkpoint or a from-scratch Llama-style model
(:mod:`harness.students.build`), trained on target tokens (optionally distilled from a
white-box teacher), answering by label scoring or greedy generation. With ``student.adapter``
only a LoRA adapter on the frozen checkpoint trains (:mod:`harness.students.adapter`), the cell
saves the adapter alone, and latency is measured unmerged and merged.

Imports torch and transformers inside methods only (the GPU worker's path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import harness.units as unit_kinds
from harness.store.cell_spec import CellSpec
from harness.students.base import Answers, Log, StudentKind, register
from harness.train.objective import Objective

if TYPE_CHECKING:
    from harness.students.options import CausalLMOptions


def scored_by_likelihood(unit: Mapping[str, Any]) -> bool:
    """Whether a unit's answers are its kind's fixed choices ranked by log-likelihood after the
    answer marker (no generation); every other unit is generated and parsed."""
    return unit_kinds.get(unit["kind"]).answers_by == "loglik"


@register
class CausalLMStudent(StudentKind):
    """A causal LM: generates (or scores) answers after ``prompt + "\\n"``."""

    name = "causal_lm"
    lm_eval = True
    token_soft_labels = True
    why_not: ClassVar[Mapping[str, str]] = {
        "soft_targets": "a causal LM learns a teacher's distribution through student.distill "
                        "or a field set's soft_targets: topk",
        "head_lr": "a causal LM adds no new head: every weight trains at train.lr",
        "pooling": "a causal LM answers from its own next-token scores and pools nothing",
    }

    def __init__(self, spec: CellSpec, paths: Mapping[str, str]) -> None:
        super().__init__(spec, paths)
        self.teacher: Any = None
        #: the ``PeftModel`` around :attr:`model` with ``student.adapter`` (None: full
        #: fine-tuning, or after :meth:`latency` merged the adapter)
        self.peft: Any = None

    @classmethod
    def options_model(cls) -> type[CausalLMOptions]:
        from harness.students.options import CausalLMOptions

        return CausalLMOptions

    @classmethod
    def objective_type(cls) -> type[Objective]:
        from harness.train.objectives.causal_lm import CausalLMObjective

        return CausalLMObjective

    @property
    def distill(self) -> dict[str, Any] | None:
        """``student.distill`` (teacher path, alpha, temperature), when set."""
        return self.student.distill

    @property
    def soft_weight(self) -> float | None:
        """The field set's ``soft_weight`` when it asks for ``soft_targets: topk`` (the
        samples' ``soft_labels`` train towards the teacher's top-k), else None (hard)."""
        fields = self.spec.fields
        if fields.get("soft_targets") != "topk":
            return None
        return float(fields.get("soft_weight", 0.5))

    @property
    def adapter(self) -> dict[str, Any] | None:
        """``student.adapter`` (LoRA ``r``, ``alpha``, ``dropout``, ``target_modules``), when
        set (absent from manifests of cells without one)."""
        return self.student.adapter

    def build(self, samples: Sequence[dict[str, Any]], seed: int) -> None:
        """The student (a checkpoint, or a seeded model with a tokenizer trained on the
        samples' prompts and targets), then the distillation teacher when one is set."""
        from harness.students.build import build_student, load_checkpoint

        texts = [s["prompt"] + "\n" for s in samples] + [s["target"] for s in samples]
        self.model, self.tokenizer = build_student(self.student, texts, seed)
        if self.adapter:
            from harness.students import adapter

            # LoRA layers go into self.model in place: everything below trains and answers
            # with the model it always gets, and only the adapter's weights require grad.
            self.peft = adapter.attach(self.model, self.adapter, seed)
        if self.distill:
            self.teacher, _ = load_checkpoint(Path(self.paths["teacher_model"]),
                                              self.student.trust_remote_code)

    def objective(self, samples: list[dict[str, Any]]) -> Objective:
        from harness.train.objectives.causal_lm import CausalLMObjective

        return CausalLMObjective.from_samples(self.tokenizer, samples, self.train_cfg,
                                              teacher=self.teacher, distill=self.distill,
                                              soft_weight=self.soft_weight)

    def train(self, samples: list[dict[str, Any]], *, seed: int, device: Any,
              log: Log | None = None) -> dict[str, Any]:
        """The shared loop on :meth:`objective` (:meth:`StudentKind.train`); with an adapter,
        the summary adds the trainable and total parameter counts."""
        summary = super().train(samples, seed=seed, device=device, log=log)
        if self.peft is not None:
            from harness.students.adapter import parameter_counts

            summary.update(parameter_counts(self.model))
        return summary

    def save(self, folder: Path) -> None:
        """The checkpoint and tokenizer; with an adapter, the adapter, tokenizer and the base's
        path and content hash instead (:func:`harness.students.adapter.save`)."""
        if self.peft is None:
            super().save(folder)
            return
        from harness.students.adapter import save

        save(self.peft, self.tokenizer, folder, Path(str(self.student.model)))

    def answer(self, unit_name: str, unit: Mapping[str, Any], prompts: list[str], device: Any
               ) -> Answers:
        """Label units: each label's log-likelihood after ``prompt + "\\n" + marker``, softmaxed
        (the answer line is rebuilt as ``marker label``); others: greedy generation, parsed."""
        from harness.evaluate.generate import generate, parse_answers
        from harness.evaluate.predict import default_token_budget, score_labels, softmax_rows

        max_len = self.student.train.max_len
        marker = unit["answer_marker"]
        if scored_by_likelihood(unit):
            labels = list(unit_kinds.get(unit["kind"]).choices(unit) or ())
            ll = score_labels(self.model, self.tokenizer, prompts, labels, marker, device,
                              max_len=max_len, token_budget=default_token_budget(device))
            probs = softmax_rows(ll)
            answers: list[str | None] = [labels[j] for j in probs.argmax(axis=1)]
            return Answers([f"{marker} {a}" for a in answers], answers, probs, calibrated=True)
        max_new = self.spec.evaluation.max_new_tokens
        texts = generate(self.model, self.tokenizer, prompts, device, max_new, max_len=max_len)
        return Answers(texts, parse_answers(texts, marker))

    def latency(self, prompts: list[str], device: Any, *, runs: int, batch_size: int,
                new_tokens: int, checkpoint_dir: Path) -> dict[str, Any]:
        """Batch-1 generation latency, time to first token, decode speed, throughput, size.

        With an adapter: measured with the LoRA layers (``unmerged_*``), then the adapter is
        merged into the weights in place (the worker's last use of the model) and measured
        again under the usual keys (:func:`harness.students.adapter.latency_record`).
        """
        from harness.evaluate.latency import measure

        def timed() -> dict[str, Any]:
            return measure(self.model, self.tokenizer, prompts, device, runs=runs,
                           new_tokens=new_tokens, batch_size=batch_size,
                           checkpoint_dir=checkpoint_dir)

        if self.peft is None or self.adapter is None:
            return timed()
        from harness.students import adapter

        trainable = adapter.parameter_counts(self.model)["trainable_parameters"]
        unmerged = timed()
        self.model, self.peft = adapter.merge(self.peft), None
        return adapter.latency_record(timed(), unmerged, adapter=self.adapter,
                                      trainable=trainable, checkpoint_dir=checkpoint_dir)
