"""The realm guest interpreter: executes guest instructions until something needs the RMM.

It runs on a GuestState (registers, PC, flags, system registers) that the RMM loads from the REC
granule at entry and stores back at exit, and reaches memory only through a Bus that translates
IPAs through the realm's stage 2 (so the RMM decides what a fault is). ``run`` returns an Event:

    SMC    the guest executed smc (PC still at it; the RMM advances it once handled)
    HVC    the guest executed hvc (the RMM injects an undefined instruction exception)
    WFI    the guest executed wfi / wfe (PC still at it)
    WFE
    ABORT  a load, store or fetch did not translate (Event.fault has the details; PC at it; an
           ldp/stp's fault has size_log2 PAIR_SIZE_LOG2, and no ISV syndrome describes it)
    SLICE  the time slice of ``budget`` instructions ran out (PC at the next instruction)

What a guest does to itself never leaves the interpreter: an undefined instruction (udf, or an
unknown opcode), a misaligned access or PC take a synchronous exception to vbar + 0x200 with
ELR/ESR/FAR set, as an EL1 exception would on hardware. Each such exception is told to the Bus
(``exception_taken``, which counts it for the run report), from the exception's own branch:
nothing on the per-instruction path pays for the count.

Translations are cached per page and kind of access (fetch, read, write) in dicts the Bus
holds (``fetch_pages``, ``read_pages``, ``write_pages``), as a TLB caches them; they outlive a
``run`` (the RMM's bus keeps them across REC entries: rmm.stage2, hw.tlb). ``Bus.sync`` is the
only place where the cache learns of a TLB invalidation: it returns True when one happened
since the last call (the caches are then dropped), and it is how this CPU acknowledges the
invalidation to the CPU that issued it (hw.tlb: that CPU's RMI command does not return before
every CPU executing the realm has synced). So whatever the sync points, no translation cached
before an invalidation is used after the command that invalidated returned: the
acknowledgement and the drop are one step. The sync points only decide how long the
invalidating CPU waits; they are:

- before the first instruction of every ``run`` (the caches may hold what an earlier run cached,
  and the RMM also needs the generations published: hw.tlb counts a CPU as behind until it syncs);
- before the instruction after any change of PC other than +8: a taken branch, bl, ret, br,
  eret, or an exception taken in the realm;
- when sequential execution crosses into another page (a new instruction fetch translation).

A realm's code therefore syncs at least once per loop iteration, and at the latest every 512
instructions (one page of straight-line code), or when ``run`` returns (end of slice, SMC, abort):
the invalidating CPU waits for a few instructions at most, not for a time slice. Between two sync
points the interpreter checks nothing, which is what makes the per-instruction cost low.

At a sync point, where a run of register-only instructions starts (blocks.py: nop, movi, movk,
mov, the ALU forms, cmp) that reached there blocks.HOT times before, the run executes as one call of
a function made from its words, if the slice has room for all of it, and a b, smc, hvc, wfi or
wfe right after it (or at the sync point itself) executes without a fetch or a decode; a block
ends before the next page, so the sync points stay the same.

This module owns guest execution. It must not know realms, RTTs or the RMM.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from rmm_mp.guest import blocks
from rmm_mp.guest.blocks import NO_END
from rmm_mp.guest.isa import INSTRUCTION_SIZE, SYNC_VECTOR_OFFSET, ZR, Op, SysReg, decode

MASK64: Final = (1 << 64) - 1
EC_UNKNOWN: Final = 0x00
EC_DABT_CUR: Final = 0x25
EC_PC_ALIGN: Final = 0x22
EC_SP_ALIGN_DABT: Final = 0x25
DFSC_ALIGNMENT: Final = 0x21
ESR_WNR: Final = 1 << 6
"""ISS bit 6 of a data abort: the access was a write (valid for alignment faults, as on AArch64)."""
IL: Final = 1 << 25
PAIR_SIZE_LOG2: Final = 4
"""Fault.size_log2 of an ldp/stp: two 8-byte registers, 16 bytes."""

SMC, HVC, WFI, WFE, ABORT, SLICE = "SMC", "HVC", "WFI", "WFE", "ABORT", "SLICE"
_LOAD = {0: struct.Struct("<B"), 1: struct.Struct("<H"), 2: struct.Struct("<I"), 3: struct.Struct("<Q")}


class GuestState:
    """The architectural state of one vCPU while it runs (x[31] is the zero register)."""

    __slots__ = ("x", "pc", "nzcv", "sysregs")

    def __init__(self, gprs: "tuple[int, ...] | list[int]", pc: int, pstate: int,
                 sysregs: "tuple[int, ...] | list[int]") -> None:
        self.x = [*gprs[:31], 0] if len(gprs) >= 31 else [*gprs, *[0] * (32 - len(gprs))]
        self.pc = pc
        self.nzcv = (pstate >> 28) & 0xF
        self.sysregs = [*sysregs, *[0] * (5 - len(sysregs))]

    def take_exception(self, esr: int, far: int = 0) -> None:
        """Enter the guest's synchronous exception vector (EL1 to itself)."""
        self.sysregs[SysReg.ELR] = self.pc
        self.sysregs[SysReg.ESR] = esr
        self.sysregs[SysReg.FAR] = far
        self.pc = (self.sysregs[SysReg.VBAR] + SYNC_VECTOR_OFFSET) & MASK64


@dataclass(frozen=True, slots=True)
class Fault:
    """A load, store or instruction fetch the Bus could not translate."""

    ipa: int
    write: bool
    size_log2: int
    """log2 of the access size: 0..3 for a single register, PAIR_SIZE_LOG2 (16 bytes) for ldp/stp,
    whose abort no ISV syndrome describes (AArch64 reports ISV=0 for a load/store pair)."""
    register: int
    fetch: bool
    reason: str
    level: int = 0
    """Where the Bus's translation stopped (a stage-2 walk level), if it says."""


class MemoryFault(Exception):
    """Raised by a Bus: the access does not translate. ``reason`` is the Bus's word for why."""

    def __init__(self, ipa: int, reason: str) -> None:
        super().__init__(ipa, reason)
        self.ipa = ipa
        self.reason = reason


@dataclass(slots=True)
class Event:
    """What stopped ``run`` (one per run: not frozen, which would cost more to make)."""

    kind: str
    executed: int
    imm: int = 0
    fault: Fault | None = None


class Bus(Protocol):
    """Stage-2 translation for the interpreter: IPA page -> offset of its page in ``memory``.

    The interpreter caches translations per page in the Bus's three dicts, across runs, and
    calls ``sync`` at the sync points the module docstring lists: it returns True when a TLB
    invalidation happened since the last call (or since the caches were filled, for the first
    call of a run), and the caches are dropped. ``sync`` is also where the Bus tells
    invalidating CPUs that this CPU has dropped what it cached before (their TLBI completes only
    then, as a DSB after TLBI would).
    """

    memory: memoryview
    """Guest-visible memory, a whole number of 8-byte words long."""
    fetch_pages: dict[int, int]
    read_pages: dict[int, int]
    write_pages: dict[int, int]
    """Translation caches, IPA page -> offset, for fetches, loads and stores (kept across runs)."""

    def translate(self, page: int, write: bool, fetch: bool) -> int:
        """Byte offset of IPA ``page`` (4 KiB aligned) in ``memory``, itself a multiple of 4096
        (blocks.py keys blocks by where they are in ``memory`` and ends them at the page's end
        there); MemoryFault if it does not translate for this kind of access."""
        ...

    def sync(self) -> bool:
        ...

    def exception_taken(self) -> None:
        """The guest has just taken a synchronous exception in the realm (called on that rare
        path only)."""
        ...


_decoded: dict[int, tuple[int, int, int, int, int, int]] = {}
"""Instruction word -> its decoding with its operands prepared (``_decode``), filled by
``_decode``. ``run`` subscripts it and decodes on a KeyError: no call for the words it has seen,
on every instruction. A plain dict, not a dict subclass with ``__missing__``: CPython 3.11
specializes a subscript for an exact dict only, and a subclass's goes through
``slot_mp_subscript`` and a method call (about 240 instructions more per subscript under
callgrind)."""
_DECODE_CACHE_MAX = 1 << 16
_KNOWN = frozenset(int(op) for op in Op)
_AUX_LIMIT = {int(Op.BCOND): 15, int(Op.LDR): 3, int(Op.STR): 3, int(Op.MOVK): 3, int(Op.LDP): 0, int(Op.STP): 0}
"""The largest aux each opcode that reads aux as a number defines (mrs/msr check theirs when run)."""

# Opcodes as plain ints: the loop compares them for every instruction, and an IntEnum comparison
# costs several times an int one (granule_state.py's docstring).
_MOVI, _MOVK, _MOV = int(Op.MOVI), int(Op.MOVK), int(Op.MOV)
_ADDI, _SUBI, _ANDI, _ORRI, _EORI = int(Op.ADDI), int(Op.SUBI), int(Op.ANDI), int(Op.ORRI), int(Op.EORI)
_LSLI, _LSRI, _ALU_LAST = int(Op.LSLI), int(Op.LSRI), int(Op.MUL)
_CMP, _CMPI = int(Op.CMP), int(Op.CMPI)
_B, _BCOND, _CBZ, _CBNZ, _BL, _RET, _BR = (int(Op.B), int(Op.BCOND), int(Op.CBZ), int(Op.CBNZ), int(Op.BL),
                                          int(Op.RET), int(Op.BR))
_LDR, _STR = int(Op.LDR), int(Op.STR)
_LDP, _STP = int(Op.LDP), int(Op.STP)
_SMC, _HVC, _WFI, _WFE, _ERET, _MRS, _MSR, _UDF = (int(Op.SMC), int(Op.HVC), int(Op.WFI), int(Op.WFE),
                                                   int(Op.ERET), int(Op.MRS), int(Op.MSR), int(Op.UDF))
_MPIDR, _ELR, _VBAR = int(SysReg.MPIDR), int(SysReg.ELR), int(SysReg.VBAR)
# VBAR_EL1 bits [10:0] are RES0 (the vector table is 2 KiB aligned): a write drops them, so a
# read gives them as 0 and an exception enters at the aligned base + 0x200.
_VBAR_MASK = MASK64 & ~0x7FF
_MSR_WRITABLE = frozenset(int(r) for r in (SysReg.VBAR, SysReg.ELR, SysReg.ESR, SysReg.FAR))
_PAGE_MASK = ~0xFFF
_NO_PAGE = -1 << 80
"""The end of the current fetch page after a non-sequential PC change: no PC (0 .. 2^64 - 1,
or 2^64 after the last word) is below it, so the next instruction takes the sync point and a
fresh fetch translation."""
_SIZES = tuple(_LOAD[n] for n in range(4))
_SIZE_MASKS = tuple((1 << (8 << n)) - 1 for n in range(4))
_STOPS = {_SMC: SMC, _HVC: HVC, _WFI: WFI, _WFE: WFE}
_IMM64_OPS = frozenset({_MOVI, _ADDI, _SUBI, _ANDI, _ORRI, _EORI, _CMPI})
"""Opcodes whose imm ``run`` only ever uses as a 64-bit value: ``_decode`` masks it once."""


def _cond(nzcv: int, cond: int) -> bool:
    n, z, c, v = nzcv >> 3 & 1, nzcv >> 2 & 1, nzcv >> 1 & 1, nzcv & 1
    base = cond >> 1
    if base == 0:
        result = z == 1
    elif base == 1:
        result = c == 1
    elif base == 2:
        result = n == 1
    elif base == 3:
        result = v == 1
    elif base == 4:
        result = c == 1 and z == 0
    elif base == 5:
        result = n == v
    elif base == 6:
        result = n == v and z == 0
    else:
        return True
    return not result if cond & 1 and cond != 15 else result


def _flags(a: int, b: int) -> int:
    res = (a - b) & MASK64
    n = res >> 63
    z = int(res == 0)
    c = int(a >= b)
    v = ((a ^ b) & (a ^ res)) >> 63
    return (n << 3) | (z << 2) | (c << 1) | v


def _decode(word: int) -> tuple[int, int, int, int, int, int]:
    """decode() through a bounded cache; an undefined opcode or aux value decodes as udf.

    The operands that ``run`` would compute the same way every time the word runs are computed
    here once, in the tuple's aux and imm: a movk's aux is the mask of the bits it keeps and its
    imm the lane's new bits in place; the imm of movi, of the immediate ALU forms and of cmp #imm
    is the 64-bit value it stands for (masked), and a shift's imm its amount (0..63). Every other
    opcode's fields are decode()'s (a branch's or a load's offset stays signed)."""
    if len(_decoded) >= _DECODE_CACHE_MAX:
        _decoded.clear()
    ins = decode(word)
    op, rd, rn, rm, aux, imm = ins
    if op not in _KNOWN or aux > _AUX_LIMIT.get(op, 255) or (op == _LDP and rd == rm):
        # An undefined opcode, or a field with no defined meaning: a b.cond condition above
        # AArch64's 4 bits, a load/store size or movk shift above 3, an ldp/stp aux other than 0.
        # An ldp that loads one register twice is CONSTRAINED UNPREDICTABLE on AArch64; of the
        # behaviours it permits, this ISA picks UNDEFINED (the assembler refuses to write one).
        ins = (_UDF, 0, 0, 0, 0, 0)
    elif op == _MOVK:
        shift = 16 * aux
        ins = (op, rd, rn, rm, ~(0xFFFF << shift) & MASK64, (imm & 0xFFFF) << shift)
    elif op == _LSLI or op == _LSRI:
        ins = (op, rd, rn, rm, aux, imm & 63)
    elif op in _IMM64_OPS:
        ins = (op, rd, rn, rm, aux, imm & MASK64)
    _decoded[word] = ins
    return ins


def _pair(state: GuestState, memory: memoryview, translate: Callable[[int, bool, bool], int],
          cache: dict[int, int], write: bool, rd: int, rn: int, rm: int, imm: int) -> Fault | Literal[True] | None:
    """ldp/stp: 16 bytes at xn + imm, xd (rd) in the lower 8 and xe (rm) in the upper 8.

    Returns None when done, True when the realm took an alignment fault (the address must be 8-byte
    aligned, as for ldr/str), or the Fault of a translation that failed. When the 16 bytes cross
    a page (the address is 0xFF8 into one), both pages are translated before anything is moved,
    the lower first: the fault is the lowest faulting address's (the access's address, or the
    next page's first byte), and a faulting access changes no register and no byte of memory.
    """
    x = state.x
    ipa = (x[rn] + imm) & MASK64
    if ipa & 7:
        state.take_exception((EC_DABT_CUR << 26) | IL | (ESR_WNR if write else 0) | DFSC_ALIGNMENT, ipa)
        return True
    frames = []
    for at in (ipa, (ipa + 8) & MASK64):
        page = at & _PAGE_MASK
        data = cache.get(page)
        if data is None:
            try:
                data = cache[page] = translate(page, write, False)
            except MemoryFault as fault:
                return Fault(at, write, PAIR_SIZE_LOG2, rd, False, fault.reason, getattr(fault, "level", 0))
        frames.append(data + (at & 0xFFF))
    q = _SIZES[3]
    if write:
        q.pack_into(memory, frames[0], x[rd])
        q.pack_into(memory, frames[1], x[rm])
    else:
        first, second = q.unpack_from(memory, frames[0])[0], q.unpack_from(memory, frames[1])[0]
        if rd != ZR:
            x[rd] = first
        if rm != ZR:
            x[rm] = second
    return None


def run(state: GuestState, bus: Bus, budget: int) -> Event:
    """Execute at most ``budget`` instructions; return the event that stopped execution.

    PC and flags live in locals while the loop runs and go back into ``state`` before anything
    else can see them (a return, an exception taken in the realm).
    """
    x = state.x
    memory = bus.memory
    # Instruction words by index (memory offset / 8): an item read costs less than an unpack.
    # Native byte order, as hw's atomic views assume too: the host is little-endian like the guest.
    words = memory.cast("Q")
    sync = bus.sync
    decoded = _decoded
    # Locals only for what a sync point or an instruction uses every time: the translation on a
    # cache miss and blocks.find are looked up where they are called (a bound method made here
    # for each run, bus.translate's or BLOCKS.get's, cost 0.5 % of bench_rec's round trip).
    block_map = blocks.BLOCKS
    fetch_pages = bus.fetch_pages
    read_pages = bus.read_pages
    write_pages = bus.write_pages
    pc = state.pc
    nzcv = state.nzcv
    # Between two sync points PC only moves on by 8 (every other change sets page_end to
    # _NO_PAGE), so it stays in the current fetch page while it is below the page's end; there
    # ``words[(pc - delta) >> 3]`` is its instruction (delta: the page's IPA less its offset).
    page_end = _NO_PAGE
    delta = 0
    executed = 0
    try:
        while executed < budget:
            if pc >= page_end:
                # A sync point (module docstring): the first instruction, a PC that moved other
                # than by +8, or the next page of straight-line code.
                # The caches outlive a run: the first instruction's sync may drop them too.
                if sync():
                    fetch_pages.clear()
                    read_pages.clear()
                    write_pages.clear()
                if pc & (INSTRUCTION_SIZE - 1):
                    state.pc, state.nzcv = pc, nzcv
                    state.take_exception((EC_PC_ALIGN << 26) | IL, pc)
                    bus.exception_taken()
                    pc = state.pc
                    page_end = _NO_PAGE
                    executed += 1
                    continue
                page = pc & _PAGE_MASK
                base = fetch_pages.get(page)
                if base is None:
                    try:
                        base = fetch_pages[page] = bus.translate(page, False, True)
                    except MemoryFault as fault:
                        state.pc, state.nzcv = pc, nzcv
                        return Event(ABORT, executed, fault=Fault(pc, False, 3, 0, True, fault.reason,
                                                                  getattr(fault, "level", 0)))
                delta = page - base
                page_end = page + 4096
                # Where a straight-line block starts (blocks.py), it runs in one call if the
                # slice has room for all of it. The lookup is here only: a made block whose words
                # are still there runs without a call (2,100 instructions of bench_rec's round
                # trip, 0.9 %). Otherwise the word is decoded, as the loop needs it anyway, and
                # blocks.find is called only where a block may start (blocks.STARTS) and no
                # entry says none does: most sync points of branch-heavy code hold a word no
                # block starts with (an ldr, a conditional branch), known from its opcode alone.
                # A block find makes runs from the next time (its words run in the loop now).
                start = (pc - delta) >> 3
                entry = block_map.get(start)
                if entry.__class__ is tuple and entry[0] == words[start:start + entry[1]]:
                    n, fn, last, value = entry[2]
                    if executed + n <= budget:
                        if fn is not None:
                            nzcv = fn(x, nzcv)
                            executed += n
                            pc += n << 3
                        if last != NO_END and executed < budget:    # the word after the run, as below
                            executed += 1
                            if last == _B:
                                pc = (pc + value) & MASK64
                                page_end = _NO_PAGE
                            else:
                                state.pc, state.nzcv = pc, nzcv
                                return Event(_STOPS[last], executed, value)
                        continue
                    entry = words[start]        # no room in the slice: the loop runs its words
                word = words[start]
                try:
                    op, rd, rn, rm, aux, imm = decoded[word]
                except KeyError:
                    op, rd, rn, rm, aux, imm = _decode(word)
                if entry != word and op in blocks.STARTS:
                    blocks.find(words, start, (page_end - delta) >> 3, _decode, _flags)
            else:
                word = words[(pc - delta) >> 3]
                try:
                    op, rd, rn, rm, aux, imm = decoded[word]
                except KeyError:            # a word not seen yet (or since the cache was cleared)
                    op, rd, rn, rm, aux, imm = _decode(word)
            executed += 1
            if op <= _MOV:
                if op == _MOVI:
                    if rd != ZR:
                        x[rd] = imm
                elif op == _MOVK:
                    if rd != ZR:
                        x[rd] = x[rd] & aux | imm      # aux: the bits kept; imm: the lane's (_decode)
                elif op == _MOV:
                    if rd != ZR:
                        x[rd] = x[rn]
                pc += INSTRUCTION_SIZE
            elif op <= _ALU_LAST:            # ADD .. MUL (0x04..0x0F decode as udf: _KNOWN)
                b = x[rm] if op & 1 == 0 else imm     # an immediate form's imm is masked (_decode)
                a = x[rn]
                if op <= _ADDI:
                    value = (a + b) & MASK64
                elif op <= _SUBI:
                    value = (a - b) & MASK64
                elif op <= _ANDI:
                    value = a & b
                elif op <= _ORRI:
                    value = a | b
                elif op <= _EORI:
                    value = a ^ b
                elif op == _LSLI:
                    value = (a << imm) & MASK64     # imm: the amount, 0..63 (_decode)
                elif op == _LSRI:
                    value = a >> imm
                else:
                    value = (a * x[rm]) & MASK64
                if rd != ZR:
                    x[rd] = value
                pc += INSTRUCTION_SIZE
            elif op == _CMP:
                nzcv = _flags(x[rn], x[rm])
                pc += INSTRUCTION_SIZE
            elif op == _CMPI:
                nzcv = _flags(x[rn], imm)
                pc += INSTRUCTION_SIZE
            elif _B <= op <= _BR:
                if op == _B or (op == _BCOND and _cond(nzcv, aux)) or (op == _CBZ and x[rn] == 0) \
                        or (op == _CBNZ and x[rn] != 0):
                    pc = (pc + imm) & MASK64
                    page_end = _NO_PAGE
                elif op == _BL:
                    x[30] = pc + INSTRUCTION_SIZE
                    pc = (pc + imm) & MASK64
                    page_end = _NO_PAGE
                elif op == _RET or op == _BR:
                    pc = x[rn]
                    page_end = _NO_PAGE
                else:
                    pc += INSTRUCTION_SIZE
            elif op == _LDR or op == _STR:
                size_log2 = aux & 3
                ipa = (x[rn] + imm) & MASK64
                if ipa & ((1 << size_log2) - 1):
                    state.pc, state.nzcv = pc, nzcv
                    state.take_exception((EC_DABT_CUR << 26) | IL | (ESR_WNR if op == _STR else 0) | DFSC_ALIGNMENT,
                                         ipa)
                    bus.exception_taken()
                    pc, page_end = state.pc, _NO_PAGE
                    continue
                write = op == _STR
                cache = write_pages if write else read_pages
                data_page = ipa & _PAGE_MASK
                data = cache.get(data_page)
                if data is None:
                    try:
                        data = cache[data_page] = bus.translate(data_page, write, False)
                    except MemoryFault as fault:
                        state.pc, state.nzcv = pc, nzcv
                        return Event(ABORT, executed - 1, fault=Fault(ipa, write, size_log2, rd, False, fault.reason,
                                                                      getattr(fault, "level", 0)))
                if write:
                    _SIZES[size_log2].pack_into(memory, data + (ipa & 0xFFF), x[rd] & _SIZE_MASKS[size_log2])
                else:
                    value = _SIZES[size_log2].unpack_from(memory, data + (ipa & 0xFFF))[0]
                    if rd != ZR:
                        x[rd] = value
                pc += INSTRUCTION_SIZE
            elif op == _SMC or op == _HVC or op == _WFI or op == _WFE:
                state.pc, state.nzcv = pc, nzcv
                # imm positionally: a keyword argument costs the call about a third more.
                return Event(_STOPS[op], executed, imm if op == _SMC or op == _HVC else 0)
            elif op == _ERET:
                pc = state.sysregs[_ELR]
                page_end = _NO_PAGE
            elif op == _MRS and aux <= _MPIDR:
                if rd != ZR:
                    x[rd] = state.sysregs[aux]
                pc += INSTRUCTION_SIZE
            elif op == _MSR and aux in _MSR_WRITABLE:
                state.sysregs[aux] = x[rn] & _VBAR_MASK if aux == _VBAR else x[rn]
                pc += INSTRUCTION_SIZE
            elif op == _LDP or op == _STP:
                # Tested after every opcode of the hot paths, so they pay nothing for pairs.
                write = op == _STP
                state.pc, state.nzcv = pc, nzcv
                done = _pair(state, memory, bus.translate, write_pages if write else read_pages, write, rd, rn, rm, imm)
                if done is None:
                    pc += INSTRUCTION_SIZE
                elif done is True:                  # an alignment fault, taken in the realm
                    bus.exception_taken()
                    pc, page_end = state.pc, _NO_PAGE
                else:
                    return Event(ABORT, executed - 1, fault=done)
            else:
                state.pc, state.nzcv = pc, nzcv
                state.take_exception((EC_UNKNOWN << 26) | IL)
                bus.exception_taken()
                pc, page_end = state.pc, _NO_PAGE
        state.pc, state.nzcv = pc, nzcv
        return Event(SLICE, executed)
    finally:
        words.release()
