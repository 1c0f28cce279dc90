"""The guest interpreter (rmm_mp/guest/interpreter.py; docs/guest-isa.md).

Programs run on an in-memory Bus: stage 2 is the identity over a bytearray (IPA == offset),
anything outside it raises MemoryFault, and sync() returns False unless a test asks for an
invalidation. Each instruction's result is compared with a value computed here from the ISA
document (flags and conditions from the AArch64 NZCV rules), each event with what the RMM relies
on (kind, imm, PC, Fault fields), and in-realm exceptions with the AArch64 ESR encodings. A
hypothesis property runs random straight-line ALU programs against a small reference evaluator
written in this file.

Hypothesis runs derandomized with no example database (tests/README.md: fixed seeds).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.guest.assembler import assemble
from rmm_mp.guest.interpreter import (
    ABORT, HVC, PAIR_SIZE_LOG2, SLICE, SMC, WFE, WFI, Event, Fault, GuestState, MemoryFault, run,
)
from rmm_mp.guest.isa import Op, SysReg, decode, encode

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=150)
MASK64 = (1 << 64) - 1
PAGE = 0x1000
RAM = 0x6000
DATA = 0x2000                 # a data page
DATA2 = 0x4000                # another data page
VBAR = 0x3000
VECTOR = VBAR + 0x200         # docs/guest-isa.md: exceptions enter at vbar + 0x200
OUTSIDE = 0x10000             # beyond RAM: does not translate
MPIDR = 0x8000_0102
IL = 1 << 25
ESR_UNDEFINED = 0x00 << 26 | IL               # EC 0x00 unknown reason
ESR_PC_ALIGN = 0x22 << 26 | IL                # EC 0x22 PC alignment fault
ESR_DATA_ALIGN = 0x25 << 26 | IL | 0x21       # EC 0x25 data abort, same EL; DFSC 0x21 alignment
ESR_WNR = 1 << 6                              # ISS WnR: the aborted access was a write
COND_NAMES = ["eq", "ne", "hs", "lo", "mi", "pl", "hi", "ls", "ge", "lt", "gt", "le"]


class RamBus:
    """Identity stage 2 over RAM bytes; records every translate() and counts sync() calls.

    sync() returns True on the call numbers (1-based) in ``invalidate_on``, or on every call when
    ``always_invalidate``; pages in ``absent`` fault as if unmapped.
    """

    def __init__(self, size: int = RAM) -> None:
        self.ram = bytearray(size)
        self.memory = memoryview(self.ram)
        self.translations: list[tuple[int, bool, bool]] = []
        self.syncs = 0
        self.invalidate_on: set[int] = set()
        self.always_invalidate = False
        self.absent: set[int] = set()
        self.exceptions = 0
        self.fetch_pages: dict[int, int] = {}      # the interpreter's translation caches (Bus)
        self.read_pages: dict[int, int] = {}
        self.write_pages: dict[int, int] = {}

    def translate(self, page: int, write: bool, fetch: bool) -> int:
        self.translations.append((page, write, fetch))
        assert page % PAGE == 0, "the interpreter asks for pages"
        offset = self.offset(page)
        if page in self.absent or not 0 <= offset <= len(self.ram) - PAGE:
            raise MemoryFault(page, "outside RAM")
        return offset

    def offset(self, page: int) -> int:
        """Where IPA `page` lives in RAM: the identity here."""
        return page

    def sync(self) -> bool:
        self.syncs += 1
        return self.always_invalidate or self.syncs in self.invalidate_on

    def exception_taken(self) -> None:
        self.exceptions += 1


def boot(text: str, regs: dict[int, int] | None = None, pstate: int = 0,
         bus: RamBus | None = None) -> tuple[GuestState, RamBus]:
    """A vCPU at PC 0 with `text` assembled at IPA 0, vbar = VBAR and mpidr = MPIDR."""
    bus = bus or RamBus()
    image = assemble(text, base=0)
    bus.ram[:len(image)] = image
    gprs = [0] * 31
    for reg, value in (regs or {}).items():
        gprs[reg] = value
    return GuestState(gprs, 0, pstate, [VBAR, 0, 0, 0, MPIDR]), bus


def execute(text: str, regs: dict[int, int] | None = None, budget: int = 1000, pstate: int = 0,
            bus: RamBus | None = None) -> tuple[GuestState, Event, RamBus]:
    state, bus = boot(text, regs, pstate, bus)
    return state, run(state, bus, budget), bus


def until_smc(text: str, regs: dict[int, int] | None = None, **kw: object) -> GuestState:
    """Run `text` (which ends in smc) and return the state at the SMC."""
    state, event, _ = execute(text, regs, **kw)  # type: ignore[arg-type]
    assert event.kind == SMC, event
    return state


def signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def nzcv_of(a: int, b: int) -> tuple[bool, bool, bool, bool]:
    """N, Z, C, V of the 64-bit subtraction a - b, by the AArch64 rules: C is 'no borrow'
    (a >= b unsigned), V is 'the signed difference does not fit 64 bits'."""
    result = (a - b) % (1 << 64)
    difference = signed(a) - signed(b)
    return result >= 1 << 63, result == 0, a >= b, not -(1 << 63) <= difference < 1 << 63


def holds(cond: str, n: bool, z: bool, c: bool, v: bool) -> bool:
    """The AArch64 condition table."""
    return {"eq": z, "ne": not z, "hs": c, "lo": not c, "mi": n, "pl": not n,
            "hi": c and not z, "ls": not c or z, "ge": n == v, "lt": n != v,
            "gt": not z and n == v, "le": z or n != v}[cond]


def pack_nzcv(n: bool, z: bool, c: bool, v: bool) -> int:
    return n << 3 | z << 2 | c << 1 | v


# -- data processing --------------------------------------------------------------------------

def test_add_and_sub_wrap_at_64_bits() -> None:
    """add and sub wrap modulo 2^64, with a register or a sign-extended immediate."""
    s = until_smc("""
        add x3, x1, x2
        sub x4, xzr, x2
        add x5, x1, #1
        sub x6, x2, #2
        add x7, x2, #-1
        sub x8, x1, #-1
        smc #0
    """, {1: MASK64, 2: 1})
    assert s.x[3:9] == [0, MASK64, 0, MASK64, 0, 0]


def test_logic_with_registers_and_sign_extended_immediates() -> None:
    """and/orr/eor of two registers, and of a register and an immediate sign-extended to 64 bits."""
    a, b = 0xF0F0_1234_5678_0F0F, 0x0FF0_FFFF_0000_1111
    s = until_smc("""
        and x3, x1, x2
        orr x4, x1, x2
        eor x5, x1, x2
        and x6, x1, #-16
        orr x7, x1, #-1
        eor x8, x1, #-1
        and x9, x1, #0xff
        smc #0
    """, {1: a, 2: b})
    assert s.x[3:10] == [a & b, a | b, a ^ b, a & ~0xF & MASK64, MASK64, ~a & MASK64, 0x0F]


@pytest.mark.parametrize("shift", [0, 1, 4, 31, 32, 63])
def test_shifts(shift: int) -> None:
    """lsl drops the bits shifted out of 64; lsr shifts in zeros (a logical shift)."""
    value = 0x8123_4567_89AB_CDEF
    s = until_smc(f"lsl x2, x1, #{shift}\nlsr x3, x1, #{shift}\nsmc #0", {1: value})
    assert s.x[2] == (value << shift) & MASK64
    assert s.x[3] == value >> shift


@pytest.mark.parametrize("imm, shift", [(64, 0), (65, 1), (127, 63), (-1, 63), (-64, 0), ((1 << 31) - 1, 63),
                                        (-(1 << 31), 0)])
def test_a_hand_built_shift_outside_0_to_63_shifts_by_it_modulo_64(imm: int, shift: int) -> None:
    """docs/guest-isa.md: lsl #/lsr # words shift by imm modulo 64. The assembler refuses a
    shift outside 0..63, so such a word is built by hand; it is no undefined instruction."""
    value = 0x8123_4567_89AB_CDEF
    state, bus = boot("nop\nnop\nsmc #0")
    struct.pack_into("<QQ", bus.ram, 0, encode(Op.LSLI, 2, 1, imm=imm), encode(Op.LSRI, 3, 1, imm=imm))
    state.x[1] = value
    assert run(state, bus, 10).kind == SMC
    assert (state.x[2], state.x[3]) == ((value << shift) & MASK64, value >> shift)


UNUSED_FIELDS = [
    ("add x3, x1, #5", {"rm": 9, "aux": 7}), ("add x3, x1, x2", {"aux": 0xFF}),
    ("mov x3, #-2", {"rn": 4, "rm": 5}),
    ("cmp x1, x2", {"rd": 3, "aux": 1}), ("ldr x3, [x1, #8]", {"rm": 2}), ("mrs x3, mpidr", {"rn": 1, "imm": 99}),
    ("movk x3, #7, lsl #16", {"rn": 1, "rm": 2}), ("lsl x3, x1, #4", {"rm": 2, "aux": 3}),
]


@pytest.mark.parametrize("text, fields", UNUSED_FIELDS, ids=[u[0] for u in UNUSED_FIELDS])
@pytest.mark.parametrize("bit23", [False, True])
def test_fields_an_instruction_does_not_use_are_ignored(text: str, fields: dict[str, int], bit23: bool) -> None:
    """docs/guest-isa.md: a field an instruction does not use, and bit 23, are ignored when it
    runs: the word with them set does what the assembler's word (zeros there) does."""
    def final(word: int) -> tuple[list[int], int, int]:
        state, bus = boot("nop\nsmc #0")
        struct.pack_into("<Q", bus.ram, 0, word)
        struct.pack_into("<Q", bus.ram, DATA + 8, 0x1234)
        state.x[1:4] = [DATA, 5, 0]
        assert run(state, bus, 10).kind == SMC
        return state.x, state.nzcv, state.pc
    clean = struct.unpack('<Q', assemble(text))[0]
    op, rd, rn, rm, aux, imm = decode(clean)
    noisy = encode(**{"op": op, "rd": rd, "rn": rn, "rm": rm, "aux": aux, "imm": imm, **fields}) | (bit23 << 23)
    assert noisy != clean
    assert final(noisy) == final(clean)


@pytest.mark.parametrize("a, b", [(3, 5), (MASK64, MASK64), (1 << 63, 2), (0x1_0000_0001, 0xFFFF_FFFF),
                                  (0x1234_5678_9ABC_DEF0, 0x0FED_CBA9_8765_4321), (0, MASK64)])
def test_mul_keeps_the_low_64_bits(a: int, b: int) -> None:
    """mul is the low 64 bits of the (unsigned) product."""
    assert until_smc("mul x3, x1, x2\nsmc #0", {1: a, 2: b}).x[3] == (a * b) & MASK64


def test_mov_immediate_sign_extends_and_mov_register_copies() -> None:
    """mov #imm sign-extends the 32-bit immediate; mov xd, xn copies a register."""
    s = until_smc("""
        mov x1, #-1
        mov x2, #0x7fffffff
        mov x3, #-0x80000000
        mov x4, x9
        mov x5, =0xfedcba9876543210
        smc #0
    """, {1: 5, 9: 0xDEAD_BEEF_0000_0001})
    assert s.x[1:6] == [MASK64, 0x7FFF_FFFF, 0xFFFF_FFFF_8000_0000, 0xDEAD_BEEF_0000_0001, 0xFEDC_BA98_7654_3210]


@pytest.mark.parametrize("lane", [0, 1, 2, 3])
def test_movk_replaces_one_lane(lane: int) -> None:
    """movk #imm16, lsl #16*lane replaces bits [16*lane+15:16*lane] and keeps the others."""
    before = 0x1111_2222_3333_4444
    s = until_smc(f"movk x1, #0xabcd, lsl #{16 * lane}\nsmc #0", {1: before})
    kept = before & ~(0xFFFF << 16 * lane)
    assert s.x[1] == kept | 0xABCD << 16 * lane


@pytest.mark.parametrize("lane", [0, 1, 2, 3])
def test_movk_of_an_all_ones_or_all_zeros_lane_touches_that_lane_only(lane: int) -> None:
    """movk #0 into an all-ones register clears its lane and nothing else; movk #0xffff into a
    zero register sets its lane only; a movk of the lane's own bits changes nothing."""
    shift = 16 * lane
    s = until_smc(f"""
        movk x1, #0, lsl #{shift}
        movk x2, #0xffff, lsl #{shift}
        movk x3, #0xffff, lsl #{shift}
        movk x4, #0, lsl #{shift}
        smc #0
    """, {1: MASK64, 2: 0, 3: MASK64, 4: 0})
    assert s.x[1:5] == [MASK64 ^ (0xFFFF << shift), 0xFFFF << shift, MASK64, 0]


def _with_data(addr: int, data: bytes) -> RamBus:
    bus = RamBus()
    bus.ram[addr:addr + len(data)] = data
    return bus


def test_xzr_reads_zero_and_ignores_writes() -> None:
    """Register 31 reads as 0 as a source and a base, and every kind of write to it is dropped."""
    bus = _with_data(DATA + 8, b"\xff" * 8)
    s = until_smc(f"""
        mov x1, #5
        add xzr, x1, x1
        mov xzr, #7
        movk xzr, #1
        ldr xzr, [x3]
        mrs xzr, vbar
        mov x2, xzr
        add x4, xzr, #3
        str x1, [xzr, #{DATA}]
        smc #0
    """, {2: 9, 3: DATA + 8}, bus=bus)
    assert s.x[31] == 0
    assert (s.x[2], s.x[4]) == (0, 3)
    assert bus.ram[DATA:DATA + 8] == struct.pack("<Q", 5)


def test_store_of_xzr_writes_zeros() -> None:
    """str xzr stores zero bytes."""
    bus = _with_data(DATA, b"\xff" * 8)
    until_smc("str xzr, [x1]\nsmc #0", {1: DATA}, bus=bus)
    assert bus.ram[DATA:DATA + 8] == bytes(8)


# -- flags and conditional branches -----------------------------------------------------------

def _all_conditions(compare: str) -> str:
    """`compare`, then one b.<cond> per condition; x0 gets bit i set when condition i held."""
    lines = [compare, "mov x0, #0"]
    for i, cond in enumerate(COND_NAMES):
        lines += [f"b.{cond} t{i}", f"b n{i}", f"t{i}: orr x0, x0, #{1 << i}", f"n{i}:"]
    return "\n".join(lines + ["smc #0"])


def _expected_mask(a: int, b: int) -> int:
    flags = nzcv_of(a, b)
    return sum(1 << i for i, cond in enumerate(COND_NAMES) if holds(cond, *flags))


EDGES = [0, 1, 2, 0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0x8000_0000_0000_0001, MASK64, MASK64 - 1, 42]


@pytest.mark.parametrize("a", EDGES)
@pytest.mark.parametrize("b", EDGES)
def test_cmp_flags_and_every_condition(a: int, b: int) -> None:
    """cmp xn, xm sets NZCV of xn - xm; each b.cond is taken exactly when the AArch64 condition
    holds for those flags (and the orr between branches does not touch the flags)."""
    s = until_smc(_all_conditions("cmp x1, x2"), {1: a, 2: b})
    assert s.nzcv == pack_nzcv(*nzcv_of(a, b))
    assert s.x[0] == _expected_mask(a, b)


@FIXED
@given(st.integers(0, MASK64) | st.sampled_from(EDGES), st.integers(0, MASK64) | st.sampled_from(EDGES))
def test_cmp_conditions_property(a: int, b: int) -> None:
    """Property: for any two 64-bit values, the flags and all twelve conditions match the reference."""
    s = until_smc(_all_conditions("cmp x1, x2"), {1: a, 2: b})
    assert (s.nzcv, s.x[0]) == (pack_nzcv(*nzcv_of(a, b)), _expected_mask(a, b))


@pytest.mark.parametrize("a, imm", [(0, 0), (0, 1), (5, -1), (MASK64, -1), (1 << 63, 1), (0x7FFF_FFFF_FFFF_FFFF, -1),
                                    (3, 0x7FFF_FFFF), (0, -0x8000_0000)])
def test_cmp_immediate_is_sign_extended(a: int, imm: int) -> None:
    """cmp xn, #imm compares with the immediate sign-extended to 64 bits."""
    b = imm & MASK64
    s = until_smc(_all_conditions(f"cmp x1, #{imm}"), {1: a})
    assert (s.nzcv, s.x[0]) == (pack_nzcv(*nzcv_of(a, b)), _expected_mask(a, b))


def test_flags_come_from_pstate() -> None:
    """GuestState takes NZCV from PSTATE bits [31:28]; a b.cond before any cmp uses them."""
    state = until_smc("b.eq yes\nmov x0, #1\nsmc #0\nyes: mov x0, #2\nsmc #1", pstate=0b0100 << 28)
    assert (state.nzcv, state.x[0]) == (0b0100, 2)
    state = until_smc("b.eq yes\nmov x0, #1\nsmc #0\nyes: mov x0, #2\nsmc #1", pstate=0b1011 << 28)
    assert (state.nzcv, state.x[0]) == (0b1011, 1)


@pytest.mark.parametrize("value", [0, 1, 1 << 63, MASK64])
def test_cbz_and_cbnz(value: int) -> None:
    """cbz branches iff the register is zero, cbnz iff it is not; neither touches the flags."""
    s = until_smc("""
        cbz x1, z
        orr x0, x0, #1
    z:  cbnz x1, nz
        orr x0, x0, #2
    nz: smc #0
    """, {1: value}, pstate=0b0110 << 28)
    assert s.x[0] == (2 if value == 0 else 1)
    assert s.nzcv == 0b0110


def test_bl_ret_br_and_backward_loop() -> None:
    """bl writes the return address (the next instruction) to lr and branches; ret returns to lr;
    br jumps to a register; a backward conditional loop runs its count."""
    s = until_smc("""
            bl f                // 0x00
            mov x2, lr          // 0x08
            adr x5, g           // 0x10
            br x5               // 0x28
            mov x3, #99         // skipped
    g:      mov x6, #4          // 0x38
    loop:   sub x6, x6, #1
            add x7, x7, #10
            cbnz x6, loop
            smc #1
    f:      mov x1, lr
            ret
    """)
    assert (s.x[1], s.x[2], s.x[3], s.x[6], s.x[7]) == (8, 8, 0, 0, 40)
    assert s.pc == 0x58


def test_branch_offsets_wrap_the_address_space() -> None:
    """A taken branch sets pc = branch address + offset (here backwards from a high address)."""
    bus = RamBus()
    struct.pack_into("<Q", bus.ram, DATA, encode(Op.B, imm=-DATA))
    state, bus = boot("smc #3", bus=bus)
    state.pc = DATA
    event = run(state, bus, 10)
    assert (event.kind, event.imm, state.pc) == (SMC, 3, 0)


# -- loads and stores -------------------------------------------------------------------------

LOADS = [("ldrb", 0, 0, 0xF1), ("ldrb", 7, 0, 0xF8), ("ldrh", 0, 1, 0xF2F1), ("ldrh", 6, 1, 0xF8F7),
         ("ldrw", 0, 2, 0xF4F3F2F1), ("ldrw", 4, 2, 0xF8F7F6F5), ("ldr", 0, 3, 0xF8F7F6F5F4F3F2F1)]


@pytest.mark.parametrize("name, offset, size_log2, value", LOADS)
def test_loads_zero_extend(name: str, offset: int, size_log2: int, value: int) -> None:
    """ldrb/ldrh/ldrw/ldr read 1/2/4/8 little-endian bytes and zero-extend them into the whole
    register (its old upper bits are gone), with [xn, #imm] addressing."""
    bus = _with_data(DATA, bytes(range(0xF1, 0xF9)))
    s = until_smc(f"{name} x2, [x1, #{offset}]\nsmc #0", {1: DATA, 2: MASK64}, bus=bus)
    assert s.x[2] == value


def test_load_with_negative_offset() -> None:
    """The address is xn + imm with the immediate sign-extended."""
    bus = _with_data(DATA, struct.pack("<Q", 0x0123_4567_89AB_CDEF))
    assert until_smc("ldr x2, [x1, #-8]\nsmc #0", {1: DATA + 8}, bus=bus).x[2] == 0x0123_4567_89AB_CDEF


@pytest.mark.parametrize("name, size", [("strb", 1), ("strh", 2), ("strw", 4), ("str", 8)])
def test_stores_write_only_their_size(name: str, size: int) -> None:
    """strb/strh/strw/str write the low 1/2/4/8 bytes of the register, little-endian, and no other byte."""
    value = 0x1122_3344_5566_7788
    bus = _with_data(DATA, b"\xaa" * 24)
    until_smc(f"{name} x1, [x2, #8]\nsmc #0", {1: value, 2: DATA}, bus=bus)
    assert bus.ram[DATA:DATA + 24] == b"\xaa" * 8 + value.to_bytes(8, "little")[:size] + b"\xaa" * (16 - size)


def test_store_then_load_round_trip() -> None:
    """What a store writes, a load of the same size reads back (the two share memory)."""
    s = until_smc("strw x1, [x2, #4]\nldrw x3, [x2, #4]\nldr x4, [x2]\nsmc #0",
                  {1: 0xAAAA_BBBB_CCCC_DDDD, 2: DATA})
    assert (s.x[3], s.x[4]) == (0xCCCC_DDDD, 0xCCCC_DDDD << 32)


def test_fetches_loads_and_stores_use_the_translated_offset() -> None:
    """The interpreter fetches, reads and writes at the offset translate() returns, not at the IPA."""

    class Remap(RamBus):
        def offset(self, page: int) -> int:
            return {OUTSIDE: DATA, OUTSIDE + PAGE: 0}.get(page, page)

    state, bus = boot("ldr x2, [x1, #8]\nstr x2, [x1, #16]\nsmc #5", {1: OUTSIDE}, bus=Remap())
    bus.ram[DATA + 8:DATA + 16] = struct.pack("<Q", 77)
    state.pc = OUTSIDE + PAGE
    event = run(state, bus, 10)
    assert (event.kind, event.imm, state.pc) == (SMC, 5, OUTSIDE + PAGE + 16)
    assert state.x[2] == 77
    assert bus.ram[DATA + 16:DATA + 24] == struct.pack("<Q", 77)
    assert bus.translations == [(OUTSIDE + PAGE, False, True), (OUTSIDE, False, False), (OUTSIDE, True, False)]


def test_straight_line_code_crosses_into_a_page_mapped_elsewhere() -> None:
    """Code whose two IPA pages lie in RAM out of order (the second below the first, neither at
    its IPA): falling through the page end, and branching back to the first page's last word
    and falling through again, every instruction is the word translate() put there. (The fetch
    finds a word from the page's translation, set at each sync point: a stale one would run
    the decoy words at the IPA's identity offsets or the first page's.)"""
    first, second = 0x1FF0, 0x2000      # IPA: the last two words of one page, the next page

    class Scatter(RamBus):
        def offset(self, page: int) -> int:
            return {first & ~0xFFF: 0x5000, second: 0x1000}.get(page, page)

    bus = Scatter()
    decoy = encode(Op.SMC, imm=99)
    for at in range(0, RAM, 8):
        struct.pack_into("<Q", bus.ram, at, decoy)
    code_a = [encode(Op.ADDI, rd=1, rn=1, imm=1), encode(Op.ADDI, rd=2, rn=2, imm=1)]  # at first, first + 8
    code_b = [encode(Op.ADDI, rd=3, rn=3, imm=1),
              encode(Op.CBZ, rn=4, imm=16),                     # x4 = 0 the first time: to the mov
              encode(Op.SMC, imm=5),
              encode(Op.MOVI, rd=4, imm=1),
              encode(Op.B, imm=(first + 8) - (second + 32))]   # back to the first page's last word
    for i, word in enumerate(code_a):
        struct.pack_into("<Q", bus.ram, 0x5000 + (first & 0xFFF) + 8 * i, word)
    for i, word in enumerate(code_b):
        struct.pack_into("<Q", bus.ram, 0x1000 + 8 * i, word)
    state = GuestState([0] * 31, first, 0, [VBAR, 0, 0, 0, MPIDR])
    event = run(state, bus, 100)
    assert (event.kind, event.imm, state.pc) == (SMC, 5, second + 16)
    assert state.x[1:5] == [1, 2, 2, 1]
    assert bus.translations == [(first & ~0xFFF, False, True), (second, False, True)]
    assert bus.syncs == 1 + 1 + 1 + 1 + 1   # entry, crossing, cbz taken, b, crossing again


# -- load/store pairs ---------------------------------------------------------------------------

def test_ldp_loads_two_registers_from_16_bytes() -> None:
    """ldp xd, xe, [xn, #imm]: xd = the 8 bytes at xn + imm, xe = the next 8, little-endian;
    the base may be one of the destinations (the address is computed first)."""
    bus = _with_data(DATA + 8, struct.pack("<QQ", 0x1111_2222_3333_4444, 0x5555_6666_7777_8888))
    s = until_smc("ldp x2, x3, [x1, #8]\nldp x1, x4, [x1, #8]\nsmc #0", {1: DATA}, bus=bus)
    assert (s.x[2], s.x[3]) == (0x1111_2222_3333_4444, 0x5555_6666_7777_8888)
    assert (s.x[1], s.x[4]) == (0x1111_2222_3333_4444, 0x5555_6666_7777_8888)


def test_stp_stores_two_registers_and_nothing_else() -> None:
    """stp xd, xe, [xn, #imm] writes xd at xn + imm and xe after it, no other byte; stp of one
    register twice and of xzr are allowed (xzr stores zeros); an ldp into xzr drops that half."""
    bus = _with_data(DATA, b"\xaa" * 48)
    s = until_smc("stp x1, x2, [x3, #-16]\nstp x1, x1, [x3]\nstp xzr, x2, [x3, #16]\nldp xzr, x4, [x3, #-16]\n"
                  "smc #0", {1: 0x0102_0304_0506_0708, 2: 0x1112_1314_1516_1718, 3: DATA + 16}, bus=bus)
    one, two = (0x0102_0304_0506_0708).to_bytes(8, "little"), (0x1112_1314_1516_1718).to_bytes(8, "little")
    assert bytes(bus.ram[DATA:DATA + 48]) == one + two + one + one + bytes(8) + two
    assert s.x[4] == 0x1112_1314_1516_1718 and s.x[31] == 0


@pytest.mark.parametrize("name, write", [("ldp", False), ("stp", True)])
@pytest.mark.parametrize("offset", [1, 4, 12])
def test_a_pair_must_be_8_byte_aligned(name: str, write: bool, offset: int) -> None:
    """An ldp/stp whose address is not a multiple of 8 (a 4-byte aligned one included) takes
    the alignment fault of the other 8-byte accesses: EC 0x25, IL, DFSC 0x21, WnR for stp, far =
    the address; nothing is loaded or stored."""
    bus = _with_data(DATA2, b"\xcc" * 32)
    state, event, bus = execute(f"nop\n{name} x2, x3, [x1, #{offset}]\nsmc #1\n" + VECTOR_CODE,
                                {1: DATA2, 2: 0x22, 3: 0x33}, bus=bus)
    assert (event.kind, event.imm) == (SMC, 0x77)
    assert (state.x[10], state.x[11], state.x[12]) == (8, ESR_DATA_ALIGN | (ESR_WNR if write else 0), DATA2 + offset)
    assert (state.x[2], state.x[3]) == (0x22, 0x33)
    assert bus.ram[DATA2:DATA2 + 32] == b"\xcc" * 32
    assert bus.exceptions == 1


@pytest.mark.parametrize("name, write", [("ldp", False), ("stp", True)])
def test_a_pair_abort_is_16_bytes_at_the_address(name: str, write: bool) -> None:
    """An ldp/stp whose page does not translate stops with ABORT: ipa = xn + imm, size_log2 4
    (PAIR_SIZE_LOG2: 16 bytes, the size no ISV syndrome describes), register = xd; PC at the
    access, registers unchanged."""
    state, event, _ = execute(f"mov x1, ={OUTSIDE}\n{name} x7, x8, [x1, #16]\nsmc #0", {7: 0x5A, 8: 0x5B})
    assert event.kind == ABORT
    assert event.fault == Fault(ipa=OUTSIDE + 16, write=write, size_log2=PAIR_SIZE_LOG2, register=7, fetch=False,
                                reason="outside RAM")
    assert (state.pc, state.x[7], state.x[8]) == (24, 0x5A, 0x5B)


@pytest.mark.parametrize("name, write", [("ldp", False), ("stp", True)])
@pytest.mark.parametrize("absent, fault_at", [({DATA}, DATA + PAGE - 8), ({DATA + PAGE}, DATA + PAGE),
                                              ({DATA, DATA + PAGE}, DATA + PAGE - 8)],
                         ids=["first-page", "second-page", "both"])
def test_a_pair_across_a_page_faults_at_the_lowest_address_first(name: str, write: bool, absent: set[int],
                                                                 fault_at: int) -> None:
    """An ldp/stp at 0xFF8 into a page covers its last 8 bytes and the next page's first 8.
    Whichever pages do not translate, the fault is the lowest faulting address's (the access's
    address when its page faults, else the next page's first byte), and nothing has moved: no
    register loaded, no byte of either page stored. Once both translate, the pair moves whole."""
    ipa = DATA + PAGE - 8
    bus = _with_data(ipa, struct.pack("<QQ", 0xA1, 0xB2))
    bus.absent = set(absent)
    regs = {1: ipa, 2: 0x22, 3: 0x33}
    state, bus = boot(f"{name} x2, x3, [x1]\nsmc #0", regs, bus=bus)
    event = run(state, bus, 10)
    assert event.kind == ABORT
    assert event.fault == Fault(ipa=fault_at, write=write, size_log2=PAIR_SIZE_LOG2, register=2, fetch=False,
                                reason="outside RAM")
    assert (state.pc, state.x[2], state.x[3]) == (0, 0x22, 0x33)
    assert bytes(bus.ram[ipa:ipa + 16]) == struct.pack("<QQ", 0xA1, 0xB2)
    bus.absent = set()
    assert run(state, bus, 10).kind == SMC
    if write:
        assert bytes(bus.ram[ipa:ipa + 16]) == struct.pack("<QQ", 0x22, 0x33)
    else:
        assert (state.x[2], state.x[3]) == (0xA1, 0xB2)


def test_ldp_of_one_register_twice_is_undefined() -> None:
    """A hand-encoded ldp naming one register twice (xzr included), which the assembler refuses
    (CONSTRAINED UNPREDICTABLE on AArch64), takes an undefined instruction exception: nothing is
    loaded. The same word as stp stores the register twice."""
    for reg in (2, 31):
        state, bus = boot("", bus=_with_data(DATA, b"\xee" * 16))
        struct.pack_into("<Q", bus.ram, 8, encode(Op.LDP, rd=reg, rn=1, rm=reg))
        state.pc = 8
        state.x[1:3] = [DATA, 0x22]
        assert run(state, bus, 1).kind == SLICE
        assert (state.pc, state.sysregs[SysReg.ELR], state.sysregs[SysReg.ESR]) == (VECTOR, 8, ESR_UNDEFINED)
        assert state.x[1:3] == [DATA, 0x22]
    state, bus = boot("")
    struct.pack_into("<Q", bus.ram, 8, encode(Op.STP, rd=2, rn=1, rm=2))
    state.pc = 8
    state.x[1:3] = [DATA, 0x22]
    run(state, bus, 1)
    assert (state.pc, bytes(bus.ram[DATA:DATA + 16])) == (16, struct.pack("<QQ", 0x22, 0x22))


# -- system registers and eret ----------------------------------------------------------------

@pytest.mark.parametrize("sysreg", [SysReg.VBAR, SysReg.ELR, SysReg.ESR, SysReg.FAR])
def test_msr_then_mrs(sysreg: SysReg) -> None:
    """msr writes a writable system register and mrs reads it back (vbar without its RES0 bits
    [10:0], test_vbar_low_bits_are_res0)."""
    name = sysreg.name.lower()
    value = 0x1234_5678_9ABC_DEF8
    s = until_smc(f"msr {name}, x1\nmrs x2, {name}\nsmc #0", {1: value})
    assert s.sysregs[sysreg] == s.x[2] == (value & ~0x7FF if sysreg == SysReg.VBAR else value)


def test_mrs_mpidr() -> None:
    """mrs reads the REC's MPIDR."""
    assert until_smc("mrs x3, mpidr\nsmc #0").x[3] == MPIDR


@pytest.mark.parametrize("sysreg", [5, 6, 0xFF])
def test_mrs_of_unknown_system_register_is_undefined(sysreg: int) -> None:
    """An mrs of a system register number the ISA does not define takes an undefined
    instruction exception (as msr does) and leaves its destination alone."""
    state, bus = boot("")
    struct.pack_into("<Q", bus.ram, 8, encode(Op.MRS, rd=1, aux=sysreg))
    state.pc = 8
    state.x[1] = 77
    assert run(state, bus, 1).kind == SLICE
    assert (state.pc, state.sysregs[SysReg.ESR], state.x[1]) == (VECTOR, ESR_UNDEFINED, 77)


@pytest.mark.parametrize("sysreg", [int(SysReg.MPIDR), 5, 0xFF])
def test_msr_mpidr_is_undefined(sysreg: int) -> None:
    """An msr to mpidr (which the assembler refuses, so encoded by hand), or to a system register
    number the ISA does not define, takes an undefined instruction exception and leaves every
    system register (mpidr included) unchanged."""
    state, bus = boot("")
    struct.pack_into("<Q", bus.ram, 0, encode(Op.MSR, rn=1, aux=sysreg))
    state.x[1] = 5
    assert run(state, bus, 1).kind == SLICE
    assert state.sysregs == [VBAR, 0, ESR_UNDEFINED, 0, MPIDR]
    assert state.pc == VECTOR


def test_eret_returns_to_elr() -> None:
    """eret sets pc to elr."""
    s = until_smc("adr x1, there\nmsr elr, x1\neret\nmov x2, #1\nthere: smc #0")
    assert (s.pc, s.x[2]) == (0x30, 0)


def test_an_exception_and_eret_keep_the_flags_the_handler_leaves() -> None:
    """docs/guest-isa.md: there is no SPSR, so taking an exception saves no flags and eret
    restores none: the Z that cmp set before a udf is still set in the handler, and the handler's
    own cmp (Z clear) is what the code after eret sees. (AArch64 would restore PSTATE from
    SPSR_EL1: a guest written for it must not rely on that here.)"""
    state, bus = boot("""
        cmp x1, x1
        udf
        b.eq kept
        smc #1
    kept:
        smc #2
    """)
    handler = assemble("b.ne lost\nmrs x5, elr\nadd x5, x5, #8\nmsr elr, x5\ncmp x1, #1\neret\nlost: smc #3")
    bus.ram[VECTOR:VECTOR + len(handler)] = handler
    event = run(state, bus, 20)
    assert (event.kind, event.imm) == (SMC, 1)


# -- events -----------------------------------------------------------------------------------
# -- events -----------------------------------------------------------------------------------

def test_smc_event() -> None:
    """smc stops with SMC, its immediate, and PC still at the smc (the RMM advances it); the
    instructions before it took effect."""
    state, event, _ = execute("mov x0, #1\nmov x1, #2\nsmc #0x55\nmov x0, #9")
    assert (event.kind, event.imm, state.pc) == (SMC, 0x55, 16)
    assert state.x[0:2] == [1, 2]


def test_hvc_event() -> None:
    """hvc stops with HVC, its immediate and PC at the hvc; the interpreter itself takes no
    exception (the RMM injects it)."""
    state, event, _ = execute("nop\nhvc #9")
    assert (event.kind, event.imm, state.pc) == (HVC, 9, 8)
    assert state.sysregs == [VBAR, 0, 0, 0, MPIDR]


@pytest.mark.parametrize("mnemonic, kind", [("wfi", WFI), ("wfe", WFE)])
def test_wait_events(mnemonic: str, kind: str) -> None:
    """wfi and wfe stop with their event and PC still at the instruction."""
    state, event, _ = execute(f"nop\nnop\n{mnemonic}\nnop")
    assert (event.kind, state.pc) == (kind, 16)


def test_fetch_abort() -> None:
    """A fetch from a page that does not translate stops with ABORT: the fault is a fetch of 8
    bytes at the PC, with the Bus's reason; PC is at the faulting address."""
    state, event, _ = execute(f"mov x1, ={OUTSIDE + 8}\nbr x1")
    assert event.kind == ABORT
    assert event.fault == Fault(ipa=OUTSIDE + 8, write=False, size_log2=3, register=0, fetch=True,
                                reason="outside RAM")
    assert state.pc == OUTSIDE + 8


ACCESSES = [("ldrb", 0, 1, False), ("ldrh", 1, 2, False), ("ldrw", 2, 4, False), ("ldr", 3, 8, False),
            ("strb", 0, 1, True), ("strh", 1, 2, True), ("strw", 2, 4, True), ("str", 3, 8, True)]


@pytest.mark.parametrize("name, size_log2, offset, write", ACCESSES)
def test_data_abort(name: str, size_log2: int, offset: int, write: bool) -> None:
    """A load or store that does not translate stops with ABORT: ipa = xn + imm, write, log2 of
    the size, the transfer register; PC stays at the access and the register is unchanged."""
    state, event, bus = execute(f"mov x1, ={OUTSIDE}\n{name} x7, [x1, #{offset}]\nsmc #0", {7: 0x5A})
    assert event.kind == ABORT
    assert event.fault == Fault(ipa=OUTSIDE + offset, write=write, size_log2=size_log2, register=7,
                                fetch=False, reason="outside RAM")
    assert state.pc == 24
    assert state.x[7] == 0x5A


def test_abort_is_not_remembered() -> None:
    """After an ABORT, once the page translates, running again from the same state performs
    the access (the faulting translation was not cached)."""
    bus = _with_data(DATA, struct.pack("<Q", 1234))
    bus.absent = {DATA}
    state, bus = boot("ldr x2, [x1]\nsmc #0", {1: DATA}, bus=bus)
    assert run(state, bus, 10).kind == ABORT
    bus.absent = set()
    assert run(state, bus, 10).kind == SMC
    assert state.x[2] == 1234


def test_slice_after_exactly_budget_instructions() -> None:
    """With budget n, SLICE comes after exactly n instructions, PC at the next one; an event
    raised by the n-th instruction itself still wins."""
    program = "\n".join(["add x1, x1, #1"] * 5 + ["smc #0"])
    state, event, _ = execute(program, budget=4)
    assert (event.kind, event.executed, state.pc, state.x[1]) == (SLICE, 4, 32, 4)
    state, event, _ = execute(program, budget=5)
    assert (event.kind, event.executed, state.pc, state.x[1]) == (SLICE, 5, 40, 5)
    state, event, _ = execute(program, budget=6)
    assert (event.kind, state.pc, state.x[1]) == (SMC, 40, 5)


def test_slice_in_a_loop_and_resume() -> None:
    """An endless loop stops at the budget with PC at the next instruction; running again
    continues from there."""
    state, event, _ = execute("loop: add x1, x1, #1\nb loop", budget=7)
    assert (event.kind, event.executed, state.pc, state.x[1]) == (SLICE, 7, 8, 4)
    _, bus = boot("loop: add x1, x1, #1\nb loop")
    event = run(state, bus, 3)
    assert (event.kind, state.pc, state.x[1]) == (SLICE, 0, 5)


# -- exceptions the realm takes itself ----------------------------------------------------------

VECTOR_CODE = f"""
    .org {VECTOR}
    mrs x10, elr
    mrs x11, esr
    mrs x12, far
    smc #0x77
"""


def test_udf_enters_the_vector() -> None:
    """udf: elr = its address, esr EC 0 (unknown) with IL, pc = vbar + 0x200, where the realm's
    handler runs."""
    state, event, bus = execute("nop\nudf\nsmc #1\n" + VECTOR_CODE)
    assert (event.kind, event.imm) == (SMC, 0x77)
    assert (state.x[10], state.x[11]) == (8, ESR_UNDEFINED)
    assert state.sysregs[SysReg.ELR] == 8
    assert bus.exceptions == 1


def test_vbar_low_bits_are_res0() -> None:
    """msr vbar with bits [10:0] set keeps only the 2 KiB aligned base (VBAR_EL1 bits [10:0]
    are RES0): mrs reads the base back and a udf enters at base + 0x200, not at the written
    value + 0x200."""
    state, event, _ = execute(f"""
        mov x1, #{VBAR + 0x7FF}
        msr vbar, x1
        mrs x2, vbar
        udf
        smc #1
    """ + VECTOR_CODE)
    assert state.x[2] == VBAR
    assert state.sysregs[SysReg.VBAR] == VBAR
    assert (event.kind, event.imm) == (SMC, 0x77)
    assert (state.x[10], state.x[11]) == (24, ESR_UNDEFINED)


def test_exception_handler_returns_with_eret() -> None:
    """A handler that steps elr past the udf and erets resumes after it."""
    state, event, _ = execute(f"""
        udf
        smc #1
        .org {VECTOR}
        mrs x10, elr
        add x10, x10, #8
        msr elr, x10
        eret
    """)
    assert (event.kind, event.imm, state.pc) == (SMC, 1, 8)


@pytest.mark.parametrize("opcode", [0x04, 0x0F, 0x1D, 0x1E, 0x1F, 0x22, 0x2F, 0x37, 0x3F, 0x44, 0x4F, 0x58,
                                    0x80, 0xFF])
def test_unknown_opcode_is_undefined(opcode: int) -> None:
    """A word whose opcode is not an instruction (including the gaps inside the ALU, branch and
    load/store ranges, which once ran as ADD, NOP and LDR) takes an undefined instruction
    exception and changes no register."""
    state, bus = boot("")
    struct.pack_into("<Q", bus.ram, 8, encode(opcode, rd=1, rn=2, rm=3, aux=3, imm=8))
    state.pc = 8
    state.x[1:4] = [11, DATA, 33]
    assert run(state, bus, 1).kind == SLICE
    assert (state.pc, state.sysregs[SysReg.ELR], state.sysregs[SysReg.ESR]) == (VECTOR, 8, ESR_UNDEFINED)
    assert state.x[1:4] == [11, DATA, 33]


@pytest.mark.parametrize("op, aux", [(Op.BCOND, 16), (Op.BCOND, 200), (Op.BCOND, 255), (Op.LDR, 4), (Op.LDR, 255),
                                     (Op.STR, 4), (Op.STR, 7), (Op.MOVK, 4), (Op.MOVK, 0x80),
                                     (Op.LDP, 1), (Op.LDP, 3), (Op.STP, 1), (Op.STP, 0xFF)])
def test_an_aux_value_with_no_meaning_is_undefined(op: Op, aux: int) -> None:
    """A b.cond whose condition is above AArch64's 4 bits, a load or store of size 1 << aux
    with aux above 3, a movk shift above 3 x 16, an ldp/stp with any aux but 0: undefined
    instructions, no register or memory changed. They used to run as an always-taken branch and
    as the aux & 3 forms."""
    state, bus = boot("")
    struct.pack_into("<Q", bus.ram, 8, encode(op, rd=1, rn=2, aux=aux, imm=8))
    state.pc = 8
    state.x[1:3] = [11, DATA]
    ram = bytes(bus.ram)
    assert run(state, bus, 1).kind == SLICE
    assert (state.pc, state.sysregs[SysReg.ELR], state.sysregs[SysReg.ESR]) == (VECTOR, 8, ESR_UNDEFINED)
    assert state.x[1:3] == [11, DATA]
    assert bytes(bus.ram) == ram


@pytest.mark.parametrize("cond, taken_when_flags_clear", [(6, False), (7, True), (14, True), (15, True)])
def test_every_4_bit_condition_is_aarch64s(cond: int, taken_when_flags_clear: bool) -> None:
    """Condition values the assembler has no name for still run as AArch64 defines them: 6 VS,
    7 VC, 15 NV (which AArch64 executes as always); 14 is b.al."""
    state, bus = boot("")
    struct.pack_into("<Q", bus.ram, 8, encode(Op.BCOND, aux=cond, imm=16))
    state.pc, state.nzcv = 8, 0
    run(state, bus, 1)
    assert state.pc == (24 if taken_when_flags_clear else 16)


MISALIGNED = [("ldrh", 1), ("ldrw", 2), ("ldrw", 7), ("ldr", 4), ("ldr", 1),
              ("strh", 3), ("strw", 6), ("str", 2)]


@pytest.mark.parametrize("name, offset", MISALIGNED)
def test_misaligned_data_access(name: str, offset: int) -> None:
    """An access not aligned to its size takes a data abort in the realm: esr EC 0x25 with IL and
    DFSC 0x21 (alignment), and WnR (bit 6) for a store, as AArch64 reports an alignment fault;
    far = the address, elr = the access; nothing is loaded or stored."""
    bus = _with_data(DATA2, b"\xcc" * 16)     # DATA2: above the image, which reaches the vector
    state, event, bus = execute(f"nop\n{name} x2, [x1, #{offset}]\nsmc #1\n" + VECTOR_CODE,
                                {1: DATA2, 2: 0x1122_3344_5566_7788}, bus=bus)
    assert (event.kind, event.imm) == (SMC, 0x77)
    esr = ESR_DATA_ALIGN | (ESR_WNR if name.startswith("str") else 0)
    assert (state.x[10], state.x[11], state.x[12]) == (8, esr, DATA2 + offset)
    assert state.x[2] == 0x1122_3344_5566_7788
    assert bus.ram[DATA2:DATA2 + 16] == b"\xcc" * 16
    assert bus.exceptions == 1


def test_misaligned_pc() -> None:
    """A branch to an address that is not a multiple of 8 takes a PC alignment exception there:
    esr EC 0x22 with IL, elr = far = the misaligned PC."""
    state, event, bus = execute("mov x1, #0x104\nbr x1\n" + VECTOR_CODE)
    assert (event.kind, event.imm) == (SMC, 0x77)
    assert (state.x[10], state.x[11], state.x[12]) == (0x104, ESR_PC_ALIGN, 0x104)
    assert bus.exceptions == 1


def test_every_exception_taken_is_told_to_the_bus_once() -> None:
    """The bus hears of each exception the guest takes in the realm (it counts them for the run
    report) and of nothing else: a handler that erets past each of udf, a misaligned ldr, a
    misaligned stp and an unknown opcode sees 4, a loop without exceptions 0; a udf at the
    vector itself is taken again at every instruction: a slice of 50 instructions counts 50."""
    state, event, bus = execute(f"""
        mov x1, #{DATA2 + 1}
        udf
        ldr x2, [x1]
        stp x2, x3, [x1]
        .quad 0xff
        smc #1
        .org {VECTOR}
        mrs x10, elr
        add x10, x10, #8
        msr elr, x10
        eret
    """)
    assert (event.kind, event.imm, bus.exceptions) == (SMC, 1, 4)
    state, event, bus = execute("mov x1, #3\nloop: sub x1, x1, #1\ncbnz x1, loop\nsmc #1\n")
    assert (event.kind, bus.exceptions) == (SMC, 0)
    state, bus = boot(f"udf\n.org {VECTOR}\nudf\n")
    event = run(state, bus, 50)
    assert (event.kind, bus.exceptions) == (SLICE, 50)


# -- translation cache ------------------------------------------------------------------------

CACHE_PROGRAM = f"""
        mov x1, #{DATA}
        mov x2, #{DATA2}
        mov x3, #4
loop:   ldr x4, [x1]
        ldr x5, [x1, #8]
        str x4, [x1, #16]
        ldrb x6, [x2, #5]
        sub x3, x3, #1
        cbnz x3, loop
        smc #0
"""


def test_translations_are_cached_per_page_and_access() -> None:
    """Within a run each page is translated once per kind of access (fetch, read, write),
    however many instructions use it; sync() is called at the sync points only (module
    docstring): before the first instruction and after each of the 3 taken cbnz."""
    state, event, bus = execute(CACHE_PROGRAM)
    assert event.kind == SMC
    assert bus.translations == [(0, False, True), (DATA, False, False), (DATA, True, False), (DATA2, False, False)]
    assert bus.syncs == 1 + 3


def test_code_on_two_pages() -> None:
    """A loop that runs across two code pages translates each page for fetch once."""
    state, event, bus = execute(f"""
        mov x3, #3
    top: b far
        .org {PAGE}
    far: sub x3, x3, #1
        cbz x3, out
        b top
    out: smc #0
    """)
    assert event.kind == SMC
    assert bus.translations == [(0, False, True), (PAGE, False, True)]


def test_sync_true_drops_the_caches() -> None:
    """When sync() returns True, every cached translation is dropped: each page is translated
    again the next time it is used."""
    bus = RamBus()
    bus.invalidate_on = {2}        # after the first taken cbnz (the second time round the loop)
    state, event, bus = execute(CACHE_PROGRAM, bus=bus)
    assert event.kind == SMC
    first = [(0, False, True), (DATA, False, False), (DATA, True, False), (DATA2, False, False)]
    assert bus.translations == first + first


def test_sync_true_at_every_sync_point() -> None:
    """With an invalidation at every sync point, each loop iteration (a taken branch away)
    translates its fetch page and every data page again, and only once per iteration."""
    bus = RamBus()
    bus.always_invalidate = True
    state, event, bus = execute(CACHE_PROGRAM, bus=bus)
    fetches = [t for t in bus.translations if t[2]]
    assert len(fetches) == 4 == bus.syncs
    assert bus.translations.count((DATA, False, False)) == 4
    assert bus.translations.count((DATA, True, False)) == 4


def test_straight_line_code_syncs_only_when_it_crosses_a_page() -> None:
    """Sequential execution syncs at the first instruction and where it falls through into the
    next page, which it translates then: no sync between."""
    state, event, bus = execute(f"""
        b start
        .org {PAGE - 24}
    start: nop              // PAGE - 24, - 16, - 8, then PAGE ..
        nop
        nop
        nop
        nop
        smc #0
    """)
    assert bus.translations == [(0, False, True), (PAGE, False, True)]
    assert bus.syncs == 1 + 1 + 1       # entry, the taken b, the page crossing


def test_untaken_branches_are_not_sync_points() -> None:
    """A branch that falls through does not sync; one that is taken does, even to the next
    instruction (the PC was computed, not incremented)."""
    _, event, bus = execute("""
        mov x1, #1
        cbz x1, never
        b.eq never
        cbnz x1, next
    next: smc #0
    never: udf
    """)
    assert event.kind == SMC
    assert bus.syncs == 1 + 1


def test_exceptions_and_eret_are_sync_points() -> None:
    """An exception taken in the realm (udf) and the eret that returns from it each move the PC
    other than by +8: both are followed by a sync."""
    _, event, bus = execute(f"""
        udf
        smc #0
        .org {VECTOR}
        mrs x1, elr
        add x1, x1, #8
        msr elr, x1
        eret
    """)
    assert event.kind == SMC
    assert bus.syncs == 1 + 1 + 1


def test_a_misaligned_pc_is_a_sync_point_too() -> None:
    """A loop of PC alignment exceptions (vbar itself misaligned) still syncs before each, so a
    CPU waiting for this one to acknowledge an invalidation is not held up for the slice."""
    state, bus = boot("smc #0")
    state.sysregs[SysReg.VBAR] = 0x104 - 0x200
    state.pc = 0x104
    event = run(state, bus, 5)
    assert event.kind == SLICE
    assert bus.syncs == 5


# -- property: the interpreter against a reference evaluator ---------------------------------

_REGS = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 30, 31])
_IMM = st.integers(-(1 << 31), (1 << 31) - 1) | st.sampled_from([0, 1, -1, 63, -(1 << 31)])
_KINDS = ["movi", "movk", "mov", "add", "sub", "and", "orr", "eor", "addi", "subi", "andi", "orri", "eori",
          "lsl", "lsr", "mul", "cmp", "cmpi"]
_OPS = {"movi": Op.MOVI, "movk": Op.MOVK, "mov": Op.MOV, "add": Op.ADD, "sub": Op.SUB, "and": Op.AND,
        "orr": Op.ORR, "eor": Op.EOR, "addi": Op.ADDI, "subi": Op.SUBI, "andi": Op.ANDI, "orri": Op.ORRI,
        "eori": Op.EORI, "lsl": Op.LSLI, "lsr": Op.LSRI, "mul": Op.MUL, "cmp": Op.CMP, "cmpi": Op.CMPI}


@st.composite
def _alu(draw: st.DrawFn) -> tuple[str, int, int, int, int]:
    kind = draw(st.sampled_from(_KINDS))
    rd, rn, rm = draw(_REGS), draw(_REGS), draw(_REGS)
    if kind in ("lsl", "lsr"):
        imm = draw(st.integers(0, 63))
    elif kind == "movk":
        imm = draw(st.integers(0, 0xFFFF))
        rm = draw(st.integers(0, 3))          # the lane, carried in aux
    else:
        imm = draw(_IMM)
    return kind, rd, rn, rm, imm


def _reference(program: list[tuple[str, int, int, int, int]], regs: list[int], nzcv: int) -> tuple[list[int], int]:
    """The ISA document's meaning of each instruction, on Python integers taken modulo 2^64."""
    r = list(regs) + [0]

    def get(n: int) -> int:
        return 0 if n == 31 else r[n]

    def put(n: int, value: int) -> None:
        if n != 31:
            r[n] = value % (1 << 64)

    for kind, d, n, m, imm in program:
        operand = imm % (1 << 64) if kind.endswith("i") and kind != "movi" else get(m)
        if kind == "movi":
            put(d, imm)
        elif kind == "movk":
            lane = 16 * m
            put(d, get(d) - ((get(d) >> lane) % 0x10000 << lane) + (imm << lane))
        elif kind == "mov":
            put(d, get(n))
        elif kind in ("add", "addi"):
            put(d, get(n) + operand)
        elif kind in ("sub", "subi"):
            put(d, get(n) - operand)
        elif kind in ("and", "andi"):
            put(d, get(n) & operand)
        elif kind in ("orr", "orri"):
            put(d, get(n) | operand)
        elif kind in ("eor", "eori"):
            put(d, get(n) ^ operand)
        elif kind == "lsl":
            put(d, get(n) * 2**imm)
        elif kind == "lsr":
            put(d, get(n) // 2**imm)
        elif kind == "mul":
            put(d, get(n) * get(m))
        else:
            nzcv = pack_nzcv(*nzcv_of(get(n), operand))
    return r, nzcv


def _encode(kind: str, d: int, n: int, m: int, imm: int) -> int:
    op = _OPS[kind]
    if kind == "movk":
        return encode(op, d, aux=m, imm=imm)
    if kind in ("movi",):
        return encode(op, d, imm=imm)
    if kind in ("lsl", "lsr") or kind.endswith("i"):
        return encode(op, d, n, imm=imm)
    if kind in ("cmp",):
        return encode(op, rn=n, rm=m)
    return encode(op, d, n, m)


@FIXED
@given(st.lists(_alu(), min_size=1, max_size=40), st.lists(st.integers(0, MASK64), min_size=31, max_size=31),
       st.integers(0, 15))
def test_random_alu_programs_match_the_reference(program: list[tuple[str, int, int, int, int]],
                                                 regs: list[int], nzcv: int) -> None:
    """Property: a random straight-line program of data-processing instructions and compares
    leaves every register and the flags as the reference evaluator computes them."""
    bus = RamBus(2 * PAGE)
    for i, ins in enumerate(program):
        struct.pack_into("<Q", bus.ram, 8 * i, _encode(*ins))
    struct.pack_into("<Q", bus.ram, 8 * len(program), encode(Op.SMC))
    state = GuestState(regs, 0, nzcv << 28, [VBAR, 0, 0, 0, MPIDR])
    event = run(state, bus, len(program) + 1)
    assert (event.kind, state.pc) == (SMC, 8 * len(program))
    expected_regs, expected_nzcv = _reference(program, regs, nzcv)
    assert state.x == expected_regs
    assert state.nzcv == expected_nzcv


def test_a_store_into_the_next_instruction_is_what_runs() -> None:
    """No instruction cache (docs/guest-isa.md): the guest overwrites the instruction after its
    store with `mov x3, #7`, which then runs instead of the `mov x3, #1` assembled there, and
    a second pass through the same code runs the new word again."""
    new = encode(Op.MOVI, rd=3, imm=7)
    state = until_smc(f"""
        mov x1, =next
        mov x2, ={new}
        mov x4, #2
    loop:
        str x2, [x1]
    next:
        mov x3, #1
        add x5, x5, x3
        sub x4, x4, #1
        cbnz x4, loop
        smc #0
    """)
    assert (state.x[3], state.x[5]) == (7, 14)


def test_the_decode_cache_is_an_exact_dict_refilled_after_a_clear() -> None:
    """The decode cache is a plain dict (CPython 3.11 specializes a subscript of an exact dict
    only; a dict subclass with __missing__ cost about 240 instructions more per instruction
    executed), which ``run`` fills on a miss: emptied, a run still executes every word right
    and leaves each word it ran decoded in the cache, as isa.decode decodes it but for the
    operands prepared once (interpreter._decode): a movk's kept bits and new lane, a masked
    movi or ALU immediate."""
    from rmm_mp.guest import interpreter
    assert type(interpreter._decoded) is dict
    interpreter._decoded.clear()
    source = "mov x1, #5\nadd x2, x1, #3\nmovk x1, #0x1234, lsl #32\nmov x3, #-2\nsmc #0"
    state = until_smc(source)
    assert (state.x[1], state.x[2], state.x[3]) == (0x1234_0000_0005, 8, MASK64 - 1)
    words = [w for (w,) in struct.iter_unpack("<Q", assemble(source, base=0))]
    decoded = [decode(w) for w in words]
    assert [d[0] for d in decoded] == [Op.MOVI, Op.ADDI, Op.MOVK, Op.MOVI, Op.SMC]
    prepared = [decoded[0], decoded[1], (*decoded[2][:4], MASK64 ^ (0xFFFF << 32), 0x1234 << 32),
                (*decoded[3][:5], MASK64 - 1), decoded[4]]
    assert [interpreter._decoded[w] for w in words] == prepared
