"""A template bound broken by a real row while composing is bad input: a located message naming
the unit's template and exit status 2, never a traceback or a failed cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checks import load_experiment
from harness.cli import main
from tests.helpers import BASE_SPEC

#: Renders fine on validate's placeholder answer ("<final>", 7 characters); a real answer of
#: the json_fields unit ('{"order_id":"77"}', 17 characters) makes a 300,000-character target.
GREEDY = "{{ marker }} {{ final }}{% if final|length > 12 %}{{ 'x' * 300000 }}{% endif %}"


@pytest.fixture
def greedy(tiny) -> Path:
    units = json.loads(json.dumps(BASE_SPEC["units"]))
    units["fields"]["template"] = GREEDY
    path = tiny(spec={"units": units})
    load_experiment(path)  # validate accepts it: the placeholder render stays in bounds
    return path


@pytest.mark.parametrize("command", ["compose", "plan"])
def test_compose_time_bound_is_a_located_input_error(greedy: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     command: str) -> None:
    args = [command, str(greedy)] + (["--out", str(tmp_path / "cells")]
                                     if command == "compose" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first, *rest = err.splitlines()
    assert first == ("experiment 'tiny': the target template of unit 'fields' broke its bounds "
                     "on a training row")
    assert rest[0].startswith("  units.fields.template: the template makes ")
    assert "(first at record 'r4')" in rest[0]


def test_run_stops_with_exit_2_instead_of_failing_cells(greedy: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["run", str(greedy), "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "units.fields.template" in err and "FAILED" not in err
    assert not list((tmp_path / "runs").rglob("FAILED.json"))
