#!/usr/bin/env python3
"""RMI_GRANULE_DELEGATE / UNDELEGATE: latency on one CPU, and throughput on 1 and 2 CPU processes.

(a) Latency. In this process, on CPU 0 of a fresh "host" machine, --calls round trips
    DELEGATE(pa) + UNDELEGATE(pa) through ``cpu.smc`` (host SMC -> EL3 -> RMM handler -> GTSI
    SMC to EL3 -> REQ_COMPLETE -> Normal world), cycling over --granules private granules.
      wall mean   time.perf_counter_ns around the whole loop / number of calls; includes the
                  Python loop, Cpu.smc's argument checks and the latency recording itself.
      p50, p99    from the machine's own per-call histograms (rmm_mp.stats.report.collect):
                  EL3 entry to EL3 return of each call, also perf_counter_ns; reported as the
                  upper edge of the histogram bucket (at most ~3 % above the true value).
    A second loop with recording switched off (cpu.set_recording(False)) gives the wall mean
    without the recorder. Target: p50 <= 5 us for DELEGATE and for UNDELEGATE.
      split cost  a third loop, traced (the ring keeps every call's t0 and total): the p50 of
                  the calls whose EL3 / RMM split was sampled (t0 a multiple of SPLIT_EVERY ns:
                  two more clock reads, t1 and t2) less the p50 of the others. About half of it
                  lands in a sampled call's EL3 part (t1's read up to its reading, t2's after
                  it), so el3_mean overstates the unsampled calls' EL3 time by about that half
                  and rmm_mean understates theirs by as much (docs/latency.md).

(b) Throughput. One CPU process per simulated CPU (rmm_mp.runtime.run_cpus, spawn), each
    looping DELEGATE + UNDELEGATE over its own private granules (disjoint: no granule, no
    granule-table cache line and no GPT cache line is shared between CPUs with the default
    --layout spread). Each CPU warms up (--warmup s), then all CPUs agree on a steady-state
    window through their activity counters: a CPU starts its window once every CPU is warm,
    runs --seconds, and keeps running afterwards until every CPU has finished its window, so
    the windows only ever see all CPUs busy. Calls are counted from the histograms
    (stats.report.total_calls, flushed at the window edges) and divided by the window length.
    The aggregate is the sum of the per-CPU rates. 1 CPU and 2 CPUs are measured in the same
    invocation, alternately, --repeat times each; medians are reported. Target: 2 CPUs >= 1.85x
    the calls/s of 1 CPU (on a 2-core host). The parent only waits in run_cpus (tick --tick s).

    python tools/bench_delegate.py [--seconds 5] [--repeat 3] [--json FILE]

The CPU target ``delegate_loop`` is a top-level function of this module: spawned children
re-import this file (as __mp_main__ when it is run as a script), so keep the main code under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TypedDict, cast

from benchlib import (QUIET_HELP, check_cpus, check_json, check_seconds, host_info, is_quiet, load_warning,
                      measurement_failed, steady_window, tool_main, write_json)

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.el3.monitor import SPLIT_EVERY
from rmm_mp.hw import trace
from rmm_mp.machine import Cpu, Machine
from rmm_mp.runtime import run_cpus
from rmm_mp.stats import calls, report

DELEGATE = int(RmiFid.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)
DELEGATE_SLOT = calls.rmi_slot(DELEGATE)
UNDELEGATE_SLOT = calls.rmi_slot(UNDELEGATE)

P50_TARGET_NS = 5_000
SCALING_TARGET = 1.85

FIRST_GRANULE = 1024        # granule index of the first private granule (4 MiB into DRAM)
SPREAD = 2048               # granules between two CPUs' pools with --layout spread (8 MiB)
BATCH = 32                  # round trips between two looks at the shared words



# -- the CPU target (runs in the spawned CPU processes) -----------------------------------

@dataclass(frozen=True)
class LoopPlan:
    granules: tuple[tuple[int, ...], ...]  # private PAs of each CPU id
    peers: tuple[int, ...]                 # CPU ids in this run
    seconds: float
    warmup: float


@dataclass(frozen=True)
class LoopResult:
    cpu: int
    window_calls: int      # calls recorded in the histograms during the window
    window_ns: int         # window length, perf_counter_ns
    window_cpu_ns: int     # CPU time this process got during the window (process_time_ns)
    total_calls: int       # calls made by this process in the whole run (warm-up included; 0 if stopped)
    preempted: int = 0     # involuntary context switches of this process during the window
    migrations: int = 0    # moves of this process between host cores during the window
    host_ticks: tuple[int, ...] = ()  # /proc/stat "cpu" line deltas over the window (all cores)


def delegate_loop(cpu: Cpu, plan: LoopPlan) -> LoopResult:
    """CPU target: DELEGATE + UNDELEGATE round trips over this CPU's private granules, through
    the common steady-state window (benchlib.steady_window)."""
    pas = plan.granules[cpu.id]
    # Batches walk the pool cyclically, BATCH granules at a time, so every granule is used.
    cyclic = list(pas) * BATCH
    slices = [tuple(cyclic[j:j + BATCH]) for j in range(0, len(cyclic), BATCH)]
    smc = cpu.smc
    turn = 0

    def batch() -> None:
        nonlocal turn
        for pa in slices[turn]:
            if smc(DELEGATE, pa)[0] or smc(UNDELEGATE, pa)[0]:
                raise RuntimeError(f"CPU {cpu.id}: DELEGATE/UNDELEGATE of private granule {pa:#x} failed")
        turn = (turn + 1) % len(slices)

    w = steady_window(cpu, plan.peers, plan.warmup, plan.seconds, batch)
    if w is None:
        return LoopResult(cpu.id, 0, 0, 0, 0)
    return LoopResult(cpu.id, w.calls, w.ns, w.cpu_ns, 2 * BATCH * w.total_units, w.preempted, w.migrations,
                      w.host_ticks)


# -- the parent -----------------------------------------------------------------------------

def private_granules(machine: Machine, cpus: int, per_cpu: int, layout: str) -> tuple[tuple[int, ...], ...]:
    """PAs of each CPU's private pool: 'spread' keeps pools 8 MiB apart (no shared cache line in
    the granule table or the GPT); 'interleaved' alternates CPUs granule by granule (shared lines)."""
    base, gsize = machine.dram_base, machine.granule_size
    if layout == "spread":
        idx = [[FIRST_GRANULE + c * SPREAD + i for i in range(per_cpu)] for c in range(cpus)]
    else:
        idx = [[FIRST_GRANULE + i * cpus + c for i in range(per_cpu)] for c in range(cpus)]
    limit = (min((r[0] - base) // gsize for r in machine.secure_regions) if machine.secure_regions
             else machine.granule_count)
    if max(max(i) for i in idx) >= limit:
        measurement_failed(f"--granules {per_cpu} does not fit below the Secure region of the host platform")
    return tuple(tuple(base + i * gsize for i in pool) for pool in idx)


def latency_run(calls_n: int, per_cpu: int) -> dict[str, float | None]:
    """Part (a), one repeat on a fresh 1-CPU machine."""
    with Machine.create("host", cpus=1, trace_capacity=2 * calls_n) as m:
        pas = private_granules(m, 1, per_cpu, "spread")[0]
        cpu = m.cpu(0)
        smc = cpu.smc
        seq = [pas[i % len(pas)] for i in range(calls_n)]
        clock = time.perf_counter_ns

        def loop(addresses: list[int]) -> int:
            t0 = clock()
            for pa in addresses:
                if smc(DELEGATE, pa)[0] or smc(UNDELEGATE, pa)[0]:
                    raise RuntimeError(f"DELEGATE/UNDELEGATE of {pa:#x} failed")
            return clock() - t0

        gc.disable()
        try:
            cpu.set_recording(False)
            loop(seq[: max(1, calls_n // 10)])          # warm-up, not recorded
            off_ns = loop(seq)                          # wall clock without the recorder
            cpu.set_recording(True)
            on_ns = loop(seq)                           # wall clock with recording, histograms
        finally:
            gc.enable()
        cpu.flush_statistics()
        stats = report.collect(m, [0])[0]
        d, u = stats[DELEGATE_SLOT], stats[UNDELEGATE_SLOT]
        if d.count != calls_n or u.count != calls_n or d.errors or u.errors:
            raise RuntimeError(f"histograms hold {d.count}/{u.count} calls ({d.errors}/{u.errors} errors), "
                               f"expected {calls_n} each without errors")
        cpu.set_tracing(True)
        gc.disable()
        try:
            loop(seq)                                   # every call's t0 and total in the ring
        finally:
            gc.enable()
        cpu.set_tracing(False)
        split_cost = _split_cost(m.read_trace(0))
        return {
            "wall_mean_ns": on_ns / (2 * calls_n),
            "wall_mean_norec_ns": off_ns / (2 * calls_n),
            "delegate_p50_ns": d.percentile(50), "delegate_p99_ns": d.percentile(99),
            "delegate_mean_ns": d.sum_ns / d.count, "delegate_handler_mean_ns": d.handler_ns / d.count,
            "undelegate_p50_ns": u.percentile(50), "undelegate_p99_ns": u.percentile(99),
            "undelegate_mean_ns": u.sum_ns / u.count, "undelegate_handler_mean_ns": u.handler_ns / u.count,
            "delegate_el3_mean_ns": d.el3_ns / d.count, "undelegate_el3_mean_ns": u.el3_ns / u.count,
            "delegate_split_cost_ns": split_cost[DELEGATE_SLOT],
            "undelegate_split_cost_ns": split_cost[UNDELEGATE_SLOT],
        }


def _split_cost(records: list[tuple[int, int, int, int, int]]) -> dict[int, float | None]:
    """{slot: p50 of its sampled calls' totals - p50 of its other calls'} from a trace ring: a
    call was sampled when its t0 is a multiple of SPLIT_EVERY ns (Monitor.smc_from_ns; the first
    call of each 50 ms flush interval is sampled too, and is counted with the others here: a
    call or two of thousands, which barely moves their median)."""
    groups: dict[int, tuple[list[int], list[int]]] = {}
    for start, duration, kind, slot, _ in records:
        if kind == trace.KIND_RMI:
            sampled, other = groups.setdefault(slot, ([], []))
            (other if start % SPLIT_EVERY else sampled).append(duration)
    return {slot: statistics.median(sampled) - statistics.median(other) if sampled and other else None
            for slot, (sampled, other) in groups.items()}


class Throughput(TypedDict):
    """One part (b) run's figures (throughput_run), as written to the JSON."""
    cpus: int
    calls_per_s: float
    per_cpu_calls_per_s: list[float]
    per_cpu_busy: list[float]
    window_s: list[float]
    window_calls: list[int]
    run_elapsed_s: float
    parent_cpu_s: float
    calls_per_cpu_s: list[float | None]
    preempted: list[int]
    migrations: list[int]
    host_idle_pct: float | None
    host_steal_pct: float | None
    other_load_cores: float | None


def throughput_run(ncpus: int, args: argparse.Namespace) -> Throughput:
    """Part (b), one run of ``ncpus`` CPU processes on a fresh machine."""
    with Machine.create("host", cpus=ncpus) as m:
        plan = LoopPlan(private_granules(m, ncpus, args.granules, args.layout), tuple(range(ncpus)),
                        args.seconds, args.warmup)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        result = run_cpus(m, delegate_loop, args=(plan,), tick_s=args.tick,
                          timeout_s=args.warmup + args.seconds + 120)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        check_cpus(result)
        per_cpu: list[LoopResult] = [result.results[c] for c in sorted(result.results)]
        whole = report.total_calls(report.collect(m))
    made = sum(r.total_calls for r in per_cpu)
    if whole != made:
        measurement_failed(f"histograms hold {whole} calls, the CPUs made {made}")
    if any(r.window_calls <= 0 or r.window_ns <= 0 for r in per_cpu):
        measurement_failed(f"a CPU recorded no calls in its window: {per_cpu}")
    rates = [r.window_calls / (r.window_ns / 1e9) for r in per_cpu]
    ticks = per_cpu[0].host_ticks
    total_ticks = sum(ticks) or 1
    return {
        "cpus": ncpus,
        "calls_per_s": sum(rates),
        "per_cpu_calls_per_s": rates,
        "per_cpu_busy": [r.window_cpu_ns / r.window_ns for r in per_cpu],
        "window_s": [r.window_ns / 1e9 for r in per_cpu],
        "window_calls": [r.window_calls for r in per_cpu],
        "run_elapsed_s": result.elapsed_s,
        "parent_cpu_s": (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime),
        "calls_per_cpu_s": [r.window_calls / (r.window_cpu_ns / 1e9) if r.window_cpu_ns else None for r in per_cpu],
        "preempted": [r.preempted for r in per_cpu],
        "migrations": [r.migrations for r in per_cpu],
        "host_idle_pct": 100.0 * (ticks[3] + ticks[4]) / total_ticks if ticks else None,
        "host_steal_pct": 100.0 * ticks[7] / total_ticks if ticks else None,
        # Cores' worth of time used by anything but the CPU processes during the window.
        "other_load_cores": ((total_ticks - ticks[3] - ticks[4] - ticks[7]) / total_ticks * (os.cpu_count() or 1)
                             - sum(r.window_cpu_ns / r.window_ns for r in per_cpu)) if ticks else None,
    }


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=QUIET_HELP)
    ap.add_argument("--seconds", type=float, default=5.0, help="steady-state window of each throughput run (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="throughput runs per CPU count (default 3)")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up of each CPU before the window, s (default 0.5)")
    ap.add_argument("--calls", type=int, default=20_000, help="latency: round trips per repeat (default 20,000)")
    ap.add_argument("--latency-repeat", type=int, default=5, help="latency repeats (default 5)")
    ap.add_argument("--granules", type=int, default=16, help="private granules per CPU (default 16)")
    ap.add_argument("--layout", choices=("spread", "interleaved"), default="spread",
                    help="private pools far apart (default) or interleaved granule by granule")
    ap.add_argument("--tick", type=float, default=0.1, help="run_cpus supervisor tick, s (default 0.1, its default)")
    ap.add_argument("--skip-latency", action="store_true", help="only part (b)")
    ap.add_argument("--skip-throughput", action="store_true", help="only part (a)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args(argv)
    check_json(ap, args.json)
    if args.repeat < 1 or args.calls < 1 or args.granules < 1 or args.latency_repeat < 1:
        ap.error("--repeat, --calls, --latency-repeat and --granules must be positive")
    check_seconds(ap, "seconds", args.seconds)
    check_seconds(ap, "warmup", args.warmup, zero=True)
    check_seconds(ap, "tick", args.tick)
    if args.skip_latency and args.skip_throughput:
        ap.error("--skip-latency and --skip-throughput together leave nothing to measure")

    info = host_info()
    print(f"host: {info['machine']}, {info['cpu_count']} CPUs ({info['cpu_model']}), "
          f"{info['implementation']} {info['python']}, {info['date']}, rmm_mp {info['revision']}")
    out: dict[str, object] = {"benchmark": "bench_delegate", "host": info, "options": vars(args)}
    ok = True

    if not args.skip_latency:
        runs = [latency_run(args.calls, args.granules) for _ in range(args.latency_repeat)]
        # A split cost is None in a repeat too short to have sampled calls of both kinds.
        lat = {k: statistics.median(known) if (known := [x for x in (r[k] for r in runs) if x is not None]) else None
               for k in runs[0]}
        # Only the split costs can be None: the other figures, read through ns, are always numbers.
        ns = cast(dict[str, float], lat)
        out["latency"] = {"median": lat, "runs": runs}
        print(f"\n(a) latency, 1 CPU, in-process, {args.latency_repeat} x {args.calls:,} round trips "
              f"(medians over repeats; us)")
        print(f"    {'call':<24} {'p50':>6} {'p99':>6} {'hist mean':>9} {'rmm mean':>8}")
        for name, key in (("RMI_GRANULE_DELEGATE", "delegate"), ("RMI_GRANULE_UNDELEGATE", "undelegate")):
            print(f"    {name:<24} {_us(ns[key + '_p50_ns']):>6} {_us(ns[key + '_p99_ns']):>6} "
                  f"{_us(ns[key + '_mean_ns']):>9} {_us(ns[key + '_handler_mean_ns']):>8}")
        print(f"    wall-clock mean per call: {_us(ns['wall_mean_ns'])} us with recording, "
              f"{_us(ns['wall_mean_norec_ns'])} us without")
        for name, key in (("DELEGATE", "delegate"), ("UNDELEGATE", "undelegate")):
            cost = lat[key + "_split_cost_ns"]
            print(f"    {name} el3_mean {_us(ns[key + '_el3_mean_ns'])} us; split cost "
                  f"{'n/a' if cost is None else f'{cost:.0f} ns'} (sampled calls' p50 - the others', traced loop)")
        for name, key in (("DELEGATE", "delegate"), ("UNDELEGATE", "undelegate")):
            passed = ns[key + "_p50_ns"] <= P50_TARGET_NS
            ok &= passed
            print(f"    target {name} p50 <= 5 us: {_us(ns[key + '_p50_ns'])} us -> {'PASS' if passed else 'MISS'}")

    if not args.skip_throughput:
        print(f"\n(b) throughput over disjoint granules ({args.layout}, {args.granules} per CPU), "
              f"{args.seconds:g} s windows, {args.repeat} runs each, alternating")
        runs1: list[Throughput] = []
        runs2: list[Throughput] = []
        for i in range(args.repeat):
            for n, runs_n in ((1, runs1), (2, runs2)):
                r = throughput_run(n, args)
                runs_n.append(r)
                busy = ", ".join(f"{b * 100:.0f}%" for b in r["per_cpu_busy"])
                per = ", ".join(f"{x:,.0f}" for x in r["per_cpu_calls_per_s"])
                pre = ", ".join(str(x) for x in r["preempted"])
                idle = "n/a" if r["host_idle_pct"] is None else f"{r['host_idle_pct']:.1f}%"
                steal = "n/a" if r["host_steal_pct"] is None else f"{r['host_steal_pct']:.1f}%"
                other = "n/a" if r["other_load_cores"] is None else f"{max(0.0, r['other_load_cores']):.2f}"
                eff = ", ".join(f"{x:,.0f}" for x in r["calls_per_cpu_s"] if x)
                print(f"    run {i + 1} {n} CPU{'s' if n > 1 else ' '}: {r['calls_per_s']:>10,.0f} calls/s "
                      f"(per CPU {per}; per CPU-second {eff})")
                print(f"        on core {busy}; involuntary context switches {pre}; host idle {idle}, steal {steal}, "
                      f"other load {other} cores; parent {r['parent_cpu_s']:.2f} s CPU")
        med1 = statistics.median(r["calls_per_s"] for r in runs1)
        med2 = statistics.median(r["calls_per_s"] for r in runs2)
        ratio = med2 / med1
        pair_ratios = [b["calls_per_s"] / a["calls_per_s"] for a, b in zip(runs1, runs2)]
        throughput: dict[str, object] = {"one_cpu_calls_per_s": med1, "two_cpu_calls_per_s": med2, "ratio": ratio,
                                         "pair_ratios": pair_ratios, "runs_1": runs1, "runs_2": runs2}
        out["throughput"] = throughput
        print(f"    median 1 CPU : {med1:,.0f} calls/s")
        print(f"    median 2 CPUs: {med2:,.0f} calls/s")
        print(f"    ratio {ratio:.3f} (run by run: {', '.join(f'{x:.3f}' for x in pair_ratios)})")
        warning = load_warning([r["other_load_cores"] for r in runs1 + runs2])
        if warning:
            print(f"    WARNING: {warning}: the ratio above includes those windows")
            quiet1 = [r["calls_per_s"] for r in runs1 if is_quiet(r["other_load_cores"])]
            quiet2 = [r["calls_per_s"] for r in runs2 if is_quiet(r["other_load_cores"])]
            if quiet1 and quiet2:
                q = statistics.median(quiet2) / statistics.median(quiet1)
                throughput["quiet_ratio"] = q
                print(f"    quiet windows only ({len(quiet1)} x 1 CPU, {len(quiet2)} x 2 CPUs): ratio {q:.3f} "
                      f"(for information; the target is judged on all runs)")
        # A CPU's figure is None only for a window with no CPU time, which a run that made
        # calls in it does not have: taken as a float, as before.
        eff1 = statistics.median(cast(float, r["calls_per_cpu_s"][0]) for r in runs1)
        eff2 = statistics.median(cast(float, x) for r in runs2 for x in r["calls_per_cpu_s"])
        throughput["calls_per_cpu_s"] = {"one_cpu": eff1, "two_cpus_each": eff2}
        print(f"    calls per CPU-second of each CPU process (median): 1 CPU {eff1:,.0f}, 2 CPUs {eff2:,.0f} "
              f"({eff2 / eff1:.3f}: below 1 = the processes slow each other down)")
        passed = ratio >= SCALING_TARGET
        ok &= passed
        print(f"    target 2 CPUs >= {SCALING_TARGET}x 1 CPU on 2 cores: {ratio:.2f}x -> "
              f"{'PASS' if passed else 'MISS'}")

    out["pass"] = ok
    if args.json:
        write_json(args.json, out, default=lambda o: asdict(o))
    return 0 if ok else 1


if __name__ == "__main__":
    tool_main(main)
