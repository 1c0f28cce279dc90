"""How a count reads in the tool's texts: "1 CPU", "4 CPUs", "1 switch", "2 switches".

This module owns that wording. It must not format anything else.
"""

from __future__ import annotations


def count(n: int, noun: str, plural: str = "") -> str:
    """``n`` and ``noun``, in the plural (``plural``, else noun + "s") unless n is 1; n with
    thousands separators."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
