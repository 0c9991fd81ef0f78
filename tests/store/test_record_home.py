"""The record machinery lives in ``harness.store.record``; ``harness.store.contracts`` still
names ``Record`` and ``ContractError`` (the same classes), and both stay standard-library only."""

from __future__ import annotations

import ast
from pathlib import Path

from harness.store import contracts, record

STORE = Path(record.__file__).parent


def test_contracts_reexports_the_record_machinery() -> None:
    assert contracts.Record is record.Record
    assert contracts.ContractError is record.ContractError
    assert record.join_key("cells", "[2]") == "cells[2]"
    assert record.join_key("cells[2]", "status") == "cells[2].status"
    assert record.join_key("", "status") == "status"


def test_record_modules_import_only_the_standard_library_and_harness() -> None:
    for name in ("record.py", "contracts.py"):
        tree = ast.parse((STORE / name).read_text(encoding="utf-8"))
        roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        roots |= {(n.module or "").split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom)}
        assert roots <= {"__future__", "dataclasses", "types", "typing", "harness"}, (name, roots)
