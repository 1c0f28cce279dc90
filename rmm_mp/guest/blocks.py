"""Straight-line blocks for the guest interpreter: a run of register-only instructions made into
one Python function, so that ``interpreter.run`` executes the run with one call instead of
fetching, decoding and dispatching each of its words.

A block starts where the interpreter stands at a sync point (a branch target, the first
instruction of a run, the first word of a page): the longest run of register-only instructions
from there (nop, movi, movk, mov, the ALU forms, cmp, cmp #imm) that stays in the word's 4 KiB
page, and the word that ends the run if it is in the page and one of b, smc, hvc, wfi, wfe,
which the interpreter then executes from the block without decoding it (``last``, ``value``).
A run of fewer than ``MIN_LENGTH`` words without such an end makes no block. A register-only
instruction reads and writes only the registers and the flags: it cannot fault, takes no
exception, is no sync point and leaves PC at the next word, so nothing can tell executing the
run one word at a time from executing it at once, and the block's function
``fn(x, nzcv) -> nzcv`` leaves registers and flags exactly as the interpreter's loop would
(tests/guest/test_blocks.py compares the two on random programs). Inside a block, a register
whose value is a constant of the block (a movi, a movk of one, an operation on constants) is
computed when the block is made and written once, at the end (an instruction that reads it
takes the constant).

Blocks are looked up by the index of their first word in guest memory (as a Bus gives pages
at multiples of 4096 there, an index is in the same page, with the same end, whatever IPA maps
it, in any realm or machine of the process: ``interpreter.run`` looks up, ``find`` does the
rest), comparing the words the block was made from with what the memory holds now, so a block
is used only while its words are still there, whoever wrote them (the realm itself, the host,
another CPU): no invalidation to get wrong. (Its words are read when they are compared, before
the block runs; as none of its instructions reaches memory, no other CPU can tell that from
reading each just before it runs.) Where the first word is one no block starts with (not in
``STARTS``), ``find`` is not called and no entry is made (``run``'s one lookup finds none, or
one of words that were there before, which it does not use). Where no block starts otherwise,
the entry holds the first word, compared likewise (words after it that change into a run make
no block there until the entry goes: a cost, never a difference). A function is made only for a
run found ``HOT`` times at its place, its words and the word that ended it compared as a
block's are (the interpreter's loop runs it until then, and at the reach that makes it), and is
shared by every place that holds the same run. Both caches are bounded, in entries and in the
words they hold (cleared when full, as the decode cache is).

This module owns block making and lookup. It must not know realms, RTTs or the RMM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from rmm_mp.guest.isa import ZR, Op

MIN_LENGTH: Final = 2
"""A run of one instruction is left to the interpreter's loop: a call would cost it more."""
HOT: Final = 16
"""A block's function is made the HOT-th time the interpreter finds its run at that place (or
at once if the same run has one already): making one costs about as much as running a few
hundred instructions, which code run a few times would never earn back."""
_MASK64: Final = (1 << 64) - 1
_NOP, _MOVI, _MOVK, _MOV = int(Op.NOP), int(Op.MOVI), int(Op.MOVK), int(Op.MOV)
_ADDI, _SUBI, _ANDI, _ORRI, _EORI = int(Op.ADDI), int(Op.SUBI), int(Op.ANDI), int(Op.ORRI), int(Op.EORI)
_LSLI, _LSRI, _MUL, _CMP, _CMPI = int(Op.LSLI), int(Op.LSRI), int(Op.MUL), int(Op.CMP), int(Op.CMPI)
_LAST: Final = _CMPI
"""The register-only opcodes are those up to cmp #imm (once decoded: undefined ones decode as udf)."""
_B, _SMC, _HVC = int(Op.B), int(Op.SMC), int(Op.HVC)
_ENDS = frozenset({_B, _SMC, _HVC, int(Op.WFI), int(Op.WFE)})
"""The words that may end a block: ``run`` executes them from their opcode and imm alone."""
STARTS: Final = frozenset(range(_LAST + 1)) | _ENDS
"""The opcodes a block may start with, as decoded: where the word at a sync point has another
(a load, a store, a conditional branch, ...), no block starts whatever the words after it, and
``interpreter.run`` does not call ``find`` (its one BLOCKS lookup, made before the word is
decoded, finds no block whose words are there)."""
NO_END: Final = -1

BlockFn = Callable[[list[int], int], int]
Block = tuple[int, "BlockFn | None", int, int]
"""(n, fn, last, value): the n register-only instructions' function (None when n is 0); the
opcode of the word after them if it ends the block (else NO_END), and its imm as the interpreter
uses it (b's offset, smc's or hvc's imm; 0 for wfi and wfe)."""
Decoder = Callable[[int], tuple[int, int, int, int, int, int]]

BLOCKS: dict[int, "tuple[memoryview, int, Block] | int | list[Any]"] = {}
"""First word's index in guest memory -> (the block's words, how many, the block); the word found
there when no block starts at it; [the run's words and the word that ended it, how many, times
found] for a run whose function is not made yet (all of them: a rewritten run starts its count
again, so no run gets a function before it ran HOT times, whatever its first word)."""
_FUNCTIONS: dict[bytes, BlockFn] = {}
"""A block's register-only words (their bytes) -> its function."""
_BLOCKS_MAX = 1 << 14
_FUNCTIONS_MAX = 1 << 12
_WORDS_MAX = 1 << 17
"""The words both caches may hold, the copies in BLOCKS' entries and the runs of the functions
(a function takes about 180 bytes a word: a 511-word one, 92 KiB): counted as they are stored,
and both caches cleared past it (a function a BLOCKS entry holds goes only with the entry). The
entry counts alone would let a realm with thousands of long runs hold gigabytes."""
_held = 0


def find(words: memoryview, start: int, end: int, decode: Decoder,
         flags: Callable[[int, int], int]) -> Block | None:
    """The block whose first word is ``words[start]`` (words up to ``end``, the index after the
    page's last word), or None if no block starts there, when ``run`` did not find it in BLOCKS
    itself: ``run`` uses a made block's entry and a place's "no block" entry whose words are still
    there without a call (the lookup is written there only), so this is the rest: a run still
    counted toward HOT, or an entry missing or stale. ``decode``: the interpreter's decoder (its
    operands prepared), ``flags``: its NZCV of a - b."""
    entry = BLOCKS.get(start)
    seen = 1
    if entry.__class__ is list and entry[0] == words[start:start + entry[1]]:   # type: ignore[index]
        seen = entry[2] = entry[2] + 1                                          # type: ignore[index, operator]
        if seen < HOT:
            return None
    return _make(words, start, end, decode, flags, seen)


def _make(memory: memoryview, start: int, end: int, decode: Decoder, flags: Callable[[int, int], int],
          seen: int) -> Block | None:
    """find's block when there is none to reuse (``seen``: the times a run reached ``start``)."""
    if len(BLOCKS) >= _BLOCKS_MAX:
        BLOCKS.clear()
    # The words from start to the page's end, read once: the scan, the function, its key and the
    # entry all see the same words, though another CPU or the host may write them meanwhile (a
    # function made from words other than its key's would run wherever its key's words are).
    words = memoryview(bytes(memory[start:end])).cast("Q")
    end = len(words)
    stop = 0
    last = value = NO_END
    while stop < end:
        op, _, _, _, _, imm = decode(words[stop])
        if op > _LAST:
            if op in _ENDS:
                last, value = op, imm if op == _B or op == _SMC or op == _HVC else 0
            break
        stop += 1
    n = stop
    if n < MIN_LENGTH and last == NO_END:
        BLOCKS[start] = words[0]
        return None
    fn = None
    if n:
        run = bytes(words[:stop])
        fn = _FUNCTIONS.get(run)
        if fn is None:
            if seen < HOT:
                length = n + (stop < end)
                _hold(length)
                BLOCKS[start] = [memoryview(bytes(words[:length])).cast("Q"), length, seen]
                return None
            if len(_FUNCTIONS) >= _FUNCTIONS_MAX:
                _FUNCTIONS.clear()
            _hold(n)
            fn = _FUNCTIONS[run] = _compile([decode(words[i]) for i in range(stop)], flags)
    block = (n, fn, last, value)
    length = n + (last != NO_END)
    _hold(length)
    BLOCKS[start] = (memoryview(bytes(words[:length])).cast("Q"), length, block)
    return block


def _hold(count: int) -> None:
    """Count ``count`` more words held by the caches, clearing both past _WORDS_MAX (an entry
    replaced is not taken off the count: a clear comes early, never late)."""
    global _held
    _held += count
    if _held > _WORDS_MAX:
        BLOCKS.clear()
        _FUNCTIONS.clear()
        _held = count


def _value(op: int, a: int, b: int, imm: int) -> int:
    """An ALU form's result as the interpreter computes it (b: x[rm] or the prepared imm)."""
    if op <= _ADDI:
        return (a + b) & _MASK64
    if op <= _SUBI:
        return (a - b) & _MASK64
    if op <= _ANDI:
        return a & b
    if op <= _ORRI:
        return a | b
    if op <= _EORI:
        return a ^ b
    if op == _LSLI:
        return (a << imm) & _MASK64
    if op == _LSRI:
        return a >> imm
    return (a * b) & _MASK64


def _expression(op: int, a: str, b: str, imm: int) -> str:
    """_value as Python source, of operands given as source."""
    if op <= _ADDI:
        return f"({a} + {b}) & {_MASK64}"
    if op <= _SUBI:
        return f"({a} - {b}) & {_MASK64}"
    if op <= _ANDI:
        return f"{a} & {b}"
    if op <= _ORRI:
        return f"{a} | {b}"
    if op <= _EORI:
        return f"{a} ^ {b}"
    if op == _LSLI:
        return f"({a} << {imm}) & {_MASK64}"
    if op == _LSRI:
        return f"{a} >> {imm}"
    return f"({a} * {b}) & {_MASK64}"


def _compile(instructions: list[tuple[int, int, int, int, int, int]], flags: Callable[[int, int], int]) -> BlockFn:
    """The function of a block of decoded register-only instructions (operands prepared as the
    interpreter's decoder prepares them)."""
    known: dict[int, int] = {}      # register -> its value, a constant of the block
    pending: set[int] = set()       # known registers whose value is not written into x yet
    lines: list[str] = []

    def read(r: int) -> str:
        return str(known[r]) if r in known else f"x[{r}]"

    def write(rd: int, value: int | None, source: str = "") -> None:
        if rd == ZR:                # the zero register ignores writes (and these have no other effect)
            return
        if value is not None:
            known[rd] = value
            pending.add(rd)
        else:
            lines.append(f"x[{rd}] = {source}")
            known.pop(rd, None)
            pending.discard(rd)

    for op, rd, rn, rm, aux, imm in instructions:
        if op == _NOP:
            continue
        if op == _MOVI:
            write(rd, imm)
        elif op == _MOVK:
            if rd in known:
                write(rd, known[rd] & aux | imm)
            elif rd != ZR:
                write(rd, None, f"x[{rd}] & {aux} | {imm}")
        elif op == _MOV:
            write(rd, known.get(rn), read(rn))
        elif op == _CMP or op == _CMPI:
            b_known = imm if op == _CMPI else known.get(rm)
            if rn in known and b_known is not None:
                lines.append(f"nzcv = {flags(known[rn], b_known)}")
            else:
                lines.append(f"nzcv = flags({read(rn)}, {imm if op == _CMPI else read(rm)})")
        else:                       # an ALU form: an even opcode takes x[rm], an odd one its imm
            b: int | None = known.get(rm) if op & 1 == 0 else imm
            if op == _MUL or op & 1 == 0 and op != _LSLI and op != _LSRI:
                b_source = read(rm)
            else:
                b_source = str(imm)
            if rn in known and (b is not None or op == _LSLI or op == _LSRI):
                write(rd, _value(op, known[rn], b if b is not None else 0, imm))
            else:
                write(rd, None, _expression(op, read(rn), b_source, imm))
    lines.extend(f"x[{r}] = {known[r]}" for r in sorted(pending))
    source = "def block(x, nzcv):\n" + "".join(f"    {line}\n" for line in lines) + "    return nzcv\n"
    namespace: dict[str, object] = {"flags": flags}
    exec(compile(source, "<guest block>", "exec"), namespace)     # source made of ints only
    return namespace["block"]           # type: ignore[return-value]
