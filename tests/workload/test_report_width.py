"""The text report of `rmm-mp run` keeps every line within its 118 columns where the earlier fixes
left a line whole or cut it oddly: the verdict with many causes, the first line with a long
workload path, and the platform line's colon after a name cut at the width (hand-built reports,
tests/stats/report_samples.py)."""

from __future__ import annotations

import itertools
import re
import signal
import unicodedata
from dataclasses import replace

from rmm_mp.check import InvariantReport, Violation
from rmm_mp.cpu_outcome import CpuFailure
from rmm_mp.printable import shown_path
from rmm_mp.workload.render import format_report
from rmm_mp.workload.report import GuestOutput, RealmOutcome
from stats.report_samples import hand_built

WIDTH = 118

_CLEAN = dict(failures=(), problems=(), invariants=InvariantReport(4096, (), {"NS": 4096}), interrupted=False,
              output_errors=(), realms=(RealmOutcome("vm0", 2, True, "SYSTEM_OFF", {"exits": 40}),))


def _causes(many: bool) -> dict[str, dict[str, object]]:
    """Each cause of a failed run as the fields that give it; ``many`` with counts of 5 to 8 digits."""
    n = 12_345_678 if many else 1
    failed = RealmOutcome("vm1 (12,345,678 instances)" if many else "vm1", 1, False, "it failed", {}, instances=n)
    cpus = 128 if many else 1
    violations = 12_345 if many else 1
    return {
        "realms": dict(realms=(failed,)),
        "cpus": dict(failures=tuple(CpuFailure(c, "raised RuntimeError", "", ()) for c in range(cpus))),
        "problems": dict(problems=tuple(f"problem {i}" for i in range(1_234 if many else 1))),
        "invariants": dict(invariants=InvariantReport(4096, tuple(Violation("lock-held", 0x8801_2000 + i, "locked")
                                                                  for i in range(violations)), {"NS": 4096})),
        "unchecked": dict(invariants=None),
        "interrupted": dict(interrupted=True),
        "files": dict(output_errors=tuple(f"json /out/{i}.json: No space left on device"
                                          for i in range(12 if many else 1))),
    }


def test_every_verdict_fits_the_width_and_is_the_last_line() -> None:
    """Every combination of the verdict's causes (invariants violated or not checked, never
    both), with counts of one and of many digits: the report's last line starts with "result:
    FAILED" and no line is wider than 118 columns. The verdict was one line however many causes
    it named: with all of them, 126 columns and more (one of each). When the causes do not fit, they are
    listed whole on the lines before, and the verdict names their kinds: `tail -1` still gives
    the whole verdict, and a short one is as it was."""
    for many in (False, True):
        causes = _causes(many)
        for k in range(1, len(causes) + 1):
            for chosen in itertools.combinations(causes, k):
                if {"invariants", "unchecked"} <= set(chosen):
                    continue
                fields: dict[str, object] = dict(_CLEAN)
                for name in chosen:
                    fields.update(causes[name])
                lines = format_report(hand_built(**fields)).splitlines()
                assert lines[-1].startswith("result: FAILED: "), (chosen, lines[-3:])
                wide = [line for line in lines if len(line) > WIDTH]
                assert wide == [], (many, chosen, [len(line) for line in wide])
    every = dict(_CLEAN)
    for name in ("realms", "cpus", "problems", "invariants", "interrupted", "files"):
        every.update(_causes(True)[name])
    lines = format_report(hand_built(**every)).splitlines()
    assert lines[-1] == ("result: FAILED: 6 causes, listed above: realms, CPU processes, problems, invariants, "
                         "interrupted, report files"), lines[-1]
    assert lines[-3].startswith("causes: 12,345,678 realms failed, 128 CPU processes failed, 1,234 problems,"), lines
    assert " ".join(line.strip() for line in lines[-3:-1]) == (
        "causes: 12,345,678 realms failed, 128 CPU processes failed, 1,234 problems, 12,345 invariant violations, "
        "interrupted, 12 report files not written"), lines[-3:]
    one = format_report(replace(hand_built(**_CLEAN), interrupted=True)).splitlines()
    assert one[-1] == "result: FAILED: interrupted" and not one[-2].startswith("causes: "), one[-2:]


def test_a_long_workload_path_is_wrapped_within_the_width() -> None:
    """The report's first line, `workload NAME (SOURCE)`, was kept whole: a workload file deep
    in a directory tree made it as wide as its path (here 310 columns). It is wrapped as the
    platform line is, between the name and the source, a path wider than the line cut at the
    width, its later lines indented by 4: read together they give the line whole."""
    source = "/home/user/" + "/".join(f"directory-{i:02}" for i in range(20)) + "/my-workload.toml"
    for name in ("my-workload", "w" * 130):
        lines = format_report(hand_built(workload=name, source=source)).splitlines()
        end = next(i for i, line in enumerate(lines) if line.startswith("platform "))
        assert end >= 2 and all(len(line) <= WIDTH for line in lines[:end]), [len(line) for line in lines[:end]]
        assert all(line.startswith("    ") for line in lines[1:end]), lines[:end]
        assert lines[0] + "".join(line[4:] for line in lines[1:end]) in (
            f"workload {name} ({source})", f"workload {name}({source})"), lines[:end]
    assert format_report(hand_built()).splitlines()[0] == "workload smp-realms (workloads/smp-realms.toml)"


def test_the_platform_colon_never_starts_a_line() -> None:
    """A platform name of 109 to 111 characters was cut at the width with nothing or one or two
    of its characters left: the next line began `    : 2 CPUs`, `    b: 2 CPUs` or `    bb: ...`.
    A name cut there now leaves at least 3 of its characters beside its colon."""
    for n in range(100, 240):
        lines = format_report(hand_built(platform="b" * n, seed=2**64 - 1)).splitlines()
        end = next(i for i, line in enumerate(lines) if line.startswith("latency recorded: "))
        assert all(len(line) <= WIDTH for line in lines[1:end]), (n, [len(line) for line in lines[1:end]])
        colon = next(line for line in lines[1:end] if ":" in line)
        assert colon.startswith("platform ") or colon.startswith("    bbb"), (n, lines[1:end])
        assert "".join([lines[1][len("platform "):], *(line[4:] for line in lines[2:end])]).startswith(
            "b" * n + ":"), (n, lines[1:end])


def test_a_cut_path_keeps_its_escapes_and_spaces_inside_a_piece() -> None:
    """A workload path wider than the line, shown escaped (printable.shown_path) or holding
    spaces, is cut between two of its plain characters: the cut fell inside an escape
    (`\\u001` at a line's end, `B[2J` on the next) or beside one of its spaces, which then
    ended a line as a trailing space or began the next after its indent, unseen either way when
    the pieces are read together. Nor is a combining mark parted from its character, and a wide
    (CJK) character counts two columns (counted as one, 70 of them made a line of 160). Read
    together the pieces still give the path whole."""
    for n in range(80, 240):
        for tail in ("\x1b[2J/r.toml", "\\\x01/w.toml", " a  b/w.toml", "\U0001F600\x7f.toml", "e\u0301" * 40,
                     "漢" * 70):
            raw = "/tmp/" + "d" * n + tail + "f" * (n % 37)
            lines = format_report(hand_built(source=raw)).splitlines()
            end = next(i for i, line in enumerate(lines) if line.startswith("platform "))
            shown = shown_path(raw)
            assert lines[0] + "".join(line[4:] for line in lines[1:end]) in (
                f"workload smp-realms ({shown})", f"workload smp-realms({shown})"), (n, tail, lines[:end])
            for line in lines[:end]:
                assert columns(line) <= WIDTH and not line.endswith(" ") and not line[4:].startswith(" "), \
                    (n, tail, lines[:end])
                # A mark stays with the character it sits on.
                assert unicodedata.category(line[4]) not in ("Mn", "Me", "Mc"), (n, tail, lines[:end])
            for line in lines[:end - 1]:
                # An odd run of backslashes at the end, or a \u or \U short of its hex digits.
                assert not re.search(r"(?<!\\)(\\\\)*\\(u[0-9A-F]{0,3}|U[0-9A-F]{0,7})?$", line), (n, tail, lines[:end])


def columns(text: str) -> int:
    """Terminal columns, counted here on their own: a wide character two, a combining mark none."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 0 if unicodedata.category(c) in ("Mn", "Me")
               else 1 for c in text)


# The sections below were wrapped by textwrap, which counts characters: a CJK word (two terminal
# columns a character) made their lines wider than 118 columns, and a word wider than the line
# (a long escaped path) was kept whole. They are wrapped as the header is now (describe.wrapped).
_WIDE = " ".join(f"共有メモリ{i:02}" for i in range(12))
"""12 words of 5 wide characters and 2 digits: 7 characters but 12 columns each, 155 with their spaces."""
_ESCAPED = "/tmp/" + "d" * 150 + "\x1b[2J/r.json"
"""A path wider than the line whose shown form holds an escape (printable.shown_path)."""


def _lines_of(report_lines: list[str], first: str) -> list[str]:
    """The lines of the entry that starts with ``first``: it and the lines after it indented by 4."""
    start = next(i for i, line in enumerate(report_lines) if line.startswith(first))
    end = next((i for i in range(start + 1, len(report_lines)) if not report_lines[i].startswith("    ")),
               len(report_lines))
    return report_lines[start:end]


def _fits(lines: list[str], text: str, joined_by: str = " ") -> None:
    """``lines`` are within the width, and read together (later lines without their indent) give ``text``."""
    assert all(columns(line) <= WIDTH for line in lines), [columns(line) for line in lines]
    first = lines[0].lstrip()
    assert first + "".join(joined_by + line.lstrip() for line in lines[1:]) == text, lines


def test_a_wide_warning_fits_the_width() -> None:
    """A WARNING naming a path of wide characters (a failed close of a shared-memory file under
    a CJK directory) ran to 168 columns on one line."""
    warning = f"closing /dev/shm/{_WIDE} failed: OSError"
    lines = format_report(hand_built(close_warnings=(warning,))).splitlines()
    _fits(_lines_of(lines, "WARNING: closing"), f"WARNING: {warning}")


def test_a_wide_entry_of_problems_not_written_and_not_done_fits_the_width() -> None:
    """The entries of "Problems found", "Report files not written" and "Not done": a JSON path of
    wide characters made its entry's line 178 columns wide."""
    entry = f"json /tmp/{_WIDE}/r.json: No space left on device"
    for field, kept in (("problems", entry), ("output_errors", entry),
                        ("not_done", f"invariants not checked: {entry}")):
        lines = format_report(hand_built(**{field: (kept,)})).splitlines()
        _fits(_lines_of(lines, "  " + kept[:12]), kept)


def test_an_escaped_path_in_an_entry_is_cut_within_the_width_outside_its_escape() -> None:
    """A path wider than the line in an entry was kept whole, on a line past the width; it is cut,
    never inside its escape, and its pieces read together give it."""
    entry = f"json {shown_path(_ESCAPED)}: No space left on device"
    lines = _lines_of(format_report(hand_built(output_errors=(entry,))).splitlines(), "  json ")
    assert len(lines) > 1 and all(columns(line) <= WIDTH for line in lines), [columns(line) for line in lines]
    # Spaces aside (a break between two words drops theirs), the pieces give the entry.
    assert "".join(line.strip() for line in lines).replace(" ", "") == entry.replace(" ", ""), lines
    assert not any(re.search(r"\\(u[0-9A-F]{0,3})?$", line) for line in lines), lines


def test_no_figures_with_a_wide_reason_fits_the_width() -> None:
    """"Lock contention: no figures (REASON)." with a reason naming wide characters."""
    reason = f"lock figures not read: {_WIDE}"
    lines = format_report(hand_built(locks={}, not_done=(reason,))).splitlines()
    _fits(_lines_of(lines, "Lock contention: no figures"), f"Lock contention: no figures ({reason}).")


def test_the_guest_output_lines_with_wide_realm_names_fit_the_width() -> None:
    """The guest output's title, the "No guest output" line and the "Guest output not kept" note
    name realms: wide names made them wider than the width (hand-built: a workload's realm names
    are ASCII, fields._NAME, but the report takes any)."""
    names = ["領域" * 24, *(f"領域{i:02}" * 6 for i in range(1, 8))]
    realms = tuple(RealmOutcome(name, 1, False, "it failed", {}, GuestOutput("", 0, (), 0) if i % 2 else
                                GuestOutput("hi\n", 3, (), 0), output_dropped=i % 2 == 0)
                   for i, name in enumerate(names))
    lines = format_report(hand_built(realms=realms)).splitlines()
    _fits(_lines_of(lines, f"Guest output of {names[0]}"),
          f"Guest output of {names[0]}: console (3 bytes written), LOG (0 records)")
    _fits(_lines_of(lines, "No guest output"),
          "No guest output (no console byte, no LOG record) of 4 realms: " + ", ".join(names[1::2]))
    _fits(_lines_of(lines, "Guest output not kept"), "Guest output not kept of 4 failed realms (a CPU keeps it for "
          "the first 16 lifecycle instances that fail on it): " + ", ".join(names[0::2]))


def test_guest_output_not_kept_never_cuts_a_realm_name_at_its_hyphen() -> None:
    """textwrap broke that note at a hyphen: a realm named "lc-realm-07" ended a line as "lc-" and
    went on "realm-07". The note now breaks between names only, as "No guest output" does."""
    for n in range(1, 30):
        realms = tuple(RealmOutcome("x" * n if i == 0 else f"lc-realm-{i:02}", 1, False, "it failed", {},
                                    output_dropped=True) for i in range(5))
        lines = _lines_of(format_report(hand_built(realms=realms)).splitlines(), "Guest output not kept")
        assert not any(line.endswith("-") for line in lines), (n, lines)


def test_a_wide_stress_warning_fits_the_width() -> None:
    """`rmm-mp stress` wraps its WARNING lines as `rmm-mp run` does, and counted characters too:
    a CPU's failed close naming a CJK path ran to 162 columns."""
    from rmm_mp.stress.config import StressConfig
    from rmm_mp.stress.report import StressReport

    what = f"closing /dev/shm/{_WIDE} failed: OSError"
    report = StressReport(StressConfig(schedule="random", steps=10), (), "budget", 0.1, {0: 2, 1: 2}, steps=4,
                          cpu_warnings={1: what})
    _fits(_lines_of(report.text().splitlines(), "WARNING: CPU 1"), f"WARNING: {report.warnings()[0]}")


def test_a_cpu_failure_wider_than_the_report_is_wrapped() -> None:
    """A CPU failure's line and its traceback were indented by 2, never wrapped: an exception's
    long message (here with CJK characters, two columns each) ran past the width. Each line wider
    than the report is wrapped in terminal columns, its indent kept and its further lines 4 deeper;
    a traceback line that fits is kept as it is, blanks and all (the ^^^ marks under its code),
    and read without their indents the pieces give each line whole."""
    message = "DELEGATE failed at " + ", ".join(f"{0x8800_0000 + i * 4096:#x}" for i in range(12)) + " 名前" * 30
    traceback = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g( 1,  2)\n"
                 f"    ^^^^^^^^^\nRuntimeError: {message}\n")
    failure = CpuFailure(1, f"raised RuntimeError: {message}", traceback, ())
    lines = format_report(hand_built(**{**_CLEAN, "failures": (failure,)})).splitlines()
    start = lines.index("CPU failures")
    section = lines[start + 1:lines.index("", start)]
    wide = [line for line in section if sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in line) > WIDTH]
    assert wide == [], wide
    assert "      g( 1,  2)" in section and "      ^^^^^^^^^" in section, section
    first = [line for line in section if not line.startswith("  Traceback")][:4]
    assert first[0].startswith("  CPU 1 raised RuntimeError: DELEGATE failed at 0x88000000,"), first
    assert all(line.startswith("      ") for line in first[1:3]), first
    joined = " ".join(line.strip() for line in section)
    assert f"CPU 1 raised RuntimeError: {message}; locks still held: none" in joined, joined
    assert f"RuntimeError: {message}" in joined.split("Traceback", 1)[1], joined


def test_a_cpu_failure_line_indented_past_the_width_is_wrapped_and_ends() -> None:
    """A failure line indented near or past the report's width (an exception's message that
    quotes deeply indented text) kept its whole indent as the indent of its wrapped lines, which
    left no room for a character: the report never came out (the wrap went on forever). Its
    indent is cut short so that the line's words still fit, and read without their indents the
    pieces give the line's words whole."""
    words = " ".join(f"word{i}" for i in range(40))
    cases = [" " * 130 + words, " " * 113 + "x" * 20, " " * 117 + "y", "\t" * 3 + " " * 120 + "z" * 200]
    def endless(signum: int, frame: object) -> None:
        raise TimeoutError("the report took over 20 s: its wrap never ended")

    previous = signal.signal(signal.SIGALRM, endless)
    signal.alarm(20)
    try:
        for line in cases:
            failure = CpuFailure(1, "raised RuntimeError: deep", f"RuntimeError: deep\n{line}\n", ())
            lines = format_report(hand_built(**{**_CLEAN, "failures": (failure,)})).splitlines()
            start = lines.index("CPU failures")
            section = lines[start + 1:lines.index("", start)]
            assert all(len(piece) <= WIDTH for piece in section), section
            assert "".join("".join(piece.split()) for piece in section[2:]) == "".join(line.split()), section
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_cpu_failure_with_a_control_character_reaches_the_terminal_escaped() -> None:
    """A CPU failure's line and traceback come from the CPU process as the exception said them:
    an ESC in its message (a path it names, a guest's bytes) reached the terminal raw, and
    then the wrap could split the terminal sequence over two lines. Such a line is shown as a
    TOML basic string, its ESC as \\u001B; a line without one is as it was."""
    message = "bad path /tmp/\x1b[2J/x " + "word " * 30
    traceback = f"Traceback (most recent call last):\nRuntimeError: {message}\n"
    failure = CpuFailure(1, f"raised RuntimeError: {message}", traceback, ())
    text = format_report(hand_built(**{**_CLEAN, "failures": (failure,)}))
    assert "\x1b" not in text
    lines = text.splitlines()
    start = lines.index("CPU failures")
    section = lines[start + 1:lines.index("", start)]
    assert section[0].startswith('  "CPU 1 raised RuntimeError: bad path /tmp/\\u001B[2J/x word'), section
    assert "  Traceback (most recent call last):" in section, section
    assert all(len(line) <= WIDTH for line in section), section


def test_the_realm_table_aligns_a_detail_with_wide_and_combining_characters() -> None:
    """A detail holding wide characters (a --save-tokens directory named in CJK) or combining
    marks: the table counted characters (str.ljust, textwrap), so that row's counters stood one
    column to the right per wide character and one to the left per mark. Every row's counters
    now start at the header's "counters" column, in terminal columns."""
    from rmm_mp.printable import columns
    from rmm_mp.workload.render_realms import realm_table

    def row(name: str, detail: str) -> dict[str, object]:
        return {"name": name, "recs": 1, "exceptions": 3, "ok": True, "detail": detail,
                "counters": {"entries": 12, "faults": 3}}

    shown = [row("plain", "turned itself off"),
             row("wide", "turned itself off, saved as /tmp/トークン/wide-0-0.cbor"),
             row("marks", "turned itself off, saved as /tmp/to\u0301ke\u0301ns/marks-0-0.cbor")]
    lines = realm_table(shown, 118)
    at = lines[0].index("counters")
    for line in lines[2:]:
        start = line.index("entries")
        assert columns(line[:start]) == at, lines
        assert columns(line) <= 118, line
    # Wrapped in a narrow table, each line of the detail stays within its column.
    narrow = realm_table(shown, 60)
    at = narrow[0].index("counters")
    for line in narrow[2:]:
        if "entries" in line:
            assert columns(line[:line.index("entries")]) == at, narrow


def test_the_realm_table_keeps_the_spaces_of_a_detail_as_written() -> None:
    """The table's detail, wrapped in terminal columns, joined its words with one space: a
    --save-tokens directory "/tmp/my  tokens" (two spaces; shown_path does not quote it) was
    shown as "/tmp/my tokens", another directory. textwrap, before, kept the spaces."""
    from rmm_mp.workload.render_realms import realm_table

    detail = f"turned itself off, saved as {shown_path('/tmp/my  tokens/t/att256-0.bin')}"
    assert "my  tokens" in detail, detail
    shown = [{"name": "vm", "recs": 1, "exceptions": 0, "ok": True, "detail": detail, "counters": {"entries": 1}}]
    lines = realm_table(shown, 118)
    assert "saved as /tmp/my  tokens/t/att256-0.bin" in lines[2], lines
