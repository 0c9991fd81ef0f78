"""The report looked at as a person would: Chromium at 1400 x 900 and at 390 px (a phone).

The run has the demo's shape (experiments/demo.yaml: 4 units, a one-at-a-time design of 10 arms
over 14 cells, the reference arm at three scales, baseline and reference with three seeds, eval
slices source=real/synthetic), written as a synthetic run folder so the test needs no training.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.cli import main
from tests.helpers.synth import spec_dict, write_run

UNITS = {"intent_routing": {"kind": "label", "answer_marker": "Answer:",
                            "labels": ["billing", "shipping", "technical", "account"]},
         "escalation": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"},
         "order_fields": {"kind": "label", "labels": ["refund", "exchange", "repair"],
                          "answer_marker": "Answer:"},
         "tool_decision": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "A:"}}
BUCKETS = ["single_a", "multi_judged", "multi_judged_failures", "multi_contrastive",
           "multi_confident"]
FIELDS = ["answer_only", "with_rationale", "confidence_weighted", "confidence_tiers"]
N = 200
SCREEN = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


def _cells() -> dict[tuple[Any, ...], dict[str, np.ndarray]]:
    """The demo's 14 cells, each unit right with a probability that differs by arm; items 0-59
    are the real slice, on which every arm is worse (a distribution gap that does not close)."""
    rng = np.random.default_rng(7)
    keys: list[tuple[Any, ...]] = [("single_a", "answer_only", 1.0, s) for s in range(3)]
    keys += [("multi_judged", "answer_only", 1.0, s) for s in range(3)]
    keys += [("multi_judged", "answer_only", x, 0) for x in (0.25, 0.5)]
    keys += [(b, "answer_only", 1.0, 0) for b in BUCKETS[2:]]
    keys += [("multi_judged", f, 1.0, 0) for f in FIELDS[1:]]
    real = np.arange(N) < 60
    cells = {}
    for i, key in enumerate(keys):
        p = 0.55 + 0.04 * (i % 7) + 0.1 * float(key[2])
        cells[key] = {u: (rng.random(N) < np.where(real, p - 0.3, p)).astype(int)
                      for u in UNITS}
    return cells


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("screens")
    spec = spec_dict(BUCKETS, FIELDS, [0.25, 0.5, 1.0], units=UNITS)
    tags = [{"source": "real" if k < 60 else "synthetic"} for k in range(N)]
    run_dir = write_run(work, spec, _cells(), tags=tags)
    out = work / "index.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    return out


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("SKIPPED: Debian's chromium is not installed and could not be installed "
                    "(apt-get install -y chromium); the screen checks did not run")
    return browser


def _look(report: Path, viewport: dict[str, int], shot: Path) -> dict[str, Any]:
    """Open the page in Chromium (details closed, as a reader first sees it): the bounding
    boxes of the first screen's parts, the page's scroll width and height, and a screenshot."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=_browser(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = b.new_page(viewport=viewport)
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(shot))
        seen = {
            "boxes": {part: page.locator(part).bounding_box() for part in (
                "#decision .decision", "#reason", "#next-action", "#scorecard")},
            "open_details": page.locator("details[open]").count(),
            "scroll_width": page.evaluate("document.documentElement.scrollWidth"),
            "height": page.evaluate("document.documentElement.scrollHeight"),
            "texts": {part: page.locator(part).inner_text() for part in (
                "#decision .decision", "#reason", "#next-action")},
        }
        b.close()
    return seen


def test_first_screen_decides_at_1400(demo_report, tmp_path):
    seen = _look(demo_report, SCREEN, tmp_path / "first.png")
    # decision, reason, next action and the whole scorecard within 1400 x 900
    for part, box in seen["boxes"].items():
        assert box is not None, part
        assert box["y"] + box["height"] <= SCREEN["height"], (part, box)
    assert seen["texts"]["#decision .decision"].startswith("DECISION:")
    assert seen["texts"]["#reason"].startswith("Why") and len(seen["texts"]["#reason"]) > 20
    assert seen["texts"]["#next-action"].startswith("Next")
    # the demo's page with details closed: at most six screens
    assert seen["height"] <= 6 * SCREEN["height"], seen["height"]
    assert (tmp_path / "first.png").stat().st_size > 20_000


def test_no_horizontal_scroll_on_a_phone(demo_report, tmp_path):
    seen = _look(demo_report, PHONE, tmp_path / "phone.png")
    assert seen["scroll_width"] <= PHONE["width"], seen["scroll_width"]
    # the decision and its reason open the page on a phone too
    assert seen["boxes"]["#reason"]["y"] < PHONE["height"]
    assert (tmp_path / "phone.png").stat().st_size > 10_000


def test_the_page_holds_a_chart_per_question(demo_report):
    html = demo_report.read_text()
    # scorecard, effects per unit (vs baseline and per factor), slices per unit, curves,
    # reliability diagrams: inline SVG, each with its title and text alternative
    assert html.count("<svg") >= 1 + 4 + 4 + 4 + 1
    svgs = re.findall(r"<svg[^>]*>(.*?)</svg>", html, re.S)
    assert len(svgs) == html.count("<svg")
    assert all(re.match(r"\s*<title[^>]*>[^<]+</title>\s*<desc[^>]*>[^<]+</desc>", s)
               for s in svgs)
    # every table is one click away, not in the reader's way
    main_text = html.split('<h2 id="ranking">')[1]
    assert main_text.count("<details") >= 10
