"""Located, human-readable input errors.

Every problem with user input (experiment YAML, sample files, run folders) becomes a
:class:`Problem` naming *where* (file, line or YAML path), *what field* and *why*. Loaders collect
all problems of one pass into a :class:`ProblemLog` and raise a single :class:`InputError`; the
CLI prints it and exits with status 2, never a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

#: How many problems are printed; the rest are counted. Also bounds memory on huge bad files.
DEFAULT_CAP = 50
_STORE_CAP = 10_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input.

    Attributes:
        where: the file and position, e.g. ``samples.jsonl:17`` or ``demo.yaml``.
        field: dotted field or YAML path inside it, e.g. ``candidates[0].confidence``; may be "".
        message: the reason, phrased for a person.
    """

    where: str
    field: str
    message: str

    def render(self) -> str:
        """``where: field: message`` on one line (the field part omitted when empty).

        Control characters from user data (a teacher name with a newline) are escaped so one
        problem stays one line.
        """
        text = f"{self.where}: {self.field}: {self.message}" if self.field else (
            f"{self.where}: {self.message}")
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


@dataclass
class ProblemLog:
    """Collects problems during one validation pass, keeping at most a bounded number."""

    problems: list[Problem] = field(default_factory=list)
    total: int = 0

    def add(self, where: str, field_path: str, message: str) -> None:
        self.total += 1
        if len(self.problems) < _STORE_CAP:
            self.problems.append(Problem(where, field_path, message))

    @property
    def full(self) -> bool:
        """Whether further problems are only counted (callers may skip composing messages)."""
        return len(self.problems) >= _STORE_CAP

    def count(self, n: int = 1) -> None:
        """Count ``n`` problems without keeping them (used once the log is :attr:`full`)."""
        self.total += n

    def extend(self, problems: Iterable[Problem]) -> None:
        for p in problems:
            self.add(p.where, p.field, p.message)

    def __bool__(self) -> bool:
        return self.total > 0

    def raise_if_any(self, headline: str) -> None:
        """Raise :class:`InputError` carrying every collected problem, if there is any."""
        if self.total:
            raise InputError(headline, self.problems, self.total)


class InputError(Exception):
    """Bad user input: carries every located problem found in one pass (exit status 2)."""

    def __init__(self, headline: str, problems: list[Problem] | None = None,
                 total: int | None = None) -> None:
        self.headline = headline
        self.problems = list(problems or [])
        self.total = total if total is not None else len(self.problems)
        super().__init__(self.render())

    def render(self, cap: int = DEFAULT_CAP) -> str:
        """The headline, up to ``cap`` problems one per line, then a count of the rest."""
        lines = [self.headline]
        lines += [f"  {p.render()}" for p in self.problems[:cap]]
        rest = self.total - min(cap, len(self.problems))
        if rest > 0:
            lines.append(f"  ... and {rest} more problem(s)")
        return "\n".join(lines)


def number(value: float) -> str:
    """``value`` as the user wrote it, for messages: the shortest text that reads back as the
    same float (``5.0000001``, not ``:g``'s ``5``), without a trailing ``.0`` (``6``, not
    ``6.0``: a JSON ``6`` is read as a float by the tables)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ``", did you mean 'x'?"`` suffix for the closest choice, or "" when none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f", did you mean '{close[0]}'?" if close else ""
