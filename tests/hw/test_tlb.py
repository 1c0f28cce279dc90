"""hw.tlb's invalidating side: how it waits for a CPU that executes realm code (the executing
side and its sync points are tested through the guest, tests/rmm/test_stage2.py)."""

from __future__ import annotations

import os
import threading
import time

from rmm_mp import Machine
from rmm_mp.hw import process
from rmm_mp.hw.cpuarea import OFF_BIND, OFF_EXEC_RD, binding_word
from children import finish, read_line, start_child

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


DIES_COUNTED_IN = f"""
import os, sys
from rmm_mp import Machine
m = Machine.attach(sys.argv[1])
tlb = m.cpu(1).tlb
tlb.enter(m.platform.dram.base + {RD_PA_OFFSET:#x}, {RD_PA_OFFSET:#x})
tlb.sync()
print("counted in", flush=True)
sys.stdin.readline()
os._exit(0)
"""
"""A CPU process killed while it executes realm code: bound to CPU 1, counted in, never counted out."""


def test_a_cpu_rebound_after_its_holder_died_counted_in_is_not_waited_for() -> None:
    """CPU 1's process dies while counted in as executing realm code, and this process binds
    CPU 1 afresh without running any realm code on it: CPU 0's GPT invalidation returns. The
    dead holder's RD and generations stayed published, so once CPU 1 had a live owner again
    every invalidation waited for that owner to reach a sync point it never reaches."""
    with Machine.create("host", cpus=2) as m:
        child = start_child(DIES_COUNTED_IN, m.name)
        try:
            assert read_line(child) == "counted in"
            child.stdin.close()  # type: ignore[union-attr]
            assert child.wait(30) == 0
        finally:
            finish(child)
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
