"""Text views of workloads for `rmm-mp workloads list|show|validate`.

    summary(file)      one line: name and description
    describe(w)        the resolved workload: platform, length, seed, every realm with every
                       value filled in (and the CPUs that run its vCPUs when its `cpus` is
                       set), each phase's weights per CPU (CPUs with the same weights share a
                       line) and the owner of every lifecycle instance; each line wrapped
                       to WIDTH between its phrases, as the run report is
    length(s, n)       a length: "2.5 s" or "1 step per CPU"
    seconds_text(s)    seconds to 10 significant digits (to the nanosecond where those would
                       round to another), digits grouped, no exponent (the run report's header too)
    wrapped(text)      a line broken into lines of at most WIDTH columns between its phrases
                       (`show`'s lines and the run report's header and verdict; paragraph
                       joins phrases for it)

This module owns these texts. It runs nothing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from typing import Iterable

from rmm_mp.printable import char_columns, columns, shown_path
from rmm_mp.words import count as _count
from rmm_mp.workload import programs
from rmm_mp.workload.fields import cpu_set_text
from rmm_mp.workload.resolve import Workload
from rmm_mp.workload.spec import RealmTemplate, Weights, WorkloadFile, nanoseconds


WIDTH = 118
"""Columns of `rmm-mp workloads show`'s lines and of `rmm-mp run`'s text report (render_text)."""

KEEP = 4
"""Characters a phrase wider than a line keeps in its last piece: a platform's name cut right at
the width left its colon alone at the start of the next line, or one or two of its characters."""


_WHITESPACE = str.maketrans("\t\n\v\f\r", "     ")
"""Whitespace other than a space, read as one by ``wrapped``: a newline or a tab inside a message
(an error's text) broke or widened the line without the wrapper knowing."""


def held(phrase: str) -> str:
    """``phrase`` with its spaces held (as NUL), so that wrapped never breaks the line inside it."""
    return phrase.replace(" ", "\0")


def wrapped(text: str, indent: str = "    ", start: str = "") -> list[str]:
    """``text`` in lines of at most WIDTH terminal columns (``columns``), after ``start`` (the first line's indent), its
    later lines indented by ``indent``, broken
    at its spaces only (those held by ``held`` are shown as spaces but never broken at). A word
    wider than a line (a long path, a platform's name with its colon) is cut: it goes on from the
    line it starts on, or from a new one when fewer than KEEP columns are left there, over
    lines of their own, its last piece keeping at least KEEP characters, never cut inside an escape
    or beside a held space (_cut); read together without their indent, the pieces give it whole.
    Other whitespace (a tab, a newline) is a space, as textwrap reads it."""
    lines: list[str] = []
    line, fresh = start, True   # fresh: the line holds nothing yet but its indent
    for word in text.translate(_WHITESPACE).split(" "):
        if not word:
            continue
        space = "" if fresh else " "
        room = WIDTH - columns(line) - len(space)
        if columns(word) <= room:
            line, fresh = line + space + word, False
            continue
        if not fresh and (columns(word) <= WIDTH - len(indent) or room < KEEP):
            lines.append(line)
            line, space, room = indent, "", WIDTH - len(indent)
        line += space
        while columns(word) > room:
            cut = _cut(word, min(_fitting(word, room), len(word) - KEEP))
            lines.append(line + word[:cut])
            word, line, room = word[cut:], indent, WIDTH - len(indent)
        line, fresh = line + word, False
    return [piece.replace("\0", " ") for piece in (*lines, *([] if fresh else [line]))]


def _fitting(word: str, room: int) -> int:
    """How many of ``word``'s first characters fit in ``room`` columns."""
    used = 0
    for i, c in enumerate(word):
        used += char_columns(c)
        if used > room:
            return i
    return len(word)


_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", re.DOTALL)
"""A backslash escape of printable.shown_path's TOML string (\\u001B, \\n, \\\\): one piece keeps it whole."""


def _cut(word: str, at: int) -> int:
    """Where to cut ``word`` at or before ``at``: never inside a backslash escape (a path shown
    escaped was cut `\\u001` | `B`, a `\\\\` parted into two lone backslashes), nor beside a
    held space (it ended its line as a trailing space, or began the next after the indent, unseen
    either way when the pieces are read together), nor before a mark that belongs to the character
    before it. ``at`` itself when no such place is left."""
    inside = {i for m in _ESCAPE.finditer(word) for i in range(m.start() + 1, m.end())}
    cut = at
    while cut > 0 and (cut in inside or word[cut - 1] == "\0" or word[cut] == "\0"
                       or unicodedata.category(word[cut]) in ("Mn", "Me", "Mc")):
        cut -= 1
    return cut or at


def paragraph(phrases: Iterable[str], first: str = "", indent: str = "    ", start: str = "") -> list[str]:
    """``first`` and the ``phrases`` after it, joined by ", ", as wrapped lines: the line breaks
    between phrases, never inside one."""
    return wrapped(first + ", ".join(held(p) for p in phrases), indent, start)


def _prose(text: str) -> list[str]:
    """A description too long for a line, wrapped on its spaces with the spacing its writer gave
    it: a line breaks at a space or at a run of spaces (dropped there), and every other run of
    spaces is kept whole (two after a full stop, a gap lining words up), as the description is
    shown when it fits. wrapped alone read each run as one space. Each word is placed with the
    run before it, which counts only where no break falls: held to the word before it instead, a
    run made that word wider, and one that fit a line alone was cut in two. A word wider than a
    line is cut as wrapped cuts it, going on from the line it starts on."""
    lines: list[str] = []
    line, fresh = "  ", True    # fresh: the line holds nothing yet but its indent
    for gap, word in re.findall(r"( *)([^ ]+)", text):
        # The first line keeps a description's leading spaces, as it is shown when it fits,
        # unless they leave no room for a word.
        sep = "" if fresh and (lines or columns(line + gap) > WIDTH - KEEP) else gap
        if not fresh and columns(line + sep + word) > WIDTH and (
                columns(word) <= WIDTH - 4 or WIDTH - columns(line + sep) < KEEP):
            lines.append(line)
            line, fresh, sep = "    ", True, ""
        if columns(line + sep + word) <= WIDTH:
            line, fresh = line + sep + word, False
            continue
        *done, line = wrapped(word, "    ", line + sep)
        lines += done
        fresh = False
    return lines if fresh else [*lines, line]


def summary(file: WorkloadFile) -> str:
    return f"{file.name:18} {file.description}"


def _size(n: int) -> str:
    """A RAM size in the largest binary unit it is a whole number of: 1 GiB (not 1,024 MiB),
    3 MiB, 1,028 KiB (RAM is a multiple of 4 KiB)."""
    for shift, unit in ((30, "GiB"), (20, "MiB")):
        if n % (1 << shift) == 0:
            return f"{n >> shift:,} {unit}"
    return f"{n >> 10:,} KiB"


def _cpu_list(cpus: list[int]) -> str:
    """``CPU 3`` for one CPU, ``CPUs 0-1`` or ``CPUs 1,3`` for more (cpu_set_text)."""
    return f"CPU{'s' if len(cpus) > 1 else ''} {cpu_set_text(cpus)}"


def _weights(weights: Weights) -> str:
    return ", ".join(f"{name} {_weight(weight)}" for name, weight in weights)


def _weight(weight: float) -> str:
    """A weight as the shortest decimal that reads back as it (repr), a whole one without its
    ".0" (3, 2.5, 1e-320): %g's 6 digits showed 1e-320, a subnormal float, as 9.99989e-321
    (which reads back as the same float: a subnormal has few digits) and 0.333333333333 as
    0.333333."""
    return repr(weight).removesuffix(".0")


def _realm(w: Workload, r: int, t: RealmTemplate) -> list[str]:
    """The lines of realm ``r``: its values, then its rpv, constants, CPUs, lifetime and owners,
    each wrapped between its phrases (a lifecycle realm's values made a line of some 150 columns)."""
    guest = t.guest if t.guest in programs.guest_names() else f"file {shown_path(t.guest)}"
    kind = "lifecycle" if t.lifecycle else "resident"
    lines = paragraph((kind, f"{t.instances} instance{'s' if t.instances > 1 else ''}", f"guest {guest}",
                       f"{t.recs} REC{'s' if t.recs > 1 else ''}", f"RAM {_size(t.ram)} at {programs.RAM_BASE:#x}",
                       f"IPA width {t.ipa_width}", t.hash, f"teardown {t.teardown}",
                       f"image {len(t.image):,} bytes ({'measured' if t.measure else 'not measured'})"),
                      held(f"{t.name}:") + " ", "      ", "  ")
    if t.rpv:
        lines += wrapped(held(f"rpv {t.rpv.hex()}"), "      ", "    ")
    if t.constants:
        # As written in a workload file (decimal, usually), with hex beside large values.
        lines += paragraph((f"{k} = {v}" + (f" ({v:#x})" if v > 4096 else "") for k, v in t.constants),
                           "constants ", "      ", "    ")
    if t.cpus is not None:
        written = list(t.cpus_written) if isinstance(t.cpus_written, tuple) else f'"{t.cpus_written}"'
        ignored = sorted(c for c in t.cpus if c >= w.cpus)
        runs_on = list(w.runs_on(r))
        # A set holding every CPU of the run restricts nothing (the realm is in the common
        # queue, as without the key): "run on CPUs 0-3 only" read as a restriction.
        where = (f"every CPU of this run ({held(_cpu_list(runs_on))}), as without the key" if len(runs_on) == w.cpus
                 else f"{held(_cpu_list(runs_on))} only")
        lines += wrapped(f"cpus {written}: its vCPUs run on {where}"
                         + (" " + held(f"({_cpu_list(ignored)} not in this run)") if ignored else ""), "      ", "    ")
    if t.lifetime:
        lines += wrapped(held(f"lifetime {t.lifetime:,} REC entries"), "      ", "    ")
    if t.lifecycle:
        owners = [f"[{i}] CPU {w.owner(r, i)}" if t.instances > 1 else f"CPU {w.owner(r, i)}"
                  for i in range(t.instances)]
        lines += paragraph(owners, held("owned by") + " ", "      ", "    ")
    return lines


def seconds_text(seconds: float) -> str:
    """A length in seconds to 10 significant digits with thousands separators, "2.5", "604,800",
    "134,898.4", as counts of steps are shown ("15,000 steps"; seconds read "15000 s" beside
    them): %g's six showed a phase of 134898.4 s as 134898 s and one of 271000.9 s as 271001 s
    (a length of a week has 6 digits before the point). A share of a length set with --seconds,
    10 / 3, reads 3.333333333. No exponent either: %g wrote `--seconds 1e-7` as "1e-07" and
    0.000015 as "1.5e-05", where the phases' sum error (spec) and the stress report write plain
    decimals; "0.0000001". Below a nanosecond (the tool's clock unit: no run honours such a
    length, which only a typo gives) to 3 digits with an exponent, rather than hundreds of zeros.
    When 10 digits would read as another count of nanoseconds (the run's clock unit), to the
    nanosecond: `--seconds 604799.999999999` showed "604,800", the limit, which it is not."""
    if 0 < seconds < 1e-9:
        return f"{seconds:.3g}"
    text = f"{seconds:.10g}"
    # Infinity, NaN and lengths past 1.8e299 s have no count of nanoseconds (round() raises):
    # shown as before, to 10 digits.
    if math.isfinite(seconds * 1e9) and nanoseconds(float(text)) != nanoseconds(seconds):
        text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{Decimal(text):,f}"


def length(seconds: float | None, iterations: int | None) -> str:
    """A run's or a phase's length as people read it: "2.5 s", "1 step per CPU", "1,000 steps per CPU"."""
    if seconds is not None:
        return f"{seconds_text(seconds)} s"
    return f"{_count(iterations or 0, 'step')} per CPU"


def describe(w: Workload) -> str:
    f = w.file
    slice_ = w.time_slice or w.platform.rec_time_slice
    # The name and path escaped where a character would act on the terminal (click.echo
    # strips none of them on a terminal): a file named "w\x1b[2J.toml" cleared the screen.
    lines = wrapped(f"{held('workload ' + shown_path(w.name))} ({held(shown_path(f.source))})")
    if f.description:
        # Kept as written when it fits; else wrapped on its spaces, as it is prose (one line in
        # the file: a newline is refused, so it has no breaks of its own to keep).
        lines += [f"  {f.description}"] if columns(f.description) + 2 <= WIDTH else _prose(f.description)
    # Each line wrapped between its phrases, as `rmm-mp run`'s report is: a platform's name (a
    # lower-case identifier of any length) made its line as long as the name.
    lines += paragraph((f"{w.cpus} of its {w.platform.cpus} CPUs", f"REC time slice {slice_:,} guest instructions"),
                       held(f"platform {w.platform.name}:") + " ")
    lines += wrapped(", ".join(held(p) for p in (f"length {length(w.seconds, w.iterations)}", f"seed {w.seed}"))
                     + (f" ({held('from the command line:')} {', '.join(w.overrides)})" if w.overrides else ""))
    lines.append("realms:" if w.realms else "realms: none")
    for r, t in enumerate(w.realms):
        lines += _realm(w, r, t)
    lines.append("phases:")
    for phase in w.phases:
        lines += wrapped(held(f"{phase.name}: {length(phase.seconds, phase.iterations)}"), "      ", "  ")
        same: dict[Weights, list[int]] = {}
        for cpu, weights in enumerate(phase.weights):
            same.setdefault(weights, []).append(cpu)
        for weights, cpus in same.items():
            lines += paragraph((f"{name} {_weight(weight)}" for name, weight in weights),
                               held(f"CPU {cpu_set_text(cpus)}:") + " ", "      ", "    ")
    return "\n".join(lines)
