"""Deterministic scheduling: CPU processes run one at a time, switching only at schedule points.

Every CPU process parks on its own pipe; the one whose turn it is runs until its next schedule
point (stress.instrument puts them at lock acquire and release, every spin iteration, atomic
and lock-free accesses to shared state, RMI entry and exit, RTT entry reads and writes, and
between workload operations; hw.points adds RSI entry and exit where its hook is wired). At a
point the running CPU counts a step and picks who runs next:

  random   uniformly among the runnable CPUs (a draw from the shared splitmix64 state);
  pct      PCT (Burckhardt et al., ASPLOS 2010): the runnable CPU of highest priority runs;
           initial priorities are a permutation drawn from the seed, and at d - 1 change
           points drawn from the seed the running CPU drops below every initial priority;
  replay   the recorded switches of a schedule file (stress.schedule); where a shrunk schedule
           asks for a CPU that cannot run, the first runnable CPU after this one.

A CPU that finds a lock held is blocked: it is runnable again only once the lock word reads
free, so it never spins under a deterministic schedule, and when no CPU is runnable while
some are blocked the run has deadlocked (or waits on a leaked lock): the deciding CPU reports
it and aborts every parked CPU. Only the running process touches the machine, so a run is a
function of the seed (or the schedule), the workload and the code: the same schedule gives
the same steps, the same findings and the same report.

This module owns the turn protocol and the choice. It must not know what a point is for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

from rmm_mp.hw import points
from rmm_mp.stress.probe import StressAbort
from rmm_mp.stress.watchdog import stuck_finding
from rmm_mp.stress.shared import (
    BLOCKED, DONE, END_ABORT, END_DRAIN, END_RUNNING, NO_FIRST_TURN, READY, RUNNING, StressSegment,
)

if TYPE_CHECKING:
    from rmm_mp.stress.probe import Probe

MASK64 = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    """(new state, output) of one splitmix64 step."""
    state = (state + 0x9E37_79B9_7F4A_7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK64
    return state, z ^ (z >> 31)


@dataclass(frozen=True)
class SchedPlan:
    """What every CPU process needs to make the same choices."""

    strategy: str
    budget: int
    priorities: tuple[int, ...] = ()
    change_points: tuple[int, ...] = ()
    switches: tuple[tuple[int, int], ...] = ()
    log_points: bool = False
    quiescent_every: int = 0


def pick(strategy: str, step: int, runnable: list[int], current: int, seg: StressSegment,
         switches: dict[int, int]) -> int:
    """The CPU to run after ``step`` among ``runnable`` (sorted, non-empty)."""
    if strategy == "random":
        if len(runnable) == 1:
            return runnable[0]
        state, out = splitmix64(seg.rng)
        seg.set_rng(state)
        return runnable[out % len(runnable)]
    if strategy == "pct":
        return max(runnable, key=lambda c: (seg.priority(c), -c))
    wanted = switches.get(step, current)
    if wanted in runnable:
        return wanted
    later = [c for c in runnable if c > current]
    return later[0] if later else runnable[0]


@dataclass
class Scheduler:
    """One CPU process's side of the protocol."""

    seg: StressSegment
    cpu: int
    plan: SchedPlan
    wake: tuple[int, ...]
    """Write end of every CPU's pipe (a byte wakes that CPU)."""
    park: int
    """Read end of this CPU's pipe."""
    lock_word: Callable[[int], int]
    probe: "Probe"
    on_quiescent: Callable[[], None] | None = None
    roles: Mapping[int, str] = field(default_factory=dict)
    """The population's roles (population.roles), which a stuck run's finding names."""
    log: list[tuple[int, int, int]] = field(default_factory=list)
    switch_log: list[tuple[int, int]] = field(default_factory=list)
    step: int = 0
    _switches: dict[int, int] = field(default_factory=dict)
    _changes: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._switches = dict(self.plan.switches)
        self._changes = {s: len(self.plan.change_points) - i for i, s in enumerate(self.plan.change_points)}

    # -- entering and leaving -------------------------------------------------------------

    def start(self) -> bool:
        """Register as ready and wait for the first turn (the parent hands it out). False when
        the run was stopped before the parent gave it (NO_FIRST_TURN): this CPU then leaves
        without a step, and ``finish`` takes none either."""
        self.seg.set_status(self.cpu, READY)
        self.seg.register()
        if not self._wait(first=True):
            return False
        self.seg.set_status(self.cpu, RUNNING)
        return True

    def finish(self) -> None:
        """This CPU has nothing more to do: hand the turn on for good."""
        seg = self.seg
        seg.set_status(self.cpu, DONE)
        if seg.end == END_ABORT or seg.turn == NO_FIRST_TURN:
            return
        # A step of its own, so that every decision has a distinct step (replay keys on it).
        step = self.step = seg.next_step()
        seg.set_point(self.cpu, points.DONE, 0)
        if self.plan.log_points:
            self.log.append((step, points.DONE, 0))
        nxt = self._choose(step)
        if nxt < 0:
            if any(seg.status(c) == BLOCKED for c in range(seg.cpus)):
                self._stuck()
            return
        self._hand_to(nxt, preemption=False)

    # -- points -----------------------------------------------------------------------------

    def point(self, kind: int, arg: int) -> None:
        """A schedule point: count a step, pick who runs next, switch if it is another CPU."""
        seg = self.seg
        step = self.step = seg.next_step()
        seg.set_point(self.cpu, kind, arg)
        if self.plan.log_points:
            self.log.append((step, kind, arg))
        if step >= self.plan.budget and seg.end == END_RUNNING:
            seg.set_end(END_DRAIN)
        change = self._changes.get(step)
        if change is not None:
            seg.set_priority(self.cpu, change)
        quiet = kind == points.OP and self.on_quiescent is not None
        if quiet:
            self._quiescence(step)
        nxt = self._choose(step)
        if nxt != self.cpu:
            self._hand_to(nxt, preemption=True)
            self._wait()
            seg.set_status(self.cpu, RUNNING)
            if quiet and seg.quiescing:
                self._quiescence(seg.step)

    def block(self, idx: int, addr: int) -> None:
        """The lock at granule ``idx`` is held: park until it is free and this CPU is chosen."""
        seg = self.seg
        seg.set_status(self.cpu, BLOCKED, idx)
        step = self.step = seg.next_step()
        seg.set_point(self.cpu, points.SPIN, addr)
        if self.plan.log_points:
            self.log.append((step, points.SPIN, addr))
        nxt = self._choose(step)
        if nxt < 0:
            self._stuck()
            raise AssertionError("unreachable: _stuck raises")
        if nxt != self.cpu:
            self._hand_to(nxt, preemption=False)
            try:
                self._wait()
            except StressAbort as exc:
                # Say what it waited for: the report names a CPU stuck behind a dead holder.
                raise StressAbort(str(exc), addr, self.lock_word(idx), self.probe.current_call()) from None
        seg.set_status(self.cpu, RUNNING)

    # -- the choice and the switch ------------------------------------------------------------

    def runnable(self) -> list[int]:
        """CPUs that can run; while a quiescent check is pending, those between operations wait
        for the others (unless every one is between operations)."""
        seg, out = self.seg, []
        for c in range(seg.cpus):
            status = seg.status(c)
            if status == READY or status == RUNNING:
                out.append(c)
            elif status == BLOCKED and self.lock_word(seg.blocked_on(c)) == 0:
                out.append(c)
        if seg.quiescing:
            busy = [c for c in out if seg.point(c)[0] != points.OP]
            if busy:
                return busy
        return out

    def _choose(self, step: int) -> int:
        runnable = self.runnable()
        if not runnable:
            return -1
        return pick(self.plan.strategy, step, runnable, self.cpu, self.seg, self._switches)

    def _hand_to(self, nxt: int, preemption: bool) -> None:
        seg = self.seg
        self.switch_log.append((self.step, nxt))
        seg.count_switch(preemption and seg.status(self.cpu) == RUNNING)
        if seg.status(self.cpu) == RUNNING:
            seg.set_status(self.cpu, READY)
        seg.set_turn(nxt)
        os.write(self.wake[nxt], b"\0")

    def _wait(self, first: bool = False) -> bool:
        """Park until this CPU has the turn (True), or the run is aborted (StressAbort). The
        wait for the first turn (``first``) also ends, False, when the parent gives none
        (NO_FIRST_TURN): looked at before each read, since a CPU that registers after the
        parent decided that has no byte coming to it."""
        while not (first and self.seg.turn == NO_FIRST_TURN):
            os.read(self.park, 1)
            if self.seg.turn == self.cpu or self.seg.end == END_ABORT:
                break
        else:
            return False
        if self.seg.end == END_ABORT:
            raise StressAbort("the run was aborted while this CPU was parked")
        return True

    def _stuck(self) -> None:
        """No CPU can run but some are blocked: report, abort everyone, raise here."""
        self.probe.findings.add(stuck_finding(self.probe.cpu.machine, self.seg, self.step, self.roles))
        self.abort_all()
        raise StressAbort("deadlock: no CPU can run")

    def abort_all(self) -> None:
        seg = self.seg
        seg.set_end(END_ABORT)
        for c in range(seg.cpus):
            if c != self.cpu and seg.status(c) != DONE:
                os.write(self.wake[c], b"\0")

    def _quiescence(self, step: int) -> None:
        """Between operations: a quiescent check falls due, and the last CPU to arrive between
        operations makes it (every other CPU is there too, or done)."""
        seg = self.seg
        if not seg.quiescing:
            if step < seg.quiesce_at:
                return
            seg.set_quiescing(True)
        for c in range(seg.cpus):
            if c != self.cpu and seg.status(c) != DONE and seg.point(c)[0] != points.OP:
                return
        assert self.on_quiescent is not None
        self.on_quiescent()
        seg.set_quiescing(False)
        seg.set_quiesce_at(step + self.plan.quiescent_every)
