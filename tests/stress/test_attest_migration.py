"""One REC produces an attestation token while two CPU processes take turns entering it
(DEN0137 1.0-rel0 A7.2.2, B5.3.1; A2.3: a REC runs on one PE at a time, on any PE).

The realm runs the bundled guest workloads/guests/attest.s, copying its token out 1 byte per
RSI_ATTESTATION_TOKEN_CONTINUE, on a machine whose time slice is SLICE guest instructions. CPU
processes 0 and 1 (rmm_mp.runtime.run_cpus) enter the REC strictly in turn: the sum of the
entries both published in their CPU areas' activity counters says whose turn it is, so the REC
moves to the other process after every exit. Whoever handles an exit writes the next entry into
the one shared run page (a host call's gprs; nothing else is needed: the buffer and the shared
page are mapped beforehand). The RMM's signing is interrupted by IRQ exits on both processes,
and the copy-out continues across them, some 140 calls (bytes) per entry.

The token must equal, byte for byte, the one the same realm produces in this process on a fresh
machine with the platform's time slice (uninterrupted signing); the turns alternate without a
gap; the invariants hold after the run and after teardown.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER, RMI_REC_EXIT
from rmm_mp.check import invariants
from rmm_mp.guest.assembler import assemble
from rmm_mp.host import NsAllocator, RealmSpec, create_realm, destroy_realm, fault_in, map_unprotected
from rmm_mp.host.guests import guest_dir
from rmm_mp.hw.cpuarea import OFF_COUNTERS
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

REC_ENTER = int(RmiFid.RMI_REC_ENTER)
SUCCESS, INCOMPLETE = 0, 3
EXIT_SYNC, EXIT_IRQ, EXIT_PSCI, EXIT_HOST_CALL = 0, 1, 3, 5
SYSTEM_OFF = 0x8400_0008
HOST_LOG, HOST_REPORT = 1, 3
GRANULE = 4096
CODE = 0x8000_0000
PAR = 1 << 39
"""The shared bit of the 40-bit realm."""
SLICE = 2500
"""Guest instructions per entry: one signing step (the RMM's STEP_COST, 2,000) fits after the few
instructions the guest runs before it repeats CONTINUE. A slice that leaves less than a step at
the SMC never finishes the token (reported as an RMM defect), so this is the short end."""
CPUS = (0, 1)
READY, TURNS, DONE = 0, 1, 2
"""Activity counters (cpuarea OFF_COUNTERS) each CPU publishes: ready flag, entries made, saw SYSTEM_OFF."""
MAX_TURNS = 400


def attest_source() -> str:
    """attest.s with CHUNK = 1 (the other constants as shipped)."""
    text = (guest_dir() / "attest.s").read_text(encoding="utf-8")
    assert text.count("    .equ CHUNK, 512\n") == 1
    return text.replace("    .equ CHUNK, 512\n", "    .equ CHUNK, 1\n")


def label_of(text: str, name: str) -> int:
    return int.from_bytes(assemble(text + f"\n.quad {name}\n", base=CODE)[-8:], "little")


@dataclass(frozen=True)
class Plan:
    rec: int
    run: int
    continue_call: int


@dataclass(frozen=True)
class Turn:
    """One entry: its number, the exit reason, whether the RMM was signing when the slice ran
    out (REC just after CONTINUE, X0 = RSI_INCOMPLETE, X1 = 0), and a LOG host call's gprs."""

    turn: int
    cpu: int
    reason: int
    signing: bool
    log: tuple[int, ...] = ()


def step(cpu, plan: Plan, turn: int) -> Turn:  # type: ignore[no-untyped-def]
    """Enter the REC once from ``cpu`` and prepare the run page's next entry, as a host does."""
    m = cpu.machine
    x0 = cpu.smc(REC_ENTER, plan.rec, plan.run)[0]
    if x0 != SUCCESS:
        raise AssertionError(f"turn {turn} on CPU {cpu.id}: REC_ENTER returned {x0:#x}")
    ex = RMI_REC_EXIT.unpack(m.ns_read(plan.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size))
    reason, gprs = ex["exit_reason"], ex["gprs"]
    enter = RMI_REC_ENTER.pack()
    signing = False
    if reason == EXIT_IRQ:
        rec = Rec(m.memory, (plan.rec - m.dram_base) // GRANULE)
        signing = (rec.pc, rec.gpr(0), rec.gpr(1)) == (plan.continue_call + 8, INCOMPLETE, 0)
    elif reason == EXIT_HOST_CALL:
        if ex["imm"] == HOST_REPORT and gprs[0] != 0:
            raise AssertionError(f"turn {turn}: the guest reported failure {gprs[:2]}")
        enter = RMI_REC_ENTER.pack(gprs=list(gprs))
    elif (reason, gprs[0]) != (EXIT_PSCI, SYSTEM_OFF):
        raise AssertionError(f"turn {turn} on CPU {cpu.id}: unexpected exit {ex}")
    m.ns_write(plan.run, bytes(enter))
    log = tuple(gprs[:4]) if reason == EXIT_HOST_CALL and ex["imm"] == HOST_LOG else ()
    return Turn(turn, cpu.id, reason, signing, log)


def _counter(cpu, owner: int, n: int) -> int:  # type: ignore[no-untyped-def]
    return cpu.area.view.load_u64(owner * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n)


def _publish(cpu, n: int, value: int) -> None:  # type: ignore[no-untyped-def]
    cpu.area.view.store_u64(cpu.id * cpu.machine.control.area_size + OFF_COUNTERS + 8 * n, value)


def take_turns(cpu, plan: Plan) -> list[Turn]:  # type: ignore[no-untyped-def]
    """CPU target: enter the REC whenever the total of entries says it is this CPU's turn,
    until either CPU saw SYSTEM_OFF."""
    m = cpu.machine
    _publish(cpu, READY, 1)
    while not all(_counter(cpu, c, READY) for c in CPUS):
        os.sched_yield()
    mine: list[Turn] = []
    while not m.control.stop_requested and not any(_counter(cpu, c, DONE) for c in CPUS):
        turn = sum(_counter(cpu, c, TURNS) for c in CPUS)
        if turn >= MAX_TURNS:
            raise AssertionError(f"no SYSTEM_OFF after {turn} entries")
        if turn % len(CPUS) != cpu.id:
            os.sched_yield()
            continue
        # Checked again: the other CPU may have seen SYSTEM_OFF between the loop's check and
        # reading the turn (it publishes DONE before TURNS, so a turn read here that counts
        # its last entry comes with DONE visible).
        if any(_counter(cpu, c, DONE) for c in CPUS):
            break
        mine.append(step(cpu, plan, turn))
        if mine[-1].reason == EXIT_PSCI:
            _publish(cpu, DONE, 1)
        _publish(cpu, TURNS, len(mine))
    return mine


def build(m: Machine, host: int, image: bytes, continue_call: int) -> tuple[NsAllocator, object, Plan, int]:
    """On CPU ``host``: the realm, its token buffer faulted in and its shared page mapped; a
    zeroed run page."""
    cpu, alloc = m.cpu(host), NsAllocator(m, host)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_base=CODE, ram_size=4 << 20, image=image))
    for page in (CODE + 0x10_0000, CODE + 0x10_1000):       # attest.s's buffer: BUFFER_OFFSET + OFFSET
        assert fault_in(cpu, alloc, realm, page) is not None
    shared = alloc.alloc()
    m.ns_write(shared, bytes(GRANULE))
    assert map_unprotected(cpu, alloc, realm, PAR | (CODE + 0x20_0000), shared)   # SHARED_OFFSET
    run = alloc.alloc()
    m.ns_write(run, bytes(GRANULE))
    return alloc, realm, Plan(realm.recs[0].rec, run, continue_call), shared


def finish(m: Machine, host: int, alloc: NsAllocator, realm, plan: Plan, shared: int,  # type: ignore[no-untyped-def]
           log: tuple[int, ...]) -> bytes:
    """Read the token the LOG host call names, tear down on CPU ``host``, check the invariants."""
    assert log[0] == 0x4E45_4B4F_54 and log[1] == PAR | (CODE + 0x20_0000)
    token = m.ns_read(shared, log[2])
    report = invariants(m)
    assert report.ok, str(report)
    destroy_realm(m.cpu(host), alloc, realm)
    for pa in (shared, plan.run):
        alloc.free(pa)
    report = invariants(m)
    assert report.ok and report.state_counts == {"NS": m.granule_count}, str(report)
    return token


def reference_token(image: bytes, continue_call: int) -> bytes:
    """The same realm's token, made in this process on CPU 0 with the platform's time slice."""
    with Machine.create("host", cpus=1) as m:
        alloc, realm, plan, shared = build(m, 0, image, continue_call)
        turns = []
        while not turns or turns[-1].reason != EXIT_PSCI:
            assert len(turns) < MAX_TURNS
            turns.append(step(m.cpu(0), plan, len(turns)))
        assert not any(t.signing for t in turns)
        return finish(m, 0, alloc, realm, plan, shared, next(t.log for t in turns if t.log))


def test_token_made_by_two_cpu_processes_in_turn() -> None:
    """CPUs 0 and 1 alternate entering the REC until SYSTEM_OFF: every turn ran once, on the CPU
    whose turn it was; signing was interrupted on both CPUs; the copy-out went on over several
    entries; the token equals the single-process reference; invariants hold."""
    text = attest_source()
    image, continue_call = assemble(text, base=CODE), label_of(text, "continue_call")
    expected = reference_token(image, continue_call)
    with Machine.create("host", cpus=3, time_slice=SLICE) as m:
        alloc, realm, plan, shared = build(m, 2, image, continue_call)     # CPUs 0 and 1 stay free
        result = run_cpus(m, take_turns, cpus=CPUS, args=(plan,), timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        assert result.stopped_by == "", f"the CPUs were stopped ({result.stopped_by})"
        turns = sorted((t for c in CPUS for t in result.results[c]), key=lambda t: t.turn)
        assert [(t.turn, t.cpu) for t in turns] == [(n, n % 2) for n in range(len(turns))]
        assert turns[-1].reason == EXIT_PSCI and sum(t.reason == EXIT_PSCI for t in turns) == 1
        signing = [t.cpu for t in turns if t.signing]
        assert len(signing) >= 2 and set(signing) == set(CPUS), turns
        first_log = next(n for n, t in enumerate(turns) if t.log)
        copying = [t for t in turns[turns.index(next(t for t in turns if t.signing)):first_log]
                   if t.reason == EXIT_IRQ and not t.signing]
        assert len(copying) >= 4, "the copy-out should span several entries"
        token = finish(m, 2, alloc, realm, plan, shared, turns[first_log].log)
    assert token == expected
