"""Per-CPU shared areas: binding, current call, saved world contexts, counters, statistics.

Each CPU has an area of ``area_size`` bytes in the ``cpus`` segment, 4 KiB aligned, so that no
two CPUs share a cache line. Layout (offsets in the area):

    0x000  binding: one u64 word, pid in bits [31:0] and the process start time in units of
           10 ms (mod 2^32) in bits [63:32], so that a claim is a single compare-and-swap
    0x040  current call: in_call u32, fid u64, x1..x6 u64                  (for reports)
    0x100  saved Non-secure context: X0..X30 (EL3 saves it on every switch)
    0x200  saved Realm context: X0..X30
    0x300  lock statistics: contended, wait_ns, max_wait_ns, max_wait_idx  (own cache line)
    0x340  activity counters: 8 u64, written by the workload running on the CPU
    0x380  realm execution: RD PA | 1 of the realm this CPU executes (0: none; bit 0 set so that
           an RD at PA 0 is not "none"), the realm TLB and GPT generations it has seen (hw.tlb)
                                                                              (own cache line)
    0x400  lock statistics per lock class (16 classes): acquired, contended, wait_ns,
           max_wait_ns, u64 each (512 bytes; published by the CPU's EL3 with the histograms)
    0x600  stress watch, written only while the stress tool runs (rmm_mp.stress): waiting-for
           u32 (granule index + 1 of the lock this CPU spins on, 0 none), in-RSI u32, spins
           of the current wait u64, RMI calls started u64, RSI fid u64 and X1..X3 u64 each
           (the realm call in progress inside REC_ENTER)                      (own cache line)
    0x640  lock-order edges seen by this CPU: 16 x 16 bits, row = class held, bit = class
           taken (32 bytes; rmm_mp.stress.lockdep owns the class numbering)
    0x800  lifecycle tally, written only by `rmm-mp run`'s CPUs (rmm_mp.workload.cpustate):
           per lifecycle instance the CPU owns (LIFECYCLE_KEYS entries, in its CpuPart's order),
           generations it started to build, instances it tore down that were ok and that
           failed, and attestation tokens it saved (--save-tokens) in the low 32 bits with
           those it could not write in the high 32 (LIFECYCLE_UNSAVED_SHIFT), u64 each
           (2 KiB, to 0xFFF);
           published as it goes, so that the parent can count what a CPU that returned no
           result (killed) had done
    0x1000 statistics region (latency histograms, rmm_mp.stats.histogram)

The current call (0x040) is written by EL3 only when the stress tool asks for it
(el3.monitor.Monitor.smc_from_ns_published): in_call is 1 from entry to a normal return and
stays 1 when the RMM crashes, so a report names the call a dead or stuck CPU was in.

This module owns the area layout. It must not interpret the histograms it makes room for.
"""

from __future__ import annotations

import struct

import atomicshm

from rmm_mp.hw import process

HW_PART = 0x1000
OFF_BIND = 0x000
OFF_CALL = 0x040
OFF_NS_CTX = 0x100
OFF_REALM_CTX = 0x200
OFF_LOCK_STATS = 0x300
OFF_COUNTERS = 0x340
COUNTERS = 8
OFF_EXEC_RD = 0x380
OFF_SEEN_TLB = 0x388
OFF_SEEN_GPT = 0x390
OFF_LOCK_CLASSES = 0x400
LOCK_CLASS = struct.Struct("<4Q")
OFF_WAITING_FOR = 0x600
OFF_IN_RSI = 0x604
OFF_WAIT_SPINS = 0x608
OFF_CALLS_STARTED = 0x610
OFF_RSI_CALL = 0x618
RSI_CALL = struct.Struct("<4Q")
OFF_LOCK_EDGES = 0x640
LOCK_EDGES = struct.Struct("<16H")
OFF_LIFECYCLE = 0x800
LIFECYCLE_KEYS = 64
"""Entries of the lifecycle tally: more than the run queue's realms (54), so every lifecycle
instance a CPU can own has one."""
LIFECYCLE_FIELDS = 4
LIFECYCLE_TOKENS = 3
LIFECYCLE_UNSAVED_SHIFT = 32
"""Field LIFECYCLE_TOKENS holds two counts, so that both are published in one atomic store
(and the 64 entries keep their 32 bytes): tokens saved in bits 0..31, tokens whose file could
not be written from bit 32 (a CPU makes far fewer than 2^32 of either)."""
LIFECYCLE_ENTRY = 8 * LIFECYCLE_FIELDS
assert OFF_LIFECYCLE + LIFECYCLE_KEYS * LIFECYCLE_ENTRY <= HW_PART, "the lifecycle tally overruns the statistics"
OFF_STATS = HW_PART

CALL = struct.Struct("<IxxxxQ6Q")
CONTEXT_REGS = 31
LOCK_STATS = struct.Struct("<4Q")


def binding_word(pid: int, start_ms: int) -> int:
    """The binding word naming process (pid, start time)."""
    return (pid & 0xFFFF_FFFF) | (((start_ms // 10) & 0xFFFF_FFFF) << 32)


def binding_matches(word: int, start_ms: int | None) -> bool:
    """Whether a binding word's start time is that of a process that started at start_ms."""
    return start_ms is not None and (word >> 32) == ((start_ms // 10) & 0xFFFF_FFFF)


def binding_ended(word: int) -> bool:
    """Whether the process a binding word names has certainly ended: no word (0), no such
    process, a zombie, or its pid now names a process started at another time. A start part of
    0 (the process could not read its own start time, process.own_start_ms) leaves the pid alone
    to decide; in doubt (it cannot be looked at) the process lives."""
    return word == 0 or process.ended(word & 0xFFFF_FFFF,
                                      lambda start_ms: word >> 32 == 0 or binding_matches(word, start_ms))


def area_size(stats_bytes: int) -> int:
    """Bytes per CPU area holding a statistics region of ``stats_bytes``, page aligned."""
    return HW_PART + ((stats_bytes + 0xFFF) & ~0xFFF)


class CpuArea:
    """One CPU's area inside the shared ``cpus`` segment."""

    __slots__ = ("cpu", "buf", "view", "base")

    def __init__(self, cpu: int, segment_buf: memoryview, view: atomicshm.AtomicView, size: int) -> None:
        self.cpu = cpu
        self.base = cpu * size
        self.buf = segment_buf[self.base:self.base + size]
        self.view = view

    def release(self) -> None:
        self.buf.release()

    # -- binding (atomic: any process may try to claim a CPU) ---------------------------

    def binding(self) -> int:
        """The binding word (0 = free; see binding_word)."""
        return self.view.load_u64(self.base + OFF_BIND)

    def claim(self, expected: int, word: int) -> bool:
        """Atomically move the binding from ``expected`` (0 = free) to ``word``."""
        return self.view.cas_u64(self.base + OFF_BIND, expected, word) == expected

    def release_binding(self, word: int) -> None:
        self.view.cas_u64(self.base + OFF_BIND, word, 0)

    # -- counters -----------------------------------------------------------------------

    def counters(self) -> list[int]:
        return list(struct.unpack_from(f"<{COUNTERS}Q", self.buf, OFF_COUNTERS))

    def current_call(self) -> tuple[int, int, tuple[int, ...]]:
        """(in_call, fid, (x1..x6)) as last published by the CPU."""
        in_call, fid, *args = CALL.unpack_from(self.buf, OFF_CALL)
        return in_call, fid, tuple(args)

    def waiting_for(self) -> int:
        """Granule index of the lock this CPU spins on, or -1 (published by the stress tool)."""
        return self.view.load_u32(self.base + OFF_WAITING_FOR) - 1

    def wait_spins(self) -> int:
        return self.view.load_u64(self.base + OFF_WAIT_SPINS)

    def calls_started(self) -> int:
        """RMI calls this CPU has entered while its calls were published."""
        return self.view.load_u64(self.base + OFF_CALLS_STARTED)

    def rsi_call(self) -> tuple[int, int, tuple[int, ...]]:
        """(in_rsi, fid, (x1..x3)) of the realm call in progress, as last published."""
        fid, *args = RSI_CALL.unpack_from(self.buf, OFF_RSI_CALL)
        return self.view.load_u32(self.base + OFF_IN_RSI), fid, tuple(args)

    def lock_edges(self) -> tuple[int, ...]:
        """The 16 rows of this CPU's lock-order edge matrix."""
        return LOCK_EDGES.unpack_from(self.buf, OFF_LOCK_EDGES)

    def lock_stats(self) -> tuple[int, int, int, int]:
        return LOCK_STATS.unpack_from(self.buf, OFF_LOCK_STATS)

    def lock_class_stats(self, classes: int) -> list[tuple[int, int, int, int]]:
        """Per lock class: (acquired, contended, wait_ns, max_wait_ns) as last published."""
        return [LOCK_CLASS.unpack_from(self.buf, OFF_LOCK_CLASSES + 32 * c) for c in range(classes)]

    # -- lifecycle tally (rmm-mp run) ---------------------------------------------------

    def publish_lifecycle(self, entry: int, field: int, value: int) -> None:
        """Store ``value`` in field ``field`` (0 built, 1 torn down ok, 2 torn down failed, 3
        tokens saved and not written, LIFECYCLE_UNSAVED_SHIFT) of tally entry ``entry``: one
        atomic u64 store, so a reader after the CPU's death never sees a value half written."""
        if not 0 <= entry < LIFECYCLE_KEYS or not 0 <= field < LIFECYCLE_FIELDS:
            raise ValueError(f"lifecycle tally entry {entry}, field {field}: expected entry 0..{LIFECYCLE_KEYS - 1} "
                             f"and field 0..{LIFECYCLE_FIELDS - 1}")
        self.view.store_u64(self.base + OFF_LIFECYCLE + LIFECYCLE_ENTRY * entry + 8 * field, value)

    def lifecycle_tally(self, entries: int) -> list[tuple[int, ...]]:
        """The first ``entries`` entries of the lifecycle tally: (built, torn down ok, torn down
        failed, tokens saved and not written) each, as last published (LIFECYCLE_UNSAVED_SHIFT)."""
        base = self.base + OFF_LIFECYCLE
        return [tuple(self.view.load_u64(base + LIFECYCLE_ENTRY * e + 8 * f) for f in range(LIFECYCLE_FIELDS))
                for e in range(min(entries, LIFECYCLE_KEYS))]

    def stats_region(self) -> memoryview:
        return self.buf[OFF_STATS:]
