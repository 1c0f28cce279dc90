"""Built-in workloads: host activities with a fixed shape, runnable by name.

A built-in workload knows how to plan the work for a machine, which function each CPU process
runs, how to check the outcome on the quiescent machine afterwards, and how to put the machine
back (every granule undelegated) before it is closed.

This module owns the registry. TOML workload files (docs/workloads.md) come later and will
register through the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.host.churn import ChurnPlan, ChurnResult, delegate_churn
from rmm_mp.hw.granule import GRANULE_SIZE
from rmm_mp.machine import Machine

SHARED_GRANULES = 32
PRIVATE_GRANULES = 32


@dataclass(frozen=True)
class Builtin:
    name: str
    description: str
    target: Callable[..., Any]
    plan: Callable[[Machine, int, int | None], tuple[Any, ...]]
    check: Callable[[Machine, tuple[Any, ...], dict[int, Any]], list[str]]
    counters: tuple[str, ...]


def _ns_granules(machine: Machine, count: int) -> list[int]:
    """The first ``count`` DRAM granules outside the Secure regions."""
    secure = [(b, b + s) for b, s in machine.secure_regions]
    found: list[int] = []
    pa = machine.dram_base
    end = machine.dram_base + machine.granule_count * GRANULE_SIZE
    while len(found) < count and pa < end:
        if not any(lo <= pa < hi for lo, hi in secure):
            found.append(pa)
        pa += GRANULE_SIZE
    if len(found) < count:
        raise ValueError(f"platform {machine.platform.name!r} has fewer than {count} NS granules")
    return found


def _plan_churn(machine: Machine, seed: int, iterations: int | None) -> tuple[Any, ...]:
    pool = _ns_granules(machine, SHARED_GRANULES + PRIVATE_GRANULES * machine.cpus)
    shared = tuple(pool[:SHARED_GRANULES])
    private = tuple(tuple(pool[SHARED_GRANULES + i * PRIVATE_GRANULES:SHARED_GRANULES + (i + 1) * PRIVATE_GRANULES])
                    for i in range(machine.cpus))
    return (ChurnPlan(shared, private, seed, iterations),)


def _check_churn(machine: Machine, args: tuple[Any, ...], results: dict[int, Any]) -> list[str]:
    """Success counts must balance with what is left delegated; then undelegate the rest."""
    plan: ChurnPlan = args[0]
    problems: list[str] = []
    outcomes: list[ChurnResult] = list(results.values())
    delegated = sum(r.shared_delegated for r in outcomes) - sum(r.shared_undelegated for r in outcomes)
    cpu = machine.cpu(0)
    try:
        left = [pa for pa in plan.shared if cpu.smc(RmiFid.RMI_GRANULE_UNDELEGATE, pa)[0] == 0]
        if len(results) == machine.cpus and len(left) != delegated:
            problems.append(f"success counts do not balance: {delegated} more DELEGATE than UNDELEGATE "
                            f"successes on shared granules, but {len(left)} were left delegated")
        for pa in (pa for private in plan.private for pa in private):
            if cpu.smc(RmiFid.RMI_GRANULE_UNDELEGATE, pa)[0] == 0:
                problems.append(f"private granule {pa:#x} was left delegated")
    finally:
        cpu.close()
    return problems


BUILTINS: dict[str, Builtin] = {
    "delegate-churn": Builtin(
        "delegate-churn",
        "every CPU delegates and undelegates granules, some shared between CPUs and some private",
        delegate_churn, _plan_churn, _check_churn,
        ("iterations", "shared delegated", "shared delegate lost", "shared undelegated",
         "shared undelegate lost", "private rounds"),
    ),
}
