"""The realm guest interpreter: executes guest instructions until something needs the RMM.

It runs on a GuestState (registers, PC, flags, system registers) that the RMM loads from the REC
granule at entry and stores back at exit, and reaches memory only through a Bus that translates
IPAs through the realm's stage 2 (so the RMM decides what a fault is). ``run`` returns an Event:

    SMC    the guest executed smc (PC still at it; the RMM advances it once handled)
    HVC    the guest executed hvc (the RMM injects an undefined instruction exception)
    WFI    the guest executed wfi / wfe (PC still at it)
    WFE
    ABORT  a load, store or fetch did not translate (Event.fault has the details; PC at it)
    SLICE  the time slice of ``budget`` instructions ran out (PC at the next instruction)

What a guest does to itself never leaves the interpreter: an undefined instruction (udf, or an
unknown opcode), a misaligned access or PC take a synchronous exception to vbar + 0x200 with
ELR/ESR/FAR set, as an EL1 exception would on hardware.

This module owns guest execution. It must not know realms, RTTs or the RMM.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Protocol

from rmm_mp.guest.isa import INSTRUCTION_SIZE, SYNC_VECTOR_OFFSET, ZR, Op, SysReg, decode

MASK64: Final = (1 << 64) - 1
EC_UNKNOWN: Final = 0x00
EC_DABT_CUR: Final = 0x25
EC_PC_ALIGN: Final = 0x22
EC_SP_ALIGN_DABT: Final = 0x25
DFSC_ALIGNMENT: Final = 0x21
IL: Final = 1 << 25

SMC, HVC, WFI, WFE, ABORT, SLICE = "SMC", "HVC", "WFI", "WFE", "ABORT", "SLICE"
_WORD = struct.Struct("<Q")
_LOAD = {0: struct.Struct("<B"), 1: struct.Struct("<H"), 2: struct.Struct("<I"), 3: struct.Struct("<Q")}


class GuestState:
    """The architectural state of one vCPU while it runs (x[31] is the zero register)."""

    __slots__ = ("x", "pc", "nzcv", "sysregs")

    def __init__(self, gprs: "tuple[int, ...] | list[int]", pc: int, pstate: int,
                 sysregs: "tuple[int, ...] | list[int]") -> None:
        self.x = list(gprs[:31]) + [0] * (32 - min(31, len(gprs)))
        self.pc = pc
        self.nzcv = (pstate >> 28) & 0xF
        self.sysregs = list(sysregs) + [0] * (5 - len(sysregs))

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


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    executed: int
    imm: int = 0
    fault: Fault | None = None


class Bus(Protocol):
    """Stage-2 translation for the interpreter: IPA page -> offset of its page in ``memory``.

    The interpreter caches translations per page and calls ``sync`` before every instruction:
    it returns True when a TLB invalidation happened since the last call, and the caches are
    dropped. ``sync`` is also where the Bus tells invalidating CPUs that this CPU has passed an
    instruction boundary (their TLBI completes only then, as a DSB after TLBI would).
    """

    memory: memoryview

    def translate(self, page: int, write: bool, fetch: bool) -> int:
        """Byte offset of IPA ``page`` (4 KiB aligned) in ``memory``; MemoryFault if it does not
        translate for this kind of access."""
        ...

    def sync(self) -> bool:
        ...


_decoded: dict[int, tuple[int, int, int, int, int, int]] = {}
_DECODE_CACHE_MAX = 1 << 16
_KNOWN = frozenset(int(op) for op in Op)
_ALU_OPS = frozenset(range(Op.ADD, Op.MUL + 1))
_BRANCH_OPS = frozenset(range(Op.B, Op.BR + 1))


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


def run(state: GuestState, bus: Bus, budget: int) -> Event:
    """Execute at most ``budget`` instructions; return the event that stopped execution."""
    x = state.x
    memory = bus.memory
    translate = bus.translate
    sync = bus.sync
    decoded = _decoded
    fetch_pages: dict[int, int] = {}
    read_pages: dict[int, int] = {}
    write_pages: dict[int, int] = {}
    executed = 0
    while executed < budget:
        if sync():
            fetch_pages.clear()
            read_pages.clear()
            write_pages.clear()
        pc = state.pc
        if pc & (INSTRUCTION_SIZE - 1):
            state.take_exception((EC_PC_ALIGN << 26) | IL, pc)
            executed += 1
            continue
        page = pc & ~0xFFF
        base = fetch_pages.get(page)
        if base is None:
            try:
                base = fetch_pages[page] = translate(page, False, True)
            except MemoryFault as fault:
                return Event(ABORT, executed, fault=Fault(pc, False, 3, 0, True, fault.reason,
                                                          getattr(fault, "level", 0)))
        word = _WORD.unpack_from(memory, base + (pc & 0xFFF))[0]
        ins = decoded.get(word)
        if ins is None:
            if len(decoded) >= _DECODE_CACHE_MAX:
                decoded.clear()
            ins = decode(word)
            if ins[0] not in _KNOWN:  # an undefined opcode decodes as udf
                ins = (Op.UDF, 0, 0, 0, 0, 0)
            decoded[word] = ins
        op, rd, rn, rm, aux, imm = ins
        executed += 1
        next_pc = pc + INSTRUCTION_SIZE
        if op <= Op.MOV:
            if op == Op.MOVI:
                value = imm & MASK64
            elif op == Op.MOVK:
                shift = 16 * (aux & 3)
                value = (x[rd] & ~(0xFFFF << shift) & MASK64) | ((imm & 0xFFFF) << shift)
            elif op == Op.MOV:
                value = x[rn]
            else:
                state.pc = next_pc
                continue
            if rd != ZR:
                x[rd] = value
        elif op in _ALU_OPS:
            b = x[rm] if op & 1 == 0 else imm & MASK64
            a = x[rn]
            if op <= Op.ADDI:
                value = (a + b) & MASK64
            elif op <= Op.SUBI:
                value = (a - b) & MASK64
            elif op <= Op.ANDI:
                value = a & b
            elif op <= Op.ORRI:
                value = a | b
            elif op <= Op.EORI:
                value = a ^ b
            elif op == Op.LSLI:
                value = (a << (imm & 63)) & MASK64
            elif op == Op.LSRI:
                value = a >> (imm & 63)
            else:
                value = (a * x[rm]) & MASK64
            if rd != ZR:
                x[rd] = value
        elif op == Op.CMP or op == Op.CMPI:
            state.nzcv = _flags(x[rn], x[rm] if op == Op.CMP else imm & MASK64)
        elif op in _BRANCH_OPS:
            if op == Op.B or (op == Op.BCOND and _cond(state.nzcv, aux)) \
                    or (op == Op.CBZ and x[rn] == 0) or (op == Op.CBNZ and x[rn] != 0):
                next_pc = (pc + imm) & MASK64
            elif op == Op.BL:
                x[30] = next_pc
                next_pc = (pc + imm) & MASK64
            elif op == Op.RET or op == Op.BR:
                next_pc = x[rn]
        elif op == Op.LDR or op == Op.STR:
            size_log2 = aux & 3
            ipa = (x[rn] + imm) & MASK64
            if ipa & ((1 << size_log2) - 1):
                state.take_exception((EC_DABT_CUR << 26) | IL | DFSC_ALIGNMENT, ipa)
                continue
            write = op == Op.STR
            cache = write_pages if write else read_pages
            page = ipa & ~0xFFF
            base = cache.get(page)
            if base is None:
                try:
                    base = cache[page] = translate(page, write, False)
                except MemoryFault as fault:
                    return Event(ABORT, executed - 1, fault=Fault(ipa, write, size_log2, rd, False, fault.reason,
                                                                  getattr(fault, "level", 0)))
            if write:
                _LOAD[size_log2].pack_into(memory, base + (ipa & 0xFFF), x[rd] & ((1 << (8 << size_log2)) - 1))
            else:
                value = _LOAD[size_log2].unpack_from(memory, base + (ipa & 0xFFF))[0]
                if rd != ZR:
                    x[rd] = value
        elif op == Op.SMC:
            return Event(SMC, executed, imm=imm)
        elif op == Op.HVC:
            return Event(HVC, executed, imm=imm)
        elif op == Op.WFI:
            return Event(WFI, executed)
        elif op == Op.WFE:
            return Event(WFE, executed)
        elif op == Op.ERET:
            next_pc = state.sysregs[SysReg.ELR]
        elif op == Op.MRS and aux <= SysReg.MPIDR:
            if rd != ZR:
                x[rd] = state.sysregs[aux]
        elif op == Op.MSR and aux in (SysReg.VBAR, SysReg.ELR, SysReg.ESR, SysReg.FAR):
            state.sysregs[aux] = x[rn]
        else:
            state.take_exception((EC_UNKNOWN << 26) | IL)
            continue
        state.pc = next_pc
    return Event(SLICE, executed)
