"""The report's per-slice tables: the chosen arm's and the baseline's, each with n per slice."""

from __future__ import annotations

import numpy as np

from harness.analysis.load import load_run
from harness.report.render import _slices
from tests.helpers.synth import spec_dict, write_run


def test_chosen_and_baseline_arms_get_one_slice_table_each(tmp_path):
    n = 200
    tags = [{"source": "real" if k % 2 else "synthetic"} for k in range(n)]
    spec = spec_dict(["base", "better"], ["plain"], [1.0])
    ok = np.ones(n, dtype=int)
    run_dir = write_run(tmp_path, spec, {("base", "plain", 1.0): {"route": ok, "esc": ok},
                                         ("better", "plain", 1.0): {"route": ok, "esc": ok}},
                        tags=tags)
    run = load_run(run_dir)
    chosen = next(c for c in run.cells if c.axes["bucket"] == "better")
    tables = _slices(run, chosen.cell_id)
    assert [(t["role"], t["arm"]) for t in tables] == [("chosen", "better/plain/x1"),
                                                       ("baseline", "base/plain/x1")]
    for t in tables:
        assert {(r["unit"], r["slice"], r["n"]) for r in t["rows"]} == {
            (u, s, m) for u in ("route", "esc")
            for s, m in (("all", n), ("source=real", n // 2), ("source=synthetic", n // 2))}
    # the baseline chosen: one table, not two
    base = next(c for c in run.cells if c.is_baseline)
    assert [t["role"] for t in _slices(run, base.cell_id)] == ["chosen"]
