"""analysis.json records what it was computed from; gate and report recompute when that changed,
and the worker's per-item parts are read instead of scoring predictions again."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.analysis import analyse as analyse_mod
from harness.analysis import load as load_mod
from harness.analysis.analyse import analyse, computed_from, current_analysis
from harness.analysis.load import load_run
from harness.cli import main
from harness.units import get
from tests.helpers.synth import spec_dict, write_run


@pytest.fixture
def run_dir(tmp_path):
    spec = spec_dict(["a", "b"], ["plain"], [1.0])
    n = 80
    return write_run(tmp_path, spec, {
        ("a", "plain", 1.0): {"route": (np.arange(n) % 4 > 0).astype(int),
                              "esc": (np.arange(n) % 3 > 0).astype(int)},
        ("b", "plain", 1.0): {"route": (np.arange(n) % 5 > 0).astype(int),
                              "esc": (np.arange(n) % 2 > 0).astype(int)}})


def _flip_predictions(cell_dir, unit: str) -> None:
    """A re-run cell: every answer of ``unit`` changes (route answers are "a" or "b")."""
    rows = [json.loads(x) for x in (cell_dir / "predictions.jsonl").read_text().splitlines()]
    for r in rows:
        if r["unit"] == unit:
            r["answer"] = "b" if r["answer"] == "a" else "a"
            r["correct"] = 1 - r["correct"]
    (cell_dir / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_the_digest_follows_the_inputs(run_dir, tmp_path):
    out = analyse(run_dir, n_boot=20, curve_boot=10)
    digest = computed_from(run_dir, n_boot=20, curve_boot=10)
    assert out["computed_from"] == digest and len(digest) == 64
    stored = json.loads((run_dir / "analysis.json").read_text())
    assert stored["computed_from"] == digest
    # settings are inputs too; naming the spec's default correction is the same analysis
    assert computed_from(run_dir, n_boot=20, curve_boot=10, method="holm") == digest
    assert computed_from(run_dir, n_boot=20, curve_boot=10, method="bh") != digest
    assert computed_from(run_dir, n_boot=21, curve_boot=10) != digest
    assert computed_from(run_dir, [run_dir], n_boot=20, curve_boot=10) != digest
    cell = next((run_dir / "cells").iterdir())
    (cell / "metrics.json").write_text((cell / "metrics.json").read_text() + " ")
    assert computed_from(run_dir, n_boot=20, curve_boot=10) != digest
    assert computed_from(tmp_path / "nope") is None


def test_report_recomputes_a_stale_analysis_and_reuses_a_current_one(run_dir, tmp_path,
                                                                      monkeypatch):
    calls = []
    real = analyse_mod.analyse
    monkeypatch.setattr(analyse_mod, "analyse", lambda *a, **k: calls.append(1) or real(*a, **k))
    html = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(html)]) == 0
    assert len(calls) == 1  # no analysis yet: computed
    first = (run_dir / "analysis.json").read_bytes()
    before = {(c["arm"], c["unit"]): c["delta"]
              for c in json.loads(first)["attribution"]["vs_baseline"]}

    assert main(["report", str(run_dir), "--out", str(html)]) == 0
    assert len(calls) == 1 and (run_dir / "analysis.json").read_bytes() == first  # reused

    # a cell re-run since: its predictions changed, so the stored analysis is stale
    cell = next(c for c in (run_dir / "cells").iterdir()
                if json.loads((c / "manifest.json").read_text())["axes"]["bucket"] == "b")
    _flip_predictions(cell, "route")
    assert main(["report", str(run_dir), "--out", str(html)]) == 0
    assert len(calls) == 2
    after = json.loads((run_dir / "analysis.json").read_text())
    assert after["computed_from"] == computed_from(run_dir)
    delta = {(c["arm"], c["unit"]): c["delta"] for c in after["attribution"]["vs_baseline"]}
    assert delta[("b/plain/x1", "route")] != before[("b/plain/x1", "route")]
    assert delta[("b/plain/x1", "esc")] == before[("b/plain/x1", "esc")]


def test_gate_recomputes_only_when_the_run_changed(run_dir, monkeypatch, capsys):
    calls = []
    real = analyse_mod.analyse
    monkeypatch.setattr(analyse_mod, "analyse", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(["gate", str(run_dir)]) in (0, 3, 4)
    assert main(["gate", str(run_dir)]) in (0, 3, 4)
    assert len(calls) == 1
    assert main(["gate", str(run_dir), "--correction", "bh"]) in (0, 3, 4)
    assert len(calls) == 2  # other settings, other analysis
    (run_dir / "analysis.json").write_text('{"analysis_version": 1}')  # unreadable: recompute
    assert main(["gate", str(run_dir), "--correction", "bh"]) in (0, 3, 4)
    assert len(calls) == 3
    capsys.readouterr()
    # an analysis written before digests existed is never taken as current
    stored = json.loads((run_dir / "analysis.json").read_text())
    stored.pop("computed_from")
    (run_dir / "analysis.json").write_text(json.dumps(stored))
    current_analysis(run_dir, method="bh")
    assert len(calls) == 4


def _with_parts(run_dir) -> None:
    """Write each prediction's per-item parts beside ``correct``, as the worker does."""
    spec = json.loads((run_dir / "run.json").read_text())["spec"]
    for cell in (run_dir / "cells").iterdir():
        rows = [json.loads(x) for x in (cell / "predictions.jsonl").read_text().splitlines()]
        for unit, rule in spec["units"].items():
            mine = [r for r in rows if r["unit"] == unit]
            scored = get(rule["kind"]).score(rule, [r["answer"] for r in mine],
                                             [r["reference"] for r in mine])
            for k, r in enumerate(mine):
                r["parts"] = {"correct": float(scored.correct[k]),
                              **{name: v[k] for name, v in (scored.parts or {}).items()}}
        (cell / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_recorded_parts_are_read_not_scored_again(run_dir, monkeypatch):
    rescored = load_run(run_dir)
    _with_parts(run_dir)

    def no_scoring(kind):
        raise AssertionError("predictions were scored again")

    monkeypatch.setattr(load_mod, "get", no_scoring)
    recorded = load_run(run_dir)
    for a, b in zip(rescored.cells, recorded.cells, strict=True):
        assert a.units.keys() == b.units.keys()
        for unit in a.units:
            ua, ub = a.units[unit], b.units[unit]
            assert ua.ids == ub.ids and ua.parts.keys() == ub.parts.keys()
            np.testing.assert_array_equal(ua.correct, ub.correct)
            for k in ua.parts:
                np.testing.assert_array_equal(ua.parts[k], ub.parts[k])


def test_report_keeps_the_gates_history_and_correction(run_dir, tmp_path, monkeypatch):
    spec = json.loads((run_dir / "run.json").read_text())["spec"]
    earlier = write_run(tmp_path / "round1", spec, {("a", "plain", 1.0): {
        "route": (np.arange(80) % 2 > 0).astype(int), "esc": (np.arange(80) % 2 > 0).astype(int)}})
    assert main(["gate", str(run_dir), "--history", str(earlier),
                 "--correction", "bh"]) in (0, 3, 4)
    calls = []
    real = analyse_mod.analyse
    monkeypatch.setattr(analyse_mod, "analyse", lambda *a, **k: calls.append(1) or real(*a, **k))
    html = tmp_path / "r.html"
    assert main(["report", str(run_dir), "--out", str(html)]) == 0
    assert calls == []  # the gate's analysis is current: shown as it is
    cell = next((run_dir / "cells").iterdir())
    _flip_predictions(cell, "route")
    assert main(["report", str(run_dir), "--out", str(html)]) == 0
    assert calls == [1]
    again = json.loads((run_dir / "analysis.json").read_text())
    assert again["history"] == [str(earlier)] and again["attribution"]["correction"] == "bh"
