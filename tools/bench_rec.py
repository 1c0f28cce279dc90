#!/usr/bin/env python3
"""REC round trips and guest execution speed on 1 CPU, through the host's run loop.

(a) Round trip. A realm whose guest makes RSI_HOST_CALL (QUERY, imm 2) in a loop runs on CPU 0
    of a fresh "host" machine, in this process. One round trip is one iteration of the host's
    run loop (rmm_mp.host.RunLoop): take the vCPU from the shared run queue, RMI_REC_ENTER (the
    RMM completes the previous host call, the guest runs up to its next RSI_HOST_CALL, the REC
    exits with RMI_EXIT_HOST_CALL), read the exit, serve the host call, write the results into
    enter.gprs and put the vCPU back. Each is timed with time.perf_counter_ns; p50 and p99 are
    the exact nearest-rank percentiles of those samples (the rank the histograms take). The
    machine's own histograms give RMI_REC_ENTER (EL3 entry to EL3 return) and EXIT_HOST_CALL
    (the RMM's part from entry to exit) over the same round trips; their p50 is the upper edge
    of a histogram bucket (<= ~3 % above).
    Target: round trip p50 <= 15 us (median of --repeat runs, each on a fresh machine).

(b) Guest instructions per second. A guest that only loops (add, b) on a machine whose time
    slice is --slice instructions: each REC_ENTER executes exactly one slice and exits with
    RMI_EXIT_IRQ, so instructions = entries * slice; the rate is that over the wall time of
    the entries (run loop included, a negligible share at this slice; one untimed entry first).
    Three runs, each on a fresh machine; the median is printed.

(c) What latency recording costs a round trip. On one machine, blocks of --cost-trips round
    trips with recording on and off (Cpu.set_recording) alternate, --cost-repeat blocks each;
    the cost is median(on) - median(off) of the blocks' mean round trip, and its share of
    median(off). Alternating in one process keeps the two variants on the same heap and code
    layout (from one process to the next the round trip itself moves by about 1 us).

If the round-trip target is missed, the tool profiles --profile-trips round trips with cProfile
and prints where the time goes (file:function, own time), split into the RMM's REC_ENTER (the
time inside the CPU handle's entry: Cpu.smc_u64, the run loop's, or Cpu.smc) and the host's
part. With --profile it always does.

    python tools/bench_rec.py [--trips 20000] [--repeat 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import statistics
import time
from typing import Any, Callable, cast

from benchlib import check_json, host_info, measurement_failed, percentile, slot_named, tool_main, window, write_json

from rmm_mp.guest.assembler import assemble
from rmm_mp.host import NsAllocator, RealmSpec, RunLoop, RunQueue, create_realm
from rmm_mp.machine import Machine
from rmm_mp.stats import report

TARGET_P50_NS = 15_000
BASE = 0x8000_0000
HOST_CALL_LOOP = assemble("""
loop:
    mov x0, =0xC4000199         // RSI_HOST_CALL
    adr x1, hostcall
    smc #0
    b loop
    .align 256
hostcall:
    .half 2                     // imm 2: QUERY (selector 0 in gprs[0]: the vCPU count)
    .zero 254
""", base=BASE)
SPIN = assemble("""
loop:
    add x1, x1, #1
    b loop
""", base=BASE)


def _take(loop: RunLoop) -> Callable[[int], int]:
    """The run queue's take, typed as never empty: the one realm's one vCPU runs an endless loop
    and each step queues it again (had the realm ended, step(None) failed at once, as it still
    does). The bound method itself, so that the timed loops call what they called before."""
    return cast(Callable[[int], int], loop.queue.take)


def _realm(m: Machine, image: bytes) -> tuple[RunLoop, "object"]:
    cpu = m.cpu(0)
    alloc = NsAllocator(m, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=BASE, ram_size=2 << 20, image=image))
    RunQueue(m).add_realm(alloc, realm)
    return RunLoop(cpu), cpu


def round_trips(trips: int, warmup: int) -> dict[str, float]:
    """One repeat of (a) on a fresh machine; times in ns."""
    with Machine.create("host", cpus=1) as m:
        loop, cpu = _realm(m, HOST_CALL_LOOP)
        take, step, clock = _take(loop), loop.step, time.perf_counter_ns
        for _ in range(warmup):
            step(take(0))
        cpu.flush_statistics()          # type: ignore[attr-defined]
        before = report.collect(m, [0])[0]
        samples = [0] * trips
        gc.disable()
        try:
            for i in range(trips):
                t0 = clock()
                step(take(0))
                samples[i] = clock() - t0
        finally:
            gc.enable()
        cpu.flush_statistics()          # type: ignore[attr-defined]
        after = report.collect(m, [0])[0]
        if loop.exits[5] != warmup + trips:
            measurement_failed(f"expected {warmup + trips} host-call exits, the loop saw {loop.exits}")
    enter, exit_hc = (window(before, after, slot_named(name)) for name in ("RMI_REC_ENTER", "EXIT_HOST_CALL"))
    samples.sort()
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "mean": sum(samples) / trips,
            "rec_enter_p50": enter.percentile(50), "rec_enter_p99": enter.percentile(99),
            "rec_enter_mean": enter.sum_ns / enter.count, "rec_enter_count": enter.count,
            "exit_host_call_p50": exit_hc.percentile(50), "exit_host_call_p99": exit_hc.percentile(99),
            "exit_host_call_count": exit_hc.count}


def recording_cost(trips: int, repeat: int) -> dict[str, Any]:
    """(c): the mean round trip with recording on and off, alternating blocks on one machine."""
    with Machine.create("host", cpus=1) as m:
        loop, cpu = _realm(m, HOST_CALL_LOOP)
        take, step, clock = _take(loop), loop.step, time.perf_counter_ns
        for _ in range(trips):
            step(take(0))
        blocks: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(repeat):
            for on in (True, False):
                cpu.set_recording(on)       # type: ignore[attr-defined]
                t0 = clock()
                for _ in range(trips):
                    step(take(0))
                blocks[on].append((clock() - t0) / trips)
    on_ns, off_ns = statistics.median(blocks[True]), statistics.median(blocks[False])
    return {"on_ns": on_ns, "off_ns": off_ns, "cost_ns": on_ns - off_ns, "cost_share": (on_ns - off_ns) / off_ns,
            "on_blocks": blocks[True], "off_blocks": blocks[False]}


def instructions_per_second(slice_: int, entries: int) -> dict[str, float]:
    with Machine.create("host", cpus=1, time_slice=slice_) as m:
        loop, _ = _realm(m, SPIN)
        take, step = _take(loop), loop.step
        step(take(0))
        t0 = time.perf_counter_ns()
        for _ in range(entries):
            step(take(0))
        elapsed = time.perf_counter_ns() - t0
        if loop.exits[1] != entries + 1:
            measurement_failed(f"expected {entries + 1} IRQ exits (one per time slice), the loop saw {loop.exits}")
    return {"instructions": entries * slice_, "seconds": elapsed / 1e9, "ips": entries * slice_ / (elapsed / 1e9)}


def profile(trips: int) -> tuple[list[tuple[str, float, float]], float, float]:
    """cProfile of ``trips`` round trips: [(file:function, own us per trip, cumulative us per
    trip)] by own time, and the profiled time per trip inside the CPU handle's entry (Cpu.smc_u64,
    which the run loop's REC_ENTER takes, and Cpu.smc) and in total."""
    with Machine.create("host", cpus=1) as m:
        loop, _ = _realm(m, HOST_CALL_LOOP)
        take, step = _take(loop), loop.step
        for _ in range(1000):
            step(take(0))
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(trips):
            step(take(0))
        prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows, smc, total = [], 0.0, 0.0
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for (path, line, func), (_, _, own, cum, _) in stats.items():
        where = os.path.relpath(path, root) if path.startswith(root) else path
        rows.append((f"{where}:{func}", own / trips * 1e6, cum / trips * 1e6))
        if func in ("smc", "smc_u64") and path.endswith("cpu_handle.py"):     # neither calls the other
            smc += cum / trips * 1e6
        if func == "step" and path.endswith("runloop.py"):
            total = cum / trips * 1e6
    rows.sort(key=lambda r: -r[1])
    return rows, smc, total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trips", type=int, default=20_000, help="timed round trips per repeat (default 20,000)")
    ap.add_argument("--warmup", type=int, default=2_000, help="untimed round trips first (default 2,000)")
    ap.add_argument("--repeat", type=int, default=5, help="repeats of (a), each on a fresh machine (default 5)")
    ap.add_argument("--slice", type=int, default=1_000_000, help="time slice for (b), instructions (default 1,000,000)")
    ap.add_argument("--entries", type=int, default=5, help="REC entries (time slices) timed in (b) (default 5)")
    ap.add_argument("--cost-trips", type=int, default=5_000, help="round trips per block in (c) (default 5,000)")
    ap.add_argument("--cost-repeat", type=int, default=9, help="blocks of each variant in (c) (default 9)")
    ap.add_argument("--profile", action="store_true", help="profile even if the target is met")
    ap.add_argument("--profile-trips", type=int, default=5_000, help="round trips profiled (default 5,000)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args(argv)
    check_json(ap, args.json)
    if min(args.trips, args.repeat, args.slice, args.entries, args.profile_trips, args.cost_trips,
           args.cost_repeat) < 1 or args.warmup < 0:
        ap.error("--trips, --repeat, --slice, --entries, --profile-trips, --cost-trips and --cost-repeat must be "
                 "positive, --warmup not negative")

    info = host_info()
    print(f"host: {info['machine']}, {info['cpu_count']} CPUs ({info['cpu_model']}), usable {info['usable_cpus']}, "
          f"{info['implementation']} {info['python']}, {info['date']}, rmm_mp {info['revision']}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"\n(a) REC_ENTER -> EXIT_HOST_CALL -> host -> re-entry, 1 CPU, {args.trips:,} round trips x {args.repeat}")
    runs = []
    for i in range(args.repeat):
        r = round_trips(args.trips, args.warmup)
        runs.append(r)
        print(f"    run {i + 1}: round trip p50 {r['p50'] / 1e3:6.2f} us, p99 {r['p99'] / 1e3:6.2f} us | "
              f"RMI_REC_ENTER p50 {r['rec_enter_p50'] / 1e3:6.2f} us, p99 {r['rec_enter_p99'] / 1e3:6.2f} us | "
              f"EXIT_HOST_CALL p50 {r['exit_host_call_p50'] / 1e3:6.2f} us")
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    host_share = med["mean"] - med["rec_enter_mean"]
    print(f"    median: round trip p50 {med['p50'] / 1e3:.2f} us, p99 {med['p99'] / 1e3:.2f} us, mean "
          f"{med['mean'] / 1e3:.2f} us; RMI_REC_ENTER p50 {med['rec_enter_p50'] / 1e3:.2f} us, p99 "
          f"{med['rec_enter_p99'] / 1e3:.2f} us, mean {med['rec_enter_mean'] / 1e3:.2f} us; EXIT_HOST_CALL p50 "
          f"{med['exit_host_call_p50'] / 1e3:.2f} us, p99 {med['exit_host_call_p99'] / 1e3:.2f} us")
    print(f"    host's part of the mean round trip (mean minus the RMI_REC_ENTER mean): {host_share / 1e3:.2f} us")
    verdict = "PASS" if med["p50"] <= TARGET_P50_NS else "MISS"
    print(f"    {verdict}: round trip p50 {med['p50'] / 1e3:.2f} us (target <= {TARGET_P50_NS / 1e3:g} us)")

    ips_runs = [instructions_per_second(args.slice, args.entries) for _ in range(3)]
    ips = statistics.median(r["ips"] for r in ips_runs)
    shown = ", ".join(f"{r['ips']:,.0f}" for r in ips_runs)
    print(f"\n(b) guest instructions per second, time slice {args.slice:,}: {shown}; median {ips:,.0f}")

    cost = recording_cost(args.cost_trips, args.cost_repeat)
    print(f"\n(c) latency recording, {args.cost_repeat} alternating blocks of {args.cost_trips:,} round trips each: "
          f"on {cost['on_ns'] / 1e3:.2f} us, off {cost['off_ns'] / 1e3:.2f} us (medians of the blocks' means); "
          f"recording costs {cost['cost_ns'] / 1e3:.2f} us a round trip ({cost['cost_share']:+.1%})")

    prof_rows: list[tuple[str, float, float]] = []
    if verdict == "MISS" or args.profile:
        prof_rows, smc_us, total_us = profile(args.profile_trips)
        print(f"\ncProfile of {args.profile_trips:,} round trips (times per round trip, inflated by the profiler): "
              f"{total_us:.1f} us in RunLoop.step, {smc_us:.1f} us of it inside Cpu.smc_u64 and Cpu.smc "
              "(the RMM's REC_ENTER), "
              f"{total_us - smc_us:.1f} us in the host")
        print("    own time per trip  cumulative  file:function")
        for where, own, cum in prof_rows[:20]:
            print(f"    {own:11.2f} us  {cum:8.2f} us  {where}")
    if args.json:
        write_json(args.json, {"benchmark": "bench_rec", "host": info, "options": vars(args), "runs": runs,
                               "median": med, "verdict": verdict, "ips_runs": ips_runs, "ips": ips,
                               "recording_cost": cost,
                               "profile": [{"where": w, "own_us": o, "cum_us": c} for w, o, c in prof_rows[:40]]})
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    tool_main(main)
