"""RMI_DATA_CREATE, RMI_DATA_CREATE_UNKNOWN and RMI_DATA_DESTROY (DEN0137 1.0-rel0 B4.3.1-3).

Per command: one test per failure condition, in the order the handler checks them (TF-RMM
rel0's order, compatible with the spec's partial order), each named after the spec label and
the cca-rmm-acs case it mirrors (test/command/cmd_data_*/rmi_data_*_data.h), each asserting the
exact X0, the outputs the spec gives on that failure (DATA_DESTROY's top) and an unchanged
footprint; then the success post-conditions. data_bound2 (data PA >= 2^48 without LPA2) cannot
be built on the host platform, whose DRAM lies below 2^48 (such a PA fails data_bound first): its
tests run on rmi_helpers.dram_across_2_48(), DRAM straddling 2^48 in a 52-bit PA space.
"""

from __future__ import annotations

import pytest

from footprint import realm_snapshot, snapshot
from rmi_helpers import (GRANULE, INPUT, REALM_ERR, SUCCESS, Realm, Rmi, before_the_first_lock, dram_across_2_48,
                         host_rewrites_after_each_read, rtt_error)
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants
from rmm_mp.rmm.granule_state import GranuleState as GS
from rmm_mp.rmm.measurement import rim_extend_data
from rmm_mp.rmm.realm_desc import RealmState, Rd

L2_SIZE = 0x20_0000
IPA = 3 * L2_SIZE + 0x5000           # a protected page in the fourth 2 MiB block
PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(GRANULE))
EMPTY, RAM, DESTROYED = 0, 1, 2
UNASSIGNED, ASSIGNED = 0, 1


# -- set-up ------------------------------------------------------------------------------------

def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // GRANULE


def _setup(machine: Machine) -> tuple[Rmi, Realm]:
    """A NEW realm (s2sz 40, start level 0) with RTTs down to level 3 for IPA."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, IPA, 3)
    return t, realm


def _llt(realm: Realm, ipa: int = IPA) -> int:
    """PA of the level-3 RTT covering ipa."""
    return realm.rtts[(ipa & ~(L2_SIZE - 1), 3)]


def _footprint(t: Rmi, realm: Realm, *pas: int):  # type: ignore[no-untyped-def]
    return snapshot(t.m, realm.rd, *realm.roots, *realm.rtts.values(), *pas)


def _granule_in(t: Rmi, realm: Realm, state: str) -> int:
    """A granule in ``state`` that is not ``realm``'s RD (ACS DATA_STATE_* / RD_STATE_*)."""
    if state == "NS":
        return t.ns_granule()
    if state == "DELEGATED":
        return t.delegate()
    if state == "RD":
        return t.realm(s2sz=40).rd
    if state == "REC":
        return t.rec(realm)
    if state == "RTT":
        return _llt(realm)
    if state == "DATA":
        data = t.delegate()
        assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, IPA + 0x10000)[0] == SUCCESS
        return data
    raise AssertionError(state)


def _bad_address(m: Machine, kind: str, valid: int) -> int:
    """Addresses failing *_align / *_bound (ACS *_UNALIGNED, *_DEV_MEM_MMIO, *_OUTSIDE_OF_PERMITTED_PA)."""
    if kind == "unaligned":
        return valid + 0x800
    if kind == "mmio":
        return m.mmio_regions[0][0]
    if kind == "beyond-pa-range":
        return 1 << m.pa_bits
    if kind == "past-dram":
        return m.dram_base + m.granule_count * GRANULE
    raise AssertionError(kind)


def _create_args(t: Rmi, realm: Realm, **override: int) -> tuple[int, int, int, int, int]:
    """DATA_CREATE's (rd, data, ipa, src, flags): valid unless overridden (fresh data and source)."""
    data = override.pop("data") if "data" in override else t.delegate()
    src = override.pop("src") if "src" in override else t.ns_page(PATTERN)
    args = dict(rd=realm.rd, data=data, ipa=IPA, src=src, flags=1)
    args.update(override)
    return args["rd"], args["data"], args["ipa"], args["src"], args["flags"]


def _data_create(t: Rmi, realm: Realm, **override: int) -> tuple[int, ...]:
    return t.smc(F.RMI_DATA_CREATE, *_create_args(t, realm, **override))


def _expect_failure(t: Rmi, realm: Realm, fid: F, args: tuple[int, ...], x0: int,
                    outputs: tuple[int, int, int] = (0, 0, 0), *pas: int) -> None:
    """Call ``fid`` with ``args`` (all made beforehand); X0 must be ``x0``, X1..X3 ``outputs``,
    X4 0 (spec B1.2: X4 is no output of these commands), the footprint unchanged and the
    invariants kept."""
    before = _footprint(t, realm, *pas)
    ret = t.smc(fid, *args)
    assert ret[0] == x0, f"X0 {ret[0]:#x}, expected {x0:#x}"
    assert tuple(ret[1:4]) == outputs
    assert ret[4] == 0
    assert _footprint(t, realm, *pas).diff(before) == []
    report = invariants(t.m)
    assert report.ok, report


def _ripas_entry(t: Rmi, realm: Realm, ripas: int, ipa: int = IPA) -> None:
    """Make the UNASSIGNED entry at ipa have ``ripas`` (INIT_RIPAS; or DATA_CREATE + DATA_DESTROY)."""
    if ripas == RAM:
        assert t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, ipa, ipa + GRANULE)[:2] == (SUCCESS, ipa + GRANULE)
    elif ripas == DESTROYED:
        assert _data_create(t, realm, ipa=ipa)[0] == SUCCESS
        ret = t.smc(F.RMI_DATA_DESTROY, realm.rd, ipa)
        assert ret[0] == SUCCESS
        assert t.smc(F.RMI_GRANULE_UNDELEGATE, ret[1])[0] == SUCCESS
    assert t.read_entry(realm, ipa)[:5] == (SUCCESS, 3, UNASSIGNED, 0, ripas)


# -- RMI_DATA_CREATE: failure conditions -------------------------------------------------------

@pytest.mark.parametrize("flags", [2, 3, 1 << 63, (1 << 64) - 1])
def test_data_create_flags_sbz_bits_ignored(machine: Machine, flags: int) -> None:
    """RmiDataFlags bits 63:1 are SBZ (B4.4.2) but no failure condition of B4.3.1 names them, so
    DATA_CREATE succeeds (B1.6; TF-RMM rel0 refuses them with INPUT, docs/deviations.md): bit 0
    alone decides whether the content is measured, and the DATA descriptor holds flags as
    passed."""
    t, realm = _setup(machine)
    rd = Rd(machine.memory, _idx(machine, realm.rd))
    rim = rd.measurement(0)
    args = _create_args(t, realm, flags=flags)
    assert t.smc(F.RMI_DATA_CREATE, *args) == (SUCCESS, 0, 0, 0, 0)
    content = PATTERN if flags & 1 else None
    assert rd.measurement(0) == rim_extend_data(realm.hash_algo, rim, IPA, flags, content)
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_data_create_src_align_bound(machine: Machine, kind: str) -> None:
    """src_align / src_bound: INPUT (ACS SRC_UNALIGNED, SRC_DEV_MEM_MMIO, SRC_OUTSIDE_OF_PERMITTED_PA)."""
    t, realm = _setup(machine)
    src = _bad_address(machine, kind, t.ns_page(PATTERN))
    data = t.delegate()
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, data=data, src=src), INPUT, (0, 0, 0), data)


@pytest.mark.parametrize("where", ["realm", "secure"])
def test_data_create_src_pas(machine: Machine, where: str) -> None:
    """src_pas: the source is not in the NS PAS: INPUT, the data granule stays DELEGATED and
    zero (ACS SRC_PAS_REALM, SRC_PAS_SECURE; a Secure page fails in the copy itself)."""
    t, realm = _setup(machine)
    src = t.delegate() if where == "realm" else machine.secure_regions[0][0]
    data = t.delegate()
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, data=data, src=src), INPUT, (0, 0, 0), data)
    assert machine.granule_table(0).state(_idx(machine, data)) == GS.DELEGATED


def test_data_create_src_pas_before_realm_state_and_rtt_walk(machine: Machine) -> None:
    """src_pas is checked first (TF-RMM's order, FAILURE_CONDITIONS), as the source is locked
    expecting NS, before the RD is looked at: a source in the Realm PAS (DELEGATED) fails INPUT
    even when the realm is ACTIVE (realm_state) and the IPA has no level-3 table (rtt_walk),
    whose failures would give REALM or RTT. Kills a handler that leaves src_pas to the copy,
    which reports it only after realm_state and rtt_walk. (A Secure source, a DRAM granule in
    the Secure PAS whose granule state is NS, passes the lock's check and fails in the copy,
    after rtte_state: test_data_create_copy_fault_reported_after_rtt_checks.)"""
    t, realm = _setup(machine)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    src = t.delegate()
    data = t.delegate()
    args = _create_args(t, realm, data=data, src=src, ipa=IPA + 8 * L2_SIZE)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, args, INPUT, (0, 0, 0), data)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_data_create_data_align_bound(machine: Machine, kind: str) -> None:
    """data_align / data_bound: INPUT (ACS DATA_UNALIGNED, DATA_DEV_MEM_MMIO, DATA_OUTSIDE_OF_PERMITTED_PA)."""
    t, realm = _setup(machine)
    data = _bad_address(machine, kind, t.delegate())
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, data=data), INPUT)


@pytest.mark.parametrize("state", ["NS", "RD", "REC", "RTT", "DATA"])
def test_data_create_data_state(machine: Machine, state: str) -> None:
    """data_state: the data granule is not DELEGATED: INPUT (ACS DATA_STATE_UNDELEGATED/RD/REC/RTT/DATA)."""
    t, realm = _setup(machine)
    data = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, data=data), INPUT, (0, 0, 0), data)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_data_create_rd_align_bound(machine: Machine, kind: str) -> None:
    """rd_align / rd_bound: INPUT (ACS RD_UNALIGNED, RD_DEV_MEM_MMIO, RD_OUTSIDE_OF_PERMITTED_PA)."""
    t, realm = _setup(machine)
    rd = _bad_address(machine, kind, realm.rd)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, rd=rd), INPUT)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "REC", "RTT", "DATA"])
def test_data_create_rd_state(machine: Machine, state: str) -> None:
    """rd_state: rd is not an RD: INPUT (ACS RD_STATE_UNDELEGATED/DELEGATED/REC/RTT/DATA)."""
    t, realm = _setup(machine)
    rd = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, rd=rd), INPUT, (0, 0, 0), rd)


@pytest.mark.parametrize("state", ["ACTIVE", "SYSTEM_OFF"])
def test_data_create_realm_state(machine: Machine, state: str) -> None:
    """realm_state: the realm is not NEW: REALM (ACS REALM_ACTIVE, REALM_SYSTEM_OFF). SYSTEM_OFF
    is set white-box in the RD while nothing runs (only a running realm can reach it)."""
    t, realm = _setup(machine)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    if state == "SYSTEM_OFF":
        Rd(machine.memory, _idx(machine, realm.rd)).set_state(RealmState.SYSTEM_OFF)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm), REALM_ERR)


def test_data_create_rd_state_before_realm_state(machine: Machine) -> None:
    """Ordering [rd_bound, rd_state] < [realm_state] (B4.3.1.2.1): rd is a DATA granule whose
    bytes read as an ACTIVE realm's RD, every other input valid -> INPUT, not REALM; footprint
    unchanged."""
    t, realm = _setup(machine)
    posing = t.data_posing_as_rd(realm, IPA + 8 * GRANULE, RealmState.ACTIVE)
    data = t.delegate()
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, rd=posing, data=data), INPUT, (0, 0, 0),
                    posing, data)


@pytest.mark.parametrize("ipa", [IPA + 0x800, 1 << 39, (1 << 39) + IPA, 1 << 40, 1 << 63])
def test_data_create_ipa_align_bound(machine: Machine, ipa: int) -> None:
    """ipa_align / ipa_bound: unaligned, unprotected or outside the IPA space: INPUT (ACS
    IPA_UNALIGNED, IPA_UNPROTECTED, IPA_OUTSIDE_OF_PERMITTED_IPA)."""
    t, realm = _setup(machine)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, ipa=ipa), INPUT)


def _data_bound2(fid: F) -> None:
    """On DRAM across 2^48 without LPA2: ``fid`` with a DELEGATED data granule at 2^48 (every
    other input valid) -> INPUT, footprint unchanged; the same call with one below succeeds."""
    with Machine.create(dram_across_2_48(), cpus=1, check_platform=False) as m:
        t, realm = _setup(m)
        args = _create_args if fid == F.RMI_DATA_CREATE else _unknown_args
        high = t.delegate(1 << 48)
        _expect_failure(t, realm, fid, args(t, realm, data=high), INPUT, (0, 0, 0), high)
        assert t.smc(fid, *args(t, realm))[0] == SUCCESS


def test_data_create_data_bound2() -> None:
    """data_bound2 (no ACS case: it needs DRAM at or above 2^48): data PA >= 2^48 in a realm
    without LPA2 -> INPUT (see _data_bound2)."""
    _data_bound2(F.RMI_DATA_CREATE)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_data_create_rtt_walk(machine: Machine, level: int) -> None:
    """rtt_walk: no level-3 table for ipa: (RTT, level reached) (ACS IPA_NOT_MAPPED)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, IPA, level)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm), rtt_error(level))


def test_data_create_rtte_state(machine: Machine) -> None:
    """rtte_state: the entry is ASSIGNED already: (RTT, 3) (ACS RTTE_STATE_ASSIGNED)."""
    t, realm = _setup(machine)
    assert _data_create(t, realm)[0] == SUCCESS
    data = t.delegate()
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, data=data), rtt_error(3), (0, 0, 0), data)


@pytest.mark.parametrize("assigned", [False, True])
def test_data_create_ipa_bound_before_rtt_checks(machine: Machine, assigned: bool) -> None:
    """Ordering [ipa_bound] < [rtt_walk, rtte_state]: an unprotected IPA, unmapped or mapped
    (ASSIGNED_NS), gives INPUT (ACS IPA_UNPROTECTED_NOT_MAPPED, IPA_UNPROTECTED_RTTE_ASSIGNED)."""
    t, realm = _setup(machine)
    ipa = realm.unprotected + IPA
    if assigned:
        t.rtts(realm, ipa, 3)
        assert t.smc(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, t.ns_granule())[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, ipa=ipa), INPUT)


def test_data_create_copy_fault_reported_after_rtt_checks(machine: Machine) -> None:
    """A Secure source fails in the copy, which TF-RMM reports after rtte_state: with no
    level-3 table the result is (RTT, 2), not INPUT (the spec leaves src_pas and rtt_walk unordered)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, IPA, 2)
    src = machine.secure_regions[0][0]
    _expect_failure(t, realm, F.RMI_DATA_CREATE, _create_args(t, realm, src=src), rtt_error(2))


def _delegate_on(other: Rmi, pa: int) -> None:
    """DELEGATE ``pa`` on ``other``'s CPU; it must succeed."""
    assert other.smc(F.RMI_GRANULE_DELEGATE, pa)[0] == SUCCESS


def test_data_create_source_delegated_before_the_locks(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another CPU delegates the source just before the command's first lock (where the command
    once copied it, after a lock-free src_pas look it no longer makes): the source is locked
    with the data granule and the RD and found DELEGATED, so src_pas is true when the command
    takes effect: INPUT, and nothing changes. A success would let the delegated page become
    another DATA granule of the realm first, the RIM recording that DATA_CREATE before this one,
    though this one had to precede the DELEGATE."""
    t, realm = _setup(machine)
    other = Rmi(machine, cpu=1)
    src, data = t.ns_page(PATTERN), t.delegate()
    before_the_first_lock(monkeypatch, t, lambda: _delegate_on(other, src))
    before = _footprint(t, realm, data)
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, IPA, src, 1) == (INPUT, 0, 0, 0, 0)
    monkeypatch.undo()
    delegated = f"granule {_idx(machine, src)}: "      # the other CPU's DELEGATE, nothing else
    assert [d for d in _footprint(t, realm, data).diff(before) if not d.startswith(delegated)] == []
    assert machine.granule_table(0).state(_idx(machine, src)) == GS.DELEGATED
    assert not any(machine.memory.granule(_idx(machine, src)))
    assert t.read_entry(realm, IPA)[:3] == (SUCCESS, 3, UNASSIGNED)
    report = invariants(machine)
    assert report.ok, report


@pytest.mark.parametrize("delegated", [False, True])
def test_data_create_source_as_its_data_granule(machine: Machine, delegated: bool) -> None:
    """The source named as the data granule too: INPUT whatever the page's state, and nothing
    changes (NS: data_state; DELEGATED: src_pas). Serial, no race: a regression guard (it
    passes on the old handler too) for the aliasing the source lock adds, since lock_sorted
    refuses an address named twice before it locks anything."""
    t, realm = _setup(machine)
    page = t.ns_page(PATTERN)
    if delegated:
        t.delegate(page)
    _expect_failure(t, realm, F.RMI_DATA_CREATE, (realm.rd, page, IPA, page, 1), INPUT, (0, 0, 0), page)


@pytest.mark.parametrize("then", ["delegate-data", "create-another-page"])
def test_data_create_copies_the_source_as_it_is_when_it_takes_effect(
        machine: Machine, monkeypatch: pytest.MonkeyPatch, then: str) -> None:
    """The host rewrites the source while DATA_CREATE runs (before its first lock, which the
    source is one of), then, on another CPU, either delegates the data granule (NS until then) or
    creates another page of the realm with a measured DATA_CREATE. The command succeeds after
    that second step (DATA_CREATE fails data_state before the DELEGATE; the RIM records the
    other page first), which follows the rewrite: the DATA granule and the RIM must hold the new
    bytes. The source used to be copied before any lock: a success with the old bytes copied
    and measured, which no serial order gives (the docs/deviations.md row "RMI_DATA_CREATE
    source copy")."""
    t, realm = _setup(machine)
    other = Rmi(machine, cpu=1)
    new = bytes(reversed(PATTERN))
    src = t.ns_page(PATTERN)
    data = t.ns_granule() if then == "delegate-data" else t.delegate()
    other_page, other_src, other_ipa = t.delegate(), t.ns_page(bytes(GRANULE)), IPA + GRANULE

    def rewrite_then_act() -> None:
        machine.ns_write(src, new)
        if then == "delegate-data":
            _delegate_on(other, data)
        else:
            assert other.smc(F.RMI_DATA_CREATE, realm.rd, other_page, other_ipa, other_src, 1)[0] == SUCCESS

    rd = Rd(machine.memory, _idx(machine, realm.rd))
    rim = rd.measurement(0)
    algo = rd.params().hash_algo
    if then == "create-another-page":
        rim = rim_extend_data(algo, rim, other_ipa, 1, bytes(GRANULE))
    before = realm_snapshot(machine, src, data, other_page)
    before_the_first_lock(monkeypatch, t, rewrite_then_act)
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, IPA, src, 1) == (SUCCESS, 0, 0, 0, 0)
    monkeypatch.undo()
    # The footprint: the data granule, its level-3 table and the RD, and the host's and the
    # other CPU's doings (the source; the other page).
    others = {src} if then == "delegate-data" else {src, other_page}
    assert before.changed(realm_snapshot(machine, src, data, other_page)) == {data, _llt(realm), realm.rd} | others
    assert bytes(machine.memory.granule(_idx(machine, data))) == new
    assert rd.measurement(0) == rim_extend_data(algo, rim, IPA, 1, new)
    assert t.read_entry(realm, IPA) == (SUCCESS, 3, ASSIGNED, data, RAM)
    report = invariants(machine)
    assert report.ok, report


def test_data_create_measures_the_bytes_it_writes(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host CPU rewrites the source page right after the RMM reads it (host_rewrites_after_each_read).
    DATA_CREATE reads the source once and both writes and measures that copy (TF-RMM copies it
    into the DATA granule and hashes the granule): SUCCESS, one read, the DATA granule holds
    the first version and the RIM is extended with the hash of those same bytes. Hashing one
    read and copying another would measure bytes the realm does not hold."""
    t, realm = _setup(machine)
    data, src = t.delegate(), t.ns_page(PATTERN)
    rd = Rd(machine.memory, _idx(machine, realm.rd))
    rim, algo = rd.measurement(0), rd.params().hash_algo
    reads = host_rewrites_after_each_read(monkeypatch, machine, src, [bytes(reversed(PATTERN))])
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, IPA, src, 1) == (SUCCESS, 0, 0, 0, 0)
    monkeypatch.undo()
    assert bytes(machine.memory.granule(_idx(machine, data))) == PATTERN
    assert rd.measurement(0) == rim_extend_data(algo, rim, IPA, 1, PATTERN)
    assert len(reads) == 1
    assert invariants(machine).ok, invariants(machine)


def test_stress_bug_copy_alone_creates_the_page(machine: Machine) -> None:
    """The stress tool's data-create-copy-under-rd copy (stress.bugs_rmi) is the handler with one
    mistake, a lock held over the copy: alone, with no other CPU, it succeeds as the handler
    does. It called rmi_data._create without the source's granule index, which then read the
    state of granule -1 and crashed the RMM (IndexError) on every DATA_CREATE."""
    from rmm_mp.rmm import dispatch
    from rmm_mp.stress import bugs_rmi

    t, realm = _setup(machine)
    data, src = t.delegate(), t.ns_page(PATTERN)
    previous = dispatch.replace_handler(F.RMI_DATA_CREATE, bugs_rmi.data_create_copy_under_rd)
    try:
        assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, IPA, src, 1) == (SUCCESS, 0, 0, 0, 0)
    finally:
        dispatch.replace_handler(F.RMI_DATA_CREATE, previous)
    assert machine.granule_table(0).state(_idx(machine, data)) == GS.DATA
    assert bytes(machine.memory.granule(_idx(machine, data))) == PATTERN


# -- RMI_DATA_CREATE: success ----------------------------------------------------------------

@pytest.mark.parametrize("ripas", [EMPTY, RAM, DESTROYED])
def test_data_create_success(machine: Machine, ripas: int) -> None:
    """Success (B4.3.1.3): data DELEGATED -> DATA holding the source bytes, the entry ASSIGNED
    with RIPAS RAM whatever the RIPAS was, level-3 refcount + 1, RIM extended, no lock held;
    nothing outside the footprint (data, the level-3 RTT, the RD's RIM) changes."""
    t, realm = _setup(machine)
    _ripas_entry(t, realm, ripas)
    table = machine.granule_table(0)
    llt = _idx(machine, _llt(realm))
    refs = table.refcount(llt)
    rd = Rd(machine.memory, _idx(machine, realm.rd))
    rim = rd.measurement(0)
    data, src = t.delegate(), t.ns_page(PATTERN)
    before = realm_snapshot(machine, src)
    assert t.smc(F.RMI_DATA_CREATE, realm.rd, data, IPA, src, 1) == (SUCCESS, 0, 0, 0, 0)
    assert before.changed(realm_snapshot(machine, src)) == {data, _llt(realm), realm.rd}   # footprint
    assert table.state(_idx(machine, data)) == GS.DATA
    assert bytes(machine.memory.granule(_idx(machine, data))) == PATTERN
    assert t.read_entry(realm, IPA) == (SUCCESS, 3, ASSIGNED, data, RAM)
    assert table.refcount(llt) == refs + 1
    assert rd.measurement(0) != rim
    assert machine.ns_read(src, GRANULE) == PATTERN
    assert invariants(machine).ok, invariants(machine)


# -- RMI_DATA_CREATE_UNKNOWN -----------------------------------------------------------------

def _unknown_args(t: Rmi, realm: Realm, **override: int) -> tuple[int, int, int]:
    """DATA_CREATE_UNKNOWN's (rd, data, ipa): valid unless overridden (fresh data granule)."""
    data = override.pop("data") if "data" in override else t.delegate()
    args = dict(rd=realm.rd, data=data, ipa=IPA)
    args.update(override)
    return args["rd"], args["data"], args["ipa"]


def _create_unknown(t: Rmi, realm: Realm, **override: int) -> tuple[int, ...]:
    return t.smc(F.RMI_DATA_CREATE_UNKNOWN, *_unknown_args(t, realm, **override))


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_data_create_unknown_data_align_bound(machine: Machine, kind: str) -> None:
    """data_align / data_bound: INPUT (ACS DATA_UNALIGNED, DATA_DEV_MEM_MMIO, DATA_OUTSIDE_OF_PERMITTED_PA)."""
    t, realm = _setup(machine)
    data = _bad_address(machine, kind, t.delegate())
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm, data=data), INPUT)


@pytest.mark.parametrize("state", ["NS", "RD", "REC", "RTT", "DATA"])
def test_data_create_unknown_data_state(machine: Machine, state: str) -> None:
    """data_state: not DELEGATED: INPUT (ACS DATA_STATE_UNDELEGATED/RD/REC/RTT/DATA)."""
    t, realm = _setup(machine)
    data = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm, data=data), INPUT, (0, 0, 0), data)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_data_create_unknown_rd_align_bound(machine: Machine, kind: str) -> None:
    """rd_align / rd_bound: INPUT (ACS RD_UNALIGNED, RD_DEV_MEM_MMIO, RD_OUTSIDE_OF_PERMITTED_PA)."""
    t, realm = _setup(machine)
    rd = _bad_address(machine, kind, realm.rd)
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm, rd=rd), INPUT)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "REC", "RTT", "DATA"])
def test_data_create_unknown_rd_state(machine: Machine, state: str) -> None:
    """rd_state: INPUT (ACS RD_STATE_UNDELEGATED/DELEGATED/REC/RTT/DATA)."""
    t, realm = _setup(machine)
    rd = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm, rd=rd), INPUT, (0, 0, 0), rd)


@pytest.mark.parametrize("ipa", [IPA + 0x800, 1 << 39, (1 << 39) + IPA, 1 << 40])
def test_data_create_unknown_ipa_align_bound(machine: Machine, ipa: int) -> None:
    """ipa_align / ipa_bound: INPUT (ACS IPA_UNALIGNED, IPA_UNPROTECTED, IPA_OUTSIDE_OF_PERMITTED_IPA)."""
    t, realm = _setup(machine)
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm, ipa=ipa), INPUT)


def test_data_create_unknown_data_bound2() -> None:
    """data_bound2: data PA >= 2^48 in a realm without LPA2 -> INPUT (see _data_bound2)."""
    _data_bound2(F.RMI_DATA_CREATE_UNKNOWN)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_data_create_unknown_rtt_walk(machine: Machine, level: int) -> None:
    """rtt_walk: (RTT, level reached) (ACS IPA_NOT_MAPPED)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, IPA, level)
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm), rtt_error(level))


def test_data_create_unknown_rtte_state(machine: Machine) -> None:
    """rtte_state: ASSIGNED already: (RTT, 3) (ACS RTTE_STATE_ASSIGNED)."""
    t, realm = _setup(machine)
    assert _create_unknown(t, realm)[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm), rtt_error(3))


@pytest.mark.parametrize("assigned", [False, True])
def test_data_create_unknown_ipa_bound_before_rtt_checks(machine: Machine, assigned: bool) -> None:
    """Ordering [ipa_bound] < [rtt_walk, rtte_state]: INPUT (ACS IPA_UNPROTECTED_NOT_MAPPED,
    IPA_UNPROTECTED_RTTE_ASSIGNED)."""
    t, realm = _setup(machine)
    ipa = realm.unprotected + IPA
    if assigned:
        t.rtts(realm, ipa, 3)
        assert t.smc(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, t.ns_granule())[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_DATA_CREATE_UNKNOWN, _unknown_args(t, realm, ipa=ipa), INPUT)


@pytest.mark.parametrize("ripas", [EMPTY, RAM, DESTROYED])
@pytest.mark.parametrize("active", [False, True])
def test_data_create_unknown_success(machine: Machine, ripas: int, active: bool) -> None:
    """Success (B4.3.2.3, A5.3.5): DATA, zero contents, the entry ASSIGNED with its RIPAS kept
    (RAM gives a valid mapping), level-3 refcount + 1, RIM unchanged; in a NEW or ACTIVE realm;
    only data and the level-3 RTT change."""
    t, realm = _setup(machine)
    _ripas_entry(t, realm, ripas)
    if active:
        assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    table = machine.granule_table(0)
    llt = _idx(machine, _llt(realm))
    refs = table.refcount(llt)
    rim = Rd(machine.memory, _idx(machine, realm.rd)).measurement(0)
    data = t.delegate()
    before = realm_snapshot(machine)
    assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, IPA) == (SUCCESS, 0, 0, 0, 0)
    assert before.changed(realm_snapshot(machine)) == {data, _llt(realm)}   # footprint
    assert table.state(_idx(machine, data)) == GS.DATA
    assert machine.memory.is_zero(_idx(machine, data))
    assert t.read_entry(realm, IPA) == (SUCCESS, 3, ASSIGNED, data, ripas)
    assert table.refcount(llt) == refs + 1
    assert Rd(machine.memory, _idx(machine, realm.rd)).measurement(0) == rim
    assert invariants(machine).ok, invariants(machine)


# -- RMI_DATA_DESTROY ------------------------------------------------------------------------

def _destroy(t: Rmi, rd: int, ipa: int = IPA) -> tuple[int, ...]:
    return t.smc(F.RMI_DATA_DESTROY, rd, ipa)


@pytest.mark.parametrize("kind", ["unaligned", "mmio", "beyond-pa-range", "past-dram"])
def test_data_destroy_rd_align_bound(machine: Machine, kind: str) -> None:
    """rd_align / rd_bound: INPUT, top = 0 (ACS RD_UNALIGNED, RD_DEV_MEM_MMIO, RD_OUTSIDE_OF_PERMITTED_PA)."""
    t, realm = _setup(machine)
    assert _data_create(t, realm)[0] == SUCCESS
    rd = _bad_address(machine, kind, realm.rd)
    _expect_failure(t, realm, F.RMI_DATA_DESTROY, (rd, IPA), INPUT)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "REC", "RTT", "DATA"])
def test_data_destroy_rd_state(machine: Machine, state: str) -> None:
    """rd_state: INPUT, top = 0 (ACS RD_STATE_UNDELEGATED/DELEGATED/REC/RTT/DATA)."""
    t, realm = _setup(machine)
    assert _data_create(t, realm)[0] == SUCCESS
    rd = _granule_in(t, realm, state)
    _expect_failure(t, realm, F.RMI_DATA_DESTROY, (rd, IPA), INPUT, (0, 0, 0), rd)


@pytest.mark.parametrize("ipa", [IPA + 0x800, 1 << 39, (1 << 39) + IPA, 1 << 40])
def test_data_destroy_ipa_align_bound(machine: Machine, ipa: int) -> None:
    """ipa_align / ipa_bound: INPUT, top = 0 (ACS IPA_UNALIGNED, IPA_UNPROTECTED,
    IPA_OUTSIDE_OF_PERMITTED_IPA)."""
    t, realm = _setup(machine)
    assert _data_create(t, realm)[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_DATA_DESTROY, (realm.rd, ipa), INPUT)


@pytest.mark.parametrize(("level", "top"), [(0, 1 << 48), (1, 1 << 39), (2, 1 << 30)])
def test_data_destroy_rtt_walk(machine: Machine, level: int, top: int) -> None:
    """rtt_walk: no level-3 table: (RTT, level reached), top = the end of the non-live entries
    of the table the walk stopped in (B4.3.3 walk_top) (ACS IPA_NOT_MAPPED)."""
    t = Rmi(machine)
    realm = t.realm(s2sz=40)
    t.rtts(realm, IPA, level)
    _expect_failure(t, realm, F.RMI_DATA_DESTROY, (realm.rd, IPA), rtt_error(level), (0, top, 0))


@pytest.mark.parametrize("next_live", [None, IPA + 7 * GRANULE])
def test_data_destroy_rtte_state(machine: Machine, next_live: int | None) -> None:
    """rtte_state: the entry is UNASSIGNED: (RTT, 3), top = the next live entry's IPA or the end
    of the level-3 table (ACS RTTE_STATE_UNASSIGNED)."""
    t, realm = _setup(machine)
    if next_live is not None:
        assert _data_create(t, realm, ipa=next_live)[0] == SUCCESS
    top = next_live if next_live is not None else (IPA & ~(L2_SIZE - 1)) + L2_SIZE
    _expect_failure(t, realm, F.RMI_DATA_DESTROY, (realm.rd, IPA), rtt_error(3), (0, top, 0))


@pytest.mark.parametrize("assigned", [False, True])
def test_data_destroy_ipa_bound_before_rtt_checks(machine: Machine, assigned: bool) -> None:
    """Ordering [ipa_bound] < [rtt_walk, rtte_state]: INPUT, top = 0 (ACS
    IPA_UNPROTECTED_NOT_MAPPED, IPA_UNPROTECTED_RTTE_UNASSIGNED)."""
    t, realm = _setup(machine)
    ipa = realm.unprotected + IPA
    if assigned:
        t.rtts(realm, ipa, 3)
        assert t.smc(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ipa, 3, t.ns_granule())[0] == SUCCESS
    _expect_failure(t, realm, F.RMI_DATA_DESTROY, (realm.rd, ipa), INPUT)


def test_data_destroy_block_mapping(machine: Machine) -> None:
    """A 2 MiB ASSIGNED block (512 pages folded): (RTT, 2) with top == ipa, the B4.3.3.1.3
    'mapped as a block' outcome; the host must unfold it with RTT_CREATE first."""
    t, realm = _setup(machine)
    block = IPA & ~(L2_SIZE - 1)
    first = t.ns_granules(512, align=L2_SIZE)
    for i in range(512):
        pa = t.delegate(first + i * GRANULE)
        assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, pa, block + i * GRANULE)[0] == SUCCESS
    assert t.smc(F.RMI_RTT_FOLD, realm.rd, block, 3)[:2] == (SUCCESS, _llt(realm))
    del realm.rtts[(block, 3)]
    assert t.read_entry(realm, block, 2)[:5] == (SUCCESS, 2, ASSIGNED, first, EMPTY)
    _expect_failure(t, realm, F.RMI_DATA_DESTROY, (realm.rd, IPA), rtt_error(2), (0, IPA, 0), first)


@pytest.mark.parametrize(("create", "ripas", "after"), [
    ("data", RAM, DESTROYED), ("unknown", EMPTY, EMPTY), ("unknown", DESTROYED, DESTROYED)])
@pytest.mark.parametrize("next_live", [None, IPA + 2 * GRANULE])
def test_data_destroy_success(machine: Machine, create: str, ripas: int, after: int, next_live: int | None) -> None:
    """Success (B4.3.3.3, A5.3.5): ASSIGNED RAM -> UNASSIGNED DESTROYED, ASSIGNED EMPTY ->
    UNASSIGNED EMPTY, ASSIGNED DESTROYED -> UNASSIGNED DESTROYED; X1 = data PA, X2 = top (next
    live entry or the end of the table); data zeroed and DELEGATED; level-3 refcount - 1; only
    data, the level-3 RTT and the RD (the TLBI) change."""
    t, realm = _setup(machine)
    if create == "data":
        data = t.delegate()
        assert _data_create(t, realm, data=data)[0] == SUCCESS
    else:
        _ripas_entry(t, realm, ripas)
        data = t.delegate()
        assert _create_unknown(t, realm, data=data)[0] == SUCCESS
    if next_live is not None:
        assert _create_unknown(t, realm, ipa=next_live)[0] == SUCCESS
    assert t.read_entry(realm, IPA)[2:] == (ASSIGNED, data, ripas)
    table = machine.granule_table(0)
    llt = _idx(machine, _llt(realm))
    refs = table.refcount(llt)
    top = next_live if next_live is not None else (IPA & ~(L2_SIZE - 1)) + L2_SIZE
    before = realm_snapshot(machine)
    assert _destroy(t, realm.rd) == (SUCCESS, data, top, 0, 0)
    # The footprint, and the RD's contents: its TLB generation counts the TLBI (stage2.invalidate).
    assert before.changed(realm_snapshot(machine)) == {data, _llt(realm), realm.rd}
    assert t.read_entry(realm, IPA) == (SUCCESS, 3, UNASSIGNED, 0, after)
    assert table.state(_idx(machine, data)) == GS.DELEGATED
    assert machine.memory.is_zero(_idx(machine, data))
    assert table.refcount(llt) == refs - 1
    assert invariants(machine).ok, invariants(machine)


def test_data_destroy_active_realm(machine: Machine) -> None:
    """No realm-state check: DATA_DESTROY works on an ACTIVE realm (its RIM stays as it was)."""
    t, realm = _setup(machine)
    data = t.delegate()
    assert _data_create(t, realm, data=data)[0] == SUCCESS
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    rim = Rd(machine.memory, _idx(machine, realm.rd)).measurement(0)
    assert _destroy(t, realm.rd)[:2] == (SUCCESS, data)
    assert Rd(machine.memory, _idx(machine, realm.rd)).measurement(0) == rim
    assert t.smc(F.RMI_GRANULE_UNDELEGATE, data)[0] == SUCCESS
    assert invariants(machine).ok, invariants(machine)
