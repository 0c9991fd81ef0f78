"""Shared fixtures only; the plain helpers they use live in ``tests/helpers``.

- ``tiny``: writes the tiny hand-written experiment to a test's folder.
- ``_isolated_cache`` (autouse): each test gets its own table cache.
- ``_own_sigint_handler`` (autouse): every test starts with Python's own Ctrl-C handler.
- ``_one_torch_thread`` (autouse, session): under pytest-xdist each worker keeps torch to one
  thread, so two workers on two cores do not oversubscribe them.
- ``_own_recursion_limit`` (autouse): every test starts with the interpreter's recursion limit
  as the worker started.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.tiny import BASE_SPEC, tiny_eval, tiny_samples, write_jsonl


@pytest.fixture
def tiny(tmp_path: Path) -> Callable[..., Path]:
    """Write the tiny experiment to tmp_path and return its YAML path.

    Call with ``spec=`` (deep-merged top-level overrides), ``samples=`` and ``eval=`` lists.
    """

    def make(spec: dict[str, Any] | None = None, samples: list[dict[str, Any]] | None = None,
             eval: list[dict[str, Any]] | None = None) -> Path:
        doc = json.loads(json.dumps(BASE_SPEC))
        doc.update(spec or {})
        write_jsonl(tmp_path / "samples.jsonl", tiny_samples() if samples is None else samples)
        write_jsonl(tmp_path / "eval.jsonl", tiny_eval() if eval is None else eval)
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    return make


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                    ) -> None:
    """Each test gets its own table cache, so no test sees another's cached tables."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Under pytest-xdist (``make test``), one torch thread per worker.

    Two workers each using every core would fight over two cores; the Makefile also sets
    ``OMP_NUM_THREADS=1`` so that the subprocesses the tests start inherit the same limit.
    Serial runs (``make test-fast``, a plain ``pytest``) keep torch's default.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _cells_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`harness run` runs cells in this process unless a test asks for worker processes: tiny
    cells would pay a worker's start-up each, and monkeypatches reach only this process
    (subprocesses the tests start inherit it)."""
    monkeypatch.setenv("HARNESS_WORKERS", "1")


@pytest.fixture(autouse=True)
def _own_sigint_handler(request: pytest.FixtureRequest) -> Any:
    """Each test starts with Python's own Ctrl-C handler and leaves it so.

    A library that installs a process-wide SIGINT handler in-process and does not put the old
    one back would make every later test in the same worker deaf to Ctrl-C (seen: the batch
    teacher's Ctrl-C test waited 50 minutes in a worker that ran such a test first). The handler
    is restored after each test, and the test that changed it is named in a warning.
    """
    import signal
    import warnings

    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    now = signal.getsignal(signal.SIGINT)
    if now is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        warnings.warn(f"{request.node.nodeid} left SIGINT handled by {now!r}; restored",
                      stacklevel=1)


#: The recursion limit the test process started with (:func:`_own_recursion_limit`).
_RECURSION_LIMIT = sys.getrecursionlimit()


@pytest.fixture(autouse=True)
def _own_recursion_limit() -> Any:
    """Each test starts with the recursion limit the process started with, and leaves it so.

    torch's inductor raises the limit to 2,000 while it compiles and never lowers it again; the
    JSON readers stop at the limit (harness.samples.records.TOO_DEEP), so a test of records
    nested 1,000 levels deep passed or failed by whether a compiling test had run before it in
    the same worker.
    """
    sys.setrecursionlimit(_RECURSION_LIMIT)
    yield
    sys.setrecursionlimit(_RECURSION_LIMIT)
