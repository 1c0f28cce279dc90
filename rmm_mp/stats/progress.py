"""A one-line progress bar with live per-CPU call rates, drawn while CPU processes run.

It reads each CPU's published call count (stats.histogram.total_count, refreshed by the CPUs
every flush interval) and redraws one line on a terminal. On anything that is not a terminal it
stays silent unless forced, so logs and CI output are not flooded with carriage returns.

This module owns the display. It must not change the machine.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable, TextIO

from rmm_mp.stats.histogram import total_count
from rmm_mp.stats.report import read_stats

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

BAR = 24


def _short(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.1f}M"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k"
    return f"{rate:.0f}"


class Progress:
    """Call ``tick(elapsed_s)`` periodically and ``close()`` once.

    With ``started`` (true once every CPU process has reached the run's start barrier), the
    line says the CPU processes are starting until then, and the run's time counts from there:
    spawning and importing take most of a second, which the run's length does not include.
    """

    def __init__(self, machine: "Machine", cpus: list[int], seconds: float | None,
                 stream: TextIO | None = None, enabled: bool | None = None,
                 started: Callable[[], bool] | None = None) -> None:
        self.machine = machine
        self.cpus = cpus
        self.seconds = seconds
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = started
        self.origin: float | None = None if started is not None else 0.0
        self.last: dict[int, int] = {cpu: 0 for cpu in cpus}
        self.last_time = 0.0
        self.rates: dict[int, float] = {cpu: 0.0 for cpu in cpus}
        self.drawn = False

    def counts(self) -> dict[int, int]:
        return {cpu: read_stats(self.machine, cpu, total_count) for cpu in self.cpus}

    def tick(self, elapsed: float) -> None:
        if not self.enabled or elapsed - self.last_time < 0.25:
            return
        if self.origin is None:
            if not self.started():  # type: ignore[misc]
                self.last_time = elapsed
                self._draw(f"starting {len(self.cpus)} CPU processes ... {elapsed:4.1f} s")
                return
            self.origin = self.last_time
        counts = self.counts()
        span = elapsed - self.last_time
        for cpu in self.cpus:
            self.rates[cpu] = (counts[cpu] - self.last[cpu]) / span if span > 0 else 0.0
        self.last, self.last_time = counts, elapsed
        total = sum(counts.values())
        ran = elapsed - self.origin
        if self.seconds:
            done = min(1.0, ran / self.seconds)
            bar = "#" * int(done * BAR) + "." * (BAR - int(done * BAR))
            head = f"[{bar}] {ran:5.1f}/{self.seconds:g} s"
        else:
            head = f"{ran:6.1f} s"
        per_cpu = " ".join(f"cpu{cpu} {_short(self.rates[cpu])}/s" for cpu in self.cpus[:8])
        more = " ..." if len(self.cpus) > 8 else ""
        self._draw(f"{head}  {total:,} calls  {_short(sum(self.rates.values()))} calls/s  {per_cpu}{more}")

    def _draw(self, line: str) -> None:
        self.stream.write("\r" + line[:200].ljust(80))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
