"""The realm guest ISA: opcodes, registers and the 64-bit instruction encoding.

Every instruction is one little-endian 64-bit word (docs/guest-isa.md):

    bits [7:0]    opcode
    bits [12:8]   rd   (destination, or the register stored; the first register of a pair)
    bits [17:13]  rn   (first source, or the base register of a load/store)
    bits [22:18]  rm   (second source; the second register of a pair)
    bits [31:24]  aux  (condition of b.cond, log2 size of a load/store, shift/16 of movk,
                        system register number of mrs/msr)
    bits [63:32]  imm  (signed 32-bit immediate; byte offset of a branch from the branch itself)

Registers x0..x30 are general purpose; register number 31 reads as zero and ignores writes
(xzr). x30 is the link register of bl/ret. Flags N, Z, C, V live in PSTATE bits [31:28] as on
AArch64. System registers: vbar, elr, esr, far, mpidr (read only).

This module owns the encoding. It must not execute anything.
"""

from __future__ import annotations

import enum
from typing import Final

INSTRUCTION_SIZE: Final = 8
ZR: Final = 31
LR: Final = 30


class Op(enum.IntEnum):
    NOP = 0x00
    MOVI = 0x01     # rd = sign_extend(imm)
    MOVK = 0x02     # rd[16*aux+15 : 16*aux] = imm & 0xFFFF
    MOV = 0x03      # rd = rn
    ADD = 0x10
    ADDI = 0x11
    SUB = 0x12
    SUBI = 0x13
    AND = 0x14
    ANDI = 0x15
    ORR = 0x16
    ORRI = 0x17
    EOR = 0x18
    EORI = 0x19
    LSLI = 0x1A
    LSRI = 0x1B
    MUL = 0x1C
    CMP = 0x20      # flags of rn - rm
    CMPI = 0x21     # flags of rn - imm
    B = 0x30
    BCOND = 0x31
    CBZ = 0x32
    CBNZ = 0x33
    BL = 0x34
    RET = 0x35
    BR = 0x36
    LDR = 0x40      # rd = zero_extend(mem[rn + imm], 1 << aux bytes)
    STR = 0x41      # mem[rn + imm] = rd, 1 << aux bytes
    LDP = 0x42      # rd = mem[rn + imm], rm = mem[rn + imm + 8] (8 bytes each; aux 0; rd != rm)
    STP = 0x43      # mem[rn + imm] = rd, mem[rn + imm + 8] = rm (8 bytes each; aux 0)
    SMC = 0x50
    HVC = 0x51
    WFI = 0x52
    WFE = 0x53
    ERET = 0x54
    MRS = 0x55
    MSR = 0x56
    UDF = 0x57


class Cond(enum.IntEnum):
    EQ = 0
    NE = 1
    HS = 2
    LO = 3
    MI = 4
    PL = 5
    HI = 8
    LS = 9
    GE = 10
    LT = 11
    GT = 12
    LE = 13
    AL = 14


class SysReg(enum.IntEnum):
    VBAR = 0
    ELR = 1
    ESR = 2
    FAR = 3
    MPIDR = 4


SYSREG_WRITABLE: Final = frozenset({SysReg.VBAR, SysReg.ELR, SysReg.ESR, SysReg.FAR})
SYNC_VECTOR_OFFSET: Final = 0x200
"""A synchronous exception (injected SEA, undefined instruction) enters at vbar + 0x200, as
AArch64's 'current EL with SP_ELx, synchronous' vector."""


def encode(op: int, rd: int = 0, rn: int = 0, rm: int = 0, aux: int = 0, imm: int = 0) -> int:
    """One instruction word; imm must fit a signed 32-bit value."""
    if not -(1 << 31) <= imm < (1 << 31):
        raise ValueError(f"immediate {imm} does not fit 32 signed bits")
    if not (0 <= op < 256 and 0 <= aux < 256 and all(0 <= r < 32 for r in (rd, rn, rm))):
        raise ValueError(f"op {op}, aux {aux} and registers {rd}, {rn}, {rm} must fit their fields "
                         "(8, 8 and 5 bits)")
    return (op | (rd << 8) | (rn << 13) | (rm << 18) | (aux << 24)) | ((imm & 0xFFFF_FFFF) << 32)


def decode(word: int) -> tuple[int, int, int, int, int, int]:
    """(op, rd, rn, rm, aux, imm) of an instruction word; imm is sign-extended."""
    imm = word >> 32
    if imm & 0x8000_0000:
        imm -= 1 << 32
    return word & 0xFF, (word >> 8) & 31, (word >> 13) & 31, (word >> 18) & 31, (word >> 24) & 0xFF, imm
