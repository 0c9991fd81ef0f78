"""Reading a prompts file (JSON Lines: ``id``, ``unit``, ``prompt``, optional ``reference`` and
``tags``) with every problem located at its ``file:line``, before any teacher is called."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness.units as unit_kinds
from harness.errors import InputError, ProblemLog, did_you_mean

_KEYS = ("id", "unit", "prompt", "reference", "tags")


@dataclass(frozen=True)
class PromptItem:
    """One prompt to send to the teachers (``line``: its 1-based line in the file)."""

    id: str
    unit: str
    prompt: str
    reference: str | None
    tags: dict[str, str] = field(default_factory=dict)
    line: int = 0


def _encodable(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _item(obj: Any, where: str, units: Mapping[str, Mapping[str, Any]], need_reference: bool,
          log: ProblemLog) -> PromptItem | None:
    """The item on one line, or None after adding its problems to ``log``."""
    if not isinstance(obj, dict):
        log.add(where, "", f"expected a JSON object, got {type(obj).__name__}")
        return None
    before = log.total
    for key in sorted(set(obj) - set(_KEYS)):
        log.add(where, key, f"unknown key{did_you_mean(key, _KEYS)} (known: {', '.join(_KEYS)})")
    for key in ("id", "unit", "prompt"):
        value = obj.get(key)
        if not isinstance(value, str) or not value.strip():
            log.add(where, key, "required, a non-empty string")
    unit = obj.get("unit")
    if isinstance(unit, str) and unit.strip() and unit not in units:
        log.add(where, "unit", f"unit {unit!r} is not declared by the experiment"
                f"{did_you_mean(unit, units)}")
    ref = obj.get("reference")
    if ref is None and need_reference:
        log.add(where, "reference", "required in an eval prompts file")
    elif ref is not None and not isinstance(ref, str):
        log.add(where, "reference", "must be a string or null")
    elif isinstance(ref, str) and isinstance(unit, str) and unit in units:
        opts = units[unit]
        why = unit_kinds.get(opts["kind"]).reference_problem(opts, unit, ref)
        if why is not None:
            log.add(where, "reference", why)
    tags = obj.get("tags") or {}
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        log.add(where, "tags", "must be an object of strings")
    for key in _KEYS:
        value = obj.get(key)
        texts = [*value, *value.values()] if isinstance(value, dict) else [value]
        if any(isinstance(t, str) and not _encodable(t) for t in texts):
            # JSON can spell a lone surrogate (\ud800) that no UTF-8 file or request can carry
            log.add(where, key, "contains a lone surrogate escape (\\ud800-\\udfff): not valid "
                    "Unicode text")
    if log.total > before:
        return None
    return PromptItem(id=obj["id"], unit=obj["unit"], prompt=obj["prompt"], reference=ref,
                      tags=dict(tags), line=int(where.rsplit(":", 1)[1]))


def read_prompts(path: Path, units: Mapping[str, Mapping[str, Any]], *,
                 need_reference: bool = False, limit: int | None = None) -> list[PromptItem]:
    """Every item of a prompts file, in file order (the first ``limit`` with a limit).

    Args:
        path: the JSON Lines file.
        units: the experiment's units (name -> options as a plain mapping).
        need_reference: every item must have a ``reference`` (eval prompts).
        limit: read only the first ``limit`` items (the rest is not checked either).

    Raises:
        InputError: a missing or unreadable file, invalid JSON or UTF-8, a missing or mistyped
            field, an unknown key or unit, a reference the unit rejects, a duplicate id; all of
            them in one pass, each at ``file:line``.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the prompts file ({exc.strerror or exc})") from None
    log = ProblemLog()
    items: list[PromptItem] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(raw.split(b"\n"), start=1):
        if limit is not None and len(items) >= limit:
            break
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            log.add(where, "", "not valid UTF-8")
            continue
        except (ValueError, RecursionError) as exc:
            log.add(where, "", f"not valid JSON ({exc})")
            continue
        item = _item(obj, where, units, need_reference, log)
        if item is None:
            continue
        if item.id in seen:
            log.add(where, "id", f"duplicate id {item.id!r} (first on line {seen[item.id]})")
            continue
        seen[item.id] = n
        items.append(item)
    if not items and not log:
        log.add(str(path), "", "the file has no prompts")
    log.raise_if_any(f"{path}: the prompts file is not valid ({log.total} problem(s))")
    return items


def check_overlap(train: list[PromptItem], evals: list[PromptItem], train_path: Path,
                  eval_path: Path) -> None:
    """Refuse, before any call, eval prompts that repeat a training prompt's id or normalized
    text: ``validate`` would reject the files after the teachers were paid.

    Raises:
        InputError: each overlapping eval prompt at its ``file:line``.
    """
    import polars as pl

    from harness.samples.leakage import find_leaks

    def frame(items: list[PromptItem]) -> pl.DataFrame:
        return pl.DataFrame({"rec": list(range(len(items))), "id": [it.id for it in items],
                             "line": [it.line for it in items],
                             "prompt": [it.prompt for it in items]},
                            schema={"rec": pl.Int64, "id": pl.Utf8, "line": pl.Int64,
                                    "prompt": pl.Utf8})

    leaks = find_leaks(frame(train), frame(evals))  # the rule `validate` applies, to the letter
    log = ProblemLog()
    for row in leaks.unique("eval_id", keep="first", maintain_order=True).iter_rows(named=True):
        where, at = f"{eval_path}:{row['eval_line']}", f"{train_path}:{row['train_line']}"
        if row["by"] == "id":
            log.add(where, "id", f"{row['eval_id']!r} is also a training prompt ({at})")
        else:
            log.add(where, "prompt", f"the same prompt is a training prompt ({at})")
    log.raise_if_any(f"{eval_path}: eval prompts leak into training ({log.total} problem(s); "
                     "data.leakage: error)")
