"""Each default is written once, or checked to agree where it is written twice: the
standard-library settings (what the worker reads from a manifest) and the experiment model's
pydantic fields name the same keys with the same defaults, and a manifest's missing keys read
as those defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.cell_settings import EVALUATION, EvaluationSettings
from harness.experiment.models import EvalSpec
from harness.experiment.student import TrainSpec, student_model
from harness.store.cell_spec import EvaluationPart, StudentPart, TrainPart
from harness.store.record import ABSENT
from harness.students import base as student_kinds
from harness.students.options import StudentOptions
from harness.train.loop import TrainOptions


def test_evaluation_fields_and_defaults_are_the_models():
    model = EvalSpec()
    names = [f.name for f in dataclasses.fields(EvaluationSettings)]
    assert names == list(EvalSpec.model_fields)
    for name in names:
        mine = getattr(EVALUATION, name)
        theirs = getattr(model, name)
        assert (list(mine) if isinstance(mine, tuple) else mine) == theirs, name


def test_a_manifest_missing_keys_reads_the_defaults():
    assert EvaluationPart.from_json({}, "m.json") == EvaluationPart(absent=EvaluationPart.DEFAULTED)
    dumped = EvalSpec(latency_runs=3, slices=["source", "difficulty"]).model_dump(mode="json")
    got = EvaluationPart.from_json(dumped, "m.json")
    assert got.latency_runs == 3 and got.slices == ["source", "difficulty"]
    assert got.to_json() == dumped


@pytest.mark.parametrize(("mine", "model"), [(TrainPart, TrainSpec), (EvaluationPart, EvalSpec)])
def test_the_manifest_records_are_the_models_fields(mine: Any, model: Any):
    """The manifest's typed parts (harness.store.cell_spec) name the experiment model's fields,
    in its order, and where a part defaults a key (one an older manifest may lack) the default
    is the model's: an absent key reads as what the YAML would have said."""
    loop_only = set(getattr(mine, "LOOP_ONLY", ()))
    names = [f.name for f in dataclasses.fields(mine) if f.name != ABSENT]
    assert [n for n in names if n not in loop_only] == list(model.model_fields)
    # the loop-only keys are the training loop's options that the YAML does not declare
    assert loop_only <= {f.name for f in dataclasses.fields(TrainOptions)}
    assert not loop_only & set(model.model_fields)
    defaulted = [f for f in dataclasses.fields(mine) if f.name in mine.DEFAULTED
                 and f.name not in loop_only]
    assert defaulted, mine
    for f in defaulted:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert default == model.model_fields[f.name].get_default(call_default_factory=True), (
            mine.__name__, f.name)


def test_the_manifest_student_part_holds_every_kinds_options():
    """A manifest's ``student`` (StudentPart) reads any kind's section: its keys are every
    kind's model's, in the order cells have always written them (StudentOptions.CELL_ORDER), and
    a key it defaults reads as the default of the kind that owns it."""
    names = [f.name for f in dataclasses.fields(StudentPart) if f.name != ABSENT]
    assert names == list(StudentOptions.CELL_ORDER)
    models = [student_model(n) for n in student_kinds.names()]
    assert set(names) == {k for m in models for k in m.model_fields}
    defaulted = [f for f in dataclasses.fields(StudentPart) if f.name in StudentPart.DEFAULTED]
    assert defaulted
    for f in defaulted:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        # (kind: only the default kind's model has a default, the others require it)
        owners = [m for m in models if f.name in m.model_fields
                  and not m.model_fields[f.name].is_required()]
        assert owners, f.name
        for m in owners:
            assert default == m.model_fields[f.name].get_default(call_default_factory=True), (
                m.__name__, f.name)


def test_the_yaml_training_defaults_are_the_loops():
    # every switch the YAML declares, at its YAML default, is the loop's default
    shared = [f.name for f in dataclasses.fields(TrainOptions) if f.name in TrainSpec.model_fields]
    assert {"packing", "chunked_ce", "compile", "fast", "token_budget"} <= set(shared)
    assert TrainOptions.from_cfg(TrainSpec().model_dump(mode="json")) == TrainOptions()
    assert TrainOptions.from_cfg({}) == TrainOptions()  # a manifest from before the switches


def test_an_explicit_setting_wins():
    opts = TrainOptions.from_cfg({"packing": True, "fast": "off", "token_budget": 4096,
                                  "compile_budget_s": None, "log_every": 0})
    assert opts.packing and opts.fast == "off" and opts.token_budget == 4096
    assert opts.compile_budget_s is None  # null: no deadline, not the default
    assert opts.log_every == 10  # 0 is "not set" (and never a valid period)
