"""Spec facts about realm calls that the per-command files do not pin down yet (DEN0137 1.0-rel0
B4.3.7, B3.27, B6.3.3, B6.3.5, B5.3.4).

From an audit of the RSI and PSCI handlers against the specification and the ACS rel0 tests:
the whole of X3 as CPU_ON's context id (B4.3.7.3 on_success), the statuses RMI_PSCI_COMPLETE
refuses for AFFINITY_INFO and permits for the SMC32 form of CPU_ON (B3.27), PSCI_FEATURES of an
SMCCC function the RMM does not implement, and a host call structure in the last 256 bytes of
its page. Guest programs as in test_realm_psci.py and test_rsi.py (tests/realm_guests.py).
"""

from __future__ import annotations

import struct
from typing import Iterator

import pytest

from realm_guests import X4, Guest, smc_call as call
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants

U64 = (1 << 64) - 1
SUCCESS, NOT_SUPPORTED, DENIED = 0, -1 & U64, -3 & U64
PSCI_OFF = 1
"""PsciReturnCode PSCI_OFF (B6.4.2), which AFFINITY_INFO returns; not a status the host may give."""
RMI_SUCCESS, RMI_INPUT, RMI_REC = 0, 1, 3
EXIT_IRQ, EXIT_PSCI, EXIT_HOST_CALL = 1, 3, 5
CPU_ON_64, CPU_ON_32 = 0xC400_0003, 0x8400_0003
AFFINITY_INFO_64, AFFINITY_INFO_32 = 0xC400_0004, 0x8400_0004
PSCI_FEATURES = 0x8400_000A
SMCCC_ARCH_FEATURES = 0x8000_0001
WIDE_CONTEXT = 0xA5A5_A5A5_1234_5678
"""A context id with bits 63:32 set (B6.3.3 calls them SBZ; B4.3.7.3 copies all of X3)."""

ENTRY1 = """
entry1:                 // REC 1 once it is on: keep X0 (the context id)
    mov x20, x0
done1:
    wfi
    b done1
"""


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=2000) as m:
        yield m


def psci_exit(g: Guest, gprs: tuple[int, ...], rec: int = 0) -> None:
    """Enter ``rec``: a PSCI exit whose gprs are ``gprs`` then zeros."""
    x0, ex = g.enter(rec=rec)
    assert (x0, ex["exit_reason"]) == (RMI_SUCCESS, EXIT_PSCI)
    assert ex["gprs"] == (*gprs, *(0,) * (31 - len(gprs)))


def finish(g: Guest, rec: int = 0, done: str = "done") -> None:
    """Enter ``rec``: it runs to label ``done`` and exits at its WFI (IRQ), with no other exit."""
    x0, ex = g.enter(rec=rec)
    assert (x0, ex["exit_reason"]) == (RMI_SUCCESS, EXIT_IRQ), ex
    assert g.pc(rec) == g.label(done) + 8


def complete(g: Guest, caller: int, target: int, status: int) -> int:
    return g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(caller), g.rec_pa(target), status)[0]


def refused(g: Guest, caller: int, target: int, status: int) -> None:
    """RMI_PSCI_COMPLETE(caller, target, status) fails with ERROR_INPUT."""
    assert complete(g, caller, target, status) == RMI_INPUT


def completed_by(g: Guest, caller: int, target: int, status: int) -> None:
    """RMI_PSCI_COMPLETE(caller, target, status) succeeds."""
    assert complete(g, caller, target, status) == RMI_SUCCESS


def ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


def test_smc64_cpu_on_passes_all_of_x3_as_the_context_id(machine: Machine) -> None:
    """B4.3.7.3 on_success: the target's X0 is the caller's X3, all 64 bits of it, for the SMC64
    form of CPU_ON (B6.3.3 names context_id X3[31:0] with bits 63:32 SBZ, but neither a failure
    condition nor the success condition looks at them; PSCI defines a 64-bit context id for
    the SMC64 call). The realm's X1..X3 read 0 after the completion, X4 is kept."""
    with Guest.build(machine, call(CPU_ON_64, 1, "entry1", WIDE_CONTEXT) + ENTRY1, num_recs=2) as g:
        psci_exit(g, (CPU_ON_64, 1))
        assert complete(g, 0, 1, SUCCESS) == RMI_SUCCESS
        assert g.gpr(0, rec=1) == WIDE_CONTEXT
        finish(g)
        assert tuple(g.gpr(n) for n in range(5)) == (SUCCESS, 0, 0, 0, X4)
        finish(g, rec=1, done="done1")
        assert g.gpr(20, rec=1) == WIDE_CONTEXT
    ok(machine)


@pytest.mark.parametrize("fid", [AFFINITY_INFO_64, AFFINITY_INFO_32], ids=["smc64", "smc32"])
@pytest.mark.parametrize("status", [PSCI_OFF, NOT_SUPPORTED], ids=["psci-off", "not-supported"])
def test_psci_complete_of_affinity_info_refuses_any_status_but_success(machine: Machine, fid: int,
                                                                        status: int) -> None:
    """B3.27: for AFFINITY_INFO only PSCI_SUCCESS is a permitted status; PSCI_OFF (the answer the
    realm would get for an off REC, which the RMM works out itself) and NOT_SUPPORTED fail with
    ERROR_INPUT and change nothing: the request stays pending and the caller cannot be entered.
    Completed with SUCCESS, the realm reads OFF for REC 1."""
    with Guest.build(machine, call(fid, 1, 0), num_recs=2) as g:
        psci_exit(g, (fid, 1))
        assert g.changes(lambda: refused(g, 0, 1, status)) == set()
        assert g.rec(0).psci_pending == fid
        assert g.enter()[0] == RMI_REC
        assert complete(g, 0, 1, SUCCESS) == RMI_SUCCESS
        finish(g)
        assert tuple(g.gpr(n) for n in range(5)) == (PSCI_OFF, 0, 0, 0, X4)
    ok(machine)


def test_psci_complete_permits_denied_for_the_smc32_cpu_on(machine: Machine) -> None:
    """B3.27 permits DENIED for a CPU_ON whose target is off; the SMC32 form (0x84000003) is
    CPU_ON too (docs/deviations.md, the SMC32 rows): the completion succeeds, changes the
    caller's REC only, the realm reads DENIED and REC 1 stays off. Once REC 1 is on, a second
    SMC32 CPU_ON of it may not be DENIED (ERROR_INPUT, nothing changed): only SUCCESS, which
    answers ALREADY_ON."""
    program = call(CPU_ON_32, 1, "entry1", 7).replace("done:", """
        mov x20, x0
        mov x1, #1
        adr x2, entry1
        mov x0, =0x84000003
        smc #0
        mov x21, x0
        mov x1, #1
        adr x2, entry1
        mov x0, =0x84000003
        smc #0
    done:""") + ENTRY1
    with Guest.build(machine, program, num_recs=2) as g:
        psci_exit(g, (CPU_ON_32, 1))
        assert g.changes(lambda: completed_by(g, 0, 1, DENIED)) == {"rec0"}
        assert not g.rec(1).runnable
        psci_exit(g, (CPU_ON_32, 1))
        assert complete(g, 0, 1, SUCCESS) == RMI_SUCCESS
        psci_exit(g, (CPU_ON_32, 1))
        assert g.changes(lambda: refused(g, 0, 1, DENIED)) == set()
        assert complete(g, 0, 1, SUCCESS) == RMI_SUCCESS
        finish(g)
        assert (g.gpr(20), g.gpr(21), g.gpr(0)) == (DENIED, SUCCESS, -4 & U64)
    ok(machine)


def test_psci_features_of_smccc_arch_features_is_not_supported(machine: Machine) -> None:
    """B6.3.5 func_not_ok: SMCCC_ARCH_FEATURES (0x80000001) is no function the RMM implements (a
    realm calling it gets SMC_UNKNOWN, test_rsi.py test_unknown_smc), so PSCI_FEATURES of it is
    NOT_SUPPORTED, answered without an exit; X1..X3 read 0, X4 is kept."""
    with Guest.build(machine, call(PSCI_FEATURES, SMCCC_ARCH_FEATURES), num_recs=2) as g:
        finish(g)
        assert tuple(g.gpr(n) for n in range(5)) == (NOT_SUPPORTED, 0, 0, 0, X4)


HOST_GPRS = tuple(0xCA11_0000_0000_0000 | n for n in range(31))
REALM_GPRS = tuple(0x0123_0000_0000_0000 | n for n in range(31))


def test_host_call_structure_in_the_last_256_bytes_of_its_page(machine: Machine) -> None:
    """addr_align is 256 bytes (B5.3.4) and RsiHostCall is 256 bytes long, so a structure at page
    offset 0xF00 ends with its page: the exit carries its imm and gprs, and the completion
    writes the host's gprs there, leaving the next page (the word after it) as it was."""
    data = (".org 0x1F00\nhc:\n.half 0x0042\n.half 0\n.word 0\n.quad " + ", ".join(map(hex, REALM_GPRS))
            + "\nafter:\n.quad 0x5AFE5AFE5AFE5AFE")
    program = call(0xC400_0199, "hc") + "\n" + data
    with Guest.build(machine, program) as g:
        hc = g.label("hc")
        assert hc & 0xFFF == 0xF00 and g.label("after") == hc + 0x100
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"], ex["imm"], ex["gprs"]) == (RMI_SUCCESS, EXIT_HOST_CALL, 0x42, REALM_GPRS)
        x0, ex = g.enter(gprs=HOST_GPRS)
        assert (x0, ex["exit_reason"]) == (RMI_SUCCESS, EXIT_IRQ)
        assert g.gpr(0) == SUCCESS
        assert g.peek(hc + 8, 248) == struct.pack("<31Q", *HOST_GPRS)
        assert g.peek(hc + 0x100, 8) == struct.pack("<Q", 0x5AFE_5AFE_5AFE_5AFE)
    ok(machine)
