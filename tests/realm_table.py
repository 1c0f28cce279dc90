"""Reading the realm table of a text run report (render_realms.realm_table) back: a row's detail
and counters may be wrapped over several lines, each in its column."""

from __future__ import annotations


def realm_rows(section: list[str]) -> list[tuple[list[str], str, str]]:
    """Each row of a realm table section (title, header, rule, rows, notes): the words of its
    cells before the detail (name, possibly several words, RECs, exceptions, result), its whole detail and its whole counters, each put together from
    the row's lines (a row goes on in lines whose RECs, exceptions and result are blank; a long
    name goes on in its column, put together as a space or a cut before "[" or "#" left it)."""
    head = section[1]
    d, c = head.index("detail"), head.index("counters")
    named = section[2].index(" ")      # the realm column's width: its dashes
    rows: list[tuple[list[str], list[str], list[str]]] = []
    for line in section[3:]:
        if line.startswith("...") or not line:
            break
        if line[named:d].strip():       # a row's first line: its RECs, exceptions and result
            rows.append((line[:d].split(), [], []))
        elif line[:named].strip():      # a long name goes on below, in its column
            cells, more = rows[-1][0], line[:named].split()
            if not line.startswith("("):    # cut before "[" or "#", or within the name: no space
                cells[-4] += more.pop(0)
            cells[-3:-3] = more
        if len(line) > c - 2 and line[c - 2] != " ":     # a word wider than the detail column
            detail, counters = line[d:].strip(), ""
        else:
            detail, counters = line[d:c].strip(), line[c:].strip()
        rows[-1][1].extend([detail] if detail else [])
        rows[-1][2].extend([counters] if counters else [])
    return [(cells, " ".join(detail), " ".join(counters)) for cells, detail, counters in rows]


def realm_table(text: str) -> list[tuple[list[str], str, str]]:
    """realm_rows of the "Realms: " section of a whole text report."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Realms: "))
    return realm_rows(lines[start:])
