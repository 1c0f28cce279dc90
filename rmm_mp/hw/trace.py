"""Per-CPU trace ring buffers in shared memory: a bounded timeline of what each CPU did.

Each CPU owns a region of the ``trace`` segment: a 64-byte header (u64 head: records written so
far) and ``capacity`` 32-byte records, overwritten oldest first, so a long run keeps its last
``capacity`` events per CPU and the file stays bounded. A record:

    u64 start (perf_counter_ns), u64 duration (ns), u16 kind, u16 code, u32 0, u64 arg

Kinds: RMI call (code = statistics slot, arg = X1), RSI or PSCI call (code = slot, arg = X1),
REC run (code = exit reason, arg = REC PA), lock wait (code = lock class, arg = granule PA).
Only the owning CPU writes its region; any process may read it (stats.trace turns it into a
Trace Event Format timeline). Nothing is recorded unless a CPU's tracing is switched on.

This module owns the ring layout. It must not interpret codes.
"""

from __future__ import annotations

import struct

HEADER = 64
RECORD = struct.Struct("<QQHHIQ")
RECORD_SIZE = RECORD.size
KIND_RMI, KIND_RSI, KIND_REC_RUN, KIND_LOCK_WAIT = 1, 2, 3, 4
DEFAULT_CAPACITY = 1 << 16
_HEAD = struct.Struct("<Q")


def region_size(capacity: int) -> int:
    """Bytes of one CPU's ring with ``capacity`` records, page aligned."""
    return (HEADER + capacity * RECORD_SIZE + 0xFFF) & ~0xFFF


class Tracer:
    """The writer of one CPU's ring."""

    __slots__ = ("buf", "capacity", "head")

    def __init__(self, region: memoryview, capacity: int) -> None:
        self.buf = region
        self.capacity = capacity
        self.head = _HEAD.unpack_from(region, 0)[0]

    def record(self, kind: int, code: int, start: int, duration: int, arg: int) -> None:
        head = self.head
        RECORD.pack_into(self.buf, HEADER + (head % self.capacity) * RECORD_SIZE, start, duration, kind, code, 0,
                         arg & 0xFFFF_FFFF_FFFF_FFFF)
        self.head = head + 1
        _HEAD.pack_into(self.buf, 0, head + 1)

    def release(self) -> None:
        self.buf.release()

    def lock_wait(self, start_ns: int, waited_ns: int, cls: int, pa: int) -> None:
        self.record(KIND_LOCK_WAIT, cls, start_ns, waited_ns, pa)


def read_ring(region: memoryview, capacity: int) -> list[tuple[int, int, int, int, int]]:
    """(start, duration, kind, code, arg) of every record still in a ring, oldest first."""
    head = _HEAD.unpack_from(region, 0)[0]
    first = max(0, head - capacity)
    out = []
    for n in range(first, head):
        start, duration, kind, code, _, arg = RECORD.unpack_from(region, HEADER + (n % capacity) * RECORD_SIZE)
        out.append((start, duration, kind, code, arg))
    return out
