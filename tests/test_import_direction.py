"""Every package of the harness imports only from the layers below it.

:data:`LAYERS` is the architecture (README, docs/architecture.md) as a list, lowest first: a
module may import a module of a lower layer, never one of its own layer or above — at any depth
(function-level and ``TYPE_CHECKING`` imports count: a lazy import is still a dependency). Adding
a package means placing it here; an import that breaks the order fails with its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

HARNESS = Path(__file__).resolve().parents[1] / "harness"

#: Top-level modules and packages of ``harness``, lowest layer first.
LAYERS: list[set[str]] = [
    # leaves: errors, files, small pure helpers, the strict pydantic base
    {"errors", "fsutil", "answers", "constrained", "strict", "threads", "cell_settings"},
    {"units"},                        # unit kinds, their metrics and option models
    {"store", "class_layout"},        # the run folder and its contracts; a classifier's layout
    {"train", "evaluate"},            # the training loop and objectives; scoring, latency
    {"students"},                     # student kinds (build, train, answer) and option models
    {"experiment"},                   # the YAML model (unit and student kinds' options)
    {"matrix", "caches"},             # cells of the matrix; shared caches
    {"samples"},                      # the sample repository: records, tables, validation
    {"compose"},                      # training sets per cell
    {"teachers"},                     # the teacher stage
    {"worker", "analysis", "tracking", "lmeval"},  # lmeval: lm-eval over a trained student
    {"execute", "report", "checks"},
    {"run"},
    {"commands"},
    {"cli"},
    {"docs"},                         # generated reference pages read the CLI's parser
]

#: Imports that break the order today, each with why it is allowed for now. Keep it empty.
KNOWN: dict[tuple[str, str], str] = {}


def layer_of(name: str) -> int:
    for i, layer in enumerate(LAYERS):
        if name in layer:
            return i
    raise AssertionError(f"harness.{name} is in no layer of tests/test_import_direction.py")


def _imports(path: Path, package: list[str] | None = None) -> list[tuple[int, str]]:
    """Every module ``path`` imports (line, dotted name), at any depth, relative imports resolved
    against ``package`` (default: the file's own package under ``harness/``)."""
    if package is None:
        package = ["harness", *path.relative_to(HARNESS).parts[:-1]]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[:len(package) - (node.level - 1)]
                base = ".".join([*parent, *([base] if base else [])])
            out.append((node.lineno, base))
    return out


def _top(path: Path) -> str:
    rel = path.relative_to(HARNESS).parts
    return rel[0].removesuffix(".py")


def test_every_module_has_a_layer():
    tops = {_top(p) for p in HARNESS.rglob("*.py")} - {"__init__"}
    missing = sorted(t for t in tops if not any(t in layer for layer in LAYERS))
    assert not missing, f"place these in LAYERS: {missing}"


def test_imports_point_down():
    wrong = []
    for path in sorted(HARNESS.rglob("*.py")):
        me = _top(path)
        if me == "__init__":
            continue
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[0] != "harness" or len(parts) < 2 or parts[1] in (me, "__init__"):
                continue
            them = parts[1]
            if layer_of(them) >= layer_of(me) and (me, them) not in KNOWN:
                wrong.append(f"{path.relative_to(HARNESS.parent)}:{line}: harness.{me} "
                             f"(layer {layer_of(me)}) imports {name} (layer {layer_of(them)})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_check_sees_lazy_and_relative_imports(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text("def f():\n    from harness.run import run_cells\n"
                   "    from ..cli import main\n    from . import sandbox\n")
    names = [n for _, n in _imports(src, ["harness", "compose"])]
    assert names == ["harness.run", "harness.cli", "harness.compose"]
