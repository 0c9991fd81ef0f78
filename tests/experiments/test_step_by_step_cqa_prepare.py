"""Tests of experiments/step_by_step_cqa/prepare.py (recorded PaLM-540B CommonsenseQA outputs).

Most tests run prepare on the committed slice in ``fixtures/step_by_step_cqa/`` (first rows of
the gold files and of the first teacher arrays, same layout as the shared dataset), so they work
on a machine without /work/shared. Tests marked ``real`` use the shared dataset when present.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from tests.helpers import REPO, load_script, read_jsonl, write_jsonl

SCRIPT = REPO / "experiments" / "step_by_step_cqa" / "prepare.py"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "step_by_step_cqa"
REAL = REPO.parent / "shared" / "datasets" / "step_by_step" / "cqa"


prep = load_script(SCRIPT, "step_by_step_cqa_prepare")


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cqa") / "cpu"
    prep.prepare(FIXTURE, folder, "cpu", 0)
    return folder


@pytest.fixture(scope="module")
def samples(out: Path) -> dict[int, dict[str, Any]]:
    """Training records keyed by their gold row index (the second part of the id)."""
    return {int(r["id"].split("-")[2]): r for r in read_jsonl(out / "samples.jsonl")}


@pytest.fixture(scope="module")
def evals(out: Path) -> dict[int, dict[str, Any]]:
    return {int(r["id"].split("-")[2]): r for r in read_jsonl(out / "eval.jsonl")}


def _yaml_copy(tmp_path: Path, name: str, folder: Path) -> Path:
    doc = yaml.safe_load((REPO / "experiments" / name).read_text(encoding="utf-8"))
    doc["data"]["samples"] = str(folder / "samples.jsonl")
    doc["data"]["eval"] = str(folder / "eval.jsonl")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------
# The harness accepts the outputs
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["step_by_step_cqa.yaml", "step_by_step_cqa_full.yaml"])
def test_outputs_pass_harness_validate(out: Path, tmp_path: Path, name: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = _yaml_copy(tmp_path, name, out)
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    # unmappable teacher answers are reported as warnings, not rejected
    assert "not among its labels" in capsys.readouterr().out
    assert main(["plan", str(path)]) == 0


def test_counts_and_prepare_json(out: Path, samples: dict, evals: dict) -> None:
    summary = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    # the fixture is smaller than the cpu caps, so every row is used
    assert len(samples) == 120 and len(evals) == 60
    assert sorted(samples) == list(range(120)) and sorted(evals) == list(range(60))
    assert summary["counts"]["samples"] == 120 and summary["counts"]["eval"] == 60
    assert set(summary["inputs_sha256"]) == {"cqa_train.json", "cqa_test.json",
                                             "llm/train_CoT_0.json", "llm/test_CoT_0.json"}
    for split, recs in (("train_written", samples), ("eval", evals)):
        acc = summary["teacher_accuracy"][split]["letter"]
        right = sum(r["candidates"][0]["final"] == r["reference"] for r in recs.values())
        assert acc["correct"] == right and acc["n"] == len(recs)


# --------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(out: Path, tmp_path: Path) -> None:
    prep.prepare(FIXTURE, tmp_path, "cpu", 0)
    for name in ("samples.jsonl", "eval.jsonl", "prepare.json"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name


def test_other_seed_draws_another_audited_subset(out: Path, tmp_path: Path) -> None:
    prep.prepare(FIXTURE, tmp_path, "cpu", 1)
    assert (tmp_path / "samples.jsonl").read_bytes() != (out / "samples.jsonl").read_bytes()
    assert (tmp_path / "eval.jsonl").read_bytes() == (out / "eval.jsonl").read_bytes()


# --------------------------------------------------------------------------------------
# Row alignment and parsing
# --------------------------------------------------------------------------------------
def test_row_alignment_of_known_fixture_rows(samples: dict, evals: dict) -> None:
    # train row 0: the apples question, gold "math problem" = (d); teacher "(d) math problem"
    r0 = samples[0]
    assert "10 apples on an apple tree" in r0["prompt"] and "(D) math problem" in r0["prompt"]
    assert r0["reference"] == "D" and r0["candidates"][0]["final"] == "D"
    assert r0["candidates"][0]["rationale"] == (
        "The answer must be something that has to do with the above problem. Of the above "
        "choices, only math problem has to do with the above problem.")
    # train row 1: the bum question (choices repeat "bridge"; gold is the first: D);
    # the teacher chose (c) train station
    r1 = samples[1]
    assert "Where does he live?" in r1["prompt"]
    assert r1["reference"] == "D" and r1["candidates"][0]["final"] == "C"
    assert r1["candidates"][0]["rationale"].endswith("only a train station is a place where a "
                                                      "bum would live.")
    # train row 16: a hedged answer cannot be mapped; its final is the raw answer text
    r16 = samples[16]
    assert "goldfish" in r16["candidates"][0]["rationale"]
    assert r16["candidates"][0]["final"] == "either (a) aquarium or (e) pond"
    # train row 67: letter (e) with capitalised text -> E; right by letter
    assert samples[67]["candidates"][0]["final"] == "E" == samples[67]["reference"]
    # eval row 0: the beaver example of the dataset README
    e0 = evals[0]
    assert "beaver" in e0["prompt"] and e0["reference"] == "C"
    assert e0["candidates"][0]["final"] == "C"
    assert e0["candidates"][0]["rationale"].startswith("The answer must be the place where "
                                                        "beavers get their supplies.")
    assert e0["candidates"][0]["confidence"] is None
    assert e0["tags"] == {"source": "real", "qtype": "where", "teacher_answer": "right"}


def test_parse_cuts_at_first_q_and_splits_rationale() -> None:
    t = prep.parse_teacher("Because X.  Really.\nSo the answer is (b) blue.\n\nQ: next\nA: So "
                           "the answer is (a) red.")
    assert t.rationale == "Because X. Really." and t.answer == "(b) blue" and t.letters == ("b",)
    assert prep.upstream_label(t) == "blue"
    assert prep.map_choice(t, ["red", "blue", "c", "d", "e"]) == ("B", "letter")


def test_mapping_rules() -> None:
    choices = ["park", "bridge", "beach", "bridge", "sea"]
    # a letter naming a repeated option maps to its first occurrence
    assert prep.map_choice(prep.parse_teacher("r. So the answer is (d) bridge."), choices) == (
        "B", "letter")
    # no letter: the text is matched against the options
    assert prep.map_choice(prep.parse_teacher("r. So the answer is Beach."), choices) == (
        "C", "text")
    assert prep.map_choice(prep.parse_teacher("r. So the answer is one of these."),
                           choices) == (None, "none")
    assert prep.map_choice(prep.parse_teacher("r. So the answer is (a) park or (e) sea."),
                           choices) == (None, "hedged")
    assert prep.gold_letter({"choices": choices, "answer": "bridge"}) == "B"


def test_consistency_judge_scores() -> None:
    choices = ["mixed drinks", "cold weather", "scotch", "antarctica", "water cooler"]

    def score(text: str) -> int:
        t = prep.parse_teacher(text)
        return prep.consistency_judge(t, prep.map_choice(t, choices)[0], choices, "q?")[0]

    assert score("Only ice goes in. So the answer is either (a) x or (b) y.") == 1
    assert score("Only ice is put in a drink. So the answer is (e) ice.") == 2
    assert score("Ice is put in drinks. So the answer is (c) scotch.") == 3
    assert score("Scotch is a drink. It is cold. So the answer is (c) scotch.") == 4
    assert score("Only scotch and mixed drinks fit. So the answer is (c) scotch.") == 4
    assert score("It is cold. Only scotch fits. So the answer is (c) scotch.") == 5


# --------------------------------------------------------------------------------------
# The judge and the audited subset
# --------------------------------------------------------------------------------------
def test_audited_subset_is_at_most_five_percent(samples: dict) -> None:
    audited = [r for r in samples.values() if r["judge"]["judge"] == prep.AUDIT_JUDGE]
    assert 0 < len(audited) <= 0.05 * len(samples)
    assert all(r["tags"]["audited"] == "yes" for r in audited)
    for r in audited:
        right = r["candidates"][0]["final"] == r["reference"]
        assert r["judge"]["scores"] == {prep.TEACHER: 5 if right else 1}
        assert r["pools"] == {prep.TEACHER: "train" if right else "failure"}
        if not right:
            assert r["failure"][prep.TEACHER]["correction"] == r["reference"]


def test_judge_outside_the_audit_does_not_read_gold(samples: dict, tmp_path: Path) -> None:
    # Same data with every gold answer moved to another option: only audited records may change.
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    rows = read_jsonl(data / "cqa_train.json")
    for row in rows:
        others = [c for c in row["choices"] if c != row["answer"]]
        row["answer"] = others[0]
    write_jsonl(data / "cqa_train.json", rows)
    prep.prepare(data, tmp_path / "out", "cpu", 0)
    moved = {int(r["id"].split("-")[2]): r for r in read_jsonl(tmp_path / "out" / "samples.jsonl")}
    for i, r in samples.items():
        if r["judge"]["judge"] == prep.AUDIT_JUDGE:
            continue
        assert moved[i]["judge"] == r["judge"] and moved[i]["pools"] == r["pools"]
        assert moved[i]["candidates"] == r["candidates"]


def test_records_carry_usage_and_tags(samples: dict) -> None:
    for r in samples.values():
        c = r["candidates"][0]
        assert c["usage"]["prompt_tokens"] == len(r["prompt"].split())
        assert c["usage"]["completion_tokens"] > 0 and c["confidence"] is None
        assert r["tags"]["source"] == "real" and r["tags"]["qtype"] in (*prep.WH_WORDS, "other")


# --------------------------------------------------------------------------------------
# Layout: numeric file order
# --------------------------------------------------------------------------------------
def test_teacher_files_are_joined_in_numeric_order(out: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    arr = json.loads((data / "llm" / "train_CoT_0.json").read_text())
    (data / "llm" / "train_CoT_0.json").unlink()
    for k in range(12):  # train_CoT_0 .. _11: lexicographic order would put _10 after _1
        (data / "llm" / f"train_CoT_{k}.json").write_text(json.dumps(arr[k * 10:(k + 1) * 10]))
    prep.prepare(data, tmp_path / "out", "cpu", 0)
    assert (tmp_path / "out" / "samples.jsonl").read_bytes() == (
        out / "samples.jsonl").read_bytes()


# --------------------------------------------------------------------------------------
# Bad input: exit 2, one line, no traceback
# --------------------------------------------------------------------------------------
def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          check=False)


def _bad_copy(tmp_path: Path, edit: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    if edit == "gold":
        with (data / "cqa_test.json").open("a") as fh:
            fh.write("{not json\n")
    elif edit == "count":
        arr = json.loads((data / "llm" / "test_CoT_0.json").read_text())
        (data / "llm" / "test_CoT_0.json").write_text(json.dumps(arr[:-1]))
    elif edit == "teacher":
        (data / "llm" / "train_CoT_0.json").write_text('{"a": 1}')
    elif edit == "gap":
        (data / "llm" / "train_CoT_2.json").write_text("[]")
    return data


@pytest.mark.parametrize("edit", ["missing", "gold", "count", "teacher", "gap"])
def test_bad_input_exits_2_with_one_line(tmp_path: Path, edit: str) -> None:
    data = tmp_path / "nowhere" if edit == "missing" else _bad_copy(tmp_path, edit)
    res = _run("--data", str(data), "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("prepare.py: ")


# --------------------------------------------------------------------------------------
# The real dataset (skipped where /work/shared is absent)
# --------------------------------------------------------------------------------------
real = pytest.mark.skipif(not (REAL / "cqa_train.json").is_file(),
                          reason="the shared step_by_step dataset is not on this machine")


@real
def test_teacher_accuracy_on_real_data_matches_dataset_readme() -> None:
    want = {"train": (7234, 9741, 7483), "test": (943, 1221, 968)}
    for split, (exact, n, lenient) in want.items():
        joined = prep.join_split(
            prep.read_gold(REAL / f"cqa_{split}.json"),
            prep.read_teacher(prep.teacher_files(REAL / "llm", split)), split)
        acc = prep.teacher_accuracy(joined)
        assert acc["upstream_exact_text"]["correct"] == exact and len(joined) == n
        assert acc["first_letter_lenient"]["correct"] == lenient
    # 74.26 % train / 77.23 % test, as the dataset README states
    assert round(100 * 7234 / 9741, 2) == 74.26 and round(100 * 943 / 1221, 2) == 77.23


@real
def test_real_cpu_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = prep.prepare(REAL, tmp_path, "cpu", 0)
    assert summary["counts"]["samples"] == 2000 and summary["counts"]["eval"] == 400
    assert summary["audit"]["records"] <= 0.05 * 2000
    assert summary["teacher_accuracy"]["train_split_all"]["upstream_exact_text"][
        "accuracy"] == pytest.approx(0.742634, abs=1e-6)
    assert main(["validate", str(_yaml_copy(tmp_path, "step_by_step_cqa.yaml", tmp_path))]
                ) == 0, capsys.readouterr().err
