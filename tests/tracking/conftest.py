"""A finished tiny run, trained once per module, that each tracking test copies and resumes
with tracking on (every cell skipped, every cell logged): the tests pay MLflow, not training."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli import main
from tests.helpers import BASE_SPEC, TINY_STUDENT, route_data, write_jsonl

#: The tiny experiment with a trainable student, and evaluation kept small.
SPEC: dict[str, Any] = {**json.loads(json.dumps(BASE_SPEC)), "student": TINY_STUDENT,
                        "evaluation": {"slices": ["source"], "latency_runs": 3,
                                       "latency_batch_size": 4, "max_new_tokens": 24}}


def write_experiment(folder: Path, tracking: dict[str, Any] | None = None) -> Path:
    """The tiny experiment's YAML (with ``tracking:`` when given) and data in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    train, ev = route_data()
    write_jsonl(folder / "samples.jsonl", train)
    write_jsonl(folder / "eval.jsonl", ev)
    return set_tracking(folder / "exp.yaml", tracking, base=SPEC)


def set_tracking(path: Path, tracking: dict[str, Any] | None, base: dict[str, Any] | None = None
                 ) -> Path:
    """Rewrite the YAML at ``path`` with ``tracking:`` set (None: the section removed)."""
    doc = dict(base) if base is not None else yaml.safe_load(path.read_text(encoding="utf-8"))
    doc.pop("tracking", None)
    if tracking is not None:
        doc["tracking"] = tracking
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the tiny experiment and its finished, untracked run in ``runs/``."""
    folder = tmp_path_factory.mktemp("trained")
    path = write_experiment(folder)
    with pytest.MonkeyPatch.context() as mp:  # the autouse fixtures are per test
        mp.setenv("HARNESS_WORKERS", "1")
        mp.setenv("HARNESS_CACHE_DIR", str(folder / "table-cache"))
        assert main(["run", str(path), "--out", str(folder / "runs"), "--quiet"]) == 0
    return folder


@pytest.fixture
def finished(trained: Path, tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """``finished(tracking=...)``: a copy of the trained run in this test's folder, with the
    YAML's ``tracking:`` set; returns (YAML path, runs folder)."""

    def make(tracking: dict[str, Any] | None = None) -> tuple[Path, Path]:
        dest = tmp_path / "exp"
        shutil.copytree(trained, dest, ignore=shutil.ignore_patterns("table-cache"))
        return set_tracking(dest / "exp.yaml", tracking), dest / "runs"

    return make


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
