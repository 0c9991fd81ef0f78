"""Effects as forest plots: Δ with its interval per arm and unit, the verdict drawn, not written.

The attribution (:mod:`harness.analysis.attribution`) gives every contrast a verdict whose text
repeats the same explanation on many rows ("not estimable: ..."); here each row keeps the
verdict's first word (:func:`state`) and the explanation becomes a footnote said once
(:class:`Footnotes`). Big matrices keep the first screens short: a unit's plot shows at most
:data:`TOP_EFFECTS` arms — every significant one first, then the largest |Δ| — and says how many
more the folded table holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from markupsafe import Markup

from harness.analysis.attribution import NO_DIFFERENCE, NOT_ESTIMABLE
from harness.report import svg

#: Arms per unit in a forest plot; the rest are in the table folded under it.
TOP_EFFECTS = 12
#: Verdict words (the text before ``:``, as :mod:`harness.analysis.attribution` writes them) the
#: forest draws; anything else draws as no evidence.
STATES = ("better", "worse", "no evidence", NO_DIFFERENCE, NOT_ESTIMABLE)


def state(verdict: str) -> str:
    """The verdict's first word(s): ``better``, ``worse``, ``no evidence``, ``no difference``
    or ``not estimable`` (the text before any ``:``)."""
    head = verdict.split(":", 1)[0].strip()
    return head if head in STATES else "no evidence"


class Footnotes:
    """Long explanations said once: :meth:`mark` returns a superscript number per distinct text
    (the same text, the same number), :attr:`items` lists them in order."""

    SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹"

    def __init__(self) -> None:
        self._numbers: dict[str, int] = {}

    def mark(self, text: str) -> str:
        """The marker of ``text`` ("" for an empty text)."""
        if not text:
            return ""
        n = self._numbers.setdefault(text, len(self._numbers) + 1)
        return self.SUPERSCRIPTS[n - 1] if n <= len(self.SUPERSCRIPTS) else f"[{n}]"

    @property
    def items(self) -> list[dict[str, str]]:
        """``[{"mark", "text"}]`` in the order first marked."""
        return [{"mark": self.mark(t), "text": t} for t in self._numbers]


def explanation(verdict: str) -> str:
    """The part of a verdict after its first word (the footnote's text); "" when none."""
    return verdict.split(":", 1)[1].strip() if ":" in verdict else ""


def table_rows(rows: Iterable[Mapping[str, Any]], notes: Footnotes) -> list[dict[str, Any]]:
    """Attribution rows for the folded tables: each with ``state`` and its footnote ``mark``."""
    return [{**r, "state": state(r["verdict"]), "mark": notes.mark(explanation(r["verdict"]))}
            for r in rows]


def _top(rows: Sequence[Mapping[str, Any]], k: int) -> list[Mapping[str, Any]]:
    """At most ``k`` rows: significant first, then by |Δ| (not estimable last), in their
    original order among the kept (so arms keep the design's order)."""
    def rank(r: Mapping[str, Any]) -> tuple[int, float]:
        s = state(r["verdict"])
        return (0 if s in ("better", "worse") else 2 if s == NOT_ESTIMABLE else 1,
                -abs(r["delta"] or 0.0))

    keep = {id(r) for r in sorted(rows, key=rank)[:k]}
    return [r for r in rows if id(r) in keep]


#: What each part of an arm's name (``bucket/fields/x<scale>``) is.
ARM_PARTS = ("bucket", "fields", "scale")


def compact_arms(arms: Sequence[str]) -> tuple[list[str], str]:
    """Arm names without the parts every one of them shares, and those parts in words
    (``["a/f/x1", "b/f/x1"] -> (["a", "b"], "fields f, scale x1")``); unchanged when fewer
    than two arms or nothing is shared."""
    parts = [a.split("/") for a in arms]
    if len(parts) < 2 or any(len(p) != len(ARM_PARTS) for p in parts):
        return list(arms), ""
    same = [len({p[i] for p in parts}) == 1 for i in range(len(ARM_PARTS))]
    if all(same):
        return list(arms), ""
    names = ["/".join(x for x, s in zip(p, same, strict=True) if not s) for p in parts]
    shared = ", ".join(f"{ARM_PARTS[i]} {parts[0][i]}" for i, s in enumerate(same) if s)
    return names, shared


def forest_rows(group: str, rows: Sequence[Mapping[str, Any]],
                at_chance: set[tuple[str, str]], notes: Footnotes) -> list[svg.ForestRow]:
    """:class:`svg.ForestRow` per contrast, under the header ``group``; an arm not above chance
    on the unit is drawn as at chance whatever its Δ, since it learned nothing to compare."""
    out = []
    names, shared = compact_arms([r["arm"] for r in rows])
    if shared:
        group = f"{group} (all {shared})"
    for r, name in zip(rows, names, strict=True):
        s = state(r["verdict"])
        drawn = "at chance" if (r["arm"], r["unit"]) in at_chance else s
        estimable = s != NOT_ESTIMABLE
        out.append(svg.ForestRow(
            group=group, label=name, delta=r["delta"] if estimable else None,
            lo=r["ci_low"] if estimable else None, hi=r["ci_high"] if estimable else None,
            mde=r.get("mde"), state=drawn,  # type: ignore[arg-type]
            note=notes.mark(explanation(r["verdict"])) if s == NOT_ESTIMABLE else ""))
    return out


def forests(families: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], units: Sequence[str],
            at_chance: set[tuple[str, str]], notes: Footnotes) -> list[dict[str, Any]]:
    """Per unit: ``{"unit", "metric", "svg", "shown", "total"}`` — one forest plot of the
    unit's primary-metric contrasts, a group per family (``(header, attribution rows)``, e.g.
    the bucket effects against the reference arm), at most :data:`TOP_EFFECTS` arms a family.
    """
    out: list[dict[str, Any]] = []
    for unit in units:
        drawn: list[svg.ForestRow] = []
        shown = total = 0
        metric = None
        for header, contrasts in families:
            rows = [r for r in contrasts if r["unit"] == unit and r.get("primary", True)]
            if not rows:
                continue
            metric = metric or rows[0]["metric"]
            top = _top(rows, TOP_EFFECTS)
            drawn += forest_rows(header, top, at_chance, notes)
            shown, total = shown + len(top), total + len(rows)
        if not drawn:
            continue
        chart: Markup = svg.forest(drawn, f"{unit}: effects on {metric}", f"Δ {metric}",
                                   legend=not out)  # the first plot keys them all
        out.append({"unit": unit, "metric": metric, "svg": chart, "shown": shown,
                    "total": total})
    return out
