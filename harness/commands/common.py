"""What the commands share: exit statuses, plain tables, loading the experiment with its data,
building the matrix and choosing cells by id or label."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.experiment import LoadedExperiment
    from harness.matrix import Cell
    from harness.samples import Dataset

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2
#: ``generate``: a prompt was left unanswered by a failed call (3 and 4 are the gate's).
EXIT_INCOMPLETE = 5


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain monospace table (right-aligned numbers)."""
    cells = [[format_value(v) for v in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(r[i], int | float) for r in rows) for i in range(len(headers))]

    def line(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric, strict=True)).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def format_value(v: Any) -> str:
    """One table value: floats to 3 decimals, integers with thousands separators, None blank."""
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def load(path: str, *, cap: bool = False, max_cells: int | None = None,
         allow_partial: bool | None = False) -> tuple[LoadedExperiment, Dataset]:
    """The experiment (every experiment rule checked: :mod:`harness.checks`) and its data;
    with ``cap``, a matrix larger than ``max_cells`` (default
    :data:`harness.matrix.DEFAULT_MAX_CELLS`) is refused first, counted without building cells
    and before the data files are read. Data that ``generate --partial`` wrote with prompts
    unanswered is refused (exit 2) unless ``allow_partial``; then its warnings are printed to
    stderr (None: not checked here; ``validate`` checks and reports it itself). The data-fit
    rules are the caller's (:func:`fit`)."""
    from harness.checks import load_experiment
    from harness.samples import load_data
    from harness.teachers.unanswered import check_complete

    loaded = load_experiment(path)
    if cap:
        from harness.matrix import DEFAULT_MAX_CELLS, check_matrix_size

        check_matrix_size(loaded.spec, max_cells or DEFAULT_MAX_CELLS)
    # before the data is read: a teacher whose every call failed is missing for that reason,
    # and the data-fit rules would call it unknown
    if allow_partial is not None:
        for line in check_complete(loaded.spec, allow_partial=allow_partial):
            print(f"warning: {line}", file=sys.stderr)
    return loaded, load_data(loaded)


def fit(loaded: LoadedExperiment, data: Dataset) -> None:
    """The data-fit rules (:mod:`harness.checks.data_fit`): e.g. buckets and costs may only name
    teachers the sample repository has."""
    from harness.checks import check_data_fit

    check_data_fit(loaded, data)


def matrix_cells(loaded: LoadedExperiment, data: Dataset) -> list[Cell]:
    """Every cell of the experiment's matrix (cell ids hash the input files' SHA-256)."""
    from harness.matrix import build_cells

    return build_cells(loaded.spec, {"samples": data.train.sha256, "eval": data.eval.sha256})


def select_cells(cells: list[Cell], wanted: list[str] | None, *, flag: str = "--cell"
                 ) -> list[Cell]:
    """The cells named by ``--cell``/``--only`` (an id prefix or a label, each matching exactly
    one cell), in the order given; all of them when none is named. Raises ``InputError``
    listing every name that matches no cell or several, under ``flag`` (the option the user
    typed)."""
    if not wanted:
        return cells
    from harness.errors import ProblemLog, did_you_mean

    log = ProblemLog()
    chosen = []
    for w in wanted:
        hits = [c for c in cells if c.cell_id.startswith(w) or c.label == w]
        if len(hits) != 1:
            reason = "matches no cell" if not hits else f"matches {len(hits)} cells"
            log.add(flag, "", f"{w!r} {reason}"
                    f"{did_you_mean(w, [c.label for c in cells] + [c.cell_id for c in cells])}")
        chosen += hits[:1]
    log.raise_if_any(f"{flag}: unknown cell")
    return chosen

