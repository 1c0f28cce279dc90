"""Parsing a TOML file's text, and saying why the parser refused it (loads).

tomllib's refusals name a line at best, and some name nothing: a key or table defined twice is
"Cannot overwrite a value" (which key?), a statement at the end of a file with no newline after
it is "at end of document", arrays nested a few hundred deep end in a RecursionError and a
decimal integer of more than 4,300 digits in a ValueError, neither naming a line; a string,
array or inline table left open is refused at the end of the document (or, a one-line string, at
the newline that cuts it), not where it opens. loads turns each into a ConfigError at the line it
is about, naming the key, the table or what is wrong, and words the parser's other refusals as
every other mistake reads: the line once, the reason in plain words, the column.

This module owns that diagnosis: it finds the statement, the nesting or the integer again in
the source text with tomlsrc's line scanning (code_lines, line_key, HEADER, after_string,
without_comment). It must not know any schema, nor word other errors: error wording, key
location and reading files stay in tomlsrc, which must not import this module (tomlsrc is
imported by it).
"""

from __future__ import annotations

import re
import sys
import tomllib
from typing import Any

from rmm_mp.hw.tomlnum import written_float
from rmm_mp.hw.tomlsrc import (HEADER, ConfigError, after_string, code_lines, header_key, key_part, line_key,
                                without_comment)


def loads(text: str, source: str) -> dict[str, Any]:
    """tomllib.loads, with a syntax error as ConfigError(source, "(file)", ...) at the line the
    parser names (or where the string, array or inline table it found open opens: _syntax_error),
    so that it reads 'file:line: ...' like every other mistake in the file. Each
    float is a TypedFloat (tomlnum.written_float), which an error shows as the file writes it
    (1e-400, not the 0.0 it reads as), and which the checks that accept it make a plain float."""
    try:
        return tomllib.loads(text, parse_float=written_float)
    except tomllib.TOMLDecodeError as exc:
        twice = _defined_twice(text, str(exc))
        if twice is not None:
            key, written, twice_line, reason, already = twice
            raise ConfigError(source, key, written, f"each key and table defined once{already} (the TOML parser: "
                                                    f"{reason})", twice_line) from None
        reason, line, expected = _syntax_error(text, str(exc))
        raise ConfigError(source, "(file)", _Written(reason), expected, line) from None
    except RecursionError:
        # tomllib parses arrays and inline tables recursively: a few hundred levels of them
        # use up Python's recursion limit, and its RecursionError ended the command with a
        # traceback.
        deep_line, depth = _deepest_nesting(text)
        raise ConfigError(source, "(file)", f"arrays and inline tables nested {depth} deep",
                          "valid TOML with arrays and inline tables nested less deeply (Python's TOML parser "
                          "reads each level by recursion, and ran out of it)", deep_line) from None
    except ValueError as exc:
        # tomllib converts a decimal integer with int(), which refuses more digits than
        # sys.get_int_max_str_digits() (4300) with a plain ValueError that names no line.
        long_line = _long_decimal_line(text)
        raise ConfigError(source, "(file)", str(exc).split(";")[0], "valid TOML with integers of at most "
                          f"{sys.get_int_max_str_digits()} digits", long_line) from None


_AT = re.compile(r"(.*) \(at (?:line (\d+), column (\d+)|end of document)\)", re.DOTALL)


def _syntax_error(text: str, message: str) -> tuple[str, int | None, str]:
    """tomllib's refusal ``message`` in plain words, its line and what was expected. tomllib
    says "Reason (at line L, column C)" or "(at end of document)": the reason is shown with its
    first letter in lower case, "Expected X" as "missing X" (the error goes on to say what was
    expected), the column after it, and the line is said once, by the error's FILE:LINE. A
    string, array or inline table left open (tomllib names the newline that cuts a string, or the
    end of the document, where nothing is to be seen) is named at the line where it opens, and
    the expected text says where it opened and what closes it, unless the array or inline table
    tomllib calls unclosed at a column is closed further on (a comma missing): that one is named
    at tomllib's line; any other refusal at the end of the document is at the file's last line
    of code."""
    match = _AT.fullmatch(message)
    if match is None:
        return message, None, "valid TOML"
    said = match.group(1)
    reason = (f"missing {said.removeprefix('Expected ')}" if said.startswith("Expected ")
              else said[:1].lower() + said[1:])
    lines = code_lines(text)
    line: int | None
    if match.group(2):
        line, column = int(match.group(2)), int(match.group(3))
        stop = sum(len(s) + 1 for s in text.split("\n")[:line - 1]) + column - 1
    else:
        line = next((n for n in range(len(lines), 0, -1) if without_comment(lines[n - 1]).strip()), None)
        stop = len(text)
    where = f"column {column}" if match.group(2) else "the end of the file"
    at_column = match.group(2) is not None
    # At a column, tomllib's "unclosed" names the array or table it is reading there: the
    # innermost open one; at the end of the document every open one is unclosed: the outermost.
    opened = _left_open(text, stop, brackets=not at_column or reason.startswith("unclosed "), innermost=at_column)
    if opened is None:
        inside = _scan(text, stop) if at_column else None
        if isinstance(inside, list) and inside and inside[-1][1] != line:
            # Inside an array or inline table opened on an earlier line: where a ']' left out
            # makes the next key "an invalid value" of the array, the error names that line only.
            opener, at, opened_column, _ = inside[-1]
            what, closer = ("array", "]") if opener == "[" else ("inline table", "}")
            items = "a value" if opener == "[" else "a key = value"
            return (f"{reason} at {where}", line, f"valid TOML: {items}, or {closer}, of the {what} opened by "
                                                  f"{opener} at line {at}, column {opened_column}")
        opens = inside if isinstance(inside, list) else []
        earlier = [o for o in opens if o[1] != line]
        if earlier and earlier[-1][0] == "[" and len(opens) > len(earlier) and opens[len(earlier)][0] == "[":
            # A table header after an array whose ']' was left out: its '[' opens an array inside
            # that one, the innermost open one on this line, and the array above was not named.
            _, at, opened_column, _ = earlier[-1]
            return (f"{reason} at {where}", line, f"valid TOML: the array opened by [ at line {at}, column "
                                                  f"{opened_column} is still open (a ] left out?): the [ at column "
                                                  f"{opens[len(earlier)][2]} of this line is read as an array "
                                                  "inside it")
        return f"{reason} at {where}", line, "valid TOML"
    what, opener, at, opened_column, index = opened
    closer = {"[": "]", "{": "}"}.get(opener, opener)
    if at_column and opener in ("[", "{") and _closed_later(text, index):
        # Closed further on (a comma missing between two values): the mistake is where tomllib
        # stopped, not at the line the array or table opens.
        opened_at = f"line {at}, column {opened_column}" if at != line else f"column {opened_column}"
        return (f"{reason} at {where}", line,
                f"valid TOML: , or {closer} at {where}, in the {what} opened by {opener} at {opened_at}")
    if match.group(2) and at != line:       # the parser's column is on another line than the error's
        where = f"line {line}, {where}"
    reason = f"{reason} at {where}"
    on_its_line = {'"': _ONE_LINE_STRING, "'": _ONE_LINE_STRING,
                   "{": " on its line (TOML writes an inline table on one line)"}.get(opener, "")
    return reason, at, (f"valid TOML: the {what} opened by {opener} at column {opened_column} closed by "
                        f"{closer}{on_its_line}")


_ONE_LINE_STRING = """ on its line (a string of several lines opens and closes with \"\"\" or ''')"""


def _left_open(text: str, stop: int, brackets: bool,
               innermost: bool = False) -> tuple[str, str, int, int, int] | None:
    """The string left open at ``text[stop]`` (or cut by a newline before it), else when
    ``brackets`` the outermost (or ``innermost``) array or inline table still open there: what
    it is ("string", "array", "inline table"), what opens it, the line and column where it does
    and its index in ``text``; None if nothing is. Comments are skipped, and a backslash escape
    in a basic string."""
    found = _scan(text, stop)
    if found is None or isinstance(found, tuple):
        return found
    if brackets and found:
        opener, at, column, index = found[-1 if innermost else 0]
        return "array" if opener == "[" else "inline table", opener, at, column, index
    return None


def _closed_later(text: str, index: int) -> bool:
    """Whether the array or inline table opened at ``text[index]`` is closed further on, as far
    as brackets, strings and comments tell (not when a string is left open after it)."""
    found = _scan(text, len(text))
    return isinstance(found, list) and all(i != index for _, _, _, i in found)


def _scan(text: str, stop: int) -> tuple[str, str, int, int, int] | list[tuple[str, int, int, int]] | None:
    """_left_open's scan of ``text`` up to ``stop``: the string left open there (as _left_open
    gives it), None when the scan stopped inside a closed string, else the arrays and inline
    tables open there, outermost first (opener, line, column, index)."""
    line, start = 1, 0          # the line of text[i] and where that line starts
    open_at: list[tuple[str, int, int, int]] = []
    i = 0
    while i < len(text) and i < stop:      # text[stop] is where tomllib stopped: not read
        ch = text[i]
        if ch == "\n":
            line, start = line + 1, i + 1
        elif ch == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch in "\"'":
            opener = text[i:i + 3] if text.startswith(ch * 3, i) else ch
            end, closed = _string_end(text, i + len(opener), opener)
            if not closed and end <= stop:
                return "string", opener, line, i - start + 1, i
            if end > stop:          # tomllib stopped inside the string, for another reason
                return None
            line += text.count("\n", i, end)
            last = text.rfind("\n", i, end)
            start = last + 1 if last >= 0 else start
            i = end
            continue
        elif ch in "[{":
            open_at.append((ch, line, i - start + 1, i))
        elif ch in "]}" and open_at:
            open_at.pop()
        i += 1
    return open_at


def _string_end(text: str, i: int, opener: str) -> tuple[int, bool]:
    """Where the string opened by ``opener``, its text starting at ``text[i]``, ends (after its
    closing quotes; a multi-line one's up to two more quotes before them are its own), and True;
    or where it is cut, by a line end (a one-line string) or the end of the text, and False."""
    while i < len(text):
        ch = text[i]
        if ch == "\\" and opener[0] == '"':
            i += 2
            continue
        if len(opener) == 1 and (ch == "\n" or text.startswith("\r\n", i)):
            return i, False         # at the \r of a \r\n, which tomllib names (it reads \r\n as \n)
        if text.startswith(opener, i):
            end = i + len(opener)
            while len(opener) == 3 and end < len(text) and end - i < 5 and text[end] == opener[0]:
                end += 1
            return end, True
        i += 1
    return len(text), False


_TWICE = re.compile(r"(Cannot overwrite a value|Cannot declare .* twice|Cannot mutate immutable namespace .*"
                    r"|Duplicate inline table key .*) \(at (?:line (\d+), column \d+|end of document)\)")


class _Written:
    """A value as the file writes it (the text after a key's ``=``, or a table header), shown
    unquoted in an error."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _defined_twice(text: str, message: str) -> tuple[str, _Written, int, str, str] | None:
    """For tomllib's refusal of a key or table defined twice (``message``), the key path of the
    statement it is about, as the file writes it, the statement's value, its line, the
    parser's reason and what the key already was (": x is already ..." or ""); None for any
    other error, or when no statement is found. tomllib names neither the key nor, when the
    statement is the file's last one with no newline after it, a line ("Cannot overwrite a value
    (at end of document)"): its position is where the statement ends, so the statement is the
    last key line or table header at or before it (code_lines: not one inside a multi-line
    string).

    A [[header]] refused because a `key = value` line defined its key (or a key above it) is
    about that key: `x = [1]` then `[[x]]` was named x[0], as if an entry of [[x]] were defined
    twice, beside "Cannot mutate immutable namespace ('x',)"; it is named x, with what x is
    (an array of values, an inline table, a value) and the line defining it."""
    match = _TWICE.fullmatch(message)
    if match is None:
        return None
    lines = code_lines(text)
    end = int(match.group(2)) if match.group(2) else len(lines)
    table = ""
    indexed: list[str] = []         # the current table's parts, an array of tables' with its index
    seen: dict[str, int] = {}
    values: dict[str, tuple[int, str]] = {}     # key (indexed) -> its line and statement, for `key = value` lines
    found: tuple[str, _Written, int] | None = None
    already = ""
    for number, line in enumerate(lines[:end], start=1):
        header = HEADER.match(line)
        if header:
            parts = header_key(header.group(2))
            name = ".".join(key_part(p) for p in parts)
            if header.group(1) == "[[":
                defined = _defined_above(parts, seen, values)
                seen[name] = seen.get(name, -1) + 1
                table = f"{name}[{seen[name]}]"
            else:
                defined = None
                table = name
            indexed = _indexed(parts, seen)
            written = without_comment(line).strip()
            found = (table, _Written(written), number)
            if defined is not None:
                key, (at, statement) = defined
                what = statement.split("=", 1)[1].strip()
                kind = ("an array of values" if what.startswith("[") else
                        "an inline table" if what.startswith("{") else "a value")
                found = (key, _Written(written), number)
                already = f": {key} is already {kind} at line {at} ({statement}), to which {written} cannot add a table"
            else:
                already = ""
            continue
        keyed = line_key(line)
        if keyed is not None:
            key = ".".join([table] * bool(table) + [key_part(part) for part in keyed[0]])
            found = (key, _Written(without_comment(line[keyed[1]:]).strip()), number)
            already = ""
            values[".".join(indexed + [key_part(part) for part in keyed[0]])] = (number, without_comment(line).strip())
    if found is None:
        return None
    return (*found, match.group(1), already)


def _indexed(parts: list[str], seen: dict[str, int]) -> list[str]:
    """A table header's key ``parts`` as key_part writes them, each part that names an array of
    tables so far (``seen``, by the plain dotted name) with the index of its last entry."""
    out: list[str] = []
    plain: list[str] = []
    for part in parts:
        plain.append(key_part(part))
        name = ".".join(plain)
        out.append(f"{key_part(part)}[{seen[name]}]" if name in seen else key_part(part))
    return out


def _defined_above(parts: list[str], seen: dict[str, int],
                   values: dict[str, tuple[int, str]]) -> tuple[str, tuple[int, str]] | None:
    """The longest key of a [[header]]'s key ``parts`` (itself, or one above it) that a `key =
    value` line defined (``values``), with that line and statement; None if there is none. Each
    part above it is indexed as _indexed does; the key itself is not (a value is no array of
    tables)."""
    for i in range(len(parts), 0, -1):
        key = ".".join([*_indexed(parts[:i - 1], seen), key_part(parts[i - 1])])
        if key in values:
            return key, values[key]
    return None


def _deepest_nesting(text: str) -> tuple[int | None, int]:
    """The first line where arrays and inline tables (``[`` and ``{`` in values, and in table
    headers, which close on their line) are nested deepest, and that depth; strings and comments
    skipped (code_lines: lines inside a multi-line string are blank; the rest of the line that
    opens one is skipped)."""
    depth = deepest = 0
    where: int | None = None
    for number, line in enumerate(code_lines(text), start=1):
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == "#" or line.startswith(('"""', "'''"), i):
                break
            if ch in "\"'":
                i = after_string(line, i)
                continue
            if ch in "[{":
                depth += 1
                if depth > deepest:
                    deepest, where = depth, number
            elif ch in "]}":
                depth = max(depth - 1, 0)
            i += 1
    return where, deepest


_DECIMAL = re.compile(r"(?<![\w.])[+-]?\d[\d_]*")


def _long_decimal_line(text: str) -> int | None:
    """The first line holding a decimal integer longer than Python converts (code_lines: not
    one inside a multi-line string), or None."""
    most = sys.get_int_max_str_digits()
    for number, line in enumerate(code_lines(text), start=1):
        if any(len(m.group().replace("_", "").lstrip("+-")) > most for m in _DECIMAL.finditer(line)):
            return number
    return None
