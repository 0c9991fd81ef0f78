"""Prompts a teacher never answered, and the note that marks a partial sample repository.

A call that failed (rate limits outlasting the retries, timeouts, 5xx, connection or auth
errors, a teacher stopped before the request was sent) is not a teacher's answer: the prompt
stays *unanswered* by that teacher. ``harness generate`` then writes nothing, or, with
``--partial``, writes the answered records together with a sidecar next to ``data.samples``
(``<samples stem>.unanswered.json``) that lists what is missing; ``harness validate`` refuses
data that its sidecar marks as partial unless told ``--allow-partial``, and a complete run of
``generate`` removes the sidecar.

The sidecar names the SHA-256 of each data file it describes, so it marks exactly those bytes:
written first with the digests unknown (``null``: it marks whatever file is there), then again
with the digests once the data files are in place; a sidecar whose digests match neither file
describes an earlier version and is ignored (with a warning). Only standard-library imports:
this module is read at the end of ``generate`` and by ``validate``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import InputError, ProblemLog
from harness.fsutil import atomic_write_json
from harness.teachers.redact import redact

if TYPE_CHECKING:
    from harness.experiment.models import Experiment

#: The sidecar's ``format`` value (bumped only for a change a reader must know about).
FORMAT = "harness-unanswered/1"
#: Characters of an error detail kept as a teacher's example (details are redacted first).
EXAMPLE_CHARS = 300

FileName = Literal["samples", "eval"]


@dataclass(frozen=True)
class Unanswered:
    """One prompt one teacher did not answer.

    Attributes:
        file: which output the prompt belongs to (``samples``: a training prompt; ``eval``).
        id: the prompt's id.
        teacher: the teacher's name.
        kind: the call's error kind (``rate_limited``, ``timeout``, ``auth``, ``aborted``...).
        detail: what the provider said, redacted (:func:`~harness.teachers.redact.redact`);
            generate keeps it for the first prompt of each teacher and kind only ("" after).
    """

    file: FileName
    id: str
    teacher: str
    kind: str
    detail: str = ""


@dataclass
class Gap:
    """What one teacher left unanswered: counts by error kind and one example detail of each
    kind (the first seen, redacted and shortened)."""

    teacher: str
    kinds: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def line(self) -> str:
        """``b: 3 unanswered (rate_limited=2, timeout=1); e.g. rate_limited: ...``"""
        kinds = ", ".join(f"{k}={n}" for k, n in sorted(self.kinds.items()))
        first = sorted(self.kinds, key=lambda k: (-self.kinds[k], k))[0]
        example = self.examples.get(first, "")
        return (f"{self.teacher}: {self.total:,} unanswered ({kinds})"
                + (f"; e.g. {first}: {example}" if example else ""))


def gaps(unanswered: Iterable[Unanswered]) -> list[Gap]:
    """Per teacher (in order of first appearance) the unanswered counts and examples."""
    out: dict[str, Gap] = {}
    for u in unanswered:
        gap = out.setdefault(u.teacher, Gap(u.teacher))
        gap.kinds[u.kind] += 1
        if u.kind not in gap.examples and u.detail:
            # redacted again: the last step before the terminal and the sidecar
            gap.examples[u.kind] = redact(" ".join(u.detail.split()))[:EXAMPLE_CHARS]
    return list(out.values())


def sidecar_path(samples: Path) -> Path:
    """The sidecar of a samples file: ``data/samples.jsonl`` -> ``data/samples.unanswered.json``."""
    return samples.with_name(samples.stem + ".unanswered.json")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_sidecar(path: Path, unanswered: Sequence[Unanswered], files: dict[FileName, Path],
                  dropped: Sequence[str], digests: dict[FileName, str | None]) -> None:
    """Write the sidecar atomically.

    Args:
        path: where (:func:`sidecar_path` of ``data.samples``).
        unanswered: every prompt a teacher did not answer.
        files: the data files it describes (``samples``, and ``eval`` when written).
        dropped: training prompts no teacher answered (not in the samples file: the contract
            wants at least one candidate per record).
        digests: each file's SHA-256, or None while the file is being written.
    """
    atomic_write_json(path, {
        "format": FORMAT,
        "about": "harness generate --partial wrote these data files while prompts were left "
                 "unanswered (failed calls, not teacher answers); harness validate refuses them "
                 "unless --allow-partial; run harness generate again to complete them",
        "files": {name: {"path": p.name, "sha256": digests.get(name)}
                  for name, p in files.items()},
        "teachers": {g.teacher: {"unanswered": g.total, "kinds": dict(g.kinds),
                                 "examples": g.examples} for g in gaps(unanswered)},
        "dropped_training_prompts": list(dropped),
        "unanswered": [{"file": u.file, "id": u.id, "teacher": u.teacher, "kind": u.kind}
                       for u in unanswered],
    })


@dataclass(frozen=True)
class PartialMark:
    """What a sidecar says about the current data files.

    Attributes:
        path: the sidecar.
        marks: the current files it marks as partial (``samples``/``eval``), empty when it
            describes earlier versions only (stale).
        summary: one line per teacher (:meth:`Gap.line`).
        total: unanswered (prompt, teacher) pairs.
    """

    path: Path
    marks: tuple[str, ...]
    summary: tuple[str, ...]
    total: int


def read_mark(samples: Path, current: dict[FileName, Path]) -> PartialMark | None:
    """The sidecar next to ``samples`` checked against the ``current`` data files, or None when
    there is none.

    Raises:
        InputError: the sidecar exists but is not one (unreadable, not JSON, another layout).
    """
    path = sidecar_path(samples)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        files: dict[str, Any] = data["files"]
        teachers: dict[str, Any] = data["teachers"]
        summary, total = [], 0
        for name, info in teachers.items():
            gap = Gap(str(name), Counter({str(k): int(v) for k, v in info["kinds"].items()}),
                      {str(k): redact(str(v)) for k, v in info.get("examples", {}).items()})
            summary.append(gap.line())
            total += gap.total
        marks = []
        for name, p in current.items():
            if name not in files:
                continue
            want = files[name]["sha256"]  # None: written before the data, so it marks any
            if want is None or (p.is_file() and file_sha256(p) == want):
                marks.append(name)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: cannot read this note of unanswered prompts "
                         f"({type(exc).__name__}: {exc}); it marks the data as partial: run "
                         "harness generate again to complete it (or delete the note if the "
                         "data is complete)") from None
    return PartialMark(path, tuple(marks), tuple(summary), total)


def check_complete(exp: Experiment, *, allow_partial: bool = False) -> list[str]:
    """Refuse data that ``harness generate --partial`` wrote with prompts left unanswered (its
    sidecar, this module's, names the current files' SHA-256).

    Returns:
        warning lines: the data is partial and ``allow_partial`` accepts it, or a sidecar is
        left over from an earlier version of the files (they changed since; it is ignored).

    Raises:
        InputError: the data is partial and ``allow_partial`` is False (one problem per teacher
            with unanswered prompts, located at the sidecar), or the sidecar is unreadable.
    """
    mark = read_mark(exp.data.samples, {"samples": exp.data.samples, "eval": exp.data.eval})
    if mark is None:
        return []
    if not mark.marks:
        return [f"{mark.path}: ignored: it lists unanswered prompts of an earlier version of "
                "the data files (their SHA-256 differ now); delete it"]
    files = " and ".join((exp.data.samples if m == "samples" else exp.data.eval).name
                         for m in mark.marks)
    what = (f"{files}: partial data: written by generate --partial with {mark.total:,} "
            "teacher answer(s) missing (failed calls)")
    if allow_partial:
        return [f"{what}; accepted (--allow-partial)", *mark.summary]
    log = ProblemLog()
    for line in mark.summary or ("prompts are listed as unanswered",):
        log.add(str(mark.path), "unanswered", line)
    log.raise_if_any(f"{what}; run harness generate again to ask the unanswered prompts, or "
                     "pass --allow-partial to use it as it is")
    return []
