"""Each default is written once: the worker's standard-library settings and the experiment
model's pydantic fields agree, and a manifest's missing keys read as those defaults."""

from __future__ import annotations

import dataclasses

from harness.cell_settings import EVALUATION, EvaluationSettings
from harness.experiment.models import EvalSpec
from harness.experiment.student import TrainSpec
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
    assert EvaluationSettings.from_json({}) == EVALUATION
    assert EvaluationSettings.from_json({"latency_runs": None}) == EVALUATION
    dumped = EvalSpec(latency_runs=3, slices=["source", "difficulty"]).model_dump(mode="json")
    got = EvaluationSettings.from_json({**dumped, "a_newer_key": 1})
    assert got.latency_runs == 3 and got.slices == ("source", "difficulty")


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
