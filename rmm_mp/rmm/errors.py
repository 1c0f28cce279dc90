"""RMI command failures as typed exceptions; only the dispatcher packs them into X0.

Handlers raise RmiError with a named constructor (RmiError.rtt(level)) and never build
``status | index << 8`` themselves. RmmInternalError (hw.faults) is something else: an RMM bug,
never mapped to a status.
"""

from __future__ import annotations

from rmm_mp.abi.rmi import RmiStatus


class RmiError(Exception):
    """A command failed with ``status`` and ``index``; ``outputs`` are X1.. on that failure."""

    __slots__ = ("status", "index", "outputs")

    def __init__(self, status: RmiStatus, index: int = 0, outputs: tuple[int, ...] = ()) -> None:
        super().__init__(status, index)
        self.status = status
        self.index = index
        self.outputs = outputs

    def __str__(self) -> str:
        return f"{self.status.name} index {self.index}"

    @classmethod
    def input(cls, outputs: tuple[int, ...] = ()) -> "RmiError":
        return cls(RmiStatus.RMI_ERROR_INPUT, 0, outputs)

    @classmethod
    def realm(cls, index: int = 0) -> "RmiError":
        return cls(RmiStatus.RMI_ERROR_REALM, index)

    @classmethod
    def rec(cls) -> "RmiError":
        return cls(RmiStatus.RMI_ERROR_REC)

    @classmethod
    def rtt(cls, level: int, outputs: tuple[int, ...] = ()) -> "RmiError":
        """RMI_ERROR_RTT with the RTT level as index (level -1 encodes as 0xFF)."""
        return cls(RmiStatus.RMI_ERROR_RTT, level & 0xFF, outputs)
