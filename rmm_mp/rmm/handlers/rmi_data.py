"""DATA granule commands (DEN0137 B4.3.1-3): RMI_DATA_CREATE, RMI_DATA_CREATE_UNKNOWN and
RMI_DATA_DESTROY.

This module owns the DELEGATED <-> DATA transitions and the level-3 RTT entries that map DATA
granules. Checks follow TF-RMM rel0's order (compatible with the specification's partial
orders). DATA_CREATE and DATA_CREATE_UNKNOWN keep the RD locked to the end, as TF-RMM does: the
RIM is extended under it, and it serialises creation against REALM_ACTIVATE. DATA_DESTROY
releases the RD once root RTT 0 is locked and takes the DATA granule after its level-3 table
(internal order RTT -> DATA).

Why the source page is copied before anything is locked: the copy locks the NS granule (locking
rule 8), and that same lock is the one RTT_CREATE or DATA_CREATE take when the page has just
been delegated. Copying while holding the RD could then close a cycle (this CPU holds the RD and
waits for the page; another holds the page as a DELEGATED candidate and waits for the RD). TF-RMM
copies late because its copy takes no lock (the GPC just faults). Here the copy is taken first,
holding nothing, and a failed copy is reported where TF-RMM reports it (after the RTT checks),
and the source's state is read again at that point, with the data granule and the RD held (a
source delegated after the copy fails there, as TF-RMM's copy would fault), so the outcomes
are TF-RMM's; the data granule is written only once every check has passed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.structs import RmiDataFlags
from rmm_mp.rmm import s2tt, stage2
from rmm_mp.rmm.errors import RmiError
from rmm_mp.rmm.granule_state import GranuleState
from rmm_mp.rmm.handlers.rmi_rtt import lock_rd, walk_from_rd
from rmm_mp.rmm.measurement import rim_extend_data
from rmm_mp.rmm.nsbuf import read_ns, still_ns
from rmm_mp.rmm.realm_desc import RIM_SLOT, RealmState, Rd
from rmm_mp.rmm.s2tt import Kind, S2Ctx, Walk

if TYPE_CHECKING:
    from rmm_mp.hw.granule import Granule
    from rmm_mp.rmm.cpu import RmmCpu

DELEGATED, RD, DATA = GranuleState.DELEGATED, GranuleState.RD, GranuleState.DATA
GRANULE_SIZE = 1 << s2tt.GRANULE_SHIFT
PAGE_LEVEL = s2tt.PAGE_LEVEL
NO_MEASURE_CONTENT = int(RmiDataFlags.RMI_NO_MEASURE_CONTENT)
MEASURE_CONTENT = int(RmiDataFlags.RMI_MEASURE_CONTENT)

LOCK_SEQUENCES = {
    "RMI_DATA_CREATE": ("the source page alone (NS, for the copy, released before anything else is "
                        "taken); the DATA granule (DELEGATED) and the RD in ascending address order; "
                        "root RTT 0; walk hand over hand to the level-3 table; the RD is held to the "
                        "end (the RIM is extended under it)",
                        "the copy's NS lock is held alone (rule 8); two externals in address order "
                        "(rule 2); then RTTs root to leaf (rules 1, 5)"),
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
    # src_pas is checked twice, as TF-RMM does: the granule state (lock-free) up front, and,
    # after rtte_state, where TF-RMM's copy faults, the copy's result and the source's state
    # again (the copy was made before the locks; the source may have been delegated since).
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
    if not still_ns(rmm, src_addr):     # lock-free, as TF-RMM
        raise RmiError.input()
    content = read_ns(rmm, src_addr, GRANULE_SIZE)   # holding no lock: see the module docstring
    _create(rmm, rd_addr, data_addr, ipa, flags, content, measured=True, src_addr=src_addr)


def rmi_data_create_unknown(rmm: "RmmCpu", rd_addr: int, data_addr: int, ipa: int) -> None:
    """Create a DATA granule at ``ipa`` with unknown (zero) contents, keeping the entry's RIPAS;
    not measured, allowed in any realm state. B4.3.2."""
    _create(rmm, rd_addr, data_addr, ipa, NO_MEASURE_CONTENT, None, measured=False, src_addr=-1)


def _create(rmm: "RmmCpu", rd_addr: int, data_addr: int, ipa: int, flags: int,
            content: bytes | None, measured: bool, src_addr: int) -> None:
    """Shared body: ``measured`` is DATA_CREATE (content None there means the copy faulted;
    ``src_addr`` is the source page it was copied from)."""
    pair = rmm.granules.lock_two(data_addr, DELEGATED, rd_addr, RD)
    if pair is None:
        raise RmiError.input()
    data_g, rd_g = pair
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
            if measured:
                # src_pas again, where TF-RMM's copy would fault (nsbuf.still_ns: delegated
                # since the copy, even as this very data granule, it fails here).
                if content is None or not still_ns(rmm, src_addr):
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
