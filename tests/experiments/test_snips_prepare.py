"""Tests of the snips experiment's data preparation (experiments/snips/prepare.py).

Everything runs on the committed slice of the Snips NLU benchmark under
``tests/experiments/fixtures/snips/`` (original file format, CESU-8 file included), so CI needs no
shared dataset; one test also checks the real dataset when ``/work/shared`` is present.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main as harness_main
from tests.helpers import REPO, load_script, read_jsonl

PREPARE = REPO / "experiments" / "snips" / "prepare.py"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "snips"
REAL = REPO.parent / "shared" / "datasets" / "snips_nlu_benchmark"
SEED = 0


prep = load_script(PREPARE, "snips_prepare")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """prepare.py run once on the fixture slice (CPU size, seed 0)."""
    out = tmp_path_factory.mktemp("snips") / "out"
    assert prep.main(["--data", str(FIXTURE), "--out", str(out), "--seed", str(SEED)]) == 0
    return out


@pytest.fixture(scope="module")
def train(prepared: Path) -> list[dict[str, Any]]:
    return read_jsonl(prepared / "samples.jsonl")


@pytest.fixture(scope="module")
def evals(prepared: Path) -> list[dict[str, Any]]:
    return read_jsonl(prepared / "eval.jsonl")


@pytest.fixture(scope="module")
def summary(prepared: Path) -> dict[str, Any]:
    return json.loads((prepared / "prepare.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("yaml_name", ["snips.yaml", "snips_full.yaml"])
def test_outputs_pass_harness_validate(prepared: Path, tmp_path: Path, yaml_name: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load((REPO / "experiments" / yaml_name).read_text(encoding="utf-8"))
    doc["data"]["samples"] = str(prepared / "samples.jsonl")
    doc["data"]["eval"] = str(prepared / "eval.jsonl")
    path = tmp_path / yaml_name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert harness_main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert harness_main(["plan", str(path)]) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(prepared: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    assert prep.main(["--data", str(FIXTURE), "--out", str(again), "--seed", str(SEED)]) == 0
    for name in ("samples.jsonl", "eval.jsonl", "prepare.json"):
        assert (again / name).read_bytes() == (prepared / name).read_bytes(), name


def test_records_follow_the_contract(train: list[dict[str, Any]],
                                     evals: list[dict[str, Any]]) -> None:
    assert {r["unit"] for r in train} == {"intent", "slots"}
    assert len({r["id"] for r in train}) == len(train)
    for r in train + evals:
        assert [c["teacher"] for c in r["candidates"]] == list(prep.TEACHERS)
        assert r["tags"]["source"] == "real" and r["tags"]["domain"] in prep.INTENTS
        for c in r["candidates"]:
            assert 0.0 <= c["confidence"] <= 1.0
            assert c["usage"]["prompt_tokens"] > 0 and c["usage"]["completion_tokens"] > 0
            if r["unit"] == "slots":
                slots = json.loads(c["final"])
                assert set(slots) <= set(prep.SLOT_NAMES)
                query = r["prompt"].split("\n")[0]
                # every value is copied from the query (teachers extract, they do not invent)
                assert all(v in query for value in slots.values()
                           for v in value.split(prep.MULTI_VALUE_SEP))
            else:
                assert c["final"] in prep.INTENTS


def test_teachers_are_neither_perfect_nor_at_chance(summary: dict[str, Any],
                                                    evals: list[dict[str, Any]]) -> None:
    for teacher, scores in summary["teachers"].items():
        for split in ("eval", "train"):
            s = scores[split]
            assert 0.4 < s["intent_accuracy"] < 1.0, (teacher, split, s)   # chance is 1/7
            assert 0.15 < s["slots_field_f1"] < 0.95, (teacher, split, s)
            assert s["slots_exact_match"] < 0.9, (teacher, split, s)
        wrong = sum(c["final"] != r["reference"] for r in evals for c in r["candidates"]
                    if c["teacher"] == teacher)
        assert wrong > 0, teacher
    # the teachers disagree: otherwise there is nothing to judge
    assert any(len({c["final"] for c in r["candidates"]}) > 1 for r in evals)


def test_audited_subset_is_small_and_the_only_place_gold_is_used(
        train: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    audited = [r for r in train if "audited" in r["judge"]["reason_tags"]]
    assert 0 < len(audited) <= 0.05 * len(train)
    assert summary["audit"]["records"] == len(audited)
    assert summary["audit"]["share_of_training_records"] <= 0.05
    audited_ids = {r["id"] for r in audited}
    n_fail = 0
    for r in train:
        for teacher, entry in r["failure"].items():
            n_fail += 1
            assert r["id"] in audited_ids
            assert r["pools"][teacher] == "failure"
            assert entry["correction"] == r["reference"]
            wrong = next(c["final"] for c in r["candidates"] if c["teacher"] == teacher)
            assert wrong != r["reference"]
        if r["id"] not in audited_ids:
            assert set(r["pools"].values()) == {"train"}
    assert n_fail == summary["audit"]["failure_entries"] > 0


@pytest.mark.slow
def test_teachers_and_judge_do_not_read_the_gold_of_what_they_label(
        train: list[dict[str, Any]]) -> None:
    """Blank the gold slots and change the gold intent of every unlabelled query: every teacher
    answer and every verdict outside the audited subset must stay the same."""
    corpus = prep.load_corpus(FIXTURE)
    other = {a: b for a, b in zip(prep.INTENTS, prep.INTENTS[1:] + prep.INTENTS[:1],
                                  strict=True)}
    corpus.full = {i: [dataclasses.replace(ex, spans=(), intent=other[ex.intent]) for ex in exs]
                   for i, exs in corpus.full.items()}
    blind, _, _ = prep.build(corpus, prep.SIZES["cpu"], SEED)
    by_text = {(r["unit"], r["prompt"]): r for r in blind}
    assert len(by_text) == len(train)
    for r in train:
        twin = by_text[(r["unit"], r["prompt"])]
        assert twin["candidates"] == r["candidates"]
        if "audited" not in r["judge"]["reason_tags"]:
            assert twin["judge"] == r["judge"]


def test_dataset_traps_are_handled(train: list[dict[str, Any]], evals: list[dict[str, Any]],
                                   summary: dict[str, Any]) -> None:
    # The fixture keeps the CESU-8 emoji of PlayMusic/train_PlayMusic_full.json ...
    raw = (FIXTURE / "PlayMusic" / "train_PlayMusic_full.json").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    # ... which is read as one proper character, so the output is valid UTF-8.
    assert any("\U0001f355" in r["prompt"] for r in train)
    # Seeds, duplicates and validation texts never reach the unlabelled pool.
    corpus = prep.load_corpus(FIXTURE)
    seeds = prep.split_corpus(corpus, prep.SIZES["cpu"], SEED).seeds
    queries = [prep.normalize(r["prompt"].split("\n")[0].removeprefix("Query: "))
               for r in train if r["unit"] == "slots"]
    assert len(set(queries)) == len(queries)
    assert not set(queries) & {ex.norm for ex in seeds}
    assert not set(queries) & {ex.norm for exs in corpus.validate.values() for ex in exs}
    assert summary["counts"]["pool_dropped"]["eval_overlap"] > 0
    assert summary["counts"]["pool_dropped"]["seed_or_duplicate"] > 0
    assert len(evals) == 2 * sum(len(v) for v in corpus.validate.values())


def test_missing_dataset_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(PREPARE), "--data", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "dataset folder not found" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage", ["truncated", "missing_file", "unknown_slot", "no_data"])
def test_bad_dataset_files_exit_2(tmp_path: Path, damage: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    target = data / "GetWeather" / "validate_GetWeather.json"
    text = target.read_text(encoding="utf-8")
    if damage == "truncated":
        target.write_text(text[: len(text) // 2], encoding="utf-8")
    elif damage == "missing_file":
        target.unlink()
    elif damage == "unknown_slot":
        target.write_text(text.replace('"entity": "city"', '"entity": "galaxy"', 1),
                          encoding="utf-8")
    else:
        target.write_text(json.dumps({"GetWeather": [{"text": "hi"}]}), encoding="utf-8")
    assert prep.main(["--data", str(data), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "validate_GetWeather.json" in err, err


@pytest.mark.skipif(not REAL.is_dir(), reason="the shared Snips dataset is not on this machine")
def test_real_dataset_split() -> None:
    corpus = prep.load_corpus(REAL)
    assert sum(len(v) for v in corpus.full.values()) == 13_784
    assert sum(len(v) for v in corpus.few_shot.values()) == 2_100
    assert sum(len(v) for v in corpus.validate.values()) == 700
    emoji = [ex for ex in corpus.full["PlayMusic"] if "\U0001f355" in ex.text]
    assert len(emoji) == 1  # one query; its emoji is the 6 CESU-8 bytes the README mentions
    split = prep.split_corpus(corpus, prep.SIZES["cpu"], SEED)
    assert len(split.seeds) == 7 * 15 and len(split.pool) == 7 * 150 and len(split.eval) == 280
    val = {ex.norm for exs in corpus.validate.values() for ex in exs}
    pool = [ex.norm for ex in split.pool]
    assert len(set(pool)) == len(pool) and not set(pool) & val
    assert not set(pool) & {ex.norm for ex in split.seeds}
    full = prep.split_corpus(corpus, prep.SIZES["full"], SEED)
    assert len(full.eval) == 700 and len(full.pool) > 13_000
