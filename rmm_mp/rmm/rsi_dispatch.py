"""Dispatch of SMCs a running realm makes: RSI commands, PSCI, and everything else.

The function ID is W0 with the SMCCC SVE hint cleared. RSI IDs go to their handler (found by
name: RSI_FOO is rsi_foo in a handlers.rsi_* module), PSCI IDs to handlers.psci, any other ID
returns SMC_UNKNOWN to the realm without an exit. This module writes a call's results into the
realm's registers: for an RSI command X0 = status and X1..X16 = outputs or 0 (spec B1.2,
realm_call.set_rsi_results); for PSCI and any other ID, as SMCCC asks, X0 = status, X1..X3 =
outputs or 0, X4 and above only when written. (Results an entry completes, of IPA_STATE_SET
and HOST_CALL, are written by realm_run the same way.)
"""

from __future__ import annotations

import time

from rmm_mp.abi.psci import is_psci
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.abi.smccc import SMC_UNKNOWN, SMCCC_SVE_HINT
from rmm_mp.hw import points
from rmm_mp.hw.trace import KIND_RSI
from rmm_mp.rmm.handlers import (
    psci, rsi_attest, rsi_config, rsi_host_call, rsi_measurement, rsi_memory, rsi_system,
)
from rmm_mp.rmm.realm_call import Exit, RealmCall, set_rsi_results
from rmm_mp.stats.calls import PSCI_BASE, RSI_BASE, psci_slot

RSI_MODULES = (rsi_system, rsi_measurement, rsi_config, rsi_memory, rsi_host_call, rsi_attest)
RSI_HANDLERS = {int(fid): getattr(m, fid.name.lower()) for fid in RsiFid for m in RSI_MODULES
                if hasattr(m, fid.name.lower())}
_W0 = 0xFFFF_FFFF & ~SMCCC_SVE_HINT
_RSI_FIRST = 0xC400_0190
_RSI_ERRORS = frozenset({1, 2, 4})
"""RSI_ERROR_INPUT, RSI_ERROR_STATE and RSI_ERROR_UNKNOWN; RSI_SUCCESS and RSI_INCOMPLETE are
not failures."""


def lock_sequences() -> dict[str, tuple[str, str]]:
    """{call: (lock sequence, why it cannot deadlock)} of the calls a running realm makes, as the
    handler modules declare them: RSI commands in function ID order, then PSCI."""
    found: dict[str, tuple[str, str]] = {}
    for module in RSI_MODULES:
        found.update(getattr(module, "LOCK_SEQUENCES", {}))
    ordered = {fid.name: found.pop(fid.name) for fid in RsiFid if fid.name in found}
    ordered.update(found)
    ordered.update(psci.LOCK_SEQUENCES)
    return ordered


def handle_smc(call: RealmCall) -> Exit | None:
    """Handle the SMC the REC stopped at; None means: continue after it (PC += one instruction)."""
    x = call.state.x
    fid = x[0] & _W0
    if points.hook is not None:
        points.hook(points.RSI_ENTRY, fid)
    el3 = call.rmm.el3
    timed = el3.recorder is not None or el3.tracer is not None
    start = time.perf_counter_ns() if timed else 0
    handler = RSI_HANDLERS.get(fid)
    if handler is not None:
        out = handler(call)
        slot = RSI_BASE + (fid - _RSI_FIRST)
    elif is_psci(fid):
        out = psci.handle_psci(call, fid)
        slot = psci_slot(fid)     # a PSCI call is rare next to RSI ones: the call costs nothing here
    else:
        out = (SMC_UNKNOWN,)
        slot = -1
    if points.hook is not None:
        points.hook(points.RSI_EXIT, fid)
    if timed and slot >= 0:
        # The call's record, written out here (its only caller: one call per RSI call fewer).
        elapsed = time.perf_counter_ns() - start
        if el3.recorder is not None:
            if out.__class__ is Exit:
                error = False
            elif slot >= PSCI_BASE:
                # PSCI returns values (VERSION, AFFINITY_INFO's states) as well as statuses: only
                # the negative ones are errors.
                error = out[0] >> 63 != 0      # type: ignore[index]
            else:
                error = out[0] in _RSI_ERRORS      # type: ignore[index]
            if error:
                el3.recorder.record(slot, elapsed, 0, 0, True)
            else:       # record(slot, elapsed, 0, 0, False) for an EL3-free slot (Recorder.el3_free_from)
                el3.recorder.appends[slot](elapsed)
        if el3.tracer is not None:
            el3.tracer.record(KIND_RSI, slot, start, elapsed, x[1])
    if out.__class__ is Exit:
        return out      # type: ignore[return-value]
    if handler is not None:
        set_rsi_results(x, out)     # type: ignore[arg-type]
        return None
    n = len(out)        # type: ignore[arg-type]
    x[0] = out[0]       # type: ignore[index]
    x[1] = out[1] if n > 1 else 0       # type: ignore[index]
    x[2] = out[2] if n > 2 else 0       # type: ignore[index]
    x[3] = out[3] if n > 3 else 0       # type: ignore[index]
    for i in range(4, n):
        x[i] = out[i]   # type: ignore[index]
    return None
