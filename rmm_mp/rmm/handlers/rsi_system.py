"""RSI_VERSION and RSI_FEATURES (DEN0137 B5.3.10, B5.3.3): interface discovery from a realm."""

from __future__ import annotations

from rmm_mp.abi.rsi import RSI_ABI_VERSION, RsiStatus
from rmm_mp.rmm.realm_call import RealmCall

LOCK_SEQUENCES = {
    "RSI_VERSION": ("none", "takes no lock"),
    "RSI_FEATURES": ("none", "takes no lock"),
}

_SUCCESS, _INPUT = int(RsiStatus.RSI_SUCCESS), int(RsiStatus.RSI_ERROR_INPUT)


_REVISION = (0x7FFF << 16) | 0xFFFF
"""RsiInterfaceVersion major (bits 30:16) and minor (bits 15:0); bits 63:31 are reserved, SBZ (B5.4.4)."""


def rsi_version(call: RealmCall) -> tuple[int, ...]:
    """X1 = requested revision; outputs (lower, higher). Only 1.0 is implemented (B2 outcomes).

    The revision is X1's major and minor fields: junk in the reserved bits 63:31 does not make
    1.0 another revision (TF-RMM rel0 compares all of X1; docs/deviations.md)."""
    status = _SUCCESS if call.state.x[1] & _REVISION == RSI_ABI_VERSION else _INPUT
    return status, RSI_ABI_VERSION, RSI_ABI_VERSION


def rsi_features(call: RealmCall) -> tuple[int, ...]:
    """Every RSI 1.0 feature register reads as 0."""
    return _SUCCESS, 0
