"""RMI commands on the objects of a realm whose guest code is running on another CPU process
(DEN0137 1.0-rel0 A2.3: commands on one realm run concurrently on different PEs; B4.3.14
rec_state; A5.5: a stage-2 change is complete, TLBs included, when its command returns).

The guests here loop touching their pages and check what they read: each iteration reads the
value the last one stored, stores the next, reads it back, and publishes its iteration count
(its heartbeat) in an NS "board" page mapped at an unprotected IPA, which the CPU processes read
while the REC runs. A guest that reads anything else exits with an MMIO write of a code naming
the check. The time slice is large, so an entry ends only with the exit the test provokes (or
with a STOP the host asks for through the board): a REC a CPU has entered is known to be running
from its first heartbeat until that CPU's REC_ENTER returns.

(a) Refused while running: with REC 0 running (and calling RSI_IPA_STATE_GET and
    RSI_MEASUREMENT_EXTEND every iteration), CPU 1 calls REC_ENTER and REC_DESTROY of that REC
    (RMI_ERROR_REC), RTT_SET_RIPAS naming it (RMI_ERROR_REC), REALM_DESTROY (RMI_ERROR_REALM),
    RTT_DESTROY and RTT_FOLD of the live level-3 table the guest uses ((RMI_ERROR_RTT, 3)),
    UNDELEGATE of the REC (RMI_ERROR_INPUT) and RTT_READ_ENTRY of its pages (ASSIGNED, RAM, the
    same PA), again and again; the heartbeat goes on throughout and nothing changes.
(b) DATA_DESTROY of a page the running guest uses, one round per REC (a REC whose page was
    destroyed is stuck at the access for ever): the entry must end with a data abort exit at
    exactly that IPA (RIPAS DESTROYED, level 3), the guest may finish at most the iteration in
    progress when DATA_DESTROY returned, the page's granule is zero afterwards (nothing wrote it
    after its wipe), every other page holds what the guest's last iteration stored there, and
    an RSI_IPA_STATE_GET that saw the page DESTROYED is never followed by a successful access.
(c) RTT_UNMAP_UNPROTECTED of an NS page the running guest reads: after the command returns, the
    host overwrites the page with garbage; the guest must never read the garbage, and its entry
    ends with an emulatable data abort at that IPA; the host maps the page again (with the right
    contents) and re-enters, round after round.
(d) RTT_SET_RIPAS(EMPTY) of a page REC 0 is using, made for REC 1's RSI_IPA_STATE_SET, while REC
    0 runs: REC 0's next access takes an SEA (its vector reports it), at most one iteration after
    the command returned; REC 1's next request (RAM) makes the page usable again, with its data.
(e) RTT_FOLD of the level-3 table mapping a 2 MiB block the guest counts in (512 contiguous
    DATA granules) and RTT_CREATE of it again, round after round: the guest never sees a wrong
    value or an exception. (A walk that read the old TABLE entry just before a fold, then the
    zeroed child, would take an SEA; that window, one walk wide, is too narrow for this test to
    hit reliably: it shows the translations stay the same across both commands.)
(f) Two RECs changing the RIPAS of the same pages under the host's run loop: only the outcomes
    docs/deviations.md's row allows.
(g) GRANULE_DELEGATE of the NS page behind an unprotected mapping the guest reads and writes:
    the next access faults on the granule protection check, a REC exit due to Data Abort (DFSC
    0x28); the host's INJECT_SEA makes the realm take the SEA, and nothing is stored into the
    delegated page.
(h) DATA_DESTROY of the page the guest's loop executes from: the entry ends with an instruction
    abort at it, at most one iteration after the command returned (no instruction runs from
    the wiped page).
(i) RSI_IPA_STATE_GET in a loop over an unassigned block whose level-3 table is folded, created
    again and once destroyed: every answer covers the whole block, RAM until the RTT_DESTROY
    made it DESTROYED, DESTROYED after.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

import pytest

from realm_guests import CODE, PRELUDE, UNPROTECTED, Guest
from rec_cpus import LoopRun, enter, tear_down_checked, wait_until
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT, RmiRecEnterFlags
from rmm_mp.check import invariants
from rmm_mp.guest.assembler import assemble
from rmm_mp.host import LoopPlan, NsAllocator, RealmSpec, RunQueue, create_realm, realm_status, run_loop
from rmm_mp.host.realm import NS_MAP_ATTRS
from rmm_mp.host.runqueue import OFF_ARRIVED
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

F = RmiFid
G = 4096
SUCCESS, INPUT, REALM, REC = 0, 1, 2, 3
UNASSIGNED, ASSIGNED = 0, 1
RIPAS_EMPTY, RIPAS_RAM, RIPAS_DESTROYED = 0, 1, 2
EXIT_SYNC, EXIT_IRQ, EXIT_PSCI, EXIT_RIPAS = 0, 1, 3, 4
EMUL_MMIO, INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
EC_DABT_LOW = 0x24
ESR_ISV = 1 << 24
SLICE = 10**8
"""Guest instructions per entry: far more than any test runs, so an entry ends only with the
exit the test provokes."""

BOARD = UNPROTECTED + 0x1000
"""The board: heartbeats at 8 * REC index, the STOP flag at STOP_FLAG, the host CPUs' own flags
from HOST_FLAGS."""
STOP_FLAG = 0x400
HOST_FLAGS = 0x800
WINDOW = UNPROTECTED + 0x2000
"""(c): the NS page the guest reads MAGIC from."""
MMIO = UNPROTECTED + 0x5000
"""Never mapped: a store there is the guest's message to the host (an emulatable MMIO exit)."""
PAGES = CODE + 0x10_0000
"""The guests' data pages (in the same level-3 table as the code)."""
NPAGES = 3
MAGIC = 0x5EED_F00D_CAFE_0001
GARBAGE = 0xDEAD_DEAD_DEAD_DEAD
STOPPED, BAD_VALUE, BAD_RSI, STALE, SEA = 0x57, 0xBAD, 0xBAD1, 0x57A1E, 0x5EA
"""The codes a guest writes to MMIO: asked to stop, read a wrong value, an RSI call failed, an
access succeeded after RSI_IPA_STATE_GET said the page was not RAM, took an SEA."""

MESSAGE = f"""message:
    mov x2, ={MMIO}
    str x3, [x2]
    b message
"""
"""Every guest's end: the message in x3 written to the MMIO page (an exit the host reads), again
and again."""


def rtt(level: int) -> int:
    return 4 | level << 8


def page_ipa(rec: int, n: int) -> int:
    return PAGES + (rec * NPAGES + n) * G


# -- the guests --------------------------------------------------------------------------------

def toucher(recs: int, rsi: bool) -> str:
    """REC 0 starts RECs 1..recs-1 (CPU_ON, first run only); every REC then loops over its
    NPAGES pages (page_ipa): with ``rsi``, RSI_IPA_STATE_GET of the page first (a page that is
    not RAM must fault at the access that follows: STALE if it does not); the value stored by
    the last iteration (x20) is read, x20 + 1 stored and read back. Each iteration publishes
    x20 in the board and, with ``rsi``, extends REM 1 with it; if STOP is set, STOPPED."""
    get = """
    mov x0, =RSI_IPA_STATE_GET
    mov x1, x26
    add x2, x26, #4096
    smc #0
    cbnz x0, bad_rsi
    mov x22, x2                         // the RIPAS the RMM reported for the page
""" if rsi else "    mov x22, #1\n"
    extend = """
    mov x0, =RSI_MEASUREMENT_EXTEND
    mov x1, #1
    mov x2, #8
    mov x3, x20
    smc #0
    cbnz x0, bad_rsi
""" if rsi else ""
    return f"""
start:
    mrs x19, mpidr
    and x19, x19, #0xff
    cbnz x19, work
    cbnz x28, work
    mov x28, #1
    mov x17, #1
on:
    cmp x17, #{recs}
    b.hs work
    mov x0, =PSCI_CPU_ON
    mov x1, x17
    adr x2, start
    mov x3, #0
    smc #0
    cbnz x0, bad_rsi
    add x17, x17, #1
    b on
work:
    mov x21, ={BOARD}
    lsl x23, x19, #3
    add x23, x21, x23                   // this REC's heartbeat
    mov x24, ={PAGES}
    mov x25, #{NPAGES * G}
    mul x25, x25, x19
    add x24, x24, x25                   // this REC's first page
loop:
    mov x26, x24
    mov x27, #{NPAGES}
    add x18, x20, #1
inner:
{get}
    ldr x1, [x26]
    cmp x22, #1
    b.ne stale
    cmp x1, x20
    b.ne bad_value
    str x18, [x26]
    ldr x1, [x26]
    cmp x1, x18
    b.ne bad_value
    add x26, x26, #4096
    sub x27, x27, #1
    cbnz x27, inner
    mov x20, x18
    str x20, [x23]
{extend}
    ldr x1, [x21, #{STOP_FLAG}]
    cbz x1, loop
    mov x3, #{STOPPED}
    b message
stale:
    mov x3, #{STALE}
    b message
bad_value:
    mov x3, #{BAD_VALUE}
    b message
bad_rsi:
    mov x3, #{BAD_RSI}
{MESSAGE}"""


# -- shared plumbing ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    rd: int
    recs: tuple[int, ...]
    runs: tuple[int, ...]       # one run page per CPU
    board: int                  # PA of the board page
    window: int = 0             # (c) PA of the window page
    seed: int = 0
    rounds: int = 0


def load(m: Any, pa: int) -> int:
    """A single-copy-atomic load of NS memory (the guest stores into the board without locks)."""
    return m.memory.view.load_u64(pa - m.dram_base)


def store(m: Any, pa: int, value: int) -> None:
    m.memory.view.store_u64(pa - m.dram_base, value)


def heartbeat(m: Any, plan: Plan, rec: int) -> int:
    return load(m, plan.board + 8 * rec)


def flag(m: Any, plan: Plan, n: int) -> int:
    return load(m, plan.board + HOST_FLAGS + 8 * n)


def set_flag(m: Any, plan: Plan, n: int, value: int) -> None:
    store(m, plan.board + HOST_FLAGS + 8 * n, value)


ABANDON = 7
"""Host flag: CPU 1 gave up waiting for an exit (the guest ran RUNAWAY iterations past the
command that should have ended its entry) and set STOP; everyone winds down."""
RUNAWAY = 200


def wait_for_exit(cpu: Any, plan: Plan, done: Any, rec: int, beat: int) -> bool:
    """Wait until ``done()``; False (after STOP and ABANDON are set) if REC ``rec`` ran on to
    RUNAWAY iterations past ``beat`` first: the command did not end its entry, and without
    STOP the entry would run for the whole slice."""
    m = cpu.machine
    wait_until(cpu, lambda: done() or heartbeat(m, plan, rec) > beat + RUNAWAY)
    if done():
        return True
    store(m, plan.board + STOP_FLAG, 1)
    set_flag(m, plan, ABANDON, 1)
    return False


def enter_with(cpu: Any, rec: int, run: int, flags: int, gprs: tuple[int, ...] = ()) -> tuple[int, dict[str, Any]]:
    m = cpu.machine
    m.ns_write(run, bytes(RMI_REC_ENTER.pack(flags=flags, gprs=list(gprs))))
    x0 = cpu.smc(F.RMI_REC_ENTER, rec, run)[0]
    return x0, RMI_REC_EXIT.unpack(m.ns_read(run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))


def message(ex: dict[str, Any]) -> int | None:
    """The code of a guest's MMIO message, or None if the exit is something else."""
    if ex["exit_reason"] == EXIT_SYNC and ex["hpfar"] == MMIO >> 8 and ex["esr"] & ESR_ISV:
        return ex["gprs"][0]
    return None


def build(m: Machine, program: str, recs: int) -> tuple[Guest, int]:
    """The realm (built from CPU 2), its RECs 1.. started by REC 0's CPU_ONs, its pages faulted
    in, the board mapped; returns the Guest and the board's PA."""
    g = Guest.build(m, program, num_recs=recs, cpu=2)
    for target in range(1, recs):
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["gprs"][1]) == (SUCCESS, EXIT_PSCI, target), (x0, ex)
        assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), g.rec_pa(target), SUCCESS)[0] == SUCCESS
    for rec in range(recs):
        for n in range(NPAGES):
            g.fault_in(page_ipa(rec, n))
    return g, g.map_unprotected(BOARD)


def finish(m: Machine, g: Guest, runs: tuple[int, ...]) -> None:
    """No REC holds a running reference, the invariants hold, the realm tears down."""
    table = m.granule_table(0)
    assert [table.refcount(g.rec(n).idx) for n in range(len(g.realm.recs))] == [0] * len(g.realm.recs)
    report = invariants(m)
    assert report.ok, str(report)
    g.destroy()
    for pa in runs:
        g.alloc.free(pa)


# -- (a) refused while running -----------------------------------------------------------------

def run_until_stopped(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 0: one entry of REC 0; its exit."""
    x0, ex = enter(cpu, plan.recs[0], plan.runs[0])
    return {"x0": x0, "message": message(ex), "exit": ex}


def refuse_while_running(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 1: once REC 0 runs, the calls that must fail, ``plan.rounds`` times, each round
    after a new heartbeat; then STOP."""
    m, rd, rec = cpu.machine, plan.rd, plan.recs[0]
    seen: dict[str, set[int]] = {}

    def call(name: str, fid: int, *args: int) -> tuple[int, ...]:
        regs = cpu.smc(fid, *args)
        seen.setdefault(name, set()).add(regs[0])
        return regs

    beats = []
    entries: set[tuple[int, ...]] = set()
    pattern = bytes([0xA5]) * G
    m.ns_write(plan.runs[1], pattern)
    run_pages: set[bool] = set()
    try:
        wait_until(cpu, lambda: heartbeat(m, plan, 0) >= 2)
        for _ in range(plan.rounds):
            before = heartbeat(m, plan, 0)
            call("REC_ENTER", F.RMI_REC_ENTER, rec, plan.runs[1])
            run_pages.add(m.ns_read(plan.runs[1], G) == pattern)
            call("REC_DESTROY", F.RMI_REC_DESTROY, rec)
            call("RTT_SET_RIPAS", F.RMI_RTT_SET_RIPAS, rd, rec, PAGES, PAGES + G)
            call("REALM_DESTROY", F.RMI_REALM_DESTROY, rd)
            call("RTT_DESTROY", F.RMI_RTT_DESTROY, rd, CODE, 3)
            call("RTT_FOLD", F.RMI_RTT_FOLD, rd, CODE, 3)
            call("UNDELEGATE", F.RMI_GRANULE_UNDELEGATE, rec)
            for n in range(NPAGES):
                entries.add(tuple(call("READ_ENTRY", F.RMI_RTT_READ_ENTRY, rd, page_ipa(0, n), 3)[:5]))
            wait_until(cpu, lambda: heartbeat(m, plan, 0) > before)
            beats.append(heartbeat(m, plan, 0))
    finally:
        store(m, plan.board + STOP_FLAG, 1)
    return {"seen": seen, "entries": entries, "beats": beats, "run_page_kept": run_pages}


def chain(values: list[int]) -> bytes:
    """REM after extending an empty SHA-256 slot with 8-byte ``values`` in order (zero padded to 64)."""
    rem = bytes(32)
    for value in values:
        rem = hashlib.sha256(rem + value.to_bytes(8, "little")).digest()
    return rem.ljust(64, b"\0")


def test_calls_on_a_running_rec_are_refused() -> None:
    """(a) While REC 0 runs (heartbeat advancing before and after every round of calls): REC_ENTER,
    REC_DESTROY and RTT_SET_RIPAS of it give RMI_ERROR_REC, REALM_DESTROY RMI_ERROR_REALM,
    RTT_DESTROY and RTT_FOLD of its live level-3 table (RMI_ERROR_RTT, 3), UNDELEGATE of the REC
    RMI_ERROR_INPUT, READ_ENTRY of each page (ASSIGNED, RAM) at its one PA; the refused
    REC_ENTER writes nothing into its run page (an enter half full of junk included). The entry ends with
    the guest's STOPPED message; its pages hold its count, REM 1 is the chain of 1..count, the
    REC is idle and the invariants hold."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g, board = build(m, toucher(1, rsi=True), 1)
        pas = [g.page_pa(page_ipa(0, n)) for n in range(NPAGES)]
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, (g.rec_pa(0),), runs, board, rounds=6)
        result = run_cpus(m, dispatch_a, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        run, refused = result.results[0], result.results[1]
        assert (run["x0"], run["message"]) == (SUCCESS, STOPPED), run
        assert refused["seen"] == {
            "REC_ENTER": {REC}, "REC_DESTROY": {REC}, "RTT_SET_RIPAS": {REC}, "REALM_DESTROY": {REALM},
            "RTT_DESTROY": {rtt(3)}, "RTT_FOLD": {rtt(3)}, "UNDELEGATE": {INPUT}, "READ_ENTRY": {SUCCESS},
        }, refused["seen"]
        assert {(e[1], e[2], e[4], s2tt.output_address(e[3], 3)) for e in refused["entries"]} \
            == {(3, ASSIGNED, RIPAS_RAM, pa) for pa in pas}, refused["entries"]
        assert len(refused["beats"]) == 6 and refused["run_page_kept"] == {True}, refused
        count = g.gpr(20)
        assert count >= refused["beats"][-1]
        assert [int.from_bytes(g.peek(page_ipa(0, n), 8), "little") for n in range(NPAGES)] == [count] * NPAGES
        assert g.rd.measurement(1) == chain(list(range(1, count + 1)))
        finish(m, g, runs)


def dispatch_a(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU target (a): CPU 0 runs REC 0, CPU 1 makes the calls."""
    return run_until_stopped(cpu, plan) if cpu.id == 0 else refuse_while_running(cpu, plan)


# -- (b) DATA_DESTROY of a page the guest uses ----------------------------------------------------

B_RECS = 3
ROUND, DESTROYING, DONE = 0, 1, 2
"""Host flags (b): the round CPU 0 runs (REC index + 1), the round whose DATA_DESTROY began,
the round CPU 0 finished."""


def b_victims(seed: int) -> list[tuple[int, int]]:
    """(page index, heartbeat threshold) of each round's DATA_DESTROY."""
    rng = random.Random(seed)
    return [(rng.randrange(NPAGES), rng.randrange(1, 12)) for _ in range(B_RECS)]


def abort_rounds(cpu: Any, plan: Plan) -> list[dict[str, Any]]:
    """CPU 0 (b): enter REC r once per round, then once more; both exits, the heartbeat at the
    exit and whether CPU 1 had begun its DATA_DESTROY by then."""
    m = cpu.machine
    out = []
    for r in range(B_RECS):
        set_flag(m, plan, ROUND, r + 1)
        first = enter(cpu, plan.recs[r], plan.runs[0])
        beat = heartbeat(m, plan, r)
        began = flag(m, plan, DESTROYING) == r + 1
        again = enter(cpu, plan.recs[r], plan.runs[0])
        out.append({"first": first, "again": again, "beat": beat, "began": began,
                    "beat_again": heartbeat(m, plan, r)})
        set_flag(m, plan, DONE, r + 1)
    return out


def destroy_rounds(cpu: Any, plan: Plan) -> list[dict[str, Any]]:
    """CPU 1 (b): in round r, once REC r's heartbeat reaches the threshold, DATA_DESTROY its
    victim page; READ_ENTRY of that page before and after; the heartbeats around the call."""
    m = cpu.machine
    out = []
    for r, (victim, threshold) in enumerate(b_victims(plan.seed)):
        wait_until(cpu, lambda: flag(m, plan, ROUND) == r + 1)
        if flag(m, plan, ABANDON):
            break
        ipa = page_ipa(r, victim)
        before = cpu.smc(F.RMI_RTT_READ_ENTRY, plan.rd, ipa, 3)[:5]
        wait_until(cpu, lambda: heartbeat(m, plan, r) >= threshold)
        beat_before = heartbeat(m, plan, r)
        set_flag(m, plan, DESTROYING, r + 1)
        destroyed = cpu.smc(F.RMI_DATA_DESTROY, plan.rd, ipa)[:3]
        beat_after = heartbeat(m, plan, r)
        after = cpu.smc(F.RMI_RTT_READ_ENTRY, plan.rd, ipa, 3)[:5]
        out.append({"before": before, "destroyed": destroyed, "after": after, "beat_before": beat_before,
                    "beat_after": beat_after})
        if not wait_for_exit(cpu, plan, lambda: flag(m, plan, DONE) == r + 1, r, beat_after):
            break
    return out


def dispatch_b(cpu: Any, plan: Plan) -> list[dict[str, Any]]:
    """CPU target (b)."""
    return abort_rounds(cpu, plan) if cpu.id == 0 else destroy_rounds(cpu, plan)


@pytest.mark.parametrize(("seed", "rsi"), [(1, True), (2, False)])
def test_data_destroy_of_a_page_the_running_guest_uses(seed: int, rsi: bool) -> None:
    """(b) Each round's DATA_DESTROY succeeds with the page's PA while REC r runs; REC r's entry
    ends with a data abort exit (translation fault, level 3) at that IPA, taken after the
    command began, with the guest at most one iteration past its heartbeat when the command
    returned; entering again aborts at once at the same IPA. READ_ENTRY: ASSIGNED RAM before,
    UNASSIGNED DESTROYED after. The destroyed granule is DELEGATED and zero; the REC's other
    pages hold what its last (possibly partial) iteration stored; the guest reported nothing
    (no wrong value, no access that succeeded after IPA_STATE_GET said DESTROYED). With or
    without RSI calls in the loop, a missing TLB invalidation would let it go on using the wiped
    page: the CPU keeps its cached translations across the calls, as across entries (hw/tlb.py)."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g, board = build(m, toucher(B_RECS, rsi=rsi), B_RECS)
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, tuple(g.rec_pa(n) for n in range(B_RECS)), runs, board, seed=seed)
        result = run_cpus(m, dispatch_b, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        table = m.granule_table(0)
        assert len(result.results[1]) == B_RECS and not flag(m, plan, ABANDON), result.results
        for r, ((victim, _), run, destroy) in enumerate(zip(b_victims(seed), result.results[0], result.results[1])):
            ipa = page_ipa(r, victim)
            state = (r, run, destroy)
            assert destroy["before"][:3] == (SUCCESS, 3, ASSIGNED) and destroy["before"][4] == RIPAS_RAM, state
            pa = s2tt.output_address(destroy["before"][3], 3)
            assert destroy["destroyed"][:2] == (SUCCESS, pa), state
            assert destroy["after"] == (SUCCESS, 3, UNASSIGNED, 0, RIPAS_DESTROYED), state
            abort = {"exit_reason": EXIT_SYNC, "esr": EC_DABT_LOW << 26 | 0x4 | 3, "hpfar": ipa >> 8}
            for x0, ex in (run["first"], run["again"]):
                assert x0 == SUCCESS and {k: ex[k] for k in abort} == abort, (state, message(ex))
            assert run["began"] and run["beat_again"] == run["beat"], state
            assert destroy["beat_before"] <= run["beat"] <= destroy["beat_after"] + 1, state
            count = g.gpr(20, r)
            assert (count, g.gpr(26, r)) == (run["beat"], ipa), state
            values = [int.from_bytes(g.peek(page_ipa(r, n), 8), "little") for n in range(NPAGES) if n != victim]
            assert values == [count + 1] * victim + [count] * (NPAGES - 1 - victim), (state, values)
            assert table.state((pa - m.dram_base) // G) == GranuleState.DELEGATED
            assert bytes(m.memory.buf[pa - m.dram_base:pa - m.dram_base + G]) == bytes(G), state
            assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
            g.alloc.free(pa)
        finish(m, g, runs)


# -- (c) RTT_UNMAP_UNPROTECTED of a page the guest reads -----------------------------------------

C_ROUNDS = 8
UNMAPPING, REMAPPED = 1, 3
"""Host flags (c), besides ROUND and DONE: the round whose UNMAP began, the round whose page is
mapped again."""

WINDOW_READER = f"""
    mov x21, ={BOARD}
    mov x24, ={WINDOW}
    mov x25, ={MAGIC}
loop:
    ldr x1, [x24]
    cmp x1, x25
    b.ne bad_value
    add x20, x20, #1
    str x20, [x21]
    ldr x1, [x21, #{STOP_FLAG}]
    cbz x1, loop
    mov x3, #{STOPPED}
    b message
bad_value:
    mov x3, #{BAD_VALUE}
{MESSAGE}"""
"""(c): read MAGIC from the window (BAD_VALUE otherwise), publish the count, until STOP."""


def c_thresholds(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1, 20) for _ in range(C_ROUNDS)]


def read_rounds(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 0 (c): enter REC 0 once per round (each ends when the window is unmapped); then STOP
    and a last entry."""
    m = cpu.machine
    out = []
    for r in range(C_ROUNDS):
        set_flag(m, plan, ROUND, r + 1)
        x0, ex = enter(cpu, plan.recs[0], plan.runs[0])
        out.append({"x0": x0, "exit": ex, "beat": heartbeat(m, plan, 0), "began": flag(m, plan, UNMAPPING) == r + 1})
        set_flag(m, plan, DONE, r + 1)
        wait_until(cpu, lambda: flag(m, plan, REMAPPED) == r + 1 or flag(m, plan, ABANDON))
    store(m, plan.board + STOP_FLAG, 1)
    x0, ex = enter(cpu, plan.recs[0], plan.runs[0])
    return {"rounds": out, "last": (x0, message(ex))}


def unmap_rounds(cpu: Any, plan: Plan) -> list[dict[str, Any]]:
    """CPU 1 (c): once the heartbeat has moved on by the round's threshold, UNMAP the window,
    then fill the NS page with GARBAGE; once CPU 0 has its exit, MAGIC back and MAP again."""
    m = cpu.machine
    out = []
    beat = 0
    for r, threshold in enumerate(c_thresholds(plan.seed)):
        wait_until(cpu, lambda: flag(m, plan, ROUND) == r + 1 and heartbeat(m, plan, 0) >= beat + threshold)
        beat_before = heartbeat(m, plan, 0)
        set_flag(m, plan, UNMAPPING, r + 1)
        unmapped = cpu.smc(F.RMI_RTT_UNMAP_UNPROTECTED, plan.rd, WINDOW, 3)[0]
        m.ns_write(plan.window, GARBAGE.to_bytes(8, "little") * (G // 8))
        beat = heartbeat(m, plan, 0)
        if not wait_for_exit(cpu, plan, lambda: flag(m, plan, DONE) == r + 1, 0, beat):
            out.append({"unmapped": unmapped, "abandoned": True})
            break
        m.ns_write(plan.window, MAGIC.to_bytes(8, "little") * (G // 8))
        mapped = cpu.smc(F.RMI_RTT_MAP_UNPROTECTED, plan.rd, WINDOW, 3, plan.window | NS_MAP_ATTRS)[0]
        out.append({"unmapped": unmapped, "mapped": mapped, "beat_before": beat_before, "beat_after": beat})
        set_flag(m, plan, REMAPPED, r + 1)
    return out


def dispatch_c(cpu: Any, plan: Plan) -> Any:
    """CPU target (c)."""
    return read_rounds(cpu, plan) if cpu.id == 0 else unmap_rounds(cpu, plan)


def test_unmap_unprotected_of_a_page_the_running_guest_reads() -> None:
    """(c) Every round: UNMAP_UNPROTECTED and the later MAP succeed; the entry ends with an
    emulatable data abort exit (ISV, a read, translation fault level 3) at WINDOW, taken after
    the UNMAP began and at most one iteration after it returned; the guest never read the
    GARBAGE written after the UNMAP (no BAD_VALUE), and the last entry ends STOPPED."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g = Guest.build(m, WINDOW_READER, cpu=2)
        board = g.map_unprotected(BOARD)
        window = g.map_unprotected(WINDOW, MAGIC.to_bytes(8, "little") * (G // 8))
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, (g.rec_pa(0),), runs, board, window=window, seed=3)
        result = run_cpus(m, dispatch_c, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        reads, unmaps = result.results[0], result.results[1]
        assert len(unmaps) == C_ROUNDS and not flag(m, plan, ABANDON), unmaps
        for r, (run, unmap) in enumerate(zip(reads["rounds"], unmaps)):
            state = (r, run, unmap)
            ex = run["exit"]
            assert (unmap["unmapped"], unmap["mapped"], run["x0"]) == (SUCCESS, SUCCESS, SUCCESS), state
            assert (ex["exit_reason"], ex["hpfar"], ex["far"]) == (EXIT_SYNC, WINDOW >> 8, 0), state
            assert ex["esr"] == EC_DABT_LOW << 26 | ESR_ISV | 3 << 22 | 1 << 15 | 0x4 | 3, (state, hex(ex["esr"]))
            assert run["began"] and unmap["beat_before"] <= run["beat"] <= unmap["beat_after"] + 1, state
        assert reads["last"] == (SUCCESS, STOPPED), reads["last"]
        finish(m, g, runs)


# -- (d) RTT_SET_RIPAS(EMPTY) for one REC of a page another REC uses -----------------------------

D_ROUNDS = 5
SETTING, SEA_SEEN, RAM_AGAIN = 1, 3, 4
"""Host flags (d), besides ROUND: the round whose RTT_SET_RIPAS(EMPTY) began, the round whose
SEA exit CPU 0 has, the round whose page is RAM again."""
D_PAGE = PAGES
SEA_FAR, SEA_ESR = 0x100, 0x108
"""Board offsets where REC 0's vector writes FAR and ESR of the SEA it took."""
SEA_RETRY_VECTOR = f"""    .align 2048
vectors:
    .zero 0x200
    mrs x1, far                         // an SEA: report it, then retry the access
    str x1, [x21, #{SEA_FAR}]
    mrs x1, esr
    str x1, [x21, #{SEA_ESR}]
    mov x3, #{SEA}
    mov x2, ={MMIO}
    str x3, [x2]
    eret
"""
"""The vectors of (d) and (g): an SEA is reported as a message with its FAR and ESR on the board,
and the access is retried on the next entry."""

RIPAS_FLIPPER = f"""
start:
    mrs x19, mpidr
    and x19, x19, #0xff
    cbnz x19, flipper
    cbnz x28, toucher
    mov x28, #1
    mov x0, =PSCI_CPU_ON
    mov x1, #1
    adr x2, start
    mov x3, #0
    smc #0
    cbnz x0, bad_rsi
toucher:                                // REC 0: count in the page, publish the count
    adr x1, vectors
    msr vbar, x1
    mov x21, ={BOARD}
    mov x26, ={D_PAGE}
loop:
    ldr x1, [x26]
    cmp x1, x20
    b.ne bad_value
    add x20, x20, #1
    str x20, [x26]
    str x20, [x21]
    ldr x1, [x21, #{STOP_FLAG}]
    cbz x1, loop
    mov x3, #{STOPPED}
    b message
flipper:                                // REC 1: the page EMPTY, RAM, EMPTY, ...
    mov x3, #{RIPAS_EMPTY}
    bl set_ripas
    mov x3, #{RIPAS_RAM}
    bl set_ripas
    b flipper
set_ripas:
    mov x17, lr
    mov x0, =RSI_IPA_STATE_SET
    mov x1, ={D_PAGE}
    add x2, x1, #4096
    mov x4, #0
    smc #0
    cbnz x0, bad_rsi
    cbnz x2, bad_rsi                    // REJECT
    mov x2, ={D_PAGE + G}
    cmp x1, x2
    b.ne bad_rsi
    br x17
bad_value:
    mov x3, #{BAD_VALUE}
    b message
bad_rsi:
    mov x3, #{BAD_RSI}
{MESSAGE}{SEA_RETRY_VECTOR}"""


def d_thresholds(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(1, 20) for _ in range(D_ROUNDS)]


def sea_message_rounds(cpu: Any, plan: Plan, rounds: int, began: int, seen: int, undone: int) -> dict[str, Any]:
    """CPU 0 of (d): enter REC 0 once per round, completing the last SEA message
    (EMUL_MMIO; the vector's eret retries the access), noting whether the other CPU's command
    had begun (flag ``began`` at the round) and the SEA's FAR and ESR; then set flag ``seen``
    and wait for the other CPU to undo its command (flag ``undone``); at the end STOP and a
    last entry."""
    m = cpu.machine
    out = []
    for r in range(rounds):
        set_flag(m, plan, ROUND, r + 1)
        x0, ex = enter_with(cpu, plan.recs[0], plan.runs[0], EMUL_MMIO if r else 0)
        out.append({"x0": x0, "message": message(ex), "beat": heartbeat(m, plan, 0),
                    "began": flag(m, plan, began) == r + 1,
                    "far": load(m, plan.board + SEA_FAR), "esr": load(m, plan.board + SEA_ESR)})
        set_flag(m, plan, seen, r + 1)
        wait_until(cpu, lambda: flag(m, plan, undone) == r + 1 or flag(m, plan, ABANDON))
    store(m, plan.board + STOP_FLAG, 1)
    x0, ex = enter_with(cpu, plan.recs[0], plan.runs[0], EMUL_MMIO)
    return {"rounds": out, "last": (x0, message(ex))}


def touch_rounds(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 0 (d): REC 0's rounds against REC 1's RIPAS changes."""
    return sea_message_rounds(cpu, plan, D_ROUNDS, SETTING, SEA_SEEN, RAM_AGAIN)


def ripas_rounds(cpu: Any, plan: Plan) -> list[dict[str, Any]]:
    """CPU 1 (d): REC 1's EMPTY request applied with RTT_SET_RIPAS once REC 0's heartbeat has
    moved on by the round's threshold; once CPU 0 has its SEA exit, REC 1 entered again (its
    EMPTY request completes, it asks for RAM) and that applied too."""
    m, rd, rec1 = cpu.machine, plan.rd, plan.recs[1]
    out = []
    beat = 0
    for r, threshold in enumerate(d_thresholds(plan.seed)):
        x0, empty = enter(cpu, rec1, plan.runs[1])
        request = (x0, empty["exit_reason"], empty["ripas_base"], empty["ripas_top"], empty["ripas_value"])
        wait_until(cpu, lambda: flag(m, plan, ROUND) == r + 1 and heartbeat(m, plan, 0) >= beat + threshold)
        beat_before = heartbeat(m, plan, 0)
        set_flag(m, plan, SETTING, r + 1)
        set_empty = cpu.smc(F.RMI_RTT_SET_RIPAS, rd, rec1, D_PAGE, D_PAGE + G)[:2]
        beat = heartbeat(m, plan, 0)
        entry_empty = cpu.smc(F.RMI_RTT_READ_ENTRY, rd, D_PAGE, 3)[:5]
        if not wait_for_exit(cpu, plan, lambda: flag(m, plan, SEA_SEEN) == r + 1, 0, beat):
            out.append({"set_empty": set_empty, "abandoned": True})
            break
        x0, ram = enter(cpu, rec1, plan.runs[1])
        request_ram = (x0, ram["exit_reason"], ram["ripas_base"], ram["ripas_top"], ram["ripas_value"])
        set_ram = cpu.smc(F.RMI_RTT_SET_RIPAS, rd, rec1, D_PAGE, D_PAGE + G)[:2]
        entry_ram = cpu.smc(F.RMI_RTT_READ_ENTRY, rd, D_PAGE, 3)[:5]
        out.append({"request": request, "set_empty": set_empty, "entry_empty": entry_empty,
                    "request_ram": request_ram, "set_ram": set_ram, "entry_ram": entry_ram,
                    "beat_before": beat_before, "beat_after": beat})
        set_flag(m, plan, RAM_AGAIN, r + 1)
    return out


def dispatch_d(cpu: Any, plan: Plan) -> Any:
    """CPU target (d)."""
    return touch_rounds(cpu, plan) if cpu.id == 0 else ripas_rounds(cpu, plan)


def test_set_ripas_empty_for_one_rec_of_a_page_another_rec_uses() -> None:
    """(d) Every round: REC 1's requests (EMPTY, then RAM, of D_PAGE) reach the host and
    RTT_SET_RIPAS applies each ((SUCCESS, top); READ_ENTRY: ASSIGNED EMPTY, then ASSIGNED RAM at
    the same PA); REC 0's entry ends with its SEA message, the SEA a data abort (EC 0x25, DFSC
    0x10) at D_PAGE, taken after RTT_SET_RIPAS began and at most one iteration after it
    returned; REC 0 then goes on with its data intact (no BAD_VALUE) and stops when asked."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g = Guest.build(m, RIPAS_FLIPPER, num_recs=2, cpu=2)
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["gprs"][1]) == (SUCCESS, EXIT_PSCI, 1), (x0, ex)
        assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), g.rec_pa(1), SUCCESS)[0] == SUCCESS
        pa = g.fault_in(D_PAGE)
        board = g.map_unprotected(BOARD)
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, (g.rec_pa(0), g.rec_pa(1)), runs, board, seed=4)
        result = run_cpus(m, dispatch_d, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        touches, flips = result.results[0], result.results[1]
        assert len(flips) == D_ROUNDS and not flag(m, plan, ABANDON), flips
        for r, (run, flip) in enumerate(zip(touches["rounds"], flips)):
            state = (r, run, flip)
            assert flip["request"] == (SUCCESS, EXIT_RIPAS, D_PAGE, D_PAGE + G, RIPAS_EMPTY), state
            assert flip["request_ram"] == (SUCCESS, EXIT_RIPAS, D_PAGE, D_PAGE + G, RIPAS_RAM), state
            assert flip["set_empty"] == flip["set_ram"] == (SUCCESS, D_PAGE + G), state
            for entry, ripas in ((flip["entry_empty"], RIPAS_EMPTY), (flip["entry_ram"], RIPAS_RAM)):
                assert entry[:3] == (SUCCESS, 3, ASSIGNED) and entry[4] == ripas, state
                assert s2tt.output_address(entry[3], 3) == pa, state
            assert (run["x0"], run["message"], run["far"]) == (SUCCESS, SEA, D_PAGE), state
            assert (run["esr"] >> 26, run["esr"] & 0x3F) == (0x25, 0x10), (state, hex(run["esr"]))
            assert run["began"] and flip["beat_before"] <= run["beat"] <= flip["beat_after"] + 1, state
        assert touches["last"] == (SUCCESS, STOPPED), touches["last"]
        assert int.from_bytes(g.peek(D_PAGE, 8), "little") == g.gpr(20)
        finish(m, g, runs)


# -- (e) RTT_FOLD and RTT_CREATE of the table that maps the guest's pages ------------------------

E_ROUNDS = 6
BLOCK = CODE + (2 << 20)
"""(e): a 2 MiB block of RAM, all 512 pages assigned to one contiguous, aligned run of DATA
granules, so that its level-3 table folds."""
E_PAGES = (0, 1, 255, 511)

BLOCK_TOUCHER = f"""
    adr x1, vectors
    msr vbar, x1
    mov x21, ={BOARD}
loop:
    add x18, x20, #1
{"".join(f'''
    mov x26, ={BLOCK + n * G}
    ldr x1, [x26]
    cmp x1, x20
    b.ne bad_value
    str x18, [x26]''' for n in E_PAGES)}
    mov x20, x18
    str x20, [x21]
    ldr x1, [x21, #{STOP_FLAG}]
    cbz x1, loop
    mov x3, #{STOPPED}
    b message
bad_value:
    mov x3, #{BAD_VALUE}
{MESSAGE}    .align 2048
vectors:
    .zero 0x200
    mrs x1, far
    str x1, [x21, #{SEA_FAR}]
    mov x3, #{SEA}
    b message
"""
"""(e): count in pages E_PAGES of the block (BAD_VALUE on a wrong value, SEA on any exception),
publish the count, until STOP."""


def fold_rounds(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 1 (e): after each new heartbeat, RTT_FOLD the block's level-3 table and RTT_CREATE it
    again from the same granule (kept DELEGATED); READ_ENTRY at level 2 between and at level 3
    after; then STOP."""
    m, rd = cpu.machine, plan.rd
    seen: dict[str, set[tuple[int, ...]]] = {}
    try:
        for _ in range(E_ROUNDS):
            beat = heartbeat(m, plan, 0)
            wait_until(cpu, lambda: heartbeat(m, plan, 0) > beat or flag(m, plan, ABANDON))
            folded = cpu.smc(F.RMI_RTT_FOLD, rd, BLOCK, 3)[:2]
            seen.setdefault("fold", set()).add(folded)
            entry = cpu.smc(F.RMI_RTT_READ_ENTRY, rd, BLOCK, 2)[:5]
            seen.setdefault("block", set()).add(entry)
            seen.setdefault("create", set()).add(cpu.smc(F.RMI_RTT_CREATE, rd, folded[1], BLOCK, 3)[:1])
            for n in E_PAGES:
                seen.setdefault("page", set()).add((n, *cpu.smc(F.RMI_RTT_READ_ENTRY, rd, BLOCK + n * G, 3)[:5]))
            beat = heartbeat(m, plan, 0)
            wait_until(cpu, lambda: heartbeat(m, plan, 0) > beat or flag(m, plan, ABANDON))
    finally:
        store(m, plan.board + STOP_FLAG, 1)
    return seen


def dispatch_e(cpu: Any, plan: Plan) -> Any:
    """CPU target (e): CPU 0 runs REC 0 until STOP, CPU 1 folds and unfolds."""
    if cpu.id == 1:
        return fold_rounds(cpu, plan)
    try:
        return run_until_stopped(cpu, plan)
    finally:
        set_flag(cpu.machine, plan, ABANDON, 1)     # CPU 1 waits for no more heartbeats


def test_fold_and_unfold_of_the_table_the_running_guest_uses() -> None:
    """(e) RTT_FOLD of the block's level-3 table and RTT_CREATE of it again, E_ROUNDS times while
    REC 0 counts in four of its pages: every FOLD returns (SUCCESS, the table), READ_ENTRY at
    level 2 shows the ASSIGNED RAM block at the run's base, every CREATE succeeds and READ_ENTRY
    at level 3 shows each page at its own granule; the guest never reads a wrong value nor
    takes an exception (the fold's zeroed table met by a walk would be an SEA), and stops when
    asked with its count in every page."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g = Guest.build(m, BLOCK_TOUCHER, cpu=2)
        board = g.map_unprotected(BOARD)
        run = g.alloc.alloc(512, align=512)
        x0 = g.smc(F.RMI_GRANULE_DELEGATE, run)[0]
        assert x0 == SUCCESS
        table = g.alloc.alloc()
        assert g.smc(F.RMI_GRANULE_DELEGATE, table)[0] == SUCCESS
        assert g.smc(F.RMI_RTT_CREATE, g.realm.rd, table, BLOCK, 3)[0] == SUCCESS
        for n in range(512):
            if n:
                assert g.smc(F.RMI_GRANULE_DELEGATE, run + n * G)[0] == SUCCESS
            assert g.smc(F.RMI_DATA_CREATE_UNKNOWN, g.realm.rd, run + n * G, BLOCK + n * G)[0] == SUCCESS, n
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, (g.rec_pa(0),), runs, board)
        result = run_cpus(m, dispatch_e, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        stopped, seen = result.results[0], result.results[1]
        assert (stopped["x0"], stopped["message"]) == (SUCCESS, STOPPED), (stopped, load(m, board + SEA_FAR))
        assert len(seen["fold"]) == 1 and next(iter(seen["fold"]))[0] == SUCCESS, seen
        assert {e[:3] + e[4:] for e in seen["block"]} == {(SUCCESS, 2, ASSIGNED, RIPAS_RAM)}, seen
        assert {s2tt.output_address(e[3], 2) for e in seen["block"]} == {run}, seen
        assert seen["create"] == {(SUCCESS,)}, seen
        assert {(n, *e[:3], e[4], s2tt.output_address(e[3], 3)) for n, *e in seen["page"]} \
            == {(n, SUCCESS, 3, ASSIGNED, RIPAS_RAM, run + n * G) for n in E_PAGES}, seen
        count = g.gpr(20)
        assert count > E_ROUNDS
        assert [int.from_bytes(g.peek(BLOCK + n * G, 8), "little") for n in E_PAGES] == [count] * len(E_PAGES)
        finish(m, g, runs)


# -- (f) two RECs changing the RIPAS of the same pages, under the host's run loop -----------------

F_ROUNDS = 12
F_PAGES = 4

SAME_PAGES_FLIPPER = f"""
start:
    mrs x19, mpidr
    and x19, x19, #0xff
    adr x1, vectors
    msr vbar, x1
    cbnz x19, work
    mov x0, =PSCI_CPU_ON
    mov x1, #1
    adr x2, start
    mov x3, #0
    smc #0
work:
    mov x20, #0
round:
    mov x23, #{RIPAS_EMPTY}
    bl change
    bl touch
    mov x23, #{RIPAS_RAM}
    bl change
    bl touch
    add x20, x20, #1
    cmp x20, #{F_ROUNDS}
    b.lo round
    mov x0, =PSCI_CPU_OFF
    smc #0
    b .
change:                                 // [PAGES, PAGES + F_PAGES pages) to RIPAS x23 (A5.4's loop)
    mov x24, ={PAGES}
again:
    mov x0, =RSI_IPA_STATE_SET
    mov x1, x24
    mov x2, ={PAGES + F_PAGES * G}
    mov x3, x23
    mov x4, #0                          // RSI_NO_CHANGE_DESTROYED
    smc #0
    cbnz x0, fail
    cbnz x2, stuck                      // REJECT
    cmp x1, x24
    b.eq stuck                          // no progress: a DESTROYED page stops the change
    mov x24, x1
    mov x2, ={PAGES + F_PAGES * G}
    cmp x24, x2
    b.lo again
    ret
stuck:
    add x27, x27, #1
    ret
touch:                                  // store and load each page (an SEA while it is EMPTY)
    mov x26, ={PAGES}
    mov x22, #{F_PAGES}
tloop:
    str x20, [x26]
    ldr x1, [x26]
    add x26, x26, #4096
    sub x22, x22, #1
    cbnz x22, tloop
    ret
fail:
    udf
    .align 2048
vectors:
    .zero 0x200
    mrs x1, esr                         // an SEA at an EMPTY page: skip the access
    lsr x1, x1, #26
    cmp x1, #0x25
    b.ne .                              // anything else: spin until the run is stopped
    add x28, x28, #1
    mrs x1, elr
    add x1, x1, #8
    msr elr, x1
    eret
"""
"""(f): RECs 0 and 1 both change [PAGES, PAGES + F_PAGES pages) to EMPTY, touch them, to RAM,
touch them, F_ROUNDS times, then CPU_OFF. A change that a DESTROYED page stops (REJECT, or
ACCEPT without progress) is given up and counted in x27."""


def test_two_recs_change_the_ripas_of_the_same_pages() -> None:
    """(f) docs/deviations.md's row "two vCPUs of one realm changing the RIPAS of the same pages
    at once": the host's run loop on CPUs 0..2 runs two RECs that flip the RIPAS of the same
    pages. Every run ends with the realm DONE and each vCPU either off after all its rounds or
    failed by the one error the row allows (a data abort at one of the pages, whose RIPAS is
    DESTROYED); no CPU fails, the invariants hold, a page is left DESTROYED (assigned or not: a
    fault-in that raced the DATA_DESTROY backs it) only if a vCPU failed, and the teardown gives
    every granule back."""
    with Machine.create("host", cpus=4) as m:
        cpu = m.cpu(3)
        alloc = NsAllocator(m, 3)
        image = assemble(PRELUDE + "\n" + SAME_PAGES_FLIPPER, base=CODE)
        realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=CODE, ram_size=2 << 20, num_recs=2,
                                                   image=image))
        queue = RunQueue(m)
        slot = queue.add_realm(alloc, realm)
        queue.view.store_u64(OFF_ARRIVED, 0)
        result = run_cpus(m, run_loop, cpus=(0, 1, 2), args=(LoopPlan(gather=3),), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        status = realm_status(queue, slot)
        errors = [e for loop in result.results.values() for e in loop.errors]
        allowed = {f"realm slot {slot} REC {rec}: data abort at IPA {PAGES + n * G:#x}, whose RIPAS is DESTROYED: "
                   "no page can be given there" for rec in (0, 1) for n in range(F_PAGES)}
        assert set(errors) <= allowed, errors
        assert status.state == "DONE" and status.end in ("ALL_OFF", "ERROR"), status
        assert status.vcpu_ends.count("ERROR") == len(errors) and status.end == ("ERROR" if errors else "ALL_OFF"), \
            (status, errors)
        for n in range(F_PAGES):
            x0, level, state, _, ripas = cpu.smc(F.RMI_RTT_READ_ENTRY, realm.rd, PAGES + n * G, 3)[:5]
            assert x0 == SUCCESS and (ripas != RIPAS_DESTROYED or errors), (n, state, ripas, errors)
        cpu.close()
        tear_down_checked(m, LoopRun(realm, alloc, queue, slot, status))


# -- (g) GRANULE_DELEGATE of the NS page behind an unprotected mapping the guest uses -------------

G_ROUNDS = 6
DELEGATING, UNDELEGATED = 1, 3
"""Host flags (g), besides ROUND and DONE: the round whose DELEGATE began, the round whose page
is NS again."""

WINDOW_WRITER = f"""
    adr x1, vectors
    msr vbar, x1
    mov x21, ={BOARD}
    mov x24, ={WINDOW}
    mov x25, ={MAGIC}
loop:
    ldr x1, [x24]
    cmp x1, x25
    b.ne bad_value
    add x20, x20, #1
    str x20, [x24, #8]
    str x20, [x21]
    ldr x1, [x21, #{STOP_FLAG}]
    cbz x1, loop
    mov x3, #{STOPPED}
    b message
bad_value:
    mov x3, #{BAD_VALUE}
{MESSAGE}{SEA_RETRY_VECTOR}"""
"""(g): read MAGIC from the window, store the count into it (offset 8) and into the board."""


def gpf_rounds(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 0 (g): REC 0's rounds against the delegations of its window's NS page. Each round
    enters REC 0 (completing the last SEA message with EMUL_MMIO; the vector's eret retries the
    access), noting the exit that ends the entry (the GPF), whether DELEGATE had begun and the
    heartbeat; then enters with INJECT_SEA, noting the SEA message with its FAR and ESR; then
    sets DONE and waits for the page to be NS again (UNDELEGATED). At the end STOP and a last
    entry."""
    m = cpu.machine
    rec, run = plan.recs[0], plan.runs[0]
    out = []
    for r in range(G_ROUNDS):
        set_flag(m, plan, ROUND, r + 1)
        x0, ex = enter_with(cpu, rec, run, EMUL_MMIO if r else 0)
        gpf = {"x0": x0, "exit": (ex["exit_reason"], ex["esr"], ex["far"], ex["hpfar"], ex["gprs"]),
               "beat": heartbeat(m, plan, 0), "began": flag(m, plan, DELEGATING) == r + 1}
        x0, ex = enter_with(cpu, rec, run, INJECT_SEA)
        out.append({**gpf, "sea_x0": x0, "message": message(ex), "far": load(m, plan.board + SEA_FAR),
                    "esr": load(m, plan.board + SEA_ESR)})
        set_flag(m, plan, DONE, r + 1)
        wait_until(cpu, lambda: flag(m, plan, UNDELEGATED) == r + 1 or flag(m, plan, ABANDON))
    store(m, plan.board + STOP_FLAG, 1)
    x0, ex = enter_with(cpu, rec, run, EMUL_MMIO)
    return {"rounds": out, "last": (x0, message(ex))}


def delegate_rounds(cpu: Any, plan: Plan) -> list[dict[str, Any]]:
    """CPU 1 (g): once the heartbeat has moved on by the round's threshold, DELEGATE the window's
    NS page (still mapped; DELEGATE zeroes it); read the count in it (white-box: the host
    cannot) right after and once CPU 0 has the realm's SEA message; then UNDELEGATE it and write
    MAGIC back."""
    m = cpu.machine
    out = []
    beat = 0
    raw = plan.window - m.dram_base + 8
    for r, threshold in enumerate(c_thresholds(plan.seed)[:G_ROUNDS]):
        wait_until(cpu, lambda: flag(m, plan, ROUND) == r + 1 and heartbeat(m, plan, 0) >= beat + threshold)
        beat_before = heartbeat(m, plan, 0)
        set_flag(m, plan, DELEGATING, r + 1)
        delegated = cpu.smc(F.RMI_GRANULE_DELEGATE, plan.window)[0]
        written_then = m.memory.view.load_u64(raw)
        beat = heartbeat(m, plan, 0)
        if not wait_for_exit(cpu, plan, lambda: flag(m, plan, DONE) == r + 1, 0, beat):
            out.append({"delegated": delegated, "abandoned": True})
            break
        written_later = m.memory.view.load_u64(raw)
        undelegated = cpu.smc(F.RMI_GRANULE_UNDELEGATE, plan.window)[0]
        m.ns_write(plan.window, MAGIC.to_bytes(8, "little") * (G // 8))
        out.append({"delegated": delegated, "undelegated": undelegated, "beat_before": beat_before,
                    "beat_after": beat, "written_then": written_then, "written_later": written_later})
        set_flag(m, plan, UNDELEGATED, r + 1)
    return out


def dispatch_g(cpu: Any, plan: Plan) -> Any:
    """CPU target (g)."""
    return gpf_rounds(cpu, plan) if cpu.id == 0 else delegate_rounds(cpu, plan)


def test_delegate_of_the_ns_page_a_running_guest_uses() -> None:
    """(g) Every round: DELEGATE of the window's NS page succeeds while the unprotected mapping
    stays; REC 0's next access faults on the granule protection check, after DELEGATE began and
    at most one iteration after it returned: a REC exit due to Data Abort at WINDOW (EC 0x24,
    DFSC 0x28 and hpfar only: no emulatable abort); the entry with INJECT_SEA makes the realm
    take an SEA at WINDOW (EC 0x25, DFSC 0x10), which its vector reports; the guest stored
    nothing into the page once it was delegated (DELEGATE zeroes it; its count there is still
    zero right after DELEGATE returned and when the SEA message is back); UNDELEGATE succeeds
    and the guest goes on reading MAGIC, and stops when asked. (The realm used to take the SEA
    at once, with no REC exit.)"""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g = Guest.build(m, WINDOW_WRITER, cpu=2)
        board = g.map_unprotected(BOARD)
        window = g.map_unprotected(WINDOW, MAGIC.to_bytes(8, "little") * (G // 8))
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, (g.rec_pa(0),), runs, board, window=window, seed=5)
        result = run_cpus(m, dispatch_g, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        seas, delegations = result.results[0], result.results[1]
        assert len(delegations) == G_ROUNDS and not flag(m, plan, ABANDON), delegations
        for r, (run, d) in enumerate(zip(seas["rounds"], delegations)):
            state = (r, run, d)
            assert (d["delegated"], d["undelegated"], run["x0"], run["sea_x0"]) == (SUCCESS,) * 4, state
            assert run["exit"] == (EXIT_SYNC, EC_DABT_LOW << 26 | 0x28, 0, WINDOW >> 8, (0,) * 31), state
            assert (run["message"], run["far"]) == (SEA, WINDOW), state
            assert (run["esr"] >> 26, run["esr"] & 0x3F) == (0x25, 0x10), (state, hex(run["esr"]))
            assert run["began"] and d["beat_before"] <= run["beat"] <= d["beat_after"] + 1, state
            assert d["written_then"] == d["written_later"] == 0, state
        assert seas["last"] == (SUCCESS, STOPPED), seas["last"]
        finish(m, g, runs)


# -- (h) DATA_DESTROY of the page the running guest executes ---------------------------------------

def destroy_code(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 1 (h): once REC 0 has counted to 5, DATA_DESTROY the code page; the heartbeats around
    the call."""
    m = cpu.machine
    wait_until(cpu, lambda: heartbeat(m, plan, 0) >= 5)
    beat_before = heartbeat(m, plan, 0)
    set_flag(m, plan, DESTROYING, 1)
    destroyed = cpu.smc(F.RMI_DATA_DESTROY, plan.rd, CODE)[:2]
    beat_after = heartbeat(m, plan, 0)
    if not wait_for_exit(cpu, plan, lambda: flag(m, plan, DONE) == 1, 0, beat_after):
        return {"destroyed": destroyed, "abandoned": True}
    return {"destroyed": destroyed, "beat_before": beat_before, "beat_after": beat_after,
            "after": cpu.smc(F.RMI_RTT_READ_ENTRY, plan.rd, CODE, 3)[:5]}


def run_code(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 0 (h): one entry of REC 0, then one more."""
    m = cpu.machine
    first = enter(cpu, plan.recs[0], plan.runs[0])
    out = {"first": first, "beat": heartbeat(m, plan, 0), "began": flag(m, plan, DESTROYING) == 1}
    set_flag(m, plan, DONE, 1)
    out["again"] = enter(cpu, plan.recs[0], plan.runs[0])
    return out


def dispatch_h(cpu: Any, plan: Plan) -> Any:
    """CPU target (h)."""
    return run_code(cpu, plan) if cpu.id == 0 else destroy_code(cpu, plan)


def test_data_destroy_of_the_code_page_of_a_running_guest() -> None:
    """(h) DATA_DESTROY of the page holding the guest's code (and its loop) while REC 0 runs it:
    the command succeeds with the page's PA; the entry ends with an instruction abort exit
    (EC 0x20, translation fault level 3) at CODE, after the command began and at most one
    iteration after it returned (no instruction is run from the wiped page), and so does the
    next entry; READ_ENTRY: UNASSIGNED DESTROYED; the granule stays zero."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        program = toucher(1, rsi=False)
        assert len(assemble(PRELUDE + "\n" + program, base=CODE)) <= G, "the loop must lie in the first page"
        g, board = build(m, program, 1)
        pa = g.page_pa(CODE)
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, (g.rec_pa(0),), runs, board)
        result = run_cpus(m, dispatch_h, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        run, destroy = result.results[0], result.results[1]
        assert not flag(m, plan, ABANDON), (run, destroy)
        assert destroy["destroyed"] == (SUCCESS, pa), destroy
        assert destroy["after"] == (SUCCESS, 3, UNASSIGNED, 0, RIPAS_DESTROYED), destroy
        abort = {"exit_reason": EXIT_SYNC, "esr": 0x20 << 26 | 0x4 | 3, "hpfar": CODE >> 8}
        for x0, ex in (run["first"], run["again"]):
            assert x0 == SUCCESS and {k: ex[k] for k in abort} == abort, (run, message(ex))
        assert run["began"] and destroy["beat_before"] <= run["beat"] <= destroy["beat_after"] + 1, (run, destroy)
        assert bytes(m.memory.buf[pa - m.dram_base:pa - m.dram_base + G]) == bytes(G)
        assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        g.alloc.free(pa)
        finish(m, g, runs)


# -- (i) RSI_IPA_STATE_GET over a table that is folded, unfolded and destroyed --------------------

I_ROUNDS = 8
I_DESTROY_AT = 4
BAD_TOP, BACK_TO_RAM = 0x70B, 0xBAC

STATE_GETTER = f"""
    mov x21, ={BOARD}
loop:
    and x1, x20, #511
    lsl x1, x1, #12
    mov x2, ={BLOCK}
    add x1, x1, x2                      // a page of the block, another each iteration
    mov x2, ={BLOCK + (2 << 20)}
    mov x0, =RSI_IPA_STATE_GET
    smc #0
    cbnz x0, bad_rsi
    mov x3, ={BLOCK + (2 << 20)}
    cmp x1, x3
    b.ne bad_top                        // every entry of the block has one RIPAS: top is its end
    cmp x2, #{RIPAS_DESTROYED}
    b.eq destroyed
    cmp x2, #{RIPAS_RAM}
    b.ne bad_rsi
    cbnz x22, back_to_ram               // RAM after DESTROYED
    b counted
destroyed:
    mov x22, #1
counted:
    add x20, x20, #1
    str x20, [x21]
    ldr x1, [x21, #{STOP_FLAG}]
    cbz x1, loop
    mov x3, #{STOPPED}
    b message
bad_top:
    mov x3, #{BAD_TOP}
    b message
back_to_ram:
    mov x3, #{BACK_TO_RAM}
    b message
bad_rsi:
    mov x3, #{BAD_RSI}
{MESSAGE}"""
"""(i): RSI_IPA_STATE_GET from a page of the (unassigned) block to its end, a new page each
iteration: top must be the block's end, the RIPAS RAM until it is DESTROYED, then DESTROYED."""


def reshape_rounds(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU 1 (i): after each new heartbeat, RTT_FOLD the block's level-3 table and RTT_CREATE it
    again (from the same granule); in round I_DESTROY_AT, RTT_DESTROY it and create it again
    instead. The statuses and READ_ENTRY's RIPAS of the level-2 entry after each fold."""
    m, rd = cpu.machine, plan.rd
    seen: list[tuple[str, int, int]] = []
    table = plan.window            # the level-3 table's granule
    try:
        for r in range(I_ROUNDS):
            beat = heartbeat(m, plan, 0)
            wait_until(cpu, lambda: heartbeat(m, plan, 0) > beat + 2 or flag(m, plan, ABANDON))
            if r == I_DESTROY_AT:
                x0, pa = cpu.smc(F.RMI_RTT_DESTROY, rd, BLOCK, 3)[:2]
                seen.append(("destroy", x0, pa == table))
                assert cpu.smc(F.RMI_GRANULE_UNDELEGATE, table)[0] == SUCCESS
                assert cpu.smc(F.RMI_GRANULE_DELEGATE, table)[0] == SUCCESS
            else:
                x0, pa = cpu.smc(F.RMI_RTT_FOLD, rd, BLOCK, 3)[:2]
                seen.append(("fold", x0, pa == table))
            entry = cpu.smc(F.RMI_RTT_READ_ENTRY, rd, BLOCK, 2)[:5]
            seen.append(("level 2", entry[1], entry[4]))
            seen.append(("create", cpu.smc(F.RMI_RTT_CREATE, rd, table, BLOCK, 3)[0], 0))
    finally:
        store(m, plan.board + STOP_FLAG, 1)
    return {"seen": seen}


def dispatch_i(cpu: Any, plan: Plan) -> Any:
    """CPU target (i)."""
    if cpu.id == 1:
        return reshape_rounds(cpu, plan)
    try:
        return run_until_stopped(cpu, plan)
    finally:
        set_flag(cpu.machine, plan, ABANDON, 1)


def test_ipa_state_get_over_a_table_being_reshaped() -> None:
    """(i) While REC 0 asks RSI_IPA_STATE_GET about pages of an unassigned RAM block over and
    over, CPU 1 folds its level-3 table into a level-2 entry and creates it again, and once
    destroys it (the block becomes UNASSIGNED DESTROYED, A5.5.9). Every call and READ_ENTRY
    shows the expected shape and RIPAS; the guest always got top = the block's end, RAM and
    then DESTROYED, never RAM again (it stops with STOPPED, having seen DESTROYED)."""
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        g = Guest.build(m, STATE_GETTER, cpu=2)
        board = g.map_unprotected(BOARD)
        table = g.alloc.alloc()
        assert g.smc(F.RMI_GRANULE_DELEGATE, table)[0] == SUCCESS
        assert g.smc(F.RMI_RTT_CREATE, g.realm.rd, table, BLOCK, 3)[0] == SUCCESS
        runs = (g.alloc.alloc(), g.alloc.alloc())
        plan = Plan(g.realm.rd, (g.rec_pa(0),), runs, board, window=table)
        result = run_cpus(m, dispatch_i, cpus=(0, 1), args=(plan,), timeout_s=40)
        assert result.ok, [f.describe() for f in result.failures]
        stopped, seen = result.results[0], result.results[1]["seen"]
        assert (stopped["x0"], stopped["message"]) == (SUCCESS, STOPPED), stopped
        expected = []
        for r in range(I_ROUNDS):
            ripas = RIPAS_RAM if r < I_DESTROY_AT else RIPAS_DESTROYED
            expected += [("destroy" if r == I_DESTROY_AT else "fold", SUCCESS, True), ("level 2", 2, ripas),
                         ("create", SUCCESS, 0)]
        assert seen == expected, seen
        assert g.gpr(22) == 1, "the guest never saw DESTROYED"
        finish(m, g, runs)
