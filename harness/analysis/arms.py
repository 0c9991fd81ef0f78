"""Arms: a run's cells grouped by (bucket, fields, scale), one cell per training seed, and each
arm's per-item parts aligned on the eval items all its seeds share.

An arm is what attribution, training noise, chance, copying and selection reason about: a
verdict is about an arm (the mean over its seeds), never about one seed.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from harness.analysis.load import CellData, RunData

ArmKey = tuple[str, str, float]  # bucket, fields, scale


def arm_label(key: ArmKey) -> str:
    """``bucket/fields/x<scale>``, the name an arm goes by in every table."""
    return f"{key[0]}/{key[1]}/x{key[2]:g}"


def arms(run: RunData) -> dict[ArmKey, list[CellData]]:
    """Cells grouped by (bucket, fields, scale), seeds sorted."""
    out: dict[ArmKey, list[CellData]] = defaultdict(list)
    for c in run.cells:
        out[(c.axes["bucket"], c.axes["fields"], float(c.axes["scale"]))].append(c)
    for cells in out.values():
        cells.sort(key=lambda c: c.axes["seed"])
    return dict(out)


def aligned_parts(cells: list[CellData], unit: str, ids: list[str]) -> list[dict[str, np.ndarray]]:
    """Per seed, the unit's per-item parts reordered to ``ids``."""
    out = []
    for c in cells:
        ui = c.units[unit]
        pos = {i: k for k, i in enumerate(ui.ids)}
        order = np.array([pos[i] for i in ids])
        out.append({k: v[order] for k, v in ui.parts.items()})
    return out


def shared_ids(cells: list[CellData], unit: str) -> list[str]:
    """The unit's eval item ids every one of ``cells`` has, sorted (the pairing of a comparison)."""
    return sorted(set(cells[0].units[unit].ids).intersection(
        *(set(c.units[unit].ids) for c in cells)))


def reference_arm(run: RunData) -> ArmKey:
    """The arm one-factor effects are measured from: the one_at_a_time base, else the baseline."""
    base = run.experiment.design.base or run.experiment.baseline
    return (base.bucket, base.fields, float(base.scale))

