"""What the stress tool's checkers report: findings, and the names of the calls they happened in.

A Finding is one problem one checker saw: which checker and rule, on which CPU, in which call
(RMI command or realm call with its arguments), at which source line, with detail lines (held
locks, the edges of a cycle, ...). Its text holds no pid or time but the few the watchdog's
findings name, and no path or machine name but those of a CPU's traceback and the error it
raised, which a replay leaves out as it compares (without_run_values): so a replay's report can
be compared with the original's line for line, made in another checkout too.

This module owns the Finding record, call naming, and NUMBER with the exact values of the
numbers it finds (scaled, decimal_value), which the replay's comparison reads (stress.schedule).
It must not check anything.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, Callable, Final

from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.printable import basic_string, not_one_printable_line, shown_line
from rmm_mp.rmm.granule_state import GranuleState

if TYPE_CHECKING:
    from rmm_mp.check import Violation

CHECKERS = ("lockdep", "ownership", "invariants", "watchdog", "functional")
"""Every checker name a Finding may carry ("functional": a crash inside the RMM, or a status or
realm result a correct RMM cannot give)."""

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STRESS = os.path.join(_PACKAGE_ROOT, "stress") + os.sep
_SKIP_FILES = tuple(os.path.join(_PACKAGE_ROOT, "hw", name) for name in ("granule.py", "memory.py")) + tuple(
    _STRESS + name for name in ("instrument.py", "ownership.py", "lockdep.py", "probe.py", "sched.py", "findings.py"))
"""Frames of the lock API, the accessors and the stress tool's own machinery; a site is the
first frame outside them (the catalogued bugs in stress/bugs_rmi.py count as RMM code)."""


@dataclass(frozen=True)
class Finding:
    """One problem a checker saw."""

    checker: str
    rule: str
    message: str
    cpu: int | None = None
    call: str = ""
    site: str = ""
    details: tuple[str, ...] = ()
    step: int | None = None
    shm_dir: str = field(default="", compare=False)
    """The segment directory (RMM_MP_SHM_DIR, as a message shows it) of the run that made the
    finding when that was another process's run: a schedule file's recorded findings
    (schedule.parse). Not part of the finding: only what a replay leaves out as it compares."""
    identity: str = field(default="", compare=False)
    """For a finding with no site, what tells it from others of its checker and rule where the site
    would: a deadlock's calls and the locks they wait for (watchdog.cycle_identity); a leaked lock's
    call that returned holding it and the classes left held (stress.instrument), or, seen from its
    waiter, the waiting call and the lock it waits for (watchdog.wait_identity), or its own CPU's
    (stress.instrument: a CPU waiting for a lock it holds itself); a lockdep cycle's
    classes (lockdep.analyse); a stuck call's call and the kinds of lock it waits for and holds
    (watchdog.call_identity); a dead CPU's kind of failure (failure_kind), its call and the frame it
    raised in (raised_in); each watchdog one (stress.instrument's too) with the population's realm
    each call and lock is of, if any (population.roles); a crash's cause and call; an
    exception a CPU ended on (HostError, ...), where it was raised, without line numbers, and the
    RMI status it carries, or with none its text with numbers masked
    (stress.worker.exception_finding); a wrong status (stress.ops), the command and the status
    returned; a failed vCPU or guest, what failed and how; a broken invariant, its rule and the kind
    of granule it broke at (invariant_finding). No CPU number, address or step: a shrunk run's
    replay has others. Not in its text (a replay compares the text, so files recorded before it was
    added replay as they did), nor in its JSON or a schedule file: only ``key`` reads it."""

    def key(self) -> tuple[str, str, str]:
        """What makes two findings the same problem (shrinking keeps it): checker, rule and
        site, or, with no site, the ``identity`` (without it every deadlock was one problem, and
        a shrinking could keep another deadlock than the one it was shrinking)."""
        return self.checker, self.rule, self.site or self.identity

    def headline(self) -> str:
        where = f"CPU {self.cpu}" if self.cpu is not None else "machine"
        step = f" at step {self.step}" if self.step is not None else ""
        return f"[{self.checker}: {self.rule}] {where}{step}: {self.message}"

    def text(self) -> str:
        """The finding as the report prints it: its headline, then its call, site and details
        indented. A line holding a character that is not printable (a CPU failure's exception
        message or traceback, as the CPU said it: an ESC in a path) is shown as a TOML basic
        string (rmm_mp.printable), as the run report shows such a line; a tab alone stays."""
        return self._text(shown_line)

    def raw_text(self) -> str:
        """``text`` with every line as the checker or the CPU said it, not escaped: for the
        JSON outputs (the --trace file), whose strings carry any character escaped by JSON."""
        return self._text()

    def _text(self, shown: Callable[[str], str] = str) -> str:
        """The finding's lines, each of its own text as ``shown`` shows it (as it is by default)."""
        lines = [shown(self.headline())]
        if self.call:
            lines.append(f"    in {shown(self.call)}")
        if self.site:
            lines.append(f"    at {shown(self.site)}")
        lines.extend(f"    {shown(line)}" for line in self.details)
        return "\n".join(lines)

    def replay_text(self) -> str:
        """The text without source line numbers and the values only one run has: what a replay
        compares (see without_lines, without_run_values). Of the text as the CPU said it, not as
        printed: a line printed escaped (a TOML string, ``File \\"...\\", line 40``) was no
        traceback line to the masks, and its source path and line number stayed."""
        return without_run_values(without_lines(self._text()), self.shm_dirs())

    def run_free_text(self) -> str:
        """The text without the values only one run has (times, pids), line numbers kept: two
        replays that differ in these alone differ in no source line. Unescaped, as replay_text."""
        return without_run_values(self._text(), self.shm_dirs())

    def shm_dirs(self) -> tuple[str, ...]:
        """The segment directories its text may name: this process's, and the recording run's."""
        from rmm_mp.hw import segment      # here: findings are made in CPU processes, which have it loaded
        return (segment.shown_shm_dir(), self.shm_dir)

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.checker, "rule": self.rule, "message": self.message, "cpu": self.cpu,
                "call": self.call, "site": self.site, "details": list(self.details), "step": self.step}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Finding":
        return cls(data["checker"], data["rule"], data["message"], data.get("cpu"), data.get("call", ""),
                   data.get("site", ""), tuple(data.get("details", ())), data.get("step"))


# A number a finding's text names, with its sign: hex with 0x or 0X; a decimal fraction (1.25);
# decimal, possibly grouped (1,000,000); or a bare run of at least 8 hex digits (an address without
# its 0x, 8008f000). A digit inside a word (s2tt, x86, L3) is no number of its own, and a '-' after
# a word character (a range, 0x1000-0x2000; CPUs 0-1) is no sign: -2 and 2 are two numbers (an EL3
# status, a delta), which read without the sign were one. One pattern for the two readers: the
# replay's comparison of numbers (stress.schedule) and the masking of an error's text
# (masked_numbers), which with patterns of their own saw '1.25', '0X1F' and '1,024' apart.
# A float as Python prints it, 2.5e-05 or 1e+20, is one number (it was 2.5 and 05): the exponent
# is signed when there is no '.', so an address without its 0x (8008e000) stays hex. Digits after
# a word character and a '.', and a run of three or more dotted parts, are a name's or a version's
# (v1.0-rel0, 10.0.0.1, 1.2.3), no number: 'v1.0' was masked to 'v1.?'. A number after '/' is one
# ('rmm-mp-stress-report/1' masks to '/?', as 'step 3/10' does): a version there is a number too.
BARE_HEX_DIGITS = 8
"""The fewest digits a number without 0x may be read as hex: a granule address's (the DRAM base
0x80000000), not a count's or an index's, whose 10 and 16 must stay two numbers."""
NUMBER = re.compile(r"(?:(?<![\w-])(?P<sign>-))?\b(?<!\w\.)(?!\d+\.\d+\.\d)"
                    r"(?:0[xX](?P<hex>[0-9a-fA-F]+)"
                    r"|(?P<fraction>\d+\.\d+|\d+(?=[eE][+-]))(?:[eE](?P<exponent>[+-]?\d+))?"
                    r"|(?P<grouped>\d{1,3}(?:,\d{3})+)"
                    rf"|(?=[0-9a-fA-F]*\d)(?P<bare>[0-9a-fA-F]{{{BARE_HEX_DIGITS},}})|(?P<plain>\d+))\b")


EXPONENT_CAP: Final = 1000
"""The largest power of ten (either sign) a number's exponent is applied by (1.5e+300 is its value).
Past it (a hand-edited 1e+99999999, whose value has a hundred million digits: Fraction took minutes
to make it) the number is its mantissa and exponent, one number only with the same two."""


def scaled(value: int | Fraction, exponent: str | None) -> int | Fraction | tuple[object, ...]:
    """``value`` times ten to ``exponent`` (None: none), exact; past EXPONENT_CAP, the pair
    (mantissa, exponent) as a tuple, which no number equals."""
    if exponent is None:
        return value
    negative = exponent.startswith("-")
    power = exponent.lstrip("+-").lstrip("0") or "0"
    # Its length first: int() of a run of 5,000 digits raises (sys.get_int_max_str_digits).
    if len(power) > len(str(EXPONENT_CAP)) or int(power) > EXPONENT_CAP:
        return ("e", value, negative, power)
    scale = Fraction(10) ** int(power)
    return value / scale if negative else value * scale


def decimal_value(digits: str) -> int | Fraction:
    """The value of decimal ``digits`` (a '.' in them: a fraction). Past the digits int() converts
    (sys.get_int_max_str_digits) it raised ValueError, and the replay's check with it: such a
    number is read through Decimal, which has no such limit, to the same exact value (1.5 with
    5,000 zeros after it is 1.5; not its digits, which would not be)."""
    try:
        return Fraction(digits) if "." in digits else int(digits)
    except ValueError:
        return Fraction(Decimal(digits))


def masked_numbers(text: str) -> str:
    """``text`` with each number NUMBER finds, its sign with it, replaced by ``?`` (``vCPU 4097``,
    ``pa=0x80123000``, ``1.25 s``, ``1,024 bytes``), not one inside a name (``RMI_ERROR_RTT``, ``L3``)."""
    return NUMBER.sub("?", text)


_SOURCE_LINE = re.compile(r'(\.py:)\d+|(File "[^"]*", line )\d+')


def without_lines(text: str) -> str:
    """``text`` with the line numbers of its source locations (``rmm_mp/rmm/s2tt.py:298``, a
    traceback's ``File "...", line 298``) replaced by ``?``. An edit anywhere above a site moves
    its line and nothing else, so a schedule file recorded before it is compared without them
    (stress.schedule.compare); the file, the function and everything else still count."""
    return _SOURCE_LINE.sub(lambda m: (m.group(1) or m.group(2)) + "?", text)


_RUN_VALUES = (
    (re.compile(r"(\bused )\d+(?:\.\d+)?( s of CPU time)"), r"\1?\2"),
    (re.compile(r"(\bwithin )\d+(?:\.\d+)?( s of being asked)"), r"\1?\2"),
    # A pid, however a message words it: a lock word's ``host process 4242``, and rmm_mp's own
    # errors in a crash's reason (``bound to live process 4242``, ``its creator (pid 4242)``).
    (re.compile(r"(\b(?:process|pid) )\d+\b"), r"\1?"),
    # A default repr's name may hold <locals> or <lambda> (a function or class defined in a
    # function: ``<function f.<locals>.g at 0x7f...>``), a bracketed word of its own.
    (re.compile(r"(<(?:[^<>]|<[\w.-]+>)* at )0x[0-9a-fA-F]+(>)"), r"\1?\2"),
)
"""Each value only one run has, as a pattern and its replacement (the words around it kept)."""


def without_run_values(text: str, shm_dirs: tuple[str, ...] = ()) -> str:
    """``text`` with the values that differ between two runs of one schedule replaced by ``?``,
    the words around them kept: the CPU time a stuck CPU used (``used 21 s of CPU time``: its
    bound is crossed at a tick of the parent, on a host loaded as it happens to be), the grace
    time a CPU that did not stop was given (``did not stop within 2 s of being asked``: scaled
    by the simulated CPUs per host core), a host process's pid (``host process 4242``: a lock
    word of a host that is no CPU of the run; ``process 4242`` or ``pid 4242`` in an error's
    text), a Python object's address in its default repr
    (``<rmm_mp.rmm.rec_desc.Rec object at 0x7f3a2c1d5e50>``, ``<function f.<locals>.g at
    0x7f3a2c1d5e50>``, in an exception's text: the process's heap, another on every run), and
    where the run was made (without_run_place, given the segment directories ``shm_dirs``).
    With them a replay of such a finding could never reproduce it, nor be told a rewording
    (its numbers differ); the printed finding keeps them."""
    text = without_run_place(text, shm_dirs)
    for pattern, replacement in _RUN_VALUES:
        text = pattern.sub(replacement, text)
    return text


_PACKAGE_DIR = "rmm_mp/"
_TRACEBACK_FILE = re.compile(r'(File ")([^"]+)(")')
_MACHINE_NAME = re.compile(r"\brmm-mp-\d+-[0-9a-f]{8}\b")
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/[\w.+~@%-]+(?:/[\w.+~@%-]+)+/?")


def _placeless(path: str, outside: Callable[[str], str]) -> str:
    """``path`` from its package directory on (``rmm_mp/rmm/s2tt.py``, whichever checkout it
    was in), or ``outside(path)`` for a file outside the package."""
    at = path.rfind("/" + _PACKAGE_DIR)
    return path[at + 1:] if at >= 0 else outside(path)


_TOML_ESCAPE = re.compile(r'\\(?:u([0-9A-F]{4})|U([0-9A-F]{8})|(.))')
_TOML_UNESCAPES = {"\\": "\\", '"': '"', "b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r"}


def _quoted_forms(shown: str) -> tuple[tuple[str, str], ...]:
    """The quoted forms a message may name the segment directory ``shown`` (as shown_path
    shows it) in, when the directory is not one line of printable text or holds a quote or a
    backslash: shown_path's TOML basic string, and Python's repr, in which a raw OSError names
    its file ('/dev/shm/a\\x1bb/rmm-mp-...'). Each without its trailing '/'s, with what masks
    a string in it: '?' for shown_path's, which the directory shown as it is (printable) is
    masked to, quotes and all; '?' in single quotes for the repr's (in double quotes when the
    directory holds a "'"), as a printable directory's mask leaves a repr, so a replay under
    either kind of directory reads the same. Empty when neither
    form differs from the directory in quotes."""
    raw = shown
    if len(shown) >= 2 and shown[0] == shown[-1] == '"':
        def unescaped(m: re.Match[str]) -> str:
            code = m.group(1) or m.group(2)
            return chr(int(code, 16)) if code else _TOML_UNESCAPES.get(m.group(3), m.group(0))
        text = _TOML_ESCAPE.sub(unescaped, shown[1:-1])
        if not_one_printable_line(text) is not None and basic_string(text) == shown:
            raw = text
    base = raw.rstrip("/")
    if not base:
        return ()
    forms = ((basic_string(base), "?"), (repr(base), "'?'"))
    return tuple((form, masked) for form, masked in forms if form[1:-1] != base)


_WORD_DIR_AS_PATH = (r"(?:(?<=(['\"]))<dir>(?=\1)"
                     r"|(?<=\bin )<dir>(?= \(it was closed)|(?<=\bsegment in )<dir>(?![\w.~/-])"
                     r"|(?<=\bor enlarge )<dir>(?![\w.~/-])"
                     r"|(?<![\w.~/-])<dir>(?= has [\d,]+ MiB free| \(RMM_MP_SHM_DIR))")
"""Where a message names a segment directory that is one relative name (``<dir>``) alone, as a path: in
quotes of its own, and as rmm_mp.machine's and rmm_mp.outpaths' errors name it (``no machine named ... in
<dir> (it was closed, ...)``, ``its ctl segment in <dir>: ...``, ``<dir> has 5 MiB free``, ``or enlarge
<dir>``, ``<dir> (RMM_MP_SHM_DIR)``), each form with the words of its message: a looser ``WORD has N``
masked host.exits's "the realm has 2 RECs" with RMM_MP_SHM_DIR=realm. Anywhere else the name is a word
of the message, and stays."""


def without_run_place(text: str, shm_dirs: tuple[str, ...] = ()) -> str:
    """``text`` without what names where its run was made: a source file's directories (a
    traceback's ``File "/work/main/rmm_mp/rmm/s2tt.py"`` reads ``File "rmm_mp/rmm/s2tt.py"``,
    one outside the package, of the Python install, its file name alone), a machine's name
    (``rmm-mp-4242-0a1b2c3d``: the creator's pid and a random tag), each of ``shm_dirs`` (segment
    directories, RMM_MP_SHM_DIR as a message shows it) and any path in one, and any other
    absolute path (the working directory: ``?``). A schedule file replayed from another
    checkout, a clean clone elsewhere or another host's install named other paths in the same
    traceback, and diverged. The segment directories are named, not found as absolute paths
    are: one with a space in it (`/dev/shm/my runs`) read as a path and a word after it, and a
    relative one (`RMM_MP_SHM_DIR=shm`) as no path at all, so a replay made with another one
    diverged. The package's files are named first: a segment directory that holds the checkout
    (RMM_MP_SHM_DIR=/tmp, the checkout in /tmp/rmm-mp; or RMM_MP_SHM_DIR=/), masked first with
    every path in it, made each source file '?', so a crash in another file reproduced the
    recorded one, and one replayed from another checkout diverged."""
    dirs = sorted({d for d in shm_dirs if d}, key=len, reverse=True)
    prefixes = [d.rstrip("/") + "/" for d in dirs]

    def named(m: re.Match[str]) -> str:
        # A path in a segment directory is named from the package on only if the package lies
        # below that directory (RMM_MP_SHM_DIR=/tmp, the checkout /tmp/rmm-mp). One in a segment
        # directory inside a package directory (RMM_MP_SHM_DIR=/work/rmm_mp/shm) is left to its
        # mask: named (rmm_mp/shm/...), it was no longer the directory that mask looks for, and a
        # replay under another directory diverged. A directory named rmm_mp that holds the
        # checkout (RMM_MP_SHM_DIR=/home/u/rmm_mp) is no package directory: taken for one, its
        # package paths were masked whole, and a message naming another file reproduced.
        path = m.group(0)
        at = path.rfind("/" + _PACKAGE_DIR)
        if any((path + "/").startswith(d) and at < len(d) - 1 for d in prefixes):
            return path
        return _placeless(path, lambda outside: outside)

    text = _TRACEBACK_FILE.sub(lambda m: m.group(1) + _placeless(m.group(2), os.path.basename) + m.group(3), text)
    text = _ABSOLUTE_PATH.sub(named, text)
    for shm_dir in dirs:
        # The whole path, as an absolute one is masked whole: the directory alone, or a segment in it.
        # Without its trailing '/'s: RMM_MP_SHM_DIR=shm-a/ names its segments shm-a/rmm-mp-... (os.path.join
        # adds no second '/'), which the directory written with its '/' did not match, and stayed.
        base = shm_dir.rstrip("/")
        # A relative directory of one name with a word character in it (RMM_MP_SHM_DIR=tables) is
        # also a word: alone, it is masked only where it stands as a path (_WORD_DIR_AS_PATH);
        # masked wherever it stood, "the tables workload" read "the ? workload".
        # With its trailing '/'s, as the directory is shown when it was given with them.
        word = bool(re.search(r"\w", base)) and "/" not in base
        inside = "*" if base and re.search(r"\w", base) and not word else "+"   # RMM_MP_SHM_DIR=/: not every '/'
        text = re.sub(rf"(?<![\w.~/-]){re.escape(base)}(?:/[\w.+~@%-]+){inside}/?(?![\w.~-])", "?", text)
        if word:
            text = re.sub(_WORD_DIR_AS_PATH.replace("<dir>", re.escape(base) + "/*"), "?", text)
        if base and inside == "+" and not word:
            # A directory with no word character in it (RMM_MP_SHM_DIR=.) alone is masked only
            # where it stands as a whole path: between spaces or brackets, or in quotes of its
            # own. Found as a word is, every lone '.' after a bracket or a quote ended its
            # sentence with '?' ("(see above)." read "(see above)?").
            text = re.sub(rf"(?:(?<=(['\"]))|(?<![^\s(\[{{<=,])){re.escape(base)}(?(1)(?=\1)|(?![^\s)\]}}>,:;]))",
                          "?", text)
        for quoted, masked in _quoted_forms(shm_dir):
            # A directory that must be escaped to be shown (RMM_MP_SHM_DIR with an ESC in it):
            # shown_path names it, or a file in it, as a TOML string, and a raw OSError's text
            # as Python's repr does. Each quoted string naming it or a path in it is masked
            # whole; the mask above, of the text as shown alone, left the repr form as it was
            # and a file in it half masked ("?\\u001Bb/rmm-mp-?.ctl").
            q = re.escape(quoted[-1])
            text = re.sub(rf"{re.escape(quoted[:-1])}(?:/(?:[^{q}\\]|\\.)*)?{q}", masked, text)
    text = _ABSOLUTE_PATH.sub("?", text)       # what is left: no package file's
    return _MACHINE_NAME.sub("rmm-mp-?", text)


@dataclass
class FindingLog:
    """Findings of one process, each problem once (by ``Finding.key``: checker, rule and site, or
    identity; a broken invariant, which has no site, by its message too: ``add``'s ``by_message``)."""

    limit: int = 50
    items: list[Finding] = field(default_factory=list)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, finding: Finding, by_message: bool = False) -> bool:
        """Record a finding; False if the same problem was recorded already (or the log is full).
        ``by_message``: the same problem is the same message too, for findings with no site
        (broken invariants, each at its own granule), which ``Finding.key`` alone would take
        for one."""
        key = finding.key()
        if by_message:
            key = (key[0], key[1], f"{key[2]}\n{finding.message}")
        if key in self._seen or len(self.items) >= self.limit:
            return False
        self._seen.add(key)
        self.items.append(finding)
        return True


_RTT_LEVEL = re.compile(r"\blevel[ -](-?\d+) RTT\b")    # "level 2 RTT" (rtt-refcount), "a level-1 RTT" (rtt-entry)


AT_QUIESCENT = "at a quiescent point"
"""The detail line (``where``) of a finding of an invariant check at a quiescent point."""
AT_END = "at the end of the run"
"""The detail line of a finding of the invariant check at the run's end (ending.ordered lists
them last by it)."""


def invariant_finding(violation: "Violation", where: str, step: int | None = None) -> Finding:
    """The finding of a broken invariant seen by a check (``where``: AT_QUIESCENT or AT_END).
    Its identity is its rule and the kind of granule it broke at, as the check found it (the
    state its snapshot read, Violation.state: read from the machine again after the check, a
    lapsed pause could have let the CPUs change it first), and an RTT's level if the violation
    names it (``rtt-refcount at RTT granule (level 2)``), or ``at no granule``. No address or
    count: a shrunk run's replay breaks it at another address, by other counts. Without it every violation
    of a rule was one problem, and shrinking an RTT's refcount kept a candidate whose first
    violation of that rule was another granule's, of another kind."""
    state = violation.state
    if violation.pa is None or state is None:
        kind = "no granule" if violation.pa is None else "a granule outside DRAM"
    else:
        level = _RTT_LEVEL.search(violation.detail) if state == GranuleState.RTT else None
        kind = f"{GranuleState.name(state)} granule" + (f" (level {level.group(1)})" if level else "")
    return Finding("invariants", violation.rule, str(violation), None, "", "", (where,), step,
                   identity=f"{violation.rule} at {kind}")


_ARGUMENTS = re.compile(r"\([^()]*\)")
_TRACEBACK_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')


def call_name(call: str) -> str:
    """``call`` without its arguments (``RMI_DATA_DESTROY`` for ``RMI_DATA_DESTROY(0x8008f000,
    0x402db000)``, the realm call inside a REC_ENTER too): what an identity names of a call, its
    addresses being others on a shrunk run's replay."""
    return _ARGUMENTS.sub("", call)


_BRACKETED_ERROR = re.compile(r"\((\w+): .*\)", re.DOTALL)
"""An exception in a bracket, ``(ValueError: its text)``, as the supervisor names one it raised
reading a CPU's result: its type is the kind, its text one run's."""


def failure_kind(how: str) -> str:
    """How a CPU process failed (CpuFailure.how), without what one run has: ``raised ValueError``
    without the error's text (it may name addresses, pids, paths), ``was killed by SIGKILL``, ``did
    not stop within ? s of being asked and was terminated`` (without_run_values), ``sent a result
    that the parent could not read (ValueError)`` without the error's text in its bracket (cut at
    the first colon, it was cut inside the bracket, which was left open)."""
    raised = re.match(r"raised \w+", how)
    if raised:
        return raised.group(0)
    return without_run_values(_BRACKETED_ERROR.sub(r"(\1)", how).split(":")[0])


def raised_in(traceback_text: str) -> str:
    """The innermost frame of a traceback's text, as ``rmm_mp/rmm/s2tt.py (walk)``: no line
    number (an edit above it moves it) and no directory but the package's; "" with no frame."""
    frames = _TRACEBACK_FRAME.findall(traceback_text)
    if not frames:
        return ""
    path, function = frames[-1]
    return f"{_placeless(path, os.path.basename)} ({function})"


def fid_name(fid: int) -> str:
    """Spec name of an RMI, RSI or PSCI function ID (hex if none)."""
    fid &= 0xFFFF_FFFF
    for enum in (RmiFid, RsiFid, PsciFid):
        try:
            return enum(fid).name
        except ValueError:
            continue
    return f"FID {fid:#x}"


def call_text(fid: int, args: "tuple[int, ...] | list[int]", inputs: int | None = None) -> str:
    """``RMI_REC_CREATE(0x..., 0x..., 0x...)``; trailing zero arguments are dropped unless
    ``inputs`` says how many the call takes."""
    shown = list(args)
    if inputs is not None:
        shown = shown[:inputs]
    else:
        while shown and shown[-1] == 0:
            shown.pop()
    return f"{fid_name(fid)}({', '.join(f'{a:#x}' for a in shown)})"


_ENTRY_PREFIXES = ("rmi_", "rsi_", "handle_psci")
_BUGS_FILE = os.sep + os.path.join("stress", "bugs_rmi.py")


def site(depth: int = 1) -> str:
    """The innermost caller outside the lock API, the accessors and the stress tool, then the
    innermost command or realm-call handler if it is another frame: ``rmm_mp/rmm/s2tt.py:298
    (walk) <- rmm_mp/rmm/handlers/rmi_rtt.py:135 (rmi_rtt_destroy)``. Costly (a frame walk):
    call it only when something new is recorded."""
    return _site_from(sys._getframe(depth))


def raised_at(exc: BaseException) -> str:
    """The site (as ``site`` words it) of the frame that raised ``exc``: from the innermost frame
    of its traceback outwards, the first outside the lock API, the accessors and the stress
    tool, then the innermost command or realm-call handler. "" if it has no traceback."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    # A frame the exception left says the line it was at as the traceback does (tb_lineno);
    # its f_lineno is where it stands now, which for the catching frame is the handler.
    lines: dict[int, int] = {}
    while True:
        lines[id(tb.tb_frame)] = tb.tb_lineno
        if tb.tb_next is None:
            break
        tb = tb.tb_next
    return _site_from(tb.tb_frame, lines)


def _site_from(frame: FrameType | None, lines: dict[int, int] | None = None) -> str:
    """``site`` from ``frame`` outwards; ``lines``: the line to name of some frames (by id), a
    traceback's, in place of their f_lineno."""
    inner = None
    handler = None
    while frame is not None and handler is None:
        path = frame.f_code.co_filename
        if not path.startswith(_SKIP_FILES):
            line = lines.get(id(frame), frame.f_lineno) if lines else frame.f_lineno
            here = f"{_short(path)}:{line} ({frame.f_code.co_name})"
            if inner is None:
                inner = here
            if _is_handler(frame.f_code, path):
                handler = here
        frame = frame.f_back
    if inner is None:
        return ""
    return inner if handler in (None, inner) else f"{inner} <- {handler}"


def _is_handler(code: CodeType, path: str) -> bool:
    """A command or realm-call handler of the RMM (``rmi_...``, ``rsi_...``, ``handle_psci...``
    under rmm_mp/rmm/), or a catalogued bug's copy of one in stress/bugs_rmi.py. Those copies
    are named after their mistake (``rec_create_no_rd_lock``), not ``rmi_...``: what tells them
    from the copies of library functions there (``lock_two``, ``walk``, called from a real
    handler, which is the one to name) is that a handler takes the RmmCpu, ``rmm``, first."""
    if path.endswith(_BUGS_FILE):
        return code.co_argcount > 0 and code.co_varnames[0] == "rmm"
    return code.co_name.startswith(_ENTRY_PREFIXES) and os.sep + "rmm" + os.sep in path


def _short(path: str) -> str:
    """A path relative to the package's parent (rmm_mp/rmm/s2tt.py), or the file name."""
    parent = os.path.dirname(_PACKAGE_ROOT)
    if path.startswith(parent + os.sep):
        return path[len(parent) + 1:]
    return os.path.basename(path)
