"""PSCI between RECs of one realm, raced across CPU processes (DEN0137 1.0-rel0 B4.3.7
RMI_PSCI_COMPLETE, A4.3.7 REC exit due to PSCI, B6.3 PSCI).

RECs 0 and 1 of a 3-REC realm run on CPUs 0 and 1 and call, over and over, PSCI_CPU_ON and then
PSCI_AFFINITY_INFO on REC 2, which CPU 2 enters whenever it is runnable; every time it starts,
REC 2 counts the start (per caller, from the context id CPU_ON gave it) in realm memory, spins
a little and turns itself off with PSCI_CPU_OFF. The host CPUs complete every request with
RMI_PSCI_COMPLETE(status SUCCESS) as soon as the caller exits, so two completions naming REC 2
run at the same time as each other and as REC 2's entries and CPU_OFF exits.

B4.3.7.3: a CPU_ON completion is SUCCESS (the target reset and made runnable) when the target
is not runnable, ALREADY_ON when it is; AFFINITY_INFO is ON or OFF. So every request the host
completes must give the caller one of those, and every SUCCESS must have started REC 2 exactly
once, with that caller's context id: no two CPU_ONs may both succeed for one start (a lost
reset), and no start may happen without one.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

from realm_guests import REPORT_TAIL, Guest
from rec_cpus import counter, enter, publish, run_loop_to_the_end, start_together, tear_down_checked, wait_until
from rmm_mp import Machine
from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

F = RmiFid
SUCCESS, ERROR_REC = 0, 3
EXIT_IRQ, EXIT_PSCI = 1, 3
CPU_ON, AFFINITY_INFO, CPU_OFF = int(PsciFid.PSCI_CPU_ON), int(PsciFid.PSCI_AFFINITY_INFO), int(PsciFid.PSCI_CPU_OFF)
CALLERS, TARGET = (0, 1), 2
READY, DONE = 0, 1
"""Activity counters (cpuarea OFF_COUNTERS) each CPU publishes: ready flag, done flag, then
(callers) how often each outcome was seen (OUTCOMES order)."""
OUTCOMES = ((CPU_ON, 0), (CPU_ON, 2**64 - 4), (AFFINITY_INFO, 0), (AFFINITY_INFO, 1))
"""(request, result) pairs a caller may see: CPU_ON SUCCESS or ALREADY_ON, AFFINITY_INFO ON or OFF."""

TARGET_CODE = """
target:                             // REC 2: count this start, total and by caller (X0 = context id)
    adr x1, starts
    ldr x2, [x1]
    add x2, x2, #1
    str x2, [x1]
    lsl x3, x0, #3
    add x1, x1, x3
    ldr x2, [x1, #8]
    add x2, x2, #1
    str x2, [x1, #8]
    mov x4, #40
spin:
    sub x4, x4, #1
    cbnz x4, spin
    mov x0, =PSCI_CPU_OFF
    smc #0
    b .
    .align 8
starts:
    .quad 0, 0, 0                   // total, started by REC 0, started by REC 1
"""
"""REC 2's code in both programs: it counts its start (by the context id its CPU_ON gave) and
turns itself off."""

PROGRAM = f"""
start:
    mrs x19, mpidr
    and x19, x19, #0xff             // the REC index (Aff0; RES1 bit 31 dropped)
    cmp x19, #2
    b.eq target
    cbnz x19, caller
    cbnz x26, caller
    mov x26, #1                     // REC 0, first run: start REC 1 (the parent completes it)
    mov x0, =PSCI_CPU_ON
    mov x1, #1
    adr x2, start
    mov x3, #1
    smc #0
    cbnz x0, .                      // the parent checks PC != here
caller:                             // RECs 0 and 1: CPU_ON(REC 2), then AFFINITY_INFO(REC 2)
    mov x0, =PSCI_CPU_ON
    mov x1, #2
    adr x2, start
    mov x3, x19                     // context id: the caller's index
    smc #0
    cmp x0, #0
    b.eq on_success
    cmp x0, #-4
    b.eq on_already
    add x22, x22, #1                // anything else: wrong
    mov x23, x0
    b affinity
on_success:
    add x20, x20, #1
    b affinity
on_already:
    add x21, x21, #1
affinity:
    mov x0, =PSCI_AFFINITY_INFO
    mov x1, #2
    mov x2, #0
    smc #0
    cmp x0, #0
    b.eq aff_on
    cmp x0, #1
    b.eq aff_off
    add x22, x22, #1
    mov x23, x0
    b caller
aff_on:
    add x24, x24, #1
    b caller
aff_off:
    add x25, x25, #1
    b caller
{TARGET_CODE}"""


@dataclass(frozen=True)
class Plan:
    recs: tuple[int, ...]
    runs: tuple[int, ...]    # one run page per CPU
    requests: int            # PSCI requests each caller's CPU completes at least ...
    each: int                # ... and until every outcome was seen this often in total


def psci_callers_and_target(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU target: CPUs 0 and 1 drive their caller REC, completing ``plan.requests`` requests;
    CPU 2 enters REC 2 until both callers are done and REC 2 is off."""
    run, me = plan.runs[cpu.id], plan.recs[cpu.id]
    start_together(cpu, (*CALLERS, TARGET))
    bad: list[str] = []
    if cpu.id == TARGET:
        starts = busy = 0
        while not cpu.machine.control.stop_requested:
            callers_done = all(counter(cpu, c, DONE) for c in CALLERS)
            x0, ex = enter(cpu, me, run)
            if x0 == ERROR_REC:     # not runnable (only this CPU enters REC 2)
                busy += 1
                if callers_done:
                    break
                os.sched_yield()
            elif x0 != SUCCESS:
                bad.append(f"REC_ENTER(REC 2) X0 {x0:#x}")
            elif ex["exit_reason"] == EXIT_PSCI and ex["gprs"][0] == CPU_OFF:
                starts += 1
            elif ex["exit_reason"] != EXIT_IRQ:
                bad.append(f"REC 2 exit {ex['exit_reason']} gprs {ex['gprs'][:2]}")
        return {"offs": starts, "busy": busy, "bad": bad}
    completed = 0
    seen = [0] * len(OUTCOMES)
    caller = Rec(cpu.machine.memory, (me - cpu.machine.dram_base) // 4096)
    while not cpu.machine.control.stop_requested:
        totals = [sum(counter(cpu, c, 2 + i) for c in CALLERS) for i in range(len(OUTCOMES))]
        if completed >= plan.requests and min(totals) >= plan.each:
            break
        x0, ex = enter(cpu, me, run)
        if x0 != SUCCESS:
            bad.append(f"REC_ENTER(REC {cpu.id}) X0 {x0:#x}")
            break
        if ex["exit_reason"] == EXIT_IRQ:
            continue
        if ex["exit_reason"] != EXIT_PSCI or ex["gprs"][0] not in (CPU_ON, AFFINITY_INFO) or ex["gprs"][1] != 2:
            bad.append(f"REC {cpu.id} exit {ex['exit_reason']} gprs {ex['gprs'][:2]}")
            break
        x0 = cpu.smc(F.RMI_PSCI_COMPLETE, me, plan.recs[TARGET], SUCCESS)[0]
        if x0 != SUCCESS:
            bad.append(f"PSCI_COMPLETE(REC {cpu.id}, REC 2) X0 {x0:#x}")
            break
        completed += 1
        # White-box: the result the caller will see (it is not running: this CPU drives it).
        outcome = (ex["gprs"][0], caller.gpr(0))
        if outcome in OUTCOMES:
            n = OUTCOMES.index(outcome)
            seen[n] += 1
            publish(cpu, 2 + n, seen[n])
    # One more entry: the guest counts the last result and exits with its next request, left pending.
    x0, ex = enter(cpu, me, run)
    if x0 != SUCCESS or ex["exit_reason"] != EXIT_PSCI:
        bad.append(f"last REC_ENTER(REC {cpu.id}): X0 {x0:#x}, exit {ex['exit_reason']}")
    publish(cpu, DONE, 1)
    return {"completed": completed, "bad": bad}


def _callers_started(m: Machine, requests: int, each: int) -> tuple[Guest, "Plan"]:
    """Build the realm from CPU 3, start REC 1 as REC 0's first CPU_ON asks, and plan the run:
    each REC's run page, ``requests`` and ``each`` for the CPU targets."""
    g = Guest.build(m, PROGRAM, num_recs=3, cpu=3)
    x0, ex = g.enter()
    assert (x0, ex["exit_reason"], ex["gprs"][:2]) == (SUCCESS, EXIT_PSCI, (CPU_ON, 1)), (x0, ex)
    assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), g.rec_pa(1), SUCCESS)[0] == SUCCESS
    runs = tuple(g.alloc.alloc() for _ in range(3))
    return g, Plan(tuple(g.rec_pa(n) for n in range(3)), runs, requests=requests, each=each)


def test_two_recs_cpu_on_one_target() -> None:
    """Every completed CPU_ON gives SUCCESS or ALREADY_ON and every AFFINITY_INFO ON or OFF; the
    successes of each caller equal REC 2's starts with that caller's context id (so their sum
    equals the starts and the CPU_OFF exits CPU 2 saw); REC 2 ends off, no refcount is held,
    and the invariants hold. Both CPU_ON outcomes and both AFFINITY_INFO answers happen."""
    with Machine.create("host", cpus=4, time_slice=2000) as m:
        g, plan = _callers_started(m, requests=40, each=5)
        result = run_cpus(m, psci_callers_and_target, cpus=(*CALLERS, TARGET), args=(plan,), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        assert result.stopped_by == "", f"the CPUs were stopped ({result.stopped_by}): {result.results}"
        outcomes = result.results
        assert all(not r["bad"] for r in outcomes.values()), outcomes
        table = m.granule_table(0)
        assert [table.refcount(g.rec(n).idx) for n in range(3)] == [0, 0, 0]
        successes = [g.gpr(20, n) for n in CALLERS]
        already = sum(g.gpr(21, n) for n in CALLERS)
        wrong = [(g.gpr(22, n), g.gpr(23, n)) for n in CALLERS]
        on, off = (sum(g.gpr(r, n) for n in CALLERS) for r in (24, 25))
        assert wrong == [(0, 0), (0, 0)], wrong
        # Each caller consumed every result its CPU completed: half CPU_ONs, half AFFINITY_INFOs.
        for n in CALLERS:
            assert g.gpr(20, n) + g.gpr(21, n) + g.gpr(24, n) + g.gpr(25, n) == outcomes[n]["completed"]
        total, by0, by1 = (int.from_bytes(g.peek(g.label("starts") + 8 * i, 8), "little") for i in range(3))
        assert [by0, by1] == successes, (by0, by1, successes)
        assert total == sum(successes) == outcomes[TARGET]["offs"]
        assert not Rec(m.memory, g.rec(TARGET).idx).runnable
        assert min(sum(successes), already, on, off) >= 1, (successes, already, on, off)
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()
        for pa in plan.runs:
            g.alloc.free(pa)


# -- the same race through the host's run loop -----------------------------------------------------

ROUNDS = 40
LOOP_PROGRAM = f"""
start:
    mrs x19, mpidr
    and x19, x19, #0xff
    cmp x19, #2
    b.eq target
    cmp x19, #1
    b.eq caller
    mov x0, =PSCI_CPU_ON            // REC 0: start REC 1
    mov x1, #1
    adr x2, start
    mov x3, #0
    smc #0
    mov x20, x0
    mov x19, #1
    cbnz x20, report                // REPORT 1: CPU_ON(REC 1) failed
    mov x19, #0
caller:                             // RECs 0 and 1: ROUNDS x (CPU_ON(REC 2), AFFINITY_INFO(REC 2))
    mov x0, =PSCI_CPU_ON
    mov x1, #2
    adr x2, start
    mov x3, x19
    smc #0
    cmp x0, #0
    b.eq on_success
    cmp x0, #-4
    b.ne bad_on
    add x21, x21, #1
    b affinity
on_success:
    add x22, x22, #1
affinity:
    mov x0, =PSCI_AFFINITY_INFO
    mov x1, #2
    mov x2, #0
    smc #0
    cmp x0, #1
    b.hi bad_affinity
    add x23, x23, #1
    cmp x23, #{ROUNDS}
    b.lo caller
    adr x1, tallies                 // this caller's CPU_ON successes
    lsl x2, x19, #3
    add x1, x1, x2
    str x22, [x1]
    cbz x19, collect
    mov x0, =PSCI_CPU_OFF           // REC 1 is done
    smc #0
    b .
collect:                            // REC 0: wait until RECs 1 and 2 are off, then compare
    mov x24, #1
wait_off:
    mov x0, =PSCI_AFFINITY_INFO
    mov x1, x24
    mov x2, #0
    smc #0
    cmp x0, #1
    b.ne wait_off
    add x24, x24, #1
    cmp x24, #3
    b.lo wait_off
    adr x1, tallies
    adr x4, starts
    mov x24, #0
compare:                            // REPORT 4 (detail: caller) unless starts by caller = its successes
    ldr x2, [x1]
    ldr x3, [x4, #8]
    mov x19, #4
    mov x20, x24
    cmp x2, x3
    b.ne report
    add x1, x1, #8
    add x4, x4, #8
    add x24, x24, #1
    cmp x24, #2
    b.lo compare
    mov x19, #0                     // pass; detail: REC 2's starts
    adr x4, starts
    ldr x20, [x4]
    b report
bad_on:                             // REPORT 2 / 3: a result no completion may give
    mov x19, #2
    mov x20, x0
    b report
bad_affinity:
    mov x19, #3
    mov x20, x0
    b report
{TARGET_CODE}tallies:
    .quad 0, 0
{REPORT_TAIL}
"""


def test_run_loop_two_recs_cpu_on_one_target() -> None:
    """The host's run loop on 3 CPUs runs a realm whose RECs 0 and 1 each CPU_ON REC 2 and ask
    AFFINITY_INFO about it ROUNDS times while REC 2 starts and turns itself off: every result is
    allowed, each caller's successes equal REC 2's starts with its context id (the realm checks
    and reports), no vCPU fails, every CPU_ON answered counts once, and the realm tears down."""
    with Machine.create("host", cpus=4, time_slice=2000) as m:
        run = run_loop_to_the_end(m, LOOP_PROGRAM, num_recs=3)
        st = run.status
        assert st.passed and st.end == "SYSTEM_OFF", st
        assert st.result[1] >= 1, st.result
        assert st.counters["cpu_on"] == 2 * ROUNDS + 1, st.counters
        assert st.counters["affinity_info"] >= 2 * ROUNDS + 2, st.counters
        tear_down_checked(m, run)


# -- both completions at once, the target off ------------------------------------------------------

PENDING, ANSWER, ANSWERED = 2, 3, 4
"""Counters of test_simultaneous_completions: round reached (callers: CPU_ON pending; CPU 2: REC 2
off), the caller's answer in that round (1 SUCCESS, 2 ALREADY_ON, 3 anything else), round answered."""


def _until_cpu_on(cpu: Any, plan: Plan, caller: Rec) -> str:
    """Enter this CPU's caller REC, completing its AFFINITY_INFO requests, until it exits with a
    CPU_ON (left pending); '' or what went wrong."""
    me = plan.recs[cpu.id]
    while not cpu.machine.control.stop_requested:
        x0, ex = enter(cpu, me, plan.runs[cpu.id])
        if x0 != SUCCESS:
            return f"REC_ENTER(REC {cpu.id}) X0 {x0:#x}"
        if ex["exit_reason"] == EXIT_IRQ:
            continue
        if ex["exit_reason"] != EXIT_PSCI or ex["gprs"][1] != 2:
            return f"REC {cpu.id} exit {ex['exit_reason']} gprs {ex['gprs'][:2]}"
        if ex["gprs"][0] == CPU_ON:
            return ""
        x0 = cpu.smc(F.RMI_PSCI_COMPLETE, me, plan.recs[TARGET], SUCCESS)[0]
        if x0 != SUCCESS or caller.gpr(0) not in (0, 1):
            return f"AFFINITY_INFO completion: X0 {x0:#x}, answer {caller.gpr(0):#x}"
    return "stopped"


def completions_at_once(cpu: Any, plan: Plan) -> str:
    """CPU target: ``plan.requests`` rounds. Each round both callers wait, CPU_ON pending, until
    REC 2 is off, then complete at once; CPU 2 checks that exactly one answer was SUCCESS and
    runs REC 2 until it turns itself off again."""
    m = cpu.machine
    others = tuple(c for c in (*CALLERS, TARGET) if c != cpu.id)
    start_together(cpu, (*CALLERS, TARGET))
    caller = Rec(m.memory, (plan.recs[cpu.id] - m.dram_base) // 4096)
    for r in range(1, plan.requests + 1):
        if cpu.id != TARGET:
            error = _until_cpu_on(cpu, plan, caller)
            if error:
                return f"round {r}: {error}"
        publish(cpu, PENDING, r)
        if cpu.id != TARGET:
            wait_until(cpu, lambda: all(counter(cpu, c, PENDING) >= r for c in others))
            x0 = cpu.smc(F.RMI_PSCI_COMPLETE, plan.recs[cpu.id], plan.recs[TARGET], SUCCESS)[0]
            if x0 != SUCCESS:
                return f"round {r}: PSCI_COMPLETE X0 {x0:#x}"
            publish(cpu, ANSWER, {0: 1, 2**64 - 4: 2}.get(caller.gpr(0), 3))
            publish(cpu, ANSWERED, r)
            continue
        wait_until(cpu, lambda: all(counter(cpu, c, ANSWERED) >= r for c in CALLERS))
        answers = sorted(counter(cpu, c, ANSWER) for c in CALLERS)
        if answers != [1, 2]:
            return f"round {r}: the two CPU_ON answers (1 SUCCESS, 2 ALREADY_ON) were {answers}"
        while not m.control.stop_requested:
            x0, ex = enter(cpu, plan.recs[TARGET], plan.runs[TARGET])
            if x0 != SUCCESS:
                return f"round {r}: REC_ENTER(REC 2) after a SUCCESS: X0 {x0:#x}"
            if ex["exit_reason"] == EXIT_PSCI and ex["gprs"][0] == CPU_OFF:
                break
    return ""


def test_simultaneous_completions() -> None:
    """Thirty rounds: RECs 0 and 1 both have CPU_ON(REC 2) pending while REC 2 is off, and their
    CPUs call RMI_PSCI_COMPLETE at the same moment: one caller gets SUCCESS, the other
    ALREADY_ON, every round; REC 2 starts thirty times, each time with the context id of the
    caller that got SUCCESS."""
    with Machine.create("host", cpus=4, time_slice=2000) as m:
        g, plan = _callers_started(m, requests=30, each=0)
        result = run_cpus(m, completions_at_once, cpus=(*CALLERS, TARGET), args=(plan,), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        assert result.results == {0: "", 1: "", 2: ""}, result.results
        total, by0, by1 = (int.from_bytes(g.peek(g.label("starts") + 8 * i, 8), "little") for i in range(3))
        assert total == by0 + by1 == 30, (total, by0, by1)
        table = m.granule_table(0)
        assert [table.refcount(g.rec(n).idx) for n in range(3)] == [0, 0, 0]
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()
        for pa in plan.runs:
            g.alloc.free(pa)
