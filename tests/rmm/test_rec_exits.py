"""What makes a running REC exit, and what the host sees (DEN0137 1.0-rel0 A4.2, A4.3, A4.4, A5.2).

Guest programs (tests/realm_guests.py) make one access or execute one instruction, then stop
at ``done`` with a WFI (an IRQ exit when WFI is not trapped). Programs that expect the realm to
take an exception itself install a vector (VECTORS): its handler saves ESR, FAR and ELR in
X20..X22 and stops at ``vdone``. Every exit reason and entry flag is covered: data aborts
(non-emulatable, emulatable MMIO with EMUL_MMIO and INJECT_SEA), SEAs the realm takes without an
exit, instruction fetch faults, the time slice's IRQ, WFI/WFE with and without traps, HVC,
RIPAS_CHANGE, HOST_CALL and PSCI exits, a REC moving between CPUs, and the A4.3.1 rule that
every exit field not set is zero.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest

from realm_guests import CODE, EMPTY_IPA, GRANULE, IPA_WIDTH, UNPROTECTED, Guest
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_EXIT, RmiRecEnterFlags
from rmm_mp.check import invariants
from rmm_mp.host import map_unprotected

SUCCESS, RMI_ERROR_REC = 0, 3
EXIT_SYNC, EXIT_IRQ, EXIT_PSCI, EXIT_RIPAS_CHANGE, EXIT_HOST_CALL = 0, 1, 3, 4, 5
EMUL_MMIO, INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
TRAP_WFI, TRAP_WFE = int(RmiRecEnterFlags.TRAP_WFI), int(RmiRecEnterFlags.TRAP_WFE)
EC_WFX, EC_IABT_LOW, EC_IABT_CUR, EC_DABT_LOW, EC_DABT_CUR = 0x01, 0x20, 0x21, 0x24, 0x25
ISV, SF, WNR, EA = 1 << 24, 1 << 15, 1 << 6, 1 << 9
FSC_SEA = 0x10
UNASSIGNED = CODE + 0x10_0000
"""Unassigned RAM (RIPAS RAM, nothing mapped)."""
MMIO = UNPROTECTED + 0x3000
"""An unprotected page nothing is mapped at: accesses are emulatable data aborts."""
VALUE = 0x8877_6655_4433_2211
HOST_VALUE = 0xF1E2_D3C4_B5A6_9788
SETUP = "adr x9, vectors\nmsr vbar, x9\n"
VECTORS = """
    .org 0x800
vectors:
    .org 0xA00          // vbar + 0x200: synchronous exception
    mrs x20, esr
    mrs x21, far
    mrs x22, elr
vdone:
    wfi
    b vdone
"""
SIZES = [("b", 0), ("h", 1), ("w", 2), ("", 3)]


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=2000) as m:
        yield m


def access(ins: str, ipa: int, value: int = VALUE) -> str:
    """Vectors installed, X1 = ipa, X5 = value, X6 = all ones; `access: <ins>`; `done: wfi`."""
    return SETUP + f"""
        mov x1, ={ipa}
        mov x5, ={value}
        mov x6, =-1
    access:
        {ins}
    done:
        wfi
        b done
    """ + VECTORS


def stopped_at(g: Guest, label: str, x0: int, ex: dict) -> None:
    """The REC ran to ``label``'s WFI: an IRQ exit with nothing else set."""
    assert x0 == SUCCESS
    assert (ex["exit_reason"], ex["esr"], ex["far"], ex["hpfar"], ex["gprs"]) == (EXIT_IRQ, 0, 0, 0, (0,) * 31), ex
    assert g.pc() == g.label(label) + 8


def finish(g: Guest, flags: int = 0, gprs: tuple[int, ...] = (), cpu: int | None = None) -> None:
    x0, ex = g.enter(flags, gprs, cpu=cpu)
    stopped_at(g, "done", x0, ex)


def took_exception(g: Guest, flags: int, ec: int, far: int, elr: int, fsc: int = FSC_SEA) -> None:
    """Entered with ``flags``, the realm took a synchronous exception itself (no exit before its
    vector's WFI): ESR.EC = ``ec`` (and the fault status ``fsc``, an SEA's by default, for the
    abort classes), FAR, ELR."""
    x0, ex = g.enter(flags)
    stopped_at(g, "vdone", x0, ex)
    esr = g.gpr(20)
    assert esr >> 26 == ec, hex(esr)
    if ec in (EC_IABT_CUR, EC_DABT_CUR):
        assert esr & 0x3F == fsc, hex(esr)
    assert (g.gpr(21), g.gpr(22)) == (far, elr)


def stage2_exit(ex: dict, ec: int, ipa: int) -> None:
    """A non-emulatable abort exit (A4.3.4.2/3): SYNC, EC, ISV clear, a translation fault, far 0,
    hpfar = the IPA's page number in HPFAR_EL2 form, gprs zero."""
    assert ex["exit_reason"] == EXIT_SYNC
    esr = ex["esr"]
    assert (esr >> 26, esr & ISV, esr & 0x3C) == (ec, 0, 0x04), hex(esr)
    assert (ex["far"], ex["hpfar"], ex["gprs"]) == (0, (ipa >> 8) & ~0xF, (0,) * 31)


def mmio_exit(ex: dict, ipa: int, size_log2: int, write: bool, value: int = 0) -> None:
    """An emulatable abort exit (A4.3.4.3): ISV, SAS, SF, WnR, a translation fault; far = the
    IPA's offset in its granule, hpfar; gprs[0] = the written value (masked to the size) or 0."""
    assert ex["exit_reason"] == EXIT_SYNC
    esr = ex["esr"]
    assert (esr >> 26, esr & ISV, (esr >> 22) & 3) == (EC_DABT_LOW, ISV, size_log2), hex(esr)
    assert (bool(esr & SF), bool(esr & WNR), esr & 0x3C) == (size_log2 == 3, write, 0x04), hex(esr)
    assert (ex["far"], ex["hpfar"]) == (ipa & 0xFFF, (ipa >> 8) & ~0xF)
    assert ex["gprs"] == ((value & ((1 << (8 << size_log2)) - 1)) if write else 0,) + (0,) * 30


def ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


# -- data aborts the host resolves --------------------------------------------------------------------

@pytest.mark.parametrize("ins", ["ldr x6, [x1]", "str x5, [x1]", "ldrb x6, [x1, #5]"])
@pytest.mark.parametrize("ipa", [UNASSIGNED + 0x18, CODE + 0x30_0040])
def test_data_abort_unassigned_ram(machine: Machine, ins: str, ipa: int) -> None:
    """A load or store to unassigned protected RAM (a level-3 or a level-2 walk): SYNC exit with
    EC 0x24, no ISV, far 0, hpfar (A4.3.4.3 non-emulatable); PC stays on the access; once the
    host faults the page in, re-entry repeats the access and it works."""
    with Guest.build(machine, access(ins, ipa & ~7 if "#5" in ins else ipa)) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        stage2_exit(ex, EC_DABT_LOW, ipa)
        assert g.pc() == g.label("access")
        g.fault_in(ipa & ~0xFFF)
        finish(g)
        if ins.startswith("str"):
            assert g.peek(ipa, 8) == VALUE.to_bytes(8, "little")
        else:
            assert g.gpr(6) == 0
    ok(machine)


def test_data_abort_destroyed(machine: Machine) -> None:
    """An access to a DESTROYED page: the same non-emulatable exit, again on every re-entry."""
    with Guest.build(machine, access("ldr x6, [x1]", UNASSIGNED)) as g:
        g.destroy_page(UNASSIGNED)
        for _ in range(2):
            x0, ex = g.enter()
            assert x0 == SUCCESS
            stage2_exit(ex, EC_DABT_LOW, UNASSIGNED)
            assert g.pc() == g.label("access")


@pytest.mark.parametrize("suffix, size_log2", SIZES)
def test_mmio_write(machine: Machine, suffix: str, size_log2: int) -> None:
    """A 1/2/4/8-byte store to an unmapped unprotected IPA: emulatable abort exit with SAS, SF
    (8 bytes only), WnR and gprs[0] = the stored value masked to the size; EMUL_MMIO on the next
    entry moves the PC past the store (A4.4) and leaves the registers alone."""
    ipa = MMIO + 0x7F8
    with Guest.build(machine, access(f"str{suffix} x5, [x1]", ipa)) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        mmio_exit(ex, ipa, size_log2, True, VALUE)
        assert g.pc() == g.label("access")
        finish(g, EMUL_MMIO)
        assert (g.gpr(5), g.gpr(6)) == (VALUE, (1 << 64) - 1)


@pytest.mark.parametrize("suffix, size_log2", SIZES)
def test_mmio_read(machine: Machine, suffix: str, size_log2: int) -> None:
    """A 1/2/4/8-byte load from an unmapped unprotected IPA: emulatable abort exit (WnR clear,
    gprs[0] = 0); EMUL_MMIO completes it: the register gets enter.gprs[0] masked to the access
    size (zero-extended) and the PC moves on (A4.2.3)."""
    ipa = MMIO + 0x10
    with Guest.build(machine, access(f"ldr{suffix} x6, [x1]", ipa)) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        mmio_exit(ex, ipa, size_log2, False)
        finish(g, EMUL_MMIO, (HOST_VALUE,))
        assert g.gpr(6) == HOST_VALUE & ((1 << (8 << size_log2)) - 1)


def test_mmio_read_to_xzr_writes_no_register(machine: Machine) -> None:
    """An emulated load to XZR (SRT 31), followed by `orr x6, xzr, xzr`: the exit is the same
    emulatable abort, and EMUL_MMIO with a host value moves the PC past the load and writes no
    register, as AArch64 discards a load to XZR: X6 reads 0 from XZR, and the other registers
    are as before (docs/deviations.md, the EMUL_MMIO row, says so of rmm-mp and TF-RMM)."""
    ipa = MMIO + 0x10
    with Guest.build(machine, access("ldr xzr, [x1]\n        orr x6, xzr, xzr", ipa)) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        mmio_exit(ex, ipa, 3, False)
        before = [g.gpr(n) for n in range(31)]
        finish(g, EMUL_MMIO, (HOST_VALUE,))
        assert [g.gpr(n) for n in range(31)] == before[:6] + [0] + before[7:]
        assert before[6] == (1 << 64) - 1
    ok(machine)


def test_mmio_not_emulated(machine: Machine) -> None:
    """Entered without EMUL_MMIO the access is repeated (the same exit, PC unchanged); after the
    host maps an NS page there, the load reads it (A4.4: the host established a mapping)."""
    ipa = MMIO + 0x20
    with Guest.build(machine, access("ldr x6, [x1]", ipa)) as g:
        first = g.enter()
        assert first == g.enter() and g.pc() == g.label("access")
        g.map_unprotected(MMIO, bytes(0x20) + HOST_VALUE.to_bytes(8, "little"))
        finish(g)
        assert g.gpr(6) == HOST_VALUE
    ok(machine)


def test_mmio_write_lands_in_a_mapped_ns_page(machine: Machine) -> None:
    """A store to a mapped unprotected page does not exit: the NS page holds the value."""
    with Guest.build(machine, access("strw x5, [x1]", MMIO + 0x44)) as g:
        ns = g.map_unprotected(MMIO)
        finish(g)
        assert machine.ns_read(ns + 0x44, 8) == (VALUE & 0xFFFF_FFFF).to_bytes(8, "little")


@pytest.mark.parametrize("ins, s2ap, write", [("strw x5, [x1]", 0b01, True), ("ldrw x6, [x1]", 0b10, False)])
def test_permission_fault_at_assigned_ns_is_emulatable(machine: Machine, ins: str, s2ap: int, write: bool) -> None:
    """A4.3.4.3 (ACS exception_non_emulatable_da uses an ISV=0 access to the same mapping): an
    access to an ASSIGNED_NS page its S2AP does not allow (a store to a read-only mapping, a load
    from a write-only one) is a stage-2 permission fault with ISV set, so an emulatable abort
    exit: DFSC = permission fault at level 3 (0x0F), SAS, WnR, far = the offset, hpfar, gprs[0]
    the stored value; EMUL_MMIO then completes it (a load gets enter.gprs[0]) and the NS page
    is left as it was."""
    ipa = MMIO + 0x44
    with Guest.build(machine, access(ins, ipa)) as g:
        ns = g.map_unprotected(MMIO, b"\x5A" * GRANULE)
        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, MMIO, 3)[0] == SUCCESS
        desc = ns | 0b0110 << 2 | s2ap << 6
        assert g.smc(F.RMI_RTT_MAP_UNPROTECTED, g.realm.rd, MMIO, 3, desc)[0] == SUCCESS
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_SYNC)
        assert ex["esr"] == (EC_DABT_LOW << 26) | ISV | (2 << 22) | (WNR if write else 0) | 0x0F, hex(ex["esr"])
        assert (ex["far"], ex["hpfar"]) == (ipa & 0xFFF, (ipa >> 8) & ~0xF)
        assert ex["gprs"] == ((VALUE & 0xFFFF_FFFF) if write else 0,) + (0,) * 30
        assert g.pc() == g.label("access")
        finish(g, EMUL_MMIO, (HOST_VALUE,))
        assert g.gpr(6) == ((1 << 64) - 1 if write else HOST_VALUE & 0xFFFF_FFFF)
        assert machine.ns_read(ns, GRANULE) == b"\x5A" * GRANULE
    ok(machine)


# -- EMUL_MMIO and INJECT_SEA -----------------------------------------------------------------------

@pytest.mark.parametrize("before", ["first entry", "irq exit", "protected abort", "completed mmio"])
def test_emul_mmio_without_emulatable_abort(machine: Machine, before: str) -> None:
    """rec_mmio (B4.3.14, A4.2.3): EMUL_MMIO when the last exit was not an emulatable data abort
    -> ERROR_REC, and the REC does not run (PC unchanged)."""
    first = {"first entry": "nop", "irq exit": "wfi", "protected abort": f"mov x2, ={UNASSIGNED}\nldr x7, [x2]",
             "completed mmio": "str x5, [x1]"}[before]
    with Guest.build(machine, access(first + "\nwfi", MMIO)) as g:
        if before != "first entry":
            x0, ex = g.enter()
            assert x0 == SUCCESS
            if before == "completed mmio":
                x0, ex = g.enter(EMUL_MMIO)
                assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
        pc = g.pc()
        assert g.enter(EMUL_MMIO)[0] == RMI_ERROR_REC
        assert g.pc() == pc


def data_sea_syndrome(esr: int, register: int, size_log2: int, write: bool) -> None:
    """An SEA for a data access keeps the access's syndrome, as TF-RMM's calc_esr_idabort
    copies it from ESR_EL2: IL, ISV, SAS, SRT, SF and WnR, with EC 0x25, DFSC SEA and EA set
    (A5.2.7: ESR_EL1.EA == 1 for every SEA taken to a realm)."""
    assert esr == ((EC_DABT_CUR << 26) | (1 << 25) | ISV | (size_log2 << 22) | (register << 16)
                   | (SF if size_log2 == 3 else 0) | (WNR if write else 0) | EA | FSC_SEA), hex(esr)


@pytest.mark.parametrize("flags", [INJECT_SEA, INJECT_SEA | EMUL_MMIO])
@pytest.mark.parametrize("ins, register, size_log2, write", [
    ("ldr x6, [x1]", 6, 3, False), ("strh x5, [x1]", 5, 1, True), ("strw x5, [x1]", 5, 2, True)])
def test_inject_sea_after_mmio(machine: Machine, flags: int, ins: str, register: int, size_log2: int,
                               write: bool) -> None:
    """INJECT_SEA after an emulatable abort: the realm takes an SEA at the access (EC 0x25, DFSC
    0x10, FAR = the IPA, ELR = the access, the access's syndrome: a store's has WnR set);
    EMUL_MMIO is ignored with it (A4.2.3)."""
    ipa = MMIO + 0x30
    with Guest.build(machine, access(ins, ipa)) as g:
        assert g.enter()[1]["exit_reason"] == EXIT_SYNC
        took_exception(g, flags, EC_DABT_CUR, ipa, g.label("access"))
        data_sea_syndrome(g.gpr(20), register, size_log2, write)
        assert g.gpr(6) == (1 << 64) - 1


@pytest.mark.parametrize("flags", [INJECT_SEA, INJECT_SEA | EMUL_MMIO])
@pytest.mark.parametrize("before", ["first entry", "irq exit", "protected abort"])
def test_inject_sea_without_unprotected_abort(machine: Machine, before: str, flags: int) -> None:
    """INJECT_SEA never fails REC_ENTER; unless the last exit was a data abort at an unprotected
    IPA no SEA is taken: the REC runs on (or repeats its protected access, exiting again).
    EMUL_MMIO is ignored with INJECT_SEA (A4.2.3) even here, where B4.3.14's rec_mmio alone
    would fail the command (docs/deviations.md)."""
    first = {"first entry": "nop", "irq exit": "wfi", "protected abort": f"mov x2, ={UNASSIGNED}\nldr x7, [x2]"}[before]
    with Guest.build(machine, access(first, MMIO)) as g:
        if before != "first entry":
            assert g.enter()[0] == SUCCESS
        x0, ex = g.enter(flags)
        if before == "protected abort":
            assert x0 == SUCCESS
            stage2_exit(ex, EC_DABT_LOW, UNASSIGNED)
        else:
            stopped_at(g, "done", x0, ex)


# -- SEAs the realm takes without an exit (A5.2.3, A5.2.6, A5.2.7) -----------------------------------------

@pytest.mark.parametrize("ins, ipa, syndrome", [
    ("ldr x6, [x1]", EMPTY_IPA + 0x18, (6, 3, False)),          # protected, RIPAS EMPTY
    ("strh x5, [x1]", EMPTY_IPA + 0x2A, (5, 1, True)),
])
def test_sea_in_realm(machine: Machine, ins: str, ipa: int, syndrome: tuple[int, int, bool]) -> None:
    """A data access to RIPAS EMPTY: the realm takes an SEA (EC 0x25, DFSC 0x10, FAR = the IPA,
    ELR = the access, the access's syndrome), no exit."""
    with Guest.build(machine, access(ins, ipa)) as g:
        took_exception(g, 0, EC_DABT_CUR, ipa, g.label("access"))
        data_sea_syndrome(g.gpr(20), *syndrome)
        assert g.gpr(6) == (1 << 64) - 1


@pytest.mark.parametrize("ins, ipa, write", [
    ("ldr x6, [x1]", (1 << IPA_WIDTH) + 0x20, False),
    ("ldrb x6, [x1]", (1 << 63) + 0x21, False),
    ("str x5, [x1]", (1 << IPA_WIDTH) + 0x28, True),
    ("strb x5, [x1]", (1 << 52) + 0x3, True),
    ("br x1", (1 << IPA_WIDTH) + 0x40, False),
    ("br x1", (1 << 63) + 0x40, False),
])
def test_address_size_fault_outside_the_ipa_space(machine: Machine, ins: str, ipa: int, write: bool) -> None:
    """A5.2.8 (ACS mm_realm_access_outside_ipa, its stage-1-off half): with stage 1 off, an
    access or fetch at an IPA outside the realm's IPA space is a stage 1 level 0 address size
    fault taken to the realm, not an SEA: EC 0x25 (0x21 for a fetch), IL, WnR for a store, DFSC
    0x00, no ISV and no EA; FAR = the IPA, ELR = the access (the fetch's target); no exit. (It
    used to be an SEA, as TF-RMM rel0 injects for an IPA below the PA range.)"""
    fetch = ins.startswith("br")
    with Guest.build(machine, access(ins, ipa)) as g:
        ec = EC_IABT_CUR if fetch else EC_DABT_CUR
        took_exception(g, 0, ec, ipa, ipa if fetch else g.label("access"), fsc=0x00)
        assert g.gpr(20) == (ec << 26) | (1 << 25) | (WNR if write else 0) | 0x00, hex(g.gpr(20))
        assert g.gpr(6) == (1 << 64) - 1


FSC_GPF = 0x28
"""DFSC of a granule protection fault not on a translation table walk (ESR_EL2, FEAT_RME)."""


def gpf_target(g: Guest, kind: str) -> int:
    """Map MMIO to a PA outside the Non-secure PAS: an NS page the host then delegates (DELEGATE
    of a page mapped unprotected succeeds: the RMM does not track NS mappings), or a granule of
    the platform's Secure range (RTT_MAP_UNPROTECTED takes any PA). The PA."""
    if kind == "delegated":
        pa = g.map_unprotected(MMIO)
        assert g.smc(F.RMI_GRANULE_DELEGATE, pa)[0] == SUCCESS
        return pa
    pa = g.machine.platform.secure[0].base
    assert map_unprotected(g.cpu, g.alloc, g.realm, MMIO, pa)
    return pa


@pytest.mark.parametrize("kind", ["delegated", "secure"])
@pytest.mark.parametrize("ins, ipa, syndrome", [
    ("ldr x6, [x1]", MMIO + 8, (6, 3, False)),
    ("strh x5, [x1]", MMIO + 0x2A, (5, 1, True)),
    ("ldp x6, x7, [x1]", MMIO + 0x40, None),
])
def test_gpf_through_an_unprotected_mapping_exits(machine: Machine, kind: str, ins: str, ipa: int,
                                                  syndrome: tuple[int, int, bool] | None) -> None:
    """A data access through an unprotected mapping whose PA is not in the Non-secure PAS (an NS
    page delegated while mapped, or a Secure granule) faults on the granule protection check: a
    Data Abort taken to R-EL2, so a REC exit due to Data Abort (A4.3.4's table, A5.2.6, A5.2.9:
    the realm gets an SEA only if the host injects one), as TF-RMM rel0 gives it. The exit has
    EC 0x24 and DFSC 0x28 (GPF) and hpfar = the IPA's page; it is no emulatable abort (A4.3.4.3
    lists none for a GPF), so no ISV, far and gprs zero, and EMUL_MMIO after it fails with
    ERROR_REC. The PC stays at the access, nothing reaches the page, and INJECT_SEA on the next
    entry makes the realm take the SEA at the access with the access's syndrome (A4.2.3).
    (rmm-mp used to inject the SEA at once, with no REC exit.)"""
    with Guest.build(machine, access(ins, ipa)) as g:
        pa = gpf_target(g, kind)
        before = bytes(machine.memory.buf[pa - machine.dram_base:pa - machine.dram_base + GRANULE])
        x0, ex = g.enter(exit_fill=0xFF)
        assert x0 == SUCCESS
        raw = machine.ns_read(g.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size)
        hpfar = (ipa >> 8) & ~0xF
        esr = (EC_DABT_LOW << 26) | FSC_GPF
        assert raw == bytes(RMI_REC_EXIT.pack(exit_reason=EXIT_SYNC, esr=esr, hpfar=hpfar)), \
            {k: v for k, v in ex.items() if v}
        assert g.pc() == g.label("access")
        assert g.enter(EMUL_MMIO)[0] == RMI_ERROR_REC
        assert g.pc() == g.label("access")
        took_exception(g, INJECT_SEA, EC_DABT_CUR, ipa, g.label("access"))
        if syndrome is None:        # ldp: ISV clear, no register in the syndrome (WnR clear)
            assert g.gpr(20) == (EC_DABT_CUR << 26) | (1 << 25) | EA | FSC_SEA, hex(g.gpr(20))
        else:
            data_sea_syndrome(g.gpr(20), *syndrome)
        assert (g.gpr(6), g.gpr(7)) == ((1 << 64) - 1, 0)
        assert bytes(machine.memory.buf[pa - machine.dram_base:pa - machine.dram_base + GRANULE]) == before
        if kind == "delegated":
            assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
    ok(machine)


def test_unprotected_mapping_of_mmio_pa_is_an_sea_in_the_realm(machine: Machine) -> None:
    """An unprotected mapping of a PA outside DRAM (the platform's MMIO range: no device is
    modelled there) is no GPF: the realm takes an SEA at once, with no REC exit
    (docs/deviations.md, "From the specification"), the access's syndrome kept."""
    with Guest.build(machine, access("ldr x6, [x1]", MMIO + 8)) as g:
        assert map_unprotected(g.cpu, g.alloc, g.realm, MMIO, machine.platform.mmio[0].base)
        took_exception(g, 0, EC_DABT_CUR, MMIO + 8, g.label("access"))
        data_sea_syndrome(g.gpr(20), 6, 3, False)
    ok(machine)


# -- instruction fetch ---------------------------------------------------------------------------------

def test_fetch_unassigned_ram(machine: Machine) -> None:
    """ACS exception_rec_exit_ia: a branch to unassigned RAM: SYNC exit EC 0x20 (instruction
    abort from a lower EL), a translation fault, far 0, hpfar (A4.3.4.2), PC at the target.
    Faulted in (a zero page: NOPs), re-entry runs it and exits for the next page."""
    with Guest.build(machine, access("br x1", UNASSIGNED)) as g:
        x0, ex = g.enter()
        assert x0 == SUCCESS
        stage2_exit(ex, EC_IABT_LOW, UNASSIGNED)
        assert g.pc() == UNASSIGNED
        g.fault_in(UNASSIGNED)
        x0, ex = g.enter()
        assert x0 == SUCCESS
        stage2_exit(ex, EC_IABT_LOW, UNASSIGNED + GRANULE)
        assert g.pc() == UNASSIGNED + GRANULE
    ok(machine)


def test_fetch_destroyed(machine: Machine) -> None:
    """A branch to a DESTROYED page: SYNC exit EC 0x20."""
    with Guest.build(machine, access("br x1", UNASSIGNED)) as g:
        g.destroy_page(UNASSIGNED)
        x0, ex = g.enter()
        assert x0 == SUCCESS
        stage2_exit(ex, EC_IABT_LOW, UNASSIGNED)


@pytest.mark.parametrize("target, mapped", [(MMIO + 0x40, ""), (MMIO + 0x40, "ns"), (MMIO + 0x40, "delegated"),
                                            (MMIO + 0x40, "secure"), (EMPTY_IPA + 0x40, "")])
def test_fetch_sea(machine: Machine, target: int, mapped: str) -> None:
    """A branch to an unprotected IPA (unmapped, mapped to an NS page, or mapped to a PA outside
    the NS PAS, whose data accesses exit with a GPF) or to RIPAS EMPTY: the realm takes an SEA
    (EC 0x21, IL, EA (A5.2.7), IFSC 0x10, FAR = ELR = the target), no exit (A5.2.6: "Realm
    instruction fetch from an Unprotected IPA causes a Synchronous External Abort taken to the
    Realm")."""
    with Guest.build(machine, access("br x1", target)) as g:
        if mapped == "ns":
            g.map_unprotected(MMIO)
        elif mapped:
            gpf_target(g, mapped)
        took_exception(g, 0, EC_IABT_CUR, target, target)
        assert g.gpr(20) == (EC_IABT_CUR << 26) | (1 << 25) | EA | FSC_SEA, hex(g.gpr(20))


# -- time slice, WFI, WFE, HVC --------------------------------------------------------------------------

def test_time_slice_irq() -> None:
    """With a time slice of 1000 instructions a counting loop exits with IRQ (esr 0) after exactly
    1000 instructions: 500 iterations of 2 instructions per entry, resumed where it stopped."""
    with Machine.create("host", cpus=1, time_slice=1000) as m:
        with Guest.build(m, "loop:\nadd x5, x5, #1\nb loop") as g:
            for n in (1, 2, 3):
                x0, ex = g.enter()
                assert (x0, ex["exit_reason"], ex["esr"]) == (SUCCESS, EXIT_IRQ, 0)
                assert (g.gpr(5), g.pc()) == (500 * n, CODE)
        ok(m)


SLICE = 101
COUNTED = """
    adr x9, vectors
    msr vbar, x9
    mov x1, ={target}
    adr x30, after
    {prefix}
    {access}
after:
loop:
    add x5, x5, #1
    b loop
    .org 0x800
vectors:
    .org 0xA00          // vbar + 0x200: back to x30
    msr elr, x30
    eret
"""


@pytest.mark.parametrize("prefix", ["", "nop"])
@pytest.mark.parametrize("access, target, steps", [
    ("ldr x6, [x1]", EMPTY_IPA + 1, 1),          # misaligned: the interpreter takes it
    ("ldr x6, [x1]", EMPTY_IPA, 1),              # RIPAS EMPTY: the RMM injects an SEA
    ("strb x6, [x1]", 1 << IPA_WIDTH, 1),        # outside the IPA space: an address size fault
    ("udf", 0, 1),
    ("hvc #0", 0, 1),
    ("br x1", EMPTY_IPA, 2),                      # br, then the fetch that takes an SEA
    ("br x1", 4, 2),                              # br, then the misaligned PC
])
def test_time_slice_counts_an_exception_as_one_instruction(prefix: str, access: str, target: int,
                                                           steps: int) -> None:
    """The time slice counts every exception the realm takes as one instruction (the one that
    took it), whether the interpreter takes it (misaligned, udf) or the RMM injects it (an SEA),
    and wherever it stands in the slice: the counting loop after it gets what is left, exactly.
    (An SEA used to count only when it was the first instruction after an earlier event.)"""
    with Machine.create("host", cpus=1, time_slice=SLICE) as m:
        program = COUNTED.format(target=target, prefix=prefix, access=access)
        with Guest.build(m, program) as g:
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
            # adr, msr, mov =, adr: 10 instructions; the prefix; the access; msr elr and eret
            left = SLICE - 10 - len(prefix.split()) - steps - 2
            assert (g.gpr(5), g.pc()) == ((left + 1) // 2, g.label("loop") + 8 * (left % 2))
        ok(m)


def test_wfi_untrapped(machine: Machine) -> None:
    """WFI with TRAP_WFI clear: the PE sleeps until an interrupt the host takes: an IRQ exit,
    PC past the WFI."""
    with Guest.build(machine, "first: wfi\ndone: wfi\nb done") as g:
        x0, ex = g.enter(TRAP_WFE)
        stopped_at(g, "first", x0, ex)
        finish(g)


@pytest.mark.parametrize("ins, flags, ti", [("wfi", TRAP_WFI, 0), ("wfe", TRAP_WFE, 1)])
def test_wfx_trapped(machine: Machine, ins: str, flags: int, ti: int) -> None:
    """WFI / WFE with its trap flag: SYNC exit with EC 0x01 and ISS.TI = 0 / 1, every other
    field zero (A4.3.4.1), PC past the instruction."""
    with Guest.build(machine, f"nop\n{ins}\nafter:\nnop\ndone: wfi\nb done") as g:
        x0, ex = g.enter(flags)
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_SYNC)
        assert (ex["esr"] >> 26, ex["esr"] & 1) == (EC_WFX, ti), hex(ex["esr"])
        assert (ex["far"], ex["hpfar"], ex["gprs"]) == (0, 0, (0,) * 31)
        assert g.pc() == g.label("after")
        finish(g)


def test_wfe_untrapped_is_a_nop(machine: Machine) -> None:
    """WFE with TRAP_WFE clear does not exit (TRAP_WFI does not trap it): the WFI after it does."""
    with Guest.build(machine, "wfe\nwfe\ndone: wfi\nb done") as g:
        x0, ex = g.enter(TRAP_WFI)
        assert (x0, ex["exit_reason"], ex["esr"] >> 26) == (SUCCESS, EXIT_SYNC, EC_WFX)
        assert g.pc() == g.label("done") + 8


def test_hvc_is_undefined_in_realm(machine: Machine) -> None:
    """ACS exception_rec_exit_hvc: HVC is an Unknown exception taken to the realm (A4.5): EC 0,
    ELR = the HVC; no exit."""
    with Guest.build(machine, access("hvc #0", 0)) as g:
        took_exception(g, 0, 0, 0, g.label("access"))


# -- RIPAS_CHANGE, HOST_CALL, PSCI exits, and the A4.3.1 rule --------------------------------------------------

EXITS = {
    "time slice": ("loop:\nadd x5, x5, #1\nb loop", 0),
    "wfi": ("wfi", 0),
    "trapped wfe": ("wfe", TRAP_WFE),
    "mmio write": (f"mov x1, ={MMIO + 0x10}\nmov x5, ={VALUE}\nstrh x5, [x1]", 0),
    "data abort": (f"mov x1, ={UNASSIGNED}\nstr x5, [x1]", 0),
    "fetch abort": (f"mov x1, ={UNASSIGNED}\nbr x1", 0),
    "ripas change": (f"mov x1, ={UNASSIGNED}\nmov x2, ={UNASSIGNED + 0x3000}\nmov x3, #0\nmov x4, #1\n"
                     "mov x0, =RSI_IPA_STATE_SET\nsmc #0", 0),
    "host call": ("adr x1, hc\nmov x0, =RSI_HOST_CALL\nsmc #0\n.org 0x1000\nhc:\n.half 0x2345\n.half 0xFFFF\n"
                  ".word 0xFFFFFFFF\n.quad 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, "
                  "22, 23, 24, 25, 26, 27, 28, 29, 30, 31", 0),
    "psci cpu_on": (f"mov x1, #1\nmov x2, ={CODE}\nmov x3, #77\nmov x0, =PSCI_CPU_ON\nsmc #0", 0),
    "psci cpu_suspend": ("mov x1, #1\nmov x2, #2\nmov x3, #3\nmov x0, =PSCI_CPU_SUSPEND_SMC32\nsmc #0", 0),
}


@pytest.mark.parametrize("name", list(EXITS))
def test_exit_fields_zero_where_not_set(machine: Machine, name: str) -> None:
    """A4.3.1: "On REC exit, all exit fields are zero unless specified otherwise". The exit half of
    the run page is filled with 0xFF before entry; afterwards it must be exactly the RmiRecExit
    holding the reason's own fields (A4.3.4..A4.3.9; esr as reported) and zeros elsewhere,
    reserved bytes and the GIC fields of a zero entry included."""
    program, flags = EXITS[name]
    with Guest.build(machine, program, num_recs=2) as g:
        x0, ex = g.enter(flags, exit_fill=0xFF)
        assert x0 == SUCCESS
        raw = machine.ns_read(g.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size)
        fields = {"exit_reason": ex["exit_reason"], "esr": ex["esr"]}
        if name in ("mmio write", "data abort", "fetch abort"):
            ipa = MMIO + 0x10 if name == "mmio write" else UNASSIGNED
            fields.update(far=ipa & 0xFFF if name == "mmio write" else 0, hpfar=(ipa >> 8) & ~0xF)
            fields.update(gprs=(VALUE & 0xFFFF,) if name == "mmio write" else ())
        elif name == "ripas change":
            fields.update(ripas_base=UNASSIGNED, ripas_top=UNASSIGNED + 0x3000, ripas_value=0)
        elif name == "host call":
            fields.update(imm=0x2345, gprs=tuple(range(1, 32)))
        elif name.startswith("psci"):
            fields.update(gprs=(0xC400_0003, 1) if name == "psci cpu_on" else (0x8400_0001,))
        expected = {"time slice": EXIT_IRQ, "wfi": EXIT_IRQ, "ripas change": EXIT_RIPAS_CHANGE,
                    "host call": EXIT_HOST_CALL}.get(name, EXIT_PSCI if name.startswith("psci") else EXIT_SYNC)
        assert ex["exit_reason"] == expected
        assert (ex["esr"] == 0) == (expected != EXIT_SYNC)
        assert raw == bytes(RMI_REC_EXIT.pack(**fields)), {k: v for k, v in ex.items() if v}


# -- a REC resumed on another CPU ---------------------------------------------------------------------

def test_rec_resumes_on_another_cpu() -> None:
    """The REC's state lives in its granule: a counting loop stopped by the time slice on CPU 0
    continues on CPU 1 and back, 500 iterations per entry whichever CPU runs it; an MMIO read
    that exits on CPU 1 is completed by EMUL_MMIO on CPU 0."""
    with Machine.create("host", cpus=2, time_slice=1000) as m:
        with Guest.build(m, "loop:\nadd x5, x5, #1\nb loop") as g:
            for n, cpu in enumerate((0, 1, 0, 1), start=1):
                x0, ex = g.enter(cpu=cpu)
                assert (x0, ex["exit_reason"], g.gpr(5), g.pc()) == (SUCCESS, EXIT_IRQ, 500 * n, CODE)
        with Guest.build(m, access("ldr x6, [x1]", MMIO + 8)) as g:
            x0, ex = g.enter(cpu=1)
            assert x0 == SUCCESS
            mmio_exit(ex, MMIO + 8, 3, False)
            finish(g, EMUL_MMIO, (HOST_VALUE,), cpu=0)
            assert g.gpr(6) == HOST_VALUE
        ok(m)

# -- exact syndromes (regressions: IL, WnR and the fault level once leaked into exits) -------------

UNASSIGNED_L3 = CODE + 0x10_0000     # walk ends at level 3 (the image's level-3 table)
UNASSIGNED_L2 = CODE + 0x30_0000     # walk ends at level 2 (a RAM block entry)
MMIO = UNPROTECTED + 0x3000


@pytest.fixture
def slice_machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=2000) as m:
        yield m


def walk_level(g: Guest, ipa: int) -> int:
    x0, level = g.smc(0xC400_0161, g.realm.rd, ipa, 3)[:2]    # RMI_RTT_READ_ENTRY
    assert x0 == 0
    return level


@pytest.mark.parametrize("ipa", [UNASSIGNED_L3, UNASSIGNED_L2])
def test_data_abort_exit_esr_exact(slice_machine: Machine, ipa: int) -> None:
    """A4.3.4.3 + TF-RMM ESR_NONEMULATED_ABORT_MASK: a non-emulatable abort at a protected IPA
    propagates EC, SET, FnV, EA and DFSC only: esr = 0x24 << 26 | (0x04 + walk level).
    (Once IL (bit 25) and WnR (bit 6) leaked, and the DFSC named the start level.)"""
    with Guest.build(slice_machine, f"mov x1, ={ipa}\nstr x5, [x1]") as g:
        x0, ex = g.enter()
        assert x0 == 0
        assert ex["esr"] == (0x24 << 26) | (0x04 + walk_level(g, ipa)), hex(ex["esr"])


def test_mmio_exit_esr_exact(slice_machine: Machine) -> None:
    """A4.3.4.3 + TF-RMM ESR_EMULATED_ABORT_MASK: an emulatable abort propagates EC, SET, FnV,
    EA, DFSC, ISV, SAS, SF, WnR; not IL. With the unprotected level-3 table present (another
    page mapped next to it) DFSC is a level-3 translation fault: esr = 0x93C08047 for an
    8-byte store. Observed: 0x93C08045 (IL set, DFSC level 1)."""
    with Guest.build(slice_machine, f"mov x1, ={MMIO + 0x1000}\nstr x5, [x1]") as g:
        g.map_unprotected(MMIO)
        x0, ex = g.enter()
        assert walk_level(g, MMIO + 0x1000) == 3
        assert ex["esr"] == (0x24 << 26) | 1 << 24 | 3 << 22 | 1 << 15 | 1 << 6 | 0x07, hex(ex["esr"])


def test_instruction_abort_exit_esr_exact(slice_machine: Machine) -> None:
    """A4.3.4.2 + TF-RMM handle_instruction_abort (esr & ESR_NONEMULATED_ABORT_MASK):
    esr = 0x20 << 26 | 0x07 for a fetch from unassigned RAM whose walk ends at level 3.
    Observed: 0x82000005 (IL set, level 1)."""
    with Guest.build(slice_machine, f"mov x1, ={UNASSIGNED_L3}\nbr x1") as g:
        x0, ex = g.enter()
        assert ex["esr"] == (0x20 << 26) | 0x07, hex(ex["esr"])


@pytest.mark.parametrize("ins, flags, esr", [("wfi", 4, 0x01 << 26), ("wfe", 8, 0x01 << 26 | 1)])
def test_wfx_exit_esr_exact(slice_machine: Machine, ins: str, flags: int, esr: int) -> None:
    """A4.3.4.1 + TF-RMM (esr & (EC | TI)): exit.esr holds EC and ISS.TI only.
    Observed: IL set (0x06000000 / 0x06000001)."""
    with Guest.build(slice_machine, ins) as g:
        x0, ex = g.enter(flags)
        assert ex["esr"] == esr, hex(ex["esr"])


@pytest.mark.parametrize("fid", [0xC400_0001, 0x8400_0001])
def test_cpu_suspend_zeroes_x1_to_x3(slice_machine: Machine, fid: int) -> None:
    """rsi-attest 1.2 / TF-RMM psci_cpu_suspend (UPDATE_REC_EXIT_TO_HOST with a zeroed result
    record): after the CPU_SUSPEND notification the realm resumes with X0 = SUCCESS and
    X1..X3 = 0. Observed: X1..X3 keep the call's arguments (7, 8, 9)."""
    with Guest.build(slice_machine, f"mov x1, #7\nmov x2, #8\nmov x3, #9\nmov x0, ={fid}\nsmc #0\ndone: wfi\nb done") as g:
        assert g.enter()[1]["exit_reason"] == 3
        g.enter()
        assert [g.gpr(n) for n in range(4)] == [0, 0, 0, 0]


# -- TLB invalidation by another CPU while the REC runs (hw/tlb.py, guest/interpreter.py) ----------

STORE_LOOP = """
    mov x1, ={ipa}
    mov x3, #1
loop:
    str x3, [x1]
    add x3, x3, #1
    b loop
"""


@pytest.mark.parametrize("change", ["data_destroy", "unmap_unprotected"])
def test_invalidation_by_another_cpu_is_seen_at_the_next_sync_point(change: str) -> None:
    """A REC on CPU 1 stores a counter to a page in a loop (a taken branch, so a sync point,
    every 3 instructions) with a time slice far longer than the test. CPU 0 removes the mapping
    (DATA_DESTROY of the protected page, or UNMAP_UNPROTECTED of an NS page) once the counter
    moves. When that command returns, the page holds its last value (zeros, wiped, for the
    DATA granule) and never changes again: the REC's next store took the new translation and
    exited (a non-emulatable abort on the now DESTROYED IPA, or an emulatable one on the
    unmapped unprotected IPA), long before its time slice could end. A CPU that acknowledged the
    TLBI while keeping its cached translation would write the page after the command returned;
    one that synced only at the end of the slice would exit with IRQ."""
    ipa = UNASSIGNED if change == "data_destroy" else MMIO
    with Machine.create("host", cpus=2, time_slice=50_000_000) as m:
        with Guest.build(m, STORE_LOOP.format(ipa=ipa)) as g:
            pa = g.fault_in(ipa) if change == "data_destroy" else g.map_unprotected(ipa)
            offset = pa - m.dram_base
            exits: list[tuple[int, dict]] = []
            runner = threading.Thread(target=lambda: exits.append(g.enter(cpu=1)))
            runner.start()
            deadline = time.monotonic() + 60
            while m.memory.buf[offset:offset + 8] == bytes(8) and time.monotonic() < deadline:
                time.sleep(0.001)           # let the REC's thread run until it has stored
            if change == "data_destroy":
                x0 = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, ipa)[0]
            else:
                x0 = g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, ipa, 3)[0]
            after = bytes(m.memory.buf[offset:offset + GRANULE])
            runner.join(60)
            assert x0 == SUCCESS and not runner.is_alive()
            assert bytes(m.memory.buf[offset:offset + GRANULE]) == after
            x0, ex = exits[0]
            assert (x0, ex["exit_reason"], ex["hpfar"]) == (SUCCESS, EXIT_SYNC, (ipa >> 8) & ~0xF)
            if change == "data_destroy":
                assert after == bytes(GRANULE)
                assert ex["esr"] == (EC_DABT_LOW << 26) | 0x07         # no ISV: DESTROYED, level 3
                assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
                g.alloc.free(pa)
            else:
                assert int.from_bytes(after[:8], "little") > 0
                assert ex["esr"] == (EC_DABT_LOW << 26) | ISV | 3 << 22 | SF | WNR | 0x07
                assert ex["far"] == ipa & 0xFFF
        report = invariants(m)
        assert report.ok, str(report)


def test_entries_of_two_realms_on_one_cpu_see_only_their_own_state(machine: Machine) -> None:
    """Each CPU runs its RECs on one RealmCall and GuestState (RmmCpu.realm_call), refilled by
    every entry: realm A sets every register, the four saved system registers and the flags,
    and exits with a host call; realm B, entered next on the same CPU, reads its system
    registers and branches on Z: it saves only its own values (zero, Z clear). A, entered again
    with the host's results, goes on with its own registers (X17..X30) and flags."""
    regs = "\n".join(f"mov x{n}, ={0xA000 + n}" for n in range(31))
    with Guest.build(machine, f"""
            adr x9, vectors
            msr vbar, x9
            mov x9, =0x1234
            msr elr, x9
            msr esr, x9
            msr far, x9
            {regs}
            mov x1, =host_call
            mov x0, =RSI_HOST_CALL
            cmp x0, x0          // Z set
            smc #0
            b.ne done           // not taken while A's Z survives
            mov x0, =7
        done:
            wfi
            b done
            .org 0x800
        vectors:
            b vectors
            .org 0x1000
        host_call:              // RsiHostCall, in the image's second page
            .quad 0
        """) as a, Guest.build(machine, """
            mrs x1, vbar
            mrs x2, elr
            mrs x3, esr
            mrs x4, far
            b.eq done           // taken if Z leaked from A
            mov x5, =5
        done:
            wfi
            b done
        """) as b:
        x0, ex = a.enter()
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_HOST_CALL), ex
        x0, ex = b.enter()
        stopped_at(b, "done", x0, ex)
        assert [b.gpr(n) for n in range(31)] == [0] * 5 + [5] + [0] * 25
        assert b.rec().pstate >> 28 == 0
        x0, ex = a.enter()
        stopped_at(a, "done", x0, ex)
        assert [a.gpr(n) for n in (0, *range(17, 31))] == [7, *(0xA000 + n for n in range(17, 31))]
