"""RMI_RTT_CREATE, RMI_RTT_DESTROY, RMI_RTT_FOLD, RMI_RTT_READ_ENTRY, RMI_RTT_MAP_UNPROTECTED and
RMI_RTT_UNMAP_UNPROTECTED (DEN0137 1.0-rel0 B4.3.15, B4.3.16, B4.3.17, B4.3.20, B4.3.19, B4.3.22).

Per command: one test per failure condition in the order of the spec's failure-condition table
(each names the cca-rmm-acs check it mirrors, test/command/cmd_rtt_*/rmi_rtt_*_data.h), asserting
the exact X0 (RMI_ERROR_RTT with the level as index), the outputs the spec and TF-RMM rel0 give on
that failure (RTT_DESTROY's and UNMAP_UNPROTECTED's `top`, rmi.md sections 5 and 6.6; X4 reads 0
unless the command writes it, spec B1.2) and an unchanged footprint; then the success paths with
their post-conditions, read back through RMI_RTT_READ_ENTRY and the granule table.

Entries are made with real commands only: DATA_CREATE_UNKNOWN for ASSIGNED entries (it keeps
the entry's RIPAS), RTT_INIT_RIPAS for RIPAS RAM, DATA_DESTROY and RTT_DESTROY for RIPAS
DESTROYED, RTT_FOLD for ASSIGNED blocks, MAP_UNPROTECTED for NS mappings, REC_CREATE for REC
granules. The one exception is a level-1 RTT of ASSIGNED 1 GiB blocks, written white box
(s2tt.write under the RTT's lock, refcount adjusted) and restored. The invariant checker, which
cross-checks RTT refcounts and DATA references, runs at the end of the success tests.

Not reachable on the host platform: rtt_bound2 (an RTT at or above 2^48; DRAM lies far below, so
such an address already fails rtt_bound; its test runs on rmi_helpers.dram_across_2_48()) and
ASSIGNED level-1 blocks (1 GiB of DATA granules, more than the platform's 64 MiB).
"""

from __future__ import annotations

import os
from unittest import mock

import pytest

from footprint import realm_snapshot, snapshot
from rmi_helpers import GRANULE, Realm, Rmi, dram_across_2_48, start_level_for
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid, RmiStatus, pack_return
from rmm_mp.abi.structs import RMI_REALM_PARAMS
from rmm_mp.check import invariants
from rmm_mp.hw.granule import GranuleTable, host_owner
from rmm_mp.hw.tlb import Tlb
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.s2tt import Kind

F = RmiFid
SUCCESS = pack_return(RmiStatus.RMI_SUCCESS)
INPUT = pack_return(RmiStatus.RMI_ERROR_INPUT)
X4 = 0x4444_5555_6666_7777
MASK64 = (1 << 64) - 1
UNASSIGNED, ASSIGNED, TABLE = 0, 1, 2
EMPTY, RAM, DESTROYED = s2tt.RIPAS_EMPTY, s2tt.RIPAS_RAM, s2tt.RIPAS_DESTROYED
L1, L2, L3 = s2tt.block_size(1), s2tt.block_size(2), s2tt.block_size(3)
U48 = 1 << 47
"""The first unprotected IPA of an s2sz-48 realm."""
NORMAL_RW = 0x18 | 0xC0
"""Host attributes: MemAttr Normal write-back (0b110), S2AP read/write."""


def rtt_err(level: int) -> int:
    return pack_return(RmiStatus.RMI_ERROR_RTT, level)


# -- set-up helpers ----------------------------------------------------------------------------


def _idx(machine: Machine, pa: int) -> int:
    return (pa - machine.dram_base) // GRANULE


def _realm(t: Rmi, s2sz: int = 48, level: int | None = None) -> Realm:
    """A NEW realm with the given geometry (the start level a KVM-like host picks by default)."""
    level = start_level_for(s2sz) if level is None else level
    count = s2tt.num_root_rtts(s2sz, level)
    first = t.ns_granules(count, align=count * GRANULE)
    roots = tuple(t.delegate(first + i * GRANULE) for i in range(count))
    rd = t.delegate()
    vmid = t._vmid
    t._vmid += 1
    params = t.ns_page(bytes(RMI_REALM_PARAMS.pack(s2sz=s2sz, num_bps=1, num_wps=1, vmid=vmid, rtt_base=roots[0],
                                                   rtt_level_start=level, rtt_num_start=count)))
    assert t.smc(F.RMI_REALM_CREATE, rd, params)[0] == SUCCESS
    return Realm(rd, roots, s2sz, level, 0, vmid)


def _pas(realm: Realm, *more: int) -> tuple[int, ...]:
    """The granules whose contents a failing command must leave alone."""
    return (realm.rd, *realm.roots, *realm.rtts.values(), *more)


def _owner(machine: Machine) -> GranuleTable:
    """A granule table view whose locks name this (unbound) test process."""
    return machine.granule_table(host_owner(os.getpid()))


def _wb_write(machine: Machine, rtt: int, descs: dict[int, int], refcount_delta: int = 0) -> None:
    """White box: write entries of the RTT at ``rtt`` under its lock, adjusting its refcount."""
    table = _owner(machine)
    idx = table.find(rtt)
    with table.lock_known(idx, GranuleState.RTT):
        for i, desc in descs.items():
            s2tt.write(machine.memory, idx, i, desc)
        if refcount_delta:
            table.refcount_add(idx, refcount_delta)


def _granules(t: Rmi, count: int, align: int = GRANULE, skip: int = 0) -> int:
    """``count`` contiguous delegated granules starting ``skip`` granules after an
    ``align``-aligned PA; returns the first PA."""
    first = t.ns_granules(count + skip, align=align) + skip * GRANULE
    for i in range(count):
        t.delegate(first + i * GRANULE)
    return first


def _init_ripas(t: Rmi, realm: Realm, base: int, top: int) -> None:
    """RTT_INIT_RIPAS over [base, top), one RTT per call, until done."""
    while base < top:
        regs = t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, base, top)
        assert regs[0] == SUCCESS and regs[1] > base, f"INIT_RIPAS({base:#x}, {top:#x}) -> {regs[0]:#x}"
        base = regs[1]


def _data_unknown(t: Rmi, realm: Realm, ipa: int, data: int) -> None:
    regs = t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, ipa)
    assert regs[0] == SUCCESS, f"DATA_CREATE_UNKNOWN({data:#x}, {ipa:#x}) -> {regs[0]:#x}"


def _destroyed_page(t: Rmi, realm: Realm, ipa: int) -> None:
    """Make the level-3 entry at protected ``ipa`` UNASSIGNED DESTROYED: RIPAS RAM, a DATA page,
    then DATA_DESTROY (which leaves RIPAS DESTROYED and the DATA granule DELEGATED)."""
    t.rtts(realm, ipa, 3)
    _init_ripas(t, realm, ipa, ipa + L3)
    data = t.delegate()
    _data_unknown(t, realm, ipa, data)
    assert t.smc(F.RMI_DATA_DESTROY, realm.rd, ipa)[:2] == (SUCCESS, data)


def _destroyed_table(t: Rmi, realm: Realm, ipa: int, level: int) -> int:
    """A fresh RTT at ``level`` for protected ``ipa`` whose 512 entries are UNASSIGNED DESTROYED:
    the RTT there is destroyed (parent entry DESTROYED) and a new one unfolds it."""
    t.rtts(realm, ipa, level)
    key = (ipa & ~(s2tt.block_size(level - 1) - 1), level)
    assert t.smc(F.RMI_RTT_DESTROY, realm.rd, key[0], level)[:2] == (SUCCESS, realm.rtts.pop(key))
    t.rtts(realm, ipa, level)
    return realm.rtts[key]


def _ripas_table(t: Rmi, realm: Realm, ipa: int, level: int, ripas: int) -> int:
    """The RTT at ``level`` for protected ``ipa`` with all 512 entries UNASSIGNED ``ripas``."""
    if ripas == DESTROYED:
        return _destroyed_table(t, realm, ipa, level)
    t.rtts(realm, ipa, level)
    base = ipa & ~(s2tt.block_size(level - 1) - 1)
    if ripas == RAM:
        _init_ripas(t, realm, base, base + s2tt.block_size(level - 1))
    return realm.rtts[(base, level)]


def _assigned_table(t: Rmi, realm: Realm, ipa: int, ripas: int, skip: int = 0,
                    pas: "list[int] | None" = None) -> tuple[int, int]:
    """A level-3 RTT at the 2 MiB-aligned protected ``ipa`` whose 512 entries are ASSIGNED with
    ``ripas`` (DATA_CREATE_UNKNOWN keeps the RIPAS set beforehand), mapping 512 contiguous DATA
    granules (2 MiB aligned unless ``skip``), or the delegated ``pas`` entry by entry. Returns
    (rtt, first data PA)."""
    rtt = _ripas_table(t, realm, ipa, 3, ripas)
    if pas is None:
        base = _granules(t, s2tt.ENTRIES, align=L2, skip=skip)
        pas = [base + i * GRANULE for i in range(s2tt.ENTRIES)]
    for i, pa in enumerate(pas):
        _data_unknown(t, realm, ipa + i * L3, pa)
    return rtt, pas[0]


def _assigned_page(t: Rmi, realm: Realm, ipa: int, ripas: int) -> int:
    """One ASSIGNED level-3 entry with ``ripas`` at protected ``ipa`` naming a fresh DATA granule
    (the level-3 RTT is created if missing); returns the DATA PA."""
    t.rtts(realm, ipa, 3)
    if ripas == RAM:
        _init_ripas(t, realm, ipa, ipa + L3)
    elif ripas == DESTROYED:
        _destroyed_page(t, realm, ipa)
    data = t.delegate()
    _data_unknown(t, realm, ipa, data)
    return data


def _assigned_block(machine: Machine, t: Rmi, realm: Realm, ipa: int, ripas: int) -> tuple[int, int]:
    """An ASSIGNED level-2 block at ``ipa``: an assigned level-3 RTT folded by RTT_FOLD.
    Returns (block PA, the folded RTT's PA, now DELEGATED)."""
    rtt, base = _assigned_table(t, realm, ipa, ripas)
    assert t.smc(F.RMI_RTT_FOLD, realm.rd, ipa, 3) == (SUCCESS, rtt, 0, 0, 0)
    del realm.rtts[(ipa, 3)]
    return base, rtt


def _map(t: Rmi, realm: Realm, ipa: int, level: int, desc: int) -> None:
    regs = t.smc(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, level, desc)
    assert regs == (SUCCESS, 0, 0, 0, 0), f"MAP({ipa:#x}, {level}, {desc:#x}) -> {regs[0]:#x}"


def _read(t: Rmi, realm: Realm, ipa: int, level: int) -> tuple[int, int, int, int, int]:
    regs = t.smc(F.RMI_RTT_READ_ENTRY, realm.rd, ipa, level, X4)
    # Registers hold plain ints: an enum member leaking out would print and compare differently.
    assert [type(r) for r in regs] == [int] * 5, regs
    return regs


def _table(realm: Realm, ipa: int, level: int) -> int:
    """PA of the RTT at ``level`` covering ``ipa`` (a root at the start level)."""
    if level == realm.start_level:
        return realm.roots[realm.ctx.root_slot(ipa)[0]]
    return realm.rtts[(ipa & ~(s2tt.block_size(level - 1) - 1), level)]


def _refcount(machine: Machine, pa: int) -> int:
    return machine.granule_table(0).refcount(_idx(machine, pa))


def _state(machine: Machine, pa: int) -> int:
    return machine.granule_table(0).state(_idx(machine, pa))


def _fails(machine: Machine, t: Rmi, call: tuple[int, ...], expected: tuple[int, ...], *pas: int) -> None:
    """``call`` (FID and arguments) returns exactly ``expected`` and changes no granule's lock,
    state, refcount or PAS, nor the contents of ``pas``."""
    before = snapshot(machine, *pas)
    regs = t.smc(*call)
    after = snapshot(machine, *pas)
    assert regs == expected, f"{[hex(r) for r in regs]} != {[hex(r) for r in expected]}"
    assert before.diff(after) == []


def _ok(machine: Machine) -> None:
    report = invariants(machine)
    assert report.ok, str(report)


class _States:
    """Granules in each state a bad RD or RTT argument can be in, made by real commands: an NS
    page, a DELEGATED granule, the realm's RD and root, a REC (REC_CREATE) and a DATA granule
    (DATA_CREATE_UNKNOWN at the realm's IPA 0x1000)."""

    def __init__(self, machine: Machine, t: Rmi, realm: Realm) -> None:
        data = t.delegate()
        t.rtts(realm, 0, 3)
        _data_unknown(t, realm, 0x1000, data)
        self.pa = {"NS": t.ns_page(b"host"), "DELEGATED": t.delegate(), "RD": realm.rd, "RTT": realm.roots[0],
                   "REC": t.rec(realm), "DATA": data}
        assert machine.granule_table(0).state(_idx(machine, data)) == GranuleState.DATA


def _bad_pa(machine: Machine, where: str) -> int:
    return machine.mmio_regions[0][0] if where == "mmio" else 1 << machine.pa_bits


# == RMI_RTT_CREATE (B4.3.15) ==================================================================


def test_create_rd_align(machine: Machine) -> None:
    """ACS rd_align (RD_UNALIGNED): RTT_CREATE with rd + 8 -> RMI_ERROR_INPUT (X4 = the level
    argument, echoed), footprint unchanged, the new RTT stays DELEGATED."""
    t = Rmi(machine)
    realm = _realm(t)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd + 8, rtt, 0, 1), (INPUT, 0, 0, 0, 0), *_pas(realm, rtt))


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_create_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound (RD_DEV_MEM, RD_OUTSIDE_OF_PERMITTED_PA) -> RMI_ERROR_INPUT, unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, _bad_pa(machine, where), rtt, 0, 1), (INPUT, 0, 0, 0, 0),
           *_pas(realm, rtt))


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_create_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _DELEGATED, _RTT, _REC, _DATA): rd is not an RD ->
    RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    states = _States(machine, t, realm)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, states.pa[state], rtt, 0, 1), (INPUT, 0, 0, 0, 0), *_pas(realm, rtt))
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, level", [(48, 0, 0), (48, 0, 4), (48, 0, -1), (48, 0, 1 << 32), (40, 1, 1),
                                                (40, 1, 0), (32, 2, 2), (32, 2, 1), (32, 2, -2)])
def test_create_level_bound(machine: Machine, s2sz: int, start: int, level: int) -> None:
    """ACS level_bound (LEVEL_STARTING, LEVEL_OOB): the level is the start level (a root cannot be
    created), above 3, negative, or above the start level's parent (level 0/1 on start levels 1/2)
    -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, 0, level), (INPUT, 0, 0, 0, 0),
           *_pas(realm, rtt))


@pytest.mark.parametrize("ipa, level", [(GRANULE, 3), (1, 3), (L2, 2), (GRANULE, 2), (L1, 1), (L2, 1)])
def test_create_ipa_align(machine: Machine, ipa: int, level: int) -> None:
    """ACS ipa_align (IPA_UNALIGNED): ipa not aligned to the size of a level - 1 entry (level 3
    needs 2 MiB, level 2 1 GiB, level 1 512 GiB) -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 2)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, ipa, level), (INPUT, 0, 0, 0, 0), *_pas(realm, rtt))


@pytest.mark.parametrize("s2sz, start, level, ipa", [(48, 0, 1, 1 << 48), (48, 0, 3, 1 << 48),
                                                     (48, 0, 1, MASK64 & ~(s2tt.block_size(0) - 1)),
                                                     (40, 1, 2, 1 << 40), (32, 2, 3, 1 << 32)])
def test_create_ipa_bound(machine: Machine, s2sz: int, start: int, level: int, ipa: int) -> None:
    """ACS ipa_bound (IPA_OOB): an aligned ipa at or above 2^s2sz -> RMI_ERROR_INPUT, unchanged."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, ipa, level), (INPUT, 0, 0, 0, 0), *_pas(realm, rtt))


def test_create_rtt_align(machine: Machine) -> None:
    """ACS rtt_align (RTT_UNALIGNED): rtt 8 bytes into a delegated granule -> RMI_ERROR_INPUT,
    footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt + 8, 0, 1), (INPUT, 0, 0, 0, 0), *_pas(realm, rtt))


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_create_rtt_bound(machine: Machine, where: str) -> None:
    """ACS rtt_bound (RTT_DEV_MEM, RTT_OUTSIDE_PERMITTED_PA): rtt is MMIO or 2^48 (outside the
    host platform's 48-bit PA space) -> RMI_ERROR_INPUT, unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, _bad_pa(machine, where), 0, 1), (INPUT, 0, 0, 0, 0),
           *_pas(realm))


def test_create_rtt_bound2() -> None:
    """rtt_bound2 (no ACS case: it needs DRAM at or above 2^48): on DRAM across 2^48 without
    LPA2 (rmi_helpers.dram_across_2_48), a DELEGATED rtt at 2^48, every other input valid ->
    RMI_ERROR_INPUT, footprint unchanged; the same call with an rtt below 2^48 succeeds."""
    with Machine.create(dram_across_2_48(), cpus=1, check_platform=False) as m:
        t = Rmi(m)
        realm = _realm(t)
        high = t.delegate(1 << 48)
        _fails(m, t, (F.RMI_RTT_CREATE, realm.rd, high, 0, 1), (INPUT, 0, 0, 0, 0), *_pas(realm, high))
        assert t.smc(F.RMI_RTT_CREATE, realm.rd, t.delegate(), 0, 1)[0] == SUCCESS


@pytest.mark.parametrize("state", ["NS", "RD", "RTT", "REC", "DATA", "same-as-rd"])
def test_create_rtt_state(machine: Machine, state: str) -> None:
    """ACS rtt_state (RTT_STATE_UNDELEGATED, _RD, _REC, _RTT, _DATA): rtt is not DELEGATED (an NS
    page, another realm's RD, this realm's root, a REC or DATA granule), or is the RD itself ->
    RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    other = _realm(t)
    states = _States(machine, t, other)
    rtt = realm.rd if state == "same-as-rd" else states.pa[state]
    if state == "RTT":
        rtt = realm.roots[0]
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, 0, 1), (INPUT, 0, 0, 0, 0), *_pas(realm), *_pas(other))
    _ok(machine)


L0 = s2tt.block_size(0)


@pytest.mark.parametrize("made, ipa, level, index", [(0, 0, 3, 0), (1, 0, 3, 1), (0, 0, 2, 0), (3, L1, 3, 1),
                                                     (3, 5 * L0, 3, 0)])
def test_create_rtt_walk(machine: Machine, made: int, ipa: int, level: int, index: int) -> None:
    """ACS rtt_walk (LEVEL_NO_PARENT_RTTE): the walk to level - 1 stops early at a non-table entry
    -> (RMI_ERROR_RTT, the level reached): level 3 with no level-1 RTT -> index 0; with the level-1
    RTT but no level-2 one -> index 1 (the ACS case); level 2 without level 1 -> 0; RTTs down to
    level 3 at IPA 0 do not help at 1 GiB (index 1) or at 2.5 TiB (index 0). Footprint unchanged
    (the new RTT stays DELEGATED and zero)."""
    t = Rmi(machine)
    realm = _realm(t)
    if made:
        t.rtts(realm, 0, made)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, ipa, level), (rtt_err(index), 0, 0, 0, 0),
           *_pas(realm, rtt))
    assert machine.memory.is_zero(_idx(machine, rtt))


def test_create_rtt_walk_concatenated(machine: Machine) -> None:
    """rtt_walk in root 1 of two (s2sz 40, start level 1): level 3 at 2^39 with no level-2 RTT
    -> (RMI_ERROR_RTT, 1), footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t, 40, 1)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, 1 << 39, 3), (rtt_err(1), 0, 0, 0, 0), *_pas(realm, rtt))


def test_create_rtte_state_concatenated(machine: Machine) -> None:
    """rtte_state in root 3 of four (s2sz 32, start level 2): a second level-3 RTT for the same
    2 MiB -> (RMI_ERROR_RTT, 2), footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t, 32, 2)
    t.rtts(realm, (3 << 30) + L2, 3)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, (3 << 30) + L2, 3), (rtt_err(2), 0, 0, 0, 0),
           *_pas(realm, rtt))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_create_rtte_state(machine: Machine, level: int) -> None:
    """ACS rtte_state (RTTE_STATE_TABLE): the parent entry is already a TABLE -> (RMI_ERROR_RTT,
    level - 1), footprint unchanged (the existing RTT keeps its place, the new one stays
    DELEGATED)."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, level)
    rtt = t.delegate()
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, 0, level), (rtt_err(level - 1), 0, 0, 0, 0),
           *_pas(realm, rtt))


def test_create_check_order(machine: Machine) -> None:
    """Failure ordering (B4.3.15.2.1 [rd_bound, rd_state] < [rtt_walk, rtte_state];
    [level_bound, ipa_bound] < [rtt_walk, rtte_state]): with a walk that would stop early, a bad
    level, an out-of-range ipa, a non-RD rd or a non-DELEGATED rtt still give RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t)
    rtt = t.delegate()
    pas = _pas(realm, rtt)
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, 0, 0), (INPUT, 0, 0, 0, 0), *pas)
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, rtt, 1 << 48, 3), (INPUT, 0, 0, 0, 0), *pas)
    _fails(machine, t, (F.RMI_RTT_CREATE, rtt, realm.rd, 0, 3), (INPUT, 0, 0, 0, 0), *pas)
    _fails(machine, t, (F.RMI_RTT_CREATE, realm.rd, t.ns_page(), 0, 3), (INPUT, 0, 0, 0, 0), *pas)


# -- RMI_RTT_CREATE: success and unfolding (A5.5.7, rmi.md 6.4) ----------------------------------


def _create_ok(machine: Machine, t: Rmi, realm: Realm, rtt: int, ipa: int, level: int) -> None:
    """RTT_CREATE succeeds (X1..X4 = 0) and changes no granule but the new RTT and its parent."""
    parent = _table(realm, ipa, level - 1)
    before = realm_snapshot(machine)
    assert t.smc(F.RMI_RTT_CREATE, realm.rd, rtt, ipa, level) == (SUCCESS, 0, 0, 0, 0)
    assert before.changed(realm_snapshot(machine)) == {rtt, parent}


def _check_child(machine: Machine, t: Rmi, realm: Realm, rtt: int, ipa: int, level: int,
                 expected: "list[tuple[int, int, int]]") -> None:
    """The parent entry is TABLE -> rtt, and every child entry reads back as expected
    ((state, desc, ripas) per index) through RTT_READ_ENTRY at ``level``."""
    assert _read(t, realm, ipa, level - 1) == (SUCCESS, level - 1, TABLE, rtt, 0)
    size = s2tt.block_size(level)
    for i, (state, desc, ripas) in enumerate(expected):
        assert _read(t, realm, ipa + i * size, level) == (SUCCESS, level, state, desc, ripas), i
    assert _state(machine, rtt) == GranuleState.RTT


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("ripas", [EMPTY, RAM, DESTROYED])
def test_create_unfold_unassigned(machine: Machine, level: int, ripas: int) -> None:
    """RTT_CREATE below an UNASSIGNED parent entry with RIPAS EMPTY (the initial state), RAM
    (RTT_INIT_RIPAS of the whole block) or DESTROYED (left by RTT_DESTROY): SUCCESS (X4 =
    level echoed); the parent entry becomes TABLE naming the RTT; all 512 child entries are
    UNASSIGNED with the parent's RIPAS (rtte_c_state, rtte_c_ripas); the RTT is in state RTT with
    refcount 0 and the parent's refcount grows by one."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = 3 * L0 if level == 1 else 0
    t.rtts(realm, ipa, level - 1)
    parent = _table(realm, ipa, level - 1)
    if ripas == RAM:
        _init_ripas(t, realm, ipa, ipa + s2tt.block_size(level - 1))
    elif ripas == DESTROYED:
        first = t.delegate()
        assert t.smc(F.RMI_RTT_CREATE, realm.rd, first, ipa, level)[0] == SUCCESS
        assert t.smc(F.RMI_RTT_DESTROY, realm.rd, ipa, level)[:2] == (SUCCESS, first)
    assert _read(t, realm, ipa, level - 1) == (SUCCESS, level - 1, UNASSIGNED, 0, ripas)
    count = _refcount(machine, parent)
    rtt = t.delegate()
    _create_ok(machine, t, realm, rtt, ipa, level)
    _check_child(machine, t, realm, rtt, ipa, level, [(UNASSIGNED, 0, ripas)] * s2tt.ENTRIES)
    children = s2tt.entries(machine.memory, _idx(machine, rtt))
    assert all(s2tt.decode(d, level) == (Kind.UNASSIGNED, ripas) for d in children)
    assert (_refcount(machine, parent), _refcount(machine, rtt)) == (count + 1, 0)
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, ipa, level", [(48, 0, U48, 1), (48, 0, U48 + 3 * L1, 2),
                                                     (48, 0, U48 + 7 * L2, 3),
                                                     (40, 1, 1 << 39, 2), (32, 2, (3 << 30) + 5 * L2, 3)])
def test_create_unfold_unassigned_ns(machine: Machine, s2sz: int, start: int, ipa: int, level: int) -> None:
    """RTT_CREATE below an UNASSIGNED_NS parent (the unprotected half; also in root 1 of two and
    root 3 of four): all 512 child entries are UNASSIGNED_NS (READ_ENTRY: UNASSIGNED, desc 0,
    RIPAS EMPTY; decoded: UNASSIGNED_NS); parent refcount +1, child refcount 0. The other roots'
    refcounts do not change."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    t.rtts(realm, ipa, level - 1)
    parent = _table(realm, ipa, level - 1)
    counts = {pa: _refcount(machine, pa) for pa in (*realm.roots, parent)}
    rtt = t.delegate()
    _create_ok(machine, t, realm, rtt, ipa, level)
    _check_child(machine, t, realm, rtt, ipa, level, [(UNASSIGNED, 0, EMPTY)] * 4)
    children = s2tt.entries(machine.memory, _idx(machine, rtt))
    assert all(s2tt.decode(d, level) == (Kind.UNASSIGNED_NS, 0) for d in children)
    assert (_refcount(machine, parent), _refcount(machine, rtt)) == (counts[parent] + 1, 0)
    assert all(_refcount(machine, pa) == n for pa, n in counts.items() if pa != parent)
    _ok(machine)


@pytest.mark.parametrize("ripas", [EMPTY, RAM, DESTROYED])
def test_create_unfold_assigned_block(machine: Machine, ripas: int) -> None:
    """RTT_CREATE below an ASSIGNED level-2 block (a level-3 RTT filled by DATA_CREATE_UNKNOWN,
    folded with RTT_FOLD) with RIPAS EMPTY, RAM or DESTROYED: the 512 child entries are ASSIGNED with the
    block's RIPAS and contiguous output addresses from the block's PA (rtte_c_addr); the child
    RTT's refcount is 512 and the parent's does not change (the block's one reference becomes the
    table entry's); the DATA granules stay DATA."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = 4 * L2
    base, _ = _assigned_block(machine, t, realm, ipa, ripas)
    parent = realm.rtts[(0, 2)]
    assert _read(t, realm, ipa, 2) == (SUCCESS, 2, ASSIGNED, base, ripas)
    count = _refcount(machine, parent)
    rtt = t.delegate()
    _create_ok(machine, t, realm, rtt, ipa, 3)
    _check_child(machine, t, realm, rtt, ipa, 3, [(ASSIGNED, base + i * L3, ripas) for i in range(s2tt.ENTRIES)])
    assert (_refcount(machine, parent), _refcount(machine, rtt)) == (count, s2tt.ENTRIES)
    assert all(_state(machine, base + i * L3) == GranuleState.DATA for i in range(s2tt.ENTRIES))
    _ok(machine)


@pytest.mark.parametrize("level, attrs", [(3, NORMAL_RW), (3, 0x4 | 0x40), (2, NORMAL_RW), (2, 0x1C | 0x80)])
def test_create_unfold_assigned_ns_block(machine: Machine, level: int, attrs: int) -> None:
    """RTT_CREATE below an ASSIGNED_NS block (MAP_UNPROTECTED at level - 1: a 2 MiB or 1 GiB NS
    block with host MemAttr/S2AP): the 512 child entries are ASSIGNED_NS with contiguous output
    addresses and the parent's attributes (READ_ENTRY desc = OA | attrs, RIPAS EMPTY); the parent's
    refcount grows by one (NS entries hold no reference) and the child's stays 0."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = U48 + 2 * L1 + (5 * L2 if level == 3 else 0)
    t.rtts(realm, ipa, level - 1)
    oa = 7 * s2tt.block_size(level - 1)
    _map(t, realm, ipa, level - 1, oa | attrs)
    parent = _table(realm, ipa, level - 1)
    count = _refcount(machine, parent)
    rtt = t.delegate()
    _create_ok(machine, t, realm, rtt, ipa, level)
    step = s2tt.block_size(level)
    _check_child(machine, t, realm, rtt, ipa, level,
                 [(ASSIGNED, (oa + i * step) | attrs, 0) for i in range(s2tt.ENTRIES)])
    assert (_refcount(machine, parent), _refcount(machine, rtt)) == (count + 1, 0)
    for desc in s2tt.entries(machine.memory, _idx(machine, rtt)):
        assert s2tt.decode(desc, level) == (Kind.ASSIGNED_NS, 0)
        assert desc & (s2tt.NS | s2tt.AF) == s2tt.NS | s2tt.AF
    _ok(machine)


def test_create_in_every_root(machine: Machine) -> None:
    """RTT_CREATE at level 3 in each of the four roots of an s2sz-32 realm (start level 2): each
    root's refcount becomes 1, the other roots are unaffected, and the entries read back as
    TABLE at level 2."""
    t = Rmi(machine)
    realm = _realm(t, 32, 2)
    for n, root in enumerate(realm.roots):
        ipa = n * L1 + 9 * L2
        rtt = t.delegate()
        assert t.smc(F.RMI_RTT_CREATE, realm.rd, rtt, ipa, 3) == (SUCCESS, 0, 0, 0, 0)
        assert _read(t, realm, ipa, 2) == (SUCCESS, 2, TABLE, rtt, 0)
        assert [_refcount(machine, r) for r in realm.roots] == [1] * (n + 1) + [0] * (3 - n)
    _ok(machine)


# == RMI_RTT_DESTROY (B4.3.16) =================================================================
# Outputs: X1 = rtt (SUCCESS only), X2 = top; X4 is not an output: it reads 0 (B1.2).


def test_destroy_rd_align(machine: Machine) -> None:
    """ACS rd_align: RTT_DESTROY with rd + 8 -> RMI_ERROR_INPUT with top = 0 (the walk was not
    performed), footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 1)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd + 8, 0, 1, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_destroy_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound -> RMI_ERROR_INPUT, top 0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 1)
    _fails(machine, t, (F.RMI_RTT_DESTROY, _bad_pa(machine, where), 0, 1, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_destroy_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _DELEGATED, _REC, _RTT, _DATA) -> RMI_ERROR_INPUT, top
    0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 1)
    states = _States(machine, t, realm)
    _fails(machine, t, (F.RMI_RTT_DESTROY, states.pa[state], 0, 1, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, level", [(48, 0, 0), (48, 0, 4), (48, 0, -1), (40, 1, 1), (32, 2, 2)])
def test_destroy_level_bound(machine: Machine, s2sz: int, start: int, level: int) -> None:
    """ACS level_bound (LEVEL_INVALID, LEVEL_STARTING_LEVEL): a root (the start level), level 4
    or -1 -> RMI_ERROR_INPUT, top 0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 0, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("ipa, level", [(L3, 3), (L2, 2), (L1, 1), (8, 3)])
def test_destroy_ipa_align(machine: Machine, ipa: int, level: int) -> None:
    """ACS ipa_align (IPA_LEVEL_UNALIGNED): ipa not aligned to a level - 1 entry -> RMI_ERROR_INPUT,
    top 0, footprint unchanged (the RTTs covering ipa exist)."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, ipa, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("s2sz, start, level, ipa", [(48, 0, 1, 1 << 48), (48, 0, 3, 1 << 48), (40, 1, 2, 1 << 40)])
def test_destroy_ipa_bound(machine: Machine, s2sz: int, start: int, level: int, ipa: int) -> None:
    """ACS ipa_bound (IPA_OUT_OF_PERMITTED_IPA): ipa >= 2^s2sz -> RMI_ERROR_INPUT, top 0, unchanged."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, ipa, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


def test_destroy_rtt_walk(machine: Machine) -> None:
    """ACS rtt_walk (IPA_NO_PARENT_RTTE): the walk to level - 1 stops early -> (RMI_ERROR_RTT, walk
    level), X1 = 0, top = walk_top > ipa (the 'missing RTT' row of B4.3.16's outcome table):
    level 3 at IPA 0 with only the level-1 RTT -> index 1, top = the next live level-1 entry
    (a table made at 5 GiB); with no level-1 RTT at all -> index 0, top = the next live root
    entry (a table at 3 x 512 GiB); nothing live after ipa in the root -> top = 2^48."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 1)
    t.rtts(realm, 5 * L1, 2)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 0, 3, X4), (rtt_err(1), 0, 5 * L1, 0, 0), *_pas(realm))
    t.rtts(realm, 3 * L0, 1)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, L0, 3, X4), (rtt_err(0), 0, 3 * L0, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 4 * L0, 2, X4), (rtt_err(0), 0, 1 << 48, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 6 * L1, 3, X4), (rtt_err(1), 0, L0, 0, 0), *_pas(realm))


def test_destroy_rtte_state_unassigned(machine: Machine) -> None:
    """ACS rtte_state (RTTE_STATE_UNASSIGNED): the walk reaches level - 1 but the entry there is
    UNASSIGNED (never made, or DESTROYED by an earlier RTT_DESTROY) -> (RMI_ERROR_RTT, level - 1)
    with top = walk_top > ipa, X1 = 0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 4 * L2, 3, X4), (rtt_err(2), 0, L1, 0, 0), *_pas(realm))
    t.rtts(realm, 9 * L2, 3)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 4 * L2, 3, X4), (rtt_err(2), 0, 9 * L2, 0, 0), *_pas(realm))
    assert t.smc(F.RMI_RTT_DESTROY, realm.rd, 9 * L2, 3)[0] == SUCCESS
    del realm.rtts[(9 * L2, 3)]
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 9 * L2, 3, X4), (rtt_err(2), 0, L1, 0, 0), *_pas(realm))


def test_destroy_rtte_state_concatenated(machine: Machine) -> None:
    """rtte_state in a concatenated root (s2sz 32, start level 2): destroying a level-3 RTT that
    does not exist, in root 1 -> (RMI_ERROR_RTT, 2) with top = the end of root 1 (2 GiB); with a
    level-3 RTT further on in root 1 -> top = its IPA."""
    t = Rmi(machine)
    realm = _realm(t, 32, 2)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, L1 + 3 * L2, 3, X4), (rtt_err(2), 0, 2 * L1, 0, 0),
           *_pas(realm))
    t.rtts(realm, L1 + 100 * L2, 3)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, L1 + 3 * L2, 3, X4), (rtt_err(2), 0, L1 + 100 * L2, 0, 0),
           *_pas(realm))


def test_destroy_rtte_state_block(machine: Machine) -> None:
    """ACS rtte_state (RTTE_STATE_ASSIGNED): the level - 1 entry is an ASSIGNED block (protected)
    or an ASSIGNED_NS block (unprotected) -> (RMI_ERROR_RTT, 2) with top == ipa (the 'block
    mapping at lower level' row), X1 = 0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    _assigned_block(machine, t, realm, 6 * L2, RAM)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 6 * L2, 3, X4), (rtt_err(2), 0, 6 * L2, 0, 0), *_pas(realm))
    t.rtts(realm, U48, 2)
    _map(t, realm, U48 + L2, 2, 0x4000_0000 | NORMAL_RW)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, U48 + L2, 3, X4), (rtt_err(2), 0, U48 + L2, 0, 0),
           *_pas(realm))
    _ok(machine)


def test_destroy_rtt_live_table(machine: Machine) -> None:
    """ACS rtt_live: the RTT at level holds a TABLE entry -> (RMI_ERROR_RTT, level), X1 = 0,
    top == ipa (the 'live RTT at target level' row), footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 5 * L2, 3)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 0, 2, X4), (rtt_err(2), 0, 0, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 0, 1, X4), (rtt_err(1), 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("ripas", [EMPTY, RAM, DESTROYED])
def test_destroy_rtt_live_assigned(machine: Machine, ripas: int) -> None:
    """ACS rtt_live (RTT_LIVE): a level-3 RTT with one ASSIGNED entry (any RIPAS) ->
    (RMI_ERROR_RTT, 3), top == ipa, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    _assigned_page(t, realm, 2 * L2 + 77 * L3, ripas)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 2 * L2, 3, X4), (rtt_err(3), 0, 2 * L2, 0, 0), *_pas(realm))
    _ok(machine)


def test_destroy_check_order(machine: Machine) -> None:
    """Failure ordering (B4.3.16.2.1): a bad level or an out-of-range ipa wins over a walk that
    would stop early: RMI_ERROR_INPUT with top 0."""
    t = Rmi(machine)
    realm = _realm(t)
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 0, 0, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_DESTROY, realm.rd, 1 << 48, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


# -- RMI_RTT_DESTROY: success ---------------------------------------------------------------


def _destroy_ok(machine: Machine, t: Rmi, realm: Realm, ipa: int, level: int, top: int, parent_entry: Kind,
                ripas: int = 0) -> int:
    """RTT_DESTROY succeeds with X1 = the RTT, X2 = top, X4 = 0; the RTT becomes DELEGATED, zero,
    refcount 0; the parent loses one reference and its entry becomes ``parent_entry``; no other
    granule changes."""
    rtt = _table(realm, ipa, level)
    parent = _table(realm, ipa, level - 1)
    count = _refcount(machine, parent)
    before = realm_snapshot(machine)
    assert t.smc(F.RMI_RTT_DESTROY, realm.rd, ipa, level, X4) == (SUCCESS, rtt, top, 0, 0)
    # Nothing outside the footprint; the RD's contents change with the TLBI (its TLB generation).
    assert before.changed(realm_snapshot(machine)) == {rtt, parent, realm.rd}
    del realm.rtts[(ipa, level)]
    assert (_state(machine, rtt), _refcount(machine, rtt)) == (GranuleState.DELEGATED, 0)
    assert machine.memory.is_zero(_idx(machine, rtt))
    assert _refcount(machine, parent) == count - 1
    assert _read(t, realm, ipa, level - 1) == (SUCCESS, level - 1, UNASSIGNED, 0, ripas)
    index = realm.ctx.root_slot(ipa)[1] if level - 1 == realm.start_level else s2tt.entry_index(ipa, level - 1)
    desc = s2tt.read(machine.memory, _idx(machine, parent), index)
    assert s2tt.decode(desc, level - 1) == (parent_entry, ripas)
    return rtt


@pytest.mark.parametrize("fill", ["empty", "ram", "destroyed", "mixed"])
def test_destroy_protected_unassigned(machine: Machine, fill: str) -> None:
    """RTT_DESTROY of a protected level-3 RTT holding only UNASSIGNED entries (all EMPTY, all RAM,
    all DESTROYED, or a mixture: not homogeneous, still not live): SUCCESS, X1 = the RTT, the
    parent entry becomes UNASSIGNED with RIPAS DESTROYED whatever the entries were (A5.5.9), X2 =
    top = the IPA just past the parent RTT (nothing else live in it)."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = L1 + 3 * L2
    if fill == "mixed":
        t.rtts(realm, ipa, 3)
        _init_ripas(t, realm, ipa + 10 * L3, ipa + 200 * L3)
        _destroyed_page(t, realm, ipa + 300 * L3)
        _destroyed_page(t, realm, ipa + 511 * L3)
    else:
        _ripas_table(t, realm, ipa, 3, {"empty": EMPTY, "ram": RAM, "destroyed": DESTROYED}[fill])
    _destroy_ok(machine, t, realm, ipa, 3, 2 * L1, Kind.UNASSIGNED, DESTROYED)
    _ok(machine)


def test_destroy_top_is_next_live_entry(machine: Machine) -> None:
    """B4.3.16 top = RttSkipNonLiveEntries from the destroyed entry: with level-3 RTTs at 2 MiB
    entries 0, 5 and 6 of one level-2 RTT, destroying entry 0 gives top = 5 x 2 MiB, destroying 6
    gives top = 1 GiB (end of the parent RTT), destroying 5 then gives 1 GiB too; a level-2 RTT
    destroy in root 0 of a 2-root realm stops at the end of that root (2^39 = root 1's start)."""
    t = Rmi(machine)
    realm = _realm(t)
    for n in (0, 5, 6):
        t.rtts(realm, n * L2, 3)
    _destroy_ok(machine, t, realm, 0, 3, 5 * L2, Kind.UNASSIGNED, DESTROYED)
    _destroy_ok(machine, t, realm, 6 * L2, 3, L1, Kind.UNASSIGNED, DESTROYED)
    _destroy_ok(machine, t, realm, 5 * L2, 3, L1, Kind.UNASSIGNED, DESTROYED)
    _destroy_ok(machine, t, realm, 0, 2, L0, Kind.UNASSIGNED, DESTROYED)
    _destroy_ok(machine, t, realm, 0, 1, 1 << 48, Kind.UNASSIGNED, DESTROYED)
    two = _realm(t, 40, 1)
    t.rtts(two, 7 * L1, 2)
    t.rtts(two, (1 << 39) + L1, 2)
    _destroy_ok(machine, t, two, 7 * L1, 2, 1 << 39, Kind.UNASSIGNED, DESTROYED)
    _destroy_ok(machine, t, two, (1 << 39) + L1, 2, 1 << 40, Kind.UNASSIGNED_NS)
    _ok(machine)


def test_destroy_unprotected_unassigned_ns(machine: Machine) -> None:
    """RTT_DESTROY of unprotected RTTs holding only UNASSIGNED_NS entries (levels 3, 2, 1):
    SUCCESS; the parent entry becomes UNASSIGNED_NS (READ_ENTRY: UNASSIGNED, RIPAS EMPTY)."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    _destroy_ok(machine, t, realm, U48, 3, U48 + L1, Kind.UNASSIGNED_NS)
    _destroy_ok(machine, t, realm, U48, 2, U48 + L0, Kind.UNASSIGNED_NS)
    _destroy_ok(machine, t, realm, U48, 1, 1 << 48, Kind.UNASSIGNED_NS)
    _ok(machine)


def test_destroy_unprotected_with_ns_mappings(machine: Machine) -> None:
    """RTT_DESTROY of an unprotected level-3 RTT whose entries are all ASSIGNED_NS (refcount 0: NS
    entries are live for `top` but hold no reference, A5.5.8) and of a level-2 RTT holding one
    ASSIGNED_NS block: both destroyable; parent entry UNASSIGNED_NS; the mappings are gone. An
    ASSIGNED_NS block in a sibling entry is live for top."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    for i in range(s2tt.ENTRIES):
        _map(t, realm, U48 + i * L3, 3, (0x8000_0000 + i * L3) | NORMAL_RW)
    _map(t, realm, U48 + 9 * L2, 2, 0x20_0000 | NORMAL_RW)
    assert _refcount(machine, _table(realm, U48, 3)) == 0
    _destroy_ok(machine, t, realm, U48, 3, U48 + 9 * L2, Kind.UNASSIGNED_NS)
    assert _read(t, realm, U48 + 5 * L3, 3)[:3] == (SUCCESS, 2, UNASSIGNED)
    _destroy_ok(machine, t, realm, U48, 2, U48 + L0, Kind.UNASSIGNED_NS)
    _ok(machine)


# == RMI_RTT_FOLD (B4.3.17) ====================================================================
# Output: X1 = rtt (SUCCESS only); X4 is not written.


def test_fold_rd_align(machine: Machine) -> None:
    """ACS rd_align: RTT_FOLD with rd + 8 -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd + 8, 0, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_fold_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_FOLD, _bad_pa(machine, where), 0, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_fold_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    states = _States(machine, t, realm)
    _fails(machine, t, (F.RMI_RTT_FOLD, states.pa[state], 0, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, level", [(48, 0, 0), (48, 0, 4), (48, 0, -1), (40, 1, 1), (32, 2, 2)])
def test_fold_level_bound(machine: Machine, s2sz: int, start: int, level: int) -> None:
    """ACS level_bound (LEVEL_STARTING_LEVLE, LEVEL_OUT_OF_BOUND) -> RMI_ERROR_INPUT, unchanged."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, 0, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("ipa, level", [(L3, 3), (L2, 2), (L1, 1)])
def test_fold_ipa_align(machine: Machine, ipa: int, level: int) -> None:
    """ACS ipa_align (IPA_L2_UNALIGNED): ipa not aligned to a level - 1 entry -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, ipa, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


def test_fold_ipa_bound(machine: Machine) -> None:
    """ACS ipa_bound (IPA_OUT_OF_BOUND): ipa = 2^s2sz -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t, 40, 1)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, 1 << 40, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


def test_fold_rtt_walk(machine: Machine) -> None:
    """ACS rtt_walk (IPA_NOT_MAPPED): the walk to level - 1 stops early -> (RMI_ERROR_RTT, walk
    level), X1 = 0: level 3 at an IPA with no level-1 RTT -> 0; with level 1 only -> 1."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 1)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, L0, 3, X4), (rtt_err(0), 0, 0, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, 0, 3, X4), (rtt_err(1), 0, 0, 0, 0), *_pas(realm))


def test_fold_rtte_state(machine: Machine) -> None:
    """ACS rtte_state (RTTE_UNASSIGED, RTTE_ASSIGNED): the level - 1 entry is not a TABLE
    (UNASSIGNED, an ASSIGNED block, an ASSIGNED_NS block) -> (RMI_ERROR_RTT, level - 1 = 2)."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 2)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, 2 * L2, 3, X4), (rtt_err(2), 0, 0, 0, 0), *_pas(realm))
    _assigned_block(machine, t, realm, 5 * L2, EMPTY)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, 5 * L2, 3, X4), (rtt_err(2), 0, 0, 0, 0), *_pas(realm))
    t.rtts(realm, U48, 2)
    _map(t, realm, U48, 2, 0x20_0000 | NORMAL_RW)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, U48, 3, X4), (rtt_err(2), 0, 0, 0, 0), *_pas(realm))
    _ok(machine)


def _homo_case(machine: Machine, t: Rmi, realm: Realm, case: str) -> int:
    """Set up a non-homogeneous level-3 RTT; returns its IPA (2 MiB aligned)."""
    ipa = 8 * L2
    if case.startswith("ns-"):
        ipa = U48 + 8 * L2
        t.rtts(realm, ipa, 3)
        base = 0x8000_0000
        oas = [base + i * L3 for i in range(s2tt.ENTRIES)]
        attrs = [NORMAL_RW] * s2tt.ENTRIES
        count = s2tt.ENTRIES
        first = 0
        if case == "ns-one-missing":
            count = 511
        elif case == "ns-first-missing":
            first = 1
        elif case == "ns-not-contiguous":
            oas[7], oas[8] = oas[8], oas[7]
        elif case == "ns-misaligned":
            oas = [base + L3 + i * L3 for i in range(s2tt.ENTRIES)]
        elif case == "ns-different-attrs":
            attrs[300] = 0x18 | 0x40
        for i in range(first, count):
            _map(t, realm, ipa + i * L3, 3, oas[i] | attrs[i])
        return ipa
    if case.startswith("unassigned"):
        t.rtts(realm, ipa, 3)
        if case == "unassigned-ripas":
            _init_ripas(t, realm, ipa + 17 * L3, ipa + 18 * L3)
        else:
            _destroyed_page(t, realm, ipa + 17 * L3)
        return ipa
    if case == "child-table":
        t.rtts(realm, ipa, 3)
        return ipa & ~(L1 - 1)  # fold the level-2 RTT, which holds a TABLE entry
    if case == "partly-assigned":
        _assigned_page(t, realm, ipa + 3 * L3, RAM)
        return ipa
    data = _granules(t, s2tt.ENTRIES, align=L2, skip=1 if case == "assigned-misaligned" else 0)
    pas = [data + i * L3 for i in range(s2tt.ENTRIES)]
    if case == "assigned-not-contiguous":
        pas[100], pas[101] = pas[101], pas[100]
    if case == "assigned-mixed-ripas":
        t.rtts(realm, ipa, 3)
        _init_ripas(t, realm, ipa, ipa + 511 * L3)  # entry 511 stays EMPTY
        for i, pa in enumerate(pas):
            _data_unknown(t, realm, ipa + i * L3, pa)
    else:
        _assigned_table(t, realm, ipa, RAM, pas=pas)
    return ipa


HOMO_CASES = ["unassigned-ripas", "unassigned-destroyed", "child-table", "partly-assigned", "assigned-mixed-ripas",
              "assigned-not-contiguous", "assigned-misaligned", "ns-one-missing", "ns-first-missing", "ns-not-contiguous",
              "ns-misaligned", "ns-different-attrs"]


@pytest.mark.parametrize("case", HOMO_CASES)
def test_fold_rtt_homo(machine: Machine, case: str) -> None:
    """ACS rtt_homo (RTT_NON_HOMOGENEOUS), A5.5.6: the child RTT is not homogeneous -> (RMI_ERROR_RTT,
    level), X1 = 0, footprint unchanged. Cases: UNASSIGNED entries with different RIPAS (one RAM
    or DESTROYED among EMPTY); a child TABLE entry (refcount 1); one ASSIGNED entry among
    UNASSIGNED (refcount 1); 512 ASSIGNED entries with mixed RIPAS, non-contiguous PAs (two
    swapped) or contiguous PAs whose first is not 2 MiB aligned (refcount 512); 511
    ASSIGNED_NS pages and one UNASSIGNED_NS, last or first (the first entry's kind must not
    decide the fold alone: an UNASSIGNED_NS first entry folding into UNASSIGNED_NS would drop
    511 mappings); 512 ASSIGNED_NS pages swapped, misaligned, or with
    one page's S2AP different."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = _homo_case(machine, t, realm, case)
    level = 2 if case == "child-table" else 3
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, ipa, level, X4), (rtt_err(level), 0, 0, 0, 0), *_pas(realm))
    _ok(machine)


def test_fold_level1_assigned_ns_refused(machine: Machine) -> None:
    """A level-1 RTT whose 512 entries are ASSIGNED_NS 1 GiB blocks, contiguous from PA 0 (so
    aligned to 512 GiB) with identical attributes, would fold into a level-0 block, which RMM 1.0
    does not allow (A5.5.6: 'Level is 2 or 3'): the RTT is not homogeneous, rtt_homo ->
    (RMI_ERROR_RTT, level 1) (TF-RMM rel0 reports level - 1; the specification wins), X1 = 0,
    footprint unchanged, the mappings intact."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 1)
    for i in range(s2tt.ENTRIES):
        _map(t, realm, U48 + i * L1, 1, (i * L1) | NORMAL_RW)
    before = snapshot(machine, *_pas(realm))
    regs = t.smc(F.RMI_RTT_FOLD, realm.rd, U48, 1, X4)
    assert regs == (rtt_err(1), 0, 0, 0, 0)
    assert before.diff(snapshot(machine, *_pas(realm))) == []
    assert _read(t, realm, U48 + 5 * L1, 1) == (SUCCESS, 1, ASSIGNED, (5 * L1) | NORMAL_RW, 0)
    _ok(machine)


def test_fold_level1_assigned_refused(machine: Machine) -> None:
    """A level-1 RTT with refcount 512 whose entries are ASSIGNED DESTROYED 1 GiB blocks,
    contiguous from PA 0 (written white box: 1 GiB blocks of DATA do not fit the host platform)
    -> (RMI_ERROR_RTT, 1): level-0 blocks are not allowed, so the RTT is not homogeneous
    (rtt_homo), footprint unchanged. The entries are restored to UNASSIGNED afterwards."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 1)
    rtt = _table(realm, 0, 1)
    _wb_write(machine, rtt, {i: s2tt.assigned(i * L1, 1, DESTROYED) for i in range(s2tt.ENTRIES)}, s2tt.ENTRIES)
    before = snapshot(machine, *_pas(realm))
    regs = t.smc(F.RMI_RTT_FOLD, realm.rd, 0, 1, X4)
    assert regs == (rtt_err(1), 0, 0, 0, 0)
    assert before.diff(snapshot(machine, *_pas(realm))) == []
    _wb_write(machine, rtt, {i: s2tt.UNASSIGNED_EMPTY for i in range(s2tt.ENTRIES)}, -s2tt.ENTRIES)
    _ok(machine)


def test_fold_check_order(machine: Machine) -> None:
    """Failure ordering (ACS level_bound_compare_rtt_walk / _rtte_state): level 0 (the start
    level) at an unmapped IPA -> RMI_ERROR_INPUT, not RMI_ERROR_RTT."""
    t = Rmi(machine)
    realm = _realm(t)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, L0, 0, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))
    t.rtts(realm, 0, 2)
    _fails(machine, t, (F.RMI_RTT_FOLD, realm.rd, 0, 0, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


# -- RMI_RTT_FOLD: success ------------------------------------------------------------------


def _fold_ok(machine: Machine, t: Rmi, realm: Realm, ipa: int, level: int, entry: tuple[int, int, int, int, int],
             parent_delta: int) -> None:
    """RTT_FOLD succeeds with X1 = the RTT (X4 = 0); the RTT is DELEGATED, zero, refcount 0; the
    parent entry reads back as ``entry``; the parent's refcount changes by ``parent_delta``; no
    other granule changes."""
    rtt = _table(realm, ipa, level)
    parent = _table(realm, ipa, level - 1)
    count = _refcount(machine, parent)
    # Break-before-make: the realm's TLBI comes after the parent entry changed and before the
    # folded table is zeroed and handed back, so a REC's walk in flight never reads it freed.
    slot = (ipa >> s2tt.level_shift(level - 1)) % s2tt.ENTRIES
    entries = bytes(machine.memory.granule(_idx(machine, rtt)))
    seen: list[tuple[int, bool, int]] = []
    real = Tlb.invalidate_realm

    def spy(tlb: Tlb, rd_pa: int, generation_offset: int) -> None:
        seen.append((_state(machine, rtt), bytes(machine.memory.granule(_idx(machine, rtt))) == entries,
                     s2tt.read(machine.memory, _idx(machine, parent), slot)))
        real(tlb, rd_pa, generation_offset)
    before = realm_snapshot(machine)
    with mock.patch.object(Tlb, "invalidate_realm", spy):
        assert t.smc(F.RMI_RTT_FOLD, realm.rd, ipa, level, X4) == (SUCCESS, rtt, 0, 0, 0)
    assert before.changed(realm_snapshot(machine)) == {rtt, parent, realm.rd}   # RD: the TLBI
    assert len(seen) == 1 and seen[0][:2] == (GranuleState.RTT, True), seen
    assert seen[0][2] == s2tt.read(machine.memory, _idx(machine, parent), slot)   # the new parent entry
    del realm.rtts[(ipa, level)]
    assert (_state(machine, rtt), _refcount(machine, rtt)) == (GranuleState.DELEGATED, 0)
    assert machine.memory.is_zero(_idx(machine, rtt))
    assert _refcount(machine, parent) == count + parent_delta
    assert _read(t, realm, ipa, level) == entry


@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("ripas", [EMPTY, RAM, DESTROYED])
def test_fold_unassigned(machine: Machine, level: int, ripas: int) -> None:
    """ACS mm_rtt_fold_unassigned (its level-3 and level-2 folds): RTT_FOLD of a protected RTT at
    level 3, 2 or 1 whose 512 entries are UNASSIGNED with one RIPAS (EMPTY; RAM by
    RTT_INIT_RIPAS; DESTROYED by destroying and re-creating the RTT): the parent entry becomes
    UNASSIGNED with that RIPAS (READ_ENTRY at level reports the walk stopping at level - 1), the
    parent loses the TABLE reference."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = 2 * L0 if level == 1 else 3 * L1 if level == 2 else 3 * L2
    _ripas_table(t, realm, ipa, level, ripas)
    _fold_ok(machine, t, realm, ipa, level, (SUCCESS, level - 1, UNASSIGNED, 0, ripas), -1)
    _ok(machine)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_fold_unassigned_ns(machine: Machine, level: int) -> None:
    """ACS mm_rtt_fold_unassigned_ns: RTT_FOLD of an unprotected RTT of UNASSIGNED_NS entries
    (levels 3, 2, 1, including one whose entries were mapped and unmapped again): parent entry
    UNASSIGNED_NS, parent -1."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = U48 + (2 * L0 if level == 1 else 3 * L1 if level == 2 else 3 * L2)
    t.rtts(realm, ipa, level)
    if level == 3:
        _map(t, realm, ipa + 5 * L3, 3, 0x8000_0000 | NORMAL_RW)
        assert t.smc(F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa + 5 * L3, 3)[0] == SUCCESS
    _fold_ok(machine, t, realm, ipa, level, (SUCCESS, level - 1, UNASSIGNED, 0, EMPTY), -1)
    index = s2tt.entry_index(ipa, level - 1)
    assert s2tt.decode(s2tt.read(machine.memory, _idx(machine, _table(realm, ipa, level - 1)), index), level - 1) \
        == (Kind.UNASSIGNED_NS, 0)
    _ok(machine)


@pytest.mark.parametrize("ripas", [EMPTY, RAM, DESTROYED])
def test_fold_assigned(machine: Machine, ripas: int) -> None:
    """ACS mm_rtt_fold_assigned: RTT_FOLD of a level-3 RTT of 512 ASSIGNED entries
    (DATA_CREATE_UNKNOWN) with one RIPAS, contiguous from a 2 MiB-aligned PA: the parent entry
    becomes an ASSIGNED level-2 block at that PA with that RIPAS (rtte_state, rtte_addr,
    rtte_ripas); the parent's refcount is unchanged (the block holds the reference the TABLE
    entry held), the child's 512 go away; the DATA granules stay DATA; a READ_ENTRY at level 3
    inside the block stops at level 2."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = L1 + 7 * L2
    _, base = _assigned_table(t, realm, ipa, ripas)
    _fold_ok(machine, t, realm, ipa, 3, (SUCCESS, 2, ASSIGNED, base, ripas), 0)
    assert _read(t, realm, ipa + 9 * L3, 3) == (SUCCESS, 2, ASSIGNED, base, ripas)
    assert all(_state(machine, base + i * L3) == GranuleState.DATA for i in range(s2tt.ENTRIES))
    _ok(machine)


@pytest.mark.parametrize("level", [2, 3])
def test_fold_assigned_ns(machine: Machine, level: int) -> None:
    """ACS mm_rtt_fold_assigned_ns: RTT_FOLD of an unprotected RTT whose 512 entries are
    ASSIGNED_NS (pages, or 2 MiB blocks), contiguous from a PA aligned to the parent's block
    size: the parent entry becomes an ASSIGNED_NS block at that PA carrying the children's host
    attributes (B4.3.17.3 rtte_attr: READ_ENTRY desc = OA | MemAttr | S2AP), parent refcount -1."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = U48 + 2 * L1 if level == 2 else U48 + 2 * L1 + 4 * L2
    t.rtts(realm, ipa, level)
    step = s2tt.block_size(level)
    oa = 3 * s2tt.block_size(level - 1)
    for i in range(s2tt.ENTRIES):
        _map(t, realm, ipa + i * step, level, (oa + i * step) | NORMAL_RW)
    _fold_ok(machine, t, realm, ipa, level, (SUCCESS, level - 1, ASSIGNED, oa | NORMAL_RW, 0), -1)
    index = s2tt.entry_index(ipa, level - 1)
    assert s2tt.decode(s2tt.read(machine.memory, _idx(machine, _table(realm, ipa, level - 1)), index), level - 1) \
        == (Kind.ASSIGNED_NS, 0)
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, ipa", [(40, 1, (1 << 39) + 3 * L1), (40, 1, 5 * L1), (32, 2, (3 << 30) + 7 * L2),
                                              (32, 2, (1 << 30) + 9 * L2)])
def test_fold_in_concatenated_root(machine: Machine, s2sz: int, start: int, ipa: int) -> None:
    """RTT_FOLD of an RTT whose parent is a concatenated root other than root 0 (root 1 of two,
    root 3 and root 1 of four) or root 0: SUCCESS; the parent root loses the reference, the
    other roots keep theirs; the root entry reads back as UNASSIGNED (RIPAS EMPTY)."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    t.rtts(realm, ipa, start + 1)
    other = _realm(t, s2sz, start)
    t.rtts(realm, 0 if ipa else L1, start + 1)
    counts = {r: _refcount(machine, r) for r in realm.roots}
    parent = _table(realm, ipa, start)
    _fold_ok(machine, t, realm, ipa, start + 1, (SUCCESS, start, UNASSIGNED, 0, EMPTY), -1)
    assert {r: _refcount(machine, r) for r in realm.roots} == {r: n - (r == parent) for r, n in counts.items()}
    assert _refcount(machine, other.roots[0]) == 0
    _ok(machine)


@pytest.mark.parametrize("kind", ["unassigned-ram", "unassigned-ns", "assigned-empty", "assigned-ram",
                                  "assigned-destroyed", "assigned-ns"])
def test_fold_then_unfold_round_trip(machine: Machine, kind: str) -> None:
    """Folding and unfolding are inverse (A5.5.6, A5.5.7; the unfold half of ACS
    mm_rtt_fold_assigned, _assigned_ns, _unassigned, _unassigned_ns): RTT_FOLD of a homogeneous
    level-3 RTT then RTT_CREATE of a new one at the same place gives back the same 512 entries
    (compared raw) and the same refcounts."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = (U48 if kind.endswith("ns") else 0) + 6 * L2
    if kind.startswith("assigned-") and kind != "assigned-ns":
        _assigned_table(t, realm, ipa, {"empty": EMPTY, "ram": RAM, "destroyed": DESTROYED}[kind[9:]])
    else:
        t.rtts(realm, ipa, 3)
        if kind == "unassigned-ram":
            _init_ripas(t, realm, ipa, ipa + L2)
        elif kind == "assigned-ns":
            for i in range(s2tt.ENTRIES):
                _map(t, realm, ipa + i * L3, 3, (0x4020_0000 + i * L3) | NORMAL_RW)
    rtt = _table(realm, ipa, 3)
    entries = s2tt.entries(machine.memory, _idx(machine, rtt))
    counts = (_refcount(machine, rtt), _refcount(machine, _table(realm, ipa, 2)))
    assert t.smc(F.RMI_RTT_FOLD, realm.rd, ipa, 3)[:2] == (SUCCESS, rtt)
    new = t.delegate()
    assert t.smc(F.RMI_RTT_CREATE, realm.rd, new, ipa, 3)[0] == SUCCESS
    realm.rtts[(ipa, 3)] = new
    assert s2tt.entries(machine.memory, _idx(machine, new)) == entries
    assert (_refcount(machine, new), _refcount(machine, _table(realm, ipa, 2))) == counts
    _ok(machine)


# == RMI_RTT_READ_ENTRY (B4.3.20) ==============================================================
# Outputs: X1 walk level, X2 state, X3 desc, X4 ripas (X4 is written on SUCCESS only).


def test_read_rd_align(machine: Machine) -> None:
    """ACS rd_align: READ_ENTRY with rd + 8 -> RMI_ERROR_INPUT; X1..X4 0."""
    t = Rmi(machine)
    realm = _realm(t)
    _fails(machine, t, (F.RMI_RTT_READ_ENTRY, realm.rd + 8, 0, 0, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_read_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound (RD_DEV_MEM, RD_OUTSIDE_OF_PERMITTED_PA) -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t)
    _fails(machine, t, (F.RMI_RTT_READ_ENTRY, _bad_pa(machine, where), 0, 0, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_read_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _DELEGATED, _REC, _RTT, _DATA) -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t)
    states = _States(machine, t, realm)
    _fails(machine, t, (F.RMI_RTT_READ_ENTRY, states.pa[state], 0, 0, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, level", [(48, 0, 4), (48, 0, -1), (40, 1, 0), (32, 2, 1), (32, 2, 0)])
def test_read_level_bound(machine: Machine, s2sz: int, start: int, level: int) -> None:
    """ACS level_bound (LEVEL_OOB): level above 3, or below the start level (0 on a level-1 realm,
    0 and 1 on a level-2 realm; the start level itself is readable) -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    _fails(machine, t, (F.RMI_RTT_READ_ENTRY, realm.rd, 0, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("ipa, level", [(8, 3), (L3, 2), (L2, 1), (L1, 0), (0x800, 3)])
def test_read_ipa_align(machine: Machine, ipa: int, level: int) -> None:
    """ACS ipa_align (IPA_UNALIGNED): ipa not aligned to an entry of ``level`` -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    _fails(machine, t, (F.RMI_RTT_READ_ENTRY, realm.rd, ipa, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("s2sz, start, ipa", [(48, 0, 1 << 48), (40, 1, 1 << 40), (32, 2, 1 << 32), (39, 1, 1 << 39)])
def test_read_ipa_bound(machine: Machine, s2sz: int, start: int, ipa: int) -> None:
    """ACS ipa_bound (IPA_OOB): ipa = 2^s2sz at level 3 -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    _fails(machine, t, (F.RMI_RTT_READ_ENTRY, realm.rd, ipa, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


def test_read_every_entry_kind(machine: Machine) -> None:
    """RTT_READ_ENTRY outputs for every entry kind (B4.3.20.3; rmi.md 6.3 with the post-rel0 fix
    f5257c6e), each with the walk level in X1, desc in X3 and RIPAS in X4, and no footprint:
    UNASSIGNED EMPTY/RAM/DESTROYED -> (0, 0, ripas); UNASSIGNED_NS -> (0, 0, EMPTY); ASSIGNED
    EMPTY/RAM/DESTROYED pages and blocks -> (1, PA, ripas) (DESTROYED included: the PA, not 0);
    ASSIGNED_NS page and block -> (1, OA | MemAttr | S2AP, EMPTY); TABLE -> (2, RTT PA, EMPTY).
    Reading at a deeper level than a block reports the block at its own level."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, 0, 3)
    l3 = _table(realm, 0, 3)
    _init_ripas(t, realm, L3, 2 * L3)
    _destroyed_page(t, realm, 2 * L3)
    pages = {ripas: _assigned_page(t, realm, (10 + ripas) * L3, ripas) for ripas in (EMPTY, RAM, DESTROYED)}
    blocks = {ripas: _assigned_block(machine, t, realm, (4 + ripas) * L2, ripas)[0]
              for ripas in (EMPTY, RAM, DESTROYED)}
    t.rtts(realm, U48, 3)
    _map(t, realm, U48 + 3 * L3, 3, 0x8123_4000 | 0x1C | 0x40)
    _map(t, realm, U48 + 2 * L2, 2, 0x4060_0000 | 0x04 | 0x80)
    expected = {
        (0, 3): (3, UNASSIGNED, 0, EMPTY),
        (L3, 3): (3, UNASSIGNED, 0, RAM),
        (2 * L3, 3): (3, UNASSIGNED, 0, DESTROYED),
        (U48 + L3, 3): (3, UNASSIGNED, 0, EMPTY),
        (U48 + 3 * L3, 3): (3, ASSIGNED, 0x8123_4000 | 0x1C | 0x40, EMPTY),
        (U48 + 2 * L2, 2): (2, ASSIGNED, 0x4060_0000 | 0x04 | 0x80, EMPTY),
        (U48 + 2 * L2 + 5 * L3, 3): (2, ASSIGNED, 0x4060_0000 | 0x04 | 0x80, EMPTY),
        (0, 2): (2, TABLE, l3, EMPTY),
        (0, 0): (0, TABLE, realm.roots[0] and _table(realm, 0, 1), EMPTY),
        (3 * L0, 3): (0, UNASSIGNED, 0, EMPTY),
        (U48 + 9 * L0, 1): (0, UNASSIGNED, 0, EMPTY),
    }
    for ripas in (EMPTY, RAM, DESTROYED):
        expected[((10 + ripas) * L3, 3)] = (3, ASSIGNED, pages[ripas], ripas)
        expected[((4 + ripas) * L2, 2)] = (2, ASSIGNED, blocks[ripas], ripas)
        expected[((4 + ripas) * L2 + 7 * L3, 3)] = (2, ASSIGNED, blocks[ripas], ripas)
    before = snapshot(machine, *_pas(realm))
    for (ipa, level), outputs in expected.items():
        assert _read(t, realm, ipa, level) == (SUCCESS, *outputs), (hex(ipa), level)
    assert before.diff(snapshot(machine, *_pas(realm))) == []
    _ok(machine)


def test_read_concatenated_roots(machine: Machine) -> None:
    """RTT_READ_ENTRY across concatenated roots (s2sz 32, start level 2, four roots): a TABLE in
    root 3, UNASSIGNED_NS in root 2, UNASSIGNED in root 1; reading at the start level itself is
    allowed; the walk releases every lock (the invariant checker finds none held)."""
    t = Rmi(machine)
    realm = _realm(t, 32, 2)
    t.rtts(realm, (3 << 30) + 5 * L2, 3)
    rtt = _table(realm, (3 << 30) + 5 * L2, 3)
    assert _read(t, realm, (3 << 30) + 5 * L2, 2) == (SUCCESS, 2, TABLE, rtt, EMPTY)
    assert _read(t, realm, (3 << 30) + 5 * L2 + L3, 3) == (SUCCESS, 3, UNASSIGNED, 0, EMPTY)
    assert _read(t, realm, (2 << 30) + 511 * L2, 3) == (SUCCESS, 2, UNASSIGNED, 0, EMPTY)
    assert _read(t, realm, (1 << 30) + 7 * L2, 2) == (SUCCESS, 2, UNASSIGNED, 0, EMPTY)
    _ok(machine)


# == RMI_RTT_MAP_UNPROTECTED (B4.3.19) ==========================================================
# Inputs X1..X4 = rd, ipa, level, desc; X4 is not an output, so it reads 0 on every outcome (B1.2).


BAD_DESC_BITS = {
    "valid-bit": 1 << 0, "type-bit": 1 << 1, "sh": 3 << 8, "af": 1 << 10, "ng-bit11": 1 << 11,
    "oa-bit48": 1 << 48, "oa-bit49": 1 << 49, "bit50": 1 << 50, "dbm": 1 << 51, "contiguous": 1 << 52, "xn": 1 << 53,
    "xn-hi": 1 << 54, "ns": 1 << 55, "sw-bits": 1 << 58, "bit63": 1 << 63,
}


@pytest.mark.parametrize("bit", list(BAD_DESC_BITS))
def test_map_attr_valid_bits(machine: Machine, bit: str) -> None:
    """ACS attr_valid (MEM_ATTR_INVALID), B3.56: a descriptor with a bit set outside the host-
    controlled fields (OA, MemAttr[4:2], S2AP[7:6]), including OA bits 48/49 above a 48-bit PA
    (addr_bound) and DBM, bit 51 (ACS mm_ha_hd_access maps a read-only page with DBM and expects
    the map to fail) -> RMI_ERROR_INPUT, X4 = 0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    desc = 0x8000_0000 | NORMAL_RW | BAD_DESC_BITS[bit]
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, U48, 3, desc), (INPUT, 0, 0, 0, 0), *_pas(realm))


def test_map_attr_valid_reserved_memattr(machine: Machine) -> None:
    """ACS attr_valid: MemAttr 0b100 (reserved with FWB) -> RMI_ERROR_INPUT at levels 1, 2, 3."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    for level in (1, 2, 3):
        desc = 0x4000_0000 | (0b100 << 2) | 0xC0
        _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, U48, level, desc), (INPUT, 0, 0, 0, 0),
               *_pas(realm))


def test_map_rd_align(machine: Machine) -> None:
    """ACS rd_align: MAP_UNPROTECTED with rd + 8 -> RMI_ERROR_INPUT, X4 = 0, unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    desc = 0x8000_0000 | NORMAL_RW
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd + 8, U48, 3, desc), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_map_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    desc = 0x8000_0000 | NORMAL_RW
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, _bad_pa(machine, where), U48, 3, desc), (INPUT, 0, 0, 0, 0),
           *_pas(realm))


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_map_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _DELEGATED, _REC, _RTT, _DATA) -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    states = _States(machine, t, realm)
    desc = 0x8000_0000 | NORMAL_RW
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, states.pa[state], U48, 3, desc), (INPUT, 0, 0, 0, 0),
           *_pas(realm))
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, level, ipa", [(48, 0, 0, U48), (48, 0, 4, U48), (48, 0, -1, U48),
                                                     (32, 2, 1, 1 << 31), (33, 2, 1, 1 << 32), (34, 2, 1, 1 << 33)])
def test_map_level_bound(machine: Machine, s2sz: int, start: int, level: int, ipa: int) -> None:
    """ACS level_bound (LEVEL_STARTING, LEVEL_OOB), B3 RttLevelIsBlockOrPage: level 0 (no level-0
    blocks), 4, -1; and level 1 on a realm whose start level is 2 (s2sz 32..34): the spec's
    RttLevelIsBlockOrPage needs a level at or below the start level -> RMI_ERROR_INPUT (TF-RMM rel0
    walks above the root there). Footprint unchanged, no lock left held."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    desc = 0
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, level, desc), (INPUT, 0, 0, 0, 0), *_pas(realm))
    _ok(machine)


@pytest.mark.parametrize("level, oa", [(2, 0x4000_1000), (2, 0x4010_0000), (1, 0x4020_0000), (1, 0x8000_0000 + L3)])
def test_map_addr_align(machine: Machine, level: int, oa: int) -> None:
    """ACS addr_align (ADDR_UNALIGNED): the descriptor's OA is not aligned to the block size of
    the level (2 MiB at level 2, 1 GiB at level 1) -> RMI_ERROR_INPUT, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 2)
    desc = oa | NORMAL_RW
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, U48, level, desc), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("ipa, level", [(U48 + 8, 3), (U48 + L3, 2), (U48 + L2, 1)])
def test_map_ipa_align(machine: Machine, ipa: int, level: int) -> None:
    """ACS ipa_align (IPA_UNALIGNED): ipa not aligned to the level -> RMI_ERROR_INPUT."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, level, 0), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("ipa", [0, U48 - L3, 1 << 48, 1 << 63])
def test_map_ipa_bound(machine: Machine, ipa: int) -> None:
    """ACS ipa_bound (IPA_PROTECTED, IPA_OOB): a protected IPA (below 2^47), or one at or above
    2^48 -> RMI_ERROR_INPUT, footprint unchanged (the level-3 RTTs there exist)."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48 - L3, 3)
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, 0), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("made, level, index", [(0, 3, 0), (1, 3, 1), (2, 3, 2), (0, 2, 0), (1, 2, 1), (0, 1, 0)])
def test_map_rtt_walk(machine: Machine, made: int, level: int, index: int) -> None:
    """ACS rtt_walk (IPA_NOT_MAPPED): the walk to level stops early -> (RMI_ERROR_RTT, walk level):
    with RTTs down to ``made`` only (the ACS case: level 3 with RTTs to level 2 -> index 2).
    Footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = (U48 + 3 * L1 + 5 * L2) & ~(s2tt.block_size(level) - 1)
    if made:
        t.rtts(realm, ipa, made)
    desc = (7 * s2tt.block_size(level)) | NORMAL_RW
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, level, desc), (rtt_err(index), 0, 0, 0, 0),
           *_pas(realm))


def test_map_rtte_state(machine: Machine) -> None:
    """ACS rtte_state (RTTE_STATE_ASSIGNED_NS): the entry at level is not UNASSIGNED_NS -> (RMI_ERROR_RTT,
    level): already ASSIGNED_NS (page, block), or a TABLE at level 2. The first mapping survives."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    _map(t, realm, U48, 3, 0x8000_0000 | NORMAL_RW)
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, U48, 3, 0x9000_0000), (rtt_err(3), 0, 0, 0, 0),
           *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, U48, 2, 0x4000_0000), (rtt_err(2), 0, 0, 0, 0),
           *_pas(realm))
    _map(t, realm, U48 + L2, 2, 0x4000_0000)
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, U48 + L2, 2, 0x4020_0000),
           (rtt_err(2), 0, 0, 0, 0), *_pas(realm))
    assert _read(t, realm, U48, 3) == (SUCCESS, 3, ASSIGNED, 0x8000_0000 | NORMAL_RW, EMPTY)


def test_map_rtt_walk_stops_at_assigned_ns_block(machine: Machine) -> None:
    """rtt_walk before rtte_state: a level-3 mapping inside a 2 MiB ASSIGNED_NS block (the walk
    stops at level 2, on a live entry) -> (RMI_ERROR_RTT, 2), the walk level, not level 3 (the
    block read as a level-3 entry is not UNASSIGNED_NS either, so checking rtte_state first
    would report 3). The block survives."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 2)
    _map(t, realm, U48 + 5 * L2, 2, 0x4020_0000 | NORMAL_RW)
    _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, U48 + 5 * L2 + 3 * L3, 3, 0x9000_0000),
           (rtt_err(2), 0, 0, 0, 0), *_pas(realm))
    assert _read(t, realm, U48 + 5 * L2, 2) == (SUCCESS, 2, ASSIGNED, 0x4020_0000 | NORMAL_RW, EMPTY)


def test_map_check_order(machine: Machine) -> None:
    """Ordering ([level_bound, ipa_bound] < [rtt_walk, rtte_state]; ACS
    ipa_bound_compare_rtt_walk): a protected or out-of-range ipa, or a bad level, at a place
    where the walk would also fail -> RMI_ERROR_INPUT; a bad descriptor likewise."""
    t = Rmi(machine)
    realm = _realm(t)
    for ipa, level, desc in ((0, 3, 0), (1 << 48, 3, 0), (U48, 0, 0), (U48, 3, 1)):
        _fails(machine, t, (F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, level, desc), (INPUT, 0, 0, 0, 0),
               *_pas(realm))


# -- RMI_RTT_MAP_UNPROTECTED: success ------------------------------------------------------


@pytest.mark.parametrize("level", [1, 2, 3])
def test_map_success(machine: Machine, level: int) -> None:
    """MAP_UNPROTECTED at level 1 (1 GiB block), 2 (2 MiB block), 3 (page): SUCCESS, X4 = 0;
    the entry is ASSIGNED_NS (READ_ENTRY: ASSIGNED, desc = the host's OA | MemAttr | S2AP, RIPAS
    EMPTY); the stored descriptor is valid (block or page type) with AF, NS, XN and inner
    shareability added by the RMM; no refcount and no other granule changes."""
    t = Rmi(machine)
    realm = _realm(t)
    ipa = U48 + 5 * L1 + (6 * L2 if level >= 2 else 0) + (7 * L3 if level == 3 else 0)
    ipa &= ~(s2tt.block_size(level) - 1)
    t.rtts(realm, ipa, level)
    table = _table(realm, ipa, level)
    desc = (9 * s2tt.block_size(level)) | NORMAL_RW
    before = snapshot(machine)
    assert t.smc(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, level, desc) == (SUCCESS, 0, 0, 0, 0)
    assert before.words == snapshot(machine).words
    assert _read(t, realm, ipa, level) == (SUCCESS, level, ASSIGNED, desc, EMPTY)
    raw = s2tt.read(machine.memory, _idx(machine, table), s2tt.entry_index(ipa, level))
    assert raw == desc | s2tt.AF | s2tt.NS | s2tt.XN | s2tt.SH_IS | (0b11 if level == 3 else 0b01)
    _ok(machine)


@pytest.mark.parametrize("memattr", [0, 1, 2, 3, 5, 6, 7])
@pytest.mark.parametrize("s2ap", [0, 1, 2, 3])
def test_map_every_attribute(machine: Machine, memattr: int, s2ap: int) -> None:
    """Every MemAttr value but the reserved 0b100, with every S2AP value, is accepted and read back
    unchanged (B4.3.19.3 rtte_contents)."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    desc = 0x8765_4000 | (memattr << 2) | (s2ap << 6)
    _map(t, realm, U48 + L3, 3, desc)
    assert _read(t, realm, U48 + L3, 3) == (SUCCESS, 3, ASSIGNED, desc, EMPTY)


def test_map_start_level_2_realm(machine: Machine) -> None:
    """On an s2sz-32 realm (start level 2, four roots) a 2 MiB block can be mapped directly in a
    root (root 3) and a page below a level-3 RTT in root 2."""
    t = Rmi(machine)
    realm = _realm(t, 32, 2)
    _map(t, realm, (3 << 30) + 4 * L2, 2, 0x4020_0000 | NORMAL_RW)
    assert _read(t, realm, (3 << 30) + 4 * L2, 2) == (SUCCESS, 2, ASSIGNED, 0x4020_0000 | NORMAL_RW, EMPTY)
    t.rtts(realm, (2 << 30) + L2, 3)
    _map(t, realm, (2 << 30) + L2 + L3, 3, 0x4020_1000)
    assert _read(t, realm, (2 << 30) + L2 + L3, 3) == (SUCCESS, 3, ASSIGNED, 0x4020_1000, EMPTY)
    _ok(machine)


# == RMI_RTT_UNMAP_UNPROTECTED (B4.3.22) ========================================================
# Output: X1 = top (on SUCCESS and on RMI_ERROR_RTT; 0 on other errors); X4 is not written.


def test_unmap_rd_align(machine: Machine) -> None:
    """ACS rd_align: UNMAP_UNPROTECTED with rd + 8 -> RMI_ERROR_INPUT, top 0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    _map(t, realm, U48, 3, 0x8000_0000)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd + 8, U48, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_unmap_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound (RD_OUTSIDE_OF_PERMITTED_PA, RD_DEV_MEM) -> RMI_ERROR_INPUT, top 0."""
    t = Rmi(machine)
    realm = _realm(t)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, _bad_pa(machine, where), U48, 3, X4), (INPUT, 0, 0, 0, 0),
           *_pas(realm))


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_unmap_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _DELEGATED, _REC, _RTT, _DATA) -> RMI_ERROR_INPUT, top 0."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    _map(t, realm, U48, 3, 0x8000_0000)
    states = _States(machine, t, realm)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, states.pa[state], U48, 3, X4), (INPUT, 0, 0, 0, 0),
           *_pas(realm))
    _ok(machine)


@pytest.mark.parametrize("s2sz, start, level, ipa", [(48, 0, 0, U48), (48, 0, 4, U48), (48, 0, -1, U48),
                                                     (32, 2, 1, 1 << 31), (33, 2, 1, 1 << 32), (34, 2, 1, 1 << 33)])
def test_unmap_level_bound(machine: Machine, s2sz: int, start: int, level: int, ipa: int) -> None:
    """ACS level_bound (LEVEL_STARTING, LEVEL_OOB; level_bound_compare_*): level 0, 4, -1, and
    level 1 on a start-level-2 realm (spec; TF-RMM rel0 walks above the root) -> RMI_ERROR_INPUT,
    top 0, footprint unchanged, no lock left held."""
    t = Rmi(machine)
    realm = _realm(t, s2sz, start)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))
    _ok(machine)


@pytest.mark.parametrize("ipa, level", [(U48 + 8, 3), (U48 + L3, 2), (U48 + L2, 1)])
def test_unmap_ipa_align(machine: Machine, ipa: int, level: int) -> None:
    """ACS ipa_align (IPA_UNALIGNED) -> RMI_ERROR_INPUT, top 0."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa, level, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


@pytest.mark.parametrize("ipa", [0, U48 - L3, 1 << 48])
def test_unmap_ipa_bound(machine: Machine, ipa: int) -> None:
    """ACS ipa_bound (IPA_PROTECTED, IPA_OOB; ipa_bound_compare_rtt_walk): protected or beyond
    2^s2sz -> RMI_ERROR_INPUT, top 0."""
    t = Rmi(machine)
    realm = _realm(t)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))


def test_unmap_check_order(machine: Machine) -> None:
    """Ordering ([level_bound, ipa_bound] < [rtt_walk, rtte_state]; ACS
    level_bound_compare_rtt_walk, level_bound_compare_rtte_state, ipa_bound_compare_rtt_walk):
    level 4 or the start level at an unprotected IPA no RTT reaches (the walk would stop at
    level 0), the same once its level-3 entry exists and is UNASSIGNED_NS (rtte_state would
    fail), and a protected IPA no RTT reaches -> RMI_ERROR_INPUT, top 0, footprint unchanged."""
    t = Rmi(machine)
    realm = _realm(t)
    for level in (4, 0):
        _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48, level, X4), (INPUT, 0, 0, 0, 0),
               *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, L2, 3, X4), (INPUT, 0, 0, 0, 0), *_pas(realm))
    t.rtts(realm, U48, 3)
    assert _read(t, realm, U48, 3)[:3] == (SUCCESS, 3, UNASSIGNED)
    for level in (4, 0):
        _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48, level, X4), (INPUT, 0, 0, 0, 0),
               *_pas(realm))
    _ok(machine)


def test_unmap_rtt_walk(machine: Machine) -> None:
    """ACS rtt_walk (IPA_NOT_MAPPED): the walk stops above level at a non-table entry ->
    (RMI_ERROR_RTT, walk level), X1 = walk_top: > ipa when the stopping entry is not live (the
    next live entry in that RTT, or its end); == ipa when it is an ASSIGNED_NS block at a lower
    level (B4.3.22's 'mapped at a lower level' row), for an ipa inside the block too."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 2)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48 + 3 * L2, 3, X4),
           (rtt_err(2), U48 + L1, 0, 0, 0), *_pas(realm))
    t.rtts(realm, U48 + 8 * L2, 3)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48 + 3 * L2, 3, X4),
           (rtt_err(2), U48 + 8 * L2, 0, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48 + 2 * L0, 2, X4),
           (rtt_err(0), 1 << 48, 0, 0, 0), *_pas(realm))
    _map(t, realm, U48 + 5 * L2, 2, 0x4020_0000)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48 + 5 * L2, 3, X4),
           (rtt_err(2), U48 + 5 * L2, 0, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48 + 5 * L2 + 3 * L3, 3, X4),
           (rtt_err(2), U48 + 5 * L2 + 3 * L3, 0, 0, 0), *_pas(realm))


def test_unmap_rtte_state(machine: Machine) -> None:
    """ACS rtte_state (RTTE_STATE_UNASSIGNED_NS): the walk reaches level and the entry is
    UNASSIGNED_NS (never mapped, or already unmapped) -> (RMI_ERROR_RTT, level), top = the next
    live entry (an ASSIGNED_NS page five pages on) or the end of the RTT (the 'not mapped' row:
    top > ipa); a TABLE entry at the level -> (RMI_ERROR_RTT, level), top == ipa (it is live)."""
    t = Rmi(machine)
    realm = _realm(t)
    t.rtts(realm, U48, 3)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48 + 2 * L3, 3, X4),
           (rtt_err(3), U48 + L2, 0, 0, 0), *_pas(realm))
    _map(t, realm, U48 + 7 * L3, 3, 0x8000_0000)
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48 + 2 * L3, 3, X4),
           (rtt_err(3), U48 + 7 * L3, 0, 0, 0), *_pas(realm))
    _fails(machine, t, (F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, U48, 2, X4), (rtt_err(2), U48, 0, 0, 0), *_pas(realm))


# -- RMI_RTT_UNMAP_UNPROTECTED: success ----------------------------------------------------


@pytest.mark.parametrize("level", [1, 2, 3])
def test_unmap_success(machine: Machine, level: int) -> None:
    """UNMAP_UNPROTECTED of an ASSIGNED_NS page or block at its own level: SUCCESS, X1 = top > ipa
    (the next live entry of the RTT: a second mapping three entries on, then after it is unmapped
    too, the end of the RTT), X4 = 0; the entry is UNASSIGNED_NS again; no refcount changes."""
    t = Rmi(machine)
    realm = _realm(t)
    size = s2tt.block_size(level)
    ipa = U48 + 4 * size if level == 1 else U48 + 3 * L1 + 4 * size
    t.rtts(realm, ipa, level)
    table = _table(realm, ipa, level)
    _map(t, realm, ipa, level, 2 * size)
    _map(t, realm, ipa + 3 * size, level, 5 * size | NORMAL_RW)
    words = snapshot(machine).words
    # Break-before-make: the realm's TLBI comes after the entry is UNASSIGNED_NS again (a REC
    # may hold the old mapping in its TLB until then), once per unmap.
    seen: list[tuple[int, int]] = []
    real = Tlb.invalidate_realm
    unmapping = [ipa]

    def spy(tlb: Tlb, rd_pa: int, generation_offset: int) -> None:
        entry = s2tt.read(machine.memory, _idx(machine, table), s2tt.entry_index(unmapping[0], level))
        seen.append((rd_pa, entry))
        real(tlb, rd_pa, generation_offset)
    with mock.patch.object(Tlb, "invalidate_realm", spy):
        assert t.smc(F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa, level, X4) == (SUCCESS, ipa + 3 * size, 0, 0, 0)
        end = (ipa & ~(s2tt.block_size(level - 1) - 1)) + s2tt.block_size(level - 1)
        unmapping[0] = ipa + 3 * size
        assert t.smc(F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ipa + 3 * size, level, X4) == (SUCCESS, end, 0, 0, 0)
    assert seen == [(realm.rd, s2tt.UNASSIGNED_NS)] * 2
    assert snapshot(machine).words == words
    for at in (ipa, ipa + 3 * size):
        assert _read(t, realm, at, level) == (SUCCESS, level, UNASSIGNED, 0, EMPTY)
        assert s2tt.decode(s2tt.read(machine.memory, _idx(machine, table), s2tt.entry_index(at, level)), level) \
            == (Kind.UNASSIGNED_NS, 0)
    _ok(machine)


def test_unmap_start_level_2_realm(machine: Machine) -> None:
    """UNMAP_UNPROTECTED of a 2 MiB block mapped directly in root 3 of an s2sz-32 realm: SUCCESS,
    top = the end of that root (2^32)."""
    t = Rmi(machine)
    realm = _realm(t, 32, 2)
    _map(t, realm, (3 << 30) + 4 * L2, 2, 0x4020_0000)
    assert t.smc(F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, (3 << 30) + 4 * L2, 2, X4) == (SUCCESS, 1 << 32, 0, 0, 0)
    _ok(machine)
