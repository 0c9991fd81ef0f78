"""Options every unit has, whatever its kind: the base of each kind's options model.

Each kind's own model (``LabelUnit``, ...) subclasses :class:`UnitOptions` in the kind's module
(``UnitKind.define_options``); the experiment model (:mod:`harness.experiment.unit_options`)
finds it in the unit-kind registry. Living here, below both, a unit kind never imports the
experiment package.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from harness.strict import Strict


class UnitOptions(Strict):
    """Options every unit has; each kind's model (``LabelUnit``...) adds ``kind`` and its own.

    The kind models live with their kind (``harness/units/<kind>.py``, built by
    ``UnitKind.define_options``) and are looked up in the unit-kind registry, so a kind
    registered at run time validates like a built-in one.
    """

    template: str | None = Field(
        None,
        description="Jinja2 target template (inline text). Variables: final, rationale, limits, "
        "trajectory, marker, unit. Default: the kind's built-in template.",
    )
    answer_marker: str = Field(
        "Answer:",
        min_length=1,
        description="Text that precedes the final answer in every target, so evaluation can "
        "parse the answer out of a longer target.",
    )
    #: Narrowed to ``Literal["<name>"]`` by each kind's model (declared here, after the shared
    #: options, so every kind's fields keep the order template, answer_marker, kind, ...).
    kind: str

    @field_validator("answer_marker")
    @classmethod
    def _single_line(cls, v: str) -> str:
        if "\n" in v:
            raise ValueError("answer_marker must be a single line")
        if not v.strip():  # whitespace alone: every target would "contain" it anywhere
            raise ValueError(f"answer_marker {v!r} must contain a visible character")
        return v
