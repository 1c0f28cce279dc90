"""One REC, two CPU processes (DEN0137 1.0-rel0 B4.3.14 rec_state; A2.3: a REC runs on one PE at a time).

(a) Race: CPUs 0 and 1 call RMI_REC_ENTER on the same REC over and over (each with its own run
    page) while its guest counts in X5 for its whole time slice. Every call must return SUCCESS
    with an IRQ exit (the slice ended) or RMI_ERROR_REC (the other CPU holds the REC's running
    reference), and both must happen. Afterwards the REC is idle (refcount 0), X5 counts exactly
    the slices that ran (no run lost, none doubled), and the invariants hold.
(b) Migration: the CPUs take turns entering the REC, whose guest increments X5 and writes it to
    an unmapped unprotected IPA (an emulatable MMIO exit with the value in gprs[0]); each entry
    completes the previous CPU's exit with EMUL_MMIO, and each exit must show the next count.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from realm_guests import CODE, UNPROTECTED, Guest
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT, RmiRecEnterFlags
from rmm_mp.check import invariants
from rmm_mp.hw.cpuarea import OFF_COUNTERS
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

REC_ENTER = int(RmiFid.RMI_REC_ENTER)
EMUL_MMIO = int(RmiRecEnterFlags.EMUL_MMIO)
SUCCESS, ERROR_REC = 0, 3
EXIT_SYNC, EXIT_IRQ = 0, 1
SLICE = 200
"""Guest instructions per entry: 100 iterations of the 2-instruction counting loop."""
READY, OK, BUSY = 0, 1, 2
"""Activity counters (cpuarea OFF_COUNTERS) each CPU publishes: ready flag, SUCCESS count, ERROR_REC count."""
CPUS = (0, 1)
MMIO = UNPROTECTED + 0x5000


@dataclass(frozen=True)
class Plan:
    rec: int
    runs: tuple[int, ...]    # one RmiRecRun page per CPU
    calls: int               # at least this many REC_ENTERs per CPU ...
    each: int                # ... and until both outcomes were seen this often in total


def _counter(cpu, owner: int, n: int) -> int:  # type: ignore[no-untyped-def]
    return cpu.area.view.load_u64(owner * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n)


def _publish(cpu, n: int, value: int) -> None:  # type: ignore[no-untyped-def]
    cpu.area.view.store_u64(cpu.id * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n, value)


def _start_together(cpu) -> None:  # type: ignore[no-untyped-def]
    _publish(cpu, READY, 1)
    while not all(_counter(cpu, c, READY) for c in CPUS):
        os.sched_yield()


def race(cpu, plan: Plan) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """CPU target (a): REC_ENTER the shared REC until enough of both outcomes were seen."""
    m = cpu.machine
    run = plan.runs[cpu.id]
    m.ns_write(run, bytes(RMI_REC_ENTER.size))
    _start_together(cpu)
    ok = busy = 0
    bad: list[str] = []
    while not m.control.stop_requested:
        x0 = cpu.smc(REC_ENTER, plan.rec, run)[0]
        if x0 == SUCCESS:
            ex = RMI_REC_EXIT.unpack(m.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
            if (ex["exit_reason"], ex["esr"]) != (EXIT_IRQ, 0):
                bad.append(f"exit {ex['exit_reason']} esr {ex['esr']:#x}")
            ok += 1
        elif x0 == ERROR_REC:
            busy += 1
        else:
            bad.append(f"X0 = {x0:#x}")
        _publish(cpu, OK, ok)
        _publish(cpu, BUSY, busy)
        total_ok = sum(_counter(cpu, c, OK) for c in CPUS)
        total_busy = sum(_counter(cpu, c, BUSY) for c in CPUS)
        if ok + busy >= plan.calls and min(total_ok, total_busy) >= plan.each:
            break
    return {"ok": ok, "busy": busy, "bad": bad}


def test_two_cpus_race_to_enter_one_rec() -> None:
    """(a) Every REC_ENTER returns SUCCESS (IRQ exit at the end of the slice) or ERROR_REC, never
    anything else; both outcomes happen; afterwards the REC's refcount is 0, X5 = 100 per
    successful entry (every slice ran exactly once, on whichever CPU) and the invariants hold."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g = Guest.build(m, "loop:\nadd x5, x5, #1\nb loop", cpu=2)
        runs = (g.alloc.alloc(), g.alloc.alloc())
        result = run_cpus(m, race, cpus=CPUS, args=(Plan(g.rec_pa(), runs, 300, 20),), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        assert result.stopped_by == "", f"the CPUs were stopped ({result.stopped_by}): {result.results}"
        outcomes = list(result.results.values())
        assert all(not r["bad"] for r in outcomes), outcomes
        successes = sum(r["ok"] for r in outcomes)
        assert successes >= 20 and sum(r["busy"] for r in outcomes) >= 20, outcomes
        assert m.granule_table(0).refcount(g.rec().idx) == 0
        assert (g.gpr(5), g.pc()) == (successes * SLICE // 2, CODE)
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()
        for pa in runs:
            g.alloc.free(pa)


def alternate(cpu, plan: Plan) -> list[int]:  # type: ignore[no-untyped-def]
    """CPU target (b): on this CPU's turns (the CPUs' entry counts sum to an even number for CPU 0,
    odd for CPU 1), enter the REC, completing the last MMIO exit, and record the value it wrote."""
    m = cpu.machine
    run = plan.runs[cpu.id]
    _start_together(cpu)
    seen: list[int] = []
    while len(seen) < plan.calls and not m.control.stop_requested:
        turn = sum(_counter(cpu, c, OK) for c in CPUS)
        if turn % len(CPUS) != cpu.id:
            os.sched_yield()
            continue
        m.ns_write(run, bytes(RMI_REC_ENTER.pack(flags=EMUL_MMIO if turn else 0)))
        x0 = cpu.smc(REC_ENTER, plan.rec, run)[0]
        ex = RMI_REC_EXIT.unpack(m.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
        if x0 != SUCCESS or ex["exit_reason"] != EXIT_SYNC or ex["hpfar"] != (MMIO >> 8):
            raise AssertionError(f"turn {turn} on CPU {cpu.id}: X0 {x0:#x}, exit {ex}")
        seen.append(ex["gprs"][0])
        _publish(cpu, OK, len(seen))
    return seen


def test_rec_migrates_between_cpus() -> None:
    """(b) CPUs 0 and 1 alternate, 60 entries each: CPU 0 sees the counts 1, 3, 5, ..., CPU 1 sees
    2, 4, 6, ...: the REC's registers and its pending MMIO exit follow it from CPU to CPU. After:
    X5 = 120, refcount 0, invariants hold."""
    program = f"mov x1, ={MMIO}\nloop:\nadd x5, x5, #1\nstr x5, [x1]\nb loop"
    with Machine.create("host", cpus=3, time_slice=2000) as m:
        g = Guest.build(m, program, cpu=2)
        runs = (g.alloc.alloc(), g.alloc.alloc())
        result = run_cpus(m, alternate, cpus=CPUS, args=(Plan(g.rec_pa(), runs, 60, 0),), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        assert result.results[0] == list(range(1, 121, 2))
        assert result.results[1] == list(range(2, 121, 2))
        assert m.granule_table(0).refcount(g.rec().idx) == 0
        assert g.gpr(5) == 120
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()
        for pa in runs:
            g.alloc.free(pa)
