"""RMI_VERSION and RMI_FEATURES (DEN0137 B4.3.23, B4.3.4): interface discovery, no state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.abi.rmi import RMI_ABI_VERSION
from rmm_mp.rmm.errors import RmiError

if TYPE_CHECKING:
    from rmm_mp.rmm.cpu import RmmCpu


LOCK_SEQUENCES = {
    "RMI_VERSION": ("none", "takes no lock"),
    "RMI_FEATURES": ("none", "takes no lock"),
}
FAILURE_CONDITIONS: dict[str, tuple[str, ...]] = {"RMI_VERSION": (), "RMI_FEATURES": ()}


def rmi_version(rmm: "RmmCpu", req: int) -> tuple[int, int]:
    """Version handshake; outputs (lower, higher).

    rmm-mp implements exactly 1.0, so per B2 outcome (a) a request for 1.0 succeeds and every
    other request fails under outcome (b) or (c) with lower = higher = 1.0 (as TF-RMM rel0).
    """
    if req != RMI_ABI_VERSION:
        raise RmiError.input(outputs=(RMI_ABI_VERSION, RMI_ABI_VERSION))
    return RMI_ABI_VERSION, RMI_ABI_VERSION


def rmi_features(rmm: "RmmCpu", index: int) -> tuple[int]:
    """Feature register ``index``; register 0 comes from the platform, any other reads as 0."""
    return (rmm.features0 if index == 0 else 0,)
