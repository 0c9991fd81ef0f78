"""Sample and eval records that crashed ``harness validate`` or passed when they should not
(issue 25, item 4): each is now exit 2 with ``file:line: field: reason``, never a traceback, and a
warm table cache answers what a cold one does."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from harness.samples import cache
from harness.samples.records import (
    MAX_ARGUMENT_DEPTH,
    TOO_DEEP,
    SampleRecord,
    _convert_row,
    duplicate_key,
)
from tests.helpers.tiny import tiny_eval, tiny_samples

Records = list[dict[str, Any]]


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``harness validate`` in process: (exit status, stderr)."""
    rc = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, err


def assert_problem(path: Path, capsys: pytest.CaptureFixture[str], where: str, field: str,
                   reason: str) -> None:
    """Exit 2 and a problem line ``where: field: ...reason...`` (``field`` "" for none)."""
    rc, err = validate(path, capsys)
    assert rc == 2, err
    head = f"  {where}: {field}: " if field else f"  {where}: "
    assert any(ln.startswith(head) and reason in ln for ln in err.splitlines()), err


def lines(rows: Records) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def nested(depth: int, leaf: str = "1") -> str:
    """JSON text ``depth`` levels deep, alternating lists and objects."""
    return "".join("[" if i % 2 else '{"k":' for i in range(depth)) + leaf + "".join(
        "]" if i % 2 else "}" for i in reversed(range(depth)))


# --------------------------------------------------------------------------- nesting


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("file", ["samples", "eval"])
def test_a_record_nested_too_deeply_is_a_located_problem(tiny: Callable[..., Path], capsys,
                                                         file: str, depth: int) -> None:
    path = tiny()
    rows = tiny_samples() if file == "samples" else tiny_eval()
    deep = json.dumps(rows[0])[:-1] + f', "extra": {nested(depth)}}}\n'
    (path.parent / f"{file}.jsonl").write_text(lines(rows) + deep, encoding="utf-8")
    assert_problem(path, capsys, f"{file}.jsonl:{len(rows) + 1}", "", TOO_DEEP)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_tool_arguments_nested_too_deeply_are_a_located_problem(tiny: Callable[..., Path],
                                                                capsys, depth: int) -> None:
    rows = tiny_samples()
    rows[4]["candidates"][0]["trajectory"] = [{"tool": "lookup_order", "arguments": {}}]
    path = tiny()
    text = lines(rows).replace('"arguments": {}', f'"arguments": {{"a": {nested(depth)}}}')
    (path.parent / "samples.jsonl").write_text(text, encoding="utf-8")
    assert_problem(path, capsys, "samples.jsonl:5", "", TOO_DEEP)


def test_tool_arguments_deeper_than_the_limit_are_refused(tiny: Callable[..., Path],
                                                         capsys) -> None:
    rows = tiny_samples()
    value: Any = 1
    for _ in range(MAX_ARGUMENT_DEPTH):
        value = [value]
    rows[4]["candidates"][0]["trajectory"] = [{"tool": "lookup_order",
                                               "arguments": {"ok": 1, "a": value}}]
    assert_problem(tiny(samples=rows), capsys, "samples.jsonl:5",
                   "candidates[0].trajectory[0].arguments",
                   f"nests deeper than {MAX_ARGUMENT_DEPTH} levels")


def test_arguments_at_the_limit_are_valid(tiny: Callable[..., Path], capsys) -> None:
    rows = tiny_samples()
    value: Any = 1
    for _ in range(MAX_ARGUMENT_DEPTH - 1):
        value = [value]
    rows[4]["candidates"][0]["trajectory"] = [{"tool": "lookup_order", "arguments": {"a": value}}]
    rc, err = validate(tiny(samples=rows), capsys)
    assert rc == 0, err


def test_a_parquet_row_nested_too_deeply_is_a_problem_not_a_crash() -> None:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    row = {"id": "r", "unit": "route", "prompt": "p", "candidates": [
        {"teacher": "a", "final": "x", "trajectory": [{"tool": "t", "arguments": {"a": value}}]}]}
    assert _convert_row(row, SampleRecord) == (None, "", TOO_DEEP)


# --------------------------------------------------------------------------- duplicate keys


@pytest.mark.parametrize(("old", "new", "field"), [
    ('"id": "r1"', '"id": "r1", "id": "r9"', "id"),
    ('"id": "r1"', '"id": "r1", "\\u0069d": "r9"', "id"),  # the same key, escaped
    ('"teacher": "b"', '"teacher": "b", "teacher": "a"', "candidates[1].teacher"),
    ('"scores": {"a": 5', '"scores": {"a": 1, "a": 5', "judge.scores.a"),
    ('"confidence": 0.9', '"confidence": 0.1, "confidence": 0.9', "candidates[0].confidence"),
])
def test_a_key_given_twice_is_refused_with_its_line(tiny: Callable[..., Path], capsys, old: str,
                                                    new: str, field: str) -> None:
    path = tiny()
    text = lines(tiny_samples()).replace(old, new, 1)
    (path.parent / "samples.jsonl").write_text(text, encoding="utf-8")
    assert_problem(path, capsys, "samples.jsonl:1", field, "given twice in one object")


def test_a_duplicate_key_in_an_eval_record_is_refused(tiny: Callable[..., Path], capsys) -> None:
    path = tiny()
    text = lines(tiny_eval()).replace('"reference": "billing"',
                                      '"reference": "shipping", "reference": "billing"', 1)
    (path.parent / "eval.jsonl").write_text(text, encoding="utf-8")
    assert_problem(path, capsys, "eval.jsonl:1", "reference", "given twice in one object")


@pytest.mark.parametrize("text", [
    '{"a": "x:y", "b": {"c:": 2}}',           # colons inside strings and keys
    '{"a": "\\u003a", "b": "\\\\u003a"}',     # an escaped colon; an escaped backslash + u003a
    '{"a": [{"k": 1}, {"k": 2}], "k": {}}',   # the same key in different objects
    '{"a": 1e5, "b": 0.10, "c": "\\u00e9"}',  # numbers and escapes re-encoded differently
])
def test_no_duplicate_is_found_where_there_is_none(text: str) -> None:
    assert duplicate_key(text) is None


@pytest.mark.parametrize(("text", "where"), [
    ('{"a": 1, "a": 2}', "a"),
    ('{"x": [0, {"k": "a:b", "k\\u003a": 1, "k": 2}]}', "x[1].k"),
    ('{"a": {"b": {"c": 1, "c": 1}}}', "a.b.c"),
])
def test_a_duplicate_is_found_with_its_path(text: str, where: str) -> None:
    assert duplicate_key(text) == where


def test_the_demo_sized_file_has_no_false_duplicates() -> None:
    for row in tiny_samples() + tiny_eval():
        assert duplicate_key(json.dumps(row)) is None


# --------------------------------------------------------------------------- blank ids, teachers


@pytest.mark.parametrize("blank", [" ", "\n", "\t \u3000"])
def test_a_blank_record_id_is_refused(tiny: Callable[..., Path], capsys, blank: str) -> None:
    rows = tiny_samples()
    rows[1]["id"] = blank
    assert_problem(tiny(samples=rows), capsys, "samples.jsonl:2", "id",
                   "must not be only whitespace")


@pytest.mark.parametrize("file", ["samples", "eval"])
@pytest.mark.parametrize("name", ["\n", "\x00", "  ", "a\tb", "teacher_a\n"])
def test_a_teacher_name_with_control_characters_is_refused(tiny: Callable[..., Path], capsys,
                                                           file: str, name: str) -> None:
    samples, evals = tiny_samples(), tiny_eval()
    rows = samples if file == "samples" else evals
    rows[0]["candidates"][0]["teacher"] = name
    path = tiny(samples=samples, eval=evals)
    assert_problem(path, capsys, f"{file}.jsonl:1", "candidates[0].teacher",
                   "is not a teacher name")


# --------------------------------------------------------------------------- scores


@pytest.mark.parametrize(("score", "shown"), [(5.0000001, "5.0000001"), (0.999999, "0.999999"),
                                              (6, "6"), (1e300, "1e+300")])
def test_a_judge_score_off_the_scale_is_shown_as_written(tiny: Callable[..., Path], capsys,
                                                         score: float, shown: str) -> None:
    rows = tiny_samples()
    rows[0]["judge"]["scores"]["a"] = score
    assert_problem(tiny(samples=rows), capsys, "samples.jsonl:1", "judge.scores.a",
                   f"{shown} is outside the judge scale (1-5)")


# --------------------------------------------------------------------------- the table cache


def test_a_warm_cache_answers_what_a_cold_one_does(tiny: Callable[..., Path], capsys,
                                                   tmp_path: Path, monkeypatch) -> None:
    """JSON Lines bytes named .parquet: refused cold, and still refused once the same bytes
    were cached as a valid .jsonl file."""
    path = tiny()
    rc, err = validate(path, capsys)  # caches samples.jsonl's tables
    assert rc == 0, err
    shutil.copy(path.parent / "samples.jsonl", path.parent / "samples.parquet")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["data"]["samples"] = "samples.parquet"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    warm_rc, warm_err = validate(path, capsys)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cold"))
    cold_rc, cold_err = validate(path, capsys)
    assert warm_rc == cold_rc == 2
    assert "cannot read Parquet" in warm_err and "cannot read Parquet" in cold_err


def test_the_cache_key_names_the_format(tiny: Callable[..., Path]) -> None:
    from harness.checks import load_experiment

    exp = load_experiment(tiny(), check_files=False).spec
    keys = {cache.cache_key("0" * 64, exp, False, fmt) for fmt in ("jsonl", "parquet")}
    assert len(keys) == 2
