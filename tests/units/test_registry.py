"""The unit-kind registry: names with did-you-mean, metric directions that refuse unknown names,
registration rules, and the worker-safe import of the package."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.units import (
    MetricDef,
    Scored,
    UnitKind,
    UnknownMetric,
    UnknownUnitKind,
    classifier_kinds,
    get,
    known_metrics,
    metric_direction,
    names,
    register,
    unregister,
)

REPO = Path(__file__).resolve().parents[2]


def test_unknown_kind_has_did_you_mean():
    with pytest.raises(UnknownUnitKind, match=r"unknown unit kind 'lable', did you mean 'label'\?"):
        get("lable")
    with pytest.raises(UnknownUnitKind, match=r"^unknown unit kind 'zzz'$"):
        get("zzz")


def test_unknown_metric_is_an_error_not_higher_is_better():
    with pytest.raises(UnknownMetric, match=r"'acuracy', did you mean 'accuracy'\?"):
        metric_direction("acuracy")
    with pytest.raises(UnknownMetric):
        metric_direction("latency_p95_ms")  # latency lives in its own table, not a unit metric


def test_directions_cover_kind_common_family_and_teacher_metrics():
    assert metric_direction("accuracy") is True
    assert metric_direction("over_refusal_rate") is False
    assert metric_direction("ece_15") is False  # calibration: common table
    assert metric_direction("answer_parse_rate") is True
    assert metric_direction("f1.order_id") is True  # json_fields' per-field family
    assert metric_direction("copied_error_rate.teacher_a") is False  # fidelity, per teacher
    assert metric_direction("agreement.teacher_a") is True


def test_known_metrics_and_classifier_kinds():
    unit = {"kind": "json_fields", "fields": ["order_id", "amount"], "answer_marker": "A:"}
    assert known_metrics(unit)[-2:] == ["f1.order_id", "f1.amount"]
    assert "field_f1" in known_metrics(unit)
    assert classifier_kinds() == ("label", "refusal")
    assert names()[:5] == ("label", "json_fields", "tool_call", "refusal", "text")


class _Base(UnitKind):
    metrics = (MetricDef("toy_score", True),)
    primary = "toy_score"

    def score(self, unit: Mapping[str, Any], preds: Sequence[str | None],
              refs: Sequence[str]) -> Scored:
        return Scored({}, [0] * len(refs))


def test_registration_rules():
    class Taken(_Base):
        name = "label"

    class BadName(_Base):
        name = "Yes-No"

    class NoPrimary(_Base):
        name = "toy_no_primary"
        primary = "missing"

    class Contradicts(_Base):
        name = "toy_contradicts"
        metrics = (MetricDef("toy_score", True), MetricDef("accuracy", False))

    with pytest.raises(ValueError, match="already registered"):
        register(Taken)
    with pytest.raises(ValueError, match="lowercase"):
        register(BadName)
    with pytest.raises(ValueError, match="primary metric 'missing'"):
        register(NoPrimary)
    with pytest.raises(ValueError, match="'accuracy' with higher_is_better=False"):
        register(Contradicts)
    assert "toy_contradicts" not in names() and get("label").name == "label"


def test_register_and_unregister_a_kind():
    class Toy(_Base):
        name = "toy_registry"

    register(Toy)
    try:
        assert get("toy_registry").primary == "toy_score"
        assert metric_direction("toy_score") is True
    finally:
        unregister("toy_registry")
    assert "toy_registry" not in names()
    with pytest.raises(UnknownMetric):
        metric_direction("toy_score")


def test_the_package_imports_without_pydantic():
    """The worker imports every kind: pydantic (and msgspec) only load when asked for."""
    code = ("import sys, harness.units as u; u.get('label').score("
            "{'kind': 'label', 'labels': ['a', 'b']}, ['a'], ['a']); "
            "print(sorted({'pydantic', 'msgspec', 'polars'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.strip()
    assert out == "[]"
