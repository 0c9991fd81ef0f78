"""The demo's documented truths show up in trained students (CPU, fixed seeds).

A reduced demo (2,000 training records, 400 eval items, two cells) is trained end to end; the
coarse directions of TRUTHS.md must hold:

- truth 3: a student distilled from teacher_a alone never learns to escalate, while the
  judge-winner bucket (which contains teacher_b's escalations) does;
- truth 9: students do worse on `source: real` eval items than on synthetic ones;
- and the base student routes well above chance (4 labels: chance 0.25).
"""

from __future__ import annotations

import polars as pl
import pytest
import yaml

from harness.cli import main
from tests.helpers import REPO, load_script


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    work = tmp_path_factory.mktemp("demo_truths")
    gen = load_script(REPO / "experiments" / "demo" / "generate.py", "demo_gen")
    gen.generate(work / "data", seed=0, n_train=2000, n_eval=400)
    doc = yaml.safe_load((REPO / "experiments/demo.yaml").read_text())
    doc["data"] = {"samples": "data/samples.jsonl", "eval": "data/eval.jsonl"}
    doc["design"] = {"kind": "factorial", "noise_seeds": []}  # two cells: the truths, not noise
    doc["buckets"] = {k: doc["buckets"][k] for k in ("single_a", "multi_judged")}
    doc["fields"] = {"answer_only": doc["fields"]["answer_only"]}
    doc["scale"] = [1.0]
    doc["evaluation"] = {"slices": ["source"], "latency_runs": 2, "latency_batch_size": 4}
    # truths 3 and 9 and routing need no copying of ids: the demo's earlier recipe (300 steps
    # of 16) keeps the suite fast (the demo's 1,800 steps of 4 are for ids and tool arguments)
    doc["student"]["train"].update(min_steps=300, batch_size=16, epochs=2)
    (work / "exp.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert main(["run", str(work / "exp.yaml"), "--out", str(work / "runs"), "--quiet"]) == 0
    return pl.read_parquet(work / "runs" / "demo" / "results.parquet")


def value(df: pl.DataFrame, bucket: str, unit: str, metric: str, slice_: str = "all") -> float:
    row = df.filter((pl.col("bucket") == bucket) & (pl.col("unit") == unit)
                    & (pl.col("metric") == metric) & (pl.col("slice") == slice_))
    assert row.height == 1, (bucket, unit, metric, slice_)
    return float(row["value"][0])


@pytest.mark.slow
def test_teacher_a_alone_never_teaches_escalation(demo_results):
    single = value(demo_results, "single_a", "escalation", "refusal_recall")
    judged = value(demo_results, "multi_judged", "escalation", "refusal_recall")
    assert single < 0.1
    assert judged > single + 0.5


@pytest.mark.slow
def test_real_items_are_harder_than_synthetic(demo_results):
    for unit, metric in (("intent_routing", "accuracy"), ("escalation", "accuracy")):
        real = value(demo_results, "multi_judged", unit, metric, "source=real")
        synthetic = value(demo_results, "multi_judged", unit, metric, "source=synthetic")
        assert real < synthetic, (unit, real, synthetic)


@pytest.mark.slow
def test_base_student_routes_well_above_chance(demo_results):
    assert value(demo_results, "multi_judged", "intent_routing", "accuracy") > 0.5
