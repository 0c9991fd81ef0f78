"""The demo's report as a reader sees it: first-screen screenshots and page heights.

Renders ``harness report`` of a finished demo run (``make demo`` writes ``runs/demo``; pass
another run folder as the first argument) and opens it in headless Chromium at 1400 x 900 and
at a 390 px phone (``screens.py``), details closed. Writes the first screens to
``docs/images/report_first_screen_{desktop,phone}.png`` (the README shows the desktop one) and
the measurements to ``benchmarks/results/report_screens.json``. Targets (issue "A report a lead
reads in one minute"): decision, reason, next action and scorecard inside 1400 x 900; no
horizontal scroll at 390 px; the page at most six screens high at 1400 x 900.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from screens import look  # noqa: E402


def main() -> None:
    run_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "runs" / "demo"
    if not (run_dir / "run.json").exists():
        sys.exit(f"{run_dir}: no finished run (run `make demo` first)")
    page = Path(tempfile.mkdtemp(prefix="report_screens_")) / "index.html"
    subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run_dir), "--out",
                    str(page)], check=True, capture_output=True)
    shot_dir = Path(tempfile.mkdtemp(prefix="report_shots_"))
    seen = look(page, shots=shot_dir)
    if seen is None:
        sys.exit("Chromium or playwright is missing: apt-get install -y chromium")
    images = REPO / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name in ("desktop", "phone"):
        (images / f"report_first_screen_{name}.png").write_bytes(
            (shot_dir / f"{name}.png").read_bytes())
    desk, phone = seen["desktop"], seen["phone"]
    result = {
        "benchmark": "report_screens",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg": os.getloadavg()},
        "run": run_dir.name, "page_kb": round(page.stat().st_size / 1024, 1),
        "screens": seen,
        "targets": {"first_screen_bottom_px": 900, "phone_scroll_width_px": 390,
                    "max_screens": 6},
        "meets_targets": (max(v for k, v in desk["bottom_px"].items() if k != "#decision")
                          <= 900 and phone["scroll_width_px"] <= 390
                          and desk["screens"] <= 6),
    }
    out = REPO / "benchmarks" / "results" / "report_screens.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
