"""The Realm Descriptor (RD) as it is kept inside its own 4 KiB granule.

Layout (little-endian offsets in the RD granule):

    0x000  state            u64  RealmState; written under the RD lock with a single-copy
                                 atomic store, read lock-free (REC_ENTER) with an atomic load
    0x008  ipa_width        u64  RmiRealmParams.s2sz
    0x010  rtt_level_start  s64
    0x018  rtt_num_start    u64
    0x020  rtt_base         u64  PA of root RTT 0 (the others follow contiguously)
    0x028  vmid             u64
    0x030  hash_algo        u64  RmiHashAlgorithm
    0x038  rec_count        u64  index the next REC must have; never decremented
    0x040  num_rec_aux      u64
    0x048  flags            u64  RmiRealmFlags as requested
    0x050  sve_vl, num_bps, num_wps, pmu_num_ctrs   u64 each
    0x078  tlb_generation   u64  bumped by every TLB invalidation of this realm (hw.tlb)
    0x080  exceptions       u64  synchronous exceptions the realm's guest took in the realm (SEAs,
                                 undefined instructions, misaligned accesses, address size
                                 faults), all RECs together; added to atomically by the CPU
                                 running the REC (count_exception), read only for the run report.
                                 A model statistic: no RMI command reports it
    0x100  rpv              64 bytes
    0x200  measurements     5 x 64 bytes: RIM, then REM1..REM4 (a SHA-256 value fills the
                            first 32 bytes of its slot, the rest stays zero)

Who may read what: every field but ``state`` and ``rec_count`` only under the RD lock (or from
a copy taken under it); ``state`` and ``rec_count`` are also read lock-free by code holding a
REC reference, which keeps the RD alive (REALM_DESTROY needs the RD refcount at 0).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rmm_mp.hw.memory import PhysicalMemory

if TYPE_CHECKING:
    from atomicshm import AtomicView
from rmm_mp.rmm.s2tt import S2Ctx

MEASUREMENT_SLOTS = 5
MEASUREMENT_SIZE = 64
RIM_SLOT = 0
RPV_SIZE = 64
NUM_REC_AUX = 16
"""REC_AUX_COUNT's answer (TF-RMM rel0: MAX_REC_AUX_GRANULES)."""


class RealmState:
    NEW: Final = 0
    ACTIVE: Final = 1
    SYSTEM_OFF: Final = 2
    NAMES: Final = ("NEW", "ACTIVE", "SYSTEM_OFF")


OFF_STATE = 0x000
OFF_REC_COUNT = 0x038
OFF_TLB_GENERATION = 0x078
OFF_EXCEPTIONS = 0x080
OFF_RPV = 0x100
OFF_MEASUREMENTS = 0x200
_FIXED = struct.Struct("<QQqQQQQQQQQQQQ")  # 0x000 .. 0x070


@dataclass(frozen=True, slots=True)
class RealmParams:
    """The RD's parameters, as set by REALM_CREATE (never changed afterwards)."""

    ipa_width: int
    rtt_level_start: int
    rtt_num_start: int
    rtt_base: int
    vmid: int
    hash_algo: int
    flags: int
    sve_vl: int
    num_bps: int
    num_wps: int
    pmu_num_ctrs: int

    def s2ctx(self) -> S2Ctx:
        return S2Ctx(self.ipa_width, self.rtt_level_start, self.rtt_num_start, self.rtt_base)


def count_exception(view: "AtomicView", rd_offset: int) -> None:
    """Count one synchronous exception taken by the guest of the realm whose RD is at DRAM offset
    ``rd_offset``: an atomic add, since RECs of the realm run on several CPUs at once. Called
    only where an exception is taken (interpreter via Stage2Bus, realm_run), never per entry."""
    view.fetch_add_u64(rd_offset + OFF_EXCEPTIONS, 1)


class Rd:
    """Typed access to one RD granule. The caller holds the RD lock unless a method says not."""

    __slots__ = ("memory", "idx", "offset")

    def __init__(self, memory: PhysicalMemory, idx: int) -> None:
        self.memory = memory
        self.idx = idx
        self.offset = idx << 12

    def initialise(self, p: RealmParams, rpv: bytes, num_rec_aux: int) -> None:
        """Write a NEW realm's descriptor into a zeroed granule."""
        _FIXED.pack_into(self.memory.buf, self.offset, RealmState.NEW, p.ipa_width, p.rtt_level_start,
                         p.rtt_num_start, p.rtt_base, p.vmid, p.hash_algo, 0, num_rec_aux, p.flags,
                         p.sve_vl, p.num_bps, p.num_wps, p.pmu_num_ctrs)
        self.memory.buf[self.offset + OFF_RPV:self.offset + OFF_RPV + RPV_SIZE] = rpv

    def params(self) -> RealmParams:
        (_, ipa_width, level, num, base, vmid, algo, _, _, flags, sve_vl, bps, wps, ctrs) = \
            _FIXED.unpack_from(self.memory.buf, self.offset)
        return RealmParams(ipa_width, level, num, base, vmid, algo, flags, sve_vl, bps, wps, ctrs)

    @property
    def state(self) -> int:
        """Realm state; an atomic load, so it may also be read without the lock."""
        assert self.memory.view is not None
        return self.memory.view.load_u64(self.offset + OFF_STATE)

    def set_state(self, state: int) -> None:
        assert self.memory.view is not None
        self.memory.view.store_u64(self.offset + OFF_STATE, state)

    @property
    def exceptions(self) -> int:
        """Exceptions the realm's guest took (count_exception); an atomic load, lock-free."""
        assert self.memory.view is not None
        return self.memory.view.load_u64(self.offset + OFF_EXCEPTIONS)

    @property
    def rec_count(self) -> int:
        assert self.memory.view is not None
        return self.memory.view.load_u64(self.offset + OFF_REC_COUNT)

    def set_rec_count(self, count: int) -> None:
        assert self.memory.view is not None
        self.memory.view.store_u64(self.offset + OFF_REC_COUNT, count)

    @property
    def num_rec_aux(self) -> int:
        return struct.unpack_from("<Q", self.memory.buf, self.offset + 0x040)[0]

    @property
    def rpv(self) -> bytes:
        return bytes(self.memory.buf[self.offset + OFF_RPV:self.offset + OFF_RPV + RPV_SIZE])

    def measurement(self, slot: int) -> bytes:
        """Slot 0 is the RIM, 1..4 the REMs; always 64 bytes (zero padded)."""
        start = self.offset + OFF_MEASUREMENTS + slot * MEASUREMENT_SIZE
        return bytes(self.memory.buf[start:start + MEASUREMENT_SIZE])

    def set_measurement(self, slot: int, value: bytes) -> None:
        start = self.offset + OFF_MEASUREMENTS + slot * MEASUREMENT_SIZE
        self.memory.buf[start:start + MEASUREMENT_SIZE] = value.ljust(MEASUREMENT_SIZE, b"\0")
