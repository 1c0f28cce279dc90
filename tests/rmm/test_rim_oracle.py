"""The RIM of realms built through the RMI ABI against an independent oracle (spec_measurement.py,
written from DEN0137 1.0-rel0 with hashlib only), for what test_measurement.py does not cover:

- RTT_INIT_RIPAS at level 1 (a root and a non-root table), level 2 and level 3, over 8 and 16
  concatenated level-2 roots, with a top that falls inside an entry and ranges that cross a
  table's (or a root's) end, so that out_top and the descriptors come from the RTT's shape;
- REALM_CREATE from pages with junk in every byte no member covers and in the unmeasured
  members (rpv, vmid, RTT fields), SVE and PMU realms, SBZ realm flag bits;
- REC_CREATE with SBZ flag bits, junk in the unmeasured mpidr (its SBZ bits too), aux, num_aux
  and every unused byte (the gap after gprs[7] among them), and non-runnable RECs;
- DATA_CREATE with flags 0, 1, 2, 3, 1<<63 | 1 and 1<<63;
- failing measured commands, which leave the RIM as it was;
- a hypothesis property: a random sequence of measured commands, some failing, over one realm.

Every case runs with SHA-256 and SHA-512. The host's pages are written byte for byte by the
oracle's encoders, and the oracle reads the measured fields from those same bytes. Expected
outputs (X0, out_top) are literals or follow from a small shadow of the RTTs kept here, not from
the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spec_measurement as spec
from rmi_helpers import GRANULE, INPUT, SUCCESS, Realm, Rmi, rtt_error, start_level_for
from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.realm_desc import Rd

ALGOS = [spec.RMI_HASH_SHA_256, spec.RMI_HASH_SHA_512]
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
L1, L2, L3 = 1 * GIB, 2 * MIB, 4 * KIB
CONTENT = bytes((i * 31 + 7) & 0xFF for i in range(GRANULE))
OTHER_CONTENT = bytes((i * 17 + 3) & 0xFF for i in range(GRANULE))

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "measurement"

# Fixed inputs (tests/README.md): hypothesis runs derandomized and without an example database.
FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=100)


# -- the oracle itself -----------------------------------------------------------------------------

# The bytes of RmiRealmParams (B4.4.12) and RmiRecParams (B4.4.19) that no member covers, spelled
# out here from the spec's tables rather than derived from the oracle's member lists.
REALM_PARAMS_UNUSED = ((0x009, 0x010), (0x011, 0x018), (0x019, 0x020), (0x021, 0x028), (0x029, 0x030),
                       (0x031, 0x400), (0x440, 0x800), (0x802, 0x808), (0x81C, 0x1000))
REC_PARAMS_UNUSED = ((0x008, 0x100), (0x108, 0x200), (0x208, 0x300), (0x340, 0x800), (0x888, 0x1000))


def _unused(page: bytes, spans: tuple[tuple[int, int], ...]) -> bytes:
    return b"".join(page[lo:hi] for lo, hi in spans)


def test_oracle_layouts() -> None:
    """The oracle's own footing: its REALM_CREATE image gives veraison's RIM (an external vector,
    tests/vectors/measurement); its encoders leave junk in exactly the unused bytes of the spec's
    tables and nowhere else, so a member made too wide or too narrow there cannot hide junk from
    the tests below."""
    vector = json.loads((VECTORS / "rim-realm-create-external.json").read_text())
    page = spec.realm_params_page(junk=0x77, rpv=b"\xff" * 64, vmid=0xFFFF, rtt_base=2**64 - 1,
                                  rtt_level_start=2**64 - 1, rtt_num_start=2**32 - 1,
                                  **vector["measured_rmi_realm_params"])
    assert spec.rim_init(page) == bytes.fromhex(vector["expected_rim_hex"]).ljust(64, b"\0")
    clean = spec.realm_params_page(**vector["measured_rmi_realm_params"])
    assert _unused(page, REALM_PARAMS_UNUSED) == b"\x77" * len(_unused(page, REALM_PARAMS_UNUSED))
    assert not any(_unused(clean, REALM_PARAMS_UNUSED))
    assert page[0x400:0x440] == b"\xff" * 64 and page[0x800:0x802] == b"\xff\xff"
    rec = spec.rec_params_page(junk=0x77, flags=2**64 - 1, mpidr=2**64 - 1, pc=2**64 - 1, gprs=(2**64 - 1,) * 8,
                               num_aux=2**64 - 1, aux=(2**64 - 1,) * 16)
    assert rec == bytes(0x77 if any(lo <= i < hi for lo, hi in REC_PARAMS_UNUSED) else 0xFF
                        for i in range(GRANULE))


# -- a realm whose RIM is followed ------------------------------------------------------------------

@dataclass
class Tracked:
    """A realm made from a raw RmiRealmParams page, with the RIM the oracle expects."""

    t: Rmi
    realm: Realm
    expected: bytes

    @property
    def algo(self) -> int:
        return self.realm.hash_algo

    def rim(self) -> bytes:
        m = self.t.m
        return Rd(m.memory, (self.realm.rd - m.dram_base) // GRANULE).measurement(0)

    def check(self, step: str) -> None:
        assert self.rim() == self.expected, f"RIM differs from the oracle's after {step}"


def create(t: Rmi, vmid: int, junk: int | None = None, start_level: int | None = None,
           **values: int | bytes) -> Tracked:
    """Delegate the RD and roots, REALM_CREATE from a raw page, and check RIM == rim_init(page)."""
    s2sz = int(values.setdefault("s2sz", 40))
    values.setdefault("num_bps", 1)
    values.setdefault("num_wps", 1)
    level = start_level_for(s2sz) if start_level is None else start_level
    count = s2tt.num_root_rtts(s2sz, level)
    first = t.ns_granules(count, align=count * GRANULE)
    roots = tuple(t.delegate(first + i * GRANULE) for i in range(count))
    rd = t.delegate()
    page = spec.realm_params_page(junk, vmid=vmid, rtt_base=roots[0], rtt_level_start=level,
                                  rtt_num_start=count, **values)
    x0 = t.smc(F.RMI_REALM_CREATE, rd, t.ns_page(page))[0]
    assert x0 == SUCCESS, f"REALM_CREATE -> {x0:#x}"
    k = Tracked(t, Realm(rd, roots, s2sz, level, int(values.get("hash_algo", 0)), vmid), spec.rim_init(page))
    k.check("REALM_CREATE")
    return k


def init_ripas(k: Tracked, base: int, top: int, level: int, out_top: int | None) -> None:
    """RTT_INIT_RIPAS(base, top) whose walk ends at ``level``: X1 == out_top and the RIM takes
    one descriptor per entry in [base, out_top); out_top None: RMI_ERROR_RTT at ``level`` and
    the RIM is unchanged."""
    ret = k.t.smc(F.RMI_RTT_INIT_RIPAS, k.realm.rd, base, top)
    if out_top is None:
        assert ret[0] == rtt_error(level), f"INIT_RIPAS({base:#x}, {top:#x}) -> {ret[0]:#x}"
    else:
        assert ret[:2] == (SUCCESS, out_top), f"INIT_RIPAS({base:#x}, {top:#x}) -> {ret[0]:#x}, {ret[1]:#x}"
        k.expected = spec.rim_extend_ripas(k.algo, k.expected, base, out_top, level)
    k.check(f"INIT_RIPAS({base:#x}, {top:#x}) at level {level}")


def data_create(k: Tracked, ipa: int, flags: int, content: bytes, x0: int = SUCCESS) -> None:
    """DATA_CREATE of ``content`` at ``ipa``: X0 as given; the RIM extended only on success."""
    t = k.t
    got = t.smc(F.RMI_DATA_CREATE, k.realm.rd, t.delegate(), ipa, t.ns_page(content), flags)[0]
    assert got == x0, f"DATA_CREATE({ipa:#x}, flags {flags:#x}) -> {got:#x}"
    if x0 == SUCCESS:
        k.expected = spec.rim_extend_data(k.algo, k.expected, ipa, flags, content)
    k.check(f"DATA_CREATE({ipa:#x}, flags {flags:#x}) -> {x0:#x}")


def rec_create(k: Tracked, x0: int = SUCCESS, junk: int | None = None, mpidr: int | None = None,
               num_aux: int | None = None, ns_aux: bool = False, **values: int | tuple[int, ...]) -> None:
    """REC_CREATE of the realm's next REC from a raw RmiRecParams page (flags, pc, gprs as
    given; mpidr of the next index and RMI_REC_AUX_COUNT delegated aux granules unless given,
    the last aux granule left NS with ``ns_aux``); the RIM extended as the oracle says on success."""
    t, realm = k.t, k.realm
    count = t.smc(F.RMI_REC_AUX_COUNT, realm.rd)[1]
    aux = tuple(t.delegate() for _ in range(count - 1)) + (t.ns_granule() if ns_aux else t.delegate(),)
    page = spec.rec_params_page(junk, mpidr=spec.rec_mpidr(len(realm.recs)) if mpidr is None else mpidr,
                                num_aux=count if num_aux is None else num_aux, aux=aux, **values)
    rec = t.delegate()
    got = t.smc(F.RMI_REC_CREATE, realm.rd, rec, t.ns_page(page))[0]
    assert got == x0, f"REC_CREATE -> {got:#x}"
    if x0 == SUCCESS:
        realm.recs.append((rec, aux))
        k.expected = spec.rim_extend_rec(k.algo, k.expected, page)
    k.check(f"REC_CREATE(flags {values.get('flags', 0):#x}) -> {x0:#x}")


# -- RTT_INIT_RIPAS by level and RTT shape -------------------------------------------------------

@pytest.mark.parametrize("algo", ALGOS)
def test_init_ripas_level1_root(machine: Machine, algo: int) -> None:
    """s2sz 40 starts at level 1 with 2 concatenated roots (512 GiB each; the protected half is
    root 0): INIT_RIPAS on the root's own 1 GiB entries, top 4 KiB into an entry: out_top is
    that entry's base, one descriptor per whole 1 GiB entry; then up to the protected top."""
    k = create(Rmi(machine), 1, start_level=1, hash_algo=algo, s2sz=40)
    assert len(k.realm.roots) == 2
    init_ripas(k, 2 * L1, 5 * L1 + L3, 1, 5 * L1)
    init_ripas(k, 5 * L1, 5 * L1 + L3, 1, None)               # no_progress: nothing whole below top
    init_ripas(k, 510 * L1, 512 * L1, 1, 512 * L1)
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("algo", ALGOS)
def test_init_ripas_level1_table(machine: Machine, algo: int) -> None:
    """s2sz 48 starts at level 0: a range over the end of the first level-1 table ends there
    (out_top 512 GiB); from there the walk ends at a level-0 entry, whose 512 GiB range reaches
    past the command's top (no progress, RIM unchanged); with a second level-1 table it goes on."""
    t = Rmi(machine)
    k = create(t, 1, hash_algo=algo, s2sz=48, num_bps=5, num_wps=3)
    t.rtts(k.realm, 0, 1)
    init_ripas(k, 509 * L1, 514 * L1, 1, 512 * L1)
    init_ripas(k, 512 * L1, 514 * L1, 0, None)
    t.rtts(k.realm, 512 * L1, 1)
    init_ripas(k, 512 * L1, 514 * L1, 1, 514 * L1)
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("algo", ALGOS)
def test_init_ripas_level2_and_level3_table_ends(machine: Machine, algo: int) -> None:
    """Level 2: a range over the end of the level-2 table for [0, 1 GiB) ends at 1 GiB; in the
    next table a top 8 KiB into a block stops below that block. Level 3: a range over the end of
    a level-3 table ends there and the next call finishes in the next table."""
    t = Rmi(machine)
    k = create(t, 1, hash_algo=algo, s2sz=40)
    t.rtts(k.realm, 0, 2)
    t.rtts(k.realm, L1, 2)
    init_ripas(k, L1 - 3 * L2, L1 + 2 * L2, 2, L1)
    init_ripas(k, L1, L1 + 2 * L2 + 2 * L3, 2, L1 + 2 * L2)
    page = 4 * L2
    t.rtts(k.realm, page, 3)
    t.rtts(k.realm, page + L2, 3)
    init_ripas(k, page + L2 - 3 * L3, page + L2 + 5 * L3, 3, page + L2)
    init_ripas(k, page + L2, page + L2 + 5 * L3, 3, page + L2 + 5 * L3)
    assert invariants(machine).ok, invariants(machine)


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("s2sz, roots", [(33, 8), (34, 16)])
def test_init_ripas_concatenated_level2_roots(machine: Machine, algo: int, s2sz: int, roots: int) -> None:
    """Start level 2 with 8 (s2sz 33) or 16 (s2sz 34) concatenated roots of 1 GiB each: the root
    entries are level-2 blocks; a range over a root's end stops there, the next root continues,
    a top inside a block stops below it, and the last call ends at the protected top."""
    k = create(Rmi(machine), 1, start_level=2, hash_algo=algo, s2sz=s2sz)
    assert len(k.realm.roots) == roots
    par = 1 << (s2sz - 1)
    init_ripas(k, L1 - 2 * L2, L1 + 3 * L2 + L3, 2, L1)
    init_ripas(k, L1, L1 + 3 * L2 + L3, 2, L1 + 3 * L2)
    init_ripas(k, par - L1 - L2, par, 2, par - L1)
    init_ripas(k, par - L1, par, 2, par)
    assert invariants(machine).ok, invariants(machine)


# -- REALM_CREATE ----------------------------------------------------------------------------------

REALMS = {     # name: (platform, measured RmiRealmParams fields)
    # PMU with every counter; the SBZ flag bits 3 and 40 set (measured: flags is copied whole)
    "host-pmu-sbz-flags": ("host", dict(s2sz=48, flags=0b100 | 1 << 3 | 1 << 40, num_bps=5, num_wps=3,
                                        pmu_num_ctrs=31)),
    # SVE with the longest vector, PMU, the most breakpoints and watchpoints
    "fvp-sve-pmu": ("fvp", dict(s2sz=44, flags=0b110, sve_vl=15, num_bps=15, num_wps=15, pmu_num_ctrs=5)),
    # SVE with a shorter vector
    "fvp-sve7": ("fvp", dict(s2sz=36, flags=0b010, sve_vl=7, num_bps=2, num_wps=3)),
    # sve_vl and pmu_num_ctrs given with SVE and PMU off: copied, hence measured, all the same
    "fvp-disabled-fields": ("fvp", dict(s2sz=40, flags=0, sve_vl=3, pmu_num_ctrs=4)),
}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("name", sorted(REALMS))
def test_realm_create_measures_only_its_fields(algo: int, name: str) -> None:
    """REALM_CREATE twice with one set of measured fields: from a clean page, and from a page
    with 0xA5 in every byte no member covers (the rest of each UInt8 member's 8-byte slot, the
    gaps before rpv and vmid, past rtt_num_start) and another rpv. Both RIMs are the oracle's
    and equal; the VMID and RTT fields differ between the two realms anyway."""
    platform, values = REALMS[name]
    with Machine.create(platform, cpus=1) as m:
        t = Rmi(m)
        clean = create(t, 1, hash_algo=algo, rpv=bytes(64), **values)
        junk = create(t, 2, junk=0xA5, hash_algo=algo, rpv=bytes(range(64)), **values)
        assert clean.rim() == junk.rim()
        assert invariants(m).ok, invariants(m)


# -- REC_CREATE ------------------------------------------------------------------------------------

GPRS = (0x0123_4567_89AB_CDEF, 1, 2**64 - 1, 0, 0x8000_0000_0000_0000, 5, 6, 0xFFFF_0000)


@pytest.mark.parametrize("algo", ALGOS)
def test_rec_create_measured_and_unmeasured_fields(machine: Machine, algo: int) -> None:
    """RECs with: SBZ flag bits (measured, as flags is copied whole), junk in every unused byte of
    RmiRecParams (after flags, mpidr, pc, gprs[7], aux) and the mpidr's SBZ bits; a
    non-runnable REC with SBZ flag bits and one with flags 0 (not measured at all). Then a second
    realm built with the same measured fields from clean pages ends with the same RIM."""
    t = Rmi(machine)
    rims = []
    for vmid, junk in ((1, 0x5C), (2, None)):
        k = create(t, vmid, hash_algo=algo, s2sz=40)
        rec_create(k, junk=junk, mpidr=spec.rec_mpidr(0, junk is not None),
                   flags=1 | 1 << 7 | 1 << 63, pc=0x8_0000, gprs=GPRS)
        rec_create(k, junk=junk, flags=0b10, pc=0x9_0000, gprs=(7,))
        rec_create(k, junk=junk, flags=0, pc=0xA_0000)
        rec_create(k, junk=junk, mpidr=spec.rec_mpidr(3, junk is not None), flags=1, pc=2**64 - 4)
        rec_create(k, flags=1)
        rims.append(k.rim())
    assert rims[0] == rims[1]
    assert invariants(machine).ok, invariants(machine)


# -- DATA_CREATE -----------------------------------------------------------------------------------

DATA_FLAGS = (0, 1, 2, 3, 1 << 63 | 1, 1 << 63)


@pytest.mark.parametrize("algo", ALGOS)
def test_data_create_flags(machine: Machine, algo: int) -> None:
    """DATA_CREATE with each of flags 0, 1, 2, 3, 1<<63|1, 1<<63 (bits 63:1 SBZ but carried into
    the descriptor; bit 0 alone decides whether the content is hashed), into RIPAS EMPTY and
    RIPAS RAM entries."""
    t = Rmi(machine)
    k = create(t, 1, hash_algo=algo, s2sz=40)
    t.rtts(k.realm, 0, 3)
    init_ripas(k, 0, 3 * L3, 3, 3 * L3)
    for n, flags in enumerate(DATA_FLAGS):
        data_create(k, n * L3, flags, CONTENT if n % 2 else OTHER_CONTENT)
    assert invariants(machine).ok, invariants(machine)


# -- failing measured commands ---------------------------------------------------------------------

@pytest.mark.parametrize("algo", ALGOS)
def test_failed_measured_commands_leave_rim(machine: Machine, algo: int) -> None:
    """Between successful measured commands, failing DATA_CREATE (IPA assigned, source delegated,
    unprotected IPA, IPA mapped by a level-2 block), INIT_RIPAS (over an assigned entry, base not
    aligned to the walk's level, no progress) and REC_CREATE (wrong mpidr, wrong num_aux, aux
    not delegated): the RIM does not move, and the next successful command extends it from
    where it was."""
    t = Rmi(machine)
    k = create(t, 1, hash_algo=algo, s2sz=40)
    rd, base = k.realm.rd, 3 * L2
    t.rtts(k.realm, base, 3)
    init_ripas(k, base, base + 2 * L3, 3, base + 2 * L3)
    data_create(k, base, 1, CONTENT)
    data_create(k, base, 1, CONTENT, x0=rtt_error(3))
    assert t.smc(F.RMI_DATA_CREATE, rd, t.delegate(), base + L3, t.delegate(), 1)[0] == INPUT
    k.check("DATA_CREATE from a delegated source")
    data_create(k, k.realm.unprotected, 1, CONTENT, x0=INPUT)
    data_create(k, 5 * L2, 1, CONTENT, x0=rtt_error(2))
    init_ripas(k, base, base + 4 * L3, 3, None)
    init_ripas(k, 5 * L2 + L3, 6 * L2, 2, None)
    init_ripas(k, 5 * L2, 5 * L2 + L3, 2, None)
    rec_create(k, x0=INPUT, mpidr=spec.rec_mpidr(1), flags=1, pc=4)
    rec_create(k, x0=INPUT, num_aux=1, flags=1, pc=4)
    rec_create(k, x0=INPUT, ns_aux=True, flags=1, pc=4)
    rec_create(k, flags=1, pc=4)
    data_create(k, base + L3, 0, CONTENT)
    init_ripas(k, base + 2 * L3, base + 3 * L3, 3, base + 3 * L3)
    assert invariants(machine).ok, invariants(machine)


# -- a random sequence of measured commands ---------------------------------------------------------

PAGES = 2 * 512                  # level-3 entries: two level-3 tables cover [0, 4 MiB)
BLOCKS = range(2, 8)             # level-2 blocks [4 MiB, 16 MiB): no level-3 table below them
MAX_RECS = 3

# Pages anywhere, and often near the end of the first level-3 table, so that INIT_RIPAS ranges
# meet ASSIGNED entries and the table's end, and DATA_CREATE meets ASSIGNED entries.
pages = st.one_of(st.integers(0, PAGES - 1), st.integers(505, 518))
commands = st.one_of(
    st.tuples(st.just("ripas3"), pages, st.integers(1, 6)),
    st.tuples(st.just("ripas2"), st.sampled_from(BLOCKS), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("data"), pages, st.sampled_from(DATA_FLAGS), st.integers(0, 255)),
    st.tuples(st.just("data_block"), st.sampled_from(BLOCKS)),
    st.tuples(st.just("rec"), st.sampled_from((0, 1, 2, 3, 1 << 63 | 1)), st.integers(0, 2**64 - 1),
              st.lists(st.integers(0, 2**64 - 1), max_size=8), st.booleans()),
)


class Shadow:
    """Which level-3 entries are ASSIGNED: all that decides these commands' outcomes here."""

    def __init__(self, k: Tracked) -> None:
        self.k = k
        self.assigned: set[int] = set()

    def ripas3(self, first: int, count: int) -> None:
        """Level-3 entries from ``first`` up to ``count`` of them, the table's end or the first
        ASSIGNED entry, whichever comes first; none of them: RMI_ERROR_RTT level 3."""
        end = min(first + count, (first // 512 + 1) * 512)
        stop = next((p for p in range(first, end) if p in self.assigned), end)
        init_ripas(self.k, first * L3, (first + count) * L3, 3, stop * L3 if stop > first else None)

    def ripas2(self, block: int, count: int, extra_pages: int) -> None:
        """Level-2 blocks from ``block``, the top ``extra_pages`` into the block after ``count``."""
        base, top = block * L2, (block + count) * L2 + extra_pages * L3
        if top <= base:
            assert self.k.t.smc(F.RMI_RTT_INIT_RIPAS, self.k.realm.rd, base, top)[0] == INPUT
            self.k.check("INIT_RIPAS with top == base")
        else:
            init_ripas(self.k, base, top, 2, (block + count) * L2 if count else None)

    def data(self, page: int, flags: int, fill: int) -> None:
        content = bytes((fill + i) & 0xFF for i in range(GRANULE))
        data_create(self.k, page * L3, flags, content, rtt_error(3) if page in self.assigned else SUCCESS)
        self.assigned.add(page)

    def data_block(self, block: int) -> None:
        data_create(self.k, block * L2, 1, CONTENT, rtt_error(2))

    def rec(self, flags: int, pc: int, gprs: list[int], junk: bool) -> None:
        if len(self.k.realm.recs) < MAX_RECS:
            rec_create(self.k, junk=0xC3 if junk else None, flags=flags, pc=pc, gprs=tuple(gprs))


@pytest.mark.parametrize("algo", ALGOS)
def test_random_measured_sequences(algo: int) -> None:
    """Property: for any sequence of INIT_RIPAS (level 3 and level 2), DATA_CREATE (any flags,
    onto free or ASSIGNED entries or level-2 blocks) and REC_CREATE (runnable or not, junk or
    not) on one NEW realm, each command's X0 and out_top are those the RTT shadow predicts and
    the RIM after each is the oracle's; REALM_ACTIVATE at the end keeps it."""

    @FIXED
    @given(st.lists(commands, min_size=4, max_size=16))
    def run(sequence: list[tuple[object, ...]]) -> None:
        with Machine.create("host", cpus=1) as m:
            t = Rmi(m)
            k = create(t, 1, hash_algo=algo, s2sz=40)
            for page in (0, L2):
                t.rtts(k.realm, page, 3)
            shadow = Shadow(k)
            for name, *args in sequence:
                getattr(shadow, name)(*args)
            assert t.smc(F.RMI_REALM_ACTIVATE, k.realm.rd)[0] == SUCCESS
            k.check("REALM_ACTIVATE")

    run()
