"""The realm table of `rmm-mp run`'s text report: its column widths, the wrapping of a realm's
name in its column, of the detail (how the realm ended) in its own, and of the counters after it.

``realm_table(shown, width)`` lays out the rows render_text chose to show (which realms, the
section's title and the notes under it stay there), every line within ``width`` columns but for
one holding a word wider than all the line, kept whole.

This module owns that layout. It must not choose the realms shown nor compute figures the
document does not have.
"""

from __future__ import annotations

import re
from typing import Any

from rmm_mp.printable import columns

DETAIL_MIN, COUNTERS_MIN, NAME_MIN = 30, 20, 12
"""The realm table's narrowest detail column and the columns it leaves the counters at least
(more when a failed realm's widest counter needs more, since all of a failed realm's counters
are shown); the realm column is narrowed for them, to NAME_MIN at the least, a longer name
going on in the lines below."""


def _counter_lines(values: dict[str, int], width: int, clipped: bool) -> list[str]:
    """The counters of a realm's row, each whole ("faults 1,6..." would read as a smaller
    number), in lines of at most ``width`` columns (a single counter wider stays whole);
    ``clipped`` (an ok realm): one line, ending with ", ..." after the last counter that fits
    when not all do ("..." when none does)."""
    items = [f"{k} {v:,}" for k, v in values.items()]
    if not items:
        return ["-"]
    if clipped:
        whole = ", ".join(items)
        if len(whole) <= width:
            return [whole]
        kept: list[str] = []
        for item in items:
            if len(", ".join([*kept, item, "..."])) > width:
                break
            kept.append(item)
        return [", ".join([*kept, "..."])]
    lines: list[str] = []
    line = ""
    for n, item in enumerate(items):
        piece = item if n == len(items) - 1 else item + ","
        if line and len(line) + 1 + len(piece) > width:
            lines.append(line)
            line = piece
        else:
            line = f"{line} {piece}" if line else piece
    return [*lines, line]


def _ljust(text: str, width: int) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (printable.columns): str.ljust
    counts characters, and a wide character (a CJK token directory in a detail's "saved as")
    takes two columns, so that row's counters stood a column to the right per character."""
    return text + " " * (width - columns(text))


def _wrapped(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` terminal columns, broken between words, each word
    whole (one wider than ``width`` on a line of its own): a path or value cut in two reads as
    two. textwrap counted characters. The spaces between two words on a line are kept as written,
    as textwrap kept them: joined by one, a detail's "/tmp/my  tokens" named another directory."""
    lines: list[str] = []
    line = ""
    # ASCII whitespace only, each a space (a tab expanded), as textwrap: str.split() also parted
    # words at a no-break or an ideographic space.
    for gap, word in re.findall(r"([ \t\n\r\v\f]*)([^ \t\n\r\v\f]+)", text.expandtabs()):
        gap = " " * len(gap)
        if line and columns(line) + len(gap) + columns(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line}{gap}{word}" if line else word
    return [*lines, line] if line else []


def _name_lines(name: str, width: int) -> list[str]:
    """A realm's ``name`` in lines of at most ``width``: broken at a space (a folded row's
    " (1,234 instances)"), else before an instance's "[" or a generation's "#", else, the
    template's own name being too long, cut at the width."""
    lines: list[str] = []
    while len(name) > width:
        space = name.rfind(" ", 1, width + 1)
        mark = max(name.rfind("[", 1, width + 1), name.rfind("#", 1, width + 1))
        if space >= mark and space > 0:
            lines.append(name[:space])
            name = name[space + 1:]
        else:
            cut = mark if mark > 0 else width
            lines.append(name[:cut])
            name = name[cut:]
    return [*lines, name]


def realm_table(shown: list[dict[str, Any]], width: int) -> list[str]:
    """Header, rule and rows of the realm table, every line within ``width`` columns (but for one
    holding a word of the detail wider than all the line, kept whole): the realm column narrowed
    so that the detail keeps DETAIL_MIN and the counters their least (_name_lines); the detail
    is wrapped in its column, capped so that
    the counters keep COUNTERS_MIN columns; a failed realm's counters are wrapped in theirs, all
    of them; an ok realm's are cut after the last whole counter that fits, ", ..." saying that
    more were cut. The detail (how the realm ended) is never cut. Before, a failed realm's row
    was printed on one line in full and widened the whole table with it, header and rule too
    (a 150-character error reason made every row and the header run to over 200 columns)."""
    heads = ("realm", "RECs", "exceptions", "result")
    cells = [(r["name"], str(r["recs"]), "?" if r["exceptions"] is None else f"{r['exceptions']:,}",
              "ok" if r["ok"] else "FAILED") for r in shown]
    widths = [max(columns(row[i]) for row in (heads, *cells)) for i in range(len(heads))]
    lefts = (0, 3)

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(_ljust(c, w) if i in lefts else " " * (w - columns(c)) + c
                         for i, (c, w) in enumerate(zip(row, widths)))

    details = [r["detail"] or "-" for r in shown]
    # A failed realm's counters are all shown, one per line at least: the column is as wide as
    # its widest counter with its comma ("ripas_changes 54,321," is 21), else that line ran past
    # the width beside a detail at its cap.
    counters_min = max([COUNTERS_MIN] + [len(f"{k} {v:,},") for r in shown if not r["ok"]
                                         for k, v in r["counters"].items()])
    # The realm column leaves the detail and the counters their least: a name may have 32
    # characters and more after them ("[63]#1234567", " (1,234,567 instances)" of a folded
    # row), which with the detail at DETAIL_MIN ran the lines to 139 columns. A longer name
    # goes on below, cut at the column's width where it has no space.
    widths[0] = min(widths[0], max(NAME_MIN, width - sum(widths[1:]) - 2 * len(widths) - DETAIL_MIN - 2 - counters_min))
    prefix = sum(widths) + 2 * len(widths)
    detail_width = min(max(len("detail"), *map(columns, details)), max(DETAIL_MIN, width - prefix - 2 - counters_min))
    start = prefix + detail_width + 2
    counters_width = max(width - start, len("counters"))
    rows: list[list[str]] = []
    longest = len("counters")
    for r, cell, detail in zip(shown, cells, details):
        names = _name_lines(cell[0], widths[0])
        # Words whole: a path or value cut in two reads as two. A word wider than the column (a
        # long path) runs into the counters' and that line takes none; one wider than all the line
        # has left runs past the width (a warning's is cut, outside its escapes). Every width of
        # this table is in terminal columns (printable.columns), so a wide character's row stays
        # aligned; realm names are ASCII (spec), details may not be (a --save-tokens path).
        parts = _wrapped(detail, detail_width) or ["-"]
        counted = _counter_lines(r["counters"], counters_width, clipped=bool(r["ok"]))
        longest = max(longest, *map(len, counted))
        lines = []
        n = 0
        while n < len(parts) or counted or n < len(names):
            part = parts[n] if n < len(parts) else ""
            beside = counted.pop(0) if counted and columns(part) <= detail_width else ""
            name = names[n] if n < len(names) else ""
            first = fmt((name, *cell[1:])) if n == 0 else _ljust(name, prefix - 2)
            lines.append(f"{first}  {_ljust(part, detail_width)}  {beside}".rstrip())
            n += 1
        rows.append(lines)
    head = f"{fmt(heads)}  {_ljust('detail', detail_width)}  counters"
    rule = "  ".join("-" * w for w in (*widths, detail_width, min(longest, counters_width)))
    return [head, rule, *(line for lines in rows for line in lines)]
