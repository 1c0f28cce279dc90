"""The REC_ENTER that completes an RSI_HOST_CALL raced against RMI_DATA_DESTROY of the page that
holds the call's RsiHostCall, on another CPU (DEN0137 1.0-rel0 A4.2.2: the host call's results
are copied into the structure on entry; B4.3.4 DATA_DESTROY; A2.3: commands on one realm run
concurrently on different PEs; rmm_mp/rmm/realm_run.py's "one walk per host call").

Each round has a realm of its own whose REC 0 has made a host call with its structure in a
page of its own and waits in the HOST_CALL exit. At the same moment CPU 0 enters the REC with
gprs[0] = a value for the round and CPU 1 DATA_DESTROYs the structure's page. The guest, once its
call is complete, reads gprs[0] back from the structure and reports it with an MMIO write. Every
entry must end in one of:

- the report, carrying the round's value (completion and read both before the destroy);
- a data abort at the page with the host call completed (the completion came first, the
  guest's read after the destroy), the guest stopped at its read;
- a data abort at the page with the host call still pending (the completion found the page
  gone: A4.2.2), the guest not run.

DATA_DESTROY always succeeds, and the destroyed granule, DELEGATED, reads as zeros afterwards
(the invariant checker's delegated-zero): no completion wrote into it after its wipe.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from realm_guests import CODE, UNPROTECTED, Guest
from rec_cpus import counter, publish, wait_until
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.check import invariants
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

F = RmiFid
G = 4096
SUCCESS = 0
EXIT_SYNC, EXIT_HOST_CALL = 0, 5
EC_DABT_LOW = 0x24
PAGE = CODE + 0x20_0000
MMIO = UNPROTECTED + 0x9000
MAGIC = 0x5EED_0000_0000
ARRIVED = 0

PROGRAM = f"""
    mov x1, ={PAGE + 0x100}
    mov x0, =RSI_HOST_CALL
call:
    smc #0
    mov x1, ={PAGE + 0x100}
read:
    ldr x5, [x1, #8]                // gprs[0] as the host answered
    mov x21, ={MMIO}
    str x5, [x21]
    b .
"""


@dataclass(frozen=True)
class Plan:
    rounds: tuple[tuple[int, int, int], ...]   # (RD, REC, run page) of each round's realm


def enter_or_destroy(cpu, plan: Plan) -> list[tuple[int, ...]]:  # type: ignore[no-untyped-def]
    """CPU target: per round, meet the other CPU; then CPU 0 enters the REC (completing the host
    call with the round's value) and CPU 1 DATA_DESTROYs the structure's page."""
    m = cpu.machine
    other = 1 - cpu.id
    out: list[tuple[int, ...]] = []
    for r, (rd, rec, run) in enumerate(plan.rounds, start=1):
        if cpu.id == 0:
            m.ns_write(run, bytes(RMI_REC_ENTER.pack(gprs=[MAGIC + r])))
        publish(cpu, ARRIVED, r)
        wait_until(cpu, lambda: counter(cpu, other, ARRIVED) >= r)
        if cpu.id == 0:
            x0 = cpu.smc(F.RMI_REC_ENTER, rec, run)[0]
            ex = RMI_REC_EXIT.unpack(m.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
            out.append((x0, ex["exit_reason"], ex["esr"] >> 26, ex["hpfar"] << 8, ex["gprs"][0]))
        else:
            out.append(tuple(cpu.smc(F.RMI_DATA_DESTROY, rd, PAGE)[:2]))
    return out


def test_host_call_completion_races_data_destroy_of_its_page() -> None:
    """30 rounds; every entry ends in one of the three outcomes above, and no destroyed page was
    written after its wipe."""
    rounds = 30
    with Machine.create("host", cpus=3) as m:
        guests = [Guest.build(m, PROGRAM, cpu=2) for _ in range(rounds)]
        for g in guests:
            g.fault_in(PAGE)
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_HOST_CALL), (x0, ex)
        plan = Plan(tuple((g.realm.rd, g.rec_pa(), g.run) for g in guests))
        result = run_cpus(m, enter_or_destroy, cpus=(0, 1), args=(plan,), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        entries, destroys = result.results[0], result.results[1]
        assert all(x0 == SUCCESS for x0, _ in destroys), destroys
        report = invariants(m)
        assert report.ok, str(report)
        outcomes = {"report": 0, "read aborted": 0, "completion aborted": 0}
        for r, (g, entry, (_, pa)) in enumerate(zip(guests, entries, destroys), start=1):
            x0, reason, ec, ipa, gpr0 = entry
            assert (x0, reason) == (SUCCESS, EXIT_SYNC), entry
            pending = g.rec().host_call_pending
            if ipa == MMIO:
                assert (gpr0, pending) == (MAGIC + r, False), entry
                outcomes["report"] += 1
            else:
                assert (ec, ipa) == (EC_DABT_LOW, PAGE), entry
                if pending:
                    assert g.pc() == g.label("call") + 8, hex(g.pc())
                    outcomes["completion aborted"] += 1
                else:
                    assert (g.pc(), g.gpr(0)) == (g.label("read"), 0), hex(g.pc())
                    outcomes["read aborted"] += 1
            assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
            assert m.ns_read(pa, G) == bytes(G)
            g.alloc.free(pa)
            g.destroy()
        assert sum(outcomes.values()) == rounds, outcomes
        report = invariants(m)
        assert report.ok, str(report)
