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
    0x380  realm execution: RD PA of the realm this CPU executes (0: none), the realm TLB and
           GPT generations it has seen (hw.tlb)                               (own cache line)
    0x400  lock statistics per lock class (16 classes): acquired, contended, wait_ns,
           max_wait_ns, u64 each (512 bytes; published by the CPU's EL3 with the histograms)
    0x1000 statistics region (latency histograms, rmm_mp.stats.histogram)

This module owns the area layout. It must not interpret the histograms it makes room for.
"""

from __future__ import annotations

import struct

import atomicshm

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

    def lock_stats(self) -> tuple[int, int, int, int]:
        return LOCK_STATS.unpack_from(self.buf, OFF_LOCK_STATS)

    def lock_class_stats(self, classes: int) -> list[tuple[int, int, int, int]]:
        """Per lock class: (acquired, contended, wait_ns, max_wait_ns) as last published."""
        return [LOCK_CLASS.unpack_from(self.buf, OFF_LOCK_CLASSES + 32 * c) for c in range(classes)]

    def stats_region(self) -> memoryview:
        return self.buf[OFF_STATS:]
