"""The rule registry: each rule declares the sections it needs and runs only when they validated;
every problem lands in the loader's one problem log, located and sorted by line."""

from __future__ import annotations

import json

import pytest
import yaml

from harness.checks import DATA_RULES, RULES, Context, check_data_fit, load_experiment
from harness.checks.registry import Rules, problem
from harness.errors import InputError
from harness.experiment import parse_experiment
from harness.experiment.models import Experiment
from harness.samples import load_data
from tests.helpers import BASE_SPEC, tiny_samples


def _errors(path: object, **kw: bool) -> str:
    with pytest.raises(InputError) as exc:
        load_experiment(path, **kw)  # type: ignore[arg-type]
    return exc.value.render(cap=100)


def test_every_rule_needs_real_sections() -> None:
    sections = set(Experiment.model_fields)
    for r in [*RULES.rules, *DATA_RULES.rules]:
        assert r.needs and set(r.needs) <= sections, r.name
    assert len({r.name for r in RULES.rules}) == len(RULES.rules)


def test_a_rule_runs_only_when_its_sections_validated() -> None:
    rules = Rules()
    seen: list[str] = []

    @rules.rule("buckets", "seeds")
    def needs_both(s: Context) -> list:
        seen.append("both")
        return [problem("seeds", "x")]

    @rules.rule("buckets")
    def needs_buckets(s: Context) -> list:
        seen.append("buckets")
        return []

    @rules.rule("data", files=True)
    def touches_disk(s: Context) -> list:
        seen.append("files")
        return []

    ctx = Context({"buckets": {}, "seeds": None, "data": object()}, {})
    assert list(rules.run(ctx, files=False)) == []
    assert seen == ["buckets"]
    assert [p.field for p in rules.run(Context({"buckets": {}, "seeds": [0], "data": 1}, {}))] \
        == ["seeds"]


def test_parse_reports_pydantic_only_and_keeps_validated_sections(tiny) -> None:
    path = tiny(spec={"scale": [0.5, 2], "baseline": {"bucket": "single", "fields": "answer_only"}})
    parsed = parse_experiment(path)
    assert parsed.spec is None
    assert [p.field for p in parsed.log.problems] == ["scale"]  # the reference is not its job
    assert parsed.sections["scale"] is None
    assert parsed.sections["baseline"].bucket == "single"
    assert parsed.names["buckets"] == {"single_a", "judged"}
    text = _errors(path)
    assert "baseline.bucket: unknown bucket 'single'" in text and "scale values" in text


def test_cross_rules_skip_failed_sections_without_spurious_problems(tiny) -> None:
    # seeds fail validation (duplicates): the baseline's seed is not checked against a default.
    path = tiny(spec={"seeds": [1, 1], "baseline": {"bucket": "single_a",
                                                   "fields": "answer_only", "seed": 1}})
    text = _errors(path)
    assert "seeds must be unique" in text
    assert "is not among seeds" not in text


def test_rules_run_when_a_required_section_is_missing(tiny) -> None:
    # No buckets at all: pydantic reports it and the rules on other sections still report.
    path = tiny()
    doc = yaml.safe_load(path.read_text())
    del doc["buckets"]
    doc["gate"] = {"min_metric": {"rout": {"accuracy": 0.5}}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    text = _errors(path)
    assert "buckets: required key is missing" in text
    assert "gate.min_metric.rout: unknown unit 'rout', did you mean 'route'?" in text


def test_problems_are_located_and_sorted_by_line(tiny) -> None:
    units = json.loads(json.dumps(BASE_SPEC["units"]))
    units["route"]["template"] = "{{ final }}"
    path = tiny(spec={"units": units, "scale": [3],
                      "fields": {"answer_only": {"confidence": "wieght"}}})
    with pytest.raises(InputError) as exc:
        load_experiment(path)
    lines = [int(p.where.rsplit(":", 1)[1]) for p in exc.value.problems]
    assert lines == sorted(lines) and len(lines) == 3
    assert all(p.where.startswith("exp.yaml:") for p in exc.value.problems)


def test_files_rule_is_skipped_without_check_files(tiny, tmp_path) -> None:
    path = tiny()
    (tmp_path / "samples.jsonl").unlink()
    assert "data.samples: file not found" in _errors(path)
    assert load_experiment(path, check_files=False).spec.name == "tiny"


def test_data_fit_names_unknown_teachers(tiny) -> None:
    path = tiny(spec={"buckets": {"single_a": {"teachers": ["a", "bb"], "select": "all"}},
                      "costs": {"teachers": {"c": {"price_per_1k_prompt": 0.01}}}},
                samples=tiny_samples())
    loaded = load_experiment(path)
    with pytest.raises(InputError) as exc:
        check_data_fit(loaded, load_data(loaded))
    text = exc.value.render()
    assert text.splitlines()[0].endswith("exp.yaml: the experiment does not fit its data")
    assert ("exp.yaml: buckets.single_a.teachers.1: teacher 'bb' does not occur in "
            "samples.jsonl, did you mean 'b'?") in text
    assert "exp.yaml: costs.teachers.c: teacher 'c' does not occur in samples.jsonl" in text
