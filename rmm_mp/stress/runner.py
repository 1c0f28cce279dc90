"""``rmm_mp.stress.run``: one stress run, from an empty machine to a StressReport.

The parent builds the machine and the population (stress.population), creates the stress
segment, starts one CPU process per CPU (rmm_mp.runtime.run_cpus with stress.worker's target)
and, while they run, supervises them every tick: in deterministic mode it hands out the first
turn once every CPU is ready and watches that the running CPU keeps reaching schedule points
(a CPU-time bound); free-running, it runs the watchdog (stress.watchdog) and, every
``quiescent_every`` seconds, parks all CPUs between operations to check the invariants. At the
end it merges the CPUs' lock-order edges and looks for cycles, checks the invariants of the
quiescent machine, and returns the report with the schedule a replay needs (that end and the
report's assembly are stress.ending's).

Children get PYTHONHASHSEED=0, so nothing in them depends on a random hash seed.

This module owns the run's sequence. It must not hold checker logic.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import psutil

from rmm_mp.check import invariants
from rmm_mp.hw import process
from rmm_mp.hw.platform import load as load_platform
from rmm_mp.hw.quiesce import Participant, Pause
from rmm_mp.machine import Machine
from rmm_mp.cpu_outcome import RunResult
from rmm_mp.runtime import STARTUP_S, oversubscription, run_cpus
from rmm_mp.stress import ending
from rmm_mp.stress.config import StressConfig
from rmm_mp.stress.findings import AT_QUIESCENT, Finding, invariant_finding
from rmm_mp.stress.ops import WORKLOADS
from rmm_mp.stress.population import Population, build, guest_names, roles
from rmm_mp.stress.report import StressReport
from rmm_mp.stress.sched import SchedPlan, pick, splitmix64
from rmm_mp.stress.shared import (
    ABSENT, DONE, END_ABORT, END_DRAIN, END_RUNNING, MODE_DETERMINISTIC, MODE_FREE, NO_FIRST_TURN, STRATEGIES,
    StressSegment,
)
from rmm_mp.stress.watchdog import Watchdog, call_identity, snapshots
from rmm_mp.stress.worker import CpuPlan, stress_cpu
from rmm_mp.interrupts import Interrupts
from rmm_mp.printable import shown_line

HANG_CPU_S = 20.0
"""A deterministic run whose running CPU uses this much CPU time without a schedule point hangs."""

STOPPED_START_S = 10.0
"""Deterministic: how long a CPU process may be seen stopped (SIGSTOP) while the CPUs register
for their turns, or while it has the turn, before the run is ended as one that cannot go on. It
waited for its --seconds limit instead, 600 s by default: a stopped CPU uses no CPU time, so the
hang check (HANG_CPU_S) never fires. Not scaled by the oversubscription: a stopped process is not
a slow one. Seen at every look (each half second) in the time, so a Ctrl-Z that stops the whole
process group, the parent too, is not taken for it. A process stopped by a debugger (traced,
state "t") is not counted: its user is looking at it."""


def run(config: StressConfig, on_tick: Callable[[float, StressSegment], None] | None = None,
        sigterm_stops: bool = False, on_machine: Callable[[Machine], None] | None = None) -> StressReport:
    """Run ``config`` and return its report (see the module docstring); with ``sigterm_stops``
    SIGTERM is taken as Ctrl-C is, from the population's build to the end of the report: it
    stops the CPUs (run_cpus), or ends the build or the work after the run (rmm_mp.interrupts),
    and the report is still made, marked interrupted.
    ``on_machine`` is called with the new machine before anything is built on it."""
    plat = load_platform(config.platform)
    if config.cpus > plat.cpus:
        plat = dataclasses.replace(plat, cpus=config.cpus)
    with Machine.create(plat, cpus=config.cpus, time_slice=config.time_slice) as machine:
        if on_machine is not None:
            on_machine(machine)
        # Ctrl-C (and SIGTERM with sigterm_stops) while the population is built, or after the
        # CPUs have stopped, still gives a report, marked interrupted (rmm_mp.interrupts).
        with Interrupts(sigterm_stops) as stop:
            def populate() -> object:
                # A participant with one point, before the build: a pause (`rmm-mp check`) asked
                # for now parks it there, one asked for later waits until the build is done.
                with Participant(machine.control) as part:
                    part.point()
                    names = guest_names(config.cpus, tuple(WORKLOADS[config.workload]), config.population)
                    return build(machine, guests=names if config.guests else False)
            built, population = stop.step(populate)
            if not built:
                machine.close()     # under the guard, as below
                return StressReport(config, (), "interrupted", 0.0, {}, interrupted=True, interrupted_by=stop.by,
                                    not_done=(f"the CPUs were not started: interrupted ({stop.by}) while the "
                                              "population was built",))
            det = config.deterministic
            strategy = "replay" if config.schedule == "replay" else config.schedule
            seed_state = splitmix64(config.seed * 0x9E37_79B9 + 1)[1]
            seg = StressSegment.create(machine.name, config.cpus, MODE_DETERMINISTIC if det else MODE_FREE,
                                       STRATEGIES.index(strategy) if det else 0, config.steps, seed_state)
            try:
                report = _supervised(machine, seg, config, population, on_tick, sigterm_stops, stop)
            finally:
                seg.close()
            # Closed while the guard still holds: a signal as the segments go is only noted
            # (below), where after the guard it raised out of here (Ctrl-C) or killed the
            # process (SIGTERM) and the report was lost.
            machine.close()
        # The run's end and its interruption agree whenever the signal came: one noted after
        # ending.report computed the end (with the invariants checker off no step follows to take it)
        # makes a run that ended on its budget or time "interrupted" too. Checked once the
        # block is left, when no later signal can reach ``stop``.
        return report.marked_interrupted(by=stop.by) if report.interrupted or stop.by else report


def _sched_plan(config: StressConfig, seg: StressSegment) -> SchedPlan | None:
    if not config.deterministic:
        return None
    strategy = "replay" if config.schedule == "replay" else config.schedule
    priorities: tuple[int, ...] = ()
    changes: tuple[int, ...] = ()
    if strategy == "pct":
        state = config.seed ^ 0x5C5C_5C5C
        order = list(range(config.cpus))
        for i in range(len(order) - 1, 0, -1):
            state, out = splitmix64(state)
            j = out % (i + 1)
            order[i], order[j] = order[j], order[i]
        priorities = tuple(config.pct_depth + order.index(c) for c in range(config.cpus))
        points: set[int] = set()
        while len(points) < config.pct_depth - 1:
            state, out = splitmix64(state)
            points.add(1 + out % max(1, config.steps))
        changes = tuple(sorted(points))
        for cpu, p in enumerate(priorities):
            seg.set_priority(cpu, p)
    every = int(config.quiescent_every) if config.on("invariants") else 0
    seg.set_quiesce_at(every)
    return SchedPlan(strategy, config.steps, priorities, changes, config.switches, config.log_points, every)


@contextmanager
def _hash_seed() -> Iterator[None]:
    previous = os.environ.get("PYTHONHASHSEED")
    os.environ["PYTHONHASHSEED"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["PYTHONHASHSEED"]
        else:
            os.environ["PYTHONHASHSEED"] = previous


def _supervised(machine: Machine, seg: StressSegment, config: StressConfig, population: object,
                on_tick: Callable[[float, StressSegment], None] | None, sigterm_stops: bool,
                stop: Interrupts) -> StressReport:
    plan = _sched_plan(config, seg)
    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in range(config.cpus)] if plan is not None else []
    # The one place the roles are worked out: the CPUs' findings and the supervisor's name them.
    realm_roles = roles(population) if isinstance(population, Population) else {}
    cpu_plan = CpuPlan(config, population, plan, tuple(r for r, _ in pipes),  # type: ignore[arg-type]
                       tuple(w for _, w in pipes), realm_roles)
    start = time.monotonic()
    sup = _Supervisor(machine, seg, config, plan, tuple(w for _, w in pipes), on_tick, origin=start,
                      roles=realm_roles)

    started = False

    def cpus() -> RunResult:
        nonlocal started
        started = True
        with _hash_seed():
            # A free-running run's --seconds count from when every CPU is ready (the supervisor
            # stops it); run_cpus's limit is then only a backstop for a start-up that hangs.
            limit = (config.seconds if plan is not None
                     else config.seconds + START_ALLOWANCE_S * oversubscription(config.cpus))
            done = run_cpus(machine, stress_cpu, args=(cpu_plan,), on_tick=sup.tick, tick_s=0.05,
                            timeout_s=limit,
                            grace_s=(FREE_GRACE_S if plan is None else DETERMINISTIC_GRACE_S)
                            * oversubscription(config.cpus),
                            sigterm_stops=sigterm_stops, on_end=stop.run_over)
        stop.passing = False    # from here on a signal is the work after the run's
        return done
    try:
        ran, result = stop.passthrough(cpus)
    finally:
        for r, w in pipes:
            r.close()
            w.close()
    if not started:     # a signal noted after the build, before the CPUs' run: as one during it
        return StressReport(config, (), "interrupted", time.monotonic() - start, {}, interrupted=True,
                            interrupted_by=stop.by,
                            not_done=(f"the CPUs were not started: interrupted ({stop.by}) after the population "
                                      "was built",))
    not_done: list[str] = []
    if not ran:
        # The signal escaped run_cpus, which killed and reaped the CPU processes it had started:
        # it came as run_cpus began, before it blocks Ctrl-C and SIGTERM to start the processes
        # (starting the resource tracker, pickling the CPUs' plan). (Until 2026-11 a second one
        # while it handled the first escaped too; now noted and taken: interrupt_hold.) Noted
        # as a signal after the run, it skipped the final
        # invariant check ("invariants not checked at the end: interrupted"), and the report
        # said the CPUs' results were not received, of CPUs that never ran. When no CPU got
        # past its set-up (each sets READY before its first call, in both modes), none made a
        # call: the machine is as the population left it, and the signal is the run's, as one
        # that run_cpus takes while the CPUs start up, which leaves the check in place.
        by = stop.by
        result = RunResult({}, (), True, time.monotonic() - start, f"interrupted ({by})", interrupted_by=by)
        begun = [cpu for cpu in range(config.cpus) if seg.status(cpu) != ABSENT]
        if begun:
            not_done.append(f"the CPUs' results not received: interrupted ({by}) after CPU {begun[0]} had begun "
                            "its operations")
        else:
            stop.by = ""
            not_done.append(f"the CPUs' run not begun: interrupted ({by}) as their processes were being started, "
                            "before any of them was ready, so none made a call")
        # What run_cpus noted on the interrupt: an error it replaced, its clean-up's errors.
        not_done.extend(shown_line(note) for note in stop.notes)
    report = ending.report(machine, seg, config, result, sup, time.monotonic() - start, stop, not_done)
    # A CPU whose machine handle failed to close after it sent its result (cpu_exit.close_machine):
    # the report says so, as `rmm-mp run`'s does; it was on the CPU's stderr only.
    return dataclasses.replace(report, cpu_warnings=dict(result.warnings)) if result.warnings else report


FREE_GRACE_S = 5.0
"""How long the CPUs of a free-running run get to stop once asked (its time is up, Ctrl-C) before
run_cpus kills them, times runtime.oversubscription (simulated CPUs per host core, 1 to 6: an
operation takes that much longer on an oversubscribed host, and a CPU killed in one is a
cpu-died finding)."""
DETERMINISTIC_GRACE_S = 2.0
"""The same for a deterministic run (one CPU runs at a time, so one step is all they finish),
scaled the same way: the CPUs still starting up when the run is stopped (Ctrl-C or SIGTERM in
the first seconds, or another CPU's death aborting it) stop only once they are up, and they all
start at once, sharing the host's cores (16 CPUs on 2 cores took 5 s to start on a loaded host:
a Ctrl-C 1 s in had every one of them killed after 2 s, each a "not done" line, and the final
invariant check skipped)."""

PAUSE_WAIT_S = 2.0
"""Free-running: how long a quiescent check waits for every CPU to park between operations,
times runtime.oversubscription (1 to 6), since each has its operation under way to finish and
they share the host's cores: 64 CPUs on a loaded 2-core host took 0.5 to 2.2 s to park, and
a flat 2 s gave up one check in ten. A Ctrl-C during the wait is taken at once (it raises in
the supervisor's tick), so the longer wait does not hold up a stop."""

START_ALLOWANCE_S = STARTUP_S
"""Free-running: how long the CPU processes may take to get ready before run_cpus's own limit
(``seconds`` + this, times runtime.oversubscription, 1 to 6) stops the run anyway: the
allowance `rmm-mp run`'s start barrier has (runtime.STARTUP_S, 60 s), scaled the same way.
Multiplied because the CPUs all start at once, sharing the host's cores: 64 CPUs on a loaded
2-core host took 50 s to get ready, against a flat 60 s, and a start-up cut off by the limit
has its CPUs killed after the grace time (cpu-died findings of a run that tested nothing). So
a CPU hung in its start-up is reported at the latest --seconds + 6 minutes + the grace time
(FREE_GRACE_S times the same factor, 30 s at most) after the CPUs were started."""


class _Supervisor:
    """The parent's tick: first turn, hang watch, watchdog, quiescent pauses."""

    def __init__(self, machine: Machine, seg: StressSegment, config: StressConfig, plan: SchedPlan | None,
                 wakes: tuple[object, ...], on_tick: Callable[[float, StressSegment], None] | None,
                 origin: float | None = None, roles: dict[int, str] | None = None) -> None:
        self.machine, self.seg, self.config, self.plan, self.wakes = machine, seg, config, plan, wakes
        self.roles = roles or {}
        """The population's roles (population.roles), which the identities of its watchdog's
        findings, a stuck call's and a dead CPU's (stress.ending) name realms by."""
        self.origin = time.monotonic() if origin is None else origin
        """When the run began (time.monotonic), as the report's elapsed time counts it: before
        run_cpus spawned the CPU processes. The ticks' ``elapsed`` counts from after the
        spawning, which took 15 s of 64 CPUs' start-up on a loaded 2-core host."""
        self.on_tick = on_tick
        self.started = False
        self.first = -1
        self.findings: list[Finding] = []
        self.watchdog = Watchdog(machine, roles=self.roles) if plan is None and config.on("watchdog") else None
        self.quiescent_checks = 0
        self._next_look = 0.5
        # Pauses are for the invariants checker: without it (--checkers none, lockdep ...) the
        # CPUs run the operations alone, as the deterministic path does.
        self._next_pause = (config.quiescent_every or 0.0) if config.on("invariants") else 0.0
        self._hang: tuple[int, int, float] | None = None
        self._stopped: tuple[int, float, float] | None = None     # (CPU, first seen, last look)
        self._next_stop_look = 0.0
        self.stopped_cpu: int | None = None
        """The CPU a stopped-with-the-turn finding names: killed after the grace time, it is no
        cpu-died finding beside it (ending.report)."""
        self.timed_out = False
        self.stopping: str | None = None
        """Why this supervisor stopped the run itself (a finding's abort, a broken invariant's
        drain), for run_cpus: the stop flag alone, set behind its back, started no grace time,
        and a CPU that did not leave (stopped, or stuck in a call: a stuck-call finding) was
        waited for until the run's time was up, or run_cpus's limit."""
        self.ready_at: float | None = None
        """The tick time at which every CPU was first seen ready (free-running: READY or DONE;
        deterministic: registered, when the first CPU is given its turn)."""
        self.startup_s: float | None = None
        """The same moment in seconds from ``origin``: the report's start-up time, counted as its
        elapsed time is. Taken from the ticks' clock, it left out the CPU processes' spawning."""

    def tick(self, elapsed: float) -> str | None:
        """run_cpus's on_tick: why this supervisor stopped the run (``stopping``), or "time is
        up" once a free-running run's time is (run_cpus then gives the CPUs its grace time and
        kills one that does not stop); None otherwise."""
        seg = self.seg
        why = None
        if seg.end != END_ABORT and self._a_cpu_died():
            self._abort("a CPU process died")
        if self.plan is not None:
            self._deterministic(elapsed)
        else:
            why = self._free_length(elapsed)
            if elapsed >= self._next_look:
                self._next_look = elapsed + 0.5
                self._look()
            # At every tick, not only at the watchdog's half-second look: an interval below
            # 0.5 s (--quiescent-every 0.1) would otherwise be stretched to 0.5 s.
            self._maybe_pause(elapsed)
        if elapsed >= self.config.seconds and self.plan is not None and seg.end != END_ABORT:
            self.timed_out = True
        if self.on_tick is not None:
            self.on_tick(elapsed, seg)
        return self.stopping or why

    def _a_cpu_died(self) -> bool:
        """Whether a CPU process that bound its CPU is gone (the runtime reports how) without
        having finished (DONE)."""
        for cpu in range(self.config.cpus):
            area = self.machine.cpu_area(cpu)
            try:
                pid = area.binding() & 0xFFFF_FFFF
            finally:
                area.release()
            # The process first, then the status: a CPU sets DONE before its process ends, so
            # one seen gone whose status is still not DONE died. The other order took a CPU
            # that set DONE and exited between the two reads (a normal end, the parent
            # descheduled on a loaded host) for dead, and aborted a run that had found nothing.
            if pid and not process.alive(pid) and self.seg.status(cpu) != DONE:
                return True
        return False

    def _abort(self, why: str) -> None:
        """End the run now: spinning CPUs leave their call, parked ones wake up and leave; the
        next tick tells run_cpus ``why``, whose grace time then bounds a CPU that does not."""
        self.stopping = self.stopping or f"aborted ({why})"
        self.seg.set_end(END_ABORT)
        self.machine.control.request_stop()
        for wake in self.wakes:
            try:
                os.write(wake.fileno(), b"\0")  # type: ignore[attr-defined]
            except OSError:
                pass

    def _deterministic(self, elapsed: float) -> None:
        seg, plan = self.seg, self.plan
        assert plan is not None
        if not self.started:
            if seg.turn == NO_FIRST_TURN:
                return
            if seg.end != END_ABORT and self.machine.control.stop_requested:
                # Stopped (Ctrl-C, SIGTERM, the time limit) before the first turn: none is given,
                # and every CPU leaves once registered (stress.sched's start), at once and all
                # together. Given the first turn once all had registered, the CPUs passed it at
                # random until each had seen the stop, racing the grace time that ran from the
                # stop: a Ctrl-C 1.3 s into a 16-CPU start-up of 11.9 s on a loaded host (12 s of
                # grace) had the CPU holding the turn killed, a cpu-died finding, the run
                # "aborted" and the final invariant check skipped. One byte to every CPU wakes
                # those parked; those still starting up see the word before they park.
                seg.set_turn(NO_FIRST_TURN)
                for wake in self.wakes:
                    os.write(wake.fileno(), b"\0")  # type: ignore[attr-defined]
                return
            if seg.registered < self.config.cpus:
                self._watch_stopped_start(elapsed)
                return
            first = pick(plan.strategy, 0, list(range(self.config.cpus)), -1, seg, dict(plan.switches))
            self.started = True
            self.first = first
            self.ready_at = elapsed
            self.startup_s = time.monotonic() - self.origin
            seg.set_turn(first)
            os.write(self.wakes[first].fileno(), b"\0")  # type: ignore[attr-defined]
            return
        self._watch_hang()
        self._watch_stopped_turn(elapsed)

    def _watch_stopped_start(self, elapsed: float) -> None:
        """Deterministic, before the first turn: end the run when a CPU process has been seen
        stopped (state T) at every look for STOPPED_START_S. The others wait at their first
        turn for it, and nothing ran out its CPU time, so the run waited for its --seconds
        limit (600 s by default) with nothing said; the stopped CPU's finding names it now."""
        if elapsed < self._next_stop_look or self.seg.end == END_ABORT:
            return
        self._next_stop_look = elapsed + 0.5
        stopped = None
        for proc in multiprocessing.active_children():
            if not proc.name.startswith("rmm-mp-cpu") or proc.pid is None:
                continue
            if _stopped(proc.pid):
                try:
                    stopped = int(proc.name.removeprefix("rmm-mp-cpu"))
                except ValueError:
                    continue
                break
        if self._stopped_long(stopped, elapsed):
            assert stopped is not None
            self.findings.append(Finding(
                "watchdog", "stopped-at-start-up",
                f"CPU {stopped}'s process was stopped (SIGSTOP) for {STOPPED_START_S:.0f} s "
                f"while the CPUs registered for their turns ({self.seg.registered} of {self.config.cpus} had), "
                "so the run could not begin; it was ended rather than left to its --seconds limit", stopped))
            self._abort("watchdog: stopped-at-start-up")

    def _watch_stopped_turn(self, elapsed: float) -> None:
        """Deterministic, once begun: end the run when the CPU with the turn has been seen
        stopped at every look for STOPPED_START_S. The others wait for their turns, and the
        hang check measures CPU time, which a stopped process does not use: a CPU stopped
        after it registered (before or after its first turn) held the run to its --seconds."""
        seg = self.seg
        if elapsed < self._next_stop_look or seg.end == END_ABORT:
            return
        self._next_stop_look = elapsed + 0.5
        turn, step = seg.turn, seg.step
        stopped = None
        if turn < self.config.cpus:
            area = self.machine.cpu_area(turn)
            try:
                pid = area.binding() & 0xFFFF_FFFF
            finally:
                area.release()
            if pid and _stopped(pid):
                stopped = turn
        if self._stopped_long(stopped, elapsed):
            self.findings.append(Finding(
                "watchdog", "stopped-with-the-turn",
                f"CPU {turn}'s process was stopped (SIGSTOP) for {STOPPED_START_S:.0f} s while it had the turn, "
                "so the others waited for it and the run could not go on; it was ended rather than left to its "
                "--seconds limit", turn, step=step))
            self.stopped_cpu = turn
            self._abort("watchdog: stopped-with-the-turn")

    def _stopped_long(self, stopped: int | None, elapsed: float) -> bool:
        """Note this look's stopped CPU (None: none); whether the same CPU has been seen stopped
        at every look for STOPPED_START_S."""
        seen = self._stopped
        # A look missed (this process stopped too: a Ctrl-Z of the whole group) starts over.
        if stopped is None or seen is None or seen[0] != stopped or elapsed - seen[2] > 2.0:
            self._stopped = None if stopped is None else (stopped, elapsed, elapsed)
            return False
        self._stopped = (stopped, seen[1], elapsed)
        return elapsed - seen[1] >= STOPPED_START_S

    def _watch_hang(self) -> None:
        """The running CPU must reach a schedule point within HANG_CPU_S of its own CPU time."""
        seg = self.seg
        turn, step = seg.turn, seg.step
        if turn >= self.config.cpus or seg.end == END_ABORT:
            return
        used = _cpu_time(self.machine, turn)
        if used is None:
            return
        if self._hang is None or self._hang[:2] != (turn, step):
            self._hang = (turn, step, used)
        elif used - self._hang[2] > HANG_CPU_S:
            snaps = snapshots(self.machine, seg)
            self.findings.append(Finding("watchdog", "stuck-call", f"CPU {turn} used {used - self._hang[2]:.0f} s "
                                         "of CPU time without reaching a schedule point", turn,
                                         snaps[turn].call, "", tuple(s.describe() for s in snaps), step,
                                         identity=call_identity(snaps[turn], self.roles)))
            self._abort("watchdog: stuck-call")

    def _free_length(self, elapsed: float) -> str | None:
        """End a free-running run ``seconds`` after every CPU is ready (READY or already DONE):
        counted from spawning, a run of a few seconds on a loaded host could be over before the
        last CPU process had imported rmm_mp, and complete no operation. The reason goes back
        to run_cpus, whose grace time then bounds a CPU that does not stop (one stopped with
        SIGSTOP held the run until run_cpus's own limit, START_ALLOWANCE_S or more later)."""
        if self.ready_at is None:
            if all(self.seg.status(cpu) != ABSENT for cpu in range(self.config.cpus)):
                self.ready_at = elapsed
                self.startup_s = time.monotonic() - self.origin
        elif elapsed - self.ready_at >= self.config.seconds:
            return "time is up"
        return None

    def _look(self) -> None:
        """The watchdog's look (every half second: its bounds count looks, see stress.watchdog)."""
        if self.watchdog is not None and self.seg.end != END_ABORT:
            finding = self.watchdog.tick()
            if finding is not None:
                self.findings.append(finding)
                self._abort(f"watchdog: {finding.rule}")

    def _maybe_pause(self, elapsed: float) -> None:
        """A quiescent invariant check when one is due (never after an abort or a finding)."""
        if self._next_pause and elapsed >= self._next_pause and self.seg.end == END_RUNNING:
            self._next_pause = elapsed + self.config.quiescent_every
            self._pause_and_check()

    def _pause_and_check(self) -> None:
        """Park every CPU between operations (hw.quiesce), check the invariants, let them go on.
        A pause whose CPUs are not all parked within PAUSE_WAIT_S (times the oversubscription)
        is given up: no check this time (the report counts the checks made)."""
        m = self.machine
        with Pause(m.control) as pause:
            if not pause.participants or not pause.wait(PAUSE_WAIT_S * oversubscription(self.config.cpus)):
                return
            report = invariants(m)
            if not pause.held() or not pause.quiescent():
                return      # the lease lapsed (this process starved past it): the CPUs went on
            self.quiescent_checks += 1
            for v in report.violations[:8]:
                self.findings.append(invariant_finding(v, AT_QUIESCENT))
            if report.violations:
                self.stopping = self.stopping or "stopped (invariants broken at a quiescent point)"
                self.seg.set_end(END_DRAIN)
                m.control.request_stop()


def _stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped by a signal (state T; not a debugger's "t")."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False


def _cpu_time(machine: Machine, cpu: int) -> float | None:
    area = machine.cpu_area(cpu)
    try:
        pid = area.binding() & 0xFFFF_FFFF
    finally:
        area.release()
    if not pid:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system
