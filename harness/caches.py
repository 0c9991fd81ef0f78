"""Caches shared by the cells of one run: trained tokenizers and torch's compiled graphs.

A demo-sized matrix runs many small cells that would otherwise each pay the same tokenizer
training and the same ``torch.compile`` work. The worker points both at one folder per run
(:func:`use_run_caches`, before anything compiles):

- ``<cache>/tokenizers``: :mod:`harness.students.tokenizer` (by digest of the texts);
- ``<cache>/torchinductor``: inductor's FX graph cache and AOT autograd cache
  (``TORCHINDUCTOR_CACHE_DIR``; both caches switched on), which a later process compiling the
  same graph reads instead of compiling again;
- ``<cache>/triton``: Triton's kernel cache (``TRITON_CACHE_DIR``).

The cache folder is the manifest's ``paths["cache"]`` when compose wrote one, else
``$HARNESS_RUN_CACHE``, else ``<run folder>/cache`` (the run folder holds ``cells/``; a cell
folder elsewhere uses its parent). ``HARNESS_RUN_CACHE=off`` switches every cache off. A
variable the user exported before the process started is left as it is. Nothing cached can
change a result: tokenizers load byte-identical, compiled graphs are keyed by torch itself.
Standard library only (the worker's path).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from harness.store.folder import CACHE, CELLS

#: Environment variable: the cache folder for every cell of this process, or ``off``.
ENV = "HARNESS_RUN_CACHE"
TOKENIZER_ENV = "HARNESS_TOKENIZER_CACHE"
_MANAGED = (TOKENIZER_ENV, "TORCHINDUCTOR_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
            "TORCHINDUCTOR_AUTOGRAD_CACHE", "TRITON_CACHE_DIR")
#: What the user had exported when the process started: kept, never overwritten.
_USER_SET = {k: os.environ[k] for k in _MANAGED if k in os.environ}


def run_folder(cell_dir: Path) -> Path:
    """The run folder of a cell folder: ``runs/<exp>`` for ``runs/<exp>/cells/<id>``, else the
    cell's parent."""
    parent = Path(cell_dir).resolve().parent
    return parent.parent if parent.name == CELLS else parent


def cache_root(cell_dir: Path, paths: Mapping[str, str] | None = None) -> Path | None:
    """The cache folder of a cell (None when switched off with ``HARNESS_RUN_CACHE=off``)."""
    if paths and paths.get("cache"):
        return Path(paths["cache"])
    env = os.environ.get(ENV)
    if env:
        return None if env.strip().lower() == "off" else Path(env)
    return run_folder(cell_dir) / CACHE


def use_run_caches(cell_dir: Path, paths: Mapping[str, str] | None = None) -> dict[str, str]:
    """Point this process's caches at the cell's run cache; returns the variables in effect.

    Call before anything compiles (the worker does, first thing per cell). Switched off, the
    tokenizer cache is unset and torch keeps its defaults.
    """
    root = cache_root(cell_dir, paths)
    wanted: dict[str, str | None] = dict.fromkeys(_MANAGED)
    if root is not None:
        wanted.update({TOKENIZER_ENV: str(root / "tokenizers"),
                       "TORCHINDUCTOR_CACHE_DIR": str(root / "torchinductor"),
                       "TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
                       "TRITON_CACHE_DIR": str(root / "triton")})
    for key, value in wanted.items():
        if key in _USER_SET:
            continue
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return {k: os.environ[k] for k in _MANAGED if k in os.environ}
