"""RSI_IPA_STATE_SET and RSI_IPA_STATE_GET (DEN0137 B5.3.6, B5.3.5; A5.4 RIPAS change).

IPA_STATE_SET only records the request and exits to the host (RMI_EXIT_RIPAS_CHANGE); the host
carries it out with RMI_RTT_SET_RIPAS and the realm sees the outcome in X0..X2 when it is next
entered (realm_run completes it). IPA_STATE_GET walks the RTTs holding the locks hand over hand.
"""

from __future__ import annotations

from rmm_mp.abi.rsi import RSI_CHANGE_DESTROYED, RsiRipas, RsiStatus
from rmm_mp.abi.structs import RmiRecExitReason
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.realm_call import WHY_WALK, Exit, RealmCall
from rmm_mp.rmm.s2tt import Kind
from rmm_mp.rmm.granule_state import GranuleState

_SUCCESS, _INPUT = int(RsiStatus.RSI_SUCCESS), int(RsiStatus.RSI_ERROR_INPUT)
_EXIT_RIPAS_CHANGE = int(RmiRecExitReason.RMI_EXIT_RIPAS_CHANGE)

LOCK_SEQUENCES = {
    "RSI_IPA_STATE_SET": ("none (the request is kept in the REC, owned through the running reference)",
                          "takes no lock"),
    "RSI_IPA_STATE_GET": ("root RTT 0; walk hand over hand to the last-level table for base, held while its "
                          "entries are copied", WHY_WALK),
}


def _range_ok(call: RealmCall, base: int, top: int) -> bool:
    """base_align, top_align, size_valid, rgn_bound."""
    return not (base | top) & 0xFFF and base < top <= call.ctx.par_size


def rsi_ipa_state_set(call: RealmCall) -> "tuple[int, ...] | Exit":
    """X1 base, X2 top, X3 RIPAS (EMPTY or RAM), X4 flags (bit 0: may change DESTROYED)."""
    x = call.state.x
    base, top, ripas, flags = x[1], x[2], x[3] & 0xFF, x[4]
    if not _range_ok(call, base, top) or ripas not in (RsiRipas.RSI_EMPTY, RsiRipas.RSI_RAM):
        return (_INPUT,)
    call.rec.set_ripas_request(base, top, base, ripas, flags & RSI_CHANGE_DESTROYED)
    return Exit({"exit_reason": _EXIT_RIPAS_CHANGE, "ripas_base": base, "ripas_top": top, "ripas_value": ripas})


def rsi_ipa_state_get(call: RealmCall) -> tuple[int, ...]:
    """X1 base, X2 end: outputs (top, RIPAS) where [base, top) all has RIPAS, top <= end.

    The run is found within the last-level table the walk for base reaches, as TF-RMM does; a
    realm asks again from top for the rest.
    """
    x = call.state.x
    base, end = x[1], x[2]
    if not _range_ok(call, base, end):
        return (_INPUT,)
    rmm, ctx = call.rmm, call.ctx
    root0 = rmm.granules.lock_known(rmm.granules.find(ctx.rtt_base), GranuleState.RTT, s2tt.root_hint(ctx))
    walk = s2tt.walk(rmm.granules, rmm.memory, ctx, root0, base, s2tt.PAGE_LEVEL)
    try:
        entries = s2tt.entries(rmm.memory, walk.llt.idx)
    finally:
        walk.llt.unlock()
    size = s2tt.block_size(walk.level)
    ripas = _ripas(entries[walk.index], walk.level)
    assert ripas is not None, "the walk for base stopped at a TABLE entry"
    addr = (base & ~(size - 1)) + size
    index = walk.index + 1
    while addr < end and index < s2tt.ENTRIES and _ripas(entries[index], walk.level) == ripas:
        addr += size
        index += 1
    return _SUCCESS, min(addr, end), ripas


def _ripas(desc: int, level: int) -> int | None:
    """The entry's RIPAS, or None for an entry that has none: a TABLE entry ends the run, since
    the table below it may hold any RIPAS (the walk for base never stops on one)."""
    kind, ripas = s2tt.decode(desc, level)
    return ripas if kind in (Kind.ASSIGNED, Kind.UNASSIGNED) else None
