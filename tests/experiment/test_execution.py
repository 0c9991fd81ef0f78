"""The optional ``execution:`` section: sizes, rules, and that it never enters cell ids."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from harness.cli import main
from harness.experiment.execution import ExecutionSpec, parse_size


def test_sizes_parse_with_decimal_and_binary_units():
    assert parse_size("4GiB") == 4 * 2**30
    assert parse_size("512MB") == 512 * 10**6
    assert parse_size("2g") == 2 * 10**9
    assert parse_size(1024) == 1024
    # YAML reads an unquoted 1e9 as a string, not a number
    assert parse_size("1e9") == 10**9 and parse_size("1.5e3MB") == 1500 * 10**6
    for bad in ("lots", "-1GB", "0", True):
        with pytest.raises(ValueError):
            parse_size(bad)  # type: ignore[arg-type]


def test_the_section_is_checked():
    spec = ExecutionSpec.model_validate({"gpus": 0.25, "memory": "1GiB"})
    assert spec.gpus == 0.25 and spec.memory == 2**30 and spec.checkpoint == "keep"
    assert ExecutionSpec().gpus is None  # 1 where there are GPUs, else 0
    for bad in ({"gpus": 1.5}, {"gpus": -1}, {"cpus": 0}, {"max_retries": 11},
                {"checkpoint": "storage"}, {"storage": "/x"}, {"memory": "much"},
                {"nodes": 3}, {"gpus": float("nan")}, {"cpus": float("inf")}):
        with pytest.raises(ValidationError):
            ExecutionSpec.model_validate(bad)


def test_execution_never_changes_cell_ids(tiny, capsys):
    path = tiny()
    assert main(["plan", str(path), "--json"]) == 0
    before = capsys.readouterr().out
    path = tiny(spec={"execution": {"gpus": 0.25, "cpus": 2, "memory": "2GiB",
                                    "checkpoint": "storage", "storage": "s3://b/ckpt"}})
    assert main(["plan", str(path), "--json"]) == 0
    assert capsys.readouterr().out == before


def test_a_bad_section_is_a_located_error(tiny, capsys):
    path = tiny(spec={"execution": {"gpus": 2.5}})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "execution.gpus" in err and "Traceback" not in err
