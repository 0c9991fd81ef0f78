"""The report says no more than the data supports: learned-nothing cells stand out, undeclared
costs and latencies say so instead of showing zeros or blanks."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import escape

from harness.cli import main
from harness.report.render import AT_CHANCE_STYLE
from tests.helpers.synth import spec_dict, write_run

UNITS = {"intent": {"kind": "label", "labels": ["billing", "shipping", "technical", "account"],
                    "answer_marker": "Answer:"},
         "esc": {"kind": "refusal", "marker": "ESCALATE", "answer_marker": "Answer:"}}


def exact(p: float, n: int, seed: int = 0) -> np.ndarray:
    a = np.zeros(n, dtype=int)
    a[: round(p * n)] = 1
    return np.random.default_rng(seed).permutation(a)


def render(tmp_path: Path, intent: list[float], **spec_kw: Any) -> str:
    """The report of a 1 x 3 design (baseline, then two buckets) with these intent accuracies;
    escalation is learned everywhere."""
    spec = spec_dict(["base", "b1", "b2"], ["plain"], [1.0], units=UNITS, **spec_kw)
    cells = {(b, "plain", 1.0): {"intent": exact(p, 400, i), "esc": exact(0.85, 400, 9 + i)}
             for i, (b, p) in enumerate(zip(["base", "b1", "b2"], intent, strict=True))}
    run_dir = write_run(tmp_path, spec, cells)
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    return out.read_text()


def _section(html: str, section: str) -> str:
    """The HTML from ``<h2 id=section>`` to the next ``<h2``."""
    start = html.index(f'<h2 id="{section}">')
    end = html.find("<h2", start + 1)
    return html[start:end if end > 0 else None]


def test_learned_nothing_cells_stand_out(tmp_path):
    # base and b1 learn intent routing; b2 answers at chance (0.25 with 4 labels)
    html = render(tmp_path, [0.8, 0.85, 0.25])
    chance = _section(html, "chance")
    heat = _section(html, "heatmap")
    # the chance table (one row per arm): b2's intent cell is hatched and marked, the learning
    # cells are not; on 400 items and one seed b2 cannot yet be told within chance_margin of
    # chance, so it is "undecided", with the items that would decide it
    rows = {m.group(1): m.group(2) for m in re.finditer(r"<tr><th>([^<]+)</th>(.*?)</tr>",
                                                        chance, re.S)}
    assert "∅ undecided" in rows["b2/plain/x1"] and "to decide: add ~" in rows["b2/plain/x1"]
    assert "∅" not in rows["b1/plain/x1"] and "∅" not in rows["base/plain/x1"]
    assert "1 arm × unit pair(s) are not above chance" in chance
    # the heatmap: b2's intent delta (significantly worse) carries the marker too, never grey
    units = re.findall(r"<th>(\w+)</th>", re.search(r"<tr><th>arm</th>(.*?)</tr>", heat,
                                                     re.S).group(1))
    b2 = re.search(r"<tr><th>b2/plain/x1</th>(.*?)</tr>", heat, re.S).group(1)
    intent_cell = re.findall(r"<td[^>]*>.*?</td>", b2, re.S)[units.index("intent")]
    assert "∅ at chance" in intent_cell and 'class="at-chance"' in intent_cell
    assert AT_CHANCE_STYLE in intent_cell
    b1 = re.search(r"<tr><th>b1/plain/x1</th>(.*?)</tr>", heat, re.S).group(1)
    assert "∅" not in b1
    # a legend line says what the marker means, in both tables
    for part in (chance, heat):
        assert "<strong>∅ at chance</strong>" in part and "learned nothing measurable" in part


def test_no_prices_no_zeros_and_no_cost_chart(tmp_path):
    html = render(tmp_path, [0.8, 0.85, 0.9])
    roi = _section(html, "roi")
    assert "not assessed: no prices declared" in roi
    assert not re.search(r">-?0\.00<", roi)  # no column of zero costs
    assert "<svg" not in roi and "Cumulative cost" not in html
    # no teacher declares a latency: said, not an empty line
    assert "Teacher p95 (declared): not declared" in html
    assert "Teacher p95 (declared): ." not in html


def test_priced_run_keeps_the_ledger_chart_and_teacher_latency(tmp_path):
    costs = {"teachers": {"t": {"price_per_1k_prompt": 0.01, "price_per_1k_completion": 0.03,
                                "latency_p95_ms": 900}},
             "gpu_hour": 2.5, "teacher_price_per_1k": 0.06, "student_price_per_1k": 0.01}
    html = render(tmp_path, [0.8, 0.85, 0.9], costs=costs)
    roi = _section(html, "roi")
    assert "not assessed" not in roi and "Cumulative cost" in roi
    assert "Teacher p95 (declared): t 900.0 ms." in html


def test_the_banner_says_stop_when_the_chosen_student_is_at_chance(tmp_path):
    # 400 items, one seed: a margin of 0.1 is what this sample can bound at 1 %
    html = render(tmp_path, [0.25, 0.25, 0.25], stop={"chance_margin": 0.1})
    banner = html[html.index('id="decision"'):html.index('<h2 id="signals">')]
    assert "DECISION: STOP" in banner
    assert "— at chance" in banner
    assert "no minimums declared" in banner and "minimums met" not in banner


def test_a_repeated_verdict_explanation_is_one_footnote(tmp_path):
    # one seed per arm: every contrast is "not estimable: <the same long reason>"
    spec = spec_dict(["base", "b1", "b2", "b3"], ["plain", "rich"], [1.0], units=UNITS)
    arms = [("base", "plain"), ("b1", "plain"), ("b2", "plain"), ("b3", "plain"),
            ("base", "rich")]
    cells = {(b, f, 1.0): {"intent": exact(0.6 + 0.05 * i, 400, i),
                           "esc": exact(0.85, 400, 9 + i)} for i, (b, f) in enumerate(arms)}
    run_dir = write_run(tmp_path, spec, cells)
    out = tmp_path / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    html = out.read_text()
    analysis = json.loads((run_dir / "analysis.json").read_text())
    verdicts = {r["verdict"] for r in analysis["attribution"]["vs_baseline"]}
    assert len(verdicts) == 1 and next(iter(verdicts)).startswith("not estimable: ")
    reason = next(iter(verdicts)).split(": ", 1)[1]
    rows = len(analysis["attribution"]["vs_baseline"]) + len(
        analysis["attribution"]["field_effects"])
    assert rows > 4
    assert html.count(escape(reason)) == 1  # said once, in the footnotes
    notes = html.split('id="footnotes">')[1].split("</ol>")[0]
    assert f"¹ {escape(reason)}" in notes
    assert html.count("not estimable¹") >= rows  # each row points at it
