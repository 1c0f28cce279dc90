"""The text report of `rmm-mp run` keeps every line within its 118 columns where the earlier fixes
left a line whole or cut it oddly: the verdict with many causes, the first line with a long
workload path, and the platform line's colon after a name cut at the width (hand-built reports,
tests/stats/report_samples.py)."""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import replace

from rmm_mp.check import InvariantReport, Violation
from rmm_mp.cpu_outcome import CpuFailure
from rmm_mp.printable import shown_path
from rmm_mp.workload.render import format_report
from rmm_mp.workload.report import RealmOutcome
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
