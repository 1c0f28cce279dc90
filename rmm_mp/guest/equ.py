"""The ``.equ`` constants of guest source text: which a program defines, and the text with some
of them given new values (a workload's ``constants``, ``host.load_guest``'s keyword arguments).

It reads ``.equ`` lines as the assembler does: the directive in any ASCII case (``.EQU``), the
name case-sensitive, after a label on the same line or none. It works on text only; it assembles nothing.
"""

from __future__ import annotations

import re

from rmm_mp.guest.asmlines import strip_comment

# A line starts after \n, \r\n or a lone \r, as the assembler's lines do (re.M's ^ knows only
# \n, and '.' matches \r, so a source with \r line ends lost every line after a rewritten
# .equ, and its later .equ names were not found).
# A blank is any the assembler splits words at (ASCII whitespace but the line ends), and an
# .equ may follow a label on its line ('here: .equ N, 1' defines both, to the assembler): with
# spaces and tabs only and no label, such a name was not found, and a workload's constant for it
# was refused as not an .equ constant.
_BLANK = r"[ \t\f\v]"
_DIRECTIVE = rf"(?<![^\r\n]){_BLANK}*(?:[A-Za-z_]\w*{_BLANK}*:{_BLANK}*)?(?i:\.equ){_BLANK}+"
_NAMES = re.compile(_DIRECTIVE + rf"([A-Za-z_]\w*){_BLANK}*,", re.ASCII)


def equ_names(text: str) -> list[str]:
    """The names ``text``'s ``.equ`` lines define, in source order."""
    return _NAMES.findall(text)


def with_constants(text: str, constants: dict[str, int]) -> str:
    """``text`` with the value of each ``.equ`` line of a name in ``constants`` replaced.

    Raises ValueError naming a key that no ``.equ`` line defines, and the names that are defined.
    """
    for key, value in constants.items():
        pattern = re.compile(rf"({_DIRECTIVE}{re.escape(key)}{_BLANK}*,)[^\r\n]*", re.ASCII)
        text, found = pattern.subn(lambda m: f"{m.group(1)} {value:#x}", text)
        if not found:
            defined = equ_names(text)
            raise ValueError(f"{key} is not an .equ constant of the guest "
                             f"({'it defines ' + ', '.join(defined) if defined else 'it has no .equ lines'})")
    return text


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_EQU_LINE = re.compile(rf"{_BLANK}*(?:[A-Za-z_]\w*{_BLANK}*:{_BLANK}*)?(?i:\.equ){_BLANK}+([A-Za-z_]\w*){_BLANK}*,(.*)",
                       re.ASCII | re.S)
_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*", re.ASCII)


def line_names(text: str, number: int) -> list[str]:
    """The names (labels, .equ names, and words such as mnemonics and registers alike) written
    on line ``number`` (from 1, as AssemblerError counts) of ``text``, its comment left out."""
    lines = _LINE_BREAK.split(text)
    if not 1 <= number <= len(lines):
        return []
    return _NAME.findall(strip_comment(lines[number - 1]))


def equ_uses(text: str, names: list[str]) -> list[str]:
    """``names`` and every ``.equ`` name their ``.equ`` values use, directly or through other
    ``.equ`` lines, nearest first: which constants a value depends on. ripas-loop's ``RANGE``
    is ``IMAGE_BASE + 0x100000``, so a workload's ``IMAGE_BASE`` moves the pages RANGE places,
    and an error about those pages must name IMAGE_BASE when that is the constant it set."""
    uses: dict[str, list[str]] = {}
    for line in _LINE_BREAK.split(text):
        match = _EQU_LINE.match(strip_comment(line))
        if match:
            uses.setdefault(match.group(1), _NAME.findall(match.group(2)))
    out: list[str] = []
    queue = list(names)
    while queue:
        name = queue.pop(0)
        if name not in out:
            out.append(name)
            queue.extend(uses.get(name, ()))
    return out
