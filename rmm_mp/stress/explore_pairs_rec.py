"""The interleaving explorer's pairs in which a REC runs a guest (stress.explore_pairs holds
the catalog): REC_ENTER of a small guest, its image a measured DATA page, against a command on
what the guest or the RMM on its behalf uses (the REC, its run page, a host call structure and
its table, a page it stores to, the RD of a measurement, the target of a PSCI request), or
against another REC_ENTER. Their outcomes include views (Prepared.watch) of the REC exit, the
REC and REM1.

This module owns those setups and the rule that a running REC makes some commands fail. It must
not write the machine's shared memory other than through SMCs and Machine.ns_write.
"""

from __future__ import annotations

from collections.abc import Callable

from rmm_mp.abi.psci import PsciFid, rec_index_to_mpidr_el1
from rmm_mp.abi.rmi import RmiStatus
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.abi.structs import RSI_HOST_CALL, RmiRecExitReason
from rmm_mp.guest.assembler import assemble
from rmm_mp.host.realm import NS_MAP_ATTRS, describe_x0
from rmm_mp.machine import Machine
from rmm_mp.stress.explore import Prepared
from rmm_mp.stress.explore_setup import (
    F, G, L2, RIPAS_BASE, RIPAS_TOP, UNPROTECTED, Builder, BuiltRealm, SetupError, exit_text, exit_view, prepared,
    rec_view, rem_view, ripas_request,
)

# -- pairs with a REC running a guest ------------------------------------------------------------
#
# Each realm's guest image is a measured DATA page at IPA 0 (CODE); other pages are DATA pages
# of their own. A REC_ENTER call of a pair enters with a run page of the setup's (Builder.run_page),
# whose RmiRecExit is one of the pair's views. Guests end in `b .`, so that a run that gets there
# exits with IRQ when its time slice (GUEST_SLICE instructions) is spent.

GUEST_SLICE = 64
"""Guest instructions per entry for the pairs that run a guest: far more than any guest here
executes before its last `b .`, and few enough that a run that ends in the loop stays short."""

CODE = 0
REC1_PC = 0x800
"""Where REC 1's code starts in the image (REC 0's at CODE)."""
HOST_CALL_IPA = 1 * G
"""The RsiHostCall structure's page."""
HOST_CALL_IMM, HOST_CALL_GPRS, HOST_RESULTS = 0x11, (0xA0, 0xA1), (0xB0, 0xB1)
"""What the structure holds when the realm is made, and what the host answers a host call with."""
STORE_IPA = 2 * G
"""The page the storing guest writes."""
RAM_TABLE = 2 * L2
"""A level-3 table of its own, every entry UNASSIGNED RAM (RTT_INIT_RIPAS over its whole range),
with nothing live: RTT_DESTROY and RTT_FOLD may both take it."""
HOST_CALL_IN_TABLE = RAM_TABLE + 5 * G
"""A host call structure in RAM_TABLE: nothing is there, so the realm's call exits with a data abort."""

_HOST_CALL_FID = int(RsiFid.RSI_HOST_CALL)


def _host_call(ipa: int) -> str:
    return f"""
        mov x1, ={ipa:#x}
        mov x0, ={_HOST_CALL_FID:#x}
        smc #0
    """


def _guest_realm(b: Builder, code: str, rec1: bool = False, rec1_runnable: bool = True,
                 ram_table: bool = False, pages: tuple[tuple[int, bytes], ...] = ()) -> tuple[BuiltRealm, list[int]]:
    """An active realm running ``code`` (REC 0 at CODE, and REC 1 at REC1_PC if ``rec1``), with
    DATA ``pages`` (ipa, content), and with RAM_TABLE if ``ram_table``; its RECs."""
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.data(realm, CODE, assemble(code, CODE))
    for ipa, content in pages:
        b.data(realm, ipa, content)
    if ram_table:
        b.tables(realm, RAM_TABLE, 3)
        if b.call(F.RMI_RTT_INIT_RIPAS, realm.rd, RAM_TABLE, RAM_TABLE + L2)[1] != RAM_TABLE + L2:
            raise SetupError("RTT_INIT_RIPAS did not cover the whole table")
    recs = [b.rec(realm, 0, pc=CODE)]
    if rec1:
        recs.append(b.rec(realm, 1, pc=REC1_PC, runnable=rec1_runnable))
    b.call(F.RMI_REALM_ACTIVATE, realm.rd)
    return realm, recs


def _exit_must_be(fields: dict[str, int], reason: RmiRecExitReason) -> None:
    if fields["exit_reason"] != reason:
        raise SetupError(f"the guest exited with {exit_text(fields)}, not {reason.name}")


def fails_on_running_rec(command: str) -> "Callable[[tuple[int, ...] | str], str]":
    """An overlap rule: ``command``, naming the other call's REC, fails with RMI_ERROR_REC while
    that REC runs (its rec_state failure condition: REC_DESTROY B4.3.13, REC_ENTER B4.3.14,
    RTT_SET_RIPAS B4.3.21)."""
    def rule(result: "tuple[int, ...] | str") -> str:
        x0 = result[0] if isinstance(result, tuple) else result
        if x0 == RmiStatus.RMI_ERROR_REC:
            return ""
        shown = describe_x0(x0) if isinstance(x0, int) else x0
        return f"{command} of the running REC must fail with RMI_ERROR_REC (rec_state), not {shown}"
    return rule


def rec_enter_vs_rec_destroy(machine: Machine) -> Prepared:
    """REC_ENTER of a REC whose guest loops until its slice ends, vs REC_DESTROY of that REC:
    serially one of them fails; while the REC runs, REC_DESTROY fails (rec_state: running)."""
    b = Builder(machine)
    _, (rec,) = _guest_realm(b, "b .")
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_REC_DESTROY, rec), (exit_view("A", run),))


def rec_enter_vs_rec_enter(machine: Machine) -> Prepared:
    """Two REC_ENTERs of one REC (each with its own run page), whose guest counts in X0 until
    its slice ends: one after the other both run; while the REC runs, the second fails
    rec_state (and X0 shows one slice)."""
    b = Builder(machine)
    _, (rec,) = _guest_realm(b, "count: add x0, x0, #1\nb count")
    run_a, run_b = b.run_page(), b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run_a), (F.RMI_REC_ENTER, rec, run_b),
                     (exit_view("A", run_a), exit_view("B", run_b), rec_view("REC", rec)))


def rec_enter_vs_set_ripas(machine: Machine) -> Prepared:
    """The REC of set_ripas_vs_rtt_destroy stopped at its RIPAS request; REC_ENTER (completing the
    request with the progress so far, in X1, then looping) vs RTT_SET_RIPAS of the range."""
    b = Builder(machine)
    realm, rec = ripas_request(b)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_SET_RIPAS, realm.rd, rec, RIPAS_BASE, RIPAS_TOP),
                     (exit_view("A", run), rec_view("REC", rec)))


def rec_enter_vs_delegate_run_page(machine: Machine) -> Prepared:
    """REC_ENTER vs DELEGATE of its run page: delegated before the entry looks, the entry fails
    (run_pas); delegated while the REC runs, the realm has run (its X0 shows it) but its exit
    cannot be written, so REC_ENTER returns RMI_ERROR_INPUT (A4.3.3)."""
    b = Builder(machine)
    _, (rec,) = _guest_realm(b, "mov x0, #7\nb .")
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_GRANULE_DELEGATE, run), (rec_view("REC", rec),))


_HOST_CALL_PAGE = bytes(RSI_HOST_CALL.pack(imm=HOST_CALL_IMM, gprs=HOST_CALL_GPRS + (0,) * 29))
_TWO_HOST_CALLS = _host_call(HOST_CALL_IPA) + _host_call(HOST_CALL_IPA) + "b ."
"""A host call, and another on the same structure: the second call's exit shows in its gprs
what the host answered the first with (the completion copied them into the structure)."""


def _host_call_realm(b: Builder) -> tuple[BuiltRealm, int]:
    realm, (rec,) = _guest_realm(b, _TWO_HOST_CALLS, pages=((HOST_CALL_IPA, _HOST_CALL_PAGE),))
    return realm, rec


def host_call_vs_data_destroy(machine: Machine) -> Prepared:
    """REC_ENTER whose guest makes a host call (the RMM walks the realm's RTTs, locked, to the
    structure and reads it) vs DATA_DESTROY of the structure's page."""
    b = Builder(machine)
    realm, rec = _host_call_realm(b)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_DATA_DESTROY, realm.rd, HOST_CALL_IPA),
                     (exit_view("A", run), rec_view("REC", rec)))


def _host_call_answered(machine: Machine) -> tuple[Builder, BuiltRealm, int, int]:
    """The realm of _host_call_realm stopped at its first host call; a run page with the host's
    answer (HOST_RESULTS)."""
    b = Builder(machine)
    realm, rec = _host_call_realm(b)
    _exit_must_be(b.enter(rec), RmiRecExitReason.RMI_EXIT_HOST_CALL)
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
    realm, (rec,) = _guest_realm(b, _host_call(HOST_CALL_IN_TABLE) + "b .", ram_table=True)
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


_MEASUREMENT_EXTEND_FID = int(RsiFid.RSI_MEASUREMENT_EXTEND)


def _extend_rem1(value: int) -> str:
    """RSI_MEASUREMENT_EXTEND of REM1 with 8 bytes holding ``value`` (it takes the RD lock)."""
    return f"""
        mov x1, #1
        mov x2, #8
        mov x3, #{value:#x}
        mov x0, ={_MEASUREMENT_EXTEND_FID:#x}
        smc #0
    """


_STORE_EXTEND_STORE = f"""
        mov x1, #{STORE_IPA:#x}
        mov x2, #0x5a
        str x2, [x1]
    {_extend_rem1(0x77)}
        mov x1, #{STORE_IPA:#x}
        mov x2, #0xa5
        str x2, [x1, #8]
        b .
"""
"""Stores to STORE_IPA, extends REM1 (RD lock: lock events while the REC runs), stores again."""


def _storing_realm(machine: Machine) -> tuple[Builder, BuiltRealm, int, int]:
    b = Builder(machine)
    realm, (rec,) = _guest_realm(b, _STORE_EXTEND_STORE, pages=((STORE_IPA, b""),))
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


def store_unprotected_vs_unmap(machine: Machine) -> Prepared:
    """REC_ENTER whose guest stores to a mapped unprotected page vs RTT_UNMAP_UNPROTECTED of it:
    unmapped first, the store exits as an emulatable data abort (ISV, the value in gprs[0])."""
    b = Builder(machine)
    realm, (rec,) = _guest_realm(b, f"""
        mov x1, ={UNPROTECTED_PAGE:#x}
        mov x2, #0x5a
        str x2, [x1, #0x18]
        b .
    """)
    b.tables(realm, UNPROTECTED, 3)
    b.call(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, UNPROTECTED_PAGE, 3, b.ns_page() | NS_MAP_ATTRS)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec, run), (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, UNPROTECTED_PAGE, 3),
                     (exit_view("A", run),))


def rec_enter_cpu_off_vs_psci_complete(machine: Machine) -> Prepared:
    """REC 0 asked PSCI_CPU_ON for REC 1 (pending: the host completes it); REC_ENTER of REC 1,
    whose guest calls PSCI_CPU_OFF, vs PSCI_COMPLETE(REC 0, REC 1, SUCCESS). REC 1 on (runnable
    or running) when the completion looks: REC 0 gets ALREADY_ON; off: SUCCESS, REC 1 reset."""
    b = Builder(machine)
    realm, (rec0, rec1) = _guest_realm(b, f"""
        mov x1, ={rec_index_to_mpidr_el1(1):#x}
        mov x2, #{REC1_PC:#x}
        mov x3, #0x42
        mov x0, ={int(PsciFid.PSCI_CPU_ON):#x}
        smc #0
        b .
        .org {REC1_PC:#x}
        mov x0, ={int(PsciFid.PSCI_CPU_OFF):#x}
        smc #0
        b .
    """, rec1=True)
    _exit_must_be(b.enter(rec0), RmiRecExitReason.RMI_EXIT_PSCI)
    run = b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec1, run), (F.RMI_PSCI_COMPLETE, rec0, rec1, 0),
                     (exit_view("A", run), rec_view("REC 0", rec0), rec_view("REC 1", rec1)))


def rec_enter_vs_rec_enter_extend(machine: Machine) -> Prepared:
    """REC_ENTER of REC 0 and of REC 1 of one realm, each guest extending REM1 with its own
    value (under the RD lock): REM1 tells the order the two extensions took."""
    b = Builder(machine)
    realm, (rec0, rec1) = _guest_realm(b, f"""
    {_extend_rem1(0xA)}
        b .
        .org {REC1_PC:#x}
    {_extend_rem1(0xB)}
        b .
    """, rec1=True)
    run0, run1 = b.run_page(), b.run_page()
    return prepared(b, (F.RMI_REC_ENTER, rec0, run0), (F.RMI_REC_ENTER, rec1, run1),
                     (exit_view("A", run0), exit_view("B", run1), rem_view(realm)))
