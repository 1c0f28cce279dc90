"""realm_call.lock_realm_page on a real machine, every kind of entry at every level: the result
s2tt.decode gives the entry, and the lock words after the call (the walk releases each parent
by its index, so a wrong index would leave a table held or free another one).

For each realm shape (start level 0, 1, and 2 with concatenated roots, the IPA in the second
root) the RTTs down to level 3 are made, then the entry on the IPA's path at each level is
overwritten in turn (invalid with each HIPAS/RIPAS, a valid protected page or block, ASSIGNED_NS,
the reserved type bits), the walk run, and the entry put back. A RAM page comes back with exactly
its last-level table locked by this CPU, anything else with nothing locked; once released, no
lock is held and the machine's invariants hold. An invalid entry is never RAM, whatever its bits.

A table entry naming a granule that is not an RTT is an RMM bug (lock_known raises): the walk
releases the table it holds before the error propagates, in lock_realm_page and s2tt.walk.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from rmi_helpers import Rmi
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.check import invariants
from rmm_mp.rmm import realm_call, s2tt
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_desc import Rd
from rmm_mp.rmm.s2tt import Kind

GRANULE = 4096


@pytest.fixture
def machine() -> Iterator[Machine]:
    with Machine.create("host", cpus=1) as m:
        yield m


def entries(level: int, pa: int) -> dict[str, int]:
    """Every kind of entry the walk can stop at, at ``level``, with output address ``pa``."""
    return {
        "invalid-0": 0,
        "unassigned-empty": s2tt.UNASSIGNED_EMPTY,
        "unassigned-ram": s2tt.UNASSIGNED_RAM,
        "unassigned-destroyed": s2tt.UNASSIGNED_DESTROYED,
        "unassigned-ns": s2tt.UNASSIGNED_NS,
        "assigned-empty": s2tt.assigned(pa, level, s2tt.RIPAS_EMPTY),
        "assigned-destroyed": s2tt.assigned(pa, level, s2tt.RIPAS_DESTROYED),
        "assigned-invalid-ram": pa | s2tt.HIPAS_ASSIGNED | (s2tt.RIPAS_RAM << s2tt.RIPAS_SHIFT),
        "assigned-ram": s2tt.assigned(pa, level, s2tt.RIPAS_RAM),
        "assigned-ns": s2tt.assigned_ns(pa, level),
        "type-01": pa | s2tt.PROTECTED_ATTRS | 0x1,     # a block below level 3, reserved at 3
        "type-10": pa | s2tt.PROTECTED_ATTRS | 0x2,
        "type-01-ns": pa | s2tt.NS | 0x1,
    }


def expected(desc: int, level: int, ipa: int) -> tuple[str, int]:
    """(kind, pa) the walk's contract gives the entry: RAM for a valid protected entry only (a
    block at level 1 or 2, a page at level 3: spec A5.3.1, TTD.VALID is 1; TF-RMM's
    s2tte_is_assigned_ram), else as s2tt.decode classifies it."""
    kind, ripas = s2tt.decode(desc, level)
    valid_ram = not desc & s2tt.NS and desc & s2tt.DESC_TYPE_MASK == (s2tt.DESC_PAGE if level == s2tt.PAGE_LEVEL
                                                                      else s2tt.DESC_BLOCK if level else -1)
    if valid_ram:
        assert (kind, ripas) == (Kind.ASSIGNED, s2tt.RIPAS_RAM)
        size = s2tt.block_size(level)
        return realm_call.RAM, (desc & s2tt.OA_MASK & ~(size - 1)) + (ipa & (size - 1) & ~0xFFF)
    if ripas == s2tt.RIPAS_EMPTY and kind in (Kind.ASSIGNED, Kind.UNASSIGNED):
        return realm_call.EMPTY, 0
    return realm_call.FAULT, 0


SHAPES = [(48, None, 0x12_3456_7000 + 0x123), (40, None, 0x45_6789_A000 + 0x8), (32, 2, (1 << 30) + 0x1234_5678)]


@pytest.mark.parametrize("s2sz,start,ipa", SHAPES, ids=["sl0", "sl1", "sl2-concatenated"])
def test_every_entry_kind_at_every_level_leaves_the_right_locks(machine: Machine, s2sz: int, start: "int | None",
                                                                 ipa: int) -> None:
    t = Rmi(machine)
    realm = t.realm(s2sz=s2sz, start_level=start)
    t.rtts(realm, ipa, 3)
    rmm = machine.cpu(0).rmm
    granules = rmm.granules
    base = machine.dram_base
    rd = Rd(machine.memory, (realm.rd - base) // GRANULE)
    ctx = rd.params().s2ctx()
    call = realm_call.RealmCall(rmm, None, rd, realm.rd, None, ctx)  # type: ignore[arg-type]
    # The table on ipa's path at each level, and ipa's index in it.
    path: dict[int, tuple[int, int]] = {}
    for level in range(realm.start_level, s2tt.PAGE_LEVEL + 1):
        if level == realm.start_level:
            sl_index = (ipa & ((1 << s2sz) - 1)) >> s2tt.level_shift(level)
            table = realm.roots[sl_index >> s2tt.STRIDE]
            if len(realm.roots) > 1:
                assert table != realm.roots[0], "the IPA is meant to be past the first root"
        else:
            table = realm.rtts[(ipa & ~(s2tt.block_size(level - 1) - 1), level)]
        path[level] = ((table - base) >> 12, s2tt.entry_index(ipa, level))
    assert not granules.held_by(granules.owner)
    for level, (table_idx, index) in path.items():
        kept = s2tt.read(machine.memory, table_idx, index)
        pa = (base + (64 << 20)) & ~(s2tt.block_size(level) - 1)    # any aligned OA: nothing is read there
        for name, desc in entries(level, pa).items():
            s2tt.write(machine.memory, table_idx, index, desc)
            try:
                page = realm_call.lock_realm_page(call, ipa)
                held = granules.held_by(granules.owner)
                want_kind, want_pa = expected(desc, level, ipa)
                what = f"level {level} {name} {desc:#x}"
                assert (page.kind, page.level, page.pa) == (want_kind, level, want_pa), what
                if want_kind == realm_call.RAM:
                    assert page.llt is not None and page.llt.idx == table_idx, what
                    assert held == [table_idx], what
                    page.release()
                else:
                    assert page.llt is None and held == [], (what, held)
                assert not granules.held_by(granules.owner), what
            finally:
                s2tt.write(machine.memory, table_idx, index, kept)
    # Every level walked through again, untouched: an unmapped page (UNASSIGNED, RIPAS EMPTY).
    page = realm_call.lock_realm_page(call, ipa)
    assert (page.kind, page.level) == (realm_call.EMPTY, 3) and not granules.held_by(granules.owner)
    assert t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, ipa & ~0xFFF, (ipa & ~0xFFF) + GRANULE)[0] == 0
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("walker", ["lock_realm_page", "s2tt.walk"])
def test_a_table_entry_to_a_granule_that_is_not_an_rtt_leaves_nothing_locked(machine: Machine, level: int,
                                                                               walker: str) -> None:
    """The level-``level`` table's entry on the IPA's path made to point at the RD (a granule in
    another state): the walk's lock_known raises RmmInternalError, and no lock is left held,
    the parent table's included."""
    t = Rmi(machine)
    ipa = 0x45_6789_A000
    realm = t.realm(s2sz=40)
    t.rtts(realm, ipa, 3)
    granules = machine.cpu(0).rmm.granules
    base = machine.dram_base
    rd = Rd(machine.memory, (realm.rd - base) // GRANULE)
    table = realm.roots[0] if level == realm.start_level else realm.rtts[(ipa & ~(s2tt.block_size(level - 1) - 1),
                                                                          level)]
    table_idx, index = (table - base) >> 12, s2tt.entry_index(ipa, level)
    kept = s2tt.read(machine.memory, table_idx, index)
    s2tt.write(machine.memory, table_idx, index, s2tt.table(realm.rd))
    try:
        with pytest.raises(RmmInternalError):
            _walk(walker, machine, rd, realm.rd, ipa)
        assert not granules.held_by(granules.owner)
    finally:
        s2tt.write(machine.memory, table_idx, index, kept)


def _walk(walker: str, machine: Machine, rd: Rd, rd_pa: int, ipa: int) -> None:
    """Walk to ``ipa`` the way ``walker`` names: the RSI path's lock_realm_page, or s2tt.walk from
    root 0 locked as the RMI handlers do."""
    rmm = machine.cpu(0).rmm
    ctx = rd.params().s2ctx()
    if walker == "lock_realm_page":
        call = realm_call.RealmCall(rmm, None, rd, rd_pa, None, ctx)  # type: ignore[arg-type]
        realm_call.lock_realm_page(call, ipa)
    else:
        granules = rmm.granules
        root0 = granules.lock_known((ctx.rtt_base - machine.dram_base) >> 12, GranuleState.RTT, s2tt.root_hint(ctx))
        s2tt.walk(granules, machine.memory, ctx, root0, ipa, s2tt.PAGE_LEVEL)


@pytest.mark.parametrize("walker", ["lock_realm_page", "s2tt.walk"])
def test_a_concatenated_root_that_is_not_an_rtt_leaves_root_0_unlocked(machine: Machine, walker: str) -> None:
    """The root covering the IPA is the second of two concatenated roots, and its granule is
    made DELEGATED: the walk's lock_known of that root (after root 0's) raises RmmInternalError,
    and root 0 is released too."""
    t = Rmi(machine)
    ipa = (1 << 30) + 0x1234_5000       # IPA width 32, start level 2: root 1
    realm = t.realm(s2sz=32, start_level=2)
    granules = machine.cpu(0).rmm.granules
    base = machine.dram_base
    rd = Rd(machine.memory, (realm.rd - base) // GRANULE)
    assert rd.params().s2ctx().root_slot(ipa)[0] == 1
    root1 = (realm.roots[1] - base) >> 12

    def set_state(state: GranuleState) -> None:
        granules.lock(root1)
        granules.set_state(root1, int(state))
        granules.unlock(root1)

    set_state(GranuleState.DELEGATED)
    try:
        with pytest.raises(RmmInternalError):
            _walk(walker, machine, rd, realm.rd, ipa)
        assert not granules.held_by(granules.owner)
    finally:
        set_state(GranuleState.RTT)
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("s2sz,start,ipa", SHAPES, ids=["sl0", "sl1", "sl2-concatenated"])
def test_the_two_walks_agree_on_every_entry_kind_at_every_level(machine: Machine, s2sz: int, start: "int | None",
                                                                 ipa: int) -> None:
    """For every entry kind at every level of ipa's path, the RMM's locked walk (lock_realm_page)
    and the realm's translation (stage2.Stage2Bus.translate) agree: RAM at the same PA, EMPTY
    for both, or a fault (UNASSIGNED or DESTROYED for the realm) at the same level."""
    from rmm_mp.rmm import stage2
    t = Rmi(machine)
    realm = t.realm(s2sz=s2sz, start_level=start)
    t.rtts(realm, ipa, 3)
    rmm = machine.cpu(0).rmm
    base = machine.dram_base
    rd = Rd(machine.memory, (realm.rd - base) // GRANULE)
    ctx = rd.params().s2ctx()
    call = realm_call.RealmCall(rmm, None, rd, realm.rd, None, ctx)  # type: ignore[arg-type]
    bus = stage2.Stage2Bus(rmm, ctx, rmm.tlb)
    for level in range(realm.start_level, s2tt.PAGE_LEVEL + 1):
        if level == realm.start_level:
            table = realm.roots[((ipa & ((1 << s2sz) - 1)) >> s2tt.level_shift(level)) >> s2tt.STRIDE]
        else:
            table = realm.rtts[(ipa & ~(s2tt.block_size(level - 1) - 1), level)]
        table_idx, index = (table - base) >> 12, s2tt.entry_index(ipa, level)
        kept = s2tt.read(machine.memory, table_idx, index)
        pa = (base + (64 << 20)) & ~(s2tt.block_size(level) - 1)
        for name, desc in entries(level, pa).items():
            s2tt.write(machine.memory, table_idx, index, desc)
            try:
                page = realm_call.lock_realm_page(call, ipa)
                page.release()
                try:
                    realm_sees: tuple[str, int] = ("ram", bus.translate(ipa & ~0xFFF, False, False) + base)
                except stage2.WalkFault as fault:
                    realm_sees = (fault.reason, fault.level)
                want = {realm_call.RAM: [("ram", page.pa)], realm_call.EMPTY: [(stage2.EMPTY, level)],
                        realm_call.FAULT: [(stage2.UNASSIGNED, level), (stage2.DESTROYED, level)]}[page.kind]
                assert page.level == level and realm_sees in want, (level, name, hex(desc), page.kind, realm_sees)
            finally:
                s2tt.write(machine.memory, table_idx, index, kept)
