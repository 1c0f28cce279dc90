"""PSCI called by running realms (DEN0137 1.0-rel0 B6, A4.3.7, A4.2.2, B4.3.7; rsi-attest.md section 2).

Guest programs (tests/realm_guests.py) make PSCI calls from REC 0 (and from REC 1 once it is
on); the test plays the host: it reads the PSCI exits, answers CPU_ON and AFFINITY_INFO with
RMI_PSCI_COMPLETE and enters the RECs again. Calls answered inside the RMM must not exit: the
REC runs on to its ``done`` WFI. Both SMC32 and SMC64 function IDs are used where PSCI has both
(ACS test/command/cmd_cpu_on, cmd_affinity_info, cmd_cpu_suspend, cmd_cpu_off, cmd_psci_features,
cmd_psci_version). Each function's success path has a footprint test (Guest.changes: the
granules each entry and RMI_PSCI_COMPLETE change); failing calls change the caller's REC only,
a DENIED CPU_ON completion leaves the target untouched and a refused RMI_PSCI_COMPLETE changes
nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

import pytest

from realm_guests import CODE, UNPROTECTED, X4, Guest, smc_call as call
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants
from rmm_mp.host.realm_teardown import destroy_recs
from rmm_mp.rmm.realm_desc import RealmState

U64 = (1 << 64) - 1
SUCCESS, NOT_SUPPORTED, INVALID_PARAMETERS, DENIED, ALREADY_ON = 0, -1 & U64, -2 & U64, -3 & U64, -4 & U64
INVALID_ADDRESS = -9 & U64
ON, OFF = 0, 1
RMI_SUCCESS, RMI_INPUT, RMI_REC = 0, 1, 3
RMI_SYSTEM_OFF = 2 | 1 << 8
EXIT_IRQ, EXIT_PSCI, EXIT_HOST_CALL = 1, 3, 5
CPU_ON = (0xC400_0003, 0x8400_0003)
AFFINITY_INFO = (0xC400_0004, 0x8400_0004)
CPU_SUSPEND = (0xC400_0001, 0x8400_0001)
CPU_OFF, SYSTEM_OFF, SYSTEM_RESET = 0x8400_0002, 0x8400_0008, 0x8400_0009
CONTEXT = 0x1234_5678
MPIDR_RES1 = 1 << 31
JUNK_HIGH = 0xA5A5_A5A5 << 32
"""Bits 63:32 that an SMC32 call's callee ignores (SMCCC: its arguments are W1..W3), or SBZ bits."""
SVE_HINT = 1 << 16


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=2, time_slice=2000) as m:
        yield m


ENTRY1 = """
entry1:                 // where REC 1 starts once it is on: keep X0 (the context id), MPIDR, X1
    mov x20, x0
    mrs x21, mpidr
    mov x22, x1
done1:
    wfi
    b done1
"""


def finish(g: Guest, rec: int = 0, done: str = "done") -> None:
    """Enter ``rec``: it must run to label ``done`` and exit there (its WFI), with no PSCI exit."""
    x0, ex = g.enter(rec=rec)
    assert (x0, ex["exit_reason"], ex["gprs"]) == (RMI_SUCCESS, EXIT_IRQ, (0,) * 31), ex
    assert g.pc(rec) == g.label(done) + 8


def psci_exit(g: Guest, gprs: tuple[int, ...], rec: int = 0) -> None:
    """Enter ``rec``: a PSCI exit whose gprs are ``gprs`` then zeros, every other field zero."""
    x0, ex = g.enter(rec=rec)
    assert x0 == RMI_SUCCESS
    assert ex["exit_reason"] == EXIT_PSCI
    assert ex["gprs"] == (*gprs, *(0,) * (31 - len(gprs)))
    assert (ex["esr"], ex["far"], ex["hpfar"], ex["imm"], ex["ripas_top"]) == (0, 0, 0, 0, 0)


def complete(g: Guest, caller: int, target: int, status: int = SUCCESS) -> int:
    return g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(caller), g.rec_pa(target), status)[0]


def completed(g: Guest, caller: int, target: int) -> None:
    """RMI_PSCI_COMPLETE(caller, target, SUCCESS) succeeds."""
    assert complete(g, caller, target) == RMI_SUCCESS


def answered(g: Guest, x0: int) -> None:
    """X0 = the PSCI result, X1..X3 zeroed, X4 kept; no other REC was turned on."""
    assert tuple(g.gpr(n) for n in range(5)) == (x0, 0, 0, 0, X4)
    assert g.rec(0).psci_pending == 0
    assert not g.rec(1).runnable


def ok(m: Machine) -> None:
    report = invariants(m)
    assert report.ok, str(report)


def to_first(g: Guest) -> None:
    """Enter REC 0: it stops at the WFI at label `first` (an IRQ exit) before making any call."""
    x0, ex = g.enter()
    assert (x0, ex["exit_reason"]) == (RMI_SUCCESS, EXIT_IRQ) and g.pc() == g.label("first") + 8


# Footprints (B6.3.*.4): every PSCI function but CPU_ON has none; CPU_ON's is the target REC's
# runnable flag, set by RMI_PSCI_COMPLETE. A REC entry that makes a call changes the caller's
# REC (its registers, a pending PSCI request) and, per the footprint and success conditions,
# nothing else but the RD for SYSTEM_OFF / SYSTEM_RESET (realm state, B6.3.6.3).


# -- answered inside the RMM -----------------------------------------------------------------------

def test_psci_version(machine: Machine) -> None:
    """PSCI_VERSION -> 1.1 (B6.2: at least 1.1), no exit."""
    with Guest.build(machine, call(0x8400_0000), num_recs=2) as g:
        finish(g)
        answered(g, 0x1_0001)


def test_smccc_version(machine: Machine) -> None:
    """SMCCC_VERSION -> 1.2, no exit."""
    with Guest.build(machine, call(0x8000_0000), num_recs=2) as g:
        finish(g)
        answered(g, 0x1_0002)


@pytest.mark.parametrize("fid", [0x8400_0000, *CPU_SUSPEND, CPU_OFF, *CPU_ON, *AFFINITY_INFO, SYSTEM_OFF,
                                 SYSTEM_RESET, 0x8400_000A, 0x8000_0000])
def test_psci_features_supported(machine: Machine, fid: int) -> None:
    """PSCI_FEATURES of a function the RMM implements -> SUCCESS (B6.3.5 func_ok), no exit."""
    with Guest.build(machine, call(0x8400_000A, fid), num_recs=2) as g:
        finish(g)
        answered(g, SUCCESS)


@pytest.mark.parametrize("fid", [0x8400_0005, 0x8400_0006, 0x8400_000B, 0xC400_000E, 0xC400_0012, 0xC400_0002,
                                 0xC400_0008, 0xC400_0000, 0xC400_0190, 0])
def test_psci_features_not_supported(machine: Machine, fid: int) -> None:
    """PSCI_FEATURES of MIGRATE, MIGRATE_INFO_TYPE, CPU_FREEZE, SYSTEM_SUSPEND, SYSTEM_RESET2, SMC64
    forms PSCI does not define, an RSI ID, 0 -> NOT_SUPPORTED (func_not_ok)."""
    with Guest.build(machine, call(0x8400_000A, fid), num_recs=2) as g:
        finish(g)
        answered(g, NOT_SUPPORTED)


@pytest.mark.parametrize("fid", [0x8400_0005, 0xC400_0005, 0x8400_0006, 0xC400_000E, 0xC400_0012, 0x8400_001F,
                                 0xC400_0002, 0xC400_0008, 0xC400_0009, 0xC400_0000, 0xC400_000A, 0x8400_0015,
                                 0xC400_001F])
def test_unsupported_function(machine: Machine, fid: int) -> None:
    """A PSCI function the RMM does not implement (A4.3.7: not listed), or a form PSCI does not
    define (SMC64 CPU_OFF, SYSTEM_OFF, SYSTEM_RESET, VERSION, FEATURES; B6.3 lists their SMC32
    IDs only) -> NOT_SUPPORTED, no exit."""
    with Guest.build(machine, call(fid, 1, 2, 3), num_recs=2) as g:
        finish(g)
        answered(g, NOT_SUPPORTED)


@pytest.mark.parametrize("x1, x0", [(JUNK_HIGH | CPU_ON[0], SUCCESS), (JUNK_HIGH | 0x8400_0005, NOT_SUPPORTED)],
                         ids=["cpu-on", "migrate"])
def test_psci_features_reads_x1_low_half(machine: Machine, x1: int, x0: int) -> None:
    """psci_func_id is X1[31:0] (B6.3.5; X1[63:32] SBZ): junk in the upper half does not change
    the answer (CPU_ON still SUCCESS, MIGRATE still NOT_SUPPORTED)."""
    with Guest.build(machine, call(0x8400_000A, x1), num_recs=2) as g:
        finish(g)
        answered(g, x0)


@pytest.mark.parametrize("fid, args, x0", [
    (0x8400_0000, (), 0x1_0001),                  # PSCI_VERSION
    (0x8400_000A, (CPU_ON[0],), SUCCESS),         # PSCI_FEATURES
    (AFFINITY_INFO[1], (0, 0), ON),               # AFFINITY_INFO about the caller
], ids=["version", "features", "affinity-info-itself"])
def test_answered_footprint(machine: Machine, fid: int, args: tuple[int, ...], x0: int) -> None:
    """B6.3.8.4, B6.3.5.4, B6.3.1.4: no footprint. The entry that makes a call answered inside
    the RMM changes the caller's REC only (REC 1 and the RD untouched)."""
    with Guest.build(machine, "first: wfi\n" + call(fid, *args), num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: finish(g)) == {"rec0"}
        answered(g, x0)


# -- CPU_ON (B6.3.3) ------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", [UNPROTECTED, UNPROTECTED + 0x1000, 1 << 40])
def test_cpu_on_entry(machine: Machine, entry: int) -> None:
    """entry: an entry point that is not a protected IPA (ACS cmd_cpu_on: 1 << 39, the lowest
    unprotected IPA of a 40-bit realm; another; one beyond the IPA space) -> INVALID_ADDRESS,
    no exit. (SMC64 only: the SMC32 form's entry point is W2, always below 2^32 and so protected
    in this realm's 40-bit IPA space.)"""
    with Guest.build(machine, call(CPU_ON[0], 1, entry, CONTEXT), num_recs=2) as g:
        finish(g)
        answered(g, INVALID_ADDRESS)


@pytest.mark.parametrize("fid, mpidr", [*((fid, mpidr) for fid in CPU_ON for mpidr in (2, 0x100)), (CPU_ON[0], 1 << 32)])
def test_cpu_on_mpidr(machine: Machine, fid: int, mpidr: int) -> None:
    """mpidr: no REC has that MPIDR (index 2, 16, and for SMC64 1 << 20, of a 2-REC realm) ->
    INVALID_PARAMETERS. (The SMC32 form reads W1, so 1 << 32 names REC 0:
    test_smc32_cpu_on_reads_w_registers.)"""
    with Guest.build(machine, call(fid, mpidr, CODE, CONTEXT), num_recs=2) as g:
        finish(g)
        answered(g, INVALID_PARAMETERS)


@pytest.mark.parametrize("fid", CPU_ON)
def test_cpu_on_itself(machine: Machine, fid: int) -> None:
    """runnable: the caller itself is on -> ALREADY_ON without an exit (TF-RMM psci_cpu_on)."""
    with Guest.build(machine, call(fid, 0, CODE, CONTEXT), num_recs=2) as g:
        finish(g)
        answered(g, ALREADY_ON)


@pytest.mark.parametrize("fid", CPU_ON)
def test_cpu_on_success(machine: Machine, fid: int) -> None:
    """CPU_ON(REC 1): PSCI exit with gprs[0] = FID, gprs[1] = target MPIDR and nothing else (entry
    and context stay hidden); the caller's PC is past the SMC, its registers untouched; the
    caller cannot be entered (ERROR_REC) nor can the target (not runnable) until
    RMI_PSCI_COMPLETE; then the caller sees X0 = SUCCESS, X1..X3 = 0, and the target runs from
    the entry point with X0 = context id, X1 = 0 and its own MPIDR."""
    with Guest.build(machine, call(fid, 1, "entry1", CONTEXT) + ENTRY1, num_recs=2) as g:
        psci_exit(g, (fid, 1))
        assert g.pc() == g.label("call") + 8
        assert tuple(g.gpr(n) for n in range(5)) == (fid, 1, g.label("entry1"), CONTEXT, X4)
        assert g.enter()[0] == RMI_REC
        assert g.enter(rec=1)[0] == RMI_REC
        assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        assert tuple(g.gpr(n) for n in range(5)) == (SUCCESS, 0, 0, 0, X4)
        finish(g, rec=1, done="done1")
        assert (g.gpr(20, rec=1), g.gpr(21, rec=1), g.gpr(22, rec=1)) == (CONTEXT, 1 | MPIDR_RES1, 0)
    ok(machine)


JUNK_MPIDR = 1 | MPIDR_RES1 | 1 << 24 | 0xF0
"""REC 1 with bits the MPIDR_EL1 reading ignores: the RES1 bit 31, MT (bit 24) and Aff0[7:4]."""


@pytest.mark.parametrize("fid", [*CPU_ON, *AFFINITY_INFO])
def test_psci_exit_names_the_target_in_canonical_form(machine: Machine, fid: int) -> None:
    """A4.3.7: the exit holds sanitised parameters. A target MPIDR with bits the RMM ignores
    (bit 31, MT, Aff0[7:4]) names REC 1, and the exit's gprs[1] is REC 1's MPIDR affinity (1),
    not X1 as the realm wrote it: a KVM host looks the vCPU up by exactly those affinity fields
    (kvm_psci_valid_affinity, kvm_mpidr_to_vcpu) and answers any other value with
    PSCI_RET_INVALID_PARAMS without RMI_PSCI_COMPLETE, which would leave the caller's request
    pending for ever. The host completes it with REC 1 and the call succeeds."""
    args = (JUNK_MPIDR, "entry1", CONTEXT) if fid in CPU_ON else (JUNK_MPIDR, 0)
    with Guest.build(machine, call(fid, *args) + ENTRY1, num_recs=2) as g:
        psci_exit(g, (fid, 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        assert g.gpr(0) == (SUCCESS if fid in CPU_ON else OFF)
        assert g.rec(1).runnable == (fid in CPU_ON)
    ok(machine)


def test_smc32_cpu_on_reads_w_registers(machine: Machine) -> None:
    """SMC32 CPU_ON (0x84000003) with junk in bits 63:32 of X1 (target), X2 (entry point) and X3
    (context id): SMCCC's 32-bit convention ignores those bits (as TF-A's PSCI and KVM's
    kvm_psci_narrow_to_32bit do), so the call names REC 1 and exits to the host; after
    RMI_PSCI_COMPLETE REC 1 starts at entry1 with X0 = the 32-bit context id. (Read as 64
    bits, the entry point lies outside the protected IPA space: PSCI_INVALID_ADDRESS.)"""
    args = (f"{JUNK_HIGH} | 1", f"{JUNK_HIGH} | entry1", JUNK_HIGH | CONTEXT)
    with Guest.build(machine, call(CPU_ON[1], *args) + ENTRY1, num_recs=2) as g:
        psci_exit(g, (CPU_ON[1], 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        assert tuple(g.gpr(n) for n in range(5)) == (SUCCESS, 0, 0, 0, X4)
        finish(g, rec=1, done="done1")
        assert g.gpr(20, rec=1) == CONTEXT
    ok(machine)


@pytest.mark.parametrize("fid, x0", [(AFFINITY_INFO[1], OFF), (AFFINITY_INFO[0], INVALID_PARAMETERS)], ids=["smc32", "smc64"])
def test_smc32_affinity_info_reads_w_registers(machine: Machine, fid: int, x0: int) -> None:
    """AFFINITY_INFO with junk in bits 63:32 of X1 (target) and X2 (level): the SMC32 form reads
    W1 = 1 and W2 = 0, a PSCI exit naming REC 1, then OFF; the SMC64 form reads X1, whose Aff3
    (bits 39:32) names no REC: INVALID_PARAMETERS without an exit."""
    with Guest.build(machine, call(fid, JUNK_HIGH | 1, JUNK_HIGH), num_recs=2) as g:
        if fid == AFFINITY_INFO[1]:
            psci_exit(g, (fid, 1))
            assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        answered(g, x0)


def test_smc64_cpu_on_reads_x_registers(machine: Machine) -> None:
    """The SMC64 form of the call in test_smc32_cpu_on_reads_w_registers reads all of X2: the
    entry point with junk in bits 63:32 is no protected IPA -> INVALID_ADDRESS, no exit."""
    args = (f"{JUNK_HIGH} | 1", f"{JUNK_HIGH} | entry1", JUNK_HIGH | CONTEXT)
    with Guest.build(machine, call(CPU_ON[0], *args) + ENTRY1, num_recs=2) as g:
        finish(g)
        answered(g, INVALID_ADDRESS)


def test_cpu_on_entry_at_the_top_of_the_protected_space(machine: Machine) -> None:
    """entry: the last instruction below 2^(ipa_width - 1) is a protected IPA (B3.4), so CPU_ON
    to it is forwarded (the PSCI exit) and, completed, sets REC 1's PC there (success condition
    `entry`); one granule higher is INVALID_ADDRESS (test_cpu_on_entry)."""
    entry = UNPROTECTED - 4
    with Guest.build(machine, call(CPU_ON[0], 1, entry, CONTEXT), num_recs=2) as g:
        psci_exit(g, (CPU_ON[0], 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        assert (g.rec(1).runnable, g.pc(rec=1), g.gpr(0, rec=1)) == (True, entry, CONTEXT)
        finish(g)
        answered_on(g)
    ok(machine)


def answered_on(g: Guest) -> None:
    """REC 0's CPU_ON of REC 1 succeeded: X0 = SUCCESS, X1..X3 zeroed, X4 kept."""
    assert tuple(g.gpr(n) for n in range(5)) == (SUCCESS, 0, 0, 0, X4)
    assert g.rec(0).psci_pending == 0


@pytest.mark.parametrize("fid", [CPU_ON[0], CPU_ON[1], AFFINITY_INFO[0]], ids=["cpu-on", "cpu-on-smc32", "affinity-info"])
def test_sve_hint_ignored(machine: Machine, fid: int) -> None:
    """The SMCCC 1.3 SVE hint (FID bit 16, B1.1) is ignored for PSCI as for RSI: CPU_ON and
    AFFINITY_INFO with it set are forwarded as without it, the PSCI exit naming the function
    without the hint (A4.3.7: sanitised parameters), and RMI_PSCI_COMPLETE completes them
    (TF-RMM rel0 answers NOT_SUPPORTED: docs/deviations.md)."""
    args = (1, "entry1", CONTEXT) if fid in CPU_ON else (1, 0)
    with Guest.build(machine, call(fid | SVE_HINT, *args) + ENTRY1, num_recs=2) as g:
        psci_exit(g, (fid, 1))
        assert g.rec(0).psci_pending == fid
        assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        if fid in CPU_ON:
            answered_on(g)
            finish(g, rec=1, done="done1")
            assert g.gpr(20, rec=1) == CONTEXT
        else:
            answered(g, OFF)
    ok(machine)


@pytest.mark.parametrize("fid", [SYSTEM_OFF, CPU_OFF, CPU_SUSPEND[0]], ids=["system-off", "cpu-off", "cpu-suspend"])
def test_sve_hint_ignored_by_notifications(machine: Machine, fid: int) -> None:
    """SYSTEM_OFF, CPU_OFF and CPU_SUSPEND with the SVE hint set act as without it: the PSCI exit
    names the function without the hint, and the realm becomes SYSTEM_OFF, the REC not
    runnable, or the REC simply continues, respectively."""
    with Guest.build(machine, call(fid | SVE_HINT), num_recs=2) as g:
        psci_exit(g, (fid,))
        if fid == SYSTEM_OFF:
            assert g.rd.state == RealmState.SYSTEM_OFF
        elif fid == CPU_OFF:
            assert not g.rec(0).runnable
        else:
            finish(g)
            assert (g.gpr(0), g.gpr(4)) == (SUCCESS, X4)
    ok(machine)


def test_cpu_on_footprint(machine: Machine) -> None:
    """B6.3.3.4: the footprint is target_rec.flags.runnable. The entry that makes the call (PSCI
    exit) changes the caller's REC only; RMI_PSCI_COMPLETE changes the caller and the target
    (runnable, PC, X0); the caller's next entry changes the caller only; REC 1's first entry
    changes REC 1 only."""
    with Guest.build(machine, "first: wfi\n" + call(CPU_ON[0], 1, "entry1", CONTEXT) + ENTRY1, num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: psci_exit(g, (CPU_ON[0], 1))) == {"rec0"}
        assert g.changes(lambda: completed(g, 0, 1)) == {"rec0", "rec1"}
        assert g.changes(lambda: finish(g)) == {"rec0"}
        assert g.changes(lambda: finish(g, rec=1, done="done1")) == {"rec1"}
        assert (g.gpr(0), g.gpr(20, rec=1)) == (SUCCESS, CONTEXT)


def test_cpu_on_denied(machine: Machine) -> None:
    """The host answers DENIED: the caller sees DENIED, the target stays off."""
    with Guest.build(machine, call(CPU_ON[0], 1, "entry1", CONTEXT) + ENTRY1, num_recs=2) as g:
        psci_exit(g, (CPU_ON[0], 1))
        assert complete(g, 0, 1, DENIED) == RMI_SUCCESS
        finish(g)
        answered(g, DENIED)
        assert g.enter(rec=1)[0] == RMI_REC


def test_cpu_on_target_already_on(machine: Machine) -> None:
    """CPU_ON of a REC that is already on still exits (the RMM cannot know without the host's
    target REC); the completion answers ALREADY_ON (B4.3.7.3 on_already)."""
    program = call(CPU_ON[0], 1, "entry1", CONTEXT).replace(
        "done:", "mov x1, #1\nadr x2, entry1\nmov x0, =PSCI_CPU_ON\nsmc #0\ndone:")
    with Guest.build(machine, program + ENTRY1, num_recs=2) as g:
        psci_exit(g, (CPU_ON[0], 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        psci_exit(g, (CPU_ON[0], 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        assert g.gpr(0) == ALREADY_ON


# -- AFFINITY_INFO (B6.3.1) -----------------------------------------------------------------------

@pytest.mark.parametrize("fid", AFFINITY_INFO)
@pytest.mark.parametrize("level", [1, 3, 1 << 32 | 1])
def test_affinity_info_target_bound(machine: Machine, fid: int, level: int) -> None:
    """target_bound: lowest_affinity_level != 0 -> INVALID_PARAMETERS, no exit."""
    with Guest.build(machine, call(fid, 1, level), num_recs=2) as g:
        finish(g)
        answered(g, INVALID_PARAMETERS)


@pytest.mark.parametrize("fid", AFFINITY_INFO)
def test_affinity_info_level_is_x2_low_half(machine: Machine, fid: int) -> None:
    """lowest_affinity_level is X2[31:0] (B6.3.1; X2[63:32] SBZ): X2 = 1 << 32 names level 0,
    so target_bound does not fail: about the caller, ON; about REC 1, the PSCI exit."""
    with Guest.build(machine, call(fid, MPIDR_RES1, 1 << 32), num_recs=2) as g:
        finish(g)
        answered(g, ON)
    with Guest.build(machine, call(fid, 1, 1 << 32), num_recs=2) as g:
        psci_exit(g, (fid, 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        answered(g, OFF)


@pytest.mark.parametrize("fid", AFFINITY_INFO)
def test_affinity_info_target_match(machine: Machine, fid: int) -> None:
    """target_match: no REC with that MPIDR -> INVALID_PARAMETERS, no exit."""
    with Guest.build(machine, call(fid, 2, 0), num_recs=2) as g:
        finish(g)
        answered(g, INVALID_PARAMETERS)


@pytest.mark.parametrize("fid", [*CPU_ON, *AFFINITY_INFO])
def test_destroyed_rec_still_counts_as_used(machine: Machine, fid: int) -> None:
    """docs/deviations.md row "PSCI CPU_ON / AFFINITY_INFO naming a REC the host has destroyed":
    REC 1 is destroyed (REC_DESTROY, its granules undelegated) before REC 0 names it. Its index
    is below the RD's REC count, so the call is no INVALID_PARAMETERS (B3.24 MpidrIsUsed would
    give that) but a PSCI exit naming it; the host cannot complete it (PSCI_COMPLETE's target
    is no REC: RMI_ERROR_INPUT), so REC 0's entries fail with RMI_ERROR_REC, the request still
    pending."""
    args = (1, "entry1", CONTEXT) if fid in CPU_ON else (1, 0)
    with Guest.build(machine, call(fid, *args) + ENTRY1, num_recs=2) as g:
        rec1 = g.realm.recs[1]
        destroy_recs(g.cpu, g.alloc, replace(g.realm, recs=(rec1,)))
        g.realm = replace(g.realm, recs=g.realm.recs[:1])     # the teardown leaves REC 1 alone
        psci_exit(g, (fid, 1))
        assert g.smc(F.RMI_PSCI_COMPLETE, g.rec_pa(0), rec1.rec, SUCCESS)[0] == RMI_INPUT
        assert g.rec(0).psci_pending
        assert g.enter()[0] == RMI_REC
        assert g.rec(0).psci_pending
    ok(machine)


@pytest.mark.parametrize("fid", AFFINITY_INFO)
def test_affinity_info_itself(machine: Machine, fid: int) -> None:
    """About the caller itself: ON, answered without an exit (TF-RMM psci_affinity_info)."""
    with Guest.build(machine, call(fid, 0, 0), num_recs=2) as g:
        finish(g)
        answered(g, ON)


@pytest.mark.parametrize("fid", AFFINITY_INFO)
def test_affinity_info_other_rec(machine: Machine, fid: int) -> None:
    """About REC 1: a pending PSCI exit (FID, target MPIDR); the caller is refused entry until
    RMI_PSCI_COMPLETE, a completion with a status other than SUCCESS is refused (status), and
    the result is OFF while REC 1 is off, ON after CPU_ON turned it on."""
    program = call(fid, 1, 0).replace("done:", f"""
        mov x20, x0
        mov x1, #1
        adr x2, entry1
        mov x0, =PSCI_CPU_ON
        smc #0
        mov x1, #1
        mov x2, #0
        mov x0, ={fid}
        smc #0
    done:""") + ENTRY1
    with Guest.build(machine, program, num_recs=2) as g:
        psci_exit(g, (fid, 1))
        assert g.enter()[0] == RMI_REC
        assert complete(g, 0, 1, DENIED) == RMI_INPUT
        assert complete(g, 0, 1) == RMI_SUCCESS
        psci_exit(g, (CPU_ON[0], 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        psci_exit(g, (fid, 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        finish(g)
        assert (g.gpr(20), g.gpr(0), g.gpr(1)) == (OFF, ON, 0)
    ok(machine)


def test_affinity_info_footprint(machine: Machine) -> None:
    """B6.3.1.4: no footprint. About REC 1: the entry that makes the call (PSCI exit) changes
    the caller's REC only, and so does RMI_PSCI_COMPLETE (REC 1 is only read), and the entry
    that returns the result."""
    with Guest.build(machine, "first: wfi\n" + call(AFFINITY_INFO[0], 1, 0), num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: psci_exit(g, (AFFINITY_INFO[0], 1))) == {"rec0"}
        assert g.changes(lambda: completed(g, 0, 1)) == {"rec0"}
        assert g.changes(lambda: finish(g)) == {"rec0"}
        answered(g, OFF)


@pytest.mark.parametrize("fid, args, x0, complete_it", [
    (AFFINITY_INFO[0], (1, 0), OFF, True), (CPU_SUSPEND[0], (0, 0, 0), SUCCESS, False)], ids=["affinity", "suspend"])
def test_entry_after_psci_exit_ignores_enter_gprs(machine: Machine, fid: int, args: tuple[int, ...], x0: int,
                                                  complete_it: bool) -> None:
    """A4.2.2 (ACS exception_rec_exit_psci corrupts enter.gprs[19]): the entry after a PSCI exit
    gives the realm X0 = the PSCI result, X1..X3 = 0 and X4..X30 as they were at the SMC;
    nothing the host writes into enter.gprs reaches the realm."""
    regs = "\n".join(f"mov x{n}, ={0x5EED_0000 + n}" for n in range(5, 31))
    with Guest.build(machine, regs + "\n" + call(fid, *args), num_recs=2) as g:
        psci_exit(g, (fid, args[0]) if complete_it else (fid,))
        if complete_it:
            completed(g, 0, 1)
        x0_, ex = g.enter(gprs=[0xBAD0_0000 + n for n in range(31)])
        assert (x0_, ex["exit_reason"]) == (RMI_SUCCESS, EXIT_IRQ) and g.pc() == g.label("done") + 8
        assert [g.gpr(n) for n in range(31)] == [x0, 0, 0, 0, X4] + [0x5EED_0000 + n for n in range(5, 31)]


# -- failing calls and completions change the caller only (B1.9) ---------------------------------

PSCI_FAILURES = {
    # id: (FID, X1.., result): answered inside the RMM, no exit
    "cpu-on-entry-unprotected": (CPU_ON[0], (1, UNPROTECTED + 0x1000, CONTEXT), INVALID_ADDRESS),
    "cpu-on-entry-beyond-ipa-space": (CPU_ON[0], (1, 1 << 40, CONTEXT), INVALID_ADDRESS),
    "cpu-on-unknown-mpidr": (CPU_ON[0], (2, CODE, CONTEXT), INVALID_PARAMETERS),
    "cpu-on-itself": (CPU_ON[0], (0, CODE, CONTEXT), ALREADY_ON),
    # B6.3.3.2 gives no order; as TF-RMM rel0, `entry` comes first: before `mpidr` and before
    # `runnable` (the caller itself)
    "cpu-on-entry-and-unknown-mpidr": (CPU_ON[0], (2, UNPROTECTED, CONTEXT), INVALID_ADDRESS),
    "cpu-on-itself-entry-unprotected": (CPU_ON[0], (0, UNPROTECTED, CONTEXT), INVALID_ADDRESS),
    "affinity-info-unknown-target": (AFFINITY_INFO[0], (2, 0), INVALID_PARAMETERS),
    "affinity-info-level-1": (AFFINITY_INFO[1], (1, 1), INVALID_PARAMETERS),
    # target_bound holds about the caller itself too: no ON answer for a level other than 0
    "affinity-info-itself-level-1": (AFFINITY_INFO[0], (MPIDR_RES1, 1), INVALID_PARAMETERS),
    "psci-features-unknown-fid": (0x8400_000A, (0x8400_0005,), NOT_SUPPORTED),
    "psci-features-rsi-fid": (0x8400_000A, (0xC400_0190,), NOT_SUPPORTED),
    "unimplemented-function": (0x8400_0005, (1, 2, 3), NOT_SUPPORTED),
}


@pytest.mark.parametrize("fid, args, x0", PSCI_FAILURES.values(), ids=PSCI_FAILURES.keys())
def test_failure_changes_the_caller_only(machine: Machine, fid: int, args: tuple[int, ...], x0: int) -> None:
    """B1.9: a failing PSCI call has no effect but its result: the entry that makes it changes
    the caller's REC (X0..X3, PC) and nothing else: REC 1 stays off and untouched, the RD too."""
    with Guest.build(machine, "first: wfi\n" + call(fid, *args), num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: finish(g)) == {"rec0"}
        answered(g, x0)


def not_runnable(g: Guest, rec: int) -> None:
    """RMI_REC_ENTER of ``rec`` fails with ERROR_REC (B4.3.9.2 runnable)."""
    assert g.enter(rec=rec)[0] == RMI_REC


def refused(g: Guest, caller: int, target: int, status: int) -> None:
    """RMI_PSCI_COMPLETE(caller, target, status) fails with ERROR_INPUT."""
    assert complete(g, caller, target, status) == RMI_INPUT


def test_cpu_on_denied_leaves_the_target_unchanged(machine: Machine) -> None:
    """B6.3.3.4: CPU_ON's footprint is the target's runnable flag, which a DENIED completion
    leaves clear (B4.3.7.3): RMI_PSCI_COMPLETE(DENIED) changes the caller's REC (its result)
    only, not REC 1; the caller's next entry changes the caller only; REC 1 still cannot be
    entered, and that failing REC_ENTER changes nothing."""
    with Guest.build(machine, "first: wfi\n" + call(CPU_ON[0], 1, "entry1", CONTEXT) + ENTRY1, num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: psci_exit(g, (CPU_ON[0], 1))) == {"rec0"}
        assert g.changes(lambda: complete(g, 0, 1, DENIED)) == {"rec0"}
        assert g.changes(lambda: finish(g)) == {"rec0"}
        answered(g, DENIED)
        assert g.changes(lambda: not_runnable(g, 1)) == set()


@pytest.mark.parametrize("fid, target, status", [
    (CPU_ON[0], 2, SUCCESS),                 # target: not the REC the request names
    (CPU_ON[0], 1, INVALID_PARAMETERS),      # status: neither SUCCESS nor DENIED
    (AFFINITY_INFO[0], 1, DENIED),           # status: AFFINITY_INFO takes SUCCESS only
    (AFFINITY_INFO[0], 2, SUCCESS),          # target
], ids=["cpu-on-other-target", "cpu-on-bad-status", "affinity-info-denied", "affinity-info-other-target"])
def test_refused_completion_changes_nothing(machine: Machine, fid: int, target: int, status: int) -> None:
    """A failing RMI_PSCI_COMPLETE (ERROR_INPUT) leaves every granule as it was: the request
    stays pending in the caller, no REC is turned on; the right completion then still works."""
    args = (1, "entry1", CONTEXT) if fid in CPU_ON else (1, 0)
    with Guest.build(machine, "first: wfi\n" + call(fid, *args) + ENTRY1, num_recs=3) as g:
        to_first(g)
        psci_exit(g, (fid, 1))
        assert g.changes(lambda: refused(g, 0, target, status)) == set()
        assert g.rec(0).psci_pending == fid and not g.rec(1).runnable and not g.rec(2).runnable
        completed(g, 0, 1)
        finish(g)
        assert g.gpr(0) == (SUCCESS if fid in CPU_ON else OFF)


# -- CPU_OFF, CPU_SUSPEND (B6.3.2, B6.3.4) ------------------------------------------------------------

CPU_OFF_PROGRAM = f"""
    mov x1, #1                  // REC 0: turn REC 1 on, then off with itself
    adr x2, entry1
    mov x0, =PSCI_CPU_ON
    smc #0
    mov x0, ={CPU_OFF}
    smc #0
    udf                         // never reached
entry1:                         // REC 1: is REC 0 off? then turn it on again, at entry0
    mov x1, #0
    mov x2, #0
    mov x0, =PSCI_AFFINITY_INFO
    smc #0
    mov x20, x0
    mov x1, #0
    adr x2, entry0
    mov x3, ={CONTEXT}
    mov x0, =PSCI_CPU_ON
    smc #0
    mov x21, x0
done1:
    wfi
    b done1
entry0:
    mov x20, x0
done0:
    wfi
    b done0
"""


def test_cpu_off(machine: Machine) -> None:
    """CPU_OFF: a PSCI exit with the FID only; the REC is no longer runnable, REC_ENTER refuses
    it (ERROR_REC); AFFINITY_INFO from REC 1 reports it OFF; CPU_ON brings it back, running
    from the new entry point with X0 = context id."""
    with Guest.build(machine, CPU_OFF_PROGRAM, num_recs=2) as g:
        psci_exit(g, (CPU_ON[0], 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        psci_exit(g, (CPU_OFF,))
        assert not g.rec(0).runnable
        assert g.enter()[0] == RMI_REC
        psci_exit(g, (AFFINITY_INFO[0], 0), rec=1)
        assert complete(g, 1, 0) == RMI_SUCCESS
        psci_exit(g, (CPU_ON[0], 0), rec=1)
        assert complete(g, 1, 0) == RMI_SUCCESS
        assert g.rec(0).runnable
        finish(g, rec=1, done="done1")
        assert (g.gpr(20, rec=1), g.gpr(21, rec=1)) == (OFF, SUCCESS)
        finish(g, rec=0, done="done0")
        assert g.gpr(20) == CONTEXT
    ok(machine)


def test_cpu_off_footprint(machine: Machine) -> None:
    """B6.3.2.4: no footprint. The entry that makes the call changes the caller's REC only (its
    runnable flag is part of it, A2.3.2): REC 1 and the RD are untouched."""
    with Guest.build(machine, "first: wfi\n" + call(CPU_OFF), num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: psci_exit(g, (CPU_OFF,))) == {"rec0"}
        assert not g.rec(0).runnable


@pytest.mark.parametrize("fid", CPU_SUSPEND)
def test_cpu_suspend(machine: Machine, fid: int) -> None:
    """CPU_SUSPEND(power_state, entry, context): a PSCI exit with the FID only (the arguments are
    ignored); no RMI_PSCI_COMPLETE is needed: re-entry continues after the SMC with X0 = SUCCESS."""
    with Guest.build(machine, call(fid, 0x1_0000, "done", CONTEXT), num_recs=2) as g:
        psci_exit(g, (fid,))
        assert g.pc() == g.label("call") + 8
        assert g.rec().psci_pending == 0
        finish(g)
        assert (g.gpr(0), g.gpr(4)) == (SUCCESS, X4)


def test_cpu_suspend_footprint(machine: Machine) -> None:
    """B6.3.4.4: no footprint. The entry that makes the call (PSCI exit) and the one that
    continues after it each change the caller's REC only."""
    with Guest.build(machine, "first: wfi\n" + call(CPU_SUSPEND[1], 0, "done", CONTEXT), num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: psci_exit(g, (CPU_SUSPEND[1],))) == {"rec0"}
        assert g.changes(lambda: finish(g)) == {"rec0"}
        assert g.gpr(0) == SUCCESS


MULTITHREAD_PROGRAM = f"""
    mov x1, #1                  // REC 0: turn REC 1 on
    adr x2, entry1
    mov x3, ={CONTEXT}
    mov x0, =PSCI_CPU_ON
    smc #0
    mov x20, x0                 // the CPU_ON result
    adr x9, booted
    ldr x21, [x9]               // what REC 1 stored
    adr x1, hc
    mov x0, =RSI_HOST_CALL      // back to the host
    smc #0
done:
    wfi
    b done
entry1:                         // REC 1: say it ran, then turn itself off
    mov x22, x0
    adr x9, booted
    mov x10, #1
    str x10, [x9]
    mov x0, ={CPU_OFF}
    smc #0
    udf                         // never reached
booted:
    .quad 0
    .align 256
hc:
    .zero 256
"""


@pytest.mark.parametrize("cpu", [0, 1], ids=["up", "mp"])
def test_secondary_rec_runs_and_turns_itself_off(machine: Machine, cpu: int) -> None:
    """ACS cmd_multithread_realm_up / _mp: REC 0 CPU_ONs REC 1 (a PSCI exit the host completes);
    REC 1 is entered, on the same host CPU (up) or on the other one (mp), stores a flag into
    realm memory and calls CPU_OFF: a PSCI exit naming CPU_OFF, REC 1 no longer runnable (REC_ENTER refuses it). REC 0,
    entered again on CPU 0, sees CPU_ON's SUCCESS and REC 1's flag, and makes the host call
    (a HOST_CALL exit) with which the ACS realm returns to its host."""
    with Guest.build(machine, MULTITHREAD_PROGRAM, num_recs=2) as g:
        psci_exit(g, (CPU_ON[0], 1))
        assert complete(g, 0, 1) == RMI_SUCCESS
        x0, ex = g.enter(rec=1, cpu=cpu)
        assert (x0, ex["exit_reason"], ex["gprs"][0]) == (RMI_SUCCESS, EXIT_PSCI, CPU_OFF)
        assert not g.rec(1).runnable
        assert g.gpr(22, rec=1) == CONTEXT
        x0, ex = g.enter()
        assert (x0, ex["exit_reason"]) == (RMI_SUCCESS, EXIT_HOST_CALL)
        assert (g.gpr(20), g.gpr(21)) == (SUCCESS, 1)
        assert g.enter(rec=1, cpu=cpu)[0] == RMI_REC
    ok(machine)


# -- SYSTEM_OFF, SYSTEM_RESET (B6.3.6, B6.3.7) ----------------------------------------------------------

@pytest.mark.parametrize("fid", [SYSTEM_OFF, SYSTEM_RESET])
def test_system_off(machine: Machine, fid: int) -> None:
    """ACS cmd_system_off / cmd_system_reset: SYSTEM_OFF / SYSTEM_RESET: a PSCI exit with the
    FID only; the realm is SYSTEM_OFF, so every later REC_ENTER of any of its RECs fails with
    (ERROR_REALM, 1) = 0x102 (before the REC's own checks: REC 1 is not runnable); PSCI_COMPLETE
    has no request to complete (ERROR_INPUT)."""
    with Guest.build(machine, call(fid), num_recs=2) as g:
        psci_exit(g, (fid,))
        assert g.rd.state == RealmState.SYSTEM_OFF
        for rec in (0, 1, 0):
            assert g.enter(rec=rec)[0] == RMI_SYSTEM_OFF
        assert complete(g, 0, 1) == RMI_INPUT
        assert complete(g, 1, 0) == RMI_INPUT
    ok(machine)


@pytest.mark.parametrize("fid", [SYSTEM_OFF, SYSTEM_RESET])
def test_system_off_footprint(machine: Machine, fid: int) -> None:
    """B6.3.6.4, B6.3.7.4: no footprint, but success condition `state` (B6.3.6.3) is the realm
    state, which the RD holds. The entry that makes the call changes the caller's REC and the RD
    only (REC 1 untouched)."""
    with Guest.build(machine, "first: wfi\n" + call(fid), num_recs=2) as g:
        to_first(g)
        assert g.changes(lambda: psci_exit(g, (fid,))) == {"rec0", "rd"}
        assert g.rd.state == RealmState.SYSTEM_OFF
