"""A unit kind is one module: a kind declared in this test alone goes through validate, compose,
the worker, the store and the analysis — no harness module names it."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl
import pytest
import yaml

from harness.checks import load_experiment
from harness.cli import main
from harness.errors import InputError
from harness.experiment import json_schema
from harness.units import (
    MetricDef,
    Scored,
    UnitKind,
    get,
    metric_direction,
    names,
    register,
    unregister,
)
from harness.units.common import ANSWER_PARSE_RATE

ANSWERS = ("yes", "no")


class YesNoKind(UnitKind):
    """A yes/no question: accuracy on the decision; anything else is a wrong answer."""

    name = "yes_no"
    metrics = (MetricDef("yes_no_accuracy", True), MetricDef("yes_rate", True),
               ANSWER_PARSE_RATE)
    primary = "yes_no_accuracy"
    bad_final = "warning"

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        said = [(p or "").strip().lower() for p in preds]
        correct = [int(s == r) for s, r in zip(said, refs, strict=True)]
        n = len(correct)
        return Scored({"yes_no_accuracy": sum(correct) / n,
                       "yes_rate": sum(s == "yes" for s in said) / n} if n else {}, correct)

    def reference_problem(self, unit: Mapping[str, Any], unit_name: str, value: str
                          ) -> str | None:
        return None if value in ANSWERS else f"{value!r} is neither yes nor no ({unit_name!r})"

    def final_problem(self, unit: Mapping[str, Any], unit_name: str, value: str) -> str | None:
        return None if value in ANSWERS else "not yes/no"

    def finals_warning(self, unit_name: str, count: int) -> str:
        return f"{count} answer(s) of unit {unit_name!r} are neither yes nor no"

    def define_options(self) -> type:
        from pydantic import Field

        from harness.experiment.models import UnitOptions

        class YesNoUnit(UnitOptions):
            """A yes/no question."""

            kind: Literal["yes_no"]
            topic: str = Field("", description="What the questions are about.")

        return YesNoUnit


@pytest.fixture
def yes_no() -> Iterator[UnitKind]:
    register(YesNoKind)
    try:
        yield get("yes_no")
    finally:
        unregister("yes_no")


def _records(n: int, offset: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        ref = "yes" if a > b else "no"
        other = "no" if ref == "yes" else "yes"
        out.append({"id": f"q{offset + i}", "unit": "ask",
                    "prompt": f"question {offset + i}: is {a} above {b}?", "reference": ref,
                    "candidates": [{"teacher": "a", "final": ref, "confidence": 0.9},
                                   {"teacher": "b", "final": other if i % 3 == 0 else ref,
                                    "confidence": 0.7}],
                    "judge": {"judge": "j", "winner": "a", "scores": {"a": 5, "b": 3},
                              "reason_tags": []}})
    return out


def _experiment(tmp_path: Path, eval_rows: list[dict[str, Any]] | None = None) -> Path:
    samples, ev = _records(24, 0, 1), _records(10, 100, 2) if eval_rows is None else eval_rows
    for name, rows in (("samples.jsonl", samples), ("eval.jsonl", ev)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "name": "toy", "data": {"samples": "samples.jsonl", "eval": "eval.jsonl"},
        "units": {"ask": {"kind": "yes_no", "topic": "numbers"}},
        "student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300,
                               "max_position": 64},
                    "train": {"epochs": 1, "batch_size": 8, "lr": 5e-3, "max_len": 64}},
        "buckets": {"single_a": {"teachers": ["a"], "select": "all"},
                    "judged": {"select": "judge_winner"}},
        "fields": {"answer_only": {}},
        "scale": [1.0], "seeds": [0],
        "baseline": {"bucket": "single_a", "fields": "answer_only"},
        "design": {"noise_seeds": []},  # two cells, items-only tests (McNemar below)
        "evaluation": {"latency_runs": 1, "latency_batch_size": 2, "max_new_tokens": 4},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_spec_accepts_the_registered_kind_and_lists_it(yes_no, tmp_path):
    exp = load_experiment(_experiment(tmp_path)).spec
    assert exp.units["ask"].kind == "yes_no" and exp.units["ask"].topic == "numbers"
    schema = json_schema()
    assert "YesNoUnit" in schema["$defs"]
    assert schema["properties"]["units"]["additionalProperties"]["discriminator"]["mapping"][
        "yes_no"] == "#/$defs/YesNoUnit"
    doc = yaml.safe_load((tmp_path / "toy.yaml").read_text())
    doc["units"]["ask"] = {"kind": "yes_noo", "topic": "x"}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InputError, match=r"units\.ask: unknown kind 'yes_noo', did you mean "
                                         r"'yes_no'\?"):
        load_experiment(tmp_path / "toy.yaml")
    doc["units"]["ask"] = {"kind": "yes_no", "topc": "x"}
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InputError, match=r"units\.ask\.topc: unknown key, did you mean "
                                         r"'topic'\?"):
        load_experiment(tmp_path / "toy.yaml")


def test_unregistered_kind_is_unknown(tmp_path):
    assert "yes_no" not in names()
    with pytest.raises(InputError, match="unknown kind 'yes_no'"):
        load_experiment(_experiment(tmp_path))


def test_validate_uses_the_kinds_rules(yes_no, tmp_path, capsys):
    bad = _records(4, 100, 3)
    bad[1]["reference"] = "maybe"
    bad[2]["candidates"][1]["final"] = "perhaps"
    assert main(["validate", str(_experiment(tmp_path, bad))]) == 2
    err = capsys.readouterr().err
    assert "eval.jsonl:2: reference: 'maybe' is neither yes nor no ('ask')" in err
    bad[1]["reference"] = "no"
    assert main(["validate", str(_experiment(tmp_path, bad))]) == 0
    out = capsys.readouterr()
    assert "1 answer(s) of unit 'ask' are neither yes nor no" in out.out + out.err


def test_toy_kind_runs_through_compose_worker_store_and_analysis(yes_no, tmp_path):
    from harness.analysis.analyse import analyse

    path = _experiment(tmp_path)
    out = tmp_path / "runs"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    cells = sorted((out / "toy" / "cells").iterdir())
    assert len(cells) == 2
    for cell in cells:
        targets = [json.loads(line)["target"] for line in (cell / "train.jsonl").open()]
        assert targets and all(t in ("Answer: yes", "Answer: no") for t in targets)
        metrics = json.loads((cell / "metrics.json").read_text())["units"]["ask"]["metrics"]
        assert {"yes_no_accuracy", "yes_rate", "answer_parse_rate"} <= set(metrics)
    results = pl.read_parquet(out / "toy" / "results.parquet")
    toy = results.filter(pl.col("unit") == "ask")
    assert set(toy["kind"]) == {"yes_no"}
    assert {"yes_no_accuracy", "yes_rate", "agreement.a"} <= set(toy["metric"])
    for metric, better in toy.select("metric", "higher_is_better").unique().iter_rows():
        assert better is metric_direction(metric)
    analysis = analyse(out / "toy", n_boot=20, curve_boot=5)
    assert {row["metric"] for row in analysis["fidelity"]} == {"yes_no_accuracy"}
    contrasts = [c for c in analysis["attribution"]["vs_baseline"] if c["unit"] == "ask"]
    assert contrasts and all(c["metric"] == "yes_no_accuracy" for c in contrasts)
    assert contrasts[0]["test"] == "mcnemar_exact"  # the primary is a mean of per-item flags
