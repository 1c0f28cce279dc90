"""Delegate/undelegate churn: a host activity that hammers GRANULE_DELEGATE and UNDELEGATE.

Every CPU works on two pools of NS granules:
  shared   every CPU picks from it and calls DELEGATE or UNDELEGATE at random, so CPUs race
           for the same granules; ERROR_INPUT is the expected loss of a race.
  private  each CPU has its own granules: it writes a pattern through NS memory, delegates,
           undelegates, and reads the granule back as zeros. Any failure here is a bug.

Calls go through cpu.smc only (the host speaks SMC). Counters are published to the CPU's
shared area every batch so that the parent can show progress.

``delegate_churn`` is a CPU target that loops; ``ChurnStep`` is one iteration at a time (the
workload engine's delegate-churn activity); ``settle`` checks the balance afterwards.

This module owns the churn activity. It must not reach into RMM internals.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from rmm_mp.abi.rmi import RmiFid, RmiStatus
from rmm_mp.hw.cpuarea import COUNTERS, OFF_COUNTERS
from rmm_mp.machine import Cpu, Machine

DELEGATE = int(RmiFid.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)
_SUCCESS = int(RmiStatus.RMI_SUCCESS)
_INPUT = int(RmiStatus.RMI_ERROR_INPUT)
_COUNTERS = struct.Struct(f"<{COUNTERS}Q")
BATCH = 64

# Counter slots in the CPU area (also the fields of ChurnResult, in order).
(ITERATIONS, SHARED_DELEGATED, SHARED_DELEGATE_LOST, SHARED_UNDELEGATED, SHARED_UNDELEGATE_LOST,
 PRIVATE_ROUNDS) = range(6)


class ChurnError(AssertionError):
    """The RMM did something delegate/undelegate churn proves impossible."""


@dataclass(frozen=True)
class ChurnPlan:
    """What every CPU works on; the same plan is sent to all CPU processes."""

    shared: tuple[int, ...]
    private: tuple[tuple[int, ...], ...]
    seed: int
    iterations: int | None = None
    check_wipe: bool = True

    def private_for(self, cpu: int) -> tuple[int, ...]:
        return self.private[cpu] if cpu < len(self.private) else ()


@dataclass(frozen=True)
class ChurnResult:
    cpu: int
    iterations: int
    shared_delegated: int
    shared_delegate_lost: int
    shared_undelegated: int
    shared_undelegate_lost: int
    private_rounds: int


def delegate_churn(cpu: Cpu, plan: ChurnPlan) -> ChurnResult:
    """Run churn on ``cpu`` until the stop flag is set or ``plan.iterations`` are done."""
    rng = random.Random(plan.seed * 1_000_003 + cpu.id)
    stop_word = cpu.machine.control
    one = ChurnStep(cpu, plan.shared, plan.private_for(cpu.id), rng, plan.check_wipe)
    counts = one.counts
    limit = plan.iterations
    while not stop_word.stop_requested and (limit is None or counts[ITERATIONS] < limit):
        batch = BATCH if limit is None else min(BATCH, limit - counts[ITERATIONS])
        for _ in range(batch):
            one.step()
        _COUNTERS.pack_into(cpu.area.buf, OFF_COUNTERS, *counts)
    return one.result()


class ChurnStep:
    """One CPU's churn state: ``step()`` is one iteration (a private round, or one DELEGATE or
    UNDELEGATE of a shared granule); workload engines call it one iteration at a time."""

    def __init__(self, cpu: Cpu, shared: tuple[int, ...], private: tuple[int, ...], rng: random.Random,
                 check_wipe: bool = True) -> None:
        self.cpu_id = cpu.id
        self.machine = cpu.machine
        self.smc = cpu.smc
        self.shared, self.private = shared, private
        self.rng = rng
        self.check_wipe = check_wipe
        self.pattern = (b"rmm-mp churn cpu %d " % cpu.id) * 8
        self.zero = bytes(len(self.pattern))
        self.counts = [0] * COUNTERS

    def step(self) -> None:
        counts, rng, smc = self.counts, self.rng, self.smc
        counts[ITERATIONS] += 1
        if self.private and (not self.shared or rng.random() < 0.5):
            _private_round(self.machine, smc, rng.choice(self.private), self.pattern, self.zero, self.check_wipe)
            counts[PRIVATE_ROUNDS] += 1
            return
        pa = rng.choice(self.shared)
        if rng.random() < 0.5:
            counts[SHARED_DELEGATED if _raced(smc(DELEGATE, pa)[0], "DELEGATE", pa) else SHARED_DELEGATE_LOST] += 1
        else:
            counts[SHARED_UNDELEGATED if _raced(smc(UNDELEGATE, pa)[0], "UNDELEGATE", pa)
                   else SHARED_UNDELEGATE_LOST] += 1

    def result(self) -> ChurnResult:
        return ChurnResult(self.cpu_id, *self.counts[:6])


def settle(cpu: Cpu, shared: tuple[int, ...], private: tuple[int, ...], results: list[ChurnResult],
           complete: bool = True) -> list[str]:
    """After churn on a quiescent machine: check that the shared granules' success counts
    balance with what is left delegated (only when ``complete``: every CPU's results are in),
    that no private granule is left delegated, and undelegate the shared ones. Returns the
    problems found (empty when all is well)."""
    problems: list[str] = []
    delegated = sum(r.shared_delegated for r in results) - sum(r.shared_undelegated for r in results)
    left = [pa for pa in shared if cpu.smc(UNDELEGATE, pa)[0] == _SUCCESS]
    if complete and len(left) != delegated:
        problems.append(f"success counts do not balance: {delegated} more DELEGATE than UNDELEGATE "
                        f"successes on shared granules, but {len(left)} were left delegated")
    for pa in private:
        if cpu.smc(UNDELEGATE, pa)[0] == _SUCCESS:
            problems.append(f"private granule {pa:#x} was left delegated")
    return problems


def _raced(x0: int, name: str, pa: int) -> bool:
    """True on success, False on a lost race (ERROR_INPUT); anything else is an RMM bug."""
    if x0 == _SUCCESS:
        return True
    if x0 == _INPUT:
        return False
    raise ChurnError(f"RMI_GRANULE_{name}({pa:#x}) returned {x0:#x}; only SUCCESS or ERROR_INPUT are possible")


def _private_round(machine: Machine, smc: Callable[..., tuple[int, int, int, int, int]], pa: int, pattern: bytes,
                   zero: bytes, check_wipe: bool) -> None:
    if check_wipe:
        machine.ns_write(pa, pattern)
    x0 = smc(DELEGATE, pa)[0]
    if x0 != _SUCCESS:
        raise ChurnError(f"RMI_GRANULE_DELEGATE({pa:#x}) of a private NS granule returned {x0:#x}")
    x0 = smc(UNDELEGATE, pa)[0]
    if x0 != _SUCCESS:
        raise ChurnError(f"RMI_GRANULE_UNDELEGATE({pa:#x}) of a granule this CPU delegated returned {x0:#x}")
    if check_wipe and machine.ns_read(pa, len(zero)) != zero:
        raise ChurnError(f"granule {pa:#x} still holds host bytes after DELEGATE and UNDELEGATE (not wiped)")
