"""A time written with a unit (`5s`, `500ms`, `2min`) read as the number of seconds to write instead.

rmm-mp takes a length of time as a bare number of seconds, on the command line and in a workload
file; users of other tools type a unit after it. This module owns recognising such a word and
the hint that names the number to write: ``seconds_written`` and ``unit_hint``. It refuses
nothing itself (each caller words its own refusal) and imports nothing of rmm_mp, so that every
layer may use it.
"""

from __future__ import annotations

import re

_TIME_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1, "ms": 1e-3, "us": 1e-6, "m": 60, "min": 60,
               "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}
_WITH_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]+)\s*", re.ASCII | re.IGNORECASE)


def seconds_written(value: str) -> str | None:
    """The number of seconds that ``value``, a number and a time unit, stands for, as the number
    to write instead ("5s" is "5", "500ms" "0.5", "2min" "120"); None for any other text."""
    m = _WITH_UNIT.fullmatch(value)
    if m is None or m.group(2).lower() not in _TIME_UNITS:
        return None
    factor = _TIME_UNITS[m.group(2).lower()]
    # In seconds, the number as typed (1.234567s is 1.234567, not a rounded 1.23457).
    return m.group(1) if factor == 1 else f"{float(m.group(1)) * factor:.12g}"


def unit_hint(value: str) -> str:
    """" (without a unit: write N)" to follow a refusal of ``value`` when it is a time with a
    unit (seconds_written), else ""."""
    number = seconds_written(value)
    return "" if number is None else f" (without a unit: write {number})"
