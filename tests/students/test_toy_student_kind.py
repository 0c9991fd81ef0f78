"""A student kind owns its ``student:`` options: a kind declared in this test alone, with an
option of its own, validates, plans and appears in the JSON Schema — no harness module names it
— and the built-in kinds refuse its option at its key, naming the kind that takes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
from pydantic import Field

from harness.cli import main
from harness.experiment import json_schema
from harness.students import base as students
from harness.students.causal_lm import CausalLMStudent
from harness.students.options import CausalLMOptions


class WarmStartOptions(CausalLMOptions):
    """A causal LM whose learning rate warms up from a stated fraction (a kind of its own)."""

    kind: Literal["warm_lm"] = "warm_lm"  # type: ignore[assignment]
    warm_from: float = Field(0.1, gt=0, le=1, description="Starting fraction of train.lr.")


class WarmStartStudent(CausalLMStudent):
    name = "warm_lm"
    why_not: ClassVar[dict[str, str]] = {}

    @classmethod
    def options_model(cls) -> type[WarmStartOptions]:  # type: ignore[override]
        return WarmStartOptions


@pytest.fixture
def warm_kind() -> Iterator[None]:
    students.register(WarmStartStudent)
    try:
        yield
    finally:
        students.unregister("warm_lm")


def _student(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    folder = tmp_path / "checkpoint"
    folder.mkdir(exist_ok=True)
    return {"model": str(folder), **extra}


def test_a_kind_declared_in_a_test_validates_and_plans_with_its_own_option(
        tiny, tmp_path, capsys, warm_kind):
    path = tiny(spec={"student": _student(tmp_path, kind="warm_lm", warm_from=0.5)})
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    assert main(["plan", str(path)]) == 0, capsys.readouterr().err
    assert "warm_lm" in students.names()
    bad = tiny(spec={"student": _student(tmp_path, kind="warm_lm", warm_from=2)})
    assert main(["validate", str(bad)]) == 2
    assert "student.warm_from: Input should be less than or equal to 1" in (
        capsys.readouterr().err)


def test_the_built_in_kinds_refuse_its_option_naming_the_kind(tiny, tmp_path, capsys,
                                                                warm_kind):
    path = tiny(spec={"student": _student(tmp_path, warm_from=0.5)})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert ("student.warm_from: a causal_lm student does not take warm_from (it is an option "
            "of warm_lm students); remove it, or use kind: warm_lm") in err, err


def test_the_json_schema_lists_every_registered_kinds_model(warm_kind):
    schema = json_schema()
    assert "WarmStartOptions" in schema["$defs"]
    props = schema["$defs"]["WarmStartOptions"]["properties"]
    assert props["warm_from"]["description"] == "Starting fraction of train.lr."
