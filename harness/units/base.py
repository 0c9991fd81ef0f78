"""The unit-kind interface: everything the pipeline needs to know about one kind of unit.

A *unit* is one capability the student is trained and judged on (``units:`` in the YAML); its
*kind* decides how answers are obtained, validated, scored, compared with the teachers', laid
out for a classifier student and exported to lm-eval. Each kind is one subclass of
:class:`UnitKind` in its own module, registered by name (:mod:`harness.units.registry`).

Methods take the unit's options as a plain mapping (``kind``, ``answer_marker``, the kind's
vocabulary such as ``labels``): the dict stored in ``manifest.json``, or a validated spec model's
``model_dump()``. Standard library only at import time — the GPU worker imports this; pydantic is
imported inside :meth:`UnitKind.options_model` only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from harness.units.common import MetricDef, Scored, canonical, decode_json_strictly

#: How a student's answer to a unit is obtained: ``loglik`` ranks the kind's fixed choices by
#: log-likelihood after the answer marker (no generation); ``generate`` decodes greedily and
#: parses the text after the marker.
AnswersBy = Literal["loglik", "generate"]

_model_cache: dict[type, type] = {}

#: The ``final`` of a generated candidate whose teacher gave no parseable answer (or whose call
#: failed): it sits in the failure pool with the reason, and every scorer counts it as wrong.
NO_ANSWER = ""

#: The JSON Schema of each extra field a teacher may be asked for beside its answer
#: (``generate.fields``; the prompt's wording of them is ``harness.teachers.prompts``). A
#: trajectory's arguments are free-form (a unit declares tool names, not argument schemas).
FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "rationale": {"type": "string"},
    "limits": {"type": "string"},
    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    "trajectory": {"type": "array", "items": {
        "type": "object",
        "properties": {"tool": {"type": "string"}, "arguments": {"type": "object"},
                       "observation": {"type": ["string", "null"]}},
        "required": ["tool", "arguments", "observation"], "additionalProperties": False}},
}


class UnitKind:
    """Base class of a unit kind; subclasses set the class attributes and override methods.

    Attributes:
        name: the ``kind:`` value in the YAML (letters, digits, ``_``).
        metrics: every metric the unit reports, in report order, with its direction.
        field_metrics: per-field metric families (``f1`` -> ``f1.<field>``, one per name of
            :meth:`metric_fields`).
        primary: the metric the unit is judged by first (gate, attribution, curves).
        decision: further metrics attribution tests besides the primary (each recomputable
            from ``Scored.parts`` by :meth:`metric_from_sums`); they join the family of
            comparisons corrected for multiplicity.
        decision_fields: per-field families attribution tests for every field (``f1`` ->
            ``f1.<field>`` for each name of :meth:`metric_fields`).
        error_metric: the metric whose complement is a teacher's error rate (ROI); the primary
            metric when None.
        answers_by: ``loglik`` or ``generate`` (see :data:`AnswersBy`).
        binary_primary: the primary metric is the mean of the per-item ``correct`` flags, so a
            paired comparison may use McNemar's exact test.
        json_answers: answers are JSON text (compose compacts them instead of collapsing
            whitespace).
        classifier: a classifier student can answer the unit (:meth:`classifier_classes`).
        bad_final: what a teacher final failing :meth:`final_problem` is: an ``error`` that
            fails validation, or a ``warning`` (counted; kept as a teacher error).
    """

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[MetricDef, ...]] = ()
    field_metrics: ClassVar[tuple[MetricDef, ...]] = ()
    primary: ClassVar[str] = ""
    decision: ClassVar[tuple[str, ...]] = ()
    decision_fields: ClassVar[tuple[str, ...]] = ()
    error_metric: ClassVar[str | None] = None
    answers_by: ClassVar[AnswersBy] = "generate"
    binary_primary: ClassVar[bool] = True
    json_answers: ClassVar[bool] = False
    classifier: ClassVar[bool] = False
    bad_final: ClassVar[Literal["error", "warning"]] = "error"

    # ------------------------------------------------------------------ scoring

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        """Metrics of parallel predicted answers (None = unparseable) and references."""
        raise NotImplementedError(f"unit kind {self.name!r} has no scorer")

    def primary_from_parts(self, sums: Mapping[str, float], n: int) -> float:
        """The primary metric from summed per-item parts (``Scored.parts``) of ``n`` items.

        The default is the mean of ``correct`` (passed as ``sums["correct"]``); kinds whose
        primary metric is not a mean of per-item flags override it.
        """
        return sums["correct"] / n if n else 0.0

    def decision_metrics(self, unit: Mapping[str, Any]) -> list[str]:
        """The metrics attribution tests on this unit: the primary first, then
        :attr:`decision`, then each field of each :attr:`decision_fields` family."""
        out = [self.primary, *(m for m in self.decision if m != self.primary)]
        return out + [f"{fam}.{f}" for fam in self.decision_fields
                      for f in self.metric_fields(unit)]

    def metric_def(self, metric: str) -> MetricDef:
        """The definition of one of the unit's metrics (``f1.<field>`` -> the ``f1`` family).

        Raises:
            KeyError: the kind does not report ``metric``.
        """
        base, dot, _ = metric.partition(".")
        for m in (self.field_metrics if dot else self.metrics):
            if m.name == base:
                return m
        raise KeyError(f"unit kind {self.name!r} reports no metric {metric!r}")

    def metric_parts(self, metric: str) -> tuple[str, ...] | None:
        """The names of the ``Scored.parts`` :meth:`metric_from_sums` needs for ``metric``
        (None: every part, the default for the primary)."""
        return None

    def metric_from_sums(self, metric: str, sums: Mapping[str, float], n: int) -> float:
        """A decision metric from the summed parts of ``n`` items; the primary by default.

        Raises:
            KeyError: ``metric`` cannot be recomputed from parts.
        """
        if metric == self.primary:
            return self.primary_from_parts(sums, n)
        raise KeyError(f"unit kind {self.name!r} cannot recompute {metric!r} from parts")

    def metric_from_items(self, metric: str, parts: Mapping[str, Any], idx: Any) -> float:
        """A decision metric on the items ``idx`` (an index array, repeats allowed) from the
        per-item parts (``{name: array of shape (n,)}``): sums the parts it needs over ``idx``
        and calls :meth:`metric_from_sums`. Kinds with a metric that is not a function of sums
        (macro-F1) override it."""
        names = self.metric_parts(metric)
        use = parts if names is None else {k: parts[k] for k in names}
        return self.metric_from_sums(metric, {k: float(v[idx].sum()) for k, v in use.items()},
                                     len(idx))

    def metric_is_of_sums(self, metric: str) -> bool:
        """Whether ``metric`` is a function of the summed per-item parts
        (:meth:`metric_from_sums`), so that its per-item linearisation is exact and cheap
        (:func:`harness.analysis.variance.item_values`); False for metrics computed otherwise
        (macro-F1), which are linearised by the jackknife."""
        return True

    def metric_fields(self, unit: Mapping[str, Any]) -> Sequence[str]:
        """The names the per-field families are reported for (e.g. a unit's fields)."""
        return ()

    def known_metrics(self, unit: Mapping[str, Any]) -> list[str]:
        """Every metric name this unit can report (``gate.min_metric`` is checked against it)."""
        return [m.name for m in self.metrics] + [
            f"{fam.name}.{f}" for fam in self.field_metrics for f in self.metric_fields(unit)]

    @property
    def teacher_error_metric(self) -> str:
        """The metric whose complement is a teacher's error rate on the unit."""
        return self.error_metric or self.primary

    @property
    def calibrated(self) -> bool:
        """Whether answers come with probabilities over :meth:`choices` (calibration)."""
        return self.answers_by == "loglik"

    def decision_key(self, unit: Mapping[str, Any], answer: str | None) -> str | None:
        """What 'agreeing with the teacher' compares (fidelity): the canonical answer."""
        return canonical(answer)

    # ------------------------------------------------------------------ teachers (generate)

    #: The generate stage checks a teacher's answer against a gold reference with
    #: :meth:`score` (wrong answers go to the failure pool); False for free-text kinds, whose
    #: exact match would call most good answers wrong.
    reference_judged: ClassVar[bool] = True

    def teacher_instruction(self, unit: Mapping[str, Any]) -> str:
        """What the ``answer`` a teacher returns must hold for this unit (one phrase of the
        teacher's prompt, after "answer:")."""
        return "the answer itself, in a few words on one line"

    def parse_teacher_final(self, value: Any, unit: Mapping[str, Any], *, plain: bool = False
                            ) -> str | None:
        """The contract ``final`` a teacher's answer stands for, or None when it is unparseable.

        Args:
            value: the ``answer`` of the teacher's JSON object (any JSON value), or, with
                ``plain``, the answer text found without JSON (after "Answer:", or the first
                line).
            unit: the unit's options.
            plain: ``value`` is free text rather than a JSON value.

        The default keeps non-empty text (whitespace collapsed onto one line) and numbers.
        """
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            return None
        text = " ".join(str(value).split())
        return text or None

    def answer_value_schema(self, unit: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON Schema of the ``answer`` value a teacher returns for this unit (what
        :meth:`teacher_instruction` asks for), for endpoints that decode to a schema
        (structured outputs). The default: a string, described by the instruction."""
        return {"type": "string", "description": self.teacher_instruction(unit)}

    def answer_schema(self, unit: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
        """The JSON Schema of a teacher's whole answer object: ``answer`` (first, as the prompt
        asks) and each asked field of ``fields`` (:data:`FIELD_SCHEMAS` keys), every key
        required and no other allowed, as OpenAI's strict structured outputs require
        (https://platform.openai.com/docs/guides/structured-outputs#supported-schemas)."""
        props = {"answer": self.answer_value_schema(unit),
                 **{f: FIELD_SCHEMAS[f] for f in fields}}
        return {"type": "object", "properties": props, "required": list(props),
                "additionalProperties": False}

    # ------------------------------------------------------------------ answering

    def failure_answer(self, unit: Mapping[str, Any]) -> str | None:
        """The target of a failed teacher answer that has no correction (compose's failure
        modes), or None when such a failure cannot become a sample."""
        return None

    def choices(self, unit: Mapping[str, Any]) -> list[str] | None:
        """The answers ranked by log-likelihood (``answers_by == "loglik"`` kinds only)."""
        return None

    def classifier_classes(self, unit: Mapping[str, Any]) -> tuple[str, ...] | None:
        """The unit's class block in a classifier's output layer; None when a classifier
        student cannot answer this kind."""
        return None

    def class_index(self, classes: Sequence[str], answer: str) -> int | None:
        """Index within ``classes`` of a (stripped) training answer; None when it is none of
        them (the sample is skipped)."""
        try:
            return list(classes).index(answer)
        except ValueError:
            return None

    def class_answer(self, classes: Sequence[str], index: int) -> str:
        """The answer a classifier gives when it picks class ``index``."""
        return classes[index]

    # ------------------------------------------------------------------ validation

    def reference_problem(self, unit: Mapping[str, Any], unit_name: str, value: str
                          ) -> str | None:
        """Why an eval ``reference`` is invalid for the unit (an error), or None."""
        return None

    def correction_problem(self, unit: Mapping[str, Any], unit_name: str, value: str
                           ) -> str | None:
        """Why a failure's ``correction`` is invalid for the unit (an error), or None."""
        return None

    def final_problem(self, unit: Mapping[str, Any], unit_name: str, value: str) -> str | None:
        """Why a teacher's ``final`` is invalid for the unit, or None (see ``bad_final``)."""
        return None

    def finals_warning(self, unit_name: str, count: int) -> str:
        """The warning line for ``count`` finals failing :meth:`final_problem` (``bad_final
        == "warning"`` kinds)."""
        return f"{count} answer(s) of unit {unit_name!r} are not valid (kept as teacher errors)"

    # ------------------------------------------------------------------ lm-eval export

    def lm_eval_task(self, unit: Mapping[str, Any]) -> dict[str, Any]:
        """The kind's part of an lm-eval task config (``output_type`` first).

        Default: ``generate_until`` a newline after ``prompt + "\\n"``, a regex filter keeping
        the text after the marker, and ``exact_match`` against the reference.
        """
        marker = unit["answer_marker"]
        return {
            "output_type": "generate_until",
            "doc_to_text": "{{prompt}}\n",
            "doc_to_target": "{{reference}}",
            "target_delimiter": "",
            "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": 64},
            "filter_list": [{"name": "answer", "filter": [
                {"function": "regex", "regex_pattern": re.escape(marker) + r"\s*(.*)",
                 "group_select": 0},
                {"function": "take_first"}]}],
            "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                             "higher_is_better": True, "ignore_case": False,
                             "ignore_punctuation": False}],
        }

    def lm_eval_row(self, unit: Mapping[str, Any], item: Mapping[str, Any]) -> dict[str, Any]:
        """Extra columns of an eval item's row in the exported lm-eval dataset."""
        return {}

    # ------------------------------------------------------------------ YAML options

    def define_options(self) -> type:
        """Build the pydantic model of the unit's YAML options (subclass of
        ``harness.units.options.UnitOptions`` with ``kind: Literal[<name>]``).

        Called once, lazily: import pydantic and the spec inside the override so that the
        worker, which imports every kind, never imports pydantic.
        """
        raise NotImplementedError(f"unit kind {self.name!r} declares no options model")

    def options_model(self) -> type:
        """The (cached) pydantic model validating a ``units:`` entry of this kind."""
        cls = type(self)
        if cls not in _model_cache:
            _model_cache[cls] = self.define_options()
        return _model_cache[cls]


class JsonAnswerKind(UnitKind):
    """A kind whose answers are JSON text of one shape (:meth:`shape_problem`): finals and
    corrections of another shape are errors; a reference must have the shape and may add the
    kind's vocabulary rule (:meth:`vocabulary_problem`)."""

    json_answers = True

    def shape_problem(self, text: str) -> str | None:
        """Why ``text`` is not an answer of this kind's JSON shape, or None."""
        raise NotImplementedError

    def vocabulary_problem(self, unit: Mapping[str, Any], value: Any) -> str | None:
        """Why a well-shaped reference (decoded ``value``) names what the unit does not
        declare, or None."""
        return None

    def final_problem(self, unit: Mapping[str, Any], unit_name: str, value: str) -> str | None:
        if value == NO_ANSWER:  # a generated candidate without a parseable answer (scored wrong)
            return None
        why = self.shape_problem(value)
        return None if why is None else f"{why} (unit {unit_name!r} is {self.name})"

    def parse_teacher_final(self, value: Any, unit: Mapping[str, Any], *, plain: bool = False
                            ) -> str | None:
        """A JSON value of the kind's shape (or text holding one), compacted; else None."""
        if isinstance(value, str):
            ok, value = decode_json_strictly(value.strip())
            if not ok:
                return None
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return None if self.shape_problem(text) is not None else text

    def correction_problem(self, unit: Mapping[str, Any], unit_name: str, value: str
                           ) -> str | None:
        return self.shape_problem(value)

    def reference_problem(self, unit: Mapping[str, Any], unit_name: str, value: str
                          ) -> str | None:
        why = self.shape_problem(value)
        if why is None:
            why = self.vocabulary_problem(unit, decode_json_strictly(value)[1])
        return None if why is None else f"{why} (unit {unit_name!r})"
