from __future__ import annotations

import json
from typing import Any

from conveyor.config import json_schema


def _walk(node: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            if key not in ("default", "const", "enum"):
                found.extend(_walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_walk(value, f"{path}/{index}"))
    return found


def test_schema_is_draft_2020_12_json() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["title"] == "conveyor.yml"
    assert json.loads(json.dumps(schema)) == schema


def test_schema_top_level() -> None:
    schema = json_schema()
    assert {"project", "releases", "services", "environments"} <= set(schema["properties"])
    assert set(schema["required"]) == {"project", "services", "environments"}
    assert schema["additionalProperties"] is False
    assert schema["patternProperties"] == {"^x-": {}}


def test_every_object_allows_x_keys() -> None:
    for path, node in _walk(json_schema()):
        if node.get("type") == "object":
            assert node.get("patternProperties", {}).get("^x-") == {}, path


def test_every_property_has_a_description() -> None:
    schema = json_schema()
    for path, node in _walk(schema):
        if node.get("type") == "object" and isinstance(node.get("properties"), dict):
            for name, prop in node["properties"].items():
                # pydantic leaves out a field's description when its model has the same one
                target = schema["$defs"].get(prop.get("$ref", "").removeprefix("#/$defs/"), {})
                assert prop.get("description") or target.get("description"), f"{path}/{name}"


def test_refs_resolve() -> None:
    schema = json_schema()
    for path, node in _walk(schema):
        ref = node.get("$ref")
        if isinstance(ref, str):
            assert ref.startswith("#/$defs/"), path
            assert ref.removeprefix("#/$defs/") in schema["$defs"], path


def test_durations_commands_and_shorthands() -> None:
    defs = json_schema()["$defs"]
    service = defs["ServiceConfig"]["properties"]
    assert service["stop_timeout"]["type"] == "string"
    assert service["stop_timeout"]["pattern"]
    assert service["stop_timeout"]["default"] == "10s"
    assert service["run"]["anyOf"][0]["type"] == "string"
    assert service["run"]["anyOf"][1]["type"] == "array"
    assert {ref["$ref"] for ref in service["health"]["oneOf"]} == {
        "#/$defs/HttpHealth",
        "#/$defs/TcpHealth",
        "#/$defs/CommandHealth",
    }
    strategy = defs["EnvironmentConfig"]["properties"]["strategy"]
    names = ["immediate", "recreate", "rolling", "blue_green", "canary"]
    assert {"type": "string", "enum": names} in strategy["anyOf"]
    for model in ("StrategyConfig", "BlueGreenStrategy", "CanaryStrategy"):
        assert {"$ref": f"#/$defs/{model}"} in strategy["anyOf"]


def test_named_mappings_only_accept_names() -> None:
    services = json_schema()["properties"]["services"]
    assert services["additionalProperties"] is False
    name_patterns = [p for p in services["patternProperties"] if p != "^x-"]
    assert name_patterns == ["^(?!x-)[a-z][a-z0-9-]{0,62}$"]
