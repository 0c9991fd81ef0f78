"""The student interface: kinds by name, the capabilities each declares (unit kinds, lm-eval,
options, switches; refused by validate where not), training through the kind's objective, and a
causal LM answering label and generated units through it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import harness.units as unit_kinds
from harness.cli import main
from harness.experiment.student import student_model
from harness.students import base as students
from harness.students.causal_lm import CausalLMStudent
from harness.students.classifier import ClassifierStudent
from harness.train.objective import SWITCHES
from tests.helpers import tiny_samples
from tests.helpers.cell_spec import cell_spec

CPU = torch.device("cpu")
UNITS = {"route": {"kind": "label", "labels": ["billing", "shipping"]},
         "esc": {"kind": "refusal", "marker": "ESCALATE"}}


def test_kinds_are_registered_by_name_with_a_did_you_mean():
    assert students.names() == ["causal_lm", "classifier"]
    assert students.get("causal_lm") is CausalLMStudent
    assert students.get("classifier") is ClassifierStudent
    with pytest.raises(KeyError, match="did you mean 'classifier'"):
        students.get("clasifier")


def test_each_kind_declares_the_switches_its_objective_honours():
    assert CausalLMStudent.switches() == frozenset(SWITCHES)
    assert ClassifierStudent.switches() == frozenset()
    assert students.unsupported_switches("causal_lm", dict.fromkeys(SWITCHES, True)) == []
    assert students.unsupported_switches(
        "classifier", {"packing": True, "chunked_ce": False, "compile": True}) == [
        "packing", "compile"]


def test_each_kind_answers_the_capability_questions():
    lm, cls = students.get("causal_lm"), students.get("classifier")
    assert lm.answered_unit_kinds() == unit_kinds.names()
    assert cls.answered_unit_kinds() == unit_kinds.classifier_kinds() == ("label", "refusal")
    assert not cls.answers_unit_kind("json_fields") and cls.answers_unit_kind("refusal")
    assert (lm.lm_eval, cls.lm_eval) == (True, False)
    assert (lm.token_soft_labels, cls.token_soft_labels) == (True, False)
    assert (lm.fast_path(), cls.fast_path()) == (True, False)
    assert lm.options() == {"config", "adapter", "distill"}
    assert cls.options() == {"soft_targets", "head_lr", "pooling"}
    assert students.names_where(lambda k: "adapter" in k.options()) == ["causal_lm"]
    assert students.names_where(lambda k: k.answers_unit_kind("label")) == [
        "causal_lm", "classifier"]
    assert student_model(students.DEFAULT_KIND).model_fields["kind"].default == (
        students.DEFAULT_KIND)


def test_the_registry_imports_no_kind():
    """The built-in kinds import base to register themselves; the package's __init__ imports
    them, so base importing them back (a circle) is never needed. (It names the options
    models' base for type checkers only: the worker imports base, never pydantic.)"""
    import ast

    tree = ast.parse(Path(students.__file__).read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.startswith("harness.students")
                and m != "harness.students.options"], imported
    assert students.names() == ["causal_lm", "classifier"]  # registered all the same


def test_each_kind_owns_the_model_of_its_student_section():
    from harness.students.options import StudentOptions

    common = {"kind", "model", "trust_remote_code", "train"}
    assert set(StudentOptions.model_fields) == common
    for name in students.names():
        kind = students.get(name)
        model = kind.options_model()
        assert issubclass(model, StudentOptions), name
        assert model.model_validate({"kind": name, "model": "/m"}).kind == name
        assert kind.options() == set(model.model_fields) - common, name
        # every other kind's option that this one refuses comes with why
        others = set().union(*(students.get(n).options() for n in students.names()
                               if n != name)) - kind.options()
        assert others <= set(kind.why_not), (name, others - set(kind.why_not))


def test_a_section_validates_with_its_kinds_model_and_older_records_read_back():
    from pydantic import TypeAdapter

    from harness.experiment.student import StudentSpec
    from harness.students.options import CausalLMOptions, ClassifierOptions

    section = TypeAdapter(StudentSpec)
    assert type(section.validate_python({"model": "/m"})) is CausalLMOptions
    assert type(section.validate_python({"kind": "classifier", "model": "/m",
                                         "pooling": "mean"})) is ClassifierOptions
    # A run record written when one flat model held every kind's options carries them all at
    # their unset values: it reads back (the analysis validates run.json's spec).
    flat = {"kind": "causal_lm", "model": "/m", "adapter": None, "config": None,
            "trust_remote_code": False, "soft_targets": False, "head_lr": None,
            "pooling": None, "distill": None}
    assert section.validate_python(flat).model_dump(exclude={"train"}) == {
        "kind": "causal_lm", "model": Path("/m"), "trust_remote_code": False, "config": None,
        "adapter": None, "distill": None}
    flat_classifier = {**flat, "kind": "classifier", "soft_targets": True}
    assert section.validate_python(flat_classifier).soft_targets is True
    # Set, another kind's option is refused with the kinds that take it.
    with pytest.raises(ValueError, match="does not take pooling .*use kind: classifier"):
        section.validate_python({**flat, "pooling": "mean"})


def test_a_cell_keeps_the_effective_student_it_had_with_one_flat_model():
    """Cell ids hash the effective spec: each kind's dump holds every key (and value) the one
    flat ``student:`` model wrote before each kind got its own (golden dumps of that model)."""
    from pydantic import TypeAdapter

    from harness.experiment.student import StudentSpec

    train = {"batch_size": 32, "chunked_ce": False, "clip": 1.0, "compile": False,
             "epochs": 3.0, "grad_accum": 1, "lr": 0.0003, "max_len": 256, "min_steps": 0,
             "packing": False, "warmup_ratio": 0.05, "weight_decay": 0.0}
    section = TypeAdapter(StudentSpec)
    causal = section.validate_python({"model": "/m", "adapter": {"r": 4}})
    assert causal.cell_dump() == {
        "kind": "causal_lm", "model": "/m", "config": None, "trust_remote_code": False,
        "soft_targets": False, "head_lr": None, "distill": None, "train": train,
        "adapter": {"kind": "lora", "r": 4, "alpha": 32.0, "dropout": 0.05,
                    "target_modules": "all-linear"}}
    classifier = section.validate_python({"kind": "classifier", "model": "/m"})
    assert classifier.cell_dump() == {
        "kind": "classifier", "model": "/m", "config": None, "trust_remote_code": False,
        "soft_targets": False, "head_lr": None, "distill": None, "train": train}


OPTION_VALUES = {"config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300},
                 "adapter": {"r": 4}, "distill": {"teacher_model": "TEACHER"},
                 "soft_targets": True, "head_lr": 0.01, "pooling": "mean"}


@pytest.mark.parametrize("kind, option", [(k, o) for k in ("causal_lm", "classifier")
                                          for o in OPTION_VALUES])
def test_validate_refuses_exactly_the_options_a_kind_does_not_honour(tiny, tmp_path, capsys,
                                                                      kind, option):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    value = OPTION_VALUES[option]
    if option == "distill":
        (tmp_path / "teacher").mkdir()
        value = {"teacher_model": str(tmp_path / "teacher")}
    samples = [s for s in tiny_samples() if s["unit"] in UNITS]
    student = {"kind": kind, "model": str(folder), option: value}
    path = tiny(spec={"units": UNITS, "student": student}, samples=samples)
    honoured = option in students.get(kind).options()
    code = main(["validate", str(path)])
    err = capsys.readouterr().err
    if honoured:  # refused for a reason other than the kind, if at all (the empty checkpoint)
        assert f"a {kind} student does not take" not in err
    else:
        assert code == 2 and "Traceback" not in err, err
        assert f"student.{option}: a {kind} student does not take {option} (" in err, err


def test_training_goes_through_the_kinds_objective(monkeypatch):
    """The worker's call (StudentKind.train) builds the kind's objective and hands it to the
    shared loop: what a test injects in the objective reaches training."""
    from harness.train import loop

    spec = cell_spec({"kind": "causal_lm",
                      "config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300,
                                 "max_position": 64},
                      "train": {"max_len": 64, "epochs": 1, "min_steps": 0, "batch_size": 4,
                                "grad_accum": 1, "lr": 1e-3, "weight_decay": 0.0,
                                "warmup_ratio": 0.0, "clip": 1.0}},
                     evaluation={"max_new_tokens": 3})
    samples = [{"prompt": f"ticket {i} refund", "target": "ANSWER: billing", "weight": 1.0}
               for i in range(8)]
    student = students.get("causal_lm")(spec, {})
    student.build(samples, seed=0)
    made, seen = [], []
    real_objective, real_run = CausalLMStudent.objective, loop.run

    def objective(self, rows):
        made.append(real_objective(self, rows))
        return made[-1]

    def run(model, obj, cfg, **kw):
        seen.append(obj)
        return real_run(model, obj, cfg, **kw)

    monkeypatch.setattr(CausalLMStudent, "objective", objective)
    monkeypatch.setattr(loop, "run", run)
    summary = student.train(samples, seed=0, device=CPU)
    assert len(made) == 1 and seen == made
    assert summary["steps"] == 2 and summary["examples"] == 8


def _classifier_yaml(tiny, tmp_path: Path, **train: object) -> Path:
    encoder = tmp_path / "encoder"
    encoder.mkdir(exist_ok=True)
    samples = [s for s in tiny_samples() if s["unit"] in UNITS]
    return tiny(spec={"units": UNITS, "student": {"kind": "classifier", "model": str(encoder),
                                                  "train": {"max_len": 32, **train}}},
                samples=samples)


@pytest.mark.parametrize("switch", SWITCHES)
def test_validate_refuses_a_switch_the_classifier_cannot_honour(tiny, tmp_path, capsys, switch):
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path))]) == 0
    capsys.readouterr()
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, **{switch: True}))]) == 2
    err = capsys.readouterr().err
    assert f"student.train.{switch}" in err and "classifier student cannot honour" in err
    assert "Traceback" not in err


def test_validate_locates_a_classifier_packing_switch_in_the_yaml(tiny, tmp_path, capsys):
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, packing=True))]) == 2
    err = capsys.readouterr().err
    assert "exp.yaml" in err and "student.train.packing" in err


def test_validate_refuses_fast_on_where_the_objective_has_no_fast_path(tiny, tmp_path, capsys):
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, fast="auto"))]) == 0
    capsys.readouterr()
    assert main(["validate", str(_classifier_yaml(tiny, tmp_path, fast="on"))]) == 2
    err = capsys.readouterr().err
    assert "student.train.fast" in err and "no fast training path" in err
    assert "Traceback" not in err


def test_a_causal_lm_scores_label_units_and_generates_the_others(tmp_path):
    spec = cell_spec({"kind": "causal_lm",
                      "config": {"layers": 1, "hidden": 32, "heads": 2, "vocab": 300,
                                 "max_position": 64},
                      "train": {"max_len": 64}},
                     evaluation={"max_new_tokens": 3})
    samples = [{"prompt": f"ticket {i} refund", "target": "ANSWER: billing", "weight": 1.0}
               for i in range(8)]
    student = students.get("causal_lm")(spec, {})
    student.build(samples, seed=0)
    assert student.objective(samples).lengths() == [
        len(student.tokenizer(s["prompt"] + "\n")["input_ids"])
        + len(student.tokenizer(s["target"])["input_ids"]) + 1 for s in samples]
    prompts = ["refund my money", "parcel late", "where is it"]
    label = {"kind": "label", "labels": ["billing", "shipping"], "answer_marker": "ANSWER:"}
    scored = student.answer("route", label, prompts, CPU)
    assert scored.calibrated and scored.probs.shape == (3, 2)
    assert scored.answers == [["billing", "shipping"][j] for j in scored.probs.argmax(axis=1)]
    assert scored.texts == [f"ANSWER: {a}" for a in scored.answers]
    generated = student.answer("note", {"kind": "text", "answer_marker": "ANSWER:"}, prompts,
                               CPU)
    assert generated.probs is None and not generated.calibrated
    assert len(generated.texts) == len(generated.answers) == 3
    student.save(tmp_path / "model")
    lat = student.latency(prompts, CPU, runs=1, batch_size=2, new_tokens=2,
                          checkpoint_dir=tmp_path / "model")
    assert lat["latency_p50_ms"] > 0 and lat["checkpoint_mb"] > 0
    assert lat["conditions"]["new_tokens"] == 2


def test_init_std_sets_the_initialisation_and_unset_keeps_the_transformers_default():
    from harness.students.build import build_from_config, train_tokenizer

    tok = train_tokenizer(["order 88213 refund", "Answer: billing"] * 4, 280)
    config = {"layers": 1, "hidden": 64, "heads": 2, "max_position": 32}
    default = build_from_config(config, tok, seed=0)
    wide = build_from_config({**config, "init_std": 0.06}, tok, seed=0)
    assert default.config.initializer_range == 0.02 and wide.config.initializer_range == 0.06
    for model, std in ((default, 0.02), (wide, 0.06)):
        weight = model.model.layers[0].mlp.up_proj.weight  # (intermediate, hidden)
        assert float(weight.detach().std()) == pytest.approx(std, rel=0.05)


#: String constants equal to a built-in kind's name outside harness/students/, each with why it
#: is not a test of the student kind by name.
NOT_A_KIND_TEST = {
    "store/cell_spec.py": "the manifest's default kind (the data contract: a manifest from before "
                          "the key existed is a causal LM's); DEFAULT_KIND reads it",
    "train/objectives/causal_lm.py": "the objective's own name",
    "train/objectives/classifier.py": "the objective's own name",
    "class_layout.py": "transformers' names of a classification head's modules",
}


def test_no_module_outside_the_student_kinds_names_a_kind():
    """Everything outside ``harness/students/`` asks a kind what it can do: no string constant
    there is a built-in kind's name (``kind == "classifier"``, ``{"student": "causal_lm"}``)."""
    import ast

    root = Path(students.__file__).resolve().parents[1]
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("students/") or rel in NOT_A_KIND_TEST:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef
                                    | ast.AsyncFunctionDef)
                      and n.body and isinstance(n.body[0], ast.Expr)}
        found += [f"{rel}:{n.lineno} {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and n.value in students.names()
                  and id(n) not in docstrings]
    assert not found, found
