"""Hostile experiment YAMLs (issue 16's probe), as text built from the tiny experiment.

Shared by ``tests/spec/test_hostile_yaml.py`` (each named case) and
``tests/reliability/test_hostile_yaml_generator.py`` (random mutations plus these).
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from typing import Any

import yaml

from tests.helpers.tiny import BASE_SPEC

BASE = yaml.safe_dump(BASE_SPEC, sort_keys=False)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging) when the block runs longer than ``seconds``."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def doc(**changes: Any) -> str:
    """The tiny experiment with top-level keys replaced, as YAML."""
    d = json.loads(json.dumps(BASE_SPEC))
    d.update(changes)
    return yaml.safe_dump(d, sort_keys=False)


def laughs(levels: int, width: int, key: str = "lol") -> str:
    """A billion-laughs bomb under ``key``: level i lists ``width`` aliases of level i-1."""
    lines = [f"{key}:", "  a0: &a0 [x]"]
    for i in range(1, levels + 1):
        lines.append(f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return BASE + "\n".join(lines) + "\n"


def laughs_in(field_yaml: str) -> str:
    """A 10^6 bomb whose last level is used as a field's value (``field_yaml`` holds ``*top``)."""
    anchors = ["a0: &a0 lol"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 7)]
    return "\n".join(anchors) + "\n" + BASE.replace("name: tiny\n", "name: tiny\n" + field_yaml)


def merge_bomb(levels: int = 8, width: int = 10) -> str:
    lines = ["x:", "  m0: &m0 {k0: 1}"]
    for i in range(1, levels + 1):
        lines.append(f"  m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * width)
                     + f"], k{i}: 1}}")
    return BASE + "\n".join(lines) + "\n"


def flow(depth: int) -> str:
    return BASE + "x: " + "[" * depth + "]" * depth + "\n"


def template(source: str) -> str:
    """The tiny experiment with unit ``route``'s template set to ``source``."""
    d = json.loads(json.dumps(BASE_SPEC))
    d["units"]["route"]["template"] = source
    return yaml.safe_dump(d, sort_keys=False, width=10**9)


#: name -> YAML text; each must give exit 2 quickly with a located message.
BOMBS: dict[str, str] = {
    **{f"laughs_{lv}x{w}": laughs(lv, w) for lv, w in
       ((9, 10), (8, 12), (20, 4), (30, 3), (33, 3), (10, 9), (6, 16))},
    "laughs_description": laughs_in("description: *a6\n"),
    "laughs_seeds": laughs_in("").replace("seeds:\n- 0\n", "seeds: *a6\n"),
    "laughs_slices": laughs_in("evaluation: {slices: *a6}\n"),
    "laughs_teachers": laughs_in("").replace("teachers:\n    - a\n", "teachers: *a6\n"),
    "merge_bomb": merge_bomb(),
    "flow_5000": flow(5_000),
    "flow_20000": flow(20_000),
    "flow_100000": flow(100_000),
    "block_3000": BASE + "x:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(3000))
    + " " * 3001 + "v: 1\n",
    "recursive_alias": BASE + "x: &a [*a]\n",
}

#: name -> YAML text with a tag on a scalar it cannot read.
TAGS: dict[str, str] = {
    "int_name": BASE.replace("name: tiny", "name: !!int abc"),
    "float_description": BASE + "description: !!float x\n",
    "bool_unknown_key": BASE + "nope: !!bool maybe\n",
    "timestamp_junk": BASE + "description: !!timestamp junk\n",
    "timestamp_month": BASE + "description: !!timestamp 2020-13-45\n",
    "binary_junk": BASE + "description: !!binary 'abc'\n",
    "int_teacher": BASE.replace("teachers:\n    - a\n", "teachers:\n    - !!int a\n"),
    "int_5000_digits": BASE.replace("seeds:\n- 0\n", "seeds:\n- " + "9" * 5000 + "\n"),
    "float_lr": BASE.replace("student:\n", "student:\n  lr: !!float fast\n"),
}

#: name -> (YAML text, the dotted field the problem names).
PATHS: dict[str, tuple[str, str]] = {
    "nul_samples": (BASE.replace("samples: samples.jsonl", 'samples: "a\\0b.jsonl"'),
                    "data.samples"),
    "nul_eval": (BASE.replace("eval: eval.jsonl", 'eval: "e\\0.jsonl"'), "data.eval"),
    "nul_model": (doc(student={"model": "m\x00x"}), "student.model"),
    "nul_teacher_model": (BASE.replace("student:\n",
                                       'student:\n  distill: {teacher_model: "t\\0"}\n'),
                          "student.distill.teacher_model"),
    "no_such_user": (BASE.replace("samples: samples.jsonl", "samples: ~nosuchuser_h16/x.jsonl"),
                     "data.samples"),
    "path_5000": (BASE.replace("samples: samples.jsonl",
                               "samples: " + "/".join(["abcd"] * 1000) + ".jsonl"),
                  "data.samples"),
    "component_300": (BASE.replace("samples: samples.jsonl", "samples: " + "a" * 300 + ".jsonl"),
                      "data.samples"),
    "path_100000": (BASE.replace("eval: eval.jsonl", "eval: " + "e" * 100_000), "data.eval"),
    "device_samples": (BASE.replace("samples: samples.jsonl", "samples: /dev/zero"),
                       "data.samples"),
    "folder_eval": (BASE.replace("eval: eval.jsonl", "eval: /tmp"), "data.eval"),
}

#: name -> template source that works for its own sake.
TEMPLATES: dict[str, str] = {
    "repeat_1e9": "{{ marker }} {{ final }}{{ 'x' * 1000000000 }}",
    "nested_range": "{{ marker }} {{ final }}{% for i in range(100000) %}"
                    "{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested_if_3000": "{{ marker }} {{ final }}" + "{% if 1 %}" * 3000 + "{% endif %}" * 3000,
    "parens_3000": "{{ marker }} {{ final }}{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
    "center_1e9": "{{ marker }} {{ final }}{{ final.center(1000000000) }}",
    "percent_width": "{{ marker }} {{ final }}{{ '%999999999d' % 1 }}",
    "format_width": "{{ marker }} {{ final }}{{ '{:>999999999}'.format(1) }}",
    "format_filter": "{{ marker }} {{ final }}{{ '%999999999d' | format(1) }}",
    "pow": "{{ marker }} {{ final }}{{ 2 ** 100000 }}",
    "doubling_concat": "{% set x = 'xxxxxxxxxx' %}" + "{% set x = x ~ x %}" * 40
                       + "{{ marker }} {{ final }}",
    "doubling_plus": "{% set x = 'xxxxxxxxxx' %}" + "{% set x = x + x %}" * 40
                     + "{{ marker }} {{ final }}",
    "macro_fanout": "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}"
                    "{{ marker }} {{ final }}{{ f(1) }}",
    "recursive_loop": "{{ marker }} {{ final }}{% for x in [1] recursive %}"
                      "{{ loop([1, 1]) }}{% endfor %}",
    "silent_loops": "{{ marker }} {{ final }}{% for c in 'x' * 90000 %}"
                    "{% for d in 'y' * 90000 %}{% endfor %}{% endfor %}",
}


def large_documents() -> dict[str, str]:
    """Large but legal documents (built on demand: ~15 MB of text in all)."""
    d10k = json.loads(json.dumps(BASE_SPEC))
    for i in range(10_000):
        d10k["units"][f"u{i}"] = {"kind": "label", "labels": ["x", "y"]}
    fact = json.loads(json.dumps(BASE_SPEC))
    fact["buckets"] = {f"b{i}": {"teachers": ["a"], "select": "all"} for i in range(60)}
    fact["fields"] = {f"f{i}": {} for i in range(60)}
    fact["scale"] = [round(0.1 * (i + 1), 1) for i in range(10)]
    fact["seeds"] = list(range(10))
    fact["baseline"] = {"bucket": "b0", "fields": "f0"}
    return {
        "description_10mb": BASE + "description: " + "x" * 10_000_000 + "\n",
        "unknown_keys_100k": BASE + "".join(f"k{i}: 1\n" for i in range(100_000)),
        "seeds_200k": doc(seeds=list(range(200_000))),
        "units_10k": yaml.safe_dump(d10k, sort_keys=False),
        "factorial_360k": yaml.safe_dump(fact, sort_keys=False),
    }
