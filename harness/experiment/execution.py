"""``execution:``: where and with what resources each cell runs (optional; never in cell ids).

The section tells the executor (:mod:`harness.execute`) what one cell needs, and what becomes of
its checkpoint. It changes *where* a cell runs, never *what* it computes, so it is left out of
the effective spec a cell id hashes (:func:`harness.matrix.effective_spec`): adding or changing
it reuses every finished cell.

```yaml
execution:
  gpus: 0.25          # GPUs per cell; a fraction packs several cells on one GPU (default:
                      # 1 where the executor sees GPUs, else 0)
  cpus: 1             # CPUs per cell (a Ray task's num_cpus)
  memory: 4GiB        # memory per cell (a Ray task's memory; bytes or a size with a unit)
  max_retries: 2      # a cell whose worker or node is lost is run again, at most this often
  checkpoint: keep    # keep (ship back into the run folder) | drop | storage
  storage: s3://bucket/ckpt   # with checkpoint: storage: a path every node sees, or an fsspec URI
  threads: 1          # torch threads each cell computes with, on every executor (default 1)
  cpu_workers: 2      # cells at once on a machine without a GPU (default: cores / threads)
```

``threads`` is the one key here that can change a cell's numbers (in the last decimals: float
reductions are split by thread count); it is still kept out of cell ids, and ``harness run``
warns when a run's thread count differs from the finished cells' (:mod:`harness.threads`).
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from harness.experiment.base import Strict

# a number (YAML reads an unquoted 1e9 as a string, so an exponent is accepted here) and a unit
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:e\+?\d+)?)\s*([KMGT]i?B?|B)?\s*$",
                      re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


def parse_size(value: int | float | str) -> int:
    """Bytes of ``value``: a number of bytes (``1e9`` too), or ``"512MiB"``, ``"4GB"``, ``"2G"``
    (decimal K/M/G/T, binary Ki/Mi/Gi/Ti, case-insensitive). Raises ValueError for anything
    else or < 1 byte."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int | float):
        n = float(value)
    else:
        m = _SIZE_RE.match(value)
        if not m:
            raise ValueError(f"{value!r} is not a size (e.g. 4GiB, 512MB or a number of bytes)")
        unit = (m.group(2) or "").upper().removesuffix("B")
        n = float(m.group(1)) * _UNITS[unit]
    if not math.isfinite(n) or n < 1 or n > 2**60:
        raise ValueError(f"{value!r} is not a usable memory size")
    return int(n)


class ExecutionSpec(Strict):
    """Resources one cell needs and what becomes of its checkpoint (the ``execution:`` section).

    The local executor packs ``floor(1 / gpus)`` cells onto each visible GPU when ``gpus`` < 1,
    gives a cell ``gpus`` whole GPUs when it is above 1, and runs ``cpu_workers`` cells at once
    in worker processes (default: one per core) on a machine without GPUs. The Ray executor asks
    the cluster for ``gpus``, ``cpus`` and ``memory`` per task. Every executor computes a cell
    with ``threads`` torch threads.
    """

    gpus: float | None = Field(None, ge=0, le=64, allow_inf_nan=False, description="GPUs per "
                               "cell: a fraction (0.25 runs four cells on one GPU), a whole "
                               "number, or 0 for CPU-only cells. Default: 1 where the executor "
                               "sees GPUs, else 0.")
    cpus: float = Field(1.0, gt=0, le=1024, allow_inf_nan=False,
                        description="CPUs per cell (a Ray task's num_cpus).")
    memory: int | None = Field(None, description="Memory per cell, in bytes or with a unit "
                               "(4GiB, 512MB); a Ray task's memory. Default: not reserved.")
    max_retries: int = Field(2, ge=0, le=10, description="How often a cell whose worker process "
                             "or node was lost is run again before it is recorded as failed "
                             "(a cell that raises is never retried: it would fail again).")
    checkpoint: Literal["keep", "drop", "storage"] = Field(
        "keep", description="keep: the trained model is shipped back into the cell's model/ "
        "folder; drop: it is discarded once evaluated (metrics only, the least to transfer); "
        "storage: it is written to `storage` by the node that trained it.")
    storage: str | None = Field(None, description="With checkpoint: storage, where checkpoints "
                                "go: a path every node sees, or an fsspec URI (s3://, gs://, ...);"
                                " a cell's lands in <storage>/<experiment>/<cell_id>/model.")
    threads: int | None = Field(None, ge=1, le=1024, description="torch intra-op threads "
                                "each cell computes with, the same on every executor (float "
                                "reductions depend on it). Default: 1; `harness run --threads` "
                                "overrides it.")
    cpu_workers: int | None = Field(None, ge=1, le=1024, description="Cells run at once on a "
                                    "machine without a GPU (local worker processes, each with "
                                    "`threads` threads); 1 runs them one after another in "
                                    "process. Default: the cores divided by `threads`.")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: object) -> int | None:
        if v is None:
            return None
        if not isinstance(v, int | float | str):
            raise ValueError(f"expected a size, got {v!r}")
        return parse_size(v)

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: float | None) -> float | None:
        if v is not None and v > 1 and v != int(v):
            raise ValueError(f"gpus above 1 must be a whole number, got {v}")
        return v

    @model_validator(mode="after")
    def _storage(self) -> ExecutionSpec:
        if self.checkpoint == "storage" and not (self.storage or "").strip():
            raise ValueError("checkpoint: storage needs `storage:` (a path every node sees, or "
                             "an fsspec URI)")
        if self.storage and self.checkpoint != "storage":
            raise ValueError("`storage:` is set but checkpoint is "
                             f"{self.checkpoint!r}; set checkpoint: storage to use it")
        return self
