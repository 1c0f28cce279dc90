"""Workload files: every kind of mistake is refused before anything exists, with file:line, the
key, the value and what was expected; command-line options are checked the same way; the
resolved workload has every default filled in (rmm_mp.workload.spec / resolve / locate).

Each bad-file test writes a small file, loads and resolves it in this process, and asserts the
ConfigError's line, key, value and expectation, and that this process created no shared memory.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.hw import segment
from rmm_mp.hw.tomlsrc import MISSING, ConfigError
from rmm_mp.workload import spec
from rmm_mp.workload.locate import locate
from rmm_mp.workload.resolve import Workload, _apportion, _memory, resolve

ROOT = Path(__file__).resolve().parents[2]
OK_REALM = '[[realm]]\nname = "a"\nguest = "hello"\n'
HEAD = 'seconds = 1\nactivities = { run = 1 }\n'


def segments() -> list[str]:
    return [m.prefix for m in segment.list_machines() if m.creator_pid == os.getpid()]


def load(tmp_path: Path, text: str, name: str = "w.toml", **options: object) -> Workload:
    path = tmp_path / name
    path.write_text(text)
    return resolve(spec.load(str(path)), **options)  # type: ignore[arg-type]


def refused(tmp_path: Path, text: str, line: int | None, key: str, value: object, expected: str,
            **options: object) -> ConfigError:
    """The file is refused with exactly this line, key and value, an expectation containing
    ``expected``, a message starting with file:line, and no shared memory made."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **options)
    err = info.value
    assert (err.line, err.key, err.value) == (line, key, value), str(err)
    assert expected in err.expected, str(err)
    where = f"{tmp_path / 'w.toml'}:{line}" if line else str(tmp_path / "w.toml")
    assert str(err).startswith(f"{where}: {key} = "), str(err)
    assert segments() == []
    return err


# -- keys and types ------------------------------------------------------------------------------

def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    """A misspelt realm key is refused at its line, naming the close match and the known keys."""
    refused(tmp_path, HEAD + OK_REALM + "rec = 2\n", 6, "realm[0].rec", 2, 'no such key (did you mean "recs"?)')


def test_unknown_top_level_key(tmp_path: Path) -> None:
    """An unknown top-level key is refused even when nothing is close to it."""
    err = refused(tmp_path, HEAD + "colour = 3\n", 3, "colour", 3, "no such key; keys here: description")
    assert "did you mean" not in err.expected


@pytest.mark.parametrize("text, line, key, value", [
    (HEAD + '"" = 1\n', 3, '""', 1),
    (HEAD + '"a.b" = 1\n', 3, '"a.b"', 1),
    (HEAD + '"x]" = 1\n', 3, '"x]"', 1),
    (HEAD + '"é" = 1\n', 3, '"é"', 1),
    (HEAD + OK_REALM + '"rec s" = 2\n', 6, 'realm[0]."rec s"', 2),
    (HEAD + OK_REALM + '"x[y]" = 2\n', 6, 'realm[0]."x[y]"', 2),
    ('seconds = 1\nactivities = { run = 1, "run.x" = 1 }\n' + OK_REALM, 2, 'activities."run.x"', 1),
    (HEAD + '[[group]]\ncpus = [0]\nactivities = { run = 1 }\n"" = 3\n' + OK_REALM, 6, 'group[0].""', 3),
    (HEAD + '[[realm]]\nname = "a"\nguest = "ripas-loop"\nconstants = { "W.X" = 1 }\n', 6,
     'realm[0].constants."W.X"', 1),
], ids=["empty", "dot", "bracket", "non-ascii", "space-in-realm", "brackets-in-realm", "dot-in-activities",
        "empty-in-group", "dot-in-constants"])
def test_unknown_key_that_is_not_a_bare_key(tmp_path: Path, text: str, line: int, key: str, value: object) -> None:
    """An unknown key TOML only allows quoted (the empty key, one holding a dot, brackets or a
    letter outside ASCII) is refused at its line and named quoted, as the file writes it, so
    that it reads as the one key it is. The empty top-level key used to end the command with an
    IndexError from finding its line, and "a.b" read as key b of a table a."""
    refused(tmp_path, text, line, key, value, "no such key" if "constants" not in key and "activities" not in key
            else "")


@pytest.mark.parametrize("text, line, key, raw", [
    (HEAD + '"x\\u202Ey" = 1\n', 3, '"x\\u202Ey"', "x\u202ey"),
    (HEAD + OK_REALM + '"a\\u200Bb\\u007F" = 2\n', 6, 'realm[0]."a\\u200Bb\\u007F"', "a\u200bb\x7f"),
    (HEAD + '[[realm]]\nname = "a"\nguest = "hello"\nconstants = { "\\u009B2J" = 1 }\n', 6,
     'realm[0].constants."\\u009B2J"', "\x9b2J"),
    (HEAD + '"\\U000E0001" = 1\n', 3, '"\\U000E0001"', "\U000e0001"),
], ids=["bidi", "zero-width-and-del", "c1-csi-in-constants", "astral-tag"])
def test_a_key_with_a_character_that_is_not_printable_is_named_escaped(tmp_path: Path, text: str, line: int,
                                                                        key: str, raw: str) -> None:
    """An unknown quoted key holding a bidi override, a zero-width space, DEL, a C1 control
    (U+009B, a terminal's CSI) or an unassigned tag character is named at its line with TOML's
    escapes, as a value is, so the message is printable and the key reads back; the key path
    printed them raw (it quoted keys with json.dumps, which escapes only C0 controls)."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'w.toml'}:{line}: {key} = "), message
    assert message.isprintable(), message
    quoted = key.rsplit(".", 1)[-1] if key.startswith("realm") else key
    assert tomllib.loads(f"{quoted} = 0") == {raw: 0}
    assert segments() == []


@pytest.mark.parametrize("line, shown", [
    ("seconds = 1979-05-27", "seconds = 1979-05-27:"),
    ("seconds = 07:32:00", "seconds = 07:32:00:"),
    ("seconds = 1979-05-27T07:32:00Z", "seconds = 1979-05-27T07:32:00+00:00:"),
    ("seconds = [true, 1.5, 1979-05-27]", "seconds = [true, 1.5, 1979-05-27]:"),
    ('seconds = { a = false, "b c" = [] }', 'seconds = { a = false, "b c" = [] }:'),
], ids=["date", "time", "datetime", "array", "table"])
def test_value_is_shown_as_toml_writes_it(tmp_path: Path, line: str, shown: str) -> None:
    """The refused value is shown as the file writes it, also inside an array or a table: a
    boolean as true (not Python's True), a date or time in ISO form (not
    datetime.date(1979, 5, 27)), a table as { key = value } with a key that needs quotes quoted."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\nactivities = { run = 1 }\n" + OK_REALM)
    assert f"w.toml:1: {shown} expected a duration in seconds" in str(info.value), str(info.value)
    assert segments() == []


@pytest.mark.parametrize("line, shown", [
    ("seconds = 1e-400", "seconds = 1e-400:"),
    ("seconds = -1e-400  # 1e-400 reads as 0.0", "seconds = -1e-400:"),
    ("seconds = 1E4_00", "seconds = 1E4_00:"),
    ("seconds = -0.000_000_000_000_000_000_01", "seconds = -0.000_000_000_000_000_000_01:"),
    ("seconds = 0.0", "seconds = 0.0:"),
    ("seconds = 1e-316", "seconds = 1e-316:"),       # a subnormal: no time at all to a run (MIN_SECONDS)
], ids=["underflow", "negative-underflow-and-a-comment", "overflow", "underscores", "zero-as-written", "subnormal"])
def test_a_float_is_shown_as_its_line_writes_it(tmp_path: Path, line: str, shown: str) -> None:
    """A refused float is shown as the file writes it, not as tomllib read it: `seconds =
    1e-400` was refused as `seconds = 0.0` (the parsed value, greater than 0 as written),
    -1e-400 as -0.0, 1E4_00 as inf and -0.000_000_000_000_000_000_01 as -1e-20
    (tomlnum.TypedFloat; a number in the line's comment is not taken for it)."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\nactivities = { run = 1 }\n" + OK_REALM)
    assert f"w.toml:1: {shown} expected a duration in seconds" in str(info.value), str(info.value)


@pytest.mark.parametrize("text, line, shown", [
    ("seconds = 1\nactivities = { runn = 1e-400, run = 0.0 }\n", 2, "activities.runn = 1e-400: expected a known"),
    ("seconds = 1\nactivities = { run = 1e400, attest = 1e999 }\n", 2, "activities.run = 1e400: expected a weight"),
    ("seconds = 1\nactivities = { run = 1e-400, attest = 0.0 }\n", 2,
     "activities = { run = 1e-400, attest = 0.0 }: expected at least one weight"),
    ("seconds = [1e-400, 0.0]\nactivities = { run = 1 }\n", 1, "seconds = [1e-400, 0.0]: expected a duration"),
    ("seconds = 1\nactivities = { runn = 1e-400, at = 00:00:00 }\n", 2, "activities.runn = 1e-400: expected a known"),
    ("seconds = 1\nactivities = { runn = 1e-400, at = 1979-05-27T00:00:00 }\n", 2,
     "activities.runn = 1e-400: expected a known"),
    ("seconds = 1\nactivities = { run = 1, runn = [\n  1e-400,\n  0.0,\n] }\n", 2,
     "activities.runn = [1e-400, 0.0]: expected a known"),
    ("seconds = [\n  1e-400,\n]\nactivities = { run = 1 }\n", 1, "seconds = [1e-400]: expected a duration"),
], ids=["table-two-readings", "table-two-writings", "whole-table", "array-two-readings", "beside-a-time",
        "beside-a-date-time", "multi-line-array-in-a-table", "multi-line-array"])
def test_a_float_is_shown_as_written_wherever_it_is(tmp_path: Path, text: str, line: int, shown: str) -> None:
    """A float is shown as the file writes it at any depth, as tomllib read it (its parse_float
    keeps each literal's text): in an inline table or an array, also where two numbers of the
    line read as the same float (1e-400 and 0.0, 1e400 and 1e999), beside a time whose 00 reads
    as 0.0, and in a multi-line array. Found again by rescanning the key's line, each was shown
    as the float read (0.0, inf), as was every float inside a refused array or table."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text + OK_REALM)
    assert f"w.toml:{line}: {shown}" in str(info.value), str(info.value)


def test_accepted_floats_are_plain_floats(tmp_path: Path) -> None:
    """Every float of the file is read keeping its text (tomlnum.TypedFloat, for errors), and
    each one accepted is stored as a plain float: the workload resolved and shown, and the
    reports, see 1.5 for `1.50`, not the text, at any depth (weights, phases, groups)."""
    import dataclasses

    def floats(value: object) -> list[object]:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return [f for field in dataclasses.fields(value) for f in floats(getattr(value, field.name))]
        if isinstance(value, (tuple, list, frozenset)):
            return [f for item in value for f in floats(item)]
        if isinstance(value, dict):
            return [f for item in value.values() for f in floats(item)]
        return [value] if isinstance(value, float) else []

    text = ("activities = { run = 1.50, attest = 0.0, rtt-churn = 2_5.0e-1 }\n"
            "[[group]]\ncpus = '0-1'\nactivities = { run = 3.0e0, rtt-churn = 1E-2 }\n"
            "[[group]]\ncpus = '2-3'\nactivities = { run = +0.5 }\n"
            "[[phase]]\nname = 'a'\nseconds = 1.50\n[[phase]]\nname = 'b'\nseconds = 2.000_5\n" + OK_REALM)
    path = tmp_path / "w.toml"
    path.write_text(text)
    file = spec.load(str(path))
    found = floats(file) + floats(resolve(file))
    assert {1.5, 2.5, 3.0, 0.01, 0.5, 2.0005} <= set(found), found
    assert all(type(f) is float for f in found), [(f, type(f)) for f in found if type(f) is not float]


@pytest.mark.parametrize("line, shown", [
    ("seconds = '5'", "'5'"),
    ("seconds = 'a\\b'", "'a\\b'"),
    ('seconds = "it\'s"', '"it\'s"'),
    ("seconds = \"it's \\\"x\\\"\"", '"it\'s \\"x\\""'),
    ('seconds = "a\\u001bb\\tc"', '"a\\u001Bb\\tc"'),
    ('seconds = "x\\u202ey"', '"x\\u202Ey"'),
    ('seconds = ["\\u0007"]', '["\\u0007"]'),
], ids=["plain", "backslash", "single-quote", "both-quotes", "escape", "bidi", "in-array"])
def test_string_is_shown_as_toml_that_reads_back(tmp_path: Path, line: str, shown: str) -> None:
    """A refused string is shown as a TOML string that reads back as the same value: in single
    quotes when TOML's literal string can hold it (a backslash stays single, not Python's
    doubled one), else in double quotes with TOML's escapes, and a control or bidi character
    as an escape, never raw, so the message cannot act on the terminal that prints it."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\nactivities = { run = 1 }\n" + OK_REALM)
    message = str(info.value)
    assert f"w.toml:1: seconds = {shown}: expected a duration in seconds" in message, message
    assert message.isprintable(), message
    value = tomllib.loads(line)["seconds"]
    assert tomllib.loads(f"v = {shown}")["v"] == value
    assert segments() == []


@pytest.mark.parametrize("escaped, index, code", [
    ("evil\\u001b[2Jred", 5, "001B"),
    ("two\\nlines", 4, "000A"),
    ("tab\\there", 4, "0009"),
    ("abc\\u202edcb", 4, "202E"),
    ("zero\\u200bwidth", 5, "200B"),
], ids=["escape-sequence", "newline", "tab", "bidi-override", "zero-width"])
def test_description_with_a_character_that_is_not_printable_is_refused(tmp_path: Path, escaped: str, index: int,
                                                                        code: str) -> None:
    """A description is printed as it is on a line of `rmm-mp workloads list`: one holding a
    control character (an ESC starting a terminal sequence, a newline, a tab), a bidi override
    or a zero-width character is refused at its line, naming the character; the message
    itself shows it escaped. (It was accepted and printed raw.)"""
    text = f'description = "{escaped}"\n' + HEAD + OK_REALM
    value = tomllib.loads(text)["description"]
    err = refused(tmp_path, text, 1, "description", value, f"one line of printable text (character {index}, "
                                                            f"U+{code}, is not printable)")
    assert str(err).isprintable(), str(err)


def test_description_of_printable_text_is_accepted(tmp_path: Path) -> None:
    """Printable text in any script, with quotes and backslashes, is a description."""
    w = load(tmp_path, 'description = "Größe \\\\ \'quoted\' \\"x\\" 日本"\n' + HEAD + OK_REALM)
    assert w.file.description == "Größe \\ 'quoted' \"x\" 日本"


@pytest.mark.parametrize("escaped, text", [
    ("10\\u00a0000 calls", "10\u00a0000 calls"),
    ("débit\\u202f: 5", "débit\u202f: 5"),
    ("日本\\u3000語", "日本\u3000語"),
], ids=["no-break-space", "narrow-no-break-space", "ideographic-space"])
def test_description_with_a_space_of_another_width_is_accepted(tmp_path: Path, escaped: str, text: str) -> None:
    """A no-break space, a narrow one or an ideographic space (Unicode Zs, which Python's
    isprintable counts as separators) is shown as a space: text, not a character that acts on
    the terminal, so the description is accepted (it was refused as 'not printable')."""
    w = load(tmp_path, f'description = "{escaped}"\n' + HEAD + OK_REALM)
    assert w.file.description == text


def test_platform_path_not_found_says_where_it_was_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """platform = "mine.toml" is read next to the workload file, not in the working directory:
    when it is not there, the error says where it looked (it said only "no such file", while
    a mine.toml in the working directory made that read as wrong)."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "mine.toml").write_text((ROOT / "platform" / "host.toml").read_text())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "sub", 'platform = "mine.toml"\n' + HEAD + OK_REALM)
    err = info.value
    assert (err.line, err.key, err.value) == (1, "platform", "mine.toml"), str(err)
    assert err.expected == f"a regular platform file that exists (looked for {tmp_path / 'sub' / 'mine.toml'}: no such file)"
    assert segments() == []


def test_a_platform_file_with_a_bundled_name_names_the_bundled_platform(tmp_path: Path) -> None:
    """platform = "fvp.toml" with no such file beside the workload: the error says where it
    looked and that the bundled platform is written `fvp` (it said "no such file" alone)."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, 'platform = "fvp.toml"\n' + HEAD + OK_REALM)
    assert info.value.expected == (f"a regular platform file that exists (looked for {tmp_path / 'fvp.toml'}: no such "
                                   "file; for the bundled platform, write fvp)"), str(info.value)


def test_a_platform_path_with_a_directory_has_no_bundled_hint(tmp_path: Path) -> None:
    """platform = "sub/fvp.toml" with no such file: "no such file" alone. The hint is for a
    bare name written as a file; a path with its directory is not one."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, 'platform = "sub/fvp.toml"\n' + HEAD + OK_REALM)
    assert info.value.expected == (f"a regular platform file that exists (looked for {tmp_path / 'sub' / 'fvp.toml'}: "
                                   "no such file)"), str(info.value)


def test_missing_required_key(tmp_path: Path) -> None:
    """A realm without a guest is refused at the realm's header line."""
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\n', 3, "realm[0].guest", MISSING, "the key is required")


def test_wrong_type(tmp_path: Path) -> None:
    """seconds given as a string."""
    refused(tmp_path, 'seconds = "1"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "1", "a duration in seconds")


@pytest.mark.parametrize("text, line, key, value, number", [
    ('seconds = "5s"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "5s", "5"),
    ('seconds = "500ms"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "500ms", "0.5"),
    ('seconds = "5.s"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "5.s", "5"),
    # As TOML writes it: "write .5" led to a file TOML refuses.
    ('seconds = ".5s"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", ".5s", "0.5"),
    # The exact product, in decimals as TOML writes them: 0.1 min is 6 s (not 6.000000000000001),
    # 0.5 ms 0.0005 and 1 us 0.000001 (not 1e-06).
    ('seconds = "0.1min"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "0.1min", "6"),
    ('seconds = "1us"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "1us", "0.000001"),
    ('activities = { run = 1 }\n' + OK_REALM + '[[phase]]\nname = "p"\nseconds = "2 min"\n', 7, "phase[0].seconds",
     "2 min", "120"),
    # A number with an exponent, as TOML and the command line take one: the unit pattern took
    # none, and "1e2min" had no hint. Written in decimals ("1.e2s": TOML has no "1.e2").
    ('seconds = "1e2min"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "1e2min", "6000"),
    ('seconds = "1.e2s"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "1.e2s", "100"),
    ('seconds = "2.5E-3 min"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "2.5E-3 min", "0.15"),
])
def test_seconds_with_a_unit_names_the_number_to_write(tmp_path: Path, text: str, line: int, key: str, value: str,
                                                        number: str) -> None:
    """`seconds = "5s"` (a run's or a phase's) is refused naming the number to write, as
    `--seconds 5s` is: the file said only "expected a duration in seconds" and left the unit
    to guess."""
    err = refused(tmp_path, text, line, key, value, "a duration in seconds")
    assert err.expected.endswith(f" (without a unit: write {number})"), str(err)


@pytest.mark.parametrize("value, number", [
    ("200h", "720000"), ("0us", "0"), ("1000000 minutes", "60000000"), ("1e5min", "6000000"),
    # Just past a bound: the number is exact, not rounded to 12 digits onto the bound itself
    # ("it is 604800, outside the range" named a number the key takes).
    ("10080.0000000001min", "604800.000000006"), ("0.00099999999999999us", "0.00000000099999999999999")])
def test_seconds_with_a_unit_outside_the_range_names_no_number_to_write(tmp_path: Path, value: str,
                                                                        number: str) -> None:
    """`seconds = "200h"` is 720,000 seconds, past the week a run may last: the hint said
    "write 720000" beside "at most 604,800", a number refused in turn. It says the number is
    outside the range, as `--seconds 200h` does."""
    err = refused(tmp_path, f'seconds = "{value}"\nactivities = {{ run = 1 }}\n' + OK_REALM, 1, "seconds", value,
                  "a duration in seconds")
    assert err.expected.endswith(f" (without a unit it is {number}, outside the range)"), str(err)


@pytest.mark.parametrize("value", ["0.00000000000000000000000000000000000001us", "9" * 38 + "h", "1e999999999min",
                                   "1e-41s"],
                         ids=["40-characters-of-microseconds", "38-nines-of-hours", "exponent-of-a-billion",
                              "exponent-past-40-places"])
def test_a_unit_hint_names_no_number_of_more_than_40_characters(tmp_path: Path, value: str) -> None:
    """A number typed in 40 characters or fewer may be longer in seconds (6 more places for
    microseconds, 4 more digits for hours): the hint named a 46- and a 42-character number,
    where none of more than 40 is named. No hint; the refusal is the same."""
    err = refused(tmp_path, f'seconds = "{value}"\nactivities = {{ run = 1 }}\n' + OK_REALM, 1, "seconds", value,
                  "a duration in seconds")
    assert err.expected.endswith("at most 604,800"), str(err)


@pytest.mark.parametrize("text, line, key, value, hint", [
    ('seconds = "5"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "5", "(a number, not a string: write 5)"),
    ('seconds = ".5"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", ".5",
     "(a number, not a string: write 0.5)"),
    ('seconds = "1e6"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "1e6",
     "(as a number it is 1000000, outside the range)"),
    ('activities = { run = 1 }\n' + OK_REALM + '[[phase]]\nname = "p"\nseconds = "2"\n', 7, "phase[0].seconds",
     "2", "(a number, not a string: write 2)"),
    ('seconds = "-0"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "-0",
     "(as a number it is 0, outside the range)"),
    # Written as more than 0 and read as 0: "as a number it is 0" named a number nobody wrote.
    ('seconds = "1e-400"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "1e-400",
     "(as a number it is too small: it underflows to 0, outside the range)"),
    ('seconds = "1e400"\nactivities = { run = 1 }\n' + OK_REALM, 1, "seconds", "1e400",
     "(as a number it is too large: it overflows, past about 1.8e308)"),
])
def test_seconds_as_a_string_number_names_the_number_to_write(tmp_path: Path, text: str, line: int, key: str,
                                                              value: str, hint: str) -> None:
    """`seconds = "5"` had no hint while `seconds = "5s"` named the number to write: it names it
    too, as TOML writes it (".5" is no TOML number), or says it is outside the range."""
    err = refused(tmp_path, text, line, key, value, "a duration in seconds")
    assert err.expected.endswith(f" {hint}"), str(err)


@pytest.mark.parametrize("value", ["5 parsecs", "5M", "5MS"])
def test_seconds_as_a_string_without_a_unit_has_no_unit_hint(tmp_path: Path, value: str) -> None:
    """A string that is no time with a unit gets no hint: there is no number to name; nor does a
    unit whose capitals mean something else (M mega, MS a megasecond), as on the command line."""
    err = refused(tmp_path, f'seconds = "{value}"\nactivities = {{ run = 1 }}\n' + OK_REALM, 1, "seconds",
                  value, "a duration in seconds")
    assert "without a unit" not in str(err), str(err)


def test_out_of_range(tmp_path: Path) -> None:
    """More RECs than the run queue runs per realm (32)."""
    refused(tmp_path, HEAD + OK_REALM + "recs = 33\n", 6, "realm[0].recs", 33, "at most 32), an integer in 1..32")


@pytest.mark.parametrize("ram, expected", [("4 megabytes", "a size: bytes as an integer, or a string"),
                                           (5000, "a multiple of 4 KiB"),
                                           ("\uff12M", "a size: bytes as an integer, or a string"),
                                           ("1 TiB", "a multiple of 4 KiB from 4 KiB to 1 GiB"),
                                           ("2 PiB", '"2 MiB" (a number and K, M, G or T)')])
def test_bad_size(tmp_path: Path, ram: object, expected: str) -> None:
    """A size string that is not one, and a size that is not a whole number of granules. A digit
    that is not ASCII (fullwidth "\uff12M") is no size either: it was read as "2M". "1 TiB" is a
    size too large (platform files take TiB; it was refused as no size at all, the message not
    saying which units there are), "2 PiB" one in a unit there is not, and the message lists them."""
    shown = f'"{ram}"' if isinstance(ram, str) else ram
    refused(tmp_path, HEAD + OK_REALM + f"ram = {shown}\n", 6, "realm[0].ram", ram, expected)


@pytest.mark.parametrize("ram, hint", [(2, ' (an integer is bytes: "2M" is 2 MiB)'),
                                       (512, ' (an integer is bytes: "512M" is 512 MiB)'), (5000, ""), (2048, "")])
def test_a_size_of_a_few_bytes_says_an_integer_is_bytes(tmp_path: Path, ram: int, hint: str) -> None:
    """`ram = 2`, meant as 2 MiB, said only "expected a multiple of 4 KiB from 4 KiB to 1 GiB",
    leaving its writer to guess that an integer counts bytes. Below 4 KiB the error says so,
    with the string that is that many MiB when such a size is accepted (2048 MiB is past the
    bound: no hint); 5000 bytes, no typo of MiB, has none either."""
    err = refused(tmp_path, HEAD + OK_REALM + f"ram = {ram}\n", 6, "realm[0].ram", ram, "a multiple of 4 KiB")
    assert err.expected == f"a multiple of 4 KiB from 4 KiB to 1 GiB{hint}", str(err)


def test_a_size_string_of_a_few_bytes_without_a_unit_says_so(tmp_path: Path) -> None:
    """`ram = "2"`, a string without a unit, counts bytes as an integer does: it had no hint,
    while `ram = 2` says "2M" is 2 MiB."""
    err = refused(tmp_path, HEAD + OK_REALM + 'ram = "2"\n', 6, "realm[0].ram", "2", "a multiple of 4 KiB")
    assert err.expected == 'a multiple of 4 KiB from 4 KiB to 1 GiB (a number without a unit is bytes: "2M" is 2 MiB)', \
        str(err)


def test_a_boolean_is_shown_as_toml_spells_it(tmp_path: Path) -> None:
    """cpus = true is refused, and the message shows the value as `true`, as it was written, not
    Python's True."""
    err = refused(tmp_path, "cpus = true\n" + HEAD + OK_REALM, 1, "cpus", True, "the number of CPU processes")
    assert "cpus = true: expected" in str(err)


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    """An unclosed inline table: tomllib's reason, at the line where the table opens."""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, "seconds = 1\nactivities = { run = 1\n")
    err = info.value
    assert err.line == 2 and err.key == "(file)" and "unclosed inline table" in str(err.value)
    assert str(err).startswith(f"{tmp_path / 'w.toml'}:2: ")
    assert segments() == []


def test_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    """TOML is UTF-8: a Latin-1 byte is refused with its line and column (in characters: the
    "é" before it is one), not a decoder's traceback; nothing is created."""
    path = tmp_path / "w.toml"
    path.write_bytes(HEAD.encode() + b'description = "\xc3\xa9\xe9"\n')     # "é" in UTF-8, then in Latin-1
    with pytest.raises(ConfigError) as info:
        spec.load(str(path))
    err = info.value
    assert (err.line, err.key, err.value) == (3, "(file)", "byte 0xe9 at line 3, column 17"), str(err)
    assert str(err) == f"{path}:3: (file) = 'byte 0xe9 at line 3, column 17': expected UTF-8 text (a workload file is UTF-8)"
    assert segments() == []


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Some editors begin UTF-8 files with a byte-order mark; it is not part of the TOML (tomllib
    alone would call it an invalid statement), and line numbers are unchanged."""
    path = tmp_path / "w.toml"
    path.write_bytes(b"\xef\xbb\xbf" + (HEAD + OK_REALM).encode())
    assert [r.name for r in resolve(spec.load(str(path))).realms] == ["a"]
    path.write_bytes(b"\xef\xbb\xbf" + (HEAD + OK_REALM + "recs = 0\n").encode())
    with pytest.raises(ConfigError) as info:
        spec.load(str(path))
    assert (info.value.line, info.value.key) == (6, "realm[0].recs")


# -- guests ---------------------------------------------------------------------------------------

def test_unknown_guest(tmp_path: Path) -> None:
    """A guest name that is no bundled guest nor a .s file: refused at its line, suggesting the close
    bundled name."""
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "helo"\n', 5, "realm[0].guest", "helo",
            'or the path of a .s file (did you mean "hello"?)')


def test_guest_file_missing(tmp_path: Path) -> None:
    """A guest path to a .s file that does not exist: refused at its line."""
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "mine.s"\n', 5, "realm[0].guest", "mine.s",
            "a regular .s file that exists")


def test_a_guest_file_with_a_bundled_name_names_the_bundled_guest(tmp_path: Path) -> None:
    """guest = "ripas-loop.s" with no such file beside the workload: the error adds that the
    bundled guest is written `ripas-loop` (it said "no such file" alone)."""
    err = refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "ripas-loop.s"\n', 5, "realm[0].guest",
                  "ripas-loop.s", "a regular .s file that exists")
    assert err.expected.endswith(": no such file; for the bundled guest, write ripas-loop)"), str(err)


def test_a_guest_file_with_a_bundled_name_in_other_capitals_names_the_bundled_guest(tmp_path: Path) -> None:
    """guest = "Ripas-Loop.s": the hint names the bundled guest as it is written, ripas-loop (a
    name differing only in case had none)."""
    err = refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "Ripas-Loop.s"\n', 5, "realm[0].guest",
                  "Ripas-Loop.s", "a regular .s file that exists")
    assert err.expected.endswith(": no such file; for the bundled guest, write ripas-loop)"), str(err)


def test_a_guest_path_with_a_directory_has_no_bundled_hint(tmp_path: Path) -> None:
    """guest = "sub/ripas-loop.s" with no such file: "no such file" alone, as for a platform path."""
    err = refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "sub/ripas-loop.s"\n', 5, "realm[0].guest",
                  "sub/ripas-loop.s", "a regular .s file that exists")
    assert err.expected.endswith(": no such file)"), str(err)


def test_guest_path_the_system_cannot_look_up(tmp_path: Path) -> None:
    """A guest path with a name longer than the file system allows (NAME_MAX is 255 on Linux):
    os.stat raises ENAMETOOLONG there, which Path.is_file passed on as an OSError traceback."""
    name = "g" * 300 + ".s"
    refused(tmp_path, HEAD + f'[[realm]]\nname = "a"\nguest = "{name}"\n', 5, "realm[0].guest", name,
            "it cannot be looked up: File name too long")


def test_guest_path_in_a_symlink_loop(tmp_path: Path) -> None:
    """A guest path the system cannot look up for a symbolic-link loop (ELOOP): Path.resolve
    raises RuntimeError there (OSError from Python 3.13), which ended in a traceback."""
    (tmp_path / "a.s").symlink_to("b.s")
    (tmp_path / "b.s").symlink_to("a.s")
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "a.s"\n', 5, "realm[0].guest", "a.s",
            "it cannot be looked up: Too many levels of symbolic links")


def test_relative_paths_of_a_linked_workload_are_read_beside_its_target(tmp_path: Path) -> None:
    """A workload file named through a symbolic link in another directory reads its guest file and
    platform file beside the file the link leads to (where the workload is kept with them), not
    beside the link: a guest of the same name beside the link is not the one read."""
    pack, elsewhere = tmp_path / "pack", tmp_path / "elsewhere"
    pack.mkdir()
    elsewhere.mkdir()
    (pack / "g.s").write_text("start:\n    b .\n")
    (elsewhere / "g.s").write_text("start:\n    nop\n    b .\n")
    (pack / "p.toml").write_text((ROOT / "platform" / "host.toml").read_text())
    (pack / "w.toml").write_text('platform = "p.toml"\n' + HEAD + '[[realm]]\nname = "a"\nguest = "g.s"\n')
    (elsewhere / "w.toml").symlink_to(pack / "w.toml")
    workload = resolve(spec.load(str(elsewhere / "w.toml")))
    assert workload.file.realms[0].guest == str(pack / "g.s") and len(workload.file.realms[0].image) == 8
    assert workload.platform.source == str(pack / "p.toml")


@pytest.mark.parametrize("line, key, value", [(6, "realm[0].guest", "gone.s"), (1, "platform", "gone.toml")])
def test_a_missing_path_of_a_linked_workload_says_where_it_was_read(tmp_path: Path, line: int, key: str,
                                                                      value: str) -> None:
    """A guest or platform path missing beside a linked workload's target: the error says where
    it looked, and that this is beside the file the link leads to (it named the target's directory
    alone, which read as wrong to a user who had put the file beside the link)."""
    pack = tmp_path / "pack"
    pack.mkdir()
    guest = value if key == "realm[0].guest" else "hello"
    platform = value if key == "platform" else "host"
    (pack / "w.toml").write_text(f'platform = "{platform}"\n' + HEAD + f'[[realm]]\nname = "a"\nguest = "{guest}"\n')
    (tmp_path / "w.toml").symlink_to(pack / "w.toml")
    with pytest.raises(ConfigError) as info:
        resolve(spec.load(str(tmp_path / "w.toml")))
    err = info.value
    assert (err.line, err.key, err.value) == (line, key, value), str(err)
    assert f"looked for {pack / value}, beside {pack / 'w.toml'}, which {tmp_path / 'w.toml'} leads to through a " \
           "symbolic link: no such file" in err.expected, str(err)


def test_guest_path_with_a_nul(tmp_path: Path) -> None:
    """A TOML string may hold a NUL; as a guest path it used to raise ValueError from
    Path.resolve. It is refused naming the field."""
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "a\\u0000b.s"\n', 5, "realm[0].guest", "a\0b.s",
            "a path cannot hold a NUL character")


def test_guest_file_that_is_not_utf8(tmp_path: Path) -> None:
    """A guest file with a byte that is not UTF-8: the guest file, its line and the byte."""
    (tmp_path / "mine.s").write_bytes(b"start:\n    b start // \xff\n")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "mine.s"\n')
    err = info.value
    assert (err.source, err.line, err.value) == (str(tmp_path / "mine.s"), 2, "byte 0xff at line 2, column 16"), str(err)
    assert "expected UTF-8 text (a guest file is UTF-8)" in str(err)
    assert segments() == []


def test_guest_file_beyond_the_source_bound_is_refused_unparsed(tmp_path: Path) -> None:
    """A guest file larger than the assembler's bound (1 MiB) is refused at realm[0].guest with
    its size, having been read no further than the bound and not assembled (a 19 MB,
    million-line file took ~30 s and 640 MB before being refused or accepted); a sparse file
    makes it cheap to test. That bound is the one every input file has (hw.tomlsrc.MAX_INPUT,
    which read_source applies), so a guest file has one limit whichever check sees it first."""
    from rmm_mp.guest.assembler import MAX_SOURCE
    from rmm_mp.hw.tomlsrc import MAX_INPUT
    assert MAX_SOURCE == MAX_INPUT
    with open(tmp_path / "big.s", "wb") as big:
        big.truncate(MAX_SOURCE + 1)
    err = refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "big.s"\n', 5, "realm[0].guest", "big.s",
                  f"a .s file of at most 1,048,576 bytes (1 MiB; {tmp_path / 'big.s'} has 1,048,577)")
    assert "assembles" not in err.expected


def test_guest_file_that_does_not_assemble(tmp_path: Path) -> None:
    """A guest file (relative to the workload file) with an unknown mnemonic."""
    (tmp_path / "bad.s").write_text("start:\n    frobnicate x0\n")
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "bad.s"\n', 5, "realm[0].guest", "bad.s",
            "a guest that assembles")


def test_guest_file_with_no_code(tmp_path: Path) -> None:
    """A guest file that assembles to nothing (empty, or comments and .equ lines only) would
    start REC 0 in unpopulated RAM: refused before anything starts."""
    (tmp_path / "empty.s").write_text("// nothing yet\n.equ WORK, 3\n")
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "empty.s"\n', 5, "realm[0].guest", "empty.s",
            "a guest with code in it")


def test_constant_of_a_guest_without_constants(tmp_path: Path) -> None:
    """A constant for a guest file with no .equ lines says so, instead of listing nothing."""
    (tmp_path / "spin.s").write_text("loop:\n    b loop\n")
    err = refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "spin.s"\nconstants = { X = 1 }\n', 6,
                  "realm[0].constants.X", 1, "an .equ constant of guest 'spin.s' (it has no .equ lines)")
    assert not str(err).endswith(": ")


def test_unknown_constant(tmp_path: Path) -> None:
    """A [realm.constants] key the guest does not define, in the second realm (its own table)."""
    text = HEAD + OK_REALM + '[[realm]]\nname = "b"\nguest = "smp-boot"\nrecs = 2\n[realm.constants]\nWROK = 3\n'
    refused(tmp_path, text, 11, "realm[1].constants.WROK", 3, 'an .equ constant of guest \'smp-boot\' (did you mean "WORK"?)')


def test_measure_guest_constants(tmp_path: Path) -> None:
    """EXPECTED0..7 are the engine's (derived from the hash and the value); SIZE is 0..64."""
    measure = '[[realm]]\nname = "m"\nguest = "measure"\n'
    refused(tmp_path, HEAD + measure + "constants = { EXPECTED0 = 1 }\n", 6, "realm[0].constants.EXPECTED0", 1,
            "no EXPECTED constant: the engine computes EXPECTED0..7")
    refused(tmp_path, HEAD + measure + "constants = { SIZE = 65 }\n", 6, "realm[0].constants.SIZE", 65,
            "a size in 0..64 bytes")


def test_constant_out_of_range(tmp_path: Path) -> None:
    """A negative .equ constant: refused at its line as outside 0..2^64-1."""
    refused(tmp_path, HEAD + OK_REALM.replace('"hello"', '"smp-boot"') + "constants = { WORK = -3 }\n", 6,
            "realm[0].constants.WORK", -3, "an integer in 0..2^64-1")


def test_attest_challenge_is_the_engines(tmp_path: Path) -> None:
    """The attest guest's challenge comes from the seed: a CHALLENGE constant is refused."""
    text = HEAD + '[[realm]]\nname = "a"\nguest = "attest"\nram = "4M"\nconstants = { CHALLENGE0 = 1 }\n'
    refused(tmp_path, text, 7, "realm[0].constants.CHALLENGE0", 1, "the engine gives each attest realm")


def test_attest_chunk_zero_is_refused(tmp_path: Path) -> None:
    """CHUNK is the size of each TOKEN_CONTINUE call: with 0 the guest asks for no bytes for
    ever, so its realm never finishes (a lifecycle attest realm is never rebuilt, and the run
    still said OK). It was accepted; any size from 1 works (the guest caps it at the granule)."""
    text = HEAD + '[[realm]]\nname = "a"\nguest = "attest"\nram = "4M"\nconstants = { CHUNK = 0 }\n'
    refused(tmp_path, text, 7, "realm[0].constants.CHUNK", 0, "at least 1 byte per RSI_ATTESTATION_TOKEN_CONTINUE")
    load(tmp_path, text.replace("CHUNK = 0", "CHUNK = 1"))


@pytest.mark.parametrize("guest, constant, bad, edge, expected", [
    ("attest", "EXTEND_REM", 5, 4, "0 (no extension) or the index of a REM, 1..4"),     # no REM5: code 2
    ("attest", "EXTEND_SIZE", 65, 64, "a size in 0..64 bytes"),     # more than EXTEND takes: code 2
    ("measure", "REM_INDEX", 0, 1, "the REM RSI_MEASUREMENT_EXTEND extends, 1..4"),     # the RIM: code 1
    ("measure", "REM_INDEX", 5, 4, "the REM RSI_MEASUREMENT_EXTEND extends, 1..4"),
    ("ripas-loop", "PAGES", 0, 1, "at least 1 page per REC"),       # an empty RIPAS range: code 4
])
def test_guest_constants_its_rsi_calls_refuse(tmp_path: Path, guest: str, constant: str, bad: int, edge: int,
                                              expected: str) -> None:
    """A bundled guest's constant that its own RSI call refuses (attest extends REM EXTEND_REM
    with EXTEND_SIZE bytes, measure extends REM_INDEX, ripas-loop changes PAGES pages per REC)
    was accepted, and the realm then failed at its first round (EXTEND_REM = 5: failure code 2).
    It is refused, naming the range; the value at the edge of the range is accepted."""
    other = "EXTEND_REM = 1, " if constant == "EXTEND_SIZE" else ""
    text = (HEAD + f'[[realm]]\nname = "a"\nguest = "{guest}"\nram = "4M"\nrecs = 2\n'
            f"constants = {{ {other}{constant} = {bad} }}\n")
    refused(tmp_path, text, 8, f"realm[0].constants.{constant}", bad, expected)
    load(tmp_path, text.replace(f"{constant} = {bad}", f"{constant} = {edge}"))


def test_ram_too_small_for_the_guest(tmp_path: Path) -> None:
    """attest needs its buffer and shared copy 1 and 2 MiB into RAM."""
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "attest"\n', 3, "realm[0].ram", 2 << 20,
            "at least 2,052 KiB for guest 'attest' with 1 REC")


def test_ram_too_small_says_when_ram_is_the_default(tmp_path: Path) -> None:
    """A file that does not set ram is told that the default is what is too small, and what to
    set (the message named a key the user never wrote, with no more); one that sets it is not."""
    unset = "ram is not set, and its default, 2M, is less: set ram = \"3M\" or more"
    refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "attest"\n', 3, "realm[0].ram", 2 << 20, unset)
    err = refused(tmp_path, HEAD + '[[realm]]\nname = "a"\nguest = "attest"\nram = "2M"\n', 6, "realm[0].ram",
                  "2M", "at least 2,052 KiB")
    assert "not set" not in str(err)


@pytest.mark.parametrize("guest, ram, constants, need", [
    ("ripas-flip", "2M", "{ RANGE_PAGES = 100000 }", "401,024 KiB"),          # RANGE + 100,000 pages
    ("ripas-flip", "2M", "{ RANGE = 0x801FE000 }", "2,056 KiB"),               # 4 pages from 2040 KiB in
    ("smp-boot", "2M", "{ PAGES = 0x801FF000 }", "2,056 KiB"),                 # 3 RECs' pages past 2 MiB
    ("attest", "4M", "{ SHARED_OFFSET = 0x40_0000 }", "4,100 KiB"),
    ("attest", "4M", "{ BUFFER_OFFSET = 0x3F_F000 }", "4,099 KiB"),            # + OFFSET 3 KiB + 4 KiB
])
def test_ram_must_hold_what_the_constants_make_the_guest_touch(tmp_path: Path, guest: str, ram: str,
                                                               constants: str, need: str) -> None:
    """The pages a bundled guest touches beyond its image follow its constants (RANGE,
    RANGE_PAGES, PAGES, BUFFER_OFFSET, OFFSET, SHARED_OFFSET): the file is refused before
    anything is built (with the default page counts, such a realm validated and then ran past
    its RAM, or ran the host's allocator dry)."""
    recs = "\nrecs = 3" if guest == "smp-boot" else ""
    text = HEAD + f'[[realm]]\nname = "a"\nguest = "{guest}"{recs}\nram = "{ram}"\nconstants = {constants}\n'
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == "realm[0].ram" and f"at least {need} for guest '{guest}'" in str(info.value)


@pytest.mark.parametrize("guest, extra, constant, value, need", [
    ("ripas-loop", "", "RANGE", 0xFFFF_FFFF_FFFF_F000, "18,014,398,507,384,844 KiB"),
    ("ripas-loop", "", "PAGES", 300_000, "1,201,024 KiB"),
    ("ripas-flip", 'ram = "4M"\n', "RANGE_PAGES", 300_000, "1,201,024 KiB"),
    ("attest", 'ram = "4M"\n', "SHARED_OFFSET", 0x4000_0000, "1,048,580 KiB"),
])
def test_guest_pages_beyond_any_ram_name_the_constant(tmp_path: Path, guest: str, extra: str, constant: str,
                                                      value: int, need: str) -> None:
    """A constant that places a bundled guest's pages beyond the most RAM a realm can have
    (1 GiB) is refused at that constant: the error named ram and told a file without ram to
    "set ram = ..." a size that is refused as well (RANGE near 2^64 asked for
    ram = "17592186042369M")."""
    text = HEAD + f'[[realm]]\nname = "a"\nguest = "{guest}"\n{extra}constants = {{ {constant} = {value} }}\n'
    err = refused(tmp_path, text, 6 + bool(extra), f"realm[0].constants.{constant}", value,
                  f"pages that fit in the most RAM a realm can have: guest '{guest}' with 1 REC touches {need} of "
                  "RAM, and ram is at most 1,024 MiB")
    assert "set ram" not in str(err)


@pytest.mark.parametrize("recs, ram, constants, need", [
    (32, "1280K", "{ WORK = 0 }", "1,536 KiB"),            # RECs 16..31 too: 1 MiB + 32 x 4 pages
    (2, "2M", "{ PAGES = 256 }", "3 MiB"),                  # REC 1's 256 pages end 3 MiB in
    (1, "2M", "{ RANGE = 0x8030_0000 }", "3,088 KiB"),       # 4 pages from 3 MiB in
    (1, "2M", "{ RANGE = 0x801F_F000, MAX_RECS = 1 }", "2,060 KiB"),  # REC 0 alone
])
def test_ripas_loop_ram_follows_its_recs_and_constants(tmp_path: Path, recs: int, ram: str, constants: str,
                                                       need: str) -> None:
    """ripas-loop's RECs each use PAGES pages from RANGE + i * PAGES * 4 KiB, every REC the
    realm has (the guest starts them all): the RAM check counted 16 RECs at most and ignored
    RANGE and PAGES, so such a realm validated and its RECs then touched IPAs past its RAM,
    where the host backs nothing (found by writing these files and running them)."""
    text = HEAD + f'[[realm]]\nname = "a"\nguest = "ripas-loop"\nrecs = {recs}\nram = "{ram}"\n' \
                  f'constants = {constants}\n'
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == "realm[0].ram" and f"at least {need} for guest 'ripas-loop'" in str(info.value)


@pytest.mark.parametrize("guest, constant, value", [
    ("ripas-flip", "RANGE", 0),                     # IPA 0: below RAM
    ("ripas-loop", "RANGE", 0x8000_0000),           # the image's first page
    ("smp-boot", "PAGES", 0x7FFF_F000),             # just below RAM
    ("attest", "BUFFER_OFFSET", 0),                 # the token written over the image
])
def test_guest_pages_must_lie_in_ram_after_the_image(tmp_path: Path, guest: str, constant: str,
                                                     value: int) -> None:
    """Constants that place a bundled guest's pages below its RAM or over its image are refused
    at the constant (they validated: the guest then faulted outside RAM, took an SEA with no
    vector and looped on it, and the run reported the realm ok, 'running when the run ended')."""
    text = HEAD + f'[[realm]]\nname = "a"\nguest = "{guest}"\nram = "4M"\nconstants = {{ {constant} = {value} }}\n'
    err = refused(tmp_path, text, 7, f"realm[0].constants.{constant}", value, "pages in the realm's RAM after its image")
    assert f"guest '{guest}'" in err.expected


@pytest.mark.parametrize("guest, constant, value", [
    ("ripas-flip", "RANGE", 0x8010_0008),           # 1 MiB into RAM, plus 8 bytes
    ("ripas-loop", "RANGE", 0x8010_0ffc),           # not even 8-byte aligned
    ("smp-boot", "PAGES", 0x8010_0800),
    ("attest", "BUFFER_OFFSET", 0x10_0010),         # an offset from RAM: the buffer's IPA
])
def test_guest_pages_must_be_page_aligned(tmp_path: Path, guest: str, constant: str, value: int) -> None:
    """A constant that places a bundled guest's pages off a page boundary is refused at the
    constant. It validated, and the realm then failed (RSI_IPA_STATE_SET and
    ATTESTATION_TOKEN_CONTINUE refuse an unaligned address) or, with an address that is not
    8-byte aligned, spun on an alignment fault it has no vector for until the run's time ran
    out (found by a property test of the guests' pages)."""
    text = HEAD + f'[[realm]]\nname = "a"\nguest = "{guest}"\nram = "4M"\nconstants = {{ {constant} = {value} }}\n'
    err = refused(tmp_path, text, 7, f"realm[0].constants.{constant}", value, "a page-aligned place for its pages")
    assert f"guest '{guest}'" in err.expected and "multiple of 4 KiB" in err.expected


@pytest.mark.parametrize("guest, value, expected", [
    ("ripas-loop", 0, "pages in the realm's RAM after its image"),                  # RANGE at 1 MiB, below RAM
    ("ripas-flip", 0, "pages in the realm's RAM after its image"),
    ("ripas-loop", 0x8000_0008, "a page-aligned place for its pages"),
    ("ripas-loop", 0xC000_0000, "pages that fit in the most RAM a realm can have"),  # RANGE past 1 GiB of RAM
    ("ripas-loop", 0xFFFF_FFFF_FFFF_F000, "a value with which guest 'ripas-loop' assembles"),  # RANGE past 2^64
])
def test_an_image_base_that_moves_the_pages_is_named(tmp_path: Path, guest: str, value: int, expected: str) -> None:
    """ripas-loop's and ripas-flip's RANGE is IMAGE_BASE + 1 MiB: a workload's IMAGE_BASE that
    puts the pages RANGE places below RAM, off a page boundary, past the most RAM or past 2^64 is
    refused at realm[0].constants.IMAGE_BASE, the key that is wrong. It was blamed on
    realm[0].guest (or realm[0].ram), which the user had not got wrong."""
    text = HEAD + f'[[realm]]\nname = "a"\nguest = "{guest}"\nconstants = {{ IMAGE_BASE = {value} }}\n'
    err = refused(tmp_path, text, 6, "realm[0].constants.IMAGE_BASE", value, expected)
    if "pages" in expected:
        assert "where IMAGE_BASE moves it" in err.expected or "1,049,616 KiB" in err.expected, str(err)


@pytest.mark.parametrize("constants", ["SHARED_OFFSET = 0x7FFF0000, OFFSET = 0xC00",
                                       "OFFSET = 0xC00, SHARED_OFFSET = 0x7FFF0000"])
def test_pages_past_the_most_ram_are_blamed_on_the_constant_that_puts_them_there(tmp_path: Path,
                                                                                 constants: str) -> None:
    """attest with SHARED_OFFSET 2 GiB into RAM (its shared page past the most RAM a realm can
    have) and OFFSET at its default 0xC00, in either order: refused at SHARED_OFFSET, without
    which the pages fit. Both are placing constants, and the first set one in a fixed order
    (OFFSET) was named, a value that is not wrong; earlier the first in the file's order."""
    text = HEAD + f'[[realm]]\nname = "a"\nguest = "attest"\nram = "4M"\nconstants = {{ {constants} }}\n'
    refused(tmp_path, text, 7, "realm[0].constants.SHARED_OFFSET", 0x7FFF0000,
            "pages that fit in the most RAM a realm can have: guest 'attest'")


def test_an_image_grown_over_the_pages_is_blamed_on_the_constant_that_grows_it(tmp_path: Path) -> None:
    """ripas-loop with a MAX_RECS of 5,000: its per-REC areas grow the image past RANGE (1 MiB into
    RAM), where its pages start. Refused at realm[0].constants.MAX_RECS, without which the pages
    lie after the image, not at realm[0].guest, which the user did not get wrong (and with no
    "where MAX_RECS moves it": it does not move RANGE)."""
    text = HEAD + '[[realm]]\nname = "a"\nguest = "ripas-loop"\nram = "8M"\nconstants = { MAX_RECS = 5000 }\n'
    err = refused(tmp_path, text, 7, "realm[0].constants.MAX_RECS", 5000, "pages in the realm's RAM after its image")
    assert "places its pages at RANGE (IPA 0x80100000), and" in err.expected, str(err)


def test_a_guest_wrong_on_its_own_is_not_blamed_on_a_constant(tmp_path: Path) -> None:
    """A guest file that does not assemble even with its own .equ values is refused at
    realm[0].guest, although the failing line uses a constant the workload sets."""
    (tmp_path / "g.s").write_text(".equ N, 1\nmov x1, #N +\n")
    text = HEAD + '[[realm]]\nname = "a"\nguest = "g.s"\nconstants = { N = 2 }\n'
    refused(tmp_path, text, 5, "realm[0].guest", "g.s", "a guest that assembles (line 2:")


def test_the_pages_the_constants_place_count_in_the_memory_bound(tmp_path: Path) -> None:
    """ripas-flip over 20,000 pages fits its 512 MiB of RAM, but not the host platform's 64 MiB
    of DRAM: refused before anything starts (it ran the host's allocator dry before)."""
    text = HEAD + '[[realm]]\nname = "a"\nguest = "ripas-flip"\nram = "512M"\nconstants = { RANGE_PAGES = 20000 }\n'
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert info.value.key == "realm[0].instances" and "NS DRAM platform 'host' has" in str(info.value)


# -- activities, groups, phases -------------------------------------------------------------------

def test_unknown_activity(tmp_path: Path) -> None:
    """A misspelt activity: refused at its line, suggesting the known one."""
    refused(tmp_path, "seconds = 1\nactivities = { runn = 1 }\n" + OK_REALM, 2, "activities.runn", 1,
            'a known activity (did you mean "run"?)')


@pytest.mark.parametrize("text, line, key, value, expected", [
    ('seconds = 1\nactivities = ["run"]\n' + OK_REALM, 2, "activities", ["run"],
     "a table of activity weights (write { run = 1 }: each activity with its weight)"),
    ('seconds = 1\nactivities = "run"\n' + OK_REALM, 2, "activities", "run",
     "a table of activity weights (write { run = 1 }: each activity with its weight)"),
    ('seconds = 1\nactivities = { run = 1 }\n' + OK_REALM + '[[group]]\ncpus = [0]\nactivities = ["run", "attest"]\n',
     8, "group[0].activities", ["run", "attest"],
     "a table of activity weights (write { run = 1, attest = 1 }: each activity with its weight)"),
    ('seconds = 1\nactivities = ["runn"]\n' + OK_REALM, 2, "activities", ["runn"],
     "a table of activity weights, e.g. { run = 3, rtt-churn = 1 }; activities: run, lifecycle, "),
    ('seconds = 1\nactivities = 3\n' + OK_REALM, 2, "activities", 3,
     "a table of activity weights, e.g. { run = 3, rtt-churn = 1 }; activities: run, lifecycle, "),
])
def test_activities_that_are_no_table_are_refused_with_an_example(tmp_path: Path, text: str, line: int, key: str,
                                                                 value: object, expected: str) -> None:
    """`activities = ["run"]` (names without weights) is refused naming the table to write,
    `{ run = 1 }`; any other value that is no table with an example and the activities. Both
    said only "expected a table"."""
    err = refused(tmp_path, text, line, key, value, expected)
    assert err.expected.startswith(expected), str(err)


def test_weights_all_zero(tmp_path: Path) -> None:
    """Activity weights all 0: refused at the table's line, since no step could choose any."""
    refused(tmp_path, "seconds = 1\nactivities = { run = 0, rtt-churn = 0 }\n" + OK_REALM, 2, "activities",
            {"run": 0, "rtt-churn": 0}, "at least one weight greater than 0")


def test_negative_weight(tmp_path: Path) -> None:
    """A negative weight: refused at its key."""
    refused(tmp_path, "seconds = 1\nactivities = { run = -1 }\n" + OK_REALM, 2, "activities.run", -1,
            "a weight: a number >= 0")


HUGE = 10**400
"""A TOML integer beyond any float (TOML integers have no size limit in tomllib)."""


def test_weight_beyond_a_float(tmp_path: Path) -> None:
    """A weight no float can hold is refused with its key (it raised OverflowError, a traceback)."""
    refused(tmp_path, f"seconds = 1\nactivities = {{ run = {HUGE} }}\n" + OK_REALM, 2, "activities.run", HUGE,
            "a weight: a number >= 0, finite")


def test_seconds_beyond_a_float(tmp_path: Path) -> None:
    """seconds (and a phase's) no float can hold is out of range, not an OverflowError."""
    refused(tmp_path, f"seconds = {HUGE}\nactivities = {{ run = 1 }}\n" + OK_REALM, 1, "seconds", HUGE,
            "a duration in seconds (a run counts whole nanoseconds), a number of at least 0.000000001 and at "
            "most 604,800")
    refused(tmp_path, f'activities = {{ run = 1 }}\n{OK_REALM}[[phase]]\nname = "p"\nseconds = {HUGE}\n', 7,
            "phase[0].seconds", HUGE, "a duration in seconds")


def test_integer_longer_than_python_converts(tmp_path: Path) -> None:
    """A decimal integer of more digits than int() converts (4300) is a file error at its line,
    not tomllib's bare ValueError (a traceback); a hex one, which int() does convert, is shown
    shortened (str() of it raised the same ValueError while the error message was built)."""
    decimal = "9" * 5000
    with pytest.raises(ConfigError) as info:
        load(tmp_path, HEAD + OK_REALM + f"recs = {decimal}\n")
    assert (info.value.line, info.value.key) == (6, "(file)"), str(info.value)
    assert "integers of at most 4300 digits" in info.value.expected
    err = refused(tmp_path, f"seconds = 0x{'f' * 5000}\nactivities = {{ run = 1 }}\n" + OK_REALM, 1, "seconds",
                  (1 << 20000) - 1, "a duration in seconds")
    assert "seconds = 0xffffffff...ffff (an integer of 20000 bits): expected" in str(err)
    assert segments() == []
    err = refused(tmp_path, HEAD + OK_REALM + f"[[group]]\ncpus = [0x{'f' * 5000}]\nactivities = {{ run = 1 }}\n", 7,
                  "group[0].cpus", [(1 << 20000) - 1], "CPU ids 0..255")
    assert "group[0].cpus = [0xffffffff...ffff (an integer of 20000 bits)]: expected" in str(err)


def test_an_integer_above_4096_is_shown_in_decimal_and_hex(tmp_path: Path) -> None:
    """docs/workloads.md, "How a run goes": an error shows an integer above 4,096 in decimal and
    in hex (a RAM size of 4097 bytes as `4097 (0x1001)`), and one of 4,096 or less in decimal
    alone (a REC count of 4096)."""
    err = refused(tmp_path, HEAD + OK_REALM + "ram = 4097\n", 6, "realm[0].ram", 4097, "a multiple of 4 KiB")
    assert "realm[0].ram = 4097 (0x1001): expected" in str(err)
    err = refused(tmp_path, HEAD + OK_REALM + "recs = 4096\n", 6, "realm[0].recs", 4096, "an integer in 1..32")
    assert "realm[0].recs = 4096: expected" in str(err)


@pytest.mark.parametrize("value, depth, line", [
    ("[" * 3000 + "]" * 3000, 3000, 3),
    ("{ a = " * 3000 + "1" + " }" * 3000, 3000, 3),
    ("[\n" * 1500 + "]\n" * 1500, 1500, 1502),
], ids=["arrays", "inline-tables", "over-lines"])
def test_values_nested_deeper_than_the_parser_recurses(tmp_path: Path, value: str, depth: int, line: int) -> None:
    """Arrays or inline tables nested thousands deep are a file error naming the line where
    they are nested deepest, not a RecursionError: tomllib parses them recursively, and its
    RecursionError ended `rmm-mp run` and `rmm-mp workloads validate` with a traceback."""
    text = HEAD + f"x = {value}\n" + OK_REALM
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert (info.value.key, info.value.line) == ("(file)", line), str(info.value)
    assert info.value.value == f"arrays and inline tables nested {depth} deep", str(info.value)
    assert "valid TOML with arrays and inline tables nested less deeply" in info.value.expected
    assert segments() == []


def test_digit_strings_longer_than_python_converts(tmp_path: Path) -> None:
    """A ram size or a group's CPU range written as a string of more digits than int() converts
    (4300) is out of range, refused with its key and line: int() raised a ValueError that ended
    `rmm-mp workloads validate` and `rmm-mp run` with a traceback (tomlnum.decimal). Leading
    zeros do not count: the range 0-0...01 is CPUs 0 and 1."""
    ram = "9" * 5000 + "M"
    refused(tmp_path, HEAD + OK_REALM + f'ram = "{ram}"\n', 6, "realm[0].ram", ram, "a multiple of 4 KiB")
    cpus = "0-" + "9" * 5000
    refused(tmp_path, HEAD + OK_REALM + f'[[group]]\ncpus = "{cpus}"\nactivities = {{ run = 1 }}\n', 7,
            "group[0].cpus", cpus, "CPU ids 0..255")
    assert segments() == []
    w = load(tmp_path, HEAD + OK_REALM + f'[[group]]\ncpus = "0-{"0" * 5000}1"\nactivities = {{ run = 1 }}\n')
    assert w.file.groups[0].cpus == frozenset({0, 1})


def test_cpus_beyond_the_run_queue_names_its_real_limit(tmp_path: Path) -> None:
    """cpus above 64 can never run (the run queue's limit): the error says 1..64, not the 1..256
    it used to (which made 65..256 look acceptable on a platform with that many CPUs)."""
    refused(tmp_path, "cpus = 300\n" + HEAD + OK_REALM, 1, "cpus", 300, "at most 64, the run queue's limit, and at most "
            "the platform's CPUs), an integer in 1..64")


def test_phase_without_an_end(tmp_path: Path) -> None:
    """A phase with neither seconds nor iterations: refused at the phase's header."""
    text = 'activities = { delegate-churn = 1 }\n\n[[phase]]\nname = "warm"\n'
    refused(tmp_path, text, 3, "phase[0]", "warm", "an end: seconds or iterations")


def test_phases_mix_seconds_and_iterations(tmp_path: Path) -> None:
    """One phase timed, the next counted: the second is refused, asking for seconds like the first."""
    text = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 1\n'
            '[[phase]]\nname = "b"\niterations = 10\n')
    refused(tmp_path, text, 7, "phase[1].iterations", 10, "seconds, like phase[0]")


def test_top_level_length_with_phases(tmp_path: Path) -> None:
    """A top-level seconds in a file with [[phase]] entries: refused, the phases give the length."""
    text = 'seconds = 3\nactivities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 1\n'
    refused(tmp_path, text, 1, "seconds", 3, "no top-level length when the file has [[phase]] entries")


@pytest.mark.parametrize("value", ['"5s"', '"5"', "-1", '"ten"'])
def test_top_level_length_with_phases_is_refused_as_such_whatever_its_value(tmp_path: Path, value: str) -> None:
    """`seconds = "5s"` beside [[phase]] entries was told "(without a unit: write 5)", and 5 was
    then refused as a top-level length beside phases: the hint named a number the file may not
    hold. The length is refused for the phases first, whatever its value."""
    text = f'seconds = {value}\nactivities = {{ delegate-churn = 1 }}\n[[phase]]\nname = "a"\nseconds = 1\n'
    err = refused(tmp_path, text, 1, "seconds", tomllib.loads(f"x = {value}")["x"],
                  "no top-level length when the file has [[phase]] entries")
    assert "write" not in err.expected, str(err)


@pytest.mark.parametrize("value, shown", [("[1]", [1]), ('["a"]', ["a"]), ("[[1]]", [[1]]), ("5", 5)])
@pytest.mark.parametrize("length", ["seconds = 5", "iterations = 5"])
def test_a_wrong_typed_phase_beside_a_top_level_length_is_refused_as_such(tmp_path: Path, value: str,
                                                                          shown: object, length: str) -> None:
    """`phase = [1]` beside a top-level `seconds` was refused for the length ("no top-level
    length when the file has [[phase]] entries"), naming as the mistake a key that is right
    when there are no phases. The phase, which is no array of tables, is refused first."""
    text = f'{length}\nactivities = {{ run = 1 }}\nphase = {value}\n' + OK_REALM
    refused(tmp_path, text, 3, "phase", shown, "an array of tables ([[phase]] entries)")


@pytest.mark.parametrize("unit, length, total", [
    ("seconds", 201600.5, "604,801.5 s"),                     # each a third of a week and half a second
    ("iterations", 400_000_000_000, "1,200,000,000,000 steps"),
])
def test_phases_together_last_at_most_what_a_run_may(tmp_path: Path, unit: str, length: float, total: str) -> None:
    """Three phases each within a run's limit (a week, 10^12 steps) but past it together are
    refused at the phase that passes it, naming every phase, its length and the sum (they
    validated: each phase was capped, the total not)."""
    text = "activities = { delegate-churn = 1 }\n" + "".join(
        f'[[phase]]\nname = "p{i}"\n{unit} = {length}\n' for i in range(3))
    err = refused(tmp_path, text, 10, f"phase[2].{unit}", length, "keep the phases' total at most what a run may last")
    assert "phase[0] 'p0'" in err.expected and "phase[2] 'p2'" in err.expected, str(err)
    assert err.expected.endswith(f"= {total}"), str(err)


def test_phases_that_add_up_to_a_week_exactly_are_accepted(tmp_path: Path) -> None:
    """Two phases of half a week each: exactly the limit, accepted."""
    text = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 302400\n'
            '[[phase]]\nname = "b"\nseconds = 302400\n')
    assert len(load(tmp_path, text).phases) == 2


def test_phases_with_decimals_that_add_up_to_a_week_are_accepted_and_a_sum_past_it_is_shown_whole(
        tmp_path: Path) -> None:
    """Five phases of 76701.0, 134898.4, 271000.9, 98284.9 and 23914.8 s add up to exactly a week,
    as one phase of a week is accepted; their float sum is 604,800.0000000001, and the file was
    refused with the sum shown as "= 604,800 s", the bound itself. A total past the week by a
    tenth of a microsecond is refused with that sum shown whole, not rounded to the bound."""
    lengths = ("76701.0", "134898.4", "271000.9", "98284.9", "23914.8")
    text = "activities = { delegate-churn = 1 }\n" + "".join(
        f'[[phase]]\nname = "p{i}"\nseconds = {x}\n' for i, x in enumerate(lengths))
    # Added left to right, as the old check did: Python 3.12's sum() of floats compensates its
    # rounding and reads exactly 604,800 here.
    total = 0.0
    for phase in load(tmp_path, text).phases:
        total += phase.seconds
    assert total > 604_800          # the float sum passes it
    past = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 604800\n'
            '[[phase]]\nname = "b"\nseconds = 0.0000001\n')
    err = refused(tmp_path, past, 7, "phase[1].seconds", 1e-7, "keep the phases' total at most")
    assert err.expected.endswith("phase[0] 'a' 604,800 + phase[1] 'b' 0.0000001 = 604,800.0000001 s"), str(err)


def test_phases_past_the_total_are_named_by_the_first_and_last_four(tmp_path: Path) -> None:
    """Sixteen phases of 40,000 s pass the week at the sixteenth: the error names the first four
    and the last four phases, how many it leaves out between them, and the sum. It named every
    phase: 6,049 phases of 100 s made a message of 150 KB."""
    text = "activities = { delegate-churn = 1 }\n" + "".join(
        f'[[phase]]\nname = "p{i}"\nseconds = 40000\n' for i in range(16))
    err = refused(tmp_path, text, 49, "phase[15].seconds", 40000, "keep the phases' total at most")
    first = " + ".join(f"phase[{i}] 'p{i}' 40,000" for i in range(4))
    last = " + ".join(f"phase[{i}] 'p{i}' 40,000" for i in range(12, 16))
    assert err.expected.endswith(f"{first} + ... (8 phases more) + {last} = 640,000 s"), str(err)


def test_fifteen_thousand_phases_are_checked_at_once(tmp_path: Path) -> None:
    """A file of 15,000 phases (under the 1 MiB a file may hold) is checked in a second or
    two. Each phase's name was compared with every name before it, and the phases' total
    added up again from the first phase at each: 45 s. Loaded in a child with a 15 s limit, so
    that a regression fails rather than hangs."""
    import subprocess
    import sys
    path = tmp_path / "w.toml"
    text = "".join(f'[[phase]]\nname="p{i}"\nseconds=1\nactivities={{delegate-churn=1}}\n' for i in range(15_000))
    assert len(text) <= 1 << 20          # what a workload file may hold
    path.write_text(text)
    root = Path(__file__).resolve().parents[2]
    check = "import sys\nfrom rmm_mp.workload import spec\nprint(len(spec.load(sys.argv[1]).phases))\n"
    try:
        proc = subprocess.run([sys.executable, "-c", check, str(path)], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)}, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("checking 15,000 phases took more than 15 s")
    assert (proc.returncode, proc.stdout) == (0, "15000\n"), proc.stderr


class _CountedSeconds:
    """A phase's seconds that counts each time its value is read as a number: by +, *, / (either
    side), float() or anything that converts it (math.fsum, statistics, a Python loop). Not a
    float subclass, whose value sum() and math.fsum read without calling anything."""

    def __init__(self, value: float, reads: list[int]) -> None:
        self.value, self.reads = value, reads

    def __float__(self) -> float:
        self.reads[0] += 1
        return self.value

    def __add__(self, other: object) -> float:
        return float(self) + float(other)  # type: ignore[arg-type]

    def __mul__(self, other: object) -> float:
        return float(self) * float(other)  # type: ignore[arg-type]

    def __truediv__(self, other: object) -> float:
        return float(self) / float(other)  # type: ignore[arg-type]

    def __rtruediv__(self, other: object) -> float:
        return float(other) / float(self)  # type: ignore[arg-type]

    __radd__, __rmul__ = __add__, __mul__


def test_seconds_over_many_phases_adds_the_total_up_once(tmp_path: Path) -> None:
    """`--seconds` over a file of many phases: each phase's share is checked against the
    shortest length (a nanosecond) with the phases' total added up once. It was added up again
    for each phase, twice, which made 15,000 phases (what 1 MiB holds) take 1 to 2 s. Counted,
    not timed: every phase's seconds counts the times it is read as a number, and 4,000 phases
    may read them at most 8 times as often as 1,000 (a linear check: 4 times; one that adds the
    total up per phase, by sum(), math.fsum or a loop: 16 times). A count of resolve's sum()
    calls held it before, and missed math.fsum per phase."""
    import dataclasses
    from typing import Any

    from rmm_mp.workload import resolve
    from rmm_mp.workload.fields import Fields
    one = spec.parse('activities = { run = 1 }\n[[phase]]\nname="p"\nseconds=1\n', str(tmp_path / "w.toml"))

    def reads(phases: int) -> int:
        count = [0]
        seconds: Any = _CountedSeconds(1.0, count)      # one object for every phase: reads counted together
        file = dataclasses.replace(one, phases=tuple(dataclasses.replace(one.phases[0], name=f"p{i}", seconds=seconds)
                                                     for i in range(phases)))
        assert resolve._length(file, Fields("", "command line"), 100.0, None) == (100.0, None, True)
        assert count[0] >= phases, "each phase's seconds read at least once: the check saw these values"
        return count[0]

    small, large = reads(1_000), reads(4_000)
    assert large < 8 * small, f"1,000 phases' seconds read {small:,} times, 4,000 phases' {large:,} times"


def test_a_phase_length_is_shown_with_its_digits(tmp_path: Path) -> None:
    """`workloads show` of phases of 134898.4 s and 271000.9 s shows those lengths (with %g they
    read 134898 s and 271001 s) with thousands separators, and the run's 405,899.3 s; a share of
    `--seconds 10` over three equal phases reads 3.333333333 s."""
    from rmm_mp.workload.describe import describe
    text = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 134898.4\n'
            '[[phase]]\nname = "b"\nseconds = 271000.9\n')
    shown = describe(load(tmp_path, text)).splitlines()
    assert "  a: 134,898.4 s" in shown and "  b: 271,000.9 s" in shown, shown
    assert any(line.startswith("length 405,899.3 s,") for line in shown), shown
    thirds = text + '[[phase]]\nname = "c"\nseconds = 1\n'
    shares = describe(load(tmp_path, thirds.replace("134898.4", "1").replace("271000.9", "1"), seconds=10))
    assert "  a: 3.333333333 s" in shares.splitlines(), shares


def test_a_length_just_under_the_limit_does_not_read_as_the_limit(tmp_path: Path) -> None:
    """`--seconds 604799.999999999`, a nanosecond under the week a run may last, read "604,800 s"
    (10 digits), the limit itself: it is shown to the nanosecond. The limit reads 604,800."""
    from rmm_mp.workload.describe import describe
    text = 'activities = { delegate-churn = 1 }\nseconds = 1\n'
    shown = describe(load(tmp_path, text, seconds=604799.999999999)).splitlines()
    assert any(line.startswith("length 604,799.999999999 s,") for line in shown), shown
    assert "  main: 604,799.999999999 s" in shown, shown
    shown = describe(load(tmp_path, text, seconds=604800)).splitlines()
    assert any(line.startswith("length 604,800 s,") for line in shown), shown


def test_a_length_under_a_tenth_of_a_millisecond_is_shown_without_an_exponent(tmp_path: Path) -> None:
    """`workloads show` of a run of `--seconds 1e-7`, and of phases of 0.000015 s and 1e-9 s:
    each length reads as a plain decimal, as the tool writes the phases' sum in its error and the
    stress report its waits ("0.00002 s"); %g showed "1e-07 s" and "1.5e-05 s"."""
    from rmm_mp.workload.describe import describe
    text = 'activities = { delegate-churn = 1 }\nseconds = 1\n'
    shown = describe(load(tmp_path, text, seconds=1e-7)).splitlines()
    assert any(line.startswith("length 0.0000001 s,") for line in shown), shown
    assert "  main: 0.0000001 s" in shown, shown
    phases = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 0.000015\n'
              '[[phase]]\nname = "b"\nseconds = 1e-9\n')
    shown = describe(load(tmp_path, phases)).splitlines()
    assert "  a: 0.000015 s" in shown and "  b: 0.000000001 s" in shown, shown


def test_duplicate_phase_names(tmp_path: Path) -> None:
    """Two phases with one name: the second is refused at its name's line."""
    text = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 1\n'
            '[[phase]]\nname = "a"\nseconds = 1\n')
    refused(tmp_path, text, 6, "phase[1].name", "a", "a name no other phase has")


def test_cpu_in_two_groups_of_a_later_phase(tmp_path: Path) -> None:
    """Lines inside nested arrays of tables: the second phase's second group."""
    text = (HEAD + OK_REALM + '[[phase]]\nname = "p"\nseconds = 1\n[[phase.group]]\ncpus = [0]\nactivities = { run = 1 }\n'
            '[[phase]]\nname = "q"\nseconds = 1\n[[phase.group]]\ncpus = "0-1"\nactivities = { run = 1 }\n'
            '[[phase.group]]\ncpus = [1]\nactivities = { run = 1 }\n')
    text = text.replace("seconds = 1\nactivities = { run = 1 }\n", "activities = { run = 1 }\n", 1)
    refused(tmp_path, text, 18, "phase[1].group[1].cpus", [1], "CPU 1 is in phase[1].group[0] too")


@pytest.mark.parametrize("cpus", ["3-1", "256", "0-100000000", "0,,1", "\uff10-1", "\u0661"])
def test_bad_cpu_set(tmp_path: Path, cpus: str) -> None:
    """A reversed range, an id no platform has, or an empty part. "0-100000000" used to build a
    set of 10^8 ids (MemoryError under a 4 GB limit) before anything said it was wrong. Digits
    that are not ASCII (fullwidth, Arabic-Indic) were read as CPU ids."""
    text = HEAD + OK_REALM + f'[[group]]\ncpus = "{cpus}"\nactivities = {{ run = 1 }}\n'
    refused(tmp_path, text, 7, "group[0].cpus", cpus, "CPU ids 0..255: a non-empty list of integers")


@pytest.mark.parametrize("cpus, shown, twice", [([0, 1, 0], "[0, 1, 0]", 0), ("1,1", '"1,1"', 1),
                                                ("0-2,1", '"0-2,1"', 1), ("4, 2-5", '"4, 2-5"', 4)])
def test_cpu_listed_twice(tmp_path: Path, cpus: object, shown: str, twice: int) -> None:
    """[0, 0] is most likely a typo for [0, 1]: refused, naming the CPU; the same in the string
    form, where overlapping ranges count too."""
    text = HEAD + OK_REALM + f'[[group]]\ncpus = {shown}\nactivities = {{ run = 1 }}\n'
    refused(tmp_path, text, 7, "group[0].cpus", cpus, f"CPU ids, each once (CPU {twice} is listed twice)")


def test_cpu_without_activities(tmp_path: Path) -> None:
    """Only CPU 0 has weights (a group) and there is no default table: CPU 1 has nothing to do."""
    text = 'seconds = 1\n' + OK_REALM + '[[group]]\ncpus = [0]\nactivities = { run = 1 }\n'
    refused(tmp_path, text, None, "activities", MISSING,
            "activity weights for CPU 1")


def test_activity_with_nothing_to_work_on(tmp_path: Path) -> None:
    """rtt-churn with no realm to churn: refused at the activity."""
    refused(tmp_path, "seconds = 1\nactivities = { rtt-churn = 1 }\n", 2, "activities.rtt-churn", 1,
            "an activity with something to work on")


@pytest.mark.parametrize("written, shown", [("3", 3), ("3.0", 3), ("1e300", 1e300)])
def test_a_weight_with_nothing_to_work_on_is_shown_as_a_number_not_a_huge_integer(
        tmp_path: Path, written: str, shown: object) -> None:
    """A whole weight is named as an integer, but one past 2^53 as the float it is: 1e300 was
    named as an integer of 997 bits (its hex digits)."""
    err = refused(tmp_path, f"seconds = 1\nactivities = {{ run = 1, lifecycle = {written} }}\n" + OK_REALM, 2,
                  "activities.lifecycle", shown, "an activity with something to work on")
    assert type(err.value) is type(shown), str(err)    # int(1e300) == 1e300: the type tells them apart
    assert len(str(err)) < 400, str(err)


def test_lifecycle_realm_without_an_owner(tmp_path: Path) -> None:
    """A lifecycle realm when no CPU has a lifecycle weight: refused at its lifecycle key."""
    refused(tmp_path, HEAD + OK_REALM + "lifecycle = true\n", 6, "realm[0].lifecycle", True,
            "a CPU with a weight for 'lifecycle'")


def test_lifecycle_owner_left_out_by_cpus_says_so(tmp_path: Path) -> None:
    """The only CPU with a lifecycle weight is beyond --cpus: the error says how many CPUs the
    run has and that group ids beyond them are ignored. (It said only "no CPU has one", false of
    a file whose group names CPU 3, which 'workloads validate' accepts.)"""
    text = HEAD + '[[group]]\ncpus = [3]\nactivities = { lifecycle = 1 }\n' + OK_REALM + "lifecycle = true\n"
    load(tmp_path, text)
    for cpus, many in ((2, "2 CPUs"), (1, "1 CPU")):
        err = refused(tmp_path, text, 9, "realm[0].lifecycle", True, "a CPU with a weight for 'lifecycle'", cpus=cpus)
        assert err.expected.endswith(f"(the run has {many} and none has one; group CPU ids from {cpus} up are ignored)")


def test_lifetime_without_lifecycle(tmp_path: Path) -> None:
    """A lifetime on a realm that is not a lifecycle realm: refused at the key."""
    refused(tmp_path, HEAD + OK_REALM + "lifetime = 10\n", 6, "realm[0].lifetime", 10, "no lifetime unless lifecycle")


# -- realms ----------------------------------------------------------------------------------------

def test_duplicate_realm_names(tmp_path: Path) -> None:
    """Two realms with one name: the second is refused at its name's line."""
    refused(tmp_path, HEAD + OK_REALM + OK_REALM, 7, "realm[1].name", "a", "a name no other realm has")


def test_a_name_ending_in_a_newline_is_refused(tmp_path: Path) -> None:
    """name = "vm\\n" passed the name check (its pattern ended in $, which matches before a
    final newline): the realm ran, its report rows broke across lines and --save-tokens wrote
    files named "vm\\n-0-000001.cbor". A phase name had the same hole."""
    refused(tmp_path, HEAD + '[[realm]]\nname = "vm\\n"\nguest = "hello"\n', 4, "realm[0].name", "vm\n",
            "a name of 1..32 ASCII letters")
    text = OK_REALM + '[[phase]]\nname = "p\\n"\nseconds = 1\nactivities = { run = 1 }\n'
    refused(tmp_path, text, 5, "phase[0].name", "p\n", "a name of 1..32 ASCII letters")


@pytest.mark.parametrize("name", ["vm\u00e9", "\u00e9t\u00e9", "vm\uff11"])
def test_a_name_with_a_letter_beyond_ascii_says_ascii(tmp_path: Path, name: str) -> None:
    """A realm or phase name is ASCII: 'vm\u00e9' was refused as "a name of 1..32 letters, ...",
    which it is, so the error (and the doc) now say ASCII letters."""
    realm = HEAD + f'[[realm]]\nname = "{name}"\nguest = "hello"\n'
    refused(tmp_path, realm, 4, "realm[0].name", name, "a name of 1..32 ASCII letters, digits")
    phase = OK_REALM + f'[[phase]]\nname = "{name}"\nseconds = 1\nactivities = {{ run = 1 }}\n'
    refused(tmp_path, phase, 5, "phase[0].name", name, "a name of 1..32 ASCII letters, digits")


@pytest.mark.parametrize(("written", "value", "hint"), [('"0x10"', "0x10", "(a number, not a string: write 0x10)"),
                                                   ('"16"', "16", "(a number, not a string: write 16)"),
                                                   ("16.0", 16.0, "(an integer, not a float: write 16)")])
def test_a_constant_written_as_a_string_names_the_number_to_write(tmp_path: Path, written: str, value: object,
                                                                  hint: str) -> None:
    """constants = { WORK = "0x10" }, as an assembler writes it, was told only "an integer in
    0..2^64-1"; it now names the TOML number to write, unquoted (hex as written)."""
    text = HEAD + f'[[realm]]\nname = "vm"\nguest = "ripas-loop"\nconstants = {{ WORK = {written} }}\n'
    err = refused(tmp_path, text, 6, "realm[0].constants.WORK", value, "an integer in 0..2^64-1")
    assert err.expected.endswith(hint), str(err)


def test_a_guest_file_realm_too_big_for_memory_is_refused_at_its_ram(tmp_path: Path) -> None:
    """One realm of a guest file with ram = "64M" on host (62.8 MiB of NS DRAM): a guest file's
    RAM is counted whole, so its ram is what does not fit; the error named realm[0].instances = 1
    (not written, and already the least) and said "use fewer or smaller realms"."""
    (tmp_path / "g.s").write_text("start:\n    b .\n")
    text = HEAD + '[[realm]]\nname = "vm"\nguest = "g.s"\nram = "64M"\n'
    err = refused(tmp_path, text, 6, "realm[0].ram", 64 << 20, "realms that fit in the 62.8 MiB of NS DRAM")
    assert "a guest file's RAM is counted whole: use a smaller ram" in err.expected, str(err)
    # Two instances of a smaller one: fewer instances is the remedy, and is named.
    text = HEAD + '[[realm]]\nname = "vm"\nguest = "g.s"\nram = "40M"\ninstances = 2\n'
    refused(tmp_path, text, 7, "realm[0].instances", 2, "use fewer or smaller realms")


def test_a_guest_file_realm_too_big_for_memory_with_the_default_ram_says_ram_is_not_set(tmp_path: Path) -> None:
    """A guest file's realm that does not set ram, on a platform of 3 MiB of DRAM (1 MiB of it
    Secure): its default 2M is what does not fit. The error, on the [[realm]] header's line,
    said "use a smaller ram" beside "realm[0].ram = 2097152", a line the file does not have;
    it says ram is not set, that its default is counted, and where to set a smaller one."""
    host = (ROOT / "platform" / "host.toml").read_text()
    (tmp_path / "tiny.toml").write_text(host.replace('size = "64 MiB"', 'size = "3 MiB"')
                                        .replace("base = 0x83F0_0000", "base = 0x8020_0000"))
    (tmp_path / "g.s").write_text("start:\n    b .\n")
    text = 'platform = "tiny.toml"\n' + HEAD + '[[realm]]\nname = "vm"\nguest = "g.s"\n'
    err = refused(tmp_path, text, 4, "realm[0].ram", 2 << 20, "realms that fit in the 1.8 MiB of NS DRAM")
    assert err.expected.endswith("a guest file's RAM is counted whole, and realm[0] does not set ram (the line named "
                                 "is the realm's): its default, 2M, is counted; set a smaller ram in it, or a bigger "
                                 "platform"), str(err)
    text = text + 'ram = "1M"\n'
    assert load(tmp_path, text).realms[0].ram == 1 << 20


@pytest.mark.parametrize(("line", "key", "written", "value", "hint"), [
    (6, "realm[0].recs", '"2"', "2", "(a number, not a string: write 2)"),
    (6, "realm[0].recs", '" +3 "', " +3 ", "(a number, not a string: write 3)"),
    (6, "realm[0].recs", '"40"', "40", "(as a number it is 40, outside the range)"),
    (6, "realm[0].recs", "2.0", 2.0, "(an integer, not a float: write 2)"),
    (6, "realm[0].instances", "1e1", 10.0, "(an integer, not a float: write 10)"),
    (6, "realm[0].instances", "1e3", 1000.0, "(as an integer it is 1000, outside the range)"),
    (1, "iterations", '"100"', "100", "(a number, not a string: write 100)"),
])
def test_an_integer_written_as_a_string_or_float_names_the_integer_to_write(
        tmp_path: Path, line: int, key: str, written: str, value: object, hint: str) -> None:
    """seconds = "5" was told `(a number, not a string: write 5)`, but recs = "2", iterations =
    "100" or recs = 2.0 only that an integer was expected, beside a value that reads as one."""
    top, _, sub = key.rpartition(".")
    head = f"iterations = {written}\nactivities = {{ run = 1 }}\n" if not top else HEAD
    text = head + '[[realm]]\nname = "vm"\nguest = "hello"\n' + (f"{sub} = {written}\n" if top else "")
    err = refused(tmp_path, text, line, key, value, "an integer in 1..")
    assert err.expected.endswith(hint), str(err)


@pytest.mark.parametrize(("written", "value", "hint"), [("0x12", 18, '"0x12"'), ("0x123", 0x123, '"0x0123"'),
                                                   ("0x0", 0, '"0x00"')])
def test_an_rpv_written_as_an_integer_names_the_string_to_write(tmp_path: Path, written: str, value: int,
                                                                hint: str) -> None:
    """rpv = 0x12 is a TOML integer, shown as 18: the error said only that a hex string was expected,
    leaving the reader to find why 18 is there; it now names the quoted string to write."""
    text = HEAD + f'[[realm]]\nname = "vm"\nguest = "hello"\nrpv = {written}\n'
    err = refused(tmp_path, text, 6, "realm[0].rpv", value, "a hex string of at most 64 bytes")
    assert err.expected.endswith(f"an integer is no hex string: write it in quotes, {hint}"), str(err)


@pytest.mark.parametrize(("written", "value", "hint"), [
    ("1234", 1234, '1,234 in hex is "0x04d2" (and "1234" would be the bytes 0x12, 0x34)'),
    ("123", 123, '123 in hex is "0x7b"'),
    ("0", 0, '0 in hex is "0x00"'),
    ("+1_2", 12, '12 in hex is "0x0c" (and "12" would be the byte 0x12)'),
], ids=["even-digits", "odd-digits", "zero", "plus-underscore"])
def test_an_rpv_written_as_a_decimal_integer_is_told_it_is_bytes_in_hex(tmp_path: Path, written: str, value: int,
                                                                        hint: str) -> None:
    """rpv = 1234 was told `write it in quotes, "0x04d2"`: a string that does not look like what
    was written, with no word of why. A decimal is told the value is bytes written as hex digits,
    the decimal's hex form, and what its digits in quotes would be when they are hex bytes."""
    text = HEAD + f'[[realm]]\nname = "vm"\nguest = "hello"\nrpv = {written}\n'
    err = refused(tmp_path, text, 6, "realm[0].rpv", value, "a hex string of at most 64 bytes")
    assert err.expected.endswith("an integer is no hex string: the value is bytes, written as hex digits in quotes; "
                                 + hint), str(err)


@pytest.mark.parametrize("measure", ["a rpv = 12 b", "a rpv = _ b"], ids=["digits", "underscore"])
def test_an_rpv_hint_does_not_take_text_inside_a_string_for_the_value(tmp_path: Path, measure: str) -> None:
    """The decimal hint read the first `rpv = word` of the line, which may be inside another
    key's string: rpv = 0x1234 was told '(and "12" would be the byte 0x12)', or '"" would be the
    byte' for an underscore. The text is taken only when it is the value."""
    text = HEAD + f'realm = [{{ name = "vm", guest = "hello", measure = "{measure}", rpv = 0x1234 }}]\n'
    err = refused(tmp_path, text, 3, "realm[0].rpv", 0x1234, "a hex string of at most 64 bytes")
    assert err.expected.endswith('an integer is no hex string: write it in quotes, "0x1234"'), str(err)


@pytest.mark.parametrize("rpv", ["0x123", "zz", "0x" + "ab" * 65, "0x_", "_", "_ab", "ab_", "a__b", "0x_ab"])
def test_bad_rpv(tmp_path: Path, rpv: str) -> None:
    """An RPV with an odd number of hex digits, one that is not hex, or one of 65 bytes: refused.
    So is an underscore that is not between two digits ("0x_", "_ab", "a__b"): these were read
    with their underscores dropped, "0x_" as the empty RPV, where the docs allow "_" between
    digits only."""
    refused(tmp_path, HEAD + OK_REALM + f'rpv = "{rpv}"\n', 6, "realm[0].rpv", rpv, "a hex string of at most 64 bytes")


@pytest.mark.parametrize(("rpv", "value"), [("0x72_6d_6d", b"rmm"), ("726D6D", b"rmm"), (" 0x726d6d ", b"rmm"),
                                            ("0x", b""), ("", b"")])
def test_rpv_forms(tmp_path: Path, rpv: str, value: bytes) -> None:
    """The RPV forms the docs allow: "0x" or none, either case, "_" between two digits, blanks
    around; "0x" and "" are the empty RPV."""
    assert load(tmp_path, HEAD + OK_REALM + f'rpv = "{rpv}"\n').realms[0].rpv == value


def test_bad_hash_name(tmp_path: Path) -> None:
    """A hash algorithm the RMM does not offer (sha384): refused, naming the two it does."""
    refused(tmp_path, HEAD + OK_REALM + 'hash = "sha384"\n', 6, "realm[0].hash", "sha384", "one of 'sha256' or 'sha512'")


def test_too_many_realms_for_the_run_queue(tmp_path: Path) -> None:
    """60 realm instances alive at once, more than the run queue's 54: refused at the first realm's
    instances, saying how many the run would have."""
    text = HEAD + OK_REALM + "instances = 40\n" + OK_REALM.replace('"a"', '"b"') + "instances = 20\n"
    err = refused(tmp_path, text, 6, "realm[0].instances", 40, "at most 54 realms alive at once")
    assert "this run would have 60" in err.expected


def test_more_realm_entries_than_the_run_queue_holds_are_refused_before_any_guest_is_assembled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """60 [[realm]] entries: each has at least one instance, so the file can never fit the run
    queue's 54 realms; it is refused at the 55th entry, naming it and the count, before any
    guest is assembled (3,000 entries took about 21 s to refuse, every guest assembled first)."""
    assembled: list[str] = []
    real_image = spec.programs.image
    monkeypatch.setattr(spec.programs, "image", lambda *a, **k: assembled.append("x") or real_image(*a, **k))
    text = HEAD + "".join(OK_REALM.replace('"a"', f'"r{i}"') for i in range(60))
    err = refused(tmp_path, text, 3 + 3 * 54, "realm[54]", "r54", "at most 54 [[realm]] entries")
    assert "this file has 60" in err.expected and assembled == []


def test_a_55th_realm_entry_without_a_name_is_shown_as_the_entry(tmp_path: Path) -> None:
    """55 [[realm]] entries, the last with no name: the refusal at realm[54] shows that entry as
    the file writes it ({ guest = ... }), not Python's None, which the file never says (the
    count check showed the entry's name, and an entry without one as "realm[54] = None")."""
    text = HEAD + "".join(OK_REALM.replace('"a"', f'"r{i}"') for i in range(54)) + '[[realm]]\nguest = "hello"\n'
    err = refused(tmp_path, text, 3 + 3 * 54, "realm[54]", {"guest": "hello"}, "at most 54 [[realm]] entries")
    assert "None" not in str(err) and "realm[54] = { guest = 'hello' }: expected" in str(err), str(err)


def test_too_many_cpus_for_the_platform(tmp_path: Path) -> None:
    """cpus = 8 on the 4-CPU host platform: refused, naming the platform and its CPU count, and
    that --cpus runs the file on fewer (a bundled workload run with --platform on a smaller
    platform sent the user to edit a file that is not theirs)."""
    err = refused(tmp_path, "cpus = 8\n" + HEAD + OK_REALM, 1, "cpus", 8,
                  "an integer in 1..4 (platform 'host' has 4 CPUs)")
    assert err.expected.endswith("; `rmm-mp run --cpus N` runs it on fewer"), str(err)


def test_too_much_memory_for_the_platform(tmp_path: Path) -> None:
    """20 resident realms churned by 4 CPUs need 2 MiB of backing per CPU and realm: more than
    the 63 MiB of NS DRAM of `host`."""
    text = "seconds = 1\nactivities = { run = 1, rtt-churn = 1 }\n" + OK_REALM + "instances = 20\n"
    err = refused(tmp_path, text, 6, "realm[0].instances", 20, "of NS DRAM platform 'host' has")
    assert "the run would need up to 163.5 MiB (" in err.expected and "rtt-churn windows 161.2 MiB" in err.expected


def test_too_much_memory_for_a_large_platform_has_thousands_separators(tmp_path: Path) -> None:
    """40 realms churned by the 64 CPUs of the 4 GiB `large` platform need some 5 GiB of
    rtt-churn windows: the sizes of the error have thousands separators, as every other size
    of the tool ("4,079.5 MiB"); they read "4079.5 MiB" and "5164.5 MiB"."""
    text = ('platform = "large"\nseconds = 1\nactivities = { run = 1, rtt-churn = 1 }\n' + OK_REALM
            + "instances = 40\n")
    err = refused(tmp_path, text, 7, "realm[0].instances", 40, "realms that fit in the 4,079.5 MiB of NS DRAM "
                                                                "platform 'large' has")
    assert "the run would need up to 5,164.5 MiB (realms 4.5 MiB, rtt-churn windows 5,160.0 MiB)" in err.expected


def holes_platform(tmp_path: Path, dram: str, secure: list[int]) -> None:
    """`host` as holes.toml with this [dram] table and a 4 KiB Secure range at each PA of ``secure``."""
    text = (ROOT / "platform" / "host.toml").read_text().replace('name = "host"', 'name = "holes"')
    head, _, tail = text.partition("[dram]")
    regions = "".join(f'[[secure]]\nname = "hole{i}"\nbase = {pa:#x}\nsize = "4 KiB"\n\n' for i, pa in enumerate(secure))
    (tmp_path / "holes.toml").write_text(f"{head}[dram]\n{dram}\n\n{regions}[features]{tail.split('[features]', 1)[1]}")


RTT_CHURN_ONE_CPU = 'platform = "holes.toml"\ncpus = 1\nseconds = 1\nactivities = { run = 1, rtt-churn = 1 }\n' + OK_REALM


@pytest.mark.parametrize("dram, secure", [
    ('base = 0x8000_1000\nsize = "16 MiB"', []),
    ('base = 0x8000_0000\nsize = "8 MiB"', [0x8010_0000, 0x8030_0000, 0x8050_0000, 0x8070_0000]),
])
def test_rtt_churn_windows_need_aligned_2mib_runs(tmp_path: Path, dram: str, secure: list[int]) -> None:
    """An rtt-churn window is backed by a 2 MiB run aligned to 2 MiB. DRAM with room for its
    granules but not on a 256 KiB boundary (the allocator has no run longer than a bitmap word
    there), or with a 4 KiB Secure range in every 2 MiB block: refused before the run. Both
    were accepted, and the run failed at its start (AllocatorError, OutOfGranules)."""
    holes_platform(tmp_path, dram, secure)
    err = refused(tmp_path, RTT_CHURN_ONE_CPU, 5, "realm[0].instances", 1,
                  "each needs a 2 MiB run of NS DRAM aligned to 2 MiB")
    assert "the run would need 1 " in err.expected and "the platform has 0 " in err.expected


def test_rtt_churn_windows_fit_one_aligned_2mib_block(tmp_path: Path) -> None:
    """The control: 8 MiB from a 2 MiB boundary with Secure holes in three of its four blocks
    leaves one run, enough for one CPU's window in one realm."""
    holes_platform(tmp_path, 'base = 0x8000_0000\nsize = "8 MiB"', [0x8010_0000, 0x8030_0000, 0x8050_0000])
    load(tmp_path, RTT_CHURN_ONE_CPU)


@pytest.mark.parametrize("cpus", [32, 64])
def test_the_reserve_grows_with_the_cpus_above_32(tmp_path: Path, cpus: int) -> None:
    """Beyond the memory bound each CPU may hold 2 granules for a moment (a page and a spare RTT
    of a fault another CPU wins). The fixed reserve of 64 covered that up to 32 CPUs only: at
    64 CPUs a workload filling DRAM less 64 granules was accepted; it needs 128 now."""
    text = (ROOT / "platform" / "host.toml").read_text().replace('name = "host"', 'name = "many"')
    text = text.replace("cpus = 4", "cpus = 64").replace("[[secure]]", "[[mmio]]").replace("0x83F0_0000", "0x1000_0000")
    platform = tmp_path / "many.toml"
    workload = f'platform = "many.toml"\ncpus = {cpus}\nseconds = 1\nactivities = {{ run = 1, delegate-churn = 1 }}\n'
    platform.write_text(text)
    need = _memory(load(tmp_path, workload + OK_REALM))[0]
    dram = 'size = "64 MiB"'
    platform.write_text(text.replace(dram, f"size = {(need + 2 * cpus) * 4096}"))
    load(tmp_path, workload + OK_REALM)
    platform.write_text(text.replace(dram, f"size = {(need + 2 * cpus - 1) * 4096}"))
    refused(tmp_path, workload + OK_REALM, 5, "realm[0].instances", 1, "realms that fit in")
    platform.write_text(text.replace(dram, f"size = {(need + 64) * 4096}"))
    if cpus > 32:
        refused(tmp_path, workload + OK_REALM, 5, "realm[0].instances", 1, "realms that fit in")
    else:
        load(tmp_path, workload + OK_REALM)


def test_activities_that_do_not_fit_are_named_as_such(tmp_path: Path) -> None:
    """With no [[realm]], what does not fit is the activities' own pages (here 4 CPUs' ripas-churn
    realms and delegate-churn pools in 1 MiB of NS DRAM): the error names the activities used,
    not a size as if it were their value, and does not talk of realms."""
    text = (ROOT / "platform" / "host.toml").read_text().replace('name = "host"', 'name = "tiny"')
    text = text.replace('size = "64 MiB"', 'size = "2 MiB"').replace("base = 0x83F0_0000", "base = 0x8010_0000")
    (tmp_path / "tiny.toml").write_text(text)
    err = refused(tmp_path, 'seconds = 1\ncpus = 4\nplatform = "tiny.toml"\n'
                            'activities = { ripas-churn = 1, delegate-churn = 1 }\n', 4,
                  "activities", "ripas-churn, delegate-churn",
                  "activities whose pages fit in the 0.8 MiB of NS DRAM platform 'tiny'")
    assert "ripas-churn realms" in err.expected and "realms that fit" not in err.expected


def small_platform(tmp_path: Path) -> None:
    """`host` with S2SZ 40, SHA-256 only and MAX_RECS 3."""
    text = (ROOT / "platform" / "host.toml").read_text()
    text = text.replace('name = "host"', 'name = "small"').replace("s2sz = 48", "s2sz = 40")
    text = text.replace('hash_algorithms = ["sha-256", "sha-512"]', 'hash_algorithms = ["sha-256"]')
    (tmp_path / "small.toml").write_text(text.replace("max_recs_order = 10", "max_recs_order = 2"))


@pytest.mark.parametrize("line, key, value, expected", [
    ("ipa_width = 44", "realm[0].ipa_width", 44, "at most 40 (RMI_FEATURES S2SZ of platform 'small')"),
    ('hash = "sha512"', "realm[0].hash", "sha512", "a hash algorithm platform 'small' offers: sha256"),
    ("recs = 4", "realm[0].recs", 4, "at most 3 (MAX_RECS of platform 'small')"),
])
def test_realm_beyond_the_platforms_features(tmp_path: Path, line: str, key: str, value: object, expected: str) -> None:
    """A platform file next to the workload (platform = "small.toml") whose RMI_FEATURES are smaller."""
    small_platform(tmp_path)
    refused(tmp_path, 'platform = "small.toml"\n' + HEAD + OK_REALM.replace('"hello"', '"smp-boot"') + line + "\n",
            7, key, value, expected)


@pytest.mark.parametrize("width, line", [("", 4), ("ipa_width = 33\n", 7)], ids=["default", "33"])
def test_platform_with_s2sz_32_fits_no_realm(tmp_path: Path, width: str, line: int) -> None:
    """On a platform with S2SZ 32 (valid: RMM 1.0 takes 32-bit realms) no workload realm fits,
    as its RAM starts at IPA 2 GiB: the error says so, naming features.s2sz, rather than
    "expected at most 32" for an ipa_width whose range starts at 33. A realm-less workload
    still validates there."""
    text = (ROOT / "platform" / "host.toml").read_text().replace("s2sz = 48", "s2sz = 32")
    (tmp_path / "narrow.toml").write_text(text.replace('name = "host"', 'name = "narrow"'))
    err = refused(tmp_path, 'platform = "narrow.toml"\n' + HEAD + OK_REALM + width, line, "realm[0].ipa_width",
                  33 if width else 40, "which is empty: platform 'narrow' has features.s2sz = 32")
    assert "at most 32" not in err.expected and "no realm of a workload fits this platform" in err.expected
    assert load(tmp_path, 'platform = "narrow.toml"\nseconds = 1\nactivities = { delegate-churn = 1 }\n').file


@pytest.mark.parametrize("old, new, expected", [
    ("s2sz = 48", "s2sz = 39", "platform 'narrow' has S2SZ 39"),
    ('hash_algorithms = ["sha-256", "sha-512"]', 'hash_algorithms = ["sha-512"]',
     "platform 'narrow' does not offer SHA-256"),
], ids=["s2sz-39", "sha512-only"])
def test_ripas_churn_beyond_the_platforms_features(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """ripas-churn builds each CPU a 40-bit SHA-256 realm of its own: on a platform with a
    smaller S2SZ or without SHA-256 the file is refused at the activity's weight. It validated,
    and then every CPU doing ripas-churn failed at run time with a ValueError from RealmSpec
    (a "CPU process failed" report, exit status 1)."""
    text = (ROOT / "platform" / "host.toml").read_text().replace('name = "host"', 'name = "narrow"')
    assert old in text
    (tmp_path / "narrow.toml").write_text(text.replace(old, new))
    text = 'platform = "narrow.toml"\nseconds = 1\nactivities = { delegate-churn = 1, ripas-churn = 2 }\n'
    err = refused(tmp_path, text, 3, "activities.ripas-churn", 2, "an activity the platform can run: ripas-churn builds each CPU a "
                  "realm of ipa_width 40 measured with SHA-256")
    assert expected in err.expected, str(err)
    # Without ripas-churn the same platform runs the file.
    load(tmp_path, 'platform = "narrow.toml"\nseconds = 1\nactivities = { delegate-churn = 1 }\n')


def test_cpus_beyond_a_one_cpu_platform(tmp_path: Path) -> None:
    """cpus = 2 in the file, or --cpus 2, on a platform of one CPU: refused, saying it has
    "1 CPU" (it said "1 CPUs")."""
    text = (ROOT / "platform" / "host.toml").read_text().replace('name = "host"', 'name = "one"')
    (tmp_path / "one.toml").write_text(text.replace("cpus = 4", "cpus = 1", 1))
    refused(tmp_path, 'platform = "one.toml"\ncpus = 2\n' + HEAD + OK_REALM, 2, "cpus", 2,
            "an integer in 1..1 (platform 'one' has 1 CPU)")
    with pytest.raises(ConfigError) as info:
        load(tmp_path, 'platform = "one.toml"\n' + HEAD + OK_REALM, cpus=2)
    assert str(info.value) == ("command line: --cpus = 2: expected the number of CPU processes (platform 'one' has "
                               "1 CPU), an integer in 1..1")


def test_unknown_platform_in_the_file(tmp_path: Path) -> None:
    """A misspelt platform name in the file: refused at its line as no bundled platform."""
    refused(tmp_path, 'platform = "hots"\n' + HEAD + OK_REALM, 1, "platform", "hots", "a bundled platform")


def test_no_length_anywhere(tmp_path: Path) -> None:
    """No seconds or iterations in the file, its phases or the command line: refused with no line,
    pointing at --seconds / --iterations."""
    refused(tmp_path, "activities = { run = 1 }\n" + OK_REALM, None, "seconds",
            MISSING, "or --seconds / --iterations")


# -- the command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("options, key, value, expected", [
    ({"cpus": 9}, "--cpus", 9, "an integer in 1..4"),
    ({"cpus": 0}, "--cpus", 0, "an integer in 1..4"),
    ({"seconds": 0.0}, "--seconds", 0.0, "a number of at least 0.000000001"),
    ({"seconds": 5e-324}, "--seconds", 5e-324, "a number of at least 0.000000001"),
    ({"iterations": 0}, "--iterations", 0, "an integer in 1..1,000,000,000,000"),
    ({"seconds": 1.0, "iterations": 5}, "--iterations", 5, "either --seconds or --iterations"),
    ({"seed": -1}, "--seed", -1, "an integer in 0..18,446,744,073,709,551,615"),
    ({"platform": "nope"}, "--platform", "nope", "a bundled platform (fvp, host, large)"),
])
def test_command_line_options_are_checked_like_the_file(tmp_path: Path, options: dict[str, object], key: str,
                                                        value: object, expected: str) -> None:
    """Each bad option value is a ConfigError from "command line" naming the option, the value and what
    was expected, with no line, and no shared memory is made."""
    (tmp_path / "w.toml").write_text(HEAD + OK_REALM)
    with pytest.raises(ConfigError) as info:
        resolve(spec.load(str(tmp_path / "w.toml")), **options)  # type: ignore[arg-type]
    err = info.value
    assert (err.source, err.key, err.value, err.line) == ("command line", key, value, None), str(err)
    assert expected in err.expected and str(err).startswith(f"command line: {key} = ")
    assert segments() == []


def test_unknown_workload_name_lists_the_bundled_ones() -> None:
    """A misspelt workload name suggests the close bundled one and lists the others."""
    with pytest.raises(ConfigError) as info:
        spec.load("quickstrat")
    assert 'did you mean "quickstart"' in str(info.value) and "delegate-churn" in str(info.value)


# -- what a valid file becomes ---------------------------------------------------------------------

def test_defaults_overrides_and_weights(tmp_path: Path) -> None:
    """Defaults fill every realm key; a group overrides the table for its CPUs; CPU ids past the
    run's CPUs are ignored; --cpus / --seed / --seconds replace the file's values and are listed."""
    text = ("seconds = 4\nseed = 9\nactivities = { run = 3, map-shared = 1 }\n" + OK_REALM +
            '[[group]]\ncpus = "1,3-7"\nactivities = { run = 1 }\n')
    w = load(tmp_path, text)
    t = w.realms[0]
    assert (w.cpus, w.seed, w.seconds, w.iterations, w.platform.name) == (4, 9, 4.0, None, "host")
    assert (t.recs, t.ram, t.ipa_width, t.hash, t.rpv, t.measure, t.instances, t.lifecycle, t.teardown) == \
        (1, 2 << 20, 40, "sha256", b"", True, 1, False, "v12")
    assert [dict(wt) for wt in w.phases[0].weights] == [{"run": 3.0, "map-shared": 1.0}, {"run": 1.0},
                                                        {"run": 3.0, "map-shared": 1.0}, {"run": 1.0}]
    w = load(tmp_path, text, cpus=2, seed=5, iterations=100)
    assert (w.cpus, w.seed, w.seconds, w.iterations, w.overrides) == (2, 5, None, 100, ("--cpus", "--iterations", "--seed"))
    # A file that sets cpus itself has no override to list when no option is given.
    assert load(tmp_path, "cpus = 3\n" + text).overrides == ()
    assert load(tmp_path, "cpus = 3\n" + text, seed=1).overrides == ("--seed",)


def test_phases_keep_their_proportions_under_seconds(tmp_path: Path) -> None:
    """Phases of 3 s and 1 s under --seconds 2 get 1.5 s and 0.5 s; under --iterations 8 they get 6 and
    2 steps and no time."""
    text = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\nseconds = 3\n'
            '[[phase]]\nname = "b"\nseconds = 1\nactivities = { delegate-churn = 2 }\n')
    w = load(tmp_path, text, seconds=2.0)
    assert [(p.name, p.seconds) for p in w.phases] == [("a", 1.5), ("b", 0.5)]
    assert w.seconds == 2.0
    w = load(tmp_path, text, iterations=8)
    assert [(p.name, p.seconds, p.iterations) for p in w.phases] == [("a", None, 6), ("b", None, 2)]


def test_counted_phases_under_seconds_are_timed_only(tmp_path: Path) -> None:
    """--seconds on a file of counted phases times them: each phase gets its share of the time and
    no step count (the report's limit and JSON `iterations` would otherwise name counts that
    never bound the run)."""
    text = ('activities = { delegate-churn = 1 }\n[[phase]]\nname = "a"\niterations = 100\n'
            '[[phase]]\nname = "b"\niterations = 300\n')
    w = load(tmp_path, text, seconds=2.0)
    assert [(p.name, p.seconds, p.iterations) for p in w.phases] == [("a", 0.5, None), ("b", 1.5, None)]
    assert (w.seconds, w.iterations) == (2.0, None)


def test_phases_share_iterations_exactly(tmp_path: Path) -> None:
    """--iterations N gives the run exactly N steps per CPU: the phases' rounded shares add up
    (largest remainders first), each phase keeps at least one step, and fewer steps than phases
    is refused by name rather than silently lengthened."""
    phases = "".join(f'[[phase]]\nname = "{name}"\nseconds = {sec}\n' for name, sec in
                     (("a", 3), ("b", 3), ("c", 2), ("d", 2)))
    text = "activities = { delegate-churn = 1 }\n" + phases
    for steps, expected in ((41, [13, 12, 8, 8]), (7, [2, 2, 2, 1]), (4, [1, 1, 1, 1]), (1000, [300, 300, 200, 200])):
        w = load(tmp_path, text, iterations=steps)
        assert [p.iterations for p in w.phases] == expected
        assert w.iterations == steps
    skewed = ("activities = { delegate-churn = 1 }\n[[phase]]\nname = \"long\"\niterations = 100\n"
              "[[phase]]\nname = \"x\"\niterations = 1\n[[phase]]\nname = \"y\"\niterations = 1\n")
    assert [p.iterations for p in load(tmp_path, skewed, iterations=4).phases] == [2, 1, 1]
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, iterations=3)
    assert (info.value.key, info.value.value) == ("--iterations", 3)
    assert str(info.value).startswith("command line: --iterations = 3: expected at least 4: one activity step")
    assert segments() == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=12), st.integers(0, 100_000))
def test_apportion_adds_up_and_stays_within_a_step(shares: list[int], extra: int) -> None:
    """Property: the parts add up to the steps, none is below 1, and where every exact share is
    at least one step each part is its exact share rounded down or up."""
    steps = len(shares) + extra
    parts = _apportion(steps, [float(x) for x in shares])
    assert sum(parts) == steps and min(parts) >= 1
    exact = [steps * x / sum(shares) for x in shares]
    if min(exact) >= 1:
        assert all(abs(part - e) < 1 for part, e in zip(parts, exact))


def test_apportion_over_fifteen_thousand_phases_is_made_at_once() -> None:
    """10^12 steps (`--iterations`' most) over 15,000 equal phases: 66,666,666 or 66,666,667 each,
    the 10,000 extra steps to the first 10,000 phases (earlier first on a tie), in well under a
    second. The extra steps were handed out one at a time, each after a search of every phase
    and a new sum of the parts: 36 s for `rmm-mp workloads show` of such a file. Run in a child
    with a 10 s limit, so that a regression fails rather than hangs."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    check = ("from rmm_mp.workload.resolve import _apportion\n"
             "parts = _apportion(10**12, [1.0] * 15_000)\n"
             "print(sum(parts), parts[:10_000] == (66_666_667,) * 10_000, set(parts[10_000:]))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)}, timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("apportioning took more than 10 s")
    assert (proc.returncode, proc.stdout) == (0, "1000000000000 True {66666666}\n"), proc.stderr


def test_lifecycle_instances_are_shared_round_robin(tmp_path: Path) -> None:
    """Lifecycle instances go to the CPUs with a lifecycle weight, in turn; attest ones to the
    CPUs with an attest weight."""
    text = ("seconds = 1\nactivities = { run = 1 }\n[[group]]\ncpus = [1, 2]\nactivities = { lifecycle = 1 }\n"
            "[[group]]\ncpus = [3]\nactivities = { attest = 1 }\n"
            + OK_REALM + "instances = 3\nlifecycle = true\n"
            + '[[realm]]\nname = "t"\nguest = "attest"\nram = "4M"\ninstances = 2\nlifecycle = true\n')
    w = load(tmp_path, text)
    assert w.owners == (((0, 0), 1), ((0, 1), 2), ((0, 2), 1), ((1, 0), 3), ((1, 1), 3))


def test_locate_follows_nested_arrays_of_tables() -> None:
    """locate gives the line of a key inside [[phase.group]] tables of either phase, of an inline
    activity and of a [realm.constants] key; a missing key gives its table's header, an absent one None."""
    text = ('x = 1\n[[phase]]\nname = "a"\n[[phase.group]]\ncpus = [0]\n[[phase]]\nname = "b"\n'
            '[[phase.group]]\ncpus = [1]\nactivities = { run = 1, "rtt-churn" = 2 }\n[[realm]]\n[realm.constants]\nW = 1\n')
    assert locate(text, "x") == 1
    assert locate(text, "phase[1].group[0].cpus") == 9
    assert locate(text, "phase[1].group[0].activities.rtt-churn") == 10
    assert locate(text, "phase[0].group[0].cpus") == 5
    assert locate(text, "realm[0].constants.W") == 13
    assert locate(text, "phase[1].missing") == 6
    assert locate(text, "absent") is None


def test_locate_finds_dotted_keys() -> None:
    """TOML's dotted keys (activities.run = 1, constants."W" = 2) are found on their own line,
    also when the key looked for names the table they build; they used to give no line (top
    level) or the enclosing table's header."""
    text = ('seconds = 1\nactivities.run = 1\nactivities . "rtt-churn" = 2\n[[realm]]\nname = "a"\n'
            'constants."W" = 1\nconstants.X = { Y = 3 }\n')
    assert locate(text, "activities.run") == 2
    assert locate(text, "activities.rtt-churn") == 3
    assert locate(text, "activities") == 2
    assert locate(text, "realm[0].constants.W") == 6
    assert locate(text, "realm[0].constants.X.Y") == 7
    assert locate(text, "realm[0].constants.Z") == 6        # absent: the line that builds its table
    assert locate(text, "realm[0].name") == 5


def test_locate_finds_elements_of_an_array_of_inline_tables() -> None:
    """realm = [{...}, {...}] is the same TOML as two [[realm]] tables: each element's keys are
    on the line where it opens, on one line or over several (braces in strings do not count)."""
    one = 'seconds = 1\nrealm = [{ name = "{a}", guest = "hello" }, { name = "b", recs = 0 }]\n'
    assert locate(one, "realm[1].recs") == 2 and locate(one, "realm[0].name") == 2
    several = 'seconds = 1\nrealm = [\n  { name = "{", guest = "hello" },  # {\n\n  { name = "b", recs = 0 },\n]\nx = 1\n'
    assert locate(several, "realm[0].guest") == 3
    assert locate(several, "realm[1].recs") == 5
    assert locate(several, "realm[2].recs") is None              # no third element
    assert locate(several, "x") == 7


def test_locate_skips_multi_line_strings_and_reads_literal_keys() -> None:
    """Lines inside a multi-line string are text, not headers or keys (a description holding
    "[[realm]]" and "recs = 5" put a realm[0].recs error on its line 3); a key in single
    quotes ('recs' = 0, TOML's literal string) is a key (the error named the table's header);
    and only \\n ends a line, as for tomllib (a U+2028 inside a string shifted every line after
    it by one)."""
    text = ('description = """\n[[realm]]\nrecs = 5\n"""\nnote = \'\'\'\n[x]\n\'\'\'\n'
            '[[realm]]\nname = "a\u2028b"\n\'recs\' = 0\n')
    assert locate(text, "realm[0].recs") == 10
    assert locate(text, "realm[0].name") == 9
    assert locate(text, "realm[0]") == 8
    assert locate(text, "x") is None
    assert locate(text, "note") == 5


def test_a_realm_after_a_multi_line_description_names_its_line(tmp_path: Path) -> None:
    """A "[[realm]]" and "recs = 5" on lines of a multi-line description are text: the error of
    the real realm's recs names the real line. The description spans lines 1-4 of the file but
    is one line of text (each line ends in a backslash, which TOML drops with the newline; the
    "#" makes line 2 read as a header followed by a comment), so it is a valid description: the
    file with a good recs loads, and the error is the realm's whichever key is checked first."""
    description = 'description = """\\\n[[realm]] # \\\nrecs = 5\\\n"""\n'
    good = load(tmp_path, description + HEAD + OK_REALM + "recs = 1\n")
    assert good.file.description == "[[realm]] # recs = 5"
    refused(tmp_path, description + HEAD + OK_REALM + "recs = 0\n", 10, "realm[0].recs", 0, "an integer in 1..32")


def test_bad_value_in_an_inline_realm_names_its_line(tmp_path: Path) -> None:
    """A bad recs in the second element of an array of inline realm tables: refused at that element's
    line."""
    text = HEAD + 'realm = [\n  { name = "a", guest = "hello" },\n  { name = "b", guest = "hello", recs = 0 },\n]\n'
    refused(tmp_path, text, 5, "realm[1].recs", 0, "an integer in 1..32")


def test_misspelt_dotted_activity_names_its_line(tmp_path: Path) -> None:
    """activities.runn = 1 as a dotted key: refused at its own line, suggesting "run"."""
    refused(tmp_path, 'seconds = 1\nactivities.runn = 1\n' + OK_REALM, 2, "activities.runn", 1,
            'a known activity (did you mean "run"?)')


def test_every_bundled_workload_validates_and_describes() -> None:
    """Each workloads/*.toml resolves on its platform with its own values, and `show`'s text
    names every realm and phase."""
    from rmm_mp.workload.describe import describe
    names = spec.bundled()
    assert {"quickstart", "kvm-lifecycle", "smp-realms", "contention", "attestation-storm", "churn",
            "delegate-churn"} <= set(names)
    for name in names:
        w = resolve(spec.load(name))
        text = describe(w)
        realms, phases = (part.splitlines() for part in text.split("\nphases:\n"))
        # Whole names, each at the start of its own line in its own section: a bare `name in
        # text` took phase "ripas" (churn) from "guest ripas-loop" and "shared" from "map-shared".
        assert all(any(line.startswith(f"  {t.name}: ") for line in realms) for t in w.realms), text
        assert all(any(line.startswith(f"  {p.name}: ") for line in phases) for p in w.phases), text
        assert w.file.description
    assert segments() == []


def test_a_run_counts_the_nanoseconds_its_length_writes() -> None:
    """A length written to the nanosecond is that many nanoseconds to the CPUs (spec.nanoseconds,
    which the engine's phase deadlines and `workloads show` use): the engine truncated the float
    product, and 0.000000015 s (14.999999999999998 ns as a float product) ran 14 ns, as did about
    one in 30 lengths written with nine decimals."""
    import random
    for written, ns in (("0.000000015", 15), ("1e-9", 1), ("0.000000247", 247), ("604799.999999999", 604799999999999),
                        ("604800", 604800 * 10**9), ("3.3333333333", 3333333333)):
        assert spec.nanoseconds(float(written)) == ns, written
    rng = random.Random(16)
    for _ in range(20000):
        whole, fraction = rng.randrange(604800), rng.randrange(10**9)
        assert spec.nanoseconds(float(f"{whole}.{fraction:09d}")) == whole * 10**9 + fraction, (whole, fraction)


@pytest.mark.parametrize("seconds, shown", [(float("inf"), "Infinity"), (float("nan"), "NaN"),
                                            (1e300, f"{10**300:,}"), (-5.0, "-5"), (0.0, "0")])
def test_seconds_text_of_a_length_with_no_nanosecond_count(seconds: float, shown: str) -> None:
    """describe.seconds_text of a length no run has (infinite, not a number, past 1.8e299 s)
    reads as it did before the nanosecond check: that check's round() raised OverflowError and
    ValueError on them."""
    from rmm_mp.workload.describe import seconds_text
    assert seconds_text(seconds) == shown


@pytest.mark.parametrize(("key", "written", "value"), [("seed", "12345678901234567890.0", 12345678901234567890.0),
                                                      ("seed", "9007199254740993.0", float(2**53)),
                                                      ("iterations", "1e19", 1e19)])
def test_a_float_past_2_to_the_53_gets_no_integer_to_write(tmp_path: Path, key: str, written: str,
                                                           value: float) -> None:
    """A float beyond 2^53 no longer holds every integer: seed = 12345678901234567890.0 reads as
    ...7168, and the error told the reader to write 12345678901234567168, a number not written."""
    err = refused(tmp_path, f"{key} = {written}\nactivities = {{ run = 1 }}\n" + OK_REALM, 1, key, value,
                  "an integer in ")
    assert "write" not in err.expected and "it is" not in err.expected, str(err)


def test_an_rpv_integer_too_long_for_the_string_gets_no_string_to_write(tmp_path: Path) -> None:
    """rpv = 0x<65 bytes> as a TOML integer: the hint named a 65-byte hex string to write, which
    is refused in turn (at most 64 bytes); only an integer that fits is told its string."""
    written = "0x" + "ab" * 65
    text = HEAD + f'[[realm]]\nname = "vm"\nguest = "hello"\nrpv = {written}\n'
    err = refused(tmp_path, text, 6, "realm[0].rpv", int(written, 16), "a hex string of at most 64 bytes")
    assert "write it in quotes" not in err.expected, str(err)
    fits = "0x" + "ab" * 64
    err = refused(tmp_path, HEAD + f'[[realm]]\nname = "vm"\nguest = "hello"\nrpv = {fits}\n', 6, "realm[0].rpv",
                  int(fits, 16), "a hex string of at most 64 bytes")
    assert err.expected.endswith(f'write it in quotes, "{fits}"'), str(err)
