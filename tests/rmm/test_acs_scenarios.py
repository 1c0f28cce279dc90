"""The Arm RMM ACS scenario suites (test/memory_management, test/exception), run against rmm-mp.

The ACS (release v1.0_REL0_12.24) has, besides its per-command tests, scenarios that run a
realm through a sequence: a RIPAS change the host completes, rejects or completes in part; an
access to protected memory in each HIPAS/RIPAS combination, by a load, a store and a fetch;
the boundary pages of the protected and the unprotected IPA halves; an emulated MMIO write
then read; an unprotected mapping with each host-chosen MemAttr; the realm's registers across
WFI/WFE/IRQ exits; the host touching a realm's page (a granule protection fault); the RTT
levels a walk goes through. Each test here names the ACS test
it mirrors and checks the same outcomes (exit reason and fields, the syndrome and fault address
the realm sees, RSI results, RTT entry states) with this project's guest ISA (docs/guest-isa.md)
and host (tests/realm_guests.py). Scenarios the ISA cannot express (stage 1, exclusive loads,
misaligned accesses that cross a page, timers, the GIC CPU interface, cacheability, the PMU) are
left out, except where an ldp/stp stands in: its data abort has ISV clear, as an exclusive
load's has, and an aligned pair at 0xFF8 in a page crosses into the next one. A few were
already covered by the per-command files and are not repeated.

Programs that take exceptions log them: the vector appends (ESR, FAR, ELR) to the table at
``log`` (X28 walks it) and resumes at the address in X27, which the program sets before each
access that should fault.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from realm_guests import CODE, EMPTY_IPA, GRANULE, UNPROTECTED, Guest
from rmm_mp import GranuleProtectionFault, Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_EXIT, RmiRecEnterFlags
from rmm_mp.check import invariants
from rmm_mp.host.realm import create_rtt_levels

SUCCESS, INPUT, REC_ERROR = 0, 1, 3
EXIT_SYNC, EXIT_IRQ, EXIT_RIPAS_CHANGE = 0, 1, 4
EMPTY, RAM, DESTROYED = 0, 1, 2
UNASSIGNED, ASSIGNED, TABLE = 0, 1, 2
ACCEPT = 0
EMUL_MMIO, INJECT_SEA = int(RmiRecEnterFlags.EMUL_MMIO), int(RmiRecEnterFlags.INJECT_SEA)
TRAP_WFI, TRAP_WFE = int(RmiRecEnterFlags.TRAP_WFI), int(RmiRecEnterFlags.TRAP_WFE)
EC_WFX, EC_IABT_LOW, EC_IABT_CUR, EC_DABT_LOW, EC_DABT_CUR = 0x01, 0x20, 0x21, 0x24, 0x25
IL, ISV, WNR, EA = 1 << 25, 1 << 24, 1 << 6, 1 << 9
SAS_WORD = 2 << 22
TTF_L3, PF_L3, SEA = 0x07, 0x0F, 0x10
TOP_PROTECTED = UNPROTECTED - GRANULE
"""The last page of the protected IPA half of a default Guest (ACS mm_protected_ipa_boundary)."""

LOGGING = """
    adr x9, vectors
    msr vbar, x9
    adr x28, log
"""
"""Install the logging vector; X28 = the next free (ESR, FAR, ELR) slot of ``log``."""
TAIL = """
done:
    wfi
    b done
    .org 0x800
vectors:
    .org 0xA00          // vbar + 0x200: log (ESR, FAR, ELR), resume at X27
    mrs x9, esr
    str x9, [x28]
    mrs x9, far
    str x9, [x28, #8]
    mrs x9, elr
    str x9, [x28, #16]
    add x28, x28, #24
    msr elr, x27
    eret
    .org 0x1000
log:
    .zero 0x1000
target:                 // CODE + 0x2000: three assigned (measured) RAM pages
    .zero 0x3000
"""
TARGET = CODE + 0x2000


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=2000) as m:
        yield m


def ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


def logged(g: Guest, n: int) -> list[tuple[int, int, int]]:
    """The first ``n`` (ESR, FAR, ELR) entries the vector logged."""
    raw = g.peek(g.label("log"), 24 * n)
    words = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
    return [tuple(words[i:i + 3]) for i in range(0, len(words), 3)]  # type: ignore[misc]


def entry(g: Guest, ipa: int) -> tuple[int, int, int]:
    """(walk level, HIPAS, RIPAS) of the RTT entry for ``ipa``."""
    x0, level, state, _, ripas = g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, ipa, 3)
    assert x0 == SUCCESS
    return level, state, ripas


def stopped(g: Guest, x0: int, ex: dict, label: str) -> None:
    """The entry ran to the WFI at ``label`` (an untrapped WFI: an IRQ exit)."""
    assert (x0, ex["exit_reason"], ex["esr"]) == (SUCCESS, EXIT_IRQ, 0), ex
    assert g.pc() == g.label(label) + 8


def set_ripas(g: Guest, base: int, top: int) -> int:
    """The host's RMI_RTT_SET_RIPAS over [base, top), creating the RTTs an (ERROR_RTT, level)
    answer asks for; returns the progress."""
    addr = base
    while addr < top:
        x0, out = g.smc(F.RMI_RTT_SET_RIPAS, g.realm.rd, g.rec_pa(), addr, top)[:2]
        if x0 != SUCCESS:
            assert x0 & 0xFF == 4 and x0 >> 8 < 3, hex(x0)
            create_rtt_levels(g.cpu, g.alloc, g.realm, addr, x0 >> 8, 3)
            continue
        assert addr < out <= top
        addr = out
    return addr


def exit_only(g: Guest, entered: tuple[int, dict], **fields: object) -> None:
    """``entered`` (X0 and the exit of an entry made with exit_fill=0xFF) succeeded and the exit
    half of the run page is exactly an RmiRecExit with ``fields`` and zeros elsewhere (the ACS
    validate_rec_exit_da/_ia: "all other exit fields are zero")."""
    x0, ex = entered
    assert x0 == SUCCESS
    raw = g.machine.ns_read(g.run + REC_EXIT_OFFSET, RMI_REC_EXIT.size)
    assert raw == bytes(RMI_REC_EXIT.pack(**fields)), {k: v for k, v in ex.items() if v}


# -- HIPAS x RIPAS: data and instruction accesses --------------------------------------------------

@pytest.mark.parametrize("destroy", [False, True], ids=["assigned-empty", "unassigned-empty"])
def test_ripas_empty_page_takes_sea_for_data_and_fetch(machine: Machine, destroy: bool) -> None:
    """ACS mm_hipas_assigned_ripas_empty_da_ia and mm_hipas_unassigned_ripas_empty_da_ia: the
    realm asks for RIPAS EMPTY on one of its assigned (measured) pages, the host completes it
    with RMI_RTT_SET_RIPAS (realm: X0 SUCCESS, X1 = top, ACCEPT; the entry stays ASSIGNED with
    RIPAS EMPTY); optionally the host then DATA_DESTROYs it, which leaves UNASSIGNED EMPTY (not
    DESTROYED: the RIPAS was EMPTY). Either way a 4-byte store there and a branch there make the
    realm take an SEA itself, no REC exit: EC 0x25 with the store's syndrome (ISV, SAS word,
    SRT 5, WnR), EA, DFSC 0x10, FAR = the IPA, ELR = the store; then EC 0x21, EA, IFSC 0x10,
    FAR = ELR = the IPA."""
    program = LOGGING + f"""
        adr x1, target
        mov x2, ={TARGET + GRANULE}
        mov x3, #{EMPTY}
        mov x4, #0
        mov x0, =RSI_IPA_STATE_SET
        smc #0
        mov x20, x0
        mov x21, x1
        mov x22, x2
    pause:
        wfi
        adr x1, target
        mov x5, #0x100
        adr x27, fetch
    store:
        strw x5, [x1]
    fetch:
        adr x27, done
        br x1
    """ + TAIL
    with Guest.build(machine, program) as g:
        assert g.label("target") == TARGET
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_RIPAS_CHANGE)
        assert (ex["ripas_base"], ex["ripas_top"], ex["ripas_value"]) == (TARGET, TARGET + GRANULE, EMPTY)
        assert set_ripas(g, TARGET, TARGET + GRANULE) == TARGET + GRANULE
        stopped(g, *g.enter(), "pause")
        assert (g.gpr(20), g.gpr(21), g.gpr(22)) == (SUCCESS, TARGET + GRANULE, ACCEPT)
        assert entry(g, TARGET) == (3, ASSIGNED, EMPTY)
        if destroy:
            x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, TARGET)[:2]
            assert x0 == SUCCESS
            assert g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
            assert entry(g, TARGET) == (3, UNASSIGNED, EMPTY)
        stopped(g, *g.enter(), "done")
        data_sea = (EC_DABT_CUR << 26) | IL | ISV | SAS_WORD | 5 << 16 | WNR | EA | SEA
        fetch_sea = (EC_IABT_CUR << 26) | IL | EA | SEA
        assert logged(g, 2) == [(data_sea, TARGET, g.label("store")), (fetch_sea, TARGET, TARGET)]
    ok(machine)


@pytest.mark.parametrize("ins, esr", [
    ("strw x5, [x1]", (EC_DABT_LOW << 26) | TTF_L3),      # exception_non_emulatable_da_2, mm_ripas_destroyed_da
    ("ldrw x6, [x1]", (EC_DABT_LOW << 26) | TTF_L3),      # exception_non_emulatable_da_3
    ("stp x5, x6, [x1]", (EC_DABT_LOW << 26) | TTF_L3),   # a pair (ISV=0): the same exit, no IL at a protected IPA
    ("ldp x6, x7, [x1]", (EC_DABT_LOW << 26) | TTF_L3),
    ("br x1", (EC_IABT_LOW << 26) | TTF_L3),              # mm_ripas_destroyed_ia
])
def test_destroyed_page_exit_is_exact(machine: Machine, ins: str, esr: int) -> None:
    """ACS exception_non_emulatable_da_2/_3, mm_ripas_destroyed_da/_ia: an assigned RAM page the
    host DATA_DESTROYs after activation is DESTROYED; a 4-byte store, a 4-byte load or a fetch
    there exits: SYNC, ESR = EC 0x24 (0x20 for the fetch) with a level-3 translation fault and
    nothing else (no ISV, SAS, WnR, IL, EA, SET, FnV, S1PTW), HPFAR = IPA[47:12] << 4, and
    every other exit field zero (the exit half was filled with 0xFF before the entry). An ldp or
    stp there, whose syndrome has ISV clear, exits the same way: A4.3.4.3 gives IL to the host
    only for a non-emulatable abort at an unprotected IPA."""
    program = f"adr x1, target\nmov x5, #0x100\naccess:\n{ins}\n" + TAIL
    with Guest.build(machine, program) as g:
        x0, pa = g.smc(F.RMI_DATA_DESTROY, g.realm.rd, TARGET)[:2]
        assert x0 == SUCCESS and g.smc(F.RMI_GRANULE_UNDELEGATE, pa)[0] == SUCCESS
        assert entry(g, TARGET) == (3, UNASSIGNED, DESTROYED)
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=esr, hpfar=TARGET >> 8)
        assert g.pc() == (TARGET if ins.startswith("br") else g.label("access"))


# -- the boundaries of the protected and unprotected halves -------------------------------------------

def test_protected_ipa_boundary(machine: Machine) -> None:
    """ACS mm_protected_ipa_boundary: the last protected page, 2^(s2sz-1) - 4 KiB, made RIPAS RAM
    (here by the realm's IPA_STATE_SET, which the host completes creating the RTTs it needs),
    faulted in and DATA_DESTROYed: a 4-byte store at its last word (+0xFFC) exits SYNC with
    ESR = EC 0x24 | level-3 translation fault only, HPFAR = the page's IPA[47:12] << 4, every
    other exit field zero. (Before the page is backed the same store exits the same way: an
    unassigned RAM page.)"""
    program = f"""
        mov x1, ={TOP_PROTECTED}
        mov x2, ={UNPROTECTED}
        mov x3, #{RAM}
        mov x4, #0
        mov x0, =RSI_IPA_STATE_SET
        smc #0
        mov x1, ={TOP_PROTECTED + 0xFFC}
        mov x5, #0x100
    access:
        strw x5, [x1]
    """ + TAIL
    with Guest.build(machine, program) as g:
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["ripas_base"], ex["ripas_top"]) == (SUCCESS, EXIT_RIPAS_CHANGE,
                                                                             TOP_PROTECTED, UNPROTECTED)
        assert set_ripas(g, TOP_PROTECTED, UNPROTECTED) == UNPROTECTED
        fault = {"exit_reason": EXIT_SYNC, "esr": (EC_DABT_LOW << 26) | TTF_L3, "hpfar": TOP_PROTECTED >> 8}
        exit_only(g, g.enter(exit_fill=0xFF), **fault)
        assert g.pc() == g.label("access")
        g.destroy_page(TOP_PROTECTED)
        assert entry(g, TOP_PROTECTED) == (3, UNASSIGNED, DESTROYED)
        exit_only(g, g.enter(exit_fill=0xFF), **fault)
        assert g.pc() == g.label("access")
    ok(machine)


def test_unprotected_ipa_boundary(machine: Machine) -> None:
    """ACS mm_unprotected_ipa_boundary: the first unprotected page, 2^(s2sz-1), mapped by the host
    and unmapped again (UNASSIGNED_NS under a level-3 RTT): a 4-byte store there exits with an
    emulatable data abort: ESR = EC 0x24, ISV, SAS word, WnR, DFSC level-3 translation fault, and
    SET, EA, FnV, SF, SRT, IL zero; FAR = the offset in the page (0), HPFAR = IPA[47:12] << 4,
    gprs[0] = the stored word. (The ACS reaches that page with a misaligned store that starts in
    the last protected page; this ISA's accesses are naturally aligned, so the store is made at
    the page itself.)"""
    program = f"mov x1, ={UNPROTECTED}\nmov x5, #0x333\naccess:\nstrw x5, [x1]\n" + TAIL
    with Guest.build(machine, program) as g:
        g.map_unprotected(UNPROTECTED)
        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, UNPROTECTED, 3)[0] == SUCCESS
        esr = (EC_DABT_LOW << 26) | ISV | SAS_WORD | WNR | TTF_L3
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=esr, hpfar=UNPROTECTED >> 8, gprs=(0x333,))
        assert g.pc() == g.label("access")


# -- emulatable data aborts ------------------------------------------------------------------------

MMIO_PAGE = UNPROTECTED + 0x1000


@pytest.mark.parametrize("then", ["emulate", "inject-sea"])
def test_emulated_write_then_read(machine: Machine, then: str) -> None:
    """ACS exception_emulatable_da: an NS page mapped and unmapped again; the realm stores the word
    0x333 there, then loads it. The store exits (emulatable: ISV, SAS word, WnR, DFSC level-3
    translation fault; gprs[0] = 0x333); the host enters with EMUL_MMIO, the store completes and
    the load exits the same way with WnR clear and gprs[0] 0; the host enters with EMUL_MMIO and
    gprs[0] = the written value, which the load returns.
    ACS mm_hipas_unassigned_ns_da_ia: after the store's exit the host enters with INJECT_SEA
    instead: the realm takes an SEA at the store (EC 0x25, the store's syndrome, EA, DFSC 0x10,
    FAR = the IPA), and a branch to the same unprotected IPA then takes an SEA with no exit
    (EC 0x21, IFSC 0x10, FAR = ELR = the IPA)."""
    program = LOGGING + f"""
        mov x1, ={MMIO_PAGE}
        mov x5, #0x333
        adr x27, fetch
    store:
        strw x5, [x1]
    load:
        ldrw x6, [x1]
        b done
    fetch:
        adr x27, done
        br x1
    """ + TAIL
    with Guest.build(machine, program) as g:
        g.map_unprotected(MMIO_PAGE)
        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, MMIO_PAGE, 3)[0] == SUCCESS
        esr = (EC_DABT_LOW << 26) | ISV | SAS_WORD | TTF_L3
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=esr | WNR, hpfar=MMIO_PAGE >> 8,
                  gprs=(0x333,))
        if then == "emulate":
            exit_only(g, g.enter(EMUL_MMIO, exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=esr, hpfar=MMIO_PAGE >> 8)
            assert g.pc() == g.label("load")
            stopped(g, *g.enter(EMUL_MMIO, (0x333,)), "done")
            assert g.gpr(6) == 0x333
        else:
            stopped(g, *g.enter(INJECT_SEA), "done")
            data_sea = (EC_DABT_CUR << 26) | IL | ISV | SAS_WORD | 5 << 16 | WNR | EA | SEA
            fetch_sea = (EC_IABT_CUR << 26) | IL | EA | SEA
            assert logged(g, 2) == [(data_sea, MMIO_PAGE, g.label("store")), (fetch_sea, MMIO_PAGE, MMIO_PAGE)]
    ok(machine)


# -- host-controlled attributes of an unprotected mapping (FEAT_S2FWB) ------------------------------

NC, WB_FORCED, S1_ATTRS = 0b101, 0b110, 0b111
"""Stage 2 MemAttr[2:0] with FEAT_S2FWB: Normal Non-cacheable, Normal Write-Back whatever stage 1
says, and stage 1's attributes (ACS mm_feat_s2fwb_check_1's three scenarios)."""


@pytest.mark.parametrize("memattr", [WB_FORCED, S1_ATTRS, NC], ids=["110", "111", "101"])
def test_unprotected_mapping_attributes_are_host_controlled(machine: Machine, memattr: int) -> None:
    """ACS mm_feat_s2fwb_check_1 / _2 (A5.5.10: the attributes of an ASSIGNED_NS entry are the
    host's; the RMM uses FEAT_S2FWB): the host maps an NS page holding V1 at an unprotected IPA
    with MemAttr 0b110, 0b111 or 0b101 and S2AP read/write; RMI_RTT_READ_ENTRY gives the entry
    back ASSIGNED with exactly that OA, MemAttr and S2AP. The realm loads V1, stores V2 and
    stops; the host reads V2 from the NS page and writes V3; the realm, entered again, loads V3.
    No access exits. (The model keeps no caches, so what is checked is the data path the ACS
    checks and the attributes' round trip, not cacheability; the ACS's stage 1 side, the realm
    mapping the IPA Non-cacheable or Write-Back, has no counterpart in the guest ISA.
    mm_feat_s2fwb_check_3, at a protected IPA, is out of the ACS's scope.)"""
    v1, v2, v3 = 0x1111_AAAA_0000_0001, 0x2222_BBBB_0000_0002, 0x3333_CCCC_0000_0003
    program = f"""
        mov x1, ={MMIO_PAGE}
        ldr x20, [x1]
        mov x5, ={v2:#x}
        str x5, [x1]
    pause:
        wfi
        ldr x21, [x1]
    """ + TAIL
    with Guest.build(machine, program) as g:
        ns = g.map_unprotected(MMIO_PAGE)
        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, MMIO_PAGE, 3)[0] == SUCCESS
        machine.ns_write(ns, v1.to_bytes(8, "little"))
        desc = ns | memattr << 2 | 0b11 << 6
        assert g.smc(F.RMI_RTT_MAP_UNPROTECTED, g.realm.rd, MMIO_PAGE, 3, desc)[0] == SUCCESS
        assert g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, MMIO_PAGE, 3) == (SUCCESS, 3, ASSIGNED, desc, EMPTY)
        stopped(g, *g.enter(), "pause")
        assert g.gpr(20) == v1
        assert machine.ns_read(ns, 8) == v2.to_bytes(8, "little")
        machine.ns_write(ns, v3.to_bytes(8, "little"))
        stopped(g, *g.enter(), "done")
        assert g.gpr(21) == v3
    ok(machine)


# -- load/store pairs: data aborts whose syndrome has ISV clear ------------------------------------

PAIR_NON_EMULATABLE = [
    # (access, S2AP of the ASSIGNED_NS mapping or None for UNASSIGNED_NS, DFSC)
    ("ldp x6, x7, [x1]", None, TTF_L3),          # exception_non_emulatable_da_1 (ldxr there)
    ("stp x5, x5, [x1]", None, TTF_L3),
    ("ldp x6, x7, [x1]", 0b10, PF_L3),           # exception_non_emulatable_da (ldxr, write-only mapping)
    ("stp x5, x5, [x1]", 0b01, PF_L3),           # a store to a read-only mapping
]


@pytest.mark.parametrize("ins, s2ap, dfsc", PAIR_NON_EMULATABLE,
                         ids=["ldp-unassigned-ns", "stp-unassigned-ns", "ldp-write-only", "stp-read-only"])
def test_pair_at_unprotected_ipa_is_a_non_emulatable_exit(machine: Machine, ins: str, s2ap: int | None,
                                                         dfsc: int) -> None:
    """ACS exception_non_emulatable_da_1 and exception_non_emulatable_da (which use ldxr; here
    ldp/stp, whose ESR_EL2 has ISV clear too): a pair at an unprotected IPA that is UNASSIGNED_NS
    (mapped and unmapped again), or ASSIGNED_NS with an S2AP that forbids the access, is a REC
    exit due to Non-emulatable Data Abort (A4.3.4.3): SYNC, ESR = EC 0x24 | IL | DFSC (level-3
    translation or permission fault) and nothing else (no ISV, SAS, SF, SRT or WnR, even for
    stp), HPFAR = IPA[47:12] << 4, FAR and gprs[0] zero, every other exit field zero. IL is set
    because A4.3.4.3 passes ESR_EL2.IL on for this exit only, and IL is RES1 in a data abort
    without ISV; the ACS's validate_rec_exit_da expects IL clear there (as TF-RMM rel0 masks
    it: docs/deviations.md). The realm's registers and PC are unchanged, re-entering repeats
    the access and the exit, and EMUL_MMIO after it fails with RMI_ERROR_REC (rec_mmio,
    B4.3.14: no Emulatable Data Abort to complete), the REC not run."""
    program = f"mov x1, ={MMIO_PAGE}\nmov x5, #0x333\nmov x6, #0x66\nmov x7, #0x77\naccess:\n{ins}\n" + TAIL
    with Guest.build(machine, program) as g:
        ns = g.map_unprotected(MMIO_PAGE, b"\x5A" * GRANULE)
        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, MMIO_PAGE, 3)[0] == SUCCESS
        if s2ap is not None:
            desc = ns | 0b0110 << 2 | s2ap << 6
            assert g.smc(F.RMI_RTT_MAP_UNPROTECTED, g.realm.rd, MMIO_PAGE, 3, desc)[0] == SUCCESS
        fault = {"exit_reason": EXIT_SYNC, "esr": (EC_DABT_LOW << 26) | IL | dfsc, "hpfar": MMIO_PAGE >> 8}
        for _ in range(2):
            exit_only(g, g.enter(exit_fill=0xFF), **fault)
            assert g.pc() == g.label("access")
            assert (g.gpr(5), g.gpr(6), g.gpr(7)) == (0x333, 0x66, 0x77)
        assert g.enter(EMUL_MMIO, (0x1234,))[0] == REC_ERROR
        assert (g.pc(), g.gpr(6), g.gpr(7)) == (g.label("access"), 0x66, 0x77)
        assert machine.ns_read(ns, GRANULE) == b"\x5A" * GRANULE
    ok(machine)


@pytest.mark.parametrize("ins, write", [("ldp x6, x7, [x1, #8]", False), ("stp x5, x5, [x1, #8]", True)])
def test_inject_sea_after_a_pair_exit(machine: Machine, ins: str, write: bool) -> None:
    """ACS exception_non_emulatable_da_1 followed by the host's INJECT_SEA (A4.2.3: after a REC
    exit due to Data Abort at an unprotected IPA, emulatable or not, INJECT_SEA makes the realm
    take an SEA): the pair's non-emulatable exit (EC 0x24 | IL | level-3 translation fault), then
    an entry with INJECT_SEA runs the realm's vector with ESR = EC 0x25 | IL | EA | DFSC 0x10 and
    WnR for stp, no ISV, SAS, SF or SRT (the pair's syndrome had none), FAR = the IPA, ELR = the
    pair; x6, x7 are not loaded. INJECT_SEA used to be ignored after an exit without ISV: the
    realm ran the pair again and exited again."""
    program = LOGGING + f"""
        mov x1, ={MMIO_PAGE}
        mov x5, #0x333
        mov x6, #0x66
        mov x7, #0x77
        adr x27, done
    access:
        {ins}
    """ + TAIL
    with Guest.build(machine, program) as g:
        g.map_unprotected(MMIO_PAGE)
        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, MMIO_PAGE, 3)[0] == SUCCESS
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=(EC_DABT_LOW << 26) | IL | TTF_L3,
                  hpfar=MMIO_PAGE >> 8)
        stopped(g, *g.enter(INJECT_SEA), "done")
        esr = (EC_DABT_CUR << 26) | IL | (WNR if write else 0) | EA | SEA
        assert logged(g, 1) == [(esr, MMIO_PAGE + 8, g.label("access"))]
        assert (g.gpr(6), g.gpr(7)) == (0x66, 0x77)
    ok(machine)


@pytest.mark.parametrize("ins, write", [("ldp x6, x7, [x1]", False), ("stp x5, x5, [x1]", True)])
@pytest.mark.parametrize("offset", [0, 0x7F0])
def test_pair_at_ripas_empty_takes_an_sea_without_isv(machine: Machine, ins: str, write: bool, offset: int) -> None:
    """A5.2.2 (ACS mm_hipas_unassigned_ripas_empty_da_ia with a pair for the store): an ldp or stp
    at a protected IPA whose RIPAS is EMPTY makes the realm take an SEA, no REC exit. ESR keeps
    what the access's ESR_EL2 said, as TF-RMM's calc_esr_idabort copies it: EC 0x25, IL, WnR for
    stp, EA (A5.2.7), DFSC 0x10, and no ISV, SAS, SF or SRT (a pair has no valid instruction
    syndrome). FAR = the IPA, ELR = the access; x6, x7 are not loaded."""
    ipa = EMPTY_IPA + offset
    program = LOGGING + f"""
        mov x1, ={ipa}
        mov x5, #0x333
        mov x6, #0x66
        mov x7, #0x77
        adr x27, done
    access:
        {ins}
    """ + TAIL
    with Guest.build(machine, program) as g:
        stopped(g, *g.enter(), "done")
        esr = (EC_DABT_CUR << 26) | IL | (WNR if write else 0) | EA | SEA
        assert logged(g, 1) == [(esr, ipa, g.label("access"))]
        assert (g.gpr(6), g.gpr(7)) == (0x66, 0x77)
    ok(machine)


def test_pair_across_the_protected_boundary_faults_page_by_page(machine: Machine) -> None:
    """ACS mm_unprotected_ipa_boundary reaches the first unprotected page with a store that
    starts in the last protected page; an ldp at TOP_PROTECTED + 0xFF8 does it aligned. The last
    protected page is made RIPAS RAM (IPA_STATE_SET, completed by the host) but not backed; the
    first unprotected one is UNASSIGNED_NS. The lower address faults first: a non-emulatable
    exit for the protected page (EC 0x24 | level-3 translation fault, no IL, HPFAR of that page);
    once the host backs it, the unprotected half faults: EC 0x24 | IL | level-3 translation
    fault, HPFAR of the first unprotected page, FAR 0. Neither register was loaded."""
    program = f"""
        mov x1, ={TOP_PROTECTED}
        mov x2, ={UNPROTECTED}
        mov x3, #{RAM}
        mov x4, #0
        mov x0, =RSI_IPA_STATE_SET
        smc #0
        mov x1, ={TOP_PROTECTED + 0xFF8}
        mov x6, #0x66
        mov x7, #0x77
    access:
        ldp x6, x7, [x1]
    """ + TAIL
    with Guest.build(machine, program) as g:
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_RIPAS_CHANGE)
        assert set_ripas(g, TOP_PROTECTED, UNPROTECTED) == UNPROTECTED
        g.map_unprotected(UNPROTECTED)
        assert g.smc(F.RMI_RTT_UNMAP_UNPROTECTED, g.realm.rd, UNPROTECTED, 3)[0] == SUCCESS
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=(EC_DABT_LOW << 26) | TTF_L3,
                  hpfar=TOP_PROTECTED >> 8)
        g.fault_in(TOP_PROTECTED)
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=(EC_DABT_LOW << 26) | IL | TTF_L3,
                  hpfar=UNPROTECTED >> 8)
        assert (g.pc(), g.gpr(6), g.gpr(7)) == (g.label("access"), 0x66, 0x77)
    ok(machine)


# -- RIPAS changes the host completes, completes in part, or rejects ------------------------------------

P = GRANULE
SCENARIOS: dict[str, list[tuple[int, int, int, int | None, tuple[int, int, int]]]] = {
    # (base, top, ripas requested, what the host changes: top of [base, top') or None,
    #  IPA_STATE_GET(base, top) afterwards: (X0, X1, X2))
    "mm_ripas_change": [
        (TARGET, TARGET + 3 * P, EMPTY, TARGET + 3 * P, (SUCCESS, TARGET + 3 * P, EMPTY)),
    ],
    "mm_ripas_change_partial": [
        (TARGET, TARGET + 3 * P, EMPTY, TARGET + P, (SUCCESS, TARGET + P, EMPTY)),
    ],
    "mm_ripas_change_reject": [
        (TARGET, TARGET + 3 * P, EMPTY, None, (SUCCESS, TARGET + 3 * P, RAM)),
        (TARGET, TARGET + 2 * P, EMPTY, TARGET + 2 * P, (SUCCESS, TARGET + 2 * P, EMPTY)),
        (TARGET, TARGET + 3 * P, RAM, TARGET + 2 * P, (SUCCESS, TARGET + 3 * P, RAM)),
    ],
    "exception_rec_exit_ripas": [
        (TARGET, TARGET + 3 * P, EMPTY, TARGET + 3 * P, (SUCCESS, TARGET + 3 * P, EMPTY)),
        (TARGET, TARGET + 3 * P, RAM, TARGET + 3 * P, (SUCCESS, TARGET + 3 * P, RAM)),
        (TARGET, TARGET + 3 * P, EMPTY, TARGET + P, (SUCCESS, TARGET + P, EMPTY)),
        (TARGET + P, TARGET + 2 * P, EMPTY, None, (SUCCESS, TARGET + 2 * P, RAM)),
    ],
}
FINAL_RIPAS = {
    "mm_ripas_change": (EMPTY, EMPTY, EMPTY),
    "mm_ripas_change_partial": (EMPTY, RAM, RAM),
    "mm_ripas_change_reject": (RAM, RAM, RAM),
    "exception_rec_exit_ripas": (EMPTY, RAM, RAM),
}
REQUESTS = """
        adr x28, log
        adr x27, requests
    next:
        ldr x1, [x27]
        cbz x1, done
        ldr x2, [x27, #8]
        ldr x3, [x27, #16]
        mov x4, #0
        mov x0, =RSI_IPA_STATE_SET
        smc #0
        str x0, [x28]
        str x1, [x28, #8]
        str x2, [x28, #16]
        ldr x1, [x27]
        ldr x2, [x27, #8]
        mov x0, =RSI_IPA_STATE_GET
        smc #0
        str x0, [x28, #24]
        str x1, [x28, #32]
        str x2, [x28, #40]
        add x28, x28, #48
        add x27, x27, #24
        b next
        .org 0x600
    requests:
"""


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ripas_change_sequence(machine: Machine, name: str) -> None:
    """ACS mm_ripas_change, mm_ripas_change_partial, mm_ripas_change_reject and
    exception_rec_exit_ripas: the realm asks for RIPAS changes over three of its assigned
    (measured) pages, one request at a time, each followed by IPA_STATE_GET over the same range.
    Every request exits RIPAS_CHANGE with its base, top and value; the host changes the whole
    range, a first part of it, or nothing (a reject: it re-enters without the RIPAS_RESPONSE
    flag, so the realm sees X1 = base and ACCEPT); the realm sees X0 SUCCESS, X1 = how far the
    host got, X2 ACCEPT, and IPA_STATE_GET returns the run of equal RIPAS from base. The pages
    stay ASSIGNED throughout and end with the RIPAS the changes left."""
    steps = SCENARIOS[name]
    table = "".join(f"        .quad {base:#x}, {top:#x}, {ripas}\n" for base, top, ripas, _, _ in steps)
    with Guest.build(machine, REQUESTS + table + "        .quad 0\n" + TAIL) as g:
        for base, top, ripas, changed, _ in steps:
            x0, ex = g.enter()
            assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_RIPAS_CHANGE), ex
            assert (ex["ripas_base"], ex["ripas_top"], ex["ripas_value"]) == (base, top, ripas)
            if changed is not None:
                assert set_ripas(g, base, changed) == changed
        stopped(g, *g.enter(), "done")
        raw = g.peek(g.label("log"), 48 * len(steps))
        words = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
        for n, (base, _, _, changed, state) in enumerate(steps):
            assert tuple(words[6 * n:6 * n + 3]) == (SUCCESS, base if changed is None else changed, ACCEPT), n
            assert tuple(words[6 * n + 3:6 * n + 6]) == state, n
        assert [entry(g, TARGET + i * P) for i in range(3)] == [(3, ASSIGNED, r) for r in FINAL_RIPAS[name]]
    ok(machine)


# -- registers across WFI, WFE and IRQ exits --------------------------------------------------------

REALM_GPRS = tuple(0xAABB_CC00_0000_0000 | n << 8 | n for n in range(31))


@pytest.mark.parametrize("ins, flags, reason, esr", [
    ("wfi", TRAP_WFI | TRAP_WFE, EXIT_SYNC, EC_WFX << 26),       # exception_rec_exit_wfi
    ("wfe", TRAP_WFI | TRAP_WFE, EXIT_SYNC, EC_WFX << 26 | 1),   # exception_rec_exit_wfe
    ("wfi", 0, EXIT_IRQ, 0),                                      # exception_rec_exit_irq
], ids=["wfi-trapped", "wfe-trapped", "wfi-irq"])
def test_wfx_and_irq_exits_keep_the_realm_registers(machine: Machine, ins: str, flags: int, reason: int,
                                                    esr: int) -> None:
    """ACS exception_rec_exit_wfi / _wfe (and the IRQ exit of exception_rec_exit_irq, here an
    untrapped WFI): the realm fills X0..X30, then executes WFI or WFE: with the trap flags set a
    SYNC exit with EC 0x01 (ISS.TI set for WFE), with them clear an IRQ exit with esr 0; every
    other exit field zero (gprs included). The host re-enters with the traps off and enter.gprs
    all junk but gprs[5], which it clears (the ACS's corruption): the realm's X0..X30 are exactly
    what it set; enter.gprs reach it only to complete an MMIO read, a host call or PSCI."""
    fill = "\n".join(f"mov x{n}, ={value:#x}" for n, value in enumerate(REALM_GPRS))
    program = f"{fill}\n{ins}\nafter:\nwfi\nb after\n"
    with Guest.build(machine, program) as g:
        x0, ex = g.enter(flags, exit_fill=0xFF)
        exit_only(g, (x0, ex), exit_reason=reason, esr=esr)
        assert g.pc() == g.label("after")
        junk = [0xDEAD_0000 + n for n in range(31)]
        junk[5] = 0
        x0, ex = g.enter(0, tuple(junk))
        assert (x0, ex["exit_reason"]) == (SUCCESS, EXIT_IRQ)
        assert g.pc() == g.label("after") + 8
        assert tuple(g.gpr(n) for n in range(31)) == REALM_GPRS


# -- realms whose stage 2 starts with concatenated root RTTs ----------------------------------------------

LEVEL_START = {
    # s2sz: (start level, root RTTs, the ACS's addresses: the last page of some roots' ranges)
    32: (2, 4, (0x3FFF_F000, 0x7FFF_F000, 0xBFFF_F000, 0xFFFF_F000)),
    34: (2, 16, (0x3FFF_F000, 0x7FFF_F000, 0x2_3FFF_F000, 0x2_7FFF_F000, 0x3_BFFF_F000, 0x3_FFFF_F000)),
    40: (1, 2, (0x7F_FFFF_F000, 0xFF_FFFF_F000)),
    42: (1, 8, (0x7F_FFFF_F000, 0xFF_FFFF_F000, 0x2FF_FFFF_F000, 0x3FF_FFFF_F000)),
}
REALM_DATA = 0xAABB_1122


@pytest.mark.parametrize("s2sz", list(LEVEL_START))
def test_rtt_level_start(machine: Machine, s2sz: int) -> None:
    """ACS mm_rtt_level_start: realms of 32, 34, 40 and 42 bits, whose stage 2 starts at level 2
    or 1 with 4, 16, 2 or 8 concatenated roots (the ACS's 52-bit case needs FEAT_LPA2, above this
    platform's S2SZ of 48). At the last page of several roots' ranges, protected or unprotected,
    the host maps memory: a protected page the realm first asks to be RAM (IPA_STATE_SET; the
    host completes it, then faults the page in when the realm's store exits), an unprotected
    one an NS page mapped before the realm runs. The realm's store of 0xAABB1122 and load back
    work at every address: the word is in the page and in the register. RMI_RTT_READ_ENTRY at
    the start level with the page's address fails with RMI_ERROR_INPUT, as the ACS expects (the
    address is not aligned to a start-level entry: ipa_align, B4.3.20); with the address of
    that entry it reads a TABLE at the start level."""
    level, roots, addresses = LEVEL_START[s2sz]
    par = 1 << (s2sz - 1)
    lines = []
    for n, ipa in enumerate(addresses):
        if ipa < par:
            lines += [f"mov x1, ={ipa:#x}", f"mov x2, ={ipa + GRANULE:#x}", f"mov x3, #{RAM}", "mov x4, #0",
                      "mov x0, =RSI_IPA_STATE_SET", "smc #0"]
        lines += [f"mov x9, ={ipa:#x}", f"mov x10, ={REALM_DATA:#x}", "str x10, [x9]", f"ldr x{19 + n}, [x9]"]
    program = "\n".join(lines) + "\ndone:\nwfi\nb done\n"
    with Guest.build(machine, program, ipa_width=s2sz, base=0, ram_size=16 * GRANULE) as g:
        assert (g.realm.start_level, g.realm.num_roots) == (level, roots)
        ns = {ipa: g.map_unprotected(ipa) for ipa in addresses if ipa >= par}
        for _ in range(4 * len(addresses)):
            x0, ex = g.enter()
            assert x0 == SUCCESS
            if ex["exit_reason"] == EXIT_RIPAS_CHANGE:
                assert set_ripas(g, ex["ripas_base"], ex["ripas_top"]) == ex["ripas_top"]
            elif ex["exit_reason"] == EXIT_SYNC:
                assert ex["esr"] >> 26 == EC_DABT_LOW and not ex["esr"] & ISV, hex(ex["esr"])
                g.fault_in(ex["hpfar"] << 8)
            elif g.pc() == g.label("done") + 8:
                break
        assert g.pc() == g.label("done") + 8
        block = 1 << (12 + 9 * (3 - level))
        for n, ipa in enumerate(addresses):
            assert g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, ipa, level)[0] == INPUT, hex(ipa)
            x0, walk, state = g.smc(F.RMI_RTT_READ_ENTRY, g.realm.rd, ipa & ~(block - 1), level)[:3]
            assert (x0, walk, state) == (SUCCESS, level, TABLE), (hex(ipa), x0, walk, state)
            stored = g.peek(ipa, 8) if ipa < par else machine.ns_read(ns[ipa], 8)
            assert (int.from_bytes(stored, "little"), g.gpr(19 + n)) == (REALM_DATA, REALM_DATA), hex(ipa)
    ok(machine)


# -- unassigned RAM: a data abort the host resolves, then a fetch ---------------------------------------

UNASSIGNED_RAM = CODE + 0x10_0000
"""Two pages of the default Guest's RAM (RIPAS RAM by RTT_INIT_RIPAS) that nothing backs."""


def test_unassigned_ram_store_then_fetch_exit(machine: Machine) -> None:
    """ACS mm_hipas_unassigned_ripas_ram_da_ia (and exception_rec_exit_ia): two protected pages
    RTT_INIT_RIPAS made RAM before activation, nothing mapped (HIPAS UNASSIGNED, RIPAS RAM).
    The realm's 4-byte store of 0x100 at the first exits SYNC with ESR = EC 0x24 | level-3
    translation fault only (no ISV, SAS, WnR, IL, EA, SET, FnV), HPFAR = IPA[47:12] << 4 and
    every other exit field zero; the realm takes no exception. The host backs the page with
    DATA_CREATE_UNKNOWN; re-entered, the store completes and the realm's branch to the second
    page exits SYNC with ESR = EC 0x20 | IFSC level-3 translation fault only, HPFAR of that
    page, every other field zero, PC = the page."""
    da_ipa, ia_ipa = UNASSIGNED_RAM, UNASSIGNED_RAM + GRANULE
    program = LOGGING + f"""
        mov x1, ={da_ipa}
        mov x2, ={ia_ipa}
        mov x5, #0x100
        adr x27, done
    store:
        strw x5, [x1]
        br x2
    """ + TAIL
    with Guest.build(machine, program) as g:
        assert entry(g, da_ipa) == (3, UNASSIGNED, RAM) and entry(g, ia_ipa) == (3, UNASSIGNED, RAM)
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=(EC_DABT_LOW << 26) | TTF_L3,
                  hpfar=da_ipa >> 8)
        assert g.pc() == g.label("store")
        g.fault_in(da_ipa)
        assert entry(g, da_ipa) == (3, ASSIGNED, RAM)
        exit_only(g, g.enter(exit_fill=0xFF), exit_reason=EXIT_SYNC, esr=(EC_IABT_LOW << 26) | TTF_L3,
                  hpfar=ia_ipa >> 8)
        assert g.pc() == ia_ipa
        assert g.peek(da_ipa, 8) == (0x100).to_bytes(8, "little")
        assert g.gpr(28) == g.label("log")      # the vector never ran
    ok(machine)


# -- the host touching realm memory -------------------------------------------------------------------

def test_host_access_to_a_realm_page_is_a_granule_protection_fault(machine: Machine) -> None:
    """ACS mm_gpf_exception: once a realm is set up, the host's 4-byte store of 0xabcd to the PA
    of the realm's image (a DATA granule, Realm PAS) faults on the granule protection check
    (GranuleProtectionFault, the model's GPF taken to NS EL2), as does a load; the page keeps
    its contents and the realm still runs it."""
    with Guest.build(machine, "done:\nwfi\nb done\n") as g:
        pa = g.page_pa(CODE)
        before = g.peek(CODE, GRANULE)
        with pytest.raises(GranuleProtectionFault):
            machine.ns_write(pa, (0xABCD).to_bytes(4, "little"))
        with pytest.raises(GranuleProtectionFault):
            machine.ns_read(pa, 4)
        assert g.peek(CODE, GRANULE) == before
        stopped(g, *g.enter(), "done")
    ok(machine)


# -- the RTT walk: one table per level ----------------------------------------------------------------

def test_rtt_translation_table(machine: Machine) -> None:
    """ACS mm_rtt_translation_table: in a realm with 4 KiB granules, the host creates the RTTs
    down to level 3 for the protected IPA 0x20000000 (from the level READ_ENTRY's walk stopped
    at); READ_ENTRY at level 3 then walks to level 3 for 0x20001000 (a level-3 table covers
    2 MiB) and stops at level 2 for 0x20200000 (the next 2 MiB has no level-3 table), both
    UNASSIGNED (RIPAS EMPTY: outside the realm's RAM). The realm still runs."""
    ipa = 0x2000_0000
    with Guest.build(machine, "done:\nwfi\nb done\n") as g:
        level, state, ripas = entry(g, ipa)
        assert (state, ripas) == (UNASSIGNED, EMPTY) and level < 3
        assert create_rtt_levels(g.cpu, g.alloc, g.realm, ipa, level, 3) == 3 - level
        assert entry(g, ipa + 0x20_0000) == (2, UNASSIGNED, EMPTY)
        assert entry(g, ipa + 0x1000) == (3, UNASSIGNED, EMPTY)
        stopped(g, *g.enter(), "done")
    ok(machine)
