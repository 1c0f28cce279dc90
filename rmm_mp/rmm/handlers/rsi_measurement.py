"""RSI_MEASUREMENT_READ and RSI_MEASUREMENT_EXTEND (DEN0137 B5.3.8, B5.3.7).

Both take the RD lock: measurements belong to the RD and change only under its lock.
"""

from __future__ import annotations

import struct

from rmm_mp.abi.rsi import MAX_MEASUREMENT_EXTEND, MEASUREMENT_SLOTS, RsiStatus
from rmm_mp.rmm.measurement import HASH_SIZES, rem_extend
from rmm_mp.rmm.realm_call import WHY_RD_ALONE, RealmCall
from rmm_mp.rmm.granule_state import GranuleState

_SUCCESS, _INPUT = int(RsiStatus.RSI_SUCCESS), int(RsiStatus.RSI_ERROR_INPUT)
_REGS8 = struct.Struct("<8Q")

LOCK_SEQUENCES = {
    "RSI_MEASUREMENT_READ": ("the RD, while the slot is copied", WHY_RD_ALONE),
    "RSI_MEASUREMENT_EXTEND": ("the RD, across the read, the extension and the write of the slot", WHY_RD_ALONE),
}


def rsi_measurement_read(call: RealmCall) -> tuple[int, ...]:
    """X1 = slot (0 RIM, 1..4 REMs); outputs X1..X8 = the value, little-endian, zero padded."""
    index = call.state.x[1]
    if index >= MEASUREMENT_SLOTS:
        return (_INPUT,)
    rd_g = call.rmm.granules.lock_known(call.rd.idx, GranuleState.RD)
    value = call.rd.measurement(index)
    rd_g.unlock()
    size = HASH_SIZES[call.rec.hash_algo]
    return (_SUCCESS, *_REGS8.unpack(value[:size].ljust(64, b"\0")))


def rsi_measurement_extend(call: RealmCall) -> tuple[int, ...]:
    """X1 = REM slot 1..4, X2 = size 0..64, X3..X10 = value: REM = H(REM || value[:size])."""
    x = call.state.x
    index, size = x[1], x[2]
    if not 1 <= index < MEASUREMENT_SLOTS or size > MAX_MEASUREMENT_EXTEND:
        return (_INPUT,)
    value = _REGS8.pack(*x[3:11])
    rd_g = call.rmm.granules.lock_known(call.rd.idx, GranuleState.RD)
    call.rd.set_measurement(index, rem_extend(call.rec.hash_algo, call.rd.measurement(index), value, size))
    rd_g.unlock()
    return (_SUCCESS,)
