"""Loading a script that is not part of an installed package (``experiments/<name>/prepare.py``,
``experiments/demo/generate.py``) as a module, for tests of its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: Path, name: str) -> ModuleType:
    """Execute the Python file at ``path`` as a new module called ``name`` and return it.

    The module is put in ``sys.modules`` under ``name`` before it runs: dataclasses and
    NamedTuples resolve their string annotations through it. Give each test module its own
    ``name`` when two of them load the same script, so neither sees the other's state.
    """
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"not a Python file: {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
