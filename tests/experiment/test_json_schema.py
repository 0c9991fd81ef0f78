"""The JSON Schema that ``harness schema`` prints (for an editor's YAML plugin) accepts every
shipped experiment and says what validate says about the ``student:`` section: each kind takes
its own options (one ``oneOf`` branch per registered kind), and a section without ``kind`` is
the default kind's."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from harness.experiment import json_schema

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.name for p in EXPERIMENTS])
def test_every_shipped_experiment_is_valid_under_the_schema(validator, path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(doc)] == []


def _with_student(student: dict[str, Any]) -> dict[str, Any]:
    doc = yaml.safe_load((EXPERIMENTS[0].parent / "demo.yaml").read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    doc["student"] = student
    return doc


@pytest.mark.parametrize("student, valid", [
    ({"model": "m"}, True),                                        # no kind: a causal LM
    ({"model": "m", "adapter": {"r": 4}}, True),
    ({"kind": "classifier", "model": "m", "pooling": "mean"}, True),
    ({"model": "m", "pooling": "mean"}, False),                    # the classifier's option
    ({"kind": "classifier", "model": "m", "adapter": {"r": 4}}, False),  # the causal LM's
    ({"kind": "classifier", "model": "m", "config": {"layers": 1}}, False),
    ({"kind": "clasifier", "model": "m"}, False),
])
def test_the_student_section_is_one_kinds_model(validator, student, valid) -> None:
    errors = list(validator.iter_errors(_with_student(student)))
    assert (not errors) == valid, [e.message[:200] for e in errors]
