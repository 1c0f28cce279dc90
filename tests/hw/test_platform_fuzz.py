"""Platform files mutated where it hurts (hypothesis, derandomized): a bundled platform's text
with one to three of its lines changed, loaded from a file as `rmm-mp run --platform` and
`rmm-mp platform show` load it, gives a Platform or a ConfigError that names the key the file
holds there (at its line), the value the file gives it and what was expected; never another
exception. A Platform object changed in Python is checked the same way (platform.check).

tests/workload/test_file_fuzz.py fuzzes the parsed document with any TOML value; this file
edits the text, with the values and shapes a platform's checks have edges at: integers at and
around every range bound, negative, past 64 bits and past what int() converts; floats and
booleans where integers go; sizes as strings with every unit; region bases moved onto, into and
just past another region and off the granule; zero sizes; unknown and duplicate keys and
tables; bytes that are not UTF-8; values nested past the parser's recursion.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmm_mp.hw import platform as plat
from rmm_mp.hw.tomlnum import written_float
from rmm_mp.hw.tomlsrc import MISSING, ConfigError, code_lines, key_path_parts, line_key, unquoted_part

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=200,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _inline_regions(text: str) -> str:
    """``text`` with its [[mmio]] and [[secure]] tables written as inline arrays of inline
    tables (``mmio = [{ base = 0x1c090000, size = "64 KiB" }]``) before [dram]: TOML the
    loader accepts, whose regions have no header line."""
    doc = tomllib.loads(text)
    kept = re.sub(r"(?ms)^\[\[(mmio|secure)\]\].*?(?=^\[[a-z])", "", text)
    arrays = "".join(f"{name} = [" + ", ".join(
        "{ " + ", ".join(f"{k} = {hex(v) if isinstance(v, int) else json.dumps(v)}" for k, v in region.items()) + " }"
        for region in doc[name]) + "]\n" for name in ("mmio", "secure") if name in doc)
    return kept.replace("[dram]", arrays + "\n[dram]", 1)


_FILES = [p.read_text() for p in sorted(plat.platform_dir().glob("*.toml"))]
TEXTS = _FILES + [_inline_regions(text) for text in _FILES]
"""The bundled platforms as they are, and with their regions written inline."""

_EDGES = [0, 1, -1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 36, 47, 48, 49, 52, 64, 65, 127, 128, 255, 256, 257, 2047,
          2048, 2049, 4095, 4096, 4097, 1 << 20, (1 << 20) - 4096, 1 << 32, (1 << 32) + 4096, 1 << 48, (1 << 48) - 4096,
          10**9, 10**9 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**64 + 4096, -(2**63), -(2**64), 2**200]
_INTEGERS = st.one_of(st.sampled_from(_EDGES), st.integers(), st.integers(-8, 8).map(lambda k: 0x8000_0000 + k * 2048))
_INT_TEXT = st.one_of(_INTEGERS.map(str), _INTEGERS.filter(lambda n: n >= 0).map(hex),
                      st.just("9" * 5000), st.just("0x" + "f" * 40), st.just("0o777"), st.just("0b1010"))
_SIZE_TEXT = st.builds(lambda n, unit, sep: f'"{n}{sep}{unit}"', st.sampled_from([0, 1, 4, 64, 4095, 4096, 2**64, 10**30]),
                       st.sampled_from(["", "KiB", "MiB", "GiB", "TiB", "KB", "kib", "B"]), st.sampled_from(["", " ", "  "]))
_OTHER_TEXT = st.sampled_from([
    "1.5", "48.0", "0.0", "-0.0", "nan", "inf", "-inf", "1e300", "true", "false", '""', '"x"', '"48"', "'seeds'",
    '"sha-256"', '"sha-512"', '["sha-256", "sha-256"]', '["sha-256", 5]', "[]", "[[]]", "{}", "{ base = 0 }",
    "1979-05-27", "07:32:00", "1979-05-27T07:32:00Z", '"\\u001b[2J"', '"\\u0000"', '"a\\nb"',
    "[" * 3000 + "]" * 3000, "{ a = " * 600 + "1" + " }" * 600, '"tf-a-fvp-sample"', '"seeds"',
])
VALUES = st.one_of(_INT_TEXT, _SIZE_TEXT, _OTHER_TEXT)

_ADDED_LINES = st.sampled_from([
    "bogus = 1", '"" = 1', '"a.b" = 2', '"a[b]" = 3', "base = 0x1000", "size = 4096", "s2sz = 48",
    "name = \"x\"", "[features]", "[dram]", "[[mmio]]", "[[secure]]", "[attestation]", "[features.x]",
    '[[mmio]]\nbase = 0x8000_0000\nsize = "4 KiB"', '[[mmio]]\nbase = 0\nsize = 0',
    '[[secure]]\nbase = 0x8000_0000\nsize = "4 KiB"', '[[secure]]\nbase = 0x8000_1000\nsize = 4096',
    '[[secure]]\nbase = 0x8000_0800\nsize = 4096', 'mmio = [{ base = 0x1000, size = 4096 }]',
    'features.s2sz = 40', '"x\\u00e9" = 1',
])


def _key_lines(text: str) -> list[int]:
    """The 0-based numbers of the lines of ``text`` that set a key."""
    return [i for i, line in enumerate(code_lines(text)) if line_key(line) is not None]


def _mutated(data: st.DataObject) -> bytes:
    """A bundled platform's text with one to three edits: a key's value replaced (or one in an
    inline region), a key line
    deleted or written twice, a line (key, header, region) added after a key line, or bytes
    that are not UTF-8 put into a line."""
    lines = data.draw(st.sampled_from(TEXTS)).split("\n")
    raw = b""
    for _ in range(data.draw(st.sampled_from([1, 1, 1, 2, 3]))):
        text = "\n".join(lines)
        lines = text.split("\n")       # an added region is three lines
        at = data.draw(st.sampled_from(_key_lines(text)))
        action = data.draw(st.sampled_from(["set"] * 6 + ["delete", "twice", "add", "bytes"]))
        line = code_lines(text)[at]
        found = line_key(line)
        assert found is not None
        inner = list(re.finditer(r"(?<=[{,] )[a-z_]+ = ([^,}]+)", line))
        if action == "set" and inner and data.draw(st.booleans()):     # a key of an inline region
            value = data.draw(st.sampled_from(inner)).span(1)
            lines[at] = line[:value[0]] + data.draw(VALUES) + line[value[1]:]
        elif action == "set":
            lines[at] = line[:found[1]] + " " + data.draw(VALUES)
        elif action == "delete":
            del lines[at]
        elif action == "twice":
            lines.insert(at, line)
        elif action == "add":
            lines.insert(at + 1, data.draw(_ADDED_LINES))
        else:
            raw = data.draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"\xef\xbb\xbf"]))
            lines[at] = line[:found[1]] + " " + "\x00RAW\x00"
    data_bytes = "\n".join(lines).encode()
    return data_bytes.replace(b"\x00RAW\x00", raw) if raw else data_bytes


def _value_at(doc: dict[str, Any], key: str) -> object:
    """The value the parsed file gives dotted ``key`` (``mmio[1].base``), or MISSING."""
    node: Any = doc
    for part in key_path_parts(key):
        index = None
        if not part.startswith('"') and part.endswith("]") and "[" in part:
            part, _, rest = part.partition("[")
            index = int(rest[:-1])
        name = unquoted_part(part)
        if not isinstance(node, dict) or name not in node:
            return MISSING
        node = node[name]
        if index is not None:
            if not isinstance(node, list) or index >= len(node):
                return MISSING
            node = node[index]
    return node


def _same(a: object, b: object) -> bool:
    """``a`` is ``b`` as the file gives it: equal and of the same type (48.0 is no 48), nan as nan,
    a float written the same (both read keeping their text: tomlnum.written_float)."""
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return repr(a) == repr(b)
    return type(a) is type(b) and a == b and (not isinstance(a, float) or repr(a) == repr(b))


@FIXED
@given(data=st.data())
def test_a_mutated_platform_file_loads_or_names_the_key_its_value_and_line(data: st.DataObject,
                                                                         tmp_path: Path) -> None:
    """A bundled platform file with one to three lines changed is loaded from disk: it gives a
    Platform, or a ConfigError whose message is 'file[:line]: key = value: expected ...' for a
    key the file holds (or a required one it lacks), with the value the file gives that key
    and, for a key the file holds, the line. A file that is no valid TOML or no UTF-8 is
    refused naming the file and the line (and a key or table defined twice, its key path). Any other exception is a traceback for the user."""
    path = tmp_path / "fuzz.toml"
    path.write_bytes(_mutated(data))
    try:
        plat.load(path)
    except ConfigError as err:
        message = str(err)
        assert message.startswith(f"{path}:") and ": expected " in message, message
        if err.key == "(file)":
            assert err.line is not None, message
            return
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8-sig"), parse_float=written_float)
        except tomllib.TOMLDecodeError:
            # A key or table defined twice: named by its key path, at its line (tomlparse.loads).
            assert "expected each key and table defined once" in message and err.line is not None, message
            return
        value = _value_at(doc, err.key)
        assert f" {err.key} = " in message, message
        if err.value is MISSING:
            assert value is MISSING, message
        elif type(err.value).__name__ != "_Summary":   # a value too long to show (the control block)
            assert _same(err.value, value), (message, value)
        if value is not MISSING:
            assert err.line is not None, message


_FIELD_VALUES = st.one_of(st.sampled_from(_EDGES), st.sampled_from([
    None, 1.5, 48.0, True, False, "", "host", "64 MiB", (), [], ("sha-256",), ["sha-256"], ("md5",), {},
    plat.Region(0, 0), plat.Region(0x8000_0000, 4096), plat.Region(-4096, 4096), plat.Region(0, 2**70),
    (plat.Region(0x8000_0000, 4096),), (None,), (plat.Region(0x1000, 4096), plat.Region(0x1000, 4096)),
]))


@FIXED
@given(data=st.data())
def test_a_changed_platform_object_is_checked_as_its_file_would_be(data: st.DataObject) -> None:
    """A bundled Platform with one field (of itself, its features, attestation or a region)
    replaced by an edge value of any type: platform.check returns it or raises a ConfigError
    from the source "Platform object 'NAME'" naming a key, never another exception
    (Machine.create runs this check before it makes any shared memory)."""
    base = plat.load(data.draw(st.sampled_from(plat.bundled_platforms())))
    value = data.draw(_FIELD_VALUES)
    where = data.draw(st.sampled_from(["platform", "features", "attestation", "dram"]))
    if where == "platform":
        names = [f.name for f in dataclasses.fields(plat.Platform) if f.name not in ("source", "extra")]
        changed = dataclasses.replace(base, **{data.draw(st.sampled_from(names)): value})
    else:
        part = getattr(base, where)
        name = data.draw(st.sampled_from([f.name for f in dataclasses.fields(part)]))
        changed = dataclasses.replace(base, **{where: dataclasses.replace(part, **{name: value})})
    try:
        plat.check(changed)
    except ConfigError as err:
        assert str(err).startswith(f"Platform object {changed.name!r}: {err.key} = "), str(err)
        assert ": expected " in str(err), str(err)
