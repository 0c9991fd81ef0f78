"""``benchmarks/thread_policy.py --smoke``: runs end to end and writes its JSON (tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: a benchmark with a busy neighbour process, in its smoke mode: ~10 s
pytestmark = pytest.mark.slow


def test_thread_policy_smoke_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "thread_policy.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "thread_policy.py"),
                           "--smoke", "--busy", "1", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert {r["policy"] for r in result["runs"]} == {"ACTIVE", "PASSIVE"}
    assert {"machine", "versions", "date", "load_average", "summary"} <= set(result)
    assert result["policy_changes_numbers"] is False  # waiting never changes the numbers
