"""A validator for the subset of JSON Schema (draft 2020-12) that docs/report-schema.json uses
(a test helper, not a test file; rmm-mp takes no jsonschema dependency).

Assertions: type (a name or a list of names), enum, minimum, required, properties,
additionalProperties (true, false or a schema), items (one schema for every item), minItems,
maxItems, anyOf, oneOf.
Annotations, which validate nothing: $schema, title, description. Any other keyword is an
error (``keywords_used`` lists what a schema uses), so a schema cannot quietly rely on a keyword
this validator ignores.

Types follow JSON, not Python: a bool is neither an integer nor a number, and an integer is a
number.
"""

from __future__ import annotations

from typing import Any, Iterator

ASSERTIONS = frozenset({"type", "enum", "minimum", "required", "properties", "additionalProperties", "items",
                        "minItems", "maxItems", "anyOf", "oneOf"})
ANNOTATIONS = frozenset({"$schema", "title", "description"})
SUPPORTED = ASSERTIONS | ANNOTATIONS
TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


def is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        whole = isinstance(value, float) and value.is_integer()
        return (isinstance(value, int) and not isinstance(value, bool)) or whole
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"type = {name!r}: expected one of {TYPES}")


def _subschemas(schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from schema.get("properties", {}).values()
    if isinstance(schema.get("additionalProperties"), dict):
        yield schema["additionalProperties"]
    if "items" in schema:
        yield schema["items"]
    yield from schema.get("anyOf", ())
    yield from schema.get("oneOf", ())


def keywords_used(schema: dict[str, Any]) -> set[str]:
    """Every keyword of ``schema`` and its subschemas (property names are not keywords)."""
    found = set(schema)
    for sub in _subschemas(schema):
        found |= keywords_used(sub)
    return found


def errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Why ``value`` does not match ``schema`` (empty when it does); each error names its JSON path."""
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise ValueError(f"{path}: schema keywords {sorted(unknown)} are outside the supported subset")
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(is_type(value, n) for n in names):
            return [f"{path}: {value!r:.60} is not of type {' or '.join(names)}"]
    out: list[str] = []
    if "enum" in schema and not any(value == e and type(value) is type(e) for e in schema["enum"]):
        out.append(f"{path}: {value!r:.60} is not one of {schema['enum']}")
    if "minimum" in schema and is_type(value, "number") and value < schema["minimum"]:
        out.append(f"{path}: {value!r} is below the minimum {schema['minimum']}")
    if isinstance(value, dict):
        out += _object_errors(value, schema, path)
    if isinstance(value, list) and len(value) < schema.get("minItems", 0):
        out.append(f"{path}: {len(value)} items, fewer than minItems {schema['minItems']}")
    if isinstance(value, list) and "maxItems" in schema and len(value) > schema["maxItems"]:
        out.append(f"{path}: {len(value)} items, more than maxItems {schema['maxItems']}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            out += errors(item, schema["items"], f"{path}[{n}]")
    if "anyOf" in schema and all(errors(value, s, path) for s in schema["anyOf"]):
        out.append(f"{path}: {value!r:.60} matches none of the anyOf schemas")
    if "oneOf" in schema:
        matches = sum(not errors(value, s, path) for s in schema["oneOf"])
        if matches != 1:
            out.append(f"{path}: {value!r:.60} matches {matches} of the oneOf schemas, not exactly one")
    return out


def _object_errors(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[str]:
    out = [f"{path}: required property {name!r} is missing" for name in schema.get("required", ()) if name not in value]
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            out += errors(item, properties[name], f"{path}.{name}")
        elif extra is False:
            out.append(f"{path}: property {name!r} is not allowed")
        elif isinstance(extra, dict):
            out += errors(item, extra, f"{path}.{name}")
    return out
