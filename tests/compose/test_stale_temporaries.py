"""A cell being redone loses the temporary files a killed writer left behind (issue 16, item 7)."""

from __future__ import annotations

from pathlib import Path

from harness.cli import main


def test_recomposing_a_cell_removes_stale_temporaries(tiny, tmp_path: Path, capsys) -> None:
    path = tiny()
    out = tmp_path / "cells"
    assert main(["compose", str(path), "--out", str(out)]) == 0
    cell = sorted(p for p in out.iterdir() if p.is_dir())[0]
    stale = [cell / ".train.jsonl.k3x9a.tmp", cell / ".manifest.json.q1.tmp"]
    for p in stale:
        p.write_text("half", encoding="utf-8")
    keep = cell / "notes.txt"  # not a temporary: left alone
    keep.write_text("mine", encoding="utf-8")
    assert main(["compose", str(path), "--out", str(out)]) == 0
    assert not any(p.exists() for p in stale)
    assert keep.read_text(encoding="utf-8") == "mine"
    assert (cell / "manifest.json").is_file()
