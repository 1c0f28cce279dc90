"""EL3's Granule Transition Service (RMM_GTSI_DELEGATE / RMM_GTSI_UNDELEGATE).

EL3 makes its own checks before it changes the GPT, as TF-A's RMMD does: the address must be a
DRAM granule (E_RMM_BAD_ADDR) and in the source PAS (E_RMM_BAD_PAS). The change is one atomic
compare-and-swap of the GPT entry.

This module owns GPT transitions. It must not know granule states.
"""

from __future__ import annotations

from rmm_mp.abi.el3 import RmmEl3Status
from typing import TYPE_CHECKING

from rmm_mp.hw.gpt import Gpt, Pas

if TYPE_CHECKING:
    from rmm_mp.hw.tlb import Tlb

GRANULE_SHIFT = 12
_OK, _BAD_ADDR, _BAD_PAS = int(RmmEl3Status.E_RMM_OK), int(RmmEl3Status.E_RMM_BAD_ADDR), int(RmmEl3Status.E_RMM_BAD_PAS)
_NS, _REALM = int(Pas.NS), int(Pas.REALM)


class Gtsi:
    """EL3's GTSI service on one CPU; ``tlb`` broadcasts the GPT-cache invalidation that must
    complete before a transition returns (TF-A: TLBI PAALLOS; DSB)."""

    __slots__ = ("gpt", "base", "end", "_cas", "_invalidate")

    def __init__(self, gpt: Gpt, dram_base: int, granule_count: int, tlb: "Tlb | None" = None) -> None:
        self.gpt = gpt
        self.base = dram_base
        self.end = dram_base + (granule_count << GRANULE_SHIFT)
        self._cas = gpt.view.cas_u8
        self._invalidate = tlb.invalidate_gpt if tlb is not None else (lambda: None)

    def delegate(self, pa: int) -> int:
        """NS -> Realm PAS. Returns an RmmEl3Status value."""
        if pa & 0xFFF or not self.base <= pa < self.end:
            return _BAD_ADDR
        if self._cas((pa - self.base) >> GRANULE_SHIFT, _NS, _REALM) != _NS:
            return _BAD_PAS
        self._invalidate()
        return _OK

    def undelegate(self, pa: int) -> int:
        """Realm -> NS PAS. Returns an RmmEl3Status value."""
        if pa & 0xFFF or not self.base <= pa < self.end:
            return _BAD_ADDR
        if self._cas((pa - self.base) >> GRANULE_SHIFT, _REALM, _NS) != _REALM:
            return _BAD_PAS
        self._invalidate()
        return _OK
