#!/usr/bin/env python3
"""Stress tool benchmarks (docs/performance.md ("Lock-correctness stress testing")): time to find
each catalogued bug, deterministic scheduling speed, and what each checker costs a free-running
run.

  (a) time to find, per bug, on --cpus CPU processes: a free-running hunt (runs of up to
      --limit seconds from fresh seeds, until the bug's named checker fires) and a
      deterministic hunt (random schedule, runs of --steps steps from fresh seeds, one after
      the other until it fires, at most --limit seconds in all); wall time from the first run's
      start, spawning and machine set-up included, median over --hunts hunts (each hunt its own
      fresh seeds; seeds 1000 + hunt * 100 upwards, so no recorded test seed is reused);
  (b) schedule steps per second of deterministic runs (mixed workload, --steps steps, random and
      PCT schedules, checkers off and all on): steps / the run's elapsed time (set-up and
      spawning included), and steps / the CPU time of the CPU processes;
  (c) free-running slowdown per checker: operations per CPU second of the CPU processes in
      --seconds runs of the mixed and the tables workloads with no checker, each checker alone,
      and all of them (ratios to "none").

    python tools/bench_stress.py [--cpus 2] [--hunts 3] [--limit 60] [--steps 20000]
                                 [--seconds 5] [--only a,b,c] [--bugs NAME,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import check_json, end_interrupted, host_info, measurement_failed, tool_main, write_json  # noqa: E402

from rmm_mp.stress import BUGS, StressConfig, StressReport  # noqa: E402
from rmm_mp.stress import run as stress_run  # noqa: E402
from rmm_mp.stress.config import CHECKERS, INTEGERS, pct_depth_problem  # noqa: E402

MAX_SECONDS = 86_400
"""The longest a stress run may be told to last (StressConfig.seconds)."""

HUNT_MIN_LEFT = 1.0
"""A hunt starts no run with this many seconds of its --limit left, or fewer."""


def run(cfg: StressConfig) -> StressReport:
    """One stress run; Ctrl-C during it ends the tool (the stress runner reports the stop as a
    run that ended early, which a hunt would take for "not found yet" and go on with the next
    seed, and a rate would take for a figure). SIGTERM is not taken (no sigterm_stops): it kills
    the tool at once (docs/performance.md)."""
    report = stress_run(cfg)
    if report.interrupted:
        end_interrupted()
    return report


def clean_run(cfg: StressConfig) -> StressReport:
    """``run`` for a measurement, which has no bug injected: a finding (a checker fired, a CPU
    process crashed or hung) ends the tool as a failed measurement, status 2, since its rate
    would be that of a broken run."""
    report = run(cfg)
    if not report.ok:
        measurement_failed(f"{cfg.workload} run (seed {cfg.seed}, {cfg.schedule} schedule) did not run clean:\n"
                           f"{report.text()}")
    return report


def _caught(report, bug) -> bool:  # type: ignore[no-untyped-def]
    return any(f.checker == bug.checker for f in report.findings)


def hunt(name: str, schedule: str, cpus: int, first_seed: int, limit: float, steps: int) -> dict[str, Any]:
    """Run from fresh seeds until the bug's checker fires or ``limit`` seconds have passed."""
    bug = BUGS[name]
    checkers = tuple(sorted({bug.checker, "watchdog"} & set(CHECKERS))) or ("watchdog",)
    start = time.monotonic()
    seed, runs = first_seed, 0
    while True:
        left = limit - (time.monotonic() - start)
        if left <= HUNT_MIN_LEFT:
            return {"found": False, "seconds": round(time.monotonic() - start, 2), "runs": runs}
        quiescent = (1000 if schedule != "free" else 1.0) if bug.checker == "invariants" else 0
        cfg = StressConfig(workload=bug.workload, cpus=cpus, seed=seed, schedule=schedule, steps=steps,
                           seconds=left, inject=(name,), checkers=checkers, quiescent_every=quiescent)
        report = run(cfg)
        runs += 1
        if _caught(report, bug):
            first = report.first()
            return {"found": True, "seconds": round(time.monotonic() - start, 2), "runs": runs, "seed": seed,
                    "step": first.step if first else None}
        if schedule == "free":
            seed += 1
        seed += 1


def time_to_find(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print(f"\n(a) time to find, {args.cpus} CPUs, median of {args.hunts} hunts from fresh seeds "
          f"(limit {args.limit:g} s each)")
    print(f"    {'bug':34} {'checker':10} {'free s':>8} {'found':>6} {'det s':>8} {'found':>6} {'det runs':>8}")
    for name in names:
        row: dict[str, Any] = {}
        for schedule in ("free", "random"):
            hunts = [hunt(name, schedule, args.cpus, 1000 + h * 100, args.limit, args.steps) for h in range(args.hunts)]
            row[schedule] = {"median_s": statistics.median(h["seconds"] for h in hunts),
                             "found": sum(h["found"] for h in hunts), "hunts": hunts}
        out[name] = row
        f, d = row["free"], row["random"]
        runs = statistics.median(h["runs"] for h in d["hunts"])
        print(f"    {name:34} {BUGS[name].checker:10} {f['median_s']:8.1f} {f['found']:>3}/{args.hunts} "
              f"{d['median_s']:8.1f} {d['found']:>3}/{args.hunts} {runs:8g}", flush=True)
    return out


def step_rate(args: argparse.Namespace) -> dict[str, Any]:
    print(f"\n(b) deterministic scheduling speed, mixed workload, {args.cpus} CPUs, {args.steps} steps")
    out = {}
    for schedule in ("random", "pct"):
        for label, checkers in (("none", ()), ("all", CHECKERS)):
            rates, per_cpu_s = [], []
            for seed in (1, 2, 3):
                r = clean_run(StressConfig(workload="mixed", cpus=args.cpus, seed=seed, schedule=schedule,
                                           steps=args.steps, seconds=600, checkers=checkers,
                                           quiescent_every=2000 if checkers else 0))
                rates.append(r.steps / r.elapsed_s)
                per_cpu_s.append(r.steps / r.cpu_seconds)
            out[f"{schedule}/{label}"] = {"steps_per_s": round(statistics.median(rates)),
                                          "steps_per_cpu_s": round(statistics.median(per_cpu_s)),
                                          "runs": [round(x) for x in rates]}
            print(f"    {schedule:7} checkers {label:5}: {statistics.median(rates):8.0f} steps/s of wall time, "
                  f"{statistics.median(per_cpu_s):8.0f} per CPU second (runs: {', '.join(f'{x:.0f}' for x in rates)})",
                  flush=True)
    return out


def slowdown(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workload in ("mixed", "tables"):
        print(f"\n(c) free-running slowdown per checker, {workload} workload, {args.cpus} CPUs, "
              f"{args.seconds:g} s runs: "
              "operations per CPU second of the CPU processes (median of 3 rounds; the configurations take turns "
              "in each round, so load from other processes falls on all of them)")
        configs = [("none", ())] + [(c, (c,)) for c in CHECKERS] + [("all", CHECKERS)]
        rates: dict[str, list[float]] = {label: [] for label, _ in configs}
        for seed in (1, 2, 3):
            for label, checkers in configs:
                r = clean_run(StressConfig(workload=workload, cpus=args.cpus, seed=seed, seconds=args.seconds,
                                           checkers=checkers, quiescent_every=2.0 if "invariants" in checkers else 0))
                rates[label].append(sum(r.ops.values()) / r.cpu_seconds)
        base = statistics.median(rates["none"])
        out[workload] = {}
        for label, _ in configs:
            rate = statistics.median(rates[label])
            out[workload][label] = {"ops_per_cpu_s": round(rate, 1), "slowdown": round(base / rate, 2),
                                    "runs": [round(x, 1) for x in rates[label]]}
            print(f"    {label:10}: {rate:8.0f} operations per CPU second   x{base / rate:.2f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpus", type=int, default=2, help="CPU processes of every run (default 2)")
    ap.add_argument("--hunts", type=int, default=3, help="hunts per bug and schedule in (a) (default 3)")
    ap.add_argument("--limit", type=float, default=60.0,
                    help="seconds a hunt in (a) may take, more than 1 (default 60)")
    ap.add_argument("--steps", type=int, default=20_000,
                    help="steps per deterministic run in (a) and (b) (default 20,000)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of a slowdown run in (c), s (default 5)")
    ap.add_argument("--only", default="a,b,c", help="comma-separated sections to run (default a,b,c)")
    ap.add_argument("--bugs", default="", help="comma-separated bugs for (a) (default all)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = ap.parse_args(argv)
    check_json(ap, args.json)
    names = [b for b in args.bugs.split(",") if b] or list(BUGS)
    sections = set(args.only.split(","))
    if args.hunts < 1:
        ap.error("--hunts must be positive")
    # The runs' own ranges (StressConfig's): out of them, the first run raised ValueError.
    for option, value in (("cpus", args.cpus), ("steps", args.steps)):
        lo, hi, what = INTEGERS[option]
        if not lo <= value <= hi:
            ap.error(f"--{option} {value}: expected {what}, {lo}..{hi}")
    if "b" in sections and (problem := pct_depth_problem(StressConfig.pct_depth, args.steps)):
        ap.error(f"--steps {args.steps}: (b)'s PCT runs: {problem}")
    # "not 0 < value <= MAX" refuses NaN too, for which every comparison is false.
    for option, value in (("limit", args.limit), ("seconds", args.seconds)):
        if not 0 < value <= MAX_SECONDS:
            ap.error(f"--{option} {value}: expected a number of seconds greater than 0 and at most "
                     f"{MAX_SECONDS:,} (a stress run's limit)")
    # A hunt starts a run only while more than HUNT_MIN_LEFT seconds are left: with a smaller
    # --limit every hunt ended at once, "not found" in 0.0 s, and (a) printed a table of nothing.
    if "a" in sections and args.limit <= HUNT_MIN_LEFT:
        ap.error(f"--limit {args.limit:g}: a hunt starts a run only while more than {HUNT_MIN_LEFT} s are left")
    if not sections <= {"a", "b", "c"}:
        ap.error(f"--only {args.only}: expected sections from a, b, c")
    unknown = [b for b in names if b not in BUGS]
    if unknown:
        ap.error(f"--bugs: {', '.join(unknown)} not in the catalog ({', '.join(BUGS)})")
    info = host_info()
    print(f"host: {info['machine']}, {info['cpu_count']} CPUs ({info['cpu_model']}), "
          f"{info['implementation']} {info['python']}, {info['date']}, rmm_mp {info['revision']}")
    result: dict[str, Any] = {"benchmark": "bench_stress", "host": info, "options": vars(args)}
    if "a" in sections:
        result["time_to_find"] = time_to_find(args, names)
    if "b" in sections:
        result["step_rate"] = step_rate(args)
    if "c" in sections:
        result["slowdown"] = slowdown(args)
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    tool_main(main)
