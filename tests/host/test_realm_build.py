"""The KVM-like realm builder and teardown (rmm_mp.host.create_realm / destroy_realm), on one CPU.

Scenarios: realms of several shapes (s2sz 32/39/40/48, SHA-256/512, 1..4 RECs, images of one
page, several pages, pages spanning two level-3 tables, outside RAM, unmeasured) are built, their
granules and RTT entries checked through RMI_RTT_READ_ENTRY, their RIM compared with a reference
computed here from rsi-attest.md section 3 (not with rmm_mp.rmm.measurement), and torn down in
both KVM orders, after which every DRAM granule is NS, the allocator is empty and the invariant
checker is content. Plus run-time mapping (fault_in, map_unprotected), a folded block split at
teardown, rollback when memory runs out, and HostError messages.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
from dataclasses import dataclass

import pytest

from rmm_mp import Cpu, Machine
from rmm_mp.abi.rmi import RmiFid
from rmm_mp.check import invariants
from rmm_mp.host import (
    HostError, HostRealm, NsAllocator, OutOfGranules, RealmSpec, create_realm, destroy_realm, fault_in,
    map_unprotected, num_roots, start_level,
)
from rmm_mp.host.realm import create_rtt_levels
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_desc import Rd

F = RmiFid
G = 4096
MiB = 1 << 20
IMAGE = bytes((i * 7 + 3) & 0xFF for i in range(64 * 1024))


# -- an independent RIM (rsi-attest.md section 3) ------------------------------------------------

def _h(algo: int, data: bytes) -> bytes:
    return (hashlib.sha256 if algo == 0 else hashlib.sha512)(data).digest()


def _rim_create(algo: int, flags: int, s2sz: int, bps: int, wps: int, ctrs: int) -> bytes:
    """3.2: H of a zero 4 KiB page holding flags, s2sz, sve_vl, num_bps, num_wps, pmu_num_ctrs, hash_algo."""
    page = bytearray(4096)
    struct.pack_into("<QIxxxxIxxxxIxxxxIxxxxIxxxxB", page, 0, flags, s2sz, 0, bps, wps, ctrs, algo)
    return _h(algo, bytes(page))


def _extend(algo: int, rim: bytes, kind: int, body: bytes) -> bytes:
    """3.3: RIM' = H(256-byte descriptor: type, len 0x100, old RIM padded to 64, then body at 0x50)."""
    desc = bytearray(0x100)
    desc[0] = kind
    struct.pack_into("<Q", desc, 8, 0x100)
    desc[0x10:0x50] = rim.ljust(64, b"\0")
    desc[0x50:0x50 + len(body)] = body
    return _h(algo, bytes(desc))


def _ripas(algo: int, rim: bytes, base: int, top: int) -> bytes:
    return _extend(algo, rim, 2, struct.pack("<QQ", base, top))


def _data(algo: int, rim: bytes, ipa: int, flags: int, content: bytes) -> bytes:
    digest = _h(algo, content).ljust(64, b"\0") if flags == 1 else bytes(64)
    return _extend(algo, rim, 0, struct.pack("<QQ", ipa, flags) + digest)


def _rec(algo: int, rim: bytes, pc: int, gprs: tuple[int, ...]) -> bytes:
    page = bytearray(4096)
    struct.pack_into("<Q", page, 0, 1)
    struct.pack_into("<Q", page, 0x200, pc)
    struct.pack_into("<8Q", page, 0x300, *(list(gprs) + [0] * (8 - len(gprs))))
    return _extend(algo, rim, 1, _h(algo, bytes(page)).ljust(64, b"\0"))


def _entry_size(level: int) -> int:
    return 1 << (12 + 9 * (3 - level))


def ripas_entries(sl: int, base: int, end: int) -> list[tuple[int, int, int]]:
    """The RTT entries INIT_RIPAS visits when tables are made on demand and nothing else exists:
    each step uses the coarsest level (not above the start level) whose entry is aligned at the
    address and ends by ``end`` - the shape a host that creates tables only as deep as needed
    leaves. (level, base, top) in address order."""
    out = []
    addr = base
    while addr < end:
        level = next(lv for lv in range(sl, 4) if addr % _entry_size(lv) == 0 and addr + _entry_size(lv) <= end)
        out.append((level, addr, addr + _entry_size(level)))
        addr += _entry_size(level)
    return out


def reference_rim(m: Machine, spec: RealmSpec) -> bytes:
    f = m.platform.features
    ctrs = f.pmu_counters if f.pmu and f.pmu_counters else 0
    rim = _rim_create(spec.hash_algo, 4 if ctrs else 0, spec.ipa_width, f.breakpoints - 1, f.watchpoints - 1, ctrs)
    for _, base, top in ripas_entries(start_level(spec.ipa_width), spec.ram_base, spec.ram_base + spec.ram_size):
        rim = _ripas(spec.hash_algo, rim, base, top)
    for n in range(0, len(spec.image), G):
        page = spec.image[n:n + G].ljust(G, b"\0")
        rim = _data(spec.hash_algo, rim, spec.load_ipa + n, 1 if spec.measure else 0, page)
    if spec.num_recs:
        rim = _rec(spec.hash_algo, rim, spec.entry_pc, spec.gprs)
    return rim


# -- helpers ---------------------------------------------------------------------------------------

def _idx(m: Machine, pa: int) -> int:
    return (pa - m.dram_base) // G


def _state(m: Machine, pa: int) -> int:
    return m.granule_table(0).state(_idx(m, pa))


def _read(cpu: Cpu, realm: HostRealm, ipa: int, level: int = 3) -> tuple[int, int, int, int, int]:
    return cpu.smc(F.RMI_RTT_READ_ENTRY, realm.rd, ipa, level)


def _all_ns_and_empty(m: Machine, alloc: NsAllocator) -> None:
    report = invariants(m)
    assert report.ok, str(report)
    assert report.state_counts == {"NS": m.granule_count}
    stats = alloc.statistics()
    assert stats.granules_in_use == 0 == alloc.bitmap_in_use() and stats.vmids_in_use == 0


@dataclass(frozen=True)
class Shape:
    name: str
    spec: RealmSpec
    roots: int
    level: int


SHAPES = [
    Shape("s2sz32-sha256-1rec-1page", RealmSpec(ipa_width=32, ram_base=0x4000_0000, ram_size=4 * MiB,
                                                 image=IMAGE[:G], num_recs=1, gprs=(0x4000_8000,)), 4, 2),
    Shape("s2sz39-sha512-2recs-tail-two-l3", RealmSpec(ipa_width=39, ram_base=0x4000_0000, ram_size=2 * MiB + 64 * 1024,
                                                        hash_algo=1, image=IMAGE[:4 * G],
                                                        image_ipa=0x4000_0000 + 2 * MiB - 2 * G, num_recs=2), 1, 1),
    Shape("s2sz40-sha256-3recs-odd-image", RealmSpec(ipa_width=40, ram_base=0x8000_0000, ram_size=8 * MiB,
                                                      image=IMAGE[:20000], num_recs=3, entry=0x8000_1000,
                                                      rpv=b"personal"), 2, 1),
    Shape("s2sz48-sha512-4recs-unmeasured-outside-ram", RealmSpec(ipa_width=48, ram_base=0x8000_0000, ram_size=6 * MiB,
                                                                   hash_algo=1, image=IMAGE[:3 * G],
                                                                   image_ipa=0x7FFF_F000 - G, measure=False,
                                                                   num_recs=4), 1, 0),
]


@pytest.mark.parametrize("order", ["legacy", "v12"])
@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_build_measure_and_tear_down(machine: Machine, shape: Shape, order: str) -> None:
    """Build a realm; the roots are as many and at the level KVM computes; RD, roots, RECs, aux
    and image pages are in their states; image pages hold the image (RIPAS RAM) and the RAM
    outside it is unassigned RIPAS RAM in entries of the shape INIT_RIPAS was given; the RIM
    equals the reference; then teardown in ``order`` leaves every granule NS and the allocator
    empty."""
    m, spec = machine, shape.spec
    cpu, alloc = m.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, spec)
    assert (realm.num_roots, realm.start_level) == (shape.roots, shape.level)
    assert (num_roots(spec.ipa_width, start_level(spec.ipa_width)), start_level(spec.ipa_width)) == (shape.roots,
                                                                                                        shape.level)
    assert realm.rtt_base % (shape.roots * G) == 0
    assert _state(m, realm.rd) == GranuleState.RD
    assert all(_state(m, pa) == GranuleState.RTT for pa in realm.roots)
    assert len(realm.recs) == spec.num_recs and realm.num_aux == 16
    for rec in realm.recs:
        assert _state(m, rec.rec) == GranuleState.REC and len(rec.aux) == 16
        assert all(_state(m, pa) == GranuleState.REC_AUX for pa in rec.aux)
    image_ipas = set()
    for n in range(spec.image_granules):
        ipa = spec.load_ipa + n * G
        image_ipas.add(ipa)
        x0, level, state, pa, ripas = _read(cpu, realm, ipa)
        assert (x0, level, state, ripas) == (0, 3, 1, 1), hex(ipa)
        assert _state(m, pa) == GranuleState.DATA
        assert m.memory.read(pa, G) == spec.image[n * G:(n + 1) * G].ljust(G, b"\0")
    for level, base, top in ripas_entries(shape.level, spec.ram_base, spec.ram_base + spec.ram_size):
        if not any(base <= ipa < top for ipa in image_ipas):
            assert _read(cpu, realm, base, level) == (0, level, 0, 0, 1), hex(base)
    rim = Rd(m.memory, _idx(m, realm.rd)).measurement(0)
    expected = reference_rim(m, spec)
    assert rim == expected.ljust(64, b"\0"), "RIM differs from the rsi-attest.md section 3 reference"
    assert invariants(m).ok
    assert pickle.loads(pickle.dumps(realm)) == realm   # CPU processes hand realms to each other
    destroy_realm(cpu, alloc, realm, order)
    _all_ns_and_empty(m, alloc)


def test_reference_shape_matches_a_literal_list() -> None:
    """The reference's INIT_RIPAS shape for RAM [1 GiB - 2 MiB, 1 GiB + 2 MiB + 8 KiB) at start
    level 1 is written out by hand: one level-2 entry, one level-2 entry past the 1 GiB line,
    then two level-3 pages."""
    base = (1 << 30) - 2 * MiB
    assert ripas_entries(1, base, (1 << 30) + 2 * MiB + 2 * G) == [
        (2, base, 1 << 30), (2, 1 << 30, (1 << 30) + 2 * MiB),
        (3, (1 << 30) + 2 * MiB, (1 << 30) + 2 * MiB + G), (3, (1 << 30) + 2 * MiB + G, (1 << 30) + 2 * MiB + 2 * G)]


def test_init_ripas_across_a_1gib_line_measures_the_reference_shape(machine: Machine) -> None:
    """RAM straddling a 1 GiB boundary with an unaligned end: the builder's lazily made tables
    give exactly the reference's entries (its RIM matches), and teardown in both halves works."""
    spec = RealmSpec(ipa_width=40, ram_base=(1 << 30) - 2 * MiB, ram_size=4 * MiB + 2 * G, num_recs=0)
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, spec)
    assert Rd(machine.memory, _idx(machine, realm.rd)).measurement(0) == reference_rim(machine, spec).ljust(64, b"\0")
    destroy_realm(cpu, alloc, realm, "legacy")
    _all_ns_and_empty(machine, alloc)


@pytest.mark.parametrize("order", ["legacy", "v12"])
def test_run_time_mappings_are_torn_down(machine: Machine, order: str) -> None:
    """fault_in backs RAM pages (ASSIGNED RIPAS RAM, zero filled, RTTs made down to level 3) and
    a second fault on the same IPA loses the race (None, nothing leaked); map_unprotected maps
    an NS page (the entry holds its PA and attributes) and a second map is ignored; teardown
    removes both and leaves only the caller's NS page allocated."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_size=4 * MiB, image=IMAGE[:G], num_recs=2))
    before = alloc.in_use
    ipas = [0x8000_0000 + 3 * MiB + i * G for i in range(3)] + [0x8000_0000 + 600 * G]
    pages = [fault_in(cpu, alloc, realm, ipa) for ipa in ipas]
    assert all(pages) and alloc.in_use == before + len(ipas) + 1  # one new level-3 table
    for ipa, pa in zip(ipas, pages):
        assert _read(cpu, realm, ipa) == (0, 3, 1, pa, 1) and machine.memory.is_zero(_idx(machine, pa))
    assert fault_in(cpu, alloc, realm, ipas[0]) is None and alloc.in_use == before + len(ipas) + 1
    ns = alloc.alloc()
    shared = realm.par_size + 5 * G
    assert map_unprotected(cpu, alloc, realm, shared, ns)
    assert _read(cpu, realm, shared)[:3] == (0, 3, 1)
    assert _read(cpu, realm, shared)[3] == ns | 0x18 | 0xC0
    assert not map_unprotected(cpu, alloc, realm, shared, ns)
    destroy_realm(cpu, alloc, realm, order)
    assert alloc.in_use == 1
    alloc.free(ns)
    _all_ns_and_empty(machine, alloc)


def test_a_fault_whose_fresh_page_will_not_delegate_is_a_host_error(machine: Machine) -> None:
    """The allocator hands a fault a page that is already delegated (an allocator bug, made here
    by freeing a delegated page): fault_in's DELEGATE fails, which in this model no race can
    cause (every fault takes a fresh page), so it raises HostError naming the PA and X0 instead
    of answering None ("another vCPU won"), which would send the vCPU round the same fault for
    ever. The entry stays unassigned and the page is back in the allocator."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_size=4 * MiB, image=IMAGE[:G]))
    ipa = 0x8000_0000 + 2 * MiB
    assert fault_in(cpu, alloc, realm, ipa + G)         # the level-3 table exists: DELEGATE comes first
    bad = alloc.alloc()
    assert cpu.smc(F.RMI_GRANULE_DELEGATE, bad)[0] == 0
    alloc.free(bad)
    peek = alloc.alloc()
    alloc.free(peek)
    assert peek == bad, "the test needs the allocator to hand the freed page out next"
    before = alloc.in_use
    with pytest.raises(HostError) as err:
        fault_in(cpu, alloc, realm, ipa)
    assert f"RMI_GRANULE_DELEGATE({bad:#x}) returned X0 = 0x1 (RMI_ERROR_INPUT)" in str(err.value)
    assert err.value.command == "RMI_GRANULE_DELEGATE" and err.value.arguments == (bad,)
    assert _read(cpu, realm, ipa)[2] == 0 and alloc.in_use == before   # UNASSIGNED; nothing leaked
    assert cpu.smc(F.RMI_GRANULE_UNDELEGATE, bad)[0] == 0
    destroy_realm(cpu, alloc, realm, "v12")
    _all_ns_and_empty(machine, alloc)


def test_teardown_splits_a_folded_block(machine: Machine) -> None:
    """A 2 MiB range backed by 512 contiguous, 2 MiB aligned data pages and folded into one
    level-2 block (KVM's huge-page path): DATA_DESTROY reports the block, teardown splits it with
    RTT_CREATE and destroys every page."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=39, ram_base=0x4000_0000, ram_size=4 * MiB))
    block = 0x4000_0000 + 2 * MiB
    backing = alloc.alloc(512, 512)
    assert create_rtt_levels(cpu, alloc, realm, block, 2, 3) == 1
    for i in range(512):
        assert cpu.smc(F.RMI_GRANULE_DELEGATE, backing + i * G)[0] == 0
        assert cpu.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, backing + i * G, block + i * G)[0] == 0
    x0, rtt = cpu.smc(F.RMI_RTT_FOLD, realm.rd, block, 3)[:2]
    assert x0 == 0
    assert cpu.smc(F.RMI_GRANULE_UNDELEGATE, rtt)[0] == 0
    alloc.free(rtt)
    assert _read(cpu, realm, block, 3)[:4] == (0, 2, 1, backing)
    destroy_realm(cpu, alloc, realm, "legacy")
    _all_ns_and_empty(machine, alloc)


def test_teardown_unmaps_a_folded_ns_block(machine: Machine) -> None:
    """512 unprotected pages mapped to a contiguous, 2 MiB aligned NS run and folded into one
    level-2 ASSIGNED_NS block: teardown's level-3 unmap stops at the block and unmaps it at
    level 2; the NS run stays the caller's."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_size=2 * MiB))
    shared = realm.par_size + 4 * MiB
    ns = alloc.alloc(512, 512)
    assert all(map_unprotected(cpu, alloc, realm, shared + i * G, ns + i * G) for i in range(512))
    x0, rtt = cpu.smc(F.RMI_RTT_FOLD, realm.rd, shared, 3)[:2]
    assert x0 == 0
    assert cpu.smc(F.RMI_GRANULE_UNDELEGATE, rtt)[0] == 0
    alloc.free(rtt)
    assert _read(cpu, realm, shared, 3)[:4] == (0, 2, 1, ns | 0x18 | 0xC0)
    destroy_realm(cpu, alloc, realm, "v12")
    assert alloc.in_use == 512
    alloc.free(ns, 512)
    _all_ns_and_empty(machine, alloc)


def test_running_out_of_memory_rolls_the_build_back(machine: Machine) -> None:
    """With too few free granules for the second REC, create_realm raises OutOfGranules naming
    the request, after tearing down what it built: nothing stays delegated and the allocator is
    back where it was."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    hog = []
    free = alloc.statistics().granules_free
    hog = [alloc.alloc() for _ in range(free - 30)]
    with pytest.raises(OutOfGranules, match="run of 1 granule"):
        create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_size=2 * MiB, image=IMAGE[:G], num_recs=2))
    assert alloc.in_use == len(hog) and alloc.statistics().vmids_in_use == 0
    for pa in hog:
        alloc.free(pa)
    _all_ns_and_empty(machine, alloc)


def test_host_error_names_command_arguments_and_x0(machine: Machine) -> None:
    """Tearing a realm down twice: the second REC_DESTROY gets RMI_ERROR_INPUT, which a correct
    RMM returns only for a REC that is gone; HostError names the command, the REC's PA and X0."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_size=2 * MiB))
    destroy_realm(cpu, alloc, realm, "v12")
    with pytest.raises(HostError) as err:
        destroy_realm(cpu, alloc, realm, "v12")
    text = str(err.value)
    assert f"RMI_REC_DESTROY({realm.recs[0].rec:#x}) returned X0 = 0x1 (RMI_ERROR_INPUT)" in text
    assert err.value.x0 == 1 and err.value.command == "RMI_REC_DESTROY"
    _all_ns_and_empty(machine, alloc)


@pytest.mark.parametrize(("fields", "word"), [
    ({"ipa_width": 31}, "ipa_width"), ({"ram_base": 0x1001}, "ram_base"), ({"ram_size": 3}, "ram_size"),
    ({"ipa_width": 32, "ram_base": 0x8000_0000}, "protected IPA range"), ({"hash_algo": 2}, "hash_algo"),
    ({"rpv": bytes(65)}, "rpv"), ({"teardown": "v14"}, "teardown"), ({"image_ipa": 0x800}, "image_ipa"),
    ({"gprs": tuple(range(9))}, "gprs"),
])
def test_bad_specs_are_value_errors(fields: dict[str, object], word: str) -> None:
    """RealmSpec rejects impossible fields at construction, naming the field."""
    with pytest.raises(ValueError, match=word):
        RealmSpec(**fields)  # type: ignore[arg-type]


def test_unsupported_ipa_width_is_refused_before_any_call(machine: Machine) -> None:
    """The host platform offers S2SZ 48: a 52-bit realm is refused with ValueError and nothing
    is allocated or delegated."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    with pytest.raises(ValueError, match="at most 48 bits"):
        create_realm(cpu, alloc, RealmSpec(ipa_width=52))
    _all_ns_and_empty(machine, alloc)


def test_a_root_run_of_the_callers_is_kept(machine: Machine) -> None:
    """create_realm on a root run the caller allocated (rtt_base), built twice: the realm's
    roots are that run, destroy_realm leaves it allocated and NS (and so does a build that runs
    out of memory and rolls back); freed by the caller, everything is NS and free again."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    roots = alloc.alloc(16, 16)
    spec = RealmSpec(ipa_width=43, ram_size=2 * MiB, image=IMAGE[:G])
    for _ in range(2):
        realm = create_realm(cpu, alloc, spec, rtt_base=roots)
        assert (realm.rtt_base, realm.num_roots, realm.roots_kept) == (roots, 16, True)
        assert _state(machine, roots + 15 * G) == GranuleState.RTT
        destroy_realm(cpu, alloc, realm, "legacy")
        assert alloc.in_use == 16 and alloc.allocated(roots + 15 * G)
        assert all(_state(machine, roots + i * G) == GranuleState.NS for i in range(16))
    hog = [alloc.alloc() for _ in range(alloc.statistics().granules_free - 30)]
    with pytest.raises(OutOfGranules):
        create_realm(cpu, alloc, RealmSpec(ipa_width=43, ram_size=2 * MiB, num_recs=2), rtt_base=roots)
    assert alloc.in_use == len(hog) + 16 and alloc.allocated(roots)
    for pa in hog:
        alloc.free(pa)
    alloc.free(roots, 16)
    _all_ns_and_empty(machine, alloc)


def test_a_misaligned_root_run_is_refused_before_any_call(machine: Machine) -> None:
    """A 43-bit realm has 16 roots: an rtt_base 8 granules into a 64 KiB block is refused with
    ValueError naming rtt_base, the value and the alignment; nothing is allocated or delegated."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    roots = alloc.alloc(16, 16)
    with pytest.raises(ValueError, match=rf"rtt_base = {roots + 8 * G:#x}: expected .* 16 NS granules aligned to 16"):
        create_realm(cpu, alloc, RealmSpec(ipa_width=43, ram_size=2 * MiB), rtt_base=roots + 8 * G)
    assert alloc.in_use == 16 and alloc.statistics().vmids_in_use == 0
    alloc.free(roots, 16)
    _all_ns_and_empty(machine, alloc)
