"""Peak memory reported for a worker is its own, not the peak of the process that started it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.evaluate.latency import process_peak_rss_mb

REPO = Path(__file__).resolve().parents[2]


def test_peak_rss_is_positive_and_grows_with_allocation():
    before = process_peak_rss_mb()
    block = bytearray(64 * 2**20)  # 64 MB, touched so it is resident
    block[:: 4096] = b"\x01" * len(block[:: 4096])
    assert process_peak_rss_mb() >= before
    assert process_peak_rss_mb() > 64
    del block


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_child_does_not_inherit_parent_peak():
    # A parent that has held 400 MB starts a small child; ru_maxrss would report >= 400 MB there.
    script = (
        "import subprocess, sys\n"
        "big = bytearray(400 * 2**20); big[::4096] = b'\\x01' * len(big[::4096])\n"
        "child = ('from harness.evaluate.latency import process_peak_rss_mb; '\n"
        "         'print(process_peak_rss_mb())')\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True,\n"
        "                     check=True).stdout)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True).stdout
    assert float(out) < 300, out
