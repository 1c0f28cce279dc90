"""Physical memory: DRAM contents by physical address, and the Normal world's checked access.

DRAM is one shared segment, granule_count * 4 KiB, mapped by every process. The RMM reaches
granule contents through ``granule(idx)`` (a memoryview of those 4 KiB). Normal-world access
(NsAccess ``read``/``unpack``/``write``/``pack_values``, used by Machine and by the RMM when it
copies a host structure) goes through the granule protection check, atomically against a
concurrent DELEGATE: each granule of the range is locked in address order (the caller holds no
other granule lock: locking rule 8 of hw.granule), its GPT entry checked, the bytes copied (or
unpacked, or packed in place), the lock released. A delegated granule therefore never ends up
holding host bytes.

The lock is the model's, not the hardware's: a real host access takes no RMM lock. So the host's
table waits through ``HostLockWaiter``, which gives up on a holder that will never release the
lock (a crashed RMM, a process that has died) instead of hanging the host. A CPU's table waits
through ``CpuLockWaiter``, which gives up on a holder whose process has ended once the run is
stopping.

This module owns byte access to DRAM. It must not change granule states or GPT entries.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import atomicshm

from rmm_mp.hw import process
from rmm_mp.hw.control import Control
from rmm_mp.hw.cpuarea import OFF_BIND, binding_ended
from rmm_mp.hw.faults import GranuleProtectionFault, MachineError, RmmInternalError
from rmm_mp.hw.gpt import Gpt, Pas
from rmm_mp.hw.granule import (
    GRANULE_SIZE, HOST_OWNER_FLAG, SPIN_TRIES, YIELD_TRIES, GranuleTable, backoff, describe_owner, look_due,
)

if TYPE_CHECKING:
    from rmm_mp.abi.structs import Layout

ZERO_GRANULE = bytes(GRANULE_SIZE)
_NS_PAS = Pas.NS
"""Pas.NS read once: on CPython 3.11 every read of an enum class's attribute passes through
EnumType's __getattr__ hook (about 1,000 instructions), and NS copies check it on every REC
round trip (the run page in and out)."""


class PhysicalMemory:
    """DRAM contents. Callers hold whatever lock protects the bytes they touch.

    ``view`` gives single-copy-atomic 64-bit loads and stores (offsets from the DRAM base), for
    words another CPU may read without a lock: stage-2 table entries (read by a realm's
    translation like a hardware walker) and the realm state REC_ENTER reads lock-free.
    """

    __slots__ = ("buf", "view", "base", "count", "end")

    def __init__(self, buf: memoryview, base: int, count: int, view: atomicshm.AtomicView | None = None) -> None:
        self.buf = buf
        self.view = view
        self.base = base
        self.count = count
        self.end = base + count * GRANULE_SIZE

    def granule(self, idx: int) -> memoryview:
        start = idx << 12
        return self.buf[start:start + GRANULE_SIZE]

    def zero(self, idx: int) -> None:
        start = idx << 12
        self.buf[start:start + GRANULE_SIZE] = ZERO_GRANULE

    def is_zero(self, idx: int) -> bool:
        start = idx << 12
        return self.buf[start:start + GRANULE_SIZE] == ZERO_GRANULE

    def read(self, pa: int, size: int) -> bytes:
        start = pa - self.base
        return bytes(self.buf[start:start + size])

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        start = pa - self.base
        self.buf[start:start + len(data)] = data


class _LockWaiter:
    """What both waiters share: the try count of one wait, and the backoff before each try."""

    __slots__ = ("_idx", "_done", "_tries")

    def __init__(self) -> None:
        self._idx = -1
        self._done = -1
        self._tries = 0

    def _next_try(self, table: GranuleTable, idx: int) -> int:
        """Back off before the next try at granule ``idx``'s lock; returns that try's number.
        A new wait starts at try 1: another granule, or the same one after a contended
        acquisition ended (the table counts those; without it a second wait for one granule
        went on from the first's tries, sleeping longer and giving a live holder no spin after a
        crash)."""
        done = table.stats.contended
        if idx != self._idx or done != self._done:
            self._idx, self._done, self._tries = idx, done, 0
        self._tries += 1
        tries = self._tries
        backoff(tries)
        return tries


class HostLockWaiter(_LockWaiter):
    """The host's wait for a granule lock someone else holds (``GranuleTable.waiter`` of the
    table Machine.ns_read/ns_write lock with): hw.granule's backoff, but a holder that can never
    release the lock ends the wait with an error.

    - The machine is dead (the RMM crashed, perhaps holding this lock): RmmInternalError, once
      the wait has passed the spinning and yielding phases (a live CPU finishing its call
      releases its locks by then, however the OS schedules it).
    - The holder's process has ended (a CPU process killed inside the RMM, a host process killed
      inside a copy): MachineError; checked every LIVENESS_EVERY tries, a system call.
    """

    LIVENESS_EVERY = 1024

    __slots__ = ("control", "cpus", "area_size", "cpu_count")

    def __init__(self, control: Control, cpus: atomicshm.AtomicView, area_size: int, cpu_count: int) -> None:
        super().__init__()
        self.control = control
        self.cpus = cpus
        self.area_size = area_size
        self.cpu_count = cpu_count

    def wait(self, table: GranuleTable, idx: int, holder: int) -> None:
        tries = self._next_try(table, idx)
        if tries <= SPIN_TRIES + YIELD_TRIES:
            return
        if self.control.dead:
            self._idx = -1
            raise RmmInternalError(f"the host cannot access PA {table.addr(idx):#x}: its granule is locked by "
                                   f"{describe_owner(holder)} and the RMM has crashed "
                                   f"({self.control.dead_reason()})")
        if tries % self.LIVENESS_EVERY == 0 and self._holder_gone(table, idx, holder):
            self._idx = -1
            raise MachineError(f"the host cannot access PA {table.addr(idx):#x}: its granule is locked by "
                               f"{describe_owner(holder)}, whose process has ended, so the lock is never released")

    def _holder_gone(self, table: GranuleTable, idx: int, holder: int) -> bool:
        """Whether granule idx's lock is held for good: ``holder`` (the word the last failed
        try read) has ended, and the word still names it. The word is read again after the
        liveness look: the backoff slept since that try, and a live holder may have released
        the lock, finished and ended in the meantime (a CPU process at the end of a run); an
        ended holder cannot release it, so a word naming it after it ended is never released."""
        return not self._holder_alive(holder) and table.holder(idx) == holder

    def _holder_alive(self, holder: int) -> bool:
        """Whether the process behind a lock word still runs (when in doubt: yes)."""
        if holder & HOST_OWNER_FLAG:
            # The word has no room for a start time: the pid alone decides (a dead holder whose
            # pid a new process took is waited for).
            return not process.ended(holder & 0x7FFF_FFFF, lambda start_ms: True)
        cpu = holder - 1
        if not 0 <= cpu < self.cpu_count:
            return True
        word = self.cpus.load_u64(cpu * self.area_size + OFF_BIND)
        # A CPU that holds a lock is bound; a free or stale binding means its process is gone.
        return not binding_ended(word)


class CpuLockWaiter(_LockWaiter):
    """A CPU's wait for a granule lock someone else holds (``GranuleTable.waiter`` of every CPU
    handle's table): hw.granule's backoff, tried after every failed compare-and-swap as before,
    but a CPU that would wait for ever on a dead holder gives up once the run is stopping.

    On hardware no CPU dies holding a lock; here a CPU process can be killed inside a call
    (SIGKILL, the OOM killer), leaving its locks held for good. The run's supervisor then stops
    the run, but a survivor inside a call that waits for one of those locks never reaches a
    point where it could stop: it was terminated once the supervisor's grace time (10 s per
    CPU per host core) ran out, and its figures were lost with it. So once the control block's
    stop flag is set, and the holder is a CPU whose process has ended (its binding's pid gone,
    or naming a process started at another time) and the lock word still names it (see
    HostLockWaiter._holder_gone), the wait raises MachineError, holding the
    locks it held (the run is ending failed anyway; the report names the dead CPU). While the
    run goes on, a dead holder is waited for, as a stopped or descheduled one is: a caller
    outside a supervised run (the library, tests) sees the hardware's behaviour. Checked every
    HostLockWaiter.LIVENESS_EVERY tries once the wait sleeps, never while it spins or yields.
    """

    __slots__ = ("control", "gone", "cpu")

    def __init__(self, control: Control, cpus: atomicshm.AtomicView, area_size: int, cpu_count: int,
                 cpu: int) -> None:
        super().__init__()
        self.control = control
        # Its liveness test reads CPU lock words alone (a CPU's table never holds a host word).
        self.gone = HostLockWaiter(control, cpus, area_size, cpu_count)._holder_gone
        self.cpu = cpu

    def wait(self, table: GranuleTable, idx: int, holder: int) -> None:
        tries = self._next_try(table, idx)
        if (look_due(tries, HostLockWaiter.LIVENESS_EVERY)
                and self.control.stop_requested and self.gone(table, idx, holder)):
            self._idx = -1
            raise MachineError(f"CPU {self.cpu} gave up waiting for the lock of granule {table.addr(idx):#x}: "
                               f"{describe_owner(holder)} holds it, and its process has ended, so it is never "
                               "released (the run is stopping)")


class NsAccess:
    """Normal-world access to DRAM through the granule protection check.

    ``table`` decides whose name goes into the lock words while a copy runs: a CPU's table for
    the RMM's own copies, a host-owner table for Machine.ns_read/ns_write.
    """

    __slots__ = ("memory", "table", "gpt")

    def __init__(self, memory: PhysicalMemory, table: GranuleTable, gpt: Gpt) -> None:
        self.memory = memory
        self.table = table
        self.gpt = gpt

    def _granules(self, pa: int, size: int) -> range:
        """Indices the range covers; GranuleProtectionFault if any byte is outside DRAM."""
        memory = self.memory
        if size < 0:
            raise ValueError(f"size = {size}: expected a byte count >= 0")
        if size == 0:
            return range(0)
        if pa < memory.base or pa >= memory.end:
            raise GranuleProtectionFault(pa, "not DRAM")
        if pa + size > memory.end:
            # The fault names the first failing byte: a non-NS granule before the end (the `host`
            # platform's DRAM ends in its Secure region) comes first. Read without locks: the
            # access faults whatever a concurrent DELEGATE does, and copies nothing. The entries
            # read are the access's own granules in DRAM: as it runs past DRAM's end, they end
            # with the GPT (one entry per DRAM granule).
            first = (pa - memory.base) >> 12
            entries = bytes(self.gpt.buf[first:self.gpt.count])
            ns_run = len(entries) - len(entries.lstrip(bytes((_NS_PAS,))))
            if ns_run < len(entries):
                raise self._pas_fault(pa, first + ns_run, entries[ns_run])
            raise GranuleProtectionFault(memory.end, "not DRAM (the access runs past the end of DRAM)")
        return range((pa - memory.base) >> 12, ((pa + size - 1 - memory.base) >> 12) + 1)

    def _lock_checked(self, pa: int, indices: range) -> None:
        """Lock every granule in address order and check its PAS; on a fault (or a wait the
        table's waiter abandons) hold nothing. The fault names the first byte of the access
        that failed: ``pa`` itself in the first granule, the granule's base in a later one."""
        table, gpt = self.table, self.gpt
        held = 0
        # One try around the whole loop, ``held`` counted right after each lock with no call in
        # between: an exception anywhere (a KeyboardInterrupt at the loop's backward jump or in
        # gpt.pas included) releases exactly the locks taken.
        try:
            for idx in indices:
                table.lock(idx)
                held += 1
                pas = gpt.pas(idx)
                if pas != _NS_PAS:
                    raise self._pas_fault(pa, idx, pas)
        except BaseException:
            self._unlock_all(indices[:held])
            raise

    def _unlock_all(self, indices: range) -> None:
        """Release the locks of ``indices``, all held by this table's owner. An exception in the
        loop (a KeyboardInterrupt at its backward jump, or in an unlock after its release) still
        releases the rest, each one still held, before it propagates: a plain loop left them
        held for ever."""
        table = self.table
        done = 0
        try:
            for idx in indices:
                table.unlock(idx)
                done += 1
        except BaseException:
            # indices[done]'s unlock may have raised after its release: the lock word says.
            owner = table.owner
            for idx in indices[done:]:
                if table.holder(idx) == owner:
                    table.unlock(idx)
            raise

    def _pas_fault(self, pa: int, idx: int, pas: int) -> GranuleProtectionFault:
        """The fault of an access at ``pa`` whose granule ``idx`` is in PAS ``pas``, not NS, at
        the access's first byte in that granule: ``pa`` itself in its first granule, the
        granule's base in a later one. Every path's (one granule, several, past DRAM's end)."""
        return GranuleProtectionFault(max(pa, self.table.addr(idx)), f"granule is in the {Pas(pas).name} PAS")

    def read(self, pa: int, size: int) -> bytes:
        memory = self.memory
        offset = pa - memory.base
        # An access inside one granule (the common case: a run page, a host-call page, a
        # structure) locks and checks that granule without building a range of indices; the
        # general path (_granules, _lock_checked) takes any other. Written out here, in unpack
        # and in write, not a helper: the run loop makes these copies on every REC entry, and
        # one helper for the three (find, lock, check) measured about 1,000 instructions more of
        # a 221,000-instruction host-call round trip (0.45 %). The PAS check is inside the try
        # that unlocks: between lock's return and the try's first statement Python runs no
        # signal handler, so a KeyboardInterrupt anywhere later (gpt.pas's call included) still
        # releases the lock; one in the PAS check itself used to leave it held.
        if 0 < size and 0 <= offset and offset + size <= memory.end - memory.base \
                and offset >> 12 == (offset + size - 1) >> 12:
            idx = offset >> 12
            table = self.table
            table.lock(idx)
            try:
                pas = self.gpt.pas(idx)
                if pas != _NS_PAS:
                    raise self._pas_fault(pa, idx, pas)
                return bytes(memory.buf[offset:offset + size])
            finally:
                table.unlock(idx)
        indices = self._granules(pa, size)
        self._lock_checked(pa, indices)
        try:
            return memory.read(pa, size)
        finally:
            self._unlock_all(indices)

    def unpack(self, pa: int, layout: struct.Struct) -> tuple[Any, ...]:
        """``layout.unpack`` of the ``layout.size`` bytes at ``pa``, read as ``read`` reads them
        (the same locks, the same check), unpacked in place under the lock: no copy of the bytes
        is made first (the run loop reads a 1.5 KiB exit this way on every REC exit)."""
        memory = self.memory
        offset, size = pa - memory.base, layout.size
        if 0 < size and 0 <= offset and offset + size <= memory.end - memory.base \
                and offset >> 12 == (offset + size - 1) >> 12:      # one granule: as in read
            idx = offset >> 12
            table = self.table
            table.lock(idx)
            try:
                pas = self.gpt.pas(idx)
                if pas != _NS_PAS:
                    raise self._pas_fault(pa, idx, pas)
                return layout.unpack_from(memory.buf, offset)
            finally:
                table.unlock(idx)
        return layout.unpack(self.read(pa, size))

    def pack_values(self, idx: int, offset: int, layout: "Layout", values: dict[str, Any]) -> None:
        """``layout.pack_values_into`` at ``offset`` of granule ``idx`` (``offset`` + layout.size <=
        GRANULE_SIZE), under the granule's lock and GPT check as ``write``'s one-granule path: for
        a granule the caller found in DRAM earlier (REC_ENTER's run page, written at the exit),
        with no second find from an address and no bytes object packed and copied.
        GranuleProtectionFault, with nothing written, if the granule is outside the NS PAS;
        ValueError, before any lock, for a structure not inside the granule (only its lock and
        PAS are taken and checked: packed anyway, it would reach a neighbour without either)."""
        if offset < 0 or offset + layout.size > GRANULE_SIZE:
            raise ValueError(f"{layout.name} ({layout.size:#x} bytes) at offset {offset:#x}: "
                             f"not inside one {GRANULE_SIZE:#x}-byte granule")
        table = self.table
        table.lock(idx)
        try:
            pas = self.gpt.pas(idx)
            if pas != _NS_PAS:
                raise self._pas_fault(self.memory.base + (idx << 12) + offset, idx, pas)
            layout.pack_values_into(self.memory.buf, (idx << 12) + offset, values)
        finally:
            table.unlock(idx)

    def write(self, pa: int, data: bytes | bytearray | memoryview) -> None:
        memory = self.memory
        offset, size = pa - memory.base, len(data)
        if 0 < size and 0 <= offset and offset + size <= memory.end - memory.base \
                and offset >> 12 == (offset + size - 1) >> 12:      # one granule: as in read
            idx = offset >> 12
            table = self.table
            table.lock(idx)
            try:
                pas = self.gpt.pas(idx)
                if pas != _NS_PAS:
                    raise self._pas_fault(pa, idx, pas)
                memory.buf[offset:offset + size] = data
            finally:
                table.unlock(idx)
            return
        indices = self._granules(pa, size)
        self._lock_checked(pa, indices)
        try:
            memory.write(pa, data)
        finally:
            self._unlock_all(indices)
