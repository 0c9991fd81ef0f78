"""The manifest's typed cell spec: every effective spec the shipped experiments produce reads
and writes back as the same JSON (so the same cell id); a manifest from before newer keys
existed reads them as their defaults and writes them absent again; a key that is neither
there nor defaulted, unknown or mistyped is a located error."""

from __future__ import annotations

import copy
import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest

from harness.experiment import parse_experiment
from harness.matrix import build_cells, hash_spec
from harness.store.cell_spec import CellSpec, EvaluationPart, StudentPart, TrainPart
from harness.store.contracts import CellManifest, ContractError
from harness.store.record import ABSENT
from tests.store.test_contracts import MANIFEST

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))
HASHES = {"samples": "s" * 64, "eval": "e" * 64}

#: A manifest's spec as compose wrote it before student kinds, the performance switches and the
#: later evaluation settings existed: none of those keys.
OLD_SPEC: dict[str, Any] = {
    "compose_version": 1, "experiment": "demo",
    "bucket": {"name": "judged", "select": "judge_winner"},
    "fields": {"name": "answer_only", "confidence": "none"}, "scale": 1.0, "seed": 0,
    "units": {"route": {"kind": "label", "labels": ["a", "b"], "answer_marker": "Answer:"}},
    "student": {"model": None,
                "config": {"arch": "llama", "layers": 2, "hidden": 64, "heads": 2,
                           "vocab": 512, "max_position": 128},
                "train": {"epochs": 3.0, "batch_size": 8, "grad_accum": 1, "lr": 0.001,
                          "weight_decay": 0.0, "warmup_ratio": 0.05, "clip": 1.0,
                          "max_len": 128}},
    "sampling": {"seed": 0, "dedup": True}, "evaluation": {"slices": ["source"]},
    "data": {"samples_sha256": "ab", "eval_sha256": "cd"},
}


def _json_names(record: type) -> list[str]:
    return [f.name for f in fields(record) if f.name != ABSENT]


def _effective_specs() -> list[tuple[str, dict[str, Any], str]]:
    out = []
    for path in EXPERIMENTS:
        parsed = parse_experiment(path)
        assert parsed.spec is not None, path
        out += [(f"{path.name} {c.label}", c.effective, c.cell_id)
                for c in build_cells(parsed.spec, HASHES)]
    return out


def test_every_shipped_cell_spec_round_trips_with_its_id():
    specs = _effective_specs()
    assert len(specs) > 100 and len(EXPERIMENTS) >= 10
    for name, effective, cell_id in specs:
        written = CellSpec.from_json(copy.deepcopy(effective), name).to_json()
        # the same keys in the same order, the same values and types: the same bytes
        assert json.dumps(written) == json.dumps(effective), name
        assert hash_spec(written) == cell_id, name


def test_shipped_specs_cover_the_keys_left_out_while_unset():
    """The round trip above sees specs with and without each key an effective spec drops."""
    students = [e["student"] for _, e, _ in _effective_specs()]
    for key in ("pooling", "adapter"):
        assert any(key in s for s in students) and any(key not in s for s in students), key
    assert any(s["model"] for s in students) and any(s["config"] for s in students)


def test_an_old_spec_reads_the_defaults_and_writes_its_keys_absent():
    spec = CellSpec.from_json(copy.deepcopy(OLD_SPEC), "old/manifest.json", path="spec")
    assert spec.to_json() == OLD_SPEC
    assert json.dumps(spec.to_json()) == json.dumps(OLD_SPEC)
    student, train = spec.student, spec.student.train
    assert student.kind == "causal_lm" and student.trust_remote_code is False
    assert student.soft_targets is False and student.head_lr is None
    assert student.pooling is None and student.adapter is None and student.distill is None
    assert train.min_steps == 0 and not (train.packing or train.chunked_ce or train.compile)
    assert train.fast is None and train.token_budget is None and train.max_len == 128
    assert spec.evaluation.slices == ["source"] and spec.evaluation == EvaluationPart(
        absent=spec.evaluation.absent)  # every other evaluation key: its default
    assert spec.evaluation.max_new_tokens == 64
    assert student.absent == StudentPart.DEFAULTED
    assert train.absent == TrainPart.DEFAULTED


def test_an_old_manifest_loads_and_writes_back_the_same_bytes(tmp_path):
    from harness.store.folder import CellFolder

    folder = CellFolder(tmp_path / "cell")
    folder.path.mkdir()
    text = json.dumps({**MANIFEST, "spec": OLD_SPEC}, indent=2, sort_keys=True) + "\n"
    folder.manifest.write_text(text)
    manifest = folder.read_manifest()
    assert manifest.spec.student.kind == "causal_lm"
    folder.write_manifest(manifest)
    assert folder.manifest.read_text() == text


def test_absent_and_null_stay_apart():
    """A key written as null (a current manifest's head_lr) is not an absent one (an older
    manifest's), and neither turns into the other on writing."""
    null = copy.deepcopy(OLD_SPEC)
    null["student"].update(head_lr=None, distill=None, soft_targets=False)
    written = CellSpec.from_json(null, "m.json").to_json()
    assert written["student"]["head_lr"] is None and "head_lr" in written["student"]
    assert "head_lr" not in CellSpec.from_json(copy.deepcopy(OLD_SPEC), "m.json").to_json()[
        "student"]


def test_a_spec_built_in_code_writes_every_key():
    train = TrainPart(epochs=1.0, batch_size=2, grad_accum=1, lr=0.1, weight_decay=0.0,
                      warmup_ratio=0.0, clip=1.0, max_len=16)
    # every key but the loop's own options, which are written only when given
    assert list(train.to_json()) == [n for n in _json_names(TrainPart)
                                     if n not in TrainPart.LOOP_ONLY]
    given = TrainPart(epochs=1.0, batch_size=2, grad_accum=1, lr=0.1, weight_decay=0.0,
                      warmup_ratio=0.0, clip=1.0, max_len=16, compile_budget_s=None,
                      absent=frozenset(TrainPart.LOOP_ONLY) - {"compile_budget_s"})
    assert given.to_json()["compile_budget_s"] is None  # null given: no deadline


def test_a_benchmarks_loop_switch_in_a_manifest_reads_and_writes_back():
    spec = copy.deepcopy(OLD_SPEC)
    spec["student"]["train"].update(compile_backend="aot_eager", compile_budget_s=None)
    part = CellSpec.from_json(spec, "m.json").student.train
    assert part.compile_backend == "aot_eager" and part.compile_budget_s is None
    assert CellSpec.from_json(spec, "m.json").to_json() == spec


@pytest.mark.parametrize(("where", "edit", "wanted"), [
    ("spec.student.train.epochs", lambda s: s["student"]["train"].pop("epochs"), "missing"),
    ("spec.student.model", lambda s: s["student"].pop("model"), "missing"),
    ("spec.units", lambda s: s.pop("units"), "missing"),
    ("spec.student.train.lr", lambda s: s["student"]["train"].update(lr="0.1"), "a number"),
    ("spec.student.kind", lambda s: s["student"].update(kind=None), "a string"),
    ("spec.evaluation.max_new_tokens", lambda s: s["evaluation"].update(max_new_tokens=1.5),
     "an integer"),
    ("spec.student.pooling_", lambda s: s["student"].update(pooling_="mean"), "unknown key"),
    ("spec.evaluation.slice", lambda s: s["evaluation"].update(slice=[]), "unknown key"),
])
def test_a_broken_spec_is_a_located_error(where, edit, wanted):
    spec = copy.deepcopy(OLD_SPEC)
    edit(spec)
    with pytest.raises(ContractError) as info:
        CellManifest.from_json({**MANIFEST, "spec": spec}, "cell/manifest.json")
    assert info.value.key == where and wanted in str(info.value)
    assert "cell/manifest.json" in str(info.value)


@pytest.mark.parametrize("record", [TrainPart, StudentPart, EvaluationPart])
def test_the_defaulted_keys_are_the_fields_with_defaults(record):
    """A key may be absent exactly where the record says what it then means."""
    with_default = {f.name for f in fields(record) if f.name != ABSENT
                    and (f.default is not MISSING or f.default_factory is not MISSING)}
    assert with_default == record.DEFAULTED
