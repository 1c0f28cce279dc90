"""The catalogued locking mistakes, written out: each is the correct code with one mistake.

Every function here is a deliberately wrong copy of a handler or library function of the RMM
(rmm_mp/rmm); the comment ``# BUG:`` marks the mistake. stress.bugs swaps them in at start-up
when a run asks for them by name. Nothing here is ever used otherwise.

This module owns the buggy variants. It must not be imported by the RMM.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.structs import REC_EXIT_OFFSET, RMI_REC_ENTER_RAW, RMI_REC_EXIT_RAW, RMI_REC_PARAMS
from rmm_mp.hw.faults import GranuleProtectionFault
from rmm_mp.hw.granule import REFCOUNT_MASK, STATE_SHIFT, Granule, GranuleTable
from rmm_mp.rmm import realm_run, s2tt, stage2
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState as GS
from rmm_mp.rmm.handlers import rmi_data, rmi_granule, rmi_psci, rmi_rec, rmi_rtt
from rmm_mp.rmm.nsbuf import read_ns, still_ns, unpack_held_ns
from rmm_mp.rmm.realm_desc import Rd
from rmm_mp.rmm.rec_desc import AUX_MAX, H_OWNER, Rec

if TYPE_CHECKING:
    from rmm_mp.rmm.cpu import RmmCpu



def rec_create_no_rd_lock(rmm: "RmmCpu", rd_addr: int, rec_addr: int, params_ptr: int) -> None:
    """REC_CREATE that locks the REC and its aux granules but not the RD (rmi_rec.rmi_rec_create)."""
    raw = read_ns(rmm, params_ptr, RMI_REC_PARAMS.size)
    if raw is None:
        raise RmiError.input()
    p = RMI_REC_PARAMS.unpack(raw)
    num_aux = p["num_aux"]
    if num_aux > AUX_MAX:
        raise RmiError.input()
    aux = p["aux"][:num_aux]
    locked = rmm.granules.lock_sorted([(rec_addr, GS.DELEGATED)] + [(a, GS.DELEGATED) for a in aux])
    rd_idx = rmm.granules.find(rd_addr)
    if locked is None or rd_idx < 0 or rmm.granules.racy_state(rd_idx) != GS.RD:
        for g in locked or ():
            g.unlock()
        raise RmiError.input()
    rec_g = locked[0]
    rd_g = Granule(rmm.granules, rd_idx, rd_addr)   # BUG: the RD is used without its lock
    rd = Rd(rmm.memory, rd_idx)
    refusal = rmi_rec._params_gone(rmm, params_ptr) or rmi_rec._create_refusal(rmm, rd_g, rd, p["mpidr"], num_aux)
    if refusal is not None:
        for g in locked:
            g.unlock()
        raise refusal
    params = rd.params()
    index = rd.rec_count
    runnable = bool(p["flags"] & rmi_rec._RUNNABLE)
    Rec(rmm.memory, rec_g.idx).initialise(rd_addr, index, p["mpidr"] & ~rmi_rec.RMI_REC_MPIDR_SBZ, runnable, p["pc"],
                                          p["gprs"], aux, params.s2ctx(), params.hash_algo)
    if runnable:
        rim = rmi_rec.rim_extend_rec(params.hash_algo, rd.measurement(rmi_rec.RIM_SLOT), p["flags"], p["pc"], p["gprs"])
        rd.set_measurement(rmi_rec.RIM_SLOT, rim)
    rd_g.refcount_add(1)
    rd.set_rec_count(index + 1)
    for g in locked[1:]:
        g.unlock_transition(GS.REC_AUX)
    rec_g.unlock_transition(GS.REC)


def lock_two_unordered(self: GranuleTable, addr_a: int, state_a: int, addr_b: int,
                       state_b: int) -> "tuple[Granule, Granule] | None":
    """lock_two taking the granules in argument order (GranuleTable.lock_two)."""
    if addr_a == addr_b or self.find(addr_a) < 0 or self.find(addr_b) < 0:
        return None
    first = self.find_lock(addr_a, state_a)     # BUG: not the lower address first (rule 2)
    if first is None:
        return None
    second = self.find_lock(addr_b, state_b)
    if second is None:
        first.unlock()
        return None
    return first, second


def walk_unlock_parent_first(granules: GranuleTable, memory: object, ctx: s2tt.S2Ctx, root0: Granule,
                             ipa: int, target_level: int) -> s2tt.Walk:
    """An RTT walk that releases each table before it locks the next one (s2tt.walk)."""
    root_no, index = ctx.root_slot(ipa)
    current = root0
    if root_no:
        current = granules.lock_known(root0.idx + root_no, GS.RTT, ctx.start_level | s2tt.SUB_ROOT)
        root0.unlock()
    level = ctx.start_level
    while level < target_level:
        desc = memory.view.load_u64((current.idx << 12) + (index << 3))  # type: ignore[attr-defined]
        if desc & s2tt.DESC_TYPE_MASK != s2tt.DESC_TABLE:
            break
        current.unlock()                        # BUG: the parent goes before the child is held (rule 5)
        current = granules.lock_known(granules.find(desc & s2tt.OA_MASK), GS.RTT, level + 1)
        level += 1
        index = s2tt.entry_index(ipa, level)
    return s2tt.Walk(current, level, index)


def rec_enter_not_running(rmm: "RmmCpu", rec_addr: int, run_ptr: int) -> None:
    """REC_ENTER that never takes the REC's running reference (rmi_rec.rmi_rec_enter)."""
    pair = rmm.granules.lock_two(rec_addr, GS.REC, run_ptr, GS.NS)
    if pair is None:
        raise RmiError.input()
    g, run_g = pair
    run_idx = run_g.idx
    granules = rmm.granules
    enter = unpack_held_ns(rmm, run_g, RMI_REC_ENTER_RAW)   # gprs and gicv3_lrs as their bytes
    granules.unlock(run_idx)
    if enter is None:
        g.unlock()
        raise RmiError.input()
    if granules.refcount(g.idx) != 0:
        g.unlock()
        raise RmiError.rec()
    rec = rmm.recs.get(g.idx)
    if rec is None:
        rec = rmi_rec._kept(rmm.recs, g.idx, Rec(rmm.memory, g.idx))
    head = rec.run_state()
    rd = rmm.rds.get(head[H_OWNER])
    if rd is None:
        rd = rmi_rec._kept(rmm.rds, head[H_OWNER], Rd(rmm.memory, rmi_rec._index(rmm, head[H_OWNER])))
    refusal = rmi_rec._entry_refusal(rmm, rd, rec, enter, head)
    if refusal is not None:
        g.unlock()
        raise refusal
    granules.unlock(g.idx)                      # BUG: released without raising the refcount
    fields = realm_run.run_rec(rmm, rec, rd, enter, head)
    try:
        rmm.ns.pack_values(run_idx, REC_EXIT_OFFSET, RMI_REC_EXIT_RAW, fields)
    except GranuleProtectionFault:
        raise RmiError.input() from None


def rtt_destroy_refcount_unlocked(rmm: "RmmCpu", rd_addr: int, ipa: int, level: int) -> tuple[int, int]:
    """RTT_DESTROY reading the child's refcount before it locks the child (rmi_rtt.rmi_rtt_destroy)."""
    level = rmi_rtt._signed(level)
    rd_g, params = rmi_rtt.lock_rd(rmm, rd_addr, (0, 0))
    ctx = params.s2ctx()
    if not rmi_rtt._structure_args_ok(ctx, ipa, level):
        rd_g.unlock()
        raise RmiError.input((0, 0))
    w = rmi_rtt.walk_from_rd(rmm, rd_g, ctx, ipa, level - 1)
    memory = rmm.memory
    try:
        parent = s2tt.read(memory, w.llt.idx, w.index)
        if w.level != level - 1 or not s2tt.is_table(parent, level - 1):
            raise RmiError.rtt(w.level, (0, s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa)))
        child_pa = s2tt.output_address(parent, level - 1)
        child_idx = rmm.granules.find(child_pa)
        if rmm.granules.refcount(child_idx) != 0:   # BUG: checked before the child is locked
            raise RmiError.rtt(level, (0, ipa))
        child = rmm.granules.lock_known(child_idx, GS.RTT, level)
        w.llt.refcount_add(-1)
        s2tt.write(memory, w.llt.idx, w.index, s2tt.UNASSIGNED_DESTROYED if ctx.in_par(ipa) else s2tt.UNASSIGNED_NS)
        rmi_rtt.stage2.invalidate(rmm, rd_g.idx)
        memory.zero(child.idx)
        child.unlock_transition(GS.DELEGATED)
        top = s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa)
    finally:
        w.llt.unlock()
    return child_pa, top


def psci_complete_unordered(rmm: "RmmCpu", calling_addr: int, target_addr: int, status: int) -> None:
    """PSCI_COMPLETE locking the calling REC, then the target (rmi_psci.rmi_psci_complete)."""
    if calling_addr == target_addr:
        raise RmiError.input()
    calling_g = rmm.granules.find_lock(calling_addr, GS.REC)   # BUG: argument order, not address order
    if calling_g is None:
        raise RmiError.input()
    target_g = rmm.granules.find_lock(target_addr, GS.REC)
    if target_g is None:
        calling_g.unlock()
        raise RmiError.input()
    try:
        rmi_psci._complete(rmm, calling_g, target_g, status)
    finally:
        calling_g.unlock()
        target_g.unlock()


def delegate_state_before_pas(rmm: "RmmCpu", addr: int) -> None:
    """DELEGATE marking the granule DELEGATED before EL3 moved it to the Realm PAS
    (rmi_granule.rmi_granule_delegate)."""
    g = rmm.granules.find_lock(addr, GS.NS)
    if g is None:
        raise RmiError.input()
    g.set_state(GS.DELEGATED)                   # BUG: the state runs ahead of the GPT
    if rmm.el3.smc_from_realm(rmi_granule._GTSI_DELEGATE, addr)[0] != rmi_granule._E_RMM_OK:
        g.set_state(GS.NS)
        g.unlock()
        raise RmiError.input()
    rmm.memory.zero(g.idx)
    g.unlock()


def rec_destroy_plain_rmw(rmm: "RmmCpu", rec_addr: int) -> None:
    """REC_DESTROY dropping the RD's refcount with a plain read and store (rmi_rec.rmi_rec_destroy)."""
    g = rmm.granules.find_lock(rec_addr, GS.REC)
    if g is None:
        raise RmiError.input()
    if g.refcount != 0:
        g.unlock()
        raise RmiError.rec()
    rec = Rec(rmm.memory, g.idx)
    rd_idx = rmi_rec._index(rmm, rec.owner_rd)
    rmi_rec._release_aux(rmm, [rmi_rec._index(rmm, pa) for pa in rec.aux()])
    rmm.memory.zero(g.idx)
    count = rmm.granules.refcount(rd_idx)       # BUG: read ...
    state = rmm.granules.state(rd_idx)
    rmm.granules.view.store_u32((rd_idx << 3) + 4, (state << STATE_SHIFT) | ((count - 1) & REFCOUNT_MASK))  # ... store
    g.unlock_transition(GS.DELEGATED)


def data_create_copy_under_rd(rmm: "RmmCpu", rd_addr: int, data_addr: int, ipa: int, src_addr: int,
                              flags: int) -> None:
    """DATA_CREATE copying the source page with an NS copy while it holds the RD, instead of
    locking the page with the DATA granule and the RD in address order (rmi_data.rmi_data_create)."""
    if not still_ns(rmm, src_addr):
        raise RmiError.input()
    pair = rmm.granules.lock_two(data_addr, GS.DELEGATED, rd_addr, GS.RD)
    if pair is None:
        raise RmiError.input()
    content = read_ns(rmm, src_addr, rmi_data.GRANULE_SIZE)    # BUG: an NS copy under the RD (rule 8)
    rmi_data._create(rmm, pair[0], pair[1], ipa, flags, lambda: content)


def map_unprotected_leaks_lock(rmm: "RmmCpu", rd_addr: int, ipa: int, level: int, desc: int) -> None:
    """RTT_MAP_UNPROTECTED that keeps the table locked when the entry is taken
    (rmi_rtt.rmi_rtt_map_unprotected)."""
    level = rmi_rtt._signed(level)
    if not s2tt.MIN_BLOCK_LEVEL <= level <= s2tt.PAGE_LEVEL:
        raise RmiError.input()
    rd_g, params = rmi_rtt.lock_rd(rmm, rd_addr)
    ctx = params.s2ctx()
    if not rmi_rtt._host_desc_ok(desc, level) or not rmi_rtt._map_args_ok(ctx, ipa, level):
        rd_g.unlock()
        raise RmiError.input()
    w = rmi_rtt.walk_from_rd(rmm, rd_g, ctx, ipa, level)
    if w.level != level:
        w.llt.unlock()
        raise RmiError.rtt(w.level)
    if s2tt.decode(s2tt.read(rmm.memory, w.llt.idx, w.index), level)[0] != s2tt.Kind.UNASSIGNED_NS:
        raise RmiError.rtt(level)               # BUG: the table stays locked on this path
    s2tt.write(rmm.memory, w.llt.idx, w.index, s2tt.assigned_ns(desc, level))
    w.llt.unlock()


def data_create_unknown_rtt_first(rmm: "RmmCpu", rd_addr: int, data_addr: int, ipa: int) -> None:
    """DATA_CREATE_UNKNOWN locking root RTT 0 before the RD and the DATA granule
    (rmi_data.rmi_data_create_unknown)."""
    rd_idx = rmm.granules.find(rd_addr)
    if rd_idx < 0 or rmm.granules.racy_state(rd_idx) != GS.RD:
        raise RmiError.input()
    ctx = Rd(rmm.memory, rd_idx).params().s2ctx()
    root0 = rmm.granules.lock_known(rmm.granules.find(ctx.rtt_base), GS.RTT, s2tt.root_hint(ctx))
    pair = rmm.granules.lock_two(data_addr, GS.DELEGATED, rd_addr, GS.RD)   # BUG: externals after an RTT
    if pair is None:
        root0.unlock()
        raise RmiError.input()
    data_g, rd_g = pair
    if not rmi_data._page_ipa_ok(ctx, ipa) or data_addr >= 1 << s2tt.MAX_PA_BITS:
        for g in (root0, rd_g, data_g):
            g.unlock()
        raise RmiError.input()
    w = s2tt.walk(rmm.granules, rmm.memory, ctx, root0, ipa, s2tt.PAGE_LEVEL)
    try:
        entry = rmi_data._unassigned_leaf(rmm, w)
        s2tt.write(rmm.memory, w.llt.idx, w.index,
                   s2tt.assigned(data_addr, s2tt.PAGE_LEVEL, s2tt.decode(entry, s2tt.PAGE_LEVEL)[1]))
        w.llt.refcount_add(1)
    except RmiError:
        w.llt.unlock()
        rd_g.unlock()
        data_g.unlock()
        raise
    w.llt.unlock()
    rd_g.unlock()
    data_g.unlock_transition(GS.DATA)


def rtt_create_parent_released_early(rmm: "RmmCpu", rd_addr: int, rtt_addr: int, ipa: int, level: int) -> None:
    """RTT_CREATE that releases the parent table before it writes the new TABLE entry
    (rmi_rtt.rmi_rtt_create)."""
    level = rmi_rtt._signed(level)
    pair = rmm.granules.lock_two(rtt_addr, GS.DELEGATED, rd_addr, GS.RD)
    if pair is None:
        raise RmiError.input()
    new, rd_g = pair
    ctx = Rd(rmm.memory, rd_g.idx).params().s2ctx()
    if not rmi_rtt._structure_args_ok(ctx, ipa, level) or rtt_addr >= 1 << s2tt.MAX_PA_BITS:
        rd_g.unlock()
        new.unlock()
        raise RmiError.input()
    w = rmi_rtt.walk_from_rd(rmm, rd_g, ctx, ipa, level - 1)
    parent = s2tt.read(rmm.memory, w.llt.idx, w.index)
    kind, _ = s2tt.decode(parent, level - 1)
    if w.level != level - 1 or kind == s2tt.Kind.TABLE:
        w.llt.unlock()
        new.unlock()
        raise RmiError.rtt(w.level if w.level != level - 1 else level - 1)
    w.llt.unlock()                              # BUG: the parent entry is rewritten below without the lock
    s2tt.fill(rmm.memory, new.idx, s2tt.unfolded(parent, level))
    if kind == s2tt.Kind.ASSIGNED:
        new.refcount_add(s2tt.ENTRIES)
    else:
        rmm.granules.refcount_add(w.llt.idx, 1)
    s2tt.write(rmm.memory, w.llt.idx, w.index, s2tt.table(rtt_addr))
    new.unlock_transition(GS.RTT)


def data_destroy_wipe_after_rtt(rmm: "RmmCpu", rd_addr: int, ipa: int) -> tuple[int, int]:
    """DATA_DESTROY that releases the level-3 table before it locks and wipes the DATA granule
    (rmi_data.rmi_data_destroy)."""
    rd_g, params = rmi_rtt.lock_rd(rmm, rd_addr, (0, 0))
    ctx = params.s2ctx()
    if not rmi_data._page_ipa_ok(ctx, ipa):
        rd_g.unlock()
        raise RmiError.input((0, 0))
    w = rmi_rtt.walk_from_rd(rmm, rd_g, ctx, ipa, s2tt.PAGE_LEVEL)
    memory = rmm.memory
    try:
        entry = s2tt.read(memory, w.llt.idx, w.index)
        kind, ripas = s2tt.decode(entry, w.level)
        if w.level != s2tt.PAGE_LEVEL or kind != s2tt.Kind.ASSIGNED:
            raise RmiError.rtt(w.level, (0, s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa)))
        data_pa = s2tt.output_address(entry, s2tt.PAGE_LEVEL)
        after = s2tt.UNASSIGNED_EMPTY if ripas == s2tt.RIPAS_EMPTY else s2tt.UNASSIGNED_DESTROYED
        s2tt.write(memory, w.llt.idx, w.index, after)
        stage2.invalidate(rmm, rd_g.idx)
        w.llt.refcount_add(-1)
        top = s2tt.skip_non_live(memory, w.llt.idx, s2tt.PAGE_LEVEL, w.index, ipa)
    finally:
        w.llt.unlock()
    rmi_data._wipe(rmm, data_pa)                # BUG: the DATA granule is locked after its RTT was released
    return data_pa, top


def rec_destroy_aux_after_rec(rmm: "RmmCpu", rec_addr: int) -> None:
    """REC_DESTROY that releases the REC before it scrubs and releases its aux granules
    (rmi_rec.rmi_rec_destroy)."""
    g = rmm.granules.find_lock(rec_addr, GS.REC)
    if g is None:
        raise RmiError.input()
    if g.refcount != 0:
        g.unlock()
        raise RmiError.rec()
    rec = Rec(rmm.memory, g.idx)
    rd_idx = rmi_rec._index(rmm, rec.owner_rd)
    aux = [rmi_rec._index(rmm, pa) for pa in rec.aux()]
    rmm.memory.zero(g.idx)
    rmm.granules.refcount_add(rd_idx, -1)
    g.unlock_transition(GS.DELEGATED)
    rmi_rec._release_aux(rmm, aux)  # BUG: the aux granules are locked after their REC was released


def lock_two_check_late(self: GranuleTable, addr_a: int, state_a: int, addr_b: int,
                        state_b: int) -> "tuple[Granule, Granule] | None":
    """lock_two that locks both granules before it checks either state (GranuleTable.lock_two)."""
    if addr_a == addr_b:
        return None
    idx_a, idx_b = self.find(addr_a), self.find(addr_b)
    if idx_a < 0 or idx_b < 0:
        return None
    (lo, lo_state), (hi, hi_state) = sorted(((idx_a, state_a), (idx_b, state_b)))
    self.lock(lo, lo_state)
    self.lock(hi, hi_state)                     # BUG: the first granule's state is not checked before this
    if self.state(lo) != lo_state or self.state(hi) != hi_state:
        self.unlock(hi)
        self.unlock(lo)
        return None
    first, second = Granule(self, lo, self.addr(lo)), Granule(self, hi, self.addr(hi))
    return (first, second) if idx_a < idx_b else (second, first)
