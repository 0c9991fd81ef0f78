"""Matrix expansion and cell ids."""

from __future__ import annotations

import pytest

from harness.checks import load_experiment
from harness.errors import InputError
from harness.matrix import Axes, build_cells, expand_axes

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
    # base + other bucket + other fields + 2 scales, then the default noise seeds [1, 2] on
    # the base and on the baseline (was 5 cells before issue 17)
    assert len(axes) == 1 + 1 + 1 + 2 + 2 + 2
    assert [a for a in axes if a.seed != 0] == [
        Axes("judged", "answer_only", 1.0, 1), Axes("judged", "answer_only", 1.0, 2),
        Axes("single_a", "answer_only", 1.0, 1), Axes("single_a", "answer_only", 1.0, 2)]


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


def test_digit_splitting_is_part_of_the_cell_id(tiny):
    def ids(digits: str | None) -> dict[str, str]:
        config: dict[str, int | str] = {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}
        if digits is not None:
            config["digits"] = digits
        exp = load_experiment(tiny(spec={"student": {"config": config}})).spec
        return {c.label: c.cell_id for c in build_cells(exp, HASHES)}

    default, split, merged = ids(None), ids("split"), ids("merged")
    assert default == split  # split is the default
    assert all(merged[k] != split[k] for k in split)
    # merged leaves the key out of the effective spec: the ids cells had before the setting
    exp = load_experiment(tiny(spec={"student": {"config": {
        "layers": 1, "hidden": 32, "heads": 2, "vocab": 300, "digits": "merged"}}})).spec
    (cell, *_) = build_cells(exp, HASHES)
    assert "digits" not in cell.effective["student"]["config"]
    assert build_cells(load_experiment(tiny()).spec, HASHES)[0].effective["student"][
        "config"]["digits"] == "split"


def test_init_std_is_part_of_the_cell_id_and_unset_leaves_the_id_alone(tiny):
    def cells(**extra: float) -> list:
        config = {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300, **extra}
        return build_cells(load_experiment(tiny(spec={"student": {"config": config}})).spec,
                           HASHES)

    unset, wide = cells(), cells(init_std=0.06)
    assert "init_std" not in unset[0].effective["student"]["config"]
    assert wide[0].effective["student"]["config"]["init_std"] == 0.06
    assert all(a.cell_id != b.cell_id for a, b in zip(unset, wide, strict=True))


def test_baseline_flag(tiny):
    cells = build_cells(load_experiment(tiny()).spec, HASHES)
    assert [c.label for c in cells if c.is_baseline] == ["single_a/answer_only/x1/s0"]


def test_noise_seeds_default_and_switched_off(tiny):
    from harness.matrix import count_cells

    exp = load_experiment(tiny(spec={"design": {"kind": "factorial"}})).spec
    assert exp.design.noise_seeds == [1, 2]
    axes = expand_axes(exp)
    assert [a.label for a in axes if a.seed != 0] == ["single_a/answer_only/x1/s1",
                                                      "single_a/answer_only/x1/s2"]
    assert count_cells(exp) == len(axes) == 2 * 2 + 2
    off = load_experiment(tiny(spec={"design": {"noise_seeds": []}})).spec
    assert count_cells(off) == len(expand_axes(off)) == 2 * 2


def test_noise_seeds_retrain_the_reference_arm_and_the_baseline(tiny):
    oat = load_experiment(tiny(spec={
        "scale": [0.5, 1.0],
        "design": {"kind": "one_at_a_time", "noise_seeds": [1, 2],
                   "base": {"bucket": "judged", "fields": "answer_only", "scale": 1.0}},
    })).spec
    axes = expand_axes(oat)
    extra = [a for a in axes if a.seed != 0]
    assert extra == [Axes("judged", "answer_only", 1.0, 1), Axes("judged", "answer_only", 1.0, 2),
                     Axes("single_a", "answer_only", 1.0, 1),
                     Axes("single_a", "answer_only", 1.0, 2)]
    cells = build_cells(oat, HASHES)
    assert len({c.cell_id for c in cells}) == len(cells)
    # a factorial design retrains the baseline
    fac = load_experiment(tiny(spec={"design": {"kind": "factorial", "noise_seeds": [5]}})).spec
    assert [a for a in expand_axes(fac) if a.seed == 5] == [
        Axes(fac.baseline.bucket, fac.baseline.fields, fac.baseline.scale, 5)]


# --------------------------------------------------------------------------- counting cells

def _fake_experiment(draw) -> object:  # type: ignore[no-untyped-def]
    """Just the attributes expand_axes and count_cells read, drawn at random."""
    from types import SimpleNamespace as NS

    from hypothesis import strategies as st

    buckets = draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=4, unique=True))
    fields = draw(st.lists(st.sampled_from("xyz"), min_size=1, max_size=3, unique=True))
    scales = draw(st.lists(st.sampled_from([0.25, 0.5, 1.0]), min_size=1, max_size=3,
                           unique=True))
    seeds = draw(st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True))
    opt = st.none() | st.just(None)

    def ref(seed_any: bool = True) -> NS:
        return NS(bucket=draw(st.sampled_from([*buckets, "zz"])),
                  fields=draw(st.sampled_from([*fields, "ww"])),
                  scale=draw(st.sampled_from([*scales, 0.75])),
                  seed=draw(st.none() | st.integers(0, 5)) if seed_any else None)

    def pattern() -> NS:
        return NS(bucket=draw(opt | st.sampled_from(buckets)),
                  fields=draw(opt | st.sampled_from(fields)),
                  scale=draw(opt | st.sampled_from([*scales, 0.75])),
                  seed=draw(opt | st.integers(0, 5)))

    kind = draw(st.sampled_from(["factorial", "one_at_a_time"]))
    base = NS(bucket=draw(st.sampled_from(buckets)), fields=draw(st.sampled_from(fields)),
              scale=draw(st.sampled_from(scales)), seed=None)
    design = NS(kind=kind, base=base if kind == "one_at_a_time" else None,
                include=[ref() for _ in range(draw(st.integers(0, 3)))],
                exclude=[pattern() for _ in range(draw(st.integers(0, 4)))],
                noise_seeds=draw(st.lists(st.integers(0, 8), max_size=3, unique=True)))
    baseline = NS(bucket=draw(st.sampled_from(buckets)), fields=draw(st.sampled_from(fields)),
                  scale=draw(st.sampled_from(scales)),
                  seed=draw(st.none() | st.sampled_from(seeds)))
    return NS(design=design, buckets=dict.fromkeys(buckets), fields=dict.fromkeys(fields),
              scale=scales, seeds=seeds, baseline=baseline)


def test_count_cells_equals_the_expanded_matrix():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from harness.matrix import count_cells

    @settings(max_examples=400, deadline=None)
    @given(st.data())
    def check(data):  # type: ignore[no-untyped-def]
        exp = data.draw(st.composite(lambda draw: _fake_experiment(draw))())
        assert count_cells(exp) == len(expand_axes(exp))  # type: ignore[arg-type]

    check()


def test_count_cells_is_instant_for_a_huge_factorial(tiny):
    import time

    from harness.experiment.models import CellPattern
    from harness.matrix import check_matrix_size, count_cells

    exp = load_experiment(tiny()).spec
    big = exp.model_copy(update={
        "buckets": {f"b{i}": exp.buckets["judged"] for i in range(1000)},
        "fields": {f"f{i}": exp.fields["full"] for i in range(1000)},
        "seeds": list(range(1000)),
        "design": exp.design.model_copy(update={"exclude": [CellPattern(bucket="b1")]}),
    })
    t0 = time.perf_counter()
    n = count_cells(big)
    assert n == 1000 * 1000 * 1 * 1000 - 1000 * 1000 + 1000  # minus b1's; the baseline is kept
    assert time.perf_counter() - t0 < 1
    with pytest.raises(InputError, match=r"999,001,000 cells .*more than --max-cells 5,000"):
        check_matrix_size(big, 5000)
    assert check_matrix_size(exp, 5000) == len(expand_axes(exp))
