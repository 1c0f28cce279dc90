"""REC exit: the registers a REC's granule holds after an exit are the ones its run ended with
(a test file).

run_rec keeps the register lists it read at entry and Rec.save_context leaves a block equal to
its list as it is, on the claim that while a REC runs nothing but its own run writes its
registers in the REC granule. These tests drive every path between entry and exit that touches a
register (the entry completions for MMIO, SEA injection, RIPAS change and host call, RSI results,
a PSCI exit and the host's PSCI_COMPLETE, exceptions the realm takes, untouched WFI round trips)
with save_context watched: at each exit the REC's words must still hold the entry's lists (no
other writer came in between), and after it they must hold what the run ended with.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from realm_guests import EMPTY_IPA, UNPROTECTED, Guest
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import RmiRecEnterFlags
from rmm_mp.rmm import rec_desc
from rmm_mp.rmm.rec_desc import GPRS, SYSREGS, Rec

EXIT_SYNC, EXIT_IRQ, EXIT_PSCI, EXIT_RIPAS_CHANGE, EXIT_HOST_CALL = 0, 1, 3, 4, 5
EMUL_MMIO, INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
MMIO = UNPROTECTED + 0x3000
HOST_VALUE = 0xF1E2_D3C4_B5A6_9788
_SYSREGS_AT = slice(rec_desc.R_SYSREGS, rec_desc.R_SYSREGS + SYSREGS)

PROGRAM = """
    adr x9, vectors
    msr vbar, x9
    mov x1, =MMIO
    ldr x6, [x1]                // 1. emulatable abort; EMUL_MMIO writes X6, PC + 4
second:
    ldr x7, [x1]                // 2. again; INJECT_SEA: the realm takes an SEA (ELR, ESR, FAR)
back:
    wfi                         // 3. a round trip that changes no register
    mov x0, =RSI_HOST_CALL      // 4. host call: X0 = SUCCESS on the next entry
    adr x1, hc
    smc #0
    mov x0, =RSI_IPA_STATE_SET  // 5. RIPAS change: X0..X2 set on the next entry
    mov x1, =EMPTY_IPA
    mov x2, =EMPTY_IPA + 0x1000
    mov x3, #0
    mov x4, #0
    smc #0
    mov x0, =PSCI_CPU_ON        // 6. PSCI exit: PSCI_COMPLETE writes X0..X3 while it waits
    mov x1, #1
    adr x2, rec1
    mov x3, #0x77
    smc #0
    mov x0, =PSCI_AFFINITY_INFO // 7. another PSCI exit, completed with X0 = ON
    mov x1, #1
    mov x2, #0
    smc #0
done:
    wfi
    b done
rec1:
    mov x5, x0
    wfi
    b rec1
    .org 0x800
vectors:
    .org 0xA00
    mrs x20, esr
    mrs x21, far
    mrs x22, elr
    adr x9, back
    msr elr, x9
    eret
    .org 0x1100
hc:
    .zero 256
""".replace("=MMIO", f"={MMIO}").replace("=EMPTY_IPA", f"={EMPTY_IPA}")


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=2000) as m:
        yield m


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Rec.save_context checked around each call; returns (REC index, whether the run left X0..X30
    as it found them) for each exit, so a test can see the skipping path taken."""
    saves: list[tuple[int, bool]] = []
    original = Rec.save_context

    def save_context(self: Rec, gprs: Any, pc: int, pstate: int, sysregs: Any, held_gprs: Any = None,
                     held_sysregs: Any = None) -> None:
        assert held_gprs is not None and held_sysregs is not None, "run_rec passes the entry's lists"
        words = self.run_state()
        # Nobody wrote the REC's registers between its entry and this exit.
        assert words[rec_desc.R_GPRS:rec_desc.R_PC] == tuple(held_gprs[:GPRS])
        assert words[_SYSREGS_AT] == tuple(held_sysregs[:SYSREGS])
        original(self, gprs, pc, pstate, sysregs, held_gprs, held_sysregs)
        # And the exit left what the run ended with.
        words = self.run_state()
        assert words[rec_desc.R_GPRS:rec_desc.R_PC] == tuple(gprs[:GPRS])
        assert words[_SYSREGS_AT] == tuple(sysregs[:SYSREGS])
        assert (words[rec_desc.R_PC], words[rec_desc.R_PSTATE]) == (pc, pstate)
        saves.append((self.idx, list(gprs) == list(held_gprs)))

    monkeypatch.setattr(Rec, "save_context", save_context)
    return saves


def test_every_register_path_between_entry_and_exit_leaves_the_rec_words_to_the_run(
        machine: Machine, watched: list[tuple[int, bool]]) -> None:
    with Guest.build(machine, PROGRAM, num_recs=2) as g:
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"]) == (0, EXIT_SYNC) and ex["far"] == MMIO & 0xFFF, ex
        x0, ex = g.enter(EMUL_MMIO, (HOST_VALUE,))
        assert (x0, ex["exit_reason"]) == (0, EXIT_SYNC), ex
        assert g.gpr(6) == HOST_VALUE
        x0, ex = g.enter(INJECT_SEA)        # the SEA's vector returns to `back`, whose WFI exits
        assert (x0, ex["exit_reason"]) == (0, EXIT_IRQ), ex
        assert (g.gpr(20) >> 26, g.gpr(21), g.gpr(22)) == (0x25, MMIO, g.label("second"))
        x0, ex = g.enter()                  # from `back`: the host call
        assert (x0, ex["exit_reason"]) == (0, EXIT_HOST_CALL), ex
        x0, ex = g.enter(0, (0x1111,) * 31)     # completes it; the RIPAS change exits
        assert (x0, ex["exit_reason"]) == (0, EXIT_RIPAS_CHANGE), ex
        x0, ex = g.enter()                  # completes it (nothing changed: X1 = base); CPU_ON exits
        assert (x0, ex["exit_reason"]) == (0, EXIT_PSCI), ex
        assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), g.rec_pa(1), 0)[0] == 0
        assert (g.gpr(0), g.gpr(3)) == (0, 0)       # PSCI_COMPLETE wrote them while the REC waited
        x0, ex = g.enter()                  # AFFINITY_INFO exits
        assert (x0, ex["exit_reason"]) == (0, EXIT_PSCI), ex
        assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), g.rec_pa(1), 0)[0] == 0
        assert g.gpr(0) == 0                # ON: REC 1 is runnable
        x0, ex = g.enter()                  # stops at `done`
        assert (x0, ex["exit_reason"]) == (0, EXIT_IRQ) and g.pc() == g.label("done") + 8, ex
        x0, ex = g.enter()                  # a round trip that changes no register
        assert (x0, ex["exit_reason"]) == (0, EXIT_IRQ), ex
        x0, ex = g.enter(rec=1)             # REC 1 starts at rec1 with X0 = the context id
        assert (x0, ex["exit_reason"]) == (0, EXIT_IRQ) and g.gpr(5, rec=1) == 0x77, ex
        rec0 = g.rec(0).idx
    assert len(watched) == 10
    assert watched[-2] == (rec0, True), "the last round trip left every register as it was"
