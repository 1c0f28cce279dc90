"""The interleaving explorer's catalog of pairs (stress.explore): named races of two RMI calls.

Each pair's setup builds its objects on a fresh machine with stress.explore_setup's Builder (the
RMI ABI only, the same addresses every time) and returns the calls A (run on CPU 0) and B (CPU
1). The pairs are the races where a command could read or do work before it takes its locks: a
source copied early, a VMID reserved before the checks, aux granules claimed before the checks,
a table read before it is locked; the races of a fold, an unfold or a teardown (RTT_FOLD,
RTT_CREATE of a block, RTT_DESTROY, REALM_DESTROY, REC_DESTROY) against a command that creates,
reads or changes what it takes down, and of RIPAS changes against DATA_CREATE and DATA_DESTROY
(the RIM and the REC are views there); and the races of a realm that runs: REC_ENTER of a small guest
(its image a measured DATA page) against a command on what the guest or the RMM on its behalf
uses (the REC, its run page, a host call structure and its table, a page it stores to, the RD of
a measurement, the target of a PSCI request). Their outcomes include views (Prepared.watch) of
the REC exit, the REC, REM1 and the RIM.

This module owns the pairs. It must not write the machine's shared memory other than through
SMCs and Machine.ns_write.
"""

from __future__ import annotations

from collections.abc import Callable

from rmm_mp.abi.psci import PsciFid, rec_index_to_mpidr_el1
from rmm_mp.abi.rmi import RmiStatus
from rmm_mp.abi.rsi import RsiFid, RsiRipas
from rmm_mp.abi.structs import RSI_HOST_CALL, RmiRecExitReason
from rmm_mp.guest.assembler import assemble
from rmm_mp.host.realm import NS_MAP_ATTRS, describe_x0
from rmm_mp.machine import Machine
from rmm_mp.stress.explore import Pair, Prepared
from rmm_mp.stress.explore_setup import (
    F, G, L2, UNPROTECTED, VMID, Builder, BuiltRealm, SetupError, exit_text, exit_view, prepared, rec_view, rem_view,
    rim_view,
)


# -- the setups --------------------------------------------------------------------------------

def data_create_vs_delegate_src(machine: Machine) -> Prepared:
    """DATA_CREATE whose data granule is its own NS source page, against DELEGATE of that page:
    serially one of them fails (the page is NS, or no longer NS, when DATA_CREATE looks)."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    src = b.ns_page(b"source" * 600)
    return prepared(b, (F.RMI_DATA_CREATE, realm.rd, src, 5 * G, src, 1), (F.RMI_GRANULE_DELEGATE, src))


def data_create_vs_undelegate_data(machine: Machine) -> Prepared:
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    src = b.ns_page(b"source" * 600)
    data = b.delegate()
    return prepared(b, (F.RMI_DATA_CREATE, realm.rd, data, 5 * G, src, 1), (F.RMI_GRANULE_UNDELEGATE, data))


def _one_data_page(machine: Machine) -> tuple[Builder, BuiltRealm]:
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.data_unknown(realm, 5 * G)
    return b, realm


def data_destroy_vs_rtt_destroy(machine: Machine) -> Prepared:
    b, realm = _one_data_page(machine)
    return prepared(b, (F.RMI_DATA_DESTROY, realm.rd, 5 * G), (F.RMI_RTT_DESTROY, realm.rd, 0, 3))


def data_destroy_vs_rtt_fold(machine: Machine) -> Prepared:
    b, realm = _one_data_page(machine)
    return prepared(b, (F.RMI_DATA_DESTROY, realm.rd, 5 * G), (F.RMI_RTT_FOLD, realm.rd, 0, 3))


def rtt_create_vs_rtt_create(machine: Machine) -> Prepared:
    """Two RTT_CREATEs of the level-3 table of one range, with different granules: one wins."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 2)
    first, second = b.delegate(), b.delegate()
    return prepared(b, (F.RMI_RTT_CREATE, realm.rd, first, 0, 3), (F.RMI_RTT_CREATE, realm.rd, second, 0, 3))


def rtt_destroy_vs_undelegate_table(machine: Machine) -> Prepared:
    b = Builder(machine)
    realm = b.realm()
    table = b.tables(realm, 0, 3)
    return prepared(b, (F.RMI_RTT_DESTROY, realm.rd, 0, 3), (F.RMI_GRANULE_UNDELEGATE, table))


def map_vs_unmap_unprotected(machine: Machine) -> Prepared:
    """MAP and UNMAP of one unprotected page: serially UNMAP first fails, MAP first lets both succeed."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, UNPROTECTED, 3)
    ns = b.ns_page()
    ipa = UNPROTECTED + 5 * G
    return prepared(b, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, ns | NS_MAP_ATTRS),
                     (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa, 3))


def realm_create_vs_realm_create(machine: Machine) -> Prepared:
    """A REALM_CREATE bound to fail (its RD is not delegated) and a valid one, naming one VMID: the
    failing one has no footprint, so serially the valid one succeeds either way."""
    b = Builder(machine)
    bad_rd = b.ns_page()
    bad_params = b.realm_params(b.roots())
    rd = b.delegate()
    params = b.realm_params(b.roots())
    return prepared(b, (F.RMI_REALM_CREATE, bad_rd, bad_params), (F.RMI_REALM_CREATE, rd, params))


def _failing_rec_create(machine: Machine) -> tuple[Builder, tuple[int, ...], tuple[int, ...]]:
    """A REC_CREATE bound to fail (it names REC index 5 of a realm with no REC) and its aux granules."""
    b = Builder(machine)
    realm = b.realm()
    aux = b.aux_granules(realm)
    rec = b.delegate()
    return b, (F.RMI_REC_CREATE, realm.rd, rec, b.rec_params(5, aux)), aux


def rec_create_vs_undelegate_aux(machine: Machine) -> Prepared:
    b, create, aux = _failing_rec_create(machine)
    return prepared(b, create, (F.RMI_GRANULE_UNDELEGATE, aux[0]))


def rec_create_vs_delegate_aux(machine: Machine) -> Prepared:
    """The same failing REC_CREATE with its last aux granule still NS, against its DELEGATE."""
    b, create, aux = _failing_rec_create(machine)
    last = aux[-1]
    b.call(F.RMI_GRANULE_UNDELEGATE, last)
    return prepared(b, create, (F.RMI_GRANULE_DELEGATE, last))


def _one_rec(machine: Machine) -> tuple[Builder, BuiltRealm, int]:
    b = Builder(machine)
    realm = b.realm()
    return b, realm, b.rec(realm, 0)


def rec_destroy_vs_rec_aux_count(machine: Machine) -> Prepared:
    b, realm, rec = _one_rec(machine)
    return prepared(b, (F.RMI_REC_DESTROY, rec), (F.RMI_REC_AUX_COUNT, realm.rd))


def rec_destroy_vs_rec_create(machine: Machine) -> Prepared:
    b, realm, rec = _one_rec(machine)
    aux = b.aux_granules(realm)
    rec1 = b.delegate()
    return prepared(b, (F.RMI_REC_DESTROY, rec), (F.RMI_REC_CREATE, realm.rd, rec1, b.rec_params(1, aux)))


def psci_complete_vs_psci_complete(machine: Machine) -> Prepared:
    """PSCI_COMPLETE of two RECs of one realm, each naming the other as the target (neither has a
    PSCI request pending, so both fail, but only after locking both RECs)."""
    b, realm, rec0 = _one_rec(machine)
    rec1 = b.rec(realm, 1)
    return prepared(b, (F.RMI_PSCI_COMPLETE, rec0, rec1, 0), (F.RMI_PSCI_COMPLETE, rec1, rec0, 0))


RIPAS_BASE, RIPAS_TOP = L2, L2 + 16 * G
"""The range whose RIPAS the realm of set_ripas_vs_rtt_destroy asks to change, in a level-3 table of its own."""


def set_ripas_vs_rtt_destroy(machine: Machine) -> Prepared:
    """A realm's REC asks (RSI_IPA_STATE_SET) for RAM over part of an empty level-3 table; the
    host answers with RTT_SET_RIPAS while another CPU destroys that table. Built through the ABI:
    the guest image is a measured DATA page at IPA 0, and REC_ENTER runs it to its RIPAS exit."""
    b = Builder(machine)
    realm, rec = _ripas_request(b)
    return prepared(b, (F.RMI_RTT_SET_RIPAS, realm.rd, rec, RIPAS_BASE, RIPAS_TOP),
                     (F.RMI_RTT_DESTROY, realm.rd, RIPAS_BASE, 3))


def _ripas_request(b: Builder, ripas: RsiRipas = RsiRipas.RSI_RAM,
                   pages: tuple[int, ...] = ()) -> tuple[BuiltRealm, int]:
    """A realm whose REC 0 has exited asking for ``ripas`` over [RIPAS_BASE, RIPAS_TOP) (its
    guest loops after the request), with measured DATA ``pages`` (IPAs) in that range; the REC."""
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.tables(realm, RIPAS_BASE, 3)
    for ipa in pages:
        b.data(realm, ipa)
    image = assemble(f"""
        mov x1, #{RIPAS_BASE:#x}
        mov x2, #{RIPAS_TOP:#x}
        mov x3, #{int(ripas)}
        mov x4, #0
        mov x0, ={int(RsiFid.RSI_IPA_STATE_SET):#x}
        smc #0
        b .
    """, 0)
    src = b.ns_page(image)
    b.call(F.RMI_DATA_CREATE, realm.rd, b.delegate(), 0, src, 0)
    rec = b.rec(realm, 0, pc=0)
    b.call(F.RMI_REALM_ACTIVATE, realm.rd)
    exit_fields = b.enter(rec)
    if exit_fields["exit_reason"] != RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE:
        raise SetupError(f"the guest exited with reason {exit_fields['exit_reason']}, not a RIPAS change")
    return realm, rec


# -- RTT structure, RIPAS and teardown races ----------------------------------------------------

def rtt_fold_vs_data_create(machine: Machine) -> Prepared:
    """RTT_FOLD of a fresh level-3 table (every entry UNASSIGNED EMPTY, nothing live) vs
    DATA_CREATE of a page in it: folded first, DATA_CREATE's walk ends at level 2 (rtt_walk);
    created first, the table is live and the fold fails rtt_homo."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    src = b.ns_page(b"source" * 600)
    data = b.delegate()
    return prepared(b, (F.RMI_RTT_FOLD, realm.rd, 0, 3), (F.RMI_DATA_CREATE, realm.rd, data, 5 * G, src, 1))


def rtt_fold_vs_data_create_unknown(machine: Machine) -> Prepared:
    """The same fold vs DATA_CREATE_UNKNOWN of a page of the table (which keeps its RIPAS EMPTY)."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    data = b.delegate()
    return prepared(b, (F.RMI_RTT_FOLD, realm.rd, 0, 3), (F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, 5 * G))


def rtt_fold_vs_read_entry(machine: Machine) -> Prepared:
    """The same fold vs RTT_READ_ENTRY of a page of the table: the reader sees the level-3 entry
    (before) or the folded level-2 one (after), never a table being torn down."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    return prepared(b, (F.RMI_RTT_FOLD, realm.rd, 0, 3), (F.RMI_RTT_READ_ENTRY, realm.rd, 5 * G, 3))


def rtt_create_vs_rtt_destroy_parent(machine: Machine) -> Prepared:
    """RTT_CREATE of a level-3 table vs RTT_DESTROY of its parent, an empty level-2 table (both
    commands release the RD once root RTT 0 is locked): created first, the parent is live
    (rtt_live); destroyed first, the create's walk ends at level 1 (rtt_walk)."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 2)
    table = b.delegate()
    return prepared(b, (F.RMI_RTT_CREATE, realm.rd, table, 0, 3), (F.RMI_RTT_DESTROY, realm.rd, 0, 2))


def rtt_fold_assigned_vs_data_destroy(machine: Machine) -> Prepared:
    """RTT_FOLD of a level-3 table whose 512 entries map one 2 MiB block (ASSIGNED EMPTY, made by
    DATA_CREATE_UNKNOWN) vs DATA_DESTROY of one of its pages: folded first, DATA_DESTROY's walk
    ends at the level-2 block (rtt_walk); destroyed first, the table is no longer homogeneous."""
    b = Builder(machine)
    block = b.delegated_block()
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.unknown_block(realm, 0, block)
    return prepared(b, (F.RMI_RTT_FOLD, realm.rd, 0, 3), (F.RMI_DATA_DESTROY, realm.rd, 5 * G))


def rtt_create_unfold_vs_data_destroy(machine: Machine) -> Prepared:
    """RTT_CREATE of a level-3 table under an ASSIGNED level-2 block (the table of
    rtt_fold_assigned_vs_data_destroy, folded: the new table is the block unfolded) vs
    DATA_DESTROY of one of its pages: unfolded first, the page is destroyed; destroyed first,
    the walk ends at the block (rtt_walk) and the unfold goes on."""
    b = Builder(machine)
    block = b.delegated_block()
    realm = b.realm()
    b.tables(realm, 0, 3)
    b.unknown_block(realm, 0, block)
    b.call(F.RMI_RTT_FOLD, realm.rd, 0, 3)
    table = b.delegate()
    return prepared(b, (F.RMI_RTT_CREATE, realm.rd, table, 0, 3), (F.RMI_DATA_DESTROY, realm.rd, 5 * G))


def rtt_fold_ns_vs_unmap(machine: Machine) -> Prepared:
    """RTT_FOLD of a level-3 table of 512 ASSIGNED_NS entries (an unprotected 2 MiB mapping,
    unfolded by RTT_CREATE) vs RTT_UNMAP_UNPROTECTED of one of its pages: folded first, the
    unmap's walk ends at level 2 (rtt_walk); unmapped first, the table is no longer homogeneous."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, UNPROTECTED, 2)
    block = (machine.platform.dram.end - L2) & ~(L2 - 1)    # NS memory no granule of the setup is in
    b.call(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, UNPROTECTED, 2, block | NS_MAP_ATTRS)
    b.call(F.RMI_RTT_CREATE, realm.rd, b.delegate(), UNPROTECTED, 3)
    return prepared(b, (F.RMI_RTT_FOLD, realm.rd, UNPROTECTED, 3),
                     (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, UNPROTECTED + 5 * G, 3))


def rtt_destroy_vs_rtt_create(machine: Machine) -> Prepared:
    """RTT_DESTROY of a level-3 table vs RTT_CREATE of the same table naming that very granule:
    created first, the granule is still an RTT (rtt_state); destroyed first, it is DELEGATED
    again and the parent entry UNASSIGNED, so the create succeeds."""
    b = Builder(machine)
    realm = b.realm()
    table = b.tables(realm, 0, 3)
    return prepared(b, (F.RMI_RTT_DESTROY, realm.rd, 0, 3), (F.RMI_RTT_CREATE, realm.rd, table, 0, 3))


def init_ripas_vs_data_create(machine: Machine) -> Prepared:
    """RTT_INIT_RIPAS over the first 16 pages of a level-3 table vs a measured DATA_CREATE of
    the sixth: both extend the RIM, in the order they take effect (INIT_RIPAS first: 16 RIPAS
    descriptors, then the DATA one; DATA_CREATE first: the INIT_RIPAS stops at the page)."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    src = b.ns_page(b"source" * 600)
    data = b.delegate()
    return prepared(b, (F.RMI_RTT_INIT_RIPAS, realm.rd, 0, 16 * G),
                     (F.RMI_DATA_CREATE, realm.rd, data, 5 * G, src, 1), (rim_view(realm),))


SET_EMPTY_PAGE = RIPAS_BASE + 2 * G
"""A DATA page (RIPAS RAM) inside the range whose RIPAS the REC of set_ripas_vs_data_destroy asks to make EMPTY."""


def set_ripas_vs_data_destroy(machine: Machine) -> Prepared:
    """RTT_SET_RIPAS answering a REC's request for EMPTY over [RIPAS_BASE, RIPAS_TOP), which holds
    a DATA page, vs DATA_DESTROY of that page: set first, the page is ASSIGNED EMPTY and is
    destroyed UNASSIGNED EMPTY; destroyed first, its entry is DESTROYED and the RIPAS change
    stops there (the request does not allow leaving DESTROYED)."""
    b = Builder(machine)
    realm, rec = _ripas_request(b, RsiRipas.RSI_EMPTY, pages=(SET_EMPTY_PAGE,))
    return prepared(b, (F.RMI_RTT_SET_RIPAS, realm.rd, rec, RIPAS_BASE, RIPAS_TOP),
                     (F.RMI_DATA_DESTROY, realm.rd, SET_EMPTY_PAGE), (rec_view("REC", rec),))


def realm_destroy_vs_rtt_create(machine: Machine) -> Prepared:
    """REALM_DESTROY of a realm with nothing live vs RTT_CREATE of a level-2 table in its
    second root RTT (the unprotected half): created first, the root is live (realm_live);
    destroyed first, the RD is gone (rd_state)."""
    b = Builder(machine)
    realm = b.realm()
    table = b.delegate()
    return prepared(b, (F.RMI_REALM_DESTROY, realm.rd), (F.RMI_RTT_CREATE, realm.rd, table, UNPROTECTED, 2))


def rtt_destroy_vs_realm_destroy(machine: Machine) -> Prepared:
    """RTT_DESTROY of a realm's only table (level 2, in root RTT 0) vs REALM_DESTROY: destroyed
    last-table first, the realm goes too; the realm first, it is live and stays."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 2)
    return prepared(b, (F.RMI_RTT_DESTROY, realm.rd, 0, 2), (F.RMI_REALM_DESTROY, realm.rd))


def realm_destroy_vs_rec_create(machine: Machine) -> Prepared:
    """REALM_DESTROY vs REC_CREATE of the realm's first REC: one of them fails (realm_live, or rd_state)."""
    b = Builder(machine)
    realm = b.realm()
    aux = b.aux_granules(realm)
    rec = b.delegate()
    return prepared(b, (F.RMI_REALM_DESTROY, realm.rd), (F.RMI_REC_CREATE, realm.rd, rec, b.rec_params(0, aux)))


def rec_destroy_vs_rec_create_same_granules(machine: Machine) -> Prepared:
    """REC_DESTROY of REC 0 vs REC_CREATE of REC 1 with REC 0's granule and aux granules: created
    first, they are in use (rec_state, aux_state); destroyed first, all are DELEGATED again."""
    b = Builder(machine)
    realm = b.realm()
    aux = b.aux_granules(realm)
    rec = b.delegate()
    b.call(F.RMI_REC_CREATE, realm.rd, rec, b.rec_params(0, aux))
    return prepared(b, (F.RMI_REC_DESTROY, rec), (F.RMI_REC_CREATE, realm.rd, rec, b.rec_params(1, aux)))


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
    realm, rec = _ripas_request(b)
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


PAIRS: dict[str, Pair] = {p.name: p for p in (
    Pair("data-create-vs-delegate-src", "DATA_CREATE from its own NS source page vs DELEGATE of that page",
         data_create_vs_delegate_src),
    Pair("data-create-vs-undelegate-data", "DATA_CREATE vs UNDELEGATE of its data granule",
         data_create_vs_undelegate_data),
    Pair("data-destroy-vs-rtt-destroy", "DATA_DESTROY of the only page of a table vs RTT_DESTROY of the table",
         data_destroy_vs_rtt_destroy),
    Pair("data-destroy-vs-rtt-fold", "DATA_DESTROY of the only page of a table vs RTT_FOLD of the table",
         data_destroy_vs_rtt_fold),
    Pair("rtt-create-vs-rtt-create", "two RTT_CREATEs of one level-3 table with different granules",
         rtt_create_vs_rtt_create),
    Pair("rtt-destroy-vs-undelegate-table", "RTT_DESTROY vs UNDELEGATE of the table it destroys",
         rtt_destroy_vs_undelegate_table),
    Pair("map-vs-unmap-unprotected", "RTT_MAP_UNPROTECTED vs RTT_UNMAP_UNPROTECTED of one page",
         map_vs_unmap_unprotected),
    Pair("realm-create-vs-realm-create", "a REALM_CREATE bound to fail vs a valid one with the same VMID",
         realm_create_vs_realm_create),
    Pair("rec-create-vs-undelegate-aux", "a REC_CREATE bound to fail vs UNDELEGATE of one of its aux granules",
         rec_create_vs_undelegate_aux),
    Pair("rec-create-vs-delegate-aux", "a REC_CREATE bound to fail vs DELEGATE of one of its (NS) aux granules",
         rec_create_vs_delegate_aux),
    Pair("rec-destroy-vs-rec-aux-count", "REC_DESTROY vs REC_AUX_COUNT of its realm",
         rec_destroy_vs_rec_aux_count),
    Pair("rec-destroy-vs-rec-create", "REC_DESTROY vs REC_CREATE of another REC of the same realm",
         rec_destroy_vs_rec_create),
    Pair("set-ripas-vs-rtt-destroy", "RTT_SET_RIPAS of a REC's RIPAS request vs RTT_DESTROY of the table it covers",
         set_ripas_vs_rtt_destroy),
    Pair("psci-complete-vs-psci-complete", "PSCI_COMPLETE(REC 0, REC 1) vs PSCI_COMPLETE(REC 1, REC 0)",
         psci_complete_vs_psci_complete),
    Pair("rec-enter-vs-rec-destroy", "REC_ENTER of a looping guest vs REC_DESTROY of its REC",
         rec_enter_vs_rec_destroy, GUEST_SLICE, fails_on_running_rec("REC_DESTROY")),
    Pair("rec-enter-vs-rec-enter", "REC_ENTER vs REC_ENTER of the same REC (a looping guest)",
         rec_enter_vs_rec_enter, GUEST_SLICE, fails_on_running_rec("REC_ENTER")),
    Pair("rec-enter-vs-set-ripas", "REC_ENTER completing a RIPAS request vs RTT_SET_RIPAS answering it",
         rec_enter_vs_set_ripas, GUEST_SLICE, fails_on_running_rec("RTT_SET_RIPAS")),
    Pair("rec-enter-vs-delegate-run-page", "REC_ENTER vs DELEGATE of its run page",
         rec_enter_vs_delegate_run_page, GUEST_SLICE),
    Pair("host-call-vs-data-destroy", "REC_ENTER whose guest makes a host call vs DATA_DESTROY of the structure's page",
         host_call_vs_data_destroy, GUEST_SLICE),
    Pair("host-call-vs-rtt-destroy", "REC_ENTER whose guest makes a host call vs RTT_DESTROY of the structure's table",
         host_call_vs_rtt_destroy, GUEST_SLICE),
    Pair("host-call-vs-rtt-fold", "REC_ENTER whose guest makes a host call vs RTT_FOLD of the structure's table",
         host_call_vs_rtt_fold, GUEST_SLICE),
    Pair("host-call-completion-vs-data-destroy",
         "REC_ENTER completing a host call vs DATA_DESTROY of the structure's page",
         host_call_completion_vs_data_destroy, GUEST_SLICE),
    Pair("data-destroy-vs-host-call-completion",
         "DATA_DESTROY of a host call structure's page vs REC_ENTER completing the call",
         data_destroy_vs_host_call_completion, GUEST_SLICE),
    Pair("store-vs-data-destroy", "REC_ENTER whose guest stores to a page (twice) vs DATA_DESTROY of the page",
         store_vs_data_destroy, GUEST_SLICE),
    Pair("data-destroy-vs-store", "DATA_DESTROY of a page vs REC_ENTER whose guest stores to it (twice)",
         data_destroy_vs_store, GUEST_SLICE),
    Pair("store-unprotected-vs-unmap",
         "REC_ENTER whose guest stores to an unprotected page vs its RTT_UNMAP_UNPROTECTED",
         store_unprotected_vs_unmap, GUEST_SLICE),
    Pair("rec-enter-cpu-off-vs-psci-complete",
         "REC_ENTER of REC 1, which calls PSCI_CPU_OFF, vs PSCI_COMPLETE of REC 0's CPU_ON naming REC 1",
         rec_enter_cpu_off_vs_psci_complete, GUEST_SLICE),
    Pair("rec-enter-vs-rec-enter-extend", "REC_ENTER of REC 0 vs REC_ENTER of REC 1, both extending REM1",
         rec_enter_vs_rec_enter_extend, GUEST_SLICE),
    Pair("rtt-fold-vs-data-create", "RTT_FOLD of an empty level-3 table vs DATA_CREATE of a page in it",
         rtt_fold_vs_data_create),
    Pair("rtt-fold-vs-data-create-unknown", "RTT_FOLD of an empty level-3 table vs DATA_CREATE_UNKNOWN in it",
         rtt_fold_vs_data_create_unknown),
    Pair("rtt-fold-vs-read-entry", "RTT_FOLD of an empty level-3 table vs RTT_READ_ENTRY of a page in it",
         rtt_fold_vs_read_entry),
    Pair("rtt-create-vs-rtt-destroy-parent", "RTT_CREATE of a level-3 table vs RTT_DESTROY of its empty parent",
         rtt_create_vs_rtt_destroy_parent),
    Pair("rtt-fold-assigned-vs-data-destroy", "RTT_FOLD of 512 pages of one block vs DATA_DESTROY of one of them",
         rtt_fold_assigned_vs_data_destroy),
    Pair("rtt-create-unfold-vs-data-destroy", "RTT_CREATE unfolding an ASSIGNED block vs DATA_DESTROY of a page of it",
         rtt_create_unfold_vs_data_destroy),
    Pair("rtt-fold-ns-vs-unmap", "RTT_FOLD of 512 ASSIGNED_NS pages vs RTT_UNMAP_UNPROTECTED of one of them",
         rtt_fold_ns_vs_unmap),
    Pair("rtt-destroy-vs-rtt-create", "RTT_DESTROY of a table vs RTT_CREATE of it again with the same granule",
         rtt_destroy_vs_rtt_create),
    Pair("init-ripas-vs-data-create", "RTT_INIT_RIPAS of 16 pages vs a measured DATA_CREATE of one of them",
         init_ripas_vs_data_create),
    Pair("set-ripas-vs-data-destroy", "RTT_SET_RIPAS to EMPTY over a DATA page vs DATA_DESTROY of the page",
         set_ripas_vs_data_destroy),
    Pair("realm-destroy-vs-rtt-create", "REALM_DESTROY vs RTT_CREATE of a table in its second root RTT",
         realm_destroy_vs_rtt_create),
    Pair("rtt-destroy-vs-realm-destroy", "RTT_DESTROY of a realm's only table vs REALM_DESTROY",
         rtt_destroy_vs_realm_destroy),
    Pair("realm-destroy-vs-rec-create", "REALM_DESTROY vs REC_CREATE of its first REC",
         realm_destroy_vs_rec_create),
    Pair("rec-destroy-vs-rec-create-same-granules",
         "REC_DESTROY vs REC_CREATE of the next REC with the destroyed REC's granule and aux granules",
         rec_destroy_vs_rec_create_same_granules),
)}
