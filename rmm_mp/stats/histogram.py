"""Per-CPU, per-call latency histograms with log-linear buckets.

Layout of one CPU's statistics region (in its per-CPU shared area): SLOTS slots of SLOT_BYTES,
each a 64-byte header of u64 counters followed by BUCKETS u64 bucket counts.

    header: count, sum_ns, max_ns, el3_ns, handler_ns, lockwait_ns, errors, flushes

Buckets: values below 64 ns have a bucket each; above, each power of two is split into 32
buckets (relative width at most 1/32, about 3 %). Values of 2^41 ns (about 37 minutes) and more
share the last bucket; max_ns is exact.

Recording happens in the CPU's own process: each call's total is appended to a per-slot
array('q') (a list would keep every total alive as an int object until the flush, which costs
more than the append itself: docs/performance.md), and those arrays are folded into the
histograms in the shared region at most every FLUSH_INTERVAL_NS (at the first recorded RMI
call after it) and at the end of a run, so a reader sees figures at most that old (and, while a
flush runs, a slot may be half updated).
Percentiles are reported as the upper edge of the bucket that holds them, capped at the exact
maximum: a conservative figure, never below the true value.

This module owns the bucket math and the shared layout. It must not know what the slots mean.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from fractions import Fraction

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

EL3_SAMPLE_LIMIT_NS = 50_000
"""An EL3 part this long is no EL3 work: EL3's share of an RMI call is a few register copies and
the routing, about 1 us; a sample this long was taken while the CPU process was preempted (or
collecting garbage). Such a sample would weigh about SPLIT_EVERY times in its slot's estimate,
so it is not used for it; the time still counts, in the call's total and its RMM part."""

H_COUNT, H_SUM, H_MAX, H_EL3, H_HANDLER, H_LOCKWAIT, H_ERRORS, H_FLUSHES = range(HEADER_Q)


def bucket_of(value: int) -> int:
    if value < LINEAR:
        return value if value > 0 else 0
    exp = value.bit_length() - (SUB_BITS + 1)
    if exp > MAX_EXP:
        return BUCKETS - 1
    return (exp << SUB_BITS) + (value >> exp)


def bucket_bounds(bucket: int) -> tuple[int, int]:
    """Inclusive [low, high] of the values below 2^41 that fall in ``bucket``. The last bucket
    also holds every value of 2^41 and more: above ``high``, so only a slot's exact maximum
    bounds them (CallStats.upper_edge)."""
    if bucket < LINEAR:
        return bucket, bucket
    exp = (bucket >> SUB_BITS) - 1
    mantissa = (bucket & ((1 << SUB_BITS) - 1)) | (1 << SUB_BITS)
    return mantissa << exp, ((mantissa + 1) << exp) - 1


class Recorder:
    """Accumulates one CPU's measurements locally and publishes them to its shared region.

    The hot path (``record``) only appends the call's total to a per-slot array and adds its
    EL3 and lock-wait parts to per-slot sums; ``flush`` folds them into the histograms in
    shared memory (the values sorted and summed by C builtins, bucket counts as
    _add_to_buckets says), touching only the slots that had calls.

    The EL3 part may be sampled: a call recorded with ``el3`` None had it not measured, and a
    slot's EL3 sum is then estimated as its measured calls' mean times its count (a slot with
    no measured call yet uses the mean of every measured call with an EL3 part on this CPU,
    recomputed at every flush, whether or not the slot had calls since the last one). Calls a
    previous recorder published in the region keep the EL3 sum it gave them: only this
    recorder's calls are estimated, from its samples.
    The handler part is not stored: it is total - EL3 - lock wait, so its sum is derived.

    A call with its EL3 part not measured (None), no lock wait and no error needs only the
    append: ``appends[slot](total)`` (the bound ``append`` of ``pending[slot]``) is the same as
    ``record`` for it, and EL3's smc_from_ns, which makes most of the calls, does that itself
    to save a Python call and two lookups.

    ``el3_free_from``: the slots from this one on have no EL3 part at all (the CPU's creator
    says which; this module does not know what the slots mean). Their EL3 sum is 0 whether or
    not a call was recorded as measured, so a call there with no lock wait and no error needs
    only the append as well (the RMM's RSI calls and REC runs do that).
    """

    __slots__ = ("_shared", "pending", "appends", "_el3", "_measured", "_el3_total", "_measured_total", "_lockwait",
                 "_errors", "_estimated", "next_flush", "flush_ns", "el3_free_from", "_base_el3", "_base_count")

    def __init__(self, region: memoryview, el3_free_from: int = SLOTS) -> None:
        self._shared = q = region.cast("Q")
        self.pending: list[array[int]] = [array("q") for _ in range(SLOTS)]
        self.appends = [pending.append for pending in self.pending]   # the arrays are emptied, never replaced
        self._el3 = [0] * SLOTS
        self._measured = [0] * SLOTS
        # Calls a previous recorder published in this region (recording switched off and on, a
        # CPU bound again) keep the EL3 sum it gave them; this recorder estimates its own calls
        # from its own samples. Taking the published calls as measured ones weighted each of them
        # as a sample, some 16 times what a call of this recorder's weighed: 1,600 calls at 800 ns
        # of EL3, then 1,600 at 400 ns, read 776 ns, not 600.
        self._base_el3 = [q[slot * SLOT_Q + H_EL3] for slot in range(SLOTS)]
        self._base_count = [q[slot * SLOT_Q + H_COUNT] for slot in range(SLOTS)]
        self._el3_total = [0] * SLOTS
        self._measured_total = [0] * SLOTS
        self._lockwait = [0] * SLOTS
        self._errors = [0] * SLOTS
        self._estimated: set[int] = set()
        """Slots with calls but no measured one: their EL3 sum is the CPU's mean (_mean_el3), which
        every flush recomputes for them, since the mean moves as other slots' samples come in."""
        self.el3_free_from = el3_free_from
        """The first slot with no EL3 part (see the class docstring): flush gives it and every
        later slot an EL3 sum of 0."""
        self.next_flush = 0
        self.flush_ns = 0
        """Time spent in the flushes made inside calls (EL3 adds it up around each one), so that a
        measurement around many calls (a host step) can leave the recorder's own work out."""

    def record(self, slot: int, total: int, el3: int | None, lockwait: int, error: bool) -> None:
        """Account one call of ``total`` ns, of which ``el3`` ns in EL3 (None: not measured for
        this call; EL3_SAMPLE_LIMIT_NS or more: measured while the process was not running,
        so left out of the EL3 estimate) and ``lockwait`` ns waiting for locks (the rest is the
        handler's).
        Hot path: up to three calls per REC entry."""
        self.pending[slot].append(total)
        if el3 is not None and el3 < EL3_SAMPLE_LIMIT_NS:
            self._el3[slot] += el3
            self._measured[slot] += 1
        if lockwait:
            self._lockwait[slot] += lockwait
        if error:
            self._errors[slot] += 1

    def flush(self, now_ns: int) -> None:
        """Fold the calls recorded since the last flush into the histograms, in place in shared
        memory (a flush runs with the CPU's caches full of the workload: a local copy of the
        slots to update and then copy would be one more 9.3 KiB (9,536 bytes) per slot to pull in)."""
        q = self._shared
        changed = []
        for slot, pending in enumerate(self.pending):
            if not pending:
                continue
            # One conversion in C, then a sort in C: the maximum is the last value, and the
            # bucket count needs one Python step per bucket, not per value.
            values = pending.tolist()
            del pending[:]
            values.sort()
            base = slot * SLOT_Q
            high = values[-1]
            q[base + H_COUNT] += len(values)
            q[base + H_SUM] += sum(values)
            if high > q[base + H_MAX]:
                q[base + H_MAX] = high
            if self._lockwait[slot]:
                q[base + H_LOCKWAIT] += self._lockwait[slot]
            if self._errors[slot]:
                q[base + H_ERRORS] += self._errors[slot]
            q[base + H_FLUSHES] += 1
            self._el3_total[slot] += self._el3[slot]
            self._measured_total[slot] += self._measured[slot]
            self._el3[slot] = self._measured[slot] = self._lockwait[slot] = self._errors[slot] = 0
            _add_to_buckets(values, q, base + HEADER_Q)
            changed.append(slot)
        fallback: float | None = None
        estimated = self._estimated
        # The estimated slots too, changed or not: an estimate made at a slot's own last flush
        # (early in a run, from a few cold samples) would otherwise stay while the mean moves.
        for slot in estimated.union(changed) if estimated else changed:
            base = slot * SLOT_Q
            count, total, lockwait = q[base + H_COUNT], q[base + H_SUM], q[base + H_LOCKWAIT]
            own = count - self._base_count[slot]      # this recorder's calls
            measured = self._measured_total[slot]
            if slot >= self.el3_free_from:
                el3 = 0
            elif measured:
                el3 = self._base_el3[slot] + self._el3_total[slot] * own // measured
                estimated.discard(slot)
            else:
                if fallback is None:
                    fallback = self._mean_el3()
                el3 = self._base_el3[slot] + int(fallback * own)
                estimated.add(slot)
            el3 = min(el3, total - lockwait)
            q[base + H_EL3] = el3
            q[base + H_HANDLER] = total - el3 - lockwait
        self.next_flush = now_ns + FLUSH_INTERVAL_NS

    def _mean_el3(self) -> float:
        """Mean EL3 time of this recorder's measured calls of the slots that have an EL3 part at
        all; before it has one, the mean a previous recorder published for such slots."""
        with_el3 = [n for n, el3 in enumerate(self._el3_total) if el3]
        measured = sum(self._measured_total[n] for n in with_el3)
        if measured:
            return sum(self._el3_total[n] for n in with_el3) / measured
        published = [n for n, el3 in enumerate(self._base_el3) if el3]
        calls = sum(self._base_count[n] for n in published)
        return sum(self._base_el3[n] for n in published) / calls if calls else 0.0

    def release(self) -> None:
        """Drop the shared view (the segment cannot be unmapped while it exists)."""
        self._shared.release()


def _add_to_buckets(values: list[int], h: memoryview, first: int) -> None:
    """Count each of ``values`` (sorted, ascending) in its bucket h[first + bucket_of(value)].

    The values of one bucket are a run in the sorted list, and a bucket's upper bound follows
    from any of its values, so one bisection (in C) per bucket finds where the run ends: the
    Python loop runs once per bucket that has values, however many values it has. A busy
    slot's few thousand calls fall in a few dozen buckets.
    """
    n = len(values)
    i = 0
    while i < n:
        value = values[i]
        if value < LINEAR:
            end = bisect_right(values, value, i)
            h[first + (value if value > 0 else 0)] += end - i
            i = end
            continue
        exp = value.bit_length() - (SUB_BITS + 1)
        if exp > MAX_EXP:       # the open last bucket holds every value from here on
            h[first + BUCKETS - 1] += n - i
            return
        mantissa = value >> exp
        end = bisect_left(values, (mantissa + 1) << exp, i)
        h[first + (exp << SUB_BITS) + mantissa] += end - i
        i = end


def nearest_rank(count: int, p: float) -> int:
    """The rank (1-based) of the nearest-rank p-th percentile of ``count`` values: ceil(count * p / 100).

    Exact, with ``p`` read as the decimal it is written as: in floats 41,000 * 99.9 / 100 is a
    little above 40,959, so the ceiling was one rank too high, and a p99.9 could report the
    first value of the tail instead of the last one below it."""
    exact = Fraction(str(p)) * count / 100
    return max(1, -(-exact.numerator // exact.denominator))


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
        rank = nearest_rank(self.count, p)
        seen = 0
        for bucket, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return self.upper_edge(bucket)
        return self.max_ns

    def upper_edge(self, bucket: int) -> int:
        """The most any of this slot's values in ``bucket`` can be: the bucket's upper edge,
        capped at the exact maximum (the maximum itself for the open-ended last bucket)."""
        if bucket == BUCKETS - 1:
            return self.max_ns
        return min(bucket_bounds(bucket)[1], self.max_ns)

    def half_written(self) -> bool:
        """True when a flush was cut off in this slot (its CPU process killed during it): the
        counters disagree, the count with its buckets' sum or the EL3, handler and lock-wait sums
        with the time. Every complete flush leaves them agreeing, so a report of a finished run
        can tell; such a slot's percentiles and time split do not hold (a p90 can read the
        maximum). A reader racing a live writer sees this too, until the flush ends."""
        return sum(self.buckets) != self.count or self.el3_ns + self.handler_ns + self.lockwait_ns != self.sum_ns

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
    """Records in a region over all slots (as of the writer's last flush): RMI, RSI and PSCI
    calls, REC runs and host activity steps, each a record of its slot."""
    q = region.cast("Q")
    try:
        return sum(q[H_COUNT::SLOT_Q])
    finally:
        q.release()
