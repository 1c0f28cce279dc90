"""RmiRecEnter fields the RMM reads and how long they last (DEN0137 1.0-rel0 A4.2, B4.4.15).

What tests/rmm/test_rec_exits.py leaves implicit: enter.flags bits 63:5 are SBZ with no failure
condition in B4.3.14, so they change nothing (TF-RMM rel0 ignores them too); enter.gprs[1..30]
mean nothing to an emulated read (A4.2.3 names gprs[0] only) and never reach the exit; a trap
flag lasts the one entry it is passed to.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from realm_guests import UNPROTECTED, Guest
from rmm_mp import Machine
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_EXIT, RmiRecEnterFlags

SUCCESS, RMI_ERROR_REC, EXIT_SYNC, EXIT_IRQ = 0, 3, 0, 1
EMUL_MMIO, TRAP_WFI = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.TRAP_WFI)
EC_WFX = 0x01
MMIO = UNPROTECTED + 0x3000
"""An unprotected page nothing is mapped at: accesses are emulatable data aborts."""
HOST_VALUE = 0xF1E2_D3C4_B5A6_9788
RESERVED = ((1 << 64) - 1) & ~0x1F
"""RmiRecEnterFlags bits 63:5 (B4.4.15: Reserved, SBZ)."""
READ = f"""
    mov x1, ={MMIO + 0x40}
    mov x2, #2
    mov x3, #3
    mov x6, =-1
access:
    ldr x6, [x1]
done:
    wfi
    b done
"""


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=1, time_slice=2000) as m:
        yield m


@pytest.mark.parametrize("junk", [1 << 5, 1 << 63, RESERVED])
def test_reserved_flag_bits_change_nothing(machine: Machine, junk: int) -> None:
    """Entries with SBZ flag bits set succeed and behave as without them: the load exits as an
    emulatable abort, EMUL_MMIO (with the junk) completes it, and the WFI at `done` is not
    trapped (an IRQ exit, PC past it)."""
    with Guest.build(machine, READ) as g:
        x0, ex = g.enter(junk)
        assert (x0, ex["exit_reason"], ex["far"]) == (SUCCESS, EXIT_SYNC, 0x40)
        assert g.pc() == g.label("access")
        x0, ex = g.enter(junk | EMUL_MMIO, (HOST_VALUE,))
        assert (x0, ex["exit_reason"], ex["esr"]) == (SUCCESS, EXIT_IRQ, 0)
        assert (g.gpr(6), g.pc()) == (HOST_VALUE, g.label("done") + 8)


def test_emulated_read_takes_gprs0_alone(machine: Machine) -> None:
    """EMUL_MMIO with all 31 enter.gprs set: the target register gets gprs[0], no other register
    changes, and the exit that follows (an IRQ) has gprs zero: nothing of enter.gprs is echoed."""
    with Guest.build(machine, READ) as g:
        assert g.enter()[1]["exit_reason"] == EXIT_SYNC
        before = [g.gpr(n) for n in range(31)]
        x0, ex = g.enter(EMUL_MMIO, (HOST_VALUE, *range(101, 131)), exit_fill=0xFF)
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
        assert [g.gpr(n) for n in range(31)] == before[:6] + [HOST_VALUE] + before[7:]
        raw = machine.ns_read(g.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size)
        assert raw == bytes(RMI_REC_EXIT.pack(exit_reason=EXIT_IRQ))


def test_trap_flag_lasts_one_entry(machine: Machine) -> None:
    """TRAP_WFI traps the WFIs of the entry it is passed to only: the next entry, without it,
    sleeps at the second WFI (an IRQ exit), as TF-RMM rel0 rebuilds HCR_EL2.TWI on every entry."""
    with Guest.build(machine, "wfi\nsecond: wfi\nthird: wfi\nb third") as g:
        x0, ex = g.enter(TRAP_WFI)
        assert (x0, ex["exit_reason"], ex["esr"]) == (SUCCESS, EXIT_SYNC, EC_WFX << 26)
        assert g.pc() == g.label("second")
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["esr"]) == (SUCCESS, EXIT_IRQ, 0)
        assert g.pc() == g.label("third")


@pytest.mark.parametrize("refusal", ["gicv3_hcr", "duplicate vintid"])
def test_refused_entry_keeps_the_emulatable_abort(machine: Machine, refusal: str) -> None:
    """A REC_ENTER that fails rec_gicv3 changes nothing (B1.6): the REC still holds its
    emulatable abort, so the host's next entry with EMUL_MMIO and a valid GIC state completes
    the read."""
    pending_lr = (1 << 62) | 40      # State pending, vINTID 40
    hcr, lrs = (1, ()) if refusal == "gicv3_hcr" else (0, (pending_lr, pending_lr))   # En (bit 0) is the RMM's
    with Guest.build(machine, READ) as g:
        assert g.enter()[1]["exit_reason"] == EXIT_SYNC
        assert g.enter(EMUL_MMIO, (HOST_VALUE,), gicv3_hcr=hcr, gicv3_lrs=lrs)[0] == RMI_ERROR_REC
        assert g.pc() == g.label("access")
        x0, ex = g.enter(EMUL_MMIO, (HOST_VALUE,))
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
        assert (g.gpr(6), g.pc()) == (HOST_VALUE, g.label("done") + 8)
