"""The Granule Protection Table: which physical address space each DRAM granule belongs to.

One byte per DRAM granule in a shared segment. The encoding is ours (0 = Non-secure, so a
fresh zero-filled segment is all NS); only EL3 changes it, by atomic compare-and-swap, and the
granule protection check reads it on every host access to DRAM.

This module owns PAS values and GPT entries. It must not decide who may change them (EL3's
GTSI service does) nor touch memory contents.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import atomicshm


class Pas(enum.IntEnum):
    """Physical address spaces of RME."""

    NS = 0
    REALM = 1
    SECURE = 2
    ROOT = 3


class Gpt:
    """GPT entries of the DRAM granules, indexed like the granule table."""

    __slots__ = ("view", "buf", "count", "pas", "_load", "_cas", "_store")

    def __init__(self, view: atomicshm.AtomicView, buf: memoryview, count: int) -> None:
        self.view = view
        self.buf = buf
        self.count = count
        self._load = view.load_u8
        self._cas = view.cas_u8
        self._store = view.store_u8
        self.pas: Callable[[int], int] = view.load_u8
        """pas(idx): granule idx's PAS. The view's own load, not a method that calls it: every
        NS copy (the granule protection check) asks, four times per REC round trip."""

    def transition(self, idx: int, old: int, new: int) -> bool:
        """Atomically move granule idx from PAS old to new; False if it was not in old."""
        return self._cas(idx, old, new) == old

    def set_range(self, first: int, count: int, pas: Pas) -> None:
        """Initialise entries (machine creation only, before any CPU runs)."""
        for idx in range(first, first + count):
            self._store(idx, pas)

    def snapshot(self) -> bytes:
        """Every entry, copied at once (for checks and reports)."""
        return bytes(self.buf[: self.count])
