"""RSI_VERSION and RSI_FEATURES (DEN0137 B5.3.10, B5.3.3): interface discovery from a realm."""

from __future__ import annotations

from rmm_mp.abi.rsi import RSI_ABI_VERSION, RsiStatus
from rmm_mp.rmm.realm_call import RealmCall

_SUCCESS, _INPUT = int(RsiStatus.RSI_SUCCESS), int(RsiStatus.RSI_ERROR_INPUT)


def rsi_version(call: RealmCall) -> tuple[int, ...]:
    """X1 = requested revision; outputs (lower, higher). Only 1.0 is implemented (B2 outcomes)."""
    status = _SUCCESS if call.state.x[1] == RSI_ABI_VERSION else _INPUT
    return status, RSI_ABI_VERSION, RSI_ABI_VERSION


def rsi_features(call: RealmCall) -> tuple[int, ...]:
    """Every RSI 1.0 feature register reads as 0."""
    return _SUCCESS, 0
