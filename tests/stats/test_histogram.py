"""Properties of the log-linear latency histograms (rmm_mp/stats/histogram.py), by hypothesis.

Buckets: one per value below 64; above, 32 per power of two (relative width <= 1/32), up to
2^41 ns, beyond which everything shares the last bucket. Percentiles are reported as the upper
edge of the bucket holding the nearest-rank percentile, capped at the exact maximum.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.stats.calls import SLOTS
from rmm_mp.stats.histogram import (
    BUCKETS,
    EL3_SAMPLE_LIMIT_NS,
    LINEAR,
    REGION_BYTES,
    CallStats,
    Recorder,
    bucket_bounds,
    bucket_of,
    nearest_rank,
    read_region,
    read_slot,
)

# Fixed inputs (tests/README.md): hypothesis runs derandomized and without an example database.
FIXED = settings(derandomize=True, database=None, deadline=None)

LIMIT = 1 << 41
"""Values below this have a bucket of their own width (no overflow bucket)."""

values = st.integers(0, LIMIT - 1)
any_values = st.integers(0, (1 << 64) - 1)


def _region() -> memoryview:
    return memoryview(bytearray(REGION_BYTES))


def _true_percentile(samples: list[int], p: float) -> int:
    """Nearest-rank percentile: the smallest sample with at least p% of samples <= it."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(Fraction(str(p)) * len(ordered) / 100))   # exact: floats can round up a rank
    return ordered[rank - 1]


def _record_all(samples: list[int], slot: int = 0) -> CallStats:
    region = _region()
    rec = Recorder(region)
    for v in samples:
        rec.record(slot, v, 0, 0, False)
    rec.flush(0)
    rec.release()
    return read_slot(region, slot)


def test_bucket_constants() -> None:
    """Values 0..63 map to themselves; 64 starts the log part; 2^41 - 1 is in the last bucket."""
    assert LINEAR == 64
    assert [bucket_of(v) for v in range(64)] == list(range(64))
    assert bucket_of(64) == 64
    assert bucket_of(LIMIT - 1) == BUCKETS - 1
    assert bucket_bounds(BUCKETS - 1)[1] == LIMIT - 1


@settings(FIXED)
@given(a=any_values, b=any_values)
def test_bucket_of_is_monotonic(a: int, b: int) -> None:
    """bucket_of is non-decreasing: a <= b implies bucket_of(a) <= bucket_of(b); every bucket
    index is in [0, BUCKETS)."""
    lo, hi = min(a, b), max(a, b)
    assert 0 <= bucket_of(lo) <= bucket_of(hi) < BUCKETS


@settings(FIXED)
@given(v=st.integers(0, LIMIT - 2))
def test_bucket_of_adjacent_values(v: int) -> None:
    """v and v + 1 fall in the same or consecutive buckets (no bucket is skipped)."""
    assert bucket_of(v + 1) - bucket_of(v) in (0, 1)


@settings(FIXED)
@given(v=values)
def test_value_within_its_bucket_bounds(v: int) -> None:
    """For v < 2^41, low <= v <= high where (low, high) = bucket_bounds(bucket_of(v))."""
    low, high = bucket_bounds(bucket_of(v))
    assert low <= v <= high


@settings(FIXED)
@given(bucket=st.integers(0, BUCKETS - 1))
def test_bounds_map_back_to_bucket(bucket: int) -> None:
    """Both edges of every bucket map back to that bucket, and buckets tile the line: a
    bucket's low edge is one above the previous bucket's high edge."""
    low, high = bucket_bounds(bucket)
    assert low <= high
    assert bucket_of(low) == bucket == bucket_of(high)
    if bucket:
        assert bucket_bounds(bucket - 1)[1] == low - 1


@settings(FIXED)
@given(bucket=st.integers(LINEAR, BUCKETS - 1))
def test_bucket_relative_width(bucket: int) -> None:
    """Above 64, a bucket's width relative to its low bound is at most 1/32."""
    low, high = bucket_bounds(bucket)
    assert low >= 64
    assert (high - low + 1) * 32 <= low


@settings(FIXED, max_examples=200)
@given(samples=st.lists(values, min_size=1, max_size=200), slot=st.integers(0, SLOTS - 1))
def test_record_flush_read_slot_exact(samples: list[int], slot: int) -> None:
    """Recorder.record then flush then read_slot gives count, sum, max and the EL3 / handler /
    lock-wait split exactly, bucket counts summing to count, each value counted in its own
    bucket, and nothing in other slots."""
    region = _region()
    rec = Recorder(region)
    def el3(v: int) -> int:      # below EL3_SAMPLE_LIMIT_NS: every sample is used
        return (v // 4) % EL3_SAMPLE_LIMIT_NS

    for v in samples:
        rec.record(slot, v, el3(v), v // 8, v % 2 == 1)
    rec.flush(0)
    rec.release()
    stats = read_slot(region, slot)
    assert stats.count == len(samples)
    assert stats.sum_ns == sum(samples)
    assert stats.max_ns == max(samples)
    assert stats.el3_ns == sum(el3(v) for v in samples)
    assert stats.lockwait_ns == sum(v // 8 for v in samples)
    assert stats.handler_ns == sum(v - el3(v) - v // 8 for v in samples)  # derived: total - EL3 - lock wait
    assert stats.errors == sum(v % 2 for v in samples)
    assert sum(stats.buckets) == len(samples)
    expected = [0] * BUCKETS
    for v in samples:
        expected[bucket_of(v)] += 1
    assert list(stats.buckets) == expected
    assert set(read_region(region)) == {slot}


def test_nothing_visible_before_flush() -> None:
    """Recording stays local until flush: the shared region reads empty before, full after."""
    region = _region()
    rec = Recorder(region)
    rec.record(3, 1000, 0, 0, False)
    assert read_slot(region, 3).count == 0
    rec.flush(0)
    assert read_slot(region, 3).count == 1
    rec.release()


@settings(FIXED, max_examples=300)
@given(samples=st.lists(values, min_size=1, max_size=300),
       p=st.one_of(st.sampled_from([50.0, 90.0, 99.0, 99.9, 100.0]),
                   st.floats(min_value=0.001, max_value=100.0, allow_nan=False)))
def test_percentile_bounds(samples: list[int], p: float) -> None:
    """CallStats.percentile(p) is >= the true nearest-rank p-th percentile of the recorded
    values, <= the exact maximum, and <= true * (1 + 1/32) + 1."""
    stats = _record_all(samples)
    true = _true_percentile(samples, p)
    got = stats.percentile(p)
    assert true <= got <= max(samples)
    assert got <= true * (1 + 1 / 32) + 1


@settings(FIXED, max_examples=150)
@given(samples=st.lists(st.one_of(values, st.sampled_from([LINEAR - 1, LINEAR, 2015, 2016, 2047, 2048, LIMIT - 1])),
                        min_size=1, max_size=300),
       p=st.sampled_from([50.0, 90.0, 99.0, 99.9, 100.0]))
def test_percentile_is_less_than_a_32nd_above_the_true_value(samples: list[int], p: float) -> None:
    """The bound docs/latency.md promises, strictly: a reported percentile is the true
    nearest-rank value, or above it by less than 1/32 of it (values below 2^41, bucket edges
    among them). The +1 slack of test_percentile_bounds would let a bucket edge one too high pass."""
    true = _true_percentile(samples, p)
    got = _record_all(samples).percentile(p)
    assert got == true or (got > true and 32 * (got - true) < true), (true, got)


@settings(FIXED)
@given(value=st.one_of(values, st.integers(LIMIT, 1 << 50)), n=st.integers(1, 500))
def test_calls_all_of_one_time_read_that_time_exactly(value: int, n: int) -> None:
    """n calls that all took the same time, in any bucket (the open last one included, up to
    2^50 ns so that the u64 sum holds them): every percentile, the maximum and the mean are that
    time (the bucket's edge is capped at the maximum)."""
    stats = _record_all([value] * n)
    assert [stats.percentile(p) for p in (50.0, 90.0, 99.0, 99.9, 100.0)] == [value] * 5
    assert (stats.count, stats.max_ns, stats.sum_ns // stats.count) == (n, value, value)


@settings(FIXED)
@given(samples=st.lists(st.integers(0, LINEAR - 1), min_size=1, max_size=100),
       p=st.floats(min_value=0.001, max_value=100.0, allow_nan=False))
def test_percentile_exact_below_64(samples: list[int], p: float) -> None:
    """Values below 64 have one bucket each, so the percentile is exact."""
    assert _record_all(samples).percentile(p) == _true_percentile(samples, p)


def test_percentile_empty() -> None:
    """An empty slot reports 0 for every percentile."""
    assert _record_all([]).percentile(99) == 0


@settings(FIXED)
@given(a=st.lists(values, max_size=50), b=st.lists(values, max_size=50))
def test_merged_equals_recording_both(a: list[int], b: list[int]) -> None:
    """CallStats.merged of two slots equals one slot that recorded both lists."""
    assert _record_all(a).merged(_record_all(b)) == _record_all(a + b)


def test_p999_rank_is_exact_when_the_float_product_rounds_up() -> None:
    """41,000 calls: p99.9 is the 40,959th value. In floats 41,000 * 99.9 / 100 is a little
    above 40,959, and its ceiling picked the 40,960th: here the first of 41 slow calls (10 ms),
    reported as the p99.9 of a slot whose 40,959 fastest calls took 1 us."""
    stats = _record_all([1000] * 40_959 + [10_000_000] * 41)
    assert stats.percentile(99.9) == bucket_bounds(bucket_of(1000))[1]
    assert stats.percentile(100) == 10_000_000


@pytest.mark.parametrize("count", [1, 2, 999, 1000, 1001, 41_000, 82_000, 167_000, 10**9 + 7])
@pytest.mark.parametrize("p", [50.0, 90.0, 99.0, 99.9, 100.0])
def test_nearest_rank_is_the_exact_ceiling(count: int, p: float) -> None:
    """nearest_rank(count, p) is ceil(count * p / 100) with p read as the decimal it is written as."""
    tenths = round(p * 10)
    assert nearest_rank(count, p) == max(1, -(-count * tenths // 1000))


def test_percentile_in_open_last_bucket_is_not_below_true_value() -> None:
    """Values of 2^41 ns and more share the last bucket; a percentile landing there is the
    exact maximum, never the bucket's nominal edge (which would be below the true value)."""
    region = memoryview(bytearray(REGION_BYTES))
    recorder = Recorder(region)
    for value in (1 << 41, 1 << 42):
        recorder.record(0, value, 0, 0, False)
    recorder.flush(0)
    recorder.release()
    assert read_slot(region, 0).percentile(50) == 1 << 42


@settings(FIXED, max_examples=100)
@given(chunks=st.lists(st.lists(st.integers(0, 1 << 50), max_size=60), min_size=1, max_size=5))
def test_flushes_accumulate(chunks: list[list[int]]) -> None:
    """Recording in several flushes gives the same slot as recording everything before one
    flush (the histogram is built at flush from the values since the previous one), values in
    the open last bucket included; only the flush counter differs."""
    region = _region()
    rec = Recorder(region)
    for chunk in chunks:
        for v in chunk:
            rec.record(7, v, v // 4, v // 8, v % 3 == 0)
        rec.flush(0)
    rec.release()
    every = [v for chunk in chunks for v in chunk]
    once = _region()
    rec = Recorder(once)
    for v in every:
        rec.record(7, v, v // 4, v // 8, v % 3 == 0)
    rec.flush(0)
    rec.release()
    assert read_slot(region, 7) == read_slot(once, 7)
    assert read_slot(region, 7).count == len(every)


# A value at a bucket edge or next to one, drawn from the bucket's bounds: random integers
# almost never land on an edge, where counting a sorted run of values could go one bucket off.
edges = st.builds(lambda bucket, which, delta: max(0, bucket_bounds(bucket)[which] + delta),
                  st.integers(0, BUCKETS - 2), st.sampled_from((0, 1)), st.sampled_from((-1, 0, 0, 1)))


@settings(FIXED, max_examples=300)
@given(samples=st.lists(st.one_of(edges, values, st.integers(LIMIT - 2, 1 << 50)), min_size=1, max_size=80),
       copies=st.integers(1, 3))
def test_flush_counts_each_value_in_its_bucket_at_the_edges(samples: list[int], copies: int) -> None:
    """The flush counts the sorted values a bucket at a time; each value, a bucket's lowest and
    highest value and the values either side of them included (each maybe several times), ends
    in bucket_of's bucket."""
    samples = samples * copies
    expected = [0] * BUCKETS
    for v in samples:
        expected[bucket_of(v)] += 1
    assert list(_record_all(samples).buckets) == expected


@settings(FIXED, max_examples=100)
@given(chunks=st.lists(st.lists(st.integers(0, 1 << 50), max_size=60), min_size=1, max_size=4),
       slot=st.integers(0, SLOTS - 1))
def test_appends_are_record_for_a_plain_call_across_flushes(chunks: list[list[int]], slot: int) -> None:
    """appends[slot](total), EL3's shortcut for an unsampled call without lock wait or error,
    leaves the same slot as record(slot, total, None, 0, False), flush after flush (a flush
    empties the pending arrays in place, so the bound appends stay theirs)."""
    short, long = _region(), _region()
    fast, slow = Recorder(short), Recorder(long)
    for chunk in chunks:
        for v in chunk:
            fast.appends[slot](v)
            slow.record(slot, v, None, 0, False)
        fast.flush(0)
        slow.flush(0)
    fast.release()
    slow.release()
    assert read_slot(short, slot) == read_slot(long, slot)
    assert read_slot(short, slot).count == sum(map(len, chunks))


# -- the sampled EL3 split (el3 None: not measured for that call) ------------------------------


@settings(FIXED, max_examples=200)
@given(calls=st.lists(st.tuples(st.integers(0, 1 << 40), st.none() | st.integers(0, EL3_SAMPLE_LIMIT_NS - 1)), min_size=1,
                      max_size=80).filter(lambda calls: any(el3 is not None for _, el3 in calls)))
def test_unmeasured_el3_is_estimated_from_the_slots_samples(calls: list[tuple[int, int | None]]) -> None:
    """A slot's EL3 sum is its measured calls' mean EL3 times its count (capped at its total),
    and the handler part is what is left, so the three parts still add up."""
    region = _region()
    rec = Recorder(region)
    for total, el3 in calls:
        rec.record(5, total, el3, 0, False)
    rec.flush(0)
    rec.release()
    stats = read_slot(region, 5)
    measured = [el3 for _, el3 in calls if el3 is not None]
    total = sum(t for t, _ in calls)
    assert stats.el3_ns == min(sum(measured) * len(calls) // len(measured), total)
    assert stats.el3_ns + stats.handler_ns + stats.lockwait_ns == stats.sum_ns == total


def test_a_preempted_el3_sample_is_left_out_of_the_estimate() -> None:
    """A sampled EL3 part of EL3_SAMPLE_LIMIT_NS or more (the process was preempted inside EL3)
    would count about 16 times over in the estimate; it is left out of it, and its time stays in
    the slot's total and RMM part."""
    region = _region()
    rec = Recorder(region)
    rec.record(5, 3000, 1000, 0, False)
    rec.record(5, 5_003_000, EL3_SAMPLE_LIMIT_NS + 5_000_000, 0, False)
    for _ in range(14):
        rec.record(5, 3000, None, 0, False)
    rec.flush(0)
    rec.release()
    stats = read_slot(region, 5)
    assert (stats.count, stats.sum_ns, stats.el3_ns) == (16, 5_048_000, 16 * 1000)
    assert stats.handler_ns == 5_048_000 - 16_000


def test_slot_without_samples_uses_the_cpus_mean_of_calls_with_an_el3_part() -> None:
    """A slot none of whose calls was measured gets the mean EL3 time of the CPU's measured
    calls, over the slots that have an EL3 part at all: a slot measured with EL3 0 (RSI, PSCI,
    REC runs) neither pulls the mean down nor gets a share itself."""
    region = _region()
    rec = Recorder(region)
    rec.record(1, 1000, 100, 0, False)
    rec.record(1, 1000, 300, 0, False)     # slot 1: mean EL3 200
    for _ in range(5):
        rec.record(40, 2000, 0, 0, False)  # an RSI-like slot: measured, no EL3 part
    for _ in range(4):
        rec.record(2, 1000, None, 50, False)
    rec.flush(0)
    rec.release()
    two, rsi = read_slot(region, 2), read_slot(region, 40)
    assert (two.el3_ns, two.lockwait_ns, two.handler_ns) == (800, 200, 3000)
    assert (rsi.el3_ns, rsi.handler_ns) == (0, 10000)


def test_unmeasured_slot_follows_the_cpus_mean_in_later_flushes() -> None:
    """A slot with no measured call, flushed once early (when the CPU's only sample was a slow,
    cold first call), then left alone while many more calls are measured in other slots: at
    the last flush its EL3 sum is the CPU's mean over all its samples by then, not the early
    mean frozen at the slot's own flush. (In a quickstart run RMI_FEATURES, called once, kept an
    early estimate above its own time and read 100 % EL3, RMM 0.00 us.)"""
    region = _region()
    rec = Recorder(region)
    rec.record(0, 4000, 3500, 0, False)       # the process's first call: sampled, cold
    rec.record(1, 3000, None, 0, False)       # called once, never sampled
    rec.flush(0)
    assert read_slot(region, 1).el3_ns == 3000     # the early mean 3500, capped at the slot's time
    for _ in range(999):
        rec.record(2, 2000, 1000, 0, False)
    rec.flush(0)
    rec.release()
    one = read_slot(region, 1)
    mean = (3500 + 999 * 1000) // 1000
    assert (one.el3_ns, one.handler_ns) == (mean, 3000 - mean)


def test_estimate_is_capped_at_the_slots_time() -> None:
    """An estimate above the slot's time minus its lock wait is capped there: EL3 never
    exceeds the calls' time and the handler part never goes negative."""
    region = _region()
    rec = Recorder(region)
    rec.record(3, 1000, 900, 0, False)
    for _ in range(9):
        rec.record(3, 100, None, 10, False)
    rec.flush(0)
    rec.release()
    stats = read_slot(region, 3)
    assert (stats.sum_ns, stats.lockwait_ns, stats.el3_ns, stats.handler_ns) == (1900, 90, 1810, 0)


def test_new_recorder_keeps_the_published_el3_sum() -> None:
    """A recorder over a region another recorder published into (recording switched off and on
    again) keeps the published calls' EL3 sum and, with no sample of its own yet, estimates its
    own calls from the published mean."""
    region = _region()
    first = Recorder(region)
    first.record(6, 1000, 100, 0, False)
    first.record(6, 1000, 300, 0, False)
    first.flush(0)
    first.release()
    second = Recorder(region)
    second.record(6, 1000, None, 0, False)
    second.flush(0)
    second.release()
    assert read_slot(region, 6).el3_ns == 400 * 3 // 2


def test_new_recorder_estimates_its_calls_from_its_own_samples() -> None:
    """1,600 calls at 800 ns of EL3 (1 in 16 sampled), then, recording switched off and on, 1,600
    at 400 ns: the EL3 mean reads 600 ns. The second recorder took the 1,600 published calls as
    1,600 samples against its own 100, and read 776 ns; a slot of its own with no sample takes
    its samples' mean, not the published one."""
    region = _region()
    first = Recorder(region)
    for n in range(1600):
        first.record(6, 3000, 800 if n % 16 == 0 else None, 0, False)
    first.flush(0)
    first.release()
    second = Recorder(region)
    for n in range(1600):
        second.record(6, 3000, 400 if n % 16 == 0 else None, 0, False)
    second.record(7, 3000, None, 0, False)
    second.flush(0)
    second.release()
    assert read_slot(region, 6).el3_ns == 800 * 1600 + 400 * 1600
    assert read_slot(region, 7).el3_ns == 400


def test_el3_free_slots_have_no_el3_part_however_their_calls_were_recorded() -> None:
    """Slots from ``el3_free_from`` on have an EL3 sum of 0 whether their calls were recorded
    with record(el3=0) or only appended (appends[slot], as the RMM's RSI calls and REC runs
    do), while other slots' calls were sampled: the same figures as record() gives them. A slot
    below it that is only appended to still takes the CPU's mean (the estimate)."""
    figures = []
    for appended in (False, True):
        region = _region()
        rec = Recorder(region, el3_free_from=40)
        rec.record(0, 2000, 500, 0, False)          # a sampled RMI call: the CPU's mean is 500
        for total in (3000, 3001):
            if appended:
                rec.appends[40](total)
                rec.appends[39](total)
            else:
                rec.record(40, total, 0, 0, False)
                rec.record(39, total, None, 0, False)
        rec.record(41, 700, 0, 0, True)             # an error goes through record
        rec.flush(0)
        rec.release()
        figures.append([(s.count, s.sum_ns, s.el3_ns, s.handler_ns, s.errors)
                        for s in (read_slot(region, n) for n in (39, 40, 41))])
    assert figures[0] == figures[1] == [(2, 6001, 1000, 5001, 0), (2, 6001, 0, 6001, 0), (1, 700, 0, 700, 1)]


EMPTY = CallStats(0, 0, 0, 0, 0, 0, 0, (0,) * BUCKETS)


@pytest.mark.parametrize("value", [0, 1, 63, 64, 65, 1000, 1007, 1008, (1 << 41) - 1, 1 << 41, 1 << 50])
def test_a_single_call_is_every_percentile_exactly(value: int) -> None:
    """One call: every percentile, the maximum and the mean are its exact time (the bucket's
    upper edge is capped at the maximum), whichever bucket it falls in."""
    stats = _record_all([value])
    assert (stats.count, stats.sum_ns, stats.max_ns) == (1, value, value)
    assert [stats.percentile(p) for p in (50.0, 90.0, 99.0, 99.9, 100.0)] == [value] * 5


def test_zero_ns_calls_count_in_bucket_zero() -> None:
    """Calls timed at 0 ns (two clock reads in the same tick) are counted, in bucket 0, and
    their percentiles are 0 while the slower calls' are not."""
    stats = _record_all([0] * 9 + [5000])
    assert stats.count == 10 and stats.buckets[0] == 9 and stats.sum_ns == 5000
    assert stats.percentile(90) == 0 and stats.percentile(99) == 5000


def test_flush_without_calls_changes_nothing() -> None:
    """A recorder with no call recorded flushes twice, then is released: no slot has a call and every
    word of the region, the flush counts too, is still 0."""
    region = _region()
    rec = Recorder(region)
    rec.flush(0)
    rec.flush(1)
    rec.release()
    assert read_region(region) == {}
    assert read_slot(region, 0) == EMPTY
    assert not any(region), "a flush without calls wrote to the region"    # also words CallStats omits


def test_merging_with_an_empty_slot_is_the_identity() -> None:
    """Merging a slot's statistics with an empty slot, on either side, gives them back unchanged; two
    empty slots merge to one whose p50 is 0."""
    stats = _record_all([7, 700, 70_000, 1 << 45])
    assert stats.merged(EMPTY) == stats == EMPTY.merged(stats)
    assert EMPTY.merged(EMPTY).percentile(50) == 0


def test_merged_percentiles_are_of_all_calls_not_averaged() -> None:
    """Two CPUs: 99 fast calls on one, 1 slow one on the other. The merged p50 is the fast one's,
    not the mean of the two p50s; p99 still fast (rank 99 of 100), p99.9 the slow one."""
    fast, slow = _record_all([1000] * 99), _record_all([1_000_000])
    both = fast.merged(slow)
    assert both.percentile(50) == both.percentile(99) == bucket_bounds(bucket_of(1000))[1]
    assert both.percentile(99.9) == 1_000_000
    assert (both.count, both.max_ns, both.sum_ns) == (100, 1_000_000, 99 * 1000 + 1_000_000)
