"""The experiment's sections live in modules by concept; ``harness.experiment.models`` still
names them all
(every import that existed before the split keeps working, with the very same classes)."""

from __future__ import annotations

import harness.experiment.models as models
from harness.experiment import base, design, policy, student, teachers, unit_options

HOMES = {
    base: ["NAME_PATTERN", "POOLS", "PoolName", "Strict", "check_name"],
    unit_options: ["Unit", "UnitOptions", "unit_model"],
    # StudentKind (a Literal of the built-in kinds' names) went when the student kinds got their
    # own options models: the kinds are a registry now (harness.students.base.names()).
    student: ["DistillSpec", "StudentConfig", "StudentOptions", "StudentSpec", "TrainSpec",
              "student_model"],
    design: ["BucketSpec", "CellPattern", "CellRef", "DesignSpec", "FieldSpec", "SamplingSpec",
             "TierSpec"],
    policy: ["DEFAULT_BLOCKING", "CostSpec", "GateSpec", "SignalName", "StopSpec", "TeacherCost",
             "TrafficSpec", "costs_declared"],
    teachers: ["HFTeacherSpec", "JudgeSpec", "OpenAITeacherSpec", "TeacherSpec"],
}


def test_every_section_name_is_reexported_by_models() -> None:
    for module, names in HOMES.items():
        for name in names:
            assert getattr(models, name) is getattr(module, name), (module.__name__, name)
    assert set(models.__all__) == {n for names in HOMES.values() for n in names} | {
        "DataSpec", "EvalSpec", "Experiment"}


def test_kind_models_are_still_found_by_class_name() -> None:
    assert models.LabelUnit.__name__ == "LabelUnit"
    assert issubclass(models.ToolCallUnit, models.UnitOptions)
