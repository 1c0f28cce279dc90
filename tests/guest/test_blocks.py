"""Straight-line blocks (rmm_mp/guest/blocks.py): the interpreter with blocks against itself without.

Each program runs twice from the same state on the same kind of Bus: once as it is, once with
``blocks.find`` replaced by a function that finds no block and an empty ``blocks.BLOCKS`` (run
looks a made block up there itself), so every word goes through the interpreter's loop. Registers, flags, PC, system registers, the event, every byte of memory and
the Bus calls (each translate and sync, in order) must agree: a block changes how fast a run
goes, never what it does or when it syncs. The programs are runs of register-only words (every
opcode up to cmp #imm, the zero register, edge immediates, undefined aux values) ending in a
branch, a store, an SMC or an undefined word, placed across a page end, run for budgets that end
inside a run, then rewritten in part and run again with the block cache as the first run left it;
and runs whose registers are mostly constants of the block (movi first), so that ALU forms are
folded when their block is made, each checked to have made a block; every ALU form, register and
immediate, is also folded on its own (that property seldom folds a register form).
These tests make a block's function the first time its run is found (blocks.HOT = 1) but one.
run makes a block at one reach of its place and runs it from the next (the loop runs its words
the first time), so a program is run twice where the block itself is under test, and the
unit tests check that the block's function was called: a block that never runs passes every
comparison with the loop.

Hypothesis runs derandomized with no example database (tests/README.md: fixed seeds).
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rmm_mp.guest import blocks, interpreter
from rmm_mp.guest.interpreter import GuestState, MemoryFault, run
from rmm_mp.guest.isa import Op, encode

FIXED = settings(derandomize=True, database=None, deadline=None, max_examples=300)
MASK64 = (1 << 64) - 1
PAGE = 0x1000
RAM = 0x4000
VBAR = 0x3000
REGISTER_ONLY = [Op.NOP, Op.MOVI, Op.MOVK, Op.MOV, Op.ADD, Op.ADDI, Op.SUB, Op.SUBI, Op.AND, Op.ANDI, Op.ORR,
                 Op.ORRI, Op.EOR, Op.EORI, Op.LSLI, Op.LSRI, Op.MUL, Op.CMP, Op.CMPI]
ENDS = [encode(Op.SMC, imm=5), encode(Op.HVC, imm=0xFFFF), encode(Op.WFI), encode(Op.WFE), encode(Op.B, imm=-24),
        encode(Op.B, imm=0x1000), encode(Op.BCOND, aux=1, imm=-16), encode(Op.STR, rd=1, rn=2, aux=3),
        encode(Op.LDR, rd=3, rn=2, aux=3, imm=8), encode(Op.UDF)]


class LogBus:
    """Identity stage 2 over RAM; records every translate and sync call."""

    def __init__(self, ram: bytes) -> None:
        self.ram = bytearray(ram)
        self.memory = memoryview(self.ram)
        self.calls: list[tuple[Any, ...]] = []
        self.fetch_pages: dict[int, int] = {}
        self.read_pages: dict[int, int] = {}
        self.write_pages: dict[int, int] = {}

    def translate(self, page: int, write: bool, fetch: bool) -> int:
        self.calls.append(("translate", page, write, fetch))
        if not 0 <= page < RAM:
            raise MemoryFault(page, "outside RAM")
        return page

    def sync(self) -> bool:
        self.calls.append(("sync",))
        return len(self.calls) % 5 == 0        # now and then an invalidation, dropping the caches

    def exception_taken(self) -> None:
        self.calls.append(("exception",))


@pytest.fixture(autouse=True)
def eager(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.function.__name__ not in ("test_a_function_is_made_the_hot_th_time",
                                         "test_looping_programs_that_rewrite_themselves_run_as_without_blocks"):
        monkeypatch.setattr(blocks, "HOT", 1)


def _outcome(ram: bytes, regs: list[int], pc: int, nzcv: int, budget: int) -> tuple[Any, ...]:
    bus = LogBus(ram)
    state = GuestState(regs, pc, nzcv << 28, [VBAR, 0, 0, 0, 0x8000_0000])
    event = run(state, bus, budget)
    fault = event.fault and (event.fault.ipa, event.fault.write, event.fault.fetch, event.fault.reason)
    return (event.kind, event.executed, event.imm, fault, state.x, state.pc, state.nzcv, state.sysregs,
            bytes(bus.ram), bus.calls)


def _both(ram: bytes, regs: list[int], pc: int, nzcv: int, budget: int) -> tuple[Any, ...]:
    """The outcome with blocks, after checking it is the outcome without."""
    with_blocks = _outcome(ram, regs, pc, nzcv, budget)
    with pytest.MonkeyPatch.context() as patch:
        # No block at all: run also looks a made block up itself (BLOCKS), before calling find.
        patch.setattr(blocks, "find", lambda *args: None)
        patch.setattr(blocks, "BLOCKS", {})
        without = _outcome(ram, regs, pc, nzcv, budget)
    assert with_blocks == without
    return with_blocks


def _place(ram: bytearray, at: int, words: list[int]) -> None:
    for i, word in enumerate(words):
        struct.pack_into("<Q", ram, at + 8 * i, word)


def _calls_of(at: int) -> list[int]:
    """The calls of the function of the block made at IPA ``at`` (identity Bus: its index is at >> 3)
    from now on: its BLOCKS entry gets a counting copy, so a test can tell the block ran (run
    makes a block at one reach and runs it from the next, its words going through the loop the
    first time: an outcome equal to the loop's alone shows nothing of the block)."""
    words, length, (n, fn, last, value) = blocks.BLOCKS[at >> 3]      # type: ignore[misc]
    calls: list[int] = []

    def counted(x: list[int], nzcv: int) -> int:
        calls.append(at)
        return fn(x, nzcv)
    blocks.BLOCKS[at >> 3] = (words, length, (n, counted, last, value))
    return calls


REGISTER = st.sampled_from([0, 1, 2, 31])
IMM = st.sampled_from([0, 1, -1, 63, 64, 0xFFFF, -0x8000, 0x7FFF_FFFF, -0x8000_0000]) | st.integers(-2**31, 2**31 - 1)
# movi and movk more often: constants of a block are folded, and a movk of one is the commonest case
WORD = st.builds(lambda op, rd, rn, rm, aux, imm: encode(op, rd, rn, rm, aux, imm),
                 st.sampled_from(REGISTER_ONLY + [Op.MOVI, Op.MOVK] * 4),
                 REGISTER, REGISTER, REGISTER, st.sampled_from([0, 1, 2, 3, 4, 255]), IMM)
VALUE = st.sampled_from([0, 1, MASK64, 1 << 63, 0x8000_0000, 0xFFFF]) | st.integers(0, MASK64)


@FIXED
@given(run_words=st.lists(WORD, max_size=32), end=st.sampled_from(ENDS), regs=st.lists(VALUE, min_size=31, max_size=31),
       start=st.sampled_from([0x1000, 0x1F80, 0x1FE8, 0x1FF8]), nzcv=st.integers(0, 15),
       budget=st.integers(1, 40), rewrite=st.lists(st.tuples(st.integers(0, 24), WORD | st.sampled_from(ENDS)),
                                                   max_size=3))
def test_a_run_with_blocks_is_the_run_without(run_words: list[int], end: int, regs: list[int], start: int, nzcv: int,
                                              budget: int, rewrite: list[tuple[int, int]]) -> None:
    ram = bytearray(RAM)
    _place(ram, VBAR + 0x200, [encode(Op.SMC, imm=9)])
    _place(ram, start, [*run_words, end])
    first = _both(bytes(ram), regs, start, nzcv, budget)
    assert _both(bytes(ram), regs, start, nzcv, budget) == first       # the block made by the first run runs
    for index, word in rewrite:         # the same places hold other words: no block made before may run
        _place(ram, start + 8 * min(index, len(run_words)), [word])
        _both(bytes(ram), regs, start, nzcv, budget)


# Blocks of many shapes: a few registers set to constants first (movi, movk of a constant's lanes),
# then any register-only words on them, so that many operations have a constant operand or two
# (folded when the block is made) and the rest read x (written out). A register form folds only
# when both its registers are constants, which these examples seldom make (register-form orr
# never, eor twice): test_every_alu_form_folds_as_the_loop_computes folds each form for sure.
SHAPE_REGISTER = st.sampled_from([0, 1, 2, 3, 4, 5, 31])
CONSTANT = st.builds(lambda rd, imm: encode(Op.MOVI, rd, imm=imm), SHAPE_REGISTER, IMM)
SHAPE_WORD = st.builds(lambda op, rd, rn, rm, aux, imm: encode(op, rd, rn, rm, aux, imm),
                       st.sampled_from(REGISTER_ONLY), SHAPE_REGISTER, SHAPE_REGISTER, SHAPE_REGISTER,
                       st.sampled_from([0, 1, 2, 3]), IMM)


@FIXED
@given(constants=st.lists(CONSTANT, max_size=6), run_words=st.lists(SHAPE_WORD, min_size=1, max_size=24),
       end=st.sampled_from(ENDS), regs=st.lists(VALUE, min_size=31, max_size=31), nzcv=st.integers(0, 15),
       budget=st.sampled_from([1000, 1000, 1000, 7, 20]))
def test_blocks_of_many_shapes_run_as_without(constants: list[int], run_words: list[int], end: int, regs: list[int],
                                               nzcv: int, budget: int) -> None:
    """Registers, flags, PC, memory, the event and the Bus calls of a block against the loop's,
    for runs whose operands are often constants of the block; the run is made into a block
    (looked at in BLOCKS: the property holds of blocks, not of the loop alone) and run again
    from its entry."""
    ram = bytearray(RAM)
    _place(ram, VBAR + 0x200, [encode(Op.SMC, imm=9)])
    words = [*constants, *run_words]
    _place(ram, 0x1000, [*words, end])
    blocks.BLOCKS.clear()
    first = _both(bytes(ram), regs, 0x1000, nzcv, budget)
    entry = blocks.BLOCKS.get(0x1000 >> 3)
    if len(words) >= blocks.MIN_LENGTH:
        assert entry.__class__ is tuple and entry[2][0] == len(words)       # type: ignore[index]
    assert _both(bytes(ram), regs, 0x1000, nzcv, budget) == first


ALU_FORMS = [op for op in REGISTER_ONLY if Op.ADD <= op <= Op.MUL]


@pytest.mark.parametrize("op", ALU_FORMS, ids=lambda op: op.name)
@settings(derandomize=True, database=None, deadline=None, max_examples=25)
@given(a=IMM, b=IMM, imm=IMM, shift=st.integers(0, 63))
def test_every_alu_form_folds_as_the_loop_computes(op: Op, a: int, b: int, imm: int, shift: int) -> None:
    """Each ALU form, register and immediate, on operands that are constants of the block (movi
    before it): the block folds it (blocks._value computes it when the block is made) and leaves
    the registers the loop leaves. The many-shapes property alone seldom folds a register form."""
    folded: list[int] = []
    value = blocks._value
    ram = bytearray(RAM)
    _place(ram, VBAR + 0x200, [encode(Op.SMC, imm=9)])
    _place(ram, 0x1000, [encode(Op.MOVI, 1, imm=a), encode(Op.MOVI, 2, imm=b),
                         encode(op, 3, 1, 2, imm=shift if op in (Op.LSLI, Op.LSRI) else imm), encode(Op.SMC)])
    blocks.BLOCKS.clear()
    blocks._FUNCTIONS.clear()       # a function made for the same words earlier would be reused, not folded
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(blocks, "_value", lambda *args: folded.append(args[0]) or value(*args))
        first = _both(bytes(ram), [0] * 31, 0x1000, 0, 100)
    assert folded == [op]
    calls = _calls_of(0x1000)
    assert _both(bytes(ram), [0] * 31, 0x1000, 0, 100) == first and calls == [0x1000]


def test_a_block_runs_as_one_call_and_stops_short_of_the_budget() -> None:
    """Six words and the smc after them made into one block (the six folded to two constants); a
    budget ending inside it runs them one at a time up to the budget."""
    ram = bytearray(RAM)
    program = [encode(Op.MOVI, 0, imm=-0x3BFF_FE67), encode(Op.MOVK, 0, aux=2), encode(Op.MOVK, 0, aux=3),
               encode(Op.MOVI, 1, imm=0x100), encode(Op.ADDI, 1, 1, imm=8), encode(Op.CMP, 31, 0, 1),
               encode(Op.SMC)]
    _place(ram, 0, program)
    blocks.BLOCKS.clear()
    outcome = _both(bytes(ram), [0] * 31, 0, 0, 100)
    assert outcome[:3] == ("SMC", 7, 0) and outcome[4][:2] == [0xC400_0199, 0x108]
    assert blocks.BLOCKS[0][2][0::2] == (6, int(Op.SMC))        # type: ignore[index]
    calls = _calls_of(0)
    assert _both(bytes(ram), [0] * 31, 0, 0, 100) == outcome and calls == [0]
    for budget in range(1, 7):
        assert _both(bytes(ram), [0] * 31, 0, 0, budget)[:2] == ("SLICE", budget)
        assert calls == [0] * (1 + (budget == 6)), budget        # 6: room for the six words, not the smc


def test_a_block_ends_at_its_page_end() -> None:
    """The words of a run that goes on into the next page make two blocks, with a sync point
    and a fetch translation between them as without blocks."""
    ram = bytearray(RAM)
    _place(ram, 0x1FF0, [encode(Op.ADDI, 2, 2, imm=1)] * 4 + [encode(Op.SMC)])
    blocks.BLOCKS.clear()
    outcome = _both(bytes(ram), [0] * 31, 0x1FF0, 0, 100)
    assert outcome[4][2] == 4 and ("translate", 0x2000, False, True) in outcome[9]
    assert blocks.BLOCKS[0x1FF0 >> 3][2][0::2] == (2, blocks.NO_END)         # type: ignore[index]
    assert blocks.BLOCKS[0x2000 >> 3][2][0::2] == (2, int(Op.SMC))           # type: ignore[index]
    first, second = _calls_of(0x1FF0), _calls_of(0x2000)
    assert _both(bytes(ram), [0] * 31, 0x1FF0, 0, 100) == outcome and first == [0x1FF0] and second == [0x2000]


def test_a_block_is_not_run_once_its_words_changed() -> None:
    """A block made from words that memory no longer holds is not used: the same memory with
    other words at the block's place runs them (code the realm, the host or another program
    wrote there)."""
    bus = LogBus(bytes(RAM))
    _place(bus.ram, 0, [encode(Op.MOVI, 5, imm=1), encode(Op.MOVI, 6, imm=2), encode(Op.SMC)])
    _place(bus.ram, VBAR + 0x200, [encode(Op.SMC, imm=9)])
    blocks.BLOCKS.clear()

    def again() -> tuple[GuestState, Any]:
        state = GuestState([0] * 31, 0, 0, [VBAR, 0, 0, 0, 0])
        return state, run(state, bus, 100)
    state, event = again()
    assert (event.kind, event.imm, state.x[5], state.x[6]) == ("SMC", 0, 1, 2) and 0 in blocks.BLOCKS
    calls = _calls_of(0)
    state, event = again()
    assert (event.kind, event.imm, state.x[5], state.x[6]) == ("SMC", 0, 1, 2) and calls == [0]   # the block ran
    _place(bus.ram, 8, [encode(Op.MOVI, 6, imm=3)])
    state, event = again()
    assert (event.kind, event.imm, state.x[5], state.x[6]) == ("SMC", 0, 1, 3) and calls == [0]
    _place(bus.ram, 8, [encode(Op.UDF)])        # now a run of one word: no block, and udf's exception
    state, event = again()
    assert (event.kind, event.imm, state.x[5], state.x[6], state.pc) == ("SMC", 9, 1, 0, VBAR + 0x200)
    assert blocks.BLOCKS[0] == encode(Op.MOVI, 5, imm=1)


def test_a_function_is_made_the_hot_th_time() -> None:
    """A run's function is made the HOT-th time a run reaches its place, not before (code run a
    few times would not earn the making back); another place with the same run shares it."""
    bus = LogBus(bytes(RAM))
    program = [encode(Op.ADDI, 5, 5, imm=1), encode(Op.ADDI, 6, 6, imm=2), encode(Op.SMC)]
    _place(bus.ram, 0, program)
    _place(bus.ram, 0x800, program)
    blocks.BLOCKS.clear()
    blocks._FUNCTIONS.clear()
    state = GuestState([0] * 31, 0, 0, [VBAR, 0, 0, 0, 0])
    for n in range(1, blocks.HOT + 1):
        state.pc = 0
        assert run(state, bus, 100).kind == "SMC" and state.x[5:7] == [n, 2 * n]
        assert blocks.BLOCKS[0].__class__ is (tuple if n == blocks.HOT else list)
    state.pc = 0x800
    assert run(state, bus, 100).kind == "SMC" and state.x[5:7] == [blocks.HOT + 1, 2 * blocks.HOT + 2]
    assert blocks.BLOCKS[0x800 >> 3][2][1] is blocks.BLOCKS[0][2][1]          # type: ignore[index]


class _LoopBus(LogBus):
    """LogBus with IPA pages 0x1000 and 0x2000 swapped in RAM, when asked."""

    def __init__(self, ram: bytes, swap: bool) -> None:
        super().__init__(ram)
        self.swap = {0x1000: 0x2000, 0x2000: 0x1000} if swap else {}

    def translate(self, page: int, write: bool, fetch: bool) -> int:
        return self.swap.get(page, super().translate(page, write, fetch))


def _random_word(r: random.Random, at: int, low: int, high: int) -> int:
    """Mostly register-only words on few registers (so that constants fold), branches into the
    program, stores into it through x4 (code that rewrites itself), smc, hvc, wfi, wfe, bl, udf."""
    def reg() -> int:
        return r.choice([0, 1, 2, 3, 31])
    k = r.random()
    if k < 0.75:
        imm = r.choice([0, 1, -1, 63, 64, 0xFFFF, -0x8000, 0x7FFF_FFFF, -0x8000_0000, r.randint(-2**31, 2**31 - 1),
                        r.randint(-4, 70)])
        return encode(r.choice(REGISTER_ONLY + [Op.MOVI, Op.MOVK, Op.CMP, Op.CMPI]), reg(), reg(), reg(),
                      r.choice([0, 1, 2, 3, 3, 4]), imm)
    target = r.randrange(low, high, 8) - at
    for bound, word in ((0.80, lambda: encode(Op.B, imm=target)),
                        (0.85, lambda: encode(Op.BCOND, aux=r.randint(0, 14), imm=target)),
                        (0.88, lambda: encode(Op.CBNZ, rn=reg(), imm=target)),
                        (0.91, lambda: encode(Op.SMC, imm=r.randint(0, 9))),
                        (0.92, lambda: encode(Op.HVC, imm=r.randint(0, 9))),
                        (0.93, lambda: encode(r.choice([Op.WFI, Op.WFE]))),
                        (0.97, lambda: encode(Op.STR, rd=r.choice([5, 0, 1]), rn=4, aux=r.choice([3, 2, 0]),
                                              imm=r.randrange(0, 64, 8))),
                        (0.985, lambda: encode(Op.BL, imm=target))):
        if k < bound:
            return word()
    return encode(Op.UDF)


def _slices(ram: bytes, swap: bool, regs: list[int], pc: int, budgets: list[int]) -> tuple[Any, ...]:
    """Run the program slice after slice (past each smc, hvc, wfi or wfe, as the RMM would)."""
    bus = _LoopBus(ram, swap)
    state = GuestState(regs, pc, 0, [VBAR, 0, 0, 0, 0x8000_0000])
    events = []
    for budget in budgets:
        event = run(state, bus, budget)
        events.append((event.kind, event.executed, event.imm, event.fault and event.fault.ipa, state.pc, state.nzcv,
                       list(state.x), list(state.sysregs)))
        if event.kind == "ABORT":
            break
        if event.kind != "SLICE":
            state.pc += 8
    return events, bytes(bus.ram), bus.calls


@pytest.mark.parametrize("hot", [1, 16])
def test_looping_programs_that_rewrite_themselves_run_as_without_blocks(hot: int,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Seeded random programs that loop (so blocks are made and reused, at blocks.HOT too),
    rewrite their own words, cross from a page into another that is not next to it in RAM, and
    run in slices of random budgets: with blocks as without, the cache left as each program
    leaves it for the next, which has other words at the same places."""
    monkeypatch.setattr(blocks, "HOT", hot)
    for seed in range(1500):
        r = random.Random(seed)
        ram = bytearray(RAM)
        low = r.choice([0x1000, 0x1F00, 0x1FC0])
        high = min(low + 8 * r.randint(4, 60), 0x3000)
        _place(ram, low, [_random_word(r, at, low, high) for at in range(low, high, 8)])
        _place(ram, VBAR + 0x200, [encode(Op.SMC, imm=99)])
        regs = [r.choice([0, 1, MASK64, 1 << 63, r.getrandbits(64)]) for _ in range(31)]
        regs[4], regs[5] = r.randrange(low, high, 8), _random_word(r, 0, low, high)
        swap, budgets = r.random() < 0.5, [r.choice([1, 2, 3, 5, 17, 100, 1000]) for _ in range(r.randint(1, 30))]
        with_blocks = _slices(bytes(ram), swap, regs, low, budgets)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(blocks, "find", lambda *args: None)
            patch.setattr(blocks, "BLOCKS", {})
            without = _slices(bytes(ram), swap, regs, low, budgets)
        assert with_blocks == without, f"seed {seed}"


def test_a_place_whose_word_starts_no_block_costs_no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop whose sync point holds a word no block starts with (an ldr first) never calls
    blocks.find there nor gets an entry in BLOCKS: run knows the place from the word's decoding,
    which it needs anyway, as branch-heavy code pays for whatever run does at a sync point. A
    place whose first word may start one (a subi, then a cbnz that ends no block) is looked up
    once, then known from its entry."""
    bus = LogBus(bytes(RAM))
    _place(bus.ram, 0x1000, [encode(Op.LDR, 1, 2, aux=3), encode(Op.SUBI, 3, 3, imm=1),
                             encode(Op.CBNZ, rn=3, imm=-16), encode(Op.SMC),
                             encode(Op.SUBI, 4, 4, imm=1), encode(Op.CBNZ, rn=4, imm=-8), encode(Op.SMC)])
    blocks.BLOCKS.clear()
    calls = []
    find = blocks.find
    monkeypatch.setattr(blocks, "find", lambda *args: calls.append(args[1]) or find(*args))
    state = GuestState([0] * 31, 0x1000, 0, [VBAR, 0, 0, 0, 0])
    state.x[2], state.x[3] = 0x2000, 50
    assert run(state, bus, 1000).kind == "SMC" and state.x[3] == 0
    assert calls == [] and 0x1000 >> 3 not in blocks.BLOCKS
    state.pc, state.x[4] = 0x1020, 30
    assert run(state, bus, 1000).kind == "SMC" and state.x[4] == 0
    assert calls == [0x1020 >> 3]


def test_a_rewritten_run_counts_from_one_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's function is made once that run, all its words, reached its place HOT times: a run
    rewritten behind the same first word (here a two-word run made 511 words long at its 16th
    reach) starts its count again, or code could get a long run made for the price of a short
    one's reaches, again and again (making a 511-word function costs about 10 ms)."""
    monkeypatch.setattr(blocks, "HOT", 16)
    bus = LogBus(bytes(RAM))
    short = [encode(Op.ADDI, 5, 5, imm=1), encode(Op.ADDI, 6, 6, imm=2), encode(Op.SMC)]
    _place(bus.ram, 0x1000, short + [encode(Op.ADDI, 7, 7, imm=3)] * 508 + [encode(Op.SMC)])
    blocks.BLOCKS.clear()
    blocks._FUNCTIONS.clear()
    made: list[int] = []
    compile_ = blocks._compile
    monkeypatch.setattr(blocks, "_compile", lambda ins, flags: made.append(len(ins)) or compile_(ins, flags))
    state = GuestState([0] * 31, 0, 0, [VBAR, 0, 0, 0, 0])

    def reach() -> None:
        state.pc = 0x1000
        assert run(state, bus, 1000).kind == "SMC"
    for _ in range(blocks.HOT - 1):
        reach()
    _place(bus.ram, 0x1010, [encode(Op.ADDI, 7, 7, imm=3)])          # the smc after the two words goes
    for n in range(blocks.HOT):
        assert made == [], n
        reach()
    assert made == [511] and state.x[7] == 3 * 509 * blocks.HOT


def test_the_caches_hold_a_bounded_number_of_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks and functions are bounded by the words they hold, not only by their number: ten
    long runs (sync points 8 bytes apart in one run of 400 words) hold no more than the bound
    (here 2,000 words) and a last block's."""
    monkeypatch.setattr(blocks, "_WORDS_MAX", 2000, raising=False)
    bus = LogBus(bytes(RAM))
    _place(bus.ram, 0x1000, [encode(Op.ADDI, 5, 5, imm=i) for i in range(400)] + [encode(Op.SMC)])
    blocks.BLOCKS.clear()
    blocks._FUNCTIONS.clear()
    state = GuestState([0] * 31, 0, 0, [VBAR, 0, 0, 0, 0])
    for k in range(10):
        state.pc = 0x1000 + 8 * k
        assert run(state, bus, 1000).kind == "SMC"
        held = sum(entry[1] for entry in blocks.BLOCKS.values() if entry.__class__ is not int)   # type: ignore[index]
        held += sum(len(run) // 8 for run in blocks._FUNCTIONS)
        assert held <= 2000 + 2 * 401, k


def test_a_word_written_while_a_block_is_made_does_not_get_into_its_function() -> None:
    """Another CPU (or the host) writing a run's word while its block is made: the function is
    made from the words its key holds (those read first), or it would run, wrongly, for every
    place that holds the key's words, in every realm of the process."""
    ram = bytearray(RAM)
    _place(ram, 0x1000, [encode(Op.MOVI, 5, imm=1), encode(Op.MOVI, 6, imm=2), encode(Op.SMC)])
    run_words = bytes(ram[0x1000:0x1010])
    blocks.BLOCKS.clear()
    blocks._FUNCTIONS.clear()
    decoded = 0

    def decode(word: int) -> tuple[int, int, int, int, int, int]:
        nonlocal decoded
        decoded += 1
        if decoded == 4:            # the three words scanned: the second one is written now
            _place(ram, 0x1008, [encode(Op.MOVI, 6, imm=7)])
        return interpreter._decode(word)
    words = memoryview(ram).cast("Q")
    block = blocks.find(words, 0x1000 >> 3, 0x2000 >> 3, decode, interpreter._flags)
    words.release()
    x = [0] * 32
    assert block is not None and block[1] is blocks._FUNCTIONS[run_words] and block[1](x, 0) == 0
    assert x[5:7] == [1, 2] and blocks.BLOCKS[0x1000 >> 3][0].tobytes() == run_words + ram[0x1010:0x1018]  # type: ignore[index]


def test_starts_is_what_find_starts_a_block_with() -> None:
    """run calls blocks.find at a sync point only when the word's decoded opcode is in
    blocks.STARTS: a block find would start with another opcode would never be made (code
    silently slower, every test still green). So STARTS must be exactly the opcodes find starts
    a block with: every opcode value (0..255, with an aux that decodes and one that may not)
    first, then register-only words and an smc, found with HOT at 1."""
    words_after = [encode(Op.ADDI, 5, 5, imm=1), encode(Op.ADDI, 6, 6, imm=2), encode(Op.SMC)]
    for op in range(256):
        for aux in (0, 3, 255):
            ram = bytearray(RAM)
            first = encode(op, 1, 2, 3, aux, imm=8)
            _place(ram, 0x1000, [first, *words_after])
            blocks.BLOCKS.clear()
            words = memoryview(ram).cast("Q")
            block = blocks.find(words, 0x1000 >> 3, 0x2000 >> 3, interpreter._decode, interpreter._flags)
            words.release()
            decoded = interpreter._decode(first)[0]
            assert (block is not None) == (decoded in blocks.STARTS), (hex(op), aux, decoded)
