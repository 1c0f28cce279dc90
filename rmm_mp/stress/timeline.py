"""A deterministic stress run as a Trace Event Format timeline (the format of `rmm-mp run --trace`,
rmm_mp.stats.trace_export): open it in Perfetto or chrome://tracing and step through the
interleaving CPU by CPU.

The clock is the schedule: one step is one microsecond, so ``ts`` is the step at which a thing
happened on any CPU and the picture is the same on every replay. One process ("rmm-mp machine",
pid 1) and, per CPU, these tracks (threads):

    "CPU n" (tid n + 1, as trace_export numbers them)
        RMI_... calls           complete events from RMI entry to RMI exit
        "blocked on <PA>"       complete events while the CPU waited for a lock, inside its call
                                (to the end, args {unfinished}, when it still waited: a deadlock)
        findings                instant events ("ph": "i") at the finding's step, with its text
    "CPU n running" (tid 101 + n)
        "running"               complete events: the steps this CPU ran (between switches)
    "CPU n locks" (tid 201 + n), "CPU n locks (k + 1)" (tid 201 + n + 100 k)
        "lock <PA>"             complete events from acquire to release, args {granule}

A run in which a CPU returned no result (its process died, or its result was lost on the way:
StressReport.unreported) lost that
CPU's points and the switches it made, which it keeps until it returns. Its timeline is
incomplete, and says so (``incomplete``): the other CPUs' calls, waits and locks are drawn at
their steps, the dead CPU's track is named as having returned nothing, no CPU's running slices
are drawn (the switches left would draw a CPU running over the steps of others), and an
instant event at step 0 and ``otherData.incomplete`` give the reason.

The Trace Event Format wants the complete events of one thread to nest (Perfetto drops the
ones that do not), which is why they are spread so: a call spans several running slices, and
locks taken hand over hand overlap without nesting, so each hold goes to the first of its CPU's
lock tracks that is free at its start.

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
from rmm_mp.stress.shared import MAX_CPUS

PID = 1
TID_BASE = 1
LANE_STRIDE = 100
"""tid of lock track k of CPU n: LOCK_TID_BASE + n + LANE_STRIDE * k. Each kind of track has a
block of LANE_STRIDE tids, more than a run has CPUs (stress.shared.MAX_CPUS, 64), so no tid is
used twice. The blocks were 50 apart, for 16 CPUs: at 51 or more, CPU 50's calls and CPU 0's
running slices shared a track."""
RUN_TID_BASE = TID_BASE + LANE_STRIDE
LOCK_TID_BASE = TID_BASE + 2 * LANE_STRIDE
"""The running and lock tracks' blocks follow the calls' block, LANE_STRIDE apart (101, 201):
derived, so that the check below, on LANE_STRIDE alone, covers every block."""
if MAX_CPUS > LANE_STRIDE:
    raise AssertionError(f"{MAX_CPUS} CPUs do not fit in the timeline's blocks of {LANE_STRIDE} tids")
FORMAT = "rmm-mp-stress-trace/1"


def _x(name: str, cat: str, tid: int, start: int, end: int, args: dict[str, Any] | None = None) -> dict[str, Any]:
    event = {"name": name, "cat": cat, "ph": "X", "pid": PID, "tid": tid, "ts": start, "dur": max(1, end - start)}
    if args:
        event["args"] = args
    return event


def incomplete(report: StressReport) -> str:
    """Why the timeline of ``report`` cannot draw the whole interleaving ("" if it can)."""
    if not report.unreported:
        return ""
    return (f"{report.no_result()}, so its calls and locks and the switches it made are lost: the other "
            "CPUs' calls and locks are drawn, no CPU's running slices")


def _metadata(lanes: dict[int, int], lost: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Names and order of every track: per CPU (``lanes``: CPU -> its number of lock tracks),
    its calls, its running slices, then its lock tracks; the calls' track of a CPU in ``lost``
    says it returned nothing to draw."""
    out: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": PID, "args": {"name": "rmm-mp machine"}}]
    for cpu, count in lanes.items():
        name = f"CPU {cpu} (returned no result: not drawn)" if cpu in lost else f"CPU {cpu}"
        tracks = [(TID_BASE + cpu, name), (RUN_TID_BASE + cpu, f"CPU {cpu} running")]
        tracks += [(_lock_tid(cpu, k), f"CPU {cpu} locks" + (f" ({k + 1})" if k else "")) for k in range(count)]
        for order, (tid, label) in enumerate(tracks):
            out.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": label}})
            out.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid,
                        "args": {"sort_index": cpu * 1000 + order}})
    return out


def _lock_tid(cpu: int, lane: int) -> int:
    return LOCK_TID_BASE + cpu + LANE_STRIDE * lane


def _running(schedule: tuple[tuple[int, int], ...], last_step: int) -> list[dict[str, Any]]:
    out = []
    for (start, cpu), nxt in zip(schedule, list(schedule[1:]) + [(last_step, -1)]):
        out.append(_x("running", "sched", RUN_TID_BASE + cpu, start, nxt[0]))
    return out


def _in_lanes(cpu: int, holds: list[tuple[int, int, int]]) -> tuple[list[dict[str, Any]], int]:
    """Lock holds (address, start, end) as events, each on the first lock track of ``cpu`` whose
    last hold ended by its start, so that no track has two holds overlapping; and how many
    tracks that took."""
    ends: list[int] = []
    out = []
    for addr, start, end in sorted(holds, key=lambda h: (h[1], h[0])):
        event = _x(f"lock {addr:#x}", "lock", 0, start, end, {"granule": f"{addr:#x}"})
        finish = start + event["dur"]
        lane = next((k for k, busy_until in enumerate(ends) if busy_until <= start), len(ends))
        if lane == len(ends):
            ends.append(finish)
        ends[lane] = finish
        event["tid"] = _lock_tid(cpu, lane)
        out.append(event)
    return out, max(1, len(ends))


def _cpu_events(cpu: int, pts: list[tuple[int, int, int]], last_step: int) -> tuple[list[dict[str, Any]], int]:
    """One CPU's calls, lock holds and waits, and the number of lock tracks its holds take.

    A LOCK point comes before the attempt, and the CPU may be switched out there: the lock is
    taken only once it runs again, and then after SPIN points if it was held. So a hold is
    drawn from the CPU's next point that is not a SPIN (the previous holder's UNLOCK point came
    before it), and no two CPUs' tracks show one lock held at once. A wait still under way at
    the end (a deadlock, a leaked lock) is drawn to the end; a lock not yet taken then (still
    waited for, or its CPU aborted at the LOCK point) is not drawn as held."""
    out: list[dict[str, Any]] = []
    holds: list[tuple[int, int, int]] = []
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
            holds.append((arg, locks.pop(arg), step))
        elif kind == points.SPIN and blocked is None:
            blocked = (step, arg)
    if blocked is not None:
        out.append(_x(f"blocked on {blocked[1]:#x}", "lock", TID_BASE + cpu, blocked[0], last_step,
                      {"unfinished": True}))
    if call is not None:
        out.append(_x(fid_name(call[1]), "rmi", TID_BASE + cpu, call[0], last_step, {"unfinished": True}))
    holds.extend((addr, start, last_step) for addr, start in locks.items())
    drawn, lanes = _in_lanes(cpu, holds)
    return out + drawn, lanes


def events(report: StressReport) -> list[dict[str, Any]]:
    """Every event of the timeline, metadata first."""
    last = report.steps + 1
    why = incomplete(report)
    # With a dead CPU's switches lost, each slice drawn would run to the next switch left, over
    # the steps other CPUs ran: none is drawn rather than wrong ones.
    out = [] if why else _running(report.schedule, last)
    lanes: dict[int, int] = {}
    for cpu in range(report.config.cpus):
        drawn, lanes[cpu] = _cpu_events(cpu, report.points.get(cpu, []), last)
        out.extend(drawn)
    out = _metadata(lanes, report.unreported) + out
    if why:
        out.append({"name": "incomplete timeline", "cat": "incomplete", "ph": "i", "s": "g", "pid": PID,
                    "tid": TID_BASE, "ts": 0, "args": {"why": why}})
    for f in report.findings:
        tid = TID_BASE + (f.cpu if f.cpu is not None else 0)
        out.append({"name": f"{f.checker}: {f.rule}", "cat": "finding", "ph": "i", "s": "g", "pid": PID, "tid": tid,
                    "ts": f.step if f.step is not None else last, "args": {"finding": f.raw_text()}})
    return out


def write(report: StressReport, path: "str | Path") -> Path:
    """Write the timeline of a deterministic run that logged its points (log_points)."""
    if not report.config.deterministic:
        raise ValueError("a timeline needs a deterministic run (--schedule random, pct or --replay)")
    out = Path(path)
    with replacing(str(out)) as temp:
        Path(temp).write_text(json.dumps({"traceEvents": events(report), "displayTimeUnit": "ms",
                                          "otherData": {"format": FORMAT, "clock": "schedule steps (1 step = 1 us)",
                                                        "summary": report.summary(),
                                                        "incomplete": incomplete(report) or None}}) + "\n")
    return out
