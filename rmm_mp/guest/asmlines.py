"""The guest assembler's line syntax: a line's comment, label, mnemonic and operands, the
blanks allowed between words, and a memory operand's brackets; AssemblerError, which names the
line. rmm_mp.guest.assembler sizes and encodes what these functions split.

This module owns how a line is cut into words, and their case folding (ASCII's only). It must
not give any word a meaning (mnemonics, registers, expressions and directives are the
assembler's)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass


class AssemblerError(ValueError):
    """A line of guest assembly that cannot be assembled.

    Source text the message quotes is shown as Python's repr shows it, so that a control
    character in it (a form feed or vertical tab is whitespace inside an expression) is escaped
    rather than printed to the terminal."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Line:
    number: int
    label: str | None
    op: str | None
    args: list[str]
    written: str = ""
    """The op as the source writes it (op is in lower case): what an error about it quotes."""


LABEL = re.compile(r"^\s*([A-Za-z_]\w*)\s*:(.*)$", re.ASCII)
"""A label and the rest of its line."""


def memory_operand(text: str) -> tuple[str, str | None] | None:
    """(base, offset or None) of a memory operand '[base]' or '[base, offset]' (each stripped of
    blanks; neither empty, the base without ']'); None for any other text. Read by hand rather
    than by a regular expression: the one it replaced, with three blank runs around two lazy
    groups, took time cubic in a run of blanks when it did not match ('[x1,' and 4,000 spaces
    took 18 s; a line of a 1 MiB source, hours)."""
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        return None
    base, comma, offset = text[1:-1].partition(",")
    base, offset = base.strip(), offset.strip()
    if not base or "]" in base or (comma and not offset):
        return None
    return base, offset if comma else None


def unquoted(text: str) -> Iterator[int]:
    """The indexes of the characters of text outside "string literals", where a backslash
    escapes the next character: neither \\" nor \\\\" starts or ends a string."""
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            escaped = ch == "\\"
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        else:
            yield i


def strip_comment(raw: str) -> str:
    """The line without a // or ; comment (neither counts inside a quoted string)."""
    for i in unquoted(raw):
        if raw[i] == ";" or raw.startswith("//", i):
            return raw[:i]
    return raw


# The blanks between words: ASCII's whitespace but the line ends, as re.ASCII's \s (the label and
# expression syntax) and rmm_mp.guest.equ read them. Any other character Python calls whitespace
# (U+00A0 NO-BREAK SPACE, U+2003 EM SPACE, \x1c..\x1f, \x85, U+2028, ...) is refused outside a
# string: str.split() and str.strip() took it for a blank between a mnemonic and its operands,
# the regular expressions did not, so 'mov\xa0x1, #1' assembled, 'foo\xa0: nop' was an
# "unknown instruction 'foo'" and 'mov x1, #\xa01' an invalid expression.
BLANKS = " \t\f\v"


def check_blanks(number: int, text: str) -> None:
    """Raise AssemblerError naming the column and the character of the first whitespace outside
    a quoted string in ``text`` (a line without its comment) that is not one of BLANKS."""
    for i in unquoted(text):
        ch = text[i]
        if ch.isspace() and ch not in BLANKS:
            name = unicodedata.name(ch, "")
            raise AssemblerError(number, f"column {i + 1}: {ch!r} (U+{ord(ch):04X}{' ' + name if name else ''}) is "
                                         "no blank here; expected a space, a tab, a form feed or a vertical tab "
                                         "between words (other "
                                         "whitespace may stand only in a quoted string or a comment)")


def parse_line(number: int, raw: str) -> Line:
    text = strip_comment(raw)
    check_blanks(number, text)
    text = text.strip()
    label = None
    match = LABEL.match(text)
    if match and not text.startswith(".equ"):
        label, text = match.group(1), match.group(2).strip()
    if not text:
        return Line(number, label, None, [])
    parts = text.split(None, 1)
    # Case folding is ASCII's only: str.lower() would turn the Kelvin sign into k ('MOV\u212a'
    # assembled as movk), as str.upper() turns ı and ſ into I and S (ascii_upper).
    op = parts[0].lower() if parts[0].isascii() else parts[0]
    args = split_args(parts[1]) if len(parts) > 1 else []
    return Line(number, label, op, args, parts[0])


def split_args(text: str) -> list[str]:
    """Split on commas outside brackets and quoted strings. Every comma separates two operands,
    so a trailing one leaves an empty last operand, which is then an error like `1,,2`."""
    args, depth, start = [], 0, 0
    for i in unquoted(text):
        if text[i] == "[":
            depth += 1
        elif text[i] == "]":
            depth -= 1
        elif text[i] == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return args


def ascii_upper(name: str) -> str:
    """name in upper case if it is ASCII, else unchanged (so that no enum member matches it):
    str.upper() maps the non-ASCII ı, ſ and ß onto I, S and SS, which made 'b.mı' b.mi and
    'eſr' esr."""
    return name.upper() if name.isascii() else name
