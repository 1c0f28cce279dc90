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
a measurement, the target of a PSCI request), against another REC_ENTER or a PSCI_COMPLETE of
the same realm (PSCI_SYSTEM_OFF, CPU_ON, CPU_OFF, AFFINITY_INFO), and a REC_ENTER completing a
RIPAS request or a host call against a fold, an unfold or REC_DESTROY; and two races where a
failing call must let go of what it holds before the other needs it (a granule named in the
wrong state that lock_two takes before the RD; the table a failed map walked to); and REC_ENTER
pairs with the run page below the REC, which lock_two then locks before the REC (the other
pairs make it after the REC), among them a REC_ENTER naming its REC's aux granule. Their
outcomes include views (Prepared.watch) of the REC exit, the REC, REM1, the RIM and a page.

This module owns the catalog (PAIRS) and the setups of the pairs of RMI commands above; the setups in
which a REC runs a guest are stress.explore_pairs_rec's, built with stress.explore_guest's kit
(which also gives those pairs their time slice and overlap rule). PAIRS takes in, after these,
stress.explore_pairs_rmi's RMI_PAIRS (reads during changes and teardown, a granule two calls
name, a PSCI target destroyed, a RIPAS change vs a fold) and stress.explore_pairs_rsi's RSI_PAIRS
(a guest's RSI call or unprotected access vs the host's change of what it uses), which own their
setups. It must not write the
machine's shared memory other than through SMCs and Machine.ns_write.
"""

from __future__ import annotations

from rmm_mp.abi.rsi import RsiRipas
from rmm_mp.host.realm import NS_MAP_ATTRS
from rmm_mp.machine import Machine
from rmm_mp.stress.explore import Pair, Prepared
from rmm_mp.stress.explore_setup import (
    F, G, L2, RIPAS_BASE, RIPAS_TOP, UNPROTECTED, Builder, BuiltRealm, prepared, rec_view, ripas_request, rim_view,
)
from rmm_mp.stress.explore_guest import GUEST_SLICE, fails_on_running_rec
from rmm_mp.stress.explore_pairs_rmi import RMI_PAIRS
from rmm_mp.stress.explore_pairs_rsi import RSI_PAIRS
from rmm_mp.stress.explore_pairs_rec import (
    affinity_info_complete_vs_cpu_off, cpu_on_vs_rec_enter_target, cpu_on_vs_system_off,
    data_destroy_vs_host_call_completion, data_destroy_vs_store,
    host_call_completion_vs_data_destroy, host_call_completion_vs_rec_destroy, host_call_vs_data_destroy,
    host_call_vs_rtt_destroy, host_call_vs_rtt_fold, psci_complete_same_target, rec_destroy_vs_host_call_completion,
    rec_enter_cpu_off_vs_psci_complete, rec_enter_vs_delegate_run_page, rec_enter_vs_rec_destroy,
    rec_enter_target_vs_psci_complete, rec_enter_vs_rec_enter, rec_enter_vs_rec_enter_extend, rec_enter_vs_set_ripas,
    rec_enter_vs_system_off,
    rec_destroy_vs_host_call_completion_run_below, rec_enter_aux_run_vs_rec_destroy,
    rec_enter_target_vs_psci_complete_run_below, rec_enter_vs_delegate_run_page_run_below,
    rec_enter_vs_rec_destroy_run_below, rec_enter_vs_rec_enter_run_below, rec_enter_vs_set_ripas_run_below,
    ripas_completion_vs_rtt_fold, ripas_completion_vs_rtt_unfold, rtt_fold_assigned_vs_store,
    store_unprotected_vs_unmap, store_vs_data_destroy, store_vs_rtt_fold_assigned, system_off_vs_psci_complete,
    system_off_vs_rec_enter,
)


# -- the setups --------------------------------------------------------------------------------

def data_create_vs_delegate_src(machine: Machine) -> Prepared:
    """DATA_CREATE against DELEGATE of its NS source page: DATA_CREATE first copies the page
    and both succeed; DELEGATE first makes DATA_CREATE fail src_pas (the page is no longer NS
    when DATA_CREATE locks it with its other granules)."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    src = b.ns_page(b"source" * 600)
    data = b.delegate()
    return prepared(b, (F.RMI_DATA_CREATE, realm.rd, data, 5 * G, src, 1), (F.RMI_GRANULE_DELEGATE, src))


def data_create_own_src_vs_delegate(machine: Machine) -> Prepared:
    """DATA_CREATE whose data granule is its own NS source page, against DELEGATE of that page:
    serially DATA_CREATE fails (data_state while the page is NS, src_pas once it is delegated).
    The unmodified RMM refuses the page named twice before it takes any lock, so it has no lock
    event to insert B at; a DATA_CREATE that locks the data granule and copies the source under
    it does (bug data-create-copy-under-rd)."""
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


def set_ripas_vs_rtt_destroy(machine: Machine) -> Prepared:
    """A realm's REC asks (RSI_IPA_STATE_SET) for RAM over part of an empty level-3 table; the
    host answers with RTT_SET_RIPAS while another CPU destroys that table. Built through the ABI:
    the guest image is a measured DATA page at IPA 0, and REC_ENTER runs it to its RIPAS exit."""
    b = Builder(machine)
    realm, rec = ripas_request(b)
    return prepared(b, (F.RMI_RTT_SET_RIPAS, realm.rd, rec, RIPAS_BASE, RIPAS_TOP),
                     (F.RMI_RTT_DESTROY, realm.rd, RIPAS_BASE, 3))




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
    realm, rec = ripas_request(b, RsiRipas.RSI_EMPTY, pages=(SET_EMPTY_PAGE,))
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


# -- calls that hold a granule while they wait for another ------------------------------------

def rtt_create_again_vs_data_create_unknown(machine: Machine) -> Prepared:
    """RTT_CREATE naming, again, the granule of an existing level-3 table (a stale host retry:
    it fails, the granule is no longer DELEGATED) vs DATA_CREATE_UNKNOWN of a page in that
    table, which holds the RD while it walks there. The table lies below the RD, so lock_two
    takes it first: it must check the table's state, and let it go, before it waits for the RD
    (rule 3); holding it, each call would wait for the other. Serially A fails, B succeeds."""
    b = Builder(machine)
    table = b.delegate()                        # below the RD: lock_two takes it before the RD
    realm = b.realm()
    b.tables(realm, 0, 2)
    b.call(F.RMI_RTT_CREATE, realm.rd, table, 0, 3)
    data = b.delegate()
    return prepared(b, (F.RMI_RTT_CREATE, realm.rd, table, 0, 3), (F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, 5 * G))


def remap_vs_unmap_unprotected(machine: Machine) -> Prepared:
    """RTT_MAP_UNPROTECTED of a page that is mapped already vs RTT_UNMAP_UNPROTECTED of it:
    unmapped first, the map succeeds; mapped first, it fails (RMI_ERROR_RTT, 3) and must leave
    the table unlocked for the unmap."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, UNPROTECTED, 3)
    ipa = UNPROTECTED + 5 * G
    b.call(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, b.ns_page() | NS_MAP_ATTRS)
    again = b.ns_page()
    return prepared(b, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, again | NS_MAP_ATTRS),
                     (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa, 3))


PAIRS: dict[str, Pair] = {p.name: p for p in (
    Pair("data-create-vs-delegate-src", "DATA_CREATE from an NS source page vs DELEGATE of that page",
         data_create_vs_delegate_src),
    Pair("data-create-own-src-vs-delegate", "DATA_CREATE from its own NS source page (data = source) vs "
         "DELEGATE of that page", data_create_own_src_vs_delegate),
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
    Pair("system-off-vs-rec-enter",
         "REC_ENTER of REC 0, which calls PSCI_SYSTEM_OFF, vs REC_ENTER of REC 1, which extends REM1",
         system_off_vs_rec_enter, GUEST_SLICE),
    Pair("rec-enter-vs-system-off",
         "REC_ENTER of REC 1, which extends REM1, vs REC_ENTER of REC 0, which calls PSCI_SYSTEM_OFF",
         rec_enter_vs_system_off, GUEST_SLICE),
    Pair("system-off-vs-psci-complete",
         "REC_ENTER of REC 2, which calls PSCI_SYSTEM_OFF, vs PSCI_COMPLETE of REC 0's CPU_ON naming REC 1",
         system_off_vs_psci_complete, GUEST_SLICE),
    Pair("cpu-on-vs-system-off",
         "REC_ENTER of REC 0, which calls PSCI_CPU_ON naming REC 1, vs REC_ENTER of REC 2, which calls SYSTEM_OFF",
         cpu_on_vs_system_off, GUEST_SLICE),
    Pair("cpu-on-vs-rec-enter-target",
         "REC_ENTER of REC 0, which calls PSCI_CPU_ON naming REC 1, vs REC_ENTER of REC 1 (not runnable)",
         cpu_on_vs_rec_enter_target, GUEST_SLICE),
    Pair("rec-enter-target-vs-psci-complete",
         "REC_ENTER of REC 1 (off) vs PSCI_COMPLETE of REC 0's CPU_ON naming it",
         rec_enter_target_vs_psci_complete, GUEST_SLICE),
    Pair("affinity-info-complete-vs-cpu-off",
         "REC_ENTER of REC 1, which calls PSCI_CPU_OFF, vs PSCI_COMPLETE of REC 0's AFFINITY_INFO about REC 1",
         affinity_info_complete_vs_cpu_off, GUEST_SLICE),
    Pair("psci-complete-same-target",
         "PSCI_COMPLETE of REC 0's CPU_ON naming REC 1 vs PSCI_COMPLETE of REC 2's CPU_ON naming REC 1",
         psci_complete_same_target, GUEST_SLICE),
    Pair("host-call-completion-vs-rec-destroy", "REC_ENTER completing a host call vs REC_DESTROY of the REC",
         host_call_completion_vs_rec_destroy, GUEST_SLICE, fails_on_running_rec("REC_DESTROY")),
    Pair("rec-destroy-vs-host-call-completion", "REC_DESTROY of a REC vs REC_ENTER completing its host call",
         rec_destroy_vs_host_call_completion, GUEST_SLICE, fails_on_running_rec("REC_DESTROY")),
    Pair("ripas-completion-vs-rtt-fold",
         "REC_ENTER completing a RIPAS request for a whole table (then a host call in it) vs RTT_FOLD of the table",
         ripas_completion_vs_rtt_fold, GUEST_SLICE),
    Pair("ripas-completion-vs-rtt-unfold",
         "the same with the table folded, vs RTT_CREATE of it again (an unfold)",
         ripas_completion_vs_rtt_unfold, GUEST_SLICE),
    Pair("store-vs-rtt-fold-assigned",
         "REC_ENTER whose guest stores to a page of a 2 MiB block (twice) vs RTT_FOLD of the block's table",
         store_vs_rtt_fold_assigned, GUEST_SLICE),
    Pair("rtt-fold-assigned-vs-store",
         "RTT_FOLD of a 2 MiB block's table vs REC_ENTER whose guest stores to a page of it (twice)",
         rtt_fold_assigned_vs_store, GUEST_SLICE),
    Pair("rtt-create-again-vs-data-create-unknown",
         "RTT_CREATE naming an existing level-3 table's granule (below the RD) vs DATA_CREATE_UNKNOWN in the table",
         rtt_create_again_vs_data_create_unknown),
    Pair("remap-vs-unmap-unprotected", "RTT_MAP_UNPROTECTED of a page mapped already vs its RTT_UNMAP_UNPROTECTED",
         remap_vs_unmap_unprotected),
    Pair("rec-enter-vs-rec-destroy-run-below", "rec-enter-vs-rec-destroy with the run page below the REC",
         rec_enter_vs_rec_destroy_run_below, GUEST_SLICE, fails_on_running_rec("REC_DESTROY")),
    Pair("rec-enter-vs-rec-enter-run-below", "rec-enter-vs-rec-enter with both run pages below the REC",
         rec_enter_vs_rec_enter_run_below, GUEST_SLICE, fails_on_running_rec("REC_ENTER")),
    Pair("rec-enter-vs-set-ripas-run-below", "rec-enter-vs-set-ripas with the run page below the REC",
         rec_enter_vs_set_ripas_run_below, GUEST_SLICE, fails_on_running_rec("RTT_SET_RIPAS")),
    Pair("rec-enter-vs-delegate-run-page-run-below", "rec-enter-vs-delegate-run-page with the run page below the REC",
         rec_enter_vs_delegate_run_page_run_below, GUEST_SLICE),
    Pair("rec-enter-target-vs-psci-complete-run-below",
         "rec-enter-target-vs-psci-complete with the run page below the RECs",
         rec_enter_target_vs_psci_complete_run_below, GUEST_SLICE),
    Pair("rec-destroy-vs-host-call-completion-run-below",
         "rec-destroy-vs-host-call-completion with the run page below the REC",
         rec_destroy_vs_host_call_completion_run_below, GUEST_SLICE, fails_on_running_rec("REC_DESTROY")),
    Pair("rec-enter-aux-run-vs-rec-destroy",
         "REC_ENTER naming an aux granule of its REC (below it) as its run page vs REC_DESTROY of the REC",
         rec_enter_aux_run_vs_rec_destroy, GUEST_SLICE),
    *RMI_PAIRS,
    *RSI_PAIRS,
)}
