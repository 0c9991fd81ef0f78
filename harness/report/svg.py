"""Small inline SVG charts built from data (no plotting dependency, no scripts).

Every chart carries a ``<title>`` and ``<desc>`` with its numbers as a text alternative, all text
is escaped, and sizes are in viewBox units so charts scale on narrow screens and in print.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

W, H, PAD = 320, 200, 34


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> float:
    return a if hi == lo else a + (v - lo) / (hi - lo) * (b - a)


def _frame(title: str, desc: str, body: str, xlabel: str, ylabel: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>"
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 8}" y2="{H - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="8" x2="{PAD}" y2="{H - PAD}" class="axis"/>'
        f'<text x="{(W + PAD) / 2}" y="{H - 6}" class="lbl" text-anchor="middle">'
        f"{escape(xlabel)}</text>"
        f'<text x="10" y="{(H - PAD) / 2}" class="lbl" text-anchor="middle" '
        f'transform="rotate(-90 10 {(H - PAD) / 2})">{escape(ylabel)}</text>{body}</svg>')


def reliability(bins: Sequence[dict[str, float]], title: str) -> Markup:
    """Reliability diagram: accuracy per confidence bin (bars) against the diagonal; counts."""
    x0, x1, y0, y1 = PAD, W - 8, H - PAD, 8
    body = [f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" class="ref"/>']
    desc = []
    for b in bins:
        if not b.get("count"):
            continue
        xa, xb = _scale(b["lo"], 0, 1, x0, x1), _scale(b["hi"], 0, 1, x0, x1)
        top = _scale(b["accuracy"], 0, 1, y0, y1)
        body.append(f'<rect x="{xa:.1f}" y="{top:.1f}" width="{max(xb - xa - 1, 1):.1f}" '
                    f'height="{y0 - top:.1f}" class="bar"/>')
        body.append(f'<text x="{(xa + xb) / 2:.1f}" y="{top - 2:.1f}" class="tiny" '
                    f'text-anchor="middle">{int(b["count"])}</text>')
        desc.append(f"[{b['lo']:.2f},{b['hi']:.2f}] n={int(b['count'])} "
                    f"acc={b['accuracy']:.2f} conf={b['mean_confidence']:.2f}")
    return _frame(title, "; ".join(desc) or "no items", "".join(body), "confidence", "accuracy")


def lines(series: Sequence[tuple[str, Sequence[tuple[float, float]], str]], title: str,
          xlabel: str, ylabel: str, band: Sequence[tuple[float, float, float]] = (),
          log_x: bool = False) -> Markup:
    """Line/point chart. ``series``: (name, [(x, y)], css class); ``band``: (x, y_lo, y_hi)."""
    import math

    tx = (lambda v: math.log2(max(v, 1e-9))) if log_x else (lambda v: v)
    pts = [p for _, s, _ in series for p in s] + [(x, lo) for x, lo, _ in band] + \
        [(x, hi) for x, _, hi in band]
    if not pts:
        return _frame(title, "no data", "", xlabel, ylabel)
    xs, ys = [tx(p[0]) for p in pts], [p[1] for p in pts]
    xlo, xhi, ylo, yhi = min(xs), max(xs), min(ys), max(ys)
    pad = (yhi - ylo) * 0.1 or 0.05
    ylo, yhi = ylo - pad, yhi + pad

    def xy(x: float, y: float) -> tuple[float, float]:
        return (_scale(tx(x), xlo, xhi, PAD + 4, W - 12), _scale(y, ylo, yhi, H - PAD - 4, 12))

    body, desc = [], []
    if band:
        top = [xy(x, hi) for x, _, hi in band]
        bottom = [xy(x, lo) for x, lo, _ in reversed(band)]
        body.append('<polygon class="band" points="' + " ".join(
            f"{a:.1f},{b:.1f}" for a, b in top + bottom) + '"/>')
        desc.append("band " + ", ".join(f"{x:g}: [{lo:.3f}, {hi:.3f}]" for x, lo, hi in band))
    for name, s, css in series:
        coords = [xy(x, y) for x, y in s]
        if len(coords) > 1:
            body.append(f'<polyline class="{escape(css)}" points="' + " ".join(
                f"{a:.1f},{b:.1f}" for a, b in coords) + '"/>')
        body += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" class="{escape(css)}"/>'
                 for a, b in coords if css != "fit"]
        desc.append(f"{name}: " + ", ".join(f"({x:g}, {y:.3f})" for x, y in s))
    body.append(f'<text x="{PAD + 2}" y="18" class="tiny">{escape(f"{yhi:.2f}")}</text>'
                f'<text x="{PAD + 2}" y="{H - PAD - 6}" class="tiny">'
                f'{escape(f"{ylo:.2f}")}</text>')
    return _frame(title, "; ".join(desc), "".join(body), xlabel, ylabel)
