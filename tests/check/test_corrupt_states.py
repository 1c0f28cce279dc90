"""The invariant checker (rmm_mp/check) on corrupt states: it reports, never raises, and misses nothing.

`invariants()` promises to return a report whatever the machine holds; `rmm-mp check` and the
stress tool rely on it (a raise was a traceback instead of a finding). Each case corrupts one
thing of a small valid machine, the way a bug in the RMM could, and expects a violation naming
the granule and the rule. The second half has a case for every rule of check/_invariants.py and
check/_realms.py (written after mutation testing found rules no test made fire)."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterator

import pytest

from rmi_helpers import F, Rmi
from rmm_mp import Machine
from rmm_mp.check import invariants
from rmm_mp.hw.gpt import Pas
from rmm_mp.hw.platform import load as load_platform
from rmm_mp.hw.granule import cpu_owner
from rmm_mp.rmm import s2tt, vmid
from rmm_mp.rmm.granule_state import GranuleState as GS
from rmm_mp.rmm.realm_desc import OFF_REC_COUNT
from rmm_mp.rmm.rec_desc import OFF_IDX, OFF_NUM_AUX, Rec

GRANULE = 4096
RD_LEVEL_START, RD_NUM_START = 0x10, 0x18
"""Offsets in the RD of rtt_level_start and rtt_num_start (rmm/realm_desc.py)."""


def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // GRANULE


def _violations(m: Machine) -> list[tuple[str, int | None, str]]:
    return [(v.rule, v.pa, v.detail) for v in invariants(m).violations]


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=1) as m:
        yield m


def test_a_level_1_block_running_past_dram_is_a_violation(machine: Machine) -> None:
    """An ASSIGNED 1 GiB block at the start of 64 MiB of DRAM (IndexError before)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, 0, 1)
    l1 = realm.rtts[(0, 1)]
    s2tt.write(machine.memory, _idx(machine, l1), 2, s2tt.assigned(machine.dram_base, 1, s2tt.RIPAS_RAM))
    found = _violations(machine)
    assert ("data-mapping", l1) in [(rule, pa) for rule, pa, _ in found]
    assert any("runs past the end of DRAM" in detail for _, _, detail in found), found
    # The block starts at DRAM's first granule, which is in DRAM and not DATA.
    assert any(f"maps {machine.dram_base:#x}, which is" in detail for _, _, detail in found), found
    assert not any("not DRAM" in detail for _, _, detail in found), found


@pytest.mark.parametrize("offset, value, shown", [
    (RD_LEVEL_START, 7, "start level 7"),           # a negative shift count before
    (RD_NUM_START, 1 << 20, "1048576 root RTTs"),    # an IndexError before
])
def test_rd_fields_that_cannot_describe_tables_are_a_violation(machine: Machine, offset: int, value: int,
                                                               shown: str) -> None:
    """An RD whose start level or number of root RTTs no walk can use: an rtt-tree violation on the RD
    that shows the bad value, not a raise."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rd = _idx(machine, realm.rd)
    struct.pack_into("<Q", machine.memory.buf, rd * GRANULE + offset, value)
    found = _violations(machine)
    assert any(rule == "rtt-tree" and pa == realm.rd and shown in detail for rule, pa, detail in found), found


def test_an_aux_granule_outside_dram_is_a_violation(machine: Machine) -> None:
    """A REC's aux list naming a PA outside DRAM was skipped (index -1)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec = t.rec(realm)
    mmio = machine.mmio_regions[0][0]
    # aux[0] of the REC record (rmm/rec_desc.py: num_aux at 0x070, aux[16] from 0x078)
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec) * GRANULE + OFF_NUM_AUX + 8, mmio)
    assert Rec(machine.memory, _idx(machine, rec)).aux()[0] == mmio
    found = _violations(machine)
    assert any(rule == "rec-owner" and pa == rec and f"aux granule 0 is {mmio:#x}, not DRAM" in detail
               for rule, pa, detail in found), found


def test_a_root_entry_past_the_ipa_space_is_a_violation(machine: Machine) -> None:
    """A 36-bit realm has one level-1 root of which entries 64..511 lie past the IPA space: they
    stay 0 (REALM_CREATE writes 0 there and no command reaches them); a TABLE written there was
    never read."""
    t = Rmi(machine)
    realm = t.realm(s2sz=36)
    root = realm.roots[0]
    assert invariants(machine).ok
    s2tt.write(machine.memory, _idx(machine, root), 100, s2tt.table(t.delegate()))
    s2tt.write(machine.memory, _idx(machine, root), 200, s2tt.UNASSIGNED_RAM)
    found = _violations(machine)
    assert any(rule == "rtt-tree" and pa == root and "entry 100 lies past the IPA space" in detail
               and "(2 such entries)" in detail for rule, pa, detail in found), found


@pytest.mark.parametrize("level, ipa, entry, shown", [
    (3, 0x5000, lambda ns: s2tt.assigned_ns(ns, 3), "is ASSIGNED_NS, but that is a Protected IPA"),
    (3, 0x6000, lambda ns: s2tt.UNASSIGNED_NS, "is UNASSIGNED_NS, but that is a Protected IPA"),
    (0, 1 << 47, lambda ns: s2tt.UNASSIGNED_EMPTY, "is UNASSIGNED, but that is an Unprotected IPA"),
    (0, 1 << 47, lambda ns: s2tt.assigned_ns(0, 0), "is ASSIGNED_NS in a level-0 RTT"),
], ids=["host-page-at-protected-ipa", "unassigned-ns-at-protected-ipa", "unassigned-at-unprotected-ipa",
        "level-0-block"])
def test_an_entry_of_the_wrong_kind_for_its_place_is_a_violation(machine: Machine, level: int, ipa: int,
                                                                 entry: Callable[[int], int], shown: str) -> None:
    """DEN0137 A5.5.2: ASSIGNED and UNASSIGNED entries are at Protected IPAs, ASSIGNED_NS and
    UNASSIGNED_NS at Unprotected ones, and a level-0 RTT holds no block. A host page mapped
    at a Protected IPA (the realm would read and write host memory as its own) passed before:
    no rule looked at an entry's IPA."""
    t = Rmi(machine)
    realm = t.realm(s2sz=48)
    assert realm.start_level == 0
    table = t.rtts(realm, ipa, level)[-1] if level else realm.roots[0]
    index = (ipa // s2tt.block_size(level)) % s2tt.ENTRIES
    assert invariants(machine).ok
    s2tt.write(machine.memory, _idx(machine, table), index, entry(t.ns_granule()))
    found = _violations(machine)
    assert [(rule, pa) for rule, pa, _ in found] == [("rtt-entry", table)], found
    assert f"entry for IPA {ipa:#x} {shown}" in found[0][2]
    assert "such entries" not in found[0][2]


# -- every rule finds its violation ----------------------------------------------------------------
#
# Each case breaks exactly one thing of a valid machine and expects exactly the violations that
# one thing implies: a rule that stopped looking, or one that started reporting valid states,
# fails the comparison.

RD_IPA_WIDTH, RD_VMID = 0x08, 0x28
"""Offsets in the RD of ipa_width and vmid (rmm/realm_desc.py)."""


def _rules(m: Machine) -> list[tuple[str, int | None]]:
    """(rule, PA) of each violation, sorted; a violation of no granule (PA None) first."""
    return sorted(((rule, pa) for rule, pa, _ in _violations(m)), key=lambda v: (v[0], -1 if v[1] is None else v[1]))


def _details(m: Machine) -> str:
    return "\n".join(detail for _, _, detail in _violations(m))


def _set_state(m: Machine, pa: int, state: int) -> None:
    table = m.granule_table(0)
    table.lock(_idx(m, pa))
    table.set_state(_idx(m, pa), state)
    table.unlock(_idx(m, pa))


def test_a_held_lock_is_a_violation(machine: Machine) -> None:
    """A granule lock left held by CPU 0: exactly one lock-free violation naming that granule and the
    holder; once released the invariants hold again."""
    table = machine.granule_table(cpu_owner(0))
    table.lock(7)
    try:
        assert _rules(machine) == [("lock-free", machine.dram_base + 7 * GRANULE)]
        assert "lock held by CPU 0" in _details(machine)
    finally:
        table.unlock(7)
    assert invariants(machine).ok


def test_an_unknown_state_is_a_violation_and_nothing_else_of_that_granule(machine: Machine) -> None:
    """A state the RMM never writes: reported once; the rules that need a known state skip it."""
    pa = machine.dram_base + 9 * GRANULE
    _set_state(machine, pa, 0x7F)
    assert _rules(machine) == [("state-known", pa)]
    assert "state field is 127" in _details(machine)


@pytest.mark.parametrize("state, pas, shown", [
    (GS.NS, Pas.REALM, "state NS but PAS REALM, expected NS"),
    (GS.DELEGATED, Pas.NS, "state DELEGATED but PAS NS, expected REALM"),
], ids=["ns-granule-in-realm-pas", "delegated-granule-in-ns-pas"])
def test_a_granule_in_the_wrong_pas_is_a_violation(machine: Machine, state: int, pas: Pas, shown: str) -> None:
    """An NS granule moved to the Realm PAS, or a DELEGATED one to the NS PAS: one gpt violation naming
    the state, the PAS found and the PAS expected."""
    pa = Rmi(machine).delegate() if state == GS.DELEGATED else machine.dram_base + 11 * GRANULE
    idx = _idx(machine, pa)
    assert machine.gpt.transition(idx, machine.gpt.pas(idx), pas)
    assert _rules(machine) == [("gpt", pa)]
    assert shown in _details(machine)


def test_a_secure_granule_outside_the_secure_pas_or_out_of_ns_state_is_a_violation(machine: Machine) -> None:
    """A granule of the Secure region moved to the NS PAS is one gpt violation; back in the Secure PAS but
    in state DELEGATED it is two (a Secure granule out of NS state, in a PAS that is not REALM)."""
    base, _ = machine.secure_regions[0]
    idx = _idx(machine, base)
    assert invariants(machine).ok
    assert machine.gpt.transition(idx, Pas.SECURE, Pas.NS)
    assert _rules(machine) == [("gpt", base)]
    assert "state NS but PAS NS, expected SECURE" in _details(machine)
    assert machine.gpt.transition(idx, Pas.NS, Pas.SECURE)
    _set_state(machine, base, GS.DELEGATED)
    assert _rules(machine) == [("gpt", base), ("gpt", base)]
    assert "Secure granule in state DELEGATED" in _details(machine)


def test_a_refcount_on_a_granule_that_counts_no_references_is_a_violation(machine: Machine) -> None:
    """A DELEGATED granule given refcount 1: one refcount violation saying 0 was expected."""
    pa = Rmi(machine).delegate()
    machine.granule_table(0).refcount_add(_idx(machine, pa), 1)
    assert _rules(machine) == [("refcount", pa)]
    assert "DELEGATED granule has refcount 1, expected 0" in _details(machine)


@pytest.mark.parametrize("refcount", [1, 2])
def test_a_rec_refcount_is_the_running_reference_and_at_most_1(machine: Machine, refcount: int) -> None:
    """A REC with refcount 1 on a quiescent machine still holds the running reference (rec-running);
    with refcount 2 it also breaks the at-most-1 refcount rule."""
    t = Rmi(machine)
    rec = t.rec(t.realm(s2sz=40))
    machine.granule_table(0).refcount_add(_idx(machine, rec), refcount)
    expected = [("rec-running", rec)] + ([("refcount", rec)] if refcount > 1 else [])
    assert _rules(machine) == sorted(expected)
    if refcount > 1:
        assert "REC granule has refcount 2, at most 1 allowed" in _details(machine)


def test_a_delegated_granule_holding_bytes_is_a_violation(machine: Machine) -> None:
    """One non-zero byte in a DELEGATED granule: exactly one delegated-zero violation on that granule."""
    pa = Rmi(machine).delegate()
    machine.memory.buf[_idx(machine, pa) * GRANULE + 100] = 1
    assert _rules(machine) == [("delegated-zero", pa)]


def test_an_rtt_refcount_that_does_not_count_its_live_entries_is_a_violation(machine: Machine) -> None:
    """A root RTT whose refcount is one more than its live entries: one rtt-refcount violation on the root
    that shows both numbers."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, 0, 2)
    root = realm.roots[0]
    machine.granule_table(0).refcount_add(_idx(machine, root), 1)
    assert _rules(machine) == [("rtt-refcount", root)]
    assert f"level {realm.start_level} RTT has refcount 2 but 1 live entry" in _details(machine)


@pytest.mark.parametrize("state, rule", [(GS.RTT, "rtt-tree"), (GS.DATA, "data-mapping"),
                                         (GS.REC_AUX, "rec-owner")])
def test_an_internal_granule_nothing_references_is_a_violation(machine: Machine, state: int, rule: str) -> None:
    """A delegated granule relabelled RTT, DATA or REC_AUX with no table, mapping or REC naming it: one
    violation of the rule that owns that kind, saying it is referenced 0 times."""
    pa = Rmi(machine).delegate()
    _set_state(machine, pa, state)
    assert _rules(machine) == [(rule, pa)]
    assert f"{GS.name(state)} granule is referenced 0 times, expected once" in _details(machine)


def test_an_aux_granule_two_recs_list_or_that_is_no_rec_aux_names_the_recs(machine: Machine) -> None:
    """REC 1's aux granule 3 rewritten to REC 0's, and REC 0's aux granule 5 to a DELEGATED
    granule: rec-owner violations that name the RECs listing each granule (REC 0's aux 3 listed
    by both RECs, the DELEGATED one by REC 0), beside the two REC_AUX granules no REC lists
    any more. They said only "referenced 2 times" and "referenced as REC_AUX", leaving the
    RECs to be searched for."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec0, rec1 = t.rec(realm), t.rec(realm)
    shared = Rec(machine.memory, _idx(machine, rec0)).aux()[3]
    delegated = t.delegate()
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec1) * GRANULE + OFF_NUM_AUX + 8 * 4, shared)
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec0) * GRANULE + OFF_NUM_AUX + 8 * 6, delegated)
    assert {rule for rule, _ in _rules(machine)} == {"rec-owner"}
    details = _details(machine).splitlines()
    first, second = sorted((rec0, rec1))
    assert f"REC_AUX granule is referenced 2 times (listed by RECs {first:#x}, {second:#x}), expected once" \
        in details, details
    assert f"referenced as REC_AUX (listed by REC {rec0:#x}) but is DELEGATED" in details, details
    assert sum(d == "REC_AUX granule is referenced 0 times, expected once" for d in details) == 2, details


def test_an_aux_granule_one_rec_lists_twice_names_that_rec_once(machine: Machine) -> None:
    """REC 0's aux granule 5 rewritten to its aux granule 3: the rec-owner violation of aux 3
    names REC 0 once and says it lists the granule twice ("listed by REC 0x... twice"), beside
    aux 5 now listed by no REC. It read "listed by RECs 0xA, 0xA", two RECs where there is one.
    With REC 1 listing it too, each REC is named once, REC 0 with "(twice)"."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec0, rec1 = t.rec(realm), t.rec(realm)
    shared = Rec(machine.memory, _idx(machine, rec0)).aux()[3]
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec0) * GRANULE + OFF_NUM_AUX + 8 * 6, shared)
    details = _details(machine).splitlines()
    assert f"REC_AUX granule is referenced 2 times (listed by REC {rec0:#x} twice), expected once" in details, details
    assert sum(d == "REC_AUX granule is referenced 0 times, expected once" for d in details) == 1, details
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec1) * GRANULE + OFF_NUM_AUX + 8 * 4, shared)
    details = _details(machine).splitlines()
    named = ", ".join(f"{pa:#x} (twice)" if pa == rec0 else f"{pa:#x}" for pa in sorted((rec0, rec1)))
    assert f"REC_AUX granule is referenced 3 times (listed by RECs {named}), expected once" in details, details


def test_a_table_entry_naming_a_granule_that_is_no_rtt_is_a_violation(machine: Machine) -> None:
    """The granule named is the first of DRAM (index 0: no edge of the index range skips it)."""
    t = Rmi(machine)
    first = t.delegate()
    assert first == machine.dram_base
    realm = t.realm(s2sz=40)
    root = realm.roots[0]
    s2tt.write(machine.memory, _idx(machine, root), 0, s2tt.table(first))
    assert _rules(machine) == [("rtt-refcount", root), ("rtt-tree", first), ("rtt-tree", root)]
    assert f"entry for IPA 0x0 names {first:#x}, not an RTT" in _details(machine)
    assert "referenced as RTT but is DELEGATED" in _details(machine)


@pytest.fixture
def no_secure() -> Iterator[Machine]:
    """The `host` platform without its Secure region, so that DRAM's last granule can be an RTT."""
    with Machine.create(dataclasses.replace(load_platform("host"), secure=()), cpus=1) as m:
        yield m


def test_rtts_at_the_first_and_last_granule_of_dram_are_valid(no_secure: Machine) -> None:
    """RTTs created in DRAM's first and last granules (a platform with no Secure region): the invariants
    hold, no edge of the index range is misread."""
    m = no_secure
    t = Rmi(m)
    first = t.delegate()
    last = t.delegate(m.dram_base + (m.granule_count - 1) * GRANULE)
    realm = t.realm(s2sz=40)
    for level, rtt in enumerate((first, last), start=realm.start_level + 1):
        assert t.smc(F.RMI_RTT_CREATE, realm.rd, rtt, 0, level)[0] == 0
    assert invariants(m).ok


def test_a_table_entry_naming_the_end_of_dram_is_a_violation(no_secure: Machine) -> None:
    """The PA just past DRAM is no granule, even with an RTT in DRAM's last granule."""
    m = no_secure
    t = Rmi(m)
    end = m.dram_base + m.granule_count * GRANULE
    last = t.delegate(end - GRANULE)
    realm = t.realm(s2sz=40)
    assert t.smc(F.RMI_RTT_CREATE, realm.rd, last, 0, realm.start_level + 1)[0] == 0
    root = realm.roots[0]
    s2tt.write(m.memory, _idx(m, root), 1, s2tt.table(end))
    assert _rules(m) == [("rtt-refcount", root), ("rtt-tree", root)]
    ipa = s2tt.block_size(realm.start_level)
    assert f"entry for IPA {ipa:#x} names {end:#x}, not an RTT" in _details(m)


def test_a_rec_whose_owner_is_no_rd_is_a_violation(machine: Machine) -> None:
    """A REC whose owner field names a DELEGATED granule: a rec-owner violation on the REC and an
    rd-refcount one on the realm's RD, which now counts a REC nobody finds."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec = t.rec(realm)
    other = t.delegate()
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec) * GRANULE, other)
    assert _rules(machine) == [("rd-refcount", realm.rd), ("rec-owner", rec)]
    assert f"REC's owner {other:#x} is not an RD" in _details(machine)
    assert "RD refcount 1 but 0 RECs" in _details(machine)


def test_two_recs_of_one_realm_with_one_index_are_a_violation(machine: Machine) -> None:
    """REC_CREATE gives a REC the realm's rec_index and increments it (B4.3.12 mpidr_index), so two
    RECs of one realm never share an index: the lost update of a REC_CREATE that reads rec_index
    without the RD lock makes two RECs with index 0 while the RD refcount still counts both. REC 1's
    index rewritten to 0: one rec-index violation on REC 1, naming REC 0 and the RD."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec0, rec1 = t.rec(realm), t.rec(realm)
    assert invariants(machine).ok
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec1) * GRANULE + OFF_IDX, 0)
    assert _rules(machine) == [("rec-index", max(rec0, rec1))]
    first, second = sorted((rec0, rec1))
    assert f"REC index 0 of RD {realm.rd:#x} is REC {first:#x}'s too" in _details(machine)


def test_a_rec_index_at_or_past_the_realms_next_index_is_a_violation(machine: Machine) -> None:
    """A realm whose REC 0 was destroyed and REC 1 created holds one REC with index 1 and a next
    index of 2 (never decremented): valid. Its next index rewritten to 1 (a REC_CREATE whose
    increment was lost): one rec-index violation on the REC, showing both numbers."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec0 = t.rec(realm)
    assert t.smc(F.RMI_REC_DESTROY, rec0)[0] == 0
    rec1 = t.rec(realm, index=1)
    assert invariants(machine).ok
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, realm.rd) * GRANULE + OFF_REC_COUNT, 1)
    assert _rules(machine) == [("rec-index", rec1)]
    assert f"REC index 1 of RD {realm.rd:#x}, whose next REC index is 1" in _details(machine)


def test_counts_in_violations_are_written_in_the_singular_for_one(machine: Machine) -> None:
    """An RD refcount of 2 with one REC, a level-0 RTT with one TABLE entry and refcount 2, and a
    REC listing one aux granule read "1 REC", "1 live entry", "1 aux granule": they read "1
    RECs", "1 live entries", "1 aux granules"."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, 0, 1)
    rec = t.rec(realm)
    table = machine.granule_table(0)
    table.refcount_add(_idx(machine, realm.rd), 1)
    root = realm.roots[0]
    table.refcount_add(_idx(machine, root), 1)
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec) * GRANULE + OFF_NUM_AUX, 1)
    details = _details(machine)
    assert "RD refcount 2 but 1 REC\n" in details + "\n", details
    assert "RTT has refcount 2 but 1 live entry\n" in details + "\n", details
    assert "REC lists 1 aux granule but its RD" in details, details


def test_an_rd_refcount_that_does_not_count_its_recs_is_a_violation(machine: Machine) -> None:
    """An RD with no REC given refcount 1: exactly one rd-refcount violation on the RD."""
    realm = Rmi(machine).realm(s2sz=40)
    machine.granule_table(0).refcount_add(_idx(machine, realm.rd), 1)
    assert _rules(machine) == [("rd-refcount", realm.rd)]


def test_a_realm_whose_vmid_is_not_reserved_is_a_violation(machine: Machine) -> None:
    """A live realm whose VMID is freed behind its back: one vmid violation on its RD."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    vmid.free(machine.control, realm.vmid)
    assert _rules(machine) == [("vmid", realm.rd)]
    assert f"realm's VMID {realm.vmid} is not reserved" in _details(machine)


@pytest.mark.parametrize("past_the_end", [True, False])
def test_a_realm_whose_vmid_is_not_one_of_the_platforms_is_a_violation(machine: Machine, past_the_end: bool) -> None:
    """An RD's VMID rewritten to the first past the platform's VMIDs (2^vmid_bits: 256 on `host`),
    or to 2^63: a vmid violation on the RD saying so, and one for its old VMID, still reserved
    with no realm using it. The bitmap was read at the VMID's bit wherever that fell: past the
    control block (2^63), IndexError out of the checker that never raises; past the platform's
    VMIDs, a bit REALM_CREATE never sets ("not reserved")."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    bits = machine.platform.features.vmid_bits
    value = 1 << bits if past_the_end else 1 << 63
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, realm.rd) * GRANULE + RD_VMID, value)
    assert _rules(machine) == [("vmid", None), ("vmid", realm.rd)]
    assert f"realm's VMID {value} is not one of the platform's {1 << bits:,} (vmid_bits {bits})" in _details(machine)
    assert f"VMID {realm.vmid} is reserved but no realm uses it" in _details(machine)


def test_two_realms_with_one_vmid_are_a_violation(machine: Machine) -> None:
    """The second realm's VMID rewritten to the first's: one VMID used twice, reported at the
    first RD and naming both RDs, and one reserved for none, which is no granule's (PA None,
    shown without one). Both were "granule 0x0", an address that is not even DRAM."""
    t = Rmi(machine)
    a, b = t.realm(s2sz=40), t.realm(s2sz=40)
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, b.rd) * GRANULE + RD_VMID, a.vmid)
    first, second = sorted((a.rd, b.rd))
    assert _rules(machine) == [("vmid", None), ("vmid", first)]
    shown = str(invariants(machine)).splitlines()
    assert f"[vmid] granule {first:#x}: VMID {a.vmid} is used by 2 realms, the RDs {first:#x}, {second:#x}" in shown
    assert f"[vmid] VMID {b.vmid} is reserved but no realm uses it" in shown


def test_a_vmid_reserved_without_a_realm_is_a_violation(machine: Machine) -> None:
    """VMID 77 reserved while the only realm uses another: one vmid violation naming VMID 77 and
    no granule (it said "granule 0x0")."""
    Rmi(machine).realm(s2sz=40)
    assert vmid.reserve(machine.control, 77, 16)
    assert _rules(machine) == [("vmid", None)]
    assert str(invariants(machine)).splitlines()[1] == "[vmid] VMID 77 is reserved but no realm uses it"


RD_NUM_REC_AUX = 0x40
"""Offset in the RD of num_rec_aux, RMI_REC_AUX_COUNT's answer (rmm/realm_desc.py)."""


@pytest.mark.parametrize("num_aux", [15, 17, 1 << 40])
def test_a_rec_listing_other_than_its_realms_aux_count_is_a_violation(machine: Machine, num_aux: int) -> None:
    """REC_CREATE refuses a num_aux other than RecAuxCount(rd) (B4.3.12), so a REC lists as many
    aux granules as its realm's count (16). Its count rewritten: a rec-aux violation on the REC
    naming both counts. Past 16 it went unseen (Rec.aux() keeps 16 entries); at 15, the one left
    out is also a REC_AUX granule no REC lists (rec-owner)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec = t.rec(realm)
    assert invariants(machine).ok
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, rec) * GRANULE + OFF_NUM_AUX, num_aux)
    assert ("rec-aux", rec) in _rules(machine)
    past = " (at most 16 fit in a REC)" if num_aux > 16 else ""
    assert f"REC lists {num_aux:,} aux granules{past} but its RD {realm.rd:#x} says 16: expected as many" \
        in _details(machine)
    assert [r for r in _rules(machine) if r[0] != "rec-owner"] == [("rec-aux", rec)]


def test_an_rd_whose_aux_count_is_not_rec_aux_counts_answer_is_a_violation(machine: Machine) -> None:
    """An RD's num_rec_aux rewritten from 16 (what RMI_REC_AUX_COUNT answers and REALM_CREATE
    stores) to 3: a rec-aux violation on the RD, and one on its REC, which lists 16. It went
    unseen: nothing compared the counts."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    rec = t.rec(realm)
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, realm.rd) * GRANULE + RD_NUM_REC_AUX, 3)
    assert _rules(machine) == sorted([("rec-aux", realm.rd), ("rec-aux", rec)])
    assert "RD's aux granule count is 3: expected 16, RMI_REC_AUX_COUNT's answer" in _details(machine)


@pytest.mark.parametrize("offset, value, shown", [
    (RD_LEVEL_START, (1 << 64) - 1, "start level -1"),
    (RD_NUM_START, 0, "0 root RTTs"),
    (RD_NUM_START, 17, "17 root RTTs"),
])
def test_rd_fields_just_out_of_range_are_a_violation(machine: Machine, offset: int, value: int, shown: str) -> None:
    """The edges of the valid ranges (start level 0..3, 1..16 root RTTs), from outside."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, realm.rd) * GRANULE + offset, value)
    assert ("rtt-tree", realm.rd) in _rules(machine)
    assert shown in _details(machine)


def test_a_realm_too_corrupt_to_walk_is_reported_with_its_rd(machine: Machine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A walk that fails (forced: reading the realm's tables raises) is the finding, on the RD,
    not a raise out of the checker."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)

    def unreadable(memory: object, idx: int) -> list[int]:
        raise ValueError("the table cannot be read")

    monkeypatch.setattr(s2tt, "entries", unreadable)
    assert ("rtt-tree", realm.rd) in _rules(machine)
    assert "the realm's tables cannot be walked: ValueError: the table cannot be read" in _details(machine)


@pytest.mark.parametrize("width", [0, s2tt.MIN_IPA_BITS - 1, s2tt.MAX_IPA_BITS + 1, 0x833F5003, (1 << 64) - 1])
def test_an_ipa_width_no_realm_can_have_is_a_violation(machine: Machine, width: int) -> None:
    """An RD's IPA width outside the 32..48 bits REALM_CREATE accepts: one rtt-tree violation on the
    RD showing it, and its tables are not walked. A width of 0x833f5003 (found by fuzzing the RD)
    made the walk compute with 2^0x833f5003 at every entry: the checker (and `rmm-mp check`,
    holding its pause) ran for minutes; 0 made it raise inside the walk."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    struct.pack_into("<Q", machine.memory.buf, _idx(machine, realm.rd) * GRANULE + RD_IPA_WIDTH, width)
    # Its root RTTs, never reached, are each referenced 0 times (as for a bad start level).
    assert _rules(machine) == sorted([("rtt-tree", realm.rd)] + [("rtt-tree", root) for root in realm.roots])
    assert f"RD holds IPA width {width}, start level {realm.start_level} and {len(realm.roots)} root RTTs; " \
           f"expected {s2tt.MIN_IPA_BITS}..{s2tt.MAX_IPA_BITS}, 0..3 and 1..16" in _details(machine)


def test_the_report_shows_the_first_20_violations(machine: Machine) -> None:
    """21 held locks: the report's text counts 21, lists the first 20 one a line and ends with "... and 1
    more"; a machine with none says the invariants hold over every granule, their number written
    with its thousands grouped ("16,384"), as the report's other counts are."""
    table = machine.granule_table(cpu_owner(0))
    for idx in range(21):
        table.lock(idx)
    try:
        report = invariants(machine)
        lines = str(report).splitlines()
    finally:
        for idx in range(21):
            table.unlock(idx)
    assert not report.ok
    assert lines[0] == "21 invariant violations:"
    assert lines[1] == f"[lock-free] granule {machine.dram_base:#x}: lock held by CPU 0"
    assert len(lines) == 22 and lines[-1] == "... and 1 more"
    # Thousands grouped, as every other count of the run report and `rmm-mp check` is.
    assert machine.granule_count >= 1000
    assert str(invariants(machine)) == f"invariants hold over {machine.granule_count:,} granules"


def test_a_page_mapping_outside_dram_is_a_violation(machine: Machine) -> None:
    """A protected ASSIGNED page whose PA is no DRAM: one data-mapping violation (and the
    table's refcount, which does not count the entry)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    l3 = t.rtts(realm, 0, 3)[-1]
    mmio = machine.mmio_regions[0][0]
    s2tt.write(machine.memory, _idx(machine, l3), 0, s2tt.assigned(mmio, 3, s2tt.RIPAS_RAM))
    assert _rules(machine) == [("data-mapping", l3), ("rtt-refcount", l3)]
    assert f"IPA 0x0 maps {mmio:#x}, not DRAM" in _details(machine)
