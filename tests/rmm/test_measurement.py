"""The Realm Initial Measurement (DEN0137 1.0-rel0 A7.1.1, B4.3.1.4, B4.3.9.4, B4.3.12.4, B4.3.18.4)
against an independent computation.

The reference below is written from the spec layouts (shared/spec/rsi-attest.md section 3 and
the spec's RmmMeasurementDescriptor* types) with hashlib and struct only; it deliberately does
not import rmm_mp.rmm.measurement, so a wrong layout there cannot hide behind a shared helper.
The realm-create image is itself checked against an external vector (veraison's
cca-realm-measurements, tests/vectors/measurement/).

A realm is built step by step (INIT_RIPAS at level 2 and level 3, measured and unmeasured
DATA_CREATE, DATA_CREATE_UNKNOWN, runnable and non-runnable REC_CREATE, RTT commands,
REALM_ACTIVATE) and the RD's RIM is compared with the reference after every step, for SHA-256
and SHA-512.

Other RTT shapes (level 1, concatenated roots, table ends), junk in the host's structures, every
kind of DATA flags, failing commands and random command sequences are compared with a second,
fuller oracle in test_rim_oracle.py.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from rmi_helpers import GRANULE, REALM_ERR, SUCCESS, Realm, Rmi
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants
from rmm_mp.rmm.realm_desc import Rd

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "measurement"
SHA_256, SHA_512 = 0, 1
L2_SIZE = 0x20_0000
RUNNABLE = 1
CONTENT = bytes((i * 13 + 5) & 0xFF for i in range(GRANULE))


# -- the independent reference ------------------------------------------------------------------

def _hash(algo: int, data: bytes | bytearray) -> bytes:
    """H(data) with the realm's algorithm, zero-padded to the 64-byte measurement slot."""
    h = hashlib.sha256(data) if algo == SHA_256 else hashlib.sha512(data)
    return h.digest().ljust(64, b"\0")


def ref_realm_create(algo: int, flags: int, s2sz: int, sve_vl: int, num_bps: int, num_wps: int,
                     pmu_num_ctrs: int) -> bytes:
    """RIM0: H(4 KiB zero image of RmiRealmParams holding only the measured fields)."""
    image = bytearray(GRANULE)
    struct.pack_into("<QQQQQQ", image, 0x00, flags, s2sz, sve_vl, num_bps, num_wps, pmu_num_ctrs)
    struct.pack_into("<B", image, 0x30, algo)
    return _hash(algo, image)


def _descriptor(desc_type: int, rim: bytes) -> bytearray:
    """The 256-byte measurement descriptor head: type, 7 zero bytes, len 0x100, old RIM (64 B)."""
    desc = bytearray(0x100)
    struct.pack_into("<B7xQ64s", desc, 0, desc_type, 0x100, rim.ljust(64, b"\0"))
    return desc


def ref_data(algo: int, rim: bytes, ipa: int, flags: int, content: bytes) -> bytes:
    """DATA (type 0): ipa @0x50, flags @0x58, H(content) @0x60 only with MEASURE_CONTENT."""
    desc = _descriptor(0, rim)
    struct.pack_into("<QQ", desc, 0x50, ipa, flags)
    if flags == 1:
        desc[0x60:0xA0] = _hash(algo, content)
    return _hash(algo, desc)


def ref_rec(algo: int, rim: bytes, flags: int, pc: int, gprs: tuple[int, ...]) -> bytes:
    """REC (type 1): H(4 KiB RmiRecParams image with flags @0, pc @0x200, gprs[0..7] @0x300) @0x50."""
    image = bytearray(GRANULE)
    struct.pack_into("<Q", image, 0x000, flags)
    struct.pack_into("<Q", image, 0x200, pc)
    struct.pack_into("<8Q", image, 0x300, *(tuple(gprs) + (0,) * (8 - len(gprs))))
    desc = _descriptor(1, rim)
    desc[0x50:0x90] = _hash(algo, image)
    return _hash(algo, desc)


def ref_ripas(algo: int, rim: bytes, base: int, top: int, entry_size: int) -> bytes:
    """RIPAS (type 2), one descriptor per RTT entry of ``entry_size`` in [base, top)."""
    for addr in range(base, top, entry_size):
        desc = _descriptor(2, rim)
        struct.pack_into("<QQ", desc, 0x50, addr, addr + entry_size)
        rim = _hash(algo, desc)
    return rim


# -- helpers ----------------------------------------------------------------------------------

def _rim(machine: Machine, realm: Realm) -> bytes:
    return Rd(machine.memory, (realm.rd - machine.dram_base) // GRANULE).measurement(0)


def _ok(ret: tuple[int, ...]) -> tuple[int, ...]:
    assert ret[0] == SUCCESS, f"X0 {ret[0]:#x}"
    return ret


def test_reference_reproduces_external_vector() -> None:
    """The reference's REALM_CREATE image gives veraison's expected RIM (so the reference itself
    is checked against a tool independent of rmm-mp)."""
    vector = json.loads((VECTORS / "rim-realm-create-external.json").read_text())
    p = vector["measured_rmi_realm_params"]
    rim = ref_realm_create(p["hash_algo"], p["flags"], p["s2sz"], p["sve_vl"], p["num_bps"], p["num_wps"],
                           p["pmu_num_ctrs"])
    assert rim == bytes.fromhex(vector["expected_rim_hex"]).ljust(64, b"\0")


def test_realm_create_external_vector(machine: Machine) -> None:
    """REALM_CREATE with the vector's parameters (flags 0, s2sz 48, sve_vl 0, num_bps 5,
    num_wps 3, pmu_num_ctrs 0, SHA-256): the RIM is veraison's, upper 32 bytes zero; REMs zero."""
    vector = json.loads((VECTORS / "rim-realm-create-external.json").read_text())
    p = vector["measured_rmi_realm_params"]
    t = Rmi(machine)
    realm = t.realm(s2sz=p["s2sz"], hash_algo=p["hash_algo"], num_bps=p["num_bps"], num_wps=p["num_wps"])
    assert _rim(machine, realm) == bytes.fromhex(vector["expected_rim_hex"]) + bytes(32)
    rd = Rd(machine.memory, (realm.rd - machine.dram_base) // GRANULE)
    assert [rd.measurement(i) for i in range(1, 5)] == [bytes(64)] * 4


# -- a realm built step by step ----------------------------------------------------------------

class _Tracker:
    """Runs commands on one realm and compares its RIM with the expected value after each."""

    def __init__(self, t: Rmi, algo: int) -> None:
        self.m = t.m
        self.t = t
        self.algo = algo
        self.realm = self.t.realm(s2sz=40, hash_algo=algo)
        self.expected = ref_realm_create(algo, 0, 40, 0, 1, 1, 0)
        self.check("REALM_CREATE")

    def check(self, step: str) -> None:
        assert _rim(self.m, self.realm) == self.expected, f"RIM differs after {step}"


@pytest.mark.parametrize("algo", [SHA_256, SHA_512])
def test_rim_through_realm_build(machine: Machine, algo: int) -> None:
    """After each measured step the RIM equals the reference; unmeasured steps leave it as is."""
    k = _Tracker(Rmi(machine), algo)
    t, realm = k.t, k.realm
    t.rtts(realm, 0, 2)
    k.check("RTT_CREATE")
    # INIT_RIPAS over two level-2 block entries: one descriptor per 2 MiB entry.
    assert _ok(t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, 0, 2 * L2_SIZE))[1] == 2 * L2_SIZE
    k.expected = ref_ripas(algo, k.expected, 0, 2 * L2_SIZE, L2_SIZE)
    k.check("INIT_RIPAS at level 2")
    # INIT_RIPAS at level 3: one descriptor per 4 KiB entry.
    page = 2 * L2_SIZE
    t.rtts(realm, page, 3)
    k.check("RTT_CREATE level 3")
    assert _ok(t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, page, page + 3 * GRANULE))[1] == page + 3 * GRANULE
    k.expected = ref_ripas(algo, k.expected, page, page + 3 * GRANULE, GRANULE)
    k.check("INIT_RIPAS at level 3")
    for n, flags in ((3, 1), (4, 0)):
        _ok(t.smc(F.RMI_DATA_CREATE, realm.rd, t.delegate(), page + n * GRANULE, t.ns_page(CONTENT), flags))
        k.expected = ref_data(algo, k.expected, page + n * GRANULE, flags, CONTENT)
        k.check(f"DATA_CREATE flags {flags}")
    _ok(t.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, t.delegate(), page + 5 * GRANULE))
    k.check("DATA_CREATE_UNKNOWN")
    gprs = tuple(0x1111 * (i + 1) for i in range(8))
    t.rec(realm, runnable=True, pc=0x8_0000, gprs=gprs)
    k.expected = ref_rec(algo, k.expected, RUNNABLE, 0x8_0000, gprs)
    k.check("REC_CREATE runnable")
    t.rec(realm, runnable=False, pc=0x9_0000, gprs=(7,))
    k.check("REC_CREATE not runnable")
    _unmeasured_commands(k)
    _ok(t.smc(F.RMI_REALM_ACTIVATE, realm.rd))
    k.check("REALM_ACTIVATE")
    _refused_when_active(k)
    assert invariants(machine).ok, invariants(machine)


def _unmeasured_commands(k: _Tracker) -> None:
    """RTT commands, READ_ENTRY, MAP/UNMAP_UNPROTECTED, DATA_DESTROY: the RIM does not move."""
    t, realm = k.t, k.realm
    page = 2 * L2_SIZE
    ns_ipa = realm.unprotected
    t.rtts(realm, ns_ipa, 3)
    _ok(t.smc(F.RMI_RTT_MAP_UNPROTECTED, realm.rd, ns_ipa, 3, t.ns_granule()))
    _ok(t.smc(F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, ns_ipa, 3))
    _ok(t.smc(F.RMI_RTT_DESTROY, realm.rd, ns_ipa, 3))
    _ok(t.read_entry(realm, page, 3))
    _ok(t.smc(F.RMI_DATA_DESTROY, realm.rd, page + 4 * GRANULE))
    k.check("RTT, READ_ENTRY, MAP/UNMAP_UNPROTECTED and DATA_DESTROY commands")


def _refused_when_active(k: _Tracker) -> None:
    """DATA_CREATE, INIT_RIPAS and REC_CREATE on an ACTIVE realm: REALM, RIM unchanged."""
    t, realm = k.t, k.realm
    page = 2 * L2_SIZE
    ret = t.smc(F.RMI_DATA_CREATE, realm.rd, t.delegate(), page + 6 * GRANULE, t.ns_page(CONTENT), 1)
    assert ret[0] == REALM_ERR
    assert t.smc(F.RMI_RTT_INIT_RIPAS, realm.rd, page + 6 * GRANULE, page + 7 * GRANULE)[0] == REALM_ERR
    aux = tuple(t.delegate() for _ in range(16))
    params = t.rec_params(len(realm.recs), True, 0x8_0000, (1, 2), aux)
    assert t.smc(F.RMI_REC_CREATE, realm.rd, t.delegate(), params)[0] == REALM_ERR
    k.check("refused DATA_CREATE, INIT_RIPAS and REC_CREATE on an ACTIVE realm")


@pytest.mark.parametrize("algo", [SHA_256, SHA_512])
def test_init_ripas_measures_each_entry(machine: Machine, algo: int) -> None:
    """The same 2 MiB range measured through one level-2 entry and through 512 level-3 entries
    gives the two reference values, which differ: the RIM depends on the host's RTT shape."""
    t = Rmi(machine)
    by_block = _Tracker(t, algo)
    t.rtts(by_block.realm, 0, 2)
    assert _ok(t.smc(F.RMI_RTT_INIT_RIPAS, by_block.realm.rd, 0, L2_SIZE))[1] == L2_SIZE
    by_block.expected = ref_ripas(algo, by_block.expected, 0, L2_SIZE, L2_SIZE)
    by_block.check("INIT_RIPAS of one level-2 entry")

    by_page = _Tracker(t, algo)
    t.rtts(by_page.realm, 0, 3)
    assert _ok(t.smc(F.RMI_RTT_INIT_RIPAS, by_page.realm.rd, 0, L2_SIZE))[1] == L2_SIZE
    by_page.expected = ref_ripas(algo, by_page.expected, 0, L2_SIZE, GRANULE)
    by_page.check("INIT_RIPAS of 512 level-3 entries")
    assert by_page.expected != by_block.expected
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("algo", [SHA_256, SHA_512])
def test_data_create_content_measured_only_with_flag(machine: Machine, algo: int) -> None:
    """Two realms load different bytes at one IPA: with MEASURE_CONTENT the RIMs differ, without
    it they are equal (only ipa and flags are measured)."""
    rims = {}
    t = Rmi(machine)
    for flags in (0, 1):
        for fill in (b"\x01", b"\x02"):
            realm = t.realm(s2sz=40, hash_algo=algo)
            t.rtts(realm, 0, 3)
            content = fill * GRANULE
            rim0 = _rim(machine, realm)
            _ok(t.smc(F.RMI_DATA_CREATE, realm.rd, t.delegate(), 0, t.ns_page(content), flags))
            assert _rim(machine, realm) == ref_data(algo, rim0, 0, flags, content)
            rims[(flags, fill)] = _rim(machine, realm)
    assert rims[(0, b"\x01")] == rims[(0, b"\x02")]
    assert rims[(1, b"\x01")] != rims[(1, b"\x02")]
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("algo", [SHA_256, SHA_512])
def test_rim_depends_on_the_order_of_rec_and_data_create(machine: Machine, algo: int) -> None:
    """ACS measurement_rim_order: two realms with the same parameters each get a runnable REC
    (pc 0, gprs 0) and a measured page of zeros at IPA 0, one REC_CREATE first, the other
    DATA_CREATE first, then REALM_ACTIVATE: their RIMs differ, and each equals the reference
    chain in its own order (the RIM extends a chain; it is not a set of the measured commands)."""
    t = Rmi(machine)
    zeros = bytes(GRANULE)
    rims = []
    for rec_first in (True, False):
        realm = t.realm(s2sz=40, hash_algo=algo)
        t.rtts(realm, 0, 3)
        expected = ref_realm_create(algo, 0, 40, 0, 1, 1, 0)
        for step in (("rec", "data") if rec_first else ("data", "rec")):
            if step == "rec":
                t.rec(realm, runnable=True, pc=0)
                expected = ref_rec(algo, expected, RUNNABLE, 0, ())
            else:
                _ok(t.smc(F.RMI_DATA_CREATE, realm.rd, t.delegate(), 0, t.ns_page(zeros), 1))
                expected = ref_data(algo, expected, 0, 1, zeros)
            assert _rim(machine, realm) == expected, f"RIM after {step} ({'REC' if rec_first else 'DATA'} first)"
        _ok(t.smc(F.RMI_REALM_ACTIVATE, realm.rd))
        rims.append(_rim(machine, realm))
    assert rims[0] != rims[1]
    assert invariants(machine).ok, invariants(machine)
