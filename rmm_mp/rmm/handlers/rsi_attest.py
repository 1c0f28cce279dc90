"""RSI_ATTESTATION_TOKEN_INIT and RSI_ATTESTATION_TOKEN_CONTINUE (DEN0137 B5.3.2, B5.3.1; A7.2).

INIT takes the 64-byte challenge in X1..X8, snapshots the measurements and RPV under the RD lock
and (re)starts a token in the REC (rmm.attestation.TokenState); X1 = the token's upper bound.
CONTINUE first finishes signing, step by step out of the REC's time slice (an IRQ exit with
X0 = RSI_INCOMPLETE when the slice runs out; the realm calls again, on whatever CPU runs it
next), then copies the CCA token out: min(X3, bytes left) at IPA X1 + X2, X1 = bytes written,
X0 = RSI_INCOMPLETE until the last byte, then RSI_SUCCESS and the token is done. A token longer
than the TOKEN_BUFFER_SIZE bytes INIT promised fails with RSI_ERROR_UNKNOWN, changing nothing
(every later CONTINUE fails so too, until an INIT starts another token). The buffer is walked
after signing, and the signed token kept unless it is RIPAS EMPTY (RSI_ERROR_INPUT, leaving the
token state as it was); an unmapped one (a stage-2 abort exit, after which the realm repeats the
call) keeps it.
"""

from __future__ import annotations

import struct

from rmm_mp.abi import cca_token as T
from rmm_mp.abi.rsi import RsiStatus
from rmm_mp.abi.structs import RmiRecExitReason
from rmm_mp.rmm import attestation
from rmm_mp.rmm.attestation import PHASE_COPYING, PHASE_NONE, PHASE_SIGNING, SIGNING_STEPS, STEP_COST, TokenState
from rmm_mp.rmm.realm_call import (
    EMPTY, FAULT, WHY_RD_ALONE, WHY_WALK, Exit, RealmCall, RealmPage, lock_realm_page, set_rsi_results,
    stage2_abort_exit,
)
from rmm_mp.rmm.granule_state import GranuleState

_SUCCESS, _INPUT = int(RsiStatus.RSI_SUCCESS), int(RsiStatus.RSI_ERROR_INPUT)
_STATE, _INCOMPLETE = int(RsiStatus.RSI_ERROR_STATE), int(RsiStatus.RSI_INCOMPLETE)
_UNKNOWN = int(RsiStatus.RSI_ERROR_UNKNOWN)
_EXIT_IRQ = int(RmiRecExitReason.RMI_EXIT_IRQ)
_REGS8 = struct.Struct("<8Q")
GRANULE = 4096

LOCK_SEQUENCES = {
    "RSI_ATTESTATION_TOKEN_INIT": ("the RD, while the measurements are copied (the token state is kept in the "
                                   "REC's aux granules, owned through the running reference)", WHY_RD_ALONE),
    "RSI_ATTESTATION_TOKEN_CONTINUE": ("root RTT 0; walk hand over hand to the buffer's last-level table, held "
                                       "while the token bytes are copied into the page (and, on the call that "
                                       "finishes signing, while the signed token is stored in the REC's second "
                                       "aux granule; for an unmapped buffer the walk releases every table "
                                       "before the token is stored and the REC exits)", WHY_WALK),
}


def _state(call: RealmCall) -> TokenState:
    aux = call.rec.aux()
    return TokenState(call.rmm.memory, aux[0], aux[1])


def rsi_attestation_token_init(call: RealmCall) -> tuple[int, ...]:
    """X1..X8 = challenge (little-endian per register); output X1 = TOKEN_BUFFER_SIZE."""
    challenge = _REGS8.pack(*call.state.x[1:9])
    rd_g = call.rmm.granules.lock_known(call.rd.idx, GranuleState.RD)
    measurements = [call.rd.measurement(slot) for slot in range(5)]
    rd_g.unlock()
    _state(call).start(challenge, measurements, call.rd.rpv, call.rec.hash_algo)
    return _SUCCESS, T.TOKEN_BUFFER_SIZE


def rsi_attestation_token_continue(call: RealmCall) -> "tuple[int, ...] | Exit":
    """X1 = IPA of a 4 KiB granule, X2 = offset in it, X3 = bytes the realm can take."""
    x = call.state.x
    ipa, offset, size = x[1], x[2], x[3]
    if ipa & (GRANULE - 1) or not call.ctx.in_par(ipa) or offset >= GRANULE or offset + size > GRANULE:
        return (_INPUT,)
    state = _state(call)
    phase, steps, length, copied, algo = state.head()
    if phase == PHASE_NONE:
        return (_STATE,)
    if phase == PHASE_SIGNING:
        budget = call.extra.get("budget", SIGNING_STEPS * STEP_COST)
        # At least one step per call, as TF-RMM signs once before it looks for a pending IRQ:
        # otherwise a time slice shorter than a step would never finish a token.
        while True:
            steps += 1
            budget = max(0, budget - STEP_COST)
            if steps >= SIGNING_STEPS or budget < STEP_COST:
                break
        call.extra["budget"] = budget
        if steps < SIGNING_STEPS:
            state.set_head(PHASE_SIGNING, steps, 0, 0, algo)
            # The IRQ exit carries the call's result (TF-RMM's UPDATE_REC_EXIT_TO_HOST).
            set_rsi_results(x, (_INCOMPLETE,))
            return Exit({"exit_reason": _EXIT_IRQ})
        token = state.sign(attestation.material(call.rmm))
        if token is None:
            # B5.3.1.2 `unknown`: the realm sized its buffer by INIT's bound (TF-RMM rel0 returns
            # RSI_ERROR_INPUT). A failing command is aborted (B1.6): the token state is left as
            # the call found it (this call's signing steps were never stored), so the token is
            # still in progress and a retry fails the same way, as in TF-RMM.
            return (_UNKNOWN,)
        # The buffer is walked once signing is done (TF-RMM rel0's order) but before anything
        # is stored: a RIPAS EMPTY buffer fails with the token state as the call found it (a
        # failing call changes nothing, B1.6), and the retry signs again. An unmapped one is no
        # failure: the REC exits for the host to map it and the realm repeats the call, so the
        # signed token is kept, as TF-RMM keeps it (signing again on every lazily faulted-in
        # buffer doubled the signing cost of a KVM-like host's attestations).
        page = lock_realm_page(call, ipa)
        if page.kind != EMPTY:
            state.store(token)
            state.set_head(PHASE_COPYING, steps, len(token), 0, algo)
        return _copy_out(call, state, ipa, offset, size, page)
    return _copy_out(call, state, ipa, offset, size, lock_realm_page(call, ipa))


def _copy_out(call: RealmCall, state: TokenState, ipa: int, offset: int, size: int,
              page: RealmPage) -> "tuple[int, ...] | Exit":
    """Copy into the buffer ``page`` (walked by the caller; a RAM page comes locked)."""
    # The buffer is walked before the size is looked at (TF-RMM rel0): an unmapped buffer exits
    # to the host and an EMPTY one fails even when X3 = 0.
    if page.kind == EMPTY:
        return (_INPUT,)
    if page.kind == FAULT:
        return stage2_abort_exit(ipa, page.level)
    if size == 0:
        page.release()
        return _INCOMPLETE, 0
    phase, steps, length, copied, algo = state.head()
    count = min(size, length - copied)
    start = page.pa - call.rmm.memory.base + offset
    call.rmm.memory.buf[start:start + count] = state.token(copied, count)
    page.release()
    copied += count
    if copied < length:
        state.set_head(PHASE_COPYING, steps, length, copied, algo)
        return _INCOMPLETE, count
    state.set_head(PHASE_NONE, 0, 0, 0, algo)
    return _SUCCESS, count
