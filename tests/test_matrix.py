"""Matrix expansion and cell ids."""

from __future__ import annotations

from harness.matrix import Axes, build_cells, expand_axes
from harness.spec import load_experiment

HASHES = {"samples": "s" * 64, "eval": "e" * 64}


def test_factorial_crosses_every_axis(tiny):
    exp = load_experiment(tiny(spec={"scale": [0.5, 1.0], "seeds": [0, 1]})).spec
    axes = expand_axes(exp)
    assert len(axes) == 2 * 2 * 2 * 2
    assert len(set(axes)) == len(axes)


def test_one_at_a_time_varies_one_axis_from_base_and_keeps_baseline(tiny):
    exp = load_experiment(tiny(spec={
        "scale": [0.25, 0.5, 1.0],
        "design": {"kind": "one_at_a_time",
                   "base": {"bucket": "judged", "fields": "answer_only", "scale": 1.0}},
    })).spec
    axes = expand_axes(exp)
    base = Axes("judged", "answer_only", 1.0, 0)
    assert axes[0] == base
    for a in axes:
        if a == Axes("single_a", "answer_only", 1.0, 0):
            continue  # the baseline differs in one axis too
        changed = sum(x != y for x, y in ((a.bucket, base.bucket), (a.fields, base.fields),
                                          (a.scale, base.scale)))
        assert changed <= 1
    assert len(axes) == 1 + 1 + 1 + 2  # base + other bucket + other fields + 2 scales


def test_include_and_exclude(tiny):
    exp = load_experiment(tiny(spec={
        "design": {"kind": "factorial", "exclude": [{"fields": "full"}],
                   "include": [{"bucket": "judged", "fields": "full", "scale": 0.5}]},
    })).spec
    labels = [a.label for a in expand_axes(exp)]
    assert "judged/full/x1/s0" not in labels and "single_a/full/x1/s0" not in labels
    assert "judged/full/x0.5/s0" not in labels  # exclude applies to includes too
    exp2 = load_experiment(tiny(spec={
        "design": {"kind": "factorial", "exclude": [{"fields": "answer_only"}]}})).spec
    assert "single_a/answer_only/x1/s0" in [a.label for a in expand_axes(exp2)]  # baseline kept


def test_cell_ids_are_stable_and_sensitive(tiny):
    path = tiny()
    exp = load_experiment(path).spec
    a = {c.label: c.cell_id for c in build_cells(exp, HASHES)}
    b = {c.label: c.cell_id for c in build_cells(load_experiment(path).spec, HASHES)}
    assert a == b and len(set(a.values())) == len(a)
    other_data = {c.label: c.cell_id for c in build_cells(exp, {**HASHES, "samples": "x"})}
    assert all(other_data[k] != a[k] for k in a)
    changed = load_experiment(tiny(spec={"buckets": {
        "single_a": {"teachers": ["a"], "select": "all"},
        "judged": {"select": "judge_winner", "min_score": 3}}})).spec
    c = {c.label: c.cell_id for c in build_cells(changed, HASHES)}
    assert c["single_a/answer_only/x1/s0"] == a["single_a/answer_only/x1/s0"]
    assert c["judged/answer_only/x1/s0"] != a["judged/answer_only/x1/s0"]


def test_baseline_flag(tiny):
    cells = build_cells(load_experiment(tiny()).spec, HASHES)
    assert [c.label for c in cells if c.is_baseline] == ["single_a/answer_only/x1/s0"]


def test_noise_seeds_retrain_only_the_reference_arm(tiny):
    oat = load_experiment(tiny(spec={
        "scale": [0.5, 1.0],
        "design": {"kind": "one_at_a_time", "noise_seeds": [1, 2],
                   "base": {"bucket": "judged", "fields": "answer_only", "scale": 1.0}},
    })).spec
    axes = expand_axes(oat)
    extra = [a for a in axes if a.seed != 0]
    assert extra == [Axes("judged", "answer_only", 1.0, 1), Axes("judged", "answer_only", 1.0, 2)]
    cells = build_cells(oat, HASHES)
    assert len({c.cell_id for c in cells}) == len(cells)
    # a factorial design retrains the baseline
    fac = load_experiment(tiny(spec={"design": {"kind": "factorial", "noise_seeds": [5]}})).spec
    assert [a for a in expand_axes(fac) if a.seed == 5] == [
        Axes(fac.baseline.bucket, fac.baseline.fields, fac.baseline.scale, 5)]
