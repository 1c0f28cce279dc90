#!/usr/bin/env python3
"""Realm build and teardown with the KVM-like host: RMI calls per second and milliseconds per realm.

Each CPU process (rmm_mp.runtime.run_cpus, spawn) of a fresh "fvp" machine builds and destroys
one realm after another with rmm_mp.host: a 40-bit realm with 8 MiB of RAM set to RIPAS RAM by
RTT_INIT_RIPAS (no data granules for it: a guest would fault them in later), a 64 KiB image
loaded with measured DATA_CREATE, and 2 RECs; then REALM_ACTIVATE, and teardown in KVM's
"legacy" and "v12" orders alternately (--order to pick one): 164 RMI calls per realm, printed
at the start from the histograms of a separate machine. Every granule comes from the shared NS
allocator; with 2 CPUs the realms are disjoint (each CPU builds its own).

As in tools/bench_delegate.py, every CPU warms up (--warmup s), then all CPUs agree on a
steady-state window through their activity counters, so the window only ever sees all CPUs
busy. Calls are counted from the machine's own histograms (stats.report.collect /
total_calls, flushed at the window edges); realms completed in the window give the time per
realm ("ms per realm" is a CPU's window divided by the realms it completed in it). 1 CPU and
2 CPUs are measured in the same invocation, alternately, --repeat times each, each run on a
fresh machine; medians are reported, and the ratio is that of the medians from this run.
Each window also records the share of it each CPU process was on a core, the cores' worth of
time other processes used (from /proc/stat), and calls per CPU-second of each process, which
tells lost CPU time (other load) from slower CPU time (the processes slowing each other). A
window is quiet as in tools/bench_delegate.py (benchlib.is_quiet): one whose /proc/stat could not
be read counts as loaded.

    python tools/bench_realm.py [--seconds 5] [--repeat 3] [--json FILE]

The CPU target ``realm_loop`` is a top-level function of this module: spawned children
re-import this file (as __mp_main__ when it is run as a script), so keep the main code under
``if __name__ == "__main__":``.
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import asdict, dataclass
from typing import TypedDict

from benchlib import (QUIET_HELP, check_cpus, check_json, check_seconds, host_info, is_quiet, load_warning,
                      measurement_failed, steady_window, tool_main, write_json)

from rmm_mp.host import NsAllocator, RealmSpec, create_realm, destroy_realm
from rmm_mp.machine import Cpu, Machine
from rmm_mp.runtime import run_cpus
from rmm_mp.stats import report

PLATFORM = "fvp"
IMAGE = bytes((i * 131 + 7) & 0xFF for i in range(64 * 1024))


def realm_spec(order: str) -> RealmSpec:
    return RealmSpec(ipa_width=40, ram_base=0x8000_0000, ram_size=8 << 20, hash_algo=0, num_recs=2, image=IMAGE,
                     measure=True, teardown=order)


# -- the CPU target (runs in the spawned CPU processes) -----------------------------------

@dataclass(frozen=True)
class LoopPlan:
    peers: tuple[int, ...]
    seconds: float
    warmup: float
    order: str                  # "legacy", "v12" or "alternate"


@dataclass(frozen=True)
class LoopResult:
    cpu: int
    window_calls: int           # RMI calls recorded in this CPU's histograms during the window
    window_realms: int          # realms built and destroyed during the window
    window_ns: int
    window_cpu_ns: int
    total_realms: int
    host_ticks: tuple[int, ...] = ()   # /proc/stat "cpu" line deltas over the window (all cores)


def realm_loop(cpu: Cpu, plan: LoopPlan) -> LoopResult:
    """CPU target: build and destroy realms through the common steady-state window
    (benchlib.steady_window)."""
    alloc = NsAllocator.for_cpu(cpu)
    specs = {o: realm_spec(o) for o in ("legacy", "v12")}
    made = 0

    def one_realm() -> None:
        nonlocal made
        order = plan.order if plan.order != "alternate" else ("legacy", "v12")[made % 2]
        destroy_realm(cpu, alloc, create_realm(cpu, alloc, specs[order]))
        made += 1

    w = steady_window(cpu, plan.peers, plan.warmup, plan.seconds, one_realm)
    if w is None:
        return LoopResult(cpu.id, 0, 0, 0, 0, made)
    return LoopResult(cpu.id, w.calls, w.units, w.ns, w.cpu_ns, made, w.host_ticks)


# -- the parent -----------------------------------------------------------------------------

def calls_per_realm(order: str) -> dict[str, int]:
    """RMI calls of one build and one teardown, counted from the histograms of a fresh machine."""
    with Machine.create(PLATFORM, cpus=1) as m:
        cpu = m.cpu(0)
        alloc = NsAllocator(m, 0)
        destroy_realm(cpu, alloc, create_realm(cpu, alloc, realm_spec(order)))   # host boot probe
        cpu.flush_statistics()
        before = report.total_calls(report.collect(m, [0]))
        realm = create_realm(cpu, alloc, realm_spec(order))
        cpu.flush_statistics()
        built = report.total_calls(report.collect(m, [0]))
        destroy_realm(cpu, alloc, realm)
        cpu.flush_statistics()
        done = report.total_calls(report.collect(m, [0]))
    return {"build": built - before, "teardown": done - built}


class Throughput(TypedDict):
    """One throughput run's figures (throughput_run), as written to the JSON."""
    cpus: int
    calls_per_s: float
    realms_per_s: float
    ms_per_realm: float
    per_cpu_calls_per_s: list[float]
    per_cpu_busy: list[float]
    calls_per_cpu_s: list[float]
    other_load_cores: float | None
    window_realms: list[int]
    window_calls: list[int]


def throughput_run(ncpus: int, args: argparse.Namespace) -> Throughput:
    with Machine.create(PLATFORM, cpus=ncpus) as m:
        plan = LoopPlan(tuple(range(ncpus)), args.seconds, args.warmup, args.order)
        result = run_cpus(m, realm_loop, args=(plan,), timeout_s=args.warmup + args.seconds + 120)
        check_cpus(result)
        per_cpu: list[LoopResult] = [result.results[c] for c in sorted(result.results)]
        left = NsAllocator(m, 0).statistics()
    if left.granules_in_use or left.vmids_in_use:
        measurement_failed(f"the allocator is not empty after the run: {left}")
    if any(r.window_realms <= 0 for r in per_cpu):
        measurement_failed(f"a CPU finished no realm in its window: {per_cpu}")
    rates = [r.window_calls / (r.window_ns / 1e9) for r in per_cpu]
    ticks = per_cpu[0].host_ticks
    busy = [r.window_cpu_ns / r.window_ns for r in per_cpu]
    other = None
    if ticks and sum(ticks):
        # Cores' worth of time used by anything but the CPU processes during the window.
        used = (sum(ticks) - ticks[3] - ticks[4] - ticks[7]) / sum(ticks) * (os.cpu_count() or 1)
        other = max(0.0, used - sum(busy))
    return {
        "cpus": ncpus,
        "calls_per_s": sum(rates),
        "realms_per_s": sum(r.window_realms / (r.window_ns / 1e9) for r in per_cpu),
        "ms_per_realm": statistics.mean(r.window_ns / 1e6 / r.window_realms for r in per_cpu),
        "per_cpu_calls_per_s": rates,
        "per_cpu_busy": busy,
        "calls_per_cpu_s": [r.window_calls / (r.window_cpu_ns / 1e9) for r in per_cpu],
        "other_load_cores": other,
        "window_realms": [r.window_realms for r in per_cpu],
        "window_calls": [r.window_calls for r in per_cpu],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=QUIET_HELP)
    ap.add_argument("--seconds", type=float, default=5.0, help="steady-state window of each run (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per CPU count (default 3)")
    ap.add_argument("--warmup", type=float, default=0.5, help="warm-up of each CPU before the window, s (default 0.5)")
    ap.add_argument("--order", choices=("alternate", "legacy", "v12"), default="alternate",
                    help="teardown order (default: alternate legacy and v12)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args(argv)
    check_json(ap, args.json)
    if args.repeat < 1:
        ap.error("--repeat must be positive")
    check_seconds(ap, "seconds", args.seconds)
    check_seconds(ap, "warmup", args.warmup, zero=True)

    info = host_info()
    print(f"host: {info['machine']}, {info['cpu_count']} CPUs ({info['cpu_model']}), usable {info['usable_cpus']}, "
          f"{info['implementation']} {info['python']}, {info['date']}, rmm_mp {info['revision']}")
    counts = {o: calls_per_realm(o) for o in ("legacy", "v12")}
    print(f"realm: platform {PLATFORM}, s2sz 40, 8 MiB RIPAS RAM (not populated), 64 KiB measured image, 2 RECs")
    for o, c in counts.items():
        print(f"    RMI calls per realm ({o} teardown): build {c['build']}, teardown {c['teardown']}, "
              f"total {c['build'] + c['teardown']}")
    print(f"\nthroughput, {args.seconds:g} s windows, {args.repeat} runs each, alternating 1 and 2 CPU processes, "
          f"teardown {args.order}")
    runs: dict[int, list[Throughput]] = {1: [], 2: []}
    for i in range(args.repeat):
        for n in (1, 2):
            r = throughput_run(n, args)
            runs[n].append(r)
            busy = ", ".join(f"{b * 100:.0f}%" for b in r["per_cpu_busy"])
            other = "n/a" if r["other_load_cores"] is None else f"{r['other_load_cores']:.2f}"
            print(f"    run {i + 1} {n} CPU{'s' if n > 1 else ' '}: {r['calls_per_s']:>9,.0f} calls/s, "
                  f"{r['realms_per_s']:>6.1f} realms/s, {r['ms_per_realm']:.2f} ms per realm per CPU "
                  f"(realms {r['window_realms']}; on core {busy}; other load {other} cores)")
    med = {n: {"calls_per_s": statistics.median(r["calls_per_s"] for r in runs[n]),
               "realms_per_s": statistics.median(r["realms_per_s"] for r in runs[n]),
               "ms_per_realm": statistics.median(r["ms_per_realm"] for r in runs[n])} for n in (1, 2)}
    ratio = med[2]["calls_per_s"] / med[1]["calls_per_s"]
    for n in (1, 2):
        print(f"    median {n} CPU{'s' if n > 1 else ' '}: {med[n]['calls_per_s']:,.0f} RMI calls/s, "
              f"{med[n]['realms_per_s']:.1f} realms/s, {med[n]['ms_per_realm']:.2f} ms per realm")
    print(f"    ratio 2 CPUs / 1 CPU (calls/s): {ratio:.2f}")
    eff = {n: statistics.median(x for r in runs[n] for x in r["calls_per_cpu_s"]) for n in (1, 2)}
    print(f"    calls per CPU-second of each CPU process (median): 1 CPU {eff[1]:,.0f}, 2 CPUs {eff[2]:,.0f} "
          f"({eff[2] / eff[1]:.3f}: below 1 = the processes slow each other down)")
    quiet = {n: [r["calls_per_s"] for r in runs[n] if is_quiet(r["other_load_cores"])]
             for n in (1, 2)}
    warning = load_warning([r["other_load_cores"] for n in (1, 2) for r in runs[n]])
    quiet_ratio = None
    if warning:
        print(f"    WARNING: {warning}: the ratio above includes those windows")
        if quiet[1] and quiet[2]:
            quiet_ratio = statistics.median(quiet[2]) / statistics.median(quiet[1])
            print(f"    quiet windows only ({len(quiet[1])} x 1 CPU, {len(quiet[2])} x 2 CPUs): "
                  f"ratio {quiet_ratio:.2f}")
    if args.json:
        out = {"benchmark": "bench_realm", "host": info, "options": vars(args), "calls_per_realm": counts,
               "median": med, "ratio": ratio, "calls_per_cpu_s": eff, "quiet_ratio": quiet_ratio,
               "runs_1": runs[1], "runs_2": runs[2]}
        write_json(args.json, out, default=lambda o: asdict(o))
    return 0


if __name__ == "__main__":
    tool_main(main)
