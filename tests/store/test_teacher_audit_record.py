"""``teacher_audit.json`` has a record: each unit x teacher report is checked where it is written
and where it is read, and comes back as the same JSON."""

from __future__ import annotations

import json

import pytest

from harness.store.contracts import ContractError
from harness.store.folder import RunFolder

REPORT = {"n": 3, "metrics": {"accuracy": 2 / 3}, "slices": {"source=real": {"n": 1}},
          "calibration": None,
          "stated_confidence": {"metrics": {"ece_15": 0.1}, "n": 3, "reliability": [],
                                "ece_reliable": False}}


def test_a_report_round_trips_unchanged(tmp_path):
    run = RunFolder(tmp_path)
    run.write_teacher_audit({"route": {"teacher_a": REPORT}})
    assert run.read_teacher_audit() == {"route": {"teacher_a": REPORT}}
    assert json.loads(run.teacher_audit.read_text()) == {"route": {"teacher_a": REPORT}}


def test_no_audit_reads_as_empty(tmp_path):
    assert RunFolder(tmp_path).read_teacher_audit() == {}


@pytest.mark.parametrize("bad, key", [({**REPORT, "n": "three"}, "n"),
                                      ({k: v for k, v in REPORT.items() if k != "metrics"},
                                       "metrics"),
                                      ({**REPORT, "extra": 1}, "extra")])
def test_a_drifted_report_is_refused_naming_unit_and_teacher(tmp_path, bad, key):
    run = RunFolder(tmp_path)
    with pytest.raises(ContractError, match=r"route\.teacher_a") as err:
        run.write_teacher_audit({"route": {"teacher_a": bad}})
    assert key in str(err.value)
    assert not run.teacher_audit.exists()  # nothing half written
    run.teacher_audit.write_text(json.dumps({"route": {"teacher_a": bad}}))
    with pytest.raises(ContractError, match=r"route\.teacher_a"):
        run.read_teacher_audit()
    run.teacher_audit.write_text("[1, 2]")
    with pytest.raises(ContractError, match="unit -> teacher -> report"):
        run.read_teacher_audit()
