"""A stress run's end, made into its StressReport: the CPUs' findings and failures, the
lock-order edges merged and analysed, the final invariant check of the quiescent machine, and
how the run ended (``rmm_mp.stress.runner`` calls ``report`` once the CPUs have stopped).

This module owns the report's assembly. It must not start, stop or supervise CPUs (the
runner's job) nor hold checker logic (lockdep, check).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from rmm_mp.check import Violation, invariants
from rmm_mp.machine import Machine
from rmm_mp.cpu_outcome import CpuFailure, RunResult
from rmm_mp.stress import lockdep
from rmm_mp.stress.bugs import BUG_INDEX
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import AT_END, Finding, failure_kind, invariant_finding, raised_in
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.shared import ABSENT, END_ABORT, END_RUNNING, StressSegment
from rmm_mp.stress.watchdog import call_identity, owner_cpu, snapshots
from rmm_mp.stress.worker import CpuResult
from rmm_mp.workload.report import collect_locks
from rmm_mp.interrupts import Interrupts
from rmm_mp import words

if TYPE_CHECKING:
    from rmm_mp.stress.runner import _Supervisor


def cpus_ready(seg: StressSegment, config: StressConfig) -> int:
    """How many of the run's CPU processes are ready, as the supervisor counts them: free-running,
    those past their set-up (READY, or DONE already); deterministic, those registered for a
    turn. Read from the stress segment alone, so the parent's tick can show it for nothing."""
    if config.deterministic:
        return min(seg.registered, config.cpus)
    return sum(1 for cpu in range(config.cpus) if seg.status(cpu) != ABSENT)


def report(machine: Machine, seg: StressSegment, config: StressConfig, result: RunResult, sup: _Supervisor,
            elapsed: float, stop: Interrupts, not_done: list[str]) -> StressReport:
    """The report of the CPUs' run. A signal now (``stop``) ends the step under way (reading
    the lock-order edges, analysing them, the final invariant check) and skips the invariant
    check if it is still to come; the report is made all the same, marked interrupted and
    saying what was not done."""
    results: dict[int, CpuResult] = {c: r for c, r in result.results.items() if isinstance(r, CpuResult)}
    findings: list[Finding] = []
    for cpu in sorted(results):
        findings.extend(results[cpu].findings)
    findings.extend(sup.findings)
    # A CPU killed by a second Ctrl-C or SIGTERM is not a finding (it was a cpu-died one, so a
    # double Ctrl-C saved a schedule "with findings"): the user asked for it. What it was doing
    # was cut off, so the end state proves nothing either: the invariant check is skipped.
    # In a deterministic run only the CPU with the turn works: one without it that run_cpus
    # killed after the grace time was waiting for its turn (or still starting up, when another
    # CPU's death aborted the run before the first step), so its death is the abort's doing,
    # not a second finding beside the one that caused it. But a run that its --seconds limit
    # ended before the first step was held up by the CPUs not yet registered for a turn: one
    # still starting up then (stopped with SIGSTOP, hung in its set-up) is stuck, a finding, as
    # a free-running CPU not ready in time is; it is the reason the others were left waiting.
    unstarted = sup.plan is not None and sup.timed_out and not sup.started
    waited = [f for f in result.failures if not f.on_request and f.terminated and sup.plan is not None
              and not (sup.started and seg.turn == f.cpu) and not (unstarted and seg.status(f.cpu) == ABSENT)]
    # Free-running, a Ctrl-C or SIGTERM stops the CPUs, and one still starting up (never READY:
    # it sets READY just before its first operation, and makes no call before) stops once it is
    # up. A start-up longer than the grace time (16 CPUs on a loaded 2-core host took 32 s,
    # against 30 s) had it killed, and every such CPU was a cpu-died finding with the whole
    # machine's snapshot: a user's interrupt reported as 16 watchdog findings. It is the
    # interrupt's doing, as for a deterministic CPU waiting for its turn; and having made no
    # call, it cut nothing off, so the final invariant check is still made. Only when the
    # interrupt is what stopped the run: after "time is up" (run_cpus's limit, a start-up hung
    # for START_ALLOWANCE_S) a Ctrl-C during the grace time, or one after the run, must not
    # turn a CPU stuck at start-up into "no finding".
    by_interrupt = result.stopped_by.startswith("interrupted (")
    # Likewise when another CPU's end stopped the run (its death or lost result: runtime's stop)
    # or this tool did, for a finding (its abort for a death or a watchdog finding, its drain
    # for a broken invariant at a quiescent point): a CPU killed still starting up in the grace
    # time after it is that stop's doing, as in a deterministic run, not a cpu-died finding
    # beside the one that stopped the run (until 2026-11 it was one after a watchdog or
    # invariants stop). Told by structured facts, not by matching stopped_by's words (which a
    # rewording broke silently): the runtime's stopped_by_cpu, the supervisor's own reason.
    by_stop = result.stopped_by_cpu is not None or (sup.stopping is not None and result.stopped_by == sup.stopping)
    starting = [f for f in result.failures if not f.on_request and f.terminated and sup.plan is None
                and (by_interrupt or by_stop) and seg.status(f.cpu) == ABSENT]
    # A CPU whose result was lost exited normally, having left the machine: not dead.
    dead = {f.cpu for f in result.failures if not f.result_lost}
    # The CPU a stopped-with-the-turn finding names, killed after the grace time: that finding.
    named = [f for f in result.failures if f.terminated and f.cpu == sup.stopped_cpu and not f.on_request]
    failed = [f for f in result.failures if not f.on_request and f not in waited and f not in starting
              and f not in named]
    behind = _terminated_behind(failed, machine, dead)
    findings.extend(_failure(f, machine, dead, _stuck_behind(f.cpu, machine, results, behind), sup.roles)
                    for f in failed if f.cpu not in behind)
    killed = [f for f in result.failures if f.on_request]
    # The CPUs killed while they were still starting up (never READY: free-running, not past
    # their set-up; deterministic, not registered for a turn) are said in one line, with how
    # far the start-up had come, so that a run that seemed to hang tells a slow start-up (most
    # of the CPUs ready) from one that never got going. At 64 CPUs on a loaded 2-core host a
    # Ctrl-C in the start-up killed dozens of them, each a line of its own that began "CPU 40
    # did not stop within 30 s of being asked and was terminated", as a stuck CPU's does.
    still_starting = starting + [f for f in waited if seg.status(f.cpu) == ABSENT]
    turn_waiters = [f for f in waited if f not in still_starting]
    # The CPUs the interrupt killed before they had bound their CPU (runtime's not_started):
    # never READY, as ``starting``, but killed at once rather than after the grace time, and
    # never bound, so no call of theirs was cut off either: the final invariant check stays.
    never_bound = result.not_started
    if by_interrupt and sup.ready_at is None and (starting or never_bound or (waited and not sup.started)):
        not_done.append(f"the start-up not finished, {result.stopped_by}: {cpus_ready(seg, config)} of "
                        f"{config.cpus} CPUs had become ready by the run's end"
                        + (f"; {_still_starting(still_starting, 'interrupted')}" if still_starting else ""))
    elif still_starting:
        # A run stopped by another CPU's end or by a finding (deterministic: before its first step).
        not_done.append(_still_starting(still_starting, "stopped"))
    if never_bound:
        not_done.append(words.never_started(never_bound, result.interrupted_by))
    not_done.extend(f"CPU {f.cpu} {f.how}: what it was doing was cut off" for f in killed)
    not_done.extend(f"CPU {f.cpu} {f.how}: it was waiting for its turn after the run was stopped, so this is no "
                    "finding of its own" for f in turn_waiters)
    not_done.extend(f"CPU {f.cpu} {f.how}: it was the CPU stopped with the turn (its finding)" for f in named)
    read, edges = stop.step(lambda: _edges(machine, results, config), read=True)
    analysed, cycles = stop.step(lambda: lockdep.analyse(edges), read=True) if read else (False, [])
    edges = edges if read else {}
    if analysed:
        findings.extend(cycles)
    elif config.on("lockdep"):
        not_done.append(f"lock order not analysed: interrupted ({stop.by})")
    # The stop flag raised by neither run_cpus (time, a signal, a CPU's end: its stopped_by) nor
    # this tool (whose stops go through run_cpus too): by the caller's on_tick, or another process
    # attached to the machine. The CPUs stop between operations as at their budget or time, which
    # the run then said it reached ("budget", "time") though it was cut short. A deterministic
    # run whose budget was spent first is draining (END_DRAIN): it did reach its budget.
    flagged = not result.stopped_by and machine.control.stop_requested and seg.end == END_RUNNING
    ended = _ended(seg, config, results, sup, findings, result.interrupted or bool(stop.by), flagged)
    # A deterministic run's CPUs killed while they waited for their turn or started up, after a
    # Ctrl-C or SIGTERM stopped the run, are the interrupt's doing too (``waited``): at 64 CPUs
    # on a loaded 2-core host the start-up outlasts the grace time, and a Ctrl-C during it ended
    # "aborted", the word for a run a failure stopped. Only when the interrupt is what stopped
    # the run (``by_interrupt``, as for ``starting``): one during the grace time after the
    # --seconds limit leaves the run "timeout".
    if (killed or starting or never_bound or (waited and by_interrupt)) and not findings:
        ended = "interrupted"     # not "aborted": the tick that saw the killed CPUs gone aborted the run
    if killed and config.on("invariants"):
        not_done.append(f"invariants not checked at the end: CPU {killed[0].cpu} {killed[0].how}")
    elif config.on("invariants") and not machine.dead and ended not in ("aborted", "timeout"):
        if waited and sup.started:
            # A CPU killed while it waited for its turn may have been blocked inside a call: cut
            # off. Not before the first turn was given: every CPU was then starting up or
            # registered, waiting for a turn that never came, and none had made a call, so the
            # machine is as the population left it and is checked, as it is when free-running
            # CPUs are killed while starting up. A Ctrl-C in a 64-CPU start-up skipped the check.
            not_done.append(f"invariants not checked at the end: CPU {waited[0].cpu} {waited[0].how}")
        else:
            checked, report = stop.step(lambda: invariants(machine))
            if checked:
                findings.extend(_end_findings(report.violations, findings))
            else:
                not_done.append(f"invariants not checked at the end: interrupted ({stop.by})")
                ended = _ended(seg, config, results, sup, findings, True, flagged)
    ordered(findings)
    schedule: list[tuple[int, int]] = []
    if sup.plan is not None and sup.started:
        schedule = [(0, sup.first)] + sorted(s for r in results.values() for s in r.switches)
    stops = [r.stopped_at for r in results.values() if r.stopped_at is not None]
    unreported = tuple(c for c in range(config.cpus) if c not in results and c not in never_bound)
    return StressReport(config, tuple(_unique(findings)), ended, elapsed, {c: r.ops for c, r in results.items()},
                        seg.step, seg.switches, seg.preemptions, seg.quiescent_checks + sup.quiescent_checks,
                        tuple(schedule), {c: r.points for c, r in results.items() if r.points},
                        tuple(edges.values()), _total(r.counts for r in results.values()),
                        sum(u.user_s + u.system_s for u in result.usage.values()), min(stops, default=None),
                        result.interrupted or bool(stop.by), sup.startup_s, tuple(not_done),
                        unreported,
                        tuple(f.cpu for f in result.failures if f.result_lost),
                        _total(r.bug_calls for r in results.values()),
                        (result.interrupted_by if result.interrupted else "") or stop.by,
                        {c: r.locks for c, r in sorted(results.items())},
                        unreported_ops={c: seg.completed(c) for c in unreported},
                        unreported_counts={c: seg.counts(c) for c in unreported},
                        unreported_locks=_published_locks(machine, unreported),
                        unreported_bug_calls={c: seg.bug_calls(c, {n: BUG_INDEX[n] for n in config.inject})
                                              for c in unreported if config.inject})


def _published_locks(machine: Machine, cpus: Iterable[int]) -> dict[int, tuple[int, int, int, int]]:
    """The lock figures (acquired, contended, wait_ns, max_wait_ns) the CPUs' EL3 last published
    in their CPU areas (el3.monitor publish_lock_stats), for those that returned no result: what
    they had before they died, of their own granule locks (not their host's NS copies'). A CPU
    that published no acquisition (it died before its first flush) has none. All four are summed
    from the per-class records as workload.report.collect_locks reads them (a class with no
    acquisition has no contention either: a lock counts its acquisition first), not taken from
    the overall record: EL3 writes that apart, before the per-class ones, and a CPU killed in
    between left a contended count from the newer record over acquisitions from the older ones.
    Each per-class record is written with one 32-byte copy (LOCK_CLASS.pack_into), not an atomic
    store: only a kill inside that copy could leave one record's four figures of two flushes."""
    out = {}
    for cpu, classes in collect_locks(machine, list(cpus)).items():
        rows = classes.values()
        if rows:
            out[cpu] = (sum(r.acquired for r in rows), sum(r.contended for r in rows), sum(r.wait_ns for r in rows),
                        max(r.max_wait_ns for r in rows))
    return out


END_VIOLATIONS = 20
"""How many broken invariants the check at a run's end reports, past those reported before."""


def ordered(findings: list[Finding]) -> None:
    """Sort ``findings`` as the report lists them: by step, then CPU (a machine's first), and the
    end check's broken invariants after every other: a free-running run's findings have no step,
    and a lock left held (``invariants: lock-free`` at the end) was listed before the
    ``watchdog: leaked-lock`` that caused it, and taken for the run's first finding."""
    findings.sort(key=lambda f: (f.checker == "invariants" and f.details == (AT_END,),
                                 f.step if f.step is not None else 1 << 62, f.cpu if f.cpu is not None else -1))


def _end_findings(violations: Iterable[Violation], earlier: Iterable[Finding]) -> list[Finding]:
    """The findings of the check at the run's end: its first END_VIOLATIONS ``violations`` that
    no ``earlier`` finding reported. A violation a quiescent check reported stopped the run; the
    CPUs only finished their operations since, so the end check sees it again, the same broken
    invariant at the same granule: it was reported twice, once per check. The bound counts the
    new ones only: taken before them, it left out as many new ones as it took old ones."""
    seen = {f.message for f in earlier if f.checker == "invariants"}
    new = [v for v in violations if str(v) not in seen][:END_VIOLATIONS]
    return [invariant_finding(v, AT_END) for v in new]


def _total(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The CPUs' counts (operations and events, or injected bugs' calls) added up by name."""
    total: dict[str, int] = {}
    for per_cpu in counts:
        for k, n in per_cpu.items():
            total[k] = total.get(k, 0) + n
    return dict(sorted(total.items()))


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        if f.text() not in seen:
            seen.add(f.text())
            out.append(f)
    return out


def _edges(machine: Machine, results: dict[int, CpuResult],
           config: StressConfig) -> dict[tuple[int, int], lockdep.Edge]:
    if not config.on("lockdep"):
        return {}
    matrices = {}
    for cpu in range(machine.cpus):
        area = machine.cpu_area(cpu)
        try:
            matrices[cpu] = area.lock_edges()
        finally:
            area.release()
    return lockdep.merge((results[c].edges for c in sorted(results)), matrices)


def _ended(seg: StressSegment, config: StressConfig, results: dict[int, CpuResult], sup: _Supervisor,
           findings: list[Finding], interrupted: bool, flagged: bool = False) -> str:
    if sup.timed_out:
        return "timeout"
    if seg.end == END_ABORT or any(r.ended in ("aborted", "crashed") for r in results.values()):
        return "aborted"
    if findings:
        return "finding"
    if interrupted:
        return "interrupted"
    if flagged:
        return "stopped"
    return "budget" if config.deterministic else "time"


def _still_starting(failures: list[CpuFailure], how_stopped: str) -> str:
    """What the CPUs in ``failures`` were: killed after the grace time while still starting
    up, when the run was ``how_stopped`` ("interrupted", "stopped"), so before their first
    operation: no finding of their own. ``how`` of the first says how long they were given
    (all of them were given the same grace time)."""
    cpus = sorted(f.cpu for f in failures)
    how = failures[0].how
    if len(cpus) == 1:
        return (f"CPU {cpus[0]} was still starting up when the run was {how_stopped}: it {how}, before its first "
                "operation, so this is no finding of its own")
    return (f"{words.cpus(cpus)} ({len(cpus)}) were still starting up when the run was {how_stopped}: each {how}, "
            "before its first operation, so this is no finding of theirs")


def _terminated_behind(failed: list[CpuFailure], machine: Machine,
                       dead: set[int]) -> dict[int, tuple[int, int, str, str]]:
    """The CPUs of ``failed`` (those to be reported) that run_cpus terminated at the grace
    time's end while waiting for a lock another CPU of ``failed`` held, that one waiting for
    none held so: waiter -> (holder, PA, call, how). A waiter spins on until its holder lets
    go, so when the holder never does (stopped with SIGSTOP, hung) the waiter "did not stop"
    either: that is the holder's doing, not a finding of its own (free-running, 2 CPUs, CPU 0
    stopped holding the RD CPU 1 waited for: two cpu-died findings). Its wait is read from
    the machine (the lock it published, the lock word's owner): it returned no CpuResult. A
    chain of them (CPU 2 behind CPU 1 behind a stopped CPU 0) is folded whole under the CPU at
    its head, which waits for no lock held so; a cycle of such waits has no head to report it
    under, so each CPU in it stays a finding."""
    snaps = {s.cpu: s for s in snapshots(machine, dead=dead)}
    table = machine.granule_table(0)
    reported = {f.cpu for f in failed if not f.result_lost}
    waits: dict[int, tuple[int, int, str, str]] = {}
    for f in failed:
        snap = snaps.get(f.cpu)
        if not f.terminated or snap is None or snap.waiting_for < 0:
            continue
        holder = owner_cpu(machine, table.holder(table.find(snap.waiting_for)))
        if holder != f.cpu and holder in reported:
            waits[f.cpu] = (holder, snap.waiting_for, snap.call, f.how)

    def headed(cpu: int) -> bool:
        # Whether following cpu's waits reaches a CPU that waits for none (the chain's head),
        # not one already passed (a cycle). Until 2026-11 only a waiter whose own holder waited
        # for none was folded: in a chain, CPU 2 behind CPU 1 was a cpu-died finding of its own.
        seen: set[int] = set()
        while cpu in waits:
            if cpu in seen:
                return False
            seen.add(cpu)
            cpu = waits[cpu][0]
        return True

    return {cpu: wait for cpu, wait in waits.items() if headed(cpu)}


def _stuck_behind(cpu: int, machine: Machine, results: dict[int, CpuResult],
                  behind: dict[int, tuple[int, int, str, str]] | None = None) -> tuple[str, ...]:
    """Lines naming every CPU that was waiting for a lock ``cpu`` held when the run was aborted
    (its death aborts it): without them the report showed such a CPU only as "running" in a
    call, holding its own locks, as if it had been at work. ``behind`` (``_terminated_behind``)
    adds those terminated while they still waited, with how they ended, and after each such
    CPU those that waited behind it in turn (named as stuck behind that CPU)."""
    behind = behind or {}
    lines: list[str] = []

    def walk(holder: int, passed: set[int]) -> None:
        # The CPUs waiting for a lock ``holder`` held, each followed by those behind it in
        # turn (a chain of terminated waiters: ``behind`` holds no cycle, ``passed`` is a guard).
        who = "it" if holder == cpu else f"CPU {holder}"
        out: dict[int, str] = {}

        def stuck(other: int, pa: int, call: str, ended: str) -> None:
            out[other] = (f"CPU {other} was stuck behind {who}: it waited for {pa:#x}, which CPU {holder} held"
                          + (f", in {call}" if call else "") + f", and {ended}")

        for other in sorted(results):
            waited = results[other].waited
            if other != holder and waited is not None and owner_cpu(machine, waited[2]) == holder:
                call, pa, _ = waited
                stuck(other, pa, call, "left its call when the run was aborted")
        for other, (head, pa, call, how) in behind.items():
            if head == holder:
                stuck(other, pa, call, how)
        for other in sorted(out):
            lines.append(out[other])
            if other in behind and other not in passed:
                walk(other, passed | {other})

    walk(cpu, {cpu})
    return tuple(lines)


def _failure(failure: CpuFailure, machine: Machine, dead: set[int], stuck: tuple[str, ...] = (),
             roles: Mapping[int, str] | None = None) -> Finding:
    """A CPU process that died, or (``result-lost``) exited normally with its result lost on
    the way or unreadable here: the watchdog's report of it (``dead``: every CPU whose process
    died, said so in the snapshot lines; ``roles``: population.roles, which its identity names).
    Either way what the CPU did is unknown, so a run with no other finding must not pass."""
    snaps = snapshots(machine, dead=dead)
    held = ", ".join(f"{pa:#x}" for pa in failure.held_locks) or "none"
    rule = "result-lost" if failure.result_lost else "cpu-died"
    snap = snaps[failure.cpu] if failure.cpu < len(snaps) else None
    # Its identity (Finding.identity): how it failed, in which call holding which kinds of lock,
    # and the frame an exception came from; without it a shrinking took any dead CPU for it.
    where = raised_in(failure.traceback)
    identity = (f"{failure_kind(failure.how)} in {call_identity(snap, roles) if snap else 'an unknown call'}"
                + (f" at {where}" if where else ""))
    return Finding("watchdog", rule, f"CPU {failure.cpu} {failure.how}; locks it still held: {held}",
                   failure.cpu, snap.call if snap else "", "",
                   stuck + tuple(s.describe() for s in snaps) + tuple(failure.traceback.rstrip().splitlines()[-6:]),
                   identity=identity)
