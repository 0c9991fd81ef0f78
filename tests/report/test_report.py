"""The HTML report: self-contained, escaped, decision first — and looked at in Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from tests.helpers import BASE_SPEC, TINY_STUDENT, route_data, write_jsonl

PAYLOADS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run whose prompts, labels of teachers and answers carry XSS payloads."""
    work = tmp_path_factory.mktemp("report")
    train, ev = route_data(24, 12)
    for i, row in enumerate(ev):
        row["prompt"] = f"{PAYLOADS[i % 2]} {row['prompt']}"
        # teacher names reach the fidelity and audit tables
        row["candidates"][1]["teacher"] = PAYLOADS[0]
        row["candidates"][0]["teacher"] = PAYLOADS[1]
    spec = {**BASE_SPEC, "student": TINY_STUDENT,
            "evaluation": {"slices": ["source"], "latency_runs": 1, "latency_batch_size": 2}}
    spec["data"] = {"samples": "samples.jsonl", "eval": "eval.jsonl"}
    import yaml

    write_jsonl(work / "samples.jsonl", train)
    write_jsonl(work / "eval.jsonl", ev)
    (work / "exp.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert main(["run", str(work / "exp.yaml"), "--out", str(work / "runs"), "--quiet"]) == 0
    out = work / "index.html"
    assert main(["report", str(work / "runs" / "tiny"), "--out", str(out)]) == 0
    return out


def test_report_has_every_section_and_the_decision_first(report):
    html = report.read_text()
    ids = re.findall(r'<(?:section|h2)[^>]* id="([a-z]+)"', html)
    assert ids[0] == "decision"
    for section in ("signals", "heatmap", "attribution", "calibration", "latency", "curves",
                    "fidelity", "roi", "audit", "config", "disagreements", "failed"):
        assert section in ids, section
    assert re.search(r"DECISION: (CONTINUE|STOP|SHIFT TO REAL DATA)", html)


def test_report_is_self_contained_and_escaped(report):
    html = report.read_text()
    assert "<script" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "@import" not in html and "url(" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html
    assert report.stat().st_size < 5 * 2**20


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("SKIPPED: Debian's chromium is not installed and could not be installed "
                    "(apt-get install -y chromium); the browser check did not run")
    playwright = pytest.importorskip("playwright.sync_api")
    errors, requests = [], []
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=browser, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = b.new_page(viewport={"width": 1280, "height": 800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("dialog", lambda d: errors.append("dialog: " + d.message))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot))
        box = page.locator("#decision").bounding_box()
        text = page.locator("#decision .decision").inner_text()
        b.close()
    assert errors == []
    assert requests == [report.as_uri()]
    assert box is not None and box["y"] + 60 < 800  # the decision is on the first screen
    assert text.startswith("DECISION:")
    assert shot.stat().st_size > 10_000


def test_every_text_field_of_the_report_is_escaped(report):
    """Render the real context with a payload appended to every string the page can show."""
    from markupsafe import Markup

    from harness.report.render import _env, build

    def poison(value):
        if isinstance(value, Markup):
            return value  # charts: built from escaped parts
        if isinstance(value, str):
            return value + PAYLOADS[0] + PAYLOADS[1]
        if isinstance(value, dict):
            return {k: poison(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(poison(v) for v in value)
        return value

    ctx = build(report.parent / "runs" / "tiny")
    html = _env().get_template("report.html.j2").render(**poison(ctx))
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert html.count("&lt;script&gt;") > 50


def test_report_shows_per_slice_tables_with_n(report):
    html = report.read_text()
    assert 'id="slices"' in html
    section = html.split('id="slices"')[1].split("<h2")[0]
    assert "<h3>chosen:" in section
    assert "source=real" in section and "source=synthetic" in section
    assert "<th>n</th>" in section and "95% CI" in section
