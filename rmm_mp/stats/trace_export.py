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

A CPU process killed while it wrote a record (SIGKILL after a stop it did not obey, a crash)
may leave that record torn: hw.trace writes the record, then the head, so the torn one is the
slot after the last counted record, which only a full ring (head >= capacity) still reads, as
its oldest record. Its fields are then part the new record's and part the old one's: a lock
wait's kind with an RSI call's slot as its class used to raise ValueError here, and the run's
whole report was lost with it. So the oldest record of a full ring of each CPU named
``killed`` is left out, and any record event() refuses (a kind it does not know, a lock wait
of no lock class) is left out too (never raised); "otherData.left_out" says how many of each
CPU's records were. A call or exit code it has no name for is no reason: it is shown as its
slot, SLOT_n, as in the latency tables.

This module owns the export. It must not change the machine or interpret ring layouts beyond
hw.trace's documented header (u64 head: records written so far).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Collection
from dataclasses import dataclass
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
          realms: dict[int, str], named_from: dict[int, int] | None = None) -> tuple[list[dict[str, Any]], int]:
    """One CPU's events by start time, at equal starts the longer (enclosing) event first; and
    how many records were left out as unreadable (a kind or lock class event() refuses: torn)."""
    events = []
    unreadable = 0
    for r in records:
        try:
            events.append(event(r, TID_BASE + cpu, t0_ns, realms, named_from))
        except ValueError:
            unreadable += 1
    events.sort(key=lambda e: (e["ts"], -e["dur"]))
    return events, unreadable


@dataclass(frozen=True)
class TraceWritten:
    """What write_trace wrote."""

    events: int
    """X events in the file."""
    left_out: dict[int, int]
    """CPU -> records of its ring not in the file (possibly torn, or unreadable); only CPUs
    with at least one."""


def write_trace(machine: "Machine", cpus: list[int], path: str, t0_ns: int,
                realms: dict[int, str] | None = None, named_from: dict[int, int] | None = None,
                killed: Collection[int] = ()) -> TraceWritten:
    """Write the rings of ``cpus`` as a Trace Event Format JSON file; returns how many X events
    it holds and how many records of each CPU were left out.

    Args:
        machine: a machine made with trace_capacity > 0, its CPUs stopped (or at least quiet).
        cpus: the CPU ids whose rings to write, one track each.
        path: the file to write.
        t0_ns: time.perf_counter_ns at the start of the run; every ts is relative to it.
        realms: REC PA or RD PA -> realm name, to label REC runs and calls on a known realm.
        named_from: PA -> perf_counter_ns from which its name in ``realms`` holds (the realm's
            build); a record that starts earlier is not labelled, since the granule may then
            have been another realm's. None: the names hold for every record.
        killed: the CPUs whose process may have been killed while writing a record (those
            that returned no result): the oldest record of such a CPU's full ring is left out,
            since it may be torn (see the module docstring).

    Raises:
        MachineError: the machine has no trace rings.
    """
    names = dict(realms or {})
    events = _metadata(cpus)
    written = 0
    lost: dict[str, int] = {}
    left_out: dict[int, int] = {}
    for cpu in cpus:
        records = machine.read_trace(cpu)
        torn = 0
        if cpu in killed and records and len(records) == machine.trace_capacity:
            records, torn = records[1:], 1      # the slot its next record was written to
        cpu_events, unreadable = track(records, cpu, t0_ns, names, named_from)
        events.extend(cpu_events)
        written += len(cpu_events)
        lost[str(cpu)] = dropped(machine, cpu)
        if torn + unreadable:
            left_out[cpu] = torn + unreadable
    doc = {"traceEvents": events, "displayTimeUnit": "ns",
           "otherData": {"format": FORMAT, "machine": machine.name, "platform": machine.platform.name,
                         "t0_ns": str(t0_ns), "capacity": machine.trace_capacity, "dropped": lost,
                         "left_out": {str(cpu): n for cpu, n in left_out.items()}}}
    with replacing(path) as temp, open(temp, "w", encoding="utf-8") as out:
        json.dump(doc, out, separators=(",", ":"))
        out.write("\n")
    return TraceWritten(written, left_out)
