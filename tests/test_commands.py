"""``harness.cli`` holds the parser and ``main``; every subcommand's body lives in
``harness.commands`` and is what the parser dispatches to."""

from __future__ import annotations

import pytest

from harness.cli import EXIT_FAIL, EXIT_INPUT, EXIT_OK, build_parser, main
from harness.commands import export, generate, prepare, results
from harness.commands.common import format_value, text_table

COMMANDS = {"validate": prepare.cmd_validate, "plan": prepare.cmd_plan,
            "compose": prepare.cmd_compose, "export-lm-eval": prepare.cmd_export_lm_eval,
            "schema": prepare.cmd_schema, "run": results.cmd_run, "worker": results.cmd_worker,
            "lm-eval": results.cmd_lm_eval, "gate": results.cmd_gate,
            "report": results.cmd_report, "generate": generate.cmd_generate,
            "export-gguf": export.cmd_export_gguf}
NEEDS = {"export-lm-eval": ["--out", "o"], "export-gguf": ["o"]}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_subcommand_dispatches_to_its_body(name: str) -> None:
    positional = [] if name == "schema" else ["x"]
    args = build_parser().parse_args([name, *positional, *NEEDS.get(name, [])])
    assert args.fn is COMMANDS[name]


def test_exit_statuses_and_table_format() -> None:
    assert (EXIT_OK, EXIT_FAIL, EXIT_INPUT) == (0, 1, 2)
    assert format_value(0.5) == "0.500" and format_value(1234) == "1,234"
    assert format_value(None) == "" and format_value(True) == "True"
    assert text_table(["a", "n"], [["x", 1], ["yy", 22]]).splitlines() == [
        "a    n", "--  --", "x    1", "yy  22"]


def test_an_unknown_cell_is_named_under_the_flag_the_user_typed(tiny, tmp_path, capsys) -> None:
    path = str(tiny())
    assert main(["run", path, "--only", "nosuch", "--out", str(tmp_path / "runs")]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "--only: unknown cell" in err and "'nosuch' matches no cell" in err
    assert not (tmp_path / "runs").exists()
    assert main(["compose", path, "--cell", "nosuch", "--out", str(tmp_path / "c")]) == EXIT_INPUT
    assert "--cell: unknown cell" in capsys.readouterr().err
