"""Rules as data: each a small function registered with the sections it needs.

A rule reads the validated sections of one experiment (and, for data-fit rules, the loaded
sample repository) and yields :class:`~harness.errors.Problem` s whose ``field`` is the dotted
YAML path and whose ``where`` is left empty: the caller locates them (``file:line``). A rule runs
only when every section it needs validated, so a rule never sees a half-built section and never
has to guard against one; the problems of a section that failed are reported by pydantic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.errors import Problem


@dataclass(frozen=True)
class Context:
    """What a rule may read.

    Attributes:
        sections: top-level section name -> the validated section, or None when it did not
            validate (see :class:`harness.experiment.ParsedExperiment`).
        names: the names declared in ``units``, ``buckets`` and ``fields``, including entries
            that failed validation.
        data: the loaded sample repository (:class:`harness.samples.Dataset`), for data-fit
            rules; None for the experiment rules.
    """

    sections: Mapping[str, Any]
    names: Mapping[str, frozenset[str]]
    data: Any = None

    def __getitem__(self, section: str) -> Any:
        return self.sections[section]


Check = Callable[[Context], Iterable[Problem]]


@dataclass(frozen=True)
class Rule:
    """One registered rule.

    Attributes:
        name: the function's name (for listings and tests).
        needs: the sections that must have validated for the rule to run.
        check: the rule itself.
        files: whether it looks at the file system (skipped by ``check_files=False``).
    """

    name: str
    needs: tuple[str, ...]
    check: Check
    files: bool = False


@dataclass
class Rules:
    """An ordered list of rules; registration order is the order they run (and report) in."""

    rules: list[Rule] = field(default_factory=list)

    def rule(self, *needs: str, files: bool = False) -> Callable[[Check], Check]:
        """Decorator: register ``fn`` as a rule that needs the sections ``needs``."""

        def register(fn: Check) -> Check:
            self.rules.append(Rule(getattr(fn, "__name__", repr(fn)), needs, fn, files))
            return fn

        return register

    def run(self, ctx: Context, *, files: bool = True) -> Iterator[Problem]:
        """Every problem of every rule whose sections validated (file rules only with
        ``files``)."""
        for r in self.rules:
            if r.files and not files:
                continue
            if all(ctx.sections.get(name) is not None for name in r.needs):
                yield from r.check(ctx)


def problem(field_path: str, message: str) -> Problem:
    """A problem at the dotted YAML path ``field_path``, to be located by the caller."""
    return Problem("", field_path, message)
