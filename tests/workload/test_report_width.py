"""The text report of `rmm-mp run` keeps every line within its 118 columns where the earlier fixes
left a line whole or cut it oddly: the first line with a long workload path, and the platform
line's colon after a name cut at the width (hand-built reports, tests/stats/report_samples.py)."""

from __future__ import annotations

from rmm_mp.workload.render import format_report
from stats.report_samples import hand_built

WIDTH = 118


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
