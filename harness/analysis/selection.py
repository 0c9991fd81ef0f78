"""Which arm the gate decides about, and how sure that choice is.

A cell is one training run of an arm (bucket, fields, scale); its seeds are noisy copies of one
another. Choosing the best *cell* picks the luckiest copy (the maximum of noisy draws), so the
gate chooses an *arm*, ranked on the mean over its seeds of the primary metric of every unit
that matters (``stop.units``, default all), preferring arms whose seed means meet
``gate.min_metric``.

The signals and the report need one cell to point at (its predictions, its latency, its ROI
row): the arm's *representative* is the seed whose own mean is nearest the arm's mean (ties:
the lowest seed), so it is a typical training run of the arm, not its best one.

The selection's uncertainty: 200 seeded resamples of the eval items (paired: every arm sees the
same items), each adding to every arm's value on every unit a draw of its retraining noise
(normal, the seed variance of the unit's primary metric at the arm's scale over its number of
seeds: :mod:`harness.analysis.noise`), so one-seed arms move as much as their training noise
says, not less than arms with several seeds; the share of resamples in which each arm would
have been chosen, among the arms the point estimate ranked with it (those meeting the
minimums, or every arm when none does). Arms tied in a resample share that resample's choice
equally, and arms tied on the point estimate are reported as a tie (``tied``): the choice among
them is the run order, not evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from harness.analysis.arms import ArmKey, arm_label, arms
from harness.analysis.load import CellData, RunData, primary, units_that_matter, value
from harness.analysis.noise import seed_noise, unit_tables
from harness.units import get
from harness.units.base import UnitKind

#: Resamples behind ``selection`` (eval items, and seeds where an arm has several).
SELECTION_RESAMPLES = 200
#: How the representative cell of the chosen arm is picked (recorded beside it).
REPRESENTATIVE = "the seed whose mean primary metric is nearest the arm's mean (ties: lowest seed)"


def arm_value(run: RunData, cells: list[CellData], unit: str, metric: str) -> float | None:
    """The arm's ``metric`` on ``unit``: the mean over its seeds that have a value (None if
    none has)."""
    vals = [v for c in cells if (v := value(run, c.cell_id, unit, metric)) is not None]
    return sum(vals) / len(vals) if vals else None


def _score(values: list[float | None]) -> float:
    """Mean over the units present (0 when none is)."""
    present = [v for v in values if v is not None]
    return sum(present) / max(1, len(present))


def _unmet(run: RunData, cells: list[CellData]) -> list[str]:
    """The arm's seed means that miss a ``gate.min_metric`` minimum, in words."""
    out = []
    for u, mins in run.experiment.gate.min_metric.items():
        for m, lo in mins.items():
            v = arm_value(run, cells, u, m)
            if v is None:
                out.append(f"{u}.{m}: missing")
            elif v < lo:
                out.append(f"{u}.{m} = {v:.3f} < {lo:g}")
    return out


def _representative(run: RunData, cells: list[CellData], units: list[str],
                    arm_mean: float) -> CellData:
    """The seed nearest the arm's mean (see :data:`REPRESENTATIVE`); cells sorted by seed."""
    # rounded: with two seeds both are equally near the mean up to float noise
    return min(cells, key=lambda c: (round(abs(_score(
        [value(run, c.cell_id, u, primary(run, u)) for u in units]) - arm_mean), 9),
        c.axes["seed"]))


ItemFn = Callable[[np.ndarray], float | None]


def _constant(whole: float | None) -> ItemFn:
    """A cell's whole-set value on any resample (no per-item parts to resample)."""
    def fn(idx: np.ndarray) -> float | None:
        return whole
    return fn


def _on_items(kind: UnitKind, parts: dict[str, np.ndarray]) -> ItemFn:
    """The primary metric on the resampled items ``idx`` (parts aligned to the shared ids)."""
    def fn(idx: np.ndarray) -> float | None:
        return kind.metric_from_items(kind.primary, parts, idx)
    return fn


def _item_fns(run: RunData, cells: list[CellData], unit: str
              ) -> tuple[int, dict[str, ItemFn]]:
    """(shared eval items n, cell id -> ``idx -> primary metric`` on those items) for one unit.

    Items are the ones every cell with the unit shares (paired resampling); a cell without the
    unit gives None, one whose predictions lack the primary's parts its whole-set value (no item
    noise for it, rather than no selection at all).
    """
    kind = get(run.experiment.units[unit].kind)
    have = [c for c in cells if unit in c.units]
    ids = sorted(set.intersection(*(set(c.units[unit].ids) for c in have))) if have else []
    with_unit = {c.cell_id for c in have}
    fns: dict[str, ItemFn] = {}
    for c in cells:
        whole = value(run, c.cell_id, unit, kind.primary)
        if c.cell_id not in with_unit or not ids:
            fns[c.cell_id] = _constant(whole)
            continue
        ui = c.units[unit]
        pos = {i: k for k, i in enumerate(ui.ids)}
        order = np.array([pos[i] for i in ids])
        parts = {k: v[order] for k, v in ui.parts.items()}
        try:
            kind.metric_from_items(kind.primary, parts, np.arange(1))
        except KeyError:
            fns[c.cell_id] = _constant(whole)
            continue
        fns[c.cell_id] = _on_items(kind, parts)
    return len(ids), fns


def selection_uncertainty(run: RunData, candidates: list[tuple[ArmKey, list[CellData]]],
                          units: list[str], n_resamples: int = SELECTION_RESAMPLES,
                          seed: int = 0, tied: list[str] | None = None) -> dict[str, Any]:
    """How often each candidate arm would be chosen under resampling.

    Args:
        candidates: the arms in the point estimate's order (the chosen one first).
        units: the units that matter.

    Returns:
        ``{"arm", "p_chosen", "runner_up", "p_runner_up", "n_resamples", "resampled",
        "tied"}``: ``p_chosen`` the share of resamples that choose the chosen arm (a resample's
        tie counts 1/t for each of its t tied arms); ``runner_up`` the other arm chosen most
        often (ties and never-chosen: the next by point estimate; None with a single candidate)
        and its share; ``tied`` the other arms with exactly the chosen arm's point estimate.
    """
    cells = [c for _, arm_cells in candidates for c in arm_cells]
    per_unit = {u: _item_fns(run, cells, u) for u in units}
    sds = _seed_sds(run, candidates, units)
    rng = np.random.default_rng(seed)
    wins = np.zeros(len(candidates))
    for _ in range(n_resamples):
        at: dict[str, list[float | None]] = {c.cell_id: [] for c in cells}
        for n, fns in per_unit.values():
            idx = rng.integers(0, n, size=n) if n else np.arange(0)
            for cid, fn in fns.items():
                at[cid].append(fn(idx))
        scores = []
        for a, (_, arm_cells) in enumerate(candidates):
            per_u: list[float | None] = []
            for k in range(len(units)):
                vals = [v for c in arm_cells if (v := at[c.cell_id][k]) is not None]
                if not vals:
                    per_u.append(None)
                    continue
                sd = sds[a][k]
                per_u.append(sum(vals) / len(vals) + (rng.normal(0.0, sd) if sd > 0 else 0.0))
            scores.append(_score(per_u))
        best = np.flatnonzero(np.isclose(scores, max(scores), rtol=0, atol=1e-12))
        wins[best] += 1 / len(best)  # tied arms share the resample
    labels = [arm_label(key) for key, _ in candidates]
    others = sorted(range(1, len(candidates)), key=lambda i: (-wins[i], i))
    runner = others[0] if others else None
    noisy = any(sd > 0 for row in sds for sd in row)
    return {"arm": labels[0], "p_chosen": float(wins[0] / n_resamples),
            "runner_up": labels[runner] if runner is not None else None,
            "p_runner_up": float(wins[runner] / n_resamples) if runner is not None else 0.0,
            "n_resamples": n_resamples,
            "resampled": "eval items and retraining noise" if noisy else "eval items",
            "tied": tied or []}


def _seed_sds(run: RunData, candidates: list[tuple[ArmKey, list[CellData]]], units: list[str]
              ) -> list[list[float]]:
    """Per candidate arm and unit, the SD of its seed mean from retraining
    (``sqrt(sigma_a^2(scale) / k)`` of the unit's primary metric; 0 without an estimate)."""
    groups = {key: cells for key, cells in candidates}
    out = [[0.0] * len(units) for _ in candidates]
    for k, unit in enumerate(units):
        noise = seed_noise(unit_tables(run, groups, unit, primary(run, unit)))
        if noise is None:
            continue
        for a, (key, cells) in enumerate(candidates):
            out[a][k] = float(np.sqrt(noise.for_scale(key[2]).variance / len(cells)))
    return out


def choose_cell(run: RunData, n_resamples: int = SELECTION_RESAMPLES) -> dict[str, Any]:
    """The arm the decision is about, its representative cell and the selection's uncertainty.

    Returns:
        ``{"cell_id", "label"`` (the representative cell), ``"arm", "seeds", "cell_ids"`` (the
        arm's seeds and their cells), ``"representative"`` (how it was picked),
        ``"mean_primary"`` (the arm's mean over seeds and units that matter),
        ``"meets_minimums", "unmet", "candidates"`` (how many arms it was chosen among: the
        gate's simultaneous bounds count them), ``"selection"``
        (:func:`selection_uncertainty`)``}``.
    """
    units = units_that_matter(run)
    scored = []
    for key, cells in arms(run).items():
        mean = _score([arm_value(run, cells, u, primary(run, u)) for u in units])
        unmet = _unmet(run, cells)
        scored.append((not unmet, mean, key, cells, unmet))
    scored.sort(key=lambda x: (x[0], x[1]), reverse=True)  # stable: run order breaks ties
    ok, mean, key, cells, unmet = scored[0]
    rep = _representative(run, cells, units, mean)
    candidates = [(k, c) for o, _, k, c, _ in scored if o == ok]
    tied = [arm_label(k) for o, m, k, _, _ in scored[1:] if o == ok and abs(m - mean) <= 1e-12]
    return {"cell_id": rep.cell_id, "label": rep.label, "arm": arm_label(key),
            "seeds": [int(c.axes["seed"]) for c in cells],
            "cell_ids": [c.cell_id for c in cells], "representative": REPRESENTATIVE,
            "mean_primary": mean, "meets_minimums": ok, "unmet": unmet,
            "candidates": len(candidates),
            "selection": selection_uncertainty(run, candidates, units, n_resamples, tied=tied)}
