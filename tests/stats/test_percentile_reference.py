"""The report's latency figures against a simple reference, by hypothesis.

Reference (docs/latency.md, "Percentiles, maximum and mean"): sort a CPU's (or, for "all",
every CPU's) call times, take the nearest-rank percentile (the value of rank ceil(n * p / 100)),
and report the upper edge of the bucket holding it, capped at the exact maximum (the maximum
itself when it is in the open last bucket). Count, maximum and mean (rounded down) are exact.

The path under test is the one `rmm-mp run` takes: each CPU's Recorder, flushed one or more
times, its region read back (histogram.read_region), and report.call_records, with CPUs that
made no call at all. These are exact equalities, stronger than the bounds of test_histogram.
"""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.stats import report
from rmm_mp.stats.histogram import BUCKETS, REGION_BYTES, Recorder, bucket_bounds, bucket_of, read_region

FIXED = settings(derandomize=True, database=None, deadline=None)

PERCENTILE_FIELDS = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p999": 99.9}

# Call times: mostly around typical latencies, with bucket edges, the open last bucket (2^41 ns
# and more) and 0 ns mixed in.
times = st.one_of(st.integers(0, 200), st.integers(900, 5000), st.integers(0, 1 << 30),
                  st.sampled_from([63, 64, 65, 127, 128, 2015, 2016, (1 << 41) - 1, 1 << 41, (1 << 41) + 1]),
                  st.integers(1 << 40, 1 << 50))
# Two slots per CPU, each CPU's calls split into one to three flushes; a CPU may make no call.
cpu_calls = st.lists(st.lists(st.tuples(st.sampled_from([0, 5]), times), max_size=40), min_size=1, max_size=3)


def reference_figure(samples: list[int], p: float) -> int:
    """The reported p-th percentile of ``samples``, computed from the samples themselves."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(Fraction(str(p)) * len(ordered) / 100))
    value, high = ordered[rank - 1], ordered[-1]
    bucket = bucket_of(value)
    if bucket == BUCKETS - 1:
        return high
    return min(bucket_bounds(bucket)[1], high)


def _regions(per_cpu: list[list[list[tuple[int, int]]]]) -> dict[int, dict[int, object]]:
    """Record every CPU's calls flush by flush and read its region back, as collect() does."""
    stats = {}
    for cpu, flushes in enumerate(per_cpu):
        region = memoryview(bytearray(REGION_BYTES))
        recorder = Recorder(region)
        for n, chunk in enumerate(flushes):
            for slot, total in chunk:
                recorder.record(slot, total, None, 0, False)
            recorder.flush(n)
        recorder.release()
        stats[cpu] = read_region(region)
    return stats


@settings(FIXED, max_examples=300)
@given(per_cpu=st.lists(cpu_calls, min_size=1, max_size=4))
def test_every_record_is_the_reference_of_its_samples(per_cpu: list[list[list[tuple[int, int]]]]) -> None:
    """For 1 to 4 CPUs, each flushing its recorder one or more times (some CPUs with no call),
    every per-CPU and "all" record equals the reference computed from the raw samples: count,
    max and mean exactly, and p50, p90, p99 and p99.9 as the reference's bucket edges."""
    samples: dict[tuple[int | str, int], list[int]] = {}
    for cpu, flushes in enumerate(per_cpu):
        for chunk in flushes:
            for slot, total in chunk:
                samples.setdefault((cpu, slot), []).append(total)
                samples.setdefault(("all", slot), []).append(total)
    records = report.call_records(_regions(per_cpu))
    by_key = {(r.cpu, r.call): r for r in records}
    assert len(by_key) == len(records), "a (cpu, call) pair reported twice"
    expected_keys = {(cpu, report.calls.name(slot)) for cpu, slot in samples}
    assert set(by_key) == expected_keys, "a CPU without calls of a slot got a record, or one with calls none"
    for (cpu, slot), values in samples.items():
        record = by_key[(cpu, report.calls.name(slot))]
        assert (record.count, record.max, record.mean) == (len(values), max(values), sum(values) // len(values))
        for field, p in PERCENTILE_FIELDS.items():
            assert getattr(record, field) == reference_figure(values, p), (cpu, slot, field)
