"""RMI_RTT_INIT_RIPAS and RMI_RTT_SET_RIPAS (DEN0137 1.0-rel0 B4.3.18, B4.3.21).

Per command: one test per failure condition, in the order the handler checks them, each named
after the spec label and the cca-rmm-acs case it mirrors (test/command/cmd_rtt_init_ripas,
cmd_rtt_set_ripas), asserting the exact X0 and an unchanged footprint (RTTs, RD with its RIM,
REC with its RIPAS progress); then the success post-conditions through RMI_RTT_READ_ENTRY.

The SET_RIPAS tests here write the REC's RIPAS request white-box (Rec.set_ripas_request), with
no lock held and nothing running, as RSI_IPA_STATE_SET would leave it, so that each failure
condition can be set up alone; a request a running guest makes with RSI_IPA_STATE_SET and the
host's SET_RIPAS answer are tested in tests/rmm/test_rsi.py.
"""

from __future__ import annotations

import pytest

from footprint import realm_snapshot, snapshot
from rmi_helpers import GRANULE, INPUT, REALM_ERR, REC_ERR, SUCCESS, Realm, Rmi, rtt_error
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants
from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.rmm.realm_desc import RealmState, Rd
from rmm_mp.rmm.rec_desc import Rec

L2_SIZE = 0x20_0000
L1_SIZE = 0x4000_0000
PAR_END = 1 << 39                     # s2sz 40
BASE = 3 * L2_SIZE                    # a 2 MiB-aligned protected block
EMPTY, RAM, DESTROYED = 0, 1, 2
UNASSIGNED, ASSIGNED = 0, 1
CHANGE_DESTROYED, NO_CHANGE_DESTROYED = 1, 0


# -- set-up ------------------------------------------------------------------------------------

def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // GRANULE


def _setup(machine: Machine, level: int = 3) -> tuple[Rmi, Realm]:
    """A NEW realm (s2sz 40, start level 0) with RTTs down to ``level`` for BASE."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, BASE, level)
    return t, realm


def _request(t: Rmi, rec: int, base: int, top: int, ripas: int, change_destroyed: int = NO_CHANGE_DESTROYED) -> None:
    """White-box: the RIPAS change RSI_IPA_STATE_SET would have recorded (nothing runs, no lock)."""
    Rec(t.m.memory, _idx(t.m, rec)).set_ripas_request(base, top, base, ripas, change_destroyed)


def _progress(t: Rmi, rec: int) -> int:
    return Rec(t.m.memory, _idx(t.m, rec)).ripas_request()[2]


def _rim(t: Rmi, realm: Realm) -> bytes:
    return Rd(t.m.memory, _idx(t.m, realm.rd)).measurement(0)


def _granule_in(t: Rmi, realm: Realm, state: str) -> int:
    """A granule in ``state`` other than ``realm``'s RD and REC (ACS *_STATE_* cases)."""
    if state == "NS":
        return t.ns_granule()
    if state == "DELEGATED":
        return t.delegate()
    if state == "RD":
        return t.realm(s2sz=40).rd
    if state == "REC":
        return t.rec(realm)
    if state == "RTT":
        return realm.rtts[(0, 1)]
    if state == "DATA":
        data = t.delegate()
        assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, BASE + 0x10_0000)[0] == SUCCESS
        return data
    raise AssertionError(state)


def _bad_address(m: Machine, kind: str, valid: int) -> int:
    """*_align / *_bound addresses (ACS *_UNALIGNED, *_DEV_MEM, *_OUTSIDE_OF_PERMITTED_PA)."""
    return {"unaligned": valid + 0x800, "mmio": m.mmio_regions[0][0], "beyond-pa-range": 1 << m.pa_bits,
            "past-dram": m.dram_base + m.granule_count * GRANULE}[kind]


def _expect_failure(t: Rmi, realm: Realm, fid: F, args: tuple[int, ...], x0: int, *pas: int) -> None:
    """X0 must be ``x0`` with X1 = 0, the footprint unchanged, the invariants kept."""
    before = snapshot(t.m, realm.rd, *realm.roots, *realm.rtts.values(), *pas)
    ret = t.smc(fid, *args)
    assert ret[0] == x0, f"X0 {ret[0]:#x}, expected {x0:#x}"
    assert ret[1] == 0
    assert snapshot(t.m, realm.rd, *realm.roots, *realm.rtts.values(), *pas).diff(before) == []
    report = invariants(t.m)
    assert report.ok, report


def _entries(t: Rmi, realm: Realm, base: int, count: int, level: int = 3) -> list[tuple[int, ...]]:
    """(state, ripas) of ``count`` entries of ``level`` from ``base`` (RMI_RTT_READ_ENTRY)."""
    size = 1 << (12 + 9 * (3 - level))
    out = []
    for i in range(count):
        ret = t.read_entry(realm, base + i * size, level)
        assert ret[:2] == (SUCCESS, level)
        out.append((ret[2], ret[4]))
    return out


def _destroyed(t: Rmi, realm: Realm, ipa: int) -> None:
    """Make the entry at ipa UNASSIGNED DESTROYED (DATA_CREATE then DATA_DESTROY)."""
    data, src = t.delegate(), t.ns_page(b"x")
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, ipa, src, 0)[0] == SUCCESS
    assert t.smc(F.RMI_DATA_DESTROY, realm.rd, ipa)[:2] == (SUCCESS, data)
    assert t.smc(F.RMI_GRANULE_UNDELEGATE, data)[0] == SUCCESS


# -- RMI_RTT_INIT_RIPAS: failure conditions ------------------------------------------------------

@pytest.mark.parametrize("top", [BASE, BASE - GRANULE])
def test_init_ripas_size_valid(machine: Machine, top: int) -> None:
    """size_valid: top <= base: INPUT (ACS SIZE_INVALID)."""
    t, realm = _setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, top), INPUT)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_init_ripas_rd_align_bound(machine: Machine, kind: str) -> None:
    """rd_align / rd_bound: INPUT (ACS RD_UNALIGNED, RD_DEV_MEM, RD_OUTSIDE_OF_PERMITTED_PA)."""
    t, realm = _setup(machine)
    rd = _bad_address(machine, kind, realm.rd)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (rd, BASE, BASE + GRANULE), INPUT)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "REC", "RTT", "DATA"])
def test_init_ripas_rd_state(machine: Machine, state: str) -> None:
    """rd_state: INPUT (ACS RD_STATE_UNDELEGATED/DELEGATED/REC/RTT/DATA)."""
    t, realm = _setup(machine)
    rd = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (rd, BASE, BASE + GRANULE), INPUT, rd)


def test_init_ripas_top_gran_align(machine: Machine) -> None:
    """top_gran_align: top not granule aligned: INPUT (ACS TOP_GRAN_UNALIGNED)."""
    t, realm = _setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, BASE + 3 * GRANULE + 0x800), INPUT)


@pytest.mark.parametrize("top", [PAR_END + GRANULE, 1 << 40, 1 << 63])
def test_init_ripas_top_bound(machine: Machine, top: int) -> None:
    """top_bound: top - 4 KiB is not protected: INPUT (ACS TOP_UNPROTECTED)."""
    t, realm = _setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, top), INPUT)


@pytest.mark.parametrize("state", ["ACTIVE", "SYSTEM_OFF"])
def test_init_ripas_realm_state(machine: Machine, state: str) -> None:
    """realm_state: not NEW: REALM (ACS REALM_ACTIVE, REALM_SYSTEM_OFF; SYSTEM_OFF is set
    white-box in the RD while nothing runs, as only a running realm can reach it)."""
    t, realm = _setup(machine)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    if state == "SYSTEM_OFF":
        Rd(machine.memory, _idx(machine, realm.rd)).set_state(RealmState.SYSTEM_OFF)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, BASE + GRANULE), REALM_ERR)


def test_init_ripas_rd_state_before_realm_state(machine: Machine) -> None:
    """Ordering [rd_bound, rd_state] < [realm_state] (B4.3.18.2.1): rd is a DATA granule whose
    bytes read as an ACTIVE realm's RD -> INPUT, not REALM; footprint unchanged."""
    t, realm = _setup(machine)
    posing = t.data_posing_as_rd(realm, BASE + 8 * GRANULE, RealmState.ACTIVE)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (posing, BASE, BASE + GRANULE), INPUT, posing)


def test_init_ripas_base_align(machine: Machine) -> None:
    """base_align: the walk stops at level 2 and base is not 2 MiB aligned: (RTT, 2) (ACS
    BASE_LEVEL_UNALIGNED)."""
    t, realm = _setup(machine, level=2)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE + GRANULE, BASE + L2_SIZE), rtt_error(2))


def test_init_ripas_base_not_granule_aligned(machine: Machine) -> None:
    """base_align with a base that is not even granule aligned: (RTT, 3) as B4.3.18 says
    (AddrIsRttLevelAligned(base, walk.level)); TF-RMM rel0 returns INPUT (docs/deviations.md)."""
    t, realm = _setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE + 0x800, BASE + 2 * GRANULE), rtt_error(3))


def test_init_ripas_rtte_state(machine: Machine) -> None:
    """rtte_state: the entry at base is ASSIGNED: (RTT, 3) (ACS RTTE_STATE_ASSIGNED)."""
    t, realm = _setup(machine)
    data = t.delegate()
    assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, BASE)[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, BASE + 2 * GRANULE), rtt_error(3), data)


def test_init_ripas_no_progress(machine: Machine) -> None:
    """no_progress: the level-2 entry at base does not fit below top: (RTT, 2) (ACS TOP_LEVEL_UNALIGNED)."""
    t, realm = _setup(machine, level=2)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, BASE + GRANULE), rtt_error(2))


def test_init_ripas_top_gran_align_before_no_progress(machine: Machine) -> None:
    """Ordering [top_gran_align] < [no_progress]: INPUT (ACS TOP_GRAN_UNALIGNED_TOP_LEVEL_UNALIGNED)."""
    t, realm = _setup(machine, level=2)
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, BASE + 0x800), INPUT)


# -- RMI_RTT_INIT_RIPAS: success -----------------------------------------------------------------

def _init(t: Rmi, realm: Realm, base: int, top: int) -> tuple[int, ...]:
    return t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, base, top)


def test_init_ripas_level3_range(machine: Machine) -> None:
    """Success (B4.3.18.3): the entries in [base, top) become UNASSIGNED RAM, X1 = top, the RIM
    changes, entries past top stay EMPTY, no lock is held; no granule but the level-3 RTT and the
    RD (its RIM) changes."""
    t, realm = _setup(machine)
    rim = _rim(t, realm)
    before = realm_snapshot(machine)
    assert _init(t, realm, BASE, BASE + 3 * GRANULE) == (SUCCESS, BASE + 3 * GRANULE, 0, 0, 0)
    assert before.changed(realm_snapshot(machine)) == {realm.rtts[(BASE, 3)], realm.rd}   # the footprint
    assert _entries(t, realm, BASE, 4) == [(UNASSIGNED, RAM)] * 3 + [(UNASSIGNED, EMPTY)]
    assert _rim(t, realm) != rim
    assert invariants(machine).ok, invariants(machine)


def test_init_ripas_stops_at_table_end(machine: Machine) -> None:
    """One RTT's worth per call: a range running past the level-3 table ends at the table's end;
    the next call continues in the next table."""
    t, realm = _setup(machine)
    t.rtts(realm, BASE + L2_SIZE, 3)
    start, top = BASE + L2_SIZE - 2 * GRANULE, BASE + L2_SIZE + 2 * GRANULE
    assert _init(t, realm, start, top)[:2] == (SUCCESS, BASE + L2_SIZE)
    assert _init(t, realm, BASE + L2_SIZE, top)[:2] == (SUCCESS, top)
    assert _entries(t, realm, start, 5) == [(UNASSIGNED, RAM)] * 4 + [(UNASSIGNED, EMPTY)]
    assert invariants(machine).ok, invariants(machine)


def test_init_ripas_stops_at_assigned_entry(machine: Machine) -> None:
    """An ASSIGNED entry ends the loop (A5.3.5: HIPAS must be UNASSIGNED); X1 = its IPA, and it
    keeps RIPAS EMPTY."""
    t, realm = _setup(machine)
    data = t.delegate()
    assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, BASE + 2 * GRANULE)[0] == SUCCESS
    assert _init(t, realm, BASE, BASE + 4 * GRANULE)[:2] == (SUCCESS, BASE + 2 * GRANULE)
    assert _entries(t, realm, BASE, 4) == [(UNASSIGNED, RAM)] * 2 + [(ASSIGNED, EMPTY), (UNASSIGNED, EMPTY)]
    assert invariants(machine).ok, invariants(machine)


def test_init_ripas_ram_and_destroyed_entries(machine: Machine) -> None:
    """UNASSIGNED RAM entries count as progress and stay RAM; UNASSIGNED DESTROYED entries become
    RAM (B4.3.18 scans with stop_at_destroyed FALSE; A5.3.5: no RIPAS dependency; TF-RMM rel0
    stops there: docs/deviations.md). Every entry visited extends the RIM."""
    t, realm = _setup(machine)
    assert _init(t, realm, BASE, BASE + GRANULE)[:2] == (SUCCESS, BASE + GRANULE)
    _destroyed(t, realm, BASE + GRANULE)
    rim = _rim(t, realm)
    assert _entries(t, realm, BASE, 3) == [(UNASSIGNED, RAM), (UNASSIGNED, DESTROYED), (UNASSIGNED, EMPTY)]
    assert _init(t, realm, BASE, BASE + 3 * GRANULE)[:2] == (SUCCESS, BASE + 3 * GRANULE)
    assert _entries(t, realm, BASE, 3) == [(UNASSIGNED, RAM)] * 3
    assert _rim(t, realm) != rim
    assert invariants(machine).ok, invariants(machine)


def test_init_ripas_level2_blocks(machine: Machine) -> None:
    """With no level-3 table the level-2 entries change whole: X1 = BASE + 4 MiB, READ_ENTRY
    reports UNASSIGNED RAM at level 2, and a level-3 table created under one holds 512 RAM entries."""
    t, realm = _setup(machine, level=2)
    assert _init(t, realm, BASE, BASE + 2 * L2_SIZE + GRANULE)[:2] == (SUCCESS, BASE + 2 * L2_SIZE)
    assert _entries(t, realm, BASE, 3, level=2) == [(UNASSIGNED, RAM)] * 2 + [(UNASSIGNED, EMPTY)]
    t.rtts(realm, BASE, 3)
    assert _entries(t, realm, BASE + L2_SIZE - GRANULE, 1) == [(UNASSIGNED, RAM)]
    assert invariants(machine).ok, invariants(machine)


def test_init_ripas_up_to_par_end(machine: Machine) -> None:
    """top = the end of the protected range is allowed (top_bound looks at top - 4 KiB); a level-1
    entry (1 GiB) changes whole."""
    t, realm = _setup(machine, level=1)
    assert _init(t, realm, PAR_END - L1_SIZE, PAR_END)[:2] == (SUCCESS, PAR_END)
    assert _entries(t, realm, PAR_END - L1_SIZE, 1, level=1) == [(UNASSIGNED, RAM)]
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("top", [BASE + 3 * GRANULE + 0x800, PAR_END + GRANULE])
def test_init_ripas_top_before_realm_state(machine: Machine, top: int) -> None:
    """top_gran_align and top_bound precede realm_state (FAILURE_CONDITIONS, TF-RMM's order; the
    spec leaves them unordered): a bad top in an ACTIVE realm is INPUT, not REALM."""
    t, realm = _setup(machine)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE, top), INPUT)


def test_init_ripas_unaligned_base_in_an_active_realm(machine: Machine) -> None:
    """A base that is not 4 KiB aligned fails base_align, which comes after realm_state here (the
    spec leaves the two unordered): an ACTIVE realm answers REALM. TF-RMM rel0 checks base's
    alignment first and answers INPUT (docs/deviations.md, INIT_RIPAS with a base not 4 KiB
    aligned)."""
    t, realm = _setup(machine)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_RTT_INIT_RIPAS, (realm.rd, BASE + 0x800, BASE + 2 * GRANULE), REALM_ERR)


# -- RMI_RTT_SET_RIPAS: failure conditions -------------------------------------------------------

def _set_setup(machine: Machine, level: int = 3, base: int = BASE, top: int = BASE + 4 * GRANULE,
               ripas: int = RAM, cd: int = NO_CHANGE_DESTROYED) -> tuple[Rmi, Realm, int]:
    """A realm with RTTs to ``level`` and a REC with a pending request [base, top) -> ripas."""
    t, realm = _setup(machine, level)
    rec = t.rec(realm)
    _request(t, rec, base, top, ripas, cd)
    return t, realm, rec


def _set(t: Rmi, realm: Realm, rec: int, base: int, top: int) -> tuple[int, ...]:
    return t.smc(F.RMI_RTT_SET_RIPAS, realm.rd, rec, base, top)


@pytest.mark.parametrize("top", [BASE, BASE - GRANULE])
def test_set_ripas_size_valid(machine: Machine, top: int) -> None:
    """size_valid: top <= base: INPUT (ACS INVALID_SIZE)."""
    t, realm, rec = _set_setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE, top), INPUT, rec)


def test_set_ripas_top_gran_align(machine: Machine) -> None:
    """top_gran_align: top not granule aligned: INPUT (ACS TOP_GRAN_UNALIGNED; TF-RMM after fix
    62ece7d0, rel0 accepted it)."""
    t, realm, rec = _set_setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE, BASE + 2 * GRANULE + 0x800), INPUT, rec)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_set_ripas_rd_align_bound(machine: Machine, kind: str) -> None:
    """rd_align / rd_bound: INPUT (ACS RD_UNALIGNED, RD_OUTSIDE_OF_PERMITTED_PA, RD_DEV_MEM)."""
    t, realm, rec = _set_setup(machine)
    rd = _bad_address(machine, kind, realm.rd)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (rd, rec, BASE, BASE + GRANULE), INPUT, rec)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "REC", "RTT", "DATA"])
def test_set_ripas_rd_state(machine: Machine, state: str) -> None:
    """rd_state: INPUT (ACS RD_STATE_UNDELEGATED/DELEGATED/REC/RTT/DATA)."""
    t, realm, rec = _set_setup(machine)
    rd = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (rd, rec, BASE, BASE + GRANULE), INPUT, rec, rd)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_set_ripas_rec_align_bound(machine: Machine, kind: str) -> None:
    """rec_align / rec_bound: INPUT (ACS REC_UNALIGNED, REC_OUTSIDE_OF_PERMITTED_PA, REC_DEV_MEM)."""
    t, realm, rec = _set_setup(machine)
    bad = _bad_address(machine, kind, rec)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, bad, BASE, BASE + GRANULE), INPUT, rec)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RD", "RTT", "DATA"])
def test_set_ripas_rec_gran_state(machine: Machine, state: str) -> None:
    """rec_gran_state: not a REC: INPUT (ACS REC_GRAN_STATE_UNDELEGATED/DELEGATED/RD/RTT/DATA)."""
    t, realm, rec = _set_setup(machine)
    bad = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, bad, BASE, BASE + GRANULE), INPUT, rec, bad)


def test_set_ripas_rec_gran_state_before_rec_state_and_owner(machine: Machine) -> None:
    """Ordering [rec_bound, rec_gran_state] < [rec_state, rec_owner] (B4.3.21.2.1): rec_ptr is the
    RD of another realm that has a REC, so its refcount is 1 (as a running REC's is) and its
    first word, read as a REC's owner, is not rd -> INPUT, not REC; footprint unchanged."""
    t, realm, rec = _set_setup(machine)
    other = t.realm(s2sz=40)
    t.rec(other)
    assert machine.granule_table(0).refcount(_idx(machine, other.rd)) == 1
    assert Rec(machine.memory, _idx(machine, other.rd)).owner_rd != realm.rd
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, other.rd, BASE, BASE + GRANULE), INPUT, rec, other.rd)


def test_set_ripas_rec_state(machine: Machine) -> None:
    """rec_state: the REC is running (its refcount holds the running reference, set white-box
    here): REC."""
    t, realm, rec = _set_setup(machine)
    table = machine.granule_table(0)
    table.refcount_add(_idx(machine, rec), 1)
    before = snapshot(machine, realm.rd, rec, *realm.rtts.values())
    assert _set(t, realm, rec, BASE, BASE + GRANULE)[:2] == (REC_ERR, 0)
    assert snapshot(machine, realm.rd, rec, *realm.rtts.values()).diff(before) == []
    table.refcount_add(_idx(machine, rec), -1)
    assert invariants(machine).ok, invariants(machine)


def test_set_ripas_rec_owner(machine: Machine) -> None:
    """rec_owner: the REC belongs to another realm: REC (ACS REC_OTHER_OWNER)."""
    t, realm, rec = _set_setup(machine)
    other = t.realm(s2sz=40)
    foreign = t.rec(other)
    _request(t, foreign, BASE, BASE + 4 * GRANULE, RAM)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, foreign, BASE, BASE + GRANULE), REC_ERR, foreign)


@pytest.mark.parametrize("base", [BASE + GRANULE, BASE - GRANULE])
def test_set_ripas_base_bound(machine: Machine, base: int) -> None:
    """base_bound: base is not the REC's progress address: INPUT (ACS BASE_MISMATCH)."""
    t, realm, rec = _set_setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, base, BASE + 4 * GRANULE), INPUT, rec)


def test_set_ripas_top_bound(machine: Machine) -> None:
    """top_bound: top beyond the requested top: INPUT (ACS TOP_OUT_OF_BOUND)."""
    t, realm, rec = _set_setup(machine)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE, BASE + 5 * GRANULE), INPUT, rec)


def test_set_ripas_no_request(machine: Machine) -> None:
    """A REC with no pending request (base = top = addr = 0) fails base_bound / top_bound: INPUT."""
    t, realm = _setup(machine)
    rec = t.rec(realm)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, 0, GRANULE), INPUT, rec)


def test_set_ripas_request_of_an_impossible_ripas_is_an_rmm_crash(machine: Machine) -> None:
    """A REC can only hold a request for EMPTY or RAM (RSI_IPA_STATE_SET refuses the rest); one
    for RIPAS 2 (DESTROYED) means the REC's metadata is corrupt: RTT_SET_RIPAS stops the RMM
    (RmmInternalError) rather than write DESTROYED entries the host could not otherwise make."""
    t, realm, rec = _set_setup(machine, ripas=DESTROYED)
    before = snapshot(machine, realm.rd, rec, *realm.rtts.values())
    with pytest.raises(RmmInternalError, match=f"REC {rec:#x} holds a RIPAS request for RIPAS {DESTROYED}: "):
        _set(t, realm, rec, BASE, BASE + 4 * GRANULE)
    assert machine.dead
    # Stopped before anything was written (a crash after the walk left DESTROYED entries and
    # passed); the lock words of a crashed RMM are no part of the promise.
    changed = snapshot(machine, realm.rd, rec, *realm.rtts.values()).diff(before)
    assert [line for line in changed if "lock word" not in line] == []


def test_set_ripas_base_align(machine: Machine) -> None:
    """base_align: the walk stops at level 2 and base is not 2 MiB aligned: (RTT, 2) (ACS
    BASE_UNALIGNED)."""
    t, realm, rec = _set_setup(machine, level=2, base=BASE + GRANULE, top=BASE + 2 * L2_SIZE)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE + GRANULE, BASE + 2 * L2_SIZE),
                    rtt_error(2), rec)


def test_set_ripas_no_progress_block(machine: Machine) -> None:
    """no_progress: the level-2 entry at base does not fit below top: (RTT, 2) (ACS TOP_LEVEL_UNALIGNED)."""
    t, realm, rec = _set_setup(machine, level=2, top=BASE + GRANULE)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE, BASE + GRANULE), rtt_error(2), rec)


@pytest.mark.parametrize("base, top", [(BASE + GRANULE, BASE + 2 * L2_SIZE), (BASE, BASE + GRANULE)],
                         ids=["base_align", "no_progress"])
def test_set_ripas_refuses_a_block_already_of_the_target_ripas(machine: Machine, base: int, top: int) -> None:
    """docs/deviations.md row "RTT_SET_RIPAS base_align / no_progress": B4.3.21 exempts an entry
    whose RIPAS is already the target from both conditions, but rmm-mp (as TF-RMM rel0) does not.
    The walk stops at a level-2 UNASSIGNED EMPTY block and the request is EMPTY: base inside the
    block, or top inside it, still gives (RTT, 2) with nothing changed, so the host splits the
    block (with the exemption SUCCESS would report top at or below base)."""
    t, realm, rec = _set_setup(machine, level=2, base=base, top=top, ripas=EMPTY)
    assert _entries(t, realm, BASE, 1, level=2) == [(UNASSIGNED, EMPTY)]
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, base, top), rtt_error(2), rec)


def test_set_ripas_no_progress_destroyed(machine: Machine) -> None:
    """no_progress: the entry at base is DESTROYED and the realm did not allow changing it:
    (RTT, 3) (B4.3.21 walk_top with stop_at_destroyed)."""
    t, realm, rec = _set_setup(machine)
    _destroyed(t, realm, BASE)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE, BASE + 4 * GRANULE), rtt_error(3), rec)


def test_set_ripas_base_bound_before_base_align(machine: Machine) -> None:
    """Ordering [base_bound] < [base_align]: INPUT (ACS BASE_MISMATCH_BASE_UNALIGNED)."""
    t, realm, rec = _set_setup(machine, level=2)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE + 0x800, BASE + L2_SIZE), INPUT, rec)


def test_set_ripas_top_gran_align_before_no_progress(machine: Machine) -> None:
    """Ordering [top_gran_align] < [no_progress]: INPUT (ACS TOP_GRAN_UNALIGNED_TOP_LEVEL_UNALIGNED)."""
    t, realm, rec = _set_setup(machine, level=2)
    _expect_failure(t, realm, F.RMI_RTT_SET_RIPAS, (realm.rd, rec, BASE, BASE + 0x800), INPUT, rec)


# -- RMI_RTT_SET_RIPAS: success ------------------------------------------------------------------

def _mixed_entries(t: Rmi, realm: Realm) -> list[int]:
    """BASE.. : UNASSIGNED EMPTY, ASSIGNED EMPTY, UNASSIGNED RAM, ASSIGNED RAM; returns the data PAs."""
    first, second = t.delegate(), t.delegate()
    assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, first, BASE + GRANULE)[0] == SUCCESS
    assert _init(t, realm, BASE + 2 * GRANULE, BASE + 3 * GRANULE)[0] == SUCCESS
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, second, BASE + 3 * GRANULE, t.ns_page(b"d"), 0)[0] == SUCCESS
    return [first, second]


@pytest.mark.parametrize("target", [RAM, EMPTY])
@pytest.mark.parametrize("active", [False, True])
def test_set_ripas_changes_entries(machine: Machine, target: int, active: bool) -> None:
    """Success (B4.3.21.3, rmi.md 5 step 7): every UNASSIGNED/ASSIGNED entry in range takes the
    target RIPAS with its HIPAS kept (ASSIGNED RAM is a valid mapping of the same PA); X1 = top,
    the REC's progress = top; the RIM is untouched; any realm state; no other granule changes."""
    t, realm, rec = _set_setup(machine, ripas=target)
    data = _mixed_entries(t, realm)
    if active:
        assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    rim = _rim(t, realm)
    before = realm_snapshot(machine)
    assert _set(t, realm, rec, BASE, BASE + 4 * GRANULE) == (SUCCESS, BASE + 4 * GRANULE, 0, 0, 0)
    # The footprint (the level-3 RTT, the REC's progress); the RD's contents count a TLBI, made
    # only when a valid mapping (ASSIGNED RAM) goes.
    tlbi = {realm.rd} if target == EMPTY else set()
    assert before.changed(realm_snapshot(machine)) == {realm.rtts[(BASE, 3)], rec, *tlbi}
    assert _progress(t, rec) == BASE + 4 * GRANULE
    assert _entries(t, realm, BASE, 5) == [(UNASSIGNED, target), (ASSIGNED, target), (UNASSIGNED, target),
                                           (ASSIGNED, target), (UNASSIGNED, EMPTY)]
    assert [t.read_entry(realm, BASE + i * GRANULE)[3] for i in (1, 3)] == data
    assert _rim(t, realm) == rim
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("target", [RAM, EMPTY])
@pytest.mark.parametrize("assigned", [False, True])
def test_set_ripas_destroyed_entries(machine: Machine, target: int, assigned: bool) -> None:
    """DESTROYED entries stop the loop unless the realm asked with CHANGE_DESTROYED; then they
    take the target RIPAS, UNASSIGNED or ASSIGNED alike."""
    t, realm, rec = _set_setup(machine, top=BASE + 3 * GRANULE, ripas=target)
    _destroyed(t, realm, BASE + GRANULE)
    data = t.delegate()
    if assigned:
        assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, BASE + GRANULE)[0] == SUCCESS
    state = ASSIGNED if assigned else UNASSIGNED
    assert _set(t, realm, rec, BASE, BASE + 3 * GRANULE)[:2] == (SUCCESS, BASE + GRANULE)
    assert _entries(t, realm, BASE + GRANULE, 1) == [(state, DESTROYED)]
    _request(t, rec, BASE + GRANULE, BASE + 3 * GRANULE, target, CHANGE_DESTROYED)
    assert _set(t, realm, rec, BASE + GRANULE, BASE + 3 * GRANULE)[:2] == (SUCCESS, BASE + 3 * GRANULE)
    assert _entries(t, realm, BASE + GRANULE, 2) == [(state, target), (UNASSIGNED, target)]
    assert invariants(machine).ok, invariants(machine)


def test_set_ripas_in_chunks(machine: Machine) -> None:
    """The host may stop below the requested top and continue from X1; a range crossing a
    level-3 table takes one call per table; the REC's progress follows X1."""
    start, end = BASE + L2_SIZE - 2 * GRANULE, BASE + L2_SIZE + 3 * GRANULE
    t, realm, rec = _set_setup(machine, base=start, top=end)
    t.rtts(realm, BASE + L2_SIZE, 3)
    assert _set(t, realm, rec, start, start + GRANULE)[:2] == (SUCCESS, start + GRANULE)
    assert _set(t, realm, rec, start + GRANULE, end)[:2] == (SUCCESS, BASE + L2_SIZE)
    assert _progress(t, rec) == BASE + L2_SIZE
    assert _set(t, realm, rec, BASE + L2_SIZE, end)[:2] == (SUCCESS, end)
    assert _progress(t, rec) == end
    assert _entries(t, realm, start, 6) == [(UNASSIGNED, RAM)] * 5 + [(UNASSIGNED, EMPTY)]
    assert invariants(machine).ok, invariants(machine)


def test_set_ripas_level2_blocks(machine: Machine) -> None:
    """With no level-3 table, level-2 entries change whole (X1 = BASE + 4 MiB)."""
    t, realm, rec = _set_setup(machine, level=2, top=BASE + 2 * L2_SIZE + GRANULE)
    assert _set(t, realm, rec, BASE, BASE + 2 * L2_SIZE + GRANULE)[:2] == (SUCCESS, BASE + 2 * L2_SIZE)
    assert _entries(t, realm, BASE, 3, level=2) == [(UNASSIGNED, RAM)] * 2 + [(UNASSIGNED, EMPTY)]
    assert invariants(machine).ok, invariants(machine)
