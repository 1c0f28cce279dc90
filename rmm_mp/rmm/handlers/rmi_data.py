"""DATA granule commands (DEN0137 B4.3.1-3): RMI_DATA_CREATE, RMI_DATA_CREATE_UNKNOWN and
RMI_DATA_DESTROY.

This module owns the DELEGATED <-> DATA transitions and the level-3 RTT entries that map DATA
granules. Checks follow TF-RMM rel0's order (compatible with the specification's partial
orders). DATA_CREATE and DATA_CREATE_UNKNOWN keep the RD locked to the end, as TF-RMM does: the
RIM is extended under it, and it serialises creation against REALM_ACTIVATE. DATA_DESTROY
releases the RD once root RTT 0 is locked and takes the DATA granule after its level-3 table
(internal order RTT -> DATA).

Why the source page is locked with the DATA granule and the RD: DATA_CREATE copies it at
TF-RMM's position (after rtte_state, holding the RD and the level-3 table), so the bytes it
copies and measures are the source's at the moment the command takes effect. A copy through
NsAccess there would lock the page out of order (locking rule 8: once the page is DELEGATED,
its lock is the one lock_two takes for RTT_CREATE or DATA_CREATE and holds while it waits for
an RD, so a copy made holding the RD could close a cycle). Instead the page is locked as one of
the command's external granules, expected NS, in ascending address order with the DATA granule
and the RD (rule 2, lock_sorted), and copied under that lock (nsbuf.read_held_ns): external
before internal, and no one waits for an NS-state lock while holding an RTT. Held NS, the page
stays NS and unwritten (DELEGATE, host and RMM copies all take its lock) until the command is
done.

src_pas is then checked twice, each time at a moment where it is the serial outcome:
  - as the page is locked (its granule state): INPUT before realm_state and the RTT checks, as
    TF-RMM's lock-free look at the state up front gives (a page delegated between that look and
    TF-RMM's copy faults there instead; the specification orders src_pas after none of the
    others);
  - after rtte_state, where TF-RMM's copy faults: a page NS in the granule table but not in
    the NS PAS (Secure memory), which only the copy finds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from rmm_mp.abi.structs import RmiDataFlags
from rmm_mp.rmm import s2tt, stage2
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.handlers.rmi_rtt import lock_rd, walk_from_rd
from rmm_mp.rmm.measurement import rim_extend_data
from rmm_mp.rmm.nsbuf import read_held_ns
from rmm_mp.rmm.realm_desc import RIM_SLOT, RealmState, Rd
from rmm_mp.rmm.s2tt import Kind, S2Ctx, Walk

if TYPE_CHECKING:
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu

NS, DELEGATED, RD, DATA = GranuleState.NS, GranuleState.DELEGATED, GranuleState.RD, GranuleState.DATA
GRANULE_SIZE = 1 << s2tt.GRANULE_SHIFT
PAGE_LEVEL = s2tt.PAGE_LEVEL
NO_MEASURE_CONTENT = int(RmiDataFlags.RMI_NO_MEASURE_CONTENT)
MEASURE_CONTENT = int(RmiDataFlags.RMI_MEASURE_CONTENT)

LOCK_SEQUENCES = {
    "RMI_DATA_CREATE": ("the source page (NS), the DATA granule (DELEGATED) and the RD in ascending "
                        "address order; root RTT 0; walk hand over hand to the level-3 table; the "
                        "source is copied under its own lock, held with the RD to the end (the RIM "
                        "is extended under the RD)",
                        "three externals in address order (rule 2), then RTTs root to leaf (rules 1, "
                        "5); the source is locked as an external granule, not by an NS copy (rule 8)"),
    "RMI_DATA_CREATE_UNKNOWN": ("the DATA granule (DELEGATED) and the RD in ascending address order; "
                                "root RTT 0; walk hand over hand to the level-3 table; the RD is held "
                                "to the end",
                                "two externals in address order (rule 2), then RTTs root to leaf "
                                "(rules 1, 5)"),
    "RMI_DATA_DESTROY": ("the RD; root RTT 0; release the RD; walk hand over hand to the level-3 "
                         "table; the DATA granule it maps",
                         "RD before RTTs (rule 1); RTTs root to leaf (rule 5); DATA after its RTT "
                         "(rule 4)"),
}
FAILURE_CONDITIONS = {
    # TF-RMM rel0 checks RmiDataFlags bits 63:1 first (flags_valid): B4.3.1 has no such failure
    # condition, so they are ignored here (B1.6; docs/deviations.md).
    # src_pas is checked where TF-RMM checks it: the granule state up front (here as the source
    # is locked with the data granule and the RD) and the PAS after rtte_state, where TF-RMM's
    # copy faults (see the docstring).
    "RMI_DATA_CREATE": ("src_align", "src_bound", "src_pas", "data_align", "data_bound",
                        "data_state", "rd_align", "rd_bound", "rd_state", "realm_state", "ipa_bound",
                        "ipa_align", "data_bound2", "rtt_walk", "rtte_state", "src_pas"),
    "RMI_DATA_CREATE_UNKNOWN": ("data_align", "data_bound", "data_state", "rd_align", "rd_bound", "rd_state",
                                "ipa_bound", "ipa_align", "data_bound2", "rtt_walk", "rtte_state"),
    "RMI_DATA_DESTROY": ("rd_align", "rd_bound", "rd_state", "ipa_bound", "ipa_align", "rtt_walk",
                         "rtte_state"),
}


def _page_ipa_ok(ctx: S2Ctx, ipa: int) -> bool:
    """ipa_bound and ipa_align: a protected, granule-aligned IPA (protected implies < 2^s2sz)."""
    return ctx.in_par(ipa) and ipa & (GRANULE_SIZE - 1) == 0


def _walk_holding_rd(rmm: "RmmCpu", ctx: S2Ctx, ipa: int) -> Walk:
    """Lock root RTT 0 and walk towards level 3; the caller keeps the RD locked."""
    root0 = rmm.granules.lock_known(rmm.granules.find(ctx.rtt_base), GranuleState.RTT, s2tt.root_hint(ctx))
    return s2tt.walk(rmm.granules, rmm.memory, ctx, root0, ipa, PAGE_LEVEL)


# -- DATA_CREATE / DATA_CREATE_UNKNOWN ------------------------------------------------------

def rmi_data_create(rmm: "RmmCpu", rd_addr: int, data_addr: int, ipa: int, src_addr: int,
                    flags: int) -> None:
    """Create a DATA granule at ``ipa`` holding a copy of the NS page ``src_addr``; the RIM is
    extended with a DATA descriptor (content hash only when flags bit 0, MEASURE_CONTENT, is
    set; the SBZ bits 63:1 are ignored, but the descriptor holds flags as passed). B4.3.1."""
    held = rmm.granules.lock_sorted([(src_addr, NS), (data_addr, DELEGATED), (rd_addr, RD)])
    if held is None:
        # src_align, src_bound, src_pas (the page's state), data_*, rd_*, or the source aliasing
        # one of the others (then one of those fails): all INPUT.
        raise RmiError.input()
    src_g, data_g, rd_g = held
    try:
        _create(rmm, data_g, rd_g, ipa, flags, lambda: read_held_ns(rmm, src_g))
    finally:
        src_g.unlock()


def rmi_data_create_unknown(rmm: "RmmCpu", rd_addr: int, data_addr: int, ipa: int) -> None:
    """Create a DATA granule at ``ipa`` with unknown (zero) contents, keeping the entry's RIPAS;
    not measured, allowed in any realm state. B4.3.2."""
    pair = rmm.granules.lock_two(data_addr, DELEGATED, rd_addr, RD)
    if pair is None:
        raise RmiError.input()
    _create(rmm, pair[0], pair[1], ipa, NO_MEASURE_CONTENT, None)


def _create(rmm: "RmmCpu", data_g: "Granule", rd_g: "Granule", ipa: int, flags: int,
            copy: Callable[[], bytes | None] | None) -> None:
    """Shared body, holding the DATA granule and the RD (both released here). ``copy`` reads
    DATA_CREATE's source at TF-RMM's position, after rtte_state (None: the page is not in the
    NS PAS, src_pas); None for DATA_CREATE_UNKNOWN."""
    measured = copy is not None
    data_addr = data_g.addr
    rd = Rd(rmm.memory, rd_g.idx)
    try:
        if measured and rd.state != RealmState.NEW:
            raise RmiError.realm()
        params = rd.params()
        ctx = params.s2ctx()
        if not _page_ipa_ok(ctx, ipa) or data_addr >= 1 << s2tt.MAX_PA_BITS:
            raise RmiError.input()
        w = _walk_holding_rd(rmm, ctx, ipa)
        try:
            entry = _unassigned_leaf(rmm, w)
            if copy is not None:
                content = copy()
                if content is None:
                    raise RmiError.input()
                rmm.memory.write(data_addr, content)
                rim = rim_extend_data(params.hash_algo, rd.measurement(RIM_SLOT), ipa, flags,
                                      content if flags & MEASURE_CONTENT else None)
                rd.set_measurement(RIM_SLOT, rim)
                ripas = s2tt.RIPAS_RAM
            else:
                ripas = s2tt.decode(entry, PAGE_LEVEL)[1]
            s2tt.write(rmm.memory, w.llt.idx, w.index, s2tt.assigned(data_addr, PAGE_LEVEL, ripas))
            w.llt.refcount_add(1)
        finally:
            w.llt.unlock()
    except RmiError:
        rd_g.unlock()
        data_g.unlock()
        raise
    rd_g.unlock()
    data_g.unlock_transition(DATA)


def _unassigned_leaf(rmm: "RmmCpu", w: Walk) -> int:
    """rtt_walk and rtte_state: the level-3 entry the walk reached, which must be UNASSIGNED."""
    if w.level != PAGE_LEVEL:
        raise RmiError.rtt(w.level)
    entry = s2tt.read(rmm.memory, w.llt.idx, w.index)
    if s2tt.decode(entry, PAGE_LEVEL)[0] != Kind.UNASSIGNED:
        raise RmiError.rtt(PAGE_LEVEL)
    return entry


# -- DATA_DESTROY ----------------------------------------------------------------------------

def rmi_data_destroy(rmm: "RmmCpu", rd_addr: int, ipa: int) -> tuple[int, int]:
    """Unmap and wipe the DATA granule at ``ipa``; outputs (its PA, top). B4.3.3.

    ASSIGNED RAM and DESTROYED become UNASSIGNED DESTROYED, ASSIGNED EMPTY becomes UNASSIGNED
    EMPTY. No realm-state check: the realm may be running (it then faults on the IPA).
    """
    rd_g, params = lock_rd(rmm, rd_addr, (0, 0))
    ctx = params.s2ctx()
    if not _page_ipa_ok(ctx, ipa):
        rd_g.unlock()
        raise RmiError.input((0, 0))
    w = walk_from_rd(rmm, rd_g, ctx, ipa, PAGE_LEVEL)
    memory = rmm.memory
    try:
        entry = s2tt.read(memory, w.llt.idx, w.index)
        kind, ripas = s2tt.decode(entry, w.level)
        if w.level != PAGE_LEVEL or kind != Kind.ASSIGNED:
            # A block-level ASSIGNED entry lands here too (level < 3, top == ipa).
            raise RmiError.rtt(w.level, (0, s2tt.skip_non_live(memory, w.llt.idx, w.level, w.index, ipa)))
        data_pa = s2tt.output_address(entry, PAGE_LEVEL)
        after = s2tt.UNASSIGNED_EMPTY if ripas == s2tt.RIPAS_EMPTY else s2tt.UNASSIGNED_DESTROYED
        s2tt.write(memory, w.llt.idx, w.index, after)
        stage2.invalidate(rmm, rd_g.idx)    # no CPU may still reach the page before it is wiped
        w.llt.refcount_add(-1)
        _wipe(rmm, data_pa)
        top = s2tt.skip_non_live(memory, w.llt.idx, PAGE_LEVEL, w.index, ipa)
    finally:
        w.llt.unlock()
    return data_pa, top


def _wipe(rmm: "RmmCpu", data_pa: int) -> None:
    """DATA -> DELEGATED, zeroed; the caller holds the level-3 table that mapped it."""
    data_g: "Granule" = rmm.granules.lock_known(rmm.granules.find(data_pa), DATA)
    rmm.memory.zero(data_g.idx)
    data_g.unlock_transition(DELEGATED)
