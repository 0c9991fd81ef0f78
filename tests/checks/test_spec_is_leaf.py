"""The spec is a leaf: no module under harness/experiment imports a stage above it."""

from __future__ import annotations

import ast
from pathlib import Path

SPEC = Path(__file__).resolve().parents[2] / "harness" / "experiment"
#: Packages above the spec (the spec may import harness.errors and harness.units, the leaves).
ABOVE = ("harness.compose", "harness.evaluate", "harness.analysis", "harness.cli",
         "harness.students", "harness.train", "harness.samples", "harness.run",
         "harness.checks", "harness.report", "harness.worker", "harness.matrix",
         "harness.store")


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every imported module of ``path`` (line, dotted name), at any depth (function-level and
    TYPE_CHECKING imports included), relative imports resolved against harness.experiment."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # . = harness.experiment, .. = harness
                package = ["harness", "experiment"][: 3 - node.level]
                base = ".".join([*package, *([base] if base else [])])
            out += [(node.lineno, f"{base}.{a.name}" if base else a.name) for a in node.names]
    return out


def test_spec_imports_nothing_above_it() -> None:
    modules = sorted(SPEC.rglob("*.py"))
    assert len(modules) >= 4
    upward = [f"{m.relative_to(SPEC.parent)}:{line}: {name}" for m in modules
              for line, name in _imports(m)
              if any(name == a or name.startswith(a + ".") for a in ABOVE)]
    assert not upward, "harness/experiment imports upward:\n" + "\n".join(upward)


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from harness.compose.templates import x\n"
                   "    from ..cli import main\n")
    names = [n for _, n in _imports(src)]
    assert names == ["harness.compose.templates.x", "harness.cli.main"]
