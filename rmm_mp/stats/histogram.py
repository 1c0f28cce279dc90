"""Per-CPU, per-call latency histograms with log-linear buckets.

Layout of one CPU's statistics region (in its per-CPU shared area): SLOTS slots of SLOT_BYTES,
each a 64-byte header of u64 counters followed by BUCKETS u64 bucket counts.

    header: count, sum_ns, max_ns, el3_ns, handler_ns, lockwait_ns, errors, flushes

Buckets: values below 64 ns have a bucket each; above, each power of two is split into 32
buckets (relative width at most 1/32, about 3 %). Values of 2^41 ns (about 37 minutes) and more
share the last bucket; max_ns is exact.

Recording happens in the CPU's own process into plain Python lists (a list item update costs
less than half of a shared-memory one) and is copied into the shared region at most every
FLUSH_INTERVAL_NS and at the end of a run, so a reader sees figures at most that old.
Percentiles are reported as the upper edge of the bucket that holds them, capped at the exact
maximum: a conservative figure, never below the true value.

This module owns the bucket math and the shared layout. It must not know what the slots mean.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from rmm_mp.stats.calls import SLOTS

SUB_BITS = 5
LINEAR = 1 << (SUB_BITS + 1)  # 64 exact buckets
MAX_EXP = 35
BUCKETS = ((MAX_EXP + 1) << SUB_BITS) + (1 << SUB_BITS)  # 1184
HEADER_Q = 8
SLOT_Q = HEADER_Q + BUCKETS
SLOT_BYTES = SLOT_Q * 8
REGION_BYTES = SLOTS * SLOT_BYTES
FLUSH_INTERVAL_NS = 50_000_000

H_COUNT, H_SUM, H_MAX, H_EL3, H_HANDLER, H_LOCKWAIT, H_ERRORS, H_FLUSHES = range(HEADER_Q)
assert (H_COUNT, H_SUM, H_MAX, H_EL3, H_HANDLER, H_LOCKWAIT, H_ERRORS) == (0, 1, 2, 3, 4, 5, 6)  # Recorder.record


def bucket_of(value: int) -> int:
    if value < LINEAR:
        return value if value > 0 else 0
    exp = value.bit_length() - (SUB_BITS + 1)
    if exp > MAX_EXP:
        return BUCKETS - 1
    return (exp << SUB_BITS) + (value >> exp)


def bucket_bounds(bucket: int) -> tuple[int, int]:
    """Inclusive [low, high] of the values that fall in ``bucket``."""
    if bucket < LINEAR:
        return bucket, bucket
    exp = (bucket >> SUB_BITS) - 1
    mantissa = (bucket & ((1 << SUB_BITS) - 1)) | (1 << SUB_BITS)
    return mantissa << exp, ((mantissa + 1) << exp) - 1


class Recorder:
    """Accumulates one CPU's measurements locally and publishes them to its shared region."""

    __slots__ = ("_shared", "_local", "_dirty", "next_flush")

    def __init__(self, region: memoryview) -> None:
        self._shared = region.cast("Q")
        self._local: list[list[int] | None] = [None] * SLOTS
        self._dirty: set[int] = set()
        self.next_flush = 0

    def _load(self, slot: int) -> list[int]:
        base = slot * SLOT_Q
        values = self._shared[base:base + SLOT_Q].tolist()
        self._local[slot] = values
        return values

    def record(self, slot: int, total: int, el3: int, handler: int, lockwait: int, error: bool) -> None:
        """Account one call of ``total`` ns split into EL3, handler and lock-wait ns.

        (Hot path: up to three calls per REC entry. Header positions are written as literals,
        H_COUNT .. H_ERRORS = 0 .. 6, and zero parts are not added.)
        """
        h = self._local[slot]
        if h is None:
            h = self._load(slot)
            self._dirty.add(slot)
        elif slot not in self._dirty:
            self._dirty.add(slot)
        h[0] += 1
        h[1] += total
        if total > h[2]:
            h[2] = total
        if el3:
            h[3] += el3
        if handler:
            h[4] += handler
        if lockwait:
            h[5] += lockwait
        if error:
            h[6] += 1
        if total < LINEAR:
            h[HEADER_Q + total] += 1
        else:
            exp = total.bit_length() - (SUB_BITS + 1)
            h[HEADER_Q + ((exp << SUB_BITS) + (total >> exp) if exp <= MAX_EXP else BUCKETS - 1)] += 1

    def flush(self, now_ns: int) -> None:
        """Copy every slot changed since the last flush into shared memory."""
        shared = self._shared
        for slot in self._dirty:
            h = self._local[slot]
            assert h is not None
            h[H_FLUSHES] += 1
            base = slot * SLOT_Q
            shared[base:base + SLOT_Q] = array("Q", h)
        self._dirty.clear()
        self.next_flush = now_ns + FLUSH_INTERVAL_NS

    def release(self) -> None:
        """Drop the shared view (the segment cannot be unmapped while it exists)."""
        self._shared.release()


@dataclass(frozen=True)
class CallStats:
    """A snapshot of one slot of one CPU."""

    count: int
    sum_ns: int
    max_ns: int
    el3_ns: int
    handler_ns: int
    lockwait_ns: int
    errors: int
    buckets: tuple[int, ...]

    def percentile(self, p: float) -> int:
        """Upper edge of the bucket holding the p-th percentile (0 < p <= 100), capped at max."""
        if self.count == 0:
            return 0
        rank = max(1, -(-self.count * p // 100))
        seen = 0
        for bucket, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                if bucket == BUCKETS - 1:  # the open-ended last bucket: only max is an upper bound
                    return self.max_ns
                return min(bucket_bounds(bucket)[1], self.max_ns)
        return self.max_ns

    def merged(self, other: "CallStats") -> "CallStats":
        return CallStats(
            self.count + other.count, self.sum_ns + other.sum_ns, max(self.max_ns, other.max_ns),
            self.el3_ns + other.el3_ns, self.handler_ns + other.handler_ns,
            self.lockwait_ns + other.lockwait_ns, self.errors + other.errors,
            tuple(a + b for a, b in zip(self.buckets, other.buckets)),
        )


def read_slot(region: memoryview, slot: int) -> CallStats:
    """Snapshot one slot from a statistics region (racy against the writer by at most a flush)."""
    q = region.cast("Q")
    try:
        base = slot * SLOT_Q
        values = q[base:base + SLOT_Q].tolist()
    finally:
        q.release()
    return CallStats(values[H_COUNT], values[H_SUM], values[H_MAX], values[H_EL3], values[H_HANDLER],
                     values[H_LOCKWAIT], values[H_ERRORS], tuple(values[HEADER_Q:]))


def read_region(region: memoryview) -> dict[int, CallStats]:
    """Every slot with at least one call."""
    q = region.cast("Q")
    try:
        counts = {slot: q[slot * SLOT_Q + H_COUNT] for slot in range(SLOTS)}
    finally:
        q.release()
    return {slot: read_slot(region, slot) for slot, n in counts.items() if n}


def total_count(region: memoryview) -> int:
    """Calls recorded in a region over all slots (as of the writer's last flush)."""
    q = region.cast("Q")
    try:
        return sum(q[H_COUNT::SLOT_Q])
    finally:
        q.release()
