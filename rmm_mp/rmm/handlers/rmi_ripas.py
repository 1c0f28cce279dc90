"""RIPAS commands (DEN0137 B4.3.18, B4.3.21): RMI_RTT_INIT_RIPAS and RMI_RTT_SET_RIPAS.

This module owns RIPAS changes of existing RTT entries (HIPAS never changes here). Both commands
walk to the deepest table that exists for ``base`` and then change at most the rest of that one
table per call, so a call's latency is bounded; X1 tells the host where to continue.

INIT_RIPAS (realm NEW) keeps the RD locked from start to end, because every entry it visits
extends the RIM and two calls must not interleave their extensions (TF-RMM fix 80295e4e).
SET_RIPAS locks the RD and the REC (in address order) and keeps both to the end; it records its
progress in the REC and does not touch the RIM.

Where the specification and TF-RMM rel0 part (docs/deviations.md):
- INIT_RIPAS turns UNASSIGNED entries of any RIPAS into RAM, DESTROYED included (B4.3.18 scans
  with stop_at_destroyed FALSE; A5.3.5: no RIPAS dependency); rel0 stops at DESTROYED. It stops
  at the first entry that is not UNASSIGNED (A5.3.5: HIPAS must be UNASSIGNED), as rel0 does.
- INIT_RIPAS with a base that is not granule aligned fails base_align, (RMI_ERROR_RTT, level),
  as the specification says; rel0 returns RMI_ERROR_INPUT.
- SET_RIPAS rejects an unaligned top (top_gran_align), as the specification says and TF-RMM
  does after fix 62ece7d0.
- SET_RIPAS base_align and no_progress fail whatever the entry's current RIPAS, as rel0 does;
  the specification exempts an entry that already has the target RIPAS, but then reports
  success with out_top at or below base when top lies inside that entry, leaving the host
  without progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.hw.faults import RmmInternalError
from rmm_mp.rmm import s2tt, stage2
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.measurement import rim_extend_ripas
from rmm_mp.rmm.realm_desc import RIM_SLOT, RealmState, Rd
from rmm_mp.rmm.rec_desc import Rec
from rmm_mp.rmm.s2tt import Kind, S2Ctx, Walk

if TYPE_CHECKING:
    from rmm_mp.hw.memory import PhysicalMemory
    from rmm_mp.rmm.cpu import RmmCpu

RD, REC = GranuleState.RD, GranuleState.REC
GRANULE_SIZE = 1 << s2tt.GRANULE_SHIFT
ENTRIES = s2tt.ENTRIES
CHANGE_DESTROYED = 1
"""RsiRipasChangeDestroyed value that lets a RIPAS change leave DESTROYED (TF-RMM compares with 1)."""

LOCK_SEQUENCES = {
    "RMI_RTT_INIT_RIPAS": ("the RD; root RTT 0; walk hand over hand to the deepest table for base; "
                           "the RD is held to the end (the RIM is extended under it)",
                           "RD before RTTs (rule 1); RTTs root to leaf (rule 5)"),
    "RMI_RTT_SET_RIPAS": ("the RD and the REC in ascending address order; root RTT 0; walk hand over "
                          "hand to the deepest table for base; RD and REC held to the end",
                          "two externals in address order (rule 2), then RTTs root to leaf (rules 1, 5)"),
}
FAILURE_CONDITIONS = {
    "RMI_RTT_INIT_RIPAS": ("size_valid", "rd_align", "rd_bound", "rd_state", "top_gran_align", "top_bound",
                           "realm_state", "base_align", "rtte_state", "no_progress"),
    "RMI_RTT_SET_RIPAS": ("size_valid", "top_gran_align", "rd_align", "rd_bound", "rd_state", "rec_align",
                          "rec_bound", "rec_gran_state", "rec_state", "rec_owner", "base_bound", "top_bound",
                          "base_align", "no_progress"),
}


def _walk_holding(rmm: "RmmCpu", ctx: S2Ctx, base: int) -> Walk:
    """Lock root RTT 0 and walk to the deepest table for ``base`` (the caller keeps its locks)."""
    root0 = rmm.granules.lock_known(rmm.granules.find(ctx.rtt_base), GranuleState.RTT, s2tt.root_hint(ctx))
    return s2tt.walk(rmm.granules, rmm.memory, ctx, root0, base, s2tt.PAGE_LEVEL)


# -- RTT_INIT_RIPAS ----------------------------------------------------------------------------

def rmi_rtt_init_ripas(rmm: "RmmCpu", rd_addr: int, base: int, top: int) -> tuple[int]:
    """Set RIPAS RAM on the UNASSIGNED entries from ``base`` towards ``top`` in one RTT of a NEW
    realm, extending the RIM once per entry; output the first IPA not processed. B4.3.18."""
    if top <= base:
        raise RmiError.input()
    rd_g = rmm.granules.find_lock(rd_addr, RD)
    if rd_g is None:
        raise RmiError.input()
    rd = Rd(rmm.memory, rd_g.idx)
    try:
        params = rd.params()
        ctx = params.s2ctx()
        # top_bound: top - 4 KiB protected; base < top then lies in the protected range too.
        if top & (GRANULE_SIZE - 1) or top > ctx.par_size:
            raise RmiError.input()
        if rd.state != RealmState.NEW:
            raise RmiError.realm()
        w = _walk_holding(rmm, ctx, base)
        try:
            if not s2tt.is_aligned(base, w.level):
                raise RmiError.rtt(w.level)
            done, rim = _init_entries(rmm.memory, w, base, top, params.hash_algo, rd.measurement(RIM_SLOT))
            if done == base:
                raise RmiError.rtt(w.level)
            rd.set_measurement(RIM_SLOT, rim)
        finally:
            w.llt.unlock()
    finally:
        rd_g.unlock()
    return (done,)


def _init_entries(memory: "PhysicalMemory", w: Walk, base: int, top: int, algo: int,
                  rim: bytes) -> tuple[int, bytes]:
    """Entries from the walk's one to the end of its table that fit below ``top``: UNASSIGNED
    (any RIPAS) -> UNASSIGNED RAM, one RIPAS descriptor each; stop at any other entry.
    Returns (first IPA not processed, new RIM)."""
    size = s2tt.block_size(w.level)
    addr = base
    for index in range(w.index, ENTRIES):
        if addr + size > top:
            break
        desc = s2tt.read(memory, w.llt.idx, index)
        if s2tt.decode(desc, w.level)[0] != Kind.UNASSIGNED:
            break
        if desc != s2tt.UNASSIGNED_RAM:
            s2tt.write(memory, w.llt.idx, index, s2tt.UNASSIGNED_RAM)
        rim = rim_extend_ripas(algo, rim, addr, addr + size)
        addr += size
    return addr, rim


# -- RTT_SET_RIPAS -----------------------------------------------------------------------------

def rmi_rtt_set_ripas(rmm: "RmmCpu", rd_addr: int, rec_addr: int, base: int, top: int) -> tuple[int]:
    """Apply the REC's pending RIPAS change to the entries from ``base`` towards ``top`` in one
    RTT; output the first IPA not changed, which becomes the REC's progress. B4.3.21."""
    if top <= base or top & (GRANULE_SIZE - 1):
        raise RmiError.input()
    pair = rmm.granules.lock_two(rd_addr, RD, rec_addr, REC)
    if pair is None:
        raise RmiError.input()
    rd_g, rec_g = pair
    try:
        if rec_g.refcount != 0:
            raise RmiError.rec()            # running on another CPU
        rec = Rec(rmm.memory, rec_g.idx)
        if rec.owner_rd != rd_g.addr:
            raise RmiError.rec()
        _, request_top, progress, target, change_destroyed = rec.ripas_request()
        if base != progress or top > request_top:
            raise RmiError.input()
        if target != s2tt.RIPAS_EMPTY and target != s2tt.RIPAS_RAM:
            raise RmmInternalError(f"REC {rec_addr:#x} holds a RIPAS request for RIPAS {target}: "
                                   "RSI_IPA_STATE_SET accepts only EMPTY (0) and RAM (1)")
        done = _set_range(rmm, rd_g.idx, Rd(rmm.memory, rd_g.idx).params().s2ctx(), base, top, target,
                          change_destroyed == CHANGE_DESTROYED)
        rec.set_ripas_addr(done)
    finally:
        rec_g.unlock()
        rd_g.unlock()
    return (done,)


def _set_range(rmm: "RmmCpu", rd_idx: int, ctx: S2Ctx, base: int, top: int, target: int,
               may_leave_destroyed: bool) -> int:
    """Walk to ``base`` and change the entries of that table that fit below ``top``; returns the
    first IPA not changed. base_align and no_progress fail with (RMI_ERROR_RTT, level). A RAM
    page made EMPTY is no longer mapped: the realm's TLBs are invalidated before returning."""
    w = _walk_holding(rmm, ctx, base)
    memory = rmm.memory
    try:
        if not s2tt.is_aligned(base, w.level):
            raise RmiError.rtt(w.level)
        size = s2tt.block_size(w.level)
        addr = base
        unmapped = False
        for index in range(w.index, ENTRIES):
            if addr + size > top:
                break
            desc = s2tt.read(memory, w.llt.idx, index)
            changed = _with_ripas(desc, w.level, target, may_leave_destroyed)
            if changed is None:
                break
            if changed != desc:
                s2tt.write(memory, w.llt.idx, index, changed)
                unmapped = unmapped or (desc & s2tt.DESC_TYPE_MASK != 0 and changed & s2tt.DESC_TYPE_MASK == 0)
            addr += size
        if addr == base:
            raise RmiError.rtt(w.level)
        if unmapped:
            stage2.invalidate(rmm, rd_idx)
        return addr
    finally:
        w.llt.unlock()


def _with_ripas(desc: int, level: int, target: int, may_leave_destroyed: bool) -> int | None:
    """``desc`` with RIPAS ``target`` and its HIPAS unchanged, or None when the entry stops the
    loop: it has no RIPAS (table, NS entries), or it is DESTROYED without permission to leave."""
    kind, ripas = s2tt.decode(desc, level)
    if kind != Kind.UNASSIGNED and kind != Kind.ASSIGNED:
        return None
    if ripas == target:
        return desc
    if ripas == s2tt.RIPAS_DESTROYED and not may_leave_destroyed:
        return None
    if kind == Kind.UNASSIGNED:
        return s2tt.unassigned(target)
    return s2tt.assigned(s2tt.output_address(desc, level), level, target)
