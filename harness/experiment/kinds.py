"""Sections whose model is chosen by their ``kind`` from a registry (a ``units:`` entry, the
``student:`` section): what pydantic needs to validate them and to describe them in the JSON
Schema, whatever kinds are registered when either happens."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


def kind_dispatched(name: str, validate: Callable[[Any], Any],
                    models: Callable[[], Mapping[str, type[BaseModel]]]) -> type:
    """A type for a model field that pydantic validates with ``validate`` (which picks the
    registered kind's model at validation time, not a union fixed at import) and describes in
    the JSON Schema as a ``oneOf`` over ``models()`` (kind name -> model) with ``kind`` as the
    discriminator.

    Args:
        name: the type's name (for messages and the loader's location walk).
        validate: raw section -> the validated kind model (raises pydantic errors located
            under the kind, as a tagged union's would).
        models: the registered kinds' models, asked for when a schema is made.
    """

    class Entry:
        @classmethod
        def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler
                                         ) -> core_schema.CoreSchema:
            return core_schema.no_info_plain_validator_function(validate)

        @classmethod
        def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                         handler: GetJsonSchemaHandler) -> JsonSchemaValue:
            choices = {k: m.__pydantic_core_schema__ for k, m in models().items()}
            return handler(core_schema.tagged_union_schema(choices, discriminator="kind"))

    Entry.__name__ = Entry.__qualname__ = name
    return Entry
