"""A Jinja2 sandbox whose renders are bounded in output size, memory and work.

Jinja2's :class:`~jinja2.sandbox.SandboxedEnvironment` stops templates from reaching Python
internals, but not from working for its own sake: ``{{ 'x' * 1000000000 }}`` allocates a GB,
nested ``range`` loops run for hours, 3,000 nested ``{% if %}`` blocks overflow the parser's
recursion. :class:`BoundedSandbox` adds, per render (a :class:`Budget`):

* **work**: every loop iteration, function/method/filter call and intercepted operator costs one
  step; at most ``Budget.steps`` (loops are wrapped at parse time, so a loop that prints nothing
  is counted too; ``recursive`` loops are refused as they bypass the wrapper);
* **size**: every string or list a call, filter, ``*``, ``+``, ``%`` or ``~`` makes, and the
  whole output, is at most ``Budget.max_len`` items; the size is checked *before* the allocation
  where it can be known (repetition, concatenation), and integer arguments above it (widths such
  as ``center(10**9)``, ``'%999999999d'``) are refused, so no single step allocates much more;
* **numbers**: ``*`` and ``**`` on integers stay under 4,096 bits;
* **nesting**: at most :data:`MAX_NESTING` nested blocks or brackets, checked on the tokens
  before parsing (the parser and Python's compiler recurse per level).

A broken bound raises :class:`TemplateBoundError`. Templates within the bounds render exactly as
in the plain sandbox.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

#: Output characters (and the length of any intermediate string or list) of one render.
MAX_OUTPUT = 100_000
#: Loop iterations plus calls in one render.
MAX_STEPS = 100_000
#: Nested blocks plus brackets in a template's source.
MAX_NESTING = 30
_MAX_BITS = 4096
_LOOP_GUARD = "_harness_loop_guard"
_CONCAT_GUARD = "_harness_concat_guard"
_OPENING = frozenset({"if", "for", "macro", "call", "filter", "block", "with", "autoescape"})
_DIGITS = re.compile(r"\d+")


class TemplateBoundError(SecurityError):
    """A render went past its bounds (output size, work, numbers)."""


@dataclass
class Budget:
    """What one render may still spend.

    Attributes:
        steps: loop iterations and calls left.
        max_len: the longest string or list (characters or items) any step may make.
    """

    steps: int = MAX_STEPS
    max_len: int = MAX_OUTPUT

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateBoundError("the template does too much work (more than "
                                     f"{MAX_STEPS:,} loop iterations and calls in one render)")

    def size(self, n: int, what: str = "a value") -> None:
        if n > self.max_len:
            raise TemplateBoundError(f"the template makes {what} of {n:,} characters or items "
                                     f"(at most {self.max_len:,})")


_current: ContextVar[Budget | None] = ContextVar("harness_template_budget", default=None)


def _budget() -> Budget:
    b = _current.get()
    return b if b is not None else Budget()


@contextlib.contextmanager
def budget(extra_chars: int = 0) -> Iterator[Budget]:
    """Bound the renders inside the block; ``extra_chars`` (the row's text length) raises both
    bounds by 10x itself, so a template that copies or walks long real answers still fits."""
    b = Budget(steps=MAX_STEPS + 10 * extra_chars, max_len=MAX_OUTPUT + 10 * extra_chars)
    token = _current.set(b)
    try:
        yield b
    finally:
        _current.reset(token)


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple | dict) else None


def _check_args(args: Iterable[Any], b: Budget) -> None:
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > b.max_len:
            raise TemplateBoundError(f"the template passes the number {a:.3g} to a function or "
                                     f"filter (at most {b.max_len:,} there)")


def _check_format(fmt: str, b: Budget) -> None:
    """Refuse widths and precisions above the size bound (``'%999999999d'``, ``{:>9999999}``)."""
    for m in _DIGITS.finditer(fmt):
        if len(m.group()) > 9 or int(m.group()) > b.max_len:
            raise TemplateBoundError(f"the template formats with width {m.group()[:12]} (at "
                                     f"most {b.max_len:,})")


def _format_string(obj: Any) -> str | None:
    """The format string when ``obj`` is ``'...'.format`` / ``format_map`` (which the sandbox
    hands out wrapped, with the bound method as ``__wrapped__``), else None."""
    method = getattr(obj, "__wrapped__", obj)
    owner = getattr(method, "__self__", None)
    if isinstance(owner, str) and getattr(method, "__name__", "") in ("format", "format_map"):
        return owner
    return None


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """Wraps every ``{% for %}``'s iterable: one step per iteration."""
    b = _budget()
    for item in iterable:
        b.step()
        yield item


def _concat_guard(*parts: Any) -> str:
    """``a ~ b`` (what Jinja compiles to ``str_join``), with the size checked as it grows."""
    b = _budget()
    total = 0
    out = []
    for p in parts:
        s = str(p)
        total += len(s)
        b.size(total, "a string")
        out.append(s)
    return "".join(out)


class _Guard(NodeTransformer):
    """Parse-time rewrite: loops iterate through :func:`_loop_guard`, ``~`` goes through
    :func:`_concat_guard`; ``recursive`` loops (which re-enter without the guard) are refused."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 - NodeTransformer's name
        if node.recursive:
            raise TemplateSyntaxError("recursive loops are not allowed in target templates",
                                      node.lineno)
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.For)
        visited.iter = _call(_LOOP_GUARD, [visited.iter], visited.lineno)  # type: ignore[list-item]
        return visited

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Concat)
        return _call(_CONCAT_GUARD, list(visited.nodes), visited.lineno)


def _call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.Name(name, "load", lineno=lineno), args, [], None, None,
                      lineno=lineno)


def _check_nesting(env: SandboxedEnvironment, source: str, name: str | None,
                   filename: str | None) -> None:
    """Refuse more than :data:`MAX_NESTING` nested blocks and brackets, from the tokens alone."""
    depth = 0
    after_block_begin = False
    for lineno, kind, value in env.lexer.tokeniter(source, name, filename):
        if kind == "whitespace":
            continue
        if kind == "operator" and value in "([{":
            depth += 1
        elif kind == "operator" and value in ")]}":
            depth -= 1
        elif kind == "name" and after_block_begin:
            if value in _OPENING:
                depth += 1
            elif value.startswith("end") and value != "endset":
                depth -= 1
        after_block_begin = kind == "block_begin"
        if depth > MAX_NESTING:
            raise TemplateSyntaxError(f"the template nests deeper than {MAX_NESTING} levels "
                                      "(blocks and brackets)", lineno, name, filename)


class BoundedSandbox(SandboxedEnvironment):
    """A sandboxed environment whose renders stay within the current :class:`Budget`."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.globals[_LOOP_GUARD] = _loop_guard
        self.globals[_CONCAT_GUARD] = _concat_guard
        self.filters = {k: _guard_filter(f) for k, f in self.filters.items()}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        _check_nesting(self, source, name, filename)
        tree = _Guard().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree  # type: ignore[no-any-return]

    def concat(self, parts: Iterable[str]) -> str:  # type: ignore[override]
        """The whole output (what ``Template.render`` joins), bounded as it is produced."""
        b = _budget()
        total = 0
        out = []
        for p in parts:
            total += len(p)
            b.size(total, "an output")
            out.append(p)
        return "".join(out)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        b = _budget()
        b.step()
        ln, rn = _sized(left), _sized(right)
        if operator == "*":
            if ln is not None and isinstance(right, int):
                b.size(ln * right, "a repeated string or list")
            elif rn is not None and isinstance(left, int):
                b.size(rn * left, "a repeated string or list")
            elif isinstance(left, int) and isinstance(right, int) and (
                    left.bit_length() + right.bit_length() > _MAX_BITS):
                raise TemplateBoundError("the template multiplies numbers that are too large")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if abs(left) > 1 and right > 0 and left.bit_length() * right > _MAX_BITS:
                raise TemplateBoundError("the template raises a number to too large a power")
        elif operator == "+" and ln is not None and rn is not None:
            b.size(ln + rn, "a string or list")
        elif operator == "%" and isinstance(left, str):
            _check_format(left, b)
            _check_args(right if isinstance(right, tuple) else (right,), b)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any,  # noqa: N805 - Jinja's signature
             **kwargs: Any) -> Any:
        b = _budget()
        b.step()
        _check_args((*args, *kwargs.values()), b)
        fmt = _format_string(__obj)
        if fmt is not None:
            _check_format(fmt, b)
        out = super().call(__context, __obj, *args, **kwargs)
        n = _sized(out)
        if n is not None:
            b.size(n)
        return out


def _guard_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that costs a step, refuses huge numbers and formats, and checks its result."""

    @functools.wraps(fn)  # keeps jinja_pass_arg (pass_context / pass_environment)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        b = _budget()
        b.step()
        # The filtered value comes first (after the context when the filter takes one); only
        # the parameters size anything (a large number filtered through |string is harmless).
        first = 1 if getattr(fn, "jinja_pass_arg", None) is not None else 0
        _check_args((*args[first + 1:], *kwargs.values()), b)
        if fn.__name__ == "do_format" and len(args) > first and isinstance(args[first], str):
            _check_format(args[first], b)
        out = fn(*args, **kwargs)
        n = _sized(out)
        if n is not None:
            b.size(n)
        return out

    return guarded
