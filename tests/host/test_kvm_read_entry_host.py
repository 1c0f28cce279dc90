"""A host that steers by RMI_RTT_READ_ENTRY, as the early Linux CCA host patches did
(realm_tear_down_rtt_range and fold_rtt read each entry first and take the RTT's PA from its
descriptor) and as the RMM ACS's val_host create_mapping still does (READ_ENTRY's walk level
says which tables to create). The 1.0-rel0 series moved to the `top` and error-index outputs
(what rmm_mp.host uses), but the 1.0 ABI keeps READ_ENTRY's outputs exact enough to drive a
host on their own (B4.3.20): these tests check that rmm-mp's answers do.

The realm is built and run-time mapped with rmm_mp.host (image pages, faulted-in pages, a
2 MiB range of pages folded into a level-2 block, unprotected pages); then:

- table creation: READ_ENTRY(ipa, 3).walk_level is where the walk stopped; tables created for
  the levels below it make the next READ_ENTRY reach level 3, and DATA_CREATE_UNKNOWN then
  succeeds at once;
- folding: READ_ENTRY(block, 2) of a level-3 table gives its PA, which RTT_FOLD(block, 3)
  returns; the entry then reads as an ASSIGNED level-2 block of the folded pages;
- teardown: every entry of every table is read at its own level; a TABLE is emptied first,
  then RTT_DESTROY returns the PA the descriptor named; an ASSIGNED level-3 protected page is
  DATA_DESTROYed and returns the PA read; an ASSIGNED block is split with RTT_CREATE one level
  down first; an unprotected mapping names the NS page mapped there and is unmapped.
"""

from __future__ import annotations

from rmm_mp import Machine
from rmm_mp.abi.rmi import RmiFid as F
from rmm_mp.check import invariants
from rmm_mp.host import HostRealm, NsAllocator, RealmSpec, create_realm, fault_in, map_unprotected
from rmm_mp.host.realm import block_size, delegated_granule, release_granule
from rmm_mp.host.realm_teardown import destroy_recs
from rmm_mp.machine import Cpu

G, MiB = 4096, 1 << 20
UNASSIGNED, ASSIGNED, TABLE = 0, 1, 2
RIPAS_RAM = 1
OA = ((1 << 48) - 1) & ~(G - 1)
RAM = 0x8000_0000


def _read(cpu: Cpu, realm: HostRealm, ipa: int, level: int) -> tuple[int, int, int, int]:
    x0, walk_level, state, desc, ripas = cpu.smc(F.RMI_RTT_READ_ENTRY, realm.rd, ipa, level)
    assert x0 == 0, f"READ_ENTRY({ipa:#x}, {level}) -> {x0:#x}"
    return walk_level, state, desc, ripas


def _map_by_read_entry(cpu: Cpu, alloc: NsAllocator, realm: HostRealm, ipa: int, page: int | None = None) -> int:
    """The ACS's create_mapping: tables below READ_ENTRY's walk level, then DATA_CREATE_UNKNOWN
    of ``page`` (a delegated granule; a new one if None). Returns the page's PA."""
    walk_level = _read(cpu, realm, ipa, 3)[0]
    for level in range(walk_level + 1, 4):
        rtt = delegated_granule(cpu, alloc)
        assert cpu.smc(F.RMI_RTT_CREATE, realm.rd, rtt, ipa & ~(block_size(level - 1) - 1), level)[0] == 0
        walk_level, state, desc, _ = _read(cpu, realm, ipa & ~(block_size(level - 1) - 1), level - 1)
        assert (walk_level, state, desc & OA) == (level - 1, TABLE, rtt)
    assert _read(cpu, realm, ipa, 3)[:2] == (3, UNASSIGNED)
    if page is None:
        page = delegated_granule(cpu, alloc)
    assert cpu.smc(F.RMI_DATA_CREATE_UNKNOWN, realm.rd, page, ipa)[0] == 0
    assert _read(cpu, realm, ipa, 3)[:3] == (3, ASSIGNED, page)
    return page


def _fold_by_read_entry(cpu: Cpu, alloc: NsAllocator, realm: HostRealm, block: int) -> None:
    """The early KVM fold_rtt: READ_ENTRY at the parent level names the table RTT_FOLD frees."""
    walk_level, state, desc, _ = _read(cpu, realm, block, 2)
    assert (walk_level, state) == (2, TABLE)
    x0, rtt = cpu.smc(F.RMI_RTT_FOLD, realm.rd, block, 3)[:2]
    assert (x0, rtt) == (0, desc & OA)
    release_granule(cpu, alloc, rtt)


def _tear_down(cpu: Cpu, alloc: NsAllocator, realm: HostRealm, level: int, start: int, end: int,
               ns_pages: set[int]) -> int:
    """The early KVM realm_tear_down_rtt_range, entry by entry at ``level``; returns the calls made."""
    calls = 0
    size = block_size(level)
    addr = start
    while addr < end:
        walk_level, state, desc, ripas = _read(cpu, realm, addr, level)
        calls += 1
        assert walk_level == level, f"READ_ENTRY({addr:#x}, {level}) stopped at level {walk_level}"
        if state == ASSIGNED and addr < realm.par_size and level < 3:
            rtt = delegated_granule(cpu, alloc)     # a folded block: split it, then go again
            assert cpu.smc(F.RMI_RTT_CREATE, realm.rd, rtt, addr, level + 1)[0] == 0
            continue
        if state == TABLE:
            calls += _tear_down(cpu, alloc, realm, level + 1, addr, addr + size, ns_pages)
            x0, rtt = cpu.smc(F.RMI_RTT_DESTROY, realm.rd, addr, level + 1)[:2]
            assert (x0, rtt) == (0, desc & OA), f"RTT_DESTROY({addr:#x}, {level + 1}) -> {x0:#x}, {rtt:#x}"
            release_granule(cpu, alloc, rtt)
        elif state == ASSIGNED and addr < realm.par_size:
            x0, pa = cpu.smc(F.RMI_DATA_DESTROY, realm.rd, addr)[:2]
            assert (x0, pa) == (0, desc & OA), f"DATA_DESTROY({addr:#x}) -> {x0:#x}, {pa:#x}"
            release_granule(cpu, alloc, pa)
        elif state == ASSIGNED:
            assert desc & OA in ns_pages, f"{addr:#x} maps {desc:#x}, not a page the host mapped"
            assert cpu.smc(F.RMI_RTT_UNMAP_UNPROTECTED, realm.rd, addr, level)[0] == 0
        addr += size
    return calls


def test_a_host_steered_by_read_entry_builds_folds_and_tears_down(machine: Machine) -> None:
    """A 40-bit realm (two concatenated level-1 roots) with an image, faulted-in pages, pages
    mapped by READ_ENTRY's walk level (one in a 1 GiB range with no table yet, one in RAM), a
    2 MiB range folded into a block as the early KVM folded it, and three unprotected pages; then
    its RECs destroyed and every table entry read and torn down by what READ_ENTRY says: each
    RTT_DESTROY and DATA_DESTROY returns the PA the entry's descriptor named, REALM_DESTROY then
    succeeds and every granule is NS again."""
    cpu, alloc = machine.cpu(0), NsAllocator(machine, 0)
    realm = create_realm(cpu, alloc, RealmSpec(ipa_width=40, ram_size=16 * MiB, image=b"\x5a" * (3 * G), num_recs=2))
    for ipa in (RAM + 3 * MiB, RAM + 7 * MiB + 5 * G):
        assert fault_in(cpu, alloc, realm, ipa) is not None
    far, near = 0x40_0000_0000 + 0x1234_5000, RAM + 9 * MiB + 9 * G
    assert (_read(cpu, realm, far, 3)[0], _read(cpu, realm, near, 3)[0]) == (1, 2)   # no level-2 / no level-3 table
    _map_by_read_entry(cpu, alloc, realm, far)
    _map_by_read_entry(cpu, alloc, realm, near)
    block = RAM + 4 * MiB
    backing = alloc.alloc(512, 512)                 # KVM's 2 MiB page: 512 contiguous granules
    for i in range(512):
        assert cpu.smc(F.RMI_GRANULE_DELEGATE, backing + i * G)[0] == 0
        assert _map_by_read_entry(cpu, alloc, realm, block + i * G, backing + i * G) == backing + i * G
    _fold_by_read_entry(cpu, alloc, realm, block)
    assert _read(cpu, realm, block + 7 * G, 3) == (2, ASSIGNED, backing, RIPAS_RAM)
    ns_pages = {alloc.alloc() for _ in range(3)}
    for i, pa in enumerate(sorted(ns_pages)):
        assert map_unprotected(cpu, alloc, realm, realm.par_size + RAM + i * MiB, pa)

    destroy_recs(cpu, alloc, realm)
    root_span = block_size(realm.start_level - 1)
    for n in range(realm.num_roots):
        _tear_down(cpu, alloc, realm, realm.start_level, n * root_span, (n + 1) * root_span, ns_pages)
    assert cpu.smc(F.RMI_REALM_DESTROY, realm.rd)[0] == 0
    for pa in (realm.rd, *realm.roots):
        release_granule(cpu, alloc, pa)
    for pa in ns_pages:
        alloc.free(pa)
    report = invariants(machine)
    assert report.ok, str(report)
    assert report.state_counts == {"NS": machine.granule_count}, report.state_counts
    assert alloc.in_use == 0
