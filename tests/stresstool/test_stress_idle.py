"""A free-running CPU that draws an operation with nothing to do backs off (stress.worker.idle_pause),
so that on a host with fewer cores than CPU processes the cores go to the CPUs with work; a
deterministic run does not, and takes the steps it took before."""

from __future__ import annotations

import random

import pytest

from rmm_mp import Machine
from rmm_mp.stress import StressConfig, population, run
from rmm_mp.stress.ops import Operations
from rmm_mp.stress.worker import IDLE_PAUSE_FIRST_S, IDLE_PAUSE_MAX_S, idle_pause


class _Hint:
    """The one part of the stress segment the operations here may use: the REC index hint (and the
    per-CPU counters, which Operations.count adds to: not looked at here)."""

    def rec_hint(self) -> int:
        return 1

    def count(self, cpu: int, name: str) -> None:
        pass

    def advance_rec_hint(self, index: int) -> None:
        pass


def test_idle_pause_yields_first_then_doubles_up_to_the_cap() -> None:
    """The back-off policy: nothing after a non-idle operation (streak 0) and only a yield after
    the first idle one; then IDLE_PAUSE_FIRST_S doubling, never above IDLE_PAUSE_MAX_S, which is
    at most 1 ms (the most a CPU may be late for the run's end or a quiescent pause). A streak
    of a billion (hours of idle draws) is still the cap, computed at once."""
    assert idle_pause(0) == idle_pause(1) == 0.0
    assert idle_pause(2) == IDLE_PAUSE_FIRST_S and idle_pause(3) == 2 * IDLE_PAUSE_FIRST_S
    pauses = [idle_pause(n) for n in range(2, 40)]
    assert pauses == sorted(pauses) and max(pauses) == IDLE_PAUSE_MAX_S <= 0.001
    assert idle_pause(6) == 16 * IDLE_PAUSE_FIRST_S and idle_pause(7) == IDLE_PAUSE_MAX_S  # 0.8 ms, then 1 ms
    assert idle_pause(10**9) == IDLE_PAUSE_MAX_S


def test_the_idle_operations_say_they_were(machine: Machine) -> None:
    """On a CPU with no guest realm of its own and an empty run queue (a population without
    guests): `vcpu` (nothing to run, nothing to rebuild) and `guest-tables` set Operations.idle;
    `delegate`, which made calls, leaves it clear. The worker backs off by this flag only."""
    pop = population.build(machine, guests=False)
    ops = Operations(machine.cpu(1), pop, _Hint())  # type: ignore[arg-type]
    for name in ("vcpu", "guest-tables"):
        ops.idle = False
        ops.table[name](random.Random(1))
        assert ops.idle, name
    ops.idle = False
    ops.delegate(random.Random(1))
    assert not ops.idle
    assert ops.counts == {"vcpu-idle": 1, "guest-tables-idle": 1}


@pytest.mark.multiprocess
def test_a_deterministic_run_takes_the_steps_it_took_before_the_back_off() -> None:
    """`realms` on 4 CPUs, deterministic (random, seed 5, 1500 steps), where 47 of 84 `vcpu`
    draws find the run queue empty: the same steps, switches, preemptions, operations per CPU
    and counts as the run of the tool before the back-off existed (figures taken from it). A
    back-off there must not draw from the CPU's generator or add a schedule point."""
    report = run(StressConfig(workload="realms", cpus=4, seed=5, schedule="random", steps=1500, seconds=120))
    assert report.ok, report.text()
    assert (report.steps, report.switches, report.preemptions) == (1963, 1163, 1160)
    assert report.ops == {0: 8, 1: 40, 2: 8, 3: 28}
    assert report.counts == {"rec-enter": 37, "relaunch": 1, "vcpu": 84, "vcpu-idle": 47}


@pytest.mark.multiprocess
def test_free_running_idle_cpus_back_off() -> None:
    """`realms` on 4 CPUs free-running for 1 s (6 vCPUs in 4 guests, so a CPU often finds the
    queue empty): under half of the operations are idle. Drawing again at once, 80 to 90 % were
    (some 40,000 idle draws in 5 s for 7,000 REC entries), on cores the CPUs with a vCPU needed."""
    report = run(StressConfig(workload="realms", cpus=4, seed=2, seconds=1))
    assert report.ok and report.ended == "time", report.text()
    c = report.counts
    idle = c.get("vcpu-idle", 0) - c.get("relaunch", 0)
    operations = sum(report.ops.values())
    assert c.get("rec-enter", 0) > 0 and idle < operations / 2, (idle, operations, c)
