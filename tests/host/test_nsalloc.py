"""The host's shared NS granule and VMID allocator (rmm_mp.host.nsalloc).

Properties: no granule is handed out twice, runs are contiguous and aligned to what was asked,
Secure granules are never handed out, freed granules come back, running out names the request,
bad frees are refused without changing anything, VMIDs stay below 2^vmid_bits, and two CPU
processes that set the allocator up and allocate at the same time never get the same granule.

The CPU target of the multiprocessing test lives in this module: spawned CPU processes import it
by name (spawn passes the parent's sys.path to its children).
"""

from __future__ import annotations

import os

import pytest

from rmm_mp import Machine
from rmm_mp.hw.cpuarea import OFF_COUNTERS
from rmm_mp.host import AllocatorError, NsAllocator, OutOfGranules, OutOfVmids
from rmm_mp.runtime import run_cpus

GRANULE = 4096


def _secure(m: Machine) -> set[int]:
    return {pa for base, size in m.secure_regions for pa in range(base, base + size, GRANULE)}


def _usable(m: Machine) -> int:
    return m.granule_count - len(_secure(m))


def test_no_granule_is_handed_out_twice(machine: Machine) -> None:
    """Single granules and runs of several sizes from two CPUs' handles never overlap, all lie in
    DRAM, and the in-use count equals both the granules handed out and the bitmap's count."""
    a, b = NsAllocator(machine, 0), NsAllocator(machine, 3)
    taken: list[int] = []
    for handle in (a, b) * 20:
        taken.append(handle.alloc())
        for count in (2, 3, 16):
            first = handle.alloc(count)
            taken.extend(first + i * GRANULE for i in range(count))
    assert len(taken) == len(set(taken))
    end = machine.dram_base + machine.granule_count * GRANULE
    assert all(machine.dram_base <= pa < end and pa % GRANULE == 0 for pa in taken)
    assert a.in_use == b.in_use == len(taken) == a.bitmap_in_use()


@pytest.mark.parametrize("count", [1, 2, 4, 8, 16, 64])
def test_runs_are_aligned_to_their_size(machine: Machine, count: int) -> None:
    """alloc(count, align=count) returns count contiguous granules starting at a PA aligned to
    count x 4 KiB (what concatenated root RTTs need), again and again."""
    alloc = NsAllocator(machine, 1)
    alloc.alloc(3)  # leave the hint at an odd place
    for _ in range(5):
        pa = alloc.alloc(count, count)
        assert pa % (count * GRANULE) == 0
        assert all(alloc.allocated(pa + i * GRANULE) for i in range(count))
    assert alloc.in_use == 3 + 5 * count


def test_whole_word_runs_give_2mib_blocks(machine: Machine) -> None:
    """A run of 512 granules aligned to 512 (KVM's 2 MiB backing page) is 2 MiB aligned, and a
    second one does not overlap the first."""
    alloc = NsAllocator(machine, 0)
    first = alloc.alloc(512, 512)
    second = alloc.alloc(512, 512)
    assert first % (2 << 20) == 0 and second % (2 << 20) == 0 and abs(second - first) >= 2 << 20
    alloc.free(first, 512)
    alloc.free(second, 512)
    assert alloc.in_use == 0 == alloc.bitmap_in_use()


def test_secure_granules_are_never_handed_out(machine: Machine) -> None:
    """Allocating until the allocator is empty yields every DRAM granule except the Secure
    region's, each once; the statistics name the reserved count."""
    alloc = NsAllocator(machine, 2)
    taken = []
    with pytest.raises(OutOfGranules):
        while True:
            taken.append(alloc.alloc())
    secure = _secure(machine)
    assert secure and not secure & set(taken)
    assert len(taken) == len(set(taken)) == _usable(machine)
    stats = alloc.statistics()
    assert stats.granules_reserved == len(secure) and stats.granules_free == 0
    assert stats.granules_in_use == _usable(machine)


def test_freed_granules_come_back(machine: Machine) -> None:
    """With DRAM exhausted, freeing a granule (or a run) makes exactly that granule (run) the
    next allocation."""
    alloc = NsAllocator(machine, 0)
    taken = []
    with pytest.raises(OutOfGranules):
        while True:
            taken.append(alloc.alloc())
    victim = taken[len(taken) // 2]
    alloc.free(victim)
    assert not alloc.allocated(victim)
    assert alloc.alloc() == victim
    run = [pa for pa in taken if pa % (4 * GRANULE) == 0][7]
    alloc.free(run, 4)
    assert alloc.alloc(4, 4) == run
    assert alloc.in_use == _usable(machine)


def test_exhaustion_names_the_request(machine: Machine) -> None:
    """When no aligned run fits, OutOfGranules names the count, the alignment and the usage (the
    granule counts with thousands separators: "16,108 of 16,128 usable granules", "16108 of
    16128" until 2026-11), and the allocator is unchanged (single granules can still be had)."""
    alloc = NsAllocator(machine, 0)
    taken = [alloc.alloc() for _ in range(_usable(machine) - 40)]
    # Fragment what is left so that no 16-granule aligned run exists.
    holes = [alloc.alloc() for _ in range(40)]
    for pa in holes[::2]:
        alloc.free(pa)
    before = alloc.in_use
    with pytest.raises(OutOfGranules) as err:
        alloc.alloc(16, 16)
    text = str(err.value)
    assert "run of 16 granule(s) aligned to 16 granule(s)" in text
    # With thousands separators, as the tool's other figures (host: 16,128 usable granules).
    assert f"{before:,} of {_usable(machine):,} usable granules" in text and _usable(machine) >= 1000
    assert alloc.in_use == before
    assert alloc.alloc() in holes[::2]
    assert len(taken) + 21 == alloc.in_use


def test_bad_frees_are_refused_and_change_nothing(machine: Machine) -> None:
    """Double frees, a run straying over a free granule, a Secure granule, a PA outside DRAM or
    unaligned: AllocatorError naming the PA, and nothing is freed."""
    alloc = NsAllocator(machine, 0)
    pa = alloc.alloc(4, 4)
    alloc.free(pa + GRANULE)
    secure = min(_secure(machine))
    for args in ((pa + GRANULE,), (pa, 4), (secure,), (machine.dram_base - GRANULE,), (pa + 1,)):
        with pytest.raises(AllocatorError):
            alloc.free(*args)
    assert alloc.in_use == 3 == alloc.bitmap_in_use()
    assert alloc.allocated(pa) and alloc.allocated(pa + 2 * GRANULE) and alloc.allocated(secure)


@pytest.mark.parametrize(("count", "align"), [(0, 1), (1, 3), (65, 1), (128, 32), (1, 128), (True, 1)])
def test_malformed_requests_are_value_errors(machine: Machine, count: int, align: int) -> None:
    """count < 1, non-power-of-two alignment, a long run that is not whole words: ValueError
    naming the argument; nothing is allocated."""
    alloc = NsAllocator(machine, 0)
    with pytest.raises(ValueError, match="alloc"):
        alloc.alloc(count, align)
    assert alloc.in_use == 0


def test_vmids_stay_below_the_platform_width(machine: Machine) -> None:
    """The host platform has 8-bit VMIDs: 256 distinct VMIDs, then OutOfVmids; a freed VMID is
    the next one handed out; freeing one twice or out of range is refused."""
    alloc = NsAllocator(machine, 1)
    limit = 1 << machine.platform.features.vmid_bits
    vmids = [alloc.alloc_vmid() for _ in range(limit)]
    assert sorted(vmids) == list(range(limit))
    with pytest.raises(OutOfVmids, match=f"all {limit} VMIDs"):
        alloc.alloc_vmid()
    alloc.free_vmid(77)
    assert alloc.statistics().vmids_in_use == limit - 1
    assert NsAllocator(machine, 2).alloc_vmid() == 77
    alloc.free_vmid(5)
    for bad in (5, limit, -1):
        with pytest.raises(AllocatorError):
            alloc.free_vmid(bad)
    assert alloc.statistics().vmids_in_use == limit - 1


def test_set_up_happens_once(machine: Machine) -> None:
    """A second handle (another CPU, or a re-created handle) does not redo the set-up: granules
    allocated through the first stay allocated."""
    first = NsAllocator(machine, 0)
    pa = first.alloc()
    again = NsAllocator(machine, 0)
    other = NsAllocator.for_cpu(machine.cpu(1))
    assert again.allocated(pa) and other.allocated(pa) and other.in_use == 1
    with pytest.raises(ValueError, match="cpu"):
        NsAllocator(machine, 4)


# -- two processes -------------------------------------------------------------------------------

def start_together(cpu) -> None:  # type: ignore[no-untyped-def]
    """Barrier: mark this CPU ready in its activity counters, wait until every CPU is."""
    view, size = cpu.area.view, cpu.machine.control.area_size
    view.store_u64(cpu.id * size + OFF_COUNTERS, 1)
    while not all(view.load_u64(c * size + OFF_COUNTERS) for c in range(cpu.machine.cpus)):
        os.sched_yield()


def grab(cpu) -> list[int]:  # type: ignore[no-untyped-def]
    """CPU target: set the allocator up (racing the other CPU for it), then allocate 4-granule
    runs and single granules, freeing every third single granule again, until DRAM runs out;
    return what is kept."""
    start_together(cpu)
    alloc = NsAllocator.for_cpu(cpu)
    kept: list[int] = []
    runs = True
    i = 0
    while True:
        i += 1
        if runs:
            try:
                run = alloc.alloc(4, 4)
                kept.extend(run + k * GRANULE for k in range(4))
            except OutOfGranules:
                runs = False
        try:
            pa = alloc.alloc()
        except OutOfGranules:
            return kept
        if i % 3 == 2 and runs:
            alloc.free(pa)
        else:
            kept.append(pa)


@pytest.mark.multiprocess
def test_two_processes_never_get_the_same_granule() -> None:
    """Two CPU processes start on a fresh machine (neither has set the allocator up), race to set
    it up, then allocate (and free) from the shared bitmap at the same time until DRAM runs out,
    so their searches meet: the granules they keep are disjoint and together are exactly the
    non-Secure DRAM granules, and the shared count matches."""
    with Machine.create("host", cpus=2) as m:
        result = run_cpus(m, grab)
        assert result.ok, [f.describe() for f in result.failures]
        zero, one = result.results[0], result.results[1]
        assert zero and one
        kept = zero + one
        everything = {m.dram_base + i * GRANULE for i in range(m.granule_count)} - _secure(m)
        assert len(kept) == len(set(kept)) and set(kept) == everything
        alloc = NsAllocator(m, 0)
        assert alloc.in_use == len(kept) == alloc.bitmap_in_use()
        assert alloc.statistics().granules_reserved == len(_secure(m))
