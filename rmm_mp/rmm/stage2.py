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
from rmm_mp.rmm.realm_desc import OFF_TLB_GENERATION, count_exception
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
NS_GPF = "ns_gpf"                 # unprotected mapping to DRAM outside the NS PAS: a GPF, exit to the host
NS_NO_MEMORY = "ns_no_memory"     # unprotected mapping to a PA outside DRAM (no device modelled): an SEA
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


_DESC_TYPE_MASK, _DESC_TABLE = s2tt.DESC_TYPE_MASK, s2tt.DESC_TABLE
_OA_MASK, _PAGE_LEVEL = s2tt.OA_MASK, s2tt.PAGE_LEVEL
_NS = s2tt.NS
_SHIFTS = tuple(s2tt.level_shift(level) for level in range(s2tt.PAGE_LEVEL + 1))
_RAM_TYPE = s2tt.RAM_DESC_TYPE
_NS_PAS = int(Pas.NS)


class Stage2Bus:
    """The Bus (rmm_mp.guest.interpreter) of one stage-2 context on one CPU, kept across REC
    entries (RmmCpu.buses, by its S2Ctx): it holds only what its CPU and its S2Ctx give it, so
    nothing in it may change from one entry to the next, and the interpreter's translation
    caches (``fetch_pages``, ``read_pages``, ``write_pages``), which outlive an entry as a TLB's
    entries do: the CPU's Tlb decides at entry whether they still hold (hw/tlb.py), and the
    interpreter drops them whenever ``sync`` says so.

    ``translate`` handles the common case inline (a valid protected page or block: RAM) and
    leaves everything else to the general classification (``_classify``).
    """

    __slots__ = ("memory", "sync", "_load", "_base", "_ctx", "_root", "_gpt", "_ipa_size", "_par_size", "_start",
                 "_sl_shift", "_sl_mask", "_tlb", "fetch_pages", "read_pages", "write_pages")

    def __init__(self, rmm: "RmmCpu", ctx: S2Ctx, tlb: "Tlb") -> None:
        self.memory = rmm.memory.buf
        assert rmm.memory.view is not None
        self._load = rmm.memory.view.load_u64
        self._base = base = rmm.memory.base
        self._ctx = ctx
        self._gpt = rmm.gpt
        self.sync = tlb.sync        # the interpreter calls it at its sync points: no wrapper
        self.fetch_pages: dict[int, int] = {}
        self.read_pages: dict[int, int] = {}
        self.write_pages: dict[int, int] = {}
        self._tlb = tlb             # for exception_taken only
        self._root = (ctx.rtt_base - base) >> 12
        self._start = ctx.start_level
        self._sl_shift = _SHIFTS[ctx.start_level]
        self._ipa_size = 1 << ctx.ipa_width
        self._sl_mask = self._ipa_size - 1
        self._par_size = self._ipa_size >> 1

    def exception_taken(self) -> None:
        """The guest took a synchronous exception in the realm (interpreter.Bus): count it in the
        RD of the realm this CPU executes (realm_desc.count_exception), through the CPU's TLB,
        which knows that RD and holds the DRAM view."""
        tlb = self._tlb
        count_exception(tlb.dram, tlb.executing_rd - self._base)

    def translate(self, page: int, write: bool, fetch: bool) -> int:
        """DRAM offset of IPA ``page``, or WalkFault (see the reasons above)."""
        if page >= self._ipa_size:
            raise WalkFault(page, OUT_OF_RANGE, self._start)
        # The lock-free walk: where it stops for ``page`` (< 2^ipa_width), as (level, desc).
        # Written out, not a helper: every translation the interpreter misses in its caches
        # walks (the fetch page at least once per REC entry).
        sl_index = (page & self._sl_mask) >> self._sl_shift
        table = self._root + (sl_index >> s2tt.STRIDE)
        index = sl_index & (s2tt.ENTRIES - 1)
        level = self._start
        load = self._load
        while True:
            desc = load((table << 12) + (index << 3))
            if level == _PAGE_LEVEL or desc & _DESC_TYPE_MASK != _DESC_TABLE:
                break
            table = ((desc & _OA_MASK) - self._base) >> 12
            level += 1
            index = (page >> _SHIFTS[level]) & (s2tt.ENTRIES - 1)
        if page < self._par_size and desc & _DESC_TYPE_MASK == _RAM_TYPE[level] and not desc & _NS:
            # A valid protected page or block: ASSIGNED, RIPAS RAM, the only encoding of it.
            size = 1 << _SHIFTS[level]
            return (desc & _OA_MASK & ~(size - 1)) + (page & (size - 1)) - self._base
        return self._classify(page, write, fetch, level, desc)

    def _classify(self, page: int, write: bool, fetch: bool, level: int, desc: int) -> int:
        """translate() for what its fast path does not recognise (s2tt.decode's general rules)."""
        ctx = self._ctx
        kind, ripas = s2tt.decode(desc, level)
        if ctx.in_par(page):
            # A valid protected page or block took translate's fast path: what is left here with
            # HIPAS ASSIGNED and RIPAS RAM is an invalid entry (never written by the RMM), which
            # the hardware faults on and the RMM reports like lock_realm_page's FAULT.
            if ripas == s2tt.RIPAS_EMPTY and kind in (Kind.ASSIGNED, Kind.UNASSIGNED):
                raise WalkFault(page, EMPTY, level)
            raise WalkFault(page, DESTROYED if ripas == s2tt.RIPAS_DESTROYED else UNASSIGNED, level)
        if kind != Kind.ASSIGNED_NS:
            raise WalkFault(page, UNMAPPED_NS, level)
        if not desc & (_S2AP_WRITE if write else _S2AP_READ) or fetch:
            raise WalkFault(page, PERMISSION, level)
        pa = s2tt.output_address(desc, level) + (page & (s2tt.block_size(level) - 1))
        offset = pa - self._base
        if not 0 <= offset < len(self.memory):
            raise WalkFault(page, NS_NO_MEMORY, level)
        if self._gpt.pas(offset >> 12) != _NS_PAS:
            raise WalkFault(page, NS_GPF, level)
        return offset
