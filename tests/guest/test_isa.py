"""The guest instruction encoding (rmm_mp/guest/isa.py; docs/guest-isa.md).

One little-endian 64-bit word per instruction: opcode [7:0], rd [12:8], rn [17:13], rm [22:18],
aux [31:24], imm [63:32] (signed 32 bits). The layout below is written out from the isa.py
module docstring, not taken from encode(), and hypothesis checks that decode() inverts encode()
over every field's whole range.

Hypothesis runs derandomized with no example database (tests/README.md: fixed seeds).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.guest.isa import INSTRUCTION_SIZE, LR, SYSREG_WRITABLE, ZR, Cond, Op, SysReg, decode, encode

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=300)

IMM_MIN, IMM_MAX = -(1 << 31), (1 << 31) - 1
ops = st.integers(0, 0xFF)
regs = st.integers(0, 31)
auxes = st.integers(0, 0xFF)
imms = st.integers(IMM_MIN, IMM_MAX)


def _by_hand(op: int, rd: int, rn: int, rm: int, aux: int, imm: int) -> int:
    """The word as the isa.py docstring lays it out, built with plain arithmetic."""
    return (op + rd * 2**8 + rn * 2**13 + rm * 2**18 + aux * 2**24 + (imm % 2**32) * 2**32)


@FIXED
@given(ops, regs, regs, regs, auxes, imms)
def test_decode_inverts_encode(op: int, rd: int, rn: int, rm: int, aux: int, imm: int) -> None:
    """For every opcode, register number 0..31, aux 0..255 and signed 32-bit imm, decode(encode())
    gives the fields back (imm sign-extended), and the word is the documented layout in 64 bits."""
    word = encode(op, rd, rn, rm, aux, imm)
    assert 0 <= word < 1 << 64
    assert word == _by_hand(op, rd, rn, rm, aux, imm)
    assert decode(word) == (op, rd, rn, rm, aux, imm)


@FIXED
@given(st.integers(0, (1 << 64) - 1))
def test_encode_inverts_decode_outside_bit_23(word: int) -> None:
    """Every 64-bit word decodes to fields that encode back to the same word, except bit 23 (the
    one bit no field covers), which decoding drops."""
    assert encode(*decode(word)) == word & ~(1 << 23)


@pytest.mark.parametrize("imm", [IMM_MIN, -1, 0, 1, IMM_MAX])
def test_immediate_limits_round_trip(imm: int) -> None:
    """The extreme immediates survive the trip: -2^31 and 2^31-1 are the limits of the field."""
    assert decode(encode(Op.MOVI, 1, imm=imm))[5] == imm


def test_literal_word() -> None:
    """str x1, [x2, #-8] with rm=3 and aux=3 (8 bytes) is the word written out by hand."""
    assert encode(Op.STR, rd=1, rn=2, rm=3, aux=3, imm=-8) == 0xFFFF_FFF8_030C_4141
    assert decode(0xFFFF_FFF8_030C_4141) == (0x41, 1, 2, 3, 3, -8)


def test_pair_words() -> None:
    """ldp x1, x2, [x3, #-16] and stp x1, x2, [x3, #-16]: opcodes 0x42 and 0x43, the first register
    in rd, the second in rm, the base in rn, aux 0; the words written out by hand."""
    assert (Op.LDP, Op.STP) == (0x42, 0x43)
    assert encode(Op.LDP, rd=1, rn=3, rm=2, imm=-16) == 0xFFFF_FFF0_0008_6142
    assert encode(Op.STP, rd=1, rn=3, rm=2, imm=-16) == 0xFFFF_FFF0_0008_6143
    assert decode(0xFFFF_FFF0_0008_6142) == (0x42, 1, 3, 2, 0, -16)


@pytest.mark.parametrize("imm", [1 << 31, -(1 << 31) - 1, 1 << 32, -(1 << 40), (1 << 64) - 1])
def test_encode_refuses_out_of_range_immediate(imm: int) -> None:
    """An immediate outside the signed 32-bit range is a ValueError that names the value (it is
    never truncated into a different instruction)."""
    with pytest.raises(ValueError, match=str(imm)):
        encode(Op.MOVI, 0, imm=imm)


@FIXED
@given(st.one_of(st.integers(IMM_MAX + 1, 1 << 70), st.integers(-(1 << 70), IMM_MIN - 1)))
def test_encode_refuses_every_out_of_range_immediate(imm: int) -> None:
    """Property: every immediate beyond the signed 32-bit range is refused."""
    with pytest.raises(ValueError):
        encode(Op.ADDI, 1, 2, imm=imm)


def test_architectural_constants() -> None:
    """8-byte instructions, xzr is register 31 and lr is x30; conditions use AArch64's condition
    codes; mpidr is the only read-only system register."""
    assert INSTRUCTION_SIZE == 8
    assert (ZR, LR) == (31, 30)
    assert {c.name: c.value for c in Cond} == {
        "EQ": 0, "NE": 1, "HS": 2, "LO": 3, "MI": 4, "PL": 5, "HI": 8, "LS": 9,
        "GE": 10, "LT": 11, "GT": 12, "LE": 13, "AL": 14}
    assert SYSREG_WRITABLE == set(SysReg) - {SysReg.MPIDR}


def test_opcodes_are_distinct_bytes() -> None:
    """Every opcode fits the 8-bit field and no two instructions share one."""
    values = [op.value for op in Op]
    assert len(values) == len(set(values))
    assert all(0 <= v <= 0xFF for v in values)
