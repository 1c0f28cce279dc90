"""A bounded memo of a pure function, looked up with a subscript.

The REC round trip looks up a few pure functions' answers on every entry (MPIDR_EL1 of a REC
index, the S2Ctx of a REC's stage-2 fields, the GIC exit state of an entry's GIC state). A dict
whose ``__missing__`` computes and remembers an answer finds a known one with a subscript,
which makes no call: a helper that asked ``dict.get`` and then the function on a miss cost two.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedMemo(dict[K, V], Generic[K, V]):
    """key -> compute(key), remembered; once ``limit`` keys are held, the next miss starts
    afresh (a pure function's answers can be dropped at any time, and callers use a handful)."""

    __slots__ = ("_compute", "_limit")

    def __init__(self, compute: Callable[[K], V], limit: int) -> None:
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, key: K) -> V:
        if len(self) >= self._limit:
            self.clear()
        value = self[key] = self._compute(key)
        return value
