"""Stage-2 translation tables (RTTs): geometry, entry encoding, and the locked walk.

An RTT granule holds 512 little-endian 64-bit VMSAv8-64 stage-2 descriptors (4 KiB granule,
no LPA2). Entries the hardware would not use (invalid descriptors) carry the RMM's software
state in bits the architecture leaves to software, as TF-RMM rel0 does:

    kind                level  bits[1:0]   HIPAS[4:2]    RIPAS[6:5]      NS[55]  OA
    UNASSIGNED          any    invalid 0   UNASSIGNED 0  EMPTY/RAM/DESTR  0       -
    UNASSIGNED_NS       any    invalid 0   UNASSIGNED 0  -                1       -
    ASSIGNED EMPTY      1..3   invalid 0   ASSIGNED 1    EMPTY 0          0       level aligned
    ASSIGNED DESTROYED  1..3   invalid 0   ASSIGNED 1    DESTROYED 2      0       level aligned
    ASSIGNED RAM        3 / 1,2 page 3 / block 1   (valid: Normal WB, RW, AF, inner shareable)
    ASSIGNED_NS         3 / 1,2 page 3 / block 1   (valid: host MemAttr/S2AP, AF, XN, IS, NS)
    TABLE               0..2   table 3     -             -                -       4 KiB aligned

RIPAS of a valid protected entry is RAM. Every other value is no entry the RMM writes (memory
corruption or an RMM bug): ``canonical`` tells, and the invariant checker reports it.

The start level's tables may be concatenated (up to 16 contiguous root RTTs); every walk first
locks root 0 (the caller does) and then, hand over hand, the root that covers the address, then
each next-level table, unlocking the parent only once the child is locked (locking rule 5).

Entries are read and written with single-copy-atomic 64-bit accesses, because a running realm
translates through them without taking locks, like a hardware walker.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rmm_mp.hw.granule import SUB_ROOT
from rmm_mp.rmm.granule_state import GranuleState

if TYPE_CHECKING:
    from rmm_mp.hw.granule import Granule, GranuleTable
    from rmm_mp.hw.memory import PhysicalMemory

GRANULE_SHIFT = 12
ENTRIES = 512
STRIDE = 9
PAGE_LEVEL = 3
MIN_BLOCK_LEVEL = 1
MAX_CONCATENATED = 16
MIN_IPA_BITS = 32
MAX_IPA_BITS = 48
MAX_PA_BITS = 48

DESC_TYPE_MASK = 0x3
DESC_INVALID = 0x0
DESC_BLOCK = 0x1
DESC_TABLE = 0x3
DESC_PAGE = 0x3
RAM_DESC_TYPE = (-1, DESC_BLOCK, DESC_BLOCK, DESC_PAGE)
"""By level, the descriptor type of a valid protected entry, the only encoding of ASSIGNED RAM
(spec A5.3.1: TTD.VALID is 1; TF-RMM's s2tte_is_assigned_ram): a block at levels 1 and 2, a page
at level 3, none at level 0. An invalid entry is never RAM, whatever its HIPAS and RIPAS bits say:
both walks (realm_call.lock_realm_page, stage2.Stage2Bus.translate) take RAM from this alone."""
HIPAS_SHIFT = 2
HIPAS_MASK = 0x7 << HIPAS_SHIFT
HIPAS_ASSIGNED = 1 << HIPAS_SHIFT
RIPAS_SHIFT = 5
RIPAS_MASK = 0x3 << RIPAS_SHIFT
NS = 1 << 55
AF = 1 << 10
XN = 2 << 53
MEMATTR_MASK = 0x7 << 2
MEMATTR_FWB_NORMAL_WB = 0x18
MEMATTR_FWB_RESERVED = 0x10
AP_MASK = 0x3 << 6
AP_RW = 0x3 << 6
SH_MASK = 0x3 << 8
SH_IS = 0x3 << 8
PROTECTED_ATTRS = MEMATTR_FWB_NORMAL_WB | AP_RW | AF | SH_IS
NS_HOST_ATTRS = MEMATTR_MASK | AP_MASK
"""Attribute bits a host may set in an RTT_MAP_UNPROTECTED descriptor."""
OA_MASK = ((1 << MAX_PA_BITS) - 1) & ~((1 << GRANULE_SHIFT) - 1)

RIPAS_EMPTY, RIPAS_RAM, RIPAS_DESTROYED = 0, 1, 2

_ENTRY = struct.Struct("<Q")
_RTT_STATE = GranuleState.RTT
_TABLE = struct.Struct(f"<{ENTRIES}Q")


class Kind(enum.IntEnum):
    """HIPAS of an entry as RMI_RTT_READ_ENTRY names it (plus the NS variants)."""

    UNASSIGNED = 0
    ASSIGNED = 1
    TABLE = 2
    UNASSIGNED_NS = 3
    ASSIGNED_NS = 4


@dataclass(frozen=True, slots=True)
class S2Ctx:
    """What a walk needs to know about a realm's stage 2 (copied out of the RD or REC)."""

    ipa_width: int
    start_level: int
    num_roots: int
    rtt_base: int

    @property
    def ipa_size(self) -> int:
        return 1 << self.ipa_width

    @property
    def par_size(self) -> int:
        """Size of the protected IPA range [0, 2^(ipa_width - 1))."""
        return 1 << (self.ipa_width - 1)

    def in_par(self, ipa: int) -> bool:
        return ipa < (1 << (self.ipa_width - 1))

    def root_slot(self, ipa: int) -> tuple[int, int]:
        """(root RTT number, entry index in it) of ``ipa`` at the start level."""
        sl_index = (ipa & ((1 << self.ipa_width) - 1)) >> level_shift(self.start_level)
        return sl_index >> STRIDE, sl_index & (ENTRIES - 1)


# -- geometry ----------------------------------------------------------------------------

def level_shift(level: int) -> int:
    return GRANULE_SHIFT + STRIDE * (PAGE_LEVEL - level)


def block_size(level: int) -> int:
    """Bytes of IPA space one entry at ``level`` maps (L3 4 KiB, L2 2 MiB, L1 1 GiB, L0 512 GiB)."""
    return 1 << (GRANULE_SHIFT + STRIDE * (PAGE_LEVEL - level))


def is_aligned(addr: int, level: int) -> bool:
    return addr & (block_size(level) - 1) == 0


def entry_index(ipa: int, level: int) -> int:
    """Index of ``ipa``'s entry in a (non-root or single-root) table at ``level``."""
    return (ipa >> level_shift(level)) & (ENTRIES - 1)


def num_root_rtts(ipa_width: int, start_level: int) -> int:
    """Concatenated root RTTs a realm with this IPA width and start level needs."""
    resolved = (PAGE_LEVEL - start_level) * STRIDE + GRANULE_SHIFT + STRIDE
    return 1 if resolved >= ipa_width else 1 << (ipa_width - resolved)


def start_level_consistent(ipa_width: int, start_level: int, pa_bits: int) -> bool:
    """Whether (ipa_width, start_level) is a valid 4 KiB stage 2 configuration without LPA2.

    After the Arm pseudocode AArch64.S2InconsistentSL with FEAT_TTST: levels = 3 - SL resolve
    levels * 9 + 12 bits plus one level of 9; concatenation adds up to 4 bits when SL > 0.
    Start level 0 also needs a PA range of at least 44 bits (AArch64.S2InvalidSL).
    """
    if not MIN_IPA_BITS <= ipa_width <= MAX_IPA_BITS or not 0 <= start_level <= PAGE_LEVEL:
        return False
    if start_level == 0 and pa_bits < 44:
        return False
    levels = PAGE_LEVEL - start_level
    min_bits = levels * STRIDE + GRANULE_SHIFT + 1
    max_bits = min_bits + STRIDE - 1 + (4 if start_level > 0 else 0)
    return min_bits <= ipa_width <= max_bits


# -- entry encoding -------------------------------------------------------------------------

def unassigned(ripas: int) -> int:
    return ripas << RIPAS_SHIFT


UNASSIGNED_EMPTY = unassigned(RIPAS_EMPTY)
UNASSIGNED_RAM = unassigned(RIPAS_RAM)
UNASSIGNED_DESTROYED = unassigned(RIPAS_DESTROYED)
UNASSIGNED_NS = NS


def assigned(pa: int, level: int, ripas: int) -> int:
    """A protected ASSIGNED entry: valid (page or block) when RIPAS is RAM, invalid otherwise."""
    if ripas == RIPAS_RAM:
        return pa | PROTECTED_ATTRS | (DESC_PAGE if level == PAGE_LEVEL else DESC_BLOCK)
    return pa | HIPAS_ASSIGNED | (ripas << RIPAS_SHIFT)


def assigned_ns(host_desc: int, level: int) -> int:
    """An ASSIGNED_NS entry from a host descriptor (OA, MemAttr, S2AP) plus the RMM's bits."""
    return ((host_desc & ~DESC_TYPE_MASK) | SH_IS | AF | NS | XN
            | (DESC_PAGE if level == PAGE_LEVEL else DESC_BLOCK))


def table(pa: int) -> int:
    return pa | DESC_TABLE


def decode(desc: int, level: int) -> tuple[Kind, int]:
    """(kind, RIPAS) of an entry; RIPAS is meaningful for UNASSIGNED and ASSIGNED only.

    It reads any 64-bit value, entries the RMM never writes included (``canonical`` tells them
    apart; the checker's rtt-encoding rule reports each): a descriptor of type 0b01 or 0b11 (valid)
    it does not take for a table, or of type 0b10 (bit 0 clear: architecturally invalid, but not
    the type 0b00 RMM writes for an invalid entry), reads as ASSIGNED RAM, or ASSIGNED_NS with the
    NS bit, whatever its level; one of type 0b00 as ASSIGNED when bits [4:2] are 1, else as
    UNASSIGNED (UNASSIGNED_NS with the NS bit), with whatever RIPAS bits [6:5] hold. It does not
    refuse them:
    (1) refusing every one means re-encoding each entry read, about 4.5 times decode's cost on
        valid entries (timeit, best of 45 runs over 8 valid entries: 200 ns a call, 910 ns
        with a canonical() check);
    (2) a lookup of bits [6:0], the NS bit and the level would cost nothing (100 ns) but refuse
        only some (type 0b10, a block at level 0 or 3, HIPAS 2..7, RIPAS 3, an invalid ASSIGNED
        RAM, RIPAS bits beside NS), not stray OA or attribute bits;
    (3) both walks and the handlers give these entries a documented meaning (docs/deviations.md:
        neither walk takes an invalid ASSIGNED RAM for RAM; RMI_RTT_READ_ENTRY and
        RSI_IPA_STATE_GET report it as read here). A refusal, an RmmInternalError in the middle
        of a walk, would change that in callers not written for it (realm_call.lock_realm_page
        decodes before it releases its table lock), and the checker, which reports rather than
        raises, would need a decode of its own.
    """
    kind = desc & DESC_TYPE_MASK
    if kind == DESC_INVALID:
        ripas = (desc & RIPAS_MASK) >> RIPAS_SHIFT
        if desc & HIPAS_MASK == HIPAS_ASSIGNED:
            return Kind.ASSIGNED, ripas
        return (Kind.UNASSIGNED_NS, 0) if desc & NS else (Kind.UNASSIGNED, ripas)
    if kind == DESC_TABLE and level < PAGE_LEVEL:
        return Kind.TABLE, 0
    return (Kind.ASSIGNED_NS, 0) if desc & NS else (Kind.ASSIGNED, RIPAS_RAM)


def canonical(desc: int, level: int) -> int | None:
    """The entry RMM writes for what ``decode`` reads in ``desc`` at ``level``, or None when RMM
    writes no entry that decodes so at that level (an ASSIGNED or ASSIGNED_NS entry at level 0,
    RIPAS 3, a reserved MemAttr in an ASSIGNED_NS entry).

    Only RMM writes RTT entries, and only the encodings of the table in this module's docstring:
    an entry that differs from its canonical form is memory corruption or an RMM bug (the
    checker's rtt-encoding rule), even though ``decode`` gives it a meaning. Examples: a
    descriptor of type 0b10, a block descriptor at level 3, an invalid entry with HIPAS ASSIGNED
    and RIPAS RAM (decode: ASSIGNED RAM; the hardware does not translate through it), a HIPAS
    field other than 0 or 1, the NS bit on an invalid ASSIGNED entry, stray attribute bits.
    """
    kind, ripas = decode(desc, level)
    if kind == Kind.TABLE:
        return table(desc & OA_MASK)
    if kind == Kind.UNASSIGNED_NS:
        return UNASSIGNED_NS
    if ripas > RIPAS_DESTROYED:
        return None
    if kind == Kind.UNASSIGNED:
        return unassigned(ripas)
    if level < MIN_BLOCK_LEVEL:
        return None
    if kind == Kind.ASSIGNED:
        return assigned(output_address(desc, level), level, ripas)
    if desc & MEMATTR_MASK == MEMATTR_FWB_RESERVED:
        return None
    return assigned_ns(output_address(desc, level) | (desc & NS_HOST_ATTRS), level)


def output_address(desc: int, level: int) -> int:
    """The PA an ASSIGNED, ASSIGNED_NS or TABLE entry holds (aligned to the entry's level)."""
    if (desc & DESC_TYPE_MASK) == DESC_TABLE and level < PAGE_LEVEL:
        return desc & OA_MASK
    return desc & OA_MASK & ~(block_size(level) - 1)


def is_table(desc: int, level: int) -> bool:
    return level < PAGE_LEVEL and desc & DESC_TYPE_MASK == DESC_TABLE


def counts_in_refcount(desc: int, level: int) -> bool:
    """Live for the RTT refcount: a table or a protected ASSIGNED entry (ASSIGNED_NS is not)."""
    kind, _ = decode(desc, level)
    return kind == Kind.TABLE or kind == Kind.ASSIGNED


def has_pa(desc: int, level: int) -> bool:
    """Live for the 'top' outputs: any entry that holds a PA, ASSIGNED_NS included."""
    kind, _ = decode(desc, level)
    return kind in (Kind.TABLE, Kind.ASSIGNED, Kind.ASSIGNED_NS)


# -- table access -------------------------------------------------------------------------

def read(memory: "PhysicalMemory", table_idx: int, index: int) -> int:
    assert memory.view is not None
    return memory.view.load_u64((table_idx << GRANULE_SHIFT) + (index << 3))


def write(memory: "PhysicalMemory", table_idx: int, index: int, desc: int) -> None:
    assert memory.view is not None
    memory.view.store_u64((table_idx << GRANULE_SHIFT) + (index << 3), desc)


def entries(memory: "PhysicalMemory", table_idx: int) -> tuple[int, ...]:
    """All 512 entries (the caller holds the table's lock)."""
    return _TABLE.unpack_from(memory.buf, table_idx << GRANULE_SHIFT)


def fill(memory: "PhysicalMemory", table_idx: int, descs: "list[int] | tuple[int, ...]") -> None:
    """Write all 512 entries of a table nobody can reach yet (a new RTT or root)."""
    _TABLE.pack_into(memory.buf, table_idx << GRANULE_SHIFT, *descs)


def unfolded(parent: int, level: int) -> list[int]:
    """The 512 entries of a level-``level`` table that replaces the parent entry ``parent``
    (at level - 1) without changing what it maps (RTT_CREATE's unfold rules)."""
    kind, ripas = decode(parent, level - 1)
    if kind == Kind.UNASSIGNED:
        return [unassigned(ripas)] * ENTRIES
    if kind == Kind.UNASSIGNED_NS:
        return [UNASSIGNED_NS] * ENTRIES
    step = block_size(level)
    base = output_address(parent, level - 1)
    if kind == Kind.ASSIGNED:
        return [assigned(base + i * step, level, ripas) for i in range(ENTRIES)]
    if kind == Kind.ASSIGNED_NS:
        attrs = parent & NS_HOST_ATTRS
        return [assigned_ns((base + i * step) | attrs, level) for i in range(ENTRIES)]
    raise ValueError(f"a TABLE entry at level {level - 1} cannot be unfolded")


# -- the walk -------------------------------------------------------------------------------

@dataclass(slots=True)
class Walk:
    """Where a walk stopped: ``llt`` is the last-level table reached, locked by the walker."""

    llt: "Granule"
    level: int
    index: int


def walk(granules: "GranuleTable", memory: "PhysicalMemory", ctx: S2Ctx, root0: "Granule",
         ipa: int, target_level: int) -> Walk:
    """Walk from the start level towards ``target_level``, hand over hand.

    The caller holds ``root0`` (root RTT 0) locked (with the hint ``root_hint(ctx)``); on
    return it is released unless it is the table the walk stopped in, which is returned locked.
    The walk stops early at the first entry that is not a table. Each lock names the table's
    level as its subclass (hw.granule: lock-order checkers read it; the lock ignores it).
    If a lock fails (a table entry naming a granule that is not an RTT), the walk releases the
    table it holds, ``root0`` included, before the error propagates.
    """
    root_no, index = ctx.root_slot(ipa)
    current = root0
    if root_no:
        try:
            current = granules.lock_known(root0.idx + root_no, _RTT_STATE, ctx.start_level | SUB_ROOT)
        except BaseException:
            root0.unlock()
            raise
        root0.unlock()
    level = ctx.start_level
    view = memory.view
    assert view is not None
    while level < target_level:
        desc = view.load_u64((current.idx << GRANULE_SHIFT) + (index << 3))
        if desc & DESC_TYPE_MASK != DESC_TABLE:
            break
        try:
            child = granules.lock_known(((desc & OA_MASK) - granules.base) >> GRANULE_SHIFT, _RTT_STATE,
                                        level + 1)
        except BaseException:
            # A table entry naming a granule that is not an RTT (lock_known: an RMM bug, which
            # kills the machine): the parent is released first, so the post-mortem lock check
            # and report do not see it held by a walk that is over.
            current.unlock()
            raise
        current.unlock()
        current = child
        level += 1
        index = (ipa >> level_shift(level)) & (ENTRIES - 1)
    return Walk(current, level, index)


def root_hint(ctx: S2Ctx) -> int:
    """The subclass hint of a root RTT of this stage 2 (lock_known's ``sub``)."""
    return ctx.start_level | SUB_ROOT


def skip_non_live(memory: "PhysicalMemory", table_idx: int, level: int, index: int, ipa: int) -> int:
    """The 'top' output: ``ipa`` if its entry holds a PA, else the IPA of the next entry in the
    same table that does, or the IPA just past the table."""
    values = entries(memory, table_idx)
    if _holds_pa(values[index]):
        return ipa
    size = block_size(level)
    i = index + 1
    while i < ENTRIES and not _holds_pa(values[i]):
        i += 1
    return (ipa & ~(size - 1)) + (i - index) * size


def _holds_pa(desc: int) -> bool:
    """has_pa() as two bit tests (this runs over whole tables): any valid descriptor (TABLE,
    page, block; protected or NS) or an invalid one with HIPAS ASSIGNED."""
    return bool(desc & DESC_TYPE_MASK) or desc & HIPAS_MASK == HIPAS_ASSIGNED
