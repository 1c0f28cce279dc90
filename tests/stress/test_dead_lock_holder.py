"""A granule lock held by a process that died: the host's NS access (Machine.ns_read) raises
MachineError instead of waiting forever (hw.memory.HostLockWaiter). The child takes the lock
and exits; a SIGALRM guard far longer than the test needs turns a hang into a failure."""

from __future__ import annotations

import signal
from types import FrameType

import pytest

from children import finish, read_line, start_child
from rmm_mp import Machine
from rmm_mp.hw import segment
from rmm_mp.hw.faults import MachineError

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
