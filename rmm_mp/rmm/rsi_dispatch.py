"""Dispatch of SMCs a running realm makes: RSI commands, PSCI, and everything else.

The function ID is W0 with the SMCCC SVE hint cleared. RSI IDs go to their handler (found by
name: RSI_FOO is rsi_foo in a handlers.rsi_* module), PSCI IDs to handlers.psci, any other ID
returns SMC_UNKNOWN to the realm without an exit. Only this module writes a call's results into
the realm's registers: X0 = status, X1..X3 = outputs or 0, X4 and above only when written.
"""

from __future__ import annotations

import time

from rmm_mp.abi.psci import is_psci
from rmm_mp.abi.rsi import RsiFid
from rmm_mp.abi.smccc import SMC_UNKNOWN, SMCCC_SVE_HINT
from rmm_mp.hw.trace import KIND_RSI
from rmm_mp.rmm.handlers import (
    psci, rsi_attest, rsi_config, rsi_host_call, rsi_measurement, rsi_memory, rsi_system,
)
from rmm_mp.rmm.realm_call import Exit, RealmCall
from rmm_mp.stats.calls import PSCI_BASE, RSI_BASE

RSI_MODULES = (rsi_system, rsi_measurement, rsi_config, rsi_memory, rsi_host_call, rsi_attest)
RSI_HANDLERS = {int(fid): getattr(m, fid.name.lower()) for fid in RsiFid for m in RSI_MODULES
                if hasattr(m, fid.name.lower())}
_W0 = 0xFFFF_FFFF & ~SMCCC_SVE_HINT


def handle_smc(call: RealmCall) -> Exit | None:
    """Handle the SMC the REC stopped at; None means: continue after it (PC += one instruction)."""
    x = call.state.x
    fid, arg1 = x[0] & _W0, x[1]
    recorder, tracer = call.rmm.el3.recorder, call.rmm.el3.tracer
    start = time.perf_counter_ns() if recorder is not None or tracer is not None else 0
    handler = RSI_HANDLERS.get(fid)
    if handler is not None:
        out = handler(call)
        slot = RSI_BASE + (fid - 0xC400_0190)
    elif is_psci(fid):
        out = psci.handle_psci(call, fid)
        slot = PSCI_BASE + (fid & 0x1F)
    else:
        out = (SMC_UNKNOWN,)
        slot = -1
    if slot >= 0 and (recorder is not None or tracer is not None):
        elapsed = time.perf_counter_ns() - start
        if recorder is not None:
            recorder.record(slot, elapsed, 0, elapsed, 0, not isinstance(out, Exit) and out[0] != 0)
        if tracer is not None:
            tracer.record(KIND_RSI, slot, start, elapsed, arg1)
    if isinstance(out, Exit):
        return out
    x[0] = out[0]
    for n in range(1, max(4, len(out))):
        x[n] = out[n] if n < len(out) else 0
    return None
