#!/usr/bin/env python3
"""Uncontended granule lock + unlock, in ns per pair, through the public lock API.

What is timed (clock: time.perf_counter_ns around the whole loop, divided by the pair count):

  lock+unlock       GranuleTable.lock(idx); GranuleTable.unlock(idx)   (bound methods, one granule)
  find_lock+unlock  GranuleTable.find_lock(addr, NS) -> Granule; Granule.unlock()

on the granule table of a fresh "host" machine, as lock owner cpu_owner(0), with nothing else
running on the machine (so every compare-and-swap succeeds first time: the uncontended path).
The figure includes the Python ``for`` loop itself; the cost of an empty loop is printed too,
for reference, but is not subtracted. The garbage collector is off while a run is timed.

Each run times --pairs pairs; --runs runs; the median and the best run are reported. Target:
lock+unlock <= 300 ns per pair (docs/performance.md).

    python tools/bench_lock.py [--runs 7] [--pairs 200000] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import TypedDict

from benchlib import check_json, host_info, measurement_failed, tool_main, write_json

from rmm_mp.hw.granule import cpu_owner
from rmm_mp.machine import Machine
from rmm_mp.rmm.granule_state import GranuleState

TARGET_NS = 300
GRANULE_INDEX = 100  # a DRAM granule of the host platform, far from the Secure carve-out


def time_lock_unlock(table, idx: int, pairs: int) -> int:  # type: ignore[no-untyped-def]
    lock, unlock = table.lock, table.unlock
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(pairs):
        lock(idx)
        unlock(idx)
    return clock() - t0


def time_find_lock_unlock(table, addr: int, state: int, pairs: int) -> int:  # type: ignore[no-untyped-def]
    find_lock = table.find_lock
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(pairs):
        find_lock(addr, state).unlock()
    return clock() - t0


def time_empty_loop(pairs: int) -> int:
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(pairs):
        pass
    return clock() - t0


def measure(fn, runs: int, pairs: int) -> list[float]:  # type: ignore[no-untyped-def]
    """ns per pair of each run (one untimed warm-up run of pairs // 10 first)."""
    fn(max(1, pairs // 10))
    out = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(runs):
            out.append(fn(pairs) / pairs)
    finally:
        if enabled:
            gc.enable()
    return out


class Summary(TypedDict):
    """One measurement's figures, as written to the JSON."""
    median_ns: float
    best_ns: float
    worst_ns: float
    runs_ns: list[float]


def summary(values: list[float]) -> Summary:
    return {"median_ns": statistics.median(values), "best_ns": min(values), "worst_ns": max(values),
            "runs_ns": [round(v, 1) for v in values]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed runs (default 7)")
    ap.add_argument("--pairs", type=int, default=200_000, help="lock/unlock pairs per run (default 200,000)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args(argv)
    check_json(ap, args.json)
    if args.runs < 1 or args.pairs < 1:
        ap.error("--runs and --pairs must be >= 1")

    info = host_info()
    print(f"host: {info['machine']}, {info['cpu_count']} CPUs ({info['cpu_model']}), "
          f"{info['implementation']} {info['python']}, {info['date']}, rmm_mp {info['revision']}")
    print(f"runs: {args.runs} x {args.pairs:,} pairs, owner cpu_owner(0), uncontended, clock perf_counter_ns")

    with Machine.create("host", cpus=1) as m:
        table = m.granule_table(cpu_owner(0))
        idx = GRANULE_INDEX
        addr = table.addr(idx)
        if table.holder(idx) != 0 or table.state(idx) != GranuleState.NS:
            measurement_failed(f"granule {idx} is not a free NS granule on a fresh machine")
        lock_unlock = summary(measure(lambda n: time_lock_unlock(table, idx, n), args.runs, args.pairs))
        find_unlock = summary(measure(lambda n: time_find_lock_unlock(table, addr, GranuleState.NS, n),
                                      args.runs, args.pairs))
        empty = summary(measure(time_empty_loop, args.runs, args.pairs))
        if table.holder(idx) != 0:
            measurement_failed(f"granule {idx} still locked after the benchmark")

    width = 18
    print(f"{'':{width}}  {'median ns':>10}  {'best ns':>8}  {'worst ns':>8}")
    for name, s in (("lock+unlock", lock_unlock), ("find_lock+unlock", find_unlock), ("empty loop", empty)):
        print(f"{name:{width}}  {s['median_ns']:>10.1f}  {s['best_ns']:>8.1f}  {s['worst_ns']:>8.1f}")
    ok = lock_unlock["median_ns"] <= TARGET_NS
    print(f"target <= {TARGET_NS} ns ({TARGET_NS / 1000:g} us) per lock+unlock pair (median): "
          f"{lock_unlock['median_ns']:.1f} ns -> {'PASS' if ok else 'MISS'}")

    if args.json:
        write_json(args.json, {"benchmark": "bench_lock", "host": info, "options": vars(args), "runs": args.runs,
                               "pairs": args.pairs, "lock_unlock": lock_unlock, "find_lock_unlock": find_unlock,
                               "empty_loop": empty, "target_ns": TARGET_NS, "pass": ok})
    return 0 if ok else 1


if __name__ == "__main__":
    tool_main(main)
