"""Strict JSON records: the reading and writing rules every stage-boundary file obeys
(standard library only; the records themselves are in :mod:`harness.store.contracts`).

A record is a dataclass whose fields are the file's keys, in the order they are written.
``from_json(data, where)`` checks the schema version first, then that every key is present and
of its declared type and that no key is unknown; anything else raises :class:`ContractError`
naming the file and the key (``path/metrics.json: train.train_seconds: missing ...``). Nothing
is ever filled in with a default, so a renamed key fails loudly where it is read instead of
turning into a silent zero. ``to_json()`` gives back exactly the dict ``from_json`` was given
(values are checked, never coerced), so a read-then-write round trip is byte-identical.

The one exception is a settings record (``DEFAULTED`` keys, :mod:`harness.store.cell_spec`):
files written before a setting existed lack its key, and the reader needs its value, so such a
key reads as the field's default; the record remembers which keys were absent (its ``absent``
field, not a JSON key) and writes them absent again.

Open maps whose keys belong to another module (the effective spec, per-unit reports, latency
figures, the analysis's sections) stay ``dict``; where a stage reads a key of such a map, the
record checks that key is there (see ``REQUIRED_INSIDE``).

The worker imports this module, so it may use only the standard library and harness modules
that do the same (:mod:`harness.errors`).
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, Field, field, fields, is_dataclass
from typing import Any, ClassVar, TypeVar

from harness.errors import InputError, Problem


class ContractError(InputError):
    """A stage-boundary file that does not match its record (exit status 2).

    Attributes:
        where: the file (or another description of the source), e.g. ``runs/x/run.json``.
        key: dotted path of the offending key inside it (``cells[2].status``); "" for the file.
    """

    def __init__(self, where: str, key: str, message: str) -> None:
        self.where, self.key = where, key
        super().__init__(Problem(where, key, message).render())


R = TypeVar("R", bound="Record")


class Record:
    """Base of the contract records: strict JSON reading and writing (see module docstring).

    Class attributes a record may set:
        VERSION_KEY: the JSON key holding the ``schema_version`` field (None: not versioned).
        SCHEMA_VERSION: the only version this code reads and writes.
        OPTIONAL: JSON keys that may be absent (the field is then None, and None is not
            written); used only where absence itself means something.
        DEFAULTED: JSON keys that may be absent and then read as the field's default (settings
            added after files were written without them); the record's ``absent`` field
            (:func:`absent_keys`) holds those that were, and they are not written back.
        REQUIRED_INSIDE: per open-map field, keys that its value must hold (read downstream).
    """

    VERSION_KEY: ClassVar[str | None] = None
    SCHEMA_VERSION: ClassVar[int] = 1
    OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    DEFAULTED: ClassVar[frozenset[str]] = frozenset()
    REQUIRED_INSIDE: ClassVar[dict[str, tuple[str, ...]]] = {}

    @classmethod
    def _key(cls, name: str) -> str:
        """The JSON key of field ``name`` (``schema_version`` is stored under VERSION_KEY)."""
        return cls.VERSION_KEY if name == "schema_version" and cls.VERSION_KEY else name

    @classmethod
    def _json_fields(cls) -> list[Field[Any]]:
        """The fields that are JSON keys (all but a settings record's ``absent``)."""
        return [f for f in fields(cls)  # type: ignore[arg-type]
                if f.metadata.get(_JSON, True)]

    @classmethod
    def _expected(cls, data: dict[str, Any], where: str, path: str) -> tuple[set[str], set[str]]:
        """(required, allowed) JSON keys for ``data``."""
        allowed = {cls._key(f.name) for f in cls._json_fields()}
        return allowed - cls.OPTIONAL - cls.DEFAULTED, allowed

    @classmethod
    def from_json(cls: type[R], data: Any, where: str, *, path: str = "") -> R:
        """The record held by ``data`` (parsed JSON); raises :class:`ContractError`.

        Args:
            data: the parsed JSON value.
            where: the file it came from (used in error messages).
            path: the key path of ``data`` inside that file, for nested records.
        """
        if not isinstance(data, dict):
            raise ContractError(where, path, f"expected a JSON object ({cls.__name__}), found "
                                             f"{_json_type(data)}")
        if cls.VERSION_KEY:
            found = data.get(cls.VERSION_KEY)  # presence is checked right here, not defaulted
            if found != cls.SCHEMA_VERSION:
                state = "missing" if cls.VERSION_KEY not in data else f"{found!r} is unknown"
                raise ContractError(where, join_key(path, cls.VERSION_KEY),
                                    f"{state}: this version of the harness reads "
                                    f"{cls.__name__} schema version {cls.SCHEMA_VERSION} only "
                                    "(not written by this version of the harness)")
        required, allowed = cls._expected(data, where, path)
        for key in data:
            if key not in allowed:
                raise ContractError(where, join_key(path, key),
                                    f"unknown key in {cls.__name__} (expected: "
                                    f"{', '.join(sorted(allowed))})")
        for key in sorted(required):
            if key not in data:
                raise ContractError(where, join_key(path, key),
                                    f"missing from {cls.__name__} (not written by this version "
                                    "of the harness, or the file was edited)")
        hints = _hints(cls)
        values: dict[str, Any] = {}
        for f in cls._json_fields():
            key = cls._key(f.name)
            if key in data:
                values[f.name] = _convert(data[key], hints[f.name], where, join_key(path, key))
            elif key in cls.DEFAULTED:
                values[f.name] = _default(f)
            else:
                values[f.name] = None
        for name, keys in cls.REQUIRED_INSIDE.items():
            _require_inside(values[name], keys, where, join_key(path, cls._key(name)))
        if cls.DEFAULTED:
            values[ABSENT] = frozenset(k for k in cls.DEFAULTED if k not in data)
        return cls(**values)

    def _emitted(self) -> list[str]:
        """Field names written by :meth:`to_json` (an absent OPTIONAL or DEFAULTED key stays
        absent)."""
        absent: frozenset[str] = getattr(self, ABSENT, frozenset())
        return [f.name for f in self._json_fields()
                if not (self._key(f.name) in self.OPTIONAL and getattr(self, f.name) is None)
                and self._key(f.name) not in absent]

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record (keys in field order; values as read)."""
        return {self._key(name): _dump(getattr(self, name)) for name in self._emitted()}


#: Field metadata key: False on a field that is not a JSON key (a settings record's ``absent``).
_JSON = "json"
#: The field of a record with DEFAULTED keys that holds the keys its JSON lacked.
ABSENT = "absent"


def absent_keys(unless_given: frozenset[str] = frozenset()) -> Any:
    """The ``absent`` field of a record with ``DEFAULTED`` keys: declare it last, as
    ``absent: frozenset[str] = absent_keys()``. Read from JSON, it holds the DEFAULTED keys the
    JSON lacked; built in code, it holds ``unless_given`` (keys written only when a caller
    gives them: none by default, so every key is written)."""
    return field(default=unless_given, repr=False, metadata={_JSON: False})


#: Record class -> its resolved field types (see :func:`_hints`).
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a record class, resolved once (resolving them took most of
    a small record's reading time, and a cell spec holds four records)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _default(f: Field[Any]) -> Any:
    """The default of a DEFAULTED field (a record declaring one without a default is a bug)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    raise TypeError(f"DEFAULTED field {f.name!r} has no default")


def join_key(path: str, key: str) -> str:
    """``key`` appended to the dotted key path ``path`` (``a.b``, ``a[2]``)."""
    return f"{path}.{key}" if path and not key.startswith("[") else f"{path}{key}"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false",
            int: "a number", float: "a number", type(None): "null"}.get(type(value),
                                                                         type(value).__name__)


def _require_inside(value: Any, keys: tuple[str, ...], where: str, path: str) -> None:
    """Each map in ``value`` (a dict, or a dict of dicts when keys start with ``*.``) holds
    ``keys``."""
    for key in keys:
        if key.startswith("*."):
            for name, inner in value.items():
                if not isinstance(inner, dict):
                    raise ContractError(where, f"{path}.{name}", "expected a JSON object, found "
                                        f"{_json_type(inner)}")
                if key[2:] not in inner:
                    raise ContractError(where, f"{path}.{name}.{key[2:]}", "missing")
        elif key not in value:
            raise ContractError(where, f"{path}.{key}", "missing")


def _convert(value: Any, hint: Any, where: str, path: str) -> Any:
    """``value`` checked against the type ``hint`` (nested records built); never coerced."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _convert(value, hint, where, path)
    if hint is Any:
        return value
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_json(value, where, path=path)
    if origin is list:
        _expect(isinstance(value, list), "an array", value, where, path)
        (item,) = typing.get_args(hint)
        return [_convert(v, item, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _expect(isinstance(value, dict), "an object", value, where, path)
        _, item = typing.get_args(hint)
        return {k: _convert(v, item, where, f"{path}.{k}") for k, v in value.items()}
    ok = {str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, int | float) and not isinstance(v, bool)}[hint]
    _expect(ok(value), {str: "a string", bool: "true/false", int: "an integer",
                        float: "a number"}[hint], value, where, path)
    return value


def _expect(ok: bool, wanted: str, value: Any, where: str, path: str) -> None:
    if not ok:
        raise ContractError(where, path, f"expected {wanted}, found {_json_type(value)}")


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    assert not is_dataclass(value), value  # every nested dataclass is a Record
    return value

