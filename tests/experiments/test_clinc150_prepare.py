"""Tests of the CLINC150 preparation (experiments/clinc150/prepare.py).

Everything runs on the committed slice in ``fixtures/clinc150`` (three domains, 45 intents), so
CI needs no shared dataset. The teachers are real: TF-IDF + logistic regression, and the
packaged MiniLM encoder (a few hundred short queries embed in seconds on a CPU).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from harness.cli import main as harness_main
from tests.helpers import REPO, load_script, read_jsonl

SCRIPT = REPO / "experiments" / "clinc150" / "prepare.py"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "clinc150"
#: The slice has 14 train queries per intent: 5 seeds + 9 pool; 4 test queries per intent.
ARGS = ["--seeds-per-intent", "5", "--oos-seeds", "5", "--pool-per-intent", "9",
        "--eval-per-intent", "4", "--eval-oos", "30"]
TRAIN_KEYS = ["id", "unit", "prompt", "reference", "candidates", "judge", "pools", "failure",
              "tags", "round"]
EVAL_KEYS = ["id", "unit", "prompt", "reference", "candidates", "tags"]
CANDIDATE_KEYS = ["teacher", "final", "rationale", "limits", "confidence", "trajectory", "usage"]


prep = load_script(SCRIPT, "clinc150_prepare")


def _norm(prompt: str) -> str:
    """The harness's leakage normalisation: lower case, whitespace collapsed."""
    return " ".join(prompt.lower().split())


def _intents() -> list[str]:
    domains = json.loads((FIXTURE / "domains.json").read_text(encoding="utf-8"))
    return [name for names in domains.values() for name in names]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One preparation of the slice into ``<work>/data/a`` (seed 3); MiniLM goes to
    ``<work>/data/minilm``."""
    root = tmp_path_factory.mktemp("clinc150")
    assert prep.main(["--data", str(FIXTURE), "--out", str(root / "data" / "a"), "--seed", "3",
                      *ARGS]) == 0
    return root


@pytest.fixture(scope="module")
def train(work: Path) -> list[dict[str, Any]]:
    return read_jsonl(work / "data" / "a" / "samples.jsonl")


@pytest.fixture(scope="module")
def evals(work: Path) -> list[dict[str, Any]]:
    return read_jsonl(work / "data" / "a" / "eval.jsonl")


@pytest.fixture(scope="module")
def summary(work: Path) -> dict[str, Any]:
    return json.loads((work / "data" / "a" / "prepare.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------- the harness


def _experiment_for_fixture(work: Path, source: Path) -> Path:
    """A copy of an experiment YAML pointed at the fixture outputs, with the slice's intents."""
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    doc["data"]["samples"] = str(work / "data" / "a" / "samples.jsonl")
    doc["data"]["eval"] = str(work / "data" / "a" / "eval.jsonl")
    doc["units"]["intent"]["labels"] = _intents()
    path = work / source.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("yaml_name", ["clinc150.yaml", "clinc150_full.yaml"])
def test_outputs_pass_harness_validate_and_plan(work: Path, train: list, yaml_name: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    exp = _experiment_for_fixture(work, REPO / "experiments" / yaml_name)
    # leakage: error in the YAML, so a leak would fail validation too
    assert harness_main(["validate", str(exp), "--stats"]) == 0, capsys.readouterr()
    assert harness_main(["plan", str(exp)]) == 0, capsys.readouterr()


def test_yaml_labels_are_the_150_intents() -> None:
    docs = [yaml.safe_load((REPO / "experiments" / n).read_text(encoding="utf-8"))
            for n in ("clinc150.yaml", "clinc150_full.yaml")]
    labels = [d["units"]["intent"]["labels"] for d in docs]
    assert labels[0] == labels[1]
    assert len(labels[0]) == len(set(labels[0])) == 150
    assert all(isinstance(x, str) for x in labels[0])  # "yes"/"no" stayed strings
    assert set(_intents()) <= set(labels[0])
    for d in docs:
        assert d["units"]["out_of_scope"] == {"kind": "refusal", "marker": "OUT_OF_SCOPE"}
    shared = prep.DEFAULT_DATA / "domains.json"
    if shared.is_file():  # where the full dataset is around, the order is that of the file
        domains = json.loads(shared.read_text(encoding="utf-8"))
        assert labels[0] == [n for names in domains.values() for n in names]


# ---------------------------------------------------------------------- determinism


@pytest.mark.slow
def test_same_seed_gives_byte_identical_files(work: Path) -> None:
    again = work / "data" / "b"
    assert prep.main(["--data", str(FIXTURE), "--out", str(again), "--seed", "3", *ARGS]) == 0
    for name in ("samples.jsonl", "eval.jsonl"):
        assert (again / name).read_bytes() == (work / "data" / "a" / name).read_bytes()
    first = json.loads((work / "data" / "a" / "prepare.json").read_text(encoding="utf-8"))
    second = json.loads((again / "prepare.json").read_text(encoding="utf-8"))
    first.pop("wall_time_s"), second.pop("wall_time_s")
    assert first == second
    # no temporary file of the atomic writes is left behind
    assert sorted(p.name for p in again.iterdir()) == ["eval.jsonl", "prepare.json",
                                                       "samples.jsonl"]


@pytest.mark.slow
def test_other_seed_gives_other_data_but_teachers_see_only_seeds(work: Path,
                                                                 summary: dict) -> None:
    other = work / "data" / "c"
    assert prep.main(["--data", str(FIXTURE), "--out", str(other), "--seed", "4", *ARGS,
                      "--no-export-model"]) == 0
    assert (other / "samples.jsonl").read_bytes() != (
        work / "data" / "a" / "samples.jsonl").read_bytes()
    # Same seed, smaller pool and eval: the seeds are the same queries, so the teachers
    # (temperatures, thresholds, seed statistics) must not change - nothing of the pool or
    # the eval set feeds them.
    small = work / "data" / "d"
    assert prep.main(["--data", str(FIXTURE), "--out", str(small), "--seed", "3",
                      "--seeds-per-intent", "5", "--oos-seeds", "5", "--pool-per-intent", "3",
                      "--eval-per-intent", "2", "--eval-oos", "10", "--no-export-model"]) == 0
    small_summary = json.loads((small / "prepare.json").read_text(encoding="utf-8"))
    for name in prep.TEACHERS:
        for key in ("temperature", "oos_threshold", "seeds"):
            assert small_summary["teachers"][name][key] == summary["teachers"][name][key]
    assert small_summary["counts"]["pool_in_scope"] == 3 * 45


# ---------------------------------------------------------------------- the records


def test_record_layout(train: list, evals: list) -> None:
    intents = set(_intents())
    for rec in train:
        assert list(rec) == TRAIN_KEYS and rec["round"] == 1
    for rec in evals:
        assert list(rec) == EVAL_KEYS
    for rec in train + evals:
        assert rec["unit"] in ("intent", "out_of_scope")
        assert rec["tags"]["source"] == "real"
        assert rec["tags"]["domain"] in {"banking", "travel", "small_talk", "oos"}
        assert rec["prompt"] == rec["prompt"].strip() and "{" not in rec["prompt"]
        assert "Answer:" not in rec["prompt"]
        assert [c["teacher"] for c in rec["candidates"]] == list(prep.TEACHERS)
        for c in rec["candidates"]:
            assert list(c) == CANDIDATE_KEYS
            assert 0.0 <= c["confidence"] <= 1.0 and round(c["confidence"], 6) == c["confidence"]
            allowed = intents if rec["unit"] == "intent" else intents | {"OUT_OF_SCOPE"}
            assert c["final"] in allowed
            assert c["usage"] == {
                "prompt_tokens": len(rec["prompt"].split()),
                "completion_tokens": sum(len((c[k] or "").split())
                                         for k in ("final", "rationale", "limits"))}


def test_two_records_per_pool_query_with_unit_prompts(train: list, summary: dict) -> None:
    by_query: dict[str, list[dict[str, Any]]] = {}
    for rec in train:
        by_query.setdefault(rec["id"].rsplit("-", 1)[0], []).append(rec)
    assert len(by_query) == summary["counts"]["pool_queries"] == 45 * 9 + 15
    for pair in by_query.values():
        intent, oos = sorted(pair, key=lambda r: r["unit"])
        assert (intent["unit"], oos["unit"]) == ("intent", "out_of_scope")
        assert intent["prompt"] != oos["prompt"]
        assert intent["prompt"].split("\n")[0] == oos["prompt"].split("\n")[0]
        if intent["tags"]["domain"] == "oos":
            assert intent["reference"] is None and oos["reference"] == "OUT_OF_SCOPE"
        else:
            assert intent["reference"] == oos["reference"] != "OUT_OF_SCOPE"


def test_training_ids_mix_intents(train: list) -> None:
    """CLINC stores train in blocks of one intent; the harness batches in id order within a
    token length, so ids must not follow the dataset's blocks (see training_records)."""
    assert [r["id"] for r in train] == sorted(r["id"] for r in train)
    refs = [r["reference"] for r in sorted(train, key=lambda r: r["id"])
            if r["unit"] == "intent" and r["reference"] is not None]
    same_as_next = sum(a == b for a, b in zip(refs, refs[1:], strict=False)) / (len(refs) - 1)
    assert same_as_next < 0.1  # 45 intents at random: about 1/45


def test_out_of_scope_answers_follow_each_teachers_threshold(train: list, evals: list,
                                                             summary: dict) -> None:
    """Answer the top intent at or above the teacher's threshold, else OUT_OF_SCOPE with
    confidence 1 - top probability; the top probability is the intent twin's confidence."""
    intent_cands = {(r["id"].replace("-intent", ""), c["teacher"]): c
                    for r in train + evals if r["unit"] == "intent" for c in r["candidates"]}
    checked = 0
    for rec in train + evals:
        if rec["unit"] != "out_of_scope":
            continue
        for c in rec["candidates"]:
            twin = intent_cands.get((rec["id"].replace("-out_of_scope", ""), c["teacher"]))
            if twin is None:  # an oos_test item has no intent record
                continue
            checked += 1
            threshold = summary["teachers"][c["teacher"]]["oos_threshold"]
            if twin["confidence"] >= threshold:
                assert (c["final"], c["confidence"]) == (twin["final"], twin["confidence"])
            else:
                assert c["final"] == "OUT_OF_SCOPE"
                assert c["confidence"] == round(1 - twin["confidence"], 6)
            assert c["limits"] and "OUT_OF_SCOPE" in c["limits"]
    assert checked == 2 * sum(r["unit"] == "intent" for r in train + evals)


# ------------------------------------------------------------------- teachers & judge


def test_teachers_are_neither_perfect_nor_at_chance(summary: dict) -> None:
    chance = 1 / 45
    for name in prep.TEACHERS:
        t = summary["teachers"][name]
        for where in ("pool", "eval"):
            acc = t[where]["in_scope_accuracy"]
            assert 5 * chance < acc < 1.0, (name, where, acc)
            assert 0.0 < t[where]["final_accuracy"] < 1.0
        assert 0.0 < t["oos_threshold"] < 1.0 and t["temperature"] > 0
        assert t["seeds"]["folds"] in (5, -1)


def test_agreement_and_judge_rules(train: list, summary: dict) -> None:
    agree_share = summary["judge"]["agreement_pool"]
    assert 0.3 < agree_share["intent"] < 1.0 and 0.3 < agree_share["out_of_scope"] < 1.0
    for rec in train:
        j, cands = rec["judge"], rec["candidates"]
        assert j["judge"] == "agreement_conf"
        scores = j["scores"]
        assert set(scores) == set(rec["pools"]) == set(prep.TEACHERS)
        if rec["tags"]["audited"] == "yes":
            continue
        assert rec["failure"] == {}
        agree = len({c["final"] for c in cands}) == 1
        confident = {c["teacher"]: c["confidence"] >= 0.5 for c in cands}
        for c in cands:
            t = c["teacher"]
            if agree:
                assert scores[t] == {2: 5, 1: 4, 0: 3}[sum(confident.values())]
                assert rec["pools"][t] == "train"
            else:
                assert scores[t] == (2 if confident[t] else 1)
                assert rec["pools"][t] == ("train" if confident[t] else "hard")
        best = max(scores.values())
        assert scores[j["winner"]] == best


def test_audited_subset_is_small_and_checked_against_gold(train: list, summary: dict) -> None:
    audited = [r for r in train if r["tags"]["audited"] == "yes"]
    assert 0 < len(audited) <= 0.05 * len(train)
    assert len(audited) == summary["counts"]["audited_records"]
    assert Counter(r["unit"] for r in audited) == {"intent": len(audited) // 2,
                                                   "out_of_scope": len(audited) // 2}
    n_fail = 0
    for rec in audited:
        assert "audited" in rec["judge"]["reason_tags"]
        for c in rec["candidates"]:
            t = c["teacher"]
            if rec["reference"] is None:  # the intent record of an out-of-scope query
                assert rec["pools"][t] == "discard" and rec["judge"]["winner"] is None
            elif c["final"] == rec["reference"]:
                assert rec["pools"][t] == "train" and rec["judge"]["scores"][t] == 5
                assert t not in rec["failure"]
            else:
                n_fail += 1
                assert rec["pools"][t] == "failure" and rec["judge"]["scores"][t] == 1
                assert rec["failure"][t]["kind"] == "wrong_label"
                assert rec["failure"][t]["correction"] == rec["reference"]
                assert rec["failure"][t]["note"]
    assert n_fail > 0  # the teachers err on the slice, so the audit finds something


# ------------------------------------------------------------------ eval and leakage


def test_eval_set_and_no_leakage(train: list, evals: list, summary: dict) -> None:
    assert {r["id"] for r in train}.isdisjoint(r["id"] for r in evals)
    assert {_norm(r["prompt"]) for r in train}.isdisjoint(_norm(r["prompt"]) for r in evals)
    assert len({r["id"] for r in evals}) == len(evals)
    units = Counter((r["unit"], r["reference"] == "OUT_OF_SCOPE") for r in evals)
    n_in, n_oos = summary["counts"]["eval_in_scope_queries"], summary["counts"][
        "eval_oos_queries"]
    assert units == {("intent", False): n_in, ("out_of_scope", False): n_in,
                     ("out_of_scope", True): n_oos}
    assert n_oos == 30
    # the slice holds two test queries that repeat training queries: both dropped, reported
    dropped = summary["dropped_eval_duplicates"]
    assert {(d["split"], d["text"]) for d in dropped["items"]} >= {
        ("test", "where did you grow up"), ("test", "hey there")}
    assert sum(d["same_normalized_prompt"] for d in dropped["items"]) >= 1
    assert dropped["count"] == len(dropped["items"])
    assert n_in == 45 * 4 - sum(d["split"] == "test" for d in dropped["items"])
    for rec in evals:
        if rec["unit"] == "intent":
            assert rec["reference"] in set(_intents())


def test_minilm_is_exported_once_next_to_the_outputs(work: Path) -> None:
    target = work / "data" / "minilm"
    assert prep.minilm_complete(target)
    assert (target / "model.safetensors").stat().st_size > 1_000_000
    assert prep.export_minilm(target) == "present"
    assert not [p for p in (work / "data").iterdir() if p.name.startswith(".minilm")]


# ------------------------------------------------------------------------- the helpers


def test_threshold_maximises_balanced_accuracy() -> None:
    conf_in = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    conf_oos = np.array([0.1, 0.3, 0.65])
    threshold, balanced = prep.choose_threshold(conf_in, conf_oos)
    # between 0.65 and 0.7: 3/5 in-scope answered, 3/3 out-of-scope refused (0.8), better
    # than between 0.3 and 0.6 (4/5 and 2/3: 0.733); the midpoint is taken
    assert threshold == pytest.approx(0.675)
    assert balanced == pytest.approx((3 / 5 + 3 / 3) / 2)


def test_temperature_recovers_a_known_one() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 6)) * 3
    probs = prep.softmax(logits, 1.0)
    gold = np.array([rng.choice(6, p=p) for p in probs])
    assert prep.fit_temperature(logits, gold) == pytest.approx(1.0, rel=0.1)


# ------------------------------------------------------------------------- bad input


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=120)


def test_missing_dataset_exits_2_with_one_line(tmp_path: Path) -> None:
    res = _run("--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "not found" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("breakage,expected", [
    ("truncate", "invalid JSON"),
    ("unknown_label", "does not list"),
    ("missing_split", "missing or empty"),
    ("bad_pair", "[text, label] pair"),
    ("no_domains", "file not found"),
])
def test_bad_dataset_exits_2_with_message(tmp_path: Path, breakage: str, expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads((FIXTURE / "data_full.json").read_text(encoding="utf-8"))
    (tmp_path / "domains.json").write_bytes((FIXTURE / "domains.json").read_bytes())
    text = json.dumps(data)
    if breakage == "truncate":
        text = text[: len(text) // 2]
    elif breakage == "unknown_label":
        data["train"][3][1] = "teleport"
        text = json.dumps(data)
    elif breakage == "missing_split":
        del data["oos_test"]
        text = json.dumps(data)
    elif breakage == "bad_pair":
        data["test"][0] = ["only text"]
        text = json.dumps(data)
    elif breakage == "no_domains":
        (tmp_path / "domains.json").unlink()
    (tmp_path / "data_full.json").write_text(text, encoding="utf-8")
    assert prep.main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), *ARGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("prepare.py: error: ") and expected in err
    assert len(err.strip().splitlines()) == 1


def test_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert prep.main(["--data", str(FIXTURE), "--out", str(tmp_path), *ARGS,
                      "--audit-fraction", "0.2"]) == 2
    assert "--audit-fraction" in capsys.readouterr().err
    assert prep.main(["--data", str(FIXTURE), "--out", str(tmp_path),
                      "--seeds-per-intent", "14"]) == 2  # no pool would be left
    assert "seeds plus a pool" in capsys.readouterr().err
