"""Write a composed cell as files a worker can read with the standard library alone.

``<out>/<cell_id>/`` (file names: :mod:`harness.store.folder`):

- the training set: one sample per line — ``prompt, target, weight, unit, record_id, teacher,
  pool, origin``;
- the eval set: flattened — ``id, unit, prompt, reference, tags, candidates``
  (each candidate ``teacher, final, confidence``), answers normalised like training finals;
- the manifest (:class:`~harness.store.contracts.CellManifest`; written last, so its presence
  means the folder is complete): the cell's
  id, label, axes and effective spec, counts per unit / teacher / pool / origin, estimated token
  totals, and the SHA-256 of the input files and of the two JSONL files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from harness import __version__
from harness.compose.compose import ComposedCell
from harness.compose.context import normalise_answers, units_table
from harness.experiment.models import Experiment
from harness.fsutil import atomic_write
from harness.samples import Dataset
from harness.store.contracts import Axes, CellManifest, CellSpec
from harness.store.folder import EVAL, TRAIN, CellFolder


def eval_frame(exp: Experiment, data: Dataset) -> pl.DataFrame:
    """The eval set as one row per item: id, unit, prompt, reference, tags, candidates."""
    t = data.eval.tables
    items = normalise_answers(
        t.items.select("rec", "id", "unit", "prompt", "reference").join(
            units_table(exp).select("unit", "kind"), on="unit", how="left"), ["reference"])
    cands = normalise_answers(
        t.candidates.select("rec", "cand", "teacher", "final", "confidence")
        .join(items.select("rec", "kind"), on="rec"), ["final"])
    cand_lists = cands.sort("rec", "cand").group_by("rec", maintain_order=True).agg(
        pl.struct("teacher", "final", "confidence").alias("candidates"))
    tags = t.tags.group_by("rec", maintain_order=True).agg(
        pl.struct("key", "value").alias("tags"))
    out = items.join(cand_lists, on="rec", how="left").join(tags, on="rec", how="left")
    # tags as a {key: value} object per item, built from the long table.
    tag_maps = [dict((kv["key"], kv["value"]) for kv in row) if row else {}
                for row in out["tags"].to_list()]
    out = out.with_columns(pl.Series("tags", tag_maps, dtype=pl.Object)).sort("rec")
    return out.select("id", "unit", "prompt", "reference", "tags", "candidates")


def _write_jsonl(df: pl.DataFrame, path: Path) -> None:
    atomic_write(path, lambda p: df.write_ndjson(p))


def _write_eval(ev: pl.DataFrame, path: Path) -> None:
    import json

    def write(p: Path) -> None:
        with p.open("w", encoding="utf-8") as fh:
            for row in ev.iter_rows(named=True):
                row["candidates"] = row["candidates"] or []
                fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")

    atomic_write(path, write)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def manifest(composed: ComposedCell, data: Dataset, files: dict[str, str]) -> CellManifest:
    """The manifest of a composed cell (see module docstring)."""
    cell = composed.cell
    return CellManifest(
        schema_version=CellManifest.SCHEMA_VERSION,
        harness_version=__version__,
        cell_id=cell.cell_id,
        label=cell.label,
        is_baseline=cell.is_baseline,
        axes=Axes(bucket=cell.axes.bucket, fields=cell.axes.fields, scale=cell.axes.scale,
                  seed=cell.axes.seed),
        # typed, and written back as the same JSON: the dict the cell id hashes
        spec=CellSpec.from_json(cell.effective, f"cell {cell.label}: effective spec",
                                path="spec"),
        n_samples=composed.frame.height,
        n_records=composed.frame["record_id"].n_unique(),
        counts={
            "unit": composed.counts("unit"),
            "teacher": composed.counts("teacher"),
            "pool": composed.counts("pool"),
            "origin": composed.counts("origin"),
            "unit/teacher": composed.counts(["unit", "teacher"]),
        },
        tokens=composed.token_totals(),
        inputs={"samples": {"file": data.train.path.name, "sha256": data.train.sha256},
                "eval": {"file": data.eval.path.name, "sha256": data.eval.sha256}},
        files=files,
        eval_items=data.eval.n_records,
        # Where checkpoints live on this machine (kept out of the spec so ids stay portable).
        paths=_paths(composed),
    )


def _paths(composed: ComposedCell) -> dict[str, str]:
    return {c.role: str(c.folder) for c in composed.student.checkpoints()}


def write_cell(composed: ComposedCell, data: Dataset, eval_rows: pl.DataFrame, out: Path
               ) -> Path:
    """Write the training set, the eval set and (last) the manifest into ``out/<id>/``."""
    folder = CellFolder(out / composed.cell.cell_id)
    folder.clear_manifest()  # incomplete until rewritten
    # A process killed mid-write leaves `.<file>.<random>.tmp` behind (atomic_write's
    # temporaries): the cell is being redone, so they are stale.
    for stale in folder.path.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    _write_jsonl(composed.frame, folder.train)
    _write_eval(eval_rows, folder.eval)
    files = {TRAIN: _sha256(folder.train), EVAL: _sha256(folder.eval)}
    folder.write_manifest(manifest(composed, data, files))
    return folder.path
