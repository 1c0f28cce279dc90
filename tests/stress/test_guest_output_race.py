"""Two CPU processes append to one realm's guest output at once (rmm_mp.host.devices: the console
ring of CONSOLE_BYTES bytes and the LOG ring of LOG_RECORDS records in the realm table).

A realm's vCPUs run on several CPUs at the same time, so two hosts may emulate a console byte or
serve a LOG host call for the same realm together. The rings keep the newest items: whatever the
interleaving, the kept window must be exactly the last items in the order they were counted, and
no kept item may be a stale or torn one.

The interleaving is made deterministic: CPU 0 appends one item through a view of the realm table
that pauses right after it moves the ring's count, until CPU 1 has appended a whole window more
(or 0.2 s have passed: CPU 1 may be waiting for CPU 0). Appends used to reserve a position with
an atomic add and write the item after it, so CPU 0's byte (record), written late, landed on the
ring cell that CPU 1's newest byte (record) had already filled: the window showed CPU 0's old
item as the newest and lost CPU 1's last one.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import os
import time
import types
from typing import Any

import pytest

from rmm_mp import Machine
from rmm_mp.host import HostRealm, HostRec, NsAllocator, RunQueue, realm_status
from rmm_mp.host import devices
from rmm_mp.hw.cpuarea import OFF_COUNTERS
from rmm_mp.host.realm_entry import CONSOLE_BYTES, LOG_RECORDS, R_DEVICE, R_LOG
from rmm_mp.host.runqueue import MAX_VCPUS
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

G = 4096
PAUSE_S = 0.2
"""How long the paused CPU waits for the other's window at most (it may be waiting on the first)."""
OLD_BYTE, NEW_BYTE = ord("A"), ord("b")
OLD_REC, NEW_REC = 0, 1


def fake_realm(recs: int, rd: int = 0x8000_0000) -> HostRealm:
    """A HostRealm record that only the run queue sees (no RMI call is made with it)."""
    return HostRealm(rd, rd + G, 2, 1, 40, 0, 0, 16, tuple(HostRec(rd + (2 + i) * G, (), i) for i in range(recs)),
                     ram=(0x8000_0000, 2 << 20))


class _PausingView:
    """A view of the realm table whose first update of the count at ``count_at`` pauses, once the
    update is done, until the count reaches ``until`` or PAUSE_S have passed."""

    def __init__(self, view: Any, count_at: int, until: int) -> None:
        self._view, self._count_at, self._until, self._paused = view, count_at, until, False

    def _pause(self, offset: int) -> None:
        if offset != self._count_at or self._paused:
            return
        self._paused = True
        deadline = time.monotonic() + PAUSE_S
        while self._view.load_u64(self._count_at) < self._until and time.monotonic() < deadline:
            os.sched_yield()

    def fetch_add_u64(self, offset: int, value: int) -> int:
        old = self._view.fetch_add_u64(offset, value)
        self._pause(offset)
        return old

    def store_u64(self, offset: int, value: int) -> None:
        self._view.store_u64(offset, value)
        self._pause(offset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)


def _paused(q: RunQueue, count_at: int, until: int) -> Any:
    """The run queue as devices.mmio / host_call use it, through a pausing view."""
    return types.SimpleNamespace(view=_PausingView(q.view, count_at, until), buf=q.buf,
                                 realm_offset=q.realm_offset, count=q.count)


def _wait_count(q: RunQueue, at: int, least: int) -> None:
    deadline = time.monotonic() + 10
    while q.view.load_u64(at) < least:
        assert time.monotonic() < deadline, f"the count at {at:#x} stayed below {least}"
        os.sched_yield()


def _start_together(cpu: Any) -> None:
    """Barrier: mark this CPU ready in its activity counters, wait until every CPU is."""
    view, size = cpu.area.view, cpu.machine.control.area_size
    view.store_u64(cpu.id * size + OFF_COUNTERS, 1)
    while not all(view.load_u64(c * size + OFF_COUNTERS) for c in range(cpu.machine.cpus)):
        os.sched_yield()


def append_late(cpu: Any, slot: int) -> None:
    """CPU target. CPU 0: one console byte, then one LOG record, each paused after its count
    moved. CPU 1: once CPU 0's byte (record) is counted, a whole ring of its own."""
    _start_together(cpu)    # so that CPU 1 is at work well within CPU 0's pause
    q = RunQueue(cpu.machine)
    console_at, log_at = q.realm_offset(slot) + R_DEVICE, q.realm_offset(slot) + R_LOG
    if cpu.id == 0:
        devices.mmio(_paused(q, console_at, 1 + CONSOLE_BYTES), slot, devices.CONSOLE_DATA, True, 0, OLD_BYTE)
        devices.host_call(_paused(q, log_at, 1 + LOG_RECORDS), slot, OLD_REC, devices.HOST_CALL_LOG,
                          (0xA, 0xA, 0xA, 0xA) + (0,) * 27)
        return
    _wait_count(q, console_at, 1)
    for _ in range(CONSOLE_BYTES):
        devices.mmio(q, slot, devices.CONSOLE_DATA, True, 0, NEW_BYTE)
    _wait_count(q, log_at, 1)
    for i in range(LOG_RECORDS):
        devices.host_call(q, slot, NEW_REC, devices.HOST_CALL_LOG, (i, i, i, i) + (0,) * 27)


def test_a_late_append_never_overwrites_a_newer_item() -> None:
    """CPU 0 appends a console byte and a LOG record but stalls after counting each; meanwhile
    CPU 1 appends a full ring of each (1,024 bytes, 24 records). The realm's output then holds
    exactly CPU 1's items, in order (CPU 0's, the oldest, fell out of the window), and the
    counts say 1,025 and 25."""
    with Machine.create("host", cpus=2) as m:
        q = RunQueue(m)
        alloc = NsAllocator(m, 0)
        slot = q.add_realm(alloc, fake_realm(2))
        result = run_cpus(m, append_late, args=(slot,))
        assert result.ok, [f.describe() for f in result.failures]
        st = realm_status(q, slot)
        assert st.device[0] == 1 + CONSOLE_BYTES and st.log_count == 1 + LOG_RECORDS
        assert st.console == bytes([NEW_BYTE]) * CONSOLE_BYTES, \
            f"console holds {st.console.count(OLD_BYTE)} stale byte(s), at {st.console.find(OLD_BYTE)}"
        assert [(r.rec, r.values) for r in st.log] == [(NEW_REC, (i, i, i, i)) for i in range(LOG_RECORDS)], \
            [(r.rec, r.values) for r in st.log]
        v0 = slot * MAX_VCPUS
        assert q.start(v0 + 1) and [q.take(0), q.take(0)] == [v0, v0 + 1]
        for v in (v0, v0 + 1):
            q.end(v, 2)
        q.release_realm(alloc, slot)
