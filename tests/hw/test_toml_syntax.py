"""How a TOML syntax error in a workload or platform file reads (rmm_mp.hw.tomlparse.loads):
``FILE:LINE: (file) = <the parser's reason>: expected <what>``, the line once, the reason in
plain words with a character escaped once, and an unterminated string, array or inline table
named at the line where it opens (tomllib names the end of the document)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmm_mp.hw import platform as plat
from rmm_mp.hw.tomlparse import loads
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.workload import spec


def _refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loads(text, "f.toml")
    return info.value


def test_an_illegal_newline_in_a_string_reads_once_escaped_with_its_column() -> None:
    """tomllib's "Illegal character '\\n' (at line 4, column 9)" was shown as a quoted value, its
    backslash doubled and its line said twice; the string's opening column is named."""
    err = _refused('seconds = 1\n\n[x]\na = "abc\nb = 1\n')
    assert err.line == 4 and err.key == "(file)"
    assert str(err) == ("f.toml:4: (file) = illegal character '\\n' at column 9: expected valid TOML: the string "
                        "opened by \" at column 5 closed by \" on its line (a string of several lines opens and "
                        "closes with \"\"\" or ''')")
    assert "line 4" not in str(err) and "\\\\" not in str(err)


@pytest.mark.parametrize("text, line, opener, column", [
    ('seconds = 1\ndescription = """abc\nmore\n', 2, '"""', 15),
    ("seconds = 1\ndescription = '''abc\n\nmore", 2, "'''", 15),
    ("seconds = 1\nx = 'abc\ny = 2\n", 2, "'", 5),
    ('seconds = 1\nx = "abc', 2, '"', 5),
    ('seconds = 1\r\nx = "abc\r\ny = 2\r\n', 2, '"', 5),
], ids=["multi-line-basic", "multi-line-literal", "literal", "basic-at-the-end", "basic-crlf"])
def test_an_unterminated_string_is_named_at_the_line_where_it_opens(text: str, line: int, opener: str,
                                                                     column: int) -> None:
    """tomllib says "Unterminated string (at end of document)" or 'Expected "\\'"' there, with
    no line: the line where the string opened is the one that helps."""
    err = _refused(text)
    assert err.line == line, str(err)
    assert str(err).startswith(f"f.toml:{line}: (file) = "), str(err)
    assert f"the string opened by {opener} at column {column} closed by {opener}" in str(err), str(err)
    assert "end of document" not in str(err)


@pytest.mark.parametrize("text, line, what", [
    ("seconds = 1\nx = [1,\n2,\n", 2, "the array opened by [ at column 5 closed by ]"),
    ("seconds = 1\nx = [[1, 2],\n  [3,\n", 2, "the array opened by [ at column 5 closed by ]"),
    ("seconds = 1\nx = { a = 1", 2, "the inline table opened by { at column 5 closed by } on its line"),
    ("seconds = 1\nx = { a = 1\ny = 2\n", 2, "the inline table opened by { at column 5 closed by } on its line"),
], ids=["array", "nested-array", "inline-table-at-the-end", "inline-table"])
def test_an_unclosed_array_or_inline_table_is_named_at_its_line(text: str, line: int, what: str) -> None:
    err = _refused(text)
    assert err.line == line, str(err)
    assert what in str(err), str(err)


def test_the_parsers_column_on_another_line_is_named_with_its_line() -> None:
    """An array that is not closed where the next statement starts: named at the line it opens,
    the parser's column (line 4's) with its line."""
    err = _refused("seconds = 1\nx = [1,\n  2\ny = 3\n")
    assert str(err) == ("f.toml:2: (file) = unclosed array at line 4, column 1: expected valid TOML: the array "
                        "opened by [ at column 5 closed by ]"), str(err)


@pytest.mark.parametrize("text, what", [
    ("a = { b = [1, 2 }\n", "the array opened by [ at column 11"),
    ("a = [ {b = 1 ]\n", "the inline table opened by { at column 7"),
    ("a = [[1, 2], [3 4]]\n", "the array opened by [ at column 14"),
    ("a = [[1] [2]]\n", "the array opened by [ at column 5"),
], ids=["array-in-inline-table", "inline-table-in-array", "inner-array", "at-an-opening-bracket"])
def test_the_parsers_unclosed_array_or_table_is_the_innermost_open_one(text: str, what: str) -> None:
    """tomllib's "Unclosed array" at a column is about the array it is reading there, the
    innermost open one: naming the outermost called a closed inline table the unclosed array."""
    err = _refused(text)
    assert err.line == 1 and what in str(err), str(err)


def test_an_array_closed_later_is_named_at_the_parsers_line() -> None:
    """A comma missing between two values of an array that is closed (tomllib: "Unclosed array"
    at the second value): the mistake is at the parser's line, not the line the array opens."""
    err = _refused("seconds = 1\nb = [3,\n4,\n5 6]\n")
    assert str(err) == ("f.toml:4: (file) = unclosed array at column 3: expected valid TOML: , or ] at column 3, "
                        "in the array opened by [ at line 2, column 5"), str(err)


def test_a_string_where_the_parser_stopped_does_not_hide_the_array() -> None:
    """tomllib stops at the opening quote of a string that follows another without a comma: the
    array is still named (the scan read the string as one tomllib had stopped inside)."""
    err = _refused('a = [\n"x" "y"]\n')
    assert str(err) == ('f.toml:2: (file) = unclosed array at column 5: expected valid TOML: , or ] at column 5, '
                        "in the array opened by [ at line 1, column 5"), str(err)


def test_a_value_missing_at_the_end_of_the_file_is_at_the_last_line() -> None:
    err = _refused("seconds = 1\n\n# a comment\nx =  ")
    assert str(err) == "f.toml:4: (file) = invalid value at the end of the file: expected valid TOML"


def test_the_parsers_expected_is_not_said_twice() -> None:
    """"Expected newline ... after a statement" is the reason; the message does not read
    "expected ...: expected valid TOML"."""
    err = _refused("x = 1 2\n")
    assert str(err) == ("f.toml:1: (file) = missing newline or end of document after a statement at column 7: "
                        "expected valid TOML")


def test_an_unescaped_backslash_is_shown_once() -> None:
    """The column is the parser's; a string is not called open where the parser stopped in it."""
    err = _refused('x = "a\\q"\n')
    assert str(err) == "f.toml:1: (file) = unescaped '\\' in a string at column 9: expected valid TOML"


def test_a_backslash_in_a_string_does_not_hide_where_a_later_string_opens() -> None:
    """An escaped quote (\\") and a comment's quote do not open or close a string."""
    err = _refused('a = "x\\"y" # it\'s\nb = "abc\n')
    assert err.line == 2 and "the string opened by \" at column 5" in str(err), str(err)


@pytest.mark.parametrize("kind", ["workload", "platform"])
def test_a_workload_and_a_platform_file_read_alike(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.toml"
    path.write_text('description = """abc\n')
    with pytest.raises(ConfigError) as info:
        (spec.load if kind == "workload" else plat.load)(path)
    assert str(info.value).startswith(f"{path}:1: (file) = unterminated string at the end of the file: expected "
                                      "valid TOML: the string opened by \"\"\" at column 15"), str(info.value)


@pytest.mark.parametrize("text, line, expected", [
    ('cpus = 2\nhash = ["sha-256",\nbreakpoints = 6\n[attestation]\nx = 1\n', 3,
     "valid TOML: a value, or ], of the array opened by [ at line 2, column 8"),
    ("x = [\n  1,\n  foo ]\n", 3, "valid TOML: a value, or ], of the array opened by [ at line 1, column 5"),
    ("x = [1, foo]\n", 1, "valid TOML"),
], ids=["bracket-left-out", "bad-value-in-a-long-array", "same-line"])
def test_an_invalid_value_inside_an_array_opened_lines_above_names_the_array(text: str, line: int,
                                                                            expected: str) -> None:
    """An array whose ']' was left out takes the next key for one of its values: tomllib's
    "Invalid value" names that key's line only (a later '[table]' header closes the array as far
    as brackets tell), and nothing said an array was open. Named when it opened on another line."""
    err = _refused(text)
    assert err.line == line and err.expected == expected, str(err)


@pytest.mark.parametrize("text, line, expected", [
    ('x = [1,\n[attestation]\nkeys = "seeds"\n', 2,
     "valid TOML: the array opened by [ at line 1, column 5 is still open (a ] left out?): the [ at column 1 "
     "of this line is read as an array inside it"),
    ('x = [1,\n[[realm]]\n', 2,
     "valid TOML: the array opened by [ at line 1, column 5 is still open (a ] left out?): the [ at column 1 "
     "of this line is read as an array inside it"),
    ('t = {a = [1,\n2], !}\n', 2,
     "valid TOML: a key = value, or }, of the inline table opened by { at line 1, column 5"),
], ids=["header", "array-of-tables-header", "inline-table-key"])
def test_a_header_read_inside_an_array_left_open_names_the_array(text: str, line: int, expected: str) -> None:
    """A table header after an array whose ']' was left out is read as an array inside it: its
    '[' was the innermost open one, on the error's own line, so the array opened lines above
    went unnamed ("expected valid TOML" alone). And an inline table holds key = value pairs:
    "a value, or }" was wrong where a key was expected."""
    err = _refused(text)
    assert err.line == line and err.expected == expected, str(err)
