"""PSCI_SYSTEM_OFF while the realm's other RECs are mid-call, and destroy attempts on running RECs
(DEN0137 1.0-rel0 B6.3.6 SYSTEM_OFF, B4.3.14 REC_ENTER system_off, B4.3.13 REC_DESTROY
rec_state, B4.3.10 REALM_DESTROY; A2.3 RECs run concurrently).

A 4-REC realm on CPUs 0..3, one REC per CPU, with a 10^8-instruction time slice so that a
spinning REC stays inside REC_ENTER until a flag in a shared NS page (mapped unprotected) lets
it go on:
- REC 0 says it runs (started flag) and spins until `go`, then calls PSCI_SYSTEM_OFF;
- REC 1 calls RSI_HOST_CALL and is left with the call pending (not completed);
- REC 2 calls RSI_IPA_STATE_SET; its CPU carries the change out with RMI_RTT_SET_RIPAS (which
  has no realm-state condition) while REC 0 turns the realm off, and does not enter it again;
- REC 3 says it runs, spins until `go`, then extends REM 1 fifty times (with 1..50), racing REC 0's
  SYSTEM_OFF, and exits with a host call.
CPU 1, once its REC has exited, is the host's controller: while RECs 0 and 3 are known to be
running (they spin until it says go), REC_DESTROY of each must fail with RMI_ERROR_REC, REALM_DESTROY
with RMI_ERROR_REALM, a second REC_ENTER of REC 0 with RMI_ERROR_REC, and none of it may change
a granule's state or refcount. Then it says go. Once REC 0's SYSTEM_OFF exit is seen, every
REC_ENTER of every REC - the pending host call, the pending RIPAS change, REC 3 after its
extends, REC 0 itself - must fail with RMI_ERROR_REALM index 1 and change nothing.

Afterwards: no REC holds its running reference, the realm is SYSTEM_OFF, REM 1 is exactly the
fifty extends REC 3 counted (the spec lets a REC that is already running finish its calls), the
invariants hold and the realm tears down.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import pytest

from realm_guests import CODE, REPORT_TAIL, UNPROTECTED, Guest
from rec_cpus import counter, enter, publish, run_loop_to_the_end, tear_down_checked, wait_until
from rmm_mp import Machine
from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.hw.platform import load as load_platform
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_desc import RealmState, Rd
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

F = RmiFid
G = 4096
SUCCESS, ERROR_REALM, ERROR_REC = 0, 2, 3
ERROR_REALM_1 = ERROR_REALM | 1 << 8
"""B4.3.14 system_off: RMI_ERROR_REALM with index 1."""
EXIT_PSCI, EXIT_RIPAS_CHANGE, EXIT_HOST_CALL = 3, 4, 5
CPU_ON, SYSTEM_OFF = int(PsciFid.PSCI_CPU_ON), int(PsciFid.PSCI_SYSTEM_OFF)
RECS = (0, 1, 2, 3)
SHARED = UNPROTECTED + 0x10000
"""The NS page the host and the RECs share: +0 REC 0 started, +8 REC 3 started, +16 go."""
SPIN_MAX = 3_000_000
"""Iterations a REC waits for `go` before it gives up (and says so in X22)."""
EXTENDS = 50
RIPAS_BASE, RIPAS_TOP = CODE + (2 << 20), CODE + (4 << 20)
"""REC 2's RIPAS change to EMPTY: the second 2 MiB of RAM, never touched (one level-2 entry)."""
READY, EXITED, OFF = 0, 1, 2
"""Activity counters each CPU publishes: ready, its REC's first exit seen, (CPU 0) SYSTEM_OFF seen."""

PROGRAM = f"""
.equ SHARED, {SHARED}
start:
    mrs x19, mpidr
    and x19, x19, #0xff
    mov x28, =SHARED
    cmp x19, #1
    b.eq host_call
    cmp x19, #2
    b.eq ripas
    cmp x19, #3
    b.eq extender
    cbnz x26, offer
    mov x26, #1                     // REC 0, first run: start RECs 1..3 (the parent completes)
    mov x24, #1
boot:
    mov x0, =PSCI_CPU_ON
    mov x1, x24
    adr x2, start
    mov x3, #0
    smc #0
    cbnz x0, .
    add x24, x24, #1
    cmp x24, #4
    b.lo boot
offer:                              // REC 0: running; wait for go; SYSTEM_OFF
    mov x1, #1
    str x1, [x28]
    bl wait_go
    mov x0, =PSCI_SYSTEM_OFF
    smc #0
    add x21, x21, #1                // never: a realm that is off is not entered again
    b .
host_call:                          // REC 1: a host call the host leaves pending
    adr x1, call1
    mov x0, =RSI_HOST_CALL
    smc #0
    add x21, x21, #1
    b host_call
ripas:                              // REC 2: a RIPAS change the host leaves pending
    mov x0, =RSI_IPA_STATE_SET
    mov x1, ={RIPAS_BASE}
    mov x2, ={RIPAS_TOP}
    mov x3, #0
    mov x4, #0
    smc #0
    add x21, x21, #1
    b ripas
extender:                           // REC 3: running; wait for go; EXTENDS extends; host call
    mov x1, #1
    str x1, [x28, #8]
    bl wait_go
extend:
    add x20, x20, #1
    mov x0, =RSI_MEASUREMENT_EXTEND
    mov x1, #1
    mov x2, #8
    mov x3, x20
    smc #0
    cbnz x0, wrong
    add x21, x21, #1
    cmp x21, #{EXTENDS}
    b.lo extend
    adr x1, call3
    mov x0, =RSI_HOST_CALL
    smc #0
    add x23, x23, #1                // never: see offer
    b .
wait_go:
    mov x2, ={SPIN_MAX}
wait:
    ldr x1, [x28, #16]
    cbnz x1, went
    sub x2, x2, #1
    cbnz x2, wait
wrong:
    add x22, x22, #1
went:
    ret
    .align 256
call1:
    .zero 256
call3:
    .zero 256
"""


@dataclass(frozen=True)
class Plan:
    rd: int
    recs: tuple[int, ...]
    runs: tuple[int, ...]
    shared: int             # PA of the NS page at SHARED


def _granules(cpu: Any, plan: Plan) -> list[tuple[int, int]]:
    """(state, refcount) of the RD and every REC, white-box."""
    m = cpu.machine
    table = m.granule_table(cpu.id)
    out = []
    for pa in (plan.rd, *plan.recs):
        idx = (pa - m.dram_base) // G
        out.append((table.state(idx), table.refcount(idx)))
    return out


def _flag(cpu: Any, plan: Plan, offset: int) -> int:
    return int.from_bytes(cpu.machine.ns_read(plan.shared + offset, 8), "little")


def control(cpu: Any, plan: Plan) -> list[str]:
    """CPU 1, its REC parked in a host call: destroy attempts while RECs 0 and 3 run, then go."""
    bad: list[str] = []
    wait_until(cpu, lambda: _flag(cpu, plan, 0) and _flag(cpu, plan, 8) and counter(cpu, 2, EXITED))
    before = _granules(cpu, plan)
    for name, fid, args, want in (("REC_DESTROY(REC 0)", F.RMI_REC_DESTROY, (plan.recs[0],), ERROR_REC),
                                  ("REC_DESTROY(REC 3)", F.RMI_REC_DESTROY, (plan.recs[3],), ERROR_REC),
                                  ("REALM_DESTROY", F.RMI_REALM_DESTROY, (plan.rd,), ERROR_REALM),
                                  ("REC_ENTER(REC 0) again", F.RMI_REC_ENTER, (plan.recs[0], plan.runs[1]), ERROR_REC)):
        x0 = cpu.smc(fid, *args)[0]
        if x0 != want:
            bad.append(f"{name} while RECs 0 and 3 run: X0 {x0:#x}, expected {want:#x}")
    after = _granules(cpu, plan)
    if after != before:
        bad.append(f"failed destroy attempts changed (state, refcount) of RD, RECs: {before} -> {after}")
    if before[1][1] != 1 or before[4][1] != 1:
        bad.append(f"RECs 0 and 3 spin inside REC_ENTER, yet their refcounts are {before[1][1]}, {before[4][1]}")
    cpu.machine.ns_write(plan.shared + 16, (1).to_bytes(8, "little"))
    return bad


def system_off_race(cpu: Any, plan: Plan) -> list[str]:
    """CPU target: enter this CPU's REC (CPU 1 then controls); once SYSTEM_OFF is seen, enter again."""
    rec, run = plan.recs[cpu.id], plan.runs[cpu.id]
    publish(cpu, READY, 1)
    wait_until(cpu, lambda: all(counter(cpu, c, READY) for c in RECS))
    expected = {0: (EXIT_PSCI, SYSTEM_OFF), 1: (EXIT_HOST_CALL, None), 2: (EXIT_RIPAS_CHANGE, None),
                3: (EXIT_HOST_CALL, None)}[cpu.id]
    bad: list[str] = []
    x0, ex = enter(cpu, rec, run)
    if (x0, ex["exit_reason"]) != (SUCCESS, expected[0]) or expected[1] not in (None, ex["gprs"][0]):
        bad.append(f"REC {cpu.id}: first REC_ENTER X0 {x0:#x}, exit {ex['exit_reason']} gprs[0] {ex['gprs'][0]:#x}")
    publish(cpu, EXITED, 1)
    if cpu.id == 1:
        bad += control(cpu, plan)
    if cpu.id == 0:
        publish(cpu, OFF, 1)
    if cpu.id == 2:
        wait_until(cpu, lambda: _flag(cpu, plan, 16))
        x0, top = cpu.smc(F.RMI_RTT_SET_RIPAS, plan.rd, rec, RIPAS_BASE, RIPAS_TOP)[:2]
        if (x0, top) != (SUCCESS, RIPAS_TOP):
            bad.append(f"RTT_SET_RIPAS around SYSTEM_OFF: X0 {x0:#x}, top {top:#x}")
    wait_until(cpu, lambda: counter(cpu, 0, OFF))
    before = _granules(cpu, plan)
    for _ in range(3):
        x0 = enter(cpu, rec, run)[0]
        if x0 != ERROR_REALM_1:
            bad.append(f"REC_ENTER(REC {cpu.id}) after SYSTEM_OFF: X0 {x0:#x}, expected {ERROR_REALM_1:#x}")
    # Only this CPU enters its REC, so its refcount stays 0 whatever the others do.
    if (after := _granules(cpu, plan))[1 + cpu.id] != before[1 + cpu.id]:
        bad.append(f"REC {cpu.id}: refused entries changed it: {before} -> {after}")
    return bad


def test_system_off_while_recs_are_mid_call() -> None:
    """See the module docstring: destroy attempts on running RECs fail and change nothing; after
    SYSTEM_OFF every REC_ENTER fails with ERROR_REALM index 1; afterwards no refcount is held,
    the realm is SYSTEM_OFF, REM 1 holds REC 3's fifty extends, and the realm tears down."""
    platform = dataclasses.replace(load_platform("host"), cpus=5)
    with Machine.create(platform, time_slice=10**8) as m:
        g = Guest.build(m, PROGRAM, num_recs=4, cpu=4)
        shared = g.map_unprotected(SHARED)
        for target in (1, 2, 3):
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"], ex["gprs"][:2]) == (SUCCESS, EXIT_PSCI, (CPU_ON, target)), (x0, ex)
            assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), g.rec_pa(target), SUCCESS)[0] == SUCCESS
        runs = tuple(g.alloc.alloc() for _ in RECS)
        plan = Plan(g.realm.rd, tuple(g.rec_pa(n) for n in RECS), runs, shared)
        result = run_cpus(m, system_off_race, cpus=RECS, args=(plan,), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        assert result.stopped_by == "", f"the CPUs were stopped ({result.stopped_by}): {result.results}"
        assert [result.results[n] for n in RECS] == [[], [], [], []], result.results
        table = m.granule_table(0)
        assert [table.refcount(g.rec(n).idx) for n in RECS] == [0, 0, 0, 0]
        assert table.state(g.rd.idx) == GranuleState.RD and g.rd.state == RealmState.SYSTEM_OFF
        assert [g.gpr(22, n) for n in RECS] == [0, 0, 0, 0], "a REC gave up waiting for go, or an extend failed"
        assert [g.gpr(21, n) for n in RECS] == [0, 0, 0, EXTENDS] and g.gpr(23, 3) == 0
        assert g.rd.measurement(1) == chain(EXTENDS)
        x0, level, state, _, ripas = g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, RIPAS_BASE, 2)
        assert (x0, level, state, ripas) == (SUCCESS, 2, 0, 0), "RIPAS_BASE: an unassigned EMPTY level-2 entry"
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()
        for pa in runs:
            g.alloc.free(pa)


# -- the same through the host's run loop ----------------------------------------------------------

PAGE = CODE + (1 << 20)
"""REC 1's page: RIPAS RAM outside the image, flipped EMPTY and back, faulted in each time."""
WORK = 60_000
"""Iterations (2 instructions each) REC 0 spins before it reports and turns the realm off."""

LOOP_PROGRAM = f"""
start:
    mrs x19, mpidr
    and x19, x19, #0xff
    cmp x19, #1
    b.eq flipper
    cmp x19, #2
    b.eq caller
    cmp x19, #3
    b.eq extender
    mov x24, #1                     // REC 0: start RECs 1..3
boot:
    mov x0, =PSCI_CPU_ON
    mov x1, x24
    adr x2, start
    mov x3, #0
    smc #0
    mov x20, x0
    mov x19, #1
    cbnz x20, report                // REPORT 1: a CPU_ON failed
    add x24, x24, #1
    cmp x24, #4
    b.lo boot
    mov x4, ={WORK}
work:
    sub x4, x4, #1
    cbnz x4, work
    mov x19, #0
    mov x20, #0
    b report                        // pass, then SYSTEM_OFF
flipper:                            // REC 1: PAGE EMPTY, RAM again, touch it; over and over
    mov x0, =RSI_IPA_STATE_SET
    mov x1, ={PAGE}
    mov x2, ={PAGE + 4096}
    mov x3, #0
    mov x4, #0
    smc #0
    cbnz x0, wrong
    mov x0, =RSI_IPA_STATE_SET
    mov x1, ={PAGE}
    mov x2, ={PAGE + 4096}
    mov x3, #1
    mov x4, #0
    smc #0
    cbnz x0, wrong
    cbnz x2, wrong                  // the host accepts: REJECT would be X2 = 1
    mov x1, ={PAGE}
    str x19, [x1]
    ldr x2, [x1]
    cmp x2, x19
    b.ne wrong
    add x20, x20, #1
    b flipper
caller:                             // REC 2: host calls (LOG), over and over
    adr x1, call2
    mov x2, #1
    strh x2, [x1]
    mov x0, =RSI_HOST_CALL
    smc #0
    cbnz x0, wrong
    add x20, x20, #1
    b caller
extender:                           // REC 3: REM 1 extended with 1, 2, 3, ...
    add x20, x20, #1
    mov x0, =RSI_MEASUREMENT_EXTEND
    mov x1, #1
    mov x2, #8
    mov x3, x20
    smc #0
    cbnz x0, wrong
    add x21, x21, #1
    b extender
wrong:
    add x22, x22, #1
    b .
    .align 256
call2:
    .zero 256
{REPORT_TAIL}
"""


def test_run_loop_system_off_while_recs_are_mid_call() -> None:
    """The host's run loop on 3 CPUs: REC 0 starts RECs 1..3, which flip a page's RIPAS (with
    the host's RTT_SET_RIPAS, DATA_DESTROY and fault-in between), make host calls and extend
    REM 1, until REC 0 reports a pass and turns the realm off. Every loop ends with no vCPU
    error, the realm's end is SYSTEM_OFF, no RSI call failed, no REC holds a refcount, REM 1 is
    the chain of the extends REC 3 made (its last one possibly not yet counted), and the realm
    tears down leaving the allocator empty."""
    with Machine.create("host", cpus=4, time_slice=5000) as m:
        run = run_loop_to_the_end(m, LOOP_PROGRAM, num_recs=4)
        realm, st = run.realm, run.status
        assert st.passed and st.end == "SYSTEM_OFF", st
        assert st.counters["ripas_changes"] >= 2 and st.counters["host_calls"] >= 2, st.counters
        table = m.granule_table(0)
        recs = [Rec(m.memory, (r.rec - m.dram_base) // G) for r in realm.recs]
        assert [table.refcount(rec.idx) for rec in recs] == [0, 0, 0, 0]
        assert [rec.gpr(22) for rec in recs] == [0, 0, 0, 0], "an RSI call failed"
        counted = recs[3].gpr(21)
        rd = Rd(m.memory, (realm.rd - m.dram_base) // G)
        assert rd.state == RealmState.SYSTEM_OFF
        assert rd.measurement(1) in (chain(counted), chain(counted + 1)), counted
        tear_down_checked(m, run)


def chain(n: int) -> bytes:
    """REM 1 (SHA-256, zero padded to 64 bytes) after extends with 1 .. n."""
    rem = bytes(32)
    for i in range(1, n + 1):
        rem = hashlib.sha256(rem + i.to_bytes(8, "little")).digest()
    return rem.ljust(64, b"\0")
