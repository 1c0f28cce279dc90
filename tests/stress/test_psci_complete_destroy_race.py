"""RMI_PSCI_COMPLETE of a CPU_ON raced against RMI_REC_DESTROY of its target REC on another CPU
(DEN0137 1.0-rel0 B4.3.7 target_state, B4.3.13 REC_DESTROY; A2.3: commands on one realm run
concurrently on different PEs).

Each round has a realm of its own (RECs can only be created before activation) whose REC 0 has
called PSCI_CPU_ON naming REC 1 and waits in a PSCI exit. Then, at the same moment, CPU 0 calls
RMI_PSCI_COMPLETE(REC 0, REC 1, SUCCESS) and CPU 1 RMI_REC_DESTROY(REC 1). REC 1 never runs, so
REC_DESTROY must succeed; the completion either came first (SUCCESS: REC 0 then sees CPU_ON
succeed) or found REC 1 gone (RMI_ERROR_INPUT, target_state: REC 0's request stays pending, so its
next REC_ENTER fails with RMI_ERROR_REC). Afterwards REC 1's granule is DELEGATED and zero (no
completion wrote into it after its wipe), nothing holds a reference, the invariants hold, and
each realm tears down.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from realm_guests import Guest
from rec_cpus import counter, publish, wait_until
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.host.realm import release_granule
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

F = RmiFid
SUCCESS, INPUT, REC_ERR = 0, 1, 3
EXIT_PSCI = 3
CPU_ON = 0xC400_0003
ARRIVED = 0
"""Activity counter: the last round this CPU has reached (the per-round barrier)."""

PROGRAM = """
    mov x0, =PSCI_CPU_ON
    mov x1, #1
    adr x2, secondary
    mov x3, #0x77
    smc #0
    adr x1, hostcall                // report CPU_ON's result
    str x0, [x1, #8]
    mov x0, =RSI_HOST_CALL
    smc #0
    b .
secondary:
    b secondary
    .align 256
hostcall:
    .zero 256
"""


@dataclass(frozen=True)
class Plan:
    pairs: tuple[tuple[int, int], ...]   # (REC 0, REC 1) of each round's realm


def complete_or_destroy(cpu, plan: Plan) -> list[int]:  # type: ignore[no-untyped-def]
    """CPU target: per round, meet the other CPU, then CPU 0 completes REC 0's CPU_ON and CPU 1
    destroys REC 1; returns each round's X0."""
    other = 1 - cpu.id
    out = []
    for r, (rec0, rec1) in enumerate(plan.pairs, start=1):
        publish(cpu, ARRIVED, r)
        wait_until(cpu, lambda: counter(cpu, other, ARRIVED) >= r)
        if cpu.id == 0:
            out.append(cpu.smc(F.RMI_PSCI_COMPLETE, rec0, rec1, SUCCESS)[0])
        else:
            out.append(cpu.smc(F.RMI_REC_DESTROY, rec1)[0])
    return out


def test_psci_complete_races_rec_destroy_of_its_target() -> None:
    """30 rounds: REC_DESTROY always succeeds, PSCI_COMPLETE succeeds or fails with
    RMI_ERROR_INPUT, and REC 0's next entry agrees with which (CPU_ON's SUCCESS reported, or
    RMI_ERROR_REC with the request still pending)."""
    rounds = 30
    with Machine.create("host", cpus=3) as m:
        guests = [Guest.build(m, PROGRAM, num_recs=2, cpu=2) for _ in range(rounds)]
        for g in guests:
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"], ex["gprs"][:2]) == (SUCCESS, EXIT_PSCI, (CPU_ON, 1)), (x0, ex)
        plan = Plan(tuple((g.rec_pa(0), g.rec_pa(1)) for g in guests))
        result = run_cpus(m, complete_or_destroy, cpus=(0, 1), args=(plan,), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        completions, destroys = result.results[0], result.results[1]
        assert destroys == [SUCCESS] * rounds, destroys
        assert set(completions) <= {SUCCESS, INPUT}, completions
        report = invariants(m)             # every REC 1 DELEGATED and zero, no reference left
        assert report.ok, str(report)
        table = m.granule_table(0)
        for g, completed in zip(guests, completions):
            idx = table.find(g.rec_pa(1))
            assert (table.state(idx), table.refcount(idx)) == (GranuleState.DELEGATED, 0)
            x0, ex = g.enter()
            if completed == SUCCESS:
                assert (x0, ex["gprs"][0]) == (SUCCESS, 0), (x0, ex)   # the host call: CPU_ON succeeded
            else:
                assert x0 == REC_ERR, hex(x0)                          # the request is still pending
            rec1 = g.realm.recs[1]
            for pa in (rec1.rec, *rec1.aux):
                release_granule(g.cpu, g.alloc, pa)
            g.realm = dataclasses.replace(g.realm, recs=g.realm.recs[:1])
            g.destroy()
        report = invariants(m)
        assert report.ok, str(report)
