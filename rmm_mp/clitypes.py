"""Click parameter types the subcommands share.

Owns only option parsing; nothing here touches a machine.
"""

from __future__ import annotations

import math
from typing import Any

import click


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN: no comparison with NaN is true, so click's range
    check lets it through, and a NaN deadline or timeout is never reached."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if isinstance(number, float) and math.isnan(number):
            self.fail(f"{value!r} is not a number of seconds; expected {self._range_text()}", param, ctx)
        return number

    def _range_text(self) -> str:
        """The range as click's own messages write it ('x>=0', '0.1<=x<=3600'), made here rather
        than with click's private helper for it."""
        low = "" if self.min is None else f"{self.min}{'<' if self.min_open else '<='}"
        high = "" if self.max is None else f"{'<' if self.max_open else '<='}{self.max}"
        if not low:
            return f"x{high}"
        return f"{low}x{high}" if high else f"x{'>' if self.min_open else '>='}{self.min}"
