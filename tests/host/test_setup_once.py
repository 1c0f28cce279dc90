"""The once-per-machine set-up of the host's shared areas (rmm_mp.host.setup_once): how a process
that makes a handle (NsAllocator, RunQueue) waits while another process sets the area up."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from rmm_mp import Machine
from rmm_mp.host import nsalloc, runqueue, setup_once
from rmm_mp.host.nsalloc import NsAllocator
from rmm_mp.host.runqueue import RunQueue
from rmm_mp.hw import process
from rmm_mp.hw.cpuarea import binding_word

LAG_S = 1.0
"""How long the process setting an area up stays away (descheduled, or stopped with SIGSTOP)."""


def _nsalloc_done(m: Machine) -> bool:
    """CPU 1's search hint is spread over DRAM by the set-up (0 before it)."""
    view = m.control.view
    return view.load_u32(nsalloc._OFF_SLOTS + nsalloc.slot_stride(m.cpus) + nsalloc._SLOT_HINT) != 0


def _runqueue_done(m: Machine) -> bool:
    """The last cell of the last queue's ring holds its position (0 before the set-up)."""
    _, _, ring = runqueue.QUEUES[-1]
    last = runqueue.RING_SLOTS - 1
    return m.control.view.load_u64(ring + 16 * last) == last


AREAS: dict[str, tuple[int, int, Callable[[Machine], object], Callable[[Machine], bool]]] = {
    "nsalloc": (nsalloc._OFF_INIT, nsalloc._OFF_SETTER, lambda m: NsAllocator(m, 0), _nsalloc_done),
    "runqueue": (runqueue._INIT, runqueue._SETTER, RunQueue, _runqueue_done),
}
"""Per area: its state word, its setter word, making a handle, and whether it was set up."""


@pytest.mark.parametrize("area", sorted(AREAS))
def test_waiting_for_a_slow_setter_sleeps_rather_than_burning_a_core(area: str) -> None:
    """Another live process (here: this one's word) claimed the area's set-up and finishes it
    only LAG_S later (descheduled, or stopped with SIGSTOP): a handle made meanwhile waits
    for it, sleeping. The wait only called sched_yield: it burnt 0.4 to 0.6 s of CPU in the
    1 s on a loaded 2-core host, the whole second on an idle one; load can only lower the
    figure, so the bound cannot fail through a slow machine."""
    state, setter, make, _ = AREAS[area]
    with Machine.create("host", cpus=2) as m:
        view = m.control.view
        view.store_u64(setter, binding_word(os.getpid(), process.own_start_ms()))
        view.store_u32(state, 1)
        used: list[float] = []

        def handle() -> None:
            cpu_started = time.thread_time()
            make(m)
            used.append(time.thread_time() - cpu_started)

        waiter = threading.Thread(target=handle)
        started = time.monotonic()
        waiter.start()
        time.sleep(LAG_S)
        view.store_u32(state, 2)        # the setter is done
        waiter.join()
        waited = time.monotonic() - started
    assert waited >= LAG_S * 0.9, f"the handle was made after {waited:.3f} s, before the set-up was done"
    assert used[0] < LAG_S * 0.25, f"the wait used {used[0]:.3f} s of CPU in {waited:.3f} s"


@pytest.mark.parametrize("area", sorted(AREAS))
def test_a_set_up_whose_process_ended_is_taken_over(area: str) -> None:
    """The process that claimed the area's set-up has ended mid-way (SIGKILL, killed by its
    parent's death): its setter word names its pid (here this test's own, so that the pid now
    names another process) with an older start time. A handle made now takes the set-up over,
    does it, and the area is ready. The wait looked at the init flag alone: every process of
    the machine waited for ever for a set-up no process would finish."""
    state, setter, make, done = AREAS[area]
    with Machine.create("host", cpus=2) as m:
        view = m.control.view
        view.store_u64(setter, binding_word(os.getpid(), process.own_start_ms() - 10_000))
        view.store_u32(state, 1)
        made = threading.Event()
        waiter = threading.Thread(target=lambda: (make(m), made.set()), daemon=True)
        waiter.start()
        try:
            waiter.join(timeout=30)
            assert made.is_set(), "the handle still waits for a set-up whose process has ended"
            assert view.load_u32(state) == 2 and done(m), "the handle was made on an area not set up"
        finally:
            view.store_u32(state, 2)    # let a wait that did not end (the old code's) end, before the machine closes
            waiter.join(timeout=30)


def test_a_setter_that_finished_and_ended_during_a_look_is_not_redone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run queues' setter stores READY and its process ends (killed, or its run over) while a
    waiter is between its look at the state word (still BUSY) and its look at the setter's
    process (ended). Meanwhile a producer has published ring position 0 (its cell's sequence 1).
    The waiter must see the READY and leave the area alone. It took the set-up over on the
    strength of the stale BUSY: it stored BUSY over the READY (holding every later handle) and
    redid the set-up, setting the published cell free again (sequence 0), so the next producer
    would overwrite the vCPU in it."""
    with Machine.create("host", cpus=2) as m:
        view = m.control.view
        view.store_u64(runqueue._SETTER, binding_word(os.getpid(), process.own_start_ms() - 10_000))
        view.store_u32(runqueue._INIT, 1)
        _, _, ring = runqueue.QUEUES[0]
        looks: list[int] = []

        def setter_finishes_and_ends(word: int) -> bool:
            """The setter's last stores, a producer's publication, then the setter is gone."""
            looks.append(word)
            for _, _, r in runqueue.QUEUES:
                for i in range(runqueue.RING_SLOTS):
                    view.store_u64(r + 16 * i, i)
            view.store_u32(runqueue._INIT, 2)
            view.store_u64(ring, 1)
            return True

        monkeypatch.setattr(setup_once, "binding_ended", setter_finishes_and_ends)
        made = threading.Event()
        waiter = threading.Thread(target=lambda: (RunQueue(m), made.set()), daemon=True)
        waiter.start()
        try:
            waiter.join(timeout=30)
            assert made.is_set() and looks, "the handle still waits"
            assert view.load_u32(runqueue._INIT) == 2
            assert view.load_u64(ring) == 1, "the set-up was redone over a ready ring: position 0's cell is free again"
        finally:
            view.store_u32(runqueue._INIT, 2)    # let a wait that did not end end, before the machine closes
            waiter.join(timeout=30)


def test_a_set_up_that_raised_is_done_by_the_next_handle() -> None:
    """The process setting the run queues up gets an exception inside the set-up (a
    KeyboardInterrupt, a MemoryError) and lives on, as an interactive session or a supervisor
    that handles it does. The next handle made, by it or any other process of the machine,
    does the set-up. The claim stayed with the live process: every later handle waited for
    ever for a set-up nobody would finish."""
    with Machine.create("host", cpus=2) as m:
        view = m.control.view

        class Interrupted(Exception):
            """The exception the set-up got."""

        def interrupted() -> None:
            raise Interrupted
        with pytest.raises(Interrupted):
            setup_once.set_up_once(view, runqueue._INIT, runqueue._SETTER, interrupted)
        made = threading.Event()
        waiter = threading.Thread(target=lambda: (RunQueue(m), made.set()), daemon=True)
        waiter.start()
        try:
            waiter.join(timeout=10)
            assert made.is_set(), "the handle waits for a set-up its live claimer gave up"
            assert view.load_u32(runqueue._INIT) == 2 and _runqueue_done(m)
        finally:
            view.store_u32(runqueue._INIT, 2)    # let a wait that did not end (the old code's) end
            waiter.join(timeout=30)
