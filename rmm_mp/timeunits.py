"""A time written with a unit (`5s`, `500ms`, `2min`) read as the number of seconds to write instead.

rmm-mp takes a length of time as a bare number of seconds, on the command line and in a workload
file; users of other tools type a unit after it. This module owns recognising such a word and
the number it stands for: ``seconds_written``, and for a workload file's refusal ``unit_hint``,
which knows the key's range and also names the number a string without a unit holds
(`seconds = "5"`). The command line's, which words an option's range its own way, is
clitypes.unit_hint, built on ``seconds_written``. It refuses nothing itself (each caller words
its own refusal) and imports nothing of rmm_mp, so that every layer may use it.
"""

from __future__ import annotations

import decimal
import math
import re

_TIME_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "ms": 1e-3, "us": 1e-6, "m": 60, "min": 60,
               "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}
# Units whose capitals mean something else: M is mega (or a month), MS a megasecond.
_CASE_MATTERS = ("m", "ms")
_HINT_DIGITS = 40
"""The longest number (its digits and point) that a hint names: no one means a longer one."""
_EXPONENT_DIGITS = 20
"""The longest number a hint names in decimals for a number written with an exponent (longer:
named with an exponent)."""
_PLAIN_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?\s*", re.ASCII | re.IGNORECASE)
# The number may have an exponent ("1e5min"), as a TOML float or a command-line number may.
_WITH_UNIT = re.compile(r"\s*((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?)\s*([a-z]+)\s*",
                        re.ASCII | re.IGNORECASE)


def seconds_written(value: str) -> tuple[float, str] | None:
    """The seconds that ``value``, a number and a time unit, stands for, and that number as the
    text to write instead ("5s" is "5", "500ms" "0.5", "2min" "120"; a number written with an
    exponent that is long in decimals keeps one: "1e39s" is "1e39", "1e39min" "6e40"); None for
    any other text, for a unit whose capitals mean something else (5M, 5MS) and where the number
    typed or the one to write has more than _HINT_DIGITS characters."""
    m = _WITH_UNIT.fullmatch(value)
    if m is None:
        return None
    digits, unit = m.group(1), m.group(2)
    if unit.lower() not in _TIME_UNITS or (unit != unit.lower() and unit.lower() in _CASE_MATTERS):
        return None
    if len(digits) > _HINT_DIGITS:
        # The refusal shows such a value shortened; a hint would repeat all its digits.
        return None
    factor = _TIME_UNITS[unit.lower()]
    exponent = decimal.Decimal(digits).adjusted()
    if not -_HINT_DIGITS <= exponent <= _HINT_DIGITS:
        # "1e999999999min": its decimals (below) would be a billion characters long, and any
        # number past 40 digits either side of the point gets no hint anyway.
        return None
    if factor == 1 and "e" not in digits.lower():
        # In seconds, the number as typed (1.234567s is 1.234567, not a rounded 1.23457), without
        # a point at its end ("write 5." read as a sentence's end). With an exponent ("1e5s"), the
        # decimals below: TOML has no "1.e5" and 100000 is what it stands for.
        return float(digits), digits.rstrip(".") or "0"
    # Another unit: the exact product, in decimals (0.1 min is 6, 1 us 0.000001, not 1e-06), and
    # its seconds that product rounded once, as TOML reads the number written. A product rounded
    # to 12 digits fell on a bound past which it lay: 10080.0000000001min was "604800, outside
    # the range", a number the key takes.
    exact = decimal.Context(prec=len(digits) + 8).multiply(decimal.Decimal(digits), decimal.Decimal(repr(factor)))
    text = f"{exact:f}"
    number = (text.rstrip("0").rstrip(".") if "." in text else text) or "0"
    if "e" in digits.lower() and len(number) > _EXPONENT_DIGITS:
        # "1e39s" was "without a unit it is 1000...000" (40 digits): a number written with an
        # exponent is named with one, in one form whatever the unit ("1e39s" is 1e39, "1e39min"
        # 6e40; it was 6e+40): TOML and the command line read it, with no "+" to wonder about.
        number = _exponent_form(exact)
    if len(number) > _HINT_DIGITS:
        # The product may be longer than the digits typed (40 characters of microseconds have 6
        # more places, 38 nines of hours 4 more digits): no hint names more than _HINT_DIGITS.
        return None
    return float(exact), number


def _exponent_form(number: decimal.Decimal) -> str:
    """``number`` with an exponent, its fewest digits and no "+" nor leading zeros in the exponent
    ("1e39", "6e40", "1.5e-39"): a form TOML's floats and Python's float() both take."""
    mantissa, _, exponent = f"{number.normalize():e}".partition("e")
    return f"{mantissa}e{int(exponent)}"


def _toml_number(value: str) -> str | None:
    """``value``, a plain number in a string ("5", " 0.5 ", ".5", "1e3"), as TOML writes it
    ("5", "0.5", "0.5", "1000": TOML has no ".5" nor "5."); None for any other text."""
    if _PLAIN_NUMBER.fullmatch(value) is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    text = repr(number + 0.0)       # + 0.0: "-0" is 0 ("as a number it is -0" read oddly)
    return text[:-2] if text.endswith(".0") else text


def unit_hint(value: str, lo: float, hi: float) -> str:
    """" (without a unit: write N)" to follow a refusal of ``value`` when it is a time with a
    unit (seconds_written), or " (without a unit it is N, outside the range)" when N is not in
    [lo, hi] (`seconds = "200h"` was told "write 720000" beside "at most 604,800"), as the
    command line's clitypes.unit_hint says it. A number in a string (`seconds = "5"`, which had
    no hint beside "5s"'s) gets " (a number, not a string: write 5)", or " (as a number it is
    N, outside the range)", or that it under- or overflows a float ("1e-400", "1e400"). Else ""."""
    plain = _toml_number(value)
    if plain == "0" and re.search(r"[1-9]", value.lower().partition("e")[0]):
        # "1e-400" is no 0 as written: it is too small for a float, which is what reads it as 0
        # ("as a number it is 0" named a number nobody wrote).
        return " (as a number it is too small: it underflows to 0, outside the range)"
    if plain is None and _PLAIN_NUMBER.fullmatch(value) is not None:
        # "1e400": past the largest float (about 1.8e308), not a number TOML can hold.
        return " (as a number it is too large: it overflows, past about 1.8e308)"
    if plain is not None:
        if not lo <= float(plain) <= hi:
            return f" (as a number it is {plain}, outside the range)"
        return f" (a number, not a string: write {plain})"
    written = seconds_written(value)
    if written is None:
        return ""
    seconds, number = written
    if number.startswith("."):      # ".5s": TOML has no .5 (the command line takes it)
        number = "0" + number
    if not lo <= seconds <= hi:
        return f" (without a unit it is {number}, outside the range)"
    return f" (without a unit: write {number})"
