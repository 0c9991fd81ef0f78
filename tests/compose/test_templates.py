"""Target templates: vectorised and row-by-row rendering agree; the answer contract holds."""

from __future__ import annotations

import polars as pl

from harness.answers import parse_answer
from harness.compose.templates import DEFAULT_TEMPLATE, TargetTemplate
from harness.experiment.models import LabelUnit

ROWS = pl.DataFrame({
    "final": ["billing", "shipping", "account", "technical"],
    "rationale": ["r1", None, "", "r4"],
    "limits": [None, "l2", None, "l4"],
    "trajectory": [None, None, "t3", None],
    "wrong": [None, "billing", None, None],
    "note": [None, "n2", None, None],
})


def test_vectorised_equals_row_by_row():
    fast = TargetTemplate(DEFAULT_TEMPLATE, "Answer:", "u", vectorisable=True)
    slow = TargetTemplate(DEFAULT_TEMPLATE, "Answer:", "u", vectorisable=False)
    assert fast.render_frame(ROWS).to_list() == slow.render_frame(ROWS).to_list()


def test_filters_fall_back_to_row_rendering():
    from harness.compose.templates import compile_target_template

    unit = LabelUnit(kind="label", labels=["a", "b"],
                     template="{{ marker }} {{ final }}{% if rationale %}\n{{ rationale|upper }}"
                              "{% endif %}")
    tmpl = compile_target_template(unit)
    assert not tmpl.vectorisable
    assert tmpl.render_frame(ROWS)[0] == "Answer: billing\nR1"


def test_answer_is_parsed_back_from_every_target():
    tmpl = TargetTemplate(DEFAULT_TEMPLATE, "Answer:", "u", vectorisable=True)
    for target, final in zip(tmpl.render_frame(ROWS), ROWS["final"], strict=True):
        assert parse_answer(target, "Answer:") == final
    assert parse_answer("no marker here", "Answer:") is None
