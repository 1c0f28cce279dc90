"""The small JSON Schema validator of tests/stats/schema_subset.py, and docs/report-schema.json's
use of only what it supports.

Scenarios: each supported keyword accepts a matching value and rejects a wrong one with the
path named (type with JSON's idea of integers and booleans, enum, minimum, required,
properties, additionalProperties false and as a schema, items, anyOf, oneOf); an unsupported
keyword is refused rather than ignored; the report schema uses only the subset, describes every
property, and rejects documents broken in the ways a renderer could break them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schema_subset import SUPPORTED, errors, keywords_used

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "report-schema.json"


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.mark.parametrize(("value", "schema", "ok"), [
    (3, {"type": "integer"}, True),
    (3.0, {"type": "integer"}, True),
    (3.5, {"type": "integer"}, False),
    (True, {"type": "integer"}, False),
    (True, {"type": "number"}, False),
    (2, {"type": "number"}, True),
    (None, {"type": ["integer", "null"]}, True),
    ("x", {"type": ["integer", "null"]}, False),
    ([], {"type": "object"}, False),
    ({}, {"type": "array"}, False),
    ("all", {"enum": ["all"]}, True),
    ("any", {"enum": ["all"]}, False),
    (1, {"enum": [True]}, False),
    (0, {"type": "integer", "minimum": 0}, True),
    (-1, {"type": "integer", "minimum": 0}, False),
    ({"a": 1}, {"type": "object", "required": ["a", "b"]}, False),
    ({"a": 1, "b": 2}, {"type": "object", "required": ["a", "b"]}, True),
    ({"a": "1"}, {"type": "object", "properties": {"a": {"type": "integer"}}}, False),
    ({"z": 1}, {"type": "object", "properties": {}, "additionalProperties": False}, False),
    ({"z": 1}, {"type": "object", "properties": {}}, True),
    ({"z": "1"}, {"type": "object", "additionalProperties": {"type": "integer"}}, False),
    ({"z": 1}, {"type": "object", "additionalProperties": {"type": "integer"}}, True),
    ([1, 2, "3"], {"type": "array", "items": {"type": "integer"}}, False),
    ([1, 2, 3], {"type": "array", "items": {"type": "integer"}}, True),
    (3, {"anyOf": [{"type": "integer"}, {"enum": ["all"]}]}, True),
    ("all", {"anyOf": [{"type": "integer"}, {"enum": ["all"]}]}, True),
    ("some", {"anyOf": [{"type": "integer"}, {"enum": ["all"]}]}, False),
    (3, {"oneOf": [{"type": "integer"}, {"type": "number"}]}, False),
    ("x", {"oneOf": [{"type": "integer"}, {"type": "string"}]}, True),
    (5, {"description": "anything", "title": "t"}, True),
])
def test_each_keyword_accepts_and_rejects(value: Any, schema: dict[str, Any], ok: bool) -> None:
    """A value that matches gives no error; one that does not gives at least one."""
    assert (errors(value, schema) == []) is ok, errors(value, schema)


def test_errors_name_the_path_of_the_offending_value() -> None:
    """A nested error says where it is, so a failing report test points at the field."""
    schema = {"type": "object", "properties": {"rows": {"type": "array", "items": {
        "type": "object", "properties": {"cpu": {"type": "integer", "minimum": 0}}}}}}
    assert errors({"rows": [{"cpu": 0}, {"cpu": -2}]}, schema) == ["$.rows[1].cpu: -2 is below the minimum 0"]


def test_an_unsupported_keyword_is_refused_not_ignored() -> None:
    """pattern (or any keyword outside the subset) raises: a schema cannot rely on a check that never runs."""
    with pytest.raises(ValueError, match="pattern"):
        errors("abc", {"type": "string", "pattern": "^x"})


def test_report_schema_uses_only_the_subset_and_describes_every_property() -> None:
    """docs/report-schema.json: draft 2020-12, only supported keywords, every property described."""
    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    used = keywords_used(schema)
    assert used <= SUPPORTED, used - SUPPORTED
    assert {"type", "required", "properties", "additionalProperties", "items", "enum", "minimum", "anyOf"} <= used

    def walk(node: dict[str, Any], path: str) -> None:
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{path}.{name} has no description"
            walk(sub, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], f"{path}[{key}]")
        for sub in node.get("anyOf", ()):
            walk(sub, path)

    walk(schema, "$")


def test_report_schema_says_percentiles_are_bucket_upper_edges() -> None:
    """A reader of the JSON alone learns that p50 is not the exact median: it said "median in
    ns" while the figure is the upper edge of the bucket holding it (docs/latency.md)."""
    record = _schema()["properties"]["latency"]["items"]["properties"]
    for field in ("p50", "p90", "p99", "p999"):
        description = record[field]["description"]
        assert "upper edge" in description and "nearest-rank" in description, (field, description)


def test_report_schema_rejects_broken_documents() -> None:
    """The schema is strict where it matters: a missing field, an unknown field, a bad cpu value,
    a wrong kind, a negative count and a missing schema tag are each reported."""
    schema = _schema()
    record = {"cpu": 0, "call": "RMI_VERSION", "kind": "RMI", "count": 1, "errors": 0, "p50": 1, "p90": 1,
              "p99": 1, "p999": 1, "max": 1, "mean": 1, "el3_mean": 0, "rmm_mean": 1, "lock_wait_mean": 0}
    latency = schema["properties"]["latency"]
    assert errors([record], latency) == []
    for broken, why in [({**record, "cpu": "cpu0"}, "anyOf"), ({**record, "kind": "SMC"}, "not one of"),
                        ({**record, "count": -1}, "minimum"), ({**record, "extra": 1}, "not allowed")]:
        found = errors([broken], latency)
        assert found and why in found[0], (broken, found)
    missing = dict(record)
    del missing["p999"]
    assert errors([missing], latency) == ["$[0]: required property 'p999' is missing"]
    assert any("'schema'" in e for e in errors({}, schema))
