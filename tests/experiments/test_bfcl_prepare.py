"""Tests of experiments/bfcl/prepare.py (BFCL function calling -> one tool_call unit).

Most tests run prepare on the committed slice in ``fixtures/bfcl/`` (unmodified lines of the
BFCL files, same layout as the shared dataset), so they work on a machine without
/work/shared. Tests that need the shared dataset skip when it is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from tests.helpers import REPO, load_script, read_jsonl, write_jsonl

SCRIPT = REPO / "experiments" / "bfcl" / "prepare.py"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "bfcl"
REAL = REPO.parent / "shared" / "datasets" / "bfcl"


prep = load_script(SCRIPT, "bfcl_prepare")


@pytest.fixture(scope="module")
def outs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """prepare's output folders on the fixture, per size."""
    root = tmp_path_factory.mktemp("bfcl")
    for size in ("cpu", "full"):
        prep.prepare(FIXTURE, root / size, size, 0)
    return {"cpu": root / "cpu", "full": root / "full"}


def _yaml_copy(tmp_path: Path, name: str, folder: Path) -> Path:
    doc = yaml.safe_load((REPO / "experiments" / name).read_text(encoding="utf-8"))
    doc["data"]["samples"] = str(folder / "samples.jsonl")
    doc["data"]["eval"] = str(folder / "eval.jsonl")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _yaml_tools(name: str) -> list[str]:
    doc = yaml.safe_load((REPO / "experiments" / name).read_text(encoding="utf-8"))
    return list(doc["units"][prep.UNIT]["tools"])


# --------------------------------------------------------------------------------------
# The harness accepts the outputs
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "size"), [("bfcl.yaml", "cpu"), ("bfcl_full.yaml", "full")])
def test_outputs_pass_harness_validate(outs: dict[str, Path], tmp_path: Path, name: str,
                                       size: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = _yaml_copy(tmp_path, name, outs[size])
    rc = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err


def test_committed_cpu_tools_cover_the_fixture_slice(outs: dict[str, Path]) -> None:
    summary = json.loads((outs["cpu"] / "prepare.json").read_text(encoding="utf-8"))
    assert summary["tools"] == sorted(_yaml_tools("bfcl.yaml"))


# --------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(outs: dict[str, Path], tmp_path: Path) -> None:
    prep.prepare(FIXTURE, tmp_path / "again", "cpu", 0)
    for name in ("samples.jsonl", "eval.jsonl", "prepare.json"):
        assert (tmp_path / "again" / name).read_bytes() == (outs["cpu"] / name).read_bytes()


def test_another_seed_gives_another_split(outs: dict[str, Path], tmp_path: Path) -> None:
    prep.prepare(FIXTURE, tmp_path / "s1", "cpu", 1)
    ids0 = {r["id"] for r in read_jsonl(outs["cpu"] / "eval.jsonl")}
    ids1 = {r["id"] for r in read_jsonl(tmp_path / "s1" / "eval.jsonl")}
    assert ids0 != ids1


# --------------------------------------------------------------------------------------
# Records follow the contract and the experiment's rules
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["cpu", "full"])
def test_records_shape(outs: dict[str, Path], size: str) -> None:
    train = read_jsonl(outs[size] / "samples.jsonl")
    evals = read_jsonl(outs[size] / "eval.jsonl")
    summary = json.loads((outs[size] / "prepare.json").read_text(encoding="utf-8"))
    seeds = set(summary["seed_ids"])
    assert train and evals
    for r in train + evals:
        assert r["unit"] == prep.UNIT
        assert r["tags"]["source"] == "real" and r["tags"]["category"] in prep.CATEGORIES
        assert r["id"] not in seeds  # the teachers never label their own seeds
        ref = json.loads(r["reference"])
        assert ref is None or set(ref) == {"name", "arguments"}
        assert (ref is None) == (r["tags"]["decision"] == "no_call")
        assert r["prompt"].startswith("Functions:\n")
        assert {c["teacher"] for c in r["candidates"]} == set(prep.TEACHERS)
        for c in r["candidates"]:
            assert 0.0 <= c["confidence"] <= 1.0
            json.loads(c["final"])
    for r in train:
        for c in r["candidates"]:
            assert c["usage"]["prompt_tokens"] == len(r["prompt"].split())
            assert c["rationale"] and c["limits"]
        assert set(r["judge"]["scores"]) == set(prep.TEACHERS)
        assert r["judge"]["winner"] in prep.TEACHERS
    train_prompts = {" ".join(r["prompt"].lower().split()) for r in train}
    assert not any(" ".join(r["prompt"].lower().split()) in train_prompts for r in evals)


def test_teachers_are_neither_perfect_nor_at_chance(outs: dict[str, Path]) -> None:
    summary = json.loads((outs["full"] / "prepare.json").read_text(encoding="utf-8"))
    train = read_jsonl(outs["full"] / "samples.jsonl")
    majority = max(sum(r["tags"]["decision"] == "call" for r in train),
                   sum(r["tags"]["decision"] == "no_call" for r in train)) / len(train)
    for t in prep.TEACHERS:
        s = summary["teachers"][t]["train"]
        assert 0.0 < s["exact_match"] < 1.0, (t, s)
        assert s["call_accuracy"] < 1.0, (t, s)
        # better than always answering the majority decision (chance for call vs no call)
        assert s["call_accuracy"] > majority - 0.05, (t, s, majority)
        assert s["tool_name_accuracy"] > 0.3, (t, s)


def test_audited_subset_is_small_and_the_only_place_gold_is_read(outs: dict[str, Path]) -> None:
    for size in ("cpu", "full"):
        train = read_jsonl(outs[size] / "samples.jsonl")
        audited = [r for r in train if r["tags"]["audited"] == "yes"]
        assert len(audited) <= 0.05 * len(train)
        for r in train:
            if r["failure"]:
                assert r["tags"]["audited"] == "yes"
                for t, f in r["failure"].items():
                    assert r["pools"][t] == "failure"
                    assert f["correction"] == r["reference"]
                    assert f["kind"] in {"unneeded_call", "missed_call", "wrong_tool",
                                         "wrong_argument"}


def test_judge_ignores_gold_outside_the_audit(outs: dict[str, Path], tmp_path: Path) -> None:
    """Change every gold argument value: teachers, verdicts and pools of unaudited records stay.

    The teachers read only the seeds' call/no-call decision and gold function name, which the
    change keeps, so any difference would be the judge reading gold.
    """
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    for path in (data / "possible_answer").glob("*.json"):
        rows = read_jsonl(path)
        for row in rows:
            for call in row["ground_truth"]:
                for args in call.values():
                    args["zz_extra"] = ["changed"]
        write_jsonl(path, rows)
    prep.prepare(data, tmp_path / "out", "cpu", 0)
    before = {r["id"]: r for r in read_jsonl(outs["cpu"] / "samples.jsonl")}
    after = {r["id"]: r for r in read_jsonl(tmp_path / "out" / "samples.jsonl")}
    assert before.keys() == after.keys()
    for rid, r in after.items():
        assert r["candidates"] == before[rid]["candidates"]
        if r["tags"]["audited"] == "no":
            assert r["judge"] == before[rid]["judge"] and r["pools"] == before[rid]["pools"]
        elif r["tags"]["decision"] == "call":
            assert set(r["pools"].values()) == {"failure"}  # nobody guesses zz_extra


# --------------------------------------------------------------------------------------
# Gold resolution, prompts, judge
# --------------------------------------------------------------------------------------
def test_gold_takes_the_first_acceptable_value_and_drops_omittable_arguments() -> None:
    schema = {"name": "f", "parameters": {"properties": {"a": {}, "b": {}, "c": {}, "d": {}}}}
    gold = [{"f": {"d": [{"x": ["", "u"], "y": [""]}], "c": ["", 3], "b": [""],
                   "a": ["Boston, MA", "Boston"]}}]
    assert prep.resolve_gold(gold, [schema], "t") == {
        "name": "f", "arguments": {"a": "Boston, MA", "c": 3, "d": {"x": "u"}}}


def test_gold_keeps_false_zero_and_null_values() -> None:
    schema = {"name": "f", "parameters": {"properties": {"a": {}, "b": {}, "c": {}}}}
    gold = [{"f": {"a": [False, ""], "b": [0], "c": [None, ""]}}]
    assert prep.resolve_gold(gold, [schema], "t")["arguments"] == {"a": False, "b": 0, "c": None}


def test_prompt_lists_functions_first_and_ends_with_the_request() -> None:
    item = prep.Item("x", "multiple", (
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"}),
        ({"name": "get_weather", "description": "Current weather. Uses an API.",
          "parameters": {"type": "dict", "required": ["city"], "properties": {
              "city": {"type": "string"}, "unit": {"type": "string",
                                                   "enum": ["c", "f"]}}}},), None)
    assert prep.render_prompt(item) == (
        "Functions:\n- get_weather(city*: str, unit: str{c|f}) - Current weather.\n"
        "Request:\nSystem: Be brief.\nUser: Weather in Oslo?")


def test_schema_check() -> None:
    funcs = [{"name": "f", "parameters": {"required": ["n"], "properties": {
        "n": {"type": "integer"}, "u": {"type": "string", "enum": ["a", "b"]}}}}]
    assert prep.schema_problems(None, funcs) == []
    assert prep.schema_problems({"name": "f", "arguments": {"n": 2, "u": "a"}}, funcs) == []
    assert prep.schema_problems({"name": "g", "arguments": {}}, funcs) == ["function not offered"]
    assert prep.schema_problems({"name": "f", "arguments": {"u": "c"}}, funcs) == [
        "missing n", "u not in enum"]
    assert prep.schema_problems({"name": "f", "arguments": {"n": "2"}}, funcs) == [
        "n is not integer"]


def test_argument_fillers_extract_values() -> None:
    schema = {"name": "area", "parameters": {"required": ["base", "height"], "properties": {
        "base": {"type": "integer", "description": "base length"},
        "height": {"type": "integer", "description": "height"},
        "unit": {"type": "string", "enum": ["cm", "m"]}}}}
    text = "Find the area of a triangle with a height of 5 m and a base of 10."
    assert prep.fill_proximity(schema, text)[0] == {"base": 10, "height": 5, "unit": "m"}
    # positional filling hands numbers over in text order: a real, systematic error
    assert prep.fill_positional(schema, text)[0] == {"base": 5, "height": 10, "unit": "m"}


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------
def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, check=False)


def test_missing_dataset_exits_2_with_a_message(tmp_path: Path) -> None:
    res = _run("--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "dataset folder not found" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_malformed_line_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    path = data / "BFCL_v4_multiple.json"
    path.write_text(path.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    res = _run("--data", str(data), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "BFCL_v4_multiple.json:7: not valid JSON" in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_gold_file_exits_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    (data / "possible_answer" / "BFCL_v4_live_simple.json").unlink()
    res = _run("--data", str(data), "--print-tools")
    assert res.returncode == 2
    assert "BFCL_v4_live_simple.json: file not found" in res.stderr


# --------------------------------------------------------------------------------------
# The committed YAMLs match the real dataset (skipped without /work/shared)
# --------------------------------------------------------------------------------------
@pytest.mark.skipif(not REAL.is_dir(), reason="the shared BFCL dataset is not on this machine")
@pytest.mark.parametrize(("name", "size"), [("bfcl.yaml", "cpu"), ("bfcl_full.yaml", "full")])
def test_committed_tools_match_the_real_data(name: str, size: str) -> None:
    items = prep.select_size(prep.load_items(REAL)[0], size, 0)
    names = sorted({it.reference["name"] for it in items if it.reference is not None})
    assert sorted(_yaml_tools(name)) == names
