"""The machine control block: the one shared page every process reads first.

Layout of the ``ctl`` segment (little-endian; 1 MiB, sparse):

    0x0000  magic "RMMMPCTL", layout version u32, cpus u32
    0x0010  creator pid u32, 0 u64 (layouts up to 4 kept the creator's wall-clock start time
            here; a 0 makes their orphan check, which reads this word whatever the layout, go by
            the pid alone rather than take a live machine of this layout for an orphan)
    0x0020  per-CPU area size u64, platform JSON length u32
    0x0030  creator start time, ms since boot u64 (hw.process: no clock step moves it)
    0x0040  dead flag u32 (0 alive, 1 dead), dead reason length u32
    0x0080  run control: stop flag u32
    0x00C0  invalidation: GPT generation u64, CPUs executing realm code u64, stage-2 epoch u64
            (the realms destroyed so far) (hw.tlb)
    0x0100  REC time slice: guest instructions a REC runs before an IRQ exit u64
    0x0108  trace ring capacity per CPU (records) u64 (hw.trace)
    0x0110  ready u32: 1 once Machine.create has made the whole machine (attach refuses it before)
    0x0140  quiescent points: 8 requester deadlines u64, participant table entries in use u32
            (hw.quiesce)
    0x1000  dead reason, UTF-8 (4 KiB)
    0x2000  platform description as JSON (24 KiB)
    0x8000  VMID bitmap, 65,536 bits (8 KiB), for the RMM
    0x10000 host: VMID bitmap, 65,536 bits (8 KiB) (the hypervisor's own VMID allocator)
    0x12000 host: allocator state (hints, counters; 8 KiB)
    0x20000 host: NS granule allocation bitmap, one bit per DRAM granule (128 KiB: 4 GiB of DRAM)
    0x40000 host: vCPU run queue and realm table (256 KiB; rmm_mp.host owns the layout)
    0x80000 quiescent points: participant table, 1,024 entries of 16 bytes (process word u64,
            parked u32, reserved u32; hw.quiesce)
    0x84000 host: run queues 1..7, for realms that run on some CPUs only (240 KiB; rmm_mp.host)
    0xC0000 reserved for later shared structures (trace buffers, checkers)

The host areas are Normal-world bookkeeping that every CPU's host shares; they live here rather
than in simulated DRAM so that a host bug cannot corrupt them through the RMM's own memory.

This module owns the control block's layout and its atomic words. It must not know what a
realm is (the VMID bitmap is storage lent to the RMM).
"""

from __future__ import annotations

import os
import struct
import time

import atomicshm

MAGIC = b"RMMMPCTL"
LAYOUT_VERSION = 6
SIZE = 1 << 20

_HEADER = struct.Struct("<8sII")
_CREATOR = struct.Struct("<IxxxxQ")
_AREA = struct.Struct("<QI")
OFF_CREATOR = 0x10
OFF_AREA = 0x20
OFF_CREATOR_START = 0x30
OFF_DEAD = 0x40
OFF_DEAD_LEN = 0x44
OFF_STOP = 0x80
OFF_GPT_GENERATION = 0xC0
OFF_EXECUTING = 0xC8
OFF_STAGE2_EPOCH = 0xD0
OFF_TIME_SLICE = 0x100
OFF_TRACE_CAPACITY = 0x108
OFF_READY = 0x110
OFF_QUIESCE_SLOTS, QUIESCE_SLOTS = 0x140, 8
OFF_QUIESCE_USED = 0x180
OFF_REASON, REASON_MAX = 0x1000, 0x1000
REASON_WAIT_S = 1.0
"""How long dead_reason waits for a crash being recorded (a few stores away, unless the
recording CPU died between them)."""
UNRECORDED_REASON = "(the crashing CPU has not recorded its reason; it may have died doing so)"
"""dead_reason once REASON_WAIT_S has passed with the crash still being recorded."""
OFF_PLATFORM, PLATFORM_MAX = 0x2000, 0x6000
OFF_VMID_BITMAP, VMID_BITMAP_BYTES = 0x8000, 0x2000
OFF_HOST_VMIDS, HOST_VMIDS_BYTES = 0x10000, 0x2000
OFF_HOST_ALLOC_STATE, HOST_ALLOC_STATE_BYTES = 0x12000, 0x2000
OFF_HOST_GRANULES, HOST_GRANULES_BYTES = 0x20000, 0x20000
OFF_HOST_RUN, HOST_RUN_BYTES = 0x40000, 0x40000
OFF_PARTICIPANTS, PARTICIPANTS_MAX, PARTICIPANT_SIZE = 0x80000, 1024, 16
OFF_HOST_QUEUES, HOST_QUEUES_BYTES = 0x84000, 0x3C000
"""The host's run queues other than queue 0 (host/runqueue.py: one per realm CPU set)."""
OFF_FREE = 0xC0000


class Control:
    """Typed access to one machine's control block."""

    __slots__ = ("buf", "view")

    def __init__(self, buf: memoryview, view: atomicshm.AtomicView) -> None:
        self.buf = buf
        self.view = view

    def initialise(self, cpus: int, creator_pid: int, creator_start_ms: int, area_size: int,
                   platform_json: str) -> None:
        data = platform_json.encode()
        if len(data) > PLATFORM_MAX:
            raise ValueError(f"platform description is {len(data)} bytes as JSON; at most {PLATFORM_MAX} fit")
        _HEADER.pack_into(self.buf, 0, MAGIC, LAYOUT_VERSION, cpus)
        _CREATOR.pack_into(self.buf, OFF_CREATOR, creator_pid, 0)
        struct.pack_into("<Q", self.buf, OFF_CREATOR_START, creator_start_ms)
        _AREA.pack_into(self.buf, OFF_AREA, area_size, len(data))
        self.buf[OFF_PLATFORM:OFF_PLATFORM + len(data)] = data

    @property
    def ready(self) -> bool:
        """Whether the creator has finished making the machine (set last by Machine.create)."""
        return self.view.load_u32(OFF_READY) != 0

    def set_ready(self) -> None:
        self.view.store_u32(OFF_READY, 1)

    def check_magic(self) -> None:
        """A control block of this layout; else ValueError saying whether it is none at all or
        one another rmm-mp version made (whose shared areas lie elsewhere: reading it as this
        layout would take its bytes for other structures)."""
        magic, version, _ = _HEADER.unpack_from(self.buf, 0)
        if magic != MAGIC:
            raise ValueError(f"not an rmm-mp machine: its control block starts with {magic!r}, not {MAGIC!r}")
        if version != LAYOUT_VERSION:
            raise ValueError(f"made by another rmm-mp version: its control block has layout {version}, and this "
                             f"rmm-mp reads layout {LAYOUT_VERSION} only; use the rmm-mp that made it (`rmm-mp "
                             f"clean` removes it once its creator has exited)")

    @property
    def cpus(self) -> int:
        return _HEADER.unpack_from(self.buf, 0)[2]

    @property
    def creator(self) -> tuple[int, int]:
        """(pid, start time in ms since boot) of the creating process."""
        return _CREATOR.unpack_from(self.buf, OFF_CREATOR)[0], struct.unpack_from("<Q", self.buf, OFF_CREATOR_START)[0]

    @property
    def area_size(self) -> int:
        return _AREA.unpack_from(self.buf, OFF_AREA)[0]

    def platform_json(self) -> str:
        length = _AREA.unpack_from(self.buf, OFF_AREA)[1]
        return bytes(self.buf[OFF_PLATFORM:OFF_PLATFORM + length]).decode()

    @property
    def time_slice(self) -> int:
        return self.view.load_u64(OFF_TIME_SLICE)

    def set_time_slice(self, instructions: int) -> None:
        self.view.store_u64(OFF_TIME_SLICE, instructions)

    @property
    def trace_capacity(self) -> int:
        return self.view.load_u64(OFF_TRACE_CAPACITY)

    def set_trace_capacity(self, records: int) -> None:
        self.view.store_u64(OFF_TRACE_CAPACITY, records)

    # -- dead flag: set once, by whoever sees the RMM crash ---------------------------

    @property
    def dead(self) -> bool:
        return self.view.load_u32(OFF_DEAD) != 0

    def mark_dead(self, reason: str) -> None:
        """Record the first crash; later crashes keep the first reason."""
        if self.view.cas_u32(OFF_DEAD, 0, 2) != 0:
            return
        data = reason.encode()[:REASON_MAX]
        self.buf[OFF_REASON:OFF_REASON + len(data)] = data
        self.view.store_u32(OFF_DEAD_LEN, len(data))
        self.view.store_u32(OFF_DEAD, 1)

    def dead_reason(self) -> str:
        """The first crash's reason ("" while the machine lives). A crash that another CPU is
        still recording (state 2: claimed, reason not yet written) is waited for, up to
        REASON_WAIT_S: otherwise a CPU calling smc in that window raised RmmInternalError with an
        empty message."""
        state = self.view.load_u32(OFF_DEAD)
        if state == 0:
            return ""
        if state == 2:
            deadline = time.monotonic() + REASON_WAIT_S
            while (state := self.view.load_u32(OFF_DEAD)) == 2:
                if time.monotonic() > deadline:
                    return UNRECORDED_REASON
                os.sched_yield()
        length = self.view.load_u32(OFF_DEAD_LEN)
        return bytes(self.buf[OFF_REASON:OFF_REASON + length]).decode(errors="replace")

    # -- run control ---------------------------------------------------------------------

    @property
    def stop_requested(self) -> bool:
        return self.view.load_u32(OFF_STOP) != 0

    def request_stop(self) -> None:
        self.view.store_u32(OFF_STOP, 1)

    def clear_stop(self) -> None:
        self.view.store_u32(OFF_STOP, 0)
