"""The bounded template sandbox: valid templates render exactly as in Jinja2's plain sandbox;
templates that work for their own sake are stopped at their bound."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from harness.compose.sandbox import MAX_NESTING, BoundedSandbox, TemplateBoundError, budget
from harness.compose.templates import DEFAULT_TEMPLATE, OPTIONAL_VARS

PLAIN = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
BOUNDED = BoundedSandbox(autoescape=False, undefined=StrictUndefined)

VALID = [
    DEFAULT_TEMPLATE,
    "{{ marker }} {{ final }}{% if rationale %}\nBecause: {{ rationale }}{% endif %}"
    "{% if wrong %}\nNot: {{ wrong }}{% if note %} ({{ note }}){% endif %}{% endif %}",
    "{{ marker }} {{ final }}{% if rationale %}\n{{ rationale|upper }}{% endif %}",
    "{{ marker }} {{ final ~ '!' }} {{ '-' * 3 }} {{ (final + '?')|length }} {{ 2 ** 10 }}",
    "{% for c in final %}{{ loop.index }}{{ c }}{% else %}none{% endfor %} {{ marker }}",
    "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ marker }} {{ m(final) }} {{ '%5s|' % final }}",
    "{{ marker }} {{ '{:>4}'.format(final) }} {{ '%-3d' | format(7) }} "
    "{{ final.center(12) }} {{ range(3)|list }} {{ final|replace('a', 'bb')|truncate(9) }}",
    "{% set x %}{{ final }}{{ final }}{% endset %}{{ marker }} {{ x }} {{ unit }}",
]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(row=st.fixed_dictionaries({v: st.none() | text for v in OPTIONAL_VARS}), final=text,
       source=st.sampled_from(VALID))
def test_valid_templates_render_byte_identically(row: dict[str, str | None], final: str,
                                                 source: str) -> None:
    ctx = {**row, "final": final, "marker": "Answer:", "unit": "u"}
    with budget():
        ours = BOUNDED.from_string(source).render(ctx)
    assert ours == PLAIN.from_string(source).render(ctx)


@pytest.mark.parametrize("source", [
    "{{ 'x' * 200000 }}", "{{ 'ab'.ljust(10**7) }}", "{% for i in range(100000) %}"
    "{% for j in range(100000) %}{% endfor %}{% endfor %}", "{{ 7 ** 100000 }}",
    "{% for i in range(99999) %}{{ 'xy' }}{% endfor %}", "{{ '%.999999f' % 1.0 }}",
])
def test_bounds_are_enforced(source: str) -> None:
    with pytest.raises(TemplateBoundError), budget():
        BOUNDED.from_string(source).render()


def test_nesting_is_checked_before_parsing() -> None:
    ok = "{% if 1 %}" * MAX_NESTING + "x" + "{% endif %}" * MAX_NESTING
    with budget():
        assert BOUNDED.from_string(ok).render() == "x"
    from jinja2 import TemplateSyntaxError

    with pytest.raises(TemplateSyntaxError, match="nests deeper"):
        BOUNDED.from_string("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")


def test_bounds_grow_with_the_row_so_long_answers_still_render() -> None:
    long = "y" * 300_000  # longer than the fixed output bound
    with budget(len(long)):
        assert BOUNDED.from_string("{{ final }}{{ final|upper }}").render(final=long) == (
            long + long.upper())
