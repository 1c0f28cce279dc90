"""Workload and platform files fuzzed (hypothesis, derandomized): whatever a file holds, loading
it gives a checked object or a ConfigError, never another exception.

Each example starts from a bundled workload (workloads/*.toml) or platform (platform/*.toml),
read with tomllib, and changes one to three places in it: a value replaced by any TOML value
(booleans, huge and negative integers, floats with nan and inf, strings with any character,
dates and times, arrays of mixed types, tables, and arrays or inline tables nested thousands
deep), a key deleted, or a key added (known names, any text, and keys TOML allows only quoted:
"", "a.b", "a[b]"). The result is written back as TOML text and loaded the way `rmm-mp run`
loads it (spec.parse + resolve, platform.parse). A ConfigError must name the file and say what
was expected; anything else (an IndexError, a ValueError from int(), a RecursionError, ...) is
the bug this test is for: the command would end with a traceback instead of the usage error.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmm_mp.hw import platform as platforms
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload import spec
from rmm_mp.workload.resolve import resolve

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = [tomllib.loads(p.read_text()) for p in sorted((ROOT / "workloads").glob("*.toml"))]
PLATFORMS = [tomllib.loads(p.read_text()) for p in sorted((ROOT / "platform").glob("*.toml"))]
FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@dataclass(frozen=True)
class Raw:
    """TOML text written as it is (a value nested deeper than a recursive writer could go)."""

    text: str


def _key(name: str) -> str:
    return json.dumps(name)


def _value(v: object) -> str:
    """``v`` as a TOML value: inline tables and arrays, basic strings, ISO dates."""
    if isinstance(v, Raw):
        return v.text
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)        # JSON's escapes are TOML basic-string escapes
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def _is_table_array(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dump(doc: dict[str, Any]) -> str:
    """``doc`` as TOML: its plain values first, then its tables as [name] and its arrays of
    tables as [[name]], whose own values are written inline (so keys have lines to find)."""
    out = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict) and not _is_table_array(v)]
    for k, v in doc.items():
        for table in [v] if isinstance(v, dict) else v if _is_table_array(v) else []:
            out.append(f"[{_key(k)}]" if isinstance(v, dict) else f"[[{_key(k)}]]")
            out += [f"{_key(a)} = {_value(b)}" for a, b in table.items()]
    return "\n".join(out) + "\n"


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=10)
_SCALARS = st.one_of(
    st.booleans(), st.integers(), st.sampled_from([0, 1, -1, 4095, 4096, 4097, 2**64 - 1, 2**64, 10**400]),
    st.floats(), _TEXT,
    st.sampled_from(["", "all", "0-3", "3-1", "4M", "2 MiB", "64 MiB", "sha256", "sha-512", "hello", "ripas-loop",
                     "attest", "host", "fvp", "0x12", "v12", "run", "seeds", "a.s", "a.toml", "\x00", "0-" + "9" * 5000]),
    st.dates(), st.times(), st.datetimes(),
    st.sampled_from([Raw("[" * n + "]" * n) for n in (1, 40, 3000)] + [Raw("{a = " * 3000 + "1" + "}" * 3000)]),
)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=8)
_NEW_KEYS = st.one_of(
    st.sampled_from(["a[b]", "", "a.b", "x[]", "[x]", "a[1]", "x]", "[", '"', "\\", "realm[0]", "a b", "#", "\u00e9"]),
    st.sampled_from(["name", "guest", "recs", "ram", "cpus", "seconds", "activities", "run", "WORK", "base", "size",
                     "keys", "s2sz", "x"]),
    _TEXT)


def _places(node: object, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``node`` (the empty path is the document itself)."""
    found = [at]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        found += _places(v, at + (k,))
    return found


def _at(doc: Any, at: tuple[Any, ...]) -> Any:
    for k in at:
        doc = doc[k]
    return doc


def mutated(data: st.DataObject, bases: list[dict[str, Any]]) -> dict[str, Any]:
    """One of ``bases`` with one to three places changed: a value replaced, a key or element
    deleted, or a key (or element) added to a table (or array)."""
    doc = copy.deepcopy(data.draw(st.sampled_from(bases)))
    for _ in range(data.draw(st.integers(1, 3))):
        places = _places(doc)
        action = data.draw(st.sampled_from(["add", "set", "delete"])) if len(places) > 1 else "add"
        if action == "add":
            target = _at(doc, data.draw(st.sampled_from([p for p in places if isinstance(_at(doc, p), (dict, list))])))
            if isinstance(target, dict):
                target[data.draw(_NEW_KEYS)] = data.draw(_VALUES)
            else:
                target.append(data.draw(_VALUES))
            continue
        at = data.draw(st.sampled_from(places[1:]))
        if action == "delete":
            del _at(doc, at[:-1])[at[-1]]
        else:
            _at(doc, at[:-1])[at[-1]] = data.draw(_VALUES)
    return doc


def _refused_well(exc: ConfigError, source: str) -> None:
    message = str(exc)
    assert message.startswith(source) and ": expected " in message, message


@FIXED
@given(data=st.data())
def test_any_workload_file_loads_or_is_a_config_error(data: st.DataObject, tmp_path_factory: Any) -> None:
    """A bundled workload with one to three places changed at random, written as TOML: loading
    and resolving it for the host platform gives a Workload or a ConfigError naming the file
    and what was expected, never another exception."""
    text = dump(mutated(data, WORKLOADS))
    source = str(tmp_path_factory.getbasetemp() / "fuzz.toml")
    try:
        resolve(spec.parse(text, source))
    except ConfigError as exc:
        _refused_well(exc, source)


@FIXED
@given(data=st.data())
def test_any_platform_file_loads_or_is_a_config_error(data: st.DataObject) -> None:
    """A bundled platform with one to three places changed at random, written as TOML: parsing
    it gives a Platform or a ConfigError naming the file and what was expected, never another
    exception."""
    text = dump(mutated(data, PLATFORMS))
    try:
        platforms.parse(text, "fuzz.toml")
    except ConfigError as exc:
        _refused_well(exc, "fuzz.toml")
