"""The report's inline SVG charts: well-formed, described, escaped, deterministic, print-safe."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest
from markupsafe import Markup

from harness.report import svg
from harness.report.svg import DotSeries, ForestRow, Mark, ScoreRow

NS = "{http://www.w3.org/2000/svg}"
X = "<script>alert(1)</script>"
X_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
NAN = float("nan")


# ------------------------------------------------------------------------------- chart builders

def scorecard_chart(label: str = "multi_judged/answer_only/x1") -> Markup:
    return svg.scorecard([
        ScoreRow("route_intent", "accuracy", (
            Mark("chosen", label, 0.812, 0.77, 0.85),
            Mark("baseline", "single/x1", 0.741, 0.7, 0.79),
            Mark("teacher", "big-teacher", 0.903), Mark("chance", "chance", 0.25))),
        ScoreRow("extraction_fields_with_a_long_unit_name", "token_f1", (
            Mark("chosen", label, 0.42, 0.3, 0.52), Mark("baseline", "single/x1", 0.4, 0.33, 0.5),
            Mark("chance", "chance", 0.38)), flag="at chance"),
    ], f"Scorecard {label}")


FOREST_ROWS = [
    ForestRow("route_intent", "better/x1", 0.123, 0.05, 0.2, 0.06, "better", "¹"),
    ForestRow("route_intent", "worse/x2", -0.08, -0.15, -0.02, 0.06, "worse"),
    ForestRow("route_intent", "noev/x4", 0.02, -0.04, 0.08, 0.07, "no evidence"),
    ForestRow("extraction", "nodiff/x4", 0.0, 0.0, 0.0, None, "no difference"),
    ForestRow("extraction", "noest/x1", None, None, None, None, "not estimable", "²"),
    ForestRow("extraction", "chance/x1", 0.01, -0.06, 0.09, None, "at chance"),
]


def forest_chart(label: str = "noest/x1") -> Markup:
    rows = [r if r.label != "noest/x1" else ForestRow(label, label, None, None, None, None,
                                                      "not estimable", label)
            for r in FOREST_ROWS]
    return svg.forest(rows, f"Bucket effects {label}", f"Δ accuracy {label}")


def dots_chart(label: str = "synthetic") -> Markup:
    return svg.dots(
        [("route_intent", ["real", label]), ("extraction", ["real"])],
        [DotSeries(f"chosen: {label}", "chosen",
                   ((0.8, 0.75, 0.85, 120), (0.7, 0.6, 0.8, 40), (NAN, None, None, 0))),
         DotSeries("baseline: single/x1", "baseline",
                   ((0.75, 0.7, 0.8, 120), (0.72, None, None, 40), (0.3, 0.2, 0.4, 12)))],
        f"Slices {label}", f"accuracy {label}")


SEEDS = [(512, 0.53), (512, 0.56), (1024, 0.58), (1024, 0.62), (2048, 0.64), (2048, 0.66)]
MEANS = [(512, 0.545), (1024, 0.6), (2048, 0.65)]
FIT = [(512, 0.55), (1024, 0.6), (2048, 0.648), (4096, 0.69)]
BAND = [(2048, 0.648, 0.648), (4096, 0.66, 0.72)]


def curve_chart(label: str = "training samples") -> Markup:
    return svg.curve(SEEDS, MEANS, FIT, BAND, f"Curve {label}", label, f"accuracy {label}",
                     threshold_note=f"gain above min_gain 0.01 {label}")


BINS = [{"lo": i / 5, "hi": (i + 1) / 5, "count": c, "accuracy": a, "mean_confidence": m}
        for i, (c, a, m) in enumerate([(0, 0.0, 0.0), (12, 0.25, 0.31), (40, 0.45, 0.52),
                                       (77, 0.71, 0.69), (1234, 0.93, 0.95)])]


def reliability_chart(label: str = "cell a") -> Markup:
    return svg.reliability(BINS, f"Reliability {label}")


COST = [("teacher only", [(d, 35.0 * d) for d in range(0, 361, 24)]),
        ("distilled student", [(d, 2000.0 + 8.0 * d) for d in range(0, 361, 24)])]


def cost_chart(label: str = "days") -> Markup:
    return svg.cumulative_cost([(f"{name} {label}", pts) for name, pts in COST],
                               f"Cumulative cost {label}", label, f"cost {label}",
                               break_even=74.07)


CHARTS: dict[str, Callable[..., Markup]] = {
    "scorecard": scorecard_chart, "forest": forest_chart, "dots": dots_chart,
    "curve": curve_chart, "reliability": reliability_chart, "cumulative_cost": cost_chart}
WIDTHS = {"scorecard": 720, "forest": 720, "dots": 720, "curve": 360, "reliability": 360,
          "cumulative_cost": 520}
TITLES = {"scorecard": "Scorecard multi_judged/answer_only/x1", "forest": "Bucket effects noest/x1",
          "dots": "Slices synthetic", "curve": "Curve training samples",
          "reliability": "Reliability cell a", "cumulative_cost": "Cumulative cost days"}
# numbers each chart's text alternative must state
DESC_NUMBERS = {
    "scorecard": ["0.812 [0.770, 0.850]", "0.741", "big-teacher 0.903", "chance 0.250",
                  "flagged: at chance"],
    "forest": ["+0.123 [+0.050, +0.200]", "MDE 0.070", "not estimable", "at chance +0.010"],
    "dots": ["0.800 [0.750, 0.850] n=120", "0.720 n=40", "missing", "0.300 [0.200, 0.400] n=12"],
    "curve": ["(512, 0.530)", "(2048, 0.650)", "(4096, 0.690)", "4096: [0.660, 0.720]",
              "gain above min_gain 0.01"],
    "reliability": ["n=12 accuracy=0.250 confidence=0.310", "n=1234 accuracy=0.930"],
    "cumulative_cost": ["(24, 840.00)", "(0, 2000.00)", "break-even day 74.1"],
}
EMPTY: dict[str, Callable[[], Markup]] = {
    "scorecard": lambda: svg.scorecard([], "t"),
    "forest": lambda: svg.forest([], "t", "x"),
    "dots": lambda: svg.dots([], [], "t", "x"),
    "curve": lambda: svg.curve([], [], [], [], "t", "x", "y"),
    "reliability": lambda: svg.reliability([{"lo": 0, "hi": 1, "count": 0, "accuracy": 0,
                                             "mean_confidence": 0}], "t"),
    "cumulative_cost": lambda: svg.cumulative_cost([("a", [])], "t", "x", "y"),
}


def parse(chart: Markup) -> ET.Element:
    assert isinstance(chart, Markup)
    return ET.fromstring(str(chart))


def desc_of(root: ET.Element) -> str:
    desc = root.find(f"{NS}desc")
    assert desc is not None and desc.text
    return desc.text


def row_groups(root: ET.Element) -> dict[str, ET.Element]:
    """Groups carrying a hover ``<title>`` (rows and marks), by that title."""
    out = {}
    for g in root.iter(f"{NS}g"):
        t = g.find(f"{NS}title")
        if t is not None and t.text:
            out[t.text] = g
    return out


def texts(el: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in el.iter(f"{NS}text")]


# ------------------------------------------------------------------------------ every chart

@pytest.mark.parametrize("name", CHARTS)
def test_chart_is_wellformed_scalable_titled_and_described(name: str) -> None:
    root = parse(CHARTS[name]())
    assert root.tag == f"{NS}svg"
    w = WIDTHS[name]
    assert re.fullmatch(rf"0 0 {w} \d+(\.\d)?", root.get("viewBox", ""))
    assert root.get("width") == "100%" and root.get("height") is None  # never a fixed width
    assert root.get("role") == "img"
    title, desc = root.find(f"{NS}title"), root.find(f"{NS}desc")
    assert title is not None and desc is not None
    assert root.get("aria-labelledby") == title.get("id")
    assert root.get("aria-describedby") == desc.get("id")
    assert title.text == TITLES[name]
    for number in DESC_NUMBERS[name]:
        assert number in desc_of(root), (name, number)


@pytest.mark.parametrize("name", CHARTS)
def test_chart_escapes_user_text(name: str) -> None:
    out = str(CHARTS[name](X))
    assert "<script" not in out.lower()
    assert X_ESCAPED in out
    root = parse(Markup(out))
    assert not [e for e in root.iter() if e.tag.lower().endswith(("script", "image",
                                                                   "foreignobject"))]
    # the text alternative keeps the full text (the reliability diagram's only text: its title)
    assert X in (root.findtext(f"{NS}title") or "")
    assert X in desc_of(root) or name == "reliability"
    assert "url(" not in out and "href" not in out and "<image" not in out


@pytest.mark.parametrize("name", CHARTS)
def test_chart_is_deterministic(name: str) -> None:
    assert str(CHARTS[name]()) == str(CHARTS[name]())


@pytest.mark.parametrize("name", EMPTY)
def test_empty_input_says_no_data(name: str) -> None:
    root = parse(EMPTY[name]())
    assert desc_of(root) == "no data"
    assert "no data" in texts(root)
    assert root.find(f"{NS}title") is not None


@pytest.mark.parametrize("name", CHARTS)
def test_only_okabe_ito_colours_and_greys_legible_fonts_rounded_coordinates(name: str) -> None:
    out = str(CHARTS[name]())
    allowed = {c.lower() for c in svg.PALETTE + svg.GREYS}
    used = {c.lower() for c in re.findall(r"#[0-9a-fA-F]{3,6}\b", out)}
    assert used and used <= allowed, used - allowed
    root = parse(Markup(out))
    for el in root.iter():
        for attr in ("fill", "stroke"):
            v = el.get(attr)
            assert v is None or v == "none" or v.lower() in allowed, (el.tag, attr, v)
        if el.get("font-size") is not None:
            assert float(el.get("font-size", "0")) >= 11
        for attr in ("x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "width", "height", "r"):
            v = el.get(attr)
            if v is not None and el is not root:
                assert re.fullmatch(r"-?\d+(\.\d)?", v), (el.tag, attr, v)
        if el.get("points"):
            assert re.fullmatch(r"(-?\d+(\.\d)?,-?\d+(\.\d)? ?)+", el.get("points", ""))


def test_missing_numbers_never_reach_coordinates() -> None:
    out = str(svg.dots([("u", ["a", "b"])],
                       [DotSeries("c", "chosen", ((NAN, NAN, NAN, 1), (0.5, NAN, math.inf, 3)))],
                       "t", "x"))
    out += str(svg.curve([(0, 0.5), (NAN, 0.2), (64, math.inf), (128, 0.6)], [], [], [], "t",
                         "x", "y"))
    out += str(svg.cumulative_cost([("a", [(0, 1.0), (1, NAN), (2, 3.0)])], "t", "x", "y",
                                   break_even=NAN))
    assert not re.search(r'="[^"]*(nan|inf)', out.lower())


# ------------------------------------------------------------------------------ axes and labels

def test_nice_ticks_examples() -> None:
    assert svg.nice_ticks(0, 1) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert svg.nice_ticks(0.71, 0.79, 4) == [0.7, 0.72, 0.74, 0.76, 0.78, 0.8]
    assert svg.nice_ticks(-0.13, 0.07) == [-0.15, -0.1, -0.05, 0.0, 0.05, 0.1]
    assert svg.nice_ticks(1, 0) == svg.nice_ticks(0, 1)  # swapped bounds
    assert svg.nice_ticks(0.5, 0.5)[0] < 0.5 < svg.nice_ticks(0.5, 0.5)[-1]
    with pytest.raises(ValueError):
        svg.nice_ticks(0, math.nan)


@pytest.mark.parametrize(("lo", "hi", "n"), [(0, 1, 5), (0.013, 0.0171, 5), (-3.2, 47.5, 5),
                                             (123, 98765, 4), (-0.4, -0.1, 3), (0, 365, 6),
                                             (1e-6, 3e-6, 5), (0.25, 0.75, 2)])
def test_nice_ticks_cover_the_range_with_1_2_5_steps(lo: float, hi: float, n: int) -> None:
    ticks = svg.nice_ticks(lo, hi, n)
    assert ticks[0] <= lo and ticks[-1] >= hi
    steps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    step = steps[0]
    assert all(math.isclose(s, step, rel_tol=1e-6) for s in steps)
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5))
    assert len(ticks) - 1 <= n + 2  # about n intervals, never a long run of ticks
    assert ticks[0] > lo - step and ticks[-1] < hi + step  # no spare tick at either end


def test_log2_ticks_are_covering_powers_of_two() -> None:
    assert svg.log2_ticks(500, 4000) == [256, 512, 1024, 2048, 4096]
    assert svg.log2_ticks(1024, 1024) == [1024, 2048]
    wide = svg.log2_ticks(3, 2**20)
    assert len(wide) <= 8 and wide[0] <= 3 and wide[-1] >= 2**20
    ratios = {b / a for a, b in zip(wide, wide[1:], strict=False)}
    assert len(ratios) == 1 and math.log2(ratios.pop()).is_integer()
    assert all(math.log2(t).is_integer() for t in wide)
    assert svg.log2_ticks(0, 8)[0] == 1  # a non-positive bound falls back to 1


def test_compact_labels() -> None:
    assert [svg.fmt_count(v) for v in (128, 1024, 2048, 16384, 1536, 2**20, 1000)] == \
        ["128", "1k", "2k", "16k", "1.5k", "1M", "1000"]
    assert [svg.fmt_num(v) for v in (0.25, 0.5, 1.0, 35, 1200, 999.6, -0.0, 2.5e6, 0.30000000004)] \
        == ["0.25", "0.5", "1", "35", "1.2k", "1k", "0", "2.5M", "0.3"]


# ------------------------------------------------------------------------------ scorecard

def test_scorecard_one_row_group_per_unit_on_one_shared_scale() -> None:
    root = parse(scorecard_chart())
    groups = row_groups(root)
    rows = [t for t in groups if re.match(r"^[\w_]+ \((accuracy|token_f1)\): ", t)]
    assert len(rows) == 2
    assert sum(t.startswith("route_intent (") for t in rows) == 1
    # a long unit name is cut in the visible text and whole in the hover title
    long_row = groups[next(t for t in rows if t.startswith("extraction_fields"))]
    visible = texts(long_row)
    assert any(s.endswith("…") and len(s) < 25 for s in visible)
    assert "at chance" in visible
    flag = next(t for t in long_row.iter(f"{NS}text") if t.text == "at chance")
    assert flag.get("fill") == svg.VERMILLION and flag.get("font-weight") == "700"
    # one shared 0..1 axis: the quarter labels appear once, not per row
    labels = texts(root)
    assert [lab for lab in labels if lab in ("0", "0.25", "0.5", "0.75", "1")] == \
        ["0", "0.25", "0.5", "0.75", "1"]


def test_scorecard_chance_is_a_line_and_roles_have_distinct_shapes() -> None:
    groups = row_groups(parse(scorecard_chart()))
    chance = [g for t, g in groups.items() if t.startswith("chance ")]
    assert len(chance) == 2
    for g in chance:
        shapes = [e.tag.removeprefix(NS) for e in g if e.tag != f"{NS}title"]
        assert shapes == ["line"]
        line = g.find(f"{NS}line")
        assert line is not None and line.get("x1") == line.get("x2")  # vertical tick
        assert line.get("stroke") == svg.GREY
    chosen = groups["chosen multi_judged/answer_only/x1 0.812 [0.770, 0.850]"]
    baseline = groups["baseline single/x1 0.741 [0.700, 0.790]"]
    teacher = groups["teacher big-teacher 0.903"]
    dot = chosen.find(f"{NS}circle")
    square = baseline.find(f"{NS}rect")
    assert dot is not None and dot.get("fill") == svg.BLUE
    assert square is not None and square.get("fill") == svg.WHITE  # hollow
    assert square.get("stroke") == svg.ORANGE
    assert teacher.find(f"{NS}polygon") is not None
    # baseline offset from the chosen arm so overlapping intervals stay visible
    sq_cy = float(square.get("y", "0")) + float(square.get("height", "0")) / 2
    assert abs(float(dot.get("cy", "0")) - sq_cy) >= 6


def test_scorecard_uses_nice_ticks_outside_the_unit_interval() -> None:
    root = parse(svg.scorecard([ScoreRow("latency", "ms", (Mark("chosen", "a", 35, 20, 48),
                                                           Mark("baseline", "b", 61)))], "t"))
    labels = texts(root)
    assert "0.25" not in labels
    assert {"20", "30", "40", "50", "60", "70"} <= set(labels)


# ------------------------------------------------------------------------------ forest

def forest_rows_by_label(root: ET.Element) -> dict[str, ET.Element]:
    return {t.split(" / ", 1)[1].split(":")[0]: g for t, g in row_groups(root).items()
            if " / " in t}


def test_forest_not_estimable_has_no_point_but_italic_words() -> None:
    rows = forest_rows_by_label(parse(forest_chart()))
    assert len(rows) == len(FOREST_ROWS)
    g = rows["noest/x1"]
    assert g.find(f"{NS}circle") is None and g.find(f"{NS}polygon") is None
    assert g.find(f"{NS}line") is None  # no interval either
    italic = [t for t in g.iter(f"{NS}text") if t.get("font-style") == "italic"]
    assert [t.text for t in italic] == ["not estimable"]
    # and it looks different from "no evidence": hollow grey circle, interval, ±MDE band
    ne = rows["noev/x4"]
    circle = ne.find(f"{NS}circle")
    assert circle is not None and circle.get("fill") == svg.WHITE
    assert circle.get("stroke") == svg.GREY
    assert any(r.get("fill") == svg.BAND for r in ne.iter(f"{NS}rect"))
    assert not [t for t in ne.iter(f"{NS}text") if t.get("font-style") == "italic"]


def test_forest_star_only_on_better_and_worse() -> None:
    rows = forest_rows_by_label(parse(forest_chart()))
    states = {r.label: r.state for r in FOREST_ROWS}
    for label, g in rows.items():
        starred = any("✱" in s for s in texts(g))
        assert starred == (states[label] in ("better", "worse")), label
    assert "+0.12 [+0.05, +0.20] ✱¹" in texts(rows["better/x1"])
    better = rows["better/x1"].find(f"{NS}circle")
    worse = rows["worse/x2"].find(f"{NS}circle")
    assert better is not None and better.get("fill") == svg.BLUE
    assert worse is not None and worse.get("fill") == svg.VERMILLION


def test_forest_no_difference_and_at_chance_encodings() -> None:
    rows = forest_rows_by_label(parse(forest_chart()))
    nd = rows["nodiff/x4"]
    assert nd.find(f"{NS}line") is None and nd.find(f"{NS}circle") is None
    square = nd.find(f"{NS}rect")
    assert square is not None and square.get("fill") == svg.GREY
    ch = rows["chance/x1"]
    diamond, line = ch.find(f"{NS}polygon"), ch.find(f"{NS}line")
    assert diamond is not None and diamond.get("stroke") == svg.ORANGE
    assert diamond.get("fill") == svg.WHITE
    assert line is not None and line.get("stroke-dasharray")
    assert any("∅ not above chance" in s for s in texts(ch))


def test_forest_scale_is_symmetric_around_a_zero_line() -> None:
    root = parse(forest_chart())
    labels = texts(root)
    assert {"-0.2", "-0.1", "0", "+0.1", "+0.2"} <= set(labels)
    groups = [t for t in labels if t in ("route_intent", "extraction")]
    assert groups == ["route_intent", "extraction"]  # one header per group, in first-seen order


# ------------------------------------------------------------------------------ dots

def test_dots_skip_missing_values_and_show_n() -> None:
    root = parse(dots_chart())
    rows = {t.split(":")[0]: g for t, g in row_groups(root).items() if " / " in t}
    assert list(rows) == ["route_intent / real", "route_intent / synthetic", "extraction / real"]
    assert "n=120" in texts(rows["route_intent / real"])
    last = rows["extraction / real"]
    assert last.find(f"{NS}circle") is None  # chosen value is NaN: skipped
    square = last.find(f"{NS}rect")
    assert square is not None and square.get("fill") == svg.WHITE
    assert square.get("stroke") == svg.ORANGE
    assert "n=12" in texts(last)  # the first series with a value gives n
    assert len(list(rows["route_intent / synthetic"].iter(f"{NS}line"))) == 1  # one interval


# ------------------------------------------------------------------------------ curve

def test_curve_draws_every_seed_means_fit_and_band_on_a_log2_axis() -> None:
    root = parse(curve_chart())
    circles = list(root.iter(f"{NS}circle"))
    seeds = [c for c in circles if c.get("fill-opacity")]
    assert len(seeds) == len(SEEDS) + 1  # + the legend's swatch
    means = [c for c in circles if not c.get("fill-opacity") and c.get("fill") == svg.BLUE]
    assert len(means) == len(MEANS) + 1
    dashed = [p for p in root.iter(f"{NS}polyline") if p.get("stroke-dasharray")]
    assert len(dashed) == 1 and dashed[0].get("stroke") == svg.VERMILLION
    assert len(dashed[0].get("points", "").split()) == len(FIT)
    assert [p.get("fill") for p in root.iter(f"{NS}polygon")] == [svg.VERMILLION]
    labels = texts(root)
    assert {"512", "1k", "2k", "4k", "seed", "mean over seeds", "power-law fit",
            "95% band of next doubling"} <= set(labels)
    assert any("min_gain" in s for s in labels)


def test_curve_without_fit_or_band_has_neither() -> None:
    root = parse(svg.curve(SEEDS, MEANS, [], [], "t", "samples", "acc"))
    assert not [p for p in root.iter(f"{NS}polyline") if p.get("stroke-dasharray")]
    assert root.find(f".//{NS}polygon") is None
    assert "power-law fit" not in texts(root)


def test_curve_y_axis_stays_inside_zero_one_for_scores() -> None:
    root = parse(svg.curve([(64, 0.97), (128, 0.99), (256, 1.0)], [], [], [], "t", "n", "acc"))
    y_labels = [float(t.text or "") for t in root.iter(f"{NS}text")
                if t.get("text-anchor") == "end"]
    assert len(y_labels) >= 3 and y_labels[-1] == 1.0 and min(y_labels) >= 0.9


# ------------------------------------------------------------------------------ reliability

def test_reliability_bars_ticks_diagonal_and_counts() -> None:
    root = parse(reliability_chart())
    bars = [r for r in root.iter(f"{NS}rect") if r.get("fill") == svg.BLUE]
    assert len(bars) == 4 + 1  # four non-empty bins + the legend's swatch
    ticks = [ln for ln in root.iter(f"{NS}line") if ln.get("stroke") == svg.VERMILLION]
    assert len(ticks) == 4 + 1
    diagonal = [ln for ln in root.iter(f"{NS}line") if ln.get("stroke-dasharray") and
                ln.get("x1") != ln.get("x2") and ln.get("y1") != ln.get("y2")]
    assert diagonal and all(d.get("stroke") == svg.GREY for d in diagonal)
    labels = texts(root)
    assert labels.count("0.25") == 2 and labels.count("0.75") == 2  # both axes
    assert {"12", "40", "77", "1.23k"} <= set(labels)
    assert "n=0" not in desc_of(root)


def test_reliability_takes_numpy_scalars() -> None:
    np = pytest.importorskip("numpy")
    bins = [{"lo": np.float64(0.5), "hi": np.float64(1.0), "count": np.int64(7),
             "accuracy": np.float64(0.6), "mean_confidence": np.float64(0.8)}]
    root = parse(svg.reliability(bins, "t"))
    assert "n=7 accuracy=0.600 confidence=0.800" in desc_of(root)


# ------------------------------------------------------------------------------ cumulative cost

def test_cumulative_cost_lines_and_break_even() -> None:
    root = parse(cost_chart())
    lines = list(root.iter(f"{NS}polyline"))
    assert [ln.get("stroke") for ln in lines] == [svg.BLUE, svg.GREEN]
    assert lines[0].get("stroke-dasharray") is None and lines[1].get("stroke-dasharray")
    labels = texts(root)
    assert "break-even day 74.1" in labels
    assert {"0", "5k", "10k", "100", "200", "300"} <= set(labels)
    outside = parse(svg.cumulative_cost(COST, "t", "days", "cost", break_even=900))
    assert not any("break-even" in s for s in texts(outside))


# ------------------------------------------------------------------------------ old entry point

def test_lines_wrapper_keeps_the_old_calls_working() -> None:
    curve = parse(svg.lines([("measured", [(512, 0.5), (1024, 0.6)], "pts"),
                             ("fit", [(512, 0.5), (2048, 0.7)], "fit")], "old curve",
                            "training samples (log2)", "accuracy",
                            band=[(1024, 0.6, 0.6), (2048, 0.65, 0.75)], log_x=True))
    assert "(2048, 0.700)" in desc_of(curve)
    cost = parse(svg.lines([("teacher only", [(0, 0.0), (10, 5.0)], "s1"),
                            ("distilled student", [(0, 2.0), (10, 3.0)], "s2")], "old cost",
                           "days", "cost"))
    assert [ln.get("stroke") for ln in cost.iter(f"{NS}polyline")] == [svg.BLUE, svg.GREEN]
