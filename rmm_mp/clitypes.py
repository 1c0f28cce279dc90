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
            self.fail(f"{value!r} is not a number of seconds; expected {self._describe_range()}", param, ctx)
        return number
