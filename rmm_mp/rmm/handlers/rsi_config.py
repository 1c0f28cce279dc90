"""RSI_REALM_CONFIG (DEN0137 B5.3.9): the RMM writes RsiRealmConfig into a realm page."""

from __future__ import annotations

from rmm_mp.abi.rsi import RsiStatus
from rmm_mp.abi.structs import RSI_REALM_CONFIG
from rmm_mp.rmm.realm_call import EMPTY, FAULT, WHY_WALK, Exit, RealmCall, lock_realm_page, stage2_abort_exit

LOCK_SEQUENCES = {
    "RSI_REALM_CONFIG": ("root RTT 0; walk hand over hand to the page's last-level table, held while "
                         "RsiRealmConfig is written into the page", WHY_WALK),
}

_SUCCESS, _INPUT = int(RsiStatus.RSI_SUCCESS), int(RsiStatus.RSI_ERROR_INPUT)


def rsi_realm_config(call: RealmCall) -> "tuple[int, ...] | Exit":
    """X1 = IPA of a 4 KiB-aligned protected page: the whole RsiRealmConfig is written there,
    ipa_width, hash_algo and rpv, and zeros in every other byte of the page (B5.4.5: "Unused
    bits of the RsiRealmConfig structure MBZ"; TF-RMM rel0 writes the three fields only and
    leaves the rest as it was, docs/deviations.md)."""
    ipa = call.state.x[1]
    if ipa & 0xFFF or not call.ctx.in_par(ipa):
        return (_INPUT,)
    page = lock_realm_page(call, ipa)
    if page.kind == EMPTY:
        return (_INPUT,)
    if page.kind == FAULT:
        return stage2_abort_exit(ipa, page.level)
    offset = page.pa - call.rmm.memory.base
    call.rmm.memory.buf[offset:offset + RSI_REALM_CONFIG.size] = RSI_REALM_CONFIG.pack(
        ipa_width=call.ctx.ipa_width, hash_algo=call.rec.hash_algo, rpv=call.rd.rpv)
    page.release()
    return (_SUCCESS,)
