"""Train/eval leakage (same id or same normalized prompt) and the sample-repository statistics,
checked against hand counts on the tiny experiment of conftest.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from harness.checks import load_experiment
from harness.cli import main
from harness.samples import load_data
from harness.samples.leakage import find_leaks
from harness.samples.stats import candidates_with_context, teacher_stats, unit_stats
from tests.helpers import tiny_eval


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def leaky_eval(prompt: str = "refund my money", eval_id: str = "e3") -> list[dict[str, Any]]:
    """The tiny eval set plus a third item (line 3) with the given prompt and id."""
    ev = tiny_eval()
    ev.append({"id": eval_id, "unit": "route", "prompt": prompt, "reference": "shipping"})
    return ev


def data_spec(leakage: str) -> dict[str, Any]:
    return {"data": {"samples": "samples.jsonl", "eval": "eval.jsonl", "leakage": leakage}}


def composed_record_ids(path: Path, out: Path) -> set[str]:
    """Record ids in any composed cell's train.jsonl."""
    assert main(["compose", str(path), "--out", str(out)]) == 0
    ids = set()
    for train in out.glob("*/train.jsonl"):
        for line in train.read_text(encoding="utf-8").splitlines():
            ids.add(json.loads(line)["record_id"])
    return ids


# --------------------------------------------------------------------------- leakage


def test_no_leakage_in_tiny_data(tiny):
    data = load_data(load_experiment(tiny()))
    assert data.leaks.height == 0


def test_leak_by_same_id_is_an_error_naming_both_lines(tiny, capsys):
    rc, _, err = validate(tiny(eval=leaky_eval(prompt="something new", eval_id="r2")), capsys)
    assert rc == 2
    assert ("  eval.jsonl:3: id: eval item 'r2' leaks into training: same id as record 'r2' "
            "(samples.jsonl:2)") in err
    assert "data.leakage" in err  # says how to allow it


@pytest.mark.parametrize("prompt", ["parcel late", "Parcel LATE", "  parcel \t\n late  ",
                                    "PARCEL  late\n"])
def test_leak_by_normalized_prompt_is_an_error(tiny, capsys, prompt):
    rc, _, err = validate(tiny(eval=leaky_eval(prompt=prompt)), capsys)
    assert rc == 2
    assert ("  eval.jsonl:3: prompt: eval item 'e3' leaks into training: same normalized prompt "
            "as record 'r2' (samples.jsonl:2)") in err


def test_prompt_that_differs_in_more_than_case_and_space_is_no_leak(tiny, capsys):
    rc, _, err = validate(tiny(eval=leaky_eval(prompt="parcel late!")), capsys)
    assert rc == 0, err


def test_leakage_error_is_the_default(tiny, capsys):
    loaded = load_experiment(tiny())
    assert loaded.spec.data.leakage == "error"


def test_every_leak_is_reported(tiny, capsys):
    ev = leaky_eval(prompt="Charged Twice")          # line 3 -> r1 by prompt
    ev.append({"id": "r4", "unit": "route", "prompt": "x", "reference": "billing"})  # line 4
    rc, _, err = validate(tiny(eval=ev), capsys)
    assert rc == 2
    assert "(2 problem(s))" in err.splitlines()[0]
    assert "eval.jsonl:3: prompt: eval item 'e3'" in err and "(samples.jsonl:1)" in err
    assert "eval.jsonl:4: id: eval item 'r4'" in err and "(samples.jsonl:4)" in err


def test_same_id_and_prompt_counts_once(tiny):
    data = load_data(load_experiment(tiny(spec=data_spec("warn"),
                                          eval=leaky_eval(prompt="parcel late", eval_id="r2"))))
    assert data.leaks.height == 1
    assert data.leaks.row(0, named=True)["train_id"] == "r2"


def test_leakage_drop_warns_and_removes_the_training_record(tiny, capsys, tmp_path):
    path = tiny(spec=data_spec("drop"), eval=leaky_eval(prompt="Parcel  Late"))
    rc, out, err = validate(path, capsys)
    assert rc == 0, err
    assert "warning: leakage: 1 eval/train overlap(s); 1 training record(s) dropped" in out
    assert "samples.jsonl: 4 records" in out
    ids = composed_record_ids(path, tmp_path / "cells")
    assert "r2" not in ids
    assert {"r1", "r3", "r4", "r5"} <= ids


def test_leakage_warn_keeps_the_training_record(tiny, capsys, tmp_path):
    path = tiny(spec=data_spec("warn"), eval=leaky_eval(prompt="Parcel  Late"))
    rc, out, err = validate(path, capsys)
    assert rc == 0, err
    assert "warning: leakage: 1 eval/train overlap(s); 1 training record(s) kept" in out
    assert "samples.jsonl: 5 records" in out
    assert "r2" in composed_record_ids(path, tmp_path / "cells")


def test_find_leaks_directly():
    train = pl.DataFrame({"rec": [0, 1, 2], "line": [1, 2, 3], "id": ["a", "b", "c"],
                          "prompt": ["Hello  World", "x", "y"]})
    ev = pl.DataFrame({"rec": [0, 1, 2], "line": [1, 2, 3], "id": ["e1", "c", "e3"],
                       "prompt": ["hello world", "zz", " HELLO\tworld "]})
    leaks = find_leaks(train, ev)
    got = [(r["eval_id"], r["train_id"], r["by"]) for r in leaks.iter_rows(named=True)]
    assert got == [("e1", "a", "prompt"), ("c", "c", "id"), ("e3", "a", "prompt")]


# --------------------------------------------------------------------------- statistics


@pytest.fixture
def tables(tiny):
    return load_data(load_experiment(tiny()))


def _by(df: pl.DataFrame, *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(r[k] for k in keys): r for r in df.iter_rows(named=True)}


def test_teacher_accuracy_vs_reference(tables):
    ts = _by(teacher_stats(tables.train.tables), "teacher", "unit")
    # route: r1 ref billing (a billing ok, b shipping), r2 ref shipping (a billing, b shipping ok)
    assert ts[("a", "route")]["accuracy"] == pytest.approx(0.5)
    assert ts[("b", "route")]["accuracy"] == pytest.approx(0.5)
    # esc: ref ESCALATE; a says "REPLY: sorry", b "ESCALATE"
    assert ts[("a", "esc")]["accuracy"] == 0.0
    assert ts[("b", "esc")]["accuracy"] == 1.0
    # fields: a's JSON equals the reference once parsed (spacing differs); b has "7" not "77"
    assert ts[("a", "fields")]["accuracy"] == 1.0
    assert ts[("b", "fields")]["accuracy"] == 0.0
    # tool: a calls lookup_order(88) as the reference does; b makes no call
    assert ts[("a", "tool")]["accuracy"] == 1.0
    assert ts[("b", "tool")]["accuracy"] == 0.0
    assert all(r["answers"] == (2 if u == "route" else 1) for (_, u), r in ts.items())


def test_overall_teacher_accuracy_by_hand(tables):
    df = candidates_with_context(tables.train.tables)
    acc = df.group_by("teacher").agg(pl.col("correct").mean()).sort("teacher")
    assert acc.rows() == [("a", pytest.approx(3 / 5)), ("b", pytest.approx(2 / 5))]


def test_judge_win_rate(tables):
    ts = _by(teacher_stats(tables.train.tables), "teacher", "unit")
    # winners: r1 a, r2 b (route), r3 b (esc), r4 a (fields), r5 a (tool)
    expected = {("a", "route"): 0.5, ("b", "route"): 0.5, ("a", "esc"): 0.0, ("b", "esc"): 1.0,
                ("a", "fields"): 1.0, ("b", "fields"): 0.0, ("a", "tool"): 1.0,
                ("b", "tool"): 0.0}
    assert {k: r["judge_win_rate"] for k, r in ts.items()} == pytest.approx(expected)
    wins = tables.train.tables.items.group_by("winner").len().sort("winner")
    assert wins.rows() == [("a", 3), ("b", 2)]


def test_mean_score_and_failure_share(tables):
    ts = _by(teacher_stats(tables.train.tables), "teacher", "unit")
    assert ts[("a", "route")]["mean_score"] == pytest.approx((5 + 1) / 2)
    assert ts[("b", "route")]["mean_score"] == pytest.approx((2 + 4) / 2)
    assert ts[("a", "route")]["failure_share"] == pytest.approx(0.5)  # r2
    assert ts[("a", "esc")]["failure_share"] == 1.0
    assert ts[("b", "tool")]["failure_share"] == 0.0  # r5 has no pools: all 'train'
    assert ts[("a", "route")]["mean_confidence"] == pytest.approx(0.9)


def test_unit_stats(tables):
    us = unit_stats(tables.train.tables)
    assert us.select("unit", "records", "with_reference", "with_winner", "candidates").rows() == [
        ("esc", 1, 1, 1, 2), ("fields", 1, 1, 1, 2), ("route", 2, 2, 2, 4), ("tool", 1, 1, 1, 2)]


def test_every_candidate_has_its_pool(tables):
    # the pool column teacher_stats' failure_share reads: a candidate without pools is 'train'
    df = candidates_with_context(tables.train.tables)
    ps = df.group_by("unit", "pool").len().sort("unit", "pool")
    assert ps.rows() == [("esc", "failure", 1), ("esc", "train", 1),
                         ("fields", "failure", 1), ("fields", "train", 1),
                         ("route", "failure", 2), ("route", "train", 2),
                         ("tool", "train", 2)]


def test_teacher_accuracy_on_eval(tables):
    ts = _by(teacher_stats(tables.eval.tables), "teacher", "unit")
    # e1 (route, ref billing): a billing, b shipping; e2 has no candidates
    assert ts[("a", "route")]["accuracy"] == 1.0
    assert ts[("b", "route")]["accuracy"] == 0.0
    assert set(ts) == {("a", "route"), ("b", "route")}


def test_accuracy_is_null_without_reference(tiny):
    from tests.helpers import tiny_samples

    samples = tiny_samples()
    for rec in samples:
        rec.pop("reference")
    data = load_data(load_experiment(tiny(samples=samples)))
    ts = teacher_stats(data.train.tables)
    assert ts["accuracy"].null_count() == ts.height


def test_validate_stats_flag_prints_teacher_table(tiny, capsys):
    rc = main(["validate", str(tiny()), "--stats"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "judge_win_rate" in out and "accuracy" in out
