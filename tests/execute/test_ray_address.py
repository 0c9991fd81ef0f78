"""A Ray cluster address that cannot work is bad input (exit 2, within seconds), found before
``ray.init``, which retries an unreachable cluster for minutes without saying why."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.execute.ray_executor import check_reachable

ray = pytest.importorskip("ray")


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("address", "needle"), [
    ("not an address", "not a Ray cluster address"),
    ("http://127.0.0.1:8265", "not a Ray cluster address"),  # the dashboard's URL
    ("10.0.0.5:0", "not a Ray cluster address"),
    ("127.0.0.1:{closed}", "no Ray cluster answers there"),
    ("ray://127.0.0.1:{closed}", "no Ray cluster answers there"),
])
def test_unusable_addresses_are_refused_quickly(address: str, needle: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(InputError, match=f"--address '.*': {needle}"):
        check_reachable(address.format(closed=_closed_port()), "--address", timeout=2.0)
    assert time.monotonic() - t0 < 10


def test_a_listening_address_passes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}", "--address", timeout=2.0)
    check_reachable("auto", "--address")  # left to ray.init, which fails at once


def test_run_refuses_an_unreachable_cluster_without_hanging(
        tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert not ray.is_initialized()  # else start() would use that cluster instead
    path, out, closed = tiny(), tmp_path / "runs", _closed_port()
    t0 = time.monotonic()
    argv = ["run", str(path), "--out", str(out), "--quiet", "--executor", "ray"]
    assert main([*argv, "--address", f"127.0.0.1:{closed}"]) == 2
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed}")
    assert main(argv) == 2
    assert time.monotonic() - t0 < 60
    err = capsys.readouterr().err
    assert f"--address '127.0.0.1:{closed}': no Ray cluster answers there" in err
    assert f"RAY_ADDRESS '127.0.0.1:{closed}': no Ray cluster answers there" in err
    assert "Traceback" not in err and not ray.is_initialized()
    assert not list(out.rglob("DONE"))  # no cell ran, or was marked done


def test_an_address_without_the_ray_executor_is_refused(
        tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # else every cell would quietly run on this machine instead of the named cluster
    assert main(["run", str(tiny()), "--out", str(tmp_path / "runs"), "--quiet",
                 "--address", "10.0.0.5:6379"]) == 2
    assert "add `--executor ray`" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
