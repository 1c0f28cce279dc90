"""What the multi-process REC race tests (tests/stress/test_psci_races.py, test_system_off_race.py,
test_measurement_race.py) share in their CPU targets (a test helper, not a test file): flags each
CPU publishes in its activity counters (cpuarea OFF_COUNTERS) for the others, waiting on them,
one RMI_REC_ENTER with its exit read back, and a realm run to its end by the host's run loop on
three CPUs, with its checked teardown."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.hw.cpuarea import COUNTERS, OFF_COUNTERS


def counter(cpu: Any, owner: int, n: int) -> int:
    """Activity counter ``n`` that CPU ``owner`` published."""
    _check_index(n)
    return cpu.area.view.load_u64(owner * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n)


def publish(cpu: Any, n: int, value: int) -> None:
    """Set this CPU's activity counter ``n``."""
    _check_index(n)
    cpu.area.view.store_u64(cpu.id * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n, value)


def _check_index(n: int) -> None:
    # Past the last counter lie other fields of the CPU area (the RD a TLB invalidation waits
    # on): a test that wrote counter 8 once overwrote it unnoticed.
    if not 0 <= n < COUNTERS:
        raise IndexError(f"activity counter {n}: a CPU area has counters 0 to {COUNTERS - 1}")


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


@dataclass
class LoopRun:
    """A realm the host's run loop ran to its end on CPUs 0..2 (built and torn down from CPU 3)."""

    realm: Any
    alloc: Any
    queue: Any
    slot: int
    status: Any


def run_loop_to_the_end(m: Any, program: str, num_recs: int) -> LoopRun:
    """Build a realm of ``num_recs`` RECs running PRELUDE + ``program`` from CPU 3, run the
    host's run loop on CPUs 0..2 until the realm ends, and check every loop ended "done" with
    no vCPU error."""
    from realm_guests import CODE, PRELUDE
    from rmm_mp.guest.assembler import assemble
    from rmm_mp.host import LoopPlan, NsAllocator, RealmSpec, RunQueue, create_realm, realm_status, run_loop
    from rmm_mp.host.runqueue import OFF_ARRIVED
    from rmm_mp.runtime import run_cpus
    cpu = m.cpu(3)
    alloc = NsAllocator(m, 3)
    image = assemble(PRELUDE + "\n" + program, base=CODE)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=CODE, ram_size=2 << 20, num_recs=num_recs,
                                               image=image))
    queue = RunQueue(m)
    slot = queue.add_realm(alloc, realm)
    queue.view.store_u64(OFF_ARRIVED, 0)
    cpu.close()
    result = run_cpus(m, run_loop, cpus=(0, 1, 2), args=(LoopPlan(gather=3),), timeout_s=60)
    assert result.ok, [f.describe() for f in result.failures]
    loops = list(result.results.values())
    assert [loop.errors for loop in loops] == [()] * 3 and {loop.ended for loop in loops} == {"done"}, loops
    return LoopRun(realm, alloc, queue, slot, realm_status(queue, slot))


def tear_down_checked(m: Any, run: LoopRun) -> None:
    """The invariants hold; destroying the realm from CPU 3 leaves the allocator empty."""
    from rmm_mp.check import invariants
    from rmm_mp.host import destroy_realm
    report = invariants(m)
    assert report.ok, str(report)
    destroy_realm(m.cpu(3), run.alloc, run.realm)
    run.queue.release_realm(run.alloc, run.slot)
    stats = run.alloc.statistics()
    assert stats.granules_in_use == 0 and stats.vmids_in_use == 0, stats
