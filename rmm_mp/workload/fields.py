"""Checking single values of a workload file: each check returns the value or raises ConfigError
naming the file and line, the key, the value and what was expected.

    Fields(text, source)   the file being checked; .fail(key, value, expected) builds the error
    .keys                  unknown keys (with "did you mean" when one is close) and missing ones
    .integer .number .boolean .string .name .size .hex_bytes .cpu_set .weights
    cpu_set_text(ids)      a CPU set written back as the files write it ("0-1", "0,2,4-5")

This module owns value syntax (CPU sets such as "0-3", weight tables; sizes such as "4M" are
tomlnum.size_value's, shared with platform files). It knows nothing of what a workload does
with the values.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any, Iterable, TypeGuard

from rmm_mp.hw.tomlnum import decimal, int_range, size_expected, size_value
from rmm_mp.hw.tomlsrc import MISSING, ConfigError, choice_list, key_part, suggestion, top_level_hint
from rmm_mp.printable import not_one_printable_line
from rmm_mp.timeunits import unit_hint
from rmm_mp.workload.locate import locate

ACTIVITIES = ("run", "lifecycle", "attest", "rtt-churn", "ripas-churn", "map-shared", "delegate-churn")
"""Host activities a CPU can be given, in the order reports list them (docs/workloads.md)."""

GRANULE = 4096
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
"""Matched whole (fullmatch): a pattern ending in $ would let a final newline through."""
_CPU_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$", re.ASCII)
MAX_CPU_ID = 255
"""The largest CPU id a group may name (platforms have at most 256 CPUs)."""
U64 = (1 << 64) - 1


def integer_hint(value: object, lo: int, hi: int) -> str:
    """What to write for an integer key given one in a string (`recs = "2"`, a constant's
    `"0x10"`, kept in hex) or as a whole float (`recs = 2.0`, `1e1`), as `seconds = "5"` is told;
    "" for any other value, for a string of more than 20 digits, and for a float of 2^53 or more,
    which may not hold the integer written (12345678901234567890.0 reads as ...7168)."""
    text = value.strip() if isinstance(value, str) else ""
    if re.fullmatch(r"0[xX][0-9a-fA-F]{1,16}", text, re.ASCII):
        number, how, written = int(text, 16), "a number, not a string", "0x" + text[2:]
    elif re.fullmatch(r"[+-]?[0-9]{1,20}", text, re.ASCII):
        number, how = int(text), "a number, not a string"
        written = str(number)
    elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        number, how = int(value), "an integer, not a float"
        written = str(number)
    else:
        return ""
    if not lo <= number <= hi:
        return f" (as {how.split(',')[0]} it is {number}, outside the range)"
    return f" ({how}: write {written})"


def is_int(value: object) -> TypeGuard[int]:
    """An integer, not a bool (TOML's and JSON's true would pass isinstance(value, int))."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """An int or float (not a bool) that is a finite float. TOML integers have no size limit,
    and math.isfinite (or float()) raises OverflowError on one beyond about 1.8e308."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


class Fields:
    """Checks for one workload file (or for command-line options, with text "")."""

    def __init__(self, text: str, source: str, integer_hints: bool = False) -> None:
        self.text = text
        self.source = source
        # A workload's integer errors name the integer to write (integer_hint); the stress
        # tool's schedule checks, a subclass, keep their own messages.
        self.integer_hints = integer_hints

    def fail(self, key: str, value: object, expected: str) -> ConfigError:
        line = locate(self.text, key) if self.text else None
        return ConfigError(self.source, key, value, expected, line)

    def keys(self, table: dict[str, Any], prefix: str, allowed: Iterable[str], required: Iterable[str] = (),
             top: Iterable[str] = ()) -> None:
        """Refuse a key of ``table`` (at key path ``prefix``) not in ``allowed``, then a missing
        one of ``required``. ``top``: the file's top-level keys, for a table below whose header
        one of them may have been written by mistake (tomlsrc.top_level_hint)."""
        allowed = tuple(allowed)
        for key in table:
            if key not in allowed:
                where = f"{prefix}.{key_part(key)}" if prefix else key_part(key)
                raise self.fail(where, table[key], f"no such key{suggestion(key, allowed)}; "
                                                   f"keys here: {', '.join(allowed)}"
                                                   f"{top_level_hint(key, prefix, top)}")
        for key in required:
            if key not in table:
                where = f"{prefix}.{key}" if prefix else key
                raise self.fail(where, MISSING, "a value: the key is required")

    def table(self, value: object, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, value, "a table")
        return value

    def integer(self, value: object, key: str, lo: int, hi: int, what: str) -> int:
        if not is_int(value) or not lo <= value <= hi:
            hint = integer_hint(value, lo, hi) if self.integer_hints else ""
            raise self.fail(key, value, f"{what}, an integer in {int_range(lo, hi)}{hint}")
        return value

    def number(self, value: object, key: str, lo: float, hi: float, what: str, seconds: bool = False) -> float:
        """A positive int or float in [lo, hi], lo > 0; the bounds in the error written as
        lengths are shown ("at least 0.000000001", "at most 604,800", as the phases' sum error's
        "604,800 + ... s"). With ``seconds``, a string such as "5s" is refused naming the number
        to write, as `--seconds 5s` is (timeunits.unit_hint)."""
        if not is_finite_number(value) or not lo <= value <= hi:
            hint = unit_hint(value, lo, hi) if seconds and isinstance(value, str) else ""
            raise self.fail(key, value, f"{what}, a number of at least {Decimal(repr(lo)):f} and at most {hi:,g}"
                                        f"{hint}")
        return float(value)

    def boolean(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, value, "true or false")
        return value

    def string(self, value: object, key: str, what: str = "a string") -> str:
        if not isinstance(value, str):
            raise self.fail(key, value, what)
        return value

    def line_of_text(self, value: object, key: str) -> str:
        """A string printed as it is on one line (a description): printable characters only."""
        text = self.string(value, key)
        why = not_one_printable_line(text)
        if why:
            raise self.fail(key, value, f"one line of printable text ({why})")
        return text

    def name(self, value: object, key: str) -> str:
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise self.fail(key, value, "a name of 1..32 ASCII letters, digits, '-' or '_', starting with a letter")
        return value

    def choice(self, value: object, key: str, choices: tuple[str, ...], why: str = "") -> str:
        """One of ``choices``; ``why`` (why only those) follows the list in the error."""
        if not isinstance(value, str) or value not in choices:
            hint = suggestion(value, choices) if isinstance(value, str) else ""
            reason = f" ({why})" if why else ""
            raise self.fail(key, value, f"one of {choice_list(choices)}{hint}{reason}")
        return value

    def size(self, value: object, key: str, lo: int, hi: int) -> int:
        """Bytes: an integer, or a string such as "4M", "512K", "2 MiB" (binary units K to T;
        tomlnum.size_value, which platform files share), a multiple of 4 KiB in lo..hi."""
        number = size_value(value)
        if number is None:
            raise self.fail(key, value, size_expected(value))
        if number % GRANULE or not lo <= number <= hi:
            hint = ""
            # A string of digits alone ("2") counts bytes too.
            unitless = isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())
            if unitless and 0 < number < GRANULE and lo <= number << 20 <= hi:
                # `ram = 2` is most likely 2 MiB meant: say that a number without a unit counts bytes.
                what = "an integer" if isinstance(value, int) else "a number without a unit"
                hint = f' ({what} is bytes: "{number}M" is {number} MiB)'
            raise self.fail(key, value, f"a multiple of 4 KiB from {_mib(lo)} to {_mib(hi)}{hint}")
        return number

    def hex_bytes(self, value: object, key: str, most: int) -> bytes:
        """A hex string ("0x" optional, "_" allowed between digits) of at most ``most`` bytes."""
        if isinstance(value, str):
            written = value.strip().lower().removeprefix("0x")
            # An underscore only between two digits, as in a TOML integer: "0x_" is no value.
            if re.fullmatch(r"(?:[0-9a-f]+(?:_[0-9a-f]+)*)?", written):
                digits = written.replace("_", "")
                if len(digits) % 2 == 0 and len(digits) // 2 <= most:
                    return bytes.fromhex(digits)
        hint = ""
        if is_int(value) and 0 <= value < 1 << 8 * most:     # a string that fits, not one refused in turn
            # TOML read `rpv = 0x12` as the integer 18, shown so: name the string to write instead.
            digits = f"{value:x}"
            digits = digits.zfill(len(digits) + len(digits) % 2)
            hint = f'; an integer is no hex string: write it in quotes, "0x{digits}"'
            as_typed = self._written(key)
            # The text must be this value: the line's first `rpv = ` may be inside a string
            # (measure = "a rpv = 12 b", rpv = 0x1234 told "12" as what was written). A value that
            # fits has at most 155 digits; int() refuses more than 4,300.
            typed = "" if as_typed is None else as_typed.lstrip("+").replace("_", "")
            if (as_typed is not None and re.fullmatch(r"\+?[0-9_]+", as_typed) and 0 < len(typed) <= 200
                    and int(typed) == value):
                # `rpv = 1234`, decimal: "write it in quotes, "0x04d2"" named a string nobody wrote
                # with no word of where it came from. The value is bytes: say so, name the decimal's
                # hex form, and the string of the digits as written, which is hex too when even.
                pairs = [f"0x{typed[i:i + 2]}" for i in range(0, len(typed), 2)]
                bytes_ = f"the byte{'s' if len(pairs) > 1 else ''} {', '.join(pairs)}" if len(pairs) <= 4 else \
                    f"{len(pairs)} bytes, {', '.join(pairs[:2])}, ..."
                as_digits = "" if len(typed) % 2 or len(pairs) > most else f' (and "{typed}" would be {bytes_})'
                number = f"{value:,}" if len(typed) <= 20 else "the number"
                hint = (f"; an integer is no hex string: the value is bytes, written as hex digits in quotes; "
                        f'{number} in hex is "0x{digits}"{as_digits}')
        raise self.fail(key, value, f'a hex string of at most {most} bytes (an even number of digits), '
                                    f'e.g. "0x5265616c6d"{hint}')

    def _written(self, key: str) -> str | None:
        """The text of ``key``'s value on its line of the file, when the line writes it as a bare
        word (a number: `rpv = 1234`, `rpv = 0x12`); None when the line is not found or the key
        is not on it as ``name = word``."""
        line = locate(self.text, key) if self.text else None
        if line is None:
            return None
        name = re.escape(key.rpartition(".")[2])
        found = re.search(rf"""(?:^|[\s{{,.])["']?{name}["']?\s*=\s*([^\s,}}#]+)""", self.text.splitlines()[line - 1])
        return None if found is None else found.group(1)

    def cpu_set(self, value: object, key: str) -> frozenset[int] | None:
        """CPU ids: a list of integers, or a string such as "0-3", "0,2,5-7" or "all" (None)."""
        if value == "all":
            return None
        cpus: set[int] = set()
        if isinstance(value, list) and value and all(is_int(v) and 0 <= v <= MAX_CPU_ID for v in value):
            twice = sorted({v for v in value if value.count(v) > 1})
            if twice:   # a typo more often than not ([0, 0] for [0, 1])
                raise self.fail(key, value, f"CPU ids, each once (CPU {twice[0]} is listed twice)")
            cpus.update(value)
        elif isinstance(value, str) and value.strip():
            for part in value.split(","):
                m = _CPU_RANGE.match(part)
                low, high = (decimal(m.group(1)), decimal(m.group(2) or m.group(1))) if m else (1, 0)
                # Ids past 255 are no CPU any platform has (and "0-100000000" would build a set
                # of that many).
                if not low <= high < MAX_CPU_ID + 1:
                    cpus.clear()
                    break
                again = cpus.intersection(range(low, high + 1))
                if again:
                    raise self.fail(key, value, f"CPU ids, each once (CPU {min(again)} is listed twice)")
                cpus.update(range(low, high + 1))
        if not cpus:
            raise self.fail(key, value, f'CPU ids 0..{MAX_CPU_ID}: a non-empty list of integers such as [0, 1], a '
                                        'string such as "0-3" or "0,2,4-5" (ranges low-high), or "all"')
        return frozenset(cpus)

    def weights(self, value: object, key: str) -> tuple[tuple[str, float], ...]:
        """An activity table {name: weight >= 0}, at least one weight > 0; returned in ACTIVITIES
        order without the zero weights."""
        example = f"a table of activity weights, e.g. {{ run = 3, rtt-churn = 1 }}; activities: {', '.join(ACTIVITIES)}"
        if not isinstance(value, dict):
            # Activities named without weights, ["run"] or "run", are the likely slip: shown as the
            # table to write, each with weight 1.
            names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
            if names and all(isinstance(n, str) and n in ACTIVITIES for n in names) and len(set(names)) == len(names):
                raise self.fail(key, value, f"a table of activity weights (write {{ {' = 1, '.join(names)} = 1 }}: "
                                            "each activity with its weight)")
            raise self.fail(key, value, example)
        table = value
        if not table:
            raise self.fail(key, value, example)
        for name, weight in table.items():
            if name not in ACTIVITIES:
                raise self.fail(f"{key}.{key_part(name)}", weight, f"a known activity{suggestion(name, ACTIVITIES)}; "
                                                         f"activities: {', '.join(ACTIVITIES)}")
            if not is_finite_number(weight) or weight < 0:
                raise self.fail(f"{key}.{name}", weight, "a weight: a number >= 0, finite (at most about 1.8e308)")
        if not any(table.values()):
            raise self.fail(key, value, "at least one weight greater than 0 (every weight is 0)")
        return tuple((name, float(table[name])) for name in ACTIVITIES if table.get(name))


def cpu_set_text(cpus: "Iterable[int]") -> str:
    """CPU ids (at least one) as a CPU-set string, the syntax Fields.cpu_set reads: "0-1",
    "0,2,4-5"."""
    out: list[str] = []
    ids = sorted(cpus)
    start = prev = ids[0]
    for c in ids[1:] + [-2]:
        if c != prev + 1:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = c
        prev = c
    return ",".join(out)


def _mib(n: int) -> str:
    """``n`` bytes in the largest of GiB, MiB and KiB that divides it, with thousands separators."""
    if n % (1 << 30) == 0:
        return f"{n >> 30:,} GiB"
    if n % (1 << 20) == 0:
        return f"{n >> 20:,} MiB"
    return f"{n >> 10:,} KiB"
