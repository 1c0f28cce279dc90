"""The interleaving explorer's pairs of a command that reads what another changes, or names a
granule another claims (stress.explore_pairs holds the catalog and takes these pairs from
RMI_PAIRS): RTT_READ_ENTRY vs RTT_CREATE and RTT_DESTROY of the table below the entry it walks
to, and vs REALM_DESTROY; read-only calls (REC_AUX_COUNT, RTT_READ_ENTRY of a root) during
REALM_DESTROY; UNDELEGATE vs DATA_CREATE_UNKNOWN of the same granule; RTT_INIT_RIPAS over a
range in which RTT_CREATE makes a table; PSCI_COMPLETE vs REC_DESTROY of its target;
RTT_SET_RIPAS vs RTT_FOLD of its table (the setups of the last two run a guest to its request;
no REC runs in the pair).

This module owns those setups and their Pairs. It must not write the machine's shared memory
other than through SMCs and Machine.ns_write.
"""

from __future__ import annotations

from rmm_mp.abi.structs import RmiRecExitReason
from rmm_mp.machine import Machine
from rmm_mp.stress.explore import Pair, Prepared
from rmm_mp.stress.explore_guest import exit_must_be
from rmm_mp.stress.explore_pairs_rec import cpu_on_realm
from rmm_mp.stress.explore_setup import (
    F, G, L2, RIPAS_BASE, RIPAS_TOP, UNPROTECTED, Builder, prepared, rec_view, rim_view, ripas_request,
)


def read_entry_vs_rtt_create(machine: Machine) -> Prepared:
    """RTT_READ_ENTRY of the level-2 entry of [L2, 2 L2) (its walk holds root RTT 0 and the tables
    down to level 1, then the level-2 table while it reads) vs RTT_CREATE of the level-3 table
    below that entry: UNASSIGNED EMPTY before, TABLE (X3 = the new table) after."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 2)
    table = b.delegate()
    return prepared(b, (F.RMI_RTT_READ_ENTRY, realm.rd, L2, 2), (F.RMI_RTT_CREATE, realm.rd, table, L2, 3))


def read_entry_vs_rtt_destroy(machine: Machine) -> Prepared:
    """RTT_READ_ENTRY of a page's level-3 entry vs RTT_DESTROY of its (empty) level-3 table: the
    level-3 entry before; after, the walk ends at level 2 (X1 = 2) and reads the UNASSIGNED
    DESTROYED entry RTT_DESTROY left there."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, L2, 3)
    return prepared(b, (F.RMI_RTT_READ_ENTRY, realm.rd, L2 + 5 * G, 3), (F.RMI_RTT_DESTROY, realm.rd, L2, 3))


def read_entry_vs_realm_destroy(machine: Machine) -> Prepared:
    """RTT_READ_ENTRY of a page's entry in a realm with no table (the walk stops at root RTT 0,
    which it holds once it released the RD) vs REALM_DESTROY, which locks each root RTT under
    the RD before it takes them down: read first, the root's UNASSIGNED EMPTY entry (X1 = the
    start level); destroyed first, the RD is gone (rd_state)."""
    b = Builder(machine)
    realm = b.realm()
    return prepared(b, (F.RMI_RTT_READ_ENTRY, realm.rd, 5 * G, 3), (F.RMI_REALM_DESTROY, realm.rd))


def realm_destroy_vs_rec_aux_count(machine: Machine) -> Prepared:
    """REALM_DESTROY of a realm with nothing live vs REC_AUX_COUNT of it: counted first, it
    succeeds; destroyed first, the RD is DELEGATED (rd_state)."""
    b = Builder(machine)
    realm = b.realm()
    return prepared(b, (F.RMI_REALM_DESTROY, realm.rd), (F.RMI_REC_AUX_COUNT, realm.rd))


def realm_destroy_vs_read_entry(machine: Machine) -> Prepared:
    """REALM_DESTROY of a realm with nothing live (it holds the RD while it locks each root RTT
    to count what is live, then again to take it down) vs RTT_READ_ENTRY of the start-level
    entry of the second root RTT (the unprotected half), a walk that locks that root once it
    has the RD: read first, the root's UNASSIGNED EMPTY entry (X1 = the start level); destroyed
    first, the RD is gone (rd_state). B is inserted at REALM_DESTROY's lock events, so a
    REALM_DESTROY that lets the RD go before its roots are down shows (the read walks into a
    root that is no longer an RTT); read-entry-vs-realm-destroy inserts at the read's events."""
    b = Builder(machine)
    realm = b.realm()
    return prepared(b, (F.RMI_REALM_DESTROY, realm.rd),
                    (F.RMI_RTT_READ_ENTRY, realm.rd, UNPROTECTED, realm.start_level))


def undelegate_vs_data_create_unknown(machine: Machine) -> Prepared:
    """UNDELEGATE of a DELEGATED granule vs DATA_CREATE_UNKNOWN naming it (which locks it with
    the RD, in address order, and walks to the level-3 table): undelegated first, the create
    fails data_state; created first, the granule is DATA and UNDELEGATE fails gran_state."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    data = b.delegate()
    return prepared(b, (F.RMI_GRANULE_UNDELEGATE, data), (F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, 5 * G))


def data_create_unknown_vs_undelegate(machine: Machine) -> Prepared:
    """The same the other way round: UNDELEGATE inserted at DATA_CREATE_UNKNOWN's lock events."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 3)
    data = b.delegate()
    return prepared(b, (F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, 5 * G), (F.RMI_GRANULE_UNDELEGATE, data))


def init_ripas_vs_rtt_create(machine: Machine) -> Prepared:
    """RTT_INIT_RIPAS of the first four level-2 entries, [0, 4 L2), vs RTT_CREATE of a level-3
    table under the second: initialised first, all four are RAM (done = 4 L2) and the create
    unfolds an UNASSIGNED RAM entry (512 RAM entries); created first, the walk's run stops at the
    TABLE entry (done = L2, one RIPAS descriptor in the RIM, a view)."""
    b = Builder(machine)
    realm = b.realm()
    b.tables(realm, 0, 2)
    table = b.delegate()
    return prepared(b, (F.RMI_RTT_INIT_RIPAS, realm.rd, 0, 4 * L2), (F.RMI_RTT_CREATE, realm.rd, table, L2, 3),
                     (rim_view(realm),))


def _cpu_on_pending(machine: Machine) -> tuple[Builder, int, int]:
    """REC 0's PSCI_CPU_ON naming REC 1 (created not runnable) pending: the builder, REC 0, REC 1."""
    b, (rec0, rec1, _) = cpu_on_realm(machine)
    exit_must_be(b.enter(rec0), RmiRecExitReason.RMI_EXIT_PSCI)
    return b, rec0, rec1


def psci_complete_vs_rec_destroy_target(machine: Machine) -> Prepared:
    """PSCI_COMPLETE(REC 0, REC 1, SUCCESS) of REC 0's pending CPU_ON vs REC_DESTROY of REC 1,
    the target (off, so nothing stops its destruction): completed first, REC 1 starts and is
    then destroyed; destroyed first, the completion fails (its target is no REC) and REC 0 keeps
    its request pending (REC 0 a view)."""
    b, rec0, rec1 = _cpu_on_pending(machine)
    return prepared(b, (F.RMI_PSCI_COMPLETE, rec0, rec1, 0), (F.RMI_REC_DESTROY, rec1), (rec_view("REC 0", rec0),))


def rec_destroy_target_vs_psci_complete(machine: Machine) -> Prepared:
    """The same the other way round: the completion inserted at REC_DESTROY's lock events (REC 1,
    then each of its aux granules)."""
    b, rec0, rec1 = _cpu_on_pending(machine)
    return prepared(b, (F.RMI_REC_DESTROY, rec1), (F.RMI_PSCI_COMPLETE, rec0, rec1, 0), (rec_view("REC 0", rec0),))


def set_ripas_vs_rtt_fold(machine: Machine) -> Prepared:
    """RTT_SET_RIPAS answering a REC's request for RAM over 16 pages of an empty level-3 table vs
    RTT_FOLD of the table: set first, the table is no longer homogeneous (rtt_homo); folded
    first, SET_RIPAS's walk ends at level 2 with its range smaller than the block (rtt_walk)."""
    b = Builder(machine)
    realm, rec = ripas_request(b)
    return prepared(b, (F.RMI_RTT_SET_RIPAS, realm.rd, rec, RIPAS_BASE, RIPAS_TOP),
                     (F.RMI_RTT_FOLD, realm.rd, RIPAS_BASE, 3), (rec_view("REC", rec),))


RMI_PAIRS: tuple[Pair, ...] = (
    Pair("read-entry-vs-rtt-create", "RTT_READ_ENTRY of a level-2 entry vs RTT_CREATE of the table below it",
         read_entry_vs_rtt_create),
    Pair("read-entry-vs-rtt-destroy", "RTT_READ_ENTRY of a level-3 entry vs RTT_DESTROY of its table",
         read_entry_vs_rtt_destroy),
    Pair("read-entry-vs-realm-destroy", "RTT_READ_ENTRY holding root RTT 0 vs REALM_DESTROY of the realm",
         read_entry_vs_realm_destroy),
    Pair("realm-destroy-vs-rec-aux-count", "REALM_DESTROY vs REC_AUX_COUNT of the realm",
         realm_destroy_vs_rec_aux_count),
    Pair("realm-destroy-vs-read-entry", "REALM_DESTROY vs RTT_READ_ENTRY of its second root RTT's entry",
         realm_destroy_vs_read_entry),
    Pair("undelegate-vs-data-create-unknown", "UNDELEGATE of a granule vs DATA_CREATE_UNKNOWN naming it",
         undelegate_vs_data_create_unknown),
    Pair("data-create-unknown-vs-undelegate", "DATA_CREATE_UNKNOWN of a granule vs UNDELEGATE of it",
         data_create_unknown_vs_undelegate),
    Pair("init-ripas-vs-rtt-create", "RTT_INIT_RIPAS of four level-2 entries vs RTT_CREATE of a table under one",
         init_ripas_vs_rtt_create),
    Pair("psci-complete-vs-rec-destroy-target", "PSCI_COMPLETE of REC 0's CPU_ON naming REC 1 vs REC_DESTROY of REC 1",
         psci_complete_vs_rec_destroy_target),
    Pair("rec-destroy-target-vs-psci-complete", "REC_DESTROY of REC 1 vs PSCI_COMPLETE of REC 0's CPU_ON naming it",
         rec_destroy_target_vs_psci_complete),
    Pair("set-ripas-vs-rtt-fold", "RTT_SET_RIPAS of a REC's RIPAS request vs RTT_FOLD of the table it covers",
         set_ripas_vs_rtt_fold),
)
