"""RSI_MEASUREMENT_EXTEND from three RECs of one realm at once, on three CPU processes
(DEN0137 1.0-rel0 B5.3.7: REM = H(REM || value); A2.3: RECs of a realm run concurrently).

Each REC extends REM 1 with the same 8-byte value PER_REC times, a time slice of 97 instructions
making the RECs exit and come back all the time. With one value, every serial order of the
extends gives the same REM: the value hashed in 3 * PER_REC times. An extend that read the slot
while another one was writing it (a lost update) or two writes mixed would end somewhere else.
Each REC also extends its own REM (2 + its index) with the count of its extends so far, an
order no other REC can disturb. The REM values are computed here with hashlib, not with the
RMM's code.

The CPU targets live in this module: spawned CPU processes import it by name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pytest

from realm_guests import Guest
from rec_cpus import enter, start_together
from rmm_mp import Machine
from rmm_mp.abi.psci import PsciFid
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.runtime import run_cpus

pytestmark = pytest.mark.multiprocess

F = RmiFid
SUCCESS = 0
EXIT_IRQ, EXIT_PSCI = 1, 3
CPU_ON, CPU_OFF = int(PsciFid.PSCI_CPU_ON), int(PsciFid.PSCI_CPU_OFF)
RECS = (0, 1, 2)
PER_REC = 60
VALUE = 0x0123_4567_89AB_CDEF

PROGRAM = f"""
start:
    mrs x19, mpidr
    and x19, x19, #0xff
    cbnz x19, work
    cbnz x26, work
    mov x26, #1                     // REC 0, first run: start RECs 1 and 2 (the parent completes)
    mov x0, =PSCI_CPU_ON
    mov x1, #1
    adr x2, start
    mov x3, #0
    smc #0
    cbnz x0, .
    mov x0, =PSCI_CPU_ON
    mov x1, #2
    adr x2, start
    mov x3, #0
    smc #0
    cbnz x0, .
work:
    mov x0, =RSI_MEASUREMENT_EXTEND // REM 1 += VALUE (shared by all RECs)
    mov x1, #1
    mov x2, #8
    mov x3, ={VALUE}
    smc #0
    cbnz x0, bad
    add x20, x20, #1
    mov x0, =RSI_MEASUREMENT_EXTEND // REM 2 + index += count (this REC's own)
    add x1, x19, #2
    mov x2, #8
    mov x3, x20
    smc #0
    cbnz x0, bad
    cmp x20, #{PER_REC}
    b.lo work
    mov x0, =PSCI_CPU_OFF
    smc #0
bad:
    add x22, x22, #1
    b .
"""


@dataclass(frozen=True)
class Plan:
    recs: tuple[int, ...]
    runs: tuple[int, ...]


def extend_until_off(cpu: Any, plan: Plan) -> dict[str, Any]:
    """CPU target: enter this CPU's REC until it turns itself off; count the entries."""
    m, rec, run = cpu.machine, plan.recs[cpu.id], plan.runs[cpu.id]
    start_together(cpu, RECS)
    entries = 0
    while not m.control.stop_requested:
        x0, ex = enter(cpu, rec, run)
        entries += 1
        if x0 != SUCCESS:
            return {"entries": entries, "bad": f"X0 {x0:#x}"}
        if ex["exit_reason"] == EXIT_PSCI and ex["gprs"][0] == CPU_OFF:
            return {"entries": entries, "bad": ""}
        if ex["exit_reason"] != EXIT_IRQ:
            return {"entries": entries, "bad": f"exit {ex['exit_reason']}"}
    return {"entries": entries, "bad": "stopped"}


def chain(hash_algo: int, values: list[bytes]) -> bytes:
    """A REM slot (64 bytes, zero padded) after extending an empty one with ``values`` in order."""
    h = hashlib.sha256 if hash_algo == 0 else hashlib.sha512
    rem = bytes(h().digest_size)
    for value in values:
        rem = h(rem + value).digest()
    return rem.ljust(64, b"\0")


@pytest.mark.parametrize("hash_algo", [0, 1])
def test_recs_extend_one_rem_at_once(hash_algo: int) -> None:
    """REM 1 is VALUE hashed in 3 * PER_REC times (no extend lost or mixed with another), each
    REC's own REM is its counts in order, every extend returned SUCCESS, no REC holds a
    refcount and the invariants hold."""
    with Machine.create("host", cpus=4, time_slice=97) as m:
        g = Guest.build(m, PROGRAM, num_recs=3, hash_algo=hash_algo, cpu=3)
        for target in (1, 2):
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"], ex["gprs"][:2]) == (SUCCESS, EXIT_PSCI, (CPU_ON, target)), (x0, ex)
            assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), g.rec_pa(target), SUCCESS)[0] == SUCCESS
        runs = tuple(g.alloc.alloc() for _ in RECS)
        result = run_cpus(m, extend_until_off, cpus=RECS, args=(Plan(tuple(g.rec_pa(n) for n in RECS), runs),),
                          timeout_s=60)
        assert result.ok, [f.describe() for f in result.failures]
        assert [result.results[n]["bad"] for n in RECS] == ["", "", ""], result.results
        assert [(g.gpr(20, n), g.gpr(22, n)) for n in RECS] == [(PER_REC, 0)] * 3
        assert min(result.results[n]["entries"] for n in RECS) > 5, result.results   # the slices did interleave
        table = m.granule_table(0)
        assert [table.refcount(g.rec(n).idx) for n in RECS] == [0, 0, 0]
        value = VALUE.to_bytes(8, "little")
        assert g.rd.measurement(1) == chain(hash_algo, [value] * (3 * PER_REC))
        for n in RECS:
            own = [i.to_bytes(8, "little") for i in range(1, PER_REC + 1)]
            assert g.rd.measurement(2 + n) == chain(hash_algo, own), n
        report = invariants(m)
        assert report.ok, str(report)
        g.destroy()
        for pa in runs:
            g.alloc.free(pa)
