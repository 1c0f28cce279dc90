"""The interleaving explorer's pairs of a command that reads what another changes, or names a
granule another claims (stress.explore_pairs holds the catalog and takes these pairs from
RMI_PAIRS): RTT_READ_ENTRY vs RTT_CREATE and RTT_DESTROY of the table below the entry it walks
to, and vs REALM_DESTROY; read-only calls (REC_AUX_COUNT, FEATURES) during REALM_DESTROY; UNDELEGATE vs
DATA_CREATE_UNKNOWN of the same granule; RTT_INIT_RIPAS over a range in which RTT_CREATE makes
a table.

This module owns those setups and their Pairs. It must not write the machine's shared memory
other than through SMCs and Machine.ns_write.
"""

from __future__ import annotations

from rmm_mp.machine import Machine
from rmm_mp.stress.explore import Pair, Prepared
from rmm_mp.stress.explore_setup import F, G, L2, Builder, prepared, rim_view


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


def realm_destroy_vs_features(machine: Machine) -> Prepared:
    """REALM_DESTROY vs RMI_FEATURES (index 0), which takes no lock: it answers the same in every
    order, and nothing REALM_DESTROY holds may stop it."""
    b = Builder(machine)
    realm = b.realm()
    return prepared(b, (F.RMI_REALM_DESTROY, realm.rd), (F.RMI_FEATURES, 0))


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


RMI_PAIRS: tuple[Pair, ...] = (
    Pair("read-entry-vs-rtt-create", "RTT_READ_ENTRY of a level-2 entry vs RTT_CREATE of the table below it",
         read_entry_vs_rtt_create),
    Pair("read-entry-vs-rtt-destroy", "RTT_READ_ENTRY of a level-3 entry vs RTT_DESTROY of its table",
         read_entry_vs_rtt_destroy),
    Pair("read-entry-vs-realm-destroy", "RTT_READ_ENTRY holding root RTT 0 vs REALM_DESTROY of the realm",
         read_entry_vs_realm_destroy),
    Pair("realm-destroy-vs-rec-aux-count", "REALM_DESTROY vs REC_AUX_COUNT of the realm",
         realm_destroy_vs_rec_aux_count),
    Pair("realm-destroy-vs-features", "REALM_DESTROY vs RMI_FEATURES (no lock)", realm_destroy_vs_features),
    Pair("undelegate-vs-data-create-unknown", "UNDELEGATE of a granule vs DATA_CREATE_UNKNOWN naming it",
         undelegate_vs_data_create_unknown),
    Pair("data-create-unknown-vs-undelegate", "DATA_CREATE_UNKNOWN of a granule vs UNDELEGATE of it",
         data_create_unknown_vs_undelegate),
    Pair("init-ripas-vs-rtt-create", "RTT_INIT_RIPAS of four level-2 entries vs RTT_CREATE of a table under one",
         init_ripas_vs_rtt_create),
)
