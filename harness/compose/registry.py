"""Registries of composition rules, chosen in YAML by short names.

A rule module registers its functions here with a decorator; the spec validator asks the
registries which names exist, so a typo in ``select:`` is reported (with a did-you-mean) before
any data is read. Kept free of heavy imports: validation imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import polars as pl

F = TypeVar("F", bound=Callable[..., object])


class Registry(Generic[F]):
    """Name -> rule function, with registration by decorator."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is registered twice")
            self._items[name] = fn
            return fn

        return deco

    def __getitem__(self, name: str) -> F:
        self._load()
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(self._items)

    def names(self) -> list[str]:
        self._load()
        return list(self._items)

    @staticmethod
    def _load() -> None:
        # The rule modules register on import; import them on first use.
        import harness.compose.rules  # noqa: F401


#: A rule: (candidate rows, bucket or field-set spec) -> rows.
Rule = Callable[["pl.DataFrame", Any], "pl.DataFrame"]

#: Candidate selection per record: bucket.select
SELECTORS: Registry[Rule] = Registry("selector")
#: What failure-pool candidates become: bucket.failures
FAILURE_MODES: Registry[Rule] = Registry("failure mode")
#: How teacher confidence turns into sample weights: fields.confidence
CONFIDENCE_RULES: Registry[Rule] = Registry("confidence rule")
