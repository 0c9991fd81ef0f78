"""Target templates: how a teacher answer's fields become the student's target text.

Templates are Jinja2 (sandboxed with bounded output, work and nesting, see
:mod:`harness.compose.sandbox`; no autoescape: targets are plain text). Every target starts its
answer with the unit's answer marker, so evaluation can always parse the final answer out of a
longer target: *the answer is the text after the first marker, up to the end of that line*.

Speed: rendering a million targets one Jinja2 call at a time costs tens of seconds, so a template
that only prints variables and tests them in ``{% if %}`` is rendered once per *presence pattern*
(which optional fields are present) with placeholders, and the result becomes one vectorised
polars string expression. Templates that transform variables (filters, calls) fall back to
rendering row by row; the output is the same either way.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, UndefinedError, nodes

from harness.answers import parse_answer
from harness.compose.sandbox import BoundedSandbox, budget

if TYPE_CHECKING:
    import polars as pl

    from harness.experiment.models import UnitOptions

#: Row variables (columns of the composed table). ``final`` is always present.
OPTIONAL_VARS: tuple[str, ...] = ("rationale", "limits", "trajectory", "wrong", "note")
ROW_VARS: tuple[str, ...] = ("final", *OPTIONAL_VARS)

DEFAULT_TEMPLATE = (
    "{{ marker }} {{ final }}"
    "{% if rationale %}\nReason: {{ rationale }}{% endif %}"
    "{% if trajectory %}\nSteps: {{ trajectory }}{% endif %}"
    "{% if limits %}\nLimits: {{ limits }}{% endif %}"
    "{% if wrong %}\nNot: {{ wrong }}{% if note %} ({{ note }}){% endif %}{% endif %}"
)
_SENTINEL = "\x1e{}\x1f"
_SENTINEL_RE = re.compile("\x1e([a-z]+)\x1f")


class TemplateProblem(ValueError):
    """A target template that cannot be used (syntax, unknown variable, missing marker)."""


@lru_cache(maxsize=1)
def _env() -> BoundedSandbox:
    """The sandbox every target template renders in: bounded output, work and nesting
    (:mod:`harness.compose.sandbox`)."""
    return BoundedSandbox(autoescape=False, undefined=StrictUndefined,
                          keep_trailing_newline=False)


@lru_cache(maxsize=256)
def _compiled(source: str) -> Template:
    """Compile a template once; rendering a compiled template is cheap."""
    return _env().from_string(source)


def _only_simple_uses(tree: nodes.Node) -> bool:
    """True when row variables appear only as ``{{ var }}`` or as a bare ``{% if var %}``."""

    def walk(node: nodes.Node, parent: nodes.Node | None) -> bool:
        if isinstance(node, nodes.Name) and node.name in ROW_VARS:
            if isinstance(parent, nodes.Output):
                return True
            return isinstance(parent, nodes.If) and parent.test is node
        return all(walk(child, node) for child in node.iter_child_nodes())

    return walk(tree, None)


@dataclass(frozen=True)
class TargetTemplate:
    """A compiled target template for one unit.

    Attributes:
        source: the Jinja2 text.
        marker: the unit's answer marker.
        unit: the unit name (available to the template).
        vectorisable: whether the fast column-wise path applies.
    """

    source: str
    marker: str
    unit: str
    vectorisable: bool

    def render_one(self, row: dict[str, Any], *, own_budget: bool = True) -> str:
        """Render one target; absent optional fields must be None or missing.

        With ``own_budget`` the render gets bounds that grow with the row's text (so long real
        answers render as they always did); without, it spends the caller's budget.
        """
        ctx = {v: row.get(v) or None for v in OPTIONAL_VARS}
        ctx.update(final=row["final"], marker=self.marker, unit=self.unit)
        if not own_budget:
            return _compiled(self.source).render(ctx)
        size = sum(len(v) for v in ctx.values() if isinstance(v, str))
        with budget(size):
            return _compiled(self.source).render(ctx)

    def render_frame(self, df: pl.DataFrame) -> pl.Series:
        """Render the ``target`` of every row of ``df`` (columns: ``ROW_VARS``; Utf8, nullable).

        Returns:
            a Utf8 series of length ``df.height``.
        """
        import polars as pl

        if df.height == 0:
            return pl.Series("target", [], dtype=pl.Utf8)
        if not self.vectorisable:
            rows = df.select(ROW_VARS).iter_rows(named=True)
            return pl.Series("target", [self.render_one(r) for r in rows], dtype=pl.Utf8)
        present = [pl.col(v).is_not_null() & (pl.col(v) != "") for v in OPTIONAL_VARS]
        pattern_code = sum((p.cast(pl.Int32) * (1 << i) for i, p in enumerate(present)),
                           pl.lit(0, dtype=pl.Int32))
        codes = df.select(pattern_code.alias("c"))["c"].unique().to_list()
        expr: pl.Expr | None = None
        for code in sorted(codes):
            flags = {v: bool(code >> i & 1) for i, v in enumerate(OPTIONAL_VARS)}
            piece = self._pattern_expr(flags)
            cond = pattern_code == code
            expr = (pl.when(cond).then(piece) if expr is None
                    else expr.when(cond).then(piece))  # type: ignore[attr-defined]
        assert expr is not None
        final = expr.otherwise(pl.lit(None, dtype=pl.Utf8))  # type: ignore[attr-defined]
        return df.select(final.alias("target"))["target"]

    def _pattern_expr(self, flags: dict[str, bool]) -> pl.Expr:
        """One presence pattern -> a concat of literals and columns."""
        import polars as pl

        ctx: dict[str, Any] = {v: (_SENTINEL.format(v) if flags[v] else None)
                               for v in OPTIONAL_VARS}
        ctx.update(final=_SENTINEL.format("final"), marker=self.marker, unit=self.unit)
        with budget():
            text = _compiled(self.source).render(ctx)
        parts: list[pl.Expr] = []
        pos = 0
        for m in _SENTINEL_RE.finditer(text):
            if m.start() > pos:
                parts.append(pl.lit(text[pos:m.start()]))
            parts.append(pl.col(m.group(1)))
            pos = m.end()
        if pos < len(text):
            parts.append(pl.lit(text[pos:]))
        return pl.concat_str(parts) if parts else pl.lit("")


def compile_target_template(unit: UnitOptions, unit_name: str = "unit") -> TargetTemplate:
    """Check a unit's template and return it compiled.

    Raises:
        TemplateProblem: syntax error, unknown variable, or an output that does not put the
            final answer right after the answer marker.
    """
    source = unit.template if unit.template is not None else DEFAULT_TEMPLATE
    checked = _checked_template(source, unit.answer_marker, unit_name)
    if isinstance(checked, str):
        raise TemplateProblem(checked)
    return checked


@lru_cache(maxsize=1024)
def _checked_template(source: str, marker: str, unit_name: str) -> TargetTemplate | str:
    """The compiled template, or why it cannot be used (cached: 10,000 units often share one
    template, and each check renders it 32 times)."""
    try:
        return _check_template(source, marker, unit_name)
    except TemplateProblem as exc:
        return str(exc)


def _check_template(source: str, marker: str, unit_name: str) -> TargetTemplate:
    env = _env()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"template syntax error on its line {exc.lineno}: "
                              f"{exc.message}") from None
    except (RecursionError, MemoryError):  # not expected: nesting is checked on the tokens
        raise TemplateProblem("the template nests too deeply") from None
    tmpl = TargetTemplate(source=source, marker=marker, unit=unit_name,
                          vectorisable=_only_simple_uses(tree))
    # Render every presence pattern once with placeholders: catches unknown variables and
    # checks the answer contract in all of them. The 32 renders share one budget, so a template
    # that works for its own sake is refused here, at validate time.
    with budget():
        for combo in itertools.product((False, True), repeat=len(OPTIONAL_VARS)):
            _check_pattern(tmpl, combo, marker)
    return tmpl


def _check_pattern(tmpl: TargetTemplate, combo: tuple[bool, ...], marker: str) -> None:
    """Render one presence pattern with placeholders and check the answer contract."""
    row: dict[str, Any] = {v: (f"<{v}>" if on else None)
                           for v, on in zip(OPTIONAL_VARS, combo, strict=True)}
    row["final"] = "<final>"
    try:
        out = tmpl.render_one(row, own_budget=False)
    except UndefinedError as exc:
        from harness.errors import did_you_mean

        name = str(exc.message or "").split("'")[1] if "'" in str(exc.message) else ""
        known = [*ROW_VARS, "marker", "unit"]
        raise TemplateProblem(f"template uses an unknown variable: {exc.message}"
                              f"{did_you_mean(name, known)} (known: {', '.join(known)})"
                              ) from None
    except Exception as exc:  # noqa: BLE001 - any render failure is the user's template
        raise TemplateProblem(f"template cannot be rendered: {exc}") from None
    first_line = parse_answer(out, marker)
    if first_line is None or first_line != "<final>":
        raise TemplateProblem(
            f"the rendered target must contain the answer marker {marker!r} "
            "followed by {{ final }} on the same line (evaluation parses the answer there)"
        )
