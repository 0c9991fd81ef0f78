"""Load an experiment YAML into :class:`~harness.spec.models.Experiment`, reporting every problem.

The YAML is read with a safe, bounded loader (:mod:`harness.spec.safe_yaml`: no code-running
tags, duplicate keys refused, regular files of bounded size, bounded depth and alias expansion).
``extends`` in buckets and field sets is resolved on the raw mappings, then pydantic validates the
whole document; its errors are turned into located problems (``demo.yaml:23: buckets.multi.
min_score: ...``) with a did-you-mean for unknown keys. Cross-section rules run last. All problems
of the pass are raised together as one :class:`~harness.errors.InputError`.
"""

from __future__ import annotations

import contextlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.errors import InputError, ProblemLog, did_you_mean
from harness.spec.models import Experiment, Unit, unit_model
from harness.spec.rules import check_cross_rules
from harness.spec.safe_yaml import FileProblem, load_text, read_text

_EXTENDABLE = ("buckets", "fields")


@dataclass(frozen=True)
class LoadedExperiment:
    """A validated experiment and where it came from.

    Attributes:
        spec: the validated experiment; its data paths are absolute.
        path: the YAML file.
    """

    spec: Experiment
    path: Path


def _line_index(node: yaml.Node | None, prefix: tuple[str, ...] = (),
                _active: frozenset[int] = frozenset()) -> dict[tuple[str, ...], int]:
    """Map each YAML path (tuple of keys / list indices as str) to its 1-based line.

    An alias that refers back to a node being walked (a recursive alias) is not followed.
    """
    out: dict[tuple[str, ...], int] = {}
    if node is None or id(node) in _active:
        return out
    active = _active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, str(key_node.value))
            out[path] = key_node.start_mark.line + 1
            out.update(_line_index(value_node, path, active))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, str(i))
            out[path] = item.start_mark.line + 1
            out.update(_line_index(item, path, active))
    return out


class _Locator:
    """Turns a YAML path into ``file:line`` using the composed node tree."""

    def __init__(self, file: Path, lines: dict[tuple[str, ...], int]) -> None:
        self.file = file
        self.lines = lines

    def where(self, path: tuple[str, ...]) -> str:
        p = tuple(str(x) for x in path)
        while p:
            if p in self.lines:
                return f"{self.file.name}:{self.lines[p]}"
            p = p[:-1]
        return self.file.name


def _read_yaml(path: Path) -> tuple[Any, _Locator]:
    """Read the experiment file with every resource bounded (see :mod:`harness.spec.safe_yaml`)."""
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
    return data, _Locator(path, _line_index(node))


def _problem(where: str, field: str, message: str) -> Any:
    from harness.errors import Problem

    return Problem(where, field, message)


def _resolve_extends(raw: dict[str, Any], log: ProblemLog, loc: _Locator) -> None:
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


def _path_problem(text: str) -> str | None:
    """Why ``text`` cannot name a file on this system, or None (checked before any OS call)."""
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


def _resolve_paths(raw: dict[str, Any], base: Path, log: ProblemLog, loc: _Locator
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
    student = raw.get("student")
    fix(student, "model", ("student", "model"))
    if isinstance(student, dict):
        fix(student.get("distill"), "teacher_model", ("student", "distill", "teacher_model"))
    return bad


def _model_fields_at(loc: tuple[Any, ...]) -> tuple[list[str], tuple[str, ...]]:
    """Walk the model tree along a pydantic error location.

    Returns the field names allowed at the parent of the last element (for did-you-mean) and
    the display path with union tags (e.g. ``label`` in ``units.x.label.labels``) removed.
    """
    current: Any = Experiment
    shown: list[str] = []
    allowed: list[str] = []
    for i, part in enumerate(loc):
        current = _unwrap(current)
        last = i == len(loc) - 1
        if isinstance(current, type) and issubclass(current, BaseModel):
            allowed = list(current.model_fields)
            shown.append(str(part))
            if last:
                break
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if current is Unit:
            # A unit entry: its validator puts the kind into the location, like a tagged union.
            try:
                current = unit_model(str(part))
            except LookupError:
                shown.append(str(part))
                current = None
            continue
        if origin is dict:
            shown.append(str(part))
            current = args[1] if args else None
            continue
        if origin in (list, tuple):
            shown.append(str(part))
            current = args[0] if args else None
            continue
        shown.append(str(part))
        current = None
    return allowed, tuple(shown)


def _unwrap(tp: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` so the walker sees the model or container."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (types.UnionType, typing.Union):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp


def _pydantic_problems(exc: ValidationError, log: ProblemLog, loc: _Locator) -> None:
    for err in exc.errors(include_url=False):
        if log.full:  # 100,000 unknown keys: count the rest without a did-you-mean each
            log.count()
            continue
        raw_loc = tuple(err["loc"])
        allowed, shown = _model_fields_at(raw_loc)
        path = ".".join(shown)
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(raw_loc[-1]) if raw_loc else ""
            msg = f"unknown key{did_you_mean(key, allowed)}"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and kind.endswith("_type"):
                msg += f" (got {err['input']!r:.60})"
        log.add(loc.where(shown), path, msg)


def load_experiment(path: str | Path, *, check_files: bool = True) -> LoadedExperiment:
    """Read, resolve and validate an experiment YAML.

    Args:
        path: the YAML file.
        check_files: also require the data files to exist.

    Raises:
        InputError: with every problem found (YAML path and line for each).
    """
    path = Path(path)
    raw, loc = _read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: the experiment must be a YAML mapping (got "
                         f"{type(raw).__name__})")
    log = ProblemLog()
    _resolve_extends(raw, log, loc)
    bad_paths = _resolve_paths(raw, path.resolve().parent, log, loc)
    spec: Experiment | None = None
    try:
        spec = Experiment.model_validate(raw)
    except ValidationError as exc:
        _pydantic_problems(exc, log, loc)
    # Cross-section rules also run on whatever validated, so one pass reports everything.
    partial = spec if spec is not None else _partial_experiment(raw)
    names = {k: set(raw[k]) if isinstance(raw.get(k), dict) else set()
             for k in ("units", "buckets", "fields")}
    try:
        cross = check_cross_rules(partial, names, check_files=check_files)
    except (AttributeError, TypeError, KeyError):
        if spec is not None:
            raise
        cross = []  # a partial document too broken to cross-check; its errors are reported
    log.extend(_problem(loc.where(tuple(p.field.split("."))), p.field, p.message)
               for p in cross if p.field not in bad_paths)  # those are reported already
    if log:
        log.problems.sort(key=_line_of)
    log.raise_if_any(f"{path}: the experiment is not valid ({log.total} problem(s))")
    assert spec is not None
    return LoadedExperiment(spec=spec, path=path)


def _line_of(p: Any) -> tuple[int, str]:
    """Sort key: the line number in ``where`` (``file:12``), then the field."""
    tail = p.where.rsplit(":", 1)[-1]
    return (int(tail) if tail.isdigit() else 0, p.field)


def _partial_experiment(raw: dict[str, Any]) -> Experiment:
    """An unvalidated Experiment holding only the sections (and dict entries) that validate.

    Sections that fail are left out (their errors are already reported): required ones become
    None or empty, which the cross-section rules treat as "nothing to check".
    """
    from pydantic import TypeAdapter

    parts: dict[str, Any] = {}
    for name, field in Experiment.model_fields.items():
        if name not in raw:
            parts[name] = (None if field.is_required()
                           else field.get_default(call_default_factory=True))
            continue
        value = raw[name]
        ann = field.annotation
        if name in ("units", "buckets", "fields") and isinstance(value, dict):
            inner = typing.get_args(ann)[1]
            good = {}
            for key, entry in value.items():
                with contextlib.suppress(ValidationError):
                    good[key] = TypeAdapter(inner).validate_python(entry)
            parts[name] = good
            continue
        try:
            parts[name] = TypeAdapter(ann).validate_python(value)  # type: ignore[arg-type]
        except ValidationError:
            parts[name] = (None if field.is_required()
                           else field.get_default(call_default_factory=True))
    for name in ("units", "buckets", "fields"):
        parts.setdefault(name, {})
    return Experiment.model_construct(**parts)


def json_schema() -> dict[str, Any]:
    """The experiment's JSON Schema (for editors that check YAML)."""
    schema = Experiment.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Distillation harness experiment"
    return schema
