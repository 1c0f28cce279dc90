"""Latency reports: per CPU and per call, read from the shared histograms.

A record (``CallRecord``, from call_records()) is one (CPU, call) pair with the call's kind,
count, errors, percentiles (the upper edge of the bucket holding them; see stats.histogram),
maximum, mean, and the mean split into EL3 world switch, RMM handler and lock wait: the shape of
the `rmm-mp run` report (docs/report-schema.json); its text, JSON and CSV are views of them.
The time split only adds up for RMI calls: RSI and PSCI calls and REC runs are timed inside the
RMM (inside an RMI_REC_ENTER), so their whole time counts as RMM time and ``time_split`` leaves
them out rather than count it twice.

Lock classes are named here too (lock_class_name): a class below 7 is the granule state the
lock was taken for (DEN0137 A2.2, values as rmm.granule_state.GranuleState; this layer may not
import rmm, and tests/stats checks the two lists agree), OTHER_CLASS a plain lock (NS copies).

This module owns report records. It must not run anything, nor format them (workload.render).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Callable, Iterable, TypeVar

from rmm_mp.hw.granule import CLASSES, OTHER_CLASS
from rmm_mp.stats import calls
from rmm_mp.stats.histogram import CallStats, read_region

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

T = TypeVar("T")

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def read_stats(machine: "Machine", cpu: int, reader: Callable[[memoryview], T]) -> T:
    """``reader`` applied to CPU ``cpu``'s statistics region, released afterwards."""
    area = machine.cpu_area(cpu)
    region = area.stats_region()
    try:
        return reader(region)
    finally:
        region.release()
        area.release()


def collect(machine: "Machine", cpus: Iterable[int] | None = None) -> dict[int, dict[int, CallStats]]:
    """{cpu: {slot: CallStats}} for every CPU (default: all) and every slot with calls."""
    return {cpu: read_stats(machine, cpu, read_region) for cpu in (range(machine.cpus) if cpus is None else cpus)}


def total_calls(stats: dict[int, dict[int, CallStats]]) -> int:
    return sum(s.count for per_cpu in stats.values() for s in per_cpu.values())


KINDS = ("RMI", "RSI", "PSCI", "EXIT", "HOST")
"""Call families in report order; a slot's family follows from its range (stats.calls)."""

_KIND_BOUNDS = ((calls.RSI_BASE, "RMI"), (calls.PSCI_BASE, "RSI"), (calls.EXIT_BASE, "PSCI"),
                (calls.HOST_BASE, "EXIT"), (calls.SLOTS, "HOST"))

LOCK_CLASS_NAMES = ("NS", "DELEGATED", "RD", "REC", "REC_AUX", "DATA", "RTT")
"""Granule states by value, as rmm.granule_state.GranuleState.NAMES (DEN0137 A2.2)."""


def kind(slot: int) -> str:
    """The family of the call measured in ``slot``: RMI, RSI, PSCI, EXIT (REC run) or HOST."""
    for end, family in _KIND_BOUNDS:
        if slot < end:
            return family
    raise ValueError(f"slot = {slot}: expected 0..{calls.SLOTS - 1}")


def lock_class_name(cls: int) -> str:
    """RTT, DATA ... for a granule-state class; OTHER for plain locks (NS copies)."""
    if 0 <= cls < len(LOCK_CLASS_NAMES):
        return LOCK_CLASS_NAMES[cls]
    if cls == OTHER_CLASS:
        return "OTHER"
    if 0 <= cls < CLASSES:
        return f"CLASS_{cls}"
    raise ValueError(f"lock class = {cls}: expected 0..{CLASSES - 1}")


@dataclass(frozen=True)
class CallRecord:
    """One (CPU or "all", call) record of a run report; every time in ns (docs/report-schema.json)."""

    cpu: int | str
    call: str
    kind: str
    count: int
    errors: int
    p50: int
    p90: int
    p99: int
    p999: int
    max: int
    mean: int
    el3_mean: int
    rmm_mean: int
    lock_wait_mean: int

    @classmethod
    def of(cls, cpu: int | str, slot: int, s: CallStats) -> "CallRecord":
        n = max(s.count, 1)
        p50, p90, p99, p999 = (s.percentile(p) for _, p in PERCENTILES)
        return cls(cpu, calls.name(slot), kind(slot), s.count, s.errors, p50, p90, p99, p999,
                   s.max_ns, s.sum_ns // n, s.el3_ns // n, s.handler_ns // n, s.lockwait_ns // n)


RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))


def _report_order(slot: int) -> tuple[int, str]:
    return KINDS.index(kind(slot)), calls.name(slot)


def merged(stats: dict[int, dict[int, CallStats]]) -> dict[int, CallStats]:
    """{slot: CallStats} summed over every CPU."""
    out: dict[int, CallStats] = {}
    for per_cpu in stats.values():
        for slot, s in per_cpu.items():
            out[slot] = out[slot].merged(s) if slot in out else s
    return out


def call_records(stats: dict[int, dict[int, CallStats]]) -> list[CallRecord]:
    """Per call (RMI, RSI, PSCI, EXIT, HOST, each by name): one record per CPU, then "all".

    The "all" record is there even for a single CPU, so a reader can always find the totals.
    """
    total = merged(stats)
    out: list[CallRecord] = []
    for slot in sorted(total, key=_report_order):
        out.extend(CallRecord.of(cpu, slot, stats[cpu][slot]) for cpu in sorted(stats) if slot in stats[cpu])
        out.append(CallRecord.of("all", slot, total[slot]))
    return out


@dataclass(frozen=True)
class TimeSplit:
    """Where the time of RMI calls went, summed (ns): EL3 world switch, RMM handler, lock wait."""

    calls: int
    total_ns: int
    el3_ns: int
    rmm_ns: int
    lock_wait_ns: int


def time_split(per_slot: dict[int, CallStats]) -> TimeSplit:
    """The split over the RMI slots of ``per_slot`` (other kinds are nested in RMI_REC_ENTER)."""
    rmi = [s for slot, s in per_slot.items() if kind(slot) == "RMI"]
    return TimeSplit(sum(s.count for s in rmi), sum(s.sum_ns for s in rmi), sum(s.el3_ns for s in rmi),
                     sum(s.handler_ns for s in rmi), sum(s.lockwait_ns for s in rmi))
