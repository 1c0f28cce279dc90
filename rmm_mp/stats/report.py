"""Latency reports: per CPU and per call, read from the shared histograms.

A report row is one (CPU, call) pair with count, errors, percentiles (the upper edge of the
bucket holding them; see stats.histogram), maximum, mean, and the mean split into EL3 world
switch, RMM handler and lock wait. Rows are frozen records; the table and JSON are views of them.

This module owns report records and their formats. It must not run anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterable

from rmm_mp.stats import calls
from rmm_mp.stats.histogram import CallStats, read_region

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


@dataclass(frozen=True)
class LatencyRow:
    cpu: int | str
    call: str
    count: int
    errors: int
    p50: int
    p90: int
    p99: int
    p999: int
    max: int
    mean: int
    el3_mean: int
    handler_mean: int
    lockwait_mean: int

    @classmethod
    def of(cls, cpu: int | str, call: str, s: CallStats) -> "LatencyRow":
        n = max(s.count, 1)
        return cls(cpu, call, s.count, s.errors, *(s.percentile(p) for _, p in PERCENTILES),
                   s.max_ns, s.sum_ns // n, s.el3_ns // n, s.handler_ns // n, s.lockwait_ns // n)


def collect(machine: "Machine", cpus: Iterable[int] | None = None) -> dict[int, dict[int, CallStats]]:
    """{cpu: {slot: CallStats}} for every CPU (default: all) and every slot with calls."""
    out: dict[int, dict[int, CallStats]] = {}
    for cpu in range(machine.cpus) if cpus is None else cpus:
        area = machine.cpu_area(cpu)
        region = area.stats_region()
        try:
            out[cpu] = read_region(region)
        finally:
            region.release()
            area.release()
    return out


def rows(stats: dict[int, dict[int, CallStats]], with_totals: bool = True) -> list[LatencyRow]:
    """One row per CPU and call, ordered by CPU then call name; plus an 'all' row per call."""
    out: list[LatencyRow] = []
    merged: dict[int, CallStats] = {}
    for cpu in sorted(stats):
        for slot in sorted(stats[cpu], key=calls.name):
            s = stats[cpu][slot]
            out.append(LatencyRow.of(cpu, calls.name(slot), s))
            merged[slot] = merged[slot].merged(s) if slot in merged else s
    if with_totals and len(stats) > 1:
        out.extend(LatencyRow.of("all", calls.name(slot), merged[slot]) for slot in sorted(merged, key=calls.name))
    return out


def _us(ns: int) -> str:
    return f"{ns / 1000:.2f}"


def format_table(report: list[LatencyRow]) -> str:
    """A fixed-width table; times in microseconds."""
    header = ("cpu", "call", "count", "errors", "p50 us", "p90 us", "p99 us", "p99.9 us", "max us",
              "el3 us", "rmm us", "lock us")
    lines = [header]
    for r in report:
        lines.append((str(r.cpu), r.call, f"{r.count:,}", f"{r.errors:,}", _us(r.p50), _us(r.p90), _us(r.p99),
                      _us(r.p999), _us(r.max), _us(r.el3_mean), _us(r.handler_mean), _us(r.lockwait_mean)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = []
    for n, line in enumerate(lines):
        cells = [line[i].ljust(widths[i]) if i < 2 else line[i].rjust(widths[i]) for i in range(len(header))]
        text.append("  ".join(cells).rstrip())
        if n == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


def as_records(report: list[LatencyRow]) -> list[dict[str, object]]:
    """JSON-ready records {cpu, call, count, errors, p50, ..., max, ...}; times in ns."""
    return [asdict(r) for r in report]


def total_calls(stats: dict[int, dict[int, CallStats]]) -> int:
    return sum(s.count for per_cpu in stats.values() for s in per_cpu.values())
