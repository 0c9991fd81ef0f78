"""Look at a rendered report in headless Chromium as a reader would (details closed).

Shared by ``report_render.py`` (the 200-cell run) and ``report_screens.py`` (the demo): the
bottom of the first screen's parts, the page height and the scroll width at 1400 x 900 and at a
390 px phone, and screenshots when asked. Needs Debian's ``chromium`` and the ``playwright``
package (a dev dependency); :func:`look` returns None without them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

SCREENS = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}
FIRST_SCREEN = ("#decision .decision", "#reason", "#next-action", "#scorecard", "#decision")


def look(page_path: Path, shots: Path | None = None) -> dict[str, Any] | None:
    """Per screen (``desktop``, ``phone``): ``{"bottom_px": {part: y + height}, "page_px",
    "screens", "scroll_width_px"}``; with ``shots`` a directory, ``<screen>.png`` (first
    screen) is written there. None when Chromium or playwright is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if browser is None:
        return None
    out: dict[str, Any] = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu"])
        for name, viewport in SCREENS.items():
            page = b.new_page(viewport=viewport)
            page.goto(page_path.resolve().as_uri())
            page.wait_for_load_state("load")
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / f"{name}.png"))
            bottoms = {}
            for part in FIRST_SCREEN:
                box = page.locator(part).first.bounding_box()
                bottoms[part] = None if box is None else round(box["y"] + box["height"])
            height = page.evaluate("document.documentElement.scrollHeight")
            out[name] = {"bottom_px": bottoms, "page_px": height,
                         "screens": round(height / viewport["height"], 2),
                         "scroll_width_px": page.evaluate(
                             "document.documentElement.scrollWidth")}
            page.close()
        b.close()
    return out
