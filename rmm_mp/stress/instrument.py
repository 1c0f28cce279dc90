"""Start-up instrumentation of one CPU process: the stress tool's hooks, swapped in, never tested
for on the paths of an ordinary run.

``install`` replaces, in this process only:
  - GranuleTable.lock / find_lock / lock_known: tell the Probe the class the lock is taken as
    (stress.classes) and, in deterministic mode, make a schedule point before the acquire;
    GranuleTable.unlock: a point after the release;
  - GranuleTable._lock_contended: in deterministic mode the CPU blocks (stress.sched) instead
    of spinning; free-running, the spin publishes the lock it waits for and its spin count for
    the watchdog and leaves the call (StressAbort) when the run is aborted (also with the
    watchdog off: a holder whose process died would otherwise hold it until the grace time).
    Both count the contended acquisition in the table's LockStats as the plain path does
    (free-running with its wait; deterministic without: a schedule's wait takes no real time),
    so that the report can say how much contention the run made;
  - the CPU's EL3 entry (Cpu._enter): el3.monitor's publishing entry (the call and its
    arguments in the shared area), with points at RMI entry and exit in deterministic mode;
  - hw.points.hook: publishes the realm call (RSI) and makes the point;
  - deterministic mode: points at atomic and lock-free accesses (refcount_add, racy_state, the
    RD's lock-free state and REC count) and at RTT entry reads and writes (s2tt.read, write).
Bugs (stress.bugs) and the ownership checker (stress.ownership) patch through the same Probe,
so ``Probe.restore`` undoes everything.

This module owns the wiring. It must not decide what is a finding.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from rmm_mp.hw import points
from rmm_mp.hw.cpuarea import OFF_IN_RSI, OFF_RSI_CALL, OFF_WAIT_SPINS, OFF_WAITING_FOR
from rmm_mp.hw.granule import (
    NO_SUB, OTHER_CLASS, SPIN_TRIES, GranuleTable, backoff,
)
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.realm_desc import Rd
from rmm_mp.stress import classes
from rmm_mp.rmm.dispatch import COMMANDS
from rmm_mp.stress.findings import Finding, call_text, fid_name
from rmm_mp.stress.probe import Probe, StressAbort
from rmm_mp.stress.shared import END_ABORT, StressSegment
from rmm_mp.stress.watchdog import call_on, kind_of, named_on

if TYPE_CHECKING:
    from rmm_mp.machine import Cpu
    from rmm_mp.stress.sched import Scheduler

_ABORT_CHECK = 63


def install(cpu: "Cpu", seg: StressSegment | None = None, watchdog: bool = False) -> Probe:
    """A Probe for ``cpu`` observing every table of this process, with the lock class hints and
    published calls; given the free-running run's ``seg``, the contended path publishes its wait
    and obeys an abort; with ``watchdog``, calls that return holding a lock are reported, and so
    is a CPU waiting for a lock it holds."""
    probe = Probe(cpu)
    cpu.granules.observer = probe
    # The host's NS copies lock with the process's host-owner table: observe it too.
    cpu.machine._host_ns.table.observer = probe
    _lock_hints(probe)
    enter = cpu.monitor.smc_from_ns_published
    probe.patch(cpu, "_enter", _leak_checked_enter(probe, enter) if watchdog else enter)
    probe.patch(points, "hook", _publishing_hook(probe))
    if seg is not None:
        # Whatever the checkers: a CPU spinning on a lock whose holder's process died must leave
        # when the run is aborted, or it spins on until the grace time kills it, and is reported
        # as a CPU of its own that "did not stop", not as one stuck behind the dead holder.
        _watched_spin(probe, seg, watchdog)
    return probe


def uninstall(probe: Probe) -> None:
    probe.restore()
    probe.cpu.granules.observer = None
    probe.cpu.machine._host_ns.table.observer = None


def _lock_hints(probe: Probe) -> None:
    lock, find_lock, lock_known = GranuleTable.lock, GranuleTable.find_lock, GranuleTable.lock_known

    def hinted_lock(self: GranuleTable, idx: int, cls: int = OTHER_CLASS) -> None:
        probe.next_cls, probe.next_sub = (classes.NS_COPY if cls == OTHER_CLASS else classes.of(cls)), NO_SUB
        lock(self, idx, cls)

    def hinted_find_lock(self: GranuleTable, addr: int, expected_state: int) -> Any:
        probe.next_cls, probe.next_sub = classes.of(expected_state), NO_SUB
        return find_lock(self, addr, expected_state)

    def hinted_lock_known(self: GranuleTable, idx: int, state: int, sub: int = NO_SUB) -> Any:
        probe.next_cls, probe.next_sub = classes.of(state, sub), sub
        return lock_known(self, idx, state, sub)

    probe.patch(GranuleTable, "lock", hinted_lock)
    probe.patch(GranuleTable, "find_lock", hinted_find_lock)
    probe.patch(GranuleTable, "lock_known", hinted_lock_known)


def _publishing_hook(probe: Probe) -> Any:
    view, base = probe.cpu.area.view, probe.cpu.area.base

    def hook(kind: int, arg: int) -> None:
        if kind == points.RSI_ENTRY:
            view.store_u64(base + OFF_RSI_CALL, arg & 0xFFFF_FFFF_FFFF_FFFF)
            view.store_u32(base + OFF_IN_RSI, 1)
        elif kind == points.RSI_EXIT:
            view.store_u32(base + OFF_IN_RSI, 0)
        sched = probe.sched
        if sched is not None and probe.checking:
            sched.point(kind, arg)
    return hook


def _watched_spin(probe: Probe, seg: StressSegment, watchdog: bool) -> None:
    """Free-running: the contended path publishes what it waits for and obeys an abort; a lock
    the CPU holds itself is the watchdog's finding, without it the RMM crash the plain path
    raises. A lock its host's NS copy holds itself is the finding whatever the checkers: the
    plain path's RmmInternalError is raised in the host's code there, outside the RMM, which
    does not die of it, so it was no crash finding either (the run ended "aborted" with no
    finding at all)."""
    view, base = probe.cpu.area.view, probe.cpu.area.base
    plain = GranuleTable._lock_contended

    def contended(self: GranuleTable, idx: int, cls: int = OTHER_CLASS) -> None:
        offset, cas, owner = idx << 3, self._cas, self.owner
        start = time.perf_counter_ns()
        view.store_u32(base + OFF_WAITING_FOR, idx + 1)
        tries = 0
        try:
            while True:
                holder = cas(offset, 0, owner)
                if holder == 0:
                    break
                if holder == owner:
                    if not watchdog and self is probe.cpu.granules:
                        plain(self, idx, cls)   # raises its recursive-lock RmmInternalError
                    _self_deadlock(probe, self, idx)
                tries += 1
                if tries & _ABORT_CHECK == 0:
                    view.store_u64(base + OFF_WAIT_SPINS, tries)
                    if seg.end == END_ABORT:
                        raise StressAbort(f"the run was aborted while CPU {probe.cpu_id} waited for granule {idx}",
                                          self.base + (idx << 12), holder, probe.current_call())
                if tries > SPIN_TRIES:
                    backoff(tries)
        finally:
            view.store_u32(base + OFF_WAITING_FOR, 0)
            view.store_u64(base + OFF_WAIT_SPINS, 0)
        waited = time.perf_counter_ns() - start
        self.stats.count_contended(idx, cls, waited)
        if self.observer is not None:
            self.observer.acquired(self, idx, waited)

    probe.patch(GranuleTable, "_lock_contended", contended)


def _self_deadlock(probe: Probe, table: GranuleTable, idx: int) -> None:
    """This CPU waits for a lock it holds itself: on hardware it spins for ever. Report it as
    the watchdog would (naming the holder) and leave the call."""
    pa = table.base + (idx << 12)
    # By table too: the host's NS-copy table and the CPU's own index the same granules, and an
    # entry of the other table (one whose lock word was overwritten under it) named the wrong class.
    held = next((h for h in probe.held if h.idx == idx and h.owner == table.owner), None)
    lock = held.describe() if held is not None else f"{pa:#x}"
    # Its identity (Finding.identity): the call, and the class and realm of the lock, shaped as
    # the watchdog's (wait_identity), which names the granule's state where this names the lock's
    # class (RTT[L2], NS_COPY); with none every such finding was one problem to shrinking.
    kind = classes.name(held.cls) if held is not None else "a granule"
    # The Probe does not know which call took the lock: a handler taking one granule twice
    # waits here as well as one whose earlier call leaked it (with the watchdog on, that call's
    # return was reported already). This used to blame an earlier call alone.
    if table is not probe.cpu.granules:
        whose, how = "its host process holds", "which its host process holds"
    else:
        whose = "it holds itself"
        how = "which it holds itself: taken again in this call, or leaked by an earlier one"
    probe.finding("watchdog", "leaked-lock", f"CPU {probe.cpu_id} waits for {lock}, {how}",
                  identity=f"{call_on(probe.current_call(), probe.roles)} waits for "
                           f"{kind_of(kind, pa, probe.roles)}, which {whose}")
    if probe.sched is not None:
        probe.sched.abort_all()
    raise StressAbort(f"CPU {probe.cpu_id} waits for a lock it holds")


def _leak_checked_enter(probe: Probe, enter: Any) -> Any:
    """The CPU's entry, reporting a call that returns still holding a granule lock."""
    def enter_checked(fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Any:
        result = enter(fid, x1, x2, x3, x4, x5, x6)
        if probe.held and probe.checking:
            held = ", ".join(h.describe() for h in probe.held)
            cmd = COMMANDS.get(fid & 0xFFFF_FFFF)
            # Its identity (Finding.identity): the leaking call, here known for sure, and the
            # classes of the locks it left held, without addresses or CPU; with the realm of the
            # population (probe.roles) its first argument and each lock is of, as the watchdog's.
            kinds = ", ".join(sorted({kind_of(classes.name(h.cls), h.addr, probe.roles) for h in probe.held}))
            probe.findings.add(Finding(
                "watchdog", "leaked-lock", f"{call_text(fid, (x1, x2, x3, x4, x5, x6), cmd.inputs if cmd else None)} "
                f"returned holding {held}: held by CPU {probe.cpu_id}, which is not in a call any more",
                probe.cpu_id, call_text(fid, (x1, x2, x3, x4, x5, x6), cmd.inputs if cmd else None), "", (),
                probe.sched.step if probe.sched is not None else None,
                identity=f"{named_on(fid_name(fid), x1, probe.roles)} returned holding {kinds}"))
            if probe.on_finding is not None:
                probe.on_finding()
        return result
    return enter_checked


# -- deterministic mode ------------------------------------------------------------------------------

def install_scheduler(probe: Probe, sched: "Scheduler") -> None:
    """Schedule points everywhere this process can reach (see the module docstring)."""
    probe.sched = sched
    cpu = probe.cpu

    def point(kind: int, arg: int) -> None:
        if probe.checking:
            sched.point(kind, arg)

    _point_locks(probe, sched, point)
    _point_atomics(probe, point)
    enter = cpu._enter

    def scheduled_enter(fid: int, x1: int, x2: int, x3: int, x4: int, x5: int, x6: int) -> Any:
        point(points.RMI_ENTRY, fid)
        result = enter(fid, x1, x2, x3, x4, x5, x6)
        point(points.RMI_EXIT, fid)
        return result

    probe.patch(cpu, "_enter", scheduled_enter)


def _point_locks(probe: Probe, sched: "Scheduler", point: Any) -> None:
    lock, find_lock, lock_known, unlock = (GranuleTable.lock, GranuleTable.find_lock, GranuleTable.lock_known,
                                           GranuleTable.unlock)

    def p_lock(self: GranuleTable, idx: int, cls: int = OTHER_CLASS) -> None:
        point(points.LOCK, self.base + (idx << 12))
        lock(self, idx, cls)

    def p_find_lock(self: GranuleTable, addr: int, expected_state: int) -> Any:
        if self.find(addr) >= 0:
            point(points.LOCK, addr)
        return find_lock(self, addr, expected_state)

    def p_lock_known(self: GranuleTable, idx: int, state: int, sub: int = NO_SUB) -> Any:
        point(points.LOCK, self.base + (idx << 12))
        return lock_known(self, idx, state, sub)

    def p_unlock(self: GranuleTable, idx: int) -> None:
        unlock(self, idx)
        point(points.UNLOCK, self.base + (idx << 12))

    def blocking(self: GranuleTable, idx: int, cls: int = OTHER_CLASS) -> None:
        offset, owner = idx << 3, self.owner
        while True:
            holder = self._cas(offset, 0, owner)
            if holder == 0:
                break
            if holder == owner:
                _self_deadlock(probe, self, idx)
            sched.block(idx, self.base + (idx << 12))
        self.stats.count_contended(idx, cls, 0)
        if self.observer is not None:
            self.observer.acquired(self, idx, 0)

    probe.patch(GranuleTable, "lock", p_lock)
    probe.patch(GranuleTable, "find_lock", p_find_lock)
    probe.patch(GranuleTable, "lock_known", p_lock_known)
    probe.patch(GranuleTable, "unlock", p_unlock)
    probe.patch(GranuleTable, "_lock_contended", blocking)


def _point_atomics(probe: Probe, point: Any) -> None:
    refcount_add, racy_state = GranuleTable.refcount_add, GranuleTable.racy_state
    state, refcount, word = GranuleTable.state, GranuleTable.refcount, GranuleTable.word
    read, write = s2tt.read, s2tt.write
    # Read on the class, a property is the property object (mypy types it as the getter).
    rd_state, rd_count = cast(property, Rd.state).fget, cast(property, Rd.rec_count).fget
    assert rd_state is not None and rd_count is not None

    def p_refcount_add(self: GranuleTable, idx: int, delta: int) -> int:
        point(points.ATOMIC, self.base + (idx << 12))
        return refcount_add(self, idx, delta)

    def p_racy_state(self: GranuleTable, idx: int) -> int:
        point(points.ATOMIC, self.base + (idx << 12))
        return racy_state(self, idx)

    def p_state(self: GranuleTable, idx: int) -> int:
        point(points.ATOMIC, self.base + (idx << 12))
        return state(self, idx)

    def p_refcount(self: GranuleTable, idx: int) -> int:
        point(points.ATOMIC, self.base + (idx << 12))
        return refcount(self, idx)

    def p_word(self: GranuleTable, idx: int) -> int:
        point(points.ATOMIC, self.base + (idx << 12))
        return word(self, idx)

    def p_read(memory: Any, table_idx: int, index: int) -> int:
        point(points.RTT_READ, memory.base + (table_idx << 12) + (index << 3))
        return read(memory, table_idx, index)

    def p_write(memory: Any, table_idx: int, index: int, desc: int) -> None:
        point(points.RTT_WRITE, memory.base + (table_idx << 12) + (index << 3))
        write(memory, table_idx, index, desc)

    def p_rd_state(self: Rd) -> int:
        point(points.ATOMIC, self.memory.base + self.offset)
        return rd_state(self)

    def p_rd_count(self: Rd) -> int:
        point(points.ATOMIC, self.memory.base + self.offset)
        return rd_count(self)

    probe.patch(GranuleTable, "refcount_add", p_refcount_add)
    probe.patch(GranuleTable, "racy_state", p_racy_state)
    probe.patch(GranuleTable, "state", p_state)
    probe.patch(GranuleTable, "refcount", p_refcount)
    probe.patch(GranuleTable, "word", p_word)
    probe.patch(s2tt, "read", p_read)
    probe.patch(s2tt, "write", p_write)
    probe.patch(Rd, "state", property(p_rd_state))
    probe.patch(Rd, "rec_count", property(p_rd_count))
