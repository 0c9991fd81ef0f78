"""A content-addressed cache of validated sample tables.

Decoding and validating a million-record repository takes tens of seconds; ``plan`` and
``compose`` after ``validate`` should not pay that again. Once a file validates, its flattened
tables are stored as Arrow IPC files under a key made of the file's SHA-256, the format it is
read as (its suffix: the same bytes named ``.parquet`` and ``.jsonl`` validate differently, and a
warm run must answer what a cold one does), the table layout version and the parts of the
experiment that validation depends on (declared units, judge scale). Any change to the file, its
format or those parts misses the cache. Only valid files are cached.

Location: ``$HARNESS_CACHE_DIR`` or ``~/.cache/distill-harness``; delete it at any time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl

from harness.experiment.models import Experiment
from harness.samples.tables import RecordTables

#: Bump when the tables' columns or the validation rules change.
TABLES_VERSION = 5  # 3: the candidates' soft-label columns; 4: the labels themselves;
#  5: duplicate JSON keys, blank ids and teacher names with control characters refused
_NAMES = tuple(RecordTables.__dataclass_fields__)


def cache_root() -> Path:
    """The cache folder (not created)."""
    env = os.environ.get("HARNESS_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "distill-harness"


def cache_key(sha256: str, exp: Experiment, is_eval: bool, fmt: str) -> str:
    """Key of a file's validated tables read as ``fmt`` (:func:`harness.samples.records.
    file_format`) under this experiment's validation rules."""
    rules = {"v": TABLES_VERSION, "eval": is_eval, "format": fmt,
             "units": {k: v.model_dump(mode="json") for k, v in exp.units.items()},
             "judge_scale": list(exp.data.judge_scale)}
    blob = json.dumps(rules, sort_keys=True).encode()
    return f"{sha256[:32]}-{hashlib.sha256(blob).hexdigest()[:16]}"


def load_cached(key: str) -> tuple[RecordTables, list[str]] | None:
    """The cached tables and warnings, or None on a miss (or an unreadable entry)."""
    folder = cache_root() / "tables" / key
    if not (folder / "warnings.json").is_file():
        return None
    try:
        tables = RecordTables(*(pl.read_ipc(folder / f"{n}.arrow")
                                for n in _NAMES))
        warnings = json.loads((folder / "warnings.json").read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a damaged cache entry is just a miss
        return None
    return tables, list(warnings)


def store(key: str, tables: RecordTables, warnings: list[str]) -> None:
    """Store a valid file's tables; failures to write the cache are ignored (it is a cache)."""
    root = cache_root() / "tables"
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        for n in _NAMES:
            getattr(tables, n).write_ipc(tmp / f"{n}.arrow", compression="lz4")
        # warnings.json last: its presence marks a complete entry
        (tmp / "warnings.json").write_text(json.dumps(warnings), encoding="utf-8")
        final = root / key
        if final.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.replace(tmp, final)
    except OSError:
        return
