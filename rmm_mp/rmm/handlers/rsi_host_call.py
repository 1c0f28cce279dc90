"""RSI_HOST_CALL (DEN0137 B5.3.4): a call from the realm to its host, through RsiHostCall.

The REC exits with RMI_EXIT_HOST_CALL carrying the structure's imm and gprs; on the next
REC_ENTER the host's gprs are copied back into the structure and the realm's X0 is SUCCESS
(realm_run completes it).

The structure is found with a locked walk, as TF-RMM rel0 does (realm_ipa_to_pa). The REC keeps
what the walk found, with the realm's TLB generation read before it, so that the completion can
write the results without a second walk while no invalidation happened in between
(realm_call.py, "one walk per host call").
"""

from __future__ import annotations

from rmm_mp.abi.rsi import RsiStatus
from rmm_mp.abi.structs import RSI_HOST_CALL_RAW, RmiRecExitReason
from rmm_mp.rmm.realm_call import (
    EMPTY, FAULT, WHY_WALK, Exit, RealmCall, lock_realm_page, stage2_abort_exit,
)
from rmm_mp.rmm.realm_desc import OFF_TLB_GENERATION

_INPUT = int(RsiStatus.RSI_ERROR_INPUT)
_EXIT_HOST_CALL = int(RmiRecExitReason.RMI_EXIT_HOST_CALL)
_IMM_GPRS = RSI_HOST_CALL_RAW.whole
"""imm and gprs, the registers as their bytes: what the exit passes on (RMI_REC_EXIT_RAW)."""

LOCK_SEQUENCES = {
    "RSI_HOST_CALL": ("root RTT 0; walk hand over hand to the structure's last-level table, held while "
                      "RsiHostCall is read (the completion at the next REC_ENTER walks the same way to write "
                      "the results, but only if the realm's TLB generation moved)", WHY_WALK),
}


def rsi_host_call(call: RealmCall) -> "tuple[int, ...] | Exit":
    """X1 = IPA of an RsiHostCall (256-byte aligned, protected)."""
    ipa = call.state.x[1]
    # Protected (S2Ctx.in_par) and the realm's TLB generation, read before the walk (realm_call.py
    # says why), written out: a Python call less each on every host call.
    if ipa & 0xFF or ipa >> (call.ctx.ipa_width - 1):
        return (_INPUT,)
    memory = call.rmm.memory
    generation = memory.view.load_u64((call.rd.idx << 12) + OFF_TLB_GENERATION)  # type: ignore[union-attr]
    page = lock_realm_page(call, ipa)
    if page.kind == EMPTY:
        return (_INPUT,)
    if page.kind == FAULT:
        return stage2_abort_exit(ipa, page.level)
    buf, at = memory.buf, page.pa - memory.base + (ipa & 0xFFF)
    # imm and gprs in one unpack (RSI_HOST_CALL_RAW.values without its call): the 31 gprs as
    # their bytes, which RmiRecExit carries unchanged; the RMM never looks at them.
    imm, gprs = _IMM_GPRS.unpack_from(buf, at)
    page.release()
    call.rec.set_host_call(ipa, page.pa, generation)
    return Exit({"exit_reason": _EXIT_HOST_CALL, "imm": imm, "gprs": gprs})
