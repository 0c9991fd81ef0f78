"""One progress view of a run, whatever executes it: cells done, running, failed, and where.

The bar counts finished cells (done, failed, or skipped as already done); its description
keeps the counts and its postfix names the running cells with their node (``label@host/gpu0``).
A retried cell (its worker was lost) is said in a line above the bar. :meth:`Progress.close`
prints how many cells each node ran when they ran on more than one.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


class Progress:
    """The run's progress view (a tqdm bar; silent when not ``enabled``).

    Args:
        labels: cell id -> label, for every cell of the run.
        enabled: draw the bar (``--quiet`` turns it off).
        header: printed once above the bar (the executor and its workers), when enabled.
    """

    def __init__(self, labels: dict[str, str], *, enabled: bool = True, header: str = "") -> None:
        from tqdm import tqdm

        self.labels = labels
        self.enabled = enabled
        self.running: dict[str, str] = {}  #: cell id -> node
        self.counts: Counter[str] = Counter()
        self.nodes: Counter[str] = Counter()  #: node -> cells finished there
        self.bar: Any = tqdm(total=len(labels), unit="cell", disable=not enabled,
                             dynamic_ncols=True)
        if enabled and header:
            self.bar.write(header)

    def _draw(self) -> None:
        c = self.counts
        self.bar.set_description(f"done {c['done']} · running {len(self.running)} · failed "
                                 f"{c['failed']}" + (f" · skipped {c['skipped']}"
                                                     if c["skipped"] else ""), refresh=False)
        shown = [f"{self.labels.get(k, k)}@{n}" if n else self.labels.get(k, k)
                 for k, n in list(self.running.items())[:3]]
        more = len(self.running) - len(shown)
        self.bar.set_postfix_str(", ".join(shown) + (f" +{more}" if more > 0 else ""))

    def skipped(self, cell_id: str) -> None:
        self.counts["skipped"] += 1
        self.bar.update(1)
        self._draw()

    def started(self, cell_id: str, node: str) -> None:
        self.running[cell_id] = node
        self._draw()

    def retried(self, cell_id: str, node: str, why: str) -> None:
        self.running.pop(cell_id, None)
        self.write(f"RETRY {self.labels.get(cell_id, cell_id)} ({cell_id}) on {node or '?'}: "
                   f"{why}")
        self._draw()

    def finished(self, cell_id: str, ok: bool, node: str) -> None:
        self.running.pop(cell_id, None)
        self.counts["done" if ok else "failed"] += 1
        if node:
            self.nodes[node] += 1
        self.bar.update(1)
        self._draw()

    def write(self, message: str) -> None:
        """A line above the bar (printed even with the bar off, as the run did before)."""
        self.bar.write(message)

    def close(self) -> None:
        if self.enabled and len(self.nodes) > 1:
            self.bar.write("cells per node: " + ", ".join(f"{k}: {n}" for k, n in
                                                          sorted(self.nodes.items())))
        self.bar.close()
