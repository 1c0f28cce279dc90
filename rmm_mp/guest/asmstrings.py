"""The guest assembler's string literals: the "text" of ``.ascii`` and ``.asciz``, read with
Python's escapes, to the UTF-8 bytes they stand for, and what to say of one that is no such
literal. rmm_mp.guest.assembler sizes and emits the bytes.

This module owns the quoted-string syntax only. It must not know directives, labels or
expressions, nor place bytes in the image."""

from __future__ import annotations

import ast
import re

from rmm_mp.guest.asmlines import AssemblerError
from rmm_mp.guest.expr import short as _short

# The escapes Python reads without a warning (an octal one at most \377), and a double-quoted
# string made of them, so that ast.literal_eval gives its text or a SyntaxError, nothing else.
_ESCAPE = (r'\\(?:[\\\'"abfnrtv]|[0-3][0-7]{2}|[0-7]{1,2}(?![0-7])|x[0-9A-Fa-f]{2}'
           r'|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|N\{[^}]+\})')
_STRING = re.compile(rf'"(?:[^"\\]|{_ESCAPE})*"')
_ESCAPE_AT = re.compile(_ESCAPE)
_RAW_UNPARSABLE = re.compile("[\x00\ud800-\udfff]")


def string_bytes(number: int, op: str, args: list[str]) -> bytes:
    """The bytes of the one "text" operand of line ``number``'s ``op`` (.ascii or .asciz),
    without .asciz's NUL. Raises AssemblerError naming the line and what was expected."""
    if len(args) != 1:
        raise AssemblerError(number, f"expected {op} \"text\"")
    text = args[0]
    value = None
    if _STRING.fullmatch(text):
        # Python's parser refuses a raw NUL or lone surrogate in its source, where the text
        # takes any other character as it is: given as the escapes they stand for, a NUL is
        # a byte 0 like a raw \x01 is a byte 1, and a surrogate is refused below as '\ud800'
        # is, not as 'expected a quoted string'. (Outside an escape, as _STRING has matched.)
        parsable = _RAW_UNPARSABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
        try:
            value = ast.literal_eval(parsable)
        except (ValueError, SyntaxError):        # such as an unknown \N{name}
            pass
    if not isinstance(value, str):
        raise AssemblerError(number, f"expected a quoted string, got {_short(text)!r}{_bad_escape(text)}")
    try:
        return value.encode()
    except UnicodeEncodeError:                  # a lone surrogate, such as \ud800
        raise AssemblerError(number, f"expected text that UTF-8 can encode, got {_short(text)!r}") from None


def _bad_escape(text: str) -> str:
    """': '\\q' is no escape' for the first backslash in a "..." text that starts none of
    Python's escapes (as _STRING reads them), so the message says what to fix; else ''."""
    if not (len(text) >= 2 and text[0] == text[-1] == '"'):
        return ""
    body, i = text[1:-1], 0
    while (i := body.find("\\", i)) >= 0:
        match = _ESCAPE_AT.match(body, i)
        if match is None:
            if i == len(body) - 1:
                return ": its closing quote is escaped (\\\"), so the string does not end"
            bad = re.match(r"\\(?:[0-7]{1,3}|N\{[^}]*\}?|.)", body[i:], re.DOTALL)
            assert bad is not None
            return (f": {_short(bad.group())!r} is no escape (expected one of Python's, such as \\n, \\x41, "
                    f"\\u00e9, or \\\\ for a backslash)")
        i = match.end()
    return ""
