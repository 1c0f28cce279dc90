"""hw.tlb's invalidating side: how it waits for a CPU that executes realm code; and what a CPU
keeps from one entry to the next (the executing side's sync points are tested through the guest,
tests/rmm/test_stage2.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from rmm_mp import Machine
from rmm_mp.hw import process
from rmm_mp.hw import tlb as tlb_module
from rmm_mp.hw.control import OFF_EXECUTING
from rmm_mp.hw.cpuarea import OFF_BIND, OFF_EXEC_RD, OFF_SEEN_TLB, binding_word
from rmm_mp.hw.faults import CpuBusyError
from rmm_mp.hw.granule import SPIN_TRIES, YIELD_TRIES
from rmm_mp.hw.tlb import Tlb
from children import finish, read_line, start_child, tell

RD_PA_OFFSET = 0x10_0000
"""An RD-like PA inside DRAM: the wait never reads the RD, only what the CPU publishes."""

LAG_S = 1.0
"""How long the executing CPU stays away from its next sync point (a descheduled or stopped
CPU process)."""


def test_waiting_for_a_slow_cpu_sleeps_rather_than_burning_a_core() -> None:
    """CPU 1 executes realm code and reaches its next sync point only LAG_S later (its process
    descheduled, or stopped with SIGSTOP): CPU 0's GPT invalidation (DELEGATE's) waits for it and
    returns only after the sync, but it sleeps while it waits. The wait only yielded: it burnt
    the whole LAG_S of CPU time on a host core (1.3 to 1.5 s per 1.5 s SIGSTOP); load on the
    host can only lower the figure, so the bound cannot fail through a slow machine."""
    with Machine.create("host", cpus=2) as m:
        waiter, slow = m.cpu(0).tlb, m.cpu(1).tlb
        base = m.platform.dram.base
        slow.enter(base + RD_PA_OFFSET, RD_PA_OFFSET)
        slow.sync()

        def sync_late() -> None:
            time.sleep(LAG_S)
            slow.sync()

        late = threading.Thread(target=sync_late)
        late.start()
        started, cpu_started = time.monotonic(), time.thread_time()
        waiter.invalidate_gpt()
        cpu_used, waited = time.thread_time() - cpu_started, time.monotonic() - started
        late.join()
        slow.leave()
    assert waited >= LAG_S * 0.9, f"the wait ended after {waited:.3f} s, before CPU 1's sync"
    assert cpu_used < LAG_S * 0.25, f"the waiter used {cpu_used:.3f} s of CPU in {waited:.3f} s of waiting"


def test_a_cpu_whose_pid_names_another_process_is_not_waited_for() -> None:
    """CPU 1 is counted in as executing realm code, but its binding names a process that has
    ended: its pid (here this test's own) now names a process started at another time. The
    invalidation goes on without it. The check looked at the pid alone, so such a CPU was waited
    for as long as the pid's new owner lived (for ever, in a long run)."""
    with Machine.create("host", cpus=2) as m:
        waiter, gone = m.cpu(0).tlb, m.cpu(1).tlb
        base = m.platform.dram.base
        gone.enter(base + RD_PA_OFFSET, RD_PA_OFFSET)
        gone.sync()
        bind = gone.cpu * gone.area_size + OFF_BIND
        real = gone.cpus.load_u64(bind)
        # A start time 10 s before this process's: the binding of an earlier process with our pid.
        gone.cpus.store_u64(bind, binding_word(os.getpid(), process.own_start_ms() - 10_000))
        try:
            done = threading.Event()
            worker = threading.Thread(target=lambda: (waiter.invalidate_gpt(), done.set()), daemon=True)
            worker.start()
            worker.join(timeout=30)
            assert done.is_set(), "the invalidation still waits for a CPU whose process has ended"
        finally:
            gone.cpus.store_u64(bind, real)
            gone.sync()    # let a wait that did not end (the old check) end, before the machine closes
            worker.join(timeout=30)
            gone.leave()


_COUNTED_IN = f"""
import os, sys
from rmm_mp import Machine
m = Machine.attach(sys.argv[1])
tlb = m.cpu(1).tlb
tlb.enter(m.platform.dram.base + {RD_PA_OFFSET:#x}, {RD_PA_OFFSET:#x})
tlb.sync()
print("counted in", flush=True)
sys.stdin.readline()
"""
"""A child's start: bound to CPU 1 of the machine named by its argument, counted in as executing
realm code, then waiting for a line."""

DIES_COUNTED_IN = _COUNTED_IN + "os._exit(0)\n"
"""A CPU process killed while it executes realm code: bound to CPU 1, counted in, never counted out."""


def _cpu_1s_holder_dies_counted_in(m: Machine) -> None:
    """A child process binds CPU 1 of ``m``, counts in as executing realm code and exits so."""
    child = start_child(DIES_COUNTED_IN, m.name)
    try:
        assert read_line(child) == "counted in"
        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait(30) == 0
    finally:
        finish(child)


STOPPED_COUNTED_IN = _COUNTED_IN + """\
tlb.sync()
print("synced", flush=True)
sys.stdin.readline()
tlb.leave()
m.close()
"""
"""A CPU process counted in that syncs once when told to, then leaves and ends."""


def test_a_stopped_cpu_process_is_waited_for_until_it_runs_and_syncs() -> None:
    """CPU 1's process executes realm code and is stopped (SIGSTOP) before its next sync point:
    CPU 0's GPT invalidation looks at CPU 1's binding (first after LOOK_AFTER_NS, then every
    LOOK_EVERY_NS) and finds its process alive, so it goes on waiting however long the stop lasts;
    it returns once the process runs again (SIGCONT) and syncs. Guards the looks by the clock: a
    stopped live process must never read as ended (it would finish an invalidation while CPU 1
    still holds translations cached before it). Test only: it passed before that change too."""
    with Machine.create("host", cpus=2) as m:
        child = start_child(STOPPED_COUNTED_IN, m.name)
        worker: threading.Thread | None = None
        try:
            assert read_line(child) == "counted in"
            os.kill(child.pid, signal.SIGSTOP)
            waiter = m.cpu(0).tlb
            done = threading.Event()
            worker = threading.Thread(target=lambda: (waiter.invalidate_gpt(), done.set()), daemon=True)
            worker.start()
            # Past the first look and several later ones.
            assert not done.wait(LAG_S * 0.3), "the invalidation went on while CPU 1's stopped process had not synced"
            os.kill(child.pid, signal.SIGCONT)
            assert not done.wait(0.1), "the invalidation went on when CPU 1's process resumed, before its sync"
            tell(child, "sync")
            assert read_line(child) == "synced"
            assert done.wait(30), "the invalidation still waits after CPU 1's sync"
            tell(child, "leave")
            assert child.wait(30) == 0
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGCONT)
            finish(child)
            if worker is not None:
                worker.join(timeout=30)


def test_a_cpu_rebound_after_its_holder_died_counted_in_is_not_waited_for() -> None:
    """CPU 1's process dies while counted in as executing realm code, and this process binds
    CPU 1 afresh without running any realm code on it: CPU 0's GPT invalidation returns. The
    dead holder's RD and generations stayed published, so once CPU 1 had a live owner again
    every invalidation waited for that owner to reach a sync point it never reaches."""
    with Machine.create("host", cpus=2) as m:
        _cpu_1s_holder_dies_counted_in(m)
        rebound = m.cpu(1)
        waiter = m.cpu(0).tlb
        done = threading.Event()
        worker = threading.Thread(target=lambda: (waiter.invalidate_gpt(), done.set()), daemon=True)
        try:
            worker.start()
            worker.join(timeout=30)
            assert done.is_set(), "the invalidation waits for CPU 1's new owner, which executes no realm code"
        finally:
            # Let a wait that did not end (the old code) end before the machine closes.
            rebound.tlb.cpus.store_u64(rebound.tlb.cpu * rebound.tlb.area_size + OFF_EXEC_RD, 0)
            worker.join(timeout=30)


def test_a_cpu_that_died_counted_in_is_waited_for_once_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1's process dies counted in as executing realm code and nothing binds CPU 1 again (a
    run whose CPU 1 was SIGKILLed): CPU 0's first invalidation backs off to its first look at
    CPU 1's binding and goes on; every later one, GPT or realm, goes on without backing off at all.
    Each used to back off to that look again (about 600 tries, 512 of them sched_yield): on a
    loaded 2-core host CPU 0's teardown of one realm took up to 48 s, and CPU 0, asked to stop
    after CPU 1's death, was terminated for not stopping within the run's 30 s of grace."""
    tries: list[int] = []
    monkeypatch.setattr(tlb_module, "backoff", tries.append)
    with Machine.create("host", cpus=2) as m:
        _cpu_1s_holder_dies_counted_in(m)
        waiter = m.cpu(0).tlb
        base = m.platform.dram.base
        waiter.invalidate_gpt()
        assert tries, "the first invalidation must wait for CPU 1 for the test to mean anything"
        tries.clear()
        for _ in range(3):
            waiter.invalidate_gpt()
            waiter.invalidate_realm(base + RD_PA_OFFSET, RD_PA_OFFSET)
        assert tries == [], f"the later invalidations backed off {len(tries)} times for a CPU known to be dead"


def test_a_cpu_rebound_after_a_wait_found_its_holder_dead_is_waited_for_again() -> None:
    """The other side of waiting once for a CPU that died counted in: CPU 0's first invalidation
    finds CPU 1's holder dead and remembers its binding; then a live process (this one) binds CPU 1
    afresh and executes realm code on it. CPU 0's next invalidation must wait for CPU 1's sync as
    for any live CPU: the remembered binding is no longer CPU 1's, and skipping it would let the
    invalidation complete while CPU 1 still used a translation cached before it."""
    with Machine.create("host", cpus=2) as m:
        _cpu_1s_holder_dies_counted_in(m)
        waiter = m.cpu(0).tlb
        waiter.invalidate_gpt()     # finds CPU 1's holder dead, and remembers it
        rebound = m.cpu(1).tlb
        base = m.platform.dram.base
        rebound.enter(base + RD_PA_OFFSET, RD_PA_OFFSET)
        rebound.sync()
        done = threading.Event()
        worker = threading.Thread(target=lambda: (waiter.invalidate_gpt(), done.set()), daemon=True)
        try:
            worker.start()
            assert not done.wait(LAG_S), "the invalidation went on while CPU 1's live owner had not synced"
            rebound.sync()
            worker.join(timeout=30)
            assert done.is_set(), "the invalidation still waits after CPU 1's sync"
        finally:
            rebound.sync()
            worker.join(timeout=30)
            rebound.leave()


def test_a_cpu_closed_counted_in_stays_bound_and_is_waited_for() -> None:
    """CPU 1's handle is closed while it is counted in (another thread closing it, or a SIGTERM
    handler's close_all, while realm code runs on it): the code may go on executing realm code
    with its cached translations, so close keeps the binding, which names this live process.
    CPU 0's invalidation waits for CPU 1's sync, and CPU 1 cannot be bound afresh meanwhile.
    Close released the binding: the invalidation read it as ended and went on while CPU 1 still
    held translations cached before it, and binding CPU 1 again counted the running code out
    (whose own leave then counted out the new holder)."""
    with Machine.create("host", cpus=2) as m:
        waiter, closed = m.cpu(0).tlb, m.cpu(1)
        running = closed.tlb
        running.enter(m.platform.dram.base + RD_PA_OFFSET, RD_PA_OFFSET)
        running.sync()
        closed.close()
        done = threading.Event()
        worker = threading.Thread(target=lambda: (waiter.invalidate_gpt(), done.set()), daemon=True)
        try:
            worker.start()
            assert not done.wait(LAG_S * 0.3), "the invalidation went on while CPU 1's running code had not synced"
            with pytest.raises(CpuBusyError, match=f"^CPU 1 is bound to live process {os.getpid()} .*a CPU handle "
                                                   "closed while realm code still ran on it, which keeps the CPU "
                                                   "until this process ends"):
                m.cpu(1)
            assert waiter.ctl.load_u64(OFF_EXECUTING) == 1
            running.sync()
            assert done.wait(30), "the invalidation still waits after CPU 1's sync"
        finally:
            running.sync()
            worker.join(timeout=30)
            running.leave()
        assert waiter.ctl.load_u64(OFF_EXECUTING) == 0


def test_a_cpu_closed_while_not_counted_in_is_free_again() -> None:
    """The ordinary close (no realm code running on the CPU, as after a leave) releases the
    binding at once: CPU 1 can be bound afresh."""
    with Machine.create("host", cpus=2) as m:
        cpu = m.cpu(1)
        cpu.tlb.enter(m.platform.dram.base + RD_PA_OFFSET, RD_PA_OFFSET)
        cpu.tlb.leave()
        cpu.close()
        assert m.cpu(1).area.binding() != 0


class _FakeClock:
    """hw.tlb's monotonic_ns, moved on STEP_NS a read: a wait's wall-clock schedule without sleeping."""

    STEP_NS = 1_000_000

    def __init__(self) -> None:
        self.now = 1
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        self.now += self.STEP_NS
        return self.now


def test_a_cpu_that_died_counted_in_is_found_dead_after_a_few_ms_not_after_the_yields(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1's process dies counted in; CPU 0's first invalidation looks at CPU 1's binding once
    it has waited LOOK_AFTER_NS by its clock (here a fake one, 1 ms a read, and a backoff that
    only counts), a few tries into the yields. It looked only when the backoff began to sleep,
    after all SPIN_TRIES + YIELD_TRIES (640 tries): each yield gives the core away, and on a
    loaded host the first invalidation after a CPU's SIGKILL took 3 to 5 s (at 6 busy
    processes on 2 cores), now 5 to 20 ms."""
    tries: list[int] = []
    clock = _FakeClock()
    monkeypatch.setattr(tlb_module, "backoff", tries.append)
    monkeypatch.setattr(tlb_module, "monotonic_ns", clock, raising=False)
    with Machine.create("host", cpus=2) as m:
        _cpu_1s_holder_dies_counted_in(m)
        m.cpu(0).tlb.invalidate_gpt()
    assert len(tries) < SPIN_TRIES + YIELD_TRIES, f"CPU 1 was found dead after all {len(tries)} tries of the backoff"
    assert len(tries) == SPIN_TRIES + tlb_module.LOOK_AFTER_NS // _FakeClock.STEP_NS + 1


def test_a_live_cpus_short_wait_reads_neither_clock_nor_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU 1 executes realm code and syncs while CPU 0 still spins (the common case, as in
    DELEGATE's GPT invalidation): the wait reads no clock and looks at no binding (a /proc read).
    Kept behind longer, it looks by the clock: first after LOOK_AFTER_NS, then every LOOK_EVERY_NS,
    not at every try."""
    looks: list[int] = []
    clock = _FakeClock()
    monkeypatch.setattr(tlb_module, "monotonic_ns", clock)
    monkeypatch.setattr(tlb_module, "binding_ended", lambda word: looks.append(word) or False)
    with Machine.create("host", cpus=2) as m:
        waiter, live = m.cpu(0).tlb, m.cpu(1).tlb
        live.enter(m.platform.dram.base + RD_PA_OFFSET, RD_PA_OFFSET)
        live.sync()
        step = _FakeClock.STEP_NS
        # 200 fake ms after the spins: the first look 3 ms after the first read, then every 30 ms.
        every_200 = 1 + (200 - (tlb_module.LOOK_AFTER_NS // step + 1)) // (tlb_module.LOOK_EVERY_NS // step)
        for sync_at, looked in ((SPIN_TRIES // 2, 0), (SPIN_TRIES + 200, every_200)):
            def backoff(tries: int, sync_at: int = sync_at) -> None:
                if tries == sync_at:
                    live.sync()
            monkeypatch.setattr(tlb_module, "backoff", backoff)
            looks.clear()
            clock.reads = 0
            waiter.invalidate_gpt()
            if not looked:
                assert (clock.reads, looks) == (0, []), "a wait that ended while spinning read the clock or /proc"
            else:
                assert len(looks) == looked == 7, f"{len(looks)} looks in 200 ms of waiting"
        live.leave()


# -- translations kept across entries ----------------------------------------------------------

RD2_PA_OFFSET = 0x20_0000
"""A second RD-like PA, of another realm."""


def _published_seen(tlb: Tlb) -> int:
    """The TLB generation CPU ``tlb.cpu`` has published as seen (what invalidators wait on)."""
    return tlb.cpus.load_u64(tlb.cpu * tlb.area_size + OFF_SEEN_TLB)


def test_a_cpu_keeps_its_translations_across_entries_while_nothing_moves() -> None:
    """CPU 0 enters a realm whose TLB generation is 1, syncs, leaves and enters again: it
    publishes generation 1 as seen at entry (its caches reflect it) and its first sync keeps
    the caches (False). Before, every entry started from nothing (published 0, first sync True),
    so a REC's re-entry translated its code page again (about 14,000 instructions a trip)."""
    with Machine.create("host", cpus=2) as m:
        tlb, other = m.cpu(0).tlb, m.cpu(1).tlb
        rd = m.platform.dram.base + RD_PA_OFFSET
        other.invalidate_realm(rd, RD_PA_OFFSET)        # generation 1; nobody executes: no wait
        tlb.enter(rd, RD_PA_OFFSET)
        assert tlb.sync(), "the first entry has nothing cached"
        tlb.leave()
        tlb.enter(rd, RD_PA_OFFSET)
        assert _published_seen(tlb) == 1
        assert not tlb.sync()
        tlb.leave()


@pytest.mark.parametrize("between", ["invalidation", "other-realm", "realm-destroyed"])
def test_kept_translations_are_dropped_when_anything_moved_between_entries(between: str) -> None:
    """CPU 0 leaves a realm with its caches in sync, then, while it is counted out: CPU 1
    invalidates that realm's stage 2; or CPU 0 runs another realm; or CPU 1 destroys some realm
    (end_stage2: a realm made again on the same RD restarts its generation from 0, so equal
    generations would prove nothing). Its next entry's first sync drops the caches (True);
    before a sync, the CPU publishes only a generation it has seen for this realm (never one
    from the other realm's word), or 0."""
    with Machine.create("host", cpus=2) as m:
        tlb, other = m.cpu(0).tlb, m.cpu(1).tlb
        base = m.platform.dram.base
        rd, rd2 = base + RD_PA_OFFSET, base + RD2_PA_OFFSET
        other.invalidate_realm(rd, RD_PA_OFFSET)
        for _ in range(3):
            other.invalidate_realm(rd2, RD2_PA_OFFSET)  # the other realm's generation: 3
        tlb.enter(rd, RD_PA_OFFSET)
        tlb.sync()
        tlb.leave()
        if between == "invalidation":
            other.invalidate_realm(rd, RD_PA_OFFSET)
        elif between == "other-realm":
            tlb.enter(rd2, RD2_PA_OFFSET)
            tlb.sync()
            tlb.leave()
        else:
            other.end_stage2()
        tlb.enter(rd, RD_PA_OFFSET)
        assert _published_seen(tlb) == (1 if between == "invalidation" else 0)
        assert tlb.sync()
        tlb.leave()
