"""Experiment YAML: located errors, did-you-mean, extends, safety, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.checks import load_experiment
from harness.cli import main
from harness.errors import InputError
from harness.experiment import json_schema
from tests.helpers import BASE_SPEC

REPO = Path(__file__).resolve().parents[2]


def _errors(path: Path) -> str:
    with pytest.raises(InputError) as exc:
        load_experiment(path)
    return exc.value.render(cap=100)


def test_tiny_experiment_loads(tiny):
    loaded = load_experiment(tiny())
    exp = loaded.spec
    assert exp.name == "tiny"
    assert exp.data.samples.is_absolute()  # resolved relative to the YAML file
    assert exp.buckets["judged"].select == "judge_winner"


def test_unknown_key_has_path_line_and_did_you_mean(tiny, tmp_path):
    path = tiny()
    doc = yaml.safe_load(path.read_text())
    doc["student"]["modle"] = "x"
    doc["buckets"]["judged"]["min_scor"] = 4
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    text = _errors(path)
    assert "student.modle: unknown key, did you mean 'model'?" in text
    assert "buckets.judged.min_scor: unknown key, did you mean 'min_score'?" in text
    assert "exp.yaml:" in text


def test_min_score_above_judge_scale(tiny):
    path = tiny(spec={"buckets": {"single_a": {"teachers": ["a"], "select": "all"},
                                  "multi": {"select": "judge_winner", "min_score": 7}}})
    assert "buckets.multi.min_score: 7 is outside the judge scale (1-5)" in _errors(path)


def test_min_roi_without_any_price_is_refused(tiny):
    path = tiny(spec={"gate": {"min_roi": 0.0}})
    assert "gate.min_roi: a minimum ROI needs prices" in _errors(path)
    priced = tiny(spec={"gate": {"min_roi": 0.0},
                        "costs": {"teacher_price_per_1k": 0.01, "student_price_per_1k": 0.001}})
    load_experiment(priced)


def test_all_problems_reported_in_one_pass(tiny):
    path = tiny(spec={
        "buckets": {"single_a": {"teachers": ["a"], "select": "judge_winer"},
                    "judged": {"failures": "refusals"}},
        "fields": {"answer_only": {"confidence": "wieght"}},
        "baseline": {"bucket": "single", "fields": "answer_only"},
        "scale": [0.5, 2],
    })
    text = _errors(path)
    for fragment in ("did you mean 'judge_winner'", "did you mean 'refusal'",
                     "did you mean 'weight'", "baseline.bucket: unknown bucket 'single'",
                     "scale values must be in (0, 1]"):
        assert fragment in text


def test_extends_merges_and_reports_unknown_parent_and_cycles(tiny):
    path = tiny(spec={"buckets": {
        "single_a": {"teachers": ["a"], "select": "all"},
        "judged": {"select": "judge_winner", "min_score": 4},
        "judged_fail": {"extends": "judged", "failures": "refusal"},
    }})
    exp = load_experiment(path).spec
    assert exp.buckets["judged_fail"].min_score == 4
    assert exp.buckets["judged_fail"].failures == "refusal"
    path = tiny(spec={"buckets": {"single_a": {"teachers": ["a"], "select": "all"},
                                  "x": {"extends": "jugded"}, "p": {"extends": "q"},
                                  "q": {"extends": "p"}, "judged": {}}})
    text = _errors(path)
    assert "extends unknown bucket 'jugded', did you mean 'judged'?" in text
    assert "extends cycle" in text


def test_duplicate_keys_are_errors(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("name: a\nname: b\n")
    assert "duplicate key 'name'" in _errors(p)


def test_python_tags_are_refused(tmp_path, capsys):
    p = tmp_path / "evil.yaml"
    marker = tmp_path / "ran"
    p.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert main(["validate", str(p)]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "data only" in err and "Traceback" not in err


def test_not_a_mapping_and_missing_file(tmp_path):
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    assert "must be a YAML mapping" in _errors(p)
    assert "not found" in _errors(tmp_path / "nope.yaml")


def test_unsafe_names_are_rejected(tiny):
    path = tiny(spec={"name": "../escape"})
    assert "is not a valid name" in _errors(path)


def test_template_problems_are_located(tiny):
    units = json.loads(json.dumps(BASE_SPEC["units"]))
    units["route"]["template"] = "{{ final }}"  # no marker
    path = tiny(spec={"units": units})
    assert "units.route.template: the rendered target must contain the answer marker" in (
        _errors(path))
    units["route"]["template"] = "{{ marker }} {{ fnal }}"
    assert "did you mean 'final'" in _errors(tiny(spec={"units": units}))
    units["route"]["template"] = "{% if %}"
    assert "template syntax error" in _errors(tiny(spec={"units": units}))


def test_student_needs_exactly_one_source(tiny):
    path = tiny(spec={"student": {"config": {"layers": 1, "hidden": 32, "heads": 2}, "model": "m"}})
    assert "give exactly one of 'model'" in _errors(path)


def test_json_schema_is_printed_and_describes_sections(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema == json_schema()
    assert {"data", "units", "buckets", "fields", "design", "baseline"} <= set(
        schema["properties"])
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_experiment_validates(path, capsys):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    prepared = all((path.parent / raw["data"][k]).is_file() for k in ("samples", "eval"))
    # A pretrained student's folder is written by a command of its own (demo_smollm2.yaml's
    # by `make smollm2`), which `make test` does not run.
    model = (raw.get("student") or {}).get("model")
    prepared = prepared and (model is None or (path.parent / model).is_dir())
    if not prepared:
        # A real-data experiment whose prepare script has not run here (its dataset lives
        # outside the repository), or a student checkpoint not exported here: the spec itself
        # must still be valid.
        load_experiment(path, check_files=False)
        return
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
