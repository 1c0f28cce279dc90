"""The per-CPU trace rings (hw.trace) as a Trace Event Format file for Perfetto or chrome://tracing.

One process, "rmm-mp machine", with one thread (track) per simulated CPU named "CPU n" (tid
n + 1), sorted by CPU. Every
ring record becomes a complete event ("ph": "X") with ``ts`` and ``dur`` in microseconds, to
three decimals (exact ns), counted from ``t0_ns`` (a time.perf_counter_ns reading, the clock the
records use; CLOCK_MONOTONIC, one clock for every process on Linux):

    RMI calls                  named by spec name (RMI_REC_ENTER ...), args {x1, realm?}
    RSI and PSCI calls         named by spec name (RSI_HOST_CALL ...), args {x1}
    REC runs                   "REC run -> EXIT_HOST_CALL", args {rec, realm?, exit_reason}
    contended lock waits       "lock wait RTT", args {granule, class}

Only what the ring holds is written: X1 but no status (a record has none). ``realm`` appears
when the caller's ``realms`` map names the REC or RD at an RMI call's X1 (or the REC run's REC)
and the record is not older than the name (``named_from``); a realm's own calls pass IPAs and
values in X1, so a match there would be a coincidence. Calls nest
on a track: a REC run lies inside its RMI_REC_ENTER, an RSI call inside its REC run, a lock
wait inside the call that waited, which is what X events allow. A ring keeps the newest
``trace_capacity`` records, so a long run's file shows its end; "otherData" says how many
records each CPU dropped.

This module owns the export. It must not change the machine or interpret ring layouts beyond
hw.trace's documented header (u64 head: records written so far).
"""

from __future__ import annotations

import json
import struct
from typing import TYPE_CHECKING, Any

from rmm_mp.hw import trace
from rmm_mp.outpaths import replacing
from rmm_mp.stats import calls
from rmm_mp.stats.report import lock_class_name

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

PID = 1
TID_BASE = 1
"""CPU n is thread TID_BASE + n: Perfetto once merged threads 0 and 1 of JSON traces (its PR 2278)."""
PROCESS_NAME = "rmm-mp machine"
FORMAT = "rmm-mp-trace/1"
_CATEGORY = {trace.KIND_RMI: "rmi", trace.KIND_RSI: "rsi", trace.KIND_REC_RUN: "rec", trace.KIND_LOCK_WAIT: "lock"}


def _us(ns: int) -> float:
    return round(ns / 1000, 3)


def _named(args: dict[str, Any], pa: int, start: int, realms: dict[int, str],
           named_from: dict[int, int] | None) -> dict[str, Any]:
    if pa in realms and (named_from is None or start >= named_from.get(pa, 0)):
        args["realm"] = realms[pa]
    return args


def event(record: tuple[int, int, int, int, int], tid: int, t0_ns: int, realms: dict[int, str],
          named_from: dict[int, int] | None = None) -> dict[str, Any]:
    """The X event of one ring record (start_ns, duration_ns, kind, code, arg); ``realm`` is
    added from ``realms`` only when the record starts at or after ``named_from[pa]`` (if given)."""
    start, duration, kind, code, arg = record
    if kind == trace.KIND_REC_RUN:
        reason = calls.name(calls.EXIT_BASE + code)
        name, args = f"REC run -> {reason}", _named({"rec": f"{arg:#x}", "exit_reason": reason}, arg, start, realms,
                                                    named_from)
    elif kind == trace.KIND_LOCK_WAIT:
        cls = lock_class_name(code)
        name, args = f"lock wait {cls}", {"granule": f"{arg:#x}", "class": cls}
    elif kind == trace.KIND_RMI:
        name, args = calls.name(code), _named({"x1": f"{arg:#x}"}, arg, start, realms, named_from)
    elif kind == trace.KIND_RSI:
        # A realm's X1 is an IPA or a value, not a host PA: one equal to a live realm's RD or
        # REC PA is a coincidence, not that realm (its REC run, around it, names the realm).
        name, args = calls.name(code), {"x1": f"{arg:#x}"}
    else:
        raise ValueError(f"trace record kind = {kind}: expected one of {sorted(_CATEGORY)} (hw.trace)")
    category = "psci" if kind == trace.KIND_RSI and code >= calls.PSCI_BASE else _CATEGORY[kind]
    return {"name": name, "cat": category, "ph": "X", "pid": PID, "tid": tid, "ts": _us(start - t0_ns),
            "dur": _us(duration), "args": args}


def _metadata(cpus: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"name": "process_name", "ph": "M", "pid": PID, "tid": TID_BASE,
                                  "args": {"name": PROCESS_NAME}}]
    for cpu in cpus:
        tid = TID_BASE + cpu
        out.append({"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": f"CPU {cpu}"}})
        out.append({"name": "thread_sort_index", "ph": "M", "pid": PID, "tid": tid, "args": {"sort_index": cpu}})
    return out


def dropped(machine: "Machine", cpu: int) -> int:
    """Records CPU ``cpu`` wrote that its ring no longer holds (hw.trace header: u64 head)."""
    region = machine.trace_region(cpu)
    try:
        head: int = struct.unpack_from("<Q", region, 0)[0]
    finally:
        region.release()
    return max(0, head - machine.trace_capacity)


def track(records: list[tuple[int, int, int, int, int]], cpu: int, t0_ns: int,
          realms: dict[int, str], named_from: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """One CPU's events by start time; at equal starts the longer (enclosing) event first."""
    events = [event(r, TID_BASE + cpu, t0_ns, realms, named_from) for r in records]
    events.sort(key=lambda e: (e["ts"], -e["dur"]))
    return events


def write_trace(machine: "Machine", cpus: list[int], path: str, t0_ns: int,
                realms: dict[int, str] | None = None, named_from: dict[int, int] | None = None) -> int:
    """Write the rings of ``cpus`` as a Trace Event Format JSON file; returns the number of X events.

    Args:
        machine: a machine made with trace_capacity > 0, its CPUs stopped (or at least quiet).
        cpus: the CPU ids whose rings to write, one track each.
        path: the file to write.
        t0_ns: time.perf_counter_ns at the start of the run; every ts is relative to it.
        realms: REC PA or RD PA -> realm name, to label REC runs and calls on a known realm.
        named_from: PA -> perf_counter_ns from which its name in ``realms`` holds (the realm's
            build); a record that starts earlier is not labelled, since the granule may then
            have been another realm's. None: the names hold for every record.

    Raises:
        MachineError: the machine has no trace rings.
    """
    names = dict(realms or {})
    events = _metadata(cpus)
    written = 0
    lost: dict[str, int] = {}
    for cpu in cpus:
        cpu_events = track(machine.read_trace(cpu), cpu, t0_ns, names, named_from)
        events.extend(cpu_events)
        written += len(cpu_events)
        lost[str(cpu)] = dropped(machine, cpu)
    doc = {"traceEvents": events, "displayTimeUnit": "ns",
           "otherData": {"format": FORMAT, "machine": machine.name, "platform": machine.platform.name,
                         "t0_ns": str(t0_ns), "capacity": machine.trace_capacity, "dropped": lost}}
    with replacing(path) as temp, open(temp, "w", encoding="utf-8") as out:
        json.dump(doc, out, separators=(",", ":"))
        out.write("\n")
    return written
