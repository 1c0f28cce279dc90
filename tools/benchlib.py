"""What the benchmark tools in tools/ share: the host description every tool prints, /proc
readings, histogram-slot helpers, the nearest-rank percentile, the exit statuses of a run that
failed or was interrupted, the --json file's format, what a quiet window is, and the
steady-state window of the multi-process tools.

steady_window runs inside a spawned CPU process: each CPU calls ``unit`` through a warm-up,
marks itself ready in its CPU area's activity counters, keeps calling until every peer is ready,
then times a window of ``seconds``, marks itself done and keeps calling until every peer is done,
so that no CPU's window ever sees a peer idle. Calls in the window come from the CPU's own
histograms (flushed at the window edges).

This module owns those helpers. It must not know what a tool measures.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, NoReturn

import rmm_mp
from rmm_mp import outpaths
from rmm_mp.hw.cpuarea import OFF_COUNTERS
from rmm_mp.hw.tomlsrc import ConfigError
from rmm_mp.machine import Cpu
from rmm_mp.cpu_outcome import RunResult
from rmm_mp.stats import calls, report
from rmm_mp.stats.histogram import CallStats, nearest_rank

# Exit statuses beside 0 (every target met) and 1 (a target missed).
RUN_FAILED = 2
INTERRUPTED = 130           # 128 + SIGINT, as a shell reports a command Ctrl-C stopped

# Activity counters of a CPU area (u64 each, written only by the CPU itself).
C_PHASE = 0
PHASE_READY, PHASE_DONE = 1, 2


def host_info() -> dict[str, object]:
    """The host and the rmm_mp revision a figure was measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "revision": source_revision(),
    }


def source_revision() -> str:
    """The git commit of the rmm_mp being measured, with "+dirty" if its files are modified."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(rmm_mp.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "rmm_mp"], capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def host_ticks() -> list[int]:
    """user, nice, system, idle, iowait, irq, softirq, steal ticks of all cores, or []."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


QUIET_CORES = 0.15
"""A measurement window is quiet when other processes used less than this many cores in it."""
QUIET_HELP = (f"A window is quiet when other processes used less than {QUIET_CORES} cores in it (from /proc/stat); "
              "a window whose /proc/stat could not be read is not known to be quiet and counts as loaded: it is "
              "warned of and left out of the quiet-only ratio.")


def is_quiet(other_load_cores: float | None) -> bool:
    """Whether a window with ``other_load_cores`` of other load (None: /proc/stat could not be
    read) was quiet. An unread window counts as loaded: a quiet-only figure must not hold a
    window whose load nobody saw."""
    return other_load_cores is not None and other_load_cores < QUIET_CORES


def load_warning(loads: list[float | None]) -> str | None:
    """What a tool warns of when not every window of ``loads`` (each window's other load, None
    when unread) was quiet, or None when every one was."""
    loaded = [x for x in loads if x is not None and x >= QUIET_CORES]
    unread = sum(x is None for x in loads)
    parts = []
    if loaded:
        parts.append(f"in {len(loaded)} of {len(loads)} windows other processes used >= {QUIET_CORES} cores "
                     f"(up to {max(loaded):.2f})")
    if unread:
        parts.append(f"in {unread} of {len(loads)} windows /proc/stat could not be read (load unknown)")
    return "; ".join(parts) or None


def sched_counters() -> tuple[int, int]:
    """(involuntary context switches, migrations) of this process, from /proc (Linux), or (0, 0)."""
    switches = migrations = 0
    try:
        with open("/proc/self/sched", encoding="utf-8") as f:
            for line in f:
                if line.startswith("se.nr_migrations"):
                    migrations = int(line.split(":")[1])
                elif line.startswith("nr_involuntary_switches"):
                    switches = int(line.split(":")[1])
    except (OSError, ValueError):
        pass
    return switches, migrations


def percentile(sorted_values: list[int], p: float) -> int:
    """The nearest-rank p-th percentile (0 < p <= 100) of ascending samples: the smallest value
    with at least p % of the samples at or below it, so the same rank CallStats.percentile
    (docs/latency.md) takes in a histogram; p50 of an even count is the lower middle value."""
    return sorted_values[nearest_rank(len(sorted_values), p) - 1]


def check_json(ap: argparse.ArgumentParser, path: str | None) -> None:
    """Refuse a --json path that cannot be written, or that is '-', as a usage error (exit 2)
    before anything is measured, as `rmm-mp run` refuses its own (outpaths.check_output): a tool
    wrote '-' as a file of that name, and an unwritable path ended the run of minutes in a
    FileNotFoundError traceback with no figures kept."""
    try:
        outpaths.check_output("--json", path)
    except ConfigError as exc:
        ap.error(str(exc))


MAX_SECONDS = 86_400
"""The longest --seconds, --warmup or --tick a tool takes: a day, as bench_stress's runs. A
longer --tick made the supervisor's wait raise OverflowError (its limit is 2,147,483 s) after
the machine was made."""


def check_seconds(ap: argparse.ArgumentParser, option: str, value: float, zero: bool = False) -> None:
    """Refuse ``value`` of --``option`` unless a number of seconds greater than 0 (at least 0
    with ``zero``) and at most MAX_SECONDS, as a usage error naming the option and the value, as
    bench_stress's are. Written so that NaN fails it ("<= 0" let NaN and infinity through, to a
    ValueError or an OverflowError in every CPU process)."""
    low = 0 <= value if zero else 0 < value
    if not (low and value <= MAX_SECONDS):
        ap.error(f"--{option} {value:g}: expected a number of seconds {'at least' if zero else 'greater than'} 0 "
                 f"and at most {MAX_SECONDS:,}")


def write_json(path: str, figures: object, default: Callable[[Any], object] | None = None) -> None:
    """Write a tool's --json file: indented by 2, ending in a newline (as `cat` and diff expect)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=2, default=default)
        f.write("\n")


def tool_main(main: Callable[[], int]) -> NoReturn:
    """Run a tool's ``main`` as its program, ending with its exit status. A reader of its output
    that leaves early (`| head -1`) ends the printing quietly, as for the rmm-mp program
    (outpaths.quiet_when_readers_leave): the tool goes on, writes its JSON and exits with its own
    verdict, where Python's BrokenPipeError at the next print ended it with a traceback and exit
    status 1, which reads as a missed target, and no JSON."""
    outpaths.quiet_when_readers_leave()
    raise SystemExit(main())


def end_interrupted(why: str = "") -> NoReturn:
    """End the tool after Ctrl-C cut a run short: the run's figures would be those of a
    part-window, and exit status 1 would read as a missed target. (No tool takes SIGTERM as a
    stop: it kills a tool at once, docs/performance.md.)"""
    print(f"{why or 'interrupted (Ctrl-C)'}: no figures", file=sys.stderr)
    raise SystemExit(INTERRUPTED)


def measurement_failed(why: str) -> NoReturn:
    """End the tool when a measurement failed its own checks (an exit the loop did not expect,
    counts that do not add up): RUN_FAILED, as for a failed CPU process, since exit status 1
    would read as a missed target."""
    print(f"measurement failed: {why}", file=sys.stderr)
    raise SystemExit(RUN_FAILED)


def check_cpus(result: RunResult) -> None:
    """Return if every CPU process of ``result`` ran to its end; otherwise end the tool, with
    INTERRUPTED after Ctrl-C, else RUN_FAILED and what each failed CPU process reported."""
    if result.interrupted:
        end_interrupted(result.stopped_by)
    if result.failures:
        print("CPU processes failed:\n" + "\n".join(f.describe() for f in result.failures), file=sys.stderr)
        raise SystemExit(RUN_FAILED)


def slot_named(name: str) -> int:
    """The histogram slot of a call's spec name (RSI_HOST_CALL, EXIT_HOST_CALL ...)."""
    return next(slot for slot, n in calls.named_slots().items() if n == name)


def window(before: dict[int, CallStats], after: dict[int, CallStats], slot: int) -> CallStats:
    """The calls recorded in ``slot`` between two snapshots (max is the later snapshot's)."""
    a, b = before.get(slot), after[slot]
    if a is None:
        return b
    return CallStats(b.count - a.count, b.sum_ns - a.sum_ns, b.max_ns, b.el3_ns - a.el3_ns,
                     b.handler_ns - a.handler_ns, b.lockwait_ns - a.lockwait_ns, b.errors - a.errors,
                     tuple(y - x for x, y in zip(a.buckets, b.buckets)))


@dataclass(frozen=True)
class Window:
    """One CPU's steady-state window."""

    calls: int          # calls recorded in the CPU's histograms during the window
    units: int          # units run during the window
    ns: int             # window length, perf_counter_ns
    cpu_ns: int         # CPU time this process got during the window (process_time_ns)
    total_units: int    # units run in the whole run (warm-up and tail included); 0 if stopped early
    preempted: int      # involuntary context switches of this process during the window
    migrations: int     # moves of this process between host cores during the window
    host_ticks: tuple[int, ...]  # /proc/stat "cpu" line deltas over the window (all cores)


def steady_window(cpu: Cpu, peers: tuple[int, ...], warmup: float, seconds: float,
                  unit: Callable[[], None]) -> Window | None:
    """Run ``unit`` on this CPU through a warm-up, the common steady-state window and the tail
    (module docstring); None if the machine was told to stop before the window began."""
    machine = cpu.machine
    control = machine.control
    view = cpu.area.view
    size = control.area_size
    own = cpu.id * size + OFF_COUNTERS
    peer_words = [p * size + OFF_COUNTERS for p in peers]
    clock = time.perf_counter_ns
    made = 0

    def step() -> None:
        nonlocal made
        unit()
        made += 1

    def histogram_calls() -> int:
        cpu.flush_statistics()
        return report.total_calls(report.collect(machine, [cpu.id]))

    def all_at(phase: int) -> bool:
        return all(view.load_u64(p + 8 * C_PHASE) >= phase for p in peer_words)

    gc.disable()
    try:
        stop_at = clock() + int(warmup * 1e9)
        while clock() < stop_at and not control.stop_requested:
            step()
        view.store_u64(own + 8 * C_PHASE, PHASE_READY)
        while not all_at(PHASE_READY):
            if control.stop_requested:
                return None
            step()
        c0, u0 = histogram_calls(), made
        sw0, mig0 = sched_counters()
        ticks0 = host_ticks()
        cpu0 = time.process_time_ns()
        t0 = clock()
        end = t0 + int(seconds * 1e9)
        while clock() < end:
            step()
        t1 = clock()
        cpu1 = time.process_time_ns()
        ticks1 = host_ticks()
        sw1, mig1 = sched_counters()
        c1, u1 = histogram_calls(), made
        view.store_u64(own + 8 * C_PHASE, PHASE_DONE)
        while not all_at(PHASE_DONE) and not control.stop_requested:
            step()
    finally:
        gc.enable()
    return Window(c1 - c0, u1 - u0, t1 - t0, cpu1 - cpu0, made, sw1 - sw0, mig1 - mig0,
                  tuple(b - a for a, b in zip(ticks0, ticks1)))
