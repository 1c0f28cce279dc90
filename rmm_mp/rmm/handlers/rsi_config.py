"""RSI_REALM_CONFIG (DEN0137 B5.3.9): the RMM writes RsiRealmConfig into a realm page."""

from __future__ import annotations

from rmm_mp.abi.rsi import RsiStatus
from rmm_mp.abi.structs import RSI_REALM_CONFIG
from rmm_mp.rmm.realm_call import EMPTY, FAULT, Exit, RealmCall, lock_realm_page, stage2_abort_exit

_SUCCESS, _INPUT = int(RsiStatus.RSI_SUCCESS), int(RsiStatus.RSI_ERROR_INPUT)


def rsi_realm_config(call: RealmCall) -> "tuple[int, ...] | Exit":
    """X1 = IPA of a 4 KiB-aligned protected page: ipa_width, hash_algo and rpv are written
    there (the rest of the page is left as it was, as TF-RMM does)."""
    ipa = call.state.x[1]
    if ipa & 0xFFF or not call.ctx.in_par(ipa):
        return (_INPUT,)
    page = lock_realm_page(call, ipa)
    if page.kind == EMPTY:
        return (_INPUT,)
    if page.kind == FAULT:
        return stage2_abort_exit(ipa, page.level)
    buf, offset = call.rmm.memory.buf, page.pa - call.rmm.memory.base
    RSI_REALM_CONFIG.pack_into(buf, offset, "ipa_width", call.ctx.ipa_width)
    RSI_REALM_CONFIG.pack_into(buf, offset, "hash_algo", call.rec.hash_algo)
    RSI_REALM_CONFIG.pack_into(buf, offset, "rpv", call.rd.rpv)
    page.release()
    return (_SUCCESS,)
