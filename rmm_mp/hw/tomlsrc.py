"""Errors for TOML input files that point at the offending line.

tomllib returns plain dicts without positions, so a key's line is found again in the source
text: table headers are tracked ([a.b] and [[a]] with their occurrence count) and the first
``key =`` line inside the right table wins (a dotted ``a.key =`` counts as the key it spells
out; lines inside a multi-line string are skipped: code_lines). That covers the files we accept
(no inline tables spanning lines for keys we report on), and keeps the parser in the standard
library.

It also finds a bundled TOML file by name (platforms, workloads): the installed package's copy,
else the source checkout's, and reads input files as UTF-8 text (read_source).

This module owns error wording (ConfigError; a value as the file writes it, a float as its text:
tomlnum.TypedFloat), key location, finding bundled files and reading input files.
It must not know any schema. Numbers as files write them (TypedFloat, written_float, the ranges'
wording, ``decimal``) and the size syntax platform and workload files share (``size_value``: "64M",
"2 MiB") are tomlnum's, which stands alone. Parsing a file's text, and saying why tomllib refused
it, is tomlparse's (loads), which stands on this module's line scanning: this module must not
import it.
"""

from __future__ import annotations

import codecs
import datetime
import difflib
import os
import re
import stat
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from rmm_mp.inputfile import TooLarge, read_at_most
from rmm_mp.printable import abbreviated, basic_string, shell_word, shown_path

HEADER = re.compile(r"^\s*+(\[\[?+)\s*+([A-Za-z0-9_.\-\"']++(?: ++[A-Za-z0-9_.\-\"']++)*+)\s*+\]\]?+\s*+(#.*)?$")
"""A table header line (``[dram]``, ``[[realm]]``), also read by workload.locate: the bracket(s),
the name (words of key characters, quotes and dots, with spaces between them) and a comment.
Every quantifier is possessive, so a line is matched or refused in time linear in its length:
the pattern it replaced, a lazy name between two runs of blanks, took time cubic in a run of
blanks on a line that is no header, and every error in a file with such a line looks at each
line (``x = [`` then a line of ``[``, 3,000 spaces and ``1, 2]``: 16 s; 20,000 spaces, hours)."""
_PART = r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[A-Za-z0-9_\-]+'
_KEYLINE = re.compile(rf"^\s*((?:{_PART})(?:\s*\.\s*(?:{_PART}))*)\s*=")
"""A key line, its key plain or dotted (``features.s2sz =``)."""


class ConfigError(ValueError):
    """A value in a TOML file (or an argument standing in for one) is not acceptable.

    The message names the file (printable.shown_path: escaped when its path holds a character
    that is not printable), the line when known, the key, the value and what was expected.
    """

    def __init__(self, source: str, key: str, value: object, expected: str, line: int | None = None) -> None:
        # The file is named as it is, unless a character in its path would act on the terminal
        # (ESC, a newline): then as a TOML string with escapes, as a value is (printable.shown_path).
        where = f"{shown_path(source)}:{line}" if line else shown_path(source)
        # A float, also inside an array or a table, as the file wrote it (TypedFloat: 1e-400,
        # not the 0.0 it reads as).
        shown = _show(value)
        # A key is shown as the file writes it, and a quoted one may be as long as its line:
        # abbreviated as a value is, or a pasted key buries the message as a pasted value did.
        super().__init__(f"{where}: {abbreviated(key)} = {shown}: expected {expected}")
        self.source = source
        self.key = key
        self.value = value
        self.expected = expected
        self.line = line


def _show(value: object) -> str:
    # Decimal as well as hex: a CPU count or a seed is typed in decimal, an address or a
    # size often in hex, and the message should show the value in the form its writer knows.
    if isinstance(value, int) and not isinstance(value, bool) and 4096 < value and value.bit_length() <= 128:
        return f"{value} ({value:#x})"
    if value is _MISSING:
        return "(missing)"
    return abbreviated(_toml(value))


def _toml(value: object) -> str:
    """``value`` as the file writes it, inside arrays and tables too: true rather than Python's
    True, a date as 1979-05-27 rather than datetime.date(1979, 5, 27), { key = value } for a
    table. A string is shown as a TOML string that reads the same (toml_string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 128:
        # Far beyond any range a key accepts, and maybe beyond what str() converts (4300
        # digits, a ValueError): its first and last hex digits and its size.
        digits = f"{abs(value):x}"
        return f"{'-' * (value < 0)}0x{digits[:8]}...{digits[-4:]} (an integer of {value.bit_length()} bits)"
    if isinstance(value, (datetime.date, datetime.time)):      # datetime is a date
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key_part(str(k))} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    if isinstance(value, str):
        return toml_string(value)
    return repr(value)      # a TypedFloat's (tomlnum) repr is its text as the file writes it


def toml_string(text: str) -> str:
    """``text`` as a TOML string that reads back as ``text``, safe to print on a terminal.

    A literal string ('out/r.json') when TOML allows one and every character is printable;
    else a basic string with escapes ("it's", "a\\u001bb"): Python's repr read as TOML would
    double a backslash ('a\\b') and could not hold both quotes, and a control character
    printed raw (ESC, a bidi override) would act on the terminal instead of being seen."""
    if "'" not in text and text.isprintable():
        return f"'{text}'"
    return basic_string(text)


def shown_text(text: str) -> str:
    """``text`` a user typed (a name, a command-line word) as a message shows it: as a TOML
    string (toml_string: 'quickstart', or with escapes for a character that is not printable),
    abbreviated past 240 characters as a file's value is, so that a pasted paragraph does not
    bury the message in which it is refused."""
    return abbreviated(toml_string(text))


def choice_list(values: Iterable[object]) -> str:
    """The values an error offers as choices, each as the file writes it, as text: "32, 36 or
    40", "'sha256' or 'sha512'" (not Python's tuple or list repr). Every error listing a fixed
    set of values (platform, workload and schedule files) words it with this."""
    shown = [_toml(value) for value in values]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING = _Missing()
MISSING: object = _MISSING
"""Stands for a required key that is absent, in ConfigError values."""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_part(name: str) -> str:
    """``name`` as one part of a key path in an error: as written when TOML allows the key bare
    (``recs``, ``rtt-churn``), else quoted as a TOML basic string (``""``, ``"a.b"``, ``"x[1]"``,
    ``"é"``), as the file has to write it. A key holding a dot or brackets then reads as the one
    key it is, and finding its line does not take the path apart at them. A character that is
    not printable is escaped as in a value (basic_string): json.dumps, used before, left a bidi
    override, a zero-width space, DEL and the C1 controls (U+009B is a terminal's CSI) raw."""
    return name if _BARE_KEY.fullmatch(name) else basic_string(name)


def unquoted_part(part: str) -> str:
    """The key a part of a key path names: key_part undone (a quoted part's escapes read)."""
    if len(part) >= 2 and part[0] == part[-1] == '"':
        try:
            # TOML's escapes, which key_part writes: \U and eight hex digits is no JSON escape.
            return str(tomllib.loads(f"k = {part}")["k"])
        except tomllib.TOMLDecodeError:
            return part[1:-1]
    return part


def code_lines(text: str) -> list[str]:
    """The lines of TOML ``text`` as tomllib numbers them (only \\n ends a line: a U+2028 in a
    string does not), with every line that starts inside a multi-line string blanked, so that
    a description holding "[[realm]]" or "recs = 5" is not taken for a header or a key."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    out: list[str] = []
    closing: str | None = None        # the delimiter of the multi-line string open at a line's start
    for line in lines:
        out.append(line if closing is None else "")
        closing = _open_at_end(line, closing)
    return out


def _open_at_end(line: str, closing: str | None) -> str | None:
    """The multi-line string delimiter still open after ``line`` (``closing`` if one was open
    before it), or None. Single-line strings and comments are skipped."""
    i = 0
    while i < len(line):
        if closing is not None:
            if closing == '"""' and line[i] == "\\":
                i += 2
                continue
            if line.startswith(closing, i):
                # up to two more quotes just before the delimiter belong to the string: the run
                # of quotes counted up to 5 only, as no more count (counted whole, on a copy of
                # the rest of the line, a line of many empty strings `"""""", ...` took time
                # quadratic in its length)
                run = 3
                while run < 5 and line.startswith(closing[0], i + run):
                    run += 1
                i += run
                closing = None
                continue
            i += 1
            continue
        ch = line[i]
        if ch == "#":
            return None
        if line.startswith('"""', i) or line.startswith("'''", i):
            closing = line[i:i + 3]
            i += 3
            continue
        if ch in "\"'":
            i = after_string(line, i)
            continue
        i += 1
    return closing


def after_string(line: str, i: int) -> int:
    """The position after the single-line string that opens at ``line[i]`` (a basic string,
    with backslash escapes, or a literal one)."""
    quote, end = line[i], i + 1
    while end < len(line) and line[end] != quote:
        end += 2 if quote == '"' and line[end] == "\\" else 1
    return end + 1


def line_key(line: str) -> tuple[list[str], int] | None:
    """The key a ``key = value`` line sets, as its parts with quotes dropped (``a."b".c =`` ->
    [a, b, c]), and where the value starts; None for any other line."""
    match = _KEYLINE.match(line)
    if match is None:
        return None
    return [_unquoted(p) for p in re.findall(_PART, match.group(1))], match.end()


def _unquoted(part: str) -> str:
    """A key part without its quotes: "a b" (basic, its escapes read) or 'a b' (literal) -> a b."""
    return unquoted_part(part) if part[:1] == '"' else part[1:-1] if part[:1] == "'" else part


def header_key(name: str) -> list[str]:
    """The key a table header's name (HEADER's second group: ``a."b c".d``) spells out, as its
    parts with quotes dropped (line_key's, for a header): [a, b c, d]."""
    return [_unquoted(p) for p in re.findall(_PART, name)]


def locate(text: str, key: str) -> int | None:
    """Line number (1-based) of dotted ``key`` in TOML ``text``, or None.

    ``key`` looks like ``features.breakpoints`` or ``mmio[1].base`` (array-of-tables index); a
    part that is no bare key is quoted (key_part: ``features."x[1]"``). A key that names a table
    (``features``) gives its header line. Any key path gives a line or None, never an exception:
    it is only asked for while an error is being made.
    """
    parts = key_path_parts(key)
    if not parts:
        return None
    found = _locate(text, *_split(parts))
    if found is None and len(parts) == 1:
        found = _locate(text, _indexed(parts[0]), None)
    return found


_KEY_PATH_PART = re.compile(r'"(?:[^"\\]|\\.)*"|[^.]+')
_INDEX = re.compile(r"(.+)\[(\d+)\]")


def key_path_parts(key: str) -> list[str]:
    """``realm[1]."a.b".x`` -> ["realm[1]", '"a.b"', "x"]: a key path taken apart at its dots,
    a quoted part (key_part) kept whole."""
    return _KEY_PATH_PART.findall(key)


def _locate(text: str, table: tuple[str, int], leaf: str | None) -> int | None:
    wanted = [p for p in table[0].split(".") if p] + ([leaf] if leaf is not None else [])
    seen: dict[str, int] = {}
    current: tuple[str, int] | None = ("", 0)
    for number, raw in enumerate(code_lines(text), start=1):
        line = raw.split("#", 1)[0] if '"' not in raw and "'" not in raw else raw
        header = HEADER.match(line)
        if header:
            name = header.group(2).replace('"', "").replace("'", "").replace(" ", "")
            if header.group(1) == "[[":
                seen[name] = seen.get(name, -1) + 1
                current = (name, seen[name])
            else:
                current = (name, 0)
            if leaf is None and current == table:
                return number
            continue
        found = line_key(line)
        if found is None or current is None:
            continue
        # The key's whole path: the table's, then the (possibly dotted) key. It matches when it
        # is the key looked for or lies inside it (a table built by dotted keys), in the same
        # element of an array of tables.
        here = [p for p in current[0].split(".") if p]
        path = here + found[0]
        if len(path) < len(wanted) or path[:len(wanted)] != wanted or (leaf is None and len(path) == len(wanted)):
            continue
        if current == table or (len(here) < len(wanted) and table[1] == 0 and current[1] == 0):
            return number
    return None


def _split(parts: list[str]) -> tuple[tuple[str, int], str | None]:
    """The table (its dotted name and array index) and the key in it a key path names; the key
    is None when the path ends in an array element (``mmio[1]``)."""
    path: list[str] = []
    index = 0
    for part in parts[:-1]:
        name, index = _indexed(part)
        path.append(name)
    last_name, last_index = _indexed(parts[-1])
    if not parts[-1].startswith('"') and _INDEX.fullmatch(parts[-1]):
        return (".".join(path + [last_name]), last_index), None
    return (".".join(path), index), last_name


def _indexed(part: str) -> tuple[str, int]:
    """``mmio[1]`` -> ("mmio", 1); any other part is a key (its quotes dropped) at index 0."""
    match = None if part.startswith('"') else _INDEX.fullmatch(part)
    if match:
        return match.group(1), int(match.group(2))
    return unquoted_part(part), 0


def suggestion(word: str, known: Iterable[str]) -> str:
    """' (did you mean "x"?)' when ``word`` is close to one of ``known``, else ''."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def top_level_hint(key: str, table: str, top: Iterable[str]) -> str:
    """For a key unknown in ``table`` (a key path: ``realm[0]``, ``phase[1].group[0]``,
    ``attestation``) that is a top-level key of the file (one of ``top``): why it landed there,
    as the end of a "no such key" error; else ''. TOML has no end of a table: every key below a
    ``[[realm]]`` header belongs to that realm, so a top-level key written after the tables
    (``seconds = 10`` at the end of a workload file) was refused as "realm[0].seconds: expected
    no such key; keys here: name, guest, ..." with nothing to say that it is the place, not
    the key, that is wrong."""
    if not table or key not in top:
        return ""
    name = re.sub(r"\[\d+\]", "", table)
    header = f"[[{name}]]" if table.endswith("]") else f"[{name}]"
    return (f"; {key} is a top-level key, and a key below the {header} header belongs to {table} "
            "(a table goes on to the next header): write it above the first table")


MAX_INPUT = 1 << 20
"""Most bytes an input file (workload, platform, guest source) may hold. The bundled ones are a
few KiB; a 30 MB TOML file took 13 s to parse before its first mistake was reported, so a
larger file is refused having read no more than this (a file that grows while read as well; a
path that is no regular file, such as a pipe, is refused before it is opened). Equal
to the assembler's MAX_SOURCE (guest.assembler says why there are two)."""


class InputTooLarge(ConfigError):
    """read_source's refusal of a file of more than MAX_INPUT bytes, naming the file. A caller
    that names the file by the key that named it (workload.spec: a realm's guest) finds its
    size and the bound in ``too_large``."""

    def __init__(self, too_large: TooLarge, kind: str) -> None:
        super().__init__(too_large.path, "(file)", f"more than {too_large.limit:,} bytes",
                         f"a {kind} file of at most {too_large.limit:,} bytes (1 MiB)")
        self.too_large = too_large


def read_source(path: Path, kind: str) -> str:
    """The text of input file ``path`` (a ``kind`` file: TOML or guest source), which must be
    UTF-8 as TOML requires and at most MAX_INPUT bytes. A leading byte-order mark, which some
    editors write, is dropped. A file that cannot be read, is too large (InputTooLarge) or is
    not UTF-8 is a ConfigError naming the file (and the line, column and byte of the first bad
    byte) instead of a decoder's traceback."""
    try:
        data = read_at_most(path, MAX_INPUT)
    except OSError as exc:
        raise ConfigError(str(path), "(file)", str(path), f"a {kind} file that can be read ({exc.strerror})") from None
    except TooLarge as exc:
        raise InputTooLarge(exc, kind) from None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        column = len(data[line_start:exc.start].decode("utf-8", "replace")) + 1
        raise ConfigError(str(path), "(file)", f"byte {data[exc.start]:#04x} at line {line}, column {column}",
                          f"UTF-8 text (a {kind} file is UTF-8)", line) from None


def bundled_dir(package_dir: str, checkout_dir: str) -> Path:
    """The bundled files: rmm_mp/``package_dir`` of the installed package when it holds any
    .toml file, else ``checkout_dir`` at the top of the source checkout."""
    packaged = resources.files("rmm_mp") / package_dir
    if packaged.is_dir() and any(Path(str(packaged)).glob("*.toml")):
        return Path(str(packaged))
    return Path(__file__).resolve().parents[2] / checkout_dir


def without_comment(text: str) -> str:
    """``text`` (a line, or the rest of one) up to a ``#`` that starts a comment (a ``#`` inside
    a basic or a literal string is kept)."""
    i = 0
    while i < len(text):
        if text[i] == "#":
            return text[:i]
        i = after_string(text, i) if text[i] in "\"'" else i + 1
    return text


def bundled_names(directory: Path) -> list[str]:
    """The names (file stems) of the .toml files in ``directory``, sorted."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def why_not_a_file(path: Path) -> str | None:
    """None if ``path`` is a regular file to read, else why not. A FIFO or a device such as
    /dev/zero exists, but reading it could block or never end, so it is refused as well. A
    path the system cannot even look up (a name longer than the file system allows, a
    directory that may not be searched) is refused with the system's reason: Path.is_file
    raises on those instead of answering."""
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "no such file"
    except OSError as exc:
        return f"it cannot be looked up: {exc.strerror or exc}"
    except ValueError:      # a NUL character, which TOML strings can hold and no path can
        return "a path cannot hold a NUL character"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "it is a directory"
    return "it is not a regular file"


def bundled_hint(why: str | None, written: str | os.PathLike[str], names: Iterable[str], kind: str) -> str | None:
    """``why`` (why_not_a_file's answer for the path ``written``, as the user wrote it), naming
    the bundled ``kind`` to write instead when the missing file is a bare name (no directory
    part) with a bundled one's name (one of ``names``), in any capitals: `quickstart.toml` or
    `QuickStart.toml` is told to write quickstart. A path written with its directory
    (/abs/dir/quickstart.toml, ./fvp.toml, sub/ripas-loop.s) is not a bundled name written as
    a file, and the hint would read as if the directory were ignored: "no such file" alone.
    Every caller (the CLI, hw.platform.resolve and so Machine.create, a workload's platform and
    guest keys) gets this rule here. Only a bundled name is printed, never the path's own stem."""
    text = os.fspath(written)
    if why != "no such file" or os.sep in text:
        return why
    # Compared case-folded (QuickStart.toml): the bundled names themselves are matched exactly.
    stem = Path(text).stem
    name = next((n for n in names if n.casefold() == stem.casefold()), None)
    return why if name is None else f"{why}; for the bundled {kind}, write {name}"


def with_bundled_hint(why: str | None, written: str | os.PathLike[str], directory: Path, kind: str) -> str | None:
    """bundled_hint for the bundled ``kind``s of ``directory``."""
    return bundled_hint(why, written, bundled_names(directory), kind)


def is_path(text: str) -> bool:
    """Whether find_toml reads ``text`` as a path (it holds a separator or ends in .toml) rather
    than as the name of a bundled file."""
    return os.sep in text or text.endswith(".toml")


def find_toml(name_or_path: str | os.PathLike[str], directory: Path, source: str, key: str, kind: str,
              said: bool = False) -> Path:
    """The file of a bundled ``kind`` (a name in ``directory``) or of a path (it contains a
    separator or ends in .toml); ConfigError(source, key, ...) naming the choices if neither,
    and, when ``said`` (a name from the command line, whose paths are the working directory's),
    what the name is there: a directory, or a file of another suffix (what_it_is). A platform's
    name is told so by the callers that know where its path is read (workload.platform_of: a
    workload file's ``platform`` beside the file; the CLI), not here: platform.resolve serves both."""
    if not isinstance(name_or_path, (str, os.PathLike)):     # e.g. Machine.create(123)
        raise ConfigError(source, key, name_or_path, f"a bundled {kind} name or the path of a .toml file")
    text = os.fspath(name_or_path)
    if is_path(text):
        path = Path(text)
        why = with_bundled_hint(why_not_a_file(path), text, directory, kind)
        if why is not None:
            raise ConfigError(source, key, text, f"a regular {kind} file that exists ({why})")
        return path
    path = directory / f"{text}.toml"
    if why_not_a_file(path) is not None:
        names = bundled_names(directory)
        raise ConfigError(source, key, text, f"a bundled {kind} ({', '.join(names)}){suggestion(text, names)} "
                                             f"or a path to a .toml file{what_it_is(text, kind) if said else ''}")
    return path


def what_it_is(text: str, kind: str, base: Path | None = None) -> str:
    """For a name that is neither a bundled ``kind`` nor a path (find_toml), what it names, if
    anything: a directory, or a file whose name does not end in .toml, which find_toml reads when
    it is written with its directory (./w.txt). ``base`` None: a command-line word, looked up in
    the working directory, whose hint names the shell word to type (a name holding a control
    character in $'...' quotes, printable.shell_word: the message's TOML escapes, "./a\\tb",
    pasted into a shell named another file). Else the directory of the workload file whose key
    it is (its ``platform``, named as ``kind``), whose hint names the line to write there."""
    if not text:
        return ""       # Path("") is the working directory, which the empty name does not name
    path = Path(text) if base is None else base / text
    why = why_not_a_file(path)
    where = shown_text(text) if base is None else f"looked for {shown_path(path)}:"
    if why == "it is a directory":
        return f" ({where} {'is' if base is None else 'it is'} a directory)"
    if why is None:
        written = os.path.join(os.curdir, text)
        word = toml_string(written) if base is None else f"{kind} = {toml_string(written)}"
        if base is None and not word.startswith("'"):
            # Not a literal string, which a POSIX shell reads back as it is: a quote in the name,
            # or a character that is not printable, which only $'...' can write.
            word = shell_word(written)
        # Not "control characters": a zero-width space, a bidi override or a byte that is not
        # UTF-8 get $'...' too. Not "a POSIX shell": dash (Debian's sh) reads $'a' as $a.
        note = "; the name holds characters that are not printable, which bash, zsh and ksh write in $'...' " \
            "quotes (dash does not)" if base is None and word.startswith("$'") else ""
        return (f" ({where} {'is' if base is None else 'it is'} a file whose name does not end in .toml: write "
                f"{word} to read it as a {kind} file{note})")
    return ""
