"""Issue 16's hostile experiment YAMLs: each a located exit 2 (or a quick answer), never a
traceback, a hang or a memory blow-up.

Every case is bounded in time: in-process cases run under :func:`deadline` (SIGALRM), cases
that could block the process (devices, FIFOs) run in a subprocess with a timeout.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from tests.helpers import REPO, tiny_eval, tiny_samples, write_jsonl
from tests.helpers.hostile import BOMBS, PATHS, TAGS, TEMPLATES, deadline, large_documents

LOCATED = re.compile(r"^  exp\.yaml:\d+: \S", re.M)


def write_case(folder: Path, text: str) -> Path:
    write_jsonl(folder / "samples.jsonl", tiny_samples())
    write_jsonl(folder / "eval.jsonl", tiny_eval())
    path = folder / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run_cli(args: list[str], limit: float) -> tuple[int, str, str, float]:
    """``harness ARGS`` in-process under a deadline; returns (rc, stdout, stderr, seconds)."""
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with deadline(limit), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(args)
    return rc, out.getvalue(), err.getvalue(), time.perf_counter() - t0


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_and_deep_nesting_are_refused_before_expansion(tmp_path: Path, name: str) -> None:
    rc, _, err, took = run_cli(["validate", str(write_case(tmp_path, BOMBS[name]))], 5)
    assert rc == 2 and "Traceback" not in err, err
    assert LOCATED.search(err), err
    assert took < 2, f"{name} took {took:.1f} s"


def test_bomb_messages_say_what_is_wrong(tmp_path: Path) -> None:
    def problem(name: str) -> str:
        return run_cli(["validate", str(write_case(tmp_path, BOMBS[name]))], 5)[2]

    assert "would expand to more than 100,000 nodes" in problem("laughs_9x10")
    assert "would expand" in problem("merge_bomb")
    assert "recursive alias" in problem("recursive_alias")
    assert "nest" in problem("flow_100000") and "nests deeper than 64" in problem("block_3000")


@pytest.mark.parametrize("name", sorted(TAGS))
def test_tag_on_the_wrong_scalar_is_a_located_error(tmp_path: Path, name: str) -> None:
    rc, _, err, _ = run_cli(["validate", str(write_case(tmp_path, TAGS[name]))], 10)
    assert rc == 2 and "Traceback" not in err, err
    assert LOCATED.search(err), err


def test_tag_error_names_the_value_and_type(tmp_path: Path) -> None:
    err = run_cli(["validate", str(write_case(tmp_path, TAGS["int_name"]))], 10)[2]
    assert re.search(r"exp\.yaml:1: cannot read 'abc' as int", err), err


@pytest.mark.parametrize("name", sorted(PATHS))
def test_unusable_paths_are_located_errors(tmp_path: Path, name: str) -> None:
    text, field = PATHS[name]
    rc, _, err, _ = run_cli(["validate", str(write_case(tmp_path, text))], 10)
    assert rc == 2 and "Traceback" not in err, err
    assert re.search(rf"^  exp\.yaml:\d+: {re.escape(field)}: ", err, re.M), err


def test_path_messages(tmp_path: Path) -> None:
    def problem(name: str) -> str:
        return run_cli(["validate", str(write_case(tmp_path, PATHS[name][0]))], 10)[2]

    assert "NUL byte" in problem("nul_samples")
    assert "cannot expand '~nosuchuser_h16': no such user" in problem("no_such_user")
    assert "at most 255 bytes" in problem("component_300")
    assert "100,000 bytes long" in problem("path_100000")
    assert "not a regular file" in problem("device_samples")


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_that_work_for_their_own_sake_fail_validate(tmp_path: Path, name: str
                                                              ) -> None:
    from tests.helpers.hostile import template

    rc, _, err, took = run_cli(["validate", str(write_case(tmp_path, template(TEMPLATES[name])))],
                               10)
    assert rc == 2 and "Traceback" not in err, err
    assert re.search(r"^  exp\.yaml:\d+: units\.route\.template: ", err, re.M), err
    assert took < 5, f"{name} took {took:.1f} s"


@pytest.mark.parametrize("name", ["description_10mb", "unknown_keys_100k", "seeds_200k",
                                  "units_10k", "factorial_360k"])
def test_large_legal_documents_get_a_quick_answer(tmp_path: Path, name: str) -> None:
    text = large_documents()[name]
    rc, out, err, took = run_cli(["validate", str(write_case(tmp_path, text))], 20)
    assert "Traceback" not in err
    assert took < 10, f"{name} took {took:.1f} s"
    if name == "unknown_keys_100k":
        assert rc == 2
        lines = err.splitlines()
        assert len(lines) == 1 + 50 + 1, "50 problems and a count of the rest"
        assert lines[-1] == "  ... and 99950 more problem(s)"
    else:
        assert rc == 0, err
    if name == "factorial_360k":
        assert "360000 cells" in out and "--max-cells 5,000" in out


@pytest.mark.parametrize("command", ["plan", "compose", "run"])
def test_a_matrix_above_max_cells_is_refused_with_its_size(tmp_path: Path, command: str) -> None:
    path = write_case(tmp_path, large_documents()["factorial_360k"])
    extra = ["--out", str(tmp_path / "runs")] if command == "run" else []
    rc, _, err, took = run_cli([command, str(path), *extra], 20)
    assert rc == 2 and took < 10
    assert ("the matrix has 360,000 cells (factorial: 60 buckets x 60 field sets x 10 scales x "
            "10 seeds), more than --max-cells 5,000") in err
    assert not (tmp_path / "runs").exists()


def test_max_cells_can_be_raised_and_lowered(tiny, tmp_path: Path) -> None:
    path = tiny(spec={"seeds": [0, 1]})  # 2 buckets x 2 field sets x 1 scale x 2 seeds
    rc, _, err, _ = run_cli(["plan", str(path), "--max-cells", "7"], 60)
    assert rc == 2 and "the matrix has 8 cells" in err
    rc, out, _, _ = run_cli(["plan", str(path), "--max-cells", "8"], 60)
    assert rc == 0 and "8 cells" in out
    with pytest.raises(SystemExit):  # argparse: not a positive number
        run_cli(["plan", str(path), "--max-cells", "0"], 10)


def _subprocess_validate(target: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", "validate", target], cwd=cwd,
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom", "fifo", "folder", "big"])
def test_special_and_oversized_experiment_files_are_refused_at_once(tmp_path: Path,
                                                                    target: str) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")  # no writer: opening it for reading would block
    elif target == "folder":
        (tmp_path / "folder").mkdir()
    elif target == "big":
        with (tmp_path / "big").open("wb") as f:
            f.truncate(17 * 1024 * 1024)  # sparse: no disk used
    t0 = time.perf_counter()
    proc = _subprocess_validate(target, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    expected = "larger than 16 MB" if target == "big" else "not a regular file"
    assert expected in proc.stderr
    assert time.perf_counter() - t0 < 20


def test_nul_byte_in_the_experiment_path_is_an_input_error(tmp_path: Path) -> None:
    rc, _, err, _ = run_cli(["validate", str(tmp_path / "a\x00b.yaml")], 10)
    assert rc == 2 and "cannot read experiment file" in err
    rc, _, err, _ = run_cli(["validate", "x" * 100_000], 10)
    assert rc == 2 and "cannot read experiment file" in err


def test_a_long_extends_chain_resolves_in_any_order(tmp_path: Path) -> None:
    from tests.helpers.hostile import doc

    # Declared child first: resolving b2999 walks 2,999 parents (once a RecursionError).
    buckets = {f"b{i}": {"extends": f"b{i - 1}"} for i in range(2999, 0, -1)}
    buckets["b0"] = {"teachers": ["a"], "select": "judge_winner", "min_score": 3}
    text = doc(buckets=buckets, baseline={"bucket": "b0", "fields": "answer_only"},
               design={"kind": "one_at_a_time",
                       "base": {"bucket": "b0", "fields": "answer_only", "scale": 1.0}})
    path = write_case(tmp_path, text)
    with deadline(20):
        from harness.checks import load_experiment

        exp = load_experiment(path).spec
    assert exp.buckets["b2999"].min_score == 3 and exp.buckets["b2999"].select == "judge_winner"
