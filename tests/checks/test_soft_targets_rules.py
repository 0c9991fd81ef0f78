"""``validate`` of ``soft_targets: topk`` field sets (issue 24 item 4): the student it needs
(a pretrained causal LM, no ``distill``, not the fast path), soft labels to train on, and the
teacher's tokenizer, compared with the student's by identity ("when tokenizers differ, validate
says so"). Each refusal is located; a well-formed topk experiment passes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.checks import check_data_fit, load_experiment
from harness.errors import InputError
from harness.samples import load_data
from tests.helpers import tiny_samples

#: Field sets of the tiny experiment with a topk arm beside the hard baseline.
TOPK_FIELDS = {"answer_only": {}, "soft": {"soft_targets": "topk", "soft_weight": 0.7}}


def _errors(path: Path) -> str:
    with pytest.raises(InputError) as exc:
        load_experiment(path)
    return exc.value.render(cap=100)


def _fit_errors(path: Path) -> str:
    loaded = load_experiment(path)
    with pytest.raises(InputError) as exc:
        check_data_fit(loaded, load_data(loaded))
    return exc.value.render(cap=100)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A pretrained-student folder (a tiny Llama config and a byte-level BPE tokenizer; no
    weights: validate reads neither) and its tokenizer identity."""
    from transformers import LlamaConfig

    from harness.students.tokenizer import train_tokenizer
    from harness.teachers.soft_labels import tokenizer_identity

    folder = tmp_path_factory.mktemp("student")
    LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=64).save_pretrained(folder)
    tok = train_tokenizer(["billing shipping ESCALATE order 77 lookup_order"], 300)
    tok.save_pretrained(folder)
    return folder, tokenizer_identity(tok)


def _soft(tokenizer: str) -> dict[str, Any]:
    """Well-formed soft labels (the data contract's ``answer_logprobs``) in ``tokenizer``."""
    return {"tokenizer": tokenizer, "top_k": 2, "text": 'billing"}', "value_start": 0,
            "value_end": 7, "tokens": [
                {"id": 5, "text": "bill", "logprob": -0.1,
                 "top": [{"id": 5, "text": "bill", "logprob": -0.1},
                         {"id": 9, "text": "ship", "logprob": -2.5}]},
                {"id": 7, "text": 'ing"}', "logprob": -0.01,
                 "top": [{"id": 7, "text": 'ing"}', "logprob": -0.01}]}]}


def _samples(tokenizers: dict[str, str]) -> list[dict[str, Any]]:
    """The tiny samples with soft labels on every candidate of the teachers named, each in its
    tokenizer."""
    rows = tiny_samples()
    for rec in rows:
        for c in rec["candidates"]:
            if c["teacher"] in tokenizers:
                c["answer_logprobs"] = _soft(tokenizers[c["teacher"]])
    return rows


def _pretrained(folder: Path, **kw: Any) -> dict[str, Any]:
    return {"model": str(folder), **kw}


# --------------------------------------------------------------------------- experiment rules


def test_a_well_formed_topk_experiment_passes(tiny: Callable[..., Path],
                                              student_dir: tuple[Path, str]) -> None:
    folder, ident = student_dir
    path = tiny(spec={"fields": TOPK_FIELDS, "student": _pretrained(folder)},
                samples=_samples({"a": ident, "b": ident}))
    loaded = load_experiment(path)
    assert loaded.spec.fields["soft"].soft_targets == "topk"
    check_data_fit(loaded, load_data(loaded))  # raises nothing


def test_soft_weight_beside_hard_targets_is_not_flagged(tiny: Callable[..., Path]) -> None:
    path = tiny(spec={"fields": {"answer_only": {"soft_weight": 0.3}, "full": {}}})
    assert load_experiment(path).spec.fields["answer_only"].soft_targets == "hard"


def test_a_from_scratch_student_is_refused(tiny: Callable[..., Path]) -> None:
    text = _errors(tiny(spec={"fields": TOPK_FIELDS}))  # BASE_SPEC's student has a config
    assert ": fields.soft.soft_targets: soft_targets: topk needs a student sharing the " \
        "teacher's tokenizer: a from-scratch student (student.config) trains its own " \
        "tokenizer" in text
    assert "give student.model" in text and text.count("soft_targets") >= 2
    assert "answer_only" not in text  # a hard field set is not flagged


def test_a_classifier_student_is_refused(tiny: Callable[..., Path],
                                         student_dir: tuple[Path, str]) -> None:
    folder, _ = student_dir
    text = _errors(tiny(spec={"fields": TOPK_FIELDS,
                              "student": _pretrained(folder, kind="classifier")}))
    line = next(x for x in text.splitlines() if "fields.soft.soft_targets" in x)
    assert "need a causal_lm student: a classifier trains on the teacher's stated confidence" \
        in line and "student.soft_targets: true" in line
    assert text.count("fields.soft.soft_targets") == 1  # one refusal, not one per reason


def test_distill_is_refused(tiny: Callable[..., Path], student_dir: tuple[Path, str]) -> None:
    folder, _ = student_dir
    student = _pretrained(folder, distill={"teacher_model": str(folder)})
    text = _errors(tiny(spec={"fields": TOPK_FIELDS, "student": student}))
    assert ": fields.soft.soft_targets: soft_targets: topk and student.distill both set the " \
        "soft part of the loss" in text and "choose one" in text


def test_the_fast_path_is_refused(tiny: Callable[..., Path],
                                  student_dir: tuple[Path, str]) -> None:
    folder, _ = student_dir
    student = _pretrained(folder, train={"fast": "on"})
    text = _errors(tiny(spec={"fields": TOPK_FIELDS, "student": student}))
    assert ": fields.soft.soft_targets: soft_targets: topk needs the full logits" in text
    assert "use student.train.fast: auto (or off)" in text
    for fast in ("auto", "off"):
        ok = tiny(spec={"fields": TOPK_FIELDS, "student": _pretrained(folder,
                                                                      train={"fast": fast})})
        assert load_experiment(ok).spec.student.train.fast == fast


def test_every_topk_field_set_is_located(tiny: Callable[..., Path]) -> None:
    fields = {**TOPK_FIELDS, "soft_full": {"extends": "soft", "rationale": True}}
    text = _errors(tiny(spec={"fields": fields}))
    assert "fields.soft.soft_targets" in text and "fields.soft_full.soft_targets" in text


# --------------------------------------------------------------------------- data-fit rules


def test_no_soft_labels_is_refused(tiny: Callable[..., Path],
                                   student_dir: tuple[Path, str]) -> None:
    folder, _ = student_dir
    text = _fit_errors(tiny(spec={"fields": TOPK_FIELDS, "student": _pretrained(folder)}))
    assert ("exp.yaml: fields.soft.soft_targets: no candidate of teachers 'a', 'b' in "
            "samples.jsonl carries soft labels (answer_logprobs); set generate.soft_labels: "
            "{top_k: K} and generate again, or use soft_targets: hard") in text


def test_only_the_teachers_of_the_topk_cells_count(tiny: Callable[..., Path],
                                                   student_dir: tuple[Path, str]) -> None:
    # soft labels on b alone; the topk arm's cells draw on bucket single_a (teacher a) only
    folder, ident = student_dir
    spec = {"fields": TOPK_FIELDS, "student": _pretrained(folder),
            "buckets": {"single_a": {"teachers": ["a"], "select": "all"}}}
    text = _fit_errors(tiny(spec=spec, samples=_samples({"b": ident})))
    assert "fields.soft.soft_targets: no candidate of teacher 'a' in samples.jsonl" in text
    # a one_at_a_time design pairs topk only with its base bucket: b's foreign labels in the
    # other bucket's cells are never trained on, so nothing is flagged
    spec = {"fields": TOPK_FIELDS, "student": _pretrained(folder),
            "buckets": {"single_a": {"teachers": ["a"], "select": "all"},
                        "judged": {"select": "judge_winner"}},
            "design": {"kind": "one_at_a_time", "noise_seeds": [],
                       "base": {"bucket": "single_a", "fields": "answer_only"}}}
    loaded = load_experiment(tiny(spec=spec, samples=_samples({"a": ident, "b": "endpoint:m"})))
    check_data_fit(loaded, load_data(loaded))


def test_a_different_tokenizer_is_refused(tiny: Callable[..., Path],
                                          student_dir: tuple[Path, str]) -> None:
    folder, ident = student_dir
    other = "vocab-sha256:" + "ab" * 32
    text = _fit_errors(tiny(spec={"fields": TOPK_FIELDS, "student": _pretrained(folder)},
                            samples=_samples({"a": ident, "b": other})))
    line = next(x for x in text.splitlines() if "student.model" in x)
    assert line.strip() == (
        f"exp.yaml: student.model: teacher 'b' stored its soft labels in tokenizer "
        f"vocab-sha256:abababababab, the student's is {ident[:len('vocab-sha256:') + 12]}: "
        "soft labels are token ids of the teacher's vocabulary (soft_targets: topk in field "
        "set(s) 'soft'); use a student checkpoint with that tokenizer, or soft_targets: hard")
    assert "teacher 'a'" not in text  # a matches the student


def test_an_endpoint_teacher_never_matches(tiny: Callable[..., Path],
                                           student_dir: tuple[Path, str]) -> None:
    folder, ident = student_dir
    text = _fit_errors(tiny(spec={"fields": TOPK_FIELDS, "student": _pretrained(folder)},
                            samples=_samples({"a": "endpoint:gpt-x"})))
    assert ("exp.yaml: student.model: teacher 'a' stored its soft labels through an endpoint "
            "(endpoint:gpt-x), whose token ids are unknown") in text


def test_an_unloadable_tokenizer_is_a_problem_not_a_traceback(
        tiny: Callable[..., Path], tmp_path: Path) -> None:
    from transformers import LlamaConfig

    folder = tmp_path / "no_tokenizer"
    LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2).save_pretrained(folder)
    text = _fit_errors(tiny(spec={"fields": TOPK_FIELDS, "student": _pretrained(folder)},
                            samples=_samples({"a": "vocab-sha256:" + "0" * 64})))
    (line,) = [x for x in text.splitlines() if "student.model" in x]
    assert f"student.model: the student's tokenizer cannot be loaded from {folder} (" in line
    assert "Traceback" not in text and "cannot be compared" in line


def test_validate_without_topk_does_not_import_transformers(
        tiny: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # a None entry in sys.modules makes any `import transformers` raise ImportError
    monkeypatch.setitem(sys.modules, "transformers", None)  # type: ignore[arg-type]
    path = tiny(samples=_samples({"a": "vocab-sha256:" + "0" * 64}))
    loaded = load_experiment(path)
    check_data_fit(loaded, load_data(loaded))
