"""Line numbers of keys in a workload file, for error messages.

tomllib gives no positions, so the key is found again in the source text (hw/tomlsrc.py does
the same for platform files). Workload files nest arrays of tables ([[phase]] with
[[phase.group]], [[realm]] with [realm.constants]), which hw.tomlsrc.locate does not follow, so
this module tracks the full table path with each array's element index: after the second
[[realm]] header a [realm.constants] header opens ``realm[1].constants``. Keys of inline tables
(``activities = { run = 3 }``) are found on the line of their table's key, dotted keys
(``activities.run = 3``) on their own line, and the elements of an array of inline tables
(``realm = [{ name = "a" }, { name = "b" }]``, or ``group = [...]`` in a [[phase]]) on the line
where each opens.

A key path looks like ``realm[1].constants.WORK`` or ``phase[0].group[2].cpus``. When the key
itself is absent the nearest enclosing table that is present gives the line.

This module owns finding lines. It knows no schema.
"""

from __future__ import annotations

import re

from rmm_mp.hw.tomlsrc import HEADER, after_string, code_lines, line_key, unquoted_part, without_comment


def _parts(key: str) -> list[str]:
    """``realm[1].constants.WORK`` -> ["realm[1]", "constants", "WORK"] (quoted parts kept whole:
    ``realm[0]."a.b"`` -> ["realm[0]", '"a.b"'], tomlsrc.key_part)."""
    return re.findall(r'"(?:[^"\\]|\\.)*"|[^.]+', key)


def _table_paths(text: str) -> list[tuple[int, str]]:
    """Each header line with the indexed path it opens: (line, "phase[0].group[1]")."""
    counts: dict[str, int] = {}
    out: list[tuple[int, str]] = []
    for number, raw in enumerate(code_lines(text), start=1):
        match = HEADER.match(without_comment(raw))
        if not match:
            continue
        names = [n.strip().strip("\"'") for n in match.group(2).split(".")]
        # Resolve every enclosing array of tables to its latest element.
        resolved: list[str] = []
        for depth, name in enumerate(names[:-1]):
            plain = ".".join(names[:depth + 1])
            resolved.append(f"{name}[{counts[plain]}]" if plain in counts else name)
        last, plain = names[-1], ".".join(names)
        if match.group(1) == "[[":
            counts[plain] = counts.get(plain, -1) + 1
            # A new element of an outer array starts the arrays nested in it afresh.
            for other in [k for k in counts if k.startswith(plain + ".")]:
                del counts[other]
            resolved.append(f"{last}[{counts[plain]}]")
        else:
            resolved.append(last)
        out.append((number, ".".join(resolved)))
    return out


def locate(text: str, key: str) -> int | None:
    """Line (1-based) of ``key`` in ``text``, else of its nearest enclosing table; None if
    neither is in the file (a top-level key that is absent)."""
    parts = _parts(key)
    if not parts:
        return None
    lines = code_lines(text)
    headers = _table_paths(text)
    # The deepest array of inline tables on the path first: `group = [{...}, {...}]` inside a
    # [[phase]] table holds phase[0].group[1]'s keys, on a line of its own. Only the top level
    # was looked at, and the error named the [[phase]] header's line.
    for depth in range(len(parts) - 1, -1, -1):
        element = _inline_element(lines, headers, parts, depth)
        if element is not None:
            return element
    for cut in range(len(parts), 0, -1):
        found = _find(lines, headers, parts[:cut])
        if found is not None:
            return found
    return None


def _inline_element(lines: list[str], headers: list[tuple[int, str]], parts: list[str], depth: int) -> int | None:
    """For ``realm[1]...`` written as an array of inline tables (``realm = [{...}, {...}]``, on
    one line or several): the line where element 1 opens, which holds all its keys (TOML keeps
    an inline table on one line). ``parts[depth]`` is the element (``group[1]`` of
    ``phase[0].group[1].cpus``: depth 1), ``parts[:depth]`` the table whose header the array
    follows. None when the file has no such array there."""
    head = re.fullmatch(r"([A-Za-z0-9_\-]+)\[(\d+)\]", parts[depth])
    element = ".".join(parts[:depth + 1])
    if head is None or any(path == element or path.startswith(element + ".") for _, path in headers):
        return None
    name, index = head.group(1), int(head.group(2))
    bounds = _bounds(lines, headers, ".".join(parts[:depth]))
    if bounds is None:
        return None
    for number in range(bounds[0], bounds[1] + 1):
        line = without_comment(lines[number - 1])
        found = line_key(line)
        if found is None or found[0] != [name]:
            continue
        # Walk the array's text, skipping strings (basic, with their escapes, and literal: a
        # brace or an escaped quote in one, 'a{.s' or "a\"b", threw the count off, and the
        # error had no line) and comments, and count the inline tables at its top level.
        depth, seen = 0, -1
        for at in range(number, len(lines) + 1):
            text = without_comment(lines[at - 1]) if at > number else line[found[1]:]
            i = 0
            while i < len(text):
                ch = text[i]
                if ch in "\"'":
                    i = after_string(text, i)
                    continue
                if ch in "[{":
                    if ch == "{" and depth == 1:
                        seen += 1
                        if seen == index:
                            return at
                    depth += 1
                elif ch in "]}":
                    depth -= 1
                    if depth == 0:
                        return None
                i += 1
        return None
    return None


def _find(lines: list[str], headers: list[tuple[int, str]], parts: list[str]) -> int | None:
    whole = ".".join(parts)
    for number, path in headers:
        if path == whole:
            return number
    # key = value lines (and keys of inline tables) inside the table that holds them
    for split in range(len(parts) - 1, -1, -1):
        table, rest = ".".join(parts[:split]), parts[split:]
        found = _find_key(lines, headers, table, rest)
        if found is not None:
            return found
    return None


def _find_key(lines: list[str], headers: list[tuple[int, str]], table: str, rest: list[str]) -> int | None:
    """``rest[0] = ...`` in ``table`` (the top level for ""), or a dotted key that starts with
    ``rest`` (``rest[0].rest[1] = ...``, or a longer one inside the table ``rest`` names); parts
    beyond the dotted key must be keys of an inline table on that line."""
    bounds = _bounds(lines, headers, table)
    if bounds is None:
        return None
    first, last = bounds
    wanted = [unquoted_part(part) for part in rest]
    for number in range(first, last + 1):
        line = without_comment(lines[number - 1])
        found = line_key(line)
        if found is None:
            continue
        dotted, value_at = found
        common = min(len(dotted), len(wanted))
        if dotted[:common] != wanted[:common]:
            continue
        tail = line[value_at:]
        for sub in rest[len(dotted):]:
            sub_match = re.search(rf'[{{,]\s*["\']?{re.escape(unquoted_part(sub))}["\']?\s*=', tail)
            if sub_match is None:
                return None
            tail = tail[sub_match.end():]
        return number
    return None


def _bounds(lines: list[str], headers: list[tuple[int, str]], table: str) -> tuple[int, int] | None:
    """First and last line of ``table``'s own keys (before the next header)."""
    starts = [n for n, path in headers if path == table]
    if table == "":
        end = headers[0][0] - 1 if headers else len(lines)
        return (1, end) if end >= 1 else None
    if not starts:
        return None
    start = starts[0]
    later = [n for n, _ in headers if n > start]
    return start + 1, (later[0] - 1 if later else len(lines))
