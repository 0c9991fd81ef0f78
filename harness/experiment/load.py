"""Read an experiment YAML and validate it with pydantic, reporting every problem located.

The YAML is read with a safe, bounded loader (:mod:`harness.experiment.safe_yaml`: no code-running
tags, duplicate keys refused, regular files of bounded size, bounded depth and alias expansion).
``extends`` in buckets and field sets is resolved on the raw mappings, data and checkpoint paths
are made absolute, then pydantic validates the whole document; its errors become located problems
(``demo.yaml:23: buckets.multi.min_score: ...``) with a did-you-mean for unknown keys
(:mod:`harness.experiment.locate`).

This module is the spec's half of loading and stops there: :func:`parse_experiment` returns a
:class:`ParsedExperiment` holding the problems found so far and, per top-level section, the
validated section or None. The rules that span sections (registered names, references, templates,
student kinds, files) live above spec, compose and evaluate, in :mod:`harness.checks`; its
:func:`harness.checks.load_experiment` runs them on the parsed sections, adds their problems to the
same log and raises one :class:`~harness.errors.InputError` for the whole pass. Callers load
experiments through that function.
"""

from __future__ import annotations

import contextlib
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from harness.errors import InputError, Problem, ProblemLog, did_you_mean
from harness.experiment.locate import Locator, line_index, line_of, pydantic_problems
from harness.experiment.models import Experiment
from harness.experiment.safe_yaml import FileProblem, load_text, read_text
from harness.experiment.student import checkpoint_fields
from harness.students.base import DEFAULT_KIND

_EXTENDABLE = ("buckets", "fields")
#: Sections keyed by user-chosen names, which references (``baseline.bucket``...) point into.
NAMED_SECTIONS = ("units", "buckets", "fields")


@dataclass(frozen=True)
class LoadedExperiment:
    """A validated experiment and where it came from.

    Attributes:
        spec: the validated experiment; its data paths are absolute.
        path: the YAML file.
    """

    spec: Experiment
    path: Path


def _read_yaml(path: Path) -> tuple[Any, Locator]:
    """Read the experiment file with every resource bounded (see
    :mod:`harness.experiment.safe_yaml`)."""
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise InputError(f"{path}: experiment file not found") from None
    except FileProblem as exc:
        raise InputError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot read experiment file ({exc})") from None
    try:
        data, node = load_text(text)
    except RecursionError:  # not expected (depth is capped while composing); never a traceback
        raise InputError(f"{path}: invalid YAML", total=1, problems=[_problem(
            path.name, "", "the document nests too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark is not None else path.name
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        msg = f"{context}: {problem}" if context else str(problem)
        if isinstance(exc, yaml.reader.ReaderError):
            # Unreadable characters: the reader knows the position (libyaml: a byte offset),
            # not the line.
            char = chr(exc.character) if isinstance(exc.character, int) else exc.character
            before = (text.encode("utf-8", "surrogatepass")[: exc.position].count(b"\n")
                      if isinstance(exc.character, int) else text[: exc.position].count("\n"))
            where = f"{path.name}:{before + 1}"
            msg = f"character {char!r} is not allowed in YAML (position {exc.position})"
        msg = " ".join(str(msg).split())
        if "could not determine a constructor" in msg:
            msg += " (YAML here is data only: tags that build Python objects are not allowed)"
        raise InputError(f"{path}: invalid YAML", total=1,
                         problems=[_problem(where, "", msg)]) from None
    return data, Locator(path, line_index(node))


def _problem(where: str, field: str, message: str) -> Problem:
    return Problem(where, field, message)


def _resolve_extends(raw: dict[str, Any], log: ProblemLog, loc: Locator) -> None:
    """Replace each ``extends: parent`` in buckets/fields by the parent's merged keys."""
    for section in _EXTENDABLE:
        table = raw.get(section)
        if not isinstance(table, dict):
            continue
        resolved: dict[str, dict[str, Any]] = {}

        def resolve(name: str, table: dict[str, Any] = table, section: str = section,
                    resolved: dict[str, dict[str, Any]] = resolved) -> dict[str, Any] | None:
            # Walk up to the first resolved ancestor (or the root), then merge back down:
            # iterative, so a chain of any length (declared in any order) is fine.
            chain: tuple[str, ...] = (name,)
            while chain[-1] not in resolved:
                current = chain[-1]
                entry = table[current]
                if not isinstance(entry, dict):
                    return None  # pydantic reports the type error
                parent = entry.get("extends")
                if parent is None:
                    break
                path = (section, current, "extends")
                if not isinstance(parent, str) or parent not in table:
                    hint = did_you_mean(str(parent), table) if isinstance(parent, str) else ""
                    log.add(loc.where(path), ".".join(path),
                            f"extends unknown {section[:-1]} {parent!r}{hint}")
                    return None
                if parent in chain:
                    log.add(loc.where(path), ".".join(path),
                            f"extends cycle: {' -> '.join((*chain, parent))}")
                    return None
                chain = (*chain, parent)
            top = chain[-1]
            merged = resolved[top] if top in resolved else dict(table[top])
            resolved[top] = merged
            for child in reversed(chain[:-1]):
                entry = table[child]
                merged = {**{k: v for k, v in merged.items() if k != "extends"}, **entry}
                merged.pop("extends")
                resolved[child] = merged
            return merged

        for name in list(table):
            out = resolve(name)
            if out is not None:
                table[name] = out


#: Linux's PATH_MAX and NAME_MAX (bytes): longer paths fail in the OS with ENAMETOOLONG.
_PATH_MAX, _NAME_MAX = 4096, 255


#: A URL's scheme (``https://``, ``s3://``, ``hf://``): these paths name local files only.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _path_problem(text: str) -> str | None:
    """Why ``text`` cannot name a file on this system, or None (checked before any OS call)."""
    if not text.strip():
        # "" would resolve to the YAML file's own folder and pass for a checkpoint folder
        return "the path is empty; give a file or folder (relative to the YAML file)"
    if _URL.match(text):
        return ("a URL is not a local path: the harness reads local files and folders only "
                "(download the file or model first and give its path)")
    if "\x00" in text:
        return "the path contains a NUL byte"
    size = len(text.encode("utf-8", "surrogatepass"))
    if size >= _PATH_MAX:
        return f"the path is {size:,} bytes long; paths are shorter than {_PATH_MAX:,} bytes"
    longest = max(text.split("/"), key=lambda c: len(c.encode("utf-8", "surrogatepass")))
    if len(longest.encode("utf-8", "surrogatepass")) > _NAME_MAX:
        return (f"the path has a component of {len(longest):,} characters ({longest[:20]!r}...); "
                f"a file or folder name is at most {_NAME_MAX} bytes")
    return None


def _resolve_paths(raw: dict[str, Any], base: Path, log: ProblemLog, loc: Locator
                   ) -> set[str]:
    """Make data and checkpoint paths absolute, relative to the YAML file's folder.

    A path that cannot name a file (NUL byte, too long, ``~nosuchuser``) is reported and left
    as written; returns the dotted fields of those paths so later checks skip them.
    """
    bad: set[str] = set()

    def fix(mapping: Any, key: str, path: tuple[str, ...]) -> None:
        if not (isinstance(mapping, dict) and isinstance(mapping.get(key), str)):
            return
        reason = _path_problem(mapping[key])
        if reason is None:
            try:
                p = Path(mapping[key]).expanduser()
                mapping[key] = str(p if p.is_absolute() else (base / p).resolve())
            except RuntimeError as exc:  # "Could not determine home directory", symlink loop
                user = mapping[key].split("/", 1)[0]
                reason = (f"cannot expand {user!r}: no such user" if user.startswith("~")
                          else f"the path cannot be resolved ({exc})")
            except (OSError, ValueError) as exc:
                reason = f"the path cannot be resolved ({exc})"
        if reason is not None:
            field = ".".join(path)
            bad.add(field)
            log.add(loc.where(path), field, reason)

    data = raw.get("data")
    fix(data, "samples", ("data", "samples"))
    fix(data, "eval", ("data", "eval"))
    gen = raw.get("generate")
    for key in ("prompts", "eval_prompts", "cache"):
        fix(gen, key, ("generate", key))
    teachers = raw.get("teachers")
    for name, t in (teachers.items() if isinstance(teachers, dict) else ()):
        if isinstance(t, dict) and t.get("provider") == "hf":  # openai's `model` is an id
            for key in ("model", "gguf_file"):
                fix(t, key, ("teachers", str(name), key))
    judge = raw.get("judge")
    fix(judge, "rubric_file", ("judge", "rubric_file"))
    own = judge.get("config") if isinstance(judge, dict) else None
    if isinstance(own, dict) and own.get("provider") == "hf":
        for key in ("model", "gguf_file"):
            fix(own, key, ("judge", "config", key))
    student = raw.get("student")
    if isinstance(student, dict):
        for *parents, key in checkpoint_fields(student.get("kind", DEFAULT_KIND)):
            mapping: Any = student
            for parent in parents:
                mapping = mapping.get(parent) if isinstance(mapping, dict) else None
            fix(mapping, key, ("student", *parents, key))
    return bad


@dataclass(frozen=True)
class ParsedExperiment:
    """An experiment YAML after reading and pydantic validation, before cross-section rules.

    Attributes:
        path: the YAML file.
        spec: the validated experiment, or None when any pydantic problem was found.
        sections: every top-level section name -> its validated value, or None when it failed
            validation (its problems are in ``log``) or is required and missing. An absent
            optional section holds its default. In ``units``, ``buckets`` and ``fields`` (when
            written as a mapping) only the entries that validated are kept.
        names: the names declared in ``units``, ``buckets`` and ``fields``, including entries
            that failed validation, so a reference to one is not reported a second time.
        log: the problems found so far; rules above spec add theirs through :meth:`report`.
        locator: YAML path -> ``file:line``.
        reported: dotted fields already reported (paths that cannot name a file): later
            problems on them are dropped.
    """

    path: Path
    spec: Experiment | None
    sections: Mapping[str, Any]
    names: Mapping[str, frozenset[str]]
    log: ProblemLog
    locator: Locator
    reported: frozenset[str]

    def report(self, problems: Iterable[Problem]) -> None:
        """Add problems whose ``field`` is a dotted YAML path, located at their line."""
        for p in problems:
            if p.field not in self.reported:
                self.log.add(self.locator.where(tuple(p.field.split("."))), p.field, p.message)

    def finish(self) -> LoadedExperiment:
        """The loaded experiment, or one InputError with every problem, sorted by line.

        Raises:
            InputError: when any problem was found in the pass.
        """
        if self.log:
            self.log.problems.sort(key=line_of)
        self.log.raise_if_any(f"{self.path}: the experiment is not valid "
                              f"({self.log.total} problem(s))")
        assert self.spec is not None  # no problem means pydantic validated the whole document
        return LoadedExperiment(spec=self.spec, path=self.path)


def parse_experiment(path: str | Path) -> ParsedExperiment:
    """Read, resolve and validate an experiment YAML (no cross-section rules: see the module
    docstring).

    Args:
        path: the YAML file.

    Returns:
        the parsed experiment with every problem found so far in its log.

    Raises:
        InputError: only when there is no document to check: the file cannot be read, is not
            YAML, or is not a mapping.
    """
    path = Path(path)
    raw, loc = _read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the experiment must be a YAML mapping (got "
                         f"{type(raw).__name__})")
    log = ProblemLog()
    _resolve_extends(raw, log, loc)
    bad_paths = _resolve_paths(raw, path.resolve().parent, log, loc)
    try:
        spec: Experiment | None = Experiment.model_validate(raw)
        sections = {name: getattr(spec, name) for name in Experiment.model_fields}
    except ValidationError as exc:
        spec = None
        pydantic_problems(exc, log, loc)
        sections = _validated_sections(raw, {str(e["loc"][0]) for e in exc.errors() if e["loc"]})
    names = {k: frozenset(raw[k]) if isinstance(raw.get(k), dict) else frozenset()
             for k in NAMED_SECTIONS}
    return ParsedExperiment(path=path, spec=spec, sections=sections, names=names, log=log,
                            locator=loc, reported=frozenset(bad_paths))


def _validated_sections(raw: dict[str, Any], failed: set[str]) -> dict[str, Any]:
    """Each top-level section validated on its own (used when the whole document failed).

    Args:
        raw: the document (extends and paths resolved).
        failed: the sections the whole-document pass reported errors in.

    A failed section is None (its errors are reported already; the experiment's own field
    validators, e.g. ``scale`` in (0, 1], count too); an absent optional one holds its default;
    in the named sections each entry is validated on its own and only the good ones are kept, so
    rules still check the rest.
    """
    out: dict[str, Any] = {}
    for name, field in Experiment.model_fields.items():
        if name not in raw:
            out[name] = (None if field.is_required()
                         else field.get_default(call_default_factory=True))
            continue
        value = raw[name]
        ann = field.annotation
        if name in failed and name not in NAMED_SECTIONS:
            out[name] = None
            continue
        if name in NAMED_SECTIONS and isinstance(value, dict):
            inner = TypeAdapter(typing.get_args(ann)[1])
            good = {}
            for key, entry in value.items():
                with contextlib.suppress(ValidationError):  # reported by the whole-document pass
                    good[key] = inner.validate_python(entry)
            out[name] = good
            continue
        try:
            out[name] = TypeAdapter(ann).validate_python(value)  # type: ignore[arg-type]
        except ValidationError:  # reported by the whole-document pass
            out[name] = None
    return out


def json_schema() -> dict[str, Any]:
    """The experiment's JSON Schema (for editors that check YAML)."""
    schema = Experiment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Distillation harness experiment"
    return schema
