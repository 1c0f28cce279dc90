"""A running realm's view of memory: stage-2 translation through its RTTs, as the MMU does it.

The Bus handed to the guest interpreter walks the realm's RTTs without taking locks, reading
each entry with a single-copy-atomic load, exactly as a hardware table walker may at any time
(locking rule 5 protects writers from each other, not readers). Translations are cached by the
interpreter per page; hw.tlb tells it when to drop them (TLBI from RMI commands, GPT changes
from EL3).

An access that does not translate raises MemoryFault with a reason the RMM classifies
(realm_run): what the RTT holds for the IPA, and the level the walk stopped at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rmm_mp.guest.interpreter import MemoryFault
from rmm_mp.hw.gpt import Pas
from rmm_mp.rmm import s2tt
from rmm_mp.rmm.realm_desc import OFF_TLB_GENERATION
from rmm_mp.rmm.s2tt import Kind, S2Ctx

if TYPE_CHECKING:
    from rmm_mp.hw.tlb import Tlb
    from rmm_mp.rmm.cpu import RmmCpu

# MemoryFault.reason values
OUT_OF_RANGE = "out_of_range"     # IPA >= 2^ipa_width
EMPTY = "empty"                   # protected, RIPAS EMPTY (assigned or not): the realm gets an SEA
DESTROYED = "destroyed"           # protected, RIPAS DESTROYED: a non-emulatable abort to the host
UNASSIGNED = "unassigned"         # protected, RIPAS RAM but nothing mapped: the host faults it in
UNMAPPED_NS = "unmapped_ns"       # unprotected, nothing mapped: MMIO emulation (or the host maps it)
PERMISSION = "permission"         # unprotected, mapped without the access right
NS_GPF = "ns_gpf"                 # unprotected mapping whose PA is not in the NS PAS: an SEA
_S2AP_READ, _S2AP_WRITE = 1 << 6, 1 << 7


def invalidate(rmm: "RmmCpu", rd_idx: int) -> None:
    """TLBI of a realm after a valid mapping was removed or changed (the caller may hold its RTT
    locks): returns once no CPU executing the realm uses a translation cached before."""
    rmm.tlb.invalidate_realm(rmm.memory.base + (rd_idx << 12), (rd_idx << 12) + OFF_TLB_GENERATION)


class WalkFault(MemoryFault):
    """MemoryFault with the level at which the walk stopped (for the fault status code)."""

    def __init__(self, ipa: int, reason: str, level: int) -> None:
        super().__init__(ipa, reason)
        self.level = level


class Stage2Bus:
    """The Bus (rmm_mp.guest.interpreter) of one REC run."""

    __slots__ = ("memory", "_view", "_base", "_ctx", "_root", "_gpt", "_tlb")

    def __init__(self, rmm: "RmmCpu", ctx: S2Ctx, tlb: "Tlb") -> None:
        self.memory = rmm.memory.buf
        self._view = rmm.memory.view
        self._base = rmm.memory.base
        self._ctx = ctx
        self._root = (ctx.rtt_base - rmm.memory.base) >> 12
        self._gpt = rmm.gpt
        self._tlb = tlb

    def sync(self) -> bool:
        return self._tlb.sync()

    def lookup(self, ipa: int) -> tuple[int, int, Kind, int]:
        """(level, entry, kind, ripas) of the entry the walk for ``ipa`` stops at."""
        ctx = self._ctx
        root_no, index = ctx.root_slot(ipa)
        table = self._root + root_no
        level = ctx.start_level
        load = self._view.load_u64  # type: ignore[union-attr]
        while True:
            desc = load((table << 12) + (index << 3))
            if level < s2tt.PAGE_LEVEL and desc & s2tt.DESC_TYPE_MASK == s2tt.DESC_TABLE:
                table = ((desc & s2tt.OA_MASK) - self._base) >> 12
                level += 1
                index = (ipa >> s2tt.level_shift(level)) & (s2tt.ENTRIES - 1)
                continue
            kind, ripas = s2tt.decode(desc, level)
            return level, desc, kind, ripas

    def translate(self, page: int, write: bool, fetch: bool) -> int:
        """DRAM offset of IPA ``page``, or WalkFault (see the reasons above)."""
        ctx = self._ctx
        if page >= ctx.ipa_size:
            raise WalkFault(page, OUT_OF_RANGE, ctx.start_level)
        level, desc, kind, ripas = self.lookup(page)
        if ctx.in_par(page):
            if kind == Kind.ASSIGNED and ripas == s2tt.RIPAS_RAM:
                return s2tt.output_address(desc, level) + (page & (s2tt.block_size(level) - 1)) - self._base
            if ripas == s2tt.RIPAS_EMPTY and kind in (Kind.ASSIGNED, Kind.UNASSIGNED):
                raise WalkFault(page, EMPTY, level)
            raise WalkFault(page, DESTROYED if ripas == s2tt.RIPAS_DESTROYED else UNASSIGNED, level)
        if kind != Kind.ASSIGNED_NS:
            raise WalkFault(page, UNMAPPED_NS, level)
        if not desc & (_S2AP_WRITE if write else _S2AP_READ) or fetch:
            raise WalkFault(page, PERMISSION, level)
        pa = s2tt.output_address(desc, level) + (page & (s2tt.block_size(level) - 1))
        offset = pa - self._base
        if not 0 <= offset < len(self.memory) or self._gpt.pas(offset >> 12) != Pas.NS:
            raise WalkFault(page, NS_GPF, level)
        return offset
