"""Typed cell specs for tests that build a student without composing a cell: a partial
``student`` section filled to a valid :class:`~harness.store.cell_spec.CellSpec`, read through
the record as a manifest's would be."""

from __future__ import annotations

from typing import Any

from harness.store.cell_spec import CellSpec, StudentPart

#: ``student.train`` keys a manifest always carries, at small values for a CPU test.
TRAIN: dict[str, Any] = {"epochs": 1.0, "batch_size": 4, "grad_accum": 1, "lr": 1e-3,
                         "weight_decay": 0.0, "warmup_ratio": 0.0, "clip": 1.0, "max_len": 64}


def student_json(student: dict[str, Any]) -> dict[str, Any]:
    """``student`` with ``model`` and ``config`` (None unless given) and the :data:`TRAIN` keys it
    does not set."""
    return {"model": None, "config": None, **student,
            "train": {**TRAIN, **student.get("train", {})}}


def student_part(student: dict[str, Any]) -> StudentPart:
    """The :class:`StudentPart` of a partial ``student`` section (:func:`student_json`)."""
    return StudentPart.from_json(student_json(student), "test", path="spec.student")


def cell_spec(student: dict[str, Any], *, units: dict[str, Any] | None = None,
              evaluation: dict[str, Any] | None = None,
              fields: dict[str, Any] | None = None, seed: int = 0) -> CellSpec:
    """A cell's spec around a partial ``student`` section; the sections a student does not read
    are placeholders."""
    return CellSpec.from_json({
        "compose_version": 1, "experiment": "test",
        "bucket": {"name": "b"}, "fields": {"name": "f", **(fields or {})},
        "scale": 1.0, "seed": seed, "units": units or {}, "student": student_json(student),
        "sampling": {}, "evaluation": evaluation or {}, "data": {}}, "test", path="spec")
