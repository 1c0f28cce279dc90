"""The invariant checker (rmm_mp/check) on states too corrupt to walk: it reports, never raises.

`invariants()` promises to return a report whatever the machine holds; `rmm-mp check` and the
stress tool rely on it (a raise was a traceback instead of a finding). Each case corrupts one
thing of a small valid machine, the way a bug in the RMM could, and expects a violation naming
the granule and the rule.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import pytest

from rmi_helpers import Rmi
from rmm_mp import Machine
from rmm_mp.check import invariants
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.rec_desc import OFF_NUM_AUX, Rec

GRANULE = 4096
RD_LEVEL_START, RD_NUM_START = 0x10, 0x18
"""Offsets in the RD of rtt_level_start and rtt_num_start (rmm/realm_desc.py)."""


def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // GRANULE


def _violations(m: Machine) -> list[tuple[str, int, str]]:
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


@pytest.mark.parametrize("offset, value, shown", [
    (RD_LEVEL_START, 7, "start level 7"),           # a negative shift count before
    (RD_NUM_START, 1 << 20, "1048576 root RTTs"),    # an IndexError before
])
def test_rd_fields_that_cannot_describe_tables_are_a_violation(machine: Machine, offset: int, value: int,
                                                               shown: str) -> None:
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
    found = _violations(machine)
    assert any(rule == "rtt-tree" and pa == root and "entry 100 lies past the IPA space" in detail
               for rule, pa, detail in found), found


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
