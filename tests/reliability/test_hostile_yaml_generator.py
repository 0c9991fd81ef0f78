"""Issue 16's probe at small scale: mutated experiment YAMLs never give a traceback or a hang.

160 documents: random mutations of the tiny experiment (seeded, so a failure reproduces) plus a
few of the named bombs, each validated in-process under a 10 s deadline: exit 0 or 2, every
problem line located. Total runtime is well under a minute.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import time
from pathlib import Path

import pytest

from harness.cli import main  # noqa: E402
from tests.helpers import tiny_eval, tiny_samples, write_jsonl
from tests.helpers.hostile import BASE, BOMBS, TAGS, TEMPLATES, deadline, template

N_RANDOM = 140
PROBLEM = re.compile(r"^  (exp\.yaml|samples\.jsonl|eval\.jsonl)(:\d+)?: \S|^  \.\.\. and \d+ ")

SNIPPETS = [
    "!!int abc", "!!float x", "!!bool maybe", "!!timestamp q", "!!binary 'a'", "*nope",
    "&a [*a]", "[" * 500, "{" * 300, "\x00", "\ufeff", "~nosuchuser/x", "a" * 300,
    "!!python/object:os.system", "<<: *x", "? [1]\n: 2", "'unterminated", "- - - - x",
    "{{ 'x' * 99999999 }}", "9" * 5000, "\t", "%YAML 1.1", "--- \n...", "!foo bar",
]


def mutate(text: str, rng: random.Random) -> str:
    """One to three random edits of ``text``: insert a hostile snippet, delete or duplicate a
    line, swap characters, cut the file, tag a scalar, or nest a value deeply."""
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        i = rng.randrange(len(lines)) if lines else 0
        if op == 0 and lines:
            col = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:col] + rng.choice(SNIPPETS) + lines[i][col:]
        elif op == 1 and lines:
            del lines[i]
        elif op == 2 and lines:
            lines.insert(i, lines[i])
        elif op == 3 and lines:
            chars = list(lines[i])
            rng.shuffle(chars)
            lines[i] = "".join(chars)
        elif op == 4:
            lines = lines[: rng.randrange(len(lines) + 1)]
        elif op == 5 and lines and ": " in lines[i]:
            key, value = lines[i].split(": ", 1)
            lines[i] = f"{key}: !!{rng.choice(['int', 'float', 'bool', 'str', 'null'])} {value}"
        elif op == 6 and lines and ": " in lines[i]:
            key, value = lines[i].split(": ", 1)
            d = rng.choice([70, 2000])
            lines[i] = f"{key}: {'[' * d}{value.strip()}{']' * d}\n"
        else:
            lines.insert(i, f"k{rng.randrange(99)}: {rng.choice(SNIPPETS)!r}\n")
    return "".join(lines)


def documents() -> list[tuple[str, str]]:
    rng = random.Random(16)
    docs = [(f"random_{n}", mutate(BASE, rng)) for n in range(N_RANDOM)]
    docs += [(name, BOMBS[name]) for name in ("laughs_9x10", "merge_bomb", "flow_100000",
                                              "recursive_alias", "block_3000")]
    docs += [(name, TAGS[name]) for name in ("int_name", "timestamp_junk", "int_5000_digits")]
    docs += [(name, template(TEMPLATES[name])) for name in
             ("repeat_1e9", "nested_range", "nested_if_3000", "parens_3000", "silent_loops")]
    return docs


def test_mutated_experiments_never_give_a_traceback_or_hang(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "samples.jsonl", tiny_samples())
    write_jsonl(tmp_path / "eval.jsonl", tiny_eval())
    path = tmp_path / "exp.yaml"
    codes: dict[int, int] = {}
    slowest = 0.0
    for name, text in documents():
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        out, err = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        try:
            with deadline(10), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(["validate", str(path)])
        except Exception as exc:  # noqa: BLE001 - report which document broke it
            pytest.fail(f"{name}: {type(exc).__name__}: {exc}\n--- document ---\n{text[:800]}")
        slowest = max(slowest, time.perf_counter() - t0)
        codes[rc] = codes.get(rc, 0) + 1
        assert rc in (0, 2), f"{name}: exit {rc}\n{err.getvalue()}"
        if rc == 2:
            lines = err.getvalue().splitlines()
            assert lines and not lines[0].startswith(" "), name
            for ln in lines[1:]:
                assert PROBLEM.match(ln), f"{name}: unlocated line {ln!r}"
    assert codes.get(2, 0) > len(documents()) // 2, codes  # most mutations are errors
    assert slowest < 10
    print(f"exit codes {codes}, slowest {slowest:.2f} s")
