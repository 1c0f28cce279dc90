"""What the multi-process REC race tests (tests/stress/test_psci_races.py, test_system_off_race.py,
test_measurement_race.py) share in their CPU targets (a test helper, not a test file): flags each
CPU publishes in its activity counters (cpuarea OFF_COUNTERS) for the others, waiting on them,
and one RMI_REC_ENTER with its exit read back."""

from __future__ import annotations

import os
from typing import Any, Callable

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.hw.cpuarea import OFF_COUNTERS


def counter(cpu: Any, owner: int, n: int) -> int:
    """Activity counter ``n`` that CPU ``owner`` published."""
    return cpu.area.view.load_u64(owner * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n)


def publish(cpu: Any, n: int, value: int) -> None:
    """Set this CPU's activity counter ``n``."""
    cpu.area.view.store_u64(cpu.id * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n, value)


def wait_until(cpu: Any, done: Callable[[], object]) -> None:
    """Yield until ``done()`` or the run is stopped."""
    while not done() and not cpu.machine.control.stop_requested:
        os.sched_yield()


def start_together(cpu: Any, cpus: tuple[int, ...], ready: int = 0) -> None:
    """Barrier: publish counter ``ready`` as 1 and wait until every CPU of ``cpus`` has."""
    publish(cpu, ready, 1)
    wait_until(cpu, lambda: all(counter(cpu, c, ready) for c in cpus))


def enter(cpu: Any, rec: int, run: int) -> tuple[int, dict[str, Any]]:
    """RMI_REC_ENTER with no flags from a zeroed run page; (X0, RmiRecExit fields)."""
    m = cpu.machine
    m.ns_write(run, bytes(RMI_REC_ENTER.size))
    x0 = cpu.smc(RmiFid.RMI_REC_ENTER, rec, run)[0]
    return x0, RMI_REC_EXIT.unpack(m.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
