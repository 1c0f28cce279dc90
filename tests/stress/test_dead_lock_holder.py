"""A granule lock held by a process that died: the host's NS access (Machine.ns_read) raises
MachineError instead of waiting forever (hw.memory.HostLockWaiter), and so does a CPU's acquire
once the run is stopping (hw.memory.CpuLockWaiter). The child takes the lock and exits; a
SIGALRM guard far longer than the test needs (or a bounded join) turns a hang into a failure."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest

from children import finish, read_line, start_child
from rmm_mp import Machine
from rmm_mp.hw import segment
from rmm_mp.hw.faults import MachineError
from rmm_mp.hw.granule import cpu_owner
from rmm_mp.hw.memory import CpuLockWaiter, HostLockWaiter

HANG_GUARD_S = 120

_LOCK_AND_DIE = """
import os, sys
from rmm_mp import Machine
m = Machine.attach(sys.argv[1])
idx = int(sys.argv[2])
if sys.argv[3] == "cpu":
    m.cpu(1).granules.lock(idx)
else:
    m._host_ns.table.lock(idx)
print("locked", flush=True)
os._exit(0)
"""


@pytest.mark.parametrize("holder", ["cpu", "host"])
def test_access_to_a_granule_a_dead_process_left_locked_raises(holder: str) -> None:
    """A process that died holding a granule's lock (as CPU 1, or as a host process inside a
    copy) never releases it: the host's access raises MachineError naming the PA, and the
    machine is not marked dead for it (the RMM did not crash)."""
    with Machine.create("host", cpus=2) as m:
        idx = 80
        child = start_child(_LOCK_AND_DIE, m.name, str(idx), holder, shm_dir=segment.SHM_DIR)
        try:
            assert read_line(child) == "locked"
        finally:
            finish(child)
        assert m.granule_table(0).holder(idx) != 0
        pa = m.dram_base + idx * m.granule_size

        def expired(signum: int, frame: FrameType | None) -> None:
            raise AssertionError(f"still waiting after {HANG_GUARD_S} s: the host access hangs")
        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(HANG_GUARD_S)
        try:
            with pytest.raises(MachineError, match=f"{pa:#x}.*process has ended"):
                m.ns_read(pa, 8)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        assert not m.dead


def test_a_cpu_waiting_for_a_dead_cpus_lock_gives_up_once_the_run_is_stopping() -> None:
    """CPU 1's process took a granule's lock and died (SIGKILL inside an RMI, as `rmm-mp run`'s
    survivors meet it). CPU 0 asking for that lock waits while the run goes on (a live holder,
    only descheduled or stopped, is waited for), and once the run is stopping (the supervisor
    asks for it when a CPU dies) raises MachineError naming the PA and the dead CPU, instead of
    waiting until the supervisor's grace time ends and it is terminated with its figures."""
    with Machine.create("host", cpus=2) as m:
        idx = 81
        child = start_child(_LOCK_AND_DIE, m.name, str(idx), "cpu", shm_dir=segment.SHM_DIR)
        try:
            assert read_line(child) == "locked"
        finally:
            finish(child)
        cpu = m.cpu(0)
        pa = m.dram_base + idx * m.granule_size
        raised: list[BaseException] = []

        def take() -> None:
            try:
                cpu.granules.lock(idx)
            except BaseException as exc:  # the thread's outcome, checked below
                raised.append(exc)
        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        waiter.join(0.8)        # past several liveness looks (about 0.5 s apart once it sleeps)
        assert waiter.is_alive() and not raised, "gave up while the run was not stopping"
        m.control.request_stop()
        waiter.join(10)
        assert not waiter.is_alive(), "still waiting 10 s after the run was asked to stop"
        assert len(raised) == 1 and isinstance(raised[0], MachineError), raised
        assert f"{pa:#x}" in str(raised[0]) and "CPU 1" in str(raised[0]), raised[0]
        assert not m.dead


@pytest.mark.parametrize("waiter_of", ["cpu", "host"])
def test_a_holder_that_released_the_lock_and_ended_during_the_backoff_is_not_given_up_on(waiter_of: str) -> None:
    """The race at a run's end: the last failed try read CPU 1 as the holder; during the backoff
    sleep that followed, CPU 1 finished its call (releasing the lock), returned and closed its
    handle, so its binding is free when the waiter looks. The lock is free, not held for good:
    the wait must go on (its next try takes the lock), not raise MachineError, which marked a
    clean run's machine dead. Modelled on one waiter call: the word is 0, CPU 1 was never bound
    (an ended binding), the run is stopping, and the waiter is at a try that looks (its private
    try count set, so as not to sleep through the 1023 tries before it)."""
    with Machine.create("host", cpus=2) as m:
        idx = 82
        table = m.cpu(0).granules if waiter_of == "cpu" else m._host_ns.table
        waiter = table.waiter
        assert isinstance(waiter, CpuLockWaiter if waiter_of == "cpu" else HostLockWaiter)
        m.control.request_stop()
        assert table.holder(idx) == 0
        waiter._idx, waiter._done, waiter._tries = idx, table.stats.contended, HostLockWaiter.LIVENESS_EVERY - 1
        waiter.wait(table, idx, cpu_owner(1))      # returns: the caller's next try takes the lock
        assert waiter._tries == HostLockWaiter.LIVENESS_EVERY   # it did reach the look
        # A word that still names the ended holder is held for good: that wait does raise.
        waiter._idx, waiter._tries = idx, HostLockWaiter.LIVENESS_EVERY - 1
        m.granule_table(cpu_owner(1)).lock(idx)
        with pytest.raises(MachineError, match="process has ended"):
            waiter.wait(table, idx, cpu_owner(1))
        assert not m.dead
