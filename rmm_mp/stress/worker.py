"""A stress CPU process: instrument it, run the workload's operations, hand back what it saw.

``stress_cpu`` is the target rmm_mp.runtime.run_cpus starts on every CPU. It installs the
instrumentation (stress.instrument), the injected bugs, the checkers the run asked for and, in
deterministic mode, the scheduler; then (once every CPU is ready: free-running, it waits for
the others; deterministic, for its turn) draws operations (stress.ops) from the seed, backing off
after one that found nothing to do (free-running only: idle_pause), until the run ends: time is
up (free-running), the step budget is spent (deterministic: the operation in progress finishes
first), or a finding stopped the run. A finding never raises out of the
process: crashes inside the RMM, unexpected statuses and aborted waits become findings, so the
parent always gets a CpuResult.

This module owns the CPU side of a run. It must not decide how a run is reported.
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from rmm_mp.check import invariants
from rmm_mp.host.nsalloc import AllocatorError
from rmm_mp.host.realm import HostError, status_name
from rmm_mp.host.runqueue import RunQueueError
from rmm_mp.hw import points
from rmm_mp.hw.control import UNRECORDED_REASON
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.hw.granule import LockStats
from rmm_mp.hw.quiesce import Participant
from rmm_mp.stress import bugs, instrument, ownership
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import (AT_QUIESCENT, Finding, call_name, invariant_finding, masked_numbers, raised_at,
                                    without_lines, without_run_values)
from rmm_mp.stress.lockdep import Edge, LockOrder
from rmm_mp.stress.ops import WORKLOADS, Operations, Unexpected
from rmm_mp.stress.population import Population
from rmm_mp.stress.probe import Probe, StressAbort
from rmm_mp.stress.sched import SchedPlan, Scheduler
from rmm_mp.stress.shared import ABSENT, DONE, END_ABORT, END_DRAIN, END_RUNNING, MODE_FREE, READY, StressSegment

if TYPE_CHECKING:
    from rmm_mp.hw.control import Control
    from rmm_mp.machine import Cpu

MAX_POINTS = 1_000_000
"""Schedule points kept per CPU for a timeline (the newest are dropped beyond this)."""

START_POLL_S = 0.02
"""Free-running: how often a CPU that is ready looks whether every other CPU is too, before its
first operation (see _await_the_others)."""

IDLE_PAUSE_FIRST_S = 50e-6
"""Free-running: the sleep after the second idle operation in a row (see idle_pause)."""

IDLE_PAUSE_MAX_S = 0.001
"""Free-running: the longest sleep after an idle operation. Short, as it is the most a CPU can be
late to see the run's end, a quiescent pause (hw.quiesce: the CPUs park between operations) or
a vCPU put back in the run queue."""


def idle_pause(streak: int) -> float:
    """Free-running: the seconds a CPU sleeps after the ``streak``-th idle operation in a row (an
    empty run queue and no guest to rebuild, or a `guest-tables` with no guest realm of its own;
    0: the operation was not idle, which resets the streak). 0 for the first one too, after
    which the CPU only yields its host core (os.sched_yield); then IDLE_PAUSE_FIRST_S, doubling
    at each one, up to IDLE_PAUSE_MAX_S.

    Why: on a host with fewer cores than CPU processes, a CPU that draws again at once after
    finding nothing to do takes the cores from the CPUs that have vCPUs to run and tables to
    change (`running --cpus 64 --seconds 10` made 807,319 operations, 798,949 of them idle; see
    docs/stress.md, "Reading a report", for what the back-off gained). A deterministic run never
    backs off: its CPUs run one at a time in the schedule's order, and a sleep there would only
    slow it down."""
    if streak <= 1:
        return 0.0
    return min(IDLE_PAUSE_FIRST_S * (1 << min(streak - 2, 16)), IDLE_PAUSE_MAX_S)


@dataclass(frozen=True)
class CpuPlan:
    """What every CPU process is given (the same for all; each picks its own pipe)."""

    config: StressConfig
    population: Population
    sched: SchedPlan | None
    parks: tuple[Connection, ...] = ()
    wakes: tuple[Connection, ...] = ()
    roles: dict[int, str] = field(default_factory=dict)
    """The population's roles (population.roles), worked out once by the runner, whose
    supervisor names them too: what the identities of this CPU's findings name realms by."""


@dataclass
class CpuResult:
    cpu: int
    ops: int = 0
    ended: str = "done"
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    switches: list[tuple[int, int]] = field(default_factory=list)
    points: list[tuple[int, int, int]] = field(default_factory=list)
    waited: tuple[str, int, int] | None = None
    """The call (as published), the granule PA and the holder's lock word of the lock this CPU
    was waiting for when the run was aborted and it left the call; None if it was not waiting."""
    stopped_at: int | None = None
    """Deterministic: the step at which this CPU saw the stop flag (Ctrl-C, SIGTERM, the time
    limit) between operations, if it stopped for it."""
    bug_calls: dict[str, int] = field(default_factory=dict)
    """How many times each injected bug's code ran on this CPU."""
    locks: tuple[int, int, int, int] = (0, 0, 0, 0)
    """Granule lock acquisitions this CPU process made during the run, by its CPU and by its
    host's NS copies (hw.granule.LockStats of both tables): (acquired, contended, wait_ns,
    max_wait_ns), counted from stress_cpu's set-up to the CPU's stop, the operation it finished
    after the run's end included; its start-up before that takes no lock. Deterministic:
    contended counts the acquisitions that blocked, and the waits are 0
    (hw.granule.LockStats.count_contended)."""


def stress_cpu(cpu: "Cpu", plan: CpuPlan) -> CpuResult:
    """The CPU target (see the module docstring)."""
    cfg = plan.config
    seg = StressSegment.attach(cpu.machine.name)
    probe = instrument.install(cpu, None if cfg.deterministic else seg, watchdog=cfg.on("watchdog"))
    probe.roles = plan.roles
    result = CpuResult(cpu.id)
    sched = None
    tables = (cpu.granules.stats, cpu.machine._host_ns.table.stats)
    locks0 = _lock_figures(tables)
    try:
        probe.on_finding = lambda: _stop(cpu, seg)
        bugs.install(cfg.inject, probe, result.bug_calls, lambda name: seg.count_bug(cpu.id, bugs.BUG_INDEX[name]))
        if cfg.on("lockdep"):
            probe.lockdep = LockOrder(probe)
        if cfg.on("ownership"):
            ownership.install(probe)
        if plan.sched is not None:
            sched = _scheduler(cpu, plan, seg, probe)
        ops = Operations(cpu, plan.population, seg)
        if sched is None:
            seg.set_status(cpu.id, READY)
        try:
            with Participant(cpu.machine.control) as part:
                result.ended = _run(cpu, cfg, ops, seg, probe, sched, part, result)
        finally:
            result.counts = dict(ops.counts)
    finally:
        if sched is None:
            seg.set_status(cpu.id, DONE)
        if sched is not None:
            if result.ended != "aborted":
                try:
                    sched.finish()
                except StressAbort:
                    result.ended = "aborted"
            result.switches, result.points = sched.switch_log, sched.log[:MAX_POINTS]
        instrument.uninstall(probe)
        locks = _lock_figures(tables)
        # The longest wait is not a sum, so it cannot be taken from the set-up's as the others
        # are: it is the process's. It is the run's all the same, as nothing before this
        # function takes a granule lock (the start-up imports, attaches the machine and binds
        # the CPU: no acquisition, so locks0 is all zeros), and it counts over the same span as
        # the others: from here, the instrumentation's set-up, to the stop.
        result.locks = (locks[0] - locks0[0], locks[1] - locks0[1], locks[2] - locks0[2], locks[3])
        result.findings = list(probe.findings.items)
        if probe.lockdep is not None:
            result.edges = list(probe.lockdep.edges.values())
        seg.close()
    return result


def _lock_figures(tables: tuple[LockStats, ...]) -> tuple[int, int, int, int]:
    """(acquired, contended, wait_ns, max_wait_ns) over ``tables`` as they stand."""
    return (sum(sum(s.acquired) for s in tables), sum(s.contended for s in tables),
            sum(s.wait_ns for s in tables), max(s.max_wait_ns for s in tables))


def _stop(cpu: "Cpu", seg: StressSegment) -> None:
    """A finding ends the run: no CPU starts another operation."""
    seg.set_end(END_DRAIN)
    if seg.mode == MODE_FREE:
        cpu.machine.control.request_stop()


def _scheduler(cpu: "Cpu", plan: CpuPlan, seg: StressSegment, probe: Probe) -> Scheduler:
    assert plan.sched is not None
    load = cpu.granules._load
    sched = Scheduler(seg, cpu.id, plan.sched, tuple(c.fileno() for c in plan.wakes), plan.parks[cpu.id].fileno(),
                      lambda idx: load(idx << 3), probe,
                      roles=probe.roles)
    if plan.sched.quiescent_every:
        sched.on_quiescent = lambda: _quiescent_check(cpu, probe, seg)
    instrument.install_scheduler(probe, sched)
    return sched


def _quiescent_check(cpu: "Cpu", probe: Probe, seg: StressSegment) -> None:
    """Every CPU is parked between operations: the invariants must hold now."""
    step = probe.sched.step if probe.sched is not None else None
    probe.checking = False
    try:
        report = invariants(cpu.machine)
        # The findings too: each names its granule's state as the check's snapshot read it
        # (Violation.state), reading no machine and so reaching no schedule point.
        found = [invariant_finding(v, AT_QUIESCENT, step) for v in report.violations[:8]]
    finally:
        probe.checking = True
    seg.count_quiescent()
    # Each violation (up to 8, as a free-running run's check reports them): by the FindingLog's
    # key, checker, rule and site, every violation of one rule was the same problem, so only the
    # first of them was kept, where the parent's check in a free-running run kept them all.
    for finding in found:
        probe.findings.add(finding, by_message=True)
    if report.violations:
        seg.set_end(END_DRAIN)


def _run(cpu: "Cpu", cfg: StressConfig, ops: Operations, seg: StressSegment, probe: Probe,
         sched: Scheduler | None, part: Participant, result: CpuResult) -> str:
    weights = WORKLOADS[cfg.workload]
    kinds, w = list(weights), list(weights.values())
    operation = dict(zip(kinds, ops.pick(weights)))
    rng = random.Random(cfg.seed * 1_000_003 + cpu.id)
    control = cpu.machine.control
    idle_streak = 0
    try:
        if sched is not None:
            if not sched.start():
                return "stopped"        # before the first turn: no step, nothing to replay
        else:
            _await_the_others(seg, control, part)
        while True:
            if sched is not None:
                sched.point(points.OP, result.ops)
            if seg.end != END_RUNNING or control.stop_requested:
                if seg.end != END_RUNNING:
                    return "drained"
                if sched is not None:
                    # Stopped here rather than at a step the schedule file records: the
                    # report turns this into a replay's budget (StressReport.stopped_at).
                    result.stopped_at = sched.step
                return "stopped"
            if sched is None:
                # Free-running: park here while the parent (or `rmm-mp check`) checks. A
                # deterministic run has no such point: parking would hold up the schedule.
                part.point()
            # Drawing the kind's name draws exactly what drawing its function did (choices
            # looks only at the weights), so schedules recorded before stay valid.
            kind = rng.choices(kinds, w)[0]
            ops.idle = False
            operation[kind](rng)
            result.ops += 1
            ops.count(kind)
            seg.count_op(cpu.id)
            if sched is None:
                # Back off after an idle operation, so that the host cores go to the CPUs with
                # work. Between operations, holding no lock, in no call (the watchdog bounds a
                # call's CPU time, not a CPU's wall time); the loop's next turn looks at the
                # stop flags and parks for a pause as before, at most IDLE_PAUSE_MAX_S late.
                idle_streak = idle_streak + 1 if ops.idle else 0
                if idle_streak:
                    pause = idle_pause(idle_streak)
                    if pause:
                        time.sleep(pause)
                    else:
                        os.sched_yield()
    except StressAbort as exc:
        if exc.waiting_for >= 0:
            result.waited = (exc.call, exc.waiting_for, exc.holder)
        return "aborted"
    except Unexpected as exc:
        probe.findings.add(dataclasses.replace(exc.finding, step=_step(sched)))
    except RmmInternalError as exc:
        finding = _internal_error(cpu, probe, exc, _step(sched))
        if finding is not None:
            probe.findings.add(finding)
        _abort(seg, sched)
        return "crashed"
    except (HostError, RunQueueError, AllocatorError) as exc:
        probe.findings.add(exception_finding(exc, cpu.id, _step(sched)))
    _stop(cpu, seg)
    return "finding"



def exception_finding(exc: Exception, cpu_id: int, step: int | None) -> Finding:
    """The finding of an error of the host side that ended this CPU's run (HostError, ...): its
    type is the rule. No site in its text (a schedule file recorded before keeps replaying), but
    where it was raised, without line numbers, tells it from another of its type (its identity),
    with the command and the status it returned for an error that carries them (a HostError's
    ``x0``, an RMI_ERROR_RTT's level left out): two wrong statuses one line of the host raises
    on are two problems. An error that carries no status (RunQueueError, AllocatorError) adds
    its text with every number masked (``vCPU ? is OFF: ...``): two raised at one line differ in
    what they found (the state of a vCPU, a granule not allocated or freed twice), which the
    text alone says; its vCPU, slot, PA and counts are others on a shrunk run's replay."""
    identity = without_lines(raised_at(exc))
    x0 = getattr(exc, "x0", None)
    if isinstance(x0, int):
        identity += f" ({getattr(exc, 'command', '?')} returned {status_name(x0)})"
    else:
        # Run values first: masked before, a machine name's pid went and its random hex stayed.
        identity += f" ({masked_numbers(without_run_values(str(exc)))})"
    return Finding("functional", type(exc).__name__, str(exc), cpu_id, "", "", (), step, identity=identity)


_MONITOR_CRASH = re.compile(r"(?:RMM bug|RMM crashed) on CPU \d+ in FID ")
"""How the monitor words the RmmInternalError of a crash inside the RMM (el3.monitor _crash)."""


def _internal_error(cpu: "Cpu", probe: Probe, exc: RmmInternalError, step: int | None) -> Finding | None:
    """The finding an RmmInternalError that ended this CPU's run makes, if any:

    - the RMM crashed on this CPU (the machine's dead reason names it): ``crash``, with that
      reason;
    - the RMM crashed on another CPU, and this error is that crash seen from here (an smc on the
      dead machine, a host wait for a lock the crashed CPU holds: its text holds the dead
      reason, or says it was not recorded yet) or a crash of this CPU's RMM after it (its state
      half done by the first): none, as the crashing CPU reports the crash;
    - otherwise the machine was alive when the error was raised (a host-side lock release of a
      lock word that is not the host's, a refcount out of range outside the RMM): the RMM did
      not die of it, but the model's state broke, so it is ``internal-error``, with the error's
      text and where it was raised. Ending with no finding, the run said "no findings" and
      exit status 0 after an internal error."""
    text = str(exc)
    dead = cpu.machine.control.dead_reason()
    if dead and f"on CPU {cpu.id} " in dead:
        cause = type(exc.__cause__).__name__ if exc.__cause__ else "RmmInternalError"
        call = probe.current_call()
        # Its identity (no site in its text): the cause, in which call, raised where (no line numbers).
        where = without_lines(raised_at(exc.__cause__)) if exc.__cause__ else ""
        return Finding("functional", "crash", dead, cpu.id, call, "", (cause,), step,
                       identity=f"{cause} in {call_name(call) or 'no call'}" + (f" at {where}" if where else ""))
    # UNRECORDED_REASON: the machine was dead already, its reason not yet written when this
    # CPU gave up waiting for it (dead_reason), and written by now.
    if dead and (dead in text or UNRECORDED_REASON in text or _MONITOR_CRASH.match(text)):
        return None
    return Finding("functional", "internal-error", text, cpu.id, probe.current_call(), raised_at(exc),
                   ("RmmInternalError raised while the machine was alive: not a crash of the RMM",), step)


def _await_the_others(seg: StressSegment, control: "Control", part: Participant) -> None:
    """Free-running: wait until every CPU is past its set-up (READY, or DONE already) before the
    first operation, or until the run is stopped. The run's --seconds count from then (the
    supervisor's ready_at); a CPU that went to work as soon as it was ready took host cores from
    the CPUs still starting up (64 CPU processes on 2 cores, starting at once), so the start-up
    took longer, and it worked for up to the whole start-up before the run's time began. Parked
    at each look, as between operations, so that a quiescent check (the parent's, `rmm-mp
    check`'s) does not wait for a CPU that is only waiting."""
    cpus = range(seg.cpus)
    while any(seg.status(other) == ABSENT for other in cpus):
        if seg.end != END_RUNNING or control.stop_requested:
            return      # the run's loop sees it and stops before any operation
        part.point()
        time.sleep(START_POLL_S)


def _step(sched: Scheduler | None) -> int | None:
    return sched.step if sched is not None else None


def _abort(seg: StressSegment, sched: Scheduler | None) -> None:
    if sched is not None:
        sched.abort_all()
    else:
        seg.set_end(END_ABORT)
