"""A deterministic stress run as a Trace Event Format timeline (the format of `rmm-mp run --trace`,
rmm_mp.stats.trace_export): open it in Perfetto or chrome://tracing and step through the
interleaving CPU by CPU.

The clock is the schedule: one step is one microsecond, so ``ts`` is the step at which a thing
happened on any CPU and the picture is the same on every replay. One process ("rmm-mp machine",
pid 1), one track per CPU ("CPU n", tid n + 1, as trace_export numbers them), and on it:

    "running"                   complete events: the steps this CPU ran (between switches)
    RMI_... calls               complete events from RMI entry to RMI exit, args {x1}
    "lock <PA>"                 complete events from acquire to release, on the CPU's lock
                                track ("CPU n locks", tid 101 + n), args {granule}
    "blocked on <PA>"           complete events while the CPU waited for a lock (to the end,
                                args {unfinished}, when it still waited: a deadlock)
    findings                    instant events ("ph": "i") at the finding's step, with its text

This module owns the conversion. It must not run anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rmm_mp.hw import points
from rmm_mp.outpaths import replacing
from rmm_mp.stress.findings import fid_name
from rmm_mp.stress.report import StressReport

PID = 1
TID_BASE = 1
LOCK_TID_BASE = 101
FORMAT = "rmm-mp-stress-trace/1"


def _x(name: str, cat: str, tid: int, start: int, end: int, args: dict[str, Any] | None = None) -> dict[str, Any]:
    event = {"name": name, "cat": cat, "ph": "X", "pid": PID, "tid": tid, "ts": start, "dur": max(1, end - start)}
    if args:
        event["args"] = args
    return event


def _metadata(cpus: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": PID, "args": {"name": "rmm-mp machine"}}]
    for cpu in cpus:
        for tid, label in ((TID_BASE + cpu, f"CPU {cpu}"), (LOCK_TID_BASE + cpu, f"CPU {cpu} locks")):
            out.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": label}})
            out.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "args": {"sort_index": tid}})
    return out


def _running(schedule: tuple[tuple[int, int], ...], last_step: int) -> list[dict[str, Any]]:
    out = []
    for (start, cpu), nxt in zip(schedule, list(schedule[1:]) + [(last_step, -1)]):
        out.append(_x("running", "sched", TID_BASE + cpu, start, nxt[0]))
    return out


def _cpu_events(cpu: int, pts: list[tuple[int, int, int]], last_step: int) -> list[dict[str, Any]]:
    """One CPU's calls, lock holds and waits.

    A LOCK point comes before the attempt, and the CPU may be switched out there: the lock is
    taken only once it runs again, and then after SPIN points if it was held. So a hold is
    drawn from the CPU's next point that is not a SPIN (the previous holder's UNLOCK point came
    before it), and no two CPUs' tracks show one lock held at once. A wait still under way at
    the end (a deadlock, a leaked lock) is drawn to the end; a lock not yet taken then (still
    waited for, or its CPU aborted at the LOCK point) is not drawn as held."""
    out: list[dict[str, Any]] = []
    call: tuple[int, int] | None = None
    locks: dict[int, int] = {}
    taking: int | None = None
    blocked: tuple[int, int] | None = None
    for step, kind, arg in pts:
        if kind != points.SPIN:
            if blocked is not None:
                out.append(_x(f"blocked on {blocked[1]:#x}", "lock", TID_BASE + cpu, blocked[0], step))
                blocked = None
            if taking is not None:
                locks[taking] = step            # taken just before this point
                taking = None
        if kind == points.RMI_ENTRY:
            call = (step, arg)
        elif kind == points.RMI_EXIT and call is not None:
            out.append(_x(fid_name(call[1]), "rmi", TID_BASE + cpu, call[0], step))
            call = None
        elif kind == points.LOCK:
            taking = arg
        elif kind == points.UNLOCK and arg in locks:
            out.append(_x(f"lock {arg:#x}", "lock", LOCK_TID_BASE + cpu, locks.pop(arg), step, {"granule": f"{arg:#x}"}))
        elif kind == points.SPIN and blocked is None:
            blocked = (step, arg)
    if blocked is not None:
        out.append(_x(f"blocked on {blocked[1]:#x}", "lock", TID_BASE + cpu, blocked[0], last_step,
                      {"unfinished": True}))
    if call is not None:
        out.append(_x(fid_name(call[1]), "rmi", TID_BASE + cpu, call[0], last_step, {"unfinished": True}))
    for addr, start in locks.items():
        out.append(_x(f"lock {addr:#x}", "lock", LOCK_TID_BASE + cpu, start, last_step, {"granule": f"{addr:#x}"}))
    return out


def events(report: StressReport) -> list[dict[str, Any]]:
    """Every event of the timeline, metadata first."""
    cpus = list(range(report.config.cpus))
    last = report.steps + 1
    out = _metadata(cpus) + _running(report.schedule, last)
    for cpu in cpus:
        out.extend(_cpu_events(cpu, report.points.get(cpu, []), last))
    for f in report.findings:
        tid = TID_BASE + (f.cpu if f.cpu is not None else 0)
        out.append({"name": f"{f.checker}: {f.rule}", "cat": "finding", "ph": "i", "s": "g", "pid": PID, "tid": tid,
                    "ts": f.step if f.step is not None else last, "args": {"finding": f.text()}})
    return out


def write(report: StressReport, path: "str | Path") -> Path:
    """Write the timeline of a deterministic run that logged its points (log_points)."""
    if not report.config.deterministic:
        raise ValueError("a timeline needs a deterministic run (--schedule random, pct or --replay)")
    out = Path(path)
    with replacing(str(out)) as temp:
        Path(temp).write_text(json.dumps({"traceEvents": events(report), "displayTimeUnit": "ms",
                                          "otherData": {"format": FORMAT, "clock": "schedule steps (1 step = 1 us)",
                                                        "summary": report.summary()}}) + "\n")
    return out
