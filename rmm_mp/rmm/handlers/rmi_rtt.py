"""RTT structure and entry commands (DEN0137 B4.3.15-17, 19-22): RMI_RTT_CREATE, RMI_RTT_DESTROY,
RMI_RTT_FOLD, RMI_RTT_READ_ENTRY, RMI_RTT_MAP_UNPROTECTED and RMI_RTT_UNMAP_UNPROTECTED.

Every command here locks the RD, reads its translation parameters, locks root RTT 0, releases
the RD (so that commands on different subtrees of one realm run in parallel below the root)
and walks hand over hand (s2tt.walk). Checks follow TF-RMM rel0's order, which is compatible
with the specification's partial orders; where rel0 differs from the specification the
specification wins (MAP/UNMAP at a level above the start level: INPUT, where rel0 walks above
the root).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.structs import RmiRttEntryState
from rmm_mp.rmm import s2tt, stage2
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.realm_desc import RealmParams, Rd
from rmm_mp.rmm.s2tt import Kind, S2Ctx, Walk

if TYPE_CHECKING:
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu

DELEGATED, RD, RTT = GranuleState.DELEGATED, GranuleState.RD, GranuleState.RTT
ENTRIES = s2tt.ENTRIES

LOCK_SEQUENCES = {
    "RMI_RTT_CREATE": ("the new RTT (DELEGATED) and the RD in ascending address order; root RTT 0; "
                       "release the RD; walk hand over hand to the parent table",
                       "two externals in address order (rule 2), then internal RTTs root to leaf (rules 1, 5)"),
    "RMI_RTT_DESTROY": ("the RD; root RTT 0; release the RD; walk to the parent table; the child RTT",
                        "RD before RTTs (rule 1); RTTs parent before child within one tree (rule 5)"),
    "RMI_RTT_FOLD": ("the RD; root RTT 0; release the RD; walk to the parent table; the child RTT",
                     "RD before RTTs (rule 1); RTTs parent before child within one tree (rule 5)"),
    "RMI_RTT_READ_ENTRY": ("the RD; root RTT 0; release the RD; walk to the target table",
                           "RD before RTTs (rule 1); RTTs root to leaf (rule 5)"),
    "RMI_RTT_MAP_UNPROTECTED": ("the RD; root RTT 0; release the RD; walk to the target table",
                                "RD before RTTs (rule 1); RTTs root to leaf (rule 5)"),
    "RMI_RTT_UNMAP_UNPROTECTED": ("the RD; root RTT 0; release the RD; walk to the target table",
                                  "RD before RTTs (rule 1); RTTs root to leaf (rule 5)"),
}
FAILURE_CONDITIONS = {
    "RMI_RTT_CREATE": ("rtt_align", "rtt_bound", "rtt_state", "rd_align", "rd_bound", "rd_state",
                       "level_bound", "ipa_align", "ipa_bound", "rtt_bound2", "rtt_walk", "rtte_state"),
    "RMI_RTT_DESTROY": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound",
                        "rtt_walk", "rtte_state", "rtt_live"),
    "RMI_RTT_FOLD": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound",
                     "rtt_walk", "rtte_state", "rtt_homo"),
    "RMI_RTT_READ_ENTRY": ("rd_align", "rd_bound", "rd_state", "level_bound", "ipa_align", "ipa_bound"),
    "RMI_RTT_MAP_UNPROTECTED": ("level_bound", "rd_align", "rd_bound", "rd_state", "attr_valid", "addr_align",
                                "addr_bound", "ipa_align", "ipa_bound", "rtt_walk", "rtte_state"),
    "RMI_RTT_UNMAP_UNPROTECTED": ("level_bound", "rd_align", "rd_bound", "rd_state", "ipa_align", "ipa_bound",
                                  "rtt_walk", "rtte_state"),
}


# -- shared steps -----------------------------------------------------------------------------

def lock_rd(rmm: "RmmCpu", rd_addr: int, outputs: tuple[int, ...] = ()) -> "tuple[Granule, RealmParams]":
    """Lock the RD (rd_align, rd_bound, rd_state) and read its parameters."""
    g = rmm.granules.find_lock(rd_addr, RD)
    if g is None:
        raise RmiError.input(outputs)
    return g, Rd(rmm.memory, g.idx).params()


def walk_from_rd(rmm: "RmmCpu", rd_g: "Granule", ctx: S2Ctx, ipa: int, level: int) -> Walk:
    """Lock root RTT 0, release the RD, walk towards ``level``; returns the locked last table."""
    root0 = rmm.granules.lock_known(rmm.granules.find(ctx.rtt_base), RTT, s2tt.root_hint(ctx))
    rd_g.unlock()
    return s2tt.walk(rmm.granules, rmm.memory, ctx, root0, ipa, level)


def _structure_args_ok(ctx: S2Ctx, ipa: int, level: int) -> bool:
    """level in [SL + 1, 3], ipa aligned to level - 1 and inside the IPA space."""
    return (ctx.start_level < level <= s2tt.PAGE_LEVEL and ipa < ctx.ipa_size
            and s2tt.is_aligned(ipa, level - 1))


def _signed(level: int) -> int:
    return level - (1 << 64) if level >> 63 else level


# -- RTT_CREATE ----------------------------------------------------------------------------

def rmi_rtt_create(rmm: "RmmCpu", rd_addr: int, rtt_addr: int, ipa: int, level: int) -> None:
    """Install a new RTT at ``level``; the parent entry is unfolded into it unchanged in meaning."""
    level = _signed(level)
    pair = rmm.granules.lock_two(rtt_addr, DELEGATED, rd_addr, RD)
    if pair is None:
        raise RmiError.input()
    new, rd_g = pair
    ctx = Rd(rmm.memory, rd_g.idx).params().s2ctx()
    if not _structure_args_ok(ctx, ipa, level) or rtt_addr >= 1 << s2tt.MAX_PA_BITS:
        rd_g.unlock()
        new.unlock()
        raise RmiError.input()
    w = walk_from_rd(rmm, rd_g, ctx, ipa, level - 1)
    try:
        if w.level != level - 1:
            raise RmiError.rtt(w.level)
        parent = s2tt.read(rmm.memory, w.llt.idx, w.index)
        kind, _ = s2tt.decode(parent, level - 1)
        if kind == Kind.TABLE:
            raise RmiError.rtt(level - 1)
        s2tt.fill(rmm.memory, new.idx, s2tt.unfolded(parent, level))
        if kind == Kind.ASSIGNED:
            new.refcount_add(ENTRIES)       # the block's one reference becomes the table's
        else:
            w.llt.refcount_add(1)           # a new TABLE entry where there was none live
        s2tt.write(rmm.memory, w.llt.idx, w.index, s2tt.table(rtt_addr))
    except RmiError:
        w.llt.unlock()
        new.unlock()
        raise
    w.llt.unlock()
    new.unlock_transition(RTT)


# -- RTT_DESTROY -----------------------------------------------------------------------------

def rmi_rtt_destroy(rmm: "RmmCpu", rd_addr: int, ipa: int, level: int) -> tuple[int, int]:
    """Remove a non-live RTT at ``level``; outputs (rtt PA, top)."""
    level = _signed(level)
    rd_g, params = lock_rd(rmm, rd_addr, (0, 0))
    ctx = params.s2ctx()
    if not _structure_args_ok(ctx, ipa, level):
        rd_g.unlock()
        raise RmiError.input((0, 0))
    w = walk_from_rd(rmm, rd_g, ctx, ipa, level - 1)
    memory = rmm.memory
    try:
        parent = s2tt.read(memory, w.llt.idx, w.index)
        if w.level != level - 1 or not s2tt.is_table(parent, level - 1):
            raise RmiError.rtt(w.level, (0, s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa)))
        child_pa = s2tt.output_address(parent, level - 1)
        child = rmm.granules.lock_known(rmm.granules.find(child_pa), RTT, level)
        if child.refcount != 0:
            child.unlock()
            raise RmiError.rtt(level, (0, ipa))
        replacement = s2tt.UNASSIGNED_DESTROYED if ctx.in_par(ipa) else s2tt.UNASSIGNED_NS
        w.llt.refcount_add(-1)
        s2tt.write(memory, w.llt.idx, w.index, replacement)
        stage2.invalidate(rmm, rd_g.idx)    # the child may have held valid ASSIGNED_NS entries
        memory.zero(child.idx)
        child.unlock_transition(DELEGATED)
        top = s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa)
    finally:
        w.llt.unlock()
    return child_pa, top


# -- RTT_FOLD ------------------------------------------------------------------------------

def rmi_rtt_fold(rmm: "RmmCpu", rd_addr: int, ipa: int, level: int) -> tuple[int]:
    """Fold a homogeneous RTT at ``level`` into its parent entry; output the RTT's PA."""
    level = _signed(level)
    rd_g, params = lock_rd(rmm, rd_addr)
    ctx = params.s2ctx()
    if not _structure_args_ok(ctx, ipa, level):
        rd_g.unlock()
        raise RmiError.input()
    w = walk_from_rd(rmm, rd_g, ctx, ipa, level - 1)
    memory = rmm.memory
    try:
        if w.level != level - 1:
            raise RmiError.rtt(w.level)
        parent = s2tt.read(memory, w.llt.idx, w.index)
        if not s2tt.is_table(parent, level - 1):
            raise RmiError.rtt(level - 1)
        child_pa = s2tt.output_address(parent, level - 1)
        child = rmm.granules.lock_known(rmm.granules.find(child_pa), RTT, level)
        try:
            folded, release = _fold(s2tt.entries(memory, child.idx), child.refcount, level)
        except RmiError:
            child.unlock()
            raise
        if release:
            child.refcount_add(-ENTRIES)    # the assigned entries' references move to the block
        else:
            w.llt.refcount_add(-1)          # the TABLE entry goes; an unassigned entry is not live
        s2tt.write(memory, w.llt.idx, w.index, folded)
        # Break-before-make's TLBI (rmi.md 6.7): a REC walking stage 2 without locks may have
        # read the old TABLE entry and be about to read the child; the child may be zeroed and
        # handed back only once every CPU executing the realm has passed a sync point.
        # Without it such a walk read a zeroed table (an SEA in the realm) or, once the host
        # reused the granule, another realm's page.
        stage2.invalidate(rmm, rd_g.idx)
        memory.zero(child.idx)
        child.unlock_transition(DELEGATED)
    finally:
        w.llt.unlock()
    return (child_pa,)


def _fold(entries: tuple[int, ...], refcount: int, level: int) -> tuple[int, bool]:
    """The parent entry replacing a table of ``entries`` at ``level``, and whether the table's
    refcount of 512 moves to that entry (assigned block) rather than the parent losing one."""
    first = entries[0]
    kind, ripas = s2tt.decode(first, level)
    if refcount == 0:
        if kind == Kind.UNASSIGNED and all(e == first for e in entries):
            return s2tt.unassigned(ripas), False
        if kind == Kind.UNASSIGNED_NS and all(e == first for e in entries):
            return s2tt.UNASSIGNED_NS, False
        # Assigned entries fold only into a level 1 or 2 block (A5.5.6: "Level is 2 or 3"); a
        # level-1 table of them is not homogeneous: rtt_homo, (RMI_ERROR_RTT, level). TF-RMM
        # rel0 reports level - 1 here; the specification wins.
        if kind == Kind.ASSIGNED_NS and level > s2tt.MIN_BLOCK_LEVEL \
                and _contiguous(entries, level, Kind.ASSIGNED_NS, 0):
            block = s2tt.OA_MASK & ~(s2tt.block_size(level - 1) - 1)
            return s2tt.assigned_ns((first & block) | (first & s2tt.NS_HOST_ATTRS), level - 1), False
        raise RmiError.rtt(level)
    if refcount == ENTRIES and level > s2tt.MIN_BLOCK_LEVEL:
        if kind == Kind.ASSIGNED and _contiguous(entries, level, Kind.ASSIGNED, ripas):
            return s2tt.assigned(s2tt.output_address(first, level), level - 1, ripas), True
    raise RmiError.rtt(level)


def _contiguous(entries: tuple[int, ...], level: int, kind: Kind, ripas: int) -> bool:
    """All entries of ``kind`` (and ``ripas``) mapping one contiguous range whose first address
    is aligned to the parent's block size, with identical attributes."""
    step = s2tt.block_size(level)
    base = s2tt.output_address(entries[0], level)
    if base % s2tt.block_size(level - 1):
        return False
    attrs = entries[0] & ~s2tt.OA_MASK
    for i, entry in enumerate(entries):
        if s2tt.decode(entry, level) != (kind, ripas) or s2tt.output_address(entry, level) != base + i * step:
            return False
        if entry & ~s2tt.OA_MASK != attrs:
            return False
    return True


# -- RTT_READ_ENTRY --------------------------------------------------------------------------

def rmi_rtt_read_entry(rmm: "RmmCpu", rd_addr: int, ipa: int, level: int) -> tuple[int, int, int, int]:
    """Outputs (walk level, state, desc, ripas) of the entry the walk towards ``level`` reaches."""
    level = _signed(level)
    rd_g, params = lock_rd(rmm, rd_addr)
    ctx = params.s2ctx()
    if not (ctx.start_level <= level <= s2tt.PAGE_LEVEL and ipa < ctx.ipa_size and s2tt.is_aligned(ipa, level)):
        rd_g.unlock()
        raise RmiError.input()
    w = walk_from_rd(rmm, rd_g, ctx, ipa, level)
    desc = s2tt.read(rmm.memory, w.llt.idx, w.index)
    w.llt.unlock()
    return (w.level & 0xFFFF_FFFF_FFFF_FFFF, *_entry_outputs(desc, w.level))


_UNASSIGNED = int(RmiRttEntryState.UNASSIGNED)
_ASSIGNED = int(RmiRttEntryState.ASSIGNED)
_TABLE = int(RmiRttEntryState.TABLE)


def _entry_outputs(desc: int, level: int) -> tuple[int, int, int]:
    """(state, desc, ripas) as RMI_RTT_READ_ENTRY reports an entry (B4.3.20); plain ints, never
    enum members, since they go into registers."""
    kind, ripas = s2tt.decode(desc, level)
    if kind == Kind.UNASSIGNED:
        return _UNASSIGNED, 0, ripas
    if kind == Kind.UNASSIGNED_NS:
        return _UNASSIGNED, 0, s2tt.RIPAS_EMPTY
    if kind == Kind.ASSIGNED:
        # The PA even for RIPAS DESTROYED (spec; TF-RMM rel0 reported 0, fixed in f5257c6e).
        return _ASSIGNED, s2tt.output_address(desc, level), ripas
    if kind == Kind.ASSIGNED_NS:
        host = desc & ((s2tt.OA_MASK & ~(s2tt.block_size(level) - 1)) | s2tt.NS_HOST_ATTRS)
        return _ASSIGNED, host, s2tt.RIPAS_EMPTY
    return _TABLE, s2tt.output_address(desc, level), s2tt.RIPAS_EMPTY


# -- RTT_MAP_UNPROTECTED / RTT_UNMAP_UNPROTECTED ---------------------------------------------

def _map_args_ok(ctx: S2Ctx, ipa: int, level: int) -> bool:
    """level is a block or page level of this realm, ipa aligned to it, unprotected and in range."""
    return (max(s2tt.MIN_BLOCK_LEVEL, ctx.start_level) <= level <= s2tt.PAGE_LEVEL
            and ipa < ctx.ipa_size and s2tt.is_aligned(ipa, level) and not ctx.in_par(ipa))


def _host_desc_ok(desc: int, level: int) -> bool:
    """attr_valid / addr_align / addr_bound: only OA bits of the level (below 2^48: OA_MASK), MemAttr
    and S2AP; no reserved MemAttr."""
    allowed = (s2tt.OA_MASK & ~(s2tt.block_size(level) - 1)) | s2tt.NS_HOST_ATTRS
    return desc & ~allowed == 0 and desc & s2tt.MEMATTR_MASK != s2tt.MEMATTR_FWB_RESERVED


def rmi_rtt_map_unprotected(rmm: "RmmCpu", rd_addr: int, ipa: int, level: int, desc: int) -> None:
    """Map NS memory described by ``desc`` at unprotected ``ipa`` (an UNASSIGNED_NS entry)."""
    level = _signed(level)
    if not s2tt.MIN_BLOCK_LEVEL <= level <= s2tt.PAGE_LEVEL:
        raise RmiError.input()
    rd_g, params = lock_rd(rmm, rd_addr)
    ctx = params.s2ctx()
    if not _host_desc_ok(desc, level) or not _map_args_ok(ctx, ipa, level):
        rd_g.unlock()
        raise RmiError.input()
    w = walk_from_rd(rmm, rd_g, ctx, ipa, level)
    try:
        if w.level != level:
            raise RmiError.rtt(w.level)
        if s2tt.decode(s2tt.read(rmm.memory, w.llt.idx, w.index), level)[0] != Kind.UNASSIGNED_NS:
            raise RmiError.rtt(level)
        s2tt.write(rmm.memory, w.llt.idx, w.index, s2tt.assigned_ns(desc, level))
    finally:
        w.llt.unlock()


def rmi_rtt_unmap_unprotected(rmm: "RmmCpu", rd_addr: int, ipa: int, level: int) -> tuple[int]:
    """Remove the ASSIGNED_NS entry at ``ipa`` and ``level``; output top (B4.3.22)."""
    level = _signed(level)
    if not s2tt.MIN_BLOCK_LEVEL <= level <= s2tt.PAGE_LEVEL:
        raise RmiError.input((0,))
    rd_g, params = lock_rd(rmm, rd_addr, (0,))
    ctx = params.s2ctx()
    if not _map_args_ok(ctx, ipa, level):
        rd_g.unlock()
        raise RmiError.input((0,))
    w = walk_from_rd(rmm, rd_g, ctx, ipa, level)
    memory = rmm.memory
    try:
        entry = s2tt.read(memory, w.llt.idx, w.index)
        if w.level != level or s2tt.decode(entry, level)[0] != Kind.ASSIGNED_NS:
            raise RmiError.rtt(w.level, (s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa),))
        s2tt.write(memory, w.llt.idx, w.index, s2tt.UNASSIGNED_NS)
        stage2.invalidate(rmm, rd_g.idx)
        return (s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa),)
    finally:
        w.llt.unlock()
