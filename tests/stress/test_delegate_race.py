"""Multi-process races on GRANULE_DELEGATE / UNDELEGATE and on Normal-world memory.

The CPU targets live in this module: spawned CPU processes import it by name (spawn passes the
parent's sys.path to its children).
"""

from __future__ import annotations

from rmm_mp import GranuleProtectionFault, Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.host.churn import ChurnPlan, delegate_churn, settle
from rmm_mp.runtime import run_cpus

DELEGATE = int(RmiFid.RMI_GRANULE_DELEGATE)
UNDELEGATE = int(RmiFid.RMI_GRANULE_UNDELEGATE)


def test_cpus_race_delegate_undelegate_on_shared_granules() -> None:
    """4 CPU processes delegate and undelegate the same 8 granules (and private ones) a bounded
    number of times; afterwards the success counts balance against what is left delegated and
    every granule's state, PAS, refcount and lock agree (invariant checker)."""
    with Machine.create("host", cpus=4) as m:
        base = m.dram_base
        shared = tuple(base + i * 4096 for i in range(8))
        private = tuple(tuple(base + (8 + c * 8 + i) * 4096 for i in range(8)) for c in range(4))
        plan = ChurnPlan(shared, private, seed=7, iterations=20000)
        result = run_cpus(m, delegate_churn, args=(plan,))
        assert result.ok, [f.describe() for f in result.failures]
        outcomes = list(result.results.values())
        assert len(outcomes) == 4 and all(r.iterations == 20000 for r in outcomes)
        wins = sum(r.shared_delegated + r.shared_undelegated for r in outcomes)
        losses = sum(r.shared_delegate_lost + r.shared_undelegate_lost for r in outcomes)
        assert wins > 0 and losses > 0, "the CPUs never raced on a shared granule"
        report = invariants(m)
        assert report.ok, str(report)
        cpu = m.cpu(0)
        problems = settle(cpu, plan.shared, tuple(pa for p in plan.private for pa in p), outcomes)
        cpu.close()
        assert problems == []
        assert invariants(m).state_counts.get("DELEGATED", 0) == 0


def delegate_and_inspect(cpu, pa: int, rounds: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """CPU target: delegate pa, check it is zero while delegated, undelegate; count both."""
    m = cpu.machine
    idx = (pa - m.dram_base) // m.granule_size
    delegated = dirty = 0
    for _ in range(rounds):
        if cpu.smc(DELEGATE, pa)[0] == 0:
            delegated += 1
            if not m.memory.is_zero(idx):
                dirty += 1
            assert cpu.smc(UNDELEGATE, pa)[0] == 0
    m.control.request_stop()
    return delegated, dirty


def write_until_stopped(cpu, pa: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """CPU target: the host writes pa over and over; count writes and granule protection faults."""
    m = cpu.machine
    pattern = b"\xa5" * 4096
    written = faulted = 0
    while not m.control.stop_requested:
        try:
            m.ns_write(pa, pattern)
            written += 1
        except GranuleProtectionFault:
            faulted += 1
    return written, faulted


def run_race(cpu, pa: int, rounds: int):  # type: ignore[no-untyped-def]
    return delegate_and_inspect(cpu, pa, rounds) if cpu.id == 0 else write_until_stopped(cpu, pa)


def test_ns_write_is_atomic_against_delegate() -> None:
    """CPU 0 delegates and undelegates one granule while another process keeps writing host
    bytes into it: every write either lands before DELEGATE (and is wiped) or faults, so the
    granule reads as zero every time CPU 0 holds it delegated."""
    with Machine.create("host", cpus=2) as m:
        pa = m.dram_base + 0x10_0000
        result = run_cpus(m, run_race, args=(pa, 20000))
        assert result.ok, [f.describe() for f in result.failures]
        delegated, dirty = result.results[0]
        written, faulted = result.results[1]
        assert delegated == 20000
        assert written > 0 and faulted > 0, f"no race happened: {written} writes, {faulted} faults"
        assert dirty == 0, f"{dirty} of {delegated} delegations left host bytes in a delegated granule"
        assert invariants(m).ok
