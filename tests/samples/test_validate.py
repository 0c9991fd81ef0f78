"""`harness validate` on bad sample/eval files: every rule of the data contract
(../shared/SAMPLE_REPOSITORY.md, "What is bad input") gives exit status 2 and a located message
``file:line: field: reason`` on stderr, never a traceback; all problems in one pass, capped."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from harness.cli import main
from harness.errors import DEFAULT_CAP
from tests.helpers import tiny_eval, tiny_samples

Records = list[dict[str, Any]]
PROBLEM_RE = re.compile(r"^  (\S+?): (.*)$")


# --------------------------------------------------------------------------- helpers


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``harness validate`` in-process; return (status, stdout, stderr)."""
    rc = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return rc, out, err


def problems(err: str) -> list[str]:
    """The problem lines of an error report (without their two-space indent)."""
    return [ln[2:] for ln in err.splitlines()
            if ln.startswith("  ") and not ln.startswith("  ... and ")]


def assert_bad(path: Path, capsys: pytest.CaptureFixture[str], where: str, field: str,
               reason: str) -> list[str]:
    """Exit 2 and one problem ``where: field: ...reason...`` (``field`` "" when none)."""
    rc, _, err = validate(path, capsys)
    assert rc == 2, err
    head = f"{where}: {field}: " if field else f"{where}: "
    found = [p for p in problems(err) if p.startswith(head) and reason in p[len(head):]]
    assert found, f"no problem {head!r}...{reason!r} in:\n{err}"
    return problems(err)


def mutate(fn: Callable[[Records], Any]) -> Records:
    """The tiny samples after ``fn`` changed them in place."""
    recs = tiny_samples()
    fn(recs)
    return recs


def jsonl(rows: Records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def write_samples_raw(yaml_path: Path, data: bytes) -> None:
    (yaml_path.parent / "samples.jsonl").write_bytes(data)


# --------------------------------------------------------------------------- baseline


def test_tiny_data_is_valid(tiny, capsys):
    rc, out, err = validate(tiny(), capsys)
    assert rc == 0, err
    assert ": valid" in out
    assert "samples.jsonl: 5 records, 10 candidates" in out
    assert err == ""


# --------------------------------------------------------------------------- decoding: fields


@pytest.mark.parametrize("field", ["id", "unit", "prompt", "candidates"])
def test_missing_required_field(tiny, capsys, field):
    path = tiny(samples=mutate(lambda s: s[1].pop(field)))
    assert_bad(path, capsys, "samples.jsonl:2", field, "required field is missing")


@pytest.mark.parametrize("field", ["teacher", "final"])
def test_missing_required_candidate_field(tiny, capsys, field):
    path = tiny(samples=mutate(lambda s: s[0]["candidates"][1].pop(field)))
    assert_bad(path, capsys, "samples.jsonl:1", f"candidates[1].{field}",
               "required field is missing")


def test_confidence_as_string_is_wrong_type(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[2]["candidates"][0].update(confidence="0.9")))
    assert_bad(path, capsys, "samples.jsonl:3", "candidates[0].confidence", "expected")


def test_prompt_as_number_is_wrong_type(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0].update(prompt=42)))
    assert_bad(path, capsys, "samples.jsonl:1", "prompt", "expected 'string'")


def test_confidence_above_one(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0]["candidates"][0].update(confidence=1.5)))
    assert_bad(path, capsys, "samples.jsonl:1", "candidates[0].confidence", "1.5 must be <= 1")


def test_confidence_negative(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[1]["candidates"][1].update(confidence=-0.25)))
    assert_bad(path, capsys, "samples.jsonl:2", "candidates[1].confidence",
               "-0.25 must be >= 0")


def test_confidence_nan_in_jsonl_is_reported_as_not_json(tiny, capsys):
    path = tiny()
    text = jsonl(tiny_samples()).decode()
    lines = text.splitlines(keepends=True)
    assert '"confidence": 0.9' in lines[1]
    lines[1] = lines[1].replace('"confidence": 0.9', '"confidence": NaN', 1)
    write_samples_raw(path, "".join(lines).encode())
    assert_bad(path, capsys, "samples.jsonl:2", "", "NaN and Infinity are not JSON numbers")


def _write_parquet(yaml_path: Path, rows: Records, name: str = "samples.parquet") -> Path:
    """Write ``rows`` as Parquet (nested columns) and point the YAML's data.samples at it."""
    pl.DataFrame(rows).write_parquet(yaml_path.parent / name)
    doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    doc["data"]["samples"] = name
    yaml_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return yaml_path


def test_confidence_nan_in_parquet(tiny, capsys):
    rows = mutate(lambda s: s[0]["candidates"][1].update(confidence=float("nan")))
    path = _write_parquet(tiny(), rows)
    assert_bad(path, capsys, "samples.parquet:row 1", "candidates[1].confidence",
               "NaN is not a number")


def test_judge_score_nan_in_parquet_is_not_called_null(tiny, capsys):
    rows = mutate(lambda s: s[1]["judge"]["scores"].update(a=float("nan")))
    path = _write_parquet(tiny(), rows)
    found = assert_bad(path, capsys, "samples.parquet:row 2", "judge.scores.a", "nan")
    assert not any("must not be null" in p for p in found), found


def test_empty_prompt(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[3].update(prompt="")))
    assert_bad(path, capsys, "samples.jsonl:4", "prompt", "must not be empty")


def test_whitespace_only_prompt(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[3].update(prompt=" \t\n  ")))
    assert_bad(path, capsys, "samples.jsonl:4", "prompt", "whitespace")


def test_empty_id(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0].update(id="")))
    assert_bad(path, capsys, "samples.jsonl:1", "id", "must not be empty")


def test_round_below_one(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0].update(round=0)))
    assert_bad(path, capsys, "samples.jsonl:1", "round", ">= 1")


def test_negative_usage_tokens(tiny, capsys):
    usage = {"prompt_tokens": -1, "completion_tokens": 3}
    path = tiny(samples=mutate(lambda s: s[0]["candidates"][0].update(usage=usage)))
    assert_bad(path, capsys, "samples.jsonl:1", "candidates[0].usage.prompt_tokens", ">= 0")


def _bare_empty_candidates(s: Records) -> None:
    """Record 1 with no candidates and nothing (judge, pools, failure) naming a teacher."""
    s[0]["candidates"] = []
    for key in ("judge", "pools", "failure"):
        s[0].pop(key)


def test_empty_candidates_list_is_an_error(tiny, capsys):
    path = tiny(samples=mutate(_bare_empty_candidates))
    assert_bad(path, capsys, "samples.jsonl:1", "candidates", "")


def test_eval_may_have_no_candidates(tiny, capsys):
    ev = tiny_eval()
    ev[0]["candidates"] = []
    rc, _, err = validate(tiny(eval=ev), capsys)
    assert rc == 0, err


@pytest.mark.parametrize("big", [2**63, 2**64 - 1, 2**70])
def test_round_beyond_int64(tiny, capsys, big):
    path = tiny(samples=mutate(lambda s: s[0].update(round=big)))
    assert_bad(path, capsys, "samples.jsonl:1", "round", "<= 9223372036854775807")


@pytest.mark.parametrize("key", ["prompt_tokens", "completion_tokens"])
def test_usage_tokens_beyond_int64(tiny, capsys, key):
    usage = {"prompt_tokens": 5, "completion_tokens": 3, key: 2**63}
    path = tiny(samples=mutate(lambda s: s[0]["candidates"][1].update(usage=usage)))
    assert_bad(path, capsys, "samples.jsonl:1", f"candidates[1].usage.{key}",
               "<= 9223372036854775807")


# --------------------------------------------------------------------------- cross-field rules


def test_judge_winner_not_a_teacher(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0]["judge"].update(winner="c")))
    assert_bad(path, capsys, "samples.jsonl:1", "judge.winner",
               "'c' is not a teacher of this record")


def test_judge_scores_key_not_a_teacher(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[4]["judge"]["scores"].update(zed=3)))
    assert_bad(path, capsys, "samples.jsonl:5", "judge.scores.zed",
               "'zed' is not a teacher of this record")


@pytest.mark.parametrize("score", [0, 6, 5.5, -1])
def test_judge_score_outside_scale(tiny, capsys, score):
    path = tiny(samples=mutate(lambda s: s[0]["judge"]["scores"].update(a=score)))
    assert_bad(path, capsys, "samples.jsonl:1", "judge.scores.a",
               f"{score:g} is outside the judge scale (1-5)")


def test_judge_scale_comes_from_the_experiment(tiny, capsys):
    spec = {"data": {"samples": "samples.jsonl", "eval": "eval.jsonl", "judge_scale": [0, 10]}}
    rc, _, err = validate(tiny(spec=spec, samples=mutate(
        lambda s: s[0]["judge"]["scores"].update(a=8))), capsys)
    assert rc == 0, err


def test_pools_key_not_a_teacher(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[1]["pools"].update(c="train")))
    assert_bad(path, capsys, "samples.jsonl:2", "pools.c", "'c' is not a teacher of this record")


def test_unknown_pool_value(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[1]["pools"].update(b="trian")))
    assert_bad(path, capsys, "samples.jsonl:2", "pools.b", "'trian' must be one of")


def test_failure_key_not_a_teacher(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0]["failure"].update(c={"kind": "x"})))
    assert_bad(path, capsys, "samples.jsonl:1", "failure.c", "'c' is not a teacher of this record")


def test_failure_entry_outside_failure_pool(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0]["failure"].update(a={"kind": "x"})))
    assert_bad(path, capsys, "samples.jsonl:1", "failure.a",
               "'a' is in pool 'train', but failure details belong to the 'failure' pool")


def test_failure_entry_without_pools_defaults_to_train(tiny, capsys):
    # record 5 has no pools: every candidate is in 'train'
    path = tiny(samples=mutate(lambda s: s[4].update(failure={"b": {"kind": "no_call"}})))
    assert_bad(path, capsys, "samples.jsonl:5", "failure.b", "is in pool 'train'")


def test_duplicate_id_names_both_lines(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[3].update(id="r1")))
    found = assert_bad(path, capsys, "samples.jsonl:1", "id", "duplicate value 'r1'")
    assert "samples.jsonl:4: id: duplicate value 'r1'" in found


def test_duplicate_teacher_in_record(tiny, capsys):
    path = tiny(samples=mutate(
        lambda s: s[2]["candidates"].append(copy.deepcopy(s[2]["candidates"][0]))))
    assert_bad(path, capsys, "samples.jsonl:3", "candidates", "teacher 'a' answers twice")


def test_empty_teacher_name(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[4]["candidates"][1].update(teacher="")))
    assert_bad(path, capsys, "samples.jsonl:5", "candidates[1].teacher", "must not be empty")


# --------------------------------------------------------------------------- bytes and lines


def test_invalid_json_line(tiny, capsys):
    path = tiny()
    lines = jsonl(tiny_samples()).splitlines(keepends=True)
    lines.insert(2, b'{"id": "r9", "unit": route}\n')
    write_samples_raw(path, b"".join(lines))
    assert_bad(path, capsys, "samples.jsonl:3", "", "invalid JSON")


def test_invalid_utf8_at_line_start(tiny, capsys):
    path = tiny()
    write_samples_raw(path, jsonl(tiny_samples()) + b"\xff\xfe{}\n")
    assert_bad(path, capsys, "samples.jsonl:6", "", "invalid UTF-8 at byte 0")


def test_invalid_utf8_inside_a_string(tiny, capsys):
    # msgspec raises UnicodeDecodeError (not DecodeError) here; fixed in records.iter_jsonl
    path = tiny()
    rows = jsonl(tiny_samples()).replace(b"parcel late", b"parcel \xc3\x28late")
    write_samples_raw(path, rows)
    assert_bad(path, capsys, "samples.jsonl:2", "", "invalid UTF-8 at byte")


def test_invalid_utf8_in_an_ignored_field(tiny, capsys):
    # msgspec skips unknown fields without checking their bytes; fixed in records.iter_jsonl
    path = tiny()
    rows = jsonl(tiny_samples()).replace(b'"reason_tags"', b'"x": "\xff", "reason_tags"', 1)
    write_samples_raw(path, rows)
    assert_bad(path, capsys, "samples.jsonl:1", "", "invalid UTF-8 at byte")


def test_truncated_line(tiny, capsys):
    path = tiny()
    data = jsonl(tiny_samples())
    write_samples_raw(path, data[: len(data) - 30])  # cut the last record short
    assert_bad(path, capsys, "samples.jsonl:5", "", "truncated")


def test_top_level_value_not_an_object(tiny, capsys):
    path = tiny()
    write_samples_raw(path, jsonl(tiny_samples()) + b"[1, 2]\n")
    assert_bad(path, capsys, "samples.jsonl:6", "", "expected 'object'")


def test_blank_lines_are_skipped_and_lines_still_counted(tiny, capsys):
    path = tiny()
    rows = jsonl(tiny_samples()).splitlines(keepends=True)
    rows.insert(1, b"\n")
    rows.insert(1, b"   \n")
    write_samples_raw(path, b"".join(rows).replace(b'"id": "r2"', b'"id": "r1"'))
    found = assert_bad(path, capsys, "samples.jsonl:4", "id", "duplicate value 'r1'")
    assert "samples.jsonl:1: id: duplicate value 'r1'" in found


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_samples_file(tiny, capsys, content):
    path = tiny()
    write_samples_raw(path, content)
    assert_bad(path, capsys, "samples.jsonl", "", "the file has no records")


def test_empty_eval_file(tiny, capsys):
    path = tiny(eval=[])
    assert_bad(path, capsys, "eval.jsonl", "", "the file has no records")


def test_missing_samples_file(tiny, capsys):
    path = tiny()
    (path.parent / "samples.jsonl").unlink()
    rc, _, err = validate(path, capsys)
    assert rc == 2
    assert "samples.jsonl" in err


def test_unreadable_parquet_is_located_at_the_file(tiny, capsys):
    path = _write_parquet(tiny(), tiny_samples())
    (path.parent / "samples.parquet").write_bytes(b"PAR1 not really parquet")
    assert_bad(path, capsys, "samples.parquet", "", "cannot read Parquet")


# --------------------------------------------------------------------------- units and finals


def test_undeclared_unit_with_did_you_mean(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0].update(unit="rout")))
    assert_bad(path, capsys, "samples.jsonl:1", "unit",
               "unit 'rout' is not declared by the experiment, did you mean 'route'?")


def test_undeclared_unit_without_close_match(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0].update(unit="zzzzzz")))
    found = assert_bad(path, capsys, "samples.jsonl:1", "unit", "'zzzzzz' is not declared")
    assert not any("did you mean" in p for p in found)


def test_json_fields_final_not_json(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[3]["candidates"][1].update(final='{"order_id": 7')))
    assert_bad(path, capsys, "samples.jsonl:4", "candidates[1].final", "is not valid JSON")


def test_json_fields_final_not_an_object(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[3]["candidates"][0].update(final="[1, 2]")))
    assert_bad(path, capsys, "samples.jsonl:4", "candidates[0].final", "must be a JSON object")


@pytest.mark.parametrize("final", ['{"arguments": {}}', '{"name": 3}', '"lookup_order"',
                                   '{"name": "lookup_order", "arguments": [1]}'])
def test_tool_call_final_of_wrong_shape(tiny, capsys, final):
    path = tiny(samples=mutate(lambda s: s[4]["candidates"][0].update(final=final)))
    assert_bad(path, capsys, "samples.jsonl:5", "candidates[0].final",
               'must be null or {"name": str, "arguments": object}')


def test_tool_call_final_not_json(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[4]["candidates"][0].update(final="lookup_order(88)")))
    assert_bad(path, capsys, "samples.jsonl:5", "candidates[0].final", "is not valid JSON")


def test_label_reference_not_among_labels(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[1].update(reference="shiping")))
    assert_bad(path, capsys, "samples.jsonl:2", "reference",
               "'shiping' is not a label of unit 'route', did you mean 'shipping'?")


def test_eval_label_reference_not_among_labels(tiny, capsys):
    ev = tiny_eval()
    ev[0]["reference"] = "refunds"
    assert_bad(tiny(eval=ev), capsys, "eval.jsonl:1", "reference", "is not a label")


def test_eval_record_missing_reference(tiny, capsys):
    ev = tiny_eval()
    ev[1].pop("reference")
    assert_bad(tiny(eval=ev), capsys, "eval.jsonl:2", "reference", "required field is missing")


def test_training_record_may_lack_reference(tiny, capsys):
    rc, _, err = validate(tiny(samples=mutate(lambda s: s[0].pop("reference"))), capsys)
    assert rc == 0, err


def test_off_label_candidate_final_is_a_warning(tiny, capsys):
    path = tiny(samples=mutate(lambda s: s[0]["candidates"][1].update(final="refund")))
    rc, out, err = validate(path, capsys)
    assert rc == 0, err
    assert ("warning: samples.jsonl: 1 answer(s) of unit 'route' are not among its labels"
            in out)


# --------------------------------------------------------------------------- one pass, capped


def test_all_problems_reported_in_one_pass(tiny, capsys):
    def break_three(s: Records) -> None:
        s[0]["candidates"][0]["confidence"] = 2.0
        s[2].pop("prompt")
        s[4]["unit"] = "tol"

    rc, _, err = validate(tiny(samples=mutate(break_three)), capsys)
    assert rc == 2
    assert "(3 problem(s))" in err.splitlines()[0]
    found = problems(err)
    assert len(found) == 3, err
    assert {p.split(":")[1] for p in found} == {"1", "3", "5"}


def test_problems_in_both_files_reported_together(tiny, capsys):
    ev = tiny_eval()
    ev[0].pop("reference")
    path = tiny(eval=ev, samples=mutate(lambda s: s[1].update(unit="nope")))
    rc, _, err = validate(path, capsys)
    assert rc == 2
    found = problems(err)
    assert any(p.startswith("samples.jsonl:2: unit: ") for p in found)
    assert any(p.startswith("eval.jsonl:1: reference: ") for p in found)


def test_output_is_capped_with_a_count_of_the_rest(tiny, capsys):
    n = DEFAULT_CAP + 23
    path = tiny()
    write_samples_raw(path, b'{"id": "x"}\n' * n)
    rc, _, err = validate(path, capsys)
    assert rc == 2
    lines = err.splitlines()
    assert f"({n} problem(s))" in lines[0]
    assert len(problems(err)) == DEFAULT_CAP
    assert lines[-1] == "  ... and 23 more problem(s)"


def test_every_problem_line_is_located(tiny, capsys):
    def break_many(s: Records) -> None:
        s[0]["judge"]["winner"] = "z"
        s[1]["pools"]["b"] = "nowhere"
        s[2]["candidates"][0]["confidence"] = -3
        s[3]["candidates"][0]["final"] = "nope"
        s[4]["id"] = "r1"

    rc, _, err = validate(tiny(samples=mutate(break_many)), capsys)
    assert rc == 2
    for p in problems(err):
        assert re.match(r"^samples\.jsonl:\d+: \S+: \S", p), p


# --------------------------------------------------------------------------- Parquet input


def _cell_trains(out: Path) -> dict[str, bytes]:
    """label -> train.jsonl bytes of each composed cell under ``out``."""
    result = {}
    for manifest in out.glob("*/manifest.json"):
        label = json.loads(manifest.read_text(encoding="utf-8"))["label"]
        result[label] = (manifest.parent / "train.jsonl").read_bytes()
    return result


def test_parquet_samples_validate(tiny, capsys):
    path = _write_parquet(tiny(), tiny_samples())
    rc, out, err = validate(path, capsys)
    assert rc == 0, err
    assert "samples.parquet: 5 records, 10 candidates" in out


def test_parquet_composes_the_same_training_sets_as_jsonl(tiny, capsys, tmp_path):
    path = tiny()
    assert main(["compose", str(path), "--out", str(tmp_path / "from_jsonl")]) == 0
    _write_parquet(path, tiny_samples())
    assert main(["compose", str(path), "--out", str(tmp_path / "from_parquet")]) == 0
    capsys.readouterr()
    from_jsonl = _cell_trains(tmp_path / "from_jsonl")
    from_parquet = _cell_trains(tmp_path / "from_parquet")
    assert len(from_jsonl) == 4
    assert from_jsonl.keys() == from_parquet.keys()
    for label, data in from_jsonl.items():
        assert data, label
        assert from_parquet[label] == data, label


def test_parquet_problems_are_located_by_row(tiny, capsys):
    rows = mutate(lambda s: (s[2].pop("prompt"), s[3]["pools"].update(a="attic")))
    path = _write_parquet(tiny(), rows)
    found = assert_bad(path, capsys, "samples.parquet:row 3", "prompt",
                       "required field is missing")
    assert any(p.startswith("samples.parquet:row 4: pools.a: 'attic' must be one of")
               for p in found), found
