"""How a count reads in the tool's texts: "1 CPU", "4 CPUs", "1 switch", "2 switches"; and a
list of CPUs: "CPU 3", "CPUs 3, 5 to 9 and 12", and the line naming the CPUs an interrupt
killed in their start-up (runtime's RunResult.not_started), which `rmm-mp run` and `rmm-mp
stress` both give.

This module owns that wording. It must not format anything else.
"""

from __future__ import annotations


def count(n: int, noun: str, plural: str = "") -> str:
    """``n`` and ``noun``, in the plural (``plural``, else noun + "s") unless n is 1; n with
    thousands separators."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def cpus(ids: list[int] | tuple[int, ...]) -> str:
    """"CPU 3" for one CPU id; "CPUs 3, 5 to 9 and 12" for several, sorted, runs of three or more
    in a range, so that 40 CPUs of a 64-CPU start-up take a few words."""
    runs: list[list[int]] = []
    for cpu in sorted(ids):
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    parts: list[str] = []
    for run_ in runs:
        parts.extend([f"{run_[0]} to {run_[-1]}"] if len(run_) >= 3 else map(str, run_))
    if len(ids) == 1:
        return f"CPU {parts[0]}"
    return "CPUs " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])


def never_started(ids: list[int] | tuple[int, ...], by: str) -> str:
    """The report's line for CPUs ``ids`` (one or more) never started, killed in their start-up
    when the run was interrupted ``by`` ("Ctrl-C", "SIGTERM")."""
    many = len(ids) > 1
    return (f"{cpus(ids)}{f' ({len(ids)})' if many else ''} {'were' if many else 'was'} never started: "
            f"the run was interrupted ({by}) during {'their' if many else 'its'} start-up, before "
            f"{'they' if many else 'it'} bound to the machine, so {'none made a call' if many else 'it made no call'}")
