"""The JSON Schema of `conveyor.yml`, for editors and `conveyor config schema`."""

from __future__ import annotations

from typing import Any

from conveyor.config.models import Config

__all__ = ["SCHEMA_DIALECT", "json_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_EXTENSION = "^x-"
# Keys whose values are data (defaults, enums), not subschemas.
_DATA_KEYS = {"default", "const", "enum", "examples"}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the whole file.

    Every mapping accepts `x-...` keys, which Conveyor ignores. Mappings keyed
    by name (services, environments, overrides) accept no other keys than names.
    """
    schema = Config.model_json_schema(mode="validation")
    _allow_extensions(schema)
    return {
        "$schema": SCHEMA_DIALECT,
        **schema,
        "title": "conveyor.yml",
    }


def _allow_extensions(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _allow_extensions(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "object":
        patterns = node.setdefault("patternProperties", {})
        if patterns and "properties" not in node:
            # A mapping keyed by name: names that do not match are mistakes.
            node.setdefault("additionalProperties", False)
        patterns[_EXTENSION] = {}
    for key, value in node.items():
        if key in _DATA_KEYS:
            continue
        if key in ("properties", "patternProperties", "$defs") and isinstance(value, dict):
            for subschema in value.values():
                _allow_extensions(subschema)
        else:
            _allow_extensions(value)
