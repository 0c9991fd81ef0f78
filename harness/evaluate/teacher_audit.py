"""The teacher audit: the teachers' own answers to the eval items, scored like a student's.

``teacher_audit.json`` in the run folder; the analysis compares students with it (chance rows,
fallback rates) and the report shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.evaluate.units import PER_ITEM, teacher_audit
from harness.store.folder import RunFolder


def audit_teachers(exp: Mapping[str, Any], rows: Sequence[dict[str, Any]]
                   ) -> dict[str, Any]:
    """Each teacher's recorded eval answers scored per unit, with stated-confidence calibration:
    unit -> teacher -> report (per-item parts left out).

    Args:
        exp: the experiment's settings as JSON (its ``units`` and ``evaluation.slices``).
        rows: the eval items with their teachers' candidates (a composed cell's eval file).
    """
    out = {}
    slices = exp["evaluation"]["slices"]
    for name, unit in exp["units"].items():
        items = [r for r in rows if r["unit"] == name]
        audit = teacher_audit(unit, items, slices)
        for rep in audit.values():
            for key in PER_ITEM:
                rep.pop(key, None)
        out[name] = audit
    return out


def audit_run(exp: Mapping[str, Any], run: RunFolder, cell_ids: Sequence[str]
              ) -> dict[str, Any]:
    """:func:`audit_teachers` on the eval set of the first composed cell among ``cell_ids`` (they
    all carry the same one); {} when none is composed."""
    for cell_id in cell_ids:
        folder = run.cell(cell_id)
        if folder.eval.is_file():
            return audit_teachers(exp, folder.read_eval())
    return {}
