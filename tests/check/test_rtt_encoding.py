"""The checker's rtt-encoding rule: an RTT entry RMM never writes is a violation, not read as a state.

Only the RMM writes RTT entries, and only the encodings s2tt's docstring lists; s2tt.decode gives
every 64-bit value some meaning (a descriptor of type 0b10 reads as ASSIGNED RAM, an invalid entry
with HIPAS ASSIGNED and RIPAS RAM reads as RAM the hardware would not translate through). Each
case writes one such entry through the machine's memory, as a bug or a stray write would, and
expects exactly one rtt-encoding violation naming the table, the entry, the raw value and what
RMM writes instead. The property tests check s2tt.canonical, which the rule rests on, over every
encoding RMM writes and over arbitrary 64-bit values, and the checker itself over arbitrary values
written into a level-2 and a level-3 entry (decode refuses none of them: see its docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings, strategies as st

from rmi_helpers import F, Rmi
from rmm_mp import Machine
from rmm_mp.check import invariants
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.s2tt import Kind

GRANULE = 4096
SUCCESS = 0
IPA = 0x10000
"""A Protected IPA (realms here have s2sz 40)."""


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=1) as m:
        yield m


def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // GRANULE


# (what to write, given the entry there and the NS granule; the expected text)
Corrupt = Callable[[int, int], int]
_PROTECTED: list[tuple[str, bool, Corrupt, str]] = [
    # name, whether the entry holds DATA first, the corrupt value, the expected part of the detail
    ("type-0b10-ram", True, lambda e, ns: (e & ~3) | 2, "the ASSIGNED RIPAS RAM entry RMM writes"),
    ("block-at-level-3", True, lambda e, ns: (e & ~3) | 1, "the ASSIGNED RIPAS RAM entry RMM writes"),
    ("stray-xn-on-ram", True, lambda e, ns: e | s2tt.XN, "the ASSIGNED RIPAS RAM entry RMM writes"),
    ("invalid-assigned-ram", True, lambda e, ns: (e & s2tt.OA_MASK) | s2tt.HIPAS_ASSIGNED | s2tt.UNASSIGNED_RAM,
     "the ASSIGNED RIPAS RAM entry RMM writes"),
    ("ns-bit-on-assigned-empty", True,
     lambda e, ns: s2tt.assigned(e & s2tt.OA_MASK, 3, s2tt.RIPAS_EMPTY) | s2tt.NS,
     "the ASSIGNED RIPAS EMPTY entry RMM writes"),
    ("hipas-2", False, lambda e, ns: 2 << s2tt.HIPAS_SHIFT, "the UNASSIGNED RIPAS EMPTY entry RMM writes"),
    ("ripas-3", False, lambda e, ns: 3 << s2tt.RIPAS_SHIFT, "RIPAS 3 is none"),
    ("oa-bits-on-unassigned", False, lambda e, ns: ns | s2tt.UNASSIGNED_RAM, "the UNASSIGNED RIPAS RAM entry"),
]


@pytest.mark.parametrize("data, corrupt, shown", [c[1:] for c in _PROTECTED], ids=[c[0] for c in _PROTECTED])
def test_a_protected_entry_rmm_never_writes_is_a_violation(machine: Machine, data: bool, corrupt: Corrupt,
                                                          shown: str) -> None:
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    l3 = t.rtts(realm, IPA, 3)[-1]
    if data:
        assert t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, IPA, IPA + GRANULE)[0] == SUCCESS
        assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, t.delegate(), IPA)[0] == SUCCESS
    index = s2tt.entry_index(IPA, 3)
    entry = s2tt.read(machine.memory, _idx(machine, l3), index)
    assert invariants(machine).ok
    value = corrupt(entry, t.ns_granule())
    s2tt.write(machine.memory, _idx(machine, l3), index, value)
    found = [(v.rule, v.pa, v.detail) for v in invariants(machine).violations]
    assert [(rule, pa) for rule, pa, _ in found] == [("rtt-encoding", l3)], found
    detail = found[0][2]
    assert f"entry {index} of a level-3 RTT (IPA {IPA:#x}) holds {value:#x}" in detail, detail
    assert shown in detail, detail


_UNPROTECTED: list[tuple[str, int, Corrupt, str]] = [
    ("type-0b10-ns", 3, lambda ns, _: (s2tt.assigned_ns(ns, 3) & ~3) | 2, "the ASSIGNED_NS entry RMM writes"),
    ("ns-block-at-level-3", 3, lambda ns, _: (s2tt.assigned_ns(ns, 3) & ~3) | 1, "the ASSIGNED_NS entry RMM writes"),
    ("ns-without-af", 3, lambda ns, _: s2tt.assigned_ns(ns, 3) & ~s2tt.AF, "the ASSIGNED_NS entry RMM writes"),
    ("ns-reserved-memattr", 3, lambda ns, _: s2tt.assigned_ns(ns | s2tt.MEMATTR_FWB_RESERVED, 3),
     "reserved MemAttr 0b100"),
    ("unassigned-ns-with-ripas", 2, lambda ns, _: s2tt.UNASSIGNED_NS | s2tt.UNASSIGNED_RAM,
     "expected 0x80000000000000, the UNASSIGNED_NS entry"),
    ("table-with-high-bits", 0, lambda ns, table: table | (1 << 52), "the TABLE entry RMM writes"),
]


@pytest.mark.parametrize("level, corrupt, shown", [c[1:] for c in _UNPROTECTED], ids=[c[0] for c in _UNPROTECTED])
def test_an_unprotected_entry_rmm_never_writes_is_a_violation(machine: Machine, level: int, corrupt: Corrupt,
                                                             shown: str) -> None:
    """At an Unprotected IPA of a start-level-0 realm (level 0: the root's TABLE entry to it)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=48)
    ipa = (1 << 47) + IPA
    made = t.rtts(realm, ipa, max(level, 1))     # the entry at ``level`` is no TABLE (but the root's)
    table = made[-1] if level else realm.roots[0]
    index = s2tt.entry_index(ipa, level)
    entry = s2tt.read(machine.memory, _idx(machine, table), index)
    assert invariants(machine).ok
    value = corrupt(t.ns_granule(), entry)
    s2tt.write(machine.memory, _idx(machine, table), index, value)
    found = [(v.rule, v.pa, v.detail) for v in invariants(machine).violations]
    assert [(rule, pa) for rule, pa, _ in found] == [("rtt-encoding", table)], found
    detail = found[0][2]
    assert f"entry {index} of a level-{level} RTT (IPA {ipa & ~(s2tt.block_size(level) - 1):#x}) holds {value:#x}" \
        in detail, detail
    assert shown in detail, detail


def test_a_table_of_entries_rmm_never_writes_is_one_violation(machine: Machine) -> None:
    """A table overwritten whole (a stray copy into an RTT granule) is one violation naming its first
    entry and the count, as rtt-entry reports one per table: 512 of them filled a stress run's
    share of a check's violations (its first 8) with one table and hid every other rule's."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    l3 = t.rtts(realm, IPA, 3)[-1]
    assert invariants(machine).ok
    for i in range(3, s2tt.ENTRIES):
        s2tt.write(machine.memory, _idx(machine, l3), i, 2 << s2tt.HIPAS_SHIFT)
    found = [(v.rule, v.pa, v.detail) for v in invariants(machine).violations]
    assert [(rule, pa) for rule, pa, _ in found] == [("rtt-encoding", l3)], found[:3]
    first = (IPA & ~(s2tt.block_size(2) - 1)) + 3 * GRANULE
    assert found[0][2].startswith(f"entry 3 of a level-3 RTT (IPA {first:#x}) holds {2 << s2tt.HIPAS_SHIFT:#x}, ")
    assert found[0][2].endswith(f" ({s2tt.ENTRIES - 3} such entries)"), found[0][2]


def test_the_entries_real_commands_leave_are_no_violation(machine: Machine) -> None:
    """No false alarm on what the handlers write: ASSIGNED_NS pages with every MemAttr and S2AP the
    host may give, NS blocks folded to level 2 and level 1 and unfolded, RAM pages folded into a
    level-2 block and unfolded, DATA_DESTROY's DESTROYED, DATA_CREATE_UNKNOWN's ASSIGNED DESTROYED,
    RTT_DESTROY's DESTROYED and UNASSIGNED_NS, an UNASSIGNED fold."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    smc, rd = t.smc, realm.rd
    ns_ipa, l2, l1 = 1 << 39, s2tt.block_size(2), s2tt.block_size(1)
    t.rtts(realm, ns_ipa, 3)
    attrs = [(memattr << 2) | (s2ap << 6) for memattr in range(8) if memattr != 4 for s2ap in range(4)]
    for i, attr in enumerate(attrs):
        assert smc(F.RMI_RTT_MAP_UNPROTECTED, rd, ns_ipa + i * GRANULE, 3, t.ns_granule() | attr)[0] == SUCCESS
    t.rtts(realm, ns_ipa + l2, 3)
    for i in range(s2tt.ENTRIES):
        assert smc(F.RMI_RTT_MAP_UNPROTECTED, rd, ns_ipa + l2 + i * GRANULE, 3, (1 << 40) + i * GRANULE | 0x54)[0] \
            == SUCCESS
    assert smc(F.RMI_RTT_FOLD, rd, ns_ipa + l2, 3)[0] == SUCCESS
    t.rtts(realm, ns_ipa + l1, 2)
    for i in range(s2tt.ENTRIES):
        assert smc(F.RMI_RTT_MAP_UNPROTECTED, rd, ns_ipa + l1 + i * l2, 2, (1 << 40) + i * l2 | 0xdc)[0] == SUCCESS
    assert smc(F.RMI_RTT_FOLD, rd, ns_ipa + l1, 2)[0] == SUCCESS
    assert smc(F.RMI_RTT_CREATE, rd, t.delegate(), ns_ipa + l1, 2)[0] == SUCCESS
    assert invariants(machine).ok
    ram = 2 * l2
    t.rtts(realm, ram, 3)
    first = t.ns_granules(s2tt.ENTRIES, align=l2)
    assert smc(F.RMI_RTT_INIT_RIPAS, rd, ram, ram + l2)[0] == SUCCESS
    for i in range(s2tt.ENTRIES):
        assert smc(F.RMI_DATA_CREATE_UNKNOWN, rd, t.delegate(first + i * GRANULE), ram + i * GRANULE)[0] == SUCCESS
    assert smc(F.RMI_RTT_FOLD, rd, ram, 3)[0] == SUCCESS
    assert invariants(machine).ok
    assert smc(F.RMI_RTT_CREATE, rd, t.delegate(), ram, 3)[0] == SUCCESS
    assert smc(F.RMI_REALM_ACTIVATE, rd)[0] == SUCCESS
    assert smc(F.RMI_DATA_DESTROY, rd, ram)[0] == SUCCESS
    assert invariants(machine).ok
    assert smc(F.RMI_DATA_CREATE_UNKNOWN, rd, t.delegate(), ram)[0] == SUCCESS
    _, level, state, _, ripas = t.read_entry(realm, ram)
    assert (level, state, ripas) == (3, 1, s2tt.RIPAS_DESTROYED)     # ASSIGNED DESTROYED
    for ipa in (8 * l2, ns_ipa + 8 * l2):
        t.rtts(realm, ipa, 3)
        assert smc(F.RMI_RTT_DESTROY, rd, ipa, 3)[0] == SUCCESS
    t.rtts(realm, 9 * l2, 3)
    assert smc(F.RMI_RTT_FOLD, rd, 9 * l2, 3)[0] == SUCCESS
    assert invariants(machine).ok


def test_an_entry_of_a_concatenated_root_names_its_root_and_ipa(machine: Machine) -> None:
    """A level-1 start with 4 concatenated roots: entry 3 of root 2 maps IPA 2 * 512 GiB + 3 GiB."""
    t = Rmi(machine)
    realm = t.realm(s2sz=41, start_level=1)
    assert len(realm.roots) == 4
    value = s2tt.UNASSIGNED_NS | 2 << s2tt.HIPAS_SHIFT      # root 2 lies in the Unprotected half
    s2tt.write(machine.memory, _idx(machine, realm.roots[2]), 3, value)
    found = [(v.rule, v.pa, v.detail) for v in invariants(machine).violations]
    assert [(rule, pa) for rule, pa, _ in found] == [("rtt-encoding", realm.roots[2])], found
    ipa = 2 * s2tt.ENTRIES * s2tt.block_size(1) + 3 * s2tt.block_size(1)
    assert found[0][2].startswith(f"entry 3 of a level-1 RTT (IPA {ipa:#x}) holds {value:#x}, "), found[0][2]


# -- s2tt.canonical, the rule's ground ----------------------------------------------------------------

_PA = st.integers(0, (1 << s2tt.MAX_PA_BITS) - 1).map(lambda pa: pa & s2tt.OA_MASK)
_RIPAS = st.sampled_from((s2tt.RIPAS_EMPTY, s2tt.RIPAS_RAM, s2tt.RIPAS_DESTROYED))
_HOST_ATTRS = st.integers(0, s2tt.NS_HOST_ATTRS).map(lambda a: a & s2tt.NS_HOST_ATTRS).filter(
    lambda a: a & s2tt.MEMATTR_MASK != s2tt.MEMATTR_FWB_RESERVED)


@st.composite
def _written(draw: st.DrawFn) -> tuple[int, int, Kind, int]:
    """(entry, level, kind, RIPAS) of an entry some RMM command writes, as it writes it."""
    level = draw(st.integers(0, s2tt.PAGE_LEVEL))
    choices = ["unassigned", "unassigned_ns"] + (["table"] if level < s2tt.PAGE_LEVEL else []) \
        + (["assigned", "assigned_ns"] if level >= s2tt.MIN_BLOCK_LEVEL else [])
    what = draw(st.sampled_from(choices))
    pa = draw(_PA) & ~(s2tt.block_size(level) - 1)
    if what == "unassigned":
        ripas = draw(_RIPAS)
        return s2tt.unassigned(ripas), level, Kind.UNASSIGNED, ripas
    if what == "unassigned_ns":
        return s2tt.UNASSIGNED_NS, level, Kind.UNASSIGNED_NS, 0
    if what == "table":
        return s2tt.table(draw(_PA)), level, Kind.TABLE, 0
    if what == "assigned":
        ripas = draw(_RIPAS)
        return s2tt.assigned(pa, level, ripas), level, Kind.ASSIGNED, ripas
    return s2tt.assigned_ns(pa | draw(_HOST_ATTRS), level), level, Kind.ASSIGNED_NS, 0


@settings(max_examples=400, deadline=None)
@given(_written())
def test_every_encoding_rmm_writes_decodes_back_and_is_canonical(written: tuple[int, int, Kind, int]) -> None:
    desc, level, kind, ripas = written
    assert s2tt.decode(desc, level) == (kind, ripas)
    assert s2tt.canonical(desc, level) == desc
    if kind in (Kind.ASSIGNED, Kind.ASSIGNED_NS, Kind.TABLE):
        assert s2tt.output_address(desc, level) == desc & s2tt.OA_MASK & ~(
            (s2tt.block_size(level) if kind != Kind.TABLE else GRANULE) - 1)


def _all_written(level: int, pa: int, attrs: int) -> set[int]:
    """Every entry RMM writes at ``level`` with output address ``pa`` (aligned to the level's
    block for blocks) and host attributes ``attrs``."""
    out = {s2tt.unassigned(r) for r in range(3)} | {s2tt.UNASSIGNED_NS}
    if level < s2tt.PAGE_LEVEL:
        out.add(s2tt.table(pa))
    if level >= s2tt.MIN_BLOCK_LEVEL:
        block = pa & ~(s2tt.block_size(level) - 1)
        out |= {s2tt.assigned(block, level, r) for r in range(3)} | {s2tt.assigned_ns(block | attrs, level)}
    return out


_NEAR = st.builds(lambda oa, low, high: oa | low | high, _PA | st.just(0), st.integers(0, 0xFFF),
                  st.sampled_from((0, s2tt.NS, s2tt.XN, s2tt.NS | s2tt.XN, 1 << 52, 1 << 63)))
"""Values near the written ones: an OA (or none), any low attribute and software bits, some high bits."""


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, (1 << 64) - 1) | _NEAR, st.integers(0, s2tt.PAGE_LEVEL))
def test_every_other_value_is_not_canonical(desc: int, level: int) -> None:
    """Any 64-bit value is canonical exactly when it is an entry RMM writes at that level: the
    checker flags every other one (rtt-encoding, or rtt-entry for a block in a level-0 RTT)."""
    written = _all_written(level, desc & s2tt.OA_MASK, desc & s2tt.NS_HOST_ATTRS)
    valid_attrs = desc & s2tt.MEMATTR_MASK != s2tt.MEMATTR_FWB_RESERVED
    is_written = desc in written and (valid_attrs or not desc & s2tt.NS or not desc & 3)
    assert (s2tt.canonical(desc, level) == desc) == is_written, hex(desc)


@settings(max_examples=1000, deadline=None)
@given(_written(), st.integers(0, 63))
def test_a_written_entry_with_one_bit_flipped_is_not_canonical(written: tuple[int, int, Kind, int],
                                                               bit: int) -> None:
    """One flipped bit: still an entry RMM writes (another PA, RIPAS, attribute) or flagged."""
    desc, level, _, _ = written
    flipped = desc ^ (1 << bit)
    others = _all_written(level, flipped & s2tt.OA_MASK, flipped & s2tt.NS_HOST_ATTRS)
    if flipped & s2tt.MEMATTR_MASK == s2tt.MEMATTR_FWB_RESERVED and flipped & s2tt.NS and flipped & 3:
        others = set()
    assert (s2tt.canonical(flipped, level) == flipped) == (flipped in others), hex(flipped)


def test_the_checker_flags_exactly_the_values_canonical_refuses() -> None:
    """Any value written into a level-2 or level-3 entry: an rtt-encoding violation exactly when
    it is no entry the RMM writes (one machine, the entry put back after each example)."""
    with Machine.create("host", cpus=1) as m:
        t = Rmi(m)
        realm = t.realm(s2sz=40)
        made = t.rtts(realm, IPA, 3)
        l2, l3 = made[-2], made[-1]
        # Level 2: the entry after the one naming the L3 table (UNASSIGNED, like the L3 entry).
        places = [(l2, s2tt.entry_index(IPA, 2) + 1, 2), (l3, s2tt.entry_index(IPA, 3), 3)]
        assert invariants(m).ok

        @settings(max_examples=150, deadline=None)
        @given(st.integers(0, (1 << 64) - 1) | _NEAR, st.sampled_from(places))
        def check(desc: int, place: tuple[int, int, int]) -> None:
            table, index, level = place
            before = s2tt.read(m.memory, _idx(m, table), index)
            s2tt.write(m.memory, _idx(m, table), index, desc)
            try:
                flagged = [v for v in invariants(m).violations if v.rule == "rtt-encoding"]
            finally:
                s2tt.write(m.memory, _idx(m, table), index, before)
            written = s2tt.canonical(desc, level) == desc
            assert len(flagged) == (0 if written else 1), (hex(desc), level, [str(v) for v in flagged])
            if flagged:
                assert flagged[0].pa == table and f"holds {desc:#x}" in flagged[0].detail

        check()
