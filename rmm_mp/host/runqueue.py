"""The vCPU run queue and the realm table, shared by the host on every CPU process.

A CPU takes a runnable vCPU (a REC) from the queues it serves, enters it once (RMI_REC_ENTER),
handles its exit and puts it back if it is still runnable, so vCPUs migrate between CPUs as they
run. What the CPUs share for this lives in the control block's host area OFF_HOST_RUN
(hw/control.py, 256 KiB), and the extra queues in OFF_HOST_QUEUES, never in a Python object.
Offsets from OFF_HOST_RUN, little-endian:

    0x00000  header: init flag u32 (0 none, 1 being set up, 2 ready), live realms u64 at +8,
             CPU loops arrived u64 at +0x10 (runloop.py's start barrier), the process that
             set the rings up u64 at +0x18 (setup_once.py: a waiter takes over from a dead one)
    0x00040  enqueue position u64 (own cache line)      0x00080  dequeue position u64
    0x00100  REC exits per CPU: MAX_CPUS lines of 8 u64, one per RmiRecExitReason, the eighth
             counting REC_ENTERs that did not run the realm; written by that CPU only
    0x02000  the ring: RING_SLOTS cells of (sequence u64, vCPU id u64)
    0x0A000  the realm table: MAX_REALMS entries of 4 KiB (layout: realm_entry.py)

There are MAX_QUEUES queues, each a ring with its own positions. Queue 0 is the one above; queue
k >= 1 is at OFF_HOST_QUEUES + (k - 1) * QUEUE_BYTES: enqueue position u64 at +0x00, dequeue
position u64 at +0x40, its ring at +0x80. A realm is registered in one queue (its entry's
R_QUEUE, add_realm's ``queue``) and its vCPUs only ever go into that one, so they run only on the
CPUs that serve it. Which queues a handle serves is fixed when it is made (``serve``, queue 0 by
default): a CPU that serves one queue takes and requeues with that queue's offsets and nothing
else, as with a single queue; one that serves several tries them in turn, starting after the
one it last took from, so no queue starves another on a CPU that serves both. (A workload gives
each distinct realm CPU set short of all its CPUs a queue, and each CPU the queues whose sets
hold it, plus queue 0 if some realm is in it: rmm_mp.workload.resolve.)

The queue is Vyukov's bounded multi-producer multi-consumer ring: a cell's sequence number says
whose turn it is (== position: free for the producer of that position; == position + 1: full,
for its consumer), a producer or consumer claims a position with one compare-and-swap, so no
lock is held. A consumer never waits: a cell not yet published reads as an empty queue. A
producer waits only for the consumer of the cell's previous lap, which releases it two stores
after its claim, backing off to sleeps (a consumer stopped or descheduled in between costs it no
host core); if that consumer's process was killed in between, the cell never comes free, and
the producer gives up (RunQueueError) once the run is stopping with a CPU process gone
(_check_release_wait), instead of waiting until the run's grace time kills it. A producer
killed between its claim and its publication leaves the queue looking empty from that cell on:
the CPUs' loops then idle until the stop flag, which the run sets when a CPU process dies.
A vCPU is in the ring at most once, which its state word enforces (one CAS per transition):

    OFF --start--> QUEUED --take--> RUNNING --requeue--> QUEUED
                                    RUNNING --stop (CPU_OFF)--> OFF
                                    RUNNING --start--> WOKEN (started again while it ran: the
                                             next stop requeues it instead of turning it off)
                  RUNNING, WOKEN --end--> DONE (SYSTEM_OFF, a drained or failed vCPU)

A vCPU is marked woken (VF_WOKEN) when a start finds it RUNNING, and when a CPU_ON's start
finds it OFF (start(maybe_on=True)): the RMM may have answered that CPU_ON with ALREADY_ON just
before the vCPU turned itself off, so its REC may be off. The mark is cleared by the next entry
that runs; an entry that fails with ERROR_REC while it is set turns the vCPU off.

A realm counts its vCPUs that are QUEUED, RUNNING or WOKEN; the CPU that brings the count to 0
marks the realm DONE. A vCPU is only started by its realm's registration or by the exit handling
of another vCPU of the realm that is RUNNING at the time, so the count never touches 0 early.
Each ring holds RING_SLOTS >= MAX_REALMS * MAX_VCPUS cells, so it cannot fill up.

This module owns the layout and the state transitions. The exit handling that drives them is in
runloop.py and exits.py; devices.py gives meaning to the device, result and log fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from rmm_mp.abi.structs import rec_index_to_mpidr
from rmm_mp.host.realm import GRANULE, HostRealm, HostRec
from rmm_mp.host.realm_entry import (
    R_STATE, R_GEN, R_RECS, R_OFFERED, R_ACTIVE, R_END, R_IPA_WIDTH, R_NSHARED, R_QUEUE, R_RD, R_SHARED,
    MAX_SHARED_RANGES, R_COUNTERS, R_PAGES, MAX_SHARED_PAGES, R_VCPUS, VCPU_BYTES, VF_STATE, VF_WOKEN, VF_REC,
    VF_RUN, VF_END, VF_FLAGS, VF_CPU, C, FREE, SETUP, RUNNING, SYSTEM_OFF, DONE, REALM_STATES, END_NONE,
    END_SYSTEM_OFF, END_ALL_OFF, END_ERROR, V_OFF, V_QUEUED, V_RUNNING, V_WOKEN, V_DONE, VCPU_STATES, VEND_ERROR,
    COUNTERS)
from rmm_mp.host.setup_once import set_up_once
from rmm_mp.hw import points
from rmm_mp.hw.control import HOST_QUEUES_BYTES, HOST_RUN_BYTES, OFF_HOST_QUEUES, OFF_HOST_RUN
from rmm_mp.hw.cpuarea import binding_ended
from rmm_mp.hw.granule import backoff

if TYPE_CHECKING:
    from rmm_mp.host.nsalloc import NsAllocator
    from rmm_mp.machine import Machine

_B = OFF_HOST_RUN
_INIT, _LIVE, _ENQ, _DEQ = _B, _B + 0x08, _B + 0x40, _B + 0x80
OFF_ARRIVED = _B + 0x10
_SETTER = _B + 0x18
OFF_EXITS, MAX_CPUS, EXIT_SLOTS = _B + 0x100, 64, 8     # written by runloop.py
_RING, RING_SLOTS, _MASK = _B + 0x2000, 2048, 2047
_REALMS, REALM_BYTES = _B + 0xA000, 0x1000
MAX_REALMS = (HOST_RUN_BYTES - 0xA000) // REALM_BYTES
MAX_VCPUS = 32
"""vCPUs (RECs) per realm the host runs; vCPU id = realm slot * MAX_VCPUS + REC index."""
QUEUE_BYTES, MAX_QUEUES = 0x8100, 8
"""Bytes of queue k >= 1 (positions, then its ring), and how many queues there are (queue 0 included)."""
assert (MAX_QUEUES - 1) * QUEUE_BYTES <= HOST_QUEUES_BYTES


def _queue_offsets(k: int) -> tuple[int, int, int]:
    """(enqueue position, dequeue position, ring) of queue ``k``."""
    if k == 0:
        return _ENQ, _DEQ, _RING
    base = OFF_HOST_QUEUES + (k - 1) * QUEUE_BYTES
    return base, base + 0x40, base + 0x80


QUEUES = tuple(_queue_offsets(k) for k in range(MAX_QUEUES))

RELEASE_LOOK_EVERY = 64
"""Tries of a producer's wait for a cell's release between two asks whether to give up
(_check_release_wait: once the run is stopping, a /proc read per CPU)."""

_COUNTER_OFFSETS = {name: 8 * i for i, name in enumerate(COUNTERS)}
_ENTRIES, _MIGRATIONS = _COUNTER_OFFSETS["entries"], _COUNTER_OFFSETS["migrations"]
_U32 = 0xFFFF_FFFF


class RunQueueError(RuntimeError):
    """The host's run queue was used against its rules (a host bug, never a realm's doing)."""


class CapacityError(RunQueueError):
    """The run queue's shared tables have no room for the request."""


@dataclass(frozen=True)
class QueueStats:
    queued: int
    enqueued: int
    dequeued: int
    live_realms: int
    realms: int


class _VcpuOffsets(dict[int, int]):
    """vCPU -> offset of its entry in the control block, computed on first use (``__missing__``)
    and remembered."""

    def __missing__(self, vcpu: int) -> int:
        slot, index = divmod(vcpu, MAX_VCPUS)
        if not 0 <= slot < MAX_REALMS:
            raise RunQueueError(f"vCPU {vcpu}: no such vCPU (realm slot {slot} out of 0..{MAX_REALMS - 1})")
        off = self[vcpu] = _REALMS + slot * REALM_BYTES + R_VCPUS + index * VCPU_BYTES
        return off


class RunQueue:
    """One process's handle on the machine's run queue and realm table.

    Args:
        machine: a machine this process created or attached; the shared area is set up the
            first time any process makes a handle.
        serve: the queues this handle takes vCPUs from (0..MAX_QUEUES-1, each once), fixed for
            its life. A vCPU is requeued by the handle that took it: with one queue served, into
            that queue (no look-up: the run loop's fast path is the single-queue one); with
            several, into its realm's queue (R_QUEUE).
    """

    def __init__(self, machine: "Machine", serve: "Sequence[int]" = (0,)) -> None:
        serve = tuple(serve)
        if not serve or len(set(serve)) != len(serve) or not all(
                isinstance(k, int) and not isinstance(k, bool) and 0 <= k < MAX_QUEUES for k in serve):
            raise ValueError(f"serve = {serve!r}: expected run queues in 0..{MAX_QUEUES - 1}, at least one, each once")
        self.machine = machine
        self.view = machine.control.view
        self.buf = machine.control.buf
        self.serve = serve
        self._served = tuple(QUEUES[k] for k in serve)
        self._multi = len(serve) > 1
        self._next = 0
        self._enq, self._deq, self._ring = self._served[0]
        self._realms: dict[int, tuple[int, HostRealm]] = {}
        self._offsets = _VcpuOffsets()
        self._initialise()

    def _initialise(self) -> None:
        """Set the rings up once per machine; concurrent callers wait for the winner
        (setup_once.py: a winner that died is taken over)."""
        set_up_once(self.view, _INIT, _SETTER, self._set_up)

    def _set_up(self) -> None:
        """Every ring cell's sequence = its position (free for the first lap's producer):
        stores only, so a takeover may redo it."""
        view = self.view
        for _, _, ring in QUEUES:
            for i in range(RING_SLOTS):
                view.store_u64(ring + 16 * i, i)

    # -- the ring ---------------------------------------------------------------------------

    def _enqueue(self, vcpu: int, enq: int, deq: int, ring: int) -> None:
        """Put ``vcpu`` into the queue whose positions and ring are at ``enq``, ``deq``, ``ring``."""
        if points.hook is not None:
            points.hook(points.QUEUE, vcpu)
        view = self.view
        pos = view.load_u64(enq)
        while True:
            cell = ring + 16 * (pos & _MASK)
            seq = view.load_u64(cell)
            if seq == pos:
                prev = view.cas_u64(enq, pos, pos + 1)
                if prev == pos:
                    break
                pos = prev
            elif seq < pos:   # the cell's last consumer has not released it yet
                self._await_release(enq, deq, cell, pos)
                pos = view.load_u64(enq)
            else:
                pos = view.load_u64(enq)
        view.store_u64(cell + 8, vcpu)
        view.store_u64(cell, pos + 1)

    def _await_release(self, enq: int, deq: int, cell: int, pos: int) -> None:
        """Wait until ring position ``pos``'s cell is released by its consumer of the lap before,
        or another producer has claimed ``pos``. Backs off as a granule lock's waiter does
        (hw.granule.backoff): a consumer stopped (SIGSTOP) or descheduled between its claim and
        its release cost a producer that only yielded a host core all that time. Whether to give
        up (_check_release_wait) is asked at the first try, then every RELEASE_LOOK_EVERY tries
        (at most 32 ms apart once the wait sleeps): once the run is stopping it looks at every
        CPU's process. Off the fast path: an enqueue whose cell is free never comes here."""
        view = self.view
        tries = 0
        while view.load_u64(cell) < pos and view.load_u64(enq) == pos:
            if view.load_u64(enq) - view.load_u64(deq) >= RING_SLOTS:
                raise CapacityError(f"run queue ring is full ({RING_SLOTS} vCPUs queued): a vCPU was queued twice")
            if tries % RELEASE_LOOK_EVERY == 0:
                self._check_release_wait(pos)
            tries += 1
            backoff(tries)

    def _check_release_wait(self, pos: int) -> None:
        """Raise instead of waiting for ever for ring position ``pos``'s cell. Its consumer of
        the lap before releases it two stores after its claim, unless its process was killed in
        between: then the cell never comes free. The run's supervisor stops the run when a CPU
        process dies, so a producer still waiting once the run is stopping and a CPU process
        bound to the machine is gone (its binding's pid gone, or naming a process started at
        another time) gives up (a live consumer, only descheduled, is waited for)."""
        machine = self.machine
        if not machine.control.stop_requested:
            return
        for cpu in range(machine.cpus):
            area = machine.cpu_area(cpu)
            try:
                word = area.binding()
            finally:
                area.release()
            # The start time too: a dead CPU whose pid the OS gave to a new process looked alive.
            if word and binding_ended(word):
                # Which process claimed the cell is not recorded, so the message says what was
                # assumed rather than naming CPU n as the claimer; and no pid, which would make
                # the stress tool's finding text differ from run to run.
                raise RunQueueError(f"run queue position {pos}: gave up waiting for its cell to be released: the "
                                    f"run is stopping and CPU {cpu}'s process is gone, so the cell is taken to have "
                                    "been claimed by a CPU process that is gone, killed between taking a vCPU and "
                                    "releasing the cell (a live consumer would release it within two stores)")

    def _dequeue(self, deq: int, ring: int) -> int | None:
        view = self.view
        pos = view.load_u64(deq)
        while True:
            cell = ring + 16 * (pos & _MASK)
            seq = view.load_u64(cell)
            if seq == pos + 1:
                prev = view.cas_u64(deq, pos, pos + 1)
                if prev == pos:
                    break
                pos = prev
            elif seq < pos + 1:
                return None
            else:
                pos = view.load_u64(deq)
        vcpu = view.load_u64(cell + 8)
        view.store_u64(cell, pos + RING_SLOTS)
        return vcpu

    # -- vCPU transitions -------------------------------------------------------------------

    def _vcpu(self, vcpu: int) -> int:
        """Offset of the vCPU's entry. The methods below index ``_offsets`` themselves: every
        step of the run loop asks several times, and a subscript of a known vCPU makes no call."""
        return self._offsets[vcpu]

    def _take_turn(self) -> int | None:
        """A vCPU from the served queues, trying them in turn from the one after the queue last
        taken from (only for a handle serving several)."""
        served = self._served
        n = len(served)
        for i in range(n):
            k = (self._next + i) % n
            vcpu = self._dequeue(served[k][1], served[k][2])
            if vcpu is not None:
                self._next = (k + 1) % n
                return vcpu
        return None

    def vcpu_state(self, vcpu: int) -> int:
        return self.view.load_u32(self._offsets[vcpu] + VF_STATE)

    def vcpu_pages(self, vcpu: int) -> tuple[int, int]:
        """(REC PA, run page PA) of a vCPU."""
        off = self._offsets[vcpu]
        return self.view.load_u64(off + VF_REC), self.view.load_u64(off + VF_RUN)

    def start(self, vcpu: int, maybe_on: bool = False) -> bool:
        """Make a vCPU runnable: OFF -> QUEUED, RUNNING -> WOKEN; False if it is DONE.

        ``maybe_on``: the start follows a CPU_ON whose answer the host cannot see (PSCI_COMPLETE
        writes it into the caller): the RMM may have found the REC on (ALREADY_ON) and the vCPU
        may have turned itself off since, so an OFF vCPU is queued marked as woken, and
        ERROR_REC on its next entry means its REC is off (runloop.py), as for RUNNING -> WOKEN.
        """
        view, off = self.view, self._offsets[vcpu] + VF_STATE
        while True:
            state = view.load_u32(off)
            if state == V_DONE:
                return False
            if state in (V_QUEUED, V_WOKEN):
                return True
            if state == V_OFF and view.cas_u32(off, V_OFF, V_QUEUED) == V_OFF:
                if maybe_on:
                    view.store_u32(off - VF_STATE + VF_WOKEN, 1)
                self._realm_add(vcpu // MAX_VCPUS, R_ACTIVE, 1)
                self._enqueue(vcpu, *QUEUES[self.realm_queue(vcpu // MAX_VCPUS)])
                return True
            if state == V_RUNNING and view.cas_u32(off, V_RUNNING, V_WOKEN) == V_RUNNING:
                return True

    def take(self, cpu: int) -> int | None:
        """The next queued vCPU of the queues this handle serves, now RUNNING on CPU ``cpu``;
        None if they are empty."""
        if points.hook is not None:
            points.hook(points.QUEUE, cpu)
        vcpu = self._take_turn() if self._multi else self._dequeue(self._deq, self._ring)
        if vcpu is None:
            return None
        prev = self.view.cas_u32(self._offsets[vcpu] + VF_STATE, V_QUEUED, V_RUNNING)
        if prev != V_QUEUED:
            raise RunQueueError(f"vCPU {vcpu} came out of the queue in state {VCPU_STATES[prev]}, not QUEUED")
        return vcpu

    def ran_on(self, vcpu: int, cpu: int) -> None:
        """The vCPU's REC ran on CPU ``cpu`` (a REC_ENTER that entered the realm): the realm's
        entries count it (the run loop counts a failed REC_ENTER itself), the woken mark is
        cleared (take_woken), and if it last ran on another CPU, that is a migration of its
        realm. The migration is counted here, not when the vCPU is taken: a vCPU taken only to
        be drained (its realm went off) or whose entry failed did not run anywhere."""
        view, off, counters = self.view, self._offsets[vcpu], _REALMS + vcpu // MAX_VCPUS * REALM_BYTES + R_COUNTERS
        view.fetch_add_u64(counters + _ENTRIES, 1)
        view.exchange_u32(off + VF_WOKEN, 0)
        last = view.exchange_u32(off + VF_CPU, cpu + 1)
        if last != cpu + 1 and last:
            view.fetch_add_u64(counters + _MIGRATIONS, 1)

    def _leave_running(self, vcpu: int, to: int) -> int:
        """RUNNING or WOKEN -> ``to``; returns the state it left."""
        view, off = self.view, self._offsets[vcpu] + VF_STATE
        while True:
            state = view.load_u32(off)
            if state not in (V_RUNNING, V_WOKEN):
                raise RunQueueError(f"vCPU {vcpu} is {VCPU_STATES[state]}: only the CPU running it may put it back")
            if view.cas_u32(off, state, to) == state:
                return state

    def requeue(self, vcpu: int) -> None:
        """Put a vCPU that is still runnable, taken through this handle, back at the tail of its
        queue."""
        view, off = self.view, self._offsets[vcpu]
        if view.cas_u32(off + VF_STATE, V_RUNNING, V_QUEUED) != V_RUNNING:    # WOKEN, or misused
            if self._leave_running(vcpu, V_QUEUED) == V_WOKEN:
                view.store_u32(off + VF_WOKEN, 1)
        if self._multi:
            self._enqueue(vcpu, *QUEUES[self.realm_queue(vcpu // MAX_VCPUS)])
        else:
            self._enqueue(vcpu, self._enq, self._deq, self._ring)

    def stop(self, vcpu: int) -> None:
        """The vCPU turned itself off (PSCI CPU_OFF): OFF, or back in the queue if it was woken."""
        view, off = self.view, self._offsets[vcpu] + VF_STATE
        while True:
            state = view.load_u32(off)
            if state == V_RUNNING and view.cas_u32(off, V_RUNNING, V_OFF) == V_RUNNING:
                self._retire(vcpu // MAX_VCPUS)
                return
            if state == V_WOKEN:
                self.requeue(vcpu)
                return
            if state not in (V_RUNNING, V_WOKEN):
                raise RunQueueError(f"vCPU {vcpu} is {VCPU_STATES[state]}: only the CPU running it may stop it")

    def end(self, vcpu: int, reason: int) -> None:
        """The vCPU will not run again (VEND_*)."""
        self._leave_running(vcpu, V_DONE)
        self.view.store_u32(self._offsets[vcpu] + VF_END, reason)
        if reason == VEND_ERROR:
            self.count(vcpu // MAX_VCPUS, "vcpu_errors")
        self._retire(vcpu // MAX_VCPUS)

    def take_woken(self, vcpu: int) -> bool:
        """Whether the vCPU was requeued by a start while it ran; clears the mark."""
        return self.view.exchange_u32(self._offsets[vcpu] + VF_WOKEN, 0) != 0

    def enter_flags(self, vcpu: int) -> int:
        """The RmiRecEnter flags the vCPU's run page holds now (devices written by the host)."""
        return self.view.load_u32(self._offsets[vcpu] + VF_FLAGS)

    def set_enter_flags(self, vcpu: int, flags: int) -> None:
        self.view.store_u32(self._offsets[vcpu] + VF_FLAGS, flags)

    def _retire(self, slot: int) -> None:
        """One fewer active vCPU; the last one marks the realm DONE."""
        if self._realm_add(slot, R_ACTIVE, -1) != 1:
            return
        base = _REALMS + slot * REALM_BYTES
        # A realm off with no reason yet: only a SYSTEM_OFF race saw it (its caller's exit was
        # never handled).
        end = END_ERROR if self.counter(slot, "vcpu_errors") else \
            END_SYSTEM_OFF if self.view.load_u32(base + R_STATE) == SYSTEM_OFF else END_ALL_OFF
        self.view.cas_u32(base + R_END, END_NONE, end)
        self.view.store_u32(base + R_STATE, DONE)
        self.view.fetch_sub_u64(_LIVE, 1)

    # -- realms --------------------------------------------------------------------------------

    def add_realm(self, alloc: "NsAllocator", realm: HostRealm, *, vcpus: int | None = None,
                  shared: tuple[tuple[int, int], ...] | None = None, queue: int = 0) -> int:
        """Register an active realm: a zeroed run page per REC, then REC 0 queued.

        Args:
            alloc: where the run pages come from (they go back in release_realm).
            vcpus: how many of its RECs the host will run (default all); a CPU_ON naming any
                other REC is answered DENIED.
            shared: unprotected IPA ranges (base, size) the host backs with NS pages when the
                realm touches them (default: the unprotected alias of the realm's RAM).
            queue: the run queue its vCPUs go into (0..MAX_QUEUES-1): only handles serving it
                run them.

        Returns:
            The realm's slot in the table.

        Raises:
            CapacityError when the table is full or the realm has more than MAX_VCPUS RECs.
        """
        recs = len(realm.recs)
        if recs > MAX_VCPUS:
            raise CapacityError(f"realm {realm.rd:#x} has {recs} RECs; the run queue runs at most {MAX_VCPUS} "
                                f"per realm")
        offered = recs if vcpus is None else vcpus
        if not 0 <= offered <= recs:
            raise ValueError(f"vcpus = {vcpus!r}: expected 0..{recs} (the realm's RECs)")
        if isinstance(queue, bool) or not isinstance(queue, int) or not 0 <= queue < MAX_QUEUES:
            raise ValueError(f"queue = {queue!r}: expected a run queue in 0..{MAX_QUEUES - 1}")
        ranges = ((realm.par_size + realm.ram[0], realm.ram[1]),) if shared is None else tuple(shared)
        if len(ranges) > MAX_SHARED_RANGES:
            raise CapacityError(f"{len(ranges)} shared ranges: the realm table holds at most {MAX_SHARED_RANGES}")
        slot = self._claim_slot()
        base = _REALMS + slot * REALM_BYTES
        pages: list[int] = []
        try:
            for _ in range(recs):
                pages.append(alloc.alloc())
                self.machine.ns_write(pages[-1], bytes(GRANULE))
        except BaseException:
            for pa in pages:
                alloc.free(pa)
            self.view.store_u32(base + R_STATE, FREE)
            raise
        self._fill(base, realm, offered, ranges, pages, queue)
        self.view.fetch_add_u64(_LIVE, 1)
        self.view.store_u32(base + R_STATE, RUNNING)
        if offered:
            self.start(slot * MAX_VCPUS)
        else:
            self._realm_add(slot, R_ACTIVE, 1)
            self._retire(slot)
        return slot

    def _claim_slot(self) -> int:
        for slot in range(MAX_REALMS):
            if self.view.cas_u32(_REALMS + slot * REALM_BYTES + R_STATE, FREE, SETUP) == FREE:
                return slot
        raise CapacityError(f"the realm table is full ({MAX_REALMS} realms registered): release finished realms "
                            f"with RunQueue.release_realm after destroying them")

    def _fill(self, base: int, realm: HostRealm, offered: int, ranges: tuple[tuple[int, int], ...],
              pages: list[int], queue: int) -> None:
        buf = self.buf
        buf[base + 0x18:base + REALM_BYTES] = bytes(REALM_BYTES - 0x18)
        struct.pack_into("<7I", buf, base + R_IPA_WIDTH, realm.ipa_width, realm.start_level & _U32, realm.num_roots,
                         realm.vmid, realm.hash_algo, realm.num_aux, len(ranges))
        struct.pack_into("<I", buf, base + R_QUEUE, queue)
        struct.pack_into("<4Q", buf, base + R_RD, realm.rd, realm.rtt_base, *realm.ram)
        for i, (ipa, size) in enumerate(ranges):
            struct.pack_into("<2Q", buf, base + R_SHARED + 16 * i, ipa, size)
        for i, rec in enumerate(realm.recs):
            struct.pack_into("<IIQQIII", buf, base + R_VCPUS + i * VCPU_BYTES, V_OFF, 0, rec.rec, pages[i], 0, 0, 0)
        struct.pack_into("<3I", buf, base + R_RECS, len(realm.recs), offered, 0)
        struct.pack_into("<I", buf, base + R_END, END_NONE)
        self.view.fetch_add_u32(base + R_GEN, 1)

    def release_realm(self, alloc: "NsAllocator", slot: int) -> None:
        """Free a DONE realm's run pages and the NS pages mapped into it, and its slot. Call it
        after destroy_realm, which unmaps those pages from the realm."""
        base = self.realm_offset(slot)
        state = self.view.load_u32(base + R_STATE)
        if state != DONE:
            raise RunQueueError(f"realm slot {slot} is {REALM_STATES[state]}: only a DONE realm can be released")
        for i in range(self.view.load_u32(base + R_RECS)):
            alloc.free(self.view.load_u64(base + R_VCPUS + i * VCPU_BYTES + VF_RUN))
        for _, pa in self.shared_pages(slot):
            alloc.free(pa)
        self.view.store_u32(base + R_STATE, FREE)

    def realm_offset(self, slot: int) -> int:
        """Offset of the realm's entry in the control block (devices.py stores its registers there)."""
        if not 0 <= slot < MAX_REALMS:
            raise RunQueueError(f"realm slot {slot}: expected 0..{MAX_REALMS - 1}")
        return _REALMS + slot * REALM_BYTES

    def realm(self, slot: int) -> HostRealm:
        """The realm in ``slot`` as a HostRealm (RECs without their aux granules: for running,
        not for teardown); cached per process until the slot is reused."""
        base = self.realm_offset(slot)
        gen = self.view.load_u32(base + R_GEN)
        cached = self._realms.get(slot)
        if cached is not None and cached[0] == gen:
            return cached[1]
        width, level, roots, vmid, algo, aux, _ = struct.unpack_from("<7I", self.buf, base + R_IPA_WIDTH)
        rd, rtt_base, ram_base, ram_size = struct.unpack_from("<4Q", self.buf, base + R_RD)
        recs = tuple(HostRec(self.view.load_u64(base + R_VCPUS + i * VCPU_BYTES + VF_REC), (), rec_index_to_mpidr(i))
                     for i in range(self.view.load_u32(base + R_RECS)))
        realm = HostRealm(rd, rtt_base, roots, level - (1 << 32) if level >> 31 else level, width, vmid, algo, aux,
                          recs, ram=(ram_base, ram_size))
        self._realms[slot] = (gen, realm)
        return realm

    def realm_state(self, slot: int) -> int:
        """RUNNING, SYSTEM_OFF, DONE (or FREE, SETUP for an unused slot)."""
        return self.view.load_u32(_REALMS + slot * REALM_BYTES + R_STATE)

    def realm_queue(self, slot: int) -> int:
        """The run queue the realm's vCPUs go into (add_realm's ``queue``)."""
        return self.view.load_u32(_REALMS + slot * REALM_BYTES + R_QUEUE)

    def offered(self, slot: int) -> int:
        """How many of the realm's RECs (REC 0 upwards) the host runs."""
        return self.view.load_u32(_REALMS + slot * REALM_BYTES + R_OFFERED)

    def shared_ranges(self, slot: int) -> tuple[tuple[int, int], ...]:
        base = self.realm_offset(slot)
        count = self.view.load_u32(base + R_NSHARED)
        return tuple(struct.unpack_from("<2Q", self.buf, base + R_SHARED + 16 * i) for i in range(count))

    def system_off(self, slot: int, reason: int) -> None:
        """The realm turned itself off (END_SYSTEM_OFF / END_SYSTEM_RESET, or END_NONE when the
        host cannot tell which: the reason stays for the call's own exit to give): its vCPUs drain."""
        base = _REALMS + slot * REALM_BYTES
        self.view.cas_u32(base + R_END, END_NONE, reason)
        self.view.cas_u32(base + R_STATE, RUNNING, SYSTEM_OFF)

    @property
    def live_realms(self) -> int:
        """Realms registered and not DONE."""
        return self.view.load_u64(_LIVE)

    # -- counters and records ----------------------------------------------------------------

    def _realm_add(self, slot: int, field: int, delta: int) -> int:
        return self.view.fetch_add_u32(_REALMS + slot * REALM_BYTES + field, delta & _U32)

    def count(self, slot: int, name: str, n: int = 1) -> None:
        self.view.fetch_add_u64(_REALMS + slot * REALM_BYTES + R_COUNTERS + _COUNTER_OFFSETS[name], n)

    def counter(self, slot: int, name: str) -> int:
        return self.view.load_u64(_REALMS + slot * REALM_BYTES + R_COUNTERS + 8 * C[name])

    def add_shared_page(self, slot: int, ipa: int, pa: int) -> bool:
        """Remember an NS page mapped at ``ipa`` (freed by release_realm); False if the list is full."""
        off = _REALMS + slot * REALM_BYTES + R_PAGES
        n = self.view.fetch_add_u64(off, 1)
        if n >= MAX_SHARED_PAGES:
            self.view.fetch_sub_u64(off, 1)
            return False
        struct.pack_into("<2Q", self.buf, off + 8 + 16 * n, ipa, pa)
        return True

    def shared_pages(self, slot: int) -> tuple[tuple[int, int], ...]:
        off = _REALMS + slot * REALM_BYTES + R_PAGES
        count = min(self.view.load_u64(off), MAX_SHARED_PAGES)
        return tuple(struct.unpack_from("<2Q", self.buf, off + 8 + 16 * i) for i in range(count))

    def statistics(self) -> QueueStats:
        """Positions summed over every queue (not only those this handle serves)."""
        enq = sum(self.view.load_u64(e) for e, _, _ in QUEUES)
        deq = sum(self.view.load_u64(d) for _, d, _ in QUEUES)
        realms = sum(self.realm_state(s) != FREE for s in range(MAX_REALMS))
        return QueueStats(enq - deq, enq, deq, self.live_realms, realms)
