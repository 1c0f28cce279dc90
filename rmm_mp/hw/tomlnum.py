"""Numbers as input files write them and their errors word them: a float that keeps the text it
was written as (TypedFloat, made of each float literal by written_float, tomllib's parse_float
hook, and of an option's number by clitypes), ranges with their digits grouped (int_range,
grouped_number, number_range), the integer of a string's digits whatever their count (decimal),
and the size syntax platform and workload files share (size_value, size_expected: "64M",
"2 MiB").

It owns no file and no key: reading files, finding a key's line and ConfigError are tomlsrc's,
and what a key accepts is its schema's (hw.platform, workload.fields). It must import neither
tomlsrc nor tomlparse, so that both, and the option types, can stand on it.
"""

from __future__ import annotations

import re
import sys
from decimal import Decimal


class TypedFloat(float):
    """A float that keeps the text it was written as (``text``) and shows itself (repr, and an
    error's value: ConfigError, inside an array or a table too) as that text, not as the float
    made of it (0.0 for 1e-400, -0.0 for -1e-400, inf for 1e400, 0.1 for 0.1000000000000000001).

    Two writers: every float of a TOML file, as tomllib reads it (written_float, its parse_float
    hook: the literal as written, '_'s and all), and an option's number (clitypes, for an error
    about it made after the option's parsing, a workload's resolution or the stress run's
    configuration: `--seconds 0` is "--seconds = 0: expected ...", its text abbreviated past 240
    characters). The value itself is the float's; the checks turn it into a plain float once it
    is accepted, so that nothing past them (a report, `workloads show`) sees the text."""

    text: str

    def __new__(cls, number: float, text: str) -> "TypedFloat":
        made = super().__new__(cls, number)
        made.text = text
        return made

    def __repr__(self) -> str:
        return self.text

    def __reduce__(self) -> tuple[type["TypedFloat"], tuple[float, str]]:
        # What pickle and copy make it again with: float's own gives the number alone, and
        # __new__ requires the text too (TypeError), so a config holding one could not be copied
        # or sent to a spawned CPU process.
        return TypedFloat, (float(self), self.text)


def written_float(literal: str) -> TypedFloat:
    """tomllib's parse_float: a TOML float literal (``1e-400``, ``-0.000_01``, ``+inf``) as the
    float it reads as, keeping its text. tomllib hands over every float literal and nothing else,
    in the form float() reads ('_' only between digits)."""
    return TypedFloat(float(literal), literal)


def int_range(lo: int, hi: int) -> str:
    """An integer range as every error words it, digits grouped: "1..1,000,000,000,000"
    (1..1000000000000 was hard to read). Input-file checks (workload.fields, hw.platform),
    the stress options (clitypes.IntRange), StressConfig and Machine.create all use this."""
    return f"{lo:,}..{hi:,}"


def grouped_number(number: float) -> str:
    """``number`` with its digits grouped as int_range groups them: 86400 -> "86,400", a float
    with no fraction as the integer it is (3600.0 -> "3,600"), one below 0.0001 in its decimals
    (1e-09 -> "0.000000001", as a workload's seconds error writes that bound, not in Python's
    exponent form), any other float as Python writes it, grouped (0.1, 12,345.5)."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e16:
        number = int(number)
    if isinstance(number, float) and 0 < abs(number) < 1e-4:
        return f"{Decimal(repr(number)):f}"
    return f"{number:,}"


def number_range(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    """A range of numbers (an option's, integer or float) as --help and its errors word it: a
    closed range as int_range does ("0.1..3,600", "2..64"); one open at an end, or with no end,
    in click's notation, digits grouped ("0<x<=86,400", "x>=0"), as ".." cannot say that an
    end is left out. Written by hand for click's FloatRange, "0<x<=86400" and "0.1<=x<=3600"
    read unlike every integer range beside them."""
    if lo is not None and hi is not None and not lo_open and not hi_open:
        return f"{grouped_number(lo)}..{grouped_number(hi)}"
    below = f"{'<' if hi_open else '<='}{grouped_number(hi)}" if hi is not None else ""
    if lo is None:
        return f"x{below}"
    if hi is None:
        return f"x{'>' if lo_open else '>='}{grouped_number(lo)}"
    return f"{grouped_number(lo)}{'<' if lo_open else '<='}x{below}"


def decimal(digits: str) -> int:
    """The value of ``digits`` (ASCII decimal digits from a string value: a size such as "4M",
    a CPU range such as "0-3") for a range check. int() refuses more digits than
    sys.get_int_max_str_digits() (4300) with a ValueError, which ended the command with a
    traceback; such a number is given as 10 ** that limit instead, past every range a key has,
    so the key is refused as out of range. Leading zeros do not count."""
    significant = digits.lstrip("0") or "0"
    most = sys.get_int_max_str_digits()
    return 10 ** most if most and len(significant) > most else int(significant)


# ASCII only: \d would take any Unicode digit ("\uff12M", fullwidth) and int() read it as 2.
_SIZE = re.compile(r"^\s*(\d+)\s*(?:([KMGTkmgt])(?:i?B)?)?\s*$", re.ASCII)
_SIZE_SUFFIX = re.compile(r"^\s*\d+\s*[KMGTkmgt]([iI]?)([bB])\s*$", re.ASCII)
_SIZE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
"""T too: "1 TiB" of RAM is then refused for its size (by the caller's range), not as no size."""
SIZE_SYNTAX = ('a size: bytes as an integer, or a string such as "4M", "512K" or "2 MiB" '
               '(a number and K, M, G or T)')
"""What size_value's callers expect: the one size syntax of platform and workload files."""


def size_value(value: object) -> int | None:
    """The bytes a size in a platform or workload file stands for, or None if it is no size: an
    integer (not a bool), or a string of ASCII digits and one of the binary units K, M, G and T
    in either case, optionally followed by B or iB ("64M", "64 MiB", "2MB", "512kB"; all binary,
    as memory sizes are). A lower-case b, bits, is refused (size_expected says so). The range
    and granule checks are the caller's."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        return decimal(m.group(1)) * (_SIZE_UNITS[m.group(2).upper()] if m.group(2) else 1)
    return None


def size_expected(value: object) -> str:
    """The "expected" text for a ``value`` that size_value refused: SIZE_SYNTAX, and for a
    string such as "64mb" or "64MIB", a unit whose suffix alone is wrong, why (a b after the
    unit is bits, not bytes; the i of iB is lower-case, as "2MIB" is no spelling of MiB)."""
    m = _SIZE_SUFFIX.match(value) if isinstance(value, str) else None
    # Both at once for "64MIb": one hint at a time sent its writer round twice.
    why = [text for wrong, text in ((m and m.group(2) == "b", "a lower-case b is bits"),
                                    (m and m.group(1) == "I", "the i of iB is lower-case")) if wrong]
    return f'{SIZE_SYNTAX}; {" and ".join(why)}: write "B", "iB" or no suffix' if why else SIZE_SYNTAX
