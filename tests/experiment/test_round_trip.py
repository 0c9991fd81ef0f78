"""A run record's spec (``Experiment.model_dump``) validates back to the same experiment, for
every shipped experiment: the analysis reads it that way (``RunData.experiment``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.experiment import parse_experiment
from harness.experiment.models import Experiment

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_recorded_spec_reads_back_as_the_same_experiment(path: Path) -> None:
    exp = parse_experiment(path).spec
    assert exp is not None
    dumped = exp.model_dump(mode="json")
    again = Experiment.model_validate(dumped)
    assert again == exp
    assert again.model_dump(mode="json") == dumped


def test_a_merged_tokenizer_is_recorded_but_left_out_of_the_cell_spec() -> None:
    exp = parse_experiment(next(p for p in EXPERIMENTS if p.stem == "snips")).spec
    assert exp is not None and exp.student.config is not None
    assert exp.student.config.digits == "merged"
    assert exp.model_dump(mode="json")["student"]["config"]["digits"] == "merged"
    assert "digits" not in exp.student.cell_dump()["config"]  # the cell ids of before
