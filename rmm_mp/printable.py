"""Text a user gave (a path, a name), shown in a message so that it cannot act on the terminal.

A path may hold any character but NUL and "/": a directory named with ESC [2J clears the screen
when an error names a file in it raw, a carriage return overwrites the start of the message, and
the rest then names a path that is not the file's. Every message that names a user's path or
string names it through ``shown_path``: as it is when it is one line of printable text (nearly
always), else as a TOML basic string whose escapes show each character that is not, so that it
can still be read back exactly.

This module owns that escaping (TOML's basic string: ``basic_string``), the test for one
printable line (``not_one_printable_line``), the shortening of a value too long for a message
(``abbreviated``: a value pasted by mistake, a whole file in a string, would bury the message)
and the terminal columns a text takes (``columns``: a wide character two, a combining mark
none), which the reports' tables and wrapped lines measure by. It imports nothing of rmm_mp, so
that every layer may use it (hw, attest, outpaths, stress, the CLI, the workload reports).
"""

from __future__ import annotations

import os
import shlex
import unicodedata
from typing import Final

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def basic_string(text: str) -> str:
    """``text`` as a TOML basic string (in double quotes) that reads back as ``text``, with
    TOML's escapes for quotes, backslashes and every character that is not printable."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04X}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08X}")
    return '"' + "".join(out) + '"'


def not_one_printable_line(text: str) -> str | None:
    """Why ``text`` is not one line of printable characters (which character, where), or None.

    A description is printed as it is, on one line of a listing: a control character (ESC
    starting a terminal sequence, a newline breaking the listing), a bidi override or a
    zero-width character would act on the terminal or hide text, so such files are refused
    rather than their text escaped (docs/workloads.md). A space of another width (Unicode Zs:
    a no-break space, an ideographic space), which str.isprintable counts with the separators,
    is shown as a space and is text like any other."""
    for index, char in enumerate(text, 1):
        if not char.isprintable() and unicodedata.category(char) != "Zs":
            return f"character {index}, U+{ord(char):04X}, is not printable"
    return None


def shown_line(text: str) -> str:
    """A line of another's text (an exception's message, a traceback's line, an error's note) as
    a report prints it: as it is when it is printable (a tab included, which the reports' wraps
    read as a space), else as a TOML basic string whose escapes show the characters that are
    not: an ESC in a path the text names must not act on the terminal."""
    return text if not_one_printable_line(text.replace("\t", " ")) is None else basic_string(text)


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` (a file's path, "command line", a name a user typed) as a message names it: as
    it is when it is one line of printable text, else as a TOML basic string whose escapes show
    each character that is not ("/tmp/a\\u001B[2J/r.json"). A path that is not valid UTF-8
    arrives with surrogate escapes (os.fsdecode), shown as \\uDCxx."""
    text = os.fspath(path)
    return text if not_one_printable_line(text) is None else basic_string(text)


def shell_word(text: str) -> str:
    """``text`` as one word of a POSIX shell command line a user may paste: shlex.quote'd when
    it is one line of printable text, else in ANSI-C quotes ($'a\\x1bb', bash, zsh, ksh and
    POSIX 2024 sh) whose escapes show each character that is not, as shown_path does for a
    message (shlex.quote leaves an ESC raw inside its single quotes)."""
    if not_one_printable_line(text) is None:
        return shlex.quote(text)
    out = []
    for char in text:
        if char in ("\\", "'"):
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif 0xDC80 <= ord(char) <= 0xDCFF:   # a byte that is not UTF-8 (os.fsdecode)
            out.append(f"\\x{ord(char) - 0xDC00:02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return "$'" + "".join(out) + "'"


SHOWN_MAX: Final = 240
"""Longest value (as a message writes it) that a message shows whole."""


def abbreviated(shown: str, escaped_in: str = '"') -> str:
    """``shown`` (a value as a message writes it: TOML, JSON, Python's repr), or, when longer
    than SHOWN_MAX, its first SHOWN_MAX // 2 characters and how long it is ("'AAAA... (60,002
    characters in all)"): a value pasted by mistake would bury the message it is named in.

    The cut never splits a backslash escape inside a string quoted by one of ``escaped_in``
    (``"``: TOML basic strings and JSON; ``"'``: Python's repr, whose strings of either quote
    hold escapes): cut inside one, "\\u001B" showed as "\\u001", which reads as no character,
    and a lone backslash before the "...". Nor does it split the two escapes of a UTF-16
    surrogate pair (JSON's "\\ud83d\\ude00", one character): the first alone is half a
    character, which a JSON reader refuses. Inside any other quote (a TOML literal string) a
    backslash is itself."""
    if len(shown) <= SHOWN_MAX:
        return shown
    return f"{start_of(shown, SHOWN_MAX // 2, escaped_in)}... ({len(shown):,} characters in all)"


def start_of(shown: str, end: int, escaped_in: str = '"') -> str:
    """The first ``end`` characters of ``shown`` or fewer, cut where ``abbreviated`` would cut:
    never inside a backslash escape of a string quoted by one of ``escaped_in``, nor between
    the halves of a surrogate pair. For a message that shortens a value to a length of its
    own (a map key naming a place: 40 characters)."""
    if len(shown) <= end:
        return shown    # whole: the cut's scan reads up to ``end`` and would run past the text's end
    return shown[:_escape_boundary(shown, end, escaped_in)]


_ESCAPE_LENGTHS: Final = {"u": 6, "U": 10, "x": 4}
"""Characters of a backslash escape by its letter (TOML and JSON \\uXXXX, TOML \\UXXXXXXXX,
Python \\xXX); any other escape is two (\\n, \\")."""


def _escape_boundary(shown: str, end: int, escaped_in: str) -> int:
    """The last index up to ``end`` at which ``shown`` may be cut without splitting a backslash
    escape of a string quoted by one of ``escaped_in`` (``abbreviated``)."""
    cut = 0
    i = 0
    quote = ""
    while i < end:
        cut = i
        char = shown[i]
        if quote and quote in escaped_in and char == "\\":
            i += 12 if _surrogate_pair_at(shown, i) else _ESCAPE_LENGTHS.get(shown[i + 1:i + 2], 2)
            continue
        if char in "\"'" and quote in ("", char):
            quote = "" if quote else char
        i += 1
    return i if i == end else cut


def _surrogate_pair_at(shown: str, i: int) -> bool:
    """True when ``shown`` has at ``i`` a high-surrogate escape (\\uD800-\\uDBFF) followed by
    a low-surrogate one (\\uDC00-\\uDFFF): JSON's escape of one character beyond U+FFFF
    (RFC 8259 7), which ``_escape_boundary`` keeps whole."""
    def unit(at: int) -> int | None:
        text = shown[at:at + 6]
        digits = text[2:]
        if len(text) != 6 or text[:2] != "\\u" or not all(c in "0123456789abcdefABCDEF" for c in digits):
            return None
        return int(digits, 16)
    high, low = unit(i), unit(i + 6)
    return high is not None and low is not None and 0xD800 <= high <= 0xDBFF and 0xDC00 <= low <= 0xDFFF


def char_columns(c: str) -> int:
    """The terminal columns character ``c`` takes: two for a wide one (CJK, most emoji: east Asian
    width W or F), none for a mark on the character before it (Mn, Me), else one. Counted as
    characters, a line of 80 CJK characters was "89 columns" wide."""
    return 2 if unicodedata.east_asian_width(c) in ("W", "F") else 0 if unicodedata.category(c) in ("Mn", "Me") else 1


def columns(text: str) -> int:
    """The terminal columns ``text`` takes (``char_columns``, added up)."""
    return len(text) if text.isascii() else sum(char_columns(c) for c in text)
