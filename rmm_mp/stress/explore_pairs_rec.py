"""The interleaving explorer's pairs in which a REC runs a guest (stress.explore_pairs holds
the catalog): REC_ENTER of a small guest, its image a measured DATA page, against a command on
what the guest or the RMM on its behalf uses (the REC, its run page, a host call structure and
its table, a page it stores to, the RD of a measurement, the target of a PSCI request, the
table of a RIPAS request or of a 2 MiB block), or against another REC_ENTER or a PSCI_COMPLETE
of the same realm (PSCI_SYSTEM_OFF, CPU_ON, CPU_OFF, AFFINITY_INFO). Their outcomes include
views (Prepared.watch) of the REC exit, the REC, REM1 and a page.

This module owns those setups: each pair's realm, the program its guest runs, the pages that
program uses and the views of its outcome. The guests are written and their realms built with
stress.explore_guest's kit (image layout, SMC snippets, guest_realm, the time slice and the
running-REC rule), which this module must not redefine. It must not write the machine's shared
memory other than through SMCs and Machine.ns_write.
"""

from __future__ import annotations

import struct

from rmm_mp.abi.psci import PsciFid, rec_index_to_mpidr_el1
from rmm_mp.abi.rsi import RsiFid, RsiRipas
from rmm_mp.abi.structs import RSI_HOST_CALL, RmiRecEnterFlags, RmiRecExitReason
from rmm_mp.host.realm import NS_MAP_ATTRS
from rmm_mp.machine import Machine
from rmm_mp.stress.explore import Prepared, Watch
from rmm_mp.stress.explore_guest import (
    CODE, RAM_TABLE, REC1_PC, REC2_PC, exit_must_be, extend_rem1, guest_realm, host_call, init_ram, smc,
)
from rmm_mp.stress.explore_setup import (
    F, G, L2, RIPAS_BASE, RIPAS_TOP, UNPROTECTED, Builder, BuiltRealm, SetupError, exit_view, prepared, rec_view,
    rem_view, ripas_request,
)

# -- pairs with a REC running a guest ------------------------------------------------------------

HOST_CALL_IPA = 1 * G
"""The RsiHostCall structure's page."""
HOST_CALL_IMM, HOST_CALL_GPRS, HOST_RESULTS = 0x11, (0xA0, 0xA1), (0xB0, 0xB1)
"""What the structure holds when the realm is made, and what the host answers a host call with."""
STORE_IPA = 2 * G
"""The page the storing guest writes."""
HOST_CALL_IN_TABLE = RAM_TABLE + 5 * G
"""A host call structure in RAM_TABLE: nothing is there, so the realm's call exits with a data abort."""


def rec_enter_vs_rec_destroy(machine: Machine, run_below: bool = False) -> Prepared:
    """REC_ENTER of a REC whose guest loops until its slice ends, vs REC_DESTROY of that REC:
    serially one of them fails; while the REC runs, REC_DESTROY fails (rec_state: running).
    With ``run_below``, the run page lies below the REC (Builder's ``runs_below``)."""
    b = Builder(machine, runs_below=int(run_below))
    _, (rec,) = guest_realm(b, "b .")
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_REC_DESTROY, rec), (exit_view("A", run),))


def rec_enter_vs_rec_enter(machine: Machine, run_below: bool = False) -> Prepared:
    """Two REC_ENTERs of one REC (each with its own run page), whose guest counts in X0 until
    its slice ends: one after the other both run; while the REC runs, the second fails
    rec_state (and X0 shows one slice). With ``run_below``, both run pages lie below the REC."""
    b = Builder(machine, runs_below=2 * int(run_below))
    _, (rec,) = guest_realm(b, "count: add x0, x0, #1\nb count")
    run_a, run_b = b.run_page(), b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run_a), (F.RMI_REC_ENTER, rec, run_b),
                     (exit_view("A", run_a), exit_view("B", run_b), rec_view("REC", rec)))


def rec_enter_vs_set_ripas(machine: Machine, run_below: bool = False) -> Prepared:
    """The REC of set_ripas_vs_rtt_destroy stopped at its RIPAS request; REC_ENTER (completing the
    request with the progress so far, in X1, then looping) vs RTT_SET_RIPAS of the range (which
    locks the RD and the REC). With ``run_below``, the run page lies below the REC."""
    b = Builder(machine, runs_below=int(run_below))
    realm, rec = ripas_request(b)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_SET_RIPAS, realm.rd, rec, RIPAS_BASE, RIPAS_TOP),
                     (exit_view("A", run), rec_view("REC", rec)))


def rec_enter_vs_delegate_run_page(machine: Machine, run_below: bool = False) -> Prepared:
    """REC_ENTER vs DELEGATE of its run page: delegated before the entry looks, the entry fails
    (run_pas); delegated while the REC runs, the realm has run (its X0 shows it) but its exit
    cannot be written, so REC_ENTER returns RMI_ERROR_INPUT (A4.3.3). With ``run_below``, the
    run page lies below the REC: the entry's first lock is then the one DELEGATE takes."""
    b = Builder(machine, runs_below=int(run_below))
    _, (rec,) = guest_realm(b, "mov x0, #7\nb .")
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_GRANULE_DELEGATE, run), (rec_view("REC", rec),))


_HOST_CALL_PAGE = bytes(RSI_HOST_CALL.pack(imm=HOST_CALL_IMM, gprs=HOST_CALL_GPRS + (0,) * 29))
_TWO_HOST_CALLS = host_call(HOST_CALL_IPA) + host_call(HOST_CALL_IPA) + "b ."
"""A host call, and another on the same structure: the second call's exit shows in its gprs
what the host answered the first with (the completion copied them into the structure)."""


def _host_call_realm(b: Builder) -> tuple[BuiltRealm, int]:
    realm, (rec,) = guest_realm(b, _TWO_HOST_CALLS, pages=((HOST_CALL_IPA, _HOST_CALL_PAGE),))
    return realm, rec


def host_call_vs_data_destroy(machine: Machine) -> Prepared:
    """REC_ENTER whose guest makes a host call (the RMM walks the realm's RTTs, locked, to the
    structure and reads it) vs DATA_DESTROY of the structure's page."""
    b = Builder(machine)
    realm, rec = _host_call_realm(b)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_DATA_DESTROY, realm.rd, HOST_CALL_IPA),
                     (exit_view("A", run), rec_view("REC", rec)))


def _host_call_answered(machine: Machine, run_below: bool = False) -> tuple[Builder, BuiltRealm, int, int]:
    """The realm of _host_call_realm stopped at its first host call; a run page with the host's
    answer (HOST_RESULTS), below the REC with ``run_below``."""
    b = Builder(machine, runs_below=int(run_below))
    realm, rec = _host_call_realm(b)
    exit_must_be(b.enter(rec), RmiRecExitReason.RMI_EXIT_HOST_CALL)
    return b, realm, rec, b.run_page(HOST_RESULTS)


def host_call_completion_vs_data_destroy(machine: Machine) -> Prepared:
    """REC_ENTER completing a host call (the host's gprs copied into the structure, then the
    guest's second host call reads them back) vs DATA_DESTROY of the structure's page."""
    b, realm, rec, run = _host_call_answered(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_DATA_DESTROY, realm.rd, HOST_CALL_IPA),
                     (exit_view("A", run), rec_view("REC", rec)))


def data_destroy_vs_host_call_completion(machine: Machine) -> Prepared:
    """The same, the other way round: REC_ENTER inserted at DATA_DESTROY's lock events, so that
    the completion meets the page unmapped but not yet wiped, or wiped but its table still held
    (the completion writes without a walk only while the realm's TLB generation is unchanged)."""
    b, realm, rec, run = _host_call_answered(machine)
    return prepared(b, (F.RMI_DATA_DESTROY, realm.rd, HOST_CALL_IPA), (F.RMI_REC_ENTER, rec, run),
                     (exit_view("B", run), rec_view("REC", rec)))


def _host_call_in_ram_table(machine: Machine) -> tuple[Builder, BuiltRealm, int, int]:
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, host_call(HOST_CALL_IN_TABLE) + "b .", ram_table=True)
    return b, realm, rec, b.run_page()


def host_call_vs_rtt_destroy(machine: Machine) -> Prepared:
    """REC_ENTER whose guest makes a host call on an unassigned page of a table (its walk ends
    there, at level 3) vs RTT_DESTROY of that table (the walk then ends at level 2)."""
    b, realm, rec, run = _host_call_in_ram_table(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_DESTROY, realm.rd, RAM_TABLE, 3),
                     (exit_view("A", run),))


def host_call_vs_rtt_fold(machine: Machine) -> Prepared:
    """The same host call vs RTT_FOLD of the table (homogeneous: every entry UNASSIGNED RAM)."""
    b, realm, rec, run = _host_call_in_ram_table(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_FOLD, realm.rd, RAM_TABLE, 3),
                     (exit_view("A", run),))


def _store_extend_store(ipa: int) -> str:
    """Stores to ``ipa``, extends REM1 (RD lock: lock events while the REC runs), stores again."""
    return f"""
        mov x1, ={ipa:#x}
        mov x2, #0x5a
        str x2, [x1]
    {extend_rem1(0x77)}
        mov x1, ={ipa:#x}
        mov x2, #0xa5
        str x2, [x1, #8]
        b .
    """


def _storing_realm(machine: Machine) -> tuple[Builder, BuiltRealm, int, int]:
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, _store_extend_store(STORE_IPA), pages=((STORE_IPA, b""),))
    return b, realm, rec, b.run_page()


def store_vs_data_destroy(machine: Machine) -> Prepared:
    """REC_ENTER whose guest stores to a page, extends REM1 and stores to it again, vs
    DATA_DESTROY of the page: destroyed while the REC runs, the second store must fault (the
    realm's translation of the page is gone when DATA_DESTROY returns) and the page stay zero."""
    b, realm, rec, run = _storing_realm(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_DATA_DESTROY, realm.rd, STORE_IPA),
                     (exit_view("A", run), rem_view(realm)))


def data_destroy_vs_store(machine: Machine) -> Prepared:
    """The same, the other way round: the guest's stores inserted at DATA_DESTROY's lock events."""
    b, realm, rec, run = _storing_realm(machine)
    return prepared(b, (F.RMI_DATA_DESTROY, realm.rd, STORE_IPA), (F.RMI_REC_ENTER, rec, run),
                     (exit_view("B", run), rem_view(realm)))


UNPROTECTED_PAGE = UNPROTECTED + 5 * G


def unprotected_store_realm(b: Builder, offset: int) -> tuple[BuiltRealm, int]:
    """A realm (with its tables down to level 3 at UNPROTECTED) whose one REC stores 0x5a at
    ``offset`` in UNPROTECTED_PAGE and then loops; the realm and the REC."""
    realm, (rec,) = guest_realm(b, f"""
        mov x1, ={UNPROTECTED_PAGE:#x}
        mov x2, #0x5a
        str x2, [x1, #{offset:#x}]
        b .
    """)
    b.tables(realm, UNPROTECTED, 3)
    return realm, rec


def store_unprotected_vs_unmap(machine: Machine) -> Prepared:
    """REC_ENTER whose guest stores to a mapped unprotected page vs RTT_UNMAP_UNPROTECTED of it:
    unmapped first, the store exits as an emulatable data abort (ISV, the value in gprs[0])."""
    b = Builder(machine)
    realm, rec = unprotected_store_realm(b, 0x18)
    b.call(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, UNPROTECTED_PAGE, 3, b.ns_page() | NS_MAP_ATTRS)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, UNPROTECTED_PAGE, 3),
                     (exit_view("A", run),))


def _rec1_cpu_off_vs_psci_complete(machine: Machine, request: str) -> Prepared:
    """REC 0 made the PSCI ``request`` naming REC 1 (pending: the host completes it); REC_ENTER
    of REC 1, whose guest calls PSCI_CPU_OFF, vs PSCI_COMPLETE(REC 0, REC 1, SUCCESS)."""
    b = Builder(machine)
    _, (rec0, rec1) = guest_realm(b, f"""
    {request}
        b .
        .org {REC1_PC:#x}
    {smc(int(PsciFid.PSCI_CPU_OFF))}
        b .
    """, rec1=True)
    exit_must_be(b.enter(rec0), RmiRecExitReason.RMI_EXIT_PSCI)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec1, run), (F.RMI_PSCI_COMPLETE, rec0, rec1, 0),
                     (exit_view("A", run), rec_view("REC 0", rec0), rec_view("REC 1", rec1)))


def rec_enter_cpu_off_vs_psci_complete(machine: Machine) -> Prepared:
    """REC 0 asked PSCI_CPU_ON for REC 1; REC 1 on (runnable or running) when the completion
    looks: REC 0 gets ALREADY_ON; off: SUCCESS, REC 1 reset."""
    return _rec1_cpu_off_vs_psci_complete(
        machine, smc(int(PsciFid.PSCI_CPU_ON), rec_index_to_mpidr_el1(1), REC1_PC, 0x42))


def rec_enter_vs_rec_enter_extend(machine: Machine) -> Prepared:
    """REC_ENTER of REC 0 and of REC 1 of one realm, each guest extending REM1 with its own
    value (under the RD lock): REM1 tells the order the two extensions took."""
    b = Builder(machine)
    realm, (rec0, rec1) = guest_realm(b, f"""
    {extend_rem1(0xA)}
        b .
        .org {REC1_PC:#x}
    {extend_rem1(0xB)}
        b .
    """, rec1=True)
    run0, run1 = b.run_page(), b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec0, run0), (F.RMI_REC_ENTER, rec1, run1),
                     (exit_view("A", run0), exit_view("B", run1), rem_view(realm)))


# -- PSCI and SYSTEM_OFF, RIPAS completions, folds under a running guest, pending host calls ----

CHANGE_TABLE = 2 * L2
"""A level-3 table of its own, every entry UNASSIGNED EMPTY, whose whole range a guest asks to
make RAM (RSI_IPA_STATE_SET): once the host has answered, the table is homogeneous (RTT_FOLD)."""
BLOCK_IPA = 2 * L2
"""The 2 MiB of ASSIGNED RAM pages (one delegated block) whose level-3 table RTT_FOLD folds."""
BLOCK_STORE_PAGE = 5
"""The page of the block the storing guest writes."""

_RSI_IPA_STATE_SET_FID = int(RsiFid.RSI_IPA_STATE_SET)


_SYSTEM_OFF = smc(int(PsciFid.PSCI_SYSTEM_OFF))


def _system_off_realm(machine: Machine) -> tuple[Builder, BuiltRealm, list[int], list[int]]:
    """REC 0 calls PSCI_SYSTEM_OFF, REC 1 extends REM1 (the RD lock SYSTEM_OFF takes too); the
    RECs and a run page for each."""
    b = Builder(machine)
    realm, recs = guest_realm(b, f"""
    {_SYSTEM_OFF}
        b .
        .org {REC1_PC:#x}
    {extend_rem1(0xB)}
        b .
    """, rec1=True)
    return b, realm, recs, [b.run_page(), b.run_page()]


def system_off_vs_rec_enter(machine: Machine) -> Prepared:
    """REC_ENTER of REC 0, whose guest calls PSCI_SYSTEM_OFF, vs REC_ENTER of REC 1 of the same
    realm: once the realm is SYSTEM_OFF, REC 1's entry fails (RMI_ERROR_REALM, 1); entered
    before, REC 1 runs (its REM1 extension shows)."""
    b, realm, (rec0, rec1), (run0, run1) = _system_off_realm(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec0, run0), (F.RMI_REC_ENTER, rec1, run1),
                     (exit_view("A", run0), exit_view("B", run1), rem_view(realm)))


def rec_enter_vs_system_off(machine: Machine) -> Prepared:
    """The same, the other way round: SYSTEM_OFF inserted at the lock events of REC 1's entry and
    of its REM1 extension (which holds the RD lock SYSTEM_OFF needs)."""
    b, realm, (rec0, rec1), (run0, run1) = _system_off_realm(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec1, run1), (F.RMI_REC_ENTER, rec0, run0),
                     (exit_view("A", run1), exit_view("B", run0), rem_view(realm)))


_CPU_ON_REC1 = smc(int(PsciFid.PSCI_CPU_ON), rec_index_to_mpidr_el1(1), REC1_PC, 0x42)
_CPU_ON_OR_SYSTEM_OFF = f"""
    {_CPU_ON_REC1}
        b .
        .org {REC1_PC:#x}
        b .
        .org {REC2_PC:#x}
    {_SYSTEM_OFF}
        b .
"""
"""REC 0 asks PSCI_CPU_ON for REC 1 (off: created not runnable), REC 2 calls PSCI_SYSTEM_OFF."""


def cpu_on_realm(machine: Machine, run_below: bool = False) -> tuple[Builder, list[int]]:
    """A realm running _CPU_ON_OR_SYSTEM_OFF (REC 1 off, REC 2 runnable); its RECs 0, 1, 2."""
    b = Builder(machine, runs_below=int(run_below))
    _, recs = guest_realm(b, _CPU_ON_OR_SYSTEM_OFF, rec1=True, rec1_runnable=False, more=((REC2_PC, True),))
    return b, recs


def system_off_vs_psci_complete(machine: Machine) -> Prepared:
    """REC 0's CPU_ON of REC 1 pending; REC_ENTER of REC 2, whose guest calls PSCI_SYSTEM_OFF, vs
    PSCI_COMPLETE(REC 0, REC 1, SUCCESS): RMI_PSCI_COMPLETE has no realm state condition, so it
    completes the CPU_ON (REC 1 runnable, REC 0's X0 SUCCESS) in every order."""
    b, (rec0, rec1, rec2) = cpu_on_realm(machine)
    exit_must_be(b.enter(rec0), RmiRecExitReason.RMI_EXIT_PSCI)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec2, run), (F.RMI_PSCI_COMPLETE, rec0, rec1, 0),
                     (exit_view("A", run), rec_view("REC 0", rec0), rec_view("REC 1", rec1)))


def cpu_on_vs_system_off(machine: Machine) -> Prepared:
    """REC_ENTER of REC 0, whose guest calls PSCI_CPU_ON naming REC 1, vs REC_ENTER of REC 2,
    whose guest calls PSCI_SYSTEM_OFF: off first, REC 0's entry fails (RMI_ERROR_REALM, 1) and
    nothing is pending; else REC 0 exits with the CPU_ON pending."""
    b, (rec0, _, rec2) = cpu_on_realm(machine)
    run0, run2 = b.run_page(), b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec0, run0), (F.RMI_REC_ENTER, rec2, run2),
                     (exit_view("A", run0), exit_view("B", run2), rec_view("REC 0", rec0)))


def cpu_on_vs_rec_enter_target(machine: Machine) -> Prepared:
    """REC_ENTER of REC 0, whose guest calls PSCI_CPU_ON naming REC 1, vs REC_ENTER of REC 1
    (created not runnable): REC 1 is runnable only once the host completes the CPU_ON, so its
    entry fails rec_runnable (RMI_ERROR_REC) in every order."""
    b, (rec0, rec1, _) = cpu_on_realm(machine)
    run0, run1 = b.run_page(), b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec0, run0), (F.RMI_REC_ENTER, rec1, run1),
                     (exit_view("A", run0), exit_view("B", run1), rec_view("REC 0", rec0), rec_view("REC 1", rec1)))


def affinity_info_complete_vs_cpu_off(machine: Machine) -> Prepared:
    """REC 0 asked PSCI_AFFINITY_INFO about REC 1; REC 1 on (runnable or running) when the
    completion looks: REC 0 gets ON (PSCI_SUCCESS, 0); off, OFF (1). B6.3.1.3."""
    return _rec1_cpu_off_vs_psci_complete(
        machine, smc(int(PsciFid.PSCI_AFFINITY_INFO), rec_index_to_mpidr_el1(1), 0))


def psci_complete_same_target(machine: Machine) -> Prepared:
    """RECs 0 and 2 both asked PSCI_CPU_ON for REC 1 (off), with context ids 0x42 and 0x43;
    PSCI_COMPLETE(REC 0, REC 1, SUCCESS) vs PSCI_COMPLETE(REC 2, REC 1, SUCCESS): whichever
    completes first starts REC 1 with its context id and gets SUCCESS, the other ALREADY_ON
    (B4.3.7.3 on_success, on_already); never both SUCCESS."""
    b = Builder(machine)
    _, (rec0, rec1, rec2) = guest_realm(b, f"""
    {_CPU_ON_REC1}
        b .
        .org {REC1_PC:#x}
        b .
        .org {REC2_PC:#x}
    {smc(int(PsciFid.PSCI_CPU_ON), rec_index_to_mpidr_el1(1), REC1_PC, 0x43)}
        b .
    """, rec1=True, rec1_runnable=False, more=((REC2_PC, True),))
    for rec in (rec0, rec2):
        exit_must_be(b.enter(rec), RmiRecExitReason.RMI_EXIT_PSCI)
    return prepared(b, (F.RMI_PSCI_COMPLETE, rec0, rec1, 0), (F.RMI_PSCI_COMPLETE, rec2, rec1, 0),
                     (rec_view("REC 0", rec0), rec_view("REC 1", rec1), rec_view("REC 2", rec2)))


def host_call_completion_vs_rec_destroy(machine: Machine) -> Prepared:
    """REC_ENTER completing a pending host call (the host's gprs copied into the structure) vs
    REC_DESTROY of the REC: destroyed first, the entry fails (rec_gran_state) and the structure
    keeps what the realm wrote; while the REC runs, REC_DESTROY fails rec_state."""
    b, _, rec, run = _host_call_answered(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_REC_DESTROY, rec), (exit_view("A", run),))


def rec_destroy_vs_host_call_completion(machine: Machine, run_below: bool = False) -> Prepared:
    """The same, the other way round: the entry inserted at REC_DESTROY's lock events (with
    ``run_below``, it locks its run page, then waits for the REC REC_DESTROY holds)."""
    b, _, rec, run = _host_call_answered(machine, run_below)
    return prepared(b, (F.RMI_REC_DESTROY, rec), (F.RMI_REC_ENTER, rec, run), (exit_view("B", run),))


RIPAS_RESULTS = 0xF00
"""Where in its code page the guest of _RIPAS_THEN_HOST_CALL keeps X1 and X2 of its request's
completion (the first IPA not changed, the host's response)."""
_RIPAS_THEN_HOST_CALL = f"""
    {smc(_RSI_IPA_STATE_SET_FID, CHANGE_TABLE, CHANGE_TABLE + L2, int(RsiRipas.RSI_RAM), 0)}
        mov x9, #{RIPAS_RESULTS:#x}
        str x1, [x9]
        str x2, [x9, #8]
    {host_call(CHANGE_TABLE + 5 * G)}
        b .
"""
"""Asks for RAM over CHANGE_TABLE's whole range; once the entry completes the request, keeps
its results, then makes a host call on an unassigned page there: its locked walk ends in the
level-3 table, or at level 2 once the table is folded, and the data abort exit says which."""


def ripas_results_view(realm: BuiltRealm) -> Watch:
    """X1 and X2 of the RIPAS request's completion, as the guest kept them (zero until then)."""
    pa = realm.pages[CODE] + RIPAS_RESULTS

    def read(m: Machine) -> str:
        top, response = struct.unpack_from("<QQ", m.memory.buf, pa - m.dram_base)
        return f"x1={top:#x} x2={response:#x}"
    return ("RIPAS results", read)


def _ripas_answered(machine: Machine, fold: bool = False) -> tuple[Builder, BuiltRealm, int, int]:
    """A realm whose REC asked for RAM over CHANGE_TABLE and the host answered (RTT_SET_RIPAS of
    the whole range; with ``fold``, the table then folded); a run page whose flags say
    RIPAS_RESPONSE (REJECT, which B3 RecRipasChangeResponse ignores for a request done whole)."""
    b = Builder(machine)
    realm, (rec,) = guest_realm(b, _RIPAS_THEN_HOST_CALL, prepare=lambda r: _table(b, r, CHANGE_TABLE))
    exit_must_be(b.enter(rec), RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE)
    if b.call(F.RMI_RTT_SET_RIPAS, realm.rd, rec, CHANGE_TABLE, CHANGE_TABLE + L2)[1] != CHANGE_TABLE + L2:
        raise SetupError("RTT_SET_RIPAS did not cover the whole table")
    if fold:
        b.call(F.RMI_RTT_FOLD, realm.rd, CHANGE_TABLE, 3)
    return b, realm, rec, b.run_page(flags=int(RmiRecEnterFlags.RIPAS_RESPONSE))


def _table(b: Builder, realm: BuiltRealm, ipa: int) -> None:
    b.tables(realm, ipa, 3)


def ripas_completion_vs_rtt_fold(machine: Machine) -> Prepared:
    """REC_ENTER completing the RIPAS request (X1 = the top, X2 = ACCEPT) whose guest then makes
    a host call in the table vs RTT_FOLD of the table (every entry UNASSIGNED RAM)."""
    b, realm, rec, run = _ripas_answered(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_FOLD, realm.rd, CHANGE_TABLE, 3),
                     (exit_view("A", run), ripas_results_view(realm)))


def ripas_completion_vs_rtt_unfold(machine: Machine) -> Prepared:
    """The same with the table folded by the setup, vs RTT_CREATE of it again (the unfold of an
    UNASSIGNED RAM level-2 entry)."""
    b, realm, rec, run = _ripas_answered(machine, fold=True)
    table = b.delegate()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_CREATE, realm.rd, table, CHANGE_TABLE, 3),
                     (exit_view("A", run), ripas_results_view(realm)))


def page_view(name: str, pa: int) -> Watch:
    """The first 16 bytes of the page at ``pa`` (the rest is in the end state's digest)."""
    return (name, lambda m: bytes(m.memory.buf[pa - m.dram_base:pa - m.dram_base + 16]).hex())


def _storing_block_realm(machine: Machine) -> tuple[Builder, BuiltRealm, int, int, int]:
    """A realm with 512 ASSIGNED RAM pages (RTT_INIT_RIPAS, then DATA_CREATE_UNKNOWN of one
    delegated 2 MiB block) in the level-3 table of BLOCK_IPA, whose guest stores to one of them,
    extends REM1 and stores again; the REC, a run page and the PA of the page stored to."""
    b = Builder(machine)
    block = b.delegated_block()

    def prepare(realm: BuiltRealm) -> None:
        init_ram(b, realm, BLOCK_IPA)
        b.unknown_block(realm, BLOCK_IPA, block)

    realm, (rec,) = guest_realm(b, _store_extend_store(BLOCK_IPA + BLOCK_STORE_PAGE * G), prepare=prepare)
    return b, realm, rec, b.run_page(), block[BLOCK_STORE_PAGE]


def store_vs_rtt_fold_assigned(machine: Machine) -> Prepared:
    """REC_ENTER whose guest stores to a page of the block, extends REM1 and stores again vs
    RTT_FOLD of the block's table: the fold keeps every page where it is, so both stores land
    in the page in every order (only the table differs)."""
    b, realm, rec, run, page = _storing_block_realm(machine)
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_FOLD, realm.rd, BLOCK_IPA, 3),
                     (exit_view("A", run), rem_view(realm), page_view("page", page)))


def rtt_fold_assigned_vs_store(machine: Machine) -> Prepared:
    """The same, the other way round: the guest's stores inserted at the fold's lock events."""
    b, realm, rec, run, page = _storing_block_realm(machine)
    return prepared(b, (F.RMI_RTT_FOLD, realm.rd, BLOCK_IPA, 3), (F.RMI_REC_ENTER, rec, run),
                     (exit_view("B", run), rem_view(realm), page_view("page", page)))


def rec_enter_target_vs_psci_complete(machine: Machine, run_below: bool = False) -> Prepared:
    """REC 0's CPU_ON of REC 1 (off) pending; REC_ENTER of REC 1 vs PSCI_COMPLETE(REC 0, REC 1,
    SUCCESS): entered first, REC 1 is not runnable (RMI_ERROR_REC) and the completion makes it
    runnable (REC 0 gets SUCCESS); completed first, REC 1 runs from its entry point. A REC_ENTER
    bound to fail that held the running reference for a moment made the completion see REC 1
    on (ALREADY_ON), so that REC 1 never started (docs/deviations.md). With ``run_below``, the
    run page lies below the RECs."""
    b, (rec0, rec1, _) = cpu_on_realm(machine, run_below)
    exit_must_be(b.enter(rec0), RmiRecExitReason.RMI_EXIT_PSCI)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec1, run), (F.RMI_PSCI_COMPLETE, rec0, rec1, 0),
                     (exit_view("A", run), rec_view("REC 0", rec0), rec_view("REC 1", rec1)))


# -- the run page below the REC -------------------------------------------------------------------
#
# REC_ENTER locks its run page with the REC in address order (GranuleTable.lock_two): a run page
# made after the REC (every pair above) is locked after it, one below it before it. These pairs
# are pairs above with their run pages handed out first (Builder's ``runs_below``), so that both
# orders are explored where the other call locks the REC or the run page.


def rec_enter_vs_rec_destroy_run_below(machine: Machine) -> Prepared:
    """rec_enter_vs_rec_destroy with the run page below the REC."""
    return rec_enter_vs_rec_destroy(machine, run_below=True)


def rec_enter_vs_rec_enter_run_below(machine: Machine) -> Prepared:
    """rec_enter_vs_rec_enter with both run pages below the REC."""
    return rec_enter_vs_rec_enter(machine, run_below=True)


def rec_enter_vs_set_ripas_run_below(machine: Machine) -> Prepared:
    """rec_enter_vs_set_ripas with the run page below the REC."""
    return rec_enter_vs_set_ripas(machine, run_below=True)


def rec_enter_vs_delegate_run_page_run_below(machine: Machine) -> Prepared:
    """rec_enter_vs_delegate_run_page with the run page below the REC."""
    return rec_enter_vs_delegate_run_page(machine, run_below=True)


def rec_enter_target_vs_psci_complete_run_below(machine: Machine) -> Prepared:
    """rec_enter_target_vs_psci_complete with the run page below the RECs."""
    return rec_enter_target_vs_psci_complete(machine, run_below=True)


def rec_destroy_vs_host_call_completion_run_below(machine: Machine) -> Prepared:
    """rec_destroy_vs_host_call_completion with the run page below the REC."""
    return rec_destroy_vs_host_call_completion(machine, run_below=True)


def rec_enter_aux_run_vs_rec_destroy(machine: Machine, aux_above: bool = False) -> Prepared:
    """REC_ENTER naming, as its run page, an aux granule of its own REC (a host that mixed up its
    granules: bound to fail run_pas, the granule is REC_AUX, not NS) vs REC_DESTROY of the REC,
    which holds the REC while it takes its aux granules (rmi_rec._release_aux). Aux granules
    lie below their REC (Builder.rec delegates them first), so lock_two takes the aux granule
    first; it must check its state and let it go before it waits for the REC (a lock_two that
    holds it unchecked, lock-two-check-late, deadlocks with REC_DESTROY). Serially REC_ENTER
    fails (RMI_ERROR_INPUT) in both orders and REC_DESTROY succeeds. With ``aux_above``, the aux
    granules lie above the REC (Builder's ``aux_above``): lock_two takes the REC first, and
    nothing waits while it holds a granule REC_DESTROY needs."""
    b = Builder(machine, aux_above=aux_above)
    _, (rec,) = guest_realm(b, "b .")
    return prepared(b, (F.RMI_REC_ENTER, rec, b.aux[rec][0]), (F.RMI_REC_DESTROY, rec))
