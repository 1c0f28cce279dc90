"""A realm's RIPAS change carried out by one CPU while another CPU works on the same REC or the
same tables (DEN0137 1.0-rel0 B4.3.21 RMI_RTT_SET_RIPAS, B5.3.6 RSI_IPA_STATE_SET, B4.3.14
REC_ENTER, A2.3: commands on one realm run concurrently on different PEs).

The guest asks, over and over, for RIPAS EMPTY and then RAM over four pages that straddle a
2 MiB boundary (two level-3 tables), re-asking from the X1 it is given until the whole range is
done, and reports each X1 with an MMIO write (an emulatable exit whose gprs[0] is X1).

(a) RTT_SET_RIPAS against RTT_FOLD / RTT_CREATE of the two tables: CPU 0 is the host's vCPU
    loop, which on each RIPAS_CHANGE exit makes a random number (0, 1 or all) of successful
    RTT_SET_RIPAS calls, creating the level-3 table again when it finds it folded; CPU 1 folds
    and re-creates both tables all the while. Every status must be one a correct RMM may return
    there; every X1 the realm reports must be where the host's calls stopped; and after each
    report the four pages' RIPAS (read at level 3, through a block entry when folded) is exactly
    what the reports so far say: no fold or unfold loses or invents a change.
(b) RTT_SET_RIPAS against REC_ENTER of the same REC: on each RIPAS_CHANGE exit CPU 1 makes the
    RTT_SET_RIPAS calls while CPU 0 enters the REC as soon as CPU 1 has made a chosen number of
    them (0, 1 or 2). A call may succeed (before the entry), fail with RMI_ERROR_REC (while the
    REC runs) or with RMI_ERROR_INPUT (once the entry has completed the request), never
    otherwise; and the X1 the realm reports is exactly how far the successful calls got, with the
    pages' RIPAS matching it: no call's change is lost to, or made after, the entry that reports.
    In half the rounds (chosen in advance) CPU 1 waits for the entry to return before going on,
    so those that needed more calls are certainly completed in part.
(c) (a) with RTT_DESTROY of the tables too (their entries become DESTROYED), the guest asking
    with RSI_CHANGE_DESTROYED so that its changes can still be made.
(d) (c) with DATA_CREATE_UNKNOWN and DATA_DESTROY of the four pages among CPU 1's calls too (as
    when another vCPU's faults are served): a RIPAS change applies to ASSIGNED entries as well.

Afterwards the invariants hold and the realm tears down. The CPU targets live in this module:
spawned CPU processes import it by name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from realm_guests import CODE, UNPROTECTED, Guest
from rec_cpus import counter, publish, start_together, wait_until
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT, RmiRecEnterFlags
from rmm_mp.check import invariants
from rmm_mp.hw.cpuarea import COUNTERS
from rmm_mp.host import NsAllocator
from rmm_mp.host.realm import create_rtt_levels
from rmm_mp.runtime import run_cpus
from table_churn import TableChurner

pytestmark = pytest.mark.multiprocess

F = RmiFid
G, MiB = 4096, 1 << 20
SUCCESS, INPUT, REC_ERR, RTT_ERR = 0, 1, 3, 4
EXIT_SYNC, EXIT_IRQ, EXIT_RIPAS_CHANGE = 0, 1, 4
EMUL_MMIO = int(RmiRecEnterFlags.EMUL_MMIO)
BOUNDARY = CODE + 4 * MiB
BASE, TOP = BOUNDARY - 2 * G, BOUNDARY + 2 * G
BLOCKS = (BOUNDARY - 2 * MiB, BOUNDARY)
MMIO = UNPROTECTED + 0x7000
ERROR_MMIO = UNPROTECTED + 0x8000
READY, DONE, ROUND, ENTERING, CALLS, FINISHED, DONE_AT, ENTERED = range(COUNTERS)
"""Activity counters: ready, done (CPU 0 has finished); CPU 0's round, the round whose entry it
has begun and the one whose entry has returned; CPU 1's progress in a round: (round << 16 |
successful calls), the last round it has finished and where its successful calls got to in it."""
OPS, SUCCEEDED = ROUND, ENTERING
"""(a), (c), (d): CPU 1's, at indexes its (b) counters leave free (a CPU area holds COUNTERS,
8): how many table calls it has made, and which of the calls it must see succeed (needed) it
has. OPS was a ninth counter, past the area's, written over CPU 1's published RD of the realm
it executes (cpuarea.OFF_EXEC_RD), which a TLB invalidation waits on and a binding counts out."""


def choices(seed: int, rounds: int) -> list[tuple[int, bool]]:
    """(b)'s plan, the same in both CPUs: per round, after how many successful calls CPU 0 enters,
    and whether CPU 1 then waits for the entry to return before its next call (so that the
    round is certainly completed in part when it needed more calls) or races it."""
    rng = random.Random(seed)
    return [(rng.choice((0, 1, 2)), rng.random() < 0.5) for _ in range(rounds)]


def rtt_error(level: int) -> int:
    return RTT_ERR | level << 8


PROGRAM = """
    mov x21, ={MMIO}
    mov x22, ={ERROR_MMIO}
    mov x20, #0                     // the RIPAS asked for: EMPTY first (the range is half RAM)
round:
    mov x1, ={BASE}
again:
    mov x2, ={TOP}
    mov x3, x20
    mov x4, #{flags}                // 1: RSI_CHANGE_DESTROYED
    mov x0, =RSI_IPA_STATE_SET
    smc #0
    cbnz x0, failed
    cbnz x2, failed                 // REJECT: never asked for
    str x1, [x21]                   // report X1
    mov x10, ={TOP}
    cmp x1, x10
    b.ne again
    eor x20, x20, #1
    b round
failed:
    str x0, [x22]
    b failed
"""
DESTROYED = 2


def needed(destroy: bool, data: bool) -> tuple[str, ...]:
    """The table calls CPU 1 must see succeed at least once in (a), (c), (d): the race is only
    tested if they do. With DATA in the pages a fold rarely finds a table all alike: it need not."""
    return (("RTT_CREATE",) + (() if data else ("RTT_FOLD",)) + (("RTT_DESTROY",) if destroy else ())
            + (("DATA_CREATE_UNKNOWN", "DATA_DESTROY") if data else ()))


EXTRA_ROUNDS = 10
"""(a), (c), (d) serve up to this many times their rounds while CPU 1 has not yet seen each
needed call succeed: a loaded host may schedule its calls only where they fail (a pacing counter
made that unlikely, not impossible), so the test could fail though nothing was wrong."""


def program(flags: int = 0) -> str:
    return PROGRAM.format(MMIO=MMIO, ERROR_MMIO=ERROR_MMIO, BASE=BASE, TOP=TOP, flags=flags)


@dataclass(frozen=True)
class Plan:
    rd: int
    rec: int
    run: int
    rounds: int          # RIPAS_CHANGE exits to serve
    seed: int
    destroy: bool = False  # (c): the churn destroys tables too; the guest may change DESTROYED
    data: bool = False     # (d): the churn also maps and destroys DATA in the four pages


def read_ripas(cpu, rd: int, assigned: bool = False) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """The RIPAS of each page of [BASE, TOP), read at level 3 (through a block when folded);
    every entry UNASSIGNED, or ASSIGNED too if ``assigned``."""
    out = {}
    for ipa in range(BASE, TOP, G):
        x0, level, state, _, ripas = cpu.smc(F.RMI_RTT_READ_ENTRY, rd, ipa, 3)
        assert x0 == SUCCESS and state in ((0, 1) if assigned else (0,)) and level >= 2, (hex(ipa), x0, level, state)
        out[ipa] = ripas
    return out


class Host:
    """The vCPU side of one CPU: enter, read the exit, check each report against the model."""

    def __init__(self, cpu, plan: Plan) -> None:  # type: ignore[no-untyped-def]
        self.cpu, self.m, self.plan = cpu, cpu.machine, plan
        self.flags = 0
        self.model = read_ripas(cpu, plan.rd, plan.data)
        self.request: tuple[int, int, int] | None = None
        self.done = 0                  # where this round's successful calls stopped
        self.reports: list[int] = []

    def enter(self) -> tuple[int, dict]:
        self.m.ns_write(self.plan.run, bytes(RMI_REC_ENTER.pack(flags=self.flags)))
        x0 = self.cpu.smc(F.RMI_REC_ENTER, self.plan.rec, self.plan.run)[0]
        self.flags = 0
        return x0, RMI_REC_EXIT.unpack(self.m.ns_read(self.plan.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))

    def take(self, ex: dict) -> str:
        """Handle an exit: 'ripas' (a new request, self.request set), 'report' (checked), 'irq'."""
        if ex["exit_reason"] == EXIT_IRQ:
            return "irq"
        if ex["exit_reason"] == EXIT_RIPAS_CHANGE:
            self.request = (ex["ripas_base"], ex["ripas_top"], ex["ripas_value"])
            self.done = ex["ripas_base"]
            return "ripas"
        ipa = ex["hpfar"] << 8 | ex["far"]
        assert ex["exit_reason"] == EXIT_SYNC and ipa == MMIO, f"unexpected exit {ex} (IPA {ipa:#x})"
        self.flags = EMUL_MMIO
        reported = ex["gprs"][0]
        assert self.request is not None, f"a report ({reported:#x}) with no request"
        base, top, value = self.request
        assert reported == self.done, f"the realm was told {reported:#x}; the host's calls got to {self.done:#x}"
        for ipa in range(base, reported, G):
            self.model[ipa] = value
        seen = read_ripas(self.cpu, self.plan.rd, self.plan.data)
        if self.plan.destroy:              # an RTT_DESTROY since may have made any page DESTROYED
            seen = {k: self.model[k] if v == DESTROYED else v for k, v in seen.items()}
        assert seen == self.model, {hex(k): (seen[k], self.model[k]) for k in seen if seen[k] != self.model[k]}
        self.reports.append(reported)
        self.request = None
        return "report"


def fold_churn(cpu, plan: Plan) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """CPU target (a), CPU 1: fold and re-create both level-3 tables until CPU 0 is done (and
    destroy them, and map and destroy DATA in the four pages, as the plan says)."""
    live = {rtt_error(3)} if plan.data else set()      # a table with ASSIGNED entries is live
    churn = TableChurner(cpu, plan.rd, BLOCKS[0], 0, {
        "RTT_CREATE": {SUCCESS, rtt_error(2)}, "RTT_FOLD": {SUCCESS, rtt_error(2), rtt_error(3)},
        "RTT_DESTROY": {SUCCESS, rtt_error(2), *live}, "DELEGATE": {SUCCESS},
        "DATA_CREATE_UNKNOWN": {SUCCESS, rtt_error(2), rtt_error(3)},
        "DATA_DESTROY": {SUCCESS, rtt_error(2), rtt_error(3)}})
    rng = random.Random(plan.seed + 1)
    start_together(cpu, (0, 1), READY)
    ops = 0
    names = needed(plan.destroy, plan.data)
    while not counter(cpu, 0, DONE) and not cpu.machine.control.stop_requested:
        block, dice = rng.choice(BLOCKS), rng.random()
        if plan.data and dice < 0.4:
            data_churn(churn, rng.randrange(BASE, TOP, G), dice < 0.2)
        elif plan.destroy and dice < (0.6 if plan.data else 0.2):
            churn.drop_table("RTT_DESTROY", block)
        elif dice < 0.5:
            churn.drop_table("RTT_FOLD", block)
        else:
            churn.create_table(block)
        ops += 1
        publish(cpu, SUCCEEDED, sum(1 << i for i, name in enumerate(names) if churn.seen[(name, SUCCESS)]))
        publish(cpu, OPS, ops)
    return {f"{name} {x0:#x}": n for (name, x0), n in churn.seen.items()}


def data_churn(churn: TableChurner, ipa: int, fill: bool) -> None:
    """DATA_CREATE_UNKNOWN of a new page at ``ipa`` (``fill``) or DATA_DESTROY of what is there."""
    if fill:
        pa = churn.alloc.alloc()
        assert churn.call("DELEGATE", pa)[0] == SUCCESS
        if churn.call("DATA_CREATE_UNKNOWN", churn.rd, pa, ipa)[0] == SUCCESS:
            return
    else:
        x0, pa = churn.call("DATA_DESTROY", churn.rd, ipa)[:2]
        if x0 != SUCCESS:
            return
    churn.release(pa)
    churn.alloc.free(pa)


def ripas_host(cpu, plan: Plan) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """CPU target (a), CPU 0: the vCPU loop, completing each RIPAS change in part."""
    host = Host(cpu, plan)
    alloc = NsAllocator.for_cpu(cpu)
    rng = random.Random(plan.seed)
    statuses: dict[str, int] = {}
    start_together(cpu, (0, 1), READY)
    served = 0
    all_seen = (1 << len(needed(plan.destroy, plan.data))) - 1
    try:
        # The rounds planned, then more until CPU 1 has seen each call it needs succeed (at most
        # EXTRA_ROUNDS times as many: each round still checked, and the test fails after them).
        while served < plan.rounds or (counter(cpu, 1, SUCCEEDED) != all_seen
                                       and served < EXTRA_ROUNDS * plan.rounds):
            x0, ex = host.enter()
            assert x0 == SUCCESS, f"REC_ENTER -> {x0:#x}"
            if host.take(ex) != "ripas":
                continue
            served += 1
            # The churn keeps pace whatever the scheduler does: two table calls per round at least.
            wait_until(cpu, lambda: counter(cpu, 1, OPS) >= 2 * served)
            base, top, _ = host.request  # type: ignore[misc]
            budget = rng.choice((0, 1, 99))
            while budget and host.done < top:
                x0, out = cpu.smc(F.RMI_RTT_SET_RIPAS, plan.rd, plan.rec, host.done, top)[:2]
                statuses[f"{x0:#x}"] = statuses.get(f"{x0:#x}", 0) + 1
                if x0 == rtt_error(2):        # folded under us: unfold and try again
                    rtt = alloc.alloc()
                    assert cpu.smc(F.RMI_GRANULE_DELEGATE, rtt)[0] == SUCCESS
                    x0 = cpu.smc(F.RMI_RTT_CREATE, plan.rd, rtt, host.done & ~(2 * MiB - 1), 3)[0]
                    if x0 != SUCCESS:
                        assert x0 == rtt_error(2), f"RTT_CREATE -> {x0:#x}"   # CPU 1 made it first
                        assert cpu.smc(F.RMI_GRANULE_UNDELEGATE, rtt)[0] == SUCCESS
                        alloc.free(rtt)
                    continue
                assert x0 == SUCCESS and host.done < out <= top, f"SET_RIPAS({host.done:#x}) -> {x0:#x}, {out:#x}"
                host.done = out
                budget -= 1
        # Let the last request's report come in and be checked.
        while True:
            x0, ex = host.enter()
            assert x0 == SUCCESS, f"REC_ENTER -> {x0:#x}"
            if host.take(ex) == "report":
                break
    finally:
        publish(cpu, DONE, 1)
    return {"statuses": statuses, "reports": len(host.reports), "partial": sum(r < TOP for r in host.reports),
            "served": served}


def race_a(cpu, plan: Plan) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return ripas_host(cpu, plan) if cpu.id == 0 else fold_churn(cpu, plan)


@pytest.mark.parametrize("destroy, data", [(False, False), (True, False), (True, True)])
def test_set_ripas_races_fold_and_unfold_of_its_tables(destroy: bool, data: bool) -> None:
    """(a) 40 RIPAS_CHANGE exits served in part while CPU 1 folds and unfolds the tables (more,
    up to EXTRA_ROUNDS times as many, until each needed call of CPU 1's has succeeded);
    (c) with RTT_DESTROY among CPU 1's calls and the guest asking with RSI_CHANGE_DESTROYED:
    a page may then also read DESTROYED, never the RIPAS it had before a reported change;
    (d) with DATA_CREATE_UNKNOWN and DATA_DESTROY of the four pages too."""
    with Machine.create("host", cpus=3) as m:
        g = Guest.build(m, program(int(destroy)), cpu=2)
        plan = Plan(g.realm.rd, g.rec_pa(), g.run, 40, 1234, destroy, data)
        result = run_cpus(m, race_a, cpus=(0, 1), args=(plan,), timeout_s=120)
        assert result.ok, [f.describe() for f in result.failures]
        host, churn = result.results[0], result.results[1]
        assert host["reports"] >= 40 and host["partial"] >= 5, host
        # Each needed call succeeded at least once during the race (within EXTRA_ROUNDS * 40 rounds).
        for name in needed(destroy, data):
            assert churn.get(f"{name} 0x0", 0) >= 1, (name, host["served"], churn)
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()


def enterer(cpu, plan: Plan) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """CPU target (b), CPU 0: the vCPU loop; enters the REC once CPU 1 has made the round's
    chosen number of successful RTT_SET_RIPAS calls (or finished)."""
    host = Host(cpu, plan)
    plan_k = choices(plan.seed, plan.rounds)
    start_together(cpu, (0, 1), READY)
    rounds = 0
    try:
        while True:
            x0, ex = host.enter()
            assert x0 == SUCCESS, f"REC_ENTER -> {x0:#x}"
            outcome = host.take(ex)
            if outcome == "report" and rounds >= plan.rounds:
                break
            if outcome != "ripas":
                continue
            rounds += 1
            publish(cpu, ROUND, rounds)
            k = plan_k[rounds - 1][0]
            wait_until(cpu, lambda: counter(cpu, 1, CALLS) >= (rounds << 16 | k) or counter(cpu, 1, FINISHED) == rounds)
            publish(cpu, ENTERING, rounds)
            while True:                    # the entry that completes the request (IRQ exits aside)
                x0, ex = host.enter()
                assert x0 == SUCCESS, f"REC_ENTER -> {x0:#x}"
                if ex["exit_reason"] != EXIT_IRQ:
                    break
            publish(cpu, ENTERED, rounds)
            wait_until(cpu, lambda: counter(cpu, 1, FINISHED) == rounds)
            host.done = counter(cpu, 1, DONE_AT)
            assert host.take(ex) == "report"
            if rounds >= plan.rounds:
                break
    finally:
        publish(cpu, DONE, 1)
    return {"reports": host.reports}


def setter(cpu, plan: Plan) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """CPU target (b), CPU 1: each round, RTT_SET_RIPAS from the request's base until the whole
    range is done or the request is gone (RMI_ERROR_INPUT, only once CPU 0 has begun entering)."""
    m = cpu.machine
    plan_k = choices(plan.seed, plan.rounds)
    start_together(cpu, (0, 1), READY)
    seen: dict[str, int] = {}
    served = 0
    while not m.control.stop_requested and not counter(cpu, 0, DONE):
        r = counter(cpu, 0, ROUND)
        if r == served:
            continue
        served = r
        ex = RMI_REC_EXIT.unpack(m.ns_read(plan.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
        done, top, calls = ex["ripas_base"], ex["ripas_top"], 0
        assert ex["exit_reason"] == EXIT_RIPAS_CHANGE, ex
        publish(cpu, CALLS, r << 16)
        k, stepwise = plan_k[r - 1]
        while done < top:
            if stepwise and calls == k:
                wait_until(cpu, lambda: counter(cpu, 0, ENTERED) == r)
            entering = counter(cpu, 0, ENTERING) == r
            x0, out = cpu.smc(F.RMI_RTT_SET_RIPAS, plan.rd, plan.rec, done, top)[:2]
            seen[f"{x0:#x}"] = seen.get(f"{x0:#x}", 0) + 1
            if x0 == SUCCESS:
                assert done < out <= top, f"SET_RIPAS({done:#x}, {top:#x}) -> {out:#x}"
                done = out
                calls += 1
                publish(cpu, CALLS, r << 16 | calls)
                continue
            assert x0 in (REC_ERR, INPUT), f"SET_RIPAS({done:#x}, {top:#x}) -> {x0:#x}"
            if x0 == INPUT:                # the entry completed the request: only once it began
                assert entering, f"RMI_ERROR_INPUT in round {r} before CPU 0 began to enter"
                break
        publish(cpu, DONE_AT, done)
        publish(cpu, FINISHED, r)
    return seen


def race_b(cpu, plan: Plan) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return enterer(cpu, plan) if cpu.id == 0 else setter(cpu, plan)


def test_set_ripas_races_rec_enter_of_its_rec() -> None:
    """(b) 60 rounds: every report matches the successful calls made before the entry, and the
    pages' RIPAS matches the reports; every round where CPU 1 waited before any call is
    completed in part, and the others race."""
    with Machine.create("host", cpus=3) as m:
        g = Guest.build(m, program(), cpu=2)
        for block in BLOCKS:
            create_rtt_levels(g.cpu, g.alloc, g.realm, block, 2, 3)
        plan = Plan(g.realm.rd, g.rec_pa(), g.run, 60, 4321)
        result = run_cpus(m, race_b, cpus=(0, 1), args=(plan,), timeout_s=120)
        assert result.ok, [f.describe() for f in result.failures]
        host, seen = result.results[0], result.results[1]
        assert len(host["reports"]) >= 60, host
        waited_at_0 = sum(k == 0 and stepwise for k, stepwise in choices(plan.seed, plan.rounds))
        assert waited_at_0 >= 5 and sum(r < TOP for r in host["reports"]) >= waited_at_0, host
        assert seen.get("0x0", 0) >= 60, seen
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()
