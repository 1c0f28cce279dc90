"""RMI_REALM_CREATE, RMI_REALM_ACTIVATE and RMI_REALM_DESTROY (DEN0137 1.0-rel0 B4.3.9, B4.3.8,
B4.3.10).

One test per failure condition (parametrized over the stimuli of that label), each named after
the ARM cca-rmm-acs check it mirrors (test/command/cmd_realm_*/rmi_realm_*_data.h). REALM_CREATE's
tests follow the order rmm-mp checks the conditions in (rmi_realm.FAILURE_CONDITIONS, which is
TF-RMM rel0's but for vmid_valid, checked last; B4.3.9.2.1 fixes no order); ACTIVATE's and
DESTROY's follow the spec's tables.
Every failing call must return exactly (status | index << 8, 0, 0, 0, 0) and leave the
footprint unchanged (granule table, GPT, contents of the granules involved). After every
REALM_CREATE failure the VMID it named is free again: a REALM_CREATE with the same VMID succeeds
(and the invariant checker's `vmid` rule finds no VMID reserved without a realm).

The expected RIM of REALM_CREATE is never computed with rmm_mp's measurement module: it comes
from the external vector in tests/vectors/measurement/ (SHA-256) or from hashlib over a params
image built here with struct at the spec's offsets (B4.3.9.4, B4.4.12).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import pytest

from footprint import realm_snapshot, snapshot
from rmi_helpers import GRANULE, Realm, Rmi, delegate_after_the_copy, host_rewrites_after_each_read, start_level_for
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid, RmiStatus, pack_return
from rmm_mp.abi.structs import RMI_REALM_PARAMS, RmiRealmFlags
from rmm_mp.check import invariants
from rmm_mp.hw.control import OFF_STAGE2_EPOCH
from rmm_mp.hw.granule import GranuleTable, host_owner
from rmm_mp.rmm import s2tt, vmid
from rmm_mp.rmm.handlers import rmi_realm
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_desc import RealmState, Rd
from rmm_mp.rmm.s2tt import Kind

F = RmiFid
SUCCESS = pack_return(RmiStatus.RMI_SUCCESS)
ERROR_INPUT = pack_return(RmiStatus.RMI_ERROR_INPUT)
ERROR_REALM = pack_return(RmiStatus.RMI_ERROR_REALM, 0)
ERROR_RTT = RmiStatus.RMI_ERROR_RTT
X3, X4 = 0x3333_3333_3333_3333, 0x4444_5555_6666_7777
RPV = bytes(range(0x40, 0x80))
VECTOR = Path(__file__).resolve().parents[1] / "vectors" / "measurement" / "rim-realm-create-external.json"


# -- helpers ----------------------------------------------------------------------------------


def _idx(machine: Machine, pa: int) -> int:
    return (pa - machine.dram_base) // GRANULE


def _fields(s2sz: int = 48, level: int | None = None, num: int | None = None, vmid_: int = 100,
            rtt_base: int = 0, **extra: object) -> dict[str, object]:
    """RmiRealmParams fields (num_bps = num_wps = 1, SHA-256, no RPV unless given)."""
    level = start_level_for(s2sz) if level is None else level
    num = s2tt.num_root_rtts(s2sz, level) if num is None else num
    fields: dict[str, object] = dict(s2sz=s2sz, num_bps=1, num_wps=1, hash_algo=0, vmid=vmid_,
                                     rtt_base=rtt_base, rtt_level_start=level, rtt_num_start=num)
    fields.update(extra)
    return fields


def _roots(t: Rmi, count: int, offset: int = 0) -> int:
    """``count`` delegated contiguous granules starting ``offset`` granules after a
    count x 4 KiB aligned PA; returns the first."""
    first = t.ns_granules(count + offset, align=max(count, 1) * GRANULE) + offset * GRANULE
    for i in range(count):
        t.delegate(first + i * GRANULE)
    return first


def _inputs(t: Rmi, s2sz: int = 48, level: int | None = None, vmid_: int = 100,
            **extra: object) -> tuple[int, int, dict[str, object]]:
    """Valid REALM_CREATE inputs: (delegated RD, delegated root base, params fields)."""
    level = start_level_for(s2sz) if level is None else level
    base = _roots(t, s2tt.num_root_rtts(s2sz, level))
    rd = t.delegate()
    return rd, base, _fields(s2sz, level, vmid_=vmid_, rtt_base=base, **extra)


def _params(t: Rmi, fields: dict[str, object]) -> int:
    return t.ns_page(bytes(RMI_REALM_PARAMS.pack(**fields)))


def _create(t: Rmi, s2sz: int = 48, level: int | None = None, vmid_: int = 100, **extra: object) -> Realm:
    """REALM_CREATE with valid inputs; asserts SUCCESS and returns the realm."""
    rd, base, fields = _inputs(t, s2sz, level, vmid_, **extra)
    regs = t.smc(F.RMI_REALM_CREATE, rd, _params(t, fields), X3, X4)
    assert regs == (SUCCESS, 0, 0, 0, 0), f"REALM_CREATE(s2sz {s2sz}) -> {regs[0]:#x}"
    count, level_, algo = (int(fields[k]) for k in  # type: ignore[call-overload]
                           ("rtt_num_start", "rtt_level_start", "hash_algo"))
    return Realm(rd, tuple(base + i * GRANULE for i in range(count)), s2sz, level_, algo, vmid_)


def _destroy(t: Rmi, realm: Realm) -> None:
    assert t.smc(F.RMI_REALM_DESTROY, realm.rd) == (SUCCESS, 0, 0, 0, 0)


def _create_fails(machine: Machine, t: Rmi, rd: int, params: int, *pas: int) -> None:
    """REALM_CREATE(rd, params) with junk in X3/X4 -> (RMI_ERROR_INPUT, 0, 0, 0, 0) and no
    change to the granule table, the GPT, or the contents of rd, params and ``pas``."""
    before = snapshot(machine, rd, params, *pas)
    regs = t.smc(F.RMI_REALM_CREATE, rd, params, X3, X4)
    after = snapshot(machine, rd, params, *pas)
    assert regs == (ERROR_INPUT, 0, 0, 0, 0)
    assert before.diff(after) == []


def _vmid_is_free(machine: Machine, t: Rmi, v: int) -> None:
    """The VMID is not reserved: a REALM_CREATE naming it succeeds (then the realm is destroyed),
    and the invariant checker (rule `vmid`: no VMID reserved without a realm) is happy."""
    assert not vmid.in_use(machine.control, v)
    _destroy(t, _create(t, vmid_=v))
    report = invariants(machine)
    assert report.ok, str(report)


def _rec(t: Rmi, realm: Realm, pa: int | None = None) -> int:
    """REC_CREATE of the realm's next REC (16 fresh aux granules) at ``pa`` (delegated here) or
    at a fresh granule; returns the REC's PA."""
    rec = t.delegate(pa)
    aux = tuple(t.delegate() for _ in range(16))
    regs = t.smc(F.RMI_REC_CREATE, realm.rd, rec, t.rec_params(len(realm.recs), aux=aux))
    assert regs[0] == SUCCESS, f"REC_CREATE -> {regs[0]:#x}"
    realm.recs.append((rec, aux))
    return rec


def _data(t: Rmi, realm: Realm) -> int:
    """A DATA granule of the realm (DATA_CREATE_UNKNOWN at IPA 0x1000); returns its PA."""
    t.rtts(realm, 0, 3)
    data = t.delegate()
    assert t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, data, 0x1000)[0] == SUCCESS
    return data


def _in_state(t: Rmi, realm: Realm, state: str) -> int:
    """A granule in ``state`` (NS, DELEGATED, RD, RTT, REC or DATA), made by real commands; RD,
    RTT, REC and DATA belong to ``realm``."""
    if state == "REC":
        return _rec(t, realm)
    if state == "DATA":
        return _data(t, realm)
    return {"NS": lambda: t.ns_page(b"host bytes"), "DELEGATED": t.delegate, "RD": lambda: realm.rd,
            "RTT": lambda: realm.roots[0]}[state]()


def _rim_image(flags: int, s2sz: int, sve_vl: int, num_bps: int, num_wps: int, pmu_num_ctrs: int,
               hash_algo: int) -> bytes:
    """The measured RmiRealmParams of B4.3.9.4, built here with struct at the B4.4.12 offsets:
    a zero-filled 4 KiB image with only flags, s2sz, sve_vl, num_bps, num_wps, pmu_num_ctrs and
    hash_algo written (RPV, VMID and the RTT fields are not measured)."""
    image = bytearray(4096)
    struct.pack_into("<Q", image, 0x00, flags)
    for offset, value in ((0x08, s2sz), (0x10, sve_vl), (0x18, num_bps), (0x20, num_wps), (0x28, pmu_num_ctrs)):
        struct.pack_into("<B", image, offset, value)
    struct.pack_into("<B", image, 0x30, hash_algo)
    return bytes(image)


def _mmio(machine: Machine) -> int:
    return machine.mmio_regions[0][0]


def _beyond_pa(machine: Machine) -> int:
    return 1 << machine.pa_bits


# -- RMI_REALM_CREATE: failure conditions (B4.3.9.2) --------------------------------------------


def test_create_params_align(machine: Machine) -> None:
    """ACS params_align: params_ptr not granule aligned (8 bytes into a valid params page) ->
    RMI_ERROR_INPUT, footprint unchanged; VMID 100 free afterwards."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t)
    params = _params(t, fields)
    _create_fails(machine, t, rd, params + 8, base)
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_create_params_bound(machine: Machine, where: str) -> None:
    """ACS params_bound (PARAMS_DEV_MEM, PARAMS_OUTSIDE_OF_PERMITTED_PA): params_ptr is an MMIO
    PA, or 2^pa_bits -> RMI_ERROR_INPUT, footprint unchanged; the VMID is free afterwards."""
    t = Rmi(machine)
    rd, base, _ = _inputs(t)
    params = _mmio(machine) if where == "mmio" else _beyond_pa(machine)
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("where", ["realm", "secure"])
def test_create_params_pas(machine: Machine, where: str) -> None:
    """ACS params_pas (PARAMS_PAS_REALM, PARAMS_PAS_SECURE): the params page was delegated after
    the host filled it (Realm PAS), or lies in the platform's Secure region -> RMI_ERROR_INPUT,
    footprint unchanged; the VMID is free afterwards."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t)
    if where == "realm":
        params = t.delegate(_params(t, fields))
    else:
        params = machine.secure_regions[0][0]
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("field, value", [("hash_algo", 2), ("hash_algo", 0xFF), ("s2sz", 31), ("s2sz", 0)])
def test_create_params_valid(machine: Machine, field: str, value: int) -> None:
    """ACS params_valid (HASH_ALGO_INVALID, S2SZ_INVALID): hash_algo not an RmiHashAlgorithm
    value, or s2sz below the 32-bit minimum IPA width (with an RTT configuration that would fit
    it) -> RMI_ERROR_INPUT, footprint unchanged; the VMID is free afterwards."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t, s2sz=39)
    fields[field] = value
    params = _params(t, fields)
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


SUPP_CASES = {
    "num_bps-0": dict(num_bps=0),
    "num_bps-above-FR0": dict(num_bps=6),
    "num_wps-0": dict(num_wps=0),
    "num_wps-above-FR0": dict(num_wps=4),
    "sve-not-implemented": dict(flags=RmiRealmFlags.SVE),
    "sve-not-implemented-vl0": dict(flags=RmiRealmFlags.SVE, sve_vl=0),
    "pmu-ctrs-above-FR0": dict(flags=RmiRealmFlags.PMU, pmu_num_ctrs=32),
    "pmu-ctrs-0": dict(flags=RmiRealmFlags.PMU, pmu_num_ctrs=0),
    "lpa2-not-implemented": dict(flags=RmiRealmFlags.LPA2),
}


@pytest.mark.parametrize("case", list(SUPP_CASES))
def test_create_params_supp(machine: Machine, case: str) -> None:
    """ACS params_supp (BPS_UNSUPPORTED, WPS_UNSUPPORTED, SVE_UNSUPPORTED, PMU_UNSUPPORTED,
    LPA2_UNSUPPORTED): the host platform has FR0 NUM_BPS 5, NUM_WPS 3, no SVE, PMU_NUM_CTRS 31,
    no LPA2 and no FEAT_HPMN0, so num_bps 0 or 6, num_wps 0 or 4, SVE, a PMU with 32 or 0
    counters, and LPA2 are refused -> RMI_ERROR_INPUT, footprint unchanged; VMID free after."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t, **SUPP_CASES[case])
    params = _params(t, fields)
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


def test_create_params_supp_s2sz_above_fr0(machine: Machine) -> None:
    """ACS params_supp (S2SZ): s2sz 49 and 52 exceed FR0.S2SZ 48 (with the root count a level-0
    start would need) -> RMI_ERROR_INPUT, footprint unchanged; the VMID is free afterwards."""
    t = Rmi(machine)
    for s2sz in (49, 52):
        count = 1 << (s2sz - 48)
        base = _roots(t, count)
        rd = t.delegate()
        params = _params(t, _fields(s2sz, 0, count, rtt_base=base))
        _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


def test_create_params_supp_boundaries_succeed(machine: Machine) -> None:
    """The largest supported values are accepted (the params_supp tests above fail for the
    right reason): num_bps 5, num_wps 3, PMU with 31 counters, SHA-512, s2sz 48."""
    t = Rmi(machine)
    realm = _create(t, num_bps=5, num_wps=3, flags=RmiRealmFlags.PMU, pmu_num_ctrs=31, hash_algo=1)
    params = Rd(machine.memory, _idx(machine, realm.rd)).params()
    assert (params.num_bps, params.num_wps, params.pmu_num_ctrs, params.flags, params.hash_algo) == (5, 3, 31, 4, 1)
    assert invariants(machine).ok


RTT_NUM_LEVEL_CASES = {
    # (s2sz, rtt_level_start, rtt_num_start)
    "s2sz48-level1": (48, 1, 512),
    "s2sz48-level1-one-root": (48, 1, 1),
    "s2sz39-level0": (39, 0, 1),
    "s2sz36-level0": (36, 0, 1),
    "s2sz40-level2": (40, 2, 16),
    "s2sz35-level2": (35, 2, 16),
    "s2sz44-level1": (44, 1, 16),
    "level3": (32, 3, 1),
    "level-1-without-lpa2": (48, -1, 1),
    "level4": (48, 4, 1),
    "wrong-num-s2sz40-level1": (40, 1, 1),
    "wrong-num-s2sz40-level1-4": (40, 1, 4),
    "wrong-num-s2sz48-level0": (48, 0, 2),
    "wrong-num-s2sz32-level2": (32, 2, 3),
    "wrong-num-s2sz32-level2-16": (32, 2, 16),
    "wrong-num-zero": (39, 1, 0),
}


@pytest.mark.parametrize("case", list(RTT_NUM_LEVEL_CASES))
def test_create_rtt_num_level(machine: Machine, case: str) -> None:
    """ACS rtt_num_level (RTT_START_INVALID): a start level inconsistent with s2sz (rmi.md 6.2:
    level 0 needs s2sz 40..48, level 1 32..43, level 2 32..34, level 3 and -1 (no LPA2) never),
    or an rtt_num_start other than the number of concatenated roots that configuration needs
    -> RMI_ERROR_INPUT, footprint unchanged; the VMID is free afterwards. Enough granules are
    delegated for the number of roots named, so only the configuration is wrong."""
    t = Rmi(machine)
    s2sz, level, count = RTT_NUM_LEVEL_CASES[case]
    base = _roots(t, min(max(count, 1), 16))
    rd = t.delegate()
    params = _params(t, _fields(s2sz, level, count, rtt_base=base))
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("bad_vmid", [256, 0x1000, 0xFFFF])
def test_create_vmid_valid_out_of_range(machine: Machine, bad_vmid: int) -> None:
    """ACS vmid_valid (VMID_INVALID): the host platform has 8-bit VMIDs (no FEAT_VMID16), so
    VMID 256 and above is invalid -> RMI_ERROR_INPUT, footprint unchanged, nothing reserved."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t, vmid_=bad_vmid)
    params = _params(t, fields)
    _create_fails(machine, t, rd, params, base)
    assert not vmid.in_use(machine.control, bad_vmid)
    assert invariants(machine).ok
    _vmid_is_free(machine, t, 255)


def test_create_vmid_valid_in_use(machine: Machine) -> None:
    """ACS vmid_valid (VMID_USED): a VMID held by another realm -> RMI_ERROR_INPUT, footprint
    unchanged; the failure must not release the other realm's VMID (a second attempt fails the
    same way). Once the owner is destroyed the VMID can be used."""
    t = Rmi(machine)
    owner = _create(t, vmid_=150)
    rd, base, fields = _inputs(t, vmid_=150)
    params = _params(t, fields)
    _create_fails(machine, t, rd, params, base, owner.rd)
    assert vmid.in_use(machine.control, 150)
    _create_fails(machine, t, rd, params, base, owner.rd)
    assert invariants(machine).ok
    _destroy(t, owner)
    assert t.smc(F.RMI_REALM_CREATE, rd, params)[0] == SUCCESS


def test_create_vmid_boundaries_succeed(machine: Machine) -> None:
    """VMID 0 and VMID 255 (the largest with 8-bit VMIDs) are valid: both realms are created and
    hold their VMIDs; the vmid_valid tests above fail for the right reason."""
    t = Rmi(machine)
    for v in (0, 255):
        realm = _create(t, vmid_=v)
        assert Rd(machine.memory, _idx(machine, realm.rd)).params().vmid == v
        assert vmid.in_use(machine.control, v)
    assert invariants(machine).ok


@pytest.mark.parametrize("s2sz, level, which", [(48, 0, 0), (40, 1, 0), (40, 1, 1), (32, 2, 0), (32, 2, 3)])
def test_create_alias(machine: Machine, s2sz: int, level: int, which: int) -> None:
    """ACS alias (RTT_BASE_RD_ALIASED): rd is one of the root RTT granules [rtt_base, rtt_base +
    rtt_num_start x 4 KiB) (first, last and only root) -> RMI_ERROR_INPUT, footprint unchanged;
    the VMID is free afterwards."""
    t = Rmi(machine)
    count = s2tt.num_root_rtts(s2sz, level)
    base = _roots(t, count)
    rd = base + which * GRANULE
    params = _params(t, _fields(s2sz, level, rtt_base=base))
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


def test_create_alias_boundary_succeeds(machine: Machine) -> None:
    """The alias range ends at the last root: an RD in the granule just after the 4 roots of an
    s2sz-32 realm is accepted."""
    t = Rmi(machine)
    base = t.ns_granules(5, align=4 * GRANULE)
    for i in range(4):
        t.delegate(base + i * GRANULE)
    rd = t.delegate(base + 4 * GRANULE)
    params = _params(t, _fields(32, 2, rtt_base=base))
    assert t.smc(F.RMI_REALM_CREATE, rd, params) == (SUCCESS, 0, 0, 0, 0)
    assert invariants(machine).ok


@pytest.mark.parametrize("s2sz, level, offset", [(40, 1, 1), (32, 2, 1), (32, 2, 2), (34, 2, 8)])
def test_create_rtt_align(machine: Machine, s2sz: int, level: int, offset: int) -> None:
    """ACS rtt_align (RTT_UNALIGNED), B4.3.9.2: rtt_base must be aligned to rtt_num_start x 4 KiB.
    The roots are delegated granules starting ``offset`` granules after such an alignment
    (2 roots at an odd granule; 4 roots at 4K and 8K past a 16K boundary; 16 roots 32K past a
    64K boundary) -> RMI_ERROR_INPUT, footprint unchanged, VMID free afterwards. TF-RMM rel0 lacks
    this check (fixed in v0.8.0); rmm-mp follows the specification."""
    t = Rmi(machine)
    count = s2tt.num_root_rtts(s2sz, level)
    base = _roots(t, count, offset)
    rd = t.delegate()
    params = _params(t, _fields(s2sz, level, rtt_base=base))
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


def test_create_rtt_align_single_root_unaligned(machine: Machine) -> None:
    """ACS rtt_align: a single root whose rtt_base is not even granule aligned (8 bytes into a
    delegated granule) -> RMI_ERROR_INPUT, footprint unchanged, VMID free afterwards."""
    t = Rmi(machine)
    base = _roots(t, 1)
    rd = t.delegate()
    params = _params(t, _fields(48, 0, rtt_base=base + 8))
    _create_fails(machine, t, rd, params, base)
    _vmid_is_free(machine, t, 100)


def test_create_rd_align(machine: Machine) -> None:
    """ACS rd_align (RD_UNALIGNED): rd 8 bytes into a delegated granule -> RMI_ERROR_INPUT,
    footprint unchanged, VMID free afterwards."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t)
    _create_fails(machine, t, rd + 8, _params(t, fields), rd, base)
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_create_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound (RD_DEV_MEM, RD_OUTSIDE_OF_PERMITTED_PA): rd is an MMIO PA or 2^pa_bits ->
    RMI_ERROR_INPUT, footprint unchanged, VMID free afterwards."""
    t = Rmi(machine)
    _, base, fields = _inputs(t)
    rd = _mmio(machine) if where == "mmio" else _beyond_pa(machine)
    _create_fails(machine, t, rd, _params(t, fields), base)
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("state", ["NS", "RD", "RTT", "REC", "DATA"])
def test_create_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _RD, _REC, _RTT, _DATA): rd is an NS granule, another
    realm's RD, another realm's root RTT, or that realm's REC or DATA granule -> RMI_ERROR_INPUT, footprint unchanged,
    the other realm untouched, VMID free afterwards."""
    t = Rmi(machine)
    other = _create(t, vmid_=7)
    _, base, fields = _inputs(t)
    params = _params(t, fields)
    rd = _in_state(t, other, state)
    _create_fails(machine, t, rd, params, base, other.rd, other.roots[0])
    assert Rd(machine.memory, _idx(machine, other.rd)).state == RealmState.NEW
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("s2sz, level, bad", [(48, 0, 0), (32, 2, 2), (32, 2, 3), (40, 1, 0)])
def test_create_rtt_state_not_delegated(machine: Machine, s2sz: int, level: int, bad: int) -> None:
    """ACS rtt_state (RTT_BASE_UNDELEGATED): one of the root granules (the only one, root 2 or
    3 of four, root 0 of two) is still NS while the others are DELEGATED -> RMI_ERROR_INPUT,
    footprint unchanged (the delegated roots stay DELEGATED and zero), VMID free afterwards."""
    t = Rmi(machine)
    count = s2tt.num_root_rtts(s2sz, level)
    base = t.ns_granules(count, align=count * GRANULE)
    roots = [base + i * GRANULE for i in range(count)]
    for i, pa in enumerate(roots):
        if i != bad:
            t.delegate(pa)
    rd = t.delegate()
    _create_fails(machine, t, rd, _params(t, _fields(s2sz, level, rtt_base=base)), *roots)
    table = machine.granule_table(0)
    assert [table.state(_idx(machine, pa)) for pa in roots] == [
        GranuleState.NS if i == bad else GranuleState.DELEGATED for i in range(count)]
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("where", ["past-dram", "mmio", "beyond-pa-range"])
def test_create_rtt_state_not_delegable(machine: Machine, where: str) -> None:
    """ACS rtt_state (B3.77 RttsStateEqual: every root must be delegable): rtt_base (2 roots) just
    past the end of DRAM, in MMIO, or at 2^pa_bits -> RMI_ERROR_INPUT, footprint unchanged, VMID
    free afterwards."""
    t = Rmi(machine)
    rd = t.delegate()
    base = {"past-dram": machine.dram_base + machine.granule_count * GRANULE, "mmio": _mmio(machine),
            "beyond-pa-range": _beyond_pa(machine)}[where]
    _create_fails(machine, t, rd, _params(t, _fields(40, 1, rtt_base=base)))
    _vmid_is_free(machine, t, 100)


@pytest.mark.parametrize("state", ["RD", "RTT", "REC"])
def test_create_rtt_state_other_states(machine: Machine, state: str) -> None:
    """ACS rtt_state: the only root is another realm's RD or root RTT, or root 1 of two is that
    realm's REC -> RMI_ERROR_INPUT, footprint unchanged, the other realm untouched, VMID
    free afterwards."""
    t = Rmi(machine)
    other = _create(t, vmid_=7)
    rd = t.delegate()
    if state == "REC":
        base = t.ns_granules(2, align=2 * GRANULE)
        t.delegate(base)
        _rec(t, other, base + GRANULE)
        _create_fails(machine, t, rd, _params(t, _fields(40, 1, rtt_base=base)), base, base + GRANULE)
    else:
        base = other.rd if state == "RD" else other.roots[0]
        _create_fails(machine, t, rd, _params(t, _fields(48, 0, rtt_base=base)), other.rd, other.roots[0])
    assert Rd(machine.memory, _idx(machine, other.rd)).state == RealmState.NEW
    _vmid_is_free(machine, t, 100)


def test_create_failing_on_its_rd_never_holds_the_vmid(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A REALM_CREATE bound to fail (its RD is not delegated) must not hold its VMID while it
    runs: a valid REALM_CREATE naming the same VMID on another CPU, inside that window, succeeds,
    as it does in either serial order (the failing command has no footprint). The old code
    reserved the VMID before looking at the RD, as TF-RMM rel0 does, and both failed."""
    t = Rmi(machine)
    other = Rmi(machine, cpu=1, first_granule=4000)
    rd1, base1, fields1 = _inputs(other, vmid_=5)
    params1 = _params(other, fields1)
    _, base0, fields0 = _inputs(t, vmid_=5)
    params0, undelegated_rd = _params(t, fields0), t.ns_granule()
    lock_sorted = GranuleTable.lock_sorted
    answers: list[tuple[int, ...]] = []
    fired: list[bool] = []

    def other_cpu_first(table, wanted):  # type: ignore[no-untyped-def]
        if not fired:       # once: CPU 0's own REALM_CREATE, after its parameter checks
            fired.append(True)
            answers.append(other.smc(RmiFid.RMI_REALM_CREATE, rd1, params1, X3, X4))
        return lock_sorted(table, wanted)

    monkeypatch.setattr(GranuleTable, "lock_sorted", other_cpu_first)
    assert t.smc(RmiFid.RMI_REALM_CREATE, undelegated_rd, params0, X3, X4) == (ERROR_INPUT, 0, 0, 0, 0)
    monkeypatch.undo()
    assert answers == [(SUCCESS, 0, 0, 0, 0)]
    assert vmid.in_use(machine.control, 5)
    assert machine.granule_table(0).state(_idx(machine, rd1)) == GranuleState.RD
    assert machine.granule_table(0).state(_idx(machine, undelegated_rd)) == GranuleState.NS
    report = invariants(machine)
    assert report.ok, str(report)


@pytest.mark.parametrize("alias", ["rd", "root", "none"])
def test_create_params_delegated_after_the_copy(machine: Machine, monkeypatch: pytest.MonkeyPatch,
                                                alias: str) -> None:
    """params_pas again: the params are copied before any lock (rule 8); another CPU delegating
    the page between that copy and the locks fails the command (INPUT, nothing changes, the
    VMID free again). The old code (and TF-RMM rel0, which never looks at the page again)
    returned SUCCESS, even with the params page as the RD or the root RTT, which no serial
    order gives: DELEGATE first fails params_pas, REALM_CREATE first fails rd_state or
    rtt_state."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t, s2sz=48)     # one root
    params = t.ns_granule()
    if alias == "root":
        fields["rtt_base"] = params
    if alias == "rd":
        rd = params
    machine.ns_write(params, bytes(RMI_REALM_PARAMS.pack(**fields)))
    other = Rmi(machine, cpu=1)
    delegate_after_the_copy(monkeypatch, rmi_realm, other, params)
    pas = tuple(pa for pa in (rd, base) if pa != params)
    before = snapshot(machine, *pas)
    assert t.smc(RmiFid.RMI_REALM_CREATE, rd, params, X3, X4) == (ERROR_INPUT, 0, 0, 0, 0)
    monkeypatch.undo()
    delegated = f"granule {_idx(machine, params)}: "     # the other CPU's DELEGATE, nothing else
    assert [d for d in before.diff(snapshot(machine, *pas)) if not d.startswith(delegated)] == []
    assert machine.granule_table(0).state(_idx(machine, params)) == GranuleState.DELEGATED
    _vmid_is_free(machine, t, 100)


def test_create_reads_the_params_once(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host CPU rewrites the params page right after the RMM reads it (host_rewrites_after_each_read):
    s2sz, the root count, the hash algorithm, the flags, the VMID and the RPV all change, to
    values that fail params_supp and rtt_num_level. REALM_CREATE reads the page once and
    validates and uses only that copy (B1.5: an in-memory value is a context value; TF-RMM
    copies it with ns_buffer_read): SUCCESS, one read, and the RD holds the first version's
    parameters, RPV and RIM. A second read (the root count or the hash algorithm read again
    after the checks) would build the realm from the rewrite."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t, s2sz=40, rpv=b"first")
    params = _params(t, fields)
    rewrite = _fields(s2sz=52, level=0, num=16, vmid_=101, rtt_base=base + GRANULE, hash_algo=1,
                      flags=int(RmiRealmFlags.SVE), rpv=b"second")
    reads = host_rewrites_after_each_read(monkeypatch, machine, params, [bytes(RMI_REALM_PARAMS.pack(**rewrite))])
    assert t.smc(F.RMI_REALM_CREATE, rd, params, X3, X4) == (SUCCESS, 0, 0, 0, 0)
    monkeypatch.undo()
    r = Rd(machine.memory, _idx(machine, rd))
    p = r.params()
    assert (p.ipa_width, p.rtt_level_start, p.rtt_num_start, p.rtt_base, p.vmid, p.hash_algo, p.flags) == (
        40, fields["rtt_level_start"], fields["rtt_num_start"], base, 100, 0, 0)
    assert r.rpv == b"first".ljust(64, b"\0")
    assert r.measurement(0) == hashlib.sha256(_rim_image(0, 40, 0, 1, 1, 0, 0)).digest() + bytes(32)
    assert vmid.in_use(machine.control, 100) and not vmid.in_use(machine.control, 101)
    assert len(reads) == 1
    report = invariants(machine)
    assert report.ok, str(report)


def test_create_reads_each_field_at_the_spec_width(machine: Machine) -> None:
    """docs/deviations.md rows "host structures" and "RmiRealmParams s2sz, sve_vl, ...": every
    byte of RmiRealmParams past a field's width (B4.4.12: s2sz, sve_vl, num_bps, num_wps,
    pmu_num_ctrs and hash_algo UInt8 in 8-byte slots, vmid UInt16, rtt_num_start UInt32) holds
    0xA5 junk. REALM_CREATE succeeds (no failure condition names an SBZ bit) and the RD holds
    the fields' own values; the RIM is that of the fields alone. Reading num_bps as 32 bits, as
    TF-RMM rel0 does, would fail params_supp with RMI_ERROR_INPUT."""
    t = Rmi(machine)
    rd, base, fields = _inputs(t, s2sz=40, flags=int(RmiRealmFlags.PMU), pmu_num_ctrs=2, num_bps=2, num_wps=3)
    image = bytearray(RMI_REALM_PARAMS.pack(**fields))
    junk = [(offset + 1, 7) for offset in (0x08, 0x10, 0x18, 0x20, 0x28, 0x30)] + [(0x802, 6), (0x81C, 4)]
    for start, length in junk:
        assert image[start:start + length] == bytes(length)    # the SBZ bytes of the one field
        image[start:start + length] = b"\xa5" * length
    assert t.smc(F.RMI_REALM_CREATE, rd, t.ns_page(bytes(image)), X3, X4) == (SUCCESS, 0, 0, 0, 0)
    r = Rd(machine.memory, _idx(machine, rd))
    p = r.params()
    assert (p.ipa_width, p.sve_vl, p.num_bps, p.num_wps, p.pmu_num_ctrs, p.hash_algo, p.vmid, p.rtt_num_start) == (
        40, 0, 2, 3, 2, 0, 100, fields["rtt_num_start"])
    assert r.measurement(0) == hashlib.sha256(_rim_image(int(RmiRealmFlags.PMU), 40, 0, 2, 3, 2, 0)).digest() + bytes(32)
    report = invariants(machine)
    assert report.ok, str(report)


# -- RMI_REALM_CREATE: success (B4.3.9.3) --------------------------------------------------------


GEOMETRIES = [(32, 2, 4), (34, 2, 16), (39, 1, 1), (40, 1, 2), (40, 0, 1), (43, 1, 16), (44, 0, 1), (48, 0, 1)]


@pytest.mark.parametrize("s2sz, level, count", GEOMETRIES)
def test_create_success_geometry(machine: Machine, s2sz: int, level: int, count: int) -> None:
    """REALM_CREATE for every start level (s2sz 32: level 2, 4 concatenated roots; 34: level 2,
    16; 39: level 1, 1; 40: level 1, 2 and level 0, 1; 43: level 1, 16; 44 and 48: level 0, 1):
    SUCCESS with X1..X4 = 0; RD state RD with refcount 0, roots state RTT with
    refcount 0; realm NEW, rec_count 0, REC aux count 16; parameters and RPV stored; REMs zero;
    RIM = SHA-256 of the measured params image. RTT_READ_ENTRY at the start level reads every
    root entry as (walk level SL, UNASSIGNED, desc 0, RIPAS EMPTY); decoded, the protected half
    is UNASSIGNED EMPTY and the unprotected half UNASSIGNED_NS (the ABI reports both alike).
    No granule but the RD and the roots changes (the params page included)."""
    assert s2tt.num_root_rtts(s2sz, level) == count
    t = Rmi(machine)
    base = _roots(t, count)
    rd = t.delegate()
    fields = _fields(s2sz, level, count, vmid_=42, rtt_base=base, rpv=RPV, num_bps=2, num_wps=3)
    params = _params(t, fields)
    before = realm_snapshot(machine, params)
    assert t.smc(F.RMI_REALM_CREATE, rd, params, X3, X4) == (SUCCESS, 0, 0, 0, 0)
    roots = {base + i * GRANULE for i in range(count)}
    assert before.changed(realm_snapshot(machine, params)) == {rd, *roots}   # the footprint only

    table = machine.granule_table(0)
    assert (table.state(_idx(machine, rd)), table.refcount(_idx(machine, rd))) == (GranuleState.RD, 0)
    for i in range(count):
        assert (table.state(_idx(machine, base) + i), table.refcount(_idx(machine, base) + i)) == (GranuleState.RTT, 0)
    desc = Rd(machine.memory, _idx(machine, rd))
    assert (desc.state, desc.rec_count, desc.num_rec_aux) == (RealmState.NEW, 0, 16)
    p = desc.params()
    assert (p.ipa_width, p.rtt_level_start, p.rtt_num_start, p.rtt_base, p.vmid, p.hash_algo) == (
        s2sz, level, count, base, 42, 0)
    assert desc.rpv == RPV
    assert all(desc.measurement(slot) == bytes(64) for slot in range(1, 5))
    assert desc.measurement(0) == hashlib.sha256(_rim_image(0, s2sz, 0, 2, 3, 0, 0)).digest() + bytes(32)
    assert vmid.in_use(machine.control, 42)

    size = s2tt.block_size(level)
    half = 1 << (s2sz - 1)
    for n in range(count):
        for i in range(s2tt.ENTRIES):
            ipa = (n * s2tt.ENTRIES + i) * size
            if ipa >= 1 << s2sz:
                break
            assert t.smc(F.RMI_RTT_READ_ENTRY, rd, ipa, level) == (SUCCESS, level, 0, 0, 0), hex(ipa)
            kind, ripas = s2tt.decode(s2tt.read(machine.memory, _idx(machine, base) + n, i), level)
            assert (kind, ripas) == ((Kind.UNASSIGNED, s2tt.RIPAS_EMPTY) if ipa < half else (Kind.UNASSIGNED_NS, 0))
    report = invariants(machine)
    assert report.ok, str(report)


def test_create_rim_matches_external_vector(machine: Machine) -> None:
    """B4.3.9.4: the RIM after REALM_CREATE with flags 0, s2sz 48, sve_vl 0, num_bps 5, num_wps 3,
    pmu_num_ctrs 0 and SHA-256 equals the external vector (veraison/cca-realm-measurements,
    tests/vectors/measurement/rim-realm-create-external.json), zero padded to 64 bytes. The RPV,
    VMID and RTT fields (set to non-zero values here) are not measured."""
    vector = json.loads(VECTOR.read_text())
    measured = vector["measured_rmi_realm_params"]
    expected = bytes.fromhex(vector["expected_rim_hex"])
    assert len(expected) == 32 and measured["hash_algo"] == 0
    t = Rmi(machine)
    realm = _create(t, s2sz=measured["s2sz"], vmid_=77, rpv=RPV, flags=measured["flags"],
                    sve_vl=measured["sve_vl"], num_bps=measured["num_bps"], num_wps=measured["num_wps"],
                    pmu_num_ctrs=measured["pmu_num_ctrs"], hash_algo=measured["hash_algo"])
    assert Rd(machine.memory, _idx(machine, realm.rd)).measurement(0) == expected + bytes(32)


@pytest.mark.parametrize("flags, ctrs", [(0, 0), (RmiRealmFlags.PMU, 31), (RmiRealmFlags.PMU, 1)])
def test_create_rim_sha512_independent(machine: Machine, flags: int, ctrs: int) -> None:
    """B4.3.9.4 with SHA-512: the RIM is hashlib.sha512 of the 4 KiB measured params image built
    with struct in this test (flags u64 at 0x00, s2sz 0x08, sve_vl 0x10, num_bps 0x18, num_wps
    0x20, pmu_num_ctrs 0x28, hash_algo 0x30), all 64 bytes used. Two realms that differ only in
    RPV, VMID and root base get the same RIM."""
    t = Rmi(machine)
    expected = hashlib.sha512(_rim_image(flags, 48, 0, 5, 3, ctrs, 1)).digest()
    a = _create(t, vmid_=10, rpv=RPV, flags=flags, num_bps=5, num_wps=3, pmu_num_ctrs=ctrs, hash_algo=1)
    b = _create(t, vmid_=11, rpv=bytes(64), flags=flags, num_bps=5, num_wps=3, pmu_num_ctrs=ctrs, hash_algo=1)
    assert a.roots != b.roots
    for realm in (a, b):
        assert Rd(machine.memory, _idx(machine, realm.rd)).measurement(0) == expected


def test_create_rim_depends_on_measured_fields(machine: Machine) -> None:
    """Each measured field changes the RIM (and the RIM is what hashlib says for each): num_bps
    2 vs 3, num_wps 1 vs 2, s2sz 47 vs 48, PMU flag, SHA-256 vs SHA-512 (a 32-byte digest zero
    padded vs a 64-byte one)."""
    t = Rmi(machine)
    variants = [dict(num_bps=2), dict(num_bps=3), dict(num_wps=2), dict(s2sz=47),
                dict(flags=RmiRealmFlags.PMU, pmu_num_ctrs=4), dict(hash_algo=1)]
    rims = set()
    for n, extra in enumerate(variants):
        fields = dict(s2sz=48, num_bps=1, num_wps=1, flags=0, pmu_num_ctrs=0, hash_algo=0)
        fields.update(extra)
        s2sz = fields.pop("s2sz")
        realm = _create(t, s2sz=s2sz, vmid_=20 + n, **fields)
        rim = Rd(machine.memory, _idx(machine, realm.rd)).measurement(0)
        image = _rim_image(fields["flags"], s2sz, 0, fields["num_bps"], fields["num_wps"],
                           fields["pmu_num_ctrs"], fields["hash_algo"])
        digest = (hashlib.sha512 if fields["hash_algo"] else hashlib.sha256)(image).digest()
        assert rim == digest.ljust(64, b"\0")
        rims.add(rim)
    assert len(rims) == len(variants)


def test_create_unused_fields_are_measured_not_checked(machine: Machine) -> None:
    """sve_vl is checked only with flags.SVE and pmu_num_ctrs only with flags.PMU (rmi.md 5,
    REALM_CREATE steps 5-6): sve_vl 15 and pmu_num_ctrs 200 with both flags clear are accepted,
    and the RIM still measures them as given (B4.3.9.4 copies the fields regardless)."""
    t = Rmi(machine)
    realm = _create(t, sve_vl=15, pmu_num_ctrs=200)
    image = _rim_image(0, 48, 15, 1, 1, 200, 0)
    assert Rd(machine.memory, _idx(machine, realm.rd)).measurement(0) == hashlib.sha256(image).digest() + bytes(32)


# -- RMI_REALM_ACTIVATE (B4.3.8) -----------------------------------------------------------------


def _activate_fails(machine: Machine, t: Rmi, rd: int, expected: int, *pas: int) -> None:
    before = snapshot(machine, rd, *pas)
    regs = t.smc(F.RMI_REALM_ACTIVATE, rd, 0x22, X3, X4)
    assert regs == (expected, 0, 0, 0, 0)
    assert before.diff(snapshot(machine, rd, *pas)) == []


def test_activate_rd_align(machine: Machine) -> None:
    """ACS rd_align (RD_UNALIGNED): REALM_ACTIVATE of rd + 8 -> RMI_ERROR_INPUT, footprint
    unchanged; the realm stays NEW."""
    t = Rmi(machine)
    realm = _create(t)
    _activate_fails(machine, t, realm.rd + 8, ERROR_INPUT, realm.rd)
    assert Rd(machine.memory, _idx(machine, realm.rd)).state == RealmState.NEW


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_activate_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound (RD_DEV_MEM_MMIO, RD_OUTSIDE_OF_PERMITTED_PA) -> RMI_ERROR_INPUT, footprint
    unchanged."""
    t = Rmi(machine)
    _create(t)
    _activate_fails(machine, t, _mmio(machine) if where == "mmio" else _beyond_pa(machine), ERROR_INPUT)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_activate_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _DELEGATED, RD_RTT, RD_REC, RD_DATA): REALM_ACTIVATE
    of a granule that is not an RD (the realm's REC and DATA included) -> RMI_ERROR_INPUT, footprint
    unchanged; the realm whose root was named stays NEW."""
    t = Rmi(machine)
    realm = _create(t)
    _activate_fails(machine, t, _in_state(t, realm, state), ERROR_INPUT, realm.rd)
    assert Rd(machine.memory, _idx(machine, realm.rd)).state == RealmState.NEW
    assert invariants(machine).ok


def test_activate_realm_state_active(machine: Machine) -> None:
    """ACS realm_state: REALM_ACTIVATE of an ACTIVE realm -> (RMI_ERROR_REALM, index 0), footprint
    (RD contents included) unchanged; the realm stays ACTIVE."""
    t = Rmi(machine)
    realm = _create(t)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd) == (SUCCESS, 0, 0, 0, 0)
    _activate_fails(machine, t, realm.rd, ERROR_REALM)
    assert Rd(machine.memory, _idx(machine, realm.rd)).state == RealmState.ACTIVE
    assert invariants(machine).ok


def test_activate_realm_state_system_off(machine: Machine) -> None:
    """ACS realm_state (REALM_SYSTEM_OFF): a realm in SYSTEM_OFF (set white box under the RD lock,
    as PSCI SYSTEM_OFF from the realm would) -> (RMI_ERROR_REALM, 0), footprint unchanged."""
    t = Rmi(machine)
    realm = _create(t)
    table = machine.granule_table(host_owner(os.getpid()))
    with table.lock_known(_idx(machine, realm.rd), GranuleState.RD):
        Rd(machine.memory, _idx(machine, realm.rd)).set_state(RealmState.SYSTEM_OFF)
    _activate_fails(machine, t, realm.rd, ERROR_REALM)
    assert Rd(machine.memory, _idx(machine, realm.rd)).state == RealmState.SYSTEM_OFF


def test_activate_rd_state_before_realm_state(machine: Machine) -> None:
    """Ordering [rd_bound, rd_state] < [realm_state] (B4.3.8.2.1): rd is a DATA granule whose
    bytes read as an ACTIVE realm -> RMI_ERROR_INPUT, not RMI_ERROR_REALM; footprint unchanged."""
    t = Rmi(machine)
    realm = _create(t)
    data = t.data_posing_as_rd(realm, 0x2000, RealmState.ACTIVE)
    _activate_fails(machine, t, data, ERROR_INPUT, realm.rd, *realm.roots)



def test_activate_success(machine: Machine) -> None:
    """REALM_ACTIVATE of a NEW realm: SUCCESS (X1..X4 = 0), realm ACTIVE; no granule's
    state, refcount, lock or PAS changes, and the RIM is unchanged."""
    t = Rmi(machine)
    realm = _create(t)
    rd = Rd(machine.memory, _idx(machine, realm.rd))
    rim = rd.measurement(0)
    before = snapshot(machine, *realm.roots)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd, 0x22, X3, X4) == (SUCCESS, 0, 0, 0, 0)
    assert before.diff(snapshot(machine, *realm.roots)) == []
    assert (rd.state, rd.measurement(0)) == (RealmState.ACTIVE, rim)
    assert invariants(machine).ok


# -- RMI_REALM_DESTROY (B4.3.10) ---------------------------------------------------------------


def _destroy_fails(machine: Machine, t: Rmi, rd: int, expected: int, *pas: int) -> None:
    before = snapshot(machine, rd, *pas)
    regs = t.smc(F.RMI_REALM_DESTROY, rd, 0x22, X3, X4)
    assert regs == (expected, 0, 0, 0, 0)
    assert before.diff(snapshot(machine, rd, *pas)) == []


def test_destroy_rd_align(machine: Machine) -> None:
    """ACS rd_align: REALM_DESTROY of rd + 8 -> RMI_ERROR_INPUT, footprint unchanged, VMID kept."""
    t = Rmi(machine)
    realm = _create(t)
    _destroy_fails(machine, t, realm.rd + 8, ERROR_INPUT, realm.rd, *realm.roots)
    assert vmid.in_use(machine.control, realm.vmid)


@pytest.mark.parametrize("where", ["mmio", "beyond-pa-range"])
def test_destroy_rd_bound(machine: Machine, where: str) -> None:
    """ACS rd_bound (RD_OUTSIDE_OF_PERMITTED_PA, RD_DEV_MEM) -> RMI_ERROR_INPUT, footprint
    unchanged."""
    t = Rmi(machine)
    _create(t)
    _destroy_fails(machine, t, _mmio(machine) if where == "mmio" else _beyond_pa(machine), ERROR_INPUT)


@pytest.mark.parametrize("state", ["NS", "DELEGATED", "RTT", "REC", "DATA"])
def test_destroy_rd_state(machine: Machine, state: str) -> None:
    """ACS rd_state (RD_STATE_UNDELEGATED, _DELEGATED, _RTT, _REC, _DATA): REALM_DESTROY of a
    granule that is not an RD (the realm's root, REC or DATA granule included) -> RMI_ERROR_INPUT,
    footprint unchanged; the realm whose root RTT
    was named survives with its VMID."""
    t = Rmi(machine)
    realm = _create(t)
    _destroy_fails(machine, t, _in_state(t, realm, state), ERROR_INPUT, realm.rd, *realm.roots)
    assert machine.granule_table(0).state(_idx(machine, realm.rd)) == GranuleState.RD
    assert vmid.in_use(machine.control, realm.vmid)
    assert invariants(machine).ok


def test_destroy_realm_live_rec(machine: Machine) -> None:
    """ACS realm_live (REALM_LIVE, a REC exists): REALM_DESTROY of a NEW or ACTIVE realm with one
    REC (REC_CREATE: the RD's refcount is 1) -> (RMI_ERROR_REALM, 0), footprint unchanged, VMID
    still reserved. After REC_DESTROY the realm is destroyed and its VMID is free."""
    t = Rmi(machine)
    realm = _create(t)
    rec = _rec(t, realm)
    assert machine.granule_table(0).refcount(_idx(machine, realm.rd)) == 1
    _destroy_fails(machine, t, realm.rd, ERROR_REALM, *realm.roots, rec)
    assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    _destroy_fails(machine, t, realm.rd, ERROR_REALM, *realm.roots, rec)
    assert vmid.in_use(machine.control, realm.vmid)
    assert t.smc(F.RMI_REC_DESTROY, rec)[0] == SUCCESS
    _destroy(t, realm)
    _vmid_is_free(machine, t, realm.vmid)


@pytest.mark.parametrize("s2sz, level, ipa", [(48, 0, 0), (48, 0, 1 << 47), (40, 1, 0), (40, 1, 1 << 39),
                                              (32, 2, 3 << 30)])
def test_destroy_realm_live_rtt(machine: Machine, s2sz: int, level: int, ipa: int) -> None:
    """ACS realm_live (an RTT below a root): REALM_DESTROY while a root RTT holds a TABLE entry
    (in root 0, in root 1 of two, in root 3 of four; protected and unprotected halves) ->
    (RMI_ERROR_REALM, 0), footprint unchanged; the VMID stays reserved (TF-RMM fix f7c34940: it is
    freed only after every check passed), so another REALM_CREATE with it fails. Once the RTT
    is destroyed the realm can be destroyed and its VMID reused."""
    t = Rmi(machine)
    realm = _create(t, s2sz=s2sz, level=level, vmid_=60)
    rtt = t.delegate()
    assert t.smc(F.RMI_RTT_CREATE, realm.rd, rtt, ipa, level + 1)[0] == SUCCESS
    _destroy_fails(machine, t, realm.rd, ERROR_REALM, *realm.roots, rtt)
    assert vmid.in_use(machine.control, 60)
    rd2, base2, fields2 = _inputs(t, vmid_=60)
    _create_fails(machine, t, rd2, _params(t, fields2), base2)
    assert t.smc(F.RMI_RTT_DESTROY, realm.rd, ipa, level + 1)[:2] == (SUCCESS, rtt)
    _destroy(t, realm)
    _vmid_is_free(machine, t, 60)


def test_destroy_moves_the_stage2_epoch_only_when_it_succeeds(machine: Machine) -> None:
    """REALM_DESTROY ends the realm's stage 2 for every CPU's kept translations (hw/tlb.py: a
    realm made again on the same RD restarts its TLB generation from 0, so the CPUs must not
    trust an equal generation): the control block's stage-2 epoch moves by one on SUCCESS, and
    not at all when the call fails (realm_live: a REC exists), which changes nothing."""
    t = Rmi(machine)
    realm = _create(t)
    rec = _rec(t, realm)

    def epoch() -> int:
        return machine.control.view.load_u64(OFF_STAGE2_EPOCH)   # type: ignore[union-attr]
    before = epoch()
    _destroy_fails(machine, t, realm.rd, ERROR_REALM, *realm.roots, rec)
    assert epoch() == before
    assert t.smc(F.RMI_REC_DESTROY, rec)[0] == SUCCESS
    _destroy(t, realm)
    assert epoch() == before + 1


def test_destroy_rd_state_before_realm_live(machine: Machine) -> None:
    """Ordering [rd_bound, rd_state] < [realm_live] (B4.3.10.2.1): rd is the realm's root RTT
    holding a live TABLE entry (refcount 1, as an RD with a REC would have) -> RMI_ERROR_INPUT,
    not RMI_ERROR_REALM; footprint unchanged, the realm and its VMID survive."""
    t = Rmi(machine)
    realm = _create(t)
    t.rtts(realm, 0, 1)
    root = realm.roots[0]
    assert machine.granule_table(0).refcount(_idx(machine, root)) == 1
    _destroy_fails(machine, t, root, ERROR_INPUT, realm.rd, *realm.roots)
    assert vmid.in_use(machine.control, realm.vmid)



@pytest.mark.parametrize("state", ["NEW", "ACTIVE", "SYSTEM_OFF"])
@pytest.mark.parametrize("s2sz, level", [(48, 0), (40, 1), (32, 2)])
def test_destroy_success(machine: Machine, state: str, s2sz: int, level: int) -> None:
    """REALM_DESTROY of a NEW, ACTIVE or SYSTEM_OFF realm (no realm-state check, B4.3.10) with 1,
    2 or 4 roots, after an RTT was created and destroyed again (root entry UNASSIGNED DESTROYED,
    refcount back to 0): SUCCESS (X4 = 0); the RD and every root become DELEGATED with refcount
    0 and zero contents; the VMID is freed (a new realm can use it); invariants hold. Only the
    RD and root granules change."""
    t = Rmi(machine)
    realm = _create(t, s2sz=s2sz, level=level, vmid_=61, rpv=RPV)
    rtt = t.delegate()
    assert t.smc(F.RMI_RTT_CREATE, realm.rd, rtt, 0, level + 1)[0] == SUCCESS
    assert t.smc(F.RMI_RTT_DESTROY, realm.rd, 0, level + 1)[0] == SUCCESS
    if state == "ACTIVE":
        assert t.smc(F.RMI_REALM_ACTIVATE, realm.rd)[0] == SUCCESS
    elif state == "SYSTEM_OFF":
        with machine.granule_table(host_owner(os.getpid())).lock_known(_idx(machine, realm.rd), GranuleState.RD):
            Rd(machine.memory, _idx(machine, realm.rd)).set_state(RealmState.SYSTEM_OFF)
    before = snapshot(machine)
    assert t.smc(F.RMI_REALM_DESTROY, realm.rd, 0x22, X3, X4) == (SUCCESS, 0, 0, 0, 0)
    after = snapshot(machine)
    table = machine.granule_table(0)
    mine = [_idx(machine, pa) for pa in (realm.rd, *realm.roots)]
    for idx in mine:
        assert (table.state(idx), table.refcount(idx)) == (GranuleState.DELEGATED, 0)
        assert machine.memory.is_zero(idx)
    changed = [i for i, (a, b) in enumerate(zip(before.words, after.words)) if a != b]
    assert sorted(changed) == sorted(mine)
    assert before.gpt == after.gpt and before.locks == after.locks
    assert not vmid.in_use(machine.control, 61)
    _vmid_is_free(machine, t, 61)
    # The freed granules can be reused for a new realm.
    assert t.smc(F.RMI_REALM_CREATE, realm.rd, _params(t, _fields(s2sz, level, vmid_=62, rtt_base=realm.roots[0])))[0] \
        == SUCCESS
    assert invariants(machine).ok


def test_destroy_twice(machine: Machine) -> None:
    """A second REALM_DESTROY of the same (now DELEGATED) RD -> RMI_ERROR_INPUT, unchanged."""
    t = Rmi(machine)
    realm = _create(t)
    _destroy(t, realm)
    _destroy_fails(machine, t, realm.rd, ERROR_INPUT, *realm.roots)
    assert invariants(machine).ok


# Every command that names an RD, with the arguments that follow it (a ``None`` is replaced by a
# fresh delegated granule, so only the RD can fail the call).
_NULL_REALM_CALLS = {
    "REALM_ACTIVATE": (F.RMI_REALM_ACTIVATE,),
    "DATA_CREATE": (F.RMI_DATA_CREATE, None, 0x1000, "src", 0),
    "DATA_CREATE_UNKNOWN": (F.RMI_DATA_CREATE_UNKNOWN, None, 0x1000),
    "DATA_DESTROY": (F.RMI_DATA_DESTROY, 0x1000),
    "RTT_INIT_RIPAS": (F.RMI_RTT_INIT_RIPAS, 0x1000, 0x2000),
    "RTT_CREATE": (F.RMI_RTT_CREATE, None, 0, 1),
    "RTT_DESTROY": (F.RMI_RTT_DESTROY, 0, 1),
    "RTT_FOLD": (F.RMI_RTT_FOLD, 0, 1),
    "RTT_READ_ENTRY": (F.RMI_RTT_READ_ENTRY, 0, 0),
    "RTT_MAP_UNPROTECTED": (F.RMI_RTT_MAP_UNPROTECTED, 1 << 47, 1, 0x4000_0000 | 0x18 | 0xC0),
    "RTT_UNMAP_UNPROTECTED": (F.RMI_RTT_UNMAP_UNPROTECTED, 1 << 47, 1),
    "REC_AUX_COUNT": (F.RMI_REC_AUX_COUNT,),
    "REC_CREATE": (F.RMI_REC_CREATE, None, "rec_params"),
}


@pytest.mark.parametrize("command", list(_NULL_REALM_CALLS))
def test_destroyed_realm_rd_is_refused(machine: Machine, command: str) -> None:
    """ACS realm_state_null (REALM_NULL, cmd_realm_activate, cmd_data_create, cmd_rtt_init_ripas):
    the rd of a realm that REALM_DESTROY has destroyed is a DELEGATED granule again (rd_state),
    so every command naming it -> (RMI_ERROR_INPUT, 0, 0, 0, 0), whatever the RD held before:
    the RD, its roots and the other granules named are unchanged, no VMID or lock is left
    behind (invariant checker)."""
    t = Rmi(machine)
    realm = _create(t, vmid_=7)
    _destroy(t, realm)
    fid, *rest = _NULL_REALM_CALLS[command]
    fill = {None: t.delegate, "src": lambda: t.ns_page(b"realm image"), "rec_params": lambda: t.rec_params(0)}
    args = [fill[a]() if a is None or isinstance(a, str) else a for a in rest]
    named = [a for a, spec in zip(args, rest) if spec is None or isinstance(spec, str)]
    before = snapshot(machine, realm.rd, *realm.roots, *named)
    assert t.smc(fid, realm.rd, *args) == (ERROR_INPUT, 0, 0, 0, 0)
    assert before.diff(snapshot(machine, realm.rd, *realm.roots, *named)) == []
    assert not vmid.in_use(machine.control, 7)
    assert invariants(machine).ok
