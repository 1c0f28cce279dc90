"""Running a workload on a fresh machine and producing its report.

``run_builtin`` validates its arguments before anything is created, makes the machine, runs one
CPU process per CPU, checks the outcome (the workload's own check, then the invariant checker),
and returns a RunReport. The machine is closed (and its shared memory unlinked) whatever
happens, Ctrl-C included.

This module owns the run sequence and the report record. The CLI only parses and prints.
"""

from __future__ import annotations

import json
import os
import platform as host_platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psutil

from rmm_mp.check import InvariantReport, invariants
from rmm_mp.hw import platform as platforms
from rmm_mp.hw.cpuarea import COUNTERS
from rmm_mp.machine import Machine
from rmm_mp.runtime import CpuFailure, run_cpus
from rmm_mp.stats import report as latency
from rmm_mp.stats.progress import Progress
from rmm_mp.workload.builtin import BUILTINS, Builtin


def resolve(name: str) -> Builtin:
    if name not in BUILTINS:
        raise ValueError(f"workload = {name!r}: expected a bundled workload ({', '.join(sorted(BUILTINS))})")
    return BUILTINS[name]


@dataclass(frozen=True)
class RunReport:
    workload: str
    platform: str
    cpus: int
    seed: int
    seconds: float | None
    iterations: int | None
    elapsed_s: float
    latency: list[latency.LatencyRow]
    total_calls: int
    counters: dict[int, dict[str, int]]
    failures: tuple[CpuFailure, ...]
    problems: tuple[str, ...]
    invariants: InvariantReport | None
    interrupted: bool
    host: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return (not self.failures and not self.problems and not self.interrupted
                and self.invariants is not None and self.invariants.ok)

    @property
    def calls_per_second(self) -> float:
        return self.total_calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "platform": self.platform,
            "cpus": self.cpus,
            "seed": self.seed,
            "seconds": self.seconds,
            "iterations": self.iterations,
            "elapsed_s": round(self.elapsed_s, 6),
            "total_calls": self.total_calls,
            "calls_per_second": round(self.calls_per_second, 1),
            "ok": self.ok,
            "interrupted": self.interrupted,
            "latency_unit": "ns",
            "latency": latency.as_records(self.latency),
            "counters": {str(cpu): c for cpu, c in self.counters.items()},
            "failures": [{"cpu": f.cpu, "how": f.how, "traceback": f.traceback,
                          "held_locks": [hex(pa) for pa in f.held_locks]} for f in self.failures],
            "problems": list(self.problems),
            "invariants": None if self.invariants is None else {
                "ok": self.invariants.ok, "granules": self.invariants.granules,
                "violations": [str(v) for v in self.invariants.violations[:100]],
            },
            "host": self.host,
        }

    def write_json(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.to_json(), out, indent=2)
            out.write("\n")


def _host_facts() -> dict[str, Any]:
    return {"machine": host_platform.machine(), "python": host_platform.python_version(),
            "host_cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def run_builtin(name: str, platform: str = "host", cpus: int | None = None, seconds: float | None = 5.0,
                iterations: int | None = None, seed: int = 0, progress: bool | None = None,
                context: str = "spawn", on_machine: Callable[[Machine], None] | None = None) -> RunReport:
    """Run a built-in workload on a new machine; validation errors raise ValueError first."""
    workload = resolve(name)
    plat = platforms.load(platform)
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int) or not 1 <= cpus <= plat.cpus):
        raise ValueError(f"--cpus = {cpus!r}: expected an integer in 1..{plat.cpus} (platform {plat.name!r})")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"--seconds = {seconds!r}: expected a duration > 0")
    if iterations is not None and iterations < 1:
        raise ValueError(f"--iterations = {iterations!r}: expected an integer >= 1")
    if seconds is None and iterations is None:
        raise ValueError("give --seconds or --iterations: a run needs an end")
    with Machine.create(plat, cpus) as machine:
        if on_machine is not None:
            on_machine(machine)
        args = workload.plan(machine, seed, iterations)
        ids = list(range(machine.cpus))
        bar = Progress(machine, ids, seconds, enabled=progress)
        try:
            result = run_cpus(machine, workload.target, ids, args, context=context, on_tick=bar.tick,
                              timeout_s=seconds)
        finally:
            bar.close()
        # Read the figures before the check: its cleanup calls must not count as workload calls.
        stats = latency.collect(machine, ids)
        problems: list[str] = []
        checked: InvariantReport | None = None
        if not result.failures and not machine.dead:
            problems = workload.check(machine, args, result.results)
            checked = invariants(machine)
        elif machine.dead:
            problems = [f"the RMM crashed: {machine.dead_reason}"]
        counters = {}
        for cpu in ids:
            area = machine.cpu_area(cpu)
            try:
                values = area.counters()
            finally:
                area.release()
            counters[cpu] = {label: values[i] for i, label in enumerate(workload.counters[:COUNTERS])}
        return RunReport(name, plat.name, machine.cpus, seed, seconds, iterations, result.elapsed_s,
                         latency.rows(stats), latency.total_calls(stats), counters, result.failures,
                         tuple(problems), checked, result.interrupted, _host_facts())


def host_cores() -> int:
    return psutil.cpu_count(logical=True) or 1
