"""Leakage kept under ``data.leakage: warn`` reaches the gate's reasons and the report banner."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.analysis.analyse import analyse
from harness.cli import main
from harness.store.contracts import LeakageFacts
from harness.store.folder import RunFolder
from tests.helpers.synth import UNITS, spec_dict, write_run


def _run(tmp_path: Path, leakage: LeakageFacts | None) -> Path:
    spec = spec_dict(["judged"], ["plain"], [1.0], units={"route": UNITS["route"]})
    run_dir = write_run(tmp_path, spec, {("judged", "plain", 1.0): {
        "route": (np.arange(200) % 5 > 0).astype(int)}})
    if leakage is not None:
        folder = RunFolder(run_dir)
        folder.write_run(replace(folder.read_run(), leakage=leakage))
    return run_dir


def test_kept_overlap_is_a_gate_reason_and_in_the_banner(tmp_path):
    run_dir = _run(tmp_path, LeakageFacts("warn", 4, 3, 2))
    reasons = analyse(run_dir, n_boot=20, curve_boot=5)["gate"]["reasons"]
    line = next(r for r in reasons if r.startswith("leakage:"))
    assert "4 train-eval overlap(s) kept (data.leakage: warn)" in line
    assert "3 eval item(s)" in line and "2 training record(s)" in line
    out = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    banner = out.read_text().split('id="decision"')[1].split("</section>")[0]
    assert 'id="leakage">4 overlap(s) kept: 3 eval item(s) also in training' in banner
    assert "leakage: 4 train-eval overlap(s) kept" in banner  # the reason, too


def test_no_or_dropped_overlap_is_no_reason_but_the_banner_says_so(tmp_path):
    for i, (facts, shown) in enumerate([
            (LeakageFacts("drop", 2, 2, 1), "2 overlap(s), 1 training record(s) dropped"),
            (LeakageFacts("error", 0, 0, 0), "none found (data.leakage: error)"),
            (None, "train-eval leakage: not recorded")]):
        run_dir = _run(tmp_path / str(i), facts)
        reasons = analyse(run_dir, n_boot=20, curve_boot=5)["gate"]["reasons"]
        assert not any(r.startswith("leakage:") for r in reasons)
        out = tmp_path / f"r{i}.html"
        assert main(["report", str(run_dir), "--out", str(out)]) == 0
        assert shown in out.read_text()
