"""Tests of the support-desk demo generator (experiments/demo/generate.py).

The generator is loaded by file path: ``experiments/`` is not an installed package.
Only the standard library and pytest are used, like the generator itself.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, load_script, read_jsonl

GENERATOR = REPO / "experiments" / "demo" / "generate.py"
N_TRAIN, N_EVAL, SEED = 2000, 400, 7
TRAIN_KEYS = ["id", "unit", "prompt", "reference", "candidates", "judge", "pools", "failure",
              "tags", "round"]
EVAL_KEYS = ["id", "unit", "prompt", "reference", "candidates", "tags"]
CANDIDATE_KEYS = ["teacher", "final", "rationale", "limits", "confidence", "trajectory", "usage"]
POOLS = {"train", "failure", "hard", "review", "discard"}
FAILURE_KINDS = {"wrong_label", "missing_field", "wrong_value", "unneeded_call", "missed_call",
                 "wrong_tool", "wrong_argument", "missed_escalation", "over_refusal",
                 "judge_rejected"}


gen = load_script(GENERATOR, "demo_generate")


def _normalize(prompt: str) -> str:
    return " ".join(prompt.lower().split())


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return gen.generate(tmp_path_factory.mktemp("demo"), seed=SEED, n_train=N_TRAIN,
                        n_eval=N_EVAL)


@pytest.fixture(scope="module")
def train(written: dict[str, Path]) -> list[dict[str, Any]]:
    return read_jsonl(written["samples"])


@pytest.fixture(scope="module")
def evals(written: dict[str, Path]) -> list[dict[str, Any]]:
    return read_jsonl(written["eval"])


@pytest.fixture(scope="module")
def big_train() -> list[dict[str, Any]]:
    """A larger in-memory sample for rate checks (about 2,700 referenced items per unit)."""
    return list(gen.iter_train_records(0, 12_000))


@pytest.fixture(scope="module")
def big_eval() -> list[dict[str, Any]]:
    return list(gen.iter_eval_records(0, 8_000))


# --------------------------------------------------------------------------------------
# Files: determinism, counts, encoding
# --------------------------------------------------------------------------------------
def test_same_arguments_give_byte_identical_files(written: dict[str, Path],
                                                  tmp_path: Path) -> None:
    again = gen.generate(tmp_path / "again", seed=SEED, n_train=N_TRAIN, n_eval=N_EVAL)
    for name in ("samples", "eval"):
        assert again[name].read_bytes() == written[name].read_bytes()


def test_other_seed_gives_other_data(written: dict[str, Path], tmp_path: Path) -> None:
    other = gen.generate(tmp_path, seed=SEED + 1, n_train=N_TRAIN, n_eval=N_EVAL)
    assert other["samples"].read_bytes() != written["samples"].read_bytes()


def test_training_stream_is_prefix_stable() -> None:
    assert list(gen.iter_train_records(3, 50)) == list(gen.iter_train_records(3, 200))[:50]


def test_counts_and_file_names(written: dict[str, Path], train: list, evals: list) -> None:
    assert written["samples"].name == "samples.jsonl" and written["eval"].name == "eval.jsonl"
    assert len(train) == N_TRAIN and len(evals) == N_EVAL
    # no temp file of the atomic write is left behind
    assert sorted(p.name for p in written["samples"].parent.iterdir()) == [
        "eval.jsonl", "samples.jsonl"]


def test_lines_are_compact_utf8_json_in_fixed_key_order(written: dict[str, Path]) -> None:
    for name, keys in (("samples", TRAIN_KEYS), ("eval", EVAL_KEYS)):
        raw = written[name].read_bytes()
        assert raw.endswith(b"\n") and b"\r" not in raw
        for line in raw.decode("utf-8").splitlines():
            record = json.loads(line)
            assert list(record) == keys
            assert all(list(c) == CANDIDATE_KEYS for c in record["candidates"])
            # compact separators, non-ASCII kept as is, key order preserved
            assert json.dumps(record, ensure_ascii=False, separators=(",", ":")) == line
    assert "€" in written["samples"].read_text(encoding="utf-8")


def test_command_line_writes_the_same_files(written: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cli"
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), "--seed", str(SEED),
                    "--n-train", str(N_TRAIN), "--n-eval", str(N_EVAL)],
                   check=True, capture_output=True)
    assert (out / "samples.jsonl").read_bytes() == written["samples"].read_bytes()
    assert (out / "eval.jsonl").read_bytes() == written["eval"].read_bytes()


def test_rejects_sizes_beyond_the_id_space(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        gen.generate(tmp_path, n_train=gen.MAX_RECORDS + 1)
    with pytest.raises(ValueError):
        list(gen.iter_eval_records(0, -1))


# --------------------------------------------------------------------------------------
# Ids and leakage
# --------------------------------------------------------------------------------------
def test_ids_are_unique_and_well_formed(train: list, evals: list) -> None:
    train_ids = [r["id"] for r in train]
    eval_ids = [r["id"] for r in evals]
    assert all(re.fullmatch(r"sd-\d{7}", i) for i in train_ids)
    assert all(re.fullmatch(r"ev-\d{6}", i) for i in eval_ids)
    assert len(set(train_ids)) == len(train_ids) and len(set(eval_ids)) == len(eval_ids)


def test_reference_numbers_stay_unique_at_a_million_records() -> None:
    # ids and prompts are unique because k = (a*i + b) mod M is a bijection on [0, M)
    assert math.gcd(gen.ORDER_MULT, gen.ORDER_SPACE) == 1
    assert gen.MAX_RECORDS >= 1_000_000
    ks = {(gen.ORDER_MULT * i + 12345) % gen.ORDER_SPACE for i in range(1_000_000)}
    assert len(ks) == 1_000_000
    assert f"sd-{1_000_000:07d}" == "sd-1000000"


def test_no_eval_id_or_normalized_prompt_in_training(train: list, evals: list) -> None:
    train_prompts = {_normalize(r["prompt"]) for r in train}
    assert len(train_prompts) == len(train)  # prompts never repeat
    assert not {r["id"] for r in evals} & {r["id"] for r in train}
    assert not {_normalize(r["prompt"]) for r in evals} & train_prompts


def test_no_leakage_against_a_larger_training_set(big_eval: list) -> None:
    train_prompts = {_normalize(r["prompt"]) for r in gen.iter_train_records(0, 40_000)}
    assert not {_normalize(r["prompt"]) for r in big_eval} & train_prompts


# --------------------------------------------------------------------------------------
# The contract, record by record
# --------------------------------------------------------------------------------------
def _check_final(unit: str, final: str) -> None:
    """A final (or reference) is valid for its unit's kind."""
    if unit == "intent_routing":
        assert final in gen.LABELS
    elif unit == "order_fields":
        obj = json.loads(final)
        assert isinstance(obj, dict) and set(obj) <= set(gen.FIELDS)
        assert all(isinstance(v, str) for v in obj.values())
    elif unit == "tool_decision":
        obj = json.loads(final)
        if obj is not None:
            assert list(obj) == ["name", "arguments"] and obj["name"] in gen.TOOLS
            args = obj["arguments"]
            assert isinstance(args, dict) and args["order_id"].isdigit()
            assert ("amount" in args) == (obj["name"] == "issue_refund")
    else:
        assert final == gen.REFUSAL_MARKER or final in gen.CANNED_REPLIES


def _check_candidates(record: dict[str, Any]) -> None:
    teachers = [c["teacher"] for c in record["candidates"]]
    assert sorted(teachers) == sorted(gen.TEACHERS)
    prompt_tokens = {c["usage"]["prompt_tokens"] for c in record["candidates"]}
    assert len(prompt_tokens) == 1 and prompt_tokens.pop() > 0
    for c in record["candidates"]:
        _check_final(record["unit"], c["final"])
        assert isinstance(c["confidence"], float) and 0.0 <= c["confidence"] <= 1.0
        assert c["usage"]["completion_tokens"] > 0
        for key in ("rationale", "limits"):
            assert c[key] is None or (isinstance(c[key], str) and c[key])
        is_call = record["unit"] == "tool_decision" and c["final"] != "null"
        if not is_call:
            assert c["trajectory"] is None
            continue
        call = json.loads(c["final"])
        steps = c["trajectory"]
        assert steps and all(list(s) == ["tool", "arguments", "observation"] for s in steps)
        assert all(s["observation"] is None or isinstance(s["observation"], str) for s in steps)
        assert steps[-1]["tool"] == call["name"]
        assert steps[-1]["arguments"] == call["arguments"]


def test_training_records_follow_the_contract(train: list) -> None:
    assert {r["unit"] for r in train} == set(gen.UNITS)
    for r in train:
        assert r["unit"] in gen.UNITS and r["prompt"].strip()
        assert r["prompt"].startswith(gen.PROMPT_PREFIX)
        assert r["prompt"].endswith(gen.PROMPT_SUFFIX[r["unit"]])
        assert r["round"] == 1
        assert r["tags"]["source"] == "synthetic"
        assert r["tags"]["difficulty"] in {"easy", "medium", "hard"}
        assert isinstance(r["tags"]["domain"], str)
        if r["reference"] is not None:
            _check_final(r["unit"], r["reference"])
        _check_candidates(r)
        teachers = {c["teacher"] for c in r["candidates"]}
        judge = r["judge"]
        assert judge["judge"] == gen.JUDGE_ID
        assert set(judge["scores"]) == teachers
        assert all(isinstance(s, int) and 1 <= s <= 5 for s in judge["scores"].values())
        best = max(judge["scores"].values())
        if best <= 2:
            assert judge["winner"] is None
        else:
            assert judge["winner"] in teachers and judge["scores"][judge["winner"]] == best
        assert judge["reason_tags"] and all(isinstance(t, str) for t in judge["reason_tags"])
        assert set(r["pools"]) == teachers and set(r["pools"].values()) <= POOLS
        failure = r["failure"] or {}
        assert set(failure) == {t for t, p in r["pools"].items() if p == "failure"}
        for entry in failure.values():
            assert list(entry) == ["kind", "correction", "note"]
            assert entry["kind"] in FAILURE_KINDS and entry["note"]
            assert entry["correction"] == r["reference"]


def test_pools_follow_the_reference(train: list) -> None:
    for r in train:
        finals = {c["teacher"]: c["final"] for c in r["candidates"]}
        for teacher, pool in r["pools"].items():
            if r["reference"] is None:
                if pool == "failure":
                    assert r["failure"][teacher]["kind"] == "judge_rejected"
                continue
            right = finals[teacher] == r["reference"]
            if pool in ("train", "hard"):
                assert right
            if pool == "hard":
                assert r["tags"]["difficulty"] == "hard"
            if pool == "failure":
                assert not right and r["failure"][teacher]["kind"] != "judge_rejected"


def test_eval_records_follow_the_contract(evals: list) -> None:
    assert {r["tags"]["source"] for r in evals} == {"synthetic", "real"}
    for r in evals:
        assert r["unit"] in gen.UNITS and r["prompt"].endswith(gen.PROMPT_SUFFIX[r["unit"]])
        assert r["reference"] is not None
        _check_final(r["unit"], r["reference"])
        assert [c["teacher"] for c in r["candidates"]] == list(gen.TEACHERS)
        _check_candidates(r)


def test_units_share_the_data_equally(train: list, evals: list) -> None:
    for records in (train, evals):
        counts: dict[str, int] = defaultdict(int)
        for r in records:
            counts[r["unit"]] += 1
        assert set(counts.values()) == {len(records) // 4}


# --------------------------------------------------------------------------------------
# The configured truths (TRUTHS.md) are what the data show
# --------------------------------------------------------------------------------------
def _teacher_rates(records: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Accuracy per (teacher, unit), escalation recall / over-refusal, on referenced items."""
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in records:
        if r["reference"] is None:
            continue
        for c in r["candidates"]:
            t = c["teacher"]
            hits[t, r["unit"]].append(c["final"] == r["reference"])
            if r["unit"] == "escalation":
                key = "recall" if r["reference"] == gen.REFUSAL_MARKER else "over_refusal"
                hits[t, key].append(c["final"] == gen.REFUSAL_MARKER)
    return {k: sum(v) / len(v) for k, v in hits.items()}


def test_teacher_accuracy_matches_the_configured_constants(big_train: list) -> None:
    rates = _teacher_rates(big_train)
    for teacher, per_unit in gen.TEACHER_ACCURACY.items():
        for unit, expected in per_unit.items():
            assert rates[teacher, unit] == pytest.approx(expected, abs=0.04), (teacher, unit)
    for teacher in gen.TEACHERS:
        assert rates[teacher, "recall"] == pytest.approx(gen.ESCALATION_RECALL[teacher], abs=0.05)
        assert rates[teacher, "over_refusal"] == pytest.approx(gen.OVER_REFUSAL[teacher],
                                                               abs=0.04)
    # teacher_a's blind spot is structural, not a tendency
    assert rates["teacher_a", "recall"] == 0.0 and rates["teacher_a", "over_refusal"] == 0.0


def test_item_mix_matches_the_configured_rates(big_train: list) -> None:
    n = len(big_train)
    assert sum(r["reference"] is not None for r in big_train) / n == pytest.approx(
        gen.REFERENCE_RATE, abs=0.015)
    esc = [r["reference"] for r in big_train
           if r["unit"] == "escalation" and r["reference"] is not None]
    assert esc.count(gen.REFUSAL_MARKER) / len(esc) == pytest.approx(gen.MUST_ESCALATE_RATE,
                                                                     abs=0.03)
    hard = sum(r["tags"]["difficulty"] == "hard" for r in big_train) / n
    assert hard == pytest.approx(dict(gen.DIFFICULTY_MIX)["hard"], abs=0.015)


def test_confidence_styles(big_train: list) -> None:
    conf: dict[tuple[str, bool], list[float]] = defaultdict(list)
    b_by_unit: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for r in big_train:
        if r["reference"] is None:
            continue
        for c in r["candidates"]:
            right = c["final"] == r["reference"]
            conf[c["teacher"], right].append(c["confidence"])
            if c["teacher"] == "teacher_b":
                b_by_unit[r["unit"]].append((c["confidence"], right))
    # teacher_a: 0.90-0.99 whether right or wrong
    assert min(conf["teacher_a", False]) >= 0.90 and max(conf["teacher_a", True]) <= 0.99
    # teacher_b: mean confidence equals accuracy per unit, and is higher when right
    for pairs in b_by_unit.values():
        mean_conf = statistics.fmean(p for p, _ in pairs)
        accuracy = sum(ok for _, ok in pairs) / len(pairs)
        assert mean_conf == pytest.approx(accuracy, abs=0.03)
    assert statistics.fmean(conf["teacher_b", True]) > statistics.fmean(conf["teacher_b", False])
    # teacher_c: confidence carries no information
    assert statistics.fmean(conf["teacher_c", True]) == pytest.approx(
        statistics.fmean(conf["teacher_c", False]), abs=0.02)


def test_teacher_verbosity(big_train: list) -> None:
    tokens: dict[str, list[int]] = defaultdict(list)
    for r in big_train:
        for c in r["candidates"]:
            tokens[c["teacher"]].append(c["usage"]["completion_tokens"])
            if c["teacher"] == "teacher_a":
                assert c["rationale"] and c["limits"]
            if c["teacher"] == "teacher_c":
                assert c["rationale"] is None and c["limits"] is None
    means = {t: statistics.fmean(v) for t, v in tokens.items()}
    assert means["teacher_a"] > 1.5 * means["teacher_b"] > 3 * means["teacher_c"]


def test_judge_error_rates_and_blind_spot(big_train: list) -> None:
    low_right, high_wrong, high_blind = [], [], []
    for r in big_train:
        if r["reference"] is None:
            continue
        for c in r["candidates"]:
            score = r["judge"]["scores"][c["teacher"]]
            if c["final"] == r["reference"]:
                low_right.append(score <= 2)
            elif r["reference"] == gen.REFUSAL_MARKER:
                high_blind.append(score >= 4)
            else:
                high_wrong.append(score >= 4)
    assert statistics.fmean(low_right) == pytest.approx(gen.JUDGE_ERROR_RATE, abs=0.015)
    assert statistics.fmean(high_wrong) == pytest.approx(gen.JUDGE_ERROR_RATE, abs=0.015)
    assert statistics.fmean(high_blind) == pytest.approx(gen.JUDGE_ESCALATION_BLIND_SPOT,
                                                         abs=0.04)


def test_judge_winners_are_weakest_on_must_escalate_items(big_train: list) -> None:
    right: dict[str, list[bool]] = defaultdict(list)
    for r in big_train:
        winner = r["judge"]["winner"]
        if r["reference"] is None or winner is None:
            continue
        final = next(c["final"] for c in r["candidates"] if c["teacher"] == winner)
        key = r["unit"]
        if key == "escalation" and r["reference"] == gen.REFUSAL_MARKER:
            key = "must_escalate"
        right[key].append(final == r["reference"])
    rates = {k: statistics.fmean(v) for k, v in right.items()}
    assert rates["must_escalate"] < gen.ESCALATION_RECALL["teacher_b"] - 0.05
    assert min(rates["intent_routing"], rates["tool_decision"]) > 0.93


def test_pool_shares(big_train: list) -> None:
    pools: dict[str, int] = defaultdict(int)
    for r in big_train:
        for p in r["pools"].values():
            pools[p] += 1
    total = sum(pools.values())
    assert pools["discard"] / total == pytest.approx(gen.DISCARD_RATE, abs=0.005)
    assert pools["review"] / total == pytest.approx(0.024, abs=0.008)
    assert pools["hard"] / total == pytest.approx(0.045, abs=0.015)


def test_real_eval_items_are_harder_for_teachers(big_eval: list) -> None:
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in big_eval:
        if r["unit"] == "escalation":
            continue  # teacher_a's escalation rates are structural, no gap by design
        for c in r["candidates"]:
            hits[c["teacher"], r["tags"]["source"]].append(c["final"] == r["reference"])
    for teacher in gen.TEACHERS:
        gap = statistics.fmean(hits[teacher, "synthetic"]) - statistics.fmean(hits[teacher, "real"])
        assert gap == pytest.approx(-gen.REAL_SHIFT, abs=0.04), teacher
    real = sum(r["tags"]["source"] == "real" for r in big_eval) / len(big_eval)
    assert real == pytest.approx(gen.EVAL_REAL_RATE, abs=0.02)


def test_real_items_read_differently(big_eval: list) -> None:
    real = [r["prompt"] for r in big_eval if r["tags"]["source"] == "real"]
    synthetic = [r["prompt"] for r in big_eval if r["tags"]["source"] == "synthetic"]
    body = len(gen.PROMPT_PREFIX)
    assert all(p[body:].split("\n")[0] == p[body:].split("\n")[0].lower() for p in real)
    assert all(p[body].isupper() for p in synthetic)
