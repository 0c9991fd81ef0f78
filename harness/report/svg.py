"""Inline SVG charts for the HTML report: self-styled, escaped, deterministic, print-safe.

Every chart is one ``<svg>`` element with a ``viewBox`` and ``width="100%"`` (it scales to the
page: 1400 px desktop, 390 px phone, paper) and an inline ``max-width`` equal to its viewBox width
in px, so it is never drawn larger than 1 unit = 1 px. It carries a ``<title>`` and a ``<desc>``
that states all its numbers (the text alternative), styles itself with presentation attributes
only (``fill=``, ``stroke=``, ``font-size=``: no CSS class, so it looks the same without the
page's stylesheet and in print), and escapes every piece of caller text with
:func:`markupsafe.escape`. There is no ``<script>``, ``<image>``, external reference or ``url(``.

Colours are the Okabe–Ito colour-blind-safe palette plus neutral greys, and no meaning rests
on colour alone: each role also has its own shape (filled circle, hollow square, diamond,
vertical tick, hollow circle) or dash pattern, so a black-and-white print still reads.

Coordinates are rounded to 1 decimal and nothing depends on hash order or time, so the same
input gives the same bytes. Empty input draws a small "no data" chart and never raises;
non-finite numbers (NaN, inf) are skipped as missing.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeGuard

from markupsafe import Markup, escape

# Okabe & Ito (2008) colour-blind-safe palette.
BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
VERMILLION = "#D55E00"
SKY = "#56B4E9"
PURPLE = "#CC79A7"
GREY = "#8a8f98"
INK = "#1d2330"
# Neutral greys beside the palette: gridlines, muted text (>= 4.5:1 on white, GREY is not),
# alternate-row shading, the MDE band, the background.
GRID = "#e1e4ea"
MUTED = "#5b6475"
SHADE = "#f5f6f8"
BAND = "#d9dde3"
WHITE = "#ffffff"
PALETTE = (BLUE, ORANGE, GREEN, VERMILLION, SKY, PURPLE, GREY, INK)
GREYS = (GRID, MUTED, SHADE, BAND, WHITE)

FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
# Font sizes in viewBox units. The 720-wide charts are drawn at about half size on a phone, so
# their row labels are larger than the 11-unit floor; nothing anywhere is below 11.
FS_ROW = 14  # row labels of the 720-wide charts (about 7 px on a 390 px phone)
FS_WIDE = 13  # legend, ticks and value text of the 720-wide charts
FS_LABEL = 13
FS_TEXT = 12
FS_SMALL = 11
CHAR_W = 0.56  # average glyph advance of a sans-serif font, in em: only to budget label widths

WIDE = 720  # scorecard, forest, dots
CURVE_W, CURVE_H = 360, 230
REL_W, REL_H = 360, 260
COST_W, COST_H = 520, 260

Role = Literal["chosen", "baseline", "teacher", "chance"]
State = Literal["better", "worse", "no evidence", "no difference", "not estimable", "at chance"]


@dataclass(frozen=True)
class Mark:
    """One value on a scorecard row.

    ``role`` picks the encoding: chosen = filled blue circle, baseline = hollow orange square,
    teacher = green diamond, chance = grey vertical tick. ``label`` is the arm or teacher name
    (shown in the desc and the hover title). ``lo``/``hi``: its 95 % interval in the metric's
    units, None when it has none (chance never has one).
    """

    role: Role
    label: str
    value: float
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class ScoreRow:
    """One capability unit on the scorecard: its primary ``metric`` (e.g. "accuracy"), the marks
    drawn on the shared scale, and ``flag``, a short warning shown in bold at the row's right
    end (e.g. "at chance"; empty: none)."""

    unit: str
    metric: str
    marks: tuple[Mark, ...]
    flag: str = ""


@dataclass(frozen=True)
class ForestRow:
    """One contrast in a forest plot: ``label`` (an arm) under ``group`` (a unit).

    ``delta`` and its interval ``lo``/``hi`` are differences in the metric's units (None when
    not estimable); ``mde`` is the minimum detectable effect, drawn as a ±MDE band for "no
    evidence" rows; ``state`` is the verdict that picks the encoding; ``note`` is a footnote
    marker appended to the right-hand text (e.g. "¹")."""

    group: str
    label: str
    delta: float | None
    lo: float | None
    hi: float | None
    mde: float | None
    state: State
    note: str = ""


@dataclass(frozen=True)
class DotSeries:
    """One arm in a dot plot: ``values`` holds one ``(value, lo, hi, n)`` per plotted row, in
    the flattened order of the plot's groups; ``value`` NaN means missing (skipped), ``lo``/``hi``
    None means no interval, ``n`` is the number of eval items behind the value."""

    name: str
    role: Literal["chosen", "baseline"]
    values: tuple[tuple[float, float | None, float | None, int], ...]


# ---------------------------------------------------------------------------------------------
# numbers, ticks, formatting


def _finite(v: object) -> TypeGuard[float]:
    """A real, finite number, numpy scalars included (bools excluded: never data here)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _opt(v: object) -> float | None:
    """``v`` as a float when it is a finite number, else None (missing)."""
    return float(v) if _finite(v) else None


def _n(v: float) -> str:
    """A coordinate rounded to 1 decimal, without a trailing ".0" or a "-0"."""
    s = f"{v:.1f}"
    if s == "-0.0":
        s = "0.0"
    return s[:-2] if s.endswith(".0") else s


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Evenly spaced "nice" ticks covering ``[lo, hi]``: the step is 1, 2 or 5 × 10^k, the
    smallest such step giving at most about ``n`` intervals; the first tick is <= ``lo`` and the
    last >= ``hi`` (both multiples of the step). ``nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8,
    1.0]``. ``lo == hi`` widens the range by 10 % (or 1 at zero); ``lo > hi`` is swapped.

    Raises:
        ValueError: a bound is not finite.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"nice_ticks needs finite bounds, got {lo!r}, {hi!r}")
    lo, hi = (float(lo), float(hi)) if lo <= hi else (float(hi), float(lo))
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(int(n), 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw * (1 - 1e-9))
    # the tolerance keeps a bound that is a multiple of the step from adding a spare tick
    k0 = math.floor(lo / step + 1e-9)
    k1 = math.ceil(hi / step - 1e-9)
    digits = max(0, -math.floor(math.log10(step))) + 1  # drops float noise like 0.6000000001
    return [round(k * step, digits) + 0.0 for k in range(k0, k1 + 1)]


def log2_ticks(lo: float, hi: float, max_ticks: int = 7) -> list[float]:
    """Powers of two covering ``[lo, hi]`` (first <= lo, last >= hi) for a log2 axis of sample
    counts; every other (or every k-th) power when more than ``max_ticks`` would be needed.
    Non-positive or non-finite bounds fall back to 1."""
    lo = lo if _finite(lo) and lo > 0 else 1.0
    hi = hi if _finite(hi) and hi > 0 else lo
    lo, hi = min(lo, hi), max(lo, hi)
    e0, e1 = math.floor(math.log2(lo) + 1e-9), math.ceil(math.log2(hi) - 1e-9)
    if e1 <= e0:
        e1 = e0 + 1
    stride = max(1, math.ceil((e1 - e0) / max(max_ticks - 1, 1)))
    exps = list(range(e0, e1 + 1, stride))
    if exps[-1] < e1:
        exps.append(exps[-1] + stride)
    return [2.0**e for e in exps]


def _g3(x: float) -> str:
    s = f"{x:.3g}"
    return "0" if s in ("-0", "0") else s


def fmt_num(v: float) -> str:
    """Compact decimal label: 0.25, 0.5, 1, 35, 1.2k, 3.4M (3 significant digits at most)."""
    if not _finite(v):
        return "–"
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div * 0.9995:  # 999.6 is "1k", not "1e+03"
            return _g3(v / div) + suffix
    return _g3(v)


def fmt_count(v: float) -> str:
    """Compact label of a sample count on a log2 axis, in binary thousands: 128, 1k (1,024),
    2k, 16k (16,384), 1M (1,048,576); 1536 is "1.5k"; counts under 1,024 are written out."""
    if not _finite(v):
        return "–"
    if abs(v) >= 1024**2:
        return _g3(v / 1024**2) + "M"
    if abs(v) >= 1024:
        return _g3(v / 1024) + "k"
    return str(int(v)) if float(v).is_integer() else _g3(v)


def _signed(v: float) -> str:
    """A tick label with its sign: -0.1, 0, +0.1."""
    s = fmt_num(v)
    return "+" + s if v > 0 and s != "0" else s


def _scale(v: float, d0: float, d1: float, p0: float, p1: float) -> float:
    """Map ``v`` from the domain [d0, d1] to pixels [p0, p1], clamped to the plot."""
    if d1 == d0:
        return (p0 + p1) / 2
    t = min(max((v - d0) / (d1 - d0), 0.0), 1.0)
    return p0 + t * (p1 - p0)


def _unit_interval(vals: Sequence[float]) -> bool:
    return all(0.0 <= v <= 1.0 for v in vals)


QUARTERS = [0.0, 0.25, 0.5, 0.75, 1.0]


def _value_axis(vals: Sequence[float]) -> list[float]:
    """Ticks of a shared value scale: quarters of [0, 1] when everything lies there (scores),
    else nice ticks over the data; the domain is [first, last]."""
    if not vals or _unit_interval(vals):
        return list(QUARTERS)
    return nice_ticks(min(vals), max(vals), 5)


def _padded_axis(vals: Sequence[float], n: int) -> list[float]:
    """Ticks of an axis fitted to the data ± 8 % (a curve's y): clipped to [0, 1] when the data
    lies there, so an accuracy axis never shows -0.2."""
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.02)
    lo, hi = lo - pad, hi + pad
    if _unit_interval(vals):
        # a 1-2-5 step of a range inside [0, 1] divides 1, so the ticks stay inside too
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return nice_ticks(lo, hi, n)


# ---------------------------------------------------------------------------------------------
# SVG pieces (strings: every piece of caller text goes through escape)


def _clip(text: str, width: float, fs: float, bold: bool = False) -> str:
    """``text`` cut with "…" to fit ``width`` units at font size ``fs`` (estimated; bold glyphs
    are about 10 % wider)."""
    limit = max(int(width / (CHAR_W * fs * (1.1 if bold else 1.0))), 2)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(x: float, y: float, s: str, fs: float = FS_TEXT, fill: str = INK, anchor: str = "start",
          weight: str = "", italic: bool = False, extra: str = "") -> str:
    attrs = f'x="{_n(x)}" y="{_n(y)}" font-size="{fs:g}" fill="{fill}"'
    if anchor != "start":
        attrs += f' text-anchor="{anchor}"'
    if weight:
        attrs += f' font-weight="{weight}"'
    if italic:
        attrs += ' font-style="italic"'
    return f"<text {attrs}{extra}>{escape(s)}</text>"


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, width: float = 1.0,
          dash: str = "", cap: str = "") -> str:
    extra = (f' stroke-dasharray="{dash}"' if dash else "") + \
        (f' stroke-linecap="{cap}"' if cap else "")
    return (f'<line x1="{_n(x1)}" y1="{_n(y1)}" x2="{_n(x2)}" y2="{_n(y2)}" stroke="{stroke}" '
            f'stroke-width="{width:g}"{extra}/>')


def _circle(cx: float, cy: float, r: float, fill: str, stroke: str = WHITE, width: float = 1.0,
            opacity: float = 1.0) -> str:
    op = f' fill-opacity="{opacity:g}"' if opacity < 1 else ""
    return (f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="{r:g}" fill="{fill}"{op} stroke="{stroke}" '
            f'stroke-width="{width:g}"/>')


def _square(cx: float, cy: float, side: float, fill: str, stroke: str, width: float) -> str:
    return (f'<rect x="{_n(cx - side / 2)}" y="{_n(cy - side / 2)}" width="{side:g}" '
            f'height="{side:g}" fill="{fill}" stroke="{stroke}" stroke-width="{width:g}"/>')


def _diamond(cx: float, cy: float, r: float, fill: str, stroke: str, width: float) -> str:
    pts = f"{_n(cx)},{_n(cy - r)} {_n(cx + r)},{_n(cy)} {_n(cx)},{_n(cy + r)} {_n(cx - r)},{_n(cy)}"
    return f'<polygon points="{pts}" fill="{fill}" stroke="{stroke}" stroke-width="{width:g}"/>'


def _rect(x: float, y: float, w: float, h: float, fill: str, extra: str = "") -> str:
    return (f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(max(w, 0.0))}" height="{_n(max(h, 0.0))}" '
            f'fill="{fill}"{extra}/>')


def _points(coords: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in coords)


def _group(hover: str, body: str) -> str:
    """A group whose ``<title>`` child browsers show on hover (full text of truncated labels)."""
    return f"<g><title>{escape(hover)}</title>{body}</g>"


Swatch = Callable[[float, float], str]


def _legend(keys: Sequence[tuple[Swatch, float, str]], x0: float, y0: float, right: float,
            fs: float = FS_TEXT, line_h: float = 16.0) -> tuple[str, float]:
    """Legend keys flowed left to right, wrapping at ``right``. Each key: (swatch drawing
    centred at (x, y), swatch width, text). Returns the SVG and the baseline of its last line."""
    out, x, y = [], x0, y0
    for draw, sw, label in keys:
        w = sw + 5 + len(label) * CHAR_W * fs
        if x > x0 and x + w > right:
            x, y = x0, y + line_h
        out.append(draw(x + sw / 2, y - fs * 0.35))
        out.append(_text(x + sw + 5, y, label, fs, INK))
        x += w + 16
    return "".join(out), y


def _x_axis(ticks: Sequence[float], labels: Sequence[str], sx: Callable[[float], float],
            top: float, bottom: float, fs: float = FS_TEXT) -> str:
    """Vertical gridlines from ``top`` to ``bottom``, the axis line, tick marks and labels."""
    out = [_line(sx(t), top, sx(t), bottom, GRID) for t in ticks]
    out.append(_line(sx(ticks[0]), bottom, sx(ticks[-1]), bottom, GREY))
    for t, lab in zip(ticks, labels, strict=True):
        out.append(_line(sx(t), bottom, sx(t), bottom + 4, GREY))
        out.append(_text(sx(t), bottom + 5 + fs, lab, fs, MUTED, "middle"))
    return "".join(out)


def _y_axis(ticks: Sequence[float], labels: Sequence[str], sy: Callable[[float], float],
            left: float, right: float, fs: float = FS_SMALL) -> str:
    """Horizontal gridlines from ``left`` to ``right``, the axis line, tick marks and labels."""
    out = [_line(left, sy(t), right, sy(t), GRID) for t in ticks]
    out.append(_line(left, sy(ticks[0]), left, sy(ticks[-1]), GREY))
    for t, lab in zip(ticks, labels, strict=True):
        out.append(_line(left - 4, sy(t), left, sy(t), GREY))
        out.append(_text(left - 6, sy(t) + fs * 0.35, lab, fs, MUTED, "end"))
    return "".join(out)


def _frame(w: float, h: float, title: str, desc: str, body: str) -> Markup:
    """The ``<svg>`` element: viewBox, fluid width capped at 1 unit = 1 px, title and desc
    (referenced by aria attributes), a white background so it prints on any page."""
    # ids must be unique on the page and stable across runs: a digest of the content
    cid = "c" + hashlib.sha1(f"{title}\0{desc}\0{body}".encode()).hexdigest()[:10]
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(w)} {_n(h)}" width="100%" '
        f'style="max-width:{_n(w)}px;height:auto" role="img" aria-labelledby="{cid}-t" '
        f'aria-describedby="{cid}-d" font-family="{FONT}">'
        f'<title id="{cid}-t">{escape(title)}</title><desc id="{cid}-d">{escape(desc)}</desc>'
        f'<rect width="{_n(w)}" height="{_n(h)}" fill="{WHITE}"/>{body}</svg>')


def _empty(w: float, title: str) -> Markup:
    """A short chart saying "no data", with its title kept."""
    h = 60
    body = _text(w / 2, 26, title, FS_TEXT, INK, "middle", "600") + \
        _text(w / 2, 46, "no data", FS_TEXT, MUTED, "middle", italic=True)
    return _frame(w, h, title, "no data", body)


def _interval_text(v: float, lo: float | None, hi: float | None, fmt: str = ".3f") -> str:
    s = format(v, fmt)
    if _finite(lo) and _finite(hi):
        s += f" [{format(lo, fmt)}, {format(hi, fmt)}]"
    return s


# ---------------------------------------------------------------------------------------------
# scorecard

_ROLE_ORDER = ("chance", "teacher", "baseline", "chosen")  # drawing order: chosen on top
_ROLE_KEY = {"chosen": "chosen arm", "baseline": "baseline", "teacher": "teacher",
             "chance": "chance"}


def _mark_swatch(role: str) -> Swatch:
    if role == "chosen":
        return lambda x, y: _line(x - 8, y, x + 8, y, BLUE, 3.5) + _circle(x, y, 5.5, BLUE)
    if role == "baseline":
        return lambda x, y: _line(x - 8, y, x + 8, y, ORANGE, 2) + \
            _square(x, y, 9, WHITE, ORANGE, 2)
    if role == "teacher":
        return lambda x, y: _diamond(x, y, 6, GREEN, WHITE, 1)
    return lambda x, y: _line(x, y - 8, x, y + 8, GREY, 2.5)


def _draw_mark(m: Mark, sx: Callable[[float], float], cy: float) -> str:
    """One scorecard mark at row centre ``cy``: baseline below and chosen above the centre so
    overlapping intervals stay visible."""
    x = sx(m.value)
    lo, hi = _opt(m.lo), _opt(m.hi)
    if m.role == "chance":
        return _line(x, cy - 12, x, cy + 12, GREY, 2.5)
    if m.role == "teacher":
        ci = _line(sx(lo), cy, sx(hi), cy, GREEN, 1.5) if lo is not None and hi is not None else ""
        return ci + _diamond(x, cy, 6, GREEN, WHITE, 1)
    if m.role == "baseline":
        y = cy + 5
        ci = _line(sx(lo), y, sx(hi), y, ORANGE, 2) if lo is not None and hi is not None else ""
        return ci + _square(x, y, 9, WHITE, ORANGE, 2)
    y = cy - 4  # chosen (and any unknown role: drawn as the arm under study, never dropped)
    ci = (_line(sx(lo), y, sx(hi), y, BLUE, 3.5, cap="round")
          if lo is not None and hi is not None else "")
    return ci + _circle(x, y, 5.5, BLUE, WHITE, 1.2)


def _mark_desc(m: Mark) -> str:
    if m.role == "chance":
        return f"chance {m.value:.3f}"
    return f"{m.role} {m.label} {_interval_text(m.value, m.lo, m.hi)}"


def scorecard(rows: Sequence[ScoreRow], title: str) -> Markup:
    """Every unit on one shared horizontal scale: one row per unit (name and metric at the
    left), the chosen arm (filled blue circle, thick 95 % interval), the baseline (hollow orange
    square, offset below), teachers (green diamonds), chance (grey vertical tick) and the row's
    ``flag`` in bold vermillion at the right. The scale is [0, 1] when every value and interval
    lies there, else nice ticks over the data. viewBox 720 × (66 + 30 per row)."""
    rows = list(rows)
    if not rows:
        return _empty(WIDE, title)
    vals = [float(v) for r in rows for m in r.marks for v in (m.value, m.lo, m.hi) if _finite(v)]
    ticks = _value_axis(vals)
    d0, d1 = ticks[0], ticks[-1]
    flags = any(r.flag for r in rows)
    # a flag ("∅ not yet above chance") needs ~22 characters at the right
    x0, x1 = 166.0, (496.0 if flags else 700.0)
    top, row_h = 34.0, 30.0
    bottom = top + row_h * len(rows) + 4
    h = bottom + 28

    def sx(v: float) -> float:
        return _scale(v, d0, d1, x0, x1)

    roles = [r for r in ("chosen", "baseline", "teacher", "chance")
             if any(m.role == r for row in rows for m in row.marks)]
    legend, _ = _legend([(_mark_swatch(r), 16, _ROLE_KEY[r]) for r in roles], x0, 18, WIDE - 8,
                        FS_WIDE)
    body = [legend]
    body += [_rect(0, top + i * row_h, WIDE, row_h, SHADE) for i in range(1, len(rows), 2)]
    body.append(_x_axis(ticks, [fmt_num(t) for t in ticks], sx, top, bottom, FS_WIDE))
    descs = []
    for i, row in enumerate(rows):
        cy = top + i * row_h + row_h / 2
        parts = [_text(8, cy - 2, _clip(row.unit, 150, FS_ROW, True), FS_ROW, INK, weight="600"),
                 _text(8, cy + 12, _clip(row.metric, 150, FS_TEXT), FS_TEXT, MUTED)]
        marks = sorted((m for m in row.marks if _finite(m.value)),
                       key=lambda m: _ROLE_ORDER.index(m.role) if m.role in _ROLE_ORDER else 9)
        for m in marks:
            parts.append(_group(_mark_desc(m), _draw_mark(m, sx, cy)))
        if row.flag:
            parts.append(_text(x1 + 12, cy + 4, _clip(row.flag, WIDE - x1 - 18, FS_WIDE, True),
                               FS_WIDE, VERMILLION, weight="700"))
        text = f"{row.unit} ({row.metric}): " + \
            ("; ".join(_mark_desc(m) for m in marks) or "no value")
        if row.flag:
            text += f"; flagged: {row.flag}"
        descs.append(text)
        body.append(_group(text, "".join(parts)))
    desc = f"Scale {fmt_num(d0)} to {fmt_num(d1)}. " + ". ".join(descs) + "."
    return _frame(WIDE, h, title, desc, "".join(body))


# ---------------------------------------------------------------------------------------------
# forest plot

_SIG = "✱"


def _forest_text(r: ForestRow) -> str:
    """The right-hand column: signed value and interval, ✱ on better/worse, or the state."""
    if r.state == "not estimable":
        return r.note
    if r.state == "no difference":
        return "no difference" + r.note
    delta = _opt(r.delta)
    if delta is None:
        return ("∅ not above chance" if r.state == "at chance" else r.state) + r.note
    if r.state == "at chance":
        return f"{delta:+.2f} ∅ not above chance{r.note}"
    # two decimals: the column must fit beside a label column wide enough for arm names
    s = _interval_text(delta, r.lo, r.hi, "+.2f")
    return s + (f" {_SIG}" if r.state in ("better", "worse") else "") + r.note


def _forest_desc(r: ForestRow) -> str:
    s = f"{r.label}: {r.state}"
    delta = _opt(r.delta)
    if delta is not None:
        s += " " + _interval_text(delta, r.lo, r.hi, "+.3f")
    if _finite(r.mde):
        s += f", MDE {r.mde:.3f}"
    return s + (f" {r.note}" if r.note else "")


def _forest_keys() -> list[tuple[Swatch, float, str]]:
    def better(x: float, y: float) -> str:
        return _line(x - 8, y, x + 8, y, BLUE, 2) + _circle(x, y, 4.5, BLUE)

    def worse(x: float, y: float) -> str:
        return _line(x - 8, y, x + 8, y, VERMILLION, 2) + _circle(x, y, 4.5, VERMILLION)

    def no_evidence(x: float, y: float) -> str:
        return (_rect(x - 13, y - 6, 26, 12, BAND) + _line(x - 9, y, x + 9, y, GREY, 1.5)
                + _circle(x, y, 4, WHITE, GREY, 1.5))

    def no_difference(x: float, y: float) -> str:
        return _square(x, y, 7, GREY, GREY, 1)

    def at_chance(x: float, y: float) -> str:
        return _line(x - 10, y, x + 10, y, ORANGE, 1.5, "3 2") + _diamond(x, y, 5, WHITE, ORANGE,
                                                                             1.8)

    def not_estimable(x: float, y: float) -> str:
        return _text(x, y + 4, "n/e", FS_TEXT, MUTED, "middle", italic=True)

    return [(better, 18, f"better {_SIG}"), (worse, 18, f"worse {_SIG}"),
            (no_evidence, 26, "no evidence (band: ±MDE, an effect this large could hide)"),
            (no_difference, 10, "no difference"), (at_chance, 20, "∅ not above chance (dashed)"),
            (not_estimable, 20, "not estimable (italic, no point)")]


def forest(rows: Sequence[ForestRow], title: str, xlabel: str, *, legend: bool = True
           ) -> Markup:
    """Forest plot of contrasts grouped by unit on one symmetric x scale around a zero line.

    better / worse: blue / vermillion filled circle with its interval, "✱" after the value;
    no evidence: grey hollow circle, grey interval, a grey ±MDE band around 0; no difference: a
    small grey square on 0; not estimable: no point, the italic words at the zero line; at
    chance: orange hollow diamond with a dashed interval and "∅ at chance". The right column
    gives "+0.123 [+0.050, +0.200] ✱" or the state. viewBox 720 × (~90 + 24 per group + 20 per
    row). ``legend=False`` leaves the key out (a page showing several forests keys the first).
    """
    rows = list(rows)
    if not rows:
        return _empty(WIDE, title)
    order: list[str] = []
    by_group: dict[str, list[ForestRow]] = {}
    for r in rows:
        if r.group not in by_group:
            order.append(r.group)
            by_group[r.group] = []
        by_group[r.group].append(r)
    extent = [abs(v) for r in rows for v in (r.delta, r.lo, r.hi) if _finite(v)]
    extent += [abs(r.mde) for r in rows if r.state == "no evidence" and _finite(r.mde)]
    half = nice_ticks(0.0, max(extent, default=0.0) or 0.1, 3)
    step = half[1] - half[0]
    ticks = [-t for t in reversed(half[1:])] + half
    d1 = ticks[-1]
    # arm names are long (bucket/fields/x<scale>): the label column gets about 40 characters
    x0, x1, tx = 290.0, 520.0, 530.0

    def sx(v: float) -> float:
        return _scale(v, -d1, d1, x0, x1)

    if legend:
        key, ly = _legend(_forest_keys(), 8, 17, WIDE - 8, FS_WIDE, 18)
        top = ly + 14
    else:
        key, top = "", 12.0
    layout: list[tuple[str, float, ForestRow | None]] = []
    y = top
    for g in order:
        layout.append((g, y, None))
        y += 24
        for r in by_group[g]:
            layout.append((g, y, r))
            y += 20
    bottom = y + 4
    h = bottom + 22 + (18 if xlabel else 0)
    body = [key, _x_axis(ticks, [_signed(t) for t in ticks], sx, top, bottom, FS_WIDE)]
    body.append(_line(sx(0), top, sx(0), bottom, INK, 1.2))
    if xlabel:
        body.append(_text((x0 + x1) / 2, bottom + 36, _clip(xlabel, WIDE - 16, FS_WIDE), FS_WIDE,
                          INK, "middle"))
    descs = []
    for g, yy, row in layout:
        if row is None:
            body.append(_line(8, yy + 2, WIDE - 8, yy + 2, GRID))
            body.append(_text(8, yy + 17, _clip(g, WIDE - 16, FS_ROW), FS_ROW, INK,
                              weight="700"))
            descs.append(f"{g}:")
            continue
        r, cy = row, yy + 10
        parts = [_text(20, cy + 4, _clip(r.label, x0 - 28, FS_WIDE), FS_WIDE, INK)]
        d_opt, lo_opt, hi_opt = _opt(r.delta), _opt(r.lo), _opt(r.hi)
        has_d, has_ci = d_opt is not None, lo_opt is not None and hi_opt is not None
        d, lo, hi = d_opt or 0.0, lo_opt or 0.0, hi_opt or 0.0
        if r.state in ("better", "worse"):
            colour = BLUE if r.state == "better" else VERMILLION
            if has_ci:
                parts.append(_line(sx(lo), cy, sx(hi), cy, colour, 2))
            if has_d:
                parts.append(_circle(sx(d), cy, 4.5, colour, WHITE, 1))
        elif r.state == "no evidence":
            if _finite(r.mde):
                m = abs(r.mde)
                parts.append(_rect(sx(-m), cy - 6, sx(m) - sx(-m), 12, BAND))
                parts.append(_line(sx(-m), cy - 6, sx(-m), cy + 6, GREY, 1))
                parts.append(_line(sx(m), cy - 6, sx(m), cy + 6, GREY, 1))
            if has_ci:
                parts.append(_line(sx(lo), cy, sx(hi), cy, GREY, 1.5))
            if has_d:
                parts.append(_circle(sx(d), cy, 4, WHITE, GREY, 1.5))
        elif r.state == "no difference":
            parts.append(_square(sx(0), cy, 7, GREY, GREY, 1))
        elif r.state == "at chance":
            if has_ci:
                parts.append(_line(sx(lo), cy, sx(hi), cy, ORANGE, 1.8, "4 3"))
            if has_d:
                parts.append(_diamond(sx(d), cy, 5.5, WHITE, ORANGE, 1.8))
        else:  # not estimable (and any state this module does not know: nothing to plot)
            words = "not estimable"
            wdt = len(words) * CHAR_W * FS_TEXT + 8
            parts.append(_rect(sx(0) - wdt / 2, cy - 8, wdt, 16, WHITE))
            parts.append(_text(sx(0), cy + 4, words, FS_TEXT, MUTED, "middle", italic=True))
        right = _forest_text(r)
        if right:
            strong = r.state in ("better", "worse")
            parts.append(_text(tx, cy + 4, _clip(right, WIDE - 6 - tx, FS_WIDE), FS_WIDE,
                               INK if strong or r.state == "at chance" else MUTED,
                               weight="700" if strong else ""))
        line = _forest_desc(r)
        descs.append(line)
        body.append(_group(f"{g} / {line}", "".join(parts)))
    desc = (f"{xlabel}; scale ±{fmt_num(d1)} (ticks every {fmt_num(step)}). "
            + " ".join(s if s.endswith(":") else s + ";" for s in descs))
    return _frame(WIDE, h, title, desc.rstrip(";"), "".join(body))


# ---------------------------------------------------------------------------------------------
# dot plot


def _dot(role: str, x: float, y: float) -> str:
    if role == "baseline":
        return _square(x, y, 8, WHITE, ORANGE, 2)
    return _circle(x, y, 5, BLUE, WHITE, 1)


def _dot_swatch(role: str) -> Swatch:
    colour = ORANGE if role == "baseline" else BLUE
    return lambda x, y: _line(x - 8, y, x + 8, y, colour, 2) + _dot(role, x, y)


def dots(groups: Sequence[tuple[str, Sequence[str]]], series: Sequence[DotSeries],
         title: str, xlabel: str) -> Markup:
    """Dot plot with intervals for slices: a header per group (unit), one row per slice (in the
    order given; ``series[i].values`` is flattened in the same order), chosen = filled blue
    circle, baseline = hollow orange square (offset vertically), a thin line for each interval,
    "n=…" (the first series with a value) at the right. Missing values (NaN) are skipped. The x
    scale is shared: [0, 1] when everything lies there. viewBox 720 × (~70 + 24 per group + 22
    per row)."""
    groups = [(g, list(s)) for g, s in groups]
    series = list(series)
    n_rows = sum(len(s) for _, s in groups)
    if not n_rows or not series:
        return _empty(WIDE, title)

    def entry(s: DotSeries, i: int) -> tuple[float, float | None, float | None, int] | None:
        if i >= len(s.values) or not _finite(s.values[i][0]):
            return None
        return s.values[i]

    vals = [float(v) for s in series for i in range(n_rows) if (e := entry(s, i))
            for v in e[:3] if _finite(v)]
    if not vals:
        return _empty(WIDE, title)
    ticks = _value_axis(vals)
    d0, d1 = ticks[0], ticks[-1]
    x0, x1 = 176.0, 652.0

    def sx(v: float) -> float:
        return _scale(v, d0, d1, x0, x1)

    keys = [(_dot_swatch(s.role), 18, _clip(s.name, 330, FS_WIDE)) for s in series]
    legend, ly = _legend(keys, 8, 17, WIDE - 8, FS_WIDE, 18)
    top = ly + 12
    k = len(series)
    offsets = [min(max((j - (k - 1) / 2) * 8, -8), 8) for j in range(k)]
    body: list[str] = [legend]
    rows: list[str] = []
    descs: list[str] = []
    y, i = top, 0
    for g, slices in groups:
        rows.append(_line(8, y + 2, WIDE - 8, y + 2, GRID))
        rows.append(_text(8, y + 17, _clip(g, WIDE - 16, FS_ROW), FS_ROW, INK, weight="700"))
        y += 24
        for name in slices:
            cy = y + 11
            parts = [_text(20, cy + 4, _clip(name, x0 - 30, FS_WIDE), FS_WIDE, INK)]
            row_desc, n_text = [], ""
            for j, s in enumerate(series):
                e = entry(s, i)
                if e is None:
                    row_desc.append(f"{s.name} missing")
                    continue
                v, lo, hi, n = e
                yy = cy + offsets[j]
                colour = ORANGE if s.role == "baseline" else BLUE
                lo_v, hi_v = _opt(lo), _opt(hi)
                if lo_v is not None and hi_v is not None:
                    parts.append(_line(sx(lo_v), yy, sx(hi_v), yy, colour,
                                       2.5 if s.role == "chosen" else 1.8))
                parts.append(_dot(s.role, sx(v), yy))
                row_desc.append(f"{s.name} {_interval_text(v, lo, hi)} n={n}")
                n_text = n_text or f"n={n}"
            if n_text:
                parts.append(_text(WIDE - 8, cy + 4, n_text, FS_TEXT, MUTED, "end"))
            line = f"{g} / {name}: " + "; ".join(row_desc)
            descs.append(line)
            rows.append(_group(line, "".join(parts)))
            y += 22
            i += 1
    bottom = y + 4
    h = bottom + 22 + (18 if xlabel else 0)
    body.append(_x_axis(ticks, [fmt_num(t) for t in ticks], sx, top, bottom, FS_WIDE))
    body += rows
    if xlabel:
        body.append(_text((x0 + x1) / 2, bottom + 36, _clip(xlabel, WIDE - 16, FS_WIDE), FS_WIDE,
                          INK, "middle"))
    desc = f"{xlabel}; scale {fmt_num(d0)} to {fmt_num(d1)}. " + ". ".join(descs) + "."
    return _frame(WIDE, h, title, desc, "".join(body))


# ---------------------------------------------------------------------------------------------
# learning curve


def _wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap to lines of at most ``width`` characters (a longer word is cut)."""
    out: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = ""
        line = f"{line} {word}" if line else word[:width]
    return [*out, line] if line else out


def curve(seed_points: Sequence[tuple[float, float]], means: Sequence[tuple[float, float]],
          fit: Sequence[tuple[float, float]], band: Sequence[tuple[float, float, float]],
          title: str, xlabel: str, ylabel: str, log_x: bool = True,
          threshold_note: str = "") -> Markup:
    """A learning curve: x = training samples (log2 axis with power-of-two ticks when
    ``log_x``; non-positive x is then dropped), y = the metric (nice ticks over the data ± 8 %,
    band included; within [0, 1] for scores). Every seed's point (small translucent blue
    circles), the means over seeds (larger blue circles joined by a thin line), the power-law
    ``fit`` (vermillion dashed line; empty: none) and ``band`` ((x, lo, hi): the next doubling's
    95 % interval, a translucent vermillion polygon; empty: none). ``threshold_note``: a small
    line of text under the plot. viewBox 360 × 230 (+14 per note line)."""
    def ok(x: float) -> bool:
        return _finite(x) and (x > 0 or not log_x)

    seeds = [(float(x), float(y)) for x, y in seed_points if ok(x) and _finite(y)]
    mean = sorted((float(x), float(y)) for x, y in means if ok(x) and _finite(y))
    fitted = sorted((float(x), float(y)) for x, y in fit if ok(x) and _finite(y))
    bnd = sorted((float(x), float(lo), float(hi)) for x, lo, hi in band
                 if ok(x) and _finite(lo) and _finite(hi))
    xs = [p[0] for p in seeds + mean + fitted] + [b[0] for b in bnd]
    ys = [p[1] for p in seeds + mean + fitted] + [v for b in bnd for v in b[1:]]
    if not xs:
        return _empty(CURVE_W, title)
    note_lines = _wrap(threshold_note, int((CURVE_W - 16) / (CHAR_W * FS_SMALL)))[:3]
    w, h = CURVE_W, CURVE_H + 14 * len(note_lines)
    x0, x1, top, bottom = 46.0, float(w - 12), 42.0, 182.0

    if log_x:
        lo_e, hi_e = math.log2(min(xs)), math.log2(max(xs))
        pad = max(0.25, 0.05 * (hi_e - lo_e))
        e0, e1 = lo_e - pad, hi_e + pad
        xticks = [t for t in log2_ticks(min(xs), max(xs)) if e0 <= math.log2(t) <= e1]
        if len(xticks) < 2:  # a narrow range: widen the axis to the covering powers of two
            xticks = log2_ticks(min(xs), max(xs))
            e0, e1 = math.log2(xticks[0]), math.log2(xticks[-1])
        xlabels = [fmt_count(t) for t in xticks]

        def tx(v: float) -> float:
            return math.log2(v)
    else:
        xticks = nice_ticks(min(xs), max(xs), 5)
        e0, e1 = xticks[0], xticks[-1]
        xlabels = [fmt_num(t) for t in xticks]

        def tx(v: float) -> float:
            return v

    yticks = _padded_axis(ys, 4)
    y0, y1 = yticks[0], yticks[-1]

    def sx(v: float) -> float:
        return _scale(tx(v), e0, e1, x0, x1)

    def sy(v: float) -> float:
        return _scale(v, y0, y1, bottom, top)

    keys: list[tuple[Swatch, float, str]] = []
    if seeds:
        keys.append((lambda x, y: _circle(x, y, 2.8, BLUE, BLUE, 0, 0.45), 8, "seed"))
    if mean:
        keys.append((lambda x, y: _line(x - 8, y, x + 8, y, BLUE, 1.2) + _circle(x, y, 4.2, BLUE),
                     18, "mean over seeds"))
    if fitted:
        keys.append((lambda x, y: _line(x - 9, y, x + 9, y, VERMILLION, 1.8, "5 3"), 18,
                     "power-law fit"))
    if bnd:
        keys.append((lambda x, y: _rect(x - 8, y - 5, 16, 10, VERMILLION,
                                        f' fill-opacity="0.2" stroke="{VERMILLION}" '
                                        'stroke-width="0.8"'),
                     16, "95% band of next doubling"))
    legend, _ = _legend(keys, 8, 14, w - 6, FS_SMALL, 14)
    body = [legend,
            _x_axis(xticks, xlabels, lambda v: _scale(tx(v), e0, e1, x0, x1), top, bottom,
                    FS_SMALL),
            _y_axis(yticks, [fmt_num(t) for t in yticks], sy, x0, x1, FS_SMALL)]
    body.append(_text((x0 + x1) / 2, bottom + 32, _clip(xlabel, w - 60, FS_SMALL), FS_SMALL, INK,
                      "middle"))
    yl_y = (top + bottom) / 2
    body.append(_text(12, yl_y, _clip(ylabel, bottom - top, FS_SMALL), FS_SMALL, INK, "middle",
                      extra=f' transform="rotate(-90 12 {_n(yl_y)})"'))
    if bnd:
        poly = [(sx(x), sy(hi)) for x, _, hi in bnd] + [(sx(x), sy(lo)) for x, lo, _ in
                                                         reversed(bnd)]
        body.append(f'<polygon points="{_points(poly)}" fill="{VERMILLION}" fill-opacity="0.18" '
                    f'stroke="{VERMILLION}" stroke-width="0.8" stroke-opacity="0.7"/>')
    body += [_circle(sx(x), sy(y), 2.8, BLUE, BLUE, 0, 0.45) for x, y in seeds]
    if len(mean) > 1:
        body.append(f'<polyline points="{_points((sx(x), sy(y)) for x, y in mean)}" fill="none" '
                    f'stroke="{BLUE}" stroke-width="1.2"/>')
    if len(fitted) > 1:
        body.append(f'<polyline points="{_points((sx(x), sy(y)) for x, y in fitted)}" '
                    f'fill="none" stroke="{VERMILLION}" stroke-width="1.8" '
                    f'stroke-dasharray="5 3"/>')
    body += [_circle(sx(x), sy(y), 4.2, BLUE, WHITE, 1) for x, y in mean]
    for k, line in enumerate(note_lines):
        body.append(_text(8, CURVE_H - 4 + 14 * k, line, FS_SMALL, MUTED))

    def pts(p: Sequence[tuple[float, float]]) -> str:
        return ", ".join(f"({x:g}, {y:.3f})" for x, y in p) or "none"

    axis = " (log2 axis)" if log_x and "log" not in xlabel.lower() else ""
    desc = (f"x: {xlabel}{axis}; y: {ylabel}. Seeds: {pts(seeds)}. "
            f"Means over seeds: {pts(mean)}. Power-law fit: {pts(fitted)}. Band of the next "
            "doubling (x: low, high): "
            + (", ".join(f"{x:g}: [{lo:.3f}, {hi:.3f}]" for x, lo, hi in bnd) or "none") + "."
            + (f" {threshold_note}" if threshold_note else ""))
    return _frame(w, h, title, desc, "".join(body))


# ---------------------------------------------------------------------------------------------
# reliability diagram


def reliability(bins: Sequence[dict[str, float]], title: str) -> Markup:
    """Reliability diagram. ``bins``: dicts with ``lo``, ``hi`` (the confidence bin), ``count``,
    ``accuracy`` and ``mean_confidence``; empty bins (count 0) are skipped. Blue bar = accuracy
    per bin, vermillion tick = the bin's mean confidence (the gap between them is the
    miscalibration), dashed grey diagonal = perfect calibration, counts above the bars; both
    axes 0..1 with ticks at quarters. viewBox 360 × 260."""
    def ok(b: dict[str, float]) -> bool:
        return all(_finite(b.get(k)) for k in ("lo", "hi", "count", "accuracy")) and \
            b["count"] > 0

    used = [b for b in bins if ok(b)]
    if not used:
        return _empty(REL_W, title)
    w, h = REL_W, REL_H
    x0, x1, top, bottom = 46.0, float(w - 14), 46.0, 206.0

    def sx(v: float) -> float:
        return _scale(v, 0, 1, x0, x1)

    def sy(v: float) -> float:
        return _scale(v, 0, 1, bottom, top)

    keys: list[tuple[Swatch, float, str]] = [
        (lambda x, y: _rect(x - 6, y - 6, 12, 12, BLUE), 12, "accuracy per bin"),
        (lambda x, y: _line(x - 7, y, x + 7, y, VERMILLION, 2.5), 14, "mean confidence"),
        (lambda x, y: _line(x - 9, y + 5, x + 9, y - 5, GREY, 1.2, "4 3"), 18,
         "perfect calibration")]
    legend, _ = _legend(keys, 8, 14, w - 6, FS_SMALL, 15)
    labels = [fmt_num(t) for t in QUARTERS]
    body = [legend, _x_axis(QUARTERS, labels, sx, top, bottom, FS_SMALL),
            _y_axis(QUARTERS, labels, sy, x0, x1, FS_SMALL),
            _text((x0 + x1) / 2, bottom + 34, "confidence", FS_SMALL, INK, "middle")]
    yl_y = (top + bottom) / 2
    body.append(_text(12, yl_y, "accuracy", FS_SMALL, INK, "middle",
                      extra=f' transform="rotate(-90 12 {_n(yl_y)})"'))
    ticks, counts, desc = [], [], []
    for b in used:
        lo, hi, acc = float(b["lo"]), float(b["hi"]), float(b["accuracy"])
        conf = _opt(b.get("mean_confidence"))
        xa, xb = sx(lo), sx(hi)
        body.append(_rect(xa + 0.5, sy(acc), max(xb - xa - 1, 1), bottom - sy(acc), BLUE))
        label_top = sy(acc)
        if conf is not None:
            yc = sy(conf)
            # a white halo keeps the tick visible on the bar and in a grey print
            ticks.append(_line(xa - 1, yc, xb + 1, yc, WHITE, 5) +
                         _line(xa - 1, yc, xb + 1, yc, VERMILLION, 2.5))
            label_top = min(label_top, yc)
        count = int(b["count"])
        counts.append(_text((xa + xb) / 2, label_top - 4,
                            str(count) if count < 1000 else fmt_num(count), FS_SMALL, MUTED,
                            "middle"))
        desc.append(f"[{lo:.2f}, {hi:.2f}] n={count} accuracy={acc:.3f}"
                    + (f" confidence={conf:.3f}" if conf is not None else ""))
    body.append(_line(sx(0), sy(0), sx(1), sy(1), GREY, 1.2, "4 3"))
    body += ticks + counts
    return _frame(w, h, title, "Confidence bins: " + "; ".join(desc) + ".", "".join(body))


# ---------------------------------------------------------------------------------------------
# cumulative cost

# (colour, dash) per series: the first solid blue, the second dashed green, then others; the
# dash tells them apart in a grey print.
_LINE_STYLES = ((BLUE, ""), (GREEN, "7 4"), (VERMILLION, "2 3"), (PURPLE, "9 3 2 3"),
                (SKY, "4 2"), (ORANGE, "1 3"))


def cumulative_cost(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], title: str,
                    xlabel: str, ylabel: str, break_even: float | None = None) -> Markup:
    """Cumulative cost lines (ROI): ``series`` = [(name, [(x, y)])], the first solid blue, the
    second dashed green (then dotted vermillion, …), ticks on both axes (y compact: 1.2k, 35,
    0.5; the y axis includes 0), and a dotted vertical line labelled "break-even day N" when
    ``break_even`` lies inside the x range. viewBox 520 × 260."""
    clean = [(name, sorted((float(x), float(y)) for x, y in pts if _finite(x) and _finite(y)))
             for name, pts in series]
    clean = [(name, pts) for name, pts in clean if pts]
    if not clean:
        return _empty(COST_W, title)
    w, h = COST_W, COST_H
    xs = [x for _, p in clean for x, _ in p]
    ys = [y for _, p in clean for _, y in p]
    xa, xb = min(xs), max(xs)
    if xa == xb:
        xa, xb = xa - 1, xb + 1
    xticks = [t for t in nice_ticks(xa, xb, 6) if xa - 1e-9 <= t <= xb + 1e-9]
    yticks = nice_ticks(min(0.0, min(ys)), max(0.0, max(ys)), 5)
    y0, y1 = yticks[0], yticks[-1]
    x0, x1, bottom = 60.0, float(w - 14), 212.0

    def sx(v: float) -> float:
        return _scale(v, xa, xb, x0, x1)

    def style(k: int) -> tuple[str, str]:
        return _LINE_STYLES[k % len(_LINE_STYLES)]

    def key(k: int) -> Swatch:
        colour, dash = style(k)
        return lambda x, y: _line(x - 11, y, x + 11, y, colour, 2.2, dash)

    legend, ly = _legend([(key(k), 22, _clip(n, w - 40, FS_SMALL)) for k, (n, _) in
                          enumerate(clean)], x0, 14, w - 6, FS_SMALL, 15)
    top = ly + 16

    def sy(v: float) -> float:
        return _scale(v, y0, y1, bottom, top)

    body = [legend, _x_axis(xticks, [fmt_num(t) for t in xticks], sx, top, bottom, FS_SMALL),
            _y_axis(yticks, [fmt_num(t) for t in yticks], sy, x0, x1, FS_SMALL),
            _text((x0 + x1) / 2, bottom + 34, _clip(xlabel, w - 80, FS_SMALL), FS_SMALL, INK,
                  "middle")]
    yl_y = (top + bottom) / 2
    body.append(_text(12, yl_y, _clip(ylabel, bottom - top, FS_SMALL), FS_SMALL, INK, "middle",
                      extra=f' transform="rotate(-90 12 {_n(yl_y)})"'))
    desc = []
    for k, (name, pts) in enumerate(clean):
        colour, dash = style(k)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        if len(pts) > 1:
            body.append(f'<polyline points="{_points((sx(x), sy(y)) for x, y in pts)}" '
                        f'fill="none" stroke="{colour}" stroke-width="2.2"{dash_attr}/>')
        else:
            body.append(_circle(sx(pts[0][0]), sy(pts[0][1]), 3, colour))
        desc.append(f"{name}: " + ", ".join(f"({x:g}, {y:.2f})" for x, y in pts))
    if break_even is not None and _finite(break_even) and xa <= break_even <= xb:
        bx = sx(break_even)
        # within the first day a day count reads as "day 0": say it in hours
        hours = break_even * 24
        label = ((f"break-even after {hours * 60:.0f} min" if hours * 60 >= 1 else
                  "break-even within a minute") if hours < 1 else
                 f"break-even after {hours:.1f} h" if break_even < 1 else
                 f"break-even day {break_even:.0f}"
                 if abs(break_even - round(break_even)) < 0.05 else
                 f"break-even day {break_even:.1f}")
        tw = len(label) * CHAR_W * FS_SMALL
        left = bx > (x0 + x1) / 2
        lx = bx - 4 - tw if left else bx + 4
        body.append(_line(bx, top, bx, bottom, INK, 1.2, "2 3"))
        body.append(_rect(lx - 2, top + 2, tw + 4, 14, WHITE, ' fill-opacity="0.85"'))
        body.append(_text(bx - 4 if left else bx + 4, top + 13, label, FS_SMALL, INK,
                          "end" if left else "start"))
        desc.append(label)
    return _frame(w, h, title, f"x: {xlabel}; y: {ylabel}. " + "; ".join(desc) + ".",
                  "".join(body))


# ---------------------------------------------------------------------------------------------
# the old entry point, kept until render.py moves to curve() / cumulative_cost()


def lines(series: Sequence[tuple[str, Sequence[tuple[float, float]], str]], title: str,
          xlabel: str, ylabel: str, band: Sequence[tuple[float, float, float]] = (),
          log_x: bool = False) -> Markup:
    """Deprecated thin wrapper. ``series``: (name, [(x, y)], kind) where kind "fit" is a fitted
    line; ``band``: (x, y_lo, y_hi). With ``log_x`` it draws a :func:`curve` (every non-fit
    point as a seed point), otherwise a :func:`cumulative_cost` of the series."""
    if log_x:
        points = [p for _, s, kind in series if kind != "fit" for p in s]
        fitted = [p for _, s, kind in series if kind == "fit" for p in s]
        return curve(points, (), fitted, band, title, xlabel, ylabel, log_x=True)
    return cumulative_cost([(name, s) for name, s, _ in series], title, xlabel, ylabel)
