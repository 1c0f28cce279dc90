"""The record of one `rmm-mp run`, and the figures read from the machine to fill it.

``RunReport`` is what a run produced: what ran (workload, platform, CPUs, seed), the raw
figures read from shared memory once the CPUs have stopped (latency histograms, lock statistics
per class, trace ring contents are not kept here: they go straight to the trace file), what each
CPU process cost the host, what each realm did, and whether anything failed.

This module owns the record and the collection of figures from a quiescent machine. Rendering
(text tables, JSON, CSV, PNG, trace files) lives in workload.render; running lives in workload.run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rmm_mp.check import InvariantReport
from rmm_mp.hw.granule import CLASSES
from rmm_mp.cpu_outcome import CpuFailure, ProcessUsage
from rmm_mp.stats import calls
from rmm_mp.stats import report as latency
from rmm_mp.stats.histogram import CallStats
from rmm_mp.workload.fields import ACTIVITIES

if TYPE_CHECKING:
    from rmm_mp.machine import Machine


HOST_SLOTS = {name: calls.HOST_BASE + i for i, name in enumerate(ACTIVITIES)}
"""The latency slot of each activity's steps (stats.calls: host activities are 112..127); named
here, where every reader of a run's figures looks, as HOST_RUN, HOST_RTT_CHURN ..."""
for _name, _slot in HOST_SLOTS.items():
    calls.register(_slot, "HOST_" + _name.upper().replace("-", "_"))


@dataclass(frozen=True)
class LockClassStats:
    """One CPU's lock figures for one lock class (a granule state, or OTHER for NS copies)."""

    acquired: int
    contended: int
    wait_ns: int
    max_wait_ns: int


LOG_SHOWN = 8
"""LOG records of a realm's guest the report shows: the last 8 of the LOG_RECORDS (24) the realm
table keeps (host.devices)."""
MAX_OUTPUTS_PER_CPU = 16
"""Torn-down lifecycle instances whose guest output one CPU keeps for the report: the first 16
that failed. Each keeps at most about 1.3 KiB (the console's last 1 KiB and LOG_SHOWN records),
so a lifecycle run that fails thousands of instances still sends each CPU's parent at most about
21 KiB of guest output; the instances after them show no output, only a note that it was not
kept (RealmOutcome.output_dropped)."""
MAX_ERRORS_PER_CPU = 1024
"""vCPU errors (one line each) one CPU keeps for the report; later ones are counted only
(CpuResult.errors_dropped, the CPU's counter "vCPU errors not kept"), each still in its
instance's vcpu_errors counter."""
MAX_LISTED_PER_CPU = 128
"""Torn-down lifecycle instances one CPU reports one by one, for each outcome: its first 128 that
succeeded and its first 128 that failed. Each later one is folded into a row of its template and
outcome (realms.Folded: how many, their counters and exceptions summed, the first failure's
detail), so that what a CPU keeps and sends the parent stays bounded however long the run: one
record per instance grew the CPU processes by about 0.5 KiB an instance, some 30,000 instances
in 4 minutes of kvm-lifecycle on 2 CPUs, and the JSON by 250 bytes each."""


EXCEPTION_LOOP_MIN = 64
EXCEPTION_LOOP_FACTOR = 4
"""A realm whose guest took at least EXCEPTION_LOOP_MIN exceptions, and more than
EXCEPTION_LOOP_FACTOR per REC entry, gets a WARNING line (RealmOutcome.exception_loop)."""


@dataclass(frozen=True)
class GuestOutput:
    """What a realm's guest wrote for a reader: the tail of its console and its last LOG records.

    The console keeps the last CONSOLE_BYTES (1 KiB) bytes written (host.devices), ``console``
    holds them decoded as UTF-8 (once the ring has wrapped, the bytes of a character it cut at
    its start are left out; any other invalid or cut sequence becomes U+FFFD); ``console_bytes``
    counts every byte the guest wrote. ``log`` has the last LOG_SHOWN LOG host calls, oldest
    first, as (REC index, (X0, X1, X2, X3)); ``log_count`` counts them all."""

    console: str
    console_bytes: int
    log: tuple[tuple[int, tuple[int, int, int, int]], ...]
    log_count: int


@dataclass(frozen=True)
class RealmOutcome:
    """What one realm of the workload did (a realm made and destroyed in a loop counts once per
    instance; ``name`` then carries the instance number, e.g. ``vm#17``)."""

    name: str
    recs: int
    ok: bool
    detail: str
    counters: dict[str, int] = field(default_factory=dict)
    output: GuestOutput | None = None
    """Its guest's console tail and last LOG records: for a failed realm, and for every realm
    read at the end of the run with --console (a torn-down lifecycle instance only when it failed,
    and only the first MAX_OUTPUTS_PER_CPU of its CPU); None otherwise."""
    exceptions: int | None = 0
    """Synchronous exceptions its guest took in the realm (SEAs the RMM or the host injected,
    undefined instructions, misaligned accesses, address size faults), all RECs together: the
    count the RMM keeps in its RD (rmm.realm_desc.count_exception). None when it is not known:
    a realm whose owner CPU returned no result (realms.unreported), whose RD was never read."""
    output_dropped: bool = False
    """It failed, but its guest's output was not kept: a lifecycle instance torn down during the
    run after its CPU had kept the output of MAX_OUTPUTS_PER_CPU failed ones."""
    cpus: tuple[int, ...] | None = None
    """The CPUs of the run that ran its vCPUs, when not every CPU of the run did: its [[realm]]
    `cpus` within the run (a run queue of their own), or its CPU for a CPU's private ripas-churn
    realm. None when every CPU of the run could run them (the common queue; on a one-CPU run, every
    realm, CPU 0's private one included). Per-CPU figures (REC entries per CPU, a CPU's idle
    polls) read differently when a realm is kept to some CPUs."""
    instances: int = 1
    """How many instances the row stands for: 1, or, for a row of lifecycle instances not listed
    one by one (MAX_LISTED_PER_CPU; all of one template and outcome), their number; ``counters``
    and ``exceptions`` are then their sums."""
    looping: int = 0
    """For a row of several instances: how many of them were each in an exception loop
    (exception_loop, judged on that instance's own counts when it was folded). Their sums
    cannot tell: 100 instances of 5 exceptions in 1 entry each sum to 500 in 100, which looks
    like a loop, and one loop among a thousand quiet instances is lost in their entries."""

    @property
    def exception_loop(self) -> bool:
        """Its guest took many exceptions for the entries it had (exception_loop); for a row of
        several instances, one of them did."""
        if self.instances > 1:
            return self.looping > 0
        return self.exceptions is not None and exception_loop(self.exceptions, self.counters.get("entries", 0))


def exception_loop(exceptions: int, entries: int) -> bool:
    """A guest that took ``exceptions`` in ``entries`` REC entries is likely in an exception loop:
    at least EXCEPTION_LOOP_MIN, and more than EXCEPTION_LOOP_FACTOR per REC entry (a guest in an
    exception loop takes one per instruction of its time slice; one that handles the odd SEA or
    udf and goes on takes far fewer than its entries)."""
    return exceptions >= EXCEPTION_LOOP_MIN and exceptions > EXCEPTION_LOOP_FACTOR * entries


@dataclass(frozen=True)
class RunReport:
    workload: str
    source: str
    platform: str
    cpus: int
    seed: int
    seconds: float | None
    iterations: int | None
    elapsed_s: float
    latency_recorded: bool
    stats: dict[int, dict[int, CallStats]]
    """{cpu: {slot: CallStats}} as stats.report.collect reads them, for every CPU started."""
    locks: dict[int, dict[int, LockClassStats]]
    """{cpu: {lock class: figures}} for every CPU started and every class with at least one
    acquisition."""
    usage: dict[int, ProcessUsage]
    host_cores: int
    pinned: bool
    counters: dict[int, dict[str, int]]
    """Per CPU: what its host activities did ({"realms built": 12, ...})."""
    realms: tuple[RealmOutcome, ...]
    failures: tuple[CpuFailure, ...]
    problems: tuple[str, ...]
    invariants: InvariantReport | None
    interrupted: bool
    outputs: dict[str, str] = field(default_factory=dict)
    """What was written where: {"json": path, "trace": path, "tokens": dir, ...}."""
    host: dict[str, Any] = field(default_factory=dict)
    window_cpu_s: dict[int, float] = field(default_factory=dict)
    """Per CPU: CPU time its process used from the start barrier to its end, start-up and
    teardown excluded (what tools/bench_run.py compares with recording on and off)."""
    tokens_saved: int = 0
    """Attestation tokens written to outputs["tokens"] (--save-tokens)."""
    trace_dropped: dict[int, int] = field(default_factory=dict)
    """Per CPU whose trace ring overflowed: the oldest records it lost (the trace file holds the
    newest trace_capacity of each CPU's records)."""
    trace_left_out: dict[int, int] = field(default_factory=dict)
    """Per CPU with any: the records of its trace ring the trace file leaves out, as possibly
    torn (its process was killed, maybe while writing one) or unreadable (trace_export)."""
    trace_capacity: int = 0
    """Records each CPU's trace ring holds (0: no trace was written)."""
    output_errors: list[str] = field(default_factory=list)
    """Report files (trace, tokens, JSON, CSV, plot) that could not be written, and why: the
    paths were checked before the run, but a disk can fill or a directory go away meanwhile."""
    not_done: tuple[str, ...] = ()
    """What a Ctrl-C or SIGTERM outside the CPUs' run left undone, each with why ("invariants not
    checked: interrupted (Ctrl-C)"): the build (the CPUs then never start), or the work after
    the run (figures, realm outcomes, invariant check, teardown); the run is then interrupted.
    Also the CPUs one during the run killed in their start-up, before they bound to the machine
    (runtime's RunResult.not_started: "CPUs 5 to 15 (11) were never started: ...")."""
    cpu_warnings: dict[int, str] = field(default_factory=dict)
    """Per CPU whose process failed to close its machine handle after its result had been sent
    (runtime's RunResult.warnings): the result counts; this says what went wrong after it."""
    not_started: tuple[int, ...] = ()
    """The CPUs that were never started, which have no figures (``stats`` and ``locks`` leave
    them out): every CPU when the run was interrupted before the CPU processes were started
    (not_done: "the CPUs were not started: ..."), else those a Ctrl-C or SIGTERM killed in their
    start-up (runtime's RunResult.not_started; not_done: "CPUs 5 to 15 (11) were never started")."""
    close_warnings: tuple[str, ...] = ()
    """What went wrong as the parent closed the machine after the run, when nothing was left
    behind (run.closed): the figures and checks were all made before. A close that left shared
    memory files is a problem instead."""

    @property
    def ok(self) -> bool:
        return (not self.failures and not self.problems and not self.interrupted and not self.output_errors
                and all(r.ok for r in self.realms)
                and self.invariants is not None and self.invariants.ok)

    @property
    def oversubscribed(self) -> bool:
        """More simulated CPUs started than host cores: latency then includes time a CPU was not
        scheduled. A CPU never started (not_started) took no core and has no figure to skew:
        counted, every interrupted start-up of 4 CPUs on 2 cores warned of figures no CPU made."""
        return self.started_cpus > self.host_cores

    @property
    def started_cpus(self) -> int:
        """The simulated CPUs that were started: ``cpus`` less the CPUs never started."""
        return self.cpus - len(self.not_started)

    @property
    def total_calls(self) -> int:
        return latency.total_calls(self.stats)

    @property
    def calls_per_second(self) -> float:
        return self.total_calls / self.elapsed_s if self.elapsed_s > 0 else 0.0


def collect_locks(machine: "Machine", cpus: list[int]) -> dict[int, dict[int, LockClassStats]]:
    """Per CPU and lock class, the figures each CPU last published (Cpu.flush_statistics)."""
    out: dict[int, dict[int, LockClassStats]] = {}
    for cpu in cpus:
        area = machine.cpu_area(cpu)
        try:
            rows = area.lock_class_stats(CLASSES)
        finally:
            area.release()
        out[cpu] = {cls: LockClassStats(*row) for cls, row in enumerate(rows) if row[0]}
    return out
