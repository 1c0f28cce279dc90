"""A one-line progress bar with live per-CPU rates, drawn while CPU processes run.

It reads each CPU's published count of latency records (stats.histogram.total_count: its RMI,
RSI and PSCI calls, REC runs and host activity steps, refreshed by the CPUs every flush
interval) and redraws one line on a terminal. On anything that is not a terminal it
stays silent unless forced, so logs and CI output are not flooded with carriage returns. The
line never reaches the terminal's last column: a line that wrapped could not be redrawn in
place (a carriage return goes back to the start of its last row only), so the per-CPU rates
shown are those that fit, then "...", and on a narrower line the figures that do not fit are
left out whole, never cut short.

This module owns the display. It must not change the machine.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Callable, TextIO

from rmm_mp.stats.histogram import total_count
from rmm_mp.stats.report import read_stats
from rmm_mp.words import count as _count

if TYPE_CHECKING:
    from rmm_mp.machine import Machine

BAR = 24
NARROW_BAR = 10
WIDE = 110
"""Lines narrower than this get the narrow bar."""
UNCOUNTED = "records not counted (--no-latency), so no rates"
"""What follows the time on the line of a run without latency recording (Progress.counted
False): the CPUs then count nothing the bar could show."""


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
    With ``ready`` (how many have reached it) the starting line says how many are up, so that a
    slow start-up (tens of seconds for 64 CPUs on 2 cores) reads apart from a stuck one.
    """

    def __init__(self, machine: "Machine", cpus: list[int], seconds: float | None,
                 stream: TextIO | None = None, enabled: bool | None = None,
                 started: Callable[[], bool] | None = None, width: int | None = None,
                 counted: bool = True, ready: Callable[[], int] | None = None) -> None:
        self.machine = machine
        self.counted = counted
        """Whether the CPUs count their records (they do while they record latency)."""
        self.width = width
        """Characters a line may take; None: the columns of the stream's terminal - 1, read at
        each redraw."""
        self.cpus = cpus
        self.seconds = seconds
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.started = started
        self.ready = ready
        self.origin: float | None = None if started is not None else 0.0
        self.last: dict[int, int] = {cpu: 0 for cpu in cpus}
        self.last_time = 0.0
        self.rates: dict[int, float] = {cpu: 0.0 for cpu in cpus}
        self.drawn = False
        self._drawn_len = 0

    def counts(self) -> dict[int, int]:
        return {cpu: read_stats(self.machine, cpu, total_count) for cpu in self.cpus}

    def tick(self, elapsed: float) -> None:
        if not self.enabled or elapsed - self.last_time < 0.25:
            return
        if self.origin is None:
            if not self.started():  # type: ignore[misc]
                self.last_time = elapsed
                up = "" if self.ready is None else f": {min(self.ready(), len(self.cpus))} of {len(self.cpus)} ready"
                self._draw(f"starting {len(self.cpus)} CPU processes{up} ... {elapsed:4.1f} s")
                return
            self.origin = self.last_time
        counts = self.counts()
        span = elapsed - self.last_time
        for cpu in self.cpus:
            self.rates[cpu] = (counts[cpu] - self.last[cpu]) / span if span > 0 else 0.0
        self.last, self.last_time = counts, elapsed
        total = sum(counts.values())
        ran = elapsed - self.origin
        width = self._width()
        if self.seconds:
            size = BAR if width >= WIDE else NARROW_BAR
            done = int(min(1.0, ran / self.seconds) * size)
            head = f"[{'#' * done}{'.' * (size - done)}] {ran:5.1f}/{self.seconds:.10g} s"
        else:
            head = f"{ran:6.1f} s"
        if not self.counted:
            # In the bar's own word: what it counts otherwise is "records" (calls, REC runs and
            # host steps), and none is made; "calls not counted" named a third of them, and not
            # why the line has no rates.
            # Whole words only, as the figures: on a narrow line the reason goes, then the note.
            width = self._width()
            note = next((n for n in (UNCOUNTED, UNCOUNTED.split(",")[0]) if len(head) + 2 + len(n) <= width), "")
            self._draw(f"{head}  {note}" if note else head)
            return
        self._draw(self._fitted(head, total, width))

    def _fitted(self, head: str, total: int, width: int) -> str:
        """The line, with only whole figures: a figure cut short ("records  38" for 385.9k/s)
        would read as another number, so one that does not fit is left out, with what follows."""
        line = head
        # "records", not "calls": the count is every record of the latency tables, REC runs and
        # host activity steps too (the report's header says "N calls, REC runs and host steps");
        # labelled "calls" it claimed some 30 % more calls than were made. One word, so that 4
        # CPUs' rates still fit in 80 columns.
        # words.count: "1 record", as the report's header reads "1 iteration" and "1 CPU".
        for piece in (f"  {_count(total, 'record')}", f"  {_short(sum(self.rates.values()))}/s"):
            if len(line) + len(piece) > width:
                return line
            line += piece
        # The rates per CPU follow in the order of self.cpus: compact, so that 4 fit in 80 columns.
        items = [f" {_short(self.rates[cpu])}" for cpu in self.cpus]
        label = "  per CPU"
        if len(line) + len(label) + len(items[0]) + (len(" ...") if len(items) > 1 else 0) > width:
            return line
        line += label
        for n, item in enumerate(items):
            room = width - len(" ...") if n < len(items) - 1 else width
            if len(line) + len(item) > room:
                return line + " ..."
            line += item
        return line

    def _width(self) -> int:
        if self.width is not None:
            return self.width
        try:    # the stream's own terminal: stdout (which shutil asks) is often a file
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            columns = 0
        if columns == 0:    # no terminal, or one nobody sized (script, docker run -t): unknown
            columns = shutil.get_terminal_size((100, 24)).columns
        return max(40, columns - 1)

    def _draw(self, line: str) -> None:
        width = self._width()
        line = line[:width]
        # Blanks over what is left of a longer previous line (no further than the width: the
        # terminal may have narrowed since).
        self.stream.write("\r" + line.ljust(min(self._drawn_len, width)))
        self.stream.flush()
        self._drawn_len = len(line)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
