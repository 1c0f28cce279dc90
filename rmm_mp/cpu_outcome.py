"""What a run of CPU processes reports: each CPU's result or failure, and what each cost.

run_cpus (rmm_mp.runtime) builds these: RunResult with the results and CpuFailure of each CPU,
ProcessUsage measured by each CPU process as it finishes (own_usage, peak_rss_bytes), and
CpuStartError when a CPU process cannot be started at all. Their callers (`rmm-mp run`, the
stress tool, the benchmarks, the host's run loop) read them; a command says a CpuStartError,
or another error that ends it before its CPUs run, with the notes written of it (error_text).

This module owns those records, how a process measures itself, and how a command says such an
error. It must not start, stop or signal processes, nor touch a machine.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import Any, Sequence

import psutil

from rmm_mp.hw.faults import MachineError
from rmm_mp.printable import shown_line


class CpuStartError(MachineError):
    """A CPU process could not be started (an OSError from ``Process.start`` or its pipes: fork
    or spawn failed with EAGAIN or ENOMEM, too many open files, ...). run_cpus raises it once every process it had
    started is killed and reaped and every pipe end it opened is closed; the machine is left to
    its creator, which unlinks it as usual."""

    def __init__(self, cpu: int, cause: BaseException, started: Sequence[int]) -> None:
        killed = (f"; the CPU process{'es' if len(started) > 1 else ''} already started "
                  f"({', '.join(f'CPU {c}' for c in started)}) killed") if started else ""
        super().__init__(f"CPU {cpu}'s process could not be started: {type(cause).__name__}: {cause}{killed}")
        self.cpu = cpu
        self.started = tuple(started)


def error_text(exc: BaseException) -> str:
    """``exc`` as a command's `Error:` line says it (its type and message), and each of its notes
    on a line of its own, which a command that printed the message alone never said: for a
    CpuStartError the errors of run_cpus' clean-up dropped for it, for a HostError of a realm's
    build that the partial realm's rollback failed too (host.realm_build). A note that is not one
    line of printable text is shown as a TOML basic string (rmm_mp.printable.shown_line, as the
    reports show another's text): it quotes another error's text as it came, so an ESC in a path
    it names would act on the terminal, and a newline would split the note over two lines."""
    notes = [shown_line(note) for note in getattr(exc, "__notes__", ())]
    return "\n".join([f"{type(exc).__name__}: {exc}", *notes])


@dataclass(frozen=True)
class CpuFailure:
    """How one CPU process failed: it died, did not stop, raised, or its result was lost."""

    cpu: int
    how: str
    traceback: str
    held_locks: tuple[int, ...]
    on_request: bool = False
    """Killed by a second Ctrl-C or SIGTERM while it stopped: the caller asked for it, so it
    says nothing about the CPU's own work (its call under way was cut off)."""
    terminated: bool = False
    """Killed by run_cpus because it had not returned when the grace time after a stop was
    over (``how`` says so), rather than dead of its own accord: a caller that knows the CPU
    was only waiting then (the stress tool's deterministic run, for a CPU without the turn)
    need not count it as a failure of the CPU's own work."""
    unpublished: bool = False
    """The process ended without closing its CPU handle (killed by a signal, terminated after
    the grace time, or gone without a word): the latency and lock figures it kept since its
    last flush (stats.histogram.FLUSH_INTERVAL_NS) never reached shared memory, so the report's
    figures of this CPU stop there. A CPU that returned flushed them before it sent its result;
    one that raised flushes them as it closes its handle, after it sent the error."""

    result_lost: bool = False
    """The process exited normally (status 0) but its result is not in RunResult.results: it
    never arrived, or arrived in a form the parent could not unpickle (``how`` says which).
    What the CPU did is unknown to the caller, as for a CPU that died; but it did not die."""

    def describe(self) -> str:
        locks = ", ".join(f"{pa:#x}" for pa in self.held_locks) or "none"
        text = f"CPU {self.cpu} {self.how}; locks still held: {locks}"
        return text + ("\n" + self.traceback.rstrip() if self.traceback else "")


@dataclass(frozen=True)
class RunResult:
    """What a run of CPU processes produced."""

    results: dict[int, Any]
    failures: tuple[CpuFailure, ...]
    interrupted: bool
    elapsed_s: float
    stopped_by: str = ""
    exit_codes: dict[int, int | None] = field(default_factory=dict)
    usage: dict[int, "ProcessUsage"] = field(default_factory=dict)
    interrupted_by: str = ""
    """What interrupted the run first ("Ctrl-C", "SIGTERM"); "" if nothing did. ``stopped_by``
    names the first reason to stop, which may be another (a CPU died, the time was up)."""
    warnings: dict[int, str] = field(default_factory=dict)
    """CPU -> what went wrong in its process after its result had been sent (closing its
    machine handle failed): not a failure, since the result arrived and counts; the CPU
    process also wrote it, with its traceback, to its standard error."""
    not_started: tuple[int, ...] = ()
    """The CPUs whose process a Ctrl-C or SIGTERM found still starting up, before it had bound
    its CPU (rmm_mp.cpu_start): killed then (SIGKILL; exit_codes says so), having touched
    nothing of the machine. Neither in ``results`` nor in ``failures``: such a CPU did nothing,
    so a caller counts it neither as one that reported nor as one lost."""
    stopped_by_cpu: int | None = None
    """The CPU whose own end (its death, or its exit without a result that reached the parent)
    is what stopped the run first (``stopped_by`` words it); None when something else did, or
    nothing. For a caller that must tell such a stop from the others without reading words."""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.interrupted


@dataclass(frozen=True)
class ProcessUsage:
    """What one CPU process cost the host, measured by the process itself as it finished."""

    user_s: float
    system_s: float
    voluntary_switches: int
    involuntary_switches: int
    peak_rss_bytes: int
    """Peak resident set size. It counts the machine's shared memory (DRAM, tables) as far as
    this process touched it, so it grows towards the platform's DRAM size on a long run."""
    pinned_core: int | None
    private_bytes: int
    """Resident memory of the process's own at the end (RSS minus file-backed and shared
    pages): its heap and stacks, what grows if the process itself leaks."""

    def to_json(self) -> dict[str, Any]:
        return {"user_s": round(self.user_s, 4), "system_s": round(self.system_s, 4),
                "voluntary_switches": self.voluntary_switches, "involuntary_switches": self.involuntary_switches,
                "peak_rss_bytes": self.peak_rss_bytes, "private_bytes": self.private_bytes,
                "pinned_core": self.pinned_core}


def peak_rss_bytes() -> int:
    """This process's peak RSS: Linux's VmHWM, the high-water mark of its own address space.

    Not getrusage's ru_maxrss: Linux carries that over an exec from the address space the exec
    replaced, and a spawned CPU process is a fork (vfork) of the parent that then execs Python,
    so ru_maxrss was never below the parent's peak. getrusage only where there is no /proc."""
    try:
        # Bytes: the file's first line is the process name, which need not be ASCII or UTF-8.
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024     # "VmHWM:   40704 kB"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux


def own_usage(pinned: int | None) -> ProcessUsage:
    me = psutil.Process()
    times, switches, memory = me.cpu_times(), me.num_ctx_switches(), me.memory_info()
    peak = peak_rss_bytes()
    # memory_info().shared exists on Linux only (file-backed and shared-memory pages).
    private = max(0, memory.rss - getattr(memory, "shared", 0))
    return ProcessUsage(times.user, times.system, switches.voluntary, switches.involuntary, peak, pinned, private)
