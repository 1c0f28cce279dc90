"""The host's Normal-world granule allocator and VMID allocator, shared by every CPU process.

A hypervisor hands out NS pages to realms (RDs, RTTs, RECs, data) and keeps its own VMID
bitmap (KVM does both). Every CPU process of a machine runs its own host, so this bookkeeping
lives in the machine's control block (hw/control.py), not in a Python object:

    OFF_HOST_GRANULES     one bit per DRAM granule (1 = allocated), little-endian u64 words;
                          bit b of word w is granule index 64 * w + b (PA = dram_base + idx * 4K)
    OFF_HOST_VMIDS        one bit per VMID, same encoding
    OFF_HOST_ALLOC_STATE  header: init flag u32 at +0 (0 none, 1 being set up, 2 ready),
                          reserved granules u64 at +8, the setting-up process u64 at +0x10
                          (setup_once.py); then one slot per CPU from +0x40,
                          ``slot_stride`` bytes apart (64, one cache line, up to 127 CPUs; 16 above):
                          +0 net granules allocated by this CPU (allocations minus frees,
                          wrapping u64), +8 granule search hint (word index) u32,
                          +12 VMID search hint (word index) u32

Every change is one atomic read-modify-write on a u64 word (fetch_or for one granule,
compare-and-swap for a run), so no lock is held and a process that dies mid-call leaves the
bitmap consistent. Each CPU starts its search at its own hint, spread over DRAM at set-up, so
CPUs allocating at the same time touch different words. The in-use count is a sum of per-CPU
counters for the same reason: a granule allocated on CPU 0 and freed on CPU 1 leaves +1 and
-1 that add up to 0.

Set-up happens once per machine, by whichever process gets there first (setup_once.py): it
marks the granules nobody may have (the platform's Secure regions, and the bits past the end of
DRAM) as permanently allocated, spreads the hints and stores 2 in the init flag; the others
wait for the 2, sleeping, and take the set-up over if its process has ended.

Runs: ``alloc(count, align)`` returns ``count`` contiguous granules whose first PA is a
multiple of ``align`` granules. Runs of up to 64 granules never cross a 64-granule (256 KiB)
boundary of the bitmap; longer runs (KVM's 2 MiB backing pages) take whole words and need
``count`` and ``align`` to be multiples of 64.

This module owns the host's allocation bitmaps. It must not make RMI calls: what a granule is
used for (and delegating it) is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rmm_mp.host.setup_once import set_up_once
from rmm_mp.hw.control import (
    HOST_ALLOC_STATE_BYTES, HOST_GRANULES_BYTES, HOST_VMIDS_BYTES, OFF_HOST_ALLOC_STATE, OFF_HOST_GRANULES,
    OFF_HOST_VMIDS,
)

if TYPE_CHECKING:
    from rmm_mp.machine import Cpu, Machine

GRANULE = 4096
WORD_BITS = 64
FULL = (1 << WORD_BITS) - 1
MAX_RUN_IN_WORD = WORD_BITS

_OFF_INIT = OFF_HOST_ALLOC_STATE
_OFF_RESERVED = OFF_HOST_ALLOC_STATE + 0x08
_OFF_SETTER = OFF_HOST_ALLOC_STATE + 0x10
_OFF_SLOTS = OFF_HOST_ALLOC_STATE + 0x40
_SLOT_NET, _SLOT_HINT, _SLOT_VMID_HINT = 0, 8, 12


class AllocatorError(RuntimeError):
    """The host asked its allocator for something impossible (a bad free, a bad request)."""


class OutOfGranules(AllocatorError, MemoryError):
    """No free run of NS granules satisfies the request."""


class OutOfVmids(AllocatorError):
    """Every VMID below 2^vmid_bits is in use."""


@dataclass(frozen=True)
class AllocatorStats:
    """A snapshot of the shared allocator (counters are read without stopping other CPUs)."""

    granules_total: int       # DRAM granules
    granules_reserved: int    # never handed out (Secure regions)
    granules_in_use: int      # allocated by hosts and not freed yet
    vmids_total: int          # 2^vmid_bits
    vmids_in_use: int

    @property
    def granules_free(self) -> int:
        return self.granules_total - self.granules_reserved - self.granules_in_use


def slot_stride(cpus: int) -> int:
    """Bytes between two CPUs' slots: a cache line each while they fit, else 16."""
    return 64 if _OFF_SLOTS - OFF_HOST_ALLOC_STATE + 64 * cpus <= HOST_ALLOC_STATE_BYTES else 16


class NsAllocator:
    """One CPU's handle on the machine's shared NS granule and VMID allocators.

    Args:
        machine: a machine this process created or attached.
        cpu: the CPU id whose search hints and counters this handle uses (0..machine.cpus - 1).

    Raises:
        ValueError for a CPU id out of range; AllocatorError when the machine's DRAM does not
        fit the bitmap.
    """

    def __init__(self, machine: "Machine", cpu: int = 0) -> None:
        if isinstance(cpu, bool) or not isinstance(cpu, int) or not 0 <= cpu < machine.cpus:
            raise ValueError(f"cpu = {cpu!r}: expected a CPU id in 0..{machine.cpus - 1}")
        count = machine.granule_count
        if count > HOST_GRANULES_BYTES * 8:
            raise AllocatorError(f"{count} DRAM granules do not fit the host bitmap ({HOST_GRANULES_BYTES * 8} bits)")
        self.machine = machine
        self.cpu = cpu
        self._view = machine.control.view
        self._buf = machine.control.buf
        self._base = machine.dram_base
        self._base_idx = machine.dram_base // GRANULE
        self._count = count
        self._words = (count + WORD_BITS - 1) // WORD_BITS
        self._cpus = machine.cpus
        self._stride = slot_stride(machine.cpus)
        self._slot = _OFF_SLOTS + cpu * self._stride
        self._vmid_limit = 1 << machine.platform.features.vmid_bits
        self._vmid_words = (self._vmid_limit + WORD_BITS - 1) // WORD_BITS
        if self._vmid_words * 8 > HOST_VMIDS_BYTES:
            raise AllocatorError(f"vmid_bits {machine.platform.features.vmid_bits} does not fit the host VMID bitmap")
        self._reserved = self._secure_indices()
        self._reserved_masks: dict[int, int] = {}
        for idx in self._reserved:
            w = idx // WORD_BITS
            self._reserved_masks[w] = self._reserved_masks.get(w, 0) | 1 << (idx % WORD_BITS)
        self._initialise()

    @classmethod
    def for_cpu(cls, cpu: "Cpu") -> "NsAllocator":
        """The handle for a bound CPU (the usual way in a CPU process)."""
        return cls(cpu.machine, cpu.id)

    # -- set-up ----------------------------------------------------------------------------

    def _secure_indices(self) -> list[int]:
        found: set[int] = set()
        for base, size in self.machine.secure_regions:
            lo = max(base, self._base)
            hi = min(base + size, self._base + self._count * GRANULE)
            found.update(range((lo - self._base) // GRANULE, (hi - self._base + GRANULE - 1) // GRANULE))
        return sorted(found)

    def _initialise(self) -> None:
        """Set the shared state up once per machine; concurrent callers wait for the winner
        (setup_once.py: a winner that died is taken over)."""
        set_up_once(self._view, _OFF_INIT, _OFF_SETTER, self._set_up)

    def _set_up(self) -> None:
        """The set-up itself: idempotent (bits set, values stored), as a takeover redoes it."""
        view = self._view
        for w, mask in self._reserved_masks.items():
            view.fetch_or_u64(OFF_HOST_GRANULES + w * 8, mask)
        tail = self._count % WORD_BITS
        if tail:
            view.fetch_or_u64(OFF_HOST_GRANULES + (self._words - 1) * 8, FULL & ~((1 << tail) - 1))
        view.store_u64(_OFF_RESERVED, len(self._reserved))
        for c in range(self._cpus):
            slot = _OFF_SLOTS + c * self._stride
            view.store_u32(slot + _SLOT_HINT, c * self._words // self._cpus)
            view.store_u32(slot + _SLOT_VMID_HINT, c * self._vmid_words // self._cpus)

    # -- granules ----------------------------------------------------------------------------

    def alloc(self, count: int = 1, align: int = 1) -> int:
        """Allocate ``count`` contiguous NS granules whose first PA is ``align`` granules aligned.

        Args:
            count: 1..64, or a multiple of 64 (whole bitmap words).
            align: a power of two, in granules; for count > 64 a multiple of 64.

        Returns:
            The PA of the first granule.

        Raises:
            ValueError for a malformed request; OutOfGranules when no such run is free.
        """
        _check_request(count, align)
        if count > MAX_RUN_IN_WORD:
            return self._alloc_words(count, align)
        words = self._words
        start = self._view.load_u32(self._slot + _SLOT_HINT) % words
        mask = (1 << count) - 1
        first = (-self._base_idx) % align
        for step in range(words):
            w = (start + step) % words
            bit = self._claim_in_word(w, mask, count, align, first)
            if bit >= 0:
                if w != start:
                    self._view.store_u32(self._slot + _SLOT_HINT, w)
                self._view.fetch_add_u64(self._slot + _SLOT_NET, count)
                return self._base + (w * WORD_BITS + bit) * GRANULE
        raise self._exhausted(count, align)

    def _claim_in_word(self, w: int, mask: int, count: int, align: int, first: int) -> int:
        """Set ``count`` clear bits at an aligned offset of word ``w``; the offset, or -1 if none
        is free. One granule: fetch_or, retried if another CPU set the bit first; a run: CAS."""
        view = self._view
        off = OFF_HOST_GRANULES + w * 8
        cur = view.load_u64(off)
        while cur != FULL:
            bit = _fit(cur, mask, count, align, first)
            if bit < 0:
                return -1
            want = mask << bit
            if count == 1:
                prev = view.fetch_or_u64(off, want)
                if not prev & want:
                    return bit
                cur = prev | want
            else:
                prev = view.cas_u64(off, cur, cur | want)
                if prev == cur:
                    return bit
                cur = prev
        return -1

    def _alloc_words(self, count: int, align: int) -> int:
        """Runs of whole words: claim each word 0 -> FULL in turn, undo on a lost race."""
        if self._base_idx % WORD_BITS:
            raise AllocatorError(f"alloc(count={count}, align={align}): runs longer than {WORD_BITS} granules need "
                                 f"DRAM based on a {WORD_BITS * GRANULE // 1024} KiB boundary "
                                 f"(dram_base is {self._base:#x})")
        view = self._view
        n = count // WORD_BITS
        step = align // WORD_BITS
        first = (-(self._base_idx // WORD_BITS)) % step
        for w in range(first, self._words - n + 1, step):
            if any(view.load_u64(OFF_HOST_GRANULES + (w + i) * 8) for i in range(n)):
                continue
            claimed = 0
            while claimed < n and view.cas_u64(OFF_HOST_GRANULES + (w + claimed) * 8, 0, FULL) == 0:
                claimed += 1
            if claimed == n:
                view.fetch_add_u64(self._slot + _SLOT_NET, count)
                return self._base + w * WORD_BITS * GRANULE
            for i in range(claimed):
                view.store_u64(OFF_HOST_GRANULES + (w + i) * 8, 0)
        raise self._exhausted(count, align)

    def _exhausted(self, count: int, align: int) -> OutOfGranules:
        s = self.statistics()
        return OutOfGranules(
            f"NS allocator (CPU {self.cpu}): no free run of {count:,} granule(s) aligned to {align:,} granule(s) "
            f"({align * GRANULE // 1024:,} KiB); {s.granules_in_use:,} of {s.granules_total - s.granules_reserved:,} "
            f"usable granules are in use and {s.granules_free:,} free (too few, or no aligned run among them). "
            f"Free what finished realms hold, or use a platform with more DRAM")

    def free(self, pa: int, count: int = 1) -> None:
        """Return ``count`` granules starting at ``pa`` (any subset of earlier allocations).

        Raises:
            AllocatorError if any of them is not allocated (a double free), is reserved, or is
            outside DRAM. Nothing is freed then.
        """
        first = self._index(pa, "free")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1 or first + count > self._count:
            raise AllocatorError(f"free(pa={pa:#x}, count={count!r}): the run must lie inside DRAM")
        pieces = _pieces(first, count)
        for w, mask in pieces:
            cur = self._view.load_u64(OFF_HOST_GRANULES + w * 8)
            wrong = (mask & ~cur) | (mask & self._reserved_masks.get(w, 0))
            if wrong:
                bad = self._base + (w * WORD_BITS + (wrong & -wrong).bit_length() - 1) * GRANULE
                raise AllocatorError(f"free(pa={pa:#x}, count={count}): granule {bad:#x} is not allocated "
                                     f"(a double free, a granule never allocated, or a reserved Secure granule)")
        for w, mask in pieces:
            prev = self._view.fetch_and_u64(OFF_HOST_GRANULES + w * 8, FULL & ~mask)
            if prev & mask != mask:
                raise AllocatorError(f"free(pa={pa:#x}, count={count}): another CPU freed granules of this run "
                                     f"at the same time (double free)")
        self._view.fetch_add_u64(self._slot + _SLOT_NET, (-count) & FULL)

    def allocated(self, pa: int) -> bool:
        """Whether the granule at ``pa`` is allocated (or reserved)."""
        idx = self._index(pa, "allocated")
        return bool(self._view.load_u64(OFF_HOST_GRANULES + (idx // WORD_BITS) * 8) >> (idx % WORD_BITS) & 1)

    def _index(self, pa: int, what: str) -> int:
        if isinstance(pa, bool) or not isinstance(pa, int) or pa % GRANULE:
            raise AllocatorError(f"{what}(pa={pa!r}): expected a granule-aligned PA")
        idx = (pa - self._base) // GRANULE
        if not 0 <= idx < self._count:
            raise AllocatorError(f"{what}(pa={pa:#x}): outside DRAM [{self._base:#x}, "
                                 f"{self._base + self._count * GRANULE:#x})")
        return idx

    # -- VMIDs --------------------------------------------------------------------------------

    def alloc_vmid(self) -> int:
        """Reserve the lowest free VMID at or after this CPU's hint.

        Raises:
            OutOfVmids when all 2^vmid_bits VMIDs are in use.
        """
        view = self._view
        words = self._vmid_words
        start = view.load_u32(self._slot + _SLOT_VMID_HINT) % words
        for step in range(words):
            w = (start + step) % words
            off = OFF_HOST_VMIDS + w * 8
            cur = view.load_u64(off)
            limit = min(WORD_BITS, self._vmid_limit - w * WORD_BITS)
            valid = (1 << limit) - 1
            while cur & valid != valid:
                bit = (~cur & (cur + 1)).bit_length() - 1
                prev = view.fetch_or_u64(off, 1 << bit)
                if not prev >> bit & 1:
                    if w != start:
                        view.store_u32(self._slot + _SLOT_VMID_HINT, w)
                    return w * WORD_BITS + bit
                cur = prev | (1 << bit)
        raise OutOfVmids(f"host VMID allocator (CPU {self.cpu}): all {self._vmid_limit} VMIDs "
                         f"(vmid_bits {self.machine.platform.features.vmid_bits}) are in use; destroy a realm first")

    def free_vmid(self, vmid: int) -> None:
        """Release a VMID taken with alloc_vmid.

        Raises:
            AllocatorError if it is out of range or not in use.
        """
        if isinstance(vmid, bool) or not isinstance(vmid, int) or not 0 <= vmid < self._vmid_limit:
            raise AllocatorError(f"free_vmid({vmid!r}): expected a VMID in 0..{self._vmid_limit - 1}")
        bit = 1 << (vmid % WORD_BITS)
        prev = self._view.fetch_and_u64(OFF_HOST_VMIDS + (vmid // WORD_BITS) * 8, FULL & ~bit)
        if not prev & bit:
            raise AllocatorError(f"free_vmid({vmid}): VMID {vmid} is not in use (double free)")

    # -- statistics ---------------------------------------------------------------------------

    @property
    def in_use(self) -> int:
        """Granules allocated and not freed, over all CPUs."""
        view = self._view
        net = sum(view.load_u64(_OFF_SLOTS + c * self._stride + _SLOT_NET) for c in range(self._cpus))
        return net & FULL

    def statistics(self) -> AllocatorStats:
        vmids = int.from_bytes(self._buf[OFF_HOST_VMIDS:OFF_HOST_VMIDS + self._vmid_words * 8], "little")
        return AllocatorStats(self._count, self._view.load_u64(_OFF_RESERVED), self.in_use, self._vmid_limit,
                              vmids.bit_count())

    def bitmap_in_use(self) -> int:
        """Granules whose bit is set, minus the reserved ones: an independent count for checks."""
        raw = int.from_bytes(self._buf[OFF_HOST_GRANULES:OFF_HOST_GRANULES + self._words * 8], "little")
        tail = self._words * WORD_BITS - self._count
        return raw.bit_count() - tail - self._view.load_u64(_OFF_RESERVED)

    def __repr__(self) -> str:
        return f"<NsAllocator CPU {self.cpu} of {self.machine.name}: {self.in_use} granules in use>"


def _check_request(count: int, align: int) -> None:
    for name, value in (("count", count), ("align", align)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"alloc({name}={value!r}): expected a positive int")
    if align & (align - 1):
        raise ValueError(f"alloc(align={align}): expected a power of two (granules)")
    if count > MAX_RUN_IN_WORD and (count % WORD_BITS or align % WORD_BITS):
        raise ValueError(f"alloc(count={count}, align={align}): runs longer than {WORD_BITS} granules must be a "
                         f"multiple of {WORD_BITS} granules, aligned to a multiple of {WORD_BITS}")
    if count <= MAX_RUN_IN_WORD and align > WORD_BITS:
        raise ValueError(f"alloc(count={count}, align={align}): alignment above {WORD_BITS} granules needs a run of "
                         f"whole words (count a multiple of {WORD_BITS})")


def _fit(cur: int, mask: int, count: int, align: int, first: int) -> int:
    """The lowest bit offset (first + k * align) where ``count`` bits of ``cur`` are clear, or -1."""
    free = ~cur & FULL
    if count == 1 and align == 1:
        return (free & -free).bit_length() - 1
    for bit in range(first, WORD_BITS - count + 1, align):
        if (free >> bit) & mask == mask:
            return bit
    return -1


def _pieces(first: int, count: int) -> "list[tuple[int, int]]":
    """(word, mask) pairs covering granule indices [first, first + count)."""
    out = []
    idx, end = first, first + count
    while idx < end:
        w, b = divmod(idx, WORD_BITS)
        n = min(WORD_BITS - b, end - idx)
        out.append((w, ((1 << n) - 1) << b))
        idx += n
    return out
