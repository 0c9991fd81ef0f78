"""What ``harness validate`` promises about the experiment YAML, it checks (issue 25, item 4):
every value below was accepted before, or failed only later, cell by cell. Each is now exit 2
with one located, human problem ``exp.yaml:LINE: yaml.path: reason``, never a traceback."""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.checks import load_experiment
from harness.cli import main
from harness.experiment.base import check_name
from tests.helpers.tiny import REPO

Spec = dict[str, Any]


def validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``harness validate`` in process: (exit status, stderr)."""
    rc = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, err


def refused(tiny: Callable[..., Path], capsys: pytest.CaptureFixture[str], spec: Spec,
            field: str, *reasons: str, setup: Callable[[Path], None] | None = None) -> str:
    """Validate the tiny experiment with ``spec``; assert exit 2 and a problem line naming
    ``field`` that holds every reason; return that line."""
    path = tiny(spec=spec)
    if setup is not None:
        setup(path.parent)
    rc, err = validate(path, capsys)
    assert rc == 2, err
    lines = [ln.strip() for ln in err.splitlines() if f": {field}: " in ln]
    assert lines, f"no problem at {field!r} in:\n{err}"
    assert any(all(r in ln for r in reasons) for ln in lines), err
    assert all(ln.startswith("exp.yaml:") for ln in lines), err  # located at a line
    return next(ln for ln in lines if all(r in ln for r in reasons))


def student(**kw: Any) -> Spec:
    """The tiny experiment's student with ``kw`` added."""
    return {"student": {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300}, **kw}}


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["demo\n", "demo\r\n", "evil\n"])
def test_a_name_ending_in_a_newline_is_refused(tiny, capsys, name: str) -> None:
    line = refused(tiny, capsys, {"name": name}, "name", "is not a valid name")
    assert "\\n" in line and "\n" not in line  # shown escaped, on one line


@pytest.mark.parametrize("section", ["buckets", "fields", "units"])
def test_an_entry_named_with_a_trailing_newline_is_refused(tiny, capsys, section: str) -> None:
    from tests.helpers.tiny import BASE_SPEC

    table = dict(BASE_SPEC[section])
    first = next(iter(table))
    table["evil\n"] = table[first]
    refused(tiny, capsys, {section: table}, section, "'evil\\n' is not a valid name")


def test_check_name_takes_the_whole_string() -> None:
    assert check_name("demo.v2_x-1") == "demo.v2_x-1"
    for bad in ("demo\n", "a\n", "a/b", "..", "x" * 65):
        with pytest.raises(ValueError, match="not a valid name"):
            check_name(bad)


def test_an_environment_variable_name_with_a_newline_is_refused(tiny, capsys) -> None:
    spec = {"teachers": {"api": {"provider": "openai", "base_url": "http://127.0.0.1:1/v1",
                                 "model": "m", "api_key_env": "OPENAI_API_KEY\n"}},
            "costs": {"teachers": {"api": {}}}}
    refused(tiny, capsys, spec, "teachers.api.api_key_env", "is not an environment variable")


# --------------------------------------------------------------------------- checkpoints


def _config(text: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        (folder / "ckpt").mkdir()
        (folder / "ckpt" / "config.json").write_text(text, encoding="utf-8")
    return setup


@pytest.mark.parametrize(("given", "reasons"), [
    ("no_such_folder", ("teacher checkpoint folder not found", "Hugging Face hub",
                        "--executor ray", "every node")),
    ("HuggingFaceTB/SmolLM2-135M", ("teacher checkpoint folder not found",
                                    "not downloaded from the Hugging Face hub")),
    ("samples.jsonl", ("not a folder (a plain file)",)),
    ("/dev/null", ("not a folder (a device",)),
    ("https://huggingface.co/HuggingFaceTB/SmolLM2-135M", ("a URL is not a local path",)),
    ("", ("the path is empty",)),
    ("   ", ("the path is empty",)),
])
def test_a_distill_teacher_that_is_not_a_local_folder_is_refused(
        tiny, capsys, given: str, reasons: tuple[str, ...]) -> None:
    refused(tiny, capsys, student(distill={"teacher_model": given}),
            "student.distill.teacher_model", *reasons)


@pytest.mark.parametrize("field", ["student.model", "student.distill.teacher_model"])
@pytest.mark.parametrize(("config", "reason"), [
    ("{not json", "config.json is not valid JSON (Expecting property name"),
    ('{"a": 1', "config.json is not valid JSON"),
    ("[1, 2]", "config.json holds a JSON list, not the object"),
    ("\xff", "config.json is not valid JSON"),
])
def test_a_checkpoint_with_a_corrupt_config_is_refused(tiny, capsys, field: str, config: str,
                                                       reason: str) -> None:
    spec = ({"student": {"model": "ckpt"}} if field == "student.model"
            else student(distill={"teacher_model": "ckpt"}))
    refused(tiny, capsys, spec, field, reason, setup=_config(config))


def test_a_checkpoint_folder_with_a_readable_config_passes(tiny, capsys) -> None:
    path = tiny(spec=student(distill={"teacher_model": "ckpt"}))
    _config('{"model_type": "llama"}')(path.parent)
    rc, err = validate(path, capsys)
    assert rc == 0, err


def test_an_empty_student_model_is_not_the_yaml_folder(tiny, capsys) -> None:
    refused(tiny, capsys, {"student": {"model": ""}}, "student.model", "the path is empty")


@pytest.mark.parametrize("key", ["samples", "eval"])
def test_an_empty_data_path_is_refused(tiny, capsys, key: str) -> None:
    data = {"samples": "samples.jsonl", "eval": "eval.jsonl", key: ""}
    refused(tiny, capsys, {"data": data}, f"data.{key}", "the path is empty")


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(("spec", "field"), [
    ({"gate": {"min_metric": {"route": {"accuracy": float("nan")}}}},
     "gate.min_metric.route.accuracy"),
    ({"costs": {"maintenance_per_month": float("inf")}}, "costs.maintenance_per_month"),
    ({"gate": {"max_p95_latency_ms": float("inf")}}, "gate.max_p95_latency_ms"),
    ({"stop": {"min_gain_next_doubling": float("nan")}}, "stop.min_gain_next_doubling"),
    ({"gate": {"min_roi": float("-inf")}}, "gate.min_roi"),
])
def test_nan_and_infinity_are_refused(tiny, capsys, spec: Spec, field: str) -> None:
    refused(tiny, capsys, spec, field, "Input should be a finite number (got ")


@pytest.mark.parametrize(("minimum", "reason"), [
    (1.5, "1.5 is outside the range of accuracy ([0, 1]): a minimum above 1 is never met"),
    (1e30, "1e+30 is outside the range of accuracy"),
    (-0.1, "a minimum below 0 is always met"),
])
def test_a_gate_minimum_outside_the_metric_range_is_refused(tiny, capsys, minimum: float,
                                                            reason: str) -> None:
    refused(tiny, capsys, {"gate": {"min_metric": {"route": {"accuracy": minimum}}}},
            "gate.min_metric.route.accuracy", reason)


@pytest.mark.parametrize("minimum", [0, 0.6, 1])
def test_gate_minimums_within_the_range_pass(tiny, capsys, minimum: float) -> None:
    path = tiny(spec={"gate": {"min_metric": {"route": {"accuracy": minimum},
                                              "fields": {"f1.order_id": minimum}}}})
    rc, err = validate(path, capsys)
    assert rc == 0, err


@pytest.mark.parametrize(("spec", "field"), [
    (student(config={"layers": True, "hidden": 32, "heads": 2, "vocab": 300}),
     "student.config.layers"),
    (student(train={"lr": True}), "student.train.lr"),
    (student(train={"epochs": False}), "student.train.epochs"),
    ({"seeds": [0, True]}, "seeds"),
    ({"scale": [True]}, "scale"),
    ({"gate": {"min_metric": {"route": {"accuracy": True}}}}, "gate.min_metric"),
    ({"data": {"samples": "samples.jsonl", "eval": "eval.jsonl", "judge_scale": [True, 5]}},
     "data.judge_scale"),
])
def test_a_boolean_is_not_a_number(tiny, capsys, spec: Spec, field: str) -> None:
    refused(tiny, capsys, spec, field, "a boolean (true/false) is not a number here")


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, "on"])
@pytest.mark.parametrize("key", ["trust_remote_code", "train.packing"])
def test_a_boolean_option_takes_only_true_or_false(tiny, capsys, key: str, value: Any) -> None:
    spec = student(train={"packing": value}) if key == "train.packing" else student(
        trust_remote_code=value)
    refused(tiny, capsys, spec, f"student.{key}",
            "Input should be a valid boolean, true or false (got")


@pytest.mark.parametrize(("spec", "field", "reason"), [
    (student(config={"layers": 1, "hidden": 10**9, "heads": 2, "vocab": 300}),
     "student.config.hidden", "less than or equal to 32768 (got 1000000000)"),
    (student(config={"layers": 1, "hidden": 32, "heads": 2, "vocab": 10**12}),
     "student.config.vocab", "less than or equal to 1048576"),
    (student(train={"epochs": 1e300}), "student.train.epochs", "less than or equal to 10000"),
    (student(train={"min_steps": 10**12}), "student.train.min_steps", "less than or equal"),
    (student(train={"batch_size": 10**9}), "student.train.batch_size", "less than or equal"),
    (student(train={"max_len": 10**9}), "student.train.max_len", "less than or equal"),
    ({"seeds": [2**64]}, "seeds.0", "less than or equal to 4294967295"),
    ({"seeds": [-1]}, "seeds.0", "greater than or equal to 0"),
    ({"sampling": {"seed": 2**40}}, "sampling.seed", "less than or equal to 4294967295"),
    ({"design": {"noise_seeds": [2**33]}}, "design.noise_seeds.0", "less than or equal"),
    ({"evaluation": {"max_new_tokens": 10**12}}, "evaluation.max_new_tokens",
     "less than or equal"),
    (student(config={"layers": 64, "hidden": 32768, "heads": 8, "vocab": 300}),
     "student.config", "more than 1e+11, which no machine trains"),
])
def test_sizes_no_machine_can_hold_are_refused(tiny, capsys, spec: Spec, field: str,
                                               reason: str) -> None:
    refused(tiny, capsys, spec, field, reason)


def test_a_large_but_real_student_passes(tiny) -> None:
    path = tiny(spec=student(config={"layers": 32, "hidden": 4096, "heads": 32, "vocab": 32000,
                                     "max_position": 4096}))
    spec = load_experiment(path, check_files=False).spec
    assert spec.student.config is not None and 8.5e9 < spec.student.config.parameters() < 9e9


# --------------------------------------------------------------------------- markers and scores


@pytest.mark.parametrize(("marker", "reason"), [
    ("\n", "has no visible character"),
    ("   ", "has no visible character"),
    ("\t", "has no visible character"),
    ("ESC\nALATE", "spans several lines"),
    (" ESCALATE", "has whitespace around it"),
])
def test_a_refusal_marker_must_be_visible_text(tiny, capsys, marker: str, reason: str) -> None:
    from tests.helpers.tiny import BASE_SPEC

    units = {**BASE_SPEC["units"], "esc": {"kind": "refusal", "marker": marker}}
    refused(tiny, capsys, {"units": units}, "units.esc.marker", reason)


def test_an_answer_marker_of_spaces_is_refused(tiny, capsys) -> None:
    from tests.helpers.tiny import BASE_SPEC

    units = {**BASE_SPEC["units"], "route": {**BASE_SPEC["units"]["route"],
                                             "answer_marker": "   "}}
    refused(tiny, capsys, {"units": units}, "units.route.answer_marker",
            "must contain a visible character")


def test_a_min_score_is_shown_as_written(tiny, capsys) -> None:
    refused(tiny, capsys, {"buckets": {"single_a": {"teachers": ["a"], "select": "all"},
                                       "judged": {"min_score": 5.0000001}}},
            "buckets.judged.min_score", "5.0000001 is outside the judge scale (1-5)")


# --------------------------------------------------------------------------- merge keys


def test_a_merge_key_is_refused_for_what_it_does_and_points_to_extends(tmp_path, tiny,
                                                                       capsys) -> None:
    path = tiny()
    text = path.read_text(encoding="utf-8").replace(
        "buckets:\n", "buckets:\n  base: &base {teachers: [a], select: all}\n"
                      "  merged:\n    <<: *base\n    select: judge_winner\n", 1)
    path.write_text(text, encoding="utf-8")
    rc, err = validate(path, capsys)
    assert rc == 2, err
    line = next(ln for ln in err.splitlines() if "merge keys" in ln)
    assert "silently" in line and "extends" in line and "Python objects" not in line
    assert line.strip().startswith(f"exp.yaml:{text.splitlines().index('    <<: *base') + 1}:")


# --------------------------------------------------------------------------- what stays valid


def test_every_committed_experiment_still_parses() -> None:
    files = sorted(glob.glob(str(REPO / "experiments" / "*.yaml")))
    assert files
    for f in files:
        load_experiment(f, check_files=False)
